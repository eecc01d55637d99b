"""Choosing which history to load: key patterns, step windows, last N steps (issue 8)."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from tests.helpers import load, make_pipeline, rows
from wandb_source import ConfigurationError, wandb_source
from wandb_source.convert.selection import KeySelection, last_rows
from wandb_source.state import failed_runs

ENTITY, PROJECT = "emulator", "demo"


# -- the patterns themselves -------------------------------------------------------------------

@pytest.mark.parametrize("pattern, key, hit", [
    ("train/*", "train/loss", True), ("train/*", "train/a/b", False), ("train/*", "eval/loss", False),
    ("eval/**", "eval/a/b", True), ("eval/**", "eval/loss", True), ("**", "anything/at/all", True),
    ("val?acc", "val/acc", False), ("val?acc", "val_acc", True), ("m[0-2]", "m1", True), ("m[0-2]", "m3", False),
    ("m[!0-2]", "m3", True), ("system.gpu.*", "system.gpu.0.gpu", True), ("it's", "it's", True),
    ("a.b", "axb", False), ("(x)", "(x)", True),
])
def test_glob_patterns(pattern, key, hit):
    assert KeySelection.of([pattern], None, "history").wants(key) is hit


def test_negated_include_excludes_and_own_columns_are_always_kept():
    selection = KeySelection.of(["**", "!gradients/*"], ["debug/*"], "history")
    assert selection.wants("train/loss") and not selection.wants("gradients/layer0")
    assert not selection.wants("debug/x") and all(selection.wants(k) for k in ("_step", "_timestamp", "_runtime"))
    assert selection.unmatched(["train/loss"]) == ["debug/*", "gradients/*"]


def test_rows_without_a_selected_key_are_absent_in_dicts_and_arrow():
    selection = KeySelection.of(["eval/*"], None, "history")
    data = [{"_step": 0, "train/loss": 1.0, "eval/loss": math.nan}, {"_step": 1, "train/loss": 0.9},
            {"_step": 2, "eval/loss": None}, {"_step": 3, "eval/acc": 0.5}]
    assert selection.rows(data) == [{"_step": 0, "eval/loss": data[0]["eval/loss"]}, {"_step": 2, "eval/loss": None},
                                    {"_step": 3, "eval/acc": 0.5}]
    table = pa.table({"_step": [0, 1, 2, 3], "train/loss": [1.0, 0.9, None, None],
                      "eval/loss": [math.nan, None, None, None], "eval/acc": [None, None, None, 0.5]})
    got = selection.arrow(table)
    assert got.column_names == ["_step", "eval/loss", "eval/acc"] and got["_step"].to_pylist() == [0, 3]


def test_last_rows_across_batches():
    batches = [pa.table({"_step": [0, 1, 2]}), [{"_step": 3}, {"_step": 4}], pa.table({"_step": [5]})]
    kept = last_rows(batches, 4)
    steps = [s for b in kept for s in (b["_step"].to_pylist() if isinstance(b, pa.Table) else [r["_step"] for r in b])]
    assert steps == [2, 3, 4, 5]


@pytest.mark.parametrize("kwargs, message", [
    ({"min_step": 10, "max_step": 5}, "`min_step` (10) is above `max_step` (5)"),
    ({"last_steps": 0}, "`last_steps` = 0"), ({"min_step": -1}, "`min_step` must be a whole number"),
    ({"history_include": [3]}, "`history_include` must be a list of glob patterns"),
    ({"system_metrics_exclude": ""}, "`system_metrics_exclude` must be a list"),
])
def test_bad_settings_say_what_to_write(emulator, kwargs, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        wandb_source(entity=ENTITY, base_url=emulator.url, api_key=emulator.api_key, **kwargs)


# -- against the emulator ----------------------------------------------------------------------

def server_runs(emulator) -> list:
    return list(emulator.store.project(ENTITY, PROJECT).runs.values())


def steps_with(run, keys) -> dict:
    return {r["_step"]: r for r in run.history.rows() if any(k in r for k in keys)}


def loaded(pipeline) -> dict:
    return {(r["run_id"], r["_step"]): r for r in rows(pipeline, "history")}


def test_include_keeps_a_sparse_metric_on_every_step_it_was_logged(pipeline, emulator):
    load(pipeline, emulator, history_include=["eval/*"])
    got = loaded(pipeline)
    want = {(run.name, s): r for run in server_runs(emulator) for s, r in steps_with(run, ["eval/loss", "eval/acc"]).items()}
    assert want and set(got) == set(want)
    for key, row in got.items():
        assert row["eval__loss"] == want[key]["eval/loss"] and row["eval__acc"] == want[key]["eval/acc"]
    columns = set(pipeline.default_schema.get_table_columns("history"))
    assert {"eval__loss", "eval__acc"} <= columns and not {"train__loss", "lr", "status___text"} & columns
    assert {r["key"] for r in rows(pipeline, "metric_columns") if r["table_name"] == "history"} == {"eval/loss", "eval/acc"}


def test_exclude_and_negated_include_drop_the_same_keys(tmp_path, emulator):
    results = []
    for options in ({"history_exclude": ["train/*", "gradients/**"]}, {"history_include": ["**", "!train/*", "!gradients/**"]}):
        p = make_pipeline("duckdb", tmp_path)
        load(p, emulator, **options)
        results.append(loaded(p))
        columns = set(p.default_schema.get_table_columns("history"))
        assert "lr" in columns and not any(c.startswith(("train_", "gradients_")) for c in columns)
    assert results[0].keys() == results[1].keys()
    assert len(results[0]) == sum(len(r.history) for r in server_runs(emulator))  # every step still logs lr


def test_step_window_is_exact_and_asked_of_the_server(tmp_path, emulator):
    p = make_pipeline("duckdb", tmp_path)
    load(p, emulator, min_step=20, max_step=59)
    want = {(run.name, r["_step"]) for run in server_runs(emulator) for r in run.history.rows() if 20 <= r["_step"] <= 59}
    assert want and set(loaded(p)) == want
    pages = [r.variables for r in emulator.faults.requests() if r.operation == "HistoryPage"]
    assert pages and all(v["minStep"] >= 20 and v["maxStep"] == 60 for v in pages)


def test_last_steps_per_run_alone_and_with_patterns(tmp_path, emulator):
    p = make_pipeline("duckdb", tmp_path)
    load(p, emulator, last_steps=7)
    want = {(run.name, s) for run in server_runs(emulator) for s in sorted(r["_step"] for r in run.history.rows())[-7:]}
    assert set(loaded(p)) == want

    p = make_pipeline("duckdb", tmp_path)
    load(p, emulator, history_include=["eval/*"], min_step=10, max_step=150, last_steps=2)
    want = {(run.name, s) for run in server_runs(emulator)
            for s in sorted(s for s in steps_with(run, ["eval/loss"]) if 10 <= s <= 150)[-2:]}
    assert want and set(loaded(p)) == want


def test_a_widened_selection_applies_from_the_next_load_and_full_refresh_reloads(tmp_path, emulator, monkeypatch):
    from wandb_source.load.runner import run_load

    said = _warnings(monkeypatch)
    p = make_pipeline("duckdb", tmp_path)
    load(p, emulator, history_include=["eval/*"])
    assert not failed_runs(p.state)  # else the next load fetches a failed run's every step with every key
    running = next(r for r in server_runs(emulator) if r.state == "running" and len(r.history))
    last = running.history.last_step
    emulator.store.append_steps(ENTITY, PROJECT, running.name,
                                [{"_step": last + i, "train/loss": 0.5, "eval/loss": 0.4} for i in (1, 2)])
    load(p, emulator)  # every key from now on
    got = loaded(p)
    assert got[(running.name, last + 1)]["train__loss"] == 0.5  # new steps: every key
    old = [r for (run, s), r in got.items() if s <= last]
    assert old and all(r.get("train__loss") is None for r in old)  # loaded before: as selected then
    assert any("history selection changed since the last load" in m for m in said)
    assert not [m for m in said if "could not read" in m]  # run_cursors read back: no run fetched again as new

    source = wandb_source(entity=ENTITY, base_url=emulator.url, api_key=emulator.api_key)
    run_load(p, source, refresh="drop_sources")
    assert len(loaded(p)) == sum(len(r.history) for r in server_runs(emulator))
    assert all(r["train__loss"] is not None for r in loaded(p).values() if r["run_id"] == running.name)


def _warnings(monkeypatch) -> list[str]:
    import wandb_source.source as source_module

    said: list[str] = []
    warn = source_module.logger.warning

    def record(msg: str, *args: object) -> None:
        said.append(msg % args if args else msg)
        warn(msg, *args)  # still logged: a failing test shows every warning

    monkeypatch.setattr(source_module.logger, "warning", record)
    return said


def test_a_pattern_that_matches_nothing_is_reported(tmp_path, emulator, monkeypatch):
    said = _warnings(monkeypatch)
    p = make_pipeline("duckdb", tmp_path)
    load(p, emulator, history_include=["eval/*", "trian/*"], system_metrics_include=["system.gpu.*", "sytem.cpu"])
    assert any("'trian/*' matched no key of emulator/demo" in m for m in said)
    assert any("'sytem.cpu' matched no key of emulator/demo" in m for m in said)
    assert not any("'eval/*'" in m or "'system.gpu.*'" in m for m in said)
    said.clear()
    load(p, emulator, history_include=["eval/*", "trian/*"], system_metrics_include=["system.gpu.*", "sytem.cpu"])
    assert not any("matched no key" in m for m in said)  # nothing fetched: nothing to judge


def test_system_metrics_patterns(pipeline, emulator):
    load(pipeline, emulator, system_metrics_include=["system.gpu.*"], system_metrics_exclude=["**memory*"])
    columns = set(pipeline.default_schema.get_table_columns("system_metrics"))
    assert "system__gpu___0__gpu" in columns and not {"system__cpu", "system__gpu___0__memory_allocated"} & columns
    assert len(rows(pipeline, "system_metrics")) == sum(len(r.events) for r in server_runs(emulator))
