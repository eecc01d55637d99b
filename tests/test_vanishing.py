"""Runs and projects deleted in W&B while a load is running: the load finishes, everything else is
exact, and the next load records what is gone."""

from __future__ import annotations

import pytest

from tests.helpers import assert_history_equals_emulator, load, make_pipeline, rows
from wandb_source.api.client import WandbClient
from wandb_source.emulator import DatasetSpec
from wandb_source.state import failed_runs, history_cursors


def delete_on_first_history_request(monkeypatch, emulator, delete) -> list:
    """Call `delete()` (a change in the emulator) when the loader first asks for a run's history."""
    fired: list = []
    original, original_batch = WandbClient.parquet_history, WandbClient.history_batch

    def parquet_history(self, entity, project, run):
        if not fired:
            fired.append(run)
            delete(run)
        return original(self, entity, project, run)

    def history_batch(self, entity, project, windows, samples):  # small runs, read together
        if not fired:
            fired.append(next(iter(windows)))
            delete(fired[0])
        return original_batch(self, entity, project, windows, samples)

    monkeypatch.setattr(WandbClient, "parquet_history", parquet_history)
    monkeypatch.setattr(WandbClient, "history_batch", history_batch)
    return fired


def test_run_deleted_between_listing_and_fetching(tmp_path, emulator, monkeypatch):
    fired = delete_on_first_history_request(
        monkeypatch, emulator, lambda run: emulator.store.delete_run("emulator", "demo", run))
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emulator, max_workers=1)
    gone = fired[0]
    assert gone not in {r["run_id"] for r in rows(pipeline, "history")}
    assert_history_equals_emulator(pipeline, emulator)
    assert not failed_runs(pipeline.state) and f"emulator/demo/{gone}" not in history_cursors(pipeline)

    monkeypatch.undo()
    load(pipeline, emulator)  # the run is gone from the listing now: its row, if loaded, is marked
    deleted = {r["run_id"]: r["deleted_at"] for r in rows(pipeline, "runs")}
    assert gone not in deleted or deleted[gone] is not None
    assert all(at is None for run_id, at in deleted.items() if run_id != gone)


@pytest.mark.parametrize("when", ["runs_by_name", "history_batch"])
def test_project_deleted_mid_load_costs_only_that_project(tmp_path, make_emulator, monkeypatch, when):
    """Deleted when the loader asks for its runs' details, or for their history."""
    emulator = make_emulator(DatasetSpec(projects=("demo", "doomed"), runs=4, steps=30))
    original = getattr(WandbClient, when)

    def deleting(self, entity, project, *args):
        if project == "doomed" and "doomed" in emulator.store.entities["emulator"]:
            emulator.store.delete_project("emulator", "doomed")
        return original(self, entity, project, *args)

    monkeypatch.setattr(WandbClient, when, deleting)
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emulator, max_workers=1)
    assert "doomed" not in emulator.store.entities["emulator"]  # it was deleted mid-load
    assert_history_equals_emulator(pipeline, emulator, project="demo")
    assert not failed_runs(pipeline.state)
    monkeypatch.undo()
    load(pipeline, emulator)  # the next load lists only what exists
    assert_history_equals_emulator(pipeline, emulator, project="demo")


@pytest.mark.parametrize("run_name", ["hostile-forked", "hostile-crashed", "hostile-empty"])
def test_forked_crashed_and_empty_runs(tmp_path, make_emulator, run_name):
    emulator = make_emulator(DatasetSpec(runs=1, steps=10, hostile=True))
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emulator, projects=["hostile"])
    assert_history_equals_emulator(pipeline, emulator, project="hostile")
    run = emulator.store.run("emulator", "hostile", run_name)
    steps = sorted(r["_step"] for r in rows(pipeline, "history") if r["run_id"] == run_name)
    assert steps == list(run.history.steps)
