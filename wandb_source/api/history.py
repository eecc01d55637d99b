"""A run's full-resolution history: the reads `history_plan` plans, executed and checked.

History: `history_plan.plan_history` decides the reads from what W&B says exists (parquet exports, the
live steps); this module executes them and checks every answer. Steps below the first live step come
from parquet only and steps from it on from live pages only, so every step arrives once whether or not
the server's live pages also serve exported steps. A live page that lacks a step W&B listed, or that may
have been sampled, is never accepted: the window is split and asked again, or the run fails this load
(and is fetched again next load) with the reason.

Small runs are read together: a history batch (`history_batch`) asks, for up to 50 runs in one request, each run's parquet
listing and its first window of at most `samples` steps (which cannot hold more rows than `samples`, so it is
never sampled). Each run's plan is then made from that listing as usual, and a planned window inside the
prefetched one is answered from its rows — checked like any other answer; the rest is asked run by run.

Incremental reads start at the last loaded step (inclusive) and check that its `_timestamp` is
unchanged; if it is not, or the step is gone, the run was rewound and is read again from scratch.
"""

from __future__ import annotations

import collections
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..convert.metrics import lines_to_arrow, parse_history_lines
from ..convert.selection import StepWindow
from ..exceptions import ServerError
from ..state import HistoryCursor
from .batch import RunBatch
from .client import RunGone, WandbClient, as_step
from .history_plan import HistoryPlan, LiveWindow, plan_history


class Rewound(Exception):
    """The last loaded step changed or vanished: W&B rewound the run."""


class HistoryChanged(ServerError):
    """A live page lacked steps W&B had just listed (the run changed while it was read)."""


@dataclass(frozen=True)
class FirstWindow:
    """What a history batch answered for one run: its parquet listing, and the rows of the steps
    `min_step` (inclusive) to `max_step` (exclusive), a window never wider than `samples`."""

    urls: list[str]
    live: list[int]
    min_step: int
    max_step: int
    lines: list[str]

    def covers(self, window: LiveWindow) -> bool:
        return self.min_step <= window.min_step and window.max_step <= self.max_step


def history_batch(client: WandbClient, entity: str, project: str, windows: dict[str, tuple[int, int]],
                  samples: int) -> RunBatch:
    """The first reads of several small runs in one request (`WandbClient.history_batch`): per run a
    `FirstWindow`."""
    def ask() -> dict[str, FirstWindow | None]:
        found = client.history_batch(entity, project, windows, samples)
        return {run: None if answer is None else FirstWindow(answer[0], answer[1], *windows[run], answer[2])
                for run, answer in found.items()}

    return RunBatch("history", entity, project, list(windows), ask)


def read_history(client: WandbClient, run_key: tuple[str, str, str], cursor: HistoryCursor,
                 page_size: int, window: StepWindow = StepWindow(),
                 columns: Callable[[list[str]], list[str]] | None = None,
                 history_line_count: int | None = None,
                 batch: RunBatch | None = None) -> Iterator[list[dict[str, Any]] | pa.Table]:
    """Batches newer than `cursor` (Arrow tables from parquet exports, Arrow tables or row lists from
    live pages); the whole history again after a rewind. Only steps inside `window` (min_step..max_step).
    `columns` picks the columns read from parquet exports. `history_line_count` (from the listing) says
    whether a run with nothing exported or live has rows all the same (then it is scanned by step).
    `batch`: the run's first reads, when it is read together with other small runs."""
    first = batch.take(run_key[2]) if batch is not None else None
    try:
        yield from _read(client, run_key, cursor, page_size, window, columns, history_line_count, first)
    except Rewound:
        fresh = HistoryCursor(rewound=True)
        yield from _read(client, run_key, fresh, page_size, window, columns, history_line_count, None)
        cursor.__dict__.update(fresh.__dict__)


def _read(client: WandbClient, run_key: tuple[str, str, str], cursor: HistoryCursor, page_size: int,
          window: StepWindow, columns: Callable[[list[str]], list[str]] | None,
          history_line_count: int | None, first: FirstWindow | None) -> Iterator[Any]:
    urls, plan = _plan(client, run_key, cursor, page_size, window, history_line_count, first)
    if plan.rewound:
        raise Rewound()
    if plan.read_exports:
        yield from _read_exports(client, urls, plan, cursor, window, columns)
    yield from _read_live(client, run_key, plan, cursor, window, first)


def _plan(client: WandbClient, run_key: tuple[str, str, str], cursor: HistoryCursor, page_size: int,
          window: StepWindow, history_line_count: int | None,
          first: FirstWindow | None) -> tuple[list[str], HistoryPlan]:
    if first is not None:
        found: tuple[list[str], list[int] | None] | None = (first.urls, first.live)
    else:
        found = client.parquet_history(*run_key) if client.has_field("Run", "parquetHistory") else ([], None)
    if found is None:
        raise RunGone("/".join(run_key))
    urls, live = found
    last_step = None
    if not urls and not live and (live is None or history_line_count):
        last_step = client.last_history_step(*run_key)  # nothing listed, yet rows exist: scan by step
        if last_step is None:
            raise RunGone("/".join(run_key))
        live = None
    return urls, plan_history(bool(urls), live, cursor.last_step, window, page_size, last_step)


def _read_exports(client: WandbClient, urls: list[str], plan: HistoryPlan, cursor: HistoryCursor,
                  window: StepWindow, columns: Callable[[list[str]], list[str]] | None) -> Iterator[pa.Table]:
    """The parquet exports below the first live step. Held back until the last loaded step is found
    unchanged in them (a rewound run is read again, so nothing may be emitted twice)."""
    checked = not plan.verify_in_exports
    held: list[pa.Table] = []
    for url in urls:
        table = _read_parquet(client.download(url), columns)
        if table is None:
            continue
        if plan.exports_below is not None:
            table = table.filter(pc.less(table["_step"], plan.exports_below))
        checked = checked or _check_arrow(table, plan.verify, cursor)
        held.append(window.arrow(table))
        if checked:
            for ready in held:
                yield from _emit_arrow(ready, plan.first_new, cursor)
            held.clear()
    if not checked:
        raise Rewound()


def _read_parquet(data: bytes, columns: Callable[[list[str]], list[str]] | None) -> pa.Table | None:
    """A parquet export, only the `columns` wanted (and `_step`, `_timestamp`); None without `_step`."""
    export = pq.ParquetFile(io.BytesIO(data))
    names = export.schema_arrow.names
    if "_step" not in names:
        return None
    return export.read(columns=None if columns is None else columns(names))


def _read_live(client: WandbClient, run_key: tuple[str, str, str], plan: HistoryPlan, cursor: HistoryCursor,
               window: StepWindow, first: FirstWindow | None) -> Iterator[Any]:
    """The planned `HistoryPage` windows, in order (from `first` when it covers one). An answer that may
    have been sampled is split and asked again; one that lacks a listed step fails the run (it is fetched
    again next load)."""
    verify = None if plan.verify_in_exports else plan.verify
    pending = collections.deque(plan.windows)
    while pending:
        live_window = pending.popleft()
        if first is not None and first.covers(live_window):
            lines: list[str] | None = first.lines  # a superset of the window's rows, never sampled
        else:
            lines = client.history_page(*run_key, live_window.min_step, live_window.max_step, live_window.samples)
        if lines is None:
            raise RunGone("/".join(run_key))
        page = _live_page(lines, live_window)
        steps = page["_step"].to_pylist() if isinstance(page, pa.Table) else [r["_step"] for r in page]
        verdict = judge_page(live_window, steps)
        if verdict == "split":
            pending.extendleft(reversed(live_window.split()))
            continue
        if verdict == "missing":
            missing = sorted(set(live_window.expected or ()) - set(steps))
            raise HistoryChanged(f"W&B listed step(s) {missing[:5]} of run {'/'.join(run_key)} as live but "
                                 f"HistoryPage [{live_window.min_step}, {live_window.max_step}) did not return "
                                 "them (the run changed while it was read); it is fetched again next load")
        if verify is not None:
            if not steps or steps[0] != verify or not _check_page(page, verify, cursor):
                raise Rewound()  # the last loaded step is gone or changed
            verify = None
        yield from (_emit_arrow(window.arrow(page), plan.first_new, cursor) if isinstance(page, pa.Table)
                    else _emit(window.rows(page), plan.first_new, cursor))
    if verify is not None:
        raise Rewound()  # the last loaded step was to be read again, and nothing was


def judge_page(live_window: LiveWindow, steps: list[int]) -> str:
    """"ok", "split" (the answer may be a sample of more rows: ask for halves) or "missing" (a step
    W&B listed as live is not there, and the answer is no sample)."""
    got = set(steps)
    expected = set(live_window.expected) if live_window.expected is not None else None
    may_be_sampled = len(steps) >= live_window.samples and live_window.max_step - live_window.min_step > 1
    if expected is None:
        return "ok"  # the window is at most `samples` steps wide: it cannot hold more rows
    if not expected <= got:
        return "split" if may_be_sampled else "missing"
    if got != expected and may_be_sampled:
        return "split"  # steps nobody listed filled the page: more may have been there
    return "ok"


def _live_page(lines: list[str], live_window: LiveWindow) -> pa.Table | list[dict[str, Any]]:
    """A live page's rows inside the window, sorted by step: an Arrow table, or rows when Arrow cannot
    type it (a key changing type, ints beyond int64, `_step` sent as a float)."""
    lo, hi = live_window.min_step, live_window.max_step
    table = lines_to_arrow(lines)
    if table is not None:
        steps = table["_step"]
        return table.filter(pc.and_(pc.greater_equal(steps, lo), pc.less(steps, hi))).sort_by("_step")
    rows = []
    for row in parse_history_lines(lines):
        if isinstance(row, dict) and row.get("_step") is not None:
            row["_step"] = as_step(row["_step"])
            if lo <= row["_step"] < hi:
                rows.append(row)
    return sorted(rows, key=lambda r: r["_step"])


def _check_page(page: pa.Table | list[dict[str, Any]], step: int, cursor: HistoryCursor) -> bool:
    return _check_arrow(page, step, cursor) if isinstance(page, pa.Table) else _check(page[:1], step, cursor)


def _check(rows: list[dict[str, Any]], step: int | None, cursor: HistoryCursor) -> bool:
    """True when `rows` hold `step` with the `_timestamp` loaded last time; Rewound if it changed."""
    for row in rows:
        if row["_step"] == step:
            if cursor.last_timestamp is not None and row.get("_timestamp") != cursor.last_timestamp:
                raise Rewound()
            return True
    return False


def _check_arrow(table: pa.Table, step: int | None, cursor: HistoryCursor) -> bool:
    """`_check` for a parquet export."""
    if step is None:
        return False
    match = table.filter(pc.equal(table["_step"], step))
    if match.num_rows == 0:
        return False
    stamp = match["_timestamp"][0].as_py() if "_timestamp" in match.column_names else None
    if cursor.last_timestamp is not None and stamp != cursor.last_timestamp:
        raise Rewound()
    return True


def _emit_arrow(table: pa.Table, first_new: int, cursor: HistoryCursor) -> Iterator[pa.Table]:
    new = table.filter(pc.greater_equal(table["_step"], first_new))
    if new.num_rows == 0:
        return
    steps = new["_step"]
    if cursor.rewound:
        cursor.steps_seen.update(steps.to_pylist())
    last = pc.max(steps).as_py()
    if last > cursor.last_step:
        at = new.filter(pc.equal(steps, last))
        cursor.last_step = last
        cursor.last_timestamp = at["_timestamp"][0].as_py() if "_timestamp" in at.column_names else None
    yield new


def _emit(rows: list[dict[str, Any]], first_new: int, cursor: HistoryCursor) -> Iterator[list[dict[str, Any]]]:
    new = [r for r in rows if r["_step"] >= first_new]
    if not new:
        return
    if cursor.rewound:
        cursor.steps_seen.update(r["_step"] for r in new)
    last = max(new, key=lambda r: r["_step"])
    if last["_step"] > cursor.last_step:
        cursor.last_step, cursor.last_timestamp = last["_step"], last.get("_timestamp")
    yield new


