"""Every table a load's resources may send exists once the load is done, even when W&B had none of its rows
(a project without artifacts, no metric beyond the column budget), so the README's queries run after the
first load.

dlt creates a table only when rows arrive, and neither of its ways to send no rows works for these tables in
dlt 1.31: `dlt.mark.materialize_table_schema()` fails in normalize on a merge table with a primary key, and
an empty Arrow table fails dlt's ADBC loader on Postgres. So after the load, a table still missing is added
to the schema as its resource declares it (`tables.TABLE_HINTS`, only the typed columns) and created on the
destination: by `pipeline.sync_schema()` where the destination has SQL tables, as an empty Delta table
(a load of an empty Arrow table) on the filesystem.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dlt
from dlt.common.libs.pyarrow import columns_to_arrow

from .. import tables

# what dlt's normalizer adds to a table of dict rows (`tables.DICT_ROW_TABLES`)
_DLT_COLUMNS = {"_dlt_load_id": {"data_type": "text", "nullable": False},
                "_dlt_id": {"data_type": "text", "nullable": False, "unique": True, "row_key": True}}


def missing_tables(pipeline: dlt.Pipeline, resources: Iterable[str]) -> list[str]:
    """Tables that `resources` (names of the resources a load ran) may send, and the schema does not hold."""
    ran = set(resources)
    known: Any = pipeline.default_schema.tables if pipeline.default_schema_name else {}
    return [table for table in tables.TABLE_HINTS
            if table not in known and ran & set(tables.SENT_BY.get(table, (table,)))]


def create_missing_tables(pipeline: dlt.Pipeline, resources: Iterable[str]) -> list[str]:
    """Create, with no rows, the tables `missing_tables` names; returns their names."""
    missing = missing_tables(pipeline, resources)
    if not missing:
        return []
    if pipeline.destination is not None and pipeline.destination.destination_name == "filesystem":
        info = pipeline.run([_empty_resource(table, pipeline) for table in missing])
        info.raise_on_failed_jobs()
        return missing
    for table in missing:
        pipeline.default_schema.update_table(_empty_resource(table, pipeline).compute_table_schema())
    pipeline.sync_schema()  # creates only what the destination lacks: another pipeline may have made some
    return missing


def _empty_resource(table: str, pipeline: dlt.Pipeline) -> Any:
    """A resource that sends no rows of `table`, with the hints its own resource declares."""
    hints = tables.TABLE_HINTS[table]
    declared = {**hints.get("columns", {}), **(_DLT_COLUMNS if table in tables.DICT_ROW_TABLES else {})}
    columns: Any = {name: {"name": name, **column} for name, column in declared.items() if column.get("data_type")}
    empty = columns_to_arrow(columns, pipeline.destination.capabilities(), timestamp_timezone="UTC").empty_table()
    return dlt.resource([empty], name=table, write_disposition=tables.MERGE, **tables.STORAGE_HINTS,
                        **{**hints, "columns": declared})
