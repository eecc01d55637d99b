"""SIGKILL the real pipeline process during extract, normalize and load, on each destination, while
the W&B data keeps changing; then run it again to completion and compare the destination with the
emulator: every step exactly once, every value equal, the runs table current.

The phase a kill lands in is read off dlt's working folder (what an operator would see):
extract = a package being written under `normalize/<tmp>/`, normalize = a package in
`normalize/extracted/` or `load/new/`, load = a package in `load/normalized/`.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dlt
import pytest

from tests.helpers import POSTGRES_DSN, assert_history_equals_emulator, drop_dataset, rows
from tests.test_pipeline_script import project_dir

KILLS_PER_DESTINATION = 21  # 7 per phase
PHASES = ("extract", "normalize", "load")
# how long after a phase is first seen the kill may land (each phase of a demo load lasts about this long)
WINDOW = {"extract": 0.8, "normalize": 0.1, "load": 0.4}
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


LOAD_ID = re.compile(r"\d+\.\d+")


def packages(folder: Path) -> list[Path]:
    """Load packages in `folder` (named by load id; killed steps leave temp folders beside them)."""
    return [p for p in folder.glob("*") if LOAD_ID.fullmatch(p.name)] if folder.exists() else []


def phase(workdir: Path, old_temp: set) -> str | None:
    try:
        if packages(workdir / "load" / "normalized"):
            return "load"
        if packages(workdir / "normalize" / "extracted") or packages(workdir / "load" / "new"):
            return "normalize"
        staging = workdir / "normalize"
        if staging.exists() and any(packages(p) for p in staging.iterdir() if p.is_dir() and p.name not in old_temp):
            return "extract"
    except FileNotFoundError:  # dlt renamed a folder while we looked
        pass
    return None


def start(cwd: Path, emulator) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    env.update({"DLT_DATA_DIR": str(cwd / "dlt_home"), "WANDB_BASE_URL": emulator.url,
                "WANDB_API_KEY": emulator.api_key, "PYTHONPATH": str(ROOT)})
    logs = cwd / "logs"
    logs.mkdir(exist_ok=True)
    path = logs / f"{len(list(logs.iterdir())):03d}.txt"  # each attempt's output, for a failure
    with open(path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(cwd / "pipelines" / "wandb_pipeline.py")], cwd=cwd, env=env,
                                stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = path
    return proc


def kill_during(cwd: Path, emulator, target: str, rng: random.Random, window: dict) -> bool:
    """Start the pipeline and SIGKILL it a random moment after `target` begins; False if it finished
    first (the phase's window then shrinks: on a loaded machine phases are shorter than guessed)."""
    workdir = cwd / "dlt_home" / "pipelines" / "wandb_pipeline"
    staging = workdir / "normalize"
    old_temp = {p.name for p in staging.iterdir()} if staging.exists() else set()
    proc = start(cwd, emulator)
    delay, seen_at = rng.uniform(0, window[target]), None
    while proc.poll() is None:
        now = time.monotonic()
        if seen_at is None and phase(workdir, old_temp) == target:
            seen_at = now
        if seen_at is not None and now - seen_at >= delay:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.003)
    assert proc.returncode == 0, proc.log.read_text()[-3000:]
    window[target] /= 2
    return False


def change_something(emulator, rng: random.Random, round_: int) -> None:
    """New data arrives between crashes: steps appended to a running run, a run edited."""
    runs = list(emulator.store.project("emulator", "demo").runs.values())
    running = [r for r in runs if r.state == "running" and len(r.history)]
    run = rng.choice(running)
    last = run.history.last_step
    emulator.store.append_steps("emulator", "demo", run.name, [
        {"_step": last + i, "_runtime": 2000.0 + i, "_timestamp": 1.8e9 + round_ * 100 + i, "train/loss": rng.random(),
         f"crash/round_{round_ % 3}": float(i)} for i in range(1, 4)])
    emulator.store.update_run("emulator", "demo", rng.choice(runs).name, notes=f"edited in round {round_}")


def attach(cwd: Path, destination: str) -> dlt.Pipeline:
    dest = {"duckdb": lambda: dlt.destinations.duckdb(str(cwd / "wandb_pipeline.duckdb")),
            "postgres": lambda: dlt.destinations.postgres(POSTGRES_DSN),
            "filesystem": lambda: dlt.destinations.filesystem(bucket_url=(cwd / "_data" / "wandb_files").as_uri()),
            }[destination]()
    return dlt.pipeline("wandb_pipeline", destination=dest, dataset_name="wandb_data",
                        pipelines_dir=str(cwd / "dlt_home" / "pipelines"))


def assert_runs_current(pipeline: dlt.Pipeline, emulator) -> None:
    loaded = rows(pipeline, "runs")
    assert len({r["run_id"] for r in loaded}) == len(loaded), "duplicate runs"
    by_id = {r["run_id"]: r for r in loaded}
    for run in emulator.store.project("emulator", "demo").runs.values():
        assert by_id[run.name]["notes"] == run.notes, run.name
        assert by_id[run.name]["updated_at"] == run.updated_at, run.name


@pytest.mark.parametrize("destination", ["duckdb", "postgres", "filesystem"])
def test_sigkill_at_random_points_then_rerun_loads_every_step_once(tmp_path, make_emulator, destination):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    emulator = make_emulator(latency=0.01)
    cwd = project_dir(tmp_path, destination)
    killed: dict[str, int] = dict.fromkeys(PHASES, 0)
    window = dict(WINDOW)
    try:
        attempts = 0
        while sum(killed.values()) < KILLS_PER_DESTINATION:
            attempts += 1
            assert attempts < KILLS_PER_DESTINATION * 6, f"kills landed: {killed} (seed {seed})"
            target = min(PHASES, key=lambda p: killed[p])
            if kill_during(cwd, emulator, target, rng, window):
                killed[target] += 1
            change_something(emulator, rng, attempts)
        done = start(cwd, emulator)
        assert done.wait(300) == 0, done.log.read_text()[-3000:]
        pipeline = attach(cwd, destination)
        assert_history_equals_emulator(pipeline, emulator)
        assert_runs_current(pipeline, emulator)
    finally:
        if destination == "postgres":
            drop_dataset(attach(cwd, destination))
    assert all(n >= 7 for n in killed.values()), killed
