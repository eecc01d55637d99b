"""Private generators: a run's full-resolution history, its system metrics, and a bounded thread pool.

History comes from two places (see the protocol notes): parquet exports for the exported prefix and
`HistoryPage` from the first live step. Steps below the first live step are taken from parquet only
and steps from it on from live pages only, so every step arrives once whether or not the server's
live pages also serve exported steps.

Incremental reads start at the last loaded step (inclusive) and check that its `_timestamp` is
unchanged; if it is not, or the step is gone, the run was rewound and is read again from scratch.
"""

from __future__ import annotations

import io
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .client import WandbClient
from .selection import StepWindow
from .transform import lines_to_arrow, parse_history_lines

DONE = object()  # what `in_parallel` yields as the item when a job has ended


class RunGone(Exception):
    """The run was deleted between listing and fetching."""


class Rewound(Exception):
    """The last loaded step changed or vanished: W&B rewound the run."""


@dataclass
class HistoryCursor:
    """Where a run's history load stands: last step loaded and its `_timestamp`."""

    last_step: int = -1
    last_timestamp: float | None = None
    steps_seen: set = field(default_factory=set)  # filled only for a full (re)read
    rewound: bool = False

    def to_state(self) -> list:
        return [self.last_step, self.last_timestamp]

    @classmethod
    def from_state(cls, value: list | None) -> "HistoryCursor":
        return cls(*value) if value else cls()


def read_history(client: WandbClient, run_key: tuple[str, str, str], cursor: HistoryCursor,
                 page_size: int, window: StepWindow = StepWindow(),
                 columns: Callable[[list[str]], list[str]] | None = None) -> Iterator[list[dict] | pa.Table]:
    """Batches newer than `cursor` (Arrow tables from parquet exports, row lists from live pages);
    the whole history again after a rewind. Only steps inside `window` (min_step..max_step); live
    pages are asked for that range only. `columns` picks the columns read from parquet exports."""
    try:
        yield from _read(client, run_key, cursor, page_size, window, columns)
    except Rewound:
        fresh = HistoryCursor(rewound=True)
        yield from _read(client, run_key, fresh, page_size, window, columns)
        cursor.__dict__.update(fresh.__dict__)


def _read(client: WandbClient, run_key: tuple[str, str, str], cursor: HistoryCursor, page_size: int,
          window: StepWindow, columns: Callable[[list[str]], list[str]] | None) -> Iterator[list[dict]]:
    found = client.parquet_history(*run_key)
    if found is None:
        raise RunGone("/".join(run_key))
    urls, live = found
    min_live = live[0] if live else None
    verify = cursor.last_step if cursor.last_step >= 0 else None
    checked = verify is None
    first_new = window.first(cursor.last_step + 1)
    if urls and (verify is None or min_live is None or verify < min_live):
        for url in urls:
            table = _read_parquet(client.download(url), columns)
            if table is None:
                continue
            if min_live is not None:
                table = table.filter(pc.less(table["_step"], min_live))
            checked = checked or _check_arrow(table, verify, cursor)
            yield from _emit_arrow(window.arrow(table), first_new, cursor)
        if not checked and (min_live is None or verify < min_live):
            raise Rewound()
    if urls and min_live is None:
        return  # everything is exported
    start = min_live if urls else 0
    if verify is not None and verify >= start:
        start = verify  # read the last loaded step again, to see the run was not rewound
    else:
        start = max(start, first_new)  # ask only for the window
    yield from _read_live(client, run_key, cursor, page_size, start, live, checked, first_new, window)


def _read_live(client: WandbClient, run_key: tuple[str, str, str], cursor: HistoryCursor, page_size: int,
               start: int, live: list[int], checked: bool, first_new: int,
               window: StepWindow) -> Iterator[list[dict]]:
    verify = cursor.last_step if not checked else None
    stop = None if window.max_step is None else max(window.max_step, verify or 0) + 1
    while True:
        if stop is not None and start >= stop:
            return
        lines = client.history_page(*run_key, start, page_size, stop)
        if lines is None:
            raise RunGone("/".join(run_key))
        page = _live_page(lines, start)
        steps = page["_step"].to_pylist() if isinstance(page, pa.Table) else [r["_step"] for r in page]
        if verify is not None:
            if not steps or steps[0] != verify or not _check_page(page, verify, cursor):
                raise Rewound()  # the last loaded step is gone
            verify = None
        yield from (_emit_arrow(window.arrow(page), first_new, cursor) if isinstance(page, pa.Table)
                    else _emit(window.rows(page), first_new, cursor))
        if not steps or (live and steps[-1] >= live[-1] and len(steps) < page_size):
            return
        if stop is not None and (len(steps) < page_size or steps[-1] + 1 >= stop):
            return  # the whole window was in this page
        start = steps[-1] + 1


def _read_parquet(data: bytes, columns: Callable[[list[str]], list[str]] | None) -> pa.Table | None:
    """A parquet export, only the `columns` wanted (and `_step`, `_timestamp`); None without `_step`."""
    export = pq.ParquetFile(io.BytesIO(data))
    names = export.schema_arrow.names
    if "_step" not in names:
        return None
    return export.read(columns=None if columns is None else columns(names))


def _live_page(lines: list[str], start: int) -> pa.Table | list[dict]:
    """A live page sorted by step from `start` on: an Arrow table, or rows when Arrow cannot type it."""
    table = lines_to_arrow(lines)
    if table is not None:
        return table.filter(pc.greater_equal(table["_step"], start)).sort_by("_step")
    return sorted((r for r in parse_history_lines(lines) if "_step" in r and r["_step"] >= start),
                  key=lambda r: r["_step"])


def _check_page(page: pa.Table | list[dict], step: int, cursor: HistoryCursor) -> bool:
    return _check_arrow(page, step, cursor) if isinstance(page, pa.Table) else _check(page[:1], step, cursor)


def _check(rows: list[dict], step: int | None, cursor: HistoryCursor) -> bool:
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


def _emit(rows: list[dict], first_new: int, cursor: HistoryCursor) -> Iterator[list[dict]]:
    new = [r for r in rows if r["_step"] >= first_new]
    if not new:
        return
    if cursor.rewound:
        cursor.steps_seen.update(r["_step"] for r in new)
    last = max(new, key=lambda r: r["_step"])
    if last["_step"] > cursor.last_step:
        cursor.last_step, cursor.last_timestamp = last["_step"], last.get("_timestamp")
    yield new


def read_events(client: WandbClient, run_key: tuple[str, str, str], after: float | None) -> list[dict]:
    """System-metric samples newer than `after` (a `_timestamp`)."""
    lines = client.events(*run_key)
    if lines is None:
        raise RunGone("/".join(run_key))
    rows = [r for r in parse_history_lines(lines) if isinstance(r.get("_timestamp"), (int, float))]
    return [{k: v for k, v in r.items() if k != "_wandb"} for r in rows if after is None or r["_timestamp"] > after]


def in_parallel(jobs: Iterable[Any], work: Callable[[Any], Iterator[Any]], max_workers: int,
                buffer: int = 16) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Run `work(job)` for every job on a bounded pool; yield (job, item, None) per item produced,
    then (job, DONE, error or None) when the job ends. Memory is bounded by `buffer` items."""
    jobs = list(jobs)
    results: queue.Queue = queue.Queue(maxsize=buffer)
    stop = threading.Event()

    def run(job: Any) -> None:
        error = None
        try:
            for item in work(job):
                if stop.is_set():
                    return
                results.put((job, item, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, never swallowed
            error = e
        if not stop.is_set():
            results.put((job, DONE, error))

    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="wandb-fetch")
    try:
        for job in jobs:
            pool.submit(run, job)
        remaining = len(jobs)
        while remaining:
            job, item, error = results.get()
            if item is DONE:
                remaining -= 1
            yield job, item, error
    finally:
        stop.set()
        while True:  # unblock producers waiting on a full queue
            try:
                results.get_nowait()
            except queue.Empty:
                break
        pool.shutdown(wait=True, cancel_futures=True)

