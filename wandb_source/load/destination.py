"""The destination side: reading back what it already holds, and how to load into it.

- `run_rows`: a run's rows already loaded, read only when a run was rewound (its old steps that no
  longer exist are deleted) or vanished from W&B (its row is kept and marked deleted). Any destination,
  through `pipeline.dataset()` (Delta tables through deltalake); nothing outside a pipeline.
- `table_batches`: a whole loaded table as Arrow batches, for exports and plots.
- `cursor_rows`: one resource's rows of `run_cursors` (the per-run cursors), read once per load.
- `load_options`: `pipeline.run` options per destination (Delta tables, parquet via ADBC).
- `duckdb_memory_limit`: DuckDB's memory cap for a schema's widest table.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dlt.common import logger

from .dlt_internals import delta_table


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


_ONE_READ_AT_A_TIME = threading.Lock()


def _in_own_thread(read: Callable[..., Any]) -> Callable[..., Any]:
    """Run a destination read on a thread of its own: dlt injects configuration contexts when it opens a
    destination client, and on one of dlt's extract threads (tables are extracted in parallel) that would
    replace the contexts of the pipeline's main thread. One read at a time: two tables opening the same
    DuckDB file at once fail ("Unique file handle conflict"), which made a load fetch runs again."""
    @functools.wraps(read)
    def isolated(*args: Any, **kwargs: Any) -> Any:
        with _ONE_READ_AT_A_TIME, ThreadPoolExecutor(1, thread_name_prefix="wandb-destination") as pool:
            return pool.submit(read, *args, **kwargs).result()

    return isolated


@_in_own_thread
def run_rows(pipeline: Any, table: str, run_key: tuple[str, str, str], columns: str = "*") -> list[dict[str, Any]]:
    """Rows of `table` that belong to one run, as dicts (empty when unknown)."""
    try:
        if pipeline is None or not pipeline.default_schema.get_table_columns(table):
            return []
    except Exception:  # noqa: BLE001 - no schema yet (first load) or no such table
        return []
    if pipeline.destination is not None and pipeline.destination.destination_name == "filesystem":
        return _delta_rows(pipeline, table, run_key, columns)
    entity, project, run_id = run_key
    query = (f"SELECT {columns} FROM {table} WHERE entity = {_literal(entity)} "
             f"AND project = {_literal(project)} AND run_id = {_literal(run_id)}")
    try:
        return pipeline.dataset()(query).arrow().to_pylist()
    except Exception as e:  # noqa: BLE001 - the table may not be loaded yet
        logger.info("could not read %s for %s: %s", table, "/".join(run_key), e)
        return []


def _delta_rows(pipeline: Any, table: str, run_key: tuple[str, str, str], columns: str) -> list[dict[str, Any]]:
    """Filesystem destination (delta tables): read with deltalake, no DuckDB extension needed."""
    try:
        delta = delta_table(pipeline, table)
    except Exception as e:  # noqa: BLE001 - not a delta table, or not written yet
        logger.info("could not open delta table %s: %s", table, e)
        return []
    wanted = None if columns == "*" else [c.strip().strip('"') for c in columns.split(",")]
    return _delta_where(delta, dict(zip(("entity", "project", "run_id"), run_key)), wanted).to_pylist()


def _delta_where(delta: Any, equals: dict[str, str], columns: list[str] | None) -> pa.Table:
    """Rows of a Delta table whose text columns equal `equals`, only `columns` (all: None). Filtered in
    Arrow: deltalake's own filters fail on the `string_view` columns a Delta merge writes."""
    read = None if columns is None else sorted({*columns, *equals})
    table = delta.to_pyarrow_table(columns=read)
    for name, value in equals.items():
        table = table.filter(pc.equal(pc.cast(table[name], pa.string()), value))
    return table if columns is None else table.select(columns)


@_in_own_thread
def cursor_rows(pipeline: Any, resource: str) -> list[dict[str, Any]]:
    """`resource`'s rows of `run_cursors` (entity, project, run_id, entry); none before its first load. A
    destination that cannot be read is reported and taken as holding none: everything is fetched again and
    merged (no duplicates)."""
    from ..state import CURSOR_TABLE

    try:
        if pipeline is None or CURSOR_TABLE not in pipeline.default_schema.tables:
            return []
    except Exception:  # noqa: BLE001 - no schema yet: the first load
        return []
    try:
        if pipeline.destination.destination_name == "filesystem":
            found = _delta_where(delta_table(pipeline, CURSOR_TABLE), {"resource": resource}, list(_CURSOR_COLUMNS))
        else:
            query = f"SELECT {', '.join(_CURSOR_COLUMNS)} FROM {CURSOR_TABLE} WHERE resource = {_literal(resource)}"
            found = pipeline.dataset()(query).arrow()
        return found.to_pylist()
    except Exception as e:  # noqa: BLE001 - the table may not be loaded yet, or the destination is gone
        logger.warning("could not read %s of %s (%s): its runs are fetched again", CURSOR_TABLE, resource, e)
        return []


_CURSOR_COLUMNS = ("entity", "project", "run_id", "entry")


def table_batches(pipeline: Any, table: str, chunk_size: int = 100_000) -> Iterator[pa.Table]:
    """A loaded table as Arrow tables of at most `chunk_size` rows, from any destination (nothing
    when the table was never loaded). Delta tables are read with deltalake: no DuckDB extension."""
    if table not in pipeline.default_schema.tables or not pipeline.default_schema.get_table_columns(table):
        return
    if pipeline.destination.destination_name == "filesystem":
        dataset = delta_table(pipeline, table).to_pyarrow_dataset()
        for batch in dataset.to_batches(batch_size=chunk_size):
            yield pa.Table.from_batches([batch])
        return
    yield from pipeline.dataset()[table].iter_arrow(chunk_size=chunk_size)


def duckdb_memory_limit(schema: Any) -> str:
    """A DuckDB `memory_limit` for loading `schema`'s tables: 128 MB, or 3 MB per column of the widest.

    DuckDB spills rows to disk, so the row count does not matter, but its MERGE pins buffers per
    column: measured on this project's loads, 200 columns need over 256 MB and 800 over 1 GB.
    Too small a limit fails the load with "Out of Memory Error"; DuckDB's own default (80% of RAM)
    lets a large load take far more memory than it needs."""
    widest = max((len(t.get("columns", {})) for t in schema.data_tables()), default=0)
    return f"{max(128, 3 * widest)}MB"


def load_options(destination_name: str | None) -> dict[str, Any]:
    """`pipeline.run` options this source needs per destination (`run_load` passes them; the resources also
    declare the same as `tables.STORAGE_HINTS`, so that a plain `pipeline.run` gets them too).

    filesystem: Delta tables, because plain parquet files cannot be merged (steps would duplicate).
    postgres: parquet loaded through ADBC, because dlt's CSV COPY turns empty strings into NULL."""
    if destination_name == "filesystem":
        return {"table_format": "delta"}
    if destination_name == "postgres":
        return {"loader_file_format": "parquet"}
    return {}
