"""Shards: several pipelines (one per group of projects, or per API key) loading one dataset at once.

They fetch from W&B in parallel — the slow part — and take turns on the dataset: `dataset_lock` holds a lock
named after the dataset while a pipeline writes to it. Without turns, two loads that both see a W&B key for
the first time both insert its `metric_columns` row (a duplicate-key failure on Postgres, the row twice in a
Delta table: both seen in tests/test_shards.py without the lock), and two schema changes of one table race.
Column names need no lock: they are a pure function of the key (`convert/columns.py`).

- Postgres: a session advisory lock (`pg_advisory_lock`) on the dataset's name, on a connection of its own
  (released when the connection closes, also when the process dies).
- Filesystem destination on a local path, and DuckDB: an exclusive `flock` on a file next to the dataset
  (DuckDB: next to the database file, for the whole run — DuckDB lets one process open a database to write).
- Elsewhere (a bucket, other warehouses) there is no lock: run shards of one dataset apart in time, or give
  each its own dataset (README, "At scale").
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
from dlt.common import logger

LOCK_SUFFIX = ".wandb_source.lock"


def destination_name(pipeline: dlt.Pipeline) -> str | None:
    return pipeline.destination.destination_name if pipeline.destination else None


@contextlib.contextmanager
def dataset_lock(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Hold the dataset's lock for the block (Postgres, a local filesystem destination); else do nothing."""
    name = destination_name(pipeline)
    if name == "postgres":
        with _advisory_lock(pipeline):
            yield
    elif name == "filesystem" and (path := _local_dataset_path(pipeline)) is not None:
        with file_lock(path.with_name(path.name + LOCK_SUFFIX), pipeline.dataset_name):
            yield
    else:
        yield


@contextlib.contextmanager
def run_lock(pipeline: dlt.Pipeline) -> Iterator[None]:
    """For DuckDB, the lock of the whole run (extract reads the database too); elsewhere nothing."""
    if destination_name(pipeline) == "duckdb" and (database := _duckdb_path(pipeline)) is not None:
        with file_lock(database.with_name(database.name + LOCK_SUFFIX), pipeline.dataset_name):
            yield
    else:
        yield


@contextlib.contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """An exclusive `flock` on `path` (created if missing), waited for with one log line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("another pipeline is loading into %s: waiting for it to finish (lock %s)", what, path)
            started = time.monotonic()
            fcntl.flock(handle, fcntl.LOCK_EX)
            logger.warning("lock on %s taken after %.1f s", what, time.monotonic() - started)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _advisory_lock(pipeline: dlt.Pipeline) -> Iterator[None]:
    import psycopg2

    credentials: Any = pipeline.destination_client().config.credentials
    key = f"wandb_source:{credentials.database}:{pipeline.dataset_name}"
    connection = psycopg2.connect(credentials.to_native_representation())
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,))
            if not cursor.fetchone()[0]:
                logger.warning("another pipeline is loading into %s: waiting for it to finish", pipeline.dataset_name)
                cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        yield
    finally:
        connection.close()  # releases the lock


def _local_dataset_path(pipeline: dlt.Pipeline) -> Path | None:
    client: Any = pipeline.destination_client()
    if getattr(client.config, "protocol", None) != "file":
        return None
    return Path(client.dataset_path)


def _duckdb_path(pipeline: dlt.Pipeline) -> Path | None:
    database = getattr(pipeline.destination_client().config.credentials, "database", None)  # type: ignore[attr-defined]
    if not database or database == ":memory:":
        return None
    return Path(database).resolve()
