"""Defaults, table names and W&B constants."""

from __future__ import annotations

from typing import Any

from dlt.common.schema.typing import TWriteDispositionConfig

# -- paging and concurrency ------------------------------------------------------------------
# Page sizes are the wandb SDK 0.31's (no server maximum is documented; W&B may clamp `first`).
RUNS_PAGE_SIZE = 50  # runs per listing page: `api.runs(per_page=50)`
PROJECTS_PAGE_SIZE = 50  # `api.projects()` (GetProjects, first: 50)
SWEEPS_PAGE_SIZE = 50  # `api.sweeps()` (GetSweeps, first: 50)
DETAIL_BATCH_SIZE = 50  # changed runs fetched in full per request (`name: {"$in": [...]}`), the SDK's full page
HISTORY_PAGE_SIZE = 1000  # rows per HistoryPage window: `scan_history(page_size=1000)`
EVENTS_SAMPLES = 1_000_000  # `events(samples:)` (only without wandb-events.jsonl): W&B caps it, we say so
MAX_WORKERS = 8  # runs whose history (or metadata file) is fetched at the same time (wandb-core: 10 requests)
ARTIFACTS_PAGE_SIZE = 100  # artifacts per run and direction on a follow-up page: `Run.logged_artifacts(per_page=100)`
ARTIFACTS_NESTED_PAGE_SIZE = 5  # first page of each direction, nested in a batch of runs
ARTIFACTS_PER_REQUEST = 100  # artifact nodes one request may return at most (the SDK's page of 100)
MIRRORED_SDK_VERSION = "0.31.0"  # the SDK whose requests these mirror (User-Agent when wandb is not installed)
PROGRESS_EVERY_SECONDS = 10.0  # how often a long load reports runs done and rows/s (progress.py)
PARALLEL_PARSE_MIN_BYTES = 8_000_000  # run logs to read before worker processes pay off (offline.py)

# -- retries ---------------------------------------------------------------------------------
MAX_RETRIES = 8
BACKOFF_SECONDS = 1.0  # first wait; doubles each retry, with jitter
MAX_BACKOFF_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 60.0

# -- schema ----------------------------------------------------------------------------------
# Postgres allows 1600 columns per table and ~8 KB per row; keys beyond this budget go to the
# long table `history_long` (one row per run, step and key) instead of new columns.
MAX_HISTORY_COLUMNS = 800
MAX_SYSTEM_METRICS_COLUMNS = 800

RUN_KEY = ("entity", "project", "run_id")
HISTORY_KEY = (*RUN_KEY, "_step")
SYSTEM_METRICS_KEY = (*RUN_KEY, "_timestamp")
KEY_VALUE_KEY = (*RUN_KEY, "key")
# columns of `history` / `system_metrics` that are ours: a W&B key with one of these names gets a suffix
OWN_METRIC_COLUMNS = (*RUN_KEY, "_step", "_timestamp", "_runtime", "_deleted")
OWN_SYSTEM_METRIC_COLUMNS = (*OWN_METRIC_COLUMNS, "_sampled")

# every table is merged on its key (upsert: idempotent, so a repeated or resumed load never duplicates)
MERGE: TWriteDispositionConfig = {"disposition": "merge", "strategy": "upsert"}


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
}

# -- W&B -------------------------------------------------------------------------------------
WANDB_INTERNAL_CONFIG_KEYS = ("_wandb", "wandb_version")
RESERVED_HISTORY_KEYS = ("_step", "_timestamp", "_runtime")
