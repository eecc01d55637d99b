"""`pipeline.run(wandb_source(...))` alone — what dlt users, dlt's Airflow helper and dagster-dlt call, without
`run_load` or `load_options` — loads exact data into DuckDB, Postgres and the filesystem destination, first
and incrementally: the source's resources declare the table and file formats each destination needs."""

from __future__ import annotations

import collections

from tests.helpers import assert_history_equals_emulator, rows
from wandb_source import tables, wandb_source


def _plain_run(pipeline, emulator):
    info = pipeline.run(wandb_source(entity="emulator", base_url=emulator.url, api_key=emulator.api_key))
    info.raise_on_failed_jobs()


def _assert_keys_unique(pipeline):
    """Every loaded table holds each key once (a merge that fell back to append would not)."""
    for table in pipeline.default_schema.data_table_names():
        key = tables.TABLE_HINTS.get(table, {}).get("primary_key")
        if not key:
            continue
        counts = collections.Counter(tuple(r[c] for c in key) for r in rows(pipeline, table))
        assert not [k for k, n in counts.items() if n > 1], f"{table}: duplicated keys"


def test_a_plain_pipeline_run_loads_exact_data_twice(pipeline, emulator):
    _plain_run(pipeline, emulator)
    assert_history_equals_emulator(pipeline, emulator)
    run = next(r for r in emulator.store.project("emulator", "demo").runs.values() if r.state == "running")
    last = run.history.last_step
    emulator.store.append_steps("emulator", "demo", run.name, [
        {"_step": last + i, "_runtime": 2000.0 + i, "_timestamp": 1.8e9 + i, "loss": 0.5 / i} for i in (1, 2)])
    _plain_run(pipeline, emulator)
    assert_history_equals_emulator(pipeline, emulator)
    _assert_keys_unique(pipeline)
    if pipeline.destination.destination_name == "filesystem":
        assert all(pipeline.default_schema.get_table(t).get("table_format") == "delta"
                   for t in pipeline.default_schema.data_table_names())
