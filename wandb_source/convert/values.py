"""W&B values → what every destination can hold: kinds, numbers, JSON, timestamps, NUL. Pure, no I/O.

Metric values: numbers are float64 (so `1` then `0.5` is one column; NaN/±Infinity kept), ints beyond
2**53 go to an int64 column so they stay exact, strings to text, bools to bool, dicts and lists
(histograms, media, nested metrics) to JSON text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pyarrow as pa
from dlt.common.normalizers.naming.snake_case import NamingConvention

UTC = dt.timezone.utc
EXACT_FLOAT_INT = 2**53
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
KIND_TYPES = {"number": pa.float64(), "int": pa.int64(), "text": pa.string(), "bool": pa.bool_(),
              "json": pa.string()}
KEY_FIELDS = [("entity", pa.string()), ("project", pa.string()), ("run_id", pa.string())]
TIMESTAMP = pa.timestamp("us", tz="UTC")
NAMING = NamingConvention()
DLT_COLUMNS = {"_dlt_id", "_dlt_load_id", "_dlt_parent_id", "_dlt_list_idx", "_dlt_root_id"}


# -- values and times -------------------------------------------------------------------------

def parse_time(value: Any) -> dt.datetime | None:
    """ISO-8601 (W&B often omits the zone: UTC) or epoch seconds → aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        return dt.datetime.fromtimestamp(value, UTC)
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def value_kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if abs(value) <= EXACT_FLOAT_INT:
            return "number"
        return "int" if INT64_MIN <= value <= INT64_MAX else "number"  # beyond int64: float64, as in parquet
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "text"
    return "json"


def float_or_none(value: Any) -> float | None:
    """A number as a float; anything else (bools, text, null) as None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def convert(value: Any, kind: str) -> Any:
    if kind == "number":
        return float(value)
    if kind == "json":
        return dumps_json(value)
    return value


def dumps_json(value: Any) -> str:
    """JSON text; NaN/±Infinity inside become strings so every destination can parse it."""
    return json.dumps(_json_safe(value), ensure_ascii=False, separators=(",", ":"))


NUL, NUL_REPLACEMENT = "\x00", "\ufffd"  # PostgreSQL text and jsonb cannot hold U+0000


def without_nul(value: Any) -> Any:
    """`value` with U+0000 in every string (keys too) replaced by U+FFFD, on every destination alike."""
    if isinstance(value, str):
        return value.replace(NUL, NUL_REPLACEMENT) if NUL in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def arrow_without_nul(table: pa.Table) -> pa.Table:
    """The same for the string columns of an Arrow table (scanned first: copies only when needed)."""
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = table.column(i)
            if pc.any(pc.match_substring(column, NUL)).as_py():
                table = table.set_column(i, field, pc.replace_substring(column, NUL, NUL_REPLACEMENT))
    return table


def json_value(value: Any) -> Any:
    """A value for a `json` column: NaN/±Infinity become the strings "NaN"/"Infinity"/"-Infinity",
    ints beyond int64 the nearest float (as in history; JSON writers and databases stop at 64 bits)."""
    return _json_safe(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return without_nul(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return float(value)
    if isinstance(value, dict):
        return {without_nul(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def json_or_text(value: Any) -> Any:
    """A value that may be JSON text (W&B's `metadata`, exported components): parsed, else as it is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def loads_wandb(text: str | None) -> Any:
    """W&B's JSON-in-a-string fields (may hold NaN/Infinity tokens)."""
    return json.loads(text) if text else {}


# -- column mapping ---------------------------------------------------------------------------

