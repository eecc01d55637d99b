"""Per-run cursors live in the destination table `run_cursors`, not in dlt state: the state stays the same
size however many runs there are, a cursor still commits only with its data, and the entries older loads
kept in dlt state are moved over without fetching anything again."""

from __future__ import annotations

import json

from tests.helpers import load, loaded_counts, make_pipeline, rows
from wandb_source.emulator import DatasetSpec
from wandb_source.state import CURSOR_TABLE, LEGACY_PATHS, entries_of, history_cursors, loaded_signatures, resources

RESOURCES = ("runs", "artifacts", "history", "system_metrics", "run_metadata")


def _runs(emu, project="demo"):
    return emu.store.project("emulator", project).runs


def test_dlt_state_holds_no_per_run_entries(tmp_path, make_emulator):
    emu = make_emulator(DatasetSpec(runs=60, steps=15))
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu)
    state = json.dumps(pipeline.state, default=str)
    assert not [name for name in _runs(emu) if name in state]  # no run id anywhere in dlt state
    cursors = rows(pipeline, CURSOR_TABLE)
    by_resource = {r: {c["run_id"] for c in cursors if c["resource"] == r} for r in RESOURCES}
    assert all(by_resource[r] == set(_runs(emu)) for r in RESOURCES), {r: len(v) for r, v in by_resource.items()}
    assert set(loaded_signatures(pipeline)) == {f"emulator/demo/{name}" for name in _runs(emu)}
    for key, entry in history_cursors(pipeline).items():
        run = _runs(emu)[key.split("/")[-1]]
        assert entry.cursor[0] == (run.history.last_step if len(run.history) else -1), key


def test_a_deleted_run_loses_its_cursor_rows(tmp_path, emulator):
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emulator)
    gone = next(iter(_runs(emulator)))
    emulator.store.delete_run("emulator", "demo", gone)
    load(pipeline, emulator)
    left = [r for r in rows(pipeline, CURSOR_TABLE) if r["run_id"] == gone]
    assert [r["resource"] for r in left] == []  # runs drops it when the listing no longer has it...
    assert {r["run_id"]: r["deleted_at"] for r in rows(pipeline, "runs")}[gone] is not None  # ...and marks the row


def test_entries_kept_in_dlt_state_by_older_loads_are_moved_to_the_table(tmp_path, emulator):
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emulator)
    cursors = rows(pipeline, CURSOR_TABLE)
    with pipeline.managed_state() as state:  # the layout before run_cursors: entries in each resource's state
        kept = state["sources"]["wandb"]["resources"]
        for resource in RESOURCES:
            kept.setdefault(resource, {})[LEGACY_PATHS[resource]] = entries_of(
                c for c in cursors if c["resource"] == resource)
    with pipeline.sql_client() as client:
        client.execute_sql(f"DELETE FROM {client.make_qualified_table_name(CURSOR_TABLE)}")
    emulator.faults.clear_log()

    load(pipeline, emulator)
    fetched = {r.operation for r in emulator.faults.requests()}
    assert not fetched & {"HistoryBatch", "RunParquetHistory", "HistoryPage", "EventsBatch", "file"}, fetched
    assert not loaded_counts(pipeline).get("history") and not loaded_counts(pipeline).get("runs")
    assert sorted((r["resource"], r["run_id"], r["entry"]) for r in rows(pipeline, CURSOR_TABLE)) == sorted(
        (c["resource"], c["run_id"], c["entry"]) for c in cursors)
    assert not any(LEGACY_PATHS[r] in resources(pipeline.state).get(r, {}) for r in RESOURCES)


def test_a_refresh_of_one_resource_loads_it_again(tmp_path, emulator):
    """dlt's `refresh="drop_resources"` wipes history's tables and state: its rows in `run_cursors` are then
    ignored and every step is loaded again. (dlt may drop `run_cursors` with it — the table belongs to the
    resource that sent it first — and then the other tables are fetched again once: merged, no duplicates.)"""
    from wandb_source import wandb_source
    from wandb_source.load.destination import load_options

    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emulator)
    steps = sum(len(r.history) for r in _runs(emulator).values())
    source = wandb_source(entity="emulator", base_url=emulator.url, api_key=emulator.api_key)
    pipeline.run(source.with_resources("history"), refresh="drop_resources", **load_options("duckdb"))
    assert loaded_counts(pipeline)["history"] == steps
    load(pipeline, emulator)
    assert not loaded_counts(pipeline).get("history")
    load(pipeline, emulator)
    assert not set(loaded_counts(pipeline)) & {"history", "runs", "system_metrics", "run_metadata", "artifacts"}
