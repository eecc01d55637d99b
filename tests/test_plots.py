"""pipelines/plot_runs.py and the curves it reads (wandb_source/curves.py), against the emulator."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import pytest

from tests.helpers import DESTINATIONS, drop_dataset, load, make_pipeline
from tests.test_exports import _env
from tests.test_pipeline_script import ROOT, project_dir, run_script
from wandb_source.readback.curves import curve, find_runs

pytestmark = pytest.mark.one_profile  # reading a loaded dataset back: the server profile does not change it

ENTITY, PROJECT = "emulator", "demo"


def logged(run, key: str) -> dict:
    return {r["_step"]: float(r[key]) for r in run.history.rows()
            if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])}


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_curves_are_the_logged_values(tmp_path, emulator, destination):
    pipeline = make_pipeline(destination, tmp_path)
    try:
        load(pipeline, emulator)
        run = max(emulator.store.project(ENTITY, PROJECT).runs.values(), key=lambda r: len(r.history))
        (row,) = find_runs(pipeline, [run.display_name], 10)
        loss = curve(pipeline, row, "train/loss")
        assert loss.x_key == "_step" and loss.points == sorted((float(s), v) for s, v in logged(run, "train/loss").items())
        evals = curve(pipeline, row, "eval/loss")  # define_metric: plotted against epoch
        epochs = logged(run, "epoch")
        assert evals.x_key == "epoch" and evals.points == sorted(
            (epochs[s], v) for s, v in logged(run, "eval/loss").items() if s in epochs)
        assert len(find_runs(pipeline, [], 3)) == 3
    finally:
        drop_dataset(pipeline)


def test_script_writes_a_png_and_explains_bad_names(tmp_path, emulator):
    cwd = project_dir(tmp_path, "duckdb")
    shutil.copy(ROOT / "pipelines" / "plot_runs.py", cwd / "pipelines")
    assert run_script(cwd, emulator).returncode == 0
    run = max(emulator.store.project(ENTITY, PROJECT).runs.values(), key=lambda r: len(r.history))

    def plot(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(cwd / "pipelines" / "plot_runs.py"), *args], cwd=cwd,
                              env=_env(cwd), capture_output=True, text=True, timeout=300)

    done = plot("--metric", "train/loss", "--run", run.name, "--out", str(tmp_path / "loss.png"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"1 run(s), {len(logged(run, 'train/loss')):,} points" in done.stdout
    bad = plot("--metric", "no/such/metric")
    assert bad.returncode == 1 and "no numeric metric 'no/such/metric'" in bad.stderr
    bad = plot("--metric", "train/loss", "--run", "nobody")
    assert bad.returncode == 1 and "no loaded run is called 'nobody'" in bad.stderr
