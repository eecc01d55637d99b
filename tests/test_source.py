"""The wandb source against the emulator, on DuckDB, Postgres and the filesystem destination."""

from __future__ import annotations

import json
import math

from tests.helpers import assert_history_equals_emulator, drop_dataset, load, loaded_counts, make_pipeline, rows

ENTITY, PROJECT = "emulator", "demo"


def server_runs(emu, project=PROJECT):
    return list(emu.store.project(ENTITY, project).runs.values())


def test_full_load_is_exact(pipeline, emulator):
    load(pipeline, emulator)
    checked = assert_history_equals_emulator(pipeline, emulator)
    assert checked == sum(len(r.history) for r in server_runs(emulator)) > 1000

    runs = {r["run_id"]: r for r in rows(pipeline, "runs")}
    assert len(runs) == 12
    for srv in server_runs(emulator):
        row = runs[srv.name]
        assert (row["entity"], row["project"], row["state"], row["display_name"]) == (
            ENTITY, PROJECT, srv.state, srv.display_name)
        assert row["last_step"] == srv.history.last_step and row["history_line_count"] == len(srv.history)
        config = json.loads(row["config"]) if isinstance(row["config"], str) else row["config"]
        assert config["lr"] == srv.config["lr"] and "_wandb" not in config
        assert row["updated_at"] is not None and row["created_at"].tzinfo is not None
        assert row["sweep"] == srv.sweep_name and row["notes"] == srv.notes

    config_rows = [r for r in rows(pipeline, "run_config") if r["key"] == "lr"]
    assert {r["run_id"]: r["value_number"] for r in config_rows} == {r.name: r.config["lr"] for r in server_runs(emulator)}
    special = {(r["run_id"]): r for r in rows(pipeline, "run_summary") if r["key"] == "weird/special"}
    for srv in server_runs(emulator):
        if "weird/special" in srv.summary:
            want, got = srv.summary["weird/special"], special[srv.name]["value_number"]
            assert (math.isnan(want) and math.isnan(got)) or got == want

    events = rows(pipeline, "system_metrics")
    assert len(events) == sum(len(r.events) for r in server_runs(emulator))
    sweeps = rows(pipeline, "sweeps")
    assert len(sweeps) == 1 and sweeps[0]["method"] == "bayes" and sweeps[0]["metric_name"] == "eval/loss"
    assert {r["name"] for r in rows(pipeline, "projects")} == {PROJECT}


def _history_requests(emu):
    """The runs whose history was asked for: alone, or in a batch of small runs (`run0`, `run1`, ...)."""
    alone = {r.variables.get("run") for r in emu.faults.requests() if r.operation in ("HistoryPage", "RunParquetHistory")}
    batched = {v for r in emu.faults.requests("HistoryBatch") for k, v in r.variables.items() if k.startswith("run")}
    return alone | batched


def test_incremental_loads_fetch_only_what_changed(pipeline, emulator):
    load(pipeline, emulator)
    store = emulator.store
    runs = server_runs(emulator)
    running = next(r for r in runs if r.state == "running" and len(r.history))
    finished = next(r for r in runs if r.state == "finished" and len(r.history) and r.export_bounds)
    rewound = next(r for r in runs if r.state == "crashed" and len(r.history) > 30)
    deleted = next(r for r in runs if r.state == "killed")
    last = running.history.last_step
    store.append_steps(ENTITY, PROJECT, running.name,
                       [{"_step": last + i, "_runtime": 1000.0 + i, "_timestamp": 1.8e9 + i, "train/loss": 0.1 * i,
                         "new/metric": i} for i in range(1, 6)])
    store.update_run(ENTITY, PROJECT, finished.name, tags=["edited", "again"], notes="new notes")
    store.rewind(ENTITY, PROJECT, rewound.name, 12)
    store.append_steps(ENTITY, PROJECT, rewound.name, [{"_step": 13, "_timestamp": 1.9e9, "train/loss": 9.0}])
    store.delete_run(ENTITY, PROJECT, deleted.name)
    from wandb_source.emulator import DatasetSpec
    from wandb_source.emulator.generator import _make_run  # a new run in the same project
    new_run = _make_run(DatasetSpec(seed=99), PROJECT, 1, None)
    store.add_run(new_run)
    emulator.faults.clear_log()

    load(pipeline, emulator)
    assert_history_equals_emulator(pipeline, emulator)
    assert _history_requests(emulator) <= {running.name, finished.name, rewound.name, new_run.name}
    loaded_runs = {r["run_id"]: r for r in rows(pipeline, "runs")}
    tags = loaded_runs[finished.name]["tags"]
    assert (json.loads(tags) if isinstance(tags, str) else tags) == ["edited", "again"]
    assert loaded_runs[deleted.name]["deleted_at"] is not None
    assert all(r["deleted_at"] is None for k, r in loaded_runs.items() if k != deleted.name)
    assert new_run.name in loaded_runs
    assert "new__metric" in rows(pipeline, "history")[0]  # `new/metric` (README, Column names)

    emulator.faults.clear_log()
    load(pipeline, emulator)
    assert _history_requests(emulator) == set()
    counts = loaded_counts(pipeline)
    assert not any(counts.get(t) for t in ("runs", "history", "system_metrics", "run_config")), counts


def test_running_run_grows_across_loads_with_parquet_exports(pipeline, emulator):
    running = next(r for r in server_runs(emulator) if r.state == "running" and len(r.history))
    for round_ in range(3):
        load(pipeline, emulator)
        assert_history_equals_emulator(pipeline, emulator)
        last = running.history.last_step
        emulator.store.append_steps(ENTITY, PROJECT, running.name,
                                    [{"_step": last + 1 + i, "_timestamp": 1.8e9 + round_ * 10 + i, "x": 1.5}
                                     for i in range(7)])
        emulator.store.export_history(ENTITY, PROJECT, running.name, upto_rows=len(running.history) - 3)
    load(pipeline, emulator)
    assert_history_equals_emulator(pipeline, emulator)


def test_filters_select_runs(tmp_path, emulator):
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emulator, filters={"state": "finished"})
    finished = {r.name for r in server_runs(emulator) if r.state == "finished"}
    assert {r["run_id"] for r in rows(pipeline, "runs")} == finished
    assert {r["run_id"] for r in rows(pipeline, "history")} <= finished


def test_resources_are_selectable(tmp_path, emulator):
    from wandb_source import wandb_source

    pipeline = make_pipeline("duckdb", tmp_path)
    source = wandb_source(entity=ENTITY, base_url=emulator.url, api_key=emulator.api_key).with_resources("runs")
    pipeline.run(source)
    assert set(loaded_counts(pipeline)) == {"runs", "run_config", "run_summary", "metric_axes", "run_cursors"}
    assert not {"HistoryPage", "HistoryBatch", "RunParquetHistory"} & set(emulator.faults.counts())


def test_thousands_of_metric_keys_load_into_postgres_without_loss(tmp_path, make_emulator):
    from wandb_source.emulator import DatasetSpec

    emu = make_emulator(DatasetSpec(projects=("demo",), runs=1, steps=12, wide_keys=3000))
    pipeline = make_pipeline("postgres", tmp_path)
    try:
        load(pipeline, emu, projects=["wide-keys"])
        keys = set().union(*(r.history_keys()["keys"] for r in emu.store.project(ENTITY, "wide-keys").runs.values()))
        assert len(keys) > 3000
        assert assert_history_equals_emulator(pipeline, emu, project="wide-keys") == 24
        columns = pipeline.default_schema.get_table_columns("history")
        assert 800 <= len(columns) < 1600
        assert len(rows(pipeline, "history_long")) > 0
        mapped = {(r["key"], r["kind"]) for r in rows(pipeline, "metric_columns") if r["table_name"] == "history"}
        assert {k for k, _ in mapped} >= keys - {"_step", "_runtime", "_timestamp"}
    finally:
        drop_dataset(pipeline)


def test_exact_when_live_pages_also_serve_exported_steps(tmp_path, make_emulator):
    """W&B may or may not serve exported steps on HistoryPage; every step must arrive once either way."""
    emu = make_emulator(history_page_serves_exported=True)
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu)
    assert_history_equals_emulator(pipeline, emu)
    running = next(r for r in server_runs(emu) if r.state == "running" and len(r.history))
    emu.store.export_history(ENTITY, PROJECT, running.name, upto_rows=len(running.history) - 2)
    emu.store.append_steps(ENTITY, PROJECT, running.name,
                           [{"_step": running.history.last_step + 1, "_timestamp": 1.9e9, "x": 1.0}])
    load(pipeline, emu)
    assert_history_equals_emulator(pipeline, emu)


def test_listing_over_many_pages_marks_only_deleted_runs(tmp_path, emulator, monkeypatch):
    import wandb_source.settings

    monkeypatch.setattr(wandb_source.settings, "RUNS_PAGE_SIZE", 5)  # 12 runs: 3 pages
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emulator)
    assert emulator.faults.counts()["Runs"] >= 3
    victim = server_runs(emulator)[3]
    emulator.store.delete_run(ENTITY, PROJECT, victim.name)
    load(pipeline, emulator)
    deleted = {r["run_id"] for r in rows(pipeline, "runs") if r["deleted_at"] is not None}
    assert deleted == {victim.name}
