"""History and system-metric rows → Arrow tables: a wide table (one column per key and kind) and a long
table for keys past the column budget (one row per run, step and key). Pure, no I/O."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa

from ..settings import RESERVED_HISTORY_KEYS
from .columns import ColumnMap
from .values import (
    EXACT_FLOAT_INT,
    KEY_FIELDS,
    KIND_TYPES,
    TIMESTAMP,
    convert,
    dumps_json,
    float_or_none,
    parse_time,
    value_kind,
)

# -- history and system metrics ---------------------------------------------------------------

def metric_tables(rows: list[dict[str, Any]], run_key: tuple[str, str, str], columns: ColumnMap,
                  index_key: str) -> tuple[pa.Table | None, pa.Table | None]:
    """Rows of one run → (wide table, long table). `index_key` is `_step` or `_timestamp`."""
    if not rows:
        return None, None
    values: dict[str, list[Any]] = {}
    kinds: dict[str, str] = {}
    long_rows: list[tuple[Any, ...]] = []
    for i, row in enumerate(rows):
        for key, value in row.items():
            if key in RESERVED_HISTORY_KEYS:
                continue
            kind = value_kind(value)
            if kind is None:
                continue
            column = columns.column(key, kind)
            if not column:
                long_rows.append((row[index_key], key, kind, convert(value, kind)))
                continue
            if column not in values:
                values[column], kinds[column] = [None] * len(rows), kind
            values[column][i] = convert(value, kind)
    wide = _wide_table(rows, run_key, values, kinds, index_key)
    return wide, _long_table(long_rows, run_key, index_key) if long_rows else None


def _index_arrays(rows: list[dict[str, Any]], index_key: str) -> list[tuple[str, Any]]:
    stamps = [r.get("_timestamp") for r in rows]
    numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in stamps)
    if numeric:  # the same conversion as the Arrow paths
        timestamps = _epoch_to_timestamp(pa.table({"t": pa.array(stamps, pa.float64())}), "t")
    else:
        timestamps = pa.array([_lenient_time(v) for v in stamps], TIMESTAMP)
    runtimes = pa.array([float_or_none(r.get("_runtime")) for r in rows], pa.float64())
    if index_key == "_step":
        return [("_step", pa.array([r["_step"] for r in rows], pa.int64())),
                ("_timestamp", timestamps), ("_runtime", runtimes)]
    return [("_timestamp", timestamps), ("_runtime", runtimes)]


def _lenient_time(value: Any) -> dt.datetime | None:
    """A `_timestamp` W&B did not write as epoch seconds: ISO text, else null (the step still loads)."""
    try:
        return parse_time(value)
    except (ValueError, TypeError, OverflowError):
        return None


def _wide_table(rows: list[dict[str, Any]], run_key: tuple[Any, ...], values: dict[str, Any], kinds: dict[str, Any],
                index_key: str) -> pa.Table:
    n = len(rows)
    arrays = [(name, pa.array([part] * n, typ)) for (name, typ), part in zip(KEY_FIELDS, run_key)]
    arrays += _index_arrays(rows, index_key)
    arrays += [(col, pa.array(vals, KIND_TYPES[kinds[col]])) for col, vals in values.items()]
    return pa.table(dict(arrays))


def _long_table(long_rows: list[tuple[Any, ...]], run_key: tuple[Any, ...], index_key: str) -> pa.Table:
    n = len(long_rows)
    index_type = pa.int64() if index_key == "_step" else TIMESTAMP
    index = [r[0] if index_key == "_step" else parse_time(r[0]) for r in long_rows]
    by_kind = {kind: [r[3] if r[2] == kind else None for r in long_rows] for kind in ("number", "text", "bool")}
    other = [r[3] if r[2] in ("json", "int") else None for r in long_rows]
    return pa.table({
        **{name: pa.array([part] * n, typ) for (name, typ), part in zip(KEY_FIELDS, run_key)},
        index_key: pa.array(index, index_type),
        "key": pa.array([r[1] for r in long_rows], pa.string()),
        "value_number": pa.array(by_kind["number"], pa.float64()),
        "value_text": pa.array(by_kind["text"], pa.string()),
        "value_bool": pa.array(by_kind["bool"], pa.bool_()),
        "value_json": pa.array([None if v is None else str(v) for v in other], pa.string()),
    })


def arrow_metric_tables(table: pa.Table, run_key: tuple[str, str, str],
                        columns: ColumnMap) -> tuple[pa.Table | None, pa.Table | None]:
    """A W&B parquet export (already filtered to the steps wanted) → (wide, long) without a Python
    loop over rows: numeric columns are cast, nested ones (histograms, media) become JSON text."""
    if table.num_rows == 0:
        return None, None
    n = table.num_rows
    out: dict[str, pa.Array] = {name: pa.array([part] * n, typ) for (name, typ), part in zip(KEY_FIELDS, run_key)}
    out["_step"] = table.column("_step").cast(pa.int64())
    out["_timestamp"] = _epoch_to_timestamp(table, "_timestamp")
    out["_runtime"] = table.column("_runtime").cast(pa.float64()) if "_runtime" in table.column_names \
        else pa.nulls(n, pa.float64())
    spill: list[dict[str, Any]] = []
    for key in table.column_names:
        if key in RESERVED_HISTORY_KEYS or table.column(key).null_count == n:
            continue
        kind, values = _arrow_kind(table.column(key))
        column = columns.column(key, kind)
        if column:
            out[column] = values
        else:
            spill += [{"_step": s, key: v} for s, v in zip(out["_step"].to_pylist(), table.column(key).to_pylist())
                      if v is not None]
    wide = pa.table(out)
    if not spill:
        return wide, None
    _, long = metric_tables(spill, run_key, columns, "_step")
    return wide, long


def _arrow_kind(column: pa.ChunkedArray) -> tuple[str, Any]:
    typ = column.type
    if pa.types.is_boolean(typ):
        return "bool", column
    if pa.types.is_integer(typ):
        import pyarrow.compute as pc

        bounds = pc.min_max(column.cast(pa.int64()))
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
        if max(abs(lo or 0), abs(hi or 0)) > EXACT_FLOAT_INT:
            return "int", column.cast(pa.int64())
        return "number", column.cast(pa.float64())
    if pa.types.is_floating(typ):
        return "number", column.cast(pa.float64())
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text", column
    return "json", pa.array([None if v is None else dumps_json(_drop_nulls(v)) for v in column.to_pylist()],
                            pa.string())


def _drop_nulls(value: Any) -> Any:
    """Struct columns give every row every field; a field that is null was not logged."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _epoch_to_timestamp(table: pa.Table, name: str) -> Any:
    """Epoch seconds → UTC timestamps (µs, rounded half to even like `datetime.fromtimestamp`)."""
    import pyarrow.compute as pc

    if name not in table.column_names:
        return pa.nulls(table.num_rows, TIMESTAMP)
    column = table.column(name)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        return pa.array([_lenient_time(v) for v in column.to_pylist()], TIMESTAMP)  # ISO strings
    seconds = column.cast(pa.float64())
    micros = pc.round(pc.multiply(seconds, 1e6), round_mode="half_to_even")
    micros = pc.if_else(pc.is_finite(micros), micros, pa.scalar(None, pa.float64()))
    return micros.cast(pa.int64()).cast(TIMESTAMP)


def lines_to_arrow(lines: list[str]) -> pa.Table | None:
    """History lines parsed by Arrow's C++ JSON reader (NaN/±Infinity tokens included); None when
    the page cannot be one typed table (a key changing type within the page, ints beyond int64):
    the caller then parses it row by row."""
    import io

    import pyarrow.json as pj

    if not lines:
        return None
    data = "\n".join(lines).encode()
    try:
        table = pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=max(1 << 20, len(data) + 1)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if "_step" not in table.column_names or not pa.types.is_integer(table.schema.field("_step").type):
        return None
    return table




def parse_history_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


# -- runs, config, summary, projects, sweeps ---------------------------------------------------

