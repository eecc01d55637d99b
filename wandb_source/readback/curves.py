"""Metric curves read back from a loaded dataset (any destination), for plots.

`find_runs` picks runs by id, display name or entity/project/run_id; `curve` gives one metric of
one run as (x, y) points, x being `_step` or the metric's `define_metric` step axis (`metric_axes`),
or any other logged key. Steps where the metric was not logged, or is not a number, are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..exceptions import ConfigurationError
from ..load.destination import run_rows, table_batches
from ..tables import RUN_KEY


@dataclass
class Curve:
    run: dict[str, Any]  # the `runs` row
    metric: str
    x_key: str
    points: list[tuple[float, float]]


def find_runs(pipeline: Any, wanted: list[str], limit: int) -> list[dict[str, Any]]:
    """Runs named in `wanted` (run id, display name or entity/project/run_id), or the `limit` most
    recently created runs when `wanted` is empty."""
    runs = [row for batch in table_batches(pipeline, "runs") for row in batch.to_pylist()]
    if not wanted:
        return sorted(runs, key=lambda r: str(r.get("created_at")), reverse=True)[:limit]
    found = []
    for name in wanted:
        match = [r for r in runs if name in (r["run_id"], r.get("display_name"), "/".join(r[k] for k in RUN_KEY))]
        if not match:
            raise ConfigurationError(f"no loaded run is called {name!r}: give a run id, a display name or "
                                     "entity/project/run_id of a run in the dataset")
        found += match
    return found


def numeric_columns(pipeline: Any) -> dict[str, tuple[str, bool]]:
    """{W&B key: (history column, in history_long)} of every key logged as a number (`metric_columns`)."""
    return {row["key"]: (row["column_name"], bool(row.get("long_table")))
            for batch in table_batches(pipeline, "metric_columns") for row in batch.to_pylist()
            if row["table_name"] == "history" and row["kind"] == "number"}


def curve(pipeline: Any, run: dict[str, Any], metric: str, x_key: Optional[str] = None,
          columns: Optional[dict[str, Any]] = None) -> Curve:
    """One metric of one run; `x_key` None: the metric's step axis from `metric_axes`, else `_step`.
    `columns`: `numeric_columns(pipeline)`, read once for many curves (read here when None)."""
    columns = numeric_columns(pipeline) if columns is None else columns
    key = tuple(run[k] for k in RUN_KEY)
    x_key = x_key or _step_axis(pipeline, key, metric) or "_step"
    values = _series(pipeline, key, metric, columns)
    xs: dict[Any, Any]  # step -> x (None: no number at that step)
    if x_key == "_step":
        xs = {step: float(step) for step in values}
    elif x_key in ("_runtime", "_timestamp"):
        xs = {r["_step"]: _number(r.get(x_key)) for r in run_rows(pipeline, "history", key, f"_step, {x_key}")}
    else:
        xs = _series(pipeline, key, x_key, columns)  # a logged step metric, e.g. epoch
    points = sorted((xs[s], y) for s, y in values.items() if xs.get(s) is not None)
    return Curve(run, metric, x_key, points)


def _series(pipeline: Any, key: tuple[Any, ...], metric: str, columns: dict[str, Any]) -> dict[int, float]:
    """{_step: value} of `metric` (a W&B key), from `history` or, past its column budget, `history_long`."""
    if metric not in columns:
        raise ConfigurationError(f"no numeric metric {metric!r} in the loaded history: metric names are W&B keys "
                                 "as logged (see the metric_columns table)")
    column, long_table = columns[metric]
    if long_table:
        rows = [r for r in run_rows(pipeline, "history_long", key) if r.get("key") == metric]
        return {r["_step"]: v for r in rows if (v := _number(r.get("value_number"))) is not None}
    rows = run_rows(pipeline, "history", key, f'_step, "{column}"')
    return {r["_step"]: v for r in rows if (v := _number(r.get(column))) is not None}


def _step_axis(pipeline: Any, key: tuple[Any, ...], metric: str) -> Optional[str]:
    for row in run_rows(pipeline, "metric_axes", key):
        if row["metric"] == metric and row.get("step_metric"):
            return row["step_metric"]
    return None


def _number(value: Any) -> Optional[float]:
    if hasattr(value, "timestamp"):  # _timestamp is loaded as a timestamp
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
