"""Pipelines on the three destinations and exact comparisons of their content with the emulator."""

from __future__ import annotations

import json
import math
import os
import uuid
from typing import Any

import dlt
import psycopg2

from wandb_source import wandb_source
from wandb_source.convert.values import value_kind
from wandb_source.emulator import Emulator
from wandb_source.load.destination import load_options
from wandb_source.state import resources

DESTINATIONS = ["duckdb", "postgres", "filesystem"]
# trust auth: any password. Each test worker of `make test` has its own database (tests/conftest.py).
POSTGRES_DATABASE = os.environ.get("WANDB_TEST_PG_DATABASE", "test")
POSTGRES_DSN = f"postgresql://postgres:postgres@127.0.0.1:5432/{POSTGRES_DATABASE}"


def ensure_database(name: str) -> None:
    """Create the Postgres database `name` when it does not exist."""
    conn = psycopg2.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def make_pipeline(destination: str, tmp_path, name: str | None = None) -> dlt.Pipeline:
    name = name or f"wandb_test_{uuid.uuid4().hex[:8]}"
    if destination == "duckdb":
        dest: Any = dlt.destinations.duckdb(str(tmp_path / f"{name}.duckdb"))
    elif destination == "postgres":
        dest = dlt.destinations.postgres(POSTGRES_DSN)
    else:
        dest = dlt.destinations.filesystem(bucket_url=(tmp_path / "files").as_uri())
    return dlt.pipeline(name, destination=dest, dataset_name=f"{name}_data",
                        pipelines_dir=str(tmp_path / "pipelines"))


def drop_dataset(pipeline: dlt.Pipeline) -> None:
    if pipeline.destination.destination_name == "postgres":
        with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{pipeline.dataset_name}" CASCADE')
            cur.execute(f'DROP SCHEMA IF EXISTS "{pipeline.dataset_name}_staging" CASCADE')


def load(pipeline: dlt.Pipeline, emu: Emulator, **kwargs: Any):
    source = wandb_source(entity="emulator", base_url=emu.url, api_key=emu.api_key, **kwargs)
    info = pipeline.run(source, **load_options(pipeline.destination.destination_name))
    info.raise_on_failed_jobs()
    return info


def rows(pipeline: dlt.Pipeline, table: str) -> list[dict]:
    if table not in pipeline.default_schema.tables:
        return []
    if pipeline.destination.destination_name == "filesystem":  # delta tables, read without DuckDB's extension
        from wandb_source.load.dlt_internals import delta_table

        return delta_table(pipeline, table).to_pyarrow_table().to_pylist()
    return pipeline.dataset()[table].arrow().to_pylist()


def loaded_counts(pipeline: dlt.Pipeline) -> dict:
    return {t: n for t, n in pipeline.last_trace.last_normalize_info.row_counts.items() if not t.startswith("_dlt")}


def history_columns(pipeline: dlt.Pipeline, table: str = "history") -> dict:
    state = resources(pipeline.state)[table]["columns"]
    return {(key, kind): col for key, kinds in state.items() for kind, col in kinds.items()}


def same_value(got: Any, want: Any, kind: str) -> bool:
    if kind == "number":
        want = float(want)
        if math.isnan(want):
            return isinstance(got, float) and math.isnan(got)
        return got == want
    if kind == "json":
        got = json.loads(got) if isinstance(got, str) else got
        return got == json.loads(json.dumps(_safe(want)))
    if kind == "text":
        from wandb_source.convert.values import without_nul

        return got == without_nul(want)  # documented: U+0000 becomes U+FFFD
    return got == want


def _safe(value: Any) -> Any:
    from wandb_source.convert.values import json_value

    return json_value(value)


def assert_history_equals_emulator(pipeline: dlt.Pipeline, emu: Emulator, project: str = "demo") -> int:
    """Every step of every run exactly once, every value equal; returns the number of rows checked."""
    present = set(emu.store.project("emulator", project).runs)  # deleted runs keep their rows
    loaded = [r for r in rows(pipeline, "history") if r["run_id"] in present]
    long_rows = rows(pipeline, "history_long")
    by_key = {(r["run_id"], r["_step"]): r for r in loaded if r["project"] == project}
    assert len(by_key) == len([r for r in loaded if r["project"] == project]), "duplicate steps"
    long = {(r["run_id"], r["_step"], r["key"]): r for r in long_rows if r["project"] == project}
    columns = history_columns(pipeline)
    expected_keys = set()
    for run in emu.store.project("emulator", project).runs.values():
        for want in run.history.rows():
            expected_keys.add((run.name, want["_step"]))
            got = by_key.get((run.name, want["_step"]))
            assert got is not None, f"missing step {run.name}/{want['_step']}"
            for key, value in want.items():
                if key in ("_step", "_timestamp", "_runtime"):
                    continue
                kind = value_kind(value)
                if kind is None:  # a logged null: no column, nothing to compare
                    continue
                column = columns[(key, kind)]
                if column:
                    assert same_value(got[column], value, kind), (run.name, want["_step"], key, got[column], value)
                else:
                    assert (run.name, want["_step"], key) in long, (run.name, want["_step"], key)
            assert abs(got["_timestamp"].timestamp() - want["_timestamp"]) < 1e-5
    assert set(by_key) == expected_keys, f"extra steps: {sorted(set(by_key) - expected_keys)[:5]}"
    return len(by_key)
