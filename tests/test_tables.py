"""Table contracts: what a load sends is what `tables.TABLE_HINTS` declares, and the dry-run estimate
counts every request a load makes — a table or a request added without them fails here."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.helpers import load, make_pipeline
from wandb_source import settings, tables, wandb_source
from wandb_source.emulator import DatasetSpec
from wandb_source.emulator.profile import CONVENIENT, SDK
from wandb_source.load.plan import plan_load


def test_every_table_a_load_sends_is_declared_with_its_key_and_columns(tmp_path, make_emulator, monkeypatch):
    monkeypatch.setattr(settings, "MAX_SYSTEM_METRICS_COLUMNS", 3)  # so that system_metrics_long is sent too
    emu = make_emulator(DatasetSpec(runs=4, steps=30, tables=True))
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu, max_history_columns=4)  # and history_long
    schema = pipeline.default_schema
    logged = {t for t in schema.data_table_names() if t.startswith(tables.LOGGED_TABLE_PREFIX)}
    assert logged == {"wandb_table__eval__predictions"}
    assert set(schema.data_table_names()) - logged == set(tables.TABLE_HINTS)
    assert {t for t in tables.TABLE_HINTS if "_dlt_id" in schema.get_table_columns(t)} == tables.DICT_ROW_TABLES
    for table, hints in [*tables.TABLE_HINTS.items(), *((t, tables.LOGGED_TABLE_HINTS) for t in logged)]:
        columns = schema.get_table_columns(table)
        assert {c for c, v in columns.items() if v.get("primary_key")} == set(hints["primary_key"]), table
        for column, declared in hints.get("columns", {}).items():
            if column in columns:  # declared columns may stay empty (deleted_at, hard-delete _deleted)
                assert columns[column]["data_type"] == declared["data_type"], (table, column)


@pytest.mark.parametrize("profile", [CONVENIENT, SDK], ids=lambda p: p.name)
def test_the_dry_run_estimate_counts_every_request_of_a_load(tmp_path, make_emulator, profile):
    """All history live (the estimate's assumption), no empty pages: the estimate is the count, by operation."""
    emu = make_emulator(DatasetSpec(runs=7, steps=40, parquet_fraction=0.0), profile=profile)
    pipeline = make_pipeline("duckdb", tmp_path)
    for step in ("first load", "second load, one run grown"):
        emu.faults.clear_log()
        source = wandb_source(entity="emulator", base_url=emu.url, api_key=emu.api_key)
        estimate = plan_load(source, pipeline).requests
        emu.faults.clear_log()
        load(pipeline, emu)
        made = Counter(r.operation for r in emu.faults.requests())
        assert estimate == sum(made.values()), (step, estimate, made)
        run = next(r for r in emu.store.project("emulator", "demo").runs.values() if r.state == "running")
        emu.store.append_steps("emulator", "demo", run.name, [{"_step": run.history.last_step + 1, "loss": 0.5}])
