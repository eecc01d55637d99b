"""Which reads fetch a run's history: a pure planner, no I/O.

W&B serves a run's history in two parts (protocol notes): parquet exports of a prefix, and `HistoryPage`
for the steps not yet exported, which `parquetHistory.liveData` lists. `history(minStep, maxStep, samples)`
is documented as *sampled*: a window that holds more rows than `samples` may come back as evenly spaced
samples, with no error. No official client sends such a window (wandb-core: samples = maxStep - minStep),
and neither does this planner:

- With the live steps known, the range to read is cut into contiguous windows `[min_step, max_step)` that
  each hold at most `page_size - 1` of those steps and ask for `samples = page_size`. A run logging every
  1,000th step then costs about rows / page_size requests, not steps / page_size. An answer holding
  fewer rows than `samples` cannot be a sample; a full one means rows nobody listed were there (steps
  logged since the listing, or a listing W&B cut short) and the window is split and asked again. The
  executor also checks every answer holds each step the window should.
- With the live steps unknown (a server without `parquetHistory`), windows are at most `page_size` steps
  wide, so they cannot hold more rows than `samples`, up to the last step W&B reports.

    plan_history(exports=True, live_steps=[990, 991, 995], last_loaded=-1, window=StepWindow(), page_size=1000)
    → HistoryPlan(read_exports=True, exports_below=990, verify=None,
                  windows=(LiveWindow(990, 996, 1000, (990, 991, 995)),))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ..convert.selection import StepWindow


@dataclass(frozen=True)
class LiveWindow:
    """One `HistoryPage`: steps `min_step` (inclusive) to `max_step` (exclusive), `samples` rows at most.
    `expected`: the steps W&B listed as live here (None: not known, then the window is at most
    `samples` steps wide)."""

    min_step: int
    max_step: int
    samples: int
    expected: Optional[tuple[int, ...]] = None

    def split(self) -> tuple[LiveWindow, LiveWindow]:
        """Two windows covering this one (for an answer that may have been sampled)."""
        middle = (self.min_step + self.max_step) // 2
        if self.expected is None:
            return (LiveWindow(self.min_step, middle, self.samples),
                    LiveWindow(middle, self.max_step, self.samples))
        return (LiveWindow(self.min_step, middle, self.samples, tuple(s for s in self.expected if s < middle)),
                LiveWindow(middle, self.max_step, self.samples, tuple(s for s in self.expected if s >= middle)))


@dataclass(frozen=True)
class HistoryPlan:
    """What to read: the parquet exports (only steps below `exports_below`, the first live step, when
    set), then the live `windows` in order. `verify`: the last loaded step, re-read to see the run was
    not rewound (in the exports when `verify_in_exports`, else in the first window). `rewound`: the plan
    already shows the last loaded step is gone."""

    read_exports: bool = False
    exports_below: Optional[int] = None
    windows: tuple[LiveWindow, ...] = ()
    verify: Optional[int] = None
    verify_in_exports: bool = False
    rewound: bool = False
    first_new: int = 0  # the first step to emit (steps before it are read only to verify)


def plan_history(exports: bool, live_steps: Optional[Sequence[int]], last_loaded: int, window: StepWindow,
                 page_size: int, last_step: Optional[int] = None) -> HistoryPlan:
    """Plan the reads of one run's history.

    Args:
        exports: the run has parquet exports (`parquetUrls` not empty).
        live_steps: the steps not yet exported (`liveData`), ascending; None when the server cannot say.
        last_loaded: the last step loaded before (-1: none); it is read again to detect a rewind.
        window: `min_step`..`max_step` to load.
        page_size: rows per `HistoryPage` (its `samples`).
        last_step: W&B's last step (`historyKeys.lastStep`), the end of the range when `live_steps` is None.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    first_new = window.first(last_loaded + 1)
    verify = last_loaded if last_loaded >= 0 else None
    live = list(live_steps) if live_steps is not None else None
    min_live = live[0] if live else None
    verify_in_exports = verify is not None and exports and (min_live is None or verify < min_live)
    if verify is not None and not verify_in_exports and live is not None and verify not in live:
        return HistoryPlan(rewound=True, verify=verify)  # neither exported nor live: the step is gone
    read_exports = exports and (verify is None or verify_in_exports)
    if exports and live is not None and not live:
        return HistoryPlan(read_exports=read_exports, verify=verify, verify_in_exports=verify_in_exports,
                           first_new=first_new)  # everything is exported
    start = min_live if exports and min_live is not None else 0
    start = verify if verify is not None and not verify_in_exports else max(start, first_new)
    end = _end(live, last_step, window, verify)
    windows = _windows(live, start, end, page_size)
    return HistoryPlan(read_exports, min_live if exports else None, windows, verify, verify_in_exports,
                       first_new=first_new)


def _end(live: Optional[list[int]], last_step: Optional[int], window: StepWindow, verify: Optional[int]) -> int:
    """One past the last step to read."""
    if live is not None:
        end = live[-1] + 1 if live else 0
    else:
        end = (last_step + 1) if last_step is not None else 0
    if window.max_step is not None:
        end = min(end, max(window.max_step, verify if verify is not None else -1) + 1)
    return end


def _windows(live: Optional[list[int]], start: int, end: int, page_size: int) -> tuple[LiveWindow, ...]:
    if start >= end:
        return ()
    if live is None:
        return tuple(LiveWindow(lo, min(lo + page_size, end), page_size) for lo in range(start, end, page_size))
    steps = [s for s in live if start <= s < end]
    if not steps:
        return ()
    per_window = max(1, page_size - 1)  # one short of `samples`: a full answer shows unlisted rows
    out, lo = [], start
    for i in range(0, len(steps), per_window):
        chunk = steps[i:i + per_window]
        hi = steps[i + per_window] if i + per_window < len(steps) else end
        out.append(LiveWindow(lo, hi, per_window + 1, tuple(chunk)))
        lo = hi
    return tuple(out)


def batch_runs(runs: Sequence[tuple[Any, Optional[int], int]], page_size: int, max_runs: int) -> list[list[int]]:
    """Which runs share one history batch request, as lists of indices into `runs`, each given as (project,
    `historyLineCount`, last step loaded or -1). A run is batched when its new rows — and the last loaded
    one, read again — fit one window by its count; a batch holds runs of one project, at most `max_runs`
    of them and `page_size` expected rows. A new run with no rows needs no request and is left out."""
    sizes = []
    for project, count, last in runs:
        expected = None if count is None or (last < 0 and count == 0) else max(1, count - (last + 1) + (last >= 0))
        sizes.append((project, expected if expected is not None and expected <= page_size - 1 else None))
    return group_runs(sizes, page_size, max_runs)


def group_runs(runs: Sequence[tuple[Any, Optional[int]]], budget: int, max_runs: int) -> list[list[int]]:
    """Consecutive runs, given as (project, size or None to leave a run out), in groups of one project with
    at most `max_runs` runs and `budget` in size (indices into `runs`)."""
    groups: list[list[int]] = []
    total = 0
    for index, (project, size) in enumerate(runs):
        if size is None or size > budget:
            continue
        if not groups or len(groups[-1]) >= max_runs or total + size > budget or runs[groups[-1][0]][0] != project:
            groups.append([])
            total = 0
        groups[-1].append(index)
        total += size
    return groups
