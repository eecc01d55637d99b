"""Every use of dlt's internals, in one module, checked against the dlt versions it was tested on
(`TESTED_DLT`: a warning names any other). What reaches past dlt's public API, and why:

- `active_pipeline`: the pipeline running an extract (dlt's context container), to read back a run's
  loaded rows (deletions, tombstones after a rewind).
- `delta_table`: a Delta table of the filesystem destination, read with deltalake (no DuckDB extension).
- `duckdb_global_config`: DuckDB settings for one load through dlt's configuration environment (dlt reads
  them when the load opens its DuckDB connection; the environment is restored after).
- The repairs of dlt's working folder and staging tables after the pipeline process was killed
  (SIGKILL, OOM killer) — states that make dlt fail every later run or duplicate rows, all found by
  tests/test_crashes.py and reproduced on purpose in tests/test_recovery.py:

- `repair_interrupted_normalize`: dlt commits a normalized package by renaming `load/new/<id>` to
  `load/normalized/<id>`, then deleting `normalize/extracted/<id>` ("do not kill this process");
  killed between the two, every later run fails with `OSError: [Errno 39] Directory not empty`.
- `reset_interrupted_merges`: jobs of a half-loaded package that committed but were not recorded
  run again on resume (see its docstring for what that breaks and how it is undone).
- `forget_lost_destination`: the local state says data was loaded, but the destination holds none of
  it (the DuckDB file was deleted, the schema dropped): without this, every later run would load
  nothing ("up to date") into an empty database.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
from dlt.common import logger

TESTED_DLT = ((1, 31), (2, 0))  # this module's internals were checked on dlt >= 1.31, < 2


def dlt_version(text: str | None = None) -> tuple[int, int]:
    major, minor = (text or dlt.__version__).split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def check_dlt_version(text: str | None = None) -> bool:
    """True when the installed dlt is one this module was tested on; else one warning that says so."""
    low, high = TESTED_DLT
    if low <= dlt_version(text) < high:
        return True
    warnings.warn(f"wandb_source reaches into dlt internals tested on dlt >={low[0]}.{low[1]},<{high[0]}; "
                  f"dlt {text or dlt.__version__} is installed: crash repair and read-back may not work",
                  RuntimeWarning, stacklevel=2)
    return False


check_dlt_version()


def active_pipeline() -> Any:
    """The pipeline running this extract, or None when the source runs stand-alone.

    Call it on the extract thread: worker threads have no active pipeline (dlt would make a new one)."""
    try:
        from dlt.common.configuration.container import Container
        from dlt.common.pipeline import PipelineContext

        context = Container()[PipelineContext]
        return context.pipeline() if context.is_active() else None
    except Exception:  # noqa: BLE001
        return None


def delta_table(pipeline: Any, table: str) -> Any:
    """The `deltalake.DeltaTable` of `table` on the filesystem destination (raises when there is none)."""
    from dlt.common.libs.deltalake import get_delta_tables

    return get_delta_tables(pipeline, table)[table]


DUCKDB_GLOBAL_CONFIG = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"


def user_set_duckdb_global_config() -> bool:
    """The user configured DuckDB's global settings (environment or config.toml/secrets.toml)."""
    return DUCKDB_GLOBAL_CONFIG in os.environ or bool(dlt.secrets.get("destination.duckdb.credentials.global_config"))


@contextmanager
def duckdb_global_config(config: str) -> Iterator[None]:
    """DuckDB settings (JSON) for the loads inside the block: dlt resolves its destination configuration
    anew for each load and applies them to the connection that load opens. Restored after, so nothing
    leaks into other pipelines of the process."""
    before = os.environ.get(DUCKDB_GLOBAL_CONFIG)
    os.environ[DUCKDB_GLOBAL_CONFIG] = config
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DUCKDB_GLOBAL_CONFIG, None)
        else:
            os.environ[DUCKDB_GLOBAL_CONFIG] = before


def repair_interrupted_normalize(pipeline: Any) -> list[str]:
    """Delete extracted packages whose normalized package was already committed; returns their ids."""
    normalized = set(_listed(pipeline.list_normalized_load_packages)) | set(_listed(pipeline.list_completed_load_packages))
    repaired = []
    for load_id in _listed(pipeline.list_extracted_load_packages):
        if load_id in normalized:
            shutil.rmtree(Path(pipeline.working_dir) / "normalize" / "extracted" / load_id)
            shutil.rmtree(Path(pipeline.working_dir) / "load" / "new" / load_id, ignore_errors=True)
            logger.warning("package %s was normalized before the process was killed; dropped its extracted copy",
                           load_id)
            repaired.append(load_id)
    return repaired


def _listed(packages: Any) -> list[str]:
    """A package listing; empty when the process was killed before dlt created that folder."""
    try:
        return list(packages())
    except FileNotFoundError:
        return []


def reset_interrupted_merges(pipeline: Any) -> list[str]:
    """Prepare the packages a killed load left half-loaded; returns the tables whose merge starts over.

    Loading a package runs job files one by one; a job that committed in the destination but was
    not yet recorded as done runs again on resume. dlt does not expect that: (1) a merge table's
    file is copied into its staging table twice — DuckDB then MERGEs duplicate rows, Postgres
    refuses (`duplicate key ... _dlt_id`) on every later run, because staging tables are emptied
    only when a package starts; (2) the `_dlt_pipeline_state` row is inserted twice — Postgres
    refuses; (3) a package normalized again after a kill carries no schema update for columns the
    killed run already added to the stored schema, so a staging table can miss a column.
    So, for each package whose loading had begun: the columns of its tables are applied (dlt's own
    DDL diff, on the dataset and on staging); each merge table whose MERGE job does not exist yet
    gets an empty staging table and all its copy jobs back to new (MERGE itself is idempotent); a
    state job whose row is already there is recorded as done."""
    if not pipeline.destination or pipeline.destination.destination_name not in SQL_STAGING_DESTINATIONS:
        return []
    reset: list[str] = []
    for load_id in _listed(pipeline.list_normalized_load_packages):
        package = Path(pipeline.working_dir) / "load" / "normalized" / load_id
        jobs = _jobs_by_table(package)
        if all(job.parent.name == "new_jobs" for table_jobs in jobs.values() for job in table_jobs):
            continue  # loading never began: dlt starts it from scratch
        schema = pipeline.get_load_package_info(load_id).schema
        tables = [t for t in jobs if t in schema.tables]
        _apply_columns(pipeline, schema.name, tables,
                       [t for t in tables if schema.tables[t].get("write_disposition") == "merge"])
        with pipeline.sql_client(schema.name) as client:
            for table in tables:
                if schema.tables[table].get("write_disposition") == "merge":
                    if _reset_merge(client, package, table, jobs[table]):
                        reset.append(table)
                elif table == STATE_TABLE:
                    _record_if_committed(client, package, table, jobs[table], load_id)
    if reset:
        logger.warning("restarting the merge of %s: a killed load had copied part of it", ", ".join(reset))
    return reset


SQL_STAGING_DESTINATIONS = ("duckdb", "postgres")
JOB_FOLDERS = ("new_jobs", "started_jobs", "completed_jobs", "failed_jobs")
STATE_TABLE = "_dlt_pipeline_state"


def _jobs_by_table(package: Path) -> dict[str, list[Path]]:
    jobs: dict[str, list[Path]] = {}
    for folder in JOB_FOLDERS:
        for job in (package / folder).glob("*"):
            jobs.setdefault(job.name.split(".")[0], []).append(job)
    return jobs


def _reset_merge(client: Any, package: Path, table: str, jobs: list[Path]) -> bool:
    copies = [j for j in jobs if j.suffix != ".sql"]
    touched = [j for j in copies if j.parent.name != "new_jobs"]
    if len(copies) < len(jobs) or not touched:
        return False  # MERGE created (it runs on a complete staging table), or no copy started yet
    with client.with_staging_dataset():
        client.execute_sql(f"DELETE FROM {client.make_qualified_table_name(table)}")
    for job in touched:
        job.rename(package / "new_jobs" / job.name)
    return True


def _record_if_committed(client: Any, package: Path, table: str, jobs: list[Path], load_id: str) -> None:
    started = [j for j in jobs if j.parent.name == "started_jobs"]
    if not started:
        return
    literal = "'" + load_id.replace("'", "''") + "'"
    rows = client.execute_sql(f"SELECT count(*) FROM {client.make_qualified_table_name(table)} "
                              f"WHERE _dlt_load_id = {literal}")[0][0]
    if rows:
        for job in started:
            job.rename(package / "completed_jobs" / job.name)


def _apply_columns(pipeline: Any, schema_name: str, tables: list[str], staged: list[str]) -> None:
    """Create missing tables and columns of `tables` in the dataset, and of `staged` in staging."""
    with pipeline.destination_client(schema_name) as client:
        client.update_stored_schema(only_tables=tables, force=True)
        if staged:
            with client.with_staging_dataset():
                client.update_stored_schema(only_tables=staged, force=True)


def forget_lost_destination(pipeline: Any) -> bool:
    """Drop the local state when the destination has no dataset although the state says loads happened;
    the next extract then loads everything. Returns True when it did. Not while packages are pending."""
    if pipeline.has_pending_data or not pipeline.default_schema_name or not pipeline.state.get("sources"):
        return False
    try:
        with pipeline.destination_client() as client:
            if client.is_storage_initialized():
                return False
    except Exception as e:  # noqa: BLE001 - cannot tell (e.g. the destination is down): change nothing
        logger.info("could not check the destination of %s: %s", pipeline.pipeline_name, e)
        return False
    logger.warning("the destination holds no dataset %s although pipeline %s loaded into it before (deleted or "
                   "replaced?): forgetting the local state and loading everything again",
                   pipeline.dataset_name, pipeline.pipeline_name)
    pipeline.drop()
    return True

