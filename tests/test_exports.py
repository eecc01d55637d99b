"""pipelines/export_parquet.py: the files of the exporter this project replaces, read back."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.helpers import DESTINATIONS, drop_dataset, load, make_pipeline
from tests.test_pipeline_script import ROOT, project_dir, run_script
from wandb_source.readback.export import COMPONENTS, export_parquet

pytestmark = pytest.mark.one_profile  # reading a loaded dataset back: the server profile does not change it

ENTITY, PROJECT = "emulator", "demo"


def server_runs(emulator) -> list:
    return list(emulator.store.project(ENTITY, PROJECT).runs.values())


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_files_hold_every_run_and_step(tmp_path, emulator, destination):
    pipeline = make_pipeline(destination, tmp_path)
    try:
        load(pipeline, emulator)
        written = export_parquet(pipeline, tmp_path / "out")
    finally:
        drop_dataset(pipeline)
    runs = {r.name: r for r in server_runs(emulator)}
    meta = pq.read_table(tmp_path / "out" / "runs_metadata.parquet").to_pylist()
    assert {r["run_id"] for r in meta} == set(runs) and written["runs_metadata.parquet"] == len(runs)
    for row in meta:
        run = runs[row["run_id"]]
        assert (row["run_name"], row["state"], row["entity"], row["project"]) == (
            run.display_name, run.state, ENTITY, PROJECT)
        assert json.loads(row["config"])["lr"] == run.config["lr"]
        assert json.loads(row["metadata"])["host"] == json.loads(run.files["wandb-metadata.json"])["host"]
        assert json.loads(row["sweep_info"])["sweep_id"] == run.sweep_name
    for component in COMPONENTS:
        table = pq.read_table(tmp_path / "out" / f"runs_metadata_{component}.parquet")
        assert table.num_rows == len(runs) and table.column_names[:4] == ["run_id", "run_name", "project", "entity"]
    config = {r["run_id"]: r for r in pq.read_table(tmp_path / "out" / "runs_metadata_config.parquet").to_pylist()}
    assert all(config[name]["lr"] == run.config["lr"] for name, run in runs.items())

    history = pq.read_table(tmp_path / "out" / "runs_history.parquet")
    assert history.num_rows == sum(len(r.history) for r in runs.values()) == written["runs_history.parquet"]
    assert history.column_names[:6] == ["run_id", "run_name", "project", "entity", "step", "timestamp"]
    by_step = {(r["run_id"], r["step"]): r for r in history.to_pylist()}
    for run in runs.values():
        for want in run.history.rows():
            got = by_step[(run.name, want["_step"])]
            assert got["run_name"] == run.display_name
            for key, value in want.items():
                if key.startswith("_") or not isinstance(value, float):
                    continue
                assert (math.isnan(value) and math.isnan(got[key])) or got[key] == value, key


def test_script_writes_the_files_of_the_loaded_dataset(tmp_path, emulator):
    cwd = project_dir(tmp_path, "duckdb")
    shutil.copy(ROOT / "pipelines" / "export_parquet.py", cwd / "pipelines")
    empty = subprocess.run([sys.executable, str(cwd / "pipelines" / "export_parquet.py")], cwd=cwd,
                           env=_env(cwd), capture_output=True, text=True, timeout=300)
    assert empty.returncode == 1 and "load it first: wandb-source load" in empty.stderr
    assert run_script(cwd, emulator).returncode == 0
    done = subprocess.run([sys.executable, str(cwd / "pipelines" / "export_parquet.py"), "--out", str(tmp_path / "x")],
                          cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert pq.read_table(tmp_path / "x" / "runs_metadata.parquet").num_rows == len(server_runs(emulator))
    assert "runs_history.parquet" in done.stdout


def _env(cwd) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    env.update({"DLT_DATA_DIR": str(cwd / "dlt_home"), "PYTHONPATH": str(ROOT)})
    return env
