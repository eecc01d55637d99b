"""W&B's Mongo-style run filters and run orders, evaluated over store runs.

Filter fields: createdAt, updatedAt, heartbeatAt, displayName, name, state, group, jobType, tags,
username, host, duration, sweep, config.<k>[.value], summary_metrics.<k>. Operators: $and $or $nor
$eq $ne $gt $gte $lt $lte $in $nin $exists $regex. Anything else is rejected, as W&B rejects it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .store import UTC, Run

_MISSING = object()
DATE_FIELDS = {"createdAt": "created_at", "updatedAt": "updated_at", "heartbeatAt": "heartbeat_at",
               "created_at": "created_at", "updated_at": "updated_at", "heartbeat_at": "heartbeat_at"}
PLAIN_FIELDS = {"displayName": "display_name", "display_name": "display_name", "name": "name",
                "state": "state", "group": "group", "jobType": "job_type", "job_type": "job_type",
                "tags": "tags", "username": "username", "host": "host", "sweep": "sweep_name",
                "notes": "notes"}
COMPARE = {"$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b,
           "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b}


class FilterError(ValueError):
    """A filter or order W&B would reject."""


def parse_time(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise FilterError(f"invalid date value {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise FilterError(f"invalid date value {value!r}") from e
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def field_value(run: Run, path: str) -> Any:
    if path in DATE_FIELDS:
        return getattr(run, DATE_FIELDS[path])
    if path in PLAIN_FIELDS:
        return getattr(run, PLAIN_FIELDS[path])
    if path == "duration":
        return run.summary.get("_wandb", {}).get("runtime", 0)
    for prefix, source in (("config.", run.config), ("summary_metrics.", run.summary),
                           ("summaryMetrics.", run.summary)):
        if path.startswith(prefix):
            return _dig(source, path[len(prefix):], strip_value=prefix == "config.")
    raise FilterError(f"unknown filter field {path!r}")


def _dig(source: dict, dotted: str, strip_value: bool) -> Any:
    parts = dotted.split(".")
    if strip_value and parts[-1] == "value" and len(parts) > 1:
        parts = parts[:-1]
    value: Any = source
    # keys may themselves hold dots: try the longest key first
    while parts:
        for cut in range(len(parts), 0, -1):
            key = ".".join(parts[:cut])
            if isinstance(value, dict) and key in value:
                value, parts = value[key], parts[cut:]
                break
        else:
            return _MISSING
    return value


def matches(run: Run, flt: dict) -> bool:
    if not isinstance(flt, dict):
        raise FilterError(f"a filter must be an object, got {flt!r}")
    for key, cond in flt.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(cond, list):
                raise FilterError(f"{key} takes a list")
            results = [matches(run, sub) for sub in cond]
            ok = all(results) if key == "$and" else any(results) if key == "$or" else not any(results)
        elif key.startswith("$"):
            raise FilterError(f"unknown operator {key!r}")
        else:
            ok = _match_field(run, key, cond)
        if not ok:
            return False
    return True


def _match_field(run: Run, path: str, cond: Any) -> bool:
    value = field_value(run, path)
    is_date = path in DATE_FIELDS
    if not (isinstance(cond, dict) and any(k.startswith("$") for k in cond)):
        return _equals(value, cond, is_date)
    return all(_apply(op, value, arg, is_date) for op, arg in cond.items())


def _apply(op: str, value: Any, arg: Any, is_date: bool) -> bool:
    if op == "$eq":
        return _equals(value, arg, is_date)
    if op == "$ne":
        return not _equals(value, arg, is_date)
    if op in COMPARE:
        if value is _MISSING or value is None:
            return False
        other = parse_time(arg) if is_date else arg
        try:
            return COMPARE[op](value, other)
        except TypeError:
            return False
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise FilterError(f"{op} takes a list")
        found = any(_equals(value, a, is_date) for a in arg)
        return found if op == "$in" else not found
    if op == "$exists":
        return (value is not _MISSING and value is not None) == bool(arg)
    if op == "$regex":
        return isinstance(value, str) and re.search(str(arg), value) is not None
    raise FilterError(f"unknown operator {op!r}")


def _equals(value: Any, other: Any, is_date: bool) -> bool:
    if is_date:
        return value == parse_time(other)
    if isinstance(value, list) and not isinstance(other, list):
        return other in value  # tags: equality means "has the tag"
    return value is not _MISSING and value == other


ORDER_ALIASES = {"createdAt": "created_at", "updatedAt": "updated_at", "heartbeatAt": "heartbeat_at"}


def sort_runs(runs: list[Run], order: str | None) -> list[Run]:
    """Sort as W&B does for `order` (default `-created_at`), ties broken by run id."""
    order = order or "-created_at"
    descending = order.startswith("-")
    path = order.lstrip("+-")
    path = ORDER_ALIASES.get(path, path)
    if path in ("created_at", "updated_at", "heartbeat_at", "name", "display_name", "state"):
        key = lambda r: (getattr(r, path), r.name)  # noqa: E731
        return sorted(runs, key=key, reverse=descending)
    if not (path.startswith("config.") or path.startswith("summary_metrics.")):
        raise FilterError(f"unsupported order {order!r}")
    present = [r for r in runs if _orderable(field_value(r, path))]
    absent = [r for r in runs if not _orderable(field_value(r, path))]
    present.sort(key=lambda r: (field_value(r, path), r.name), reverse=descending)
    return present + sorted(absent, key=lambda r: r.name)


def _orderable(value: Any) -> bool:
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)
