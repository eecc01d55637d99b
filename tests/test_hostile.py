"""The hostile corpus (wandb_source/emulator/hostile.py) on the three destinations: every key is data,
never SQL; every value arrives as logged or as the documented conversion (README, Values)."""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers import DESTINATIONS, assert_history_equals_emulator, drop_dataset, load, make_pipeline, rows
from wandb_source.convert.values import json_value, value_kind, without_nul
from wandb_source.emulator import DatasetSpec
from wandb_source.emulator.hostile import HOSTILE_KEYS


@pytest.fixture
def hostile_emulator(make_emulator):
    return make_emulator(DatasetSpec(runs=2, steps=30, hostile=True))


def _as_json(value):
    return json.loads(value) if isinstance(value, str) else value


def _same(got, want) -> bool:
    kind = value_kind(want)
    if kind is None:
        return got is None
    if kind == "number":
        want = float(want)
        return (math.isnan(got) and math.isnan(want)) if math.isnan(want) else got == want and (
            math.copysign(1, got) == math.copysign(1, want))
    if kind == "json":
        return _as_json(got) == json.loads(json.dumps(json_value(want)))
    if kind == "text":
        return got == without_nul(want)
    if kind == "int":  # an int64 column in history; JSON digits in run_config/run_summary
        return got == want or _as_json(got) == want
    return got == want


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_hostile_corpus_loads_exactly(tmp_path, hostile_emulator, destination):
    emulator = hostile_emulator
    pipeline = make_pipeline(destination, tmp_path)
    try:
        load(pipeline, emulator, projects=["hostile"])
        load(pipeline, emulator, projects=["hostile"])  # a second load changes nothing
        assert_history_equals_emulator(pipeline, emulator, project="hostile")
        _assert_key_values(pipeline, emulator, "run_config", "config")
        _assert_key_values(pipeline, emulator, "run_summary", "summary")
        runs = {r["run_id"]: r for r in rows(pipeline, "runs")}
        for run in emulator.store.project("emulator", "hostile").runs.values():
            assert runs[run.name]["notes"] == run.notes
            assert _as_json(runs[run.name]["tags"]) == run.tags
            assert runs[run.name]["display_name"] == run.display_name
        assert {"runs", "history"} <= set(pipeline.default_schema.tables)  # the `'); DROP TABLE runs` text did nothing
    finally:
        drop_dataset(pipeline)


def _assert_key_values(pipeline, emulator, table: str, attribute: str) -> None:
    loaded = {(r["run_id"], r["key"]): r for r in rows(pipeline, table)}
    for run in emulator.store.project("emulator", "hostile").runs.values():
        for key, value in getattr(run, attribute).items():
            if key in ("_wandb", "wandb_version"):
                continue
            got = loaded[(run.name, key)]
            columns = {k: v for k, v in got.items() if k.startswith("value") and v is not None}
            if value is None:
                assert not columns, (key, columns)
                continue
            assert any(_same(v, value) for v in columns.values()), (run.name, key, columns, value)


def test_hostile_keys_each_get_their_own_column(tmp_path, hostile_emulator):
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, hostile_emulator, projects=["hostile"])
    mapping = {r["key"]: r["column_name"] for r in rows(pipeline, "metric_columns") if r["table_name"] == "history"}
    assert set(HOSTILE_KEYS) <= set(mapping)
    assert len({mapping[k] for k in HOSTILE_KEYS}) == len(HOSTILE_KEYS)  # no two keys share a column
    reserved = {"_dlt_id", "_dlt_load_id", "run_id", "entity", "project", "_step", "_deleted"}
    assert not reserved & {mapping[k] for k in HOSTILE_KEYS}
