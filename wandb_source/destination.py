"""Reading back what the destination already holds (for rewinds and deleted runs).

Used rarely: when a run was rewound (its old steps that no longer exist must be deleted) and when a
run vanished from W&B (its row is kept and marked deleted). Works on any destination through
`pipeline.dataset()`; outside a pipeline, or before the table exists, it returns nothing.
"""

from __future__ import annotations

from typing import Any

import dlt
from dlt.common import logger


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def run_rows(table: str, run_key: tuple[str, str, str], columns: str = "*") -> list[dict[str, Any]]:
    """Rows of `table` that belong to one run, as dicts (empty when unknown)."""
    try:
        pipeline = dlt.current.pipeline()
    except Exception:  # noqa: BLE001 - no active pipeline: the source runs stand-alone
        return []
    if pipeline is None or table not in pipeline.default_schema.tables:
        return []
    if not pipeline.default_schema.get_table_columns(table):
        return []
    entity, project, run_id = run_key
    query = (f"SELECT {columns} FROM {table} WHERE entity = {_literal(entity)} "
             f"AND project = {_literal(project)} AND run_id = {_literal(run_id)}")
    try:
        return pipeline.dataset()(query).arrow().to_pylist()
    except Exception as e:  # noqa: BLE001 - the table may not be loaded yet
        logger.info("could not read %s for %s: %s", table, "/".join(run_key), e)
        return []
