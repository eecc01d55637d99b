"""Parquet files in the layout of the exporter this project replaces, written from a loaded dataset
(any destination), for code that reads them:

- `runs_metadata.parquet`: one row per run — `run_id`, `run_name`, `state`, `project`, `entity`,
  `created_at`, `runtime`, and the components `config`, `summary`, `metadata`, `system_metrics`,
  `system_attrs`, `sweep_info` as JSON strings;
- `runs_metadata_{component}.parquet`: per component, `run_id`, `run_name`, `project`, `entity` and
  one column per key of that component (keys as W&B names them; a key whose values differ in type
  across runs is a JSON string column);
- `runs_history.parquet`: one row per logged step — `run_id`, `run_name`, `project`, `entity`,
  `step`, `timestamp`, `runtime` and one column per metric, named by its W&B key (a key logged both
  as numbers and as text has a second column `key:text`; histograms and other dicts are JSON).
  Written in batches: memory stays bounded by the batch, not the history.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..convert.values import json_or_text
from ..load.destination import table_batches
from ..tables import RUN_KEY

COMPONENTS = ("config", "summary", "metadata", "system_metrics", "system_attrs", "sweep_info")
SYSTEM_ATTRS = ("display_name", "storage_id", "group", "job_type", "tags", "user", "host", "commit", "notes",
                "description", "url", "updated_at", "heartbeat_at", "deleted_at", "history_line_count", "last_step")


def export_parquet(pipeline: Any, out_dir: Path) -> dict[str, int]:
    """Write the files into `out_dir`; returns {file name: rows written}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [row for batch in table_batches(pipeline, "runs") for row in batch.to_pylist()]
    metadata = _by_run(pipeline, "run_metadata")
    sweeps: dict[tuple[Any, ...], dict[str, Any]] = {
        (r["entity"], r["project"], r["sweep_id"]): r for r in _rows(pipeline, "sweeps")}
    components = [_components(run, metadata, sweeps) for run in runs]
    written = {"runs_metadata.parquet": _write(out_dir / "runs_metadata.parquet", [
        {**_core(run), **{name: json.dumps(parts[name], default=str) for name in COMPONENTS}}
        for run, parts in zip(runs, components)])}
    for name in COMPONENTS:
        file = f"runs_metadata_{name}.parquet"
        written[file] = _write(out_dir / file, [{**_ids(run), **parts[name]} for run, parts in zip(runs, components)])
    names = {tuple(run[k] for k in RUN_KEY): run.get("display_name") for run in runs}
    written["runs_history.parquet"] = _write_history(pipeline, out_dir / "runs_history.parquet", names)
    return written


def _rows(pipeline: Any, table: str) -> list[dict[str, Any]]:
    return [row for batch in table_batches(pipeline, table) for row in batch.to_pylist()]


def _by_run(pipeline: Any, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[k] for k in RUN_KEY): row for row in _rows(pipeline, table)}


def _core(run: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": run["run_id"], "run_name": run.get("display_name"), "state": run.get("state"),
            "project": run["project"], "entity": run["entity"], "created_at": run.get("created_at"),
            "runtime": run.get("runtime")}


def _ids(run: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": run["run_id"], "run_name": run.get("display_name"), "project": run["project"],
            "entity": run["entity"]}


def _components(run: dict[str, Any], metadata: dict[tuple[Any, ...], dict[str, Any]],
                sweeps: dict[tuple[Any, ...], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    key = tuple(run[k] for k in RUN_KEY)
    meta = {k: v for k, v in (metadata.get(key) or {}).items() if k not in RUN_KEY and not k.startswith("_dlt")}
    sweep = sweeps.get((run["entity"], run["project"], run.get("sweep"))) if run.get("sweep") else None
    sweep_info = {"sweep_id": run.get("sweep")}
    if sweep:
        sweep_info.update({k: v for k, v in sweep.items() if k not in ("entity", "project", "sweep_id")
                           and not k.startswith("_dlt")})
    return {"config": _json(run.get("config")), "summary": _json(run.get("summary")), "metadata": meta,
            "system_metrics": _json(run.get("system_metrics")),
            "system_attrs": {k: _json(run[k]) if k == "tags" else run.get(k) for k in SYSTEM_ATTRS if k in run},
            "sweep_info": sweep_info}


def _json(value: Any) -> Any:
    return {} if value is None else json_or_text(value)


def _write(path: Path, rows: list[dict[str, Any]]) -> int:
    pq.write_table(_table(rows), path)
    return len(rows)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Columns in first-seen order; a column whose values do not share one Arrow type becomes JSON."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            if any(isinstance(v, (dict, list)) for v in values):
                raise TypeError("nested")
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            columns[name] = pa.array([None if v is None else json.dumps(v, default=str) for v in values], pa.string())
    return pa.table(columns) if columns else pa.table({"run_id": pa.array([], pa.string())})


def _write_history(pipeline: Any, path: Path, names: dict[tuple[Any, ...], Any]) -> int:
    renames = _metric_names(pipeline)
    writer, written = None, 0
    try:
        for batch in table_batches(pipeline, "history"):
            table = _history_batch(batch, names, renames)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
            written += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        pq.write_table(pa.table({"run_id": pa.array([], pa.string()), "step": pa.array([], pa.int64())}), path)
    return written


def _metric_names(pipeline: Any) -> dict[str, str]:
    """history column → W&B key (from `metric_columns`), `key:kind` for a key's non-number kinds."""
    mapping = [r for r in _rows(pipeline, "metric_columns") if r["table_name"] == "history" and not r.get("long_table")]
    numbers = {r["key"] for r in mapping if r["kind"] == "number"}
    return {r["column_name"]: r["key"] if r["kind"] == "number" or r["key"] not in numbers else f"{r['key']}:{r['kind']}"
            for r in mapping}


def _history_batch(batch: pa.Table, names: dict[tuple[Any, ...], Any], renames: dict[str, Any]) -> pa.Table:
    keys = zip(*(batch.column(k).to_pylist() for k in RUN_KEY))
    columns = {"run_id": batch.column("run_id"), "run_name": pa.array([names.get(k) for k in keys], pa.string()),
               "project": batch.column("project"), "entity": batch.column("entity"), "step": batch.column("_step"),
               "timestamp": _column(batch, "_timestamp"), "runtime": _column(batch, "_runtime")}
    for name in batch.column_names:
        if name in renames:
            columns[renames[name]] = batch.column(name)
    return pa.table(columns)


def _column(batch: pa.Table, name: str) -> Any:
    return batch.column(name) if name in batch.column_names else pa.nulls(batch.num_rows)

