"""run_metadata, artifacts, metric_axes and sweeps <-> runs against the emulator, on every destination."""

from __future__ import annotations

import json

from tests.helpers import load, make_pipeline, rows
from wandb_source.emulator import DatasetSpec

ENTITY = "emulator"


def server_runs(emu) -> list:
    return list(emu.store.project(ENTITY, "demo").runs.values())


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def test_run_metadata_is_every_runs_metadata_file_fetched_once(pipeline, emulator):
    load(pipeline, emulator)
    loaded = {r["run_id"]: r for r in rows(pipeline, "run_metadata")}
    runs = server_runs(emulator)
    assert set(loaded) == {r.name for r in runs}
    for run in runs:
        want, got = json.loads(run.files["wandb-metadata.json"]), loaded[run.name]
        assert (got["host"], got["os"], got["python"], got["program"]) == (
            want["host"], want["os"], want["python"], want["program"])
        assert (got["gpu"], got["gpu_count"], got["cpu_count"]) == (want["gpu"], want["gpu_count"], want["cpu_count"])
        assert (got["git_remote"], got["git_commit"]) == (want["git"]["remote"], want["git"]["commit"])
        assert _json(got["args"]) == want["args"] and got["code_path"] == want["codePath"]
        assert got["started_at"].isoformat().replace("+00:00", "Z") == want["startedAt"]

    def metadata_downloads():
        return sum(1 for r in emulator.faults.requests("file") if r.variables["path"].endswith("wandb-metadata.json"))

    assert metadata_downloads() == len(runs)
    emulator.store.update_run(ENTITY, "demo", runs[0].name, notes="changed")  # does not refetch its metadata
    load(pipeline, emulator)
    assert metadata_downloads() == len(runs)


def test_a_metadata_file_that_fails_is_fetched_again_next_time(tmp_path, make_emulator):
    emu = make_emulator(DatasetSpec(projects=("demo",), runs=4, steps=5))
    run = next(iter(server_runs(emu)))  # its metadata file, not another run file: tables are fetched side by side
    emu.faults.add(operation="file", status=404, times=1,
                   match={"path": f"{run.entity}/{run.project}/{run.name}/wandb-metadata.json"})
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu)
    assert emu.faults.rules[0].fired == 1
    assert len(rows(pipeline, "run_metadata")) == 3  # one download failed: that run only
    load(pipeline, emu)
    assert len(rows(pipeline, "run_metadata")) == 4


def test_artifacts_each_run_logged_and_used(pipeline, emulator):
    load(pipeline, emulator)
    loaded = rows(pipeline, "artifacts")
    want = {(r.name, direction, a["id"]): a for r in server_runs(emulator)
            for direction, arts in (("output", r.output_artifacts), ("input", r.input_artifacts)) for a in arts}
    assert want and {(r["run_id"], r["direction"], r["artifact_id"]) for r in loaded} == set(want)
    for row in loaded:
        art = want[(row["run_id"], row["direction"], row["artifact_id"])]
        assert (row["name"], row["type"], row["version"], row["size"], row["digest"]) == (
            art["name"], art["type"], f"v{art['version_index']}", art["size"], art["digest"])
        assert _json(row["aliases"]) == art["aliases"] and row["created_at"] == art["created_at"]
        assert _json(row["metadata"]) == art["metadata"]


def test_artifacts_past_one_page_are_all_loaded(tmp_path, make_emulator, monkeypatch):
    from wandb_source import settings

    emu = make_emulator(DatasetSpec(projects=("demo",), runs=2, steps=5))
    run = next(iter(server_runs(emu)))
    template = run.output_artifacts[0] if run.output_artifacts else None
    run.output_artifacts = [{**(template or _artifact(run)), "id": f"art-{i}", "version_index": i} for i in range(7)]
    monkeypatch.setattr(settings, "ARTIFACTS_PAGE_SIZE", 3)
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu)
    got = sorted(r["artifact_id"] for r in rows(pipeline, "artifacts")
                 if r["run_id"] == run.name and r["direction"] == "output")
    assert got == sorted(f"art-{i}" for i in range(7))


def _artifact(run) -> dict:
    from wandb_source.emulator.generator import _artifact as make

    return make(run, "model", f"model-{run.name}", 0)


def test_metric_axes_from_define_metric(pipeline, emulator):
    load(pipeline, emulator)
    axes = {(r["run_id"], r["metric"]): r for r in rows(pipeline, "metric_axes")}
    for run in server_runs(emulator):
        assert axes[(run.name, "eval/loss")]["step_metric"] == "epoch"
        assert _json(axes[(run.name, "eval/loss")]["summary"]) == ["min"]
        assert axes[(run.name, "eval/loss")]["goal"] == "minimize"
        assert axes[(run.name, "eval/acc")]["step_metric"] == "epoch"
        assert axes[(run.name, "epoch")]["step_metric"] is None and not axes[(run.name, "epoch")]["hidden"]


def test_sweeps_and_runs_link_both_ways(tmp_path, emulator):
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emulator)
    with pipeline.sql_client() as sql:
        per_sweep = dict(sql.execute_sql(
            "SELECT s.sweep_id, count(r.run_id) FROM sweeps s LEFT JOIN runs r "
            "ON r.entity = s.entity AND r.project = s.project AND r.sweep = s.sweep_id GROUP BY s.sweep_id"))
        orphans = sql.execute_sql(
            "SELECT count(*) FROM runs r LEFT JOIN sweeps s ON r.entity = s.entity AND r.project = s.project "
            "AND r.sweep = s.sweep_id WHERE r.sweep IS NOT NULL AND s.sweep_id IS NULL")[0][0]
    want: dict = {}
    for run in server_runs(emulator):
        if run.sweep_name:
            want[run.sweep_name] = want.get(run.sweep_name, 0) + 1
    assert per_sweep == want and want and orphans == 0
    assert {r["sweep_id"]: r["run_count"] for r in rows(pipeline, "sweeps")} == want
