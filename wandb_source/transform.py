"""Pure functions: W&B payloads → rows and Arrow tables. No I/O, no dlt state.

Metric values: numbers are float64 (so `1` then `0.5` is one column; NaN/±Infinity kept), ints beyond
2**53 go to an int64 column so they stay exact, strings to text, bools to bool, dicts and lists
(histograms, media, nested metrics) to JSON text. Each W&B key+kind gets a stable column from
`ColumnMap`; keys past the column budget go to a long table, one row per (run, step, key).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import threading
from typing import Any, Iterable

import pyarrow as pa
from dlt.common.normalizers.naming.snake_case import NamingConvention

from .settings import RESERVED_HISTORY_KEYS, WANDB_INTERNAL_CONFIG_KEYS

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

class ColumnMap:
    """Stable W&B key → column assignment for one table, persisted in dlt state.

    The first kind seen for a key gets the snake_case name; another kind, or a name already taken
    (`train/loss` vs `train_loss`, or a key equal to one of our own columns), gets a suffix. Once the
    budget of columns is spent, new keys map to "" (the long table).
    """

    def __init__(self, state: dict, reserved: Iterable[str], budget: int, naming: Any = NAMING) -> None:
        self._state = state  # {key: {kind: column or ""}}
        self._naming = naming  # the destination's: Postgres shortens names past 63 characters
        self._lock = threading.Lock()
        self._budget = budget
        self.added: list[tuple[str, str, str]] = []  # (key, kind, column) assigned since creation
        self._taken = set(reserved) | DLT_COLUMNS
        for kinds in state.values():
            self._taken.update(c for c in kinds.values() if c)

    def column(self, key: str, kind: str) -> str:
        kinds = self._state.get(key)
        if kinds is not None and kind in kinds:
            return kinds[kind]
        with self._lock:
            kinds = self._state.setdefault(key, {})
            if kind not in kinds:
                kinds[kind] = self._assign(key, kind)
                self.added.append((key, kind, kinds[kind]))
            return kinds[kind]

    def _assign(self, key: str, kind: str) -> str:
        if len(self._taken) - len(DLT_COLUMNS) >= self._budget:
            return ""
        suffixes = itertools.chain([""], [f"__{kind}"], (f"__{kind}_{n}" for n in itertools.count(2)))
        for suffix in suffixes:  # lazily: only as many names as needed
            # normalize_path is what dlt applies to Arrow column names: the result is the final name
            candidate = self._naming.normalize_path((key or "key") + suffix)
            if candidate not in self._taken:
                self._taken.add(candidate)
                return candidate
        return ""

    def added_rows(self, table: str) -> list[dict]:
        """Rows for `metric_columns`: where each newly seen W&B key+kind is stored."""
        rows = [{"table_name": table, "key": key, "kind": kind, "column_name": col or None,
                 "long_table": None if col else f"{table}_long"} for key, kind, col in self.added]
        self.added = []
        return rows


# -- history and system metrics ---------------------------------------------------------------

def metric_tables(rows: list[dict], run_key: tuple[str, str, str], columns: ColumnMap,
                  index_key: str) -> tuple[pa.Table | None, pa.Table | None]:
    """Rows of one run → (wide table, long table). `index_key` is `_step` or `_timestamp`."""
    if not rows:
        return None, None
    values: dict[str, list] = {}
    kinds: dict[str, str] = {}
    long_rows: list[tuple] = []
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


def _index_arrays(rows: list[dict], index_key: str) -> list[tuple[str, Any]]:
    stamps = [r.get("_timestamp") for r in rows]
    numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in stamps)
    if numeric:  # the same conversion as the Arrow paths
        timestamps = _epoch_to_timestamp(pa.table({"t": pa.array(stamps, pa.float64())}), "t")
    else:
        timestamps = pa.array([_lenient_time(v) for v in stamps], TIMESTAMP)
    runtimes = pa.array([_float_or_none(r.get("_runtime")) for r in rows], pa.float64())
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


def _wide_table(rows: list[dict], run_key: tuple, values: dict, kinds: dict, index_key: str) -> pa.Table:
    n = len(rows)
    arrays = [(name, pa.array([part] * n, typ)) for (name, typ), part in zip(KEY_FIELDS, run_key)]
    arrays += _index_arrays(rows, index_key)
    arrays += [(col, pa.array(vals, KIND_TYPES[kinds[col]])) for col, vals in values.items()]
    return pa.table(dict(arrays))


def _long_table(long_rows: list[tuple], run_key: tuple, index_key: str) -> pa.Table:
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


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


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
    spill: list[dict] = []
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


# What tells a run changed: no single field does on every W&B server (`updatedAt` is selected by no SDK
# query and may not move when steps are appended, or be missing), so a run is fetched again when any moved.
CHANGE_SIGNALS = ("updatedAt", "heartbeatAt", "state", "historyLineCount", "eventsLineCount", "displayName",
                  "tags", "notes", "description", "group", "jobType", "sweepName")


def change_signature(node: dict) -> str:
    """A short digest of a run's change signals (a signal the server does not give counts as null: it
    can never hide a change in the others)."""
    import hashlib

    values = json.dumps([node.get(name) for name in CHANGE_SIGNALS], sort_keys=True, default=str)
    return hashlib.sha1(values.encode()).hexdigest()[:16]


def parse_history_lines(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines]


# -- runs, config, summary, projects, sweeps ---------------------------------------------------

def run_row(node: dict, entity: str, project: str, app_url: str) -> dict:
    """A full W&B run object → one `runs` row (config/summary/system metrics kept as JSON too)."""
    config = unwrap_config(loads_wandb(node.get("config")))
    summary = loads_wandb(node.get("summaryMetrics"))
    history_keys = node.get("historyKeys") or {}
    runtime = (summary.get("_wandb") or {}).get("runtime") if isinstance(summary.get("_wandb"), dict) else None
    return {
        "entity": entity, "project": project, "run_id": node["name"], "storage_id": node.get("id"),
        "display_name": node.get("displayName"), "state": node.get("state"),
        "created_at": parse_time(node.get("createdAt")), "updated_at": parse_time(node.get("updatedAt")),
        "heartbeat_at": parse_time(node.get("heartbeatAt")), "runtime": _float_or_none(runtime),
        "tags": json_value(node.get("tags") or []), "group": node.get("group"), "job_type": node.get("jobType"),
        "sweep": node.get("sweepName"), "user": (node.get("user") or {}).get("username"), "host": node.get("host"),
        "commit": node.get("commit"), "notes": node.get("notes"), "description": node.get("description"),
        "url": node.get("url") or f"{app_url}/{entity}/{project}/runs/{node['name']}",
        "history_line_count": node.get("historyLineCount"), "last_step": history_keys.get("lastStep"),
        "config": json_value({k: v for k, v in config.items() if k not in WANDB_INTERNAL_CONFIG_KEYS}),
        "wandb_internal": json_value({k: v for k, v in config.items() if k in WANDB_INTERNAL_CONFIG_KEYS}),
        "summary": json_value(summary), "system_metrics": json_value(loads_wandb(node.get("systemMetrics"))),
        "deleted_at": None,
    }


def unwrap_config(raw: dict) -> dict:
    """W&B wraps config values as {"value": v, "desc": d}; return {key: v}."""
    return {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in raw.items()}


def key_value_table(run_keys: list[tuple[str, str, str]], mappings: list[dict],
                    skip: Iterable[str] = ()) -> pa.Table | None:
    """Config or summary of several runs → one row per (run, key): queryable by key with plain SQL.

    An Arrow table with explicit types, so floats stay exact (dlt's dict path rounds them)."""
    cols: dict[str, list] = {n: [] for n in ("entity", "project", "run_id", "key", "value_number",
                                             "value_text", "value_bool", "value_json")}
    for run_key, values in zip(run_keys, mappings):
        for key, value in values.items():
            if key in skip:
                continue
            kind = value_kind(value)
            for name, part in zip(("entity", "project", "run_id"), run_key):
                cols[name].append(part)
            cols["key"].append(key)
            cols["value_number"].append(float(value) if kind == "number" else None)
            cols["value_text"].append(value if kind == "text" and isinstance(value, str) else None)
            cols["value_bool"].append(value if kind == "bool" else None)
            cols["value_json"].append(dumps_json(value) if kind in ("json", "int") else None)
    if not cols["key"]:
        return None
    types = {"value_number": pa.float64(), "value_bool": pa.bool_()}
    return pa.table({name: pa.array(vals, types.get(name, pa.string())) for name, vals in cols.items()})


def project_row(node: dict) -> dict:
    return {"entity": node["entityName"], "name": node["name"], "id": node.get("id"),
            "created_at": parse_time(node.get("createdAt")), "description": node.get("description")}


def sweep_row(node: dict, entity: str, project: str) -> dict:
    import yaml

    try:
        config = yaml.safe_load(node.get("config") or "") or {}
    except yaml.YAMLError:
        config = {"_unparsed": node.get("config")}
    metric = config.get("metric") if isinstance(config, dict) else None
    return {
        "entity": entity, "project": project, "sweep_id": node["name"], "storage_id": node.get("id"),
        "display_name": node.get("displayName"), "method": node.get("method") or config.get("method"),
        "state": node.get("state"), "description": node.get("description"), "best_loss": node.get("bestLoss"),
        "metric_name": (metric or {}).get("name"), "metric_goal": (metric or {}).get("goal"),
        "config": dumps_json(config), "created_at": parse_time(node.get("createdAt")),
        "updated_at": parse_time(node.get("updatedAt")), "run_count": node.get("runCount"),
        "run_count_expected": node.get("runCountExpected"),
    }


SWEEP_SCHEMA = pa.schema([
    ("entity", pa.string()), ("project", pa.string()), ("sweep_id", pa.string()), ("storage_id", pa.string()),
    ("display_name", pa.string()), ("method", pa.string()), ("state", pa.string()), ("description", pa.string()),
    ("best_loss", pa.float64()), ("metric_name", pa.string()), ("metric_goal", pa.string()),
    ("config", pa.string()), ("created_at", TIMESTAMP), ("updated_at", TIMESTAMP), ("run_count", pa.int64()),
    ("run_count_expected", pa.int64()),
])


def sweeps_table(rows: list[dict]) -> pa.Table:
    """Sweep rows as Arrow with explicit types (exact `best_loss`)."""
    return pa.Table.from_pylist(rows, schema=SWEEP_SCHEMA)
