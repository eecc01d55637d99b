"""Run logs written by the real wandb SDK in offline mode (no network, no key), loaded with
`wandb_offline_source` and compared value by value with what the script logged."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dlt
import pytest

from tests.helpers import rows
from tests.wandb_emulator import DatasetSpec
from wandb_source.offline import wandb_offline_source
from wandb_source.runlog import LogEnd, read_records

STEPS = 40
LOGGING = f"""
import math, wandb
run = wandb.init(project="offline-proj", entity="lab", config={{"lr": 0.01, "opt": {{"name": "adam", "betas": [0.9, 0.99]}}}},
                 tags=["a", "b"], notes="two\\nlines")
for i in range({STEPS}):
    row = {{"loss": 1.0 / (i + 1), "acc": i / {STEPS}, "weird": [math.nan, math.inf, -math.inf, -0.0][i % 4],
           "phase": "warmup" if i < 5 else "train", "nested": {{"a": {{"b": i}}}}}}
    if i % 10 == 0:
        row["hist"] = wandb.Histogram(np_histogram=([i, 1, 2], [0.0, 0.5, 1.0, 1.5]))
        row["eval/acc"] = i / 100
    run.log(row)
run.summary["best"] = 0.5
run.finish()
"""


def logged_row(i: int) -> dict:
    row = {"loss": 1.0 / (i + 1), "acc": i / STEPS, "weird": [math.nan, math.inf, -math.inf, -0.0][i % 4],
           "phase": "warmup" if i < 5 else "train", "nested": {"a": {"b": i}}}
    if i % 10 == 0:
        row["hist"] = {"_type": "histogram", "values": [i, 1, 2], "bins": [0.0, 0.5, 1.0, 1.5]}
        row["eval/acc"] = i / 100
    return row


@pytest.fixture(scope="module")
def run_log(tmp_path_factory) -> Path:
    """One finished offline run, written by the wandb SDK (about a second)."""
    root = tmp_path_factory.mktemp("offline")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(root), "WANDB_ERROR_REPORTING": "false",
           "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    env.pop("WANDB_API_KEY", None)
    subprocess.run([sys.executable, "-c", LOGGING], env=env, check=True, timeout=120)
    (log,) = root.rglob("*.wandb")
    return log


def pipeline_for(tmp_path) -> dlt.Pipeline:
    return dlt.pipeline("offline_test", destination=dlt.destinations.duckdb(str(tmp_path / "off.duckdb")),
                        dataset_name="wandb_data", pipelines_dir=str(tmp_path / "pipelines"))


def column_of(pipeline: dlt.Pipeline, key: str, kind: str) -> str:
    return pipeline.state["sources"]["wandb"]["resources"]["history"]["columns"][key][kind]


def test_every_step_and_value_as_logged(tmp_path, run_log):
    (tmp_path / "logs").mkdir()
    shutil.copytree(run_log.parent, tmp_path / "logs" / run_log.parent.name)
    pipeline = pipeline_for(tmp_path)
    pipeline.run(wandb_offline_source(str(tmp_path / "logs")))
    history = sorted(rows(pipeline, "history"), key=lambda r: r["_step"])
    assert [r["_step"] for r in history] == list(range(STEPS))
    for got in history:
        want = logged_row(got["_step"])
        assert got["entity"] == "lab" and got["project"] == "offline-proj"
        for key, value in want.items():
            kind = "json" if isinstance(value, dict) else "text" if isinstance(value, str) else "number"
            loaded = got[column_of(pipeline, key, kind)]
            if kind == "json":
                assert json.loads(loaded) == value
            elif kind == "number" and math.isnan(value):
                assert math.isnan(loaded)
            elif kind == "number":  # -0.0 keeps its sign
                assert loaded == value and math.copysign(1, loaded) == math.copysign(1, value)
            else:
                assert loaded == value
    (run,) = rows(pipeline, "runs")
    assert run["state"] == "finished" and run["notes"] == "two\nlines" and json.loads(run["tags"]) == ["a", "b"]
    config = {r["key"]: r for r in rows(pipeline, "run_config")}
    assert config["lr"]["value_number"] == 0.01
    assert json.loads(config["opt"]["value_json"]) == {"name": "adam", "betas": [0.9, 0.99]}
    summary = {r["key"]: r for r in rows(pipeline, "run_summary")}
    assert summary["best"]["value_number"] == 0.5
    assert rows(pipeline, "system_metrics")  # the SDK's stats records


def test_unchanged_logs_are_skipped_and_a_grown_log_sends_only_new_steps(tmp_path, run_log):
    data = run_log.read_bytes()
    cut = _record_ends(run_log)[len(_record_ends(run_log)) // 2]  # a log still being written
    folder = tmp_path / "logs" / run_log.parent.name
    folder.mkdir(parents=True)
    (folder / run_log.name).write_bytes(data[:cut])
    pipeline = pipeline_for(tmp_path)
    pipeline.run(wandb_offline_source(str(tmp_path / "logs")))
    first = {r["_step"] for r in rows(pipeline, "history")}
    assert first and max(first) < STEPS - 1

    pipeline.run(wandb_offline_source(str(tmp_path / "logs")))
    assert not pipeline.last_trace.last_normalize_info.row_counts.get("history")  # unchanged: not re-read

    (folder / run_log.name).write_bytes(data)  # the run went on and finished
    pipeline.run(wandb_offline_source(str(tmp_path / "logs")))
    assert pipeline.last_trace.last_normalize_info.row_counts["history"] == STEPS - len(first)
    assert sorted(r["_step"] for r in rows(pipeline, "history")) == list(range(STEPS))


@pytest.mark.parametrize("cut_at", [0.3, 0.77, 0.999])
def test_a_log_cut_anywhere_loads_every_intact_record(tmp_path, run_log, cut_at):
    data = run_log.read_bytes()
    cut = int(len(data) * cut_at)
    path = tmp_path / "run-cut.wandb"
    path.write_bytes(data[:cut])
    end = LogEnd(0)
    records = list(read_records(path, 0, end))
    complete = [r for r, stop in read_records(run_log) if stop <= cut]
    assert len(records) == len(complete) and end.truncated and not end.corrupt
    assert end.offset == (records[-1][1] if records else 7)


def test_a_corrupt_record_is_reported_and_nothing_after_it_is_loaded(tmp_path, run_log, caplog):
    data = bytearray(run_log.read_bytes())
    ends = _record_ends(run_log)
    target = ends[len(ends) // 3]  # the record that starts here gets a flipped payload byte
    data[target + 10] ^= 0xFF
    folder = tmp_path / "logs" / "offline-run-x"
    folder.mkdir(parents=True)
    (folder / "run-x.wandb").write_bytes(bytes(data))
    end = LogEnd(0)
    good = list(read_records(folder / "run-x.wandb", 0, end))
    assert end.corrupt and "CRC" in end.corrupt and end.offset == target
    assert [stop for _, stop in good] == [e for e in ends if e <= target]

    pipeline = pipeline_for(tmp_path)
    pipeline.run(wandb_offline_source(str(tmp_path / "logs")))  # loads the intact part, does not crash
    assert f"byte {target}" in caplog.text or "CRC mismatch" in caplog.text


def _record_ends(path: Path) -> list[int]:
    return [stop for _, stop in read_records(path)]


def test_pipeline_script_loads_a_directory_of_run_logs(tmp_path, run_log):
    from tests.test_pipeline_script import project_dir

    (tmp_path / "logs").mkdir()
    shutil.copytree(run_log.parent, tmp_path / "logs" / "nested" / run_log.parent.name)  # found recursively
    (tmp_path / "project").mkdir()
    cwd = project_dir(tmp_path / "project", "duckdb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__", "WANDB_"))}
    env.update({"DLT_DATA_DIR": str(cwd / "dlt_home"), "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                "WANDB_ERROR_REPORTING": "false"})
    done = subprocess.run([sys.executable, str(cwd / "pipelines" / "wandb_pipeline.py"), "--offline-dir",
                           str(tmp_path / "logs")], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "history" in done.stdout and f"{STEPS:>10,} rows" in done.stdout


# what only the server knows (or only the log): not compared between the two paths
SERVER_ONLY_RUN_FIELDS = {"storage_id", "url", "user", "updated_at", "heartbeat_at", "created_at", "commit",
                          "description", "history_line_count", "runtime", "system_metrics", "_dlt_id", "_dlt_load_id"}


def test_online_and_offline_paths_give_the_same_rows(tmp_path, run_log, make_emulator):
    """The logged run served by the emulator (as W&B would after a sync) and read from its log."""
    import datetime as dt

    from tests.wandb_emulator.store import Run, RunHistory
    from wandb_source import wandb_source
    from wandb_source.offline import parse_log

    log = parse_log(run_log)
    emulator = make_emulator(DatasetSpec(runs=0))
    now = dt.datetime.now(dt.timezone.utc)
    run = Run(entity=log.entity, project=log.project, name=log.node["name"], display_name=log.node["displayName"],
              state=log.node["state"], created_at=now, updated_at=now, heartbeat_at=now, config=dict(log.config),
              summary=dict(log.summary), tags=log.node["tags"], notes=log.node["notes"], history=RunHistory(),
              host=log.node["host"])
    for row in log.history:
        run.history.append(row)
    emulator.store.add_run(run)

    online = dlt.pipeline("online", destination=dlt.destinations.duckdb(str(tmp_path / "on.duckdb")),
                          dataset_name="wandb_data", pipelines_dir=str(tmp_path / "pipelines"))
    online.run(wandb_source(entity=log.entity, projects=[log.project], base_url=emulator.url,
                            api_key=emulator.api_key).with_resources("runs", "history"))
    (tmp_path / "logs").mkdir()
    shutil.copytree(run_log.parent, tmp_path / "logs" / run_log.parent.name)
    offline = pipeline_for(tmp_path)
    offline.run(wandb_offline_source(str(tmp_path / "logs")))

    def comparable(row: dict) -> dict:
        return {k: _canonical(v) for k, v in row.items() if k not in SERVER_ONLY_RUN_FIELDS}

    assert len(rows(online, "history")) == STEPS and len(rows(online, "run_config")) >= 2
    assert [comparable(r) for r in _by_step(rows(online, "history"))] == \
        [comparable(r) for r in _by_step(rows(offline, "history"))]
    assert comparable(rows(online, "runs")[0]) == comparable(rows(offline, "runs")[0])
    for table in ("run_config", "run_summary"):
        assert sorted(map(str, map(comparable, rows(online, table)))) == \
            sorted(map(str, map(comparable, rows(offline, table))))


def _by_step(history: list) -> list:
    return sorted(history, key=lambda r: r["_step"])


def _canonical(value):
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


RESUMED = """
import sys, wandb
start = int(sys.argv[1])
run = wandb.init(project="offline-proj", entity="lab", id="resumed-run", resume="allow")
for i in range(start, start + 10):
    run.log({"loss": float(i)}, step=i)
run.finish()
"""


def test_a_resumed_run_two_logs_one_run(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_ERROR_REPORTING": "false",
           "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    env.pop("WANDB_API_KEY", None)
    for start in (0, 10):  # a second session resumes the run, as after a preemption
        subprocess.run([sys.executable, "-c", RESUMED, str(start)], env=env, check=True, timeout=120)
    logs = [p for p in (tmp_path / "wandb").rglob("*.wandb") if "latest-run" not in str(p)]
    assert len(logs) == 2
    pipeline = pipeline_for(tmp_path)
    pipeline.run(wandb_offline_source(str(tmp_path / "wandb")))
    history = rows(pipeline, "history")
    assert sorted(r["_step"] for r in history) == list(range(20))
    assert {r["loss"] for r in history} == {float(i) for i in range(20)}
    assert [r["run_id"] for r in rows(pipeline, "runs")] == ["resumed-run"]
