"""Every documented table exists after the first load even when W&B has none of its rows (no artifacts, no
metric beyond the column budget), so the README's queries run; rows that arrive later load into it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import make_pipeline, rows
from wandb_source import tables, wandb_source
from wandb_source.emulator import DatasetSpec
from wandb_source.load.dlt_internals import delta_table
from wandb_source.load.runner import run_load

pytestmark = pytest.mark.one_profile  # destination tables, whatever the server says: the server profile does not change it

README = Path(__file__).resolve().parents[1] / "README.md"
EMPTY = ("artifacts", "history_long", "system_metrics_long")


def _destination_columns(pipeline, table: str) -> set[str]:
    """The table's columns as the destination holds them (raises when it does not exist)."""
    if pipeline.destination.destination_name == "filesystem":
        return {field.name for field in delta_table(pipeline, table).schema().fields}
    with pipeline.sql_client() as client:
        name = client.make_qualified_table_name(table)
        with client.execute_query(f"SELECT * FROM {name} LIMIT 0") as cursor:
            return {d[0] for d in cursor.description}


def _lineage_query(dataset: str) -> str:
    text = README.read_text()
    query = next(q for q in re.findall(r"```sql\n(.*?)```", text, re.S) if "lineage" in q)
    return query.replace("wandb_data.", f"{dataset}.")


def _load(pipeline, emu, **kwargs):
    return run_load(pipeline, wandb_source(entity="emulator", base_url=emu.url, api_key=emu.api_key, **kwargs))


def test_every_table_exists_after_the_first_load_and_takes_rows_later(pipeline, make_emulator):
    emu = make_emulator(DatasetSpec(runs=3, steps=20, metrics=2, vary_steps=False))
    runs = emu.store.project("emulator", "demo").runs
    kept = {name: (run.output_artifacts, run.input_artifacts) for name, run in runs.items()}
    for run in runs.values():
        run.output_artifacts, run.input_artifacts = [], []
    _load(pipeline, emu, max_history_columns=30)
    for table, hints in tables.TABLE_HINTS.items():
        typed = {c for c, v in hints.get("columns", {}).items() if v.get("data_type")}
        assert typed <= _destination_columns(pipeline, table), table
    assert all(rows(pipeline, table) == [] for table in EMPTY)
    if pipeline.destination.destination_name != "filesystem":
        with pipeline.sql_client() as client:
            assert client.execute_sql(_lineage_query(pipeline.dataset_name)) == []

    finished = next(name for name, (out, _) in kept.items() if out)
    runs[finished].output_artifacts, runs[finished].input_artifacts = kept[finished]
    last = runs[finished].history.last_step
    emu.store.append_steps("emulator", "demo", finished, [  # more keys than the column budget: history_long
        {"_step": last + 1, "_runtime": 99.0, "_timestamp": 1.8e9, **{f"extra_{i}": float(i) for i in range(40)}}])
    emu.store.touch(runs[finished], edit=True)
    _load(pipeline, emu, max_history_columns=30)
    loaded = rows(pipeline, "artifacts")
    assert {(r["run_id"], r["direction"]) for r in loaded} == {(finished, "output"), (finished, "input")}
    assert all(isinstance(r["artifact_id"], str) and r["size"] is not None for r in loaded)
    assert rows(pipeline, "history_long"), "rows beyond the column budget did not load into the empty table"


def test_only_the_tables_of_the_resources_that_ran_are_created(tmp_path, make_emulator):
    emu = make_emulator(DatasetSpec(runs=2, steps=10))
    pipeline = make_pipeline("duckdb", tmp_path)
    source = wandb_source(entity="emulator", base_url=emu.url, api_key=emu.api_key).with_resources("runs")
    run_load(pipeline, source)
    created = set(pipeline.default_schema.data_table_names(include_incomplete=True))
    assert created == {"runs", "run_config", "run_summary", "metric_axes", "run_cursors"}
