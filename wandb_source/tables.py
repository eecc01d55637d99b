"""Table contracts: each table's key and column hints, and the write disposition every table shares.

Each resource passes its table's entry to dlt (`source.py`: in the decorator of a resource that sends one
table; per item, `load.jobs.table_item`, for the transformers that send several, because dlt copies a
decorator's columns into every table a resource sends). `tests/test_tables.py` fails when a load sends a
table missing here, or a key or type differs; `tests/test_docs.py` when the README's Tables section misses one.
"""

from __future__ import annotations

from typing import Any

from dlt.common.schema.typing import TWriteDispositionConfig

RUN_KEY = ("entity", "project", "run_id")
HISTORY_KEY = (*RUN_KEY, "_step")
SYSTEM_METRICS_KEY = (*RUN_KEY, "_timestamp")
KEY_VALUE_KEY = (*RUN_KEY, "key")
# columns of `history` / `system_metrics` that are ours: a W&B key with one of these names gets a suffix
OWN_METRIC_COLUMNS = (*RUN_KEY, "_step", "_timestamp", "_runtime", "_deleted")
OWN_SYSTEM_METRIC_COLUMNS = (*OWN_METRIC_COLUMNS, "_sampled")

# every table is merged on its key (upsert: idempotent, so a repeated or resumed load never duplicates)
MERGE: TWriteDispositionConfig = {"disposition": "merge", "strategy": "upsert"}
# what every table needs whatever `pipeline.run` is given, declared on each resource (`with_storage_hints`):
# Delta on the filesystem destination (plain parquet files cannot be merged: steps would duplicate; other
# destinations ignore it), parquet files (Postgres then loads through ADBC: dlt's CSV COPY turns empty
# strings into NULL)
STORAGE_HINTS: dict[str, Any] = {"table_format": "delta", "file_format": "parquet"}


def with_storage_hints(resources: Any) -> Any:
    """`resources` (a tuple of dlt resources), each declaring `STORAGE_HINTS`."""
    for resource in resources:
        resource.apply_hints(**STORAGE_HINTS)
    return resources


def _typed(data_type: str, *names: str) -> dict[str, Any]:
    return {name: {"data_type": data_type} for name in names}


RUN_COLUMNS: dict[str, Any] = {
    **_typed("text", "entity", "project", "run_id", "storage_id", "display_name", "state", "group", "job_type",
             "sweep", "user", "host", "commit", "notes", "description", "url"),
    **_typed("timestamp", "created_at", "updated_at", "heartbeat_at", "deleted_at"),
    **_typed("double", "runtime"), **_typed("bigint", "history_line_count", "last_step"),
    **_typed("json", "tags", "config", "wandb_internal", "summary", "system_metrics"),
}
HARD_DELETE = {"_deleted": {"data_type": "bool", "hard_delete": True}}  # tombstones after a rewind
# every table, in the order the command line reports them; keys and column hints per table
TABLE_HINTS: dict[str, Any] = {
    "projects": {"primary_key": ("entity", "name"),
                 "columns": {**_typed("text", "entity", "name", "id", "description"), **_typed("timestamp", "created_at")}},
    "runs": {"primary_key": RUN_KEY, "columns": RUN_COLUMNS},
    "run_config": {"primary_key": KEY_VALUE_KEY},
    "run_summary": {"primary_key": KEY_VALUE_KEY},
    "run_metadata": {"primary_key": RUN_KEY, "columns": _typed("timestamp", "started_at", "heartbeat_at")},
    "metric_axes": {"primary_key": (*RUN_KEY, "metric"),
                    "columns": {**_typed("text", "metric", "step_metric", "goal"), **_typed("bool", "is_glob", "hidden"),
                                **_typed("json", "summary")}},
    "artifacts": {"primary_key": (*RUN_KEY, "direction", "artifact_id"),
                  "columns": {**_typed("text", "direction", "artifact_id", "name", "type", "version", "digest",
                                       "state", "description"),
                              **_typed("bigint", "size", "file_count"), **_typed("json", "aliases", "metadata"),
                              **_typed("timestamp", "created_at", "updated_at")}},
    "history": {"primary_key": HISTORY_KEY, "columns": HARD_DELETE},
    "history_long": {"primary_key": (*HISTORY_KEY, "key")},
    "system_metrics": {"primary_key": SYSTEM_METRICS_KEY, "columns": {"_sampled": {"data_type": "bool"}}},
    "system_metrics_long": {"primary_key": (*SYSTEM_METRICS_KEY, "key")},
    "sweeps": {"primary_key": ("entity", "project", "sweep_id")},
    "metric_columns": {"primary_key": ("table_name", "key", "kind"),
                       "columns": _typed("text", "table_name", "key", "kind", "column_name", "long_table")},
    # per run and resource, what was loaded: change signature and cursor (state.py, RunCursors)
    "run_cursors": {"primary_key": (*RUN_KEY, "resource"),
                    "columns": {**_typed("text", "resource", "signature", "entry"), **HARD_DELETE}},
}
