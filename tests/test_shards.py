"""Shards share one dataset: one `wandb-source load` (the pipeline script) per project, each its own
pipeline, run at the same time into one Postgres dataset, one Delta folder and one DuckDB file — every step
exactly once, one column per W&B key whichever shard saw it, and `metric_columns` agreeing with every
shard."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import dlt
import psycopg2
import pytest

from tests.helpers import POSTGRES_DSN, assert_history_equals_emulator, history_columns, rows
from tests.test_pipeline_script import ROOT, project_dir
from wandb_source.emulator import DatasetSpec
from wandb_source.load.shards import dataset_lock

pytestmark = pytest.mark.one_profile  # concurrency of loads, not server behaviour

PROJECTS = ("alpha", "beta")
# each project logs a spelling or a kind of a key that the other logs differently: named by whoever saw it
# first, these would share a column (`val_acc`) or put text and numbers in one (`status`)
COLLIDING = {"alpha": {"val/acc": 0.5, "status": "ok", "Loss": 1.5}, "beta": {"val_acc": 0.7, "status": 2.0, "loss": 0.25}}


def _grow(emu, project: str, steps: int, extra: dict) -> None:
    for run in emu.store.project("emulator", project).runs.values():
        last = run.history.last_step if run.history.last_step is not None else -1
        emu.store.append_steps("emulator", project, run.name, [
            {"_step": last + i, "_runtime": 100.0 + i, "_timestamp": 1.8e9 + last + i, **extra} for i in range(1, steps + 1)])


def _shard(cwd, emu, dataset: str, env: dict, project: str, **popen) -> subprocess.Popen:
    """`wandb-source load` of one project as pipeline `shard_<project>` into `dataset`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    environ.update({"DLT_DATA_DIR": str(cwd / "dlt_home"), "WANDB_BASE_URL": emu.url, "WANDB_API_KEY": emu.api_key,
                    "PYTHONPATH": str(ROOT), **env})
    popen = popen or {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen([sys.executable, str(cwd / "pipelines" / "wandb_pipeline.py"), "--project",
                             f"emulator/{project}", "--pipeline-name", f"shard_{project}", "--dataset", dataset],
                            cwd=cwd, env=environ, text=True, **popen)


@pytest.fixture
def where(tmp_path, request):
    """(project folder, dataset, environment, dlt destination) of `request.param`; Postgres schemas dropped after."""
    destination = request.param
    cwd = project_dir(tmp_path, destination)
    dataset = f"shards_{uuid.uuid4().hex[:8]}"
    lake = (tmp_path / "lake").as_uri()
    env = {"DESTINATION__FILESYSTEM__BUCKET_URL": lake} if destination == "filesystem" else {}
    target = (dlt.destinations.filesystem(bucket_url=lake) if destination == "filesystem"
              else dlt.destinations.postgres(POSTGRES_DSN) if destination == "postgres"
              else dlt.destinations.duckdb(str(cwd / "wandb_pipeline.duckdb")))
    if destination == "duckdb":  # every shard into the one DuckDB file
        env = {"DESTINATION__DUCKDB__CREDENTIALS": str(cwd / "wandb_pipeline.duckdb")}
    yield cwd, dataset, env, target
    if destination == "postgres":
        with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT nspname FROM pg_namespace WHERE nspname LIKE '{dataset}%'")
            for (schema,) in cur.fetchall():
                cur.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _attach(cwd, project: str, destination, dataset: str) -> dlt.Pipeline:
    """The shard's pipeline (its state and schema, from its working folder), with explicit credentials."""
    return dlt.pipeline(f"shard_{project}", pipelines_dir=str(cwd / "dlt_home" / "pipelines"),
                        destination=destination, dataset_name=dataset)


@pytest.mark.parametrize("where", ["postgres", "filesystem", "duckdb"], indirect=True)
def test_shards_load_one_dataset_at_once(make_emulator, where):
    cwd, dataset, env, target = where
    emu = make_emulator(DatasetSpec(projects=PROJECTS, runs=4, steps=60))
    for project in PROJECTS:
        _grow(emu, project, 2, COLLIDING[project])
    for load in ("first", "second"):
        shards = [_shard(cwd, emu, dataset, env, project) for project in PROJECTS]
        for shard in shards:
            out, err = shard.communicate(timeout=300)
            assert shard.returncode == 0, f"{load} load: {err[-3000:]}"
        pipelines = {project: _attach(cwd, project, target, dataset) for project in PROJECTS}
        for project, pipeline in pipelines.items():
            assert_history_equals_emulator(pipeline, emu, project)
        _assert_one_column_per_key(pipelines)
        for project in PROJECTS:  # the second load: new steps in every run, new keys in one project
            _grow(emu, project, 3, {"late/key": 1.0} if project == "beta" else {})


@pytest.mark.parametrize("where", ["postgres", "filesystem"], indirect=True)
def test_a_shard_waits_while_another_writes_the_dataset(tmp_path, make_emulator, where):
    """Deterministic where the test above depends on timing: with the dataset's lock held, a shard fetches
    but does not write; released, it loads."""
    cwd, dataset, env, target = where
    emu = make_emulator(DatasetSpec(projects=("alpha",), runs=2, steps=10))
    holder = dlt.pipeline("holder", destination=target, dataset_name=dataset, pipelines_dir=str(tmp_path / "holder"))
    log = tmp_path / "shard.log"
    with dataset_lock(holder), open(log, "w") as stderr:
        shard = _shard(cwd, emu, dataset, env, "alpha", stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 120
        while "another pipeline is loading into" not in log.read_text() and time.monotonic() < deadline:
            assert shard.poll() is None, f"the shard finished while the dataset was locked: {log.read_text()[-2000:]}"
            time.sleep(0.2)
        assert "another pipeline is loading into" in log.read_text()
        time.sleep(1)
        assert shard.poll() is None, "the shard did not wait for the lock"
    assert shard.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert len(rows(_attach(cwd, "alpha", target, dataset), "runs")) == 2


def _assert_one_column_per_key(pipelines: dict) -> None:
    any_pipeline = next(iter(pipelines.values()))
    table = rows(any_pipeline, "metric_columns")
    recorded = {(r["table_name"], r["key"], r["kind"]): r["column_name"] for r in table}
    assert len(recorded) == len(table), "a key recorded twice in metric_columns"
    for pipeline in pipelines.values():  # every shard put each key where the table says
        for (key, kind), column in history_columns(pipeline).items():
            assert recorded[("history", key, kind)] == (column or None), (pipeline.pipeline_name, key, kind)
    history = [(k, c) for (t, k, _), c in recorded.items() if t == "history" and c]
    assert len({c for _, c in history}) == len(history), "two W&B keys share a history column"
    assert {("val/acc", "number"), ("val_acc", "number"), ("status", "text"), ("status", "number")} <= {
        (k, kind) for (t, k, kind) in recorded if t == "history"}


def test_a_schema_change_another_pipeline_made_first_is_retried(tmp_path, monkeypatch):
    """dlt's advice for pipelines racing on one dataset: a failed schema update is safe to load again."""
    from dlt.common.destination.exceptions import SchemaUpdateTransientError
    from dlt.pipeline.exceptions import PipelineStepFailed

    from wandb_source.load import runner

    pipeline = dlt.pipeline("race", destination=dlt.destinations.duckdb(str(tmp_path / "race.duckdb")),
                            dataset_name="race", pipelines_dir=str(tmp_path / "pipelines"))
    calls = []

    def run(*args, **kwargs):
        calls.append(args)
        if len(calls) < 3:
            cause = RuntimeError('relation "history" already exists')
            try:
                raise SchemaUpdateTransientError("wandb", ["history"], cause)
            except SchemaUpdateTransientError as e:
                raise PipelineStepFailed(pipeline, "load", "1", e) from e
        return None

    monkeypatch.setattr(pipeline, "run", run)
    monkeypatch.setattr(runner.time, "sleep", lambda seconds: None)
    assert runner._normalize_and_load(pipeline) is None and len(calls) == 3
    calls.clear()
    monkeypatch.setattr(runner, "SCHEMA_RACE_RETRIES", 1)
    with pytest.raises(PipelineStepFailed):
        runner._normalize_and_load(pipeline)
    assert len(calls) == 2
