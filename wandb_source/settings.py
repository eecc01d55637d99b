"""Defaults, table names and W&B constants."""

from __future__ import annotations

# -- paging and concurrency ------------------------------------------------------------------
RUNS_PAGE_SIZE = 500  # runs per listing page (the light fragment is small)
DETAIL_BATCH_SIZE = 50  # changed runs fetched in full per request (`name: {"$in": [...]}`)
HISTORY_PAGE_SIZE = 1000  # rows per HistoryPage request
EVENTS_SAMPLES = 1_000_000  # `events(samples:)` is sampled: ask for more than any run has
MAX_WORKERS = 8  # runs whose history is fetched at the same time

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

# -- W&B -------------------------------------------------------------------------------------
WANDB_INTERNAL_CONFIG_KEYS = ("_wandb", "wandb_version")
RESERVED_HISTORY_KEYS = ("_step", "_timestamp", "_runtime")
APP_URL_FALLBACK = "https://wandb.ai"
