"""Repairs after a killed load (wandb_source/load/dlt_internals.py), each made to happen on purpose; the dlt version gate."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import assert_history_equals_emulator, drop_dataset, load, make_pipeline
from wandb_source.load.dlt_internals import check_dlt_version, repair_interrupted_normalize, reset_interrupted_merges

pytestmark = pytest.mark.one_profile  # dlt's working folder after a kill: the server profile does not change it


@pytest.mark.parametrize("destination", ["duckdb", "postgres"])
def test_a_half_copied_merge_starts_over(tmp_path, emulator, destination):
    """The states a kill leaves: history's file already copied into the staging table, its job not
    recorded, MERGE not yet created (resumed as is, the rows are merged twice); a staging table
    without a column of the package (the copy fails on every run); the state row inserted but its
    job not recorded (Postgres refuses the second insert on every run)."""
    pipeline = make_pipeline(destination, tmp_path)
    try:
        load(pipeline, emulator)
        load_id = pipeline.list_completed_load_packages()[-1]
        loads = Path(pipeline.working_dir) / "load"
        package = loads / "normalized" / load_id
        (loads / "loaded" / load_id).rename(package)  # staging still holds the copied rows
        (package / "package_completed.json").unlink()
        for job in (package / "completed_jobs").glob("history.*"):
            job.unlink() if job.suffix == ".sql" else job.rename(package / "started_jobs" / job.name)
        for job in (package / "completed_jobs").glob("_dlt_pipeline_state.*"):  # inserted, not recorded
            job.rename(package / "started_jobs" / job.name)
        with pipeline.sql_client() as client:
            client.execute_sql(f"DELETE FROM {client.make_qualified_table_name('history')}")
            with client.with_staging_dataset():  # and a column the re-normalized package does not add
                client.execute_sql(f"ALTER TABLE {client.make_qualified_table_name('history')} DROP COLUMN train__loss")
        if os.environ.get("WANDB_SOURCE_TEST_WITHOUT_RESET") != "1":  # =1 shows the test failing
            assert reset_interrupted_merges(pipeline) == ["history"]
        pipeline.load().raise_on_failed_jobs()
        assert_history_equals_emulator(pipeline, emulator)
        with pipeline.sql_client() as client:
            state_rows = client.execute_sql(f"SELECT count(*) FROM {client.make_qualified_table_name('_dlt_pipeline_state')}"
                                            f" WHERE _dlt_load_id = '{load_id}'")[0][0]
        assert state_rows == 1
    finally:
        drop_dataset(pipeline)


def test_extracted_copy_of_a_committed_package_is_dropped(tmp_path, emulator):
    """Killed between dlt's rename to load/normalized and the delete of normalize/extracted."""
    pipeline = make_pipeline("duckdb", tmp_path)
    pipeline.extract(_source(emulator))
    load_id = pipeline.list_extracted_load_packages()[0]
    extracted = Path(pipeline.working_dir) / "normalize" / "extracted" / load_id
    saved = tmp_path / "saved"
    shutil.copytree(extracted, saved)
    pipeline.normalize()
    shutil.copytree(saved, extracted)  # the state a kill leaves behind
    with pytest.raises(Exception, match="Directory not empty"):
        pipeline.normalize()
    assert repair_interrupted_normalize(pipeline) == [load_id]
    pipeline.normalize()
    pipeline.load().raise_on_failed_jobs()
    assert_history_equals_emulator(pipeline, emulator)


def _source(emulator):
    from wandb_source import wandb_source

    return wandb_source(entity="emulator", base_url=emulator.url, api_key=emulator.api_key)


def test_dlt_versions_outside_the_tested_range_are_named_in_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_dlt_version("1.31.0") and check_dlt_version("1.99.2")
    for version in ("1.30.4", "2.0.0"):
        with pytest.warns(RuntimeWarning, match=f"dlt {version} is installed"):
            assert not check_dlt_version(version)


def test_duckdb_memory_is_sized_for_each_load_and_the_environment_restored(tmp_path, monkeypatch):
    """Two loads in one process, the second with a much wider table: each load's DuckDB connection gets the
    limit of its own schema (the environment route is read per load), and nothing is left in os.environ."""
    import dlt
    import pyarrow as pa
    from dlt.destinations.impl.duckdb.configuration import DuckDbConnectionPool

    from wandb_source.load.destination import duckdb_memory_limit
    from wandb_source.load.dlt_internals import DUCKDB_GLOBAL_CONFIG
    from wandb_source.load.runner import run_load

    monkeypatch.delenv(DUCKDB_GLOBAL_CONFIG, raising=False)
    applied: list[str] = []
    real_apply = DuckDbConnectionPool._apply_config

    def spy(conn, scope, config):
        real_apply(conn, scope, config)
        if scope == "GLOBAL":
            applied.append(conn.execute("SELECT current_setting('memory_limit')").fetchone()[0])

    monkeypatch.setattr(DuckDbConnectionPool, "_apply_config", staticmethod(spy))
    pipeline = dlt.pipeline("sizing", destination=dlt.destinations.duckdb(str(tmp_path / "s.duckdb")),
                            dataset_name="d", pipelines_dir=str(tmp_path / "pipelines"))
    limits = []
    for width in (5, 200):
        applied.clear()
        table = pa.table({f"c{i}": [i] for i in range(width)})  # Arrow, as history: widths known at extract
        run_load(pipeline, dlt.resource([table], name=f"wide_{width}"))
        limits.append(duckdb_memory_limit(pipeline.default_schema))
        assert applied and DUCKDB_GLOBAL_CONFIG not in os.environ
        value, unit = applied[-1].split()  # the load's connection, e.g. "122.0 MiB"
        assert unit == "MiB" and abs(float(value) * 2**20 / 1e6 - int(limits[-1].removesuffix("MB"))) < 1, applied
    assert limits == ["128MB", "600MB"]  # 200 columns, 3 MB each
