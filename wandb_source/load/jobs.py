"""Per-run fetch jobs for the `history` and `system_metrics` tables: rows → Arrow tables with hints.

A job runs on a worker thread (see `readers.in_parallel`); its cursor is written to dlt state by the
consumer only after every table of the run has been yielded, so a failed run is fetched again next time.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import dlt
import pyarrow as pa

from .. import settings, tables
from ..api.batch import RunBatch
from ..api.client import WandbClient
from ..api.events import batched_size, events_batch, read_events
from ..api.history import history_batch, read_history
from ..api.history_plan import batch_runs, group_runs
from ..convert.columns import ColumnMap
from ..convert.metrics import arrow_metric_tables, metric_tables
from ..convert.run_objects import metric_axes_rows
from ..convert.runs import key_value_table, run_row, unwrap_config
from ..convert.selection import Selection, StepWindow, last_rows
from ..convert.values import arrow_without_nul, loads_wandb, without_nul
from ..state import EventsCursor, HistoryCursor, RunEntry, run_key
from .destination import run_rows
from .logged_tables import TablesCursor


def table_item(table: str, item: Any) -> Any:
    """Send `item` to `table` with that table's own key and column hints (tables.TABLE_HINTS);
    U+0000 in strings becomes U+FFFD (PostgreSQL cannot store it; every destination gets the same)."""
    if isinstance(item, pa.Table):
        item = _keys_not_null(arrow_without_nul(item), tables.hints_of(table)["primary_key"])
    else:
        item = without_nul(item)
    return dlt.mark.with_hints(item, _hints(table), create_table_variant=True)


@functools.cache
def _hints(table: str) -> Any:
    return dlt.mark.make_hints(table_name=table, write_disposition=tables.MERGE, **tables.hints_of(table))


def run_tables(nodes: list[dict[str, Any]], entity: str, project: str, app_url: str) -> Iterator[Any]:
    """Full W&B run objects → `runs` rows, their config and summary as `run_config` / `run_summary`
    (one row per key) and their `define_metric` axes as `metric_axes`. The API path and the run-log
    path (offline.py) both build such objects."""
    rows = [run_row(node, entity, project, app_url) for node in nodes]
    yield table_item("runs", rows)
    keys = [(row["entity"], row["project"], row["run_id"]) for row in rows]
    configs = [unwrap_config(loads_wandb(node.get("config"))) for node in nodes]
    summaries = [loads_wandb(node.get("summaryMetrics")) for node in nodes]
    for table, values, skip in (("run_config", configs, settings.WANDB_INTERNAL_CONFIG_KEYS),
                                ("run_summary", summaries, ())):
        arrow = key_value_table(keys, values, skip)
        if arrow is not None:
            yield table_item(table, arrow)
    axes = [row for key, config in zip(keys, configs) for row in metric_axes_rows(key, config.get("_wandb"))]
    if axes:
        yield table_item("metric_axes", axes)


@dataclass
class RunJob:
    """One run to fetch: its key, its change signature now (`convert.runs.change_signature`), and what
    the table loaded last time (`previous`, None for a run never loaded)."""

    entity: str
    project: str
    run_id: str
    signature: Optional[str]
    previous: Optional[RunEntry]
    history_line_count: Optional[int] = None
    events_line_count: Optional[int] = None
    events_url: Optional[str] = None  # the run's `wandb-events.jsonl`, when it has one
    history_batch: Optional[RunBatch] = None  # read together with other small runs
    events_batch: Optional[RunBatch] = None
    state: Optional[str] = None  # W&B's run state when listed
    cursor: Union[HistoryCursor, EventsCursor, TablesCursor, None] = field(default=None)
    sampled: Optional[bool] = None  # system metrics: True when W&B gave fewer samples than the run holds
    table_keys: frozenset[str] = frozenset()  # logged tables: the keys that logged a wandb.Table
    problems: list[str] = field(default_factory=list)  # logged tables not loaded this time (fetched again next load)

    @property
    def key(self) -> str:
        return run_key(self.entity, self.project, self.run_id)

    @property
    def run_key(self) -> tuple[str, str, str]:
        return self.entity, self.project, self.run_id

    def entry(self) -> RunEntry:
        """What state keeps for this run once it loaded: its signature and its new cursor."""
        if self.cursor is None:
            raise ValueError(f"run {self.key} has no cursor: it was not read")
        return RunEntry(self.signature, self.cursor.to_state())


def history_batches(client: WandbClient, job: RunJob, columns: ColumnMap, page_size: int,
                    pipeline: Any = None, selection: Optional[Selection] = None) -> Iterator[Any]:
    """Arrow tables for `history` / `history_long` with the run's new steps (all steps after a rewind),
    as `selection` narrows them: keys, step window, last N steps."""
    selection = selection or Selection()
    job.cursor = HistoryCursor.from_state(job.previous.cursor if job.previous else None)
    if job.previous is None and job.history_line_count == 0:
        return  # nothing logged yet: no request
    project, window = f"{job.entity}/{job.project}", _read_window(selection, job)
    kept: list[Any] = []
    for batch in read_history(client, job.run_key, job.cursor, page_size, window, selection.columns(project),
                              job.history_line_count, job.history_batch if window == StepWindow() else None):
        selection.observe(project, batch)
        batch = selection.apply(batch)
        if selection.window.last_steps:
            kept = last_rows([*kept, batch], selection.window.last_steps)  # at most N rows held
            continue
        yield from _history_tables(batch, job, columns)
    for batch in kept:
        yield from _history_tables(batch, job, columns)
    if job.cursor.rewound:
        yield from _tombstones(pipeline, job, "history", "_step", window)


def batch_small_runs(client: WandbClient, jobs: list[RunJob], page_size: int) -> int:
    """Give the runs whose new steps fit one window a shared history batch (`history_plan.batch_runs`:
    up to 50 runs of a project and `page_size` expected rows per request, from the listing's
    `historyLineCount`). A run that logged more than its count said costs requests of its own, no more.
    Returns the number of batches."""
    if not client.has_field("Run", "parquetHistory"):
        return 0  # an older server: each run is scanned by step
    lasts = [HistoryCursor.from_state(job.previous.cursor if job.previous else None).last_step for job in jobs]
    groups = batch_runs([(job.run_key[:2], job.history_line_count, last) for job, last in zip(jobs, lasts)],
                        page_size, settings.DETAIL_BATCH_SIZE)
    for group in groups:
        first = jobs[group[0]]
        windows = {jobs[i].run_id: (max(0, lasts[i]), max(0, lasts[i]) + page_size) for i in group}
        batch = history_batch(client, first.entity, first.project, windows, page_size)
        for i in group:
            jobs[i].history_batch = batch
    return len(groups)


def batch_small_event_runs(client: WandbClient, jobs: list[RunJob]) -> int:
    """Give finished runs with few samples a shared events batch (`api.events`: up to 50 runs of a project
    and `EVENTS_BATCH_SAMPLES` samples per request). Returns the number of batches."""
    sizes = [(job.run_key[:2], batched_size(job.state, job.events_line_count)) for job in jobs]
    groups = group_runs(sizes, settings.EVENTS_BATCH_SAMPLES, settings.DETAIL_BATCH_SIZE)
    for group in groups:
        first = jobs[group[0]]
        batch = events_batch(client, first.entity, first.project, [jobs[i].run_id for i in group])
        for i in group:
            jobs[i].events_batch = batch
    return len(groups)


def _read_window(selection: Selection, job: RunJob) -> StepWindow:
    """The window to read. With `last_steps` N and no key patterns or `max_step`, the last N steps are
    among steps >= historyLineCount - N (steps are distinct and >= 0), so reading starts there."""
    window = selection.window
    if window.last_steps and not selection.keys.active and window.max_step is None and job.history_line_count:
        start = max(window.min_step or 0, job.history_line_count - window.last_steps)
        return StepWindow(start, None, window.last_steps)
    return window


def _history_tables(batch: Any, job: RunJob, columns: ColumnMap) -> list[Any]:
    if isinstance(batch, pa.Table):
        return named_tables(arrow_metric_tables(batch, job.run_key, columns), "history") if batch.num_rows else []
    return named_tables(metric_tables(batch, job.run_key, columns, "_step"), "history")


def event_batches(client: WandbClient, job: RunJob, columns: ColumnMap,
                  selection: Optional[Selection] = None) -> Iterator[Any]:
    """Arrow tables for `system_metrics` with the samples newer than the last one loaded (only the
    keys `selection` picks): the run's full stream `wandb-events.jsonl` when it has one, else W&B's
    `events` read, marked `_sampled` when it gave fewer samples than the run holds."""
    selection = selection or Selection()
    last = EventsCursor.from_state(job.previous.cursor if job.previous else None).last_timestamp
    if job.events_line_count == 0:  # W&B says the run has no samples: no request
        job.cursor, job.sampled = EventsCursor(last), False
        return
    rows, job.sampled = read_events(client, job.run_key, last, job.events_url, job.events_line_count, job.events_batch)
    job.cursor = EventsCursor(max((r["_timestamp"] for r in rows), default=last))
    selection.observe(f"{job.entity}/{job.project}", rows)
    rows = selection.apply(rows)
    if rows:
        wide, long = metric_tables(rows, job.run_key, columns, "_timestamp")
        if wide is not None:
            wide = wide.append_column("_sampled", pa.array([job.sampled] * wide.num_rows, pa.bool_()))
        yield from named_tables((wide, long), "system_metrics")


def _keys_not_null(table: pa.Table, keys: tuple[Any, ...]) -> pa.Table:
    """Key columns are declared NOT NULL in the schema; say so in the Arrow schema too (no copy)."""
    fields = [f.with_nullable(False) if f.name in keys else f for f in table.schema]
    return pa.Table.from_arrays(table.columns, schema=pa.schema(fields, metadata=table.schema.metadata))


def named_tables(tables: tuple[pa.Table | None, pa.Table | None], table: str) -> list[tuple[str, pa.Table]]:
    wide, long = tables
    return [(name, t) for name, t in ((table, wide), (f"{table}_long", long)) if t is not None]


class TableBatches:
    """Arrow tables per destination table, concatenated up to `max_rows` before they go to dlt:
    dlt's cost per item is fixed, so fewer, larger items load faster."""

    def __init__(self, max_rows: int = 50_000) -> None:
        self.max_rows = max_rows
        self._tables: dict[str, list[pa.Table]] = {}
        self._rows: dict[str, int] = {}

    def add(self, table: str, arrow: pa.Table) -> Iterator[Any]:
        self._tables.setdefault(table, []).append(arrow)
        self._rows[table] = self._rows.get(table, 0) + arrow.num_rows
        if self._rows[table] >= self.max_rows:
            yield self._take(table)

    def flush(self) -> Iterator[Any]:
        for table in list(self._tables):
            yield self._take(table)

    def _take(self, table: str) -> Any:
        tables = self._tables.pop(table)
        self._rows.pop(table)
        merged = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
        return table_item(table, merged)


def _tombstones(pipeline: Any, job: RunJob, table: str, index: str, window: StepWindow) -> list[Any]:
    """Rows to hard-delete: steps the destination holds that the rewound run no longer has (inside the
    step window only: steps outside it were not read)."""
    if not isinstance(job.cursor, HistoryCursor):
        raise TypeError(f"run {job.key}: tombstones need a history cursor")
    seen = job.cursor.steps_seen
    low, high = window.min_step or 0, window.max_step if window.max_step is not None else float("inf")
    held = {r[index] for r in run_rows(pipeline, table, job.run_key, index)}
    gone = sorted(s for s in held - seen if low <= s <= high)
    if not gone:
        return []
    n = len(gone)
    return [(table, pa.table({
        "entity": pa.array([job.entity] * n, pa.string()), "project": pa.array([job.project] * n, pa.string()),
        "run_id": pa.array([job.run_id] * n, pa.string()), index: pa.array(gone, pa.int64()),
        "_deleted": pa.array([True] * n, pa.bool_()),
    }))]
