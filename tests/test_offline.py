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
from wandb_source.emulator import DatasetSpec
from wandb_source.logs.records import LogEnd, read_records
from wandb_source.logs.source import wandb_offline_source
from wandb_source.state import open_logs, resources

pytestmark = pytest.mark.one_profile  # run logs, no server at all: the server profile does not change it

STEPS = 40
LOGGING = f"""
import math, wandb
run = wandb.init(project="offline-proj", entity="lab", config={{"lr": 0.01, "opt": {{"name": "adam", "betas": [0.9, 0.99]}}}},
                 tags=["a", "b"], notes="two\\nlines")
run.define_metric("acc")
run.define_metric("eval/acc", step_metric="acc", summary="max")
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
    return resources(pipeline.state)["history"]["columns"][key][kind]


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
    axes = {r["metric"]: r for r in rows(pipeline, "metric_axes")}  # define_metric records
    assert axes["eval/acc"]["step_metric"] == "acc" and json.loads(axes["eval/acc"]["summary"]) == ["max"]
    assert axes["acc"]["step_metric"] is None
    (metadata,) = rows(pipeline, "run_metadata")  # the environment records: wandb-metadata.json online
    assert metadata["python"].startswith("CPython 3.") and metadata["host"] and metadata["cpu_count"] >= 1
    assert metadata["started_at"] is not None and metadata["program"]


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


def test_each_table_reads_the_logs_for_itself(tmp_path, run_log, monkeypatch):
    """`with_resources` loads some tables without marking the logs read for the others, and a load reads
    a grown log once, from the earliest checkpoint the selected tables need."""
    import wandb_source.logs.run_log as logged_run

    data, ends = run_log.read_bytes(), _record_ends(run_log)
    folder = tmp_path / "logs" / run_log.parent.name
    folder.mkdir(parents=True)
    log = folder / run_log.name
    reads: list[int] = []
    real_read = logged_run.read_records
    monkeypatch.setattr(logged_run, "read_records", lambda path, offset, end: reads.append(offset) or
                        real_read(path, offset, end))
    pipeline = pipeline_for(tmp_path)

    log.write_bytes(data[:ends[len(ends) // 3]])
    pipeline.run(wandb_offline_source(str(tmp_path / "logs")).with_resources("runs"))
    assert "history" not in pipeline.default_schema.tables and rows(pipeline, "runs")[0]["state"] == "running"
    (runs_offset,) = [c["offset"] for c in open_logs(pipeline.state, "runs").values()]

    log.write_bytes(data[:ends[2 * len(ends) // 3]])
    pipeline.run(wandb_offline_source(str(tmp_path / "logs")).with_resources("history"))
    assert reads == [0, 0]  # history had read nothing: from the start
    (history_offset,) = [c["offset"] for c in open_logs(pipeline.state, "history").values()]
    assert history_offset > runs_offset and rows(pipeline, "runs")[0]["state"] == "running"

    log.write_bytes(data)  # the run finished
    pipeline.run(wandb_offline_source(str(tmp_path / "logs")).with_resources("runs", "history"))
    assert reads == [0, 0, runs_offset]  # once, from the earlier of the two checkpoints
    assert sorted(r["_step"] for r in rows(pipeline, "history")) == list(range(STEPS))  # every step once
    assert rows(pipeline, "runs")[0]["state"] == "finished"
    assert not open_logs(pipeline.state, "runs") and not open_logs(pipeline.state, "history")


def test_state_of_the_one_resource_layout_is_adopted(tmp_path, run_log):
    """State written when one resource (`history`) sent every table: upgrading reads no log again."""
    folder = tmp_path / "logs"
    folder.mkdir()
    shutil.copy(run_log, folder / run_log.name)
    pipeline = pipeline_for(tmp_path)
    pipeline.run(wandb_offline_source(str(folder)))
    system_columns = resources(pipeline.state)["system_metrics"]["columns"]
    assert system_columns
    with pipeline.managed_state() as state:  # rewrite it the way the one-resource source kept it
        kept = state["sources"]["wandb"]["resources"]
        old = kept["history"]
        old["system_columns"] = system_columns
        kept.clear()
        kept["history"] = old

    pipeline.run(wandb_offline_source(str(folder)))
    assert not pipeline.last_trace.last_normalize_info.row_counts.get("runs")  # nothing read again
    assert not pipeline.last_trace.last_normalize_info.row_counts.get("system_metrics")
    kept = resources(pipeline.state)
    assert kept["system_metrics"]["columns"] == system_columns and "system_columns" not in kept["history"]
    assert all(kept[table]["logs"] == kept["history"]["logs"] for table in ("runs", "run_metadata"))


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


def test_a_corrupt_record_is_reported_and_nothing_after_it_is_loaded(tmp_path, run_log, monkeypatch):
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

    warnings = _warnings(monkeypatch)
    pipeline = pipeline_for(tmp_path)
    pipeline.run(wandb_offline_source(str(tmp_path / "logs")))  # loads the intact part, does not crash
    assert any("run-x.wandb: CRC mismatch" in w and f"from byte {target} on" in w for w in warnings)
    loaded = {r["_step"] for r in rows(pipeline, "history")}
    intact = {int(i.value_json) for r, _ in good if r.WhichOneof("record_type") == "history"
              for i in r.history.item if (i.key or i.nested_key[0]) == "_step"}
    assert loaded == intact and max(loaded) < STEPS - 1  # the steps before the flipped byte, none after


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
                           str(tmp_path / "logs"), "--project", "team/renamed"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "history" in done.stdout and f"{STEPS:>10,} rows" in done.stdout
    import duckdb

    with duckdb.connect(str(cwd / "wandb_pipeline.duckdb"), read_only=True) as con:  # the log said lab/offline-proj
        assert con.execute("SELECT DISTINCT entity, project FROM wandb_data.history").fetchall() == [("team", "renamed")]


# what only the server knows (or only the log): not compared between the two paths
SERVER_ONLY_RUN_FIELDS = {"storage_id", "url", "user", "updated_at", "heartbeat_at", "created_at", "commit",
                          "description", "history_line_count", "runtime", "system_metrics", "_dlt_id", "_dlt_load_id"}


def test_online_and_offline_paths_give_the_same_rows(tmp_path, run_log, make_emulator):
    """The logged run served by the emulator (as W&B would after a sync) and read from its log."""
    import datetime as dt

    from wandb_source import wandb_source
    from wandb_source.emulator.store import Run, RunHistory
    from wandb_source.logs.run_log import parse_log

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


LIVE = """
import pathlib, sys, time, wandb
flags = pathlib.Path(sys.argv[1])
run = wandb.init(project="offline-proj", entity="lab", id="live-run")
for i in range(2000):  # the SDK writes its log in 32 KiB pieces: this much reaches the disk mid-run
    run.log({"loss": 1.0 / (i + 1), "acc": i * 0.5})
(flags / "half").touch()
while not (flags / "go").exists():
    time.sleep(0.05)
for i in range(2000, 2100):
    run.log({"loss": 1.0 / (i + 1), "acc": i * 0.5})
run.finish()
"""


def test_a_run_still_being_written_then_finished(tmp_path, monkeypatch):
    """A real SDK process mid-run: the first load takes what reached the disk (ending in a partial
    record), the second, after the run finished, reads on from the byte offset where the first stopped."""
    import wandb_source.logs.run_log as logged_run

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_ERROR_REPORTING": "false",
           "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    env.pop("WANDB_API_KEY", None)
    writer = subprocess.Popen([sys.executable, "-c", LIVE, str(tmp_path)], env=env)
    try:
        _wait_for(lambda: (tmp_path / "half").exists() or writer.poll() is not None, 120)
        _wait_for(lambda: any(p.stat().st_size > 100_000 for p in (tmp_path / "wandb").rglob("run-*.wandb")), 30)
        reads = []
        real_read = logged_run.read_records
        monkeypatch.setattr(logged_run, "read_records", lambda path, offset, end: reads.append(offset) or
                            real_read(path, offset, end))
        warnings = _warnings(monkeypatch)
        (log,) = [p for p in (tmp_path / "wandb").rglob("run-*.wandb") if "latest-run" not in str(p)]
        size = log.stat().st_size
        pipeline = pipeline_for(tmp_path)
        pipeline.run(wandb_offline_source(str(tmp_path / "wandb")))
        first = [r["_step"] for r in rows(pipeline, "history")]
        assert first and sorted(first) == list(range(len(first))) and len(first) <= 2000
        assert rows(pipeline, "runs")[0]["state"] == "running"
        (offset,) = [c["offset"] for c in _resource_state(pipeline)["open_logs"].values()]
        assert reads == [0] and offset > 7
        # the SDK writes 32 KiB pieces: when the log read ends inside a record (not at its end or in a
        # block's zero padding), the load says so
        rest = log.read_bytes()[offset:size]
        assert not rest.strip(b"\0") or any("partial record" in w for w in warnings)

        (tmp_path / "go").touch()
        assert writer.wait(timeout=120) == 0
    finally:
        writer.kill()
    pipeline.run(wandb_offline_source(str(tmp_path / "wandb")))
    assert reads == [0, offset]  # read on from where the first load stopped, not from the start
    history = rows(pipeline, "history")
    assert sorted(r["_step"] for r in history) == list(range(2100))  # every step once
    assert all(r["loss"] == 1.0 / (r["_step"] + 1) and r["acc"] == r["_step"] * 0.5 for r in history)
    (run,) = rows(pipeline, "runs")
    assert run["state"] == "finished" and run["history_line_count"] == 2100 and run["last_step"] == 2099
    assert json.loads(run["summary"])["loss"] == 1.0 / 2100
    assert not _resource_state(pipeline)["open_logs"]  # finished: no checkpoint kept


def _warnings(monkeypatch) -> list[str]:
    """The source's warnings, as they are logged (dlt's log handler may write to an earlier test's stderr)."""
    import wandb_source.logs.source as offline

    said: list[str] = []
    real = offline.logger.warning
    monkeypatch.setattr(offline.logger, "warning", lambda msg, *args: said.append(msg % args) or real(msg, *args))
    return said


def _wait_for(condition, seconds: float) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _resource_state(pipeline: dlt.Pipeline) -> dict:
    return resources(pipeline.state)["history"]


def test_a_checkpoint_that_no_longer_fits_the_file_is_not_used(tmp_path, run_log):
    """A log replaced by another (same path, different bytes before the offset) is read from the start."""
    data = run_log.read_bytes()
    ends = _record_ends(run_log)
    folder = tmp_path / "logs" / run_log.parent.name
    folder.mkdir(parents=True)
    path = folder / run_log.name
    path.write_bytes(data[:ends[len(ends) // 2]])
    pipeline = pipeline_for(tmp_path)
    pipeline.run(wandb_offline_source(str(tmp_path / "logs")))
    (checkpoint,) = _resource_state(pipeline)["open_logs"].values()

    from wandb_source.logs.run_log import parse_log

    assert parse_log(path, checkpoint=checkpoint).started_at == checkpoint["offset"]
    changed = bytearray(data)
    changed[checkpoint["offset"] - 20] ^= 0xFF  # a byte before the offset differs: another file
    path.write_bytes(bytes(changed))
    log = parse_log(path, checkpoint=checkpoint)
    assert log.started_at == 0 and log.end.corrupt  # read from the start, and the flipped byte is found


def test_logs_parsed_in_worker_processes_give_the_same_rows(tmp_path, run_log, monkeypatch):
    from wandb_source import settings

    for i in range(4):
        shutil.copytree(run_log.parent, tmp_path / "logs" / f"job{i}" / run_log.parent.name)
    (tmp_path / "logs" / "run-junk.wandb").write_bytes(b"not a run log at all")
    results, warnings = {}, _warnings(monkeypatch)
    for workers in (1, 2):
        monkeypatch.setattr(settings, "PARALLEL_PARSE_MIN_BYTES", 0)
        pipeline = dlt.pipeline(f"workers{workers}", destination=dlt.destinations.duckdb(
            str(tmp_path / f"w{workers}.duckdb")), dataset_name="d", pipelines_dir=str(tmp_path / "pipelines"))
        pipeline.run(wandb_offline_source(str(tmp_path / "logs"), entity="e", project="p", max_workers=workers))
        results[workers] = sorted(map(str, (_without_load_ids(r) for r in rows(pipeline, "history"))))
    assert results[1] == results[2] and len(results[1]) == STEPS  # four copies of one run: one run
    assert sum("not a W&B run log" in w for w in warnings) == 2  # the junk file is reported, not fatal


def _without_load_ids(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("_dlt_id", "_dlt_load_id")}


def test_run_logs_take_the_same_history_selection(tmp_path, run_log):
    (tmp_path / "logs").mkdir()
    shutil.copytree(run_log.parent, tmp_path / "logs" / run_log.parent.name)
    pipeline = pipeline_for(tmp_path)
    pipeline.run(wandb_offline_source(str(tmp_path / "logs"), history_include=["eval/*"], min_step=5, max_step=35,
                                      last_steps=2, system_metrics_include=["nothing.matches"]))
    history = rows(pipeline, "history")
    assert sorted(r["_step"] for r in history) == [20, 30]  # eval/acc is logged every 10 steps
    assert "eval__acc" in history[0] and "loss" not in history[0]
    assert not rows(pipeline, "system_metrics")
