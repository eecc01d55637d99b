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
_RUN_KEY_COLUMNS = _typed("text", *RUN_KEY)
_KEY_VALUE_COLUMNS = {**_RUN_KEY_COLUMNS, **_typed("text", "key", "value_text", "value_json"),
                      **_typed("double", "value_number"), **_typed("bool", "value_bool")}
_STEP = {"_step": {"data_type": "bigint"}}
_TIMESTAMP = {"_timestamp": {"data_type": "timestamp"}}
# every table, in the order the command line reports them; keys and column hints per table
TABLE_HINTS: dict[str, Any] = {
    "projects": {"primary_key": ("entity", "name"),
                 "columns": {**_typed("text", "entity", "name", "id", "description"), **_typed("timestamp", "created_at")}},
    "runs": {"primary_key": RUN_KEY, "columns": RUN_COLUMNS},
    "run_config": {"primary_key": KEY_VALUE_KEY, "columns": _KEY_VALUE_COLUMNS},
    "run_summary": {"primary_key": KEY_VALUE_KEY, "columns": _KEY_VALUE_COLUMNS},
    "run_metadata": {"primary_key": RUN_KEY,
                     "columns": {**_RUN_KEY_COLUMNS, **_typed("timestamp", "started_at", "heartbeat_at"),
                                 **_typed("text", "os", "python", "program", "code_path", "git_remote",
                                          "git_commit", "host", "username", "executable", "gpu"),
                                 **_typed("json", "args"), **_typed("bigint", "cpu_count", "gpu_count")}},
    "metric_axes": {"primary_key": (*RUN_KEY, "metric"),
                    "columns": {**_RUN_KEY_COLUMNS, **_typed("text", "metric", "step_metric", "goal"),
                                **_typed("bool", "is_glob", "hidden"),
                                **_typed("json", "summary")}},
    "artifacts": {"primary_key": (*RUN_KEY, "direction", "artifact_id"),
                  "columns": {**_RUN_KEY_COLUMNS,
                              **_typed("text", "direction", "artifact_id", "name", "type", "version", "digest",
                                       "state", "description"),
                              **_typed("bigint", "size", "file_count"), **_typed("json", "aliases", "metadata"),
                              **_typed("timestamp", "created_at", "updated_at")}},
    "history": {"primary_key": HISTORY_KEY,
                "columns": {**_RUN_KEY_COLUMNS, **_STEP, **_typed("double", "_runtime"), **_TIMESTAMP, **HARD_DELETE}},
    "history_long": {"primary_key": (*HISTORY_KEY, "key"), "columns": {**_KEY_VALUE_COLUMNS, **_STEP}},
    "system_metrics": {"primary_key": SYSTEM_METRICS_KEY,
                       "columns": {**_RUN_KEY_COLUMNS, **_TIMESTAMP, **_typed("double", "_runtime"),
                                   **_typed("bool", "_sampled")}},
    "system_metrics_long": {"primary_key": (*SYSTEM_METRICS_KEY, "key"), "columns": {**_KEY_VALUE_COLUMNS, **_TIMESTAMP}},
    "sweeps": {"primary_key": ("entity", "project", "sweep_id"),
               "columns": {**_typed("text", "entity", "project", "sweep_id", "storage_id", "display_name", "method",
                                    "state", "description", "metric_name", "metric_goal", "config"),
                           **_typed("double", "best_loss"), **_typed("timestamp", "created_at", "updated_at"),
                           **_typed("bigint", "run_count", "run_count_expected")}},
    "metric_columns": {"primary_key": ("table_name", "key", "kind"),
                       "columns": _typed("text", "table_name", "key", "kind", "column_name", "long_table")},
    # per run and resource, what was loaded: change signature and cursor (state.py, RunCursors)
    "run_cursors": {"primary_key": (*RUN_KEY, "resource"),
                    "columns": {**_RUN_KEY_COLUMNS, **_typed("text", "resource", "signature", "entry"), **HARD_DELETE}},
}
# the resources that send a table not named after its resource (`load.empty_tables` creates a table empty
# after a load of one of them that sent no rows of it)
SENT_BY: dict[str, tuple[str, ...]] = {
    "run_config": ("runs",), "run_summary": ("runs",), "metric_axes": ("runs",),
    "history_long": ("history",), "system_metrics_long": ("system_metrics",),
    "metric_columns": ("history", "system_metrics", "logged_tables"),
    "run_cursors": ("runs", "history", "system_metrics", "run_metadata", "artifacts", "logged_tables"),
}
# `logged_tables` sends one table per W&B key that logged a wandb.Table: `wandb_table__<key>`, each with these
LOGGED_TABLE_PREFIX = "wandb_table__"
LOGGED_TABLE_HINTS: dict[str, Any] = {"primary_key": (*HISTORY_KEY, "_row"),
                                      "columns": {**_RUN_KEY_COLUMNS, **_STEP, **_typed("bigint", "_row"),
                                                  **HARD_DELETE}}


def hints_of(table: str) -> dict[str, Any]:
    """`table`'s key and column hints: its TABLE_HINTS entry, or LOGGED_TABLE_HINTS for a logged table's."""
    if table in TABLE_HINTS:
        return dict(TABLE_HINTS[table])
    if table.startswith(LOGGED_TABLE_PREFIX):
        return LOGGED_TABLE_HINTS
    raise KeyError(f"{table!r} is not a table of wandb_source (tables.TABLE_HINTS)")
# tables whose rows reach dlt as dicts, not Arrow: dlt's normalizer adds its `_dlt_load_id` and `_dlt_id`
# columns to these (NOT NULL, so a table created empty must have them from the start)
DICT_ROW_TABLES = frozenset({"projects", "runs", "run_metadata", "metric_axes", "artifacts", "metric_columns",
                             "run_cursors"})
