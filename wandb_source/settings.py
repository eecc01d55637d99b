"""Defaults: page sizes, concurrency, retries, column budgets; W&B constants. Table contracts are in tables.py."""

from __future__ import annotations

# -- paging and concurrency ------------------------------------------------------------------
# Page sizes are the wandb SDK 0.31's (no server maximum is documented; W&B may clamp `first`).
RUNS_PAGE_SIZE = 50  # runs per listing page: `api.runs(per_page=50)`
PROJECTS_PAGE_SIZE = 50  # `api.projects()` (GetProjects, first: 50)
SWEEPS_PAGE_SIZE = 50  # `api.sweeps()` (GetSweeps, first: 50)
DETAIL_BATCH_SIZE = 50  # changed runs fetched in full per request (`name: {"$in": [...]}`), the SDK's full page
HISTORY_PAGE_SIZE = 1000  # rows per HistoryPage window: `scan_history(page_size=1000)`
EVENTS_BATCH_SAMPLES = 1000  # samples per request when finished runs' system metrics are read together
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
MAX_RATE_RESET_SECONDS = 3600.0  # a longer RateLimit-Reset is read as this (an hourly window at most)

# -- schema ----------------------------------------------------------------------------------
# Postgres allows 1600 columns per table and ~8 KB per row; keys beyond this budget go to the
# long table `history_long` (one row per run, step and key) instead of new columns.
MAX_HISTORY_COLUMNS = 800
MAX_SYSTEM_METRICS_COLUMNS = 800
MAX_TABLE_COLUMNS = 1000  # columns of one logged wandb.Table's destination table (a wider one is not loaded)

# -- W&B -------------------------------------------------------------------------------------
WANDB_INTERNAL_CONFIG_KEYS = ("_wandb", "wandb_version")
RESERVED_HISTORY_KEYS = ("_step", "_timestamp", "_runtime")
