"""Parquet history exports, as W&B serves them from `parquetHistory.parquetUrls`.

One file per export: the run's rows between two export bounds. Columns: `_step` int64, then every
top-level key of those rows. Numbers are float64 (int64 when every value of the column is an int),
bools bool, strings string; dicts (histograms, media, nested metrics) are struct columns and lists
are list columns, which is what wandb-core's reader decodes. A key missing on a row is null.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from .store import CACHE, Run

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def parquet_bytes(run: Run, index: int) -> bytes:
    bounds = [0] + list(run.export_bounds)
    if not 0 <= index < len(run.export_bounds):
        raise IndexError(index)
    key = ("parquet", run.history.uid, run.export_generation, bounds[index], bounds[index + 1])
    return CACHE.get(key, lambda: _encode(run, bounds[index], bounds[index + 1]), len)


def _encode(run: Run, start: int, stop: int) -> bytes:
    rows = list(run.history.rows(start, stop))
    keys: dict[str, None] = {"_step": None}
    for row in rows:
        keys.update(dict.fromkeys(row))
    columns = {key: _column([row.get(key) for row in rows]) for key in keys}
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def _column(values: list) -> pa.Array:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, pa.bool_())
    numbers = [v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if present and len(numbers) == len(present):
        if all(isinstance(v, int) and INT64_MIN <= v <= INT64_MAX for v in numbers):
            return pa.array(values, pa.int64())
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if present and all(isinstance(v, str) for v in present):
        return pa.array(values, pa.string())
    try:
        return pa.array(values)  # structs and lists, types inferred
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
