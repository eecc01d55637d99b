"""The history planner (pure) and the executor's verdict on each live page, table-driven."""

from __future__ import annotations

import pytest

from wandb_source.api.client import as_step
from wandb_source.api.history import judge_page
from wandb_source.api.history_plan import HistoryPlan, LiveWindow, batch_runs, plan_history
from wandb_source.convert.selection import StepWindow
from wandb_source.exceptions import ServerError

W = StepWindow()


def spans(plan: HistoryPlan) -> list[tuple[int, int]]:
    return [(w.min_step, w.max_step) for w in plan.windows]


@pytest.mark.parametrize("case, kwargs, want", [
    ("exports only: no live reads",
     dict(exports=True, live_steps=[], last_loaded=-1, window=W, page_size=1000),
     dict(read_exports=True, windows=[], exports_below=None)),
    ("live only, 2,500 contiguous steps: windows of 999 listed rows, 1,000 samples",
     dict(exports=False, live_steps=list(range(2500)), last_loaded=-1, window=W, page_size=1000),
     dict(read_exports=False, windows=[(0, 999), (999, 1998), (1998, 2500)])),
    ("both: exports below the first live step, live from it",
     dict(exports=True, live_steps=list(range(15000, 20000)), last_loaded=-1, window=W, page_size=1000),
     dict(read_exports=True, exports_below=15000,
          windows=[(15000 + i * 999, 15999 + i * 999) for i in range(5)] + [(19995, 20000)])),
    ("sparse: every 1,000th step costs rows / page_size requests",
     dict(exports=False, live_steps=list(range(0, 3000 * 1000, 1000)), last_loaded=-1, window=W, page_size=1000),
     dict(windows=[(0, 999_000), (999_000, 1_998_000), (1_998_000, 2_997_000), (2_997_000, 2_999_001)])),
    ("step gaps: the window spans the gap",
     dict(exports=False, live_steps=[0, 1, 2, 500_000, 500_001], last_loaded=-1, window=W, page_size=1000),
     dict(windows=[(0, 500_002)])),
    ("incremental, last step live: re-read it, then the rest",
     dict(exports=False, live_steps=list(range(1500)), last_loaded=999, window=W, page_size=1000),
     dict(verify=999, verify_in_exports=False, windows=[(999, 1500)], first_new=1000)),
    ("page size 1: one listed step per window, two samples",
     dict(exports=False, live_steps=[3, 9], last_loaded=-1, window=W, page_size=1),
     dict(windows=[(0, 9), (9, 10)])),
    ("incremental, last step exported: exports read again to verify",
     dict(exports=True, live_steps=[100, 101], last_loaded=42, window=W, page_size=1000),
     dict(read_exports=True, verify=42, verify_in_exports=True, windows=[(100, 102)], first_new=43)),
    ("incremental, last step exported since: verified in exports, live not re-read before it",
     dict(exports=True, live_steps=[], last_loaded=42, window=W, page_size=1000),
     dict(read_exports=True, verify_in_exports=True, windows=[])),
    ("rewound: the last loaded step is neither exported nor live",
     dict(exports=True, live_steps=[10, 11], last_loaded=40, window=W, page_size=1000),
     dict(rewound=True)),
    ("rewound: history gone",
     dict(exports=False, live_steps=[], last_loaded=5, window=W, page_size=1000),
     dict(rewound=True)),
    ("step window: only min_step..max_step is asked",
     dict(exports=False, live_steps=list(range(5000)), last_loaded=-1, window=StepWindow(1200, 2100), page_size=1000),
     dict(windows=[(1200, 2101)], first_new=1200)),
    ("step window below the live part: no live reads",
     dict(exports=True, live_steps=[900, 901], last_loaded=-1, window=StepWindow(None, 10), page_size=1000),
     dict(read_exports=True, windows=[])),
    ("live steps unknown (no parquetHistory): windows at most page_size steps wide up to lastStep",
     dict(exports=False, live_steps=None, last_loaded=-1, window=W, page_size=1000, last_step=2300),
     dict(windows=[(0, 1000), (1000, 2000), (2000, 2301)])),
    ("live steps unknown, incremental",
     dict(exports=False, live_steps=None, last_loaded=1500, window=W, page_size=1000, last_step=1600),
     dict(windows=[(1500, 1601)], verify=1500)),
    ("nothing at all",
     dict(exports=False, live_steps=[], last_loaded=-1, window=W, page_size=1000),
     dict(windows=[], read_exports=False, rewound=False)),
])
def test_plan(case, kwargs, want):
    plan = plan_history(**kwargs)
    for name, value in want.items():
        got = spans(plan) if name == "windows" else getattr(plan, name)
        assert got == value, (case, name, got)


def test_no_window_holds_more_listed_steps_than_samples():
    live = sorted({(i * 7919) % 100_003 for i in range(30_000)})  # irregular steps
    plan = plan_history(False, live, -1, W, 1000)
    covered = []
    for w in plan.windows:
        inside = [s for s in live if w.min_step <= s < w.max_step]
        assert len(inside) < w.samples <= 1000 and tuple(inside) == w.expected
        covered += inside
    assert covered == live
    assert [w.min_step for w in plan.windows[1:]] == [w.max_step for w in plan.windows[:-1]]  # contiguous


@pytest.mark.parametrize("window, steps, verdict", [
    (LiveWindow(0, 10, 4, (0, 3, 7)), [0, 3, 7], "ok"),
    (LiveWindow(0, 10, 5, (0, 3, 7)), [0, 3, 7, 8], "ok"),  # one row nobody listed, the page not full: complete
    (LiveWindow(0, 10, 3, (0, 3, 7)), [0, 5, 7], "split"),  # full and a listed step missing: sampled
    (LiveWindow(0, 10, 3, (0, 3)), [0, 3, 8], "split"),  # full with an unlisted row: more may be there
    (LiveWindow(0, 10, 4, (0, 3, 7)), [0, 3, 5, 7], "split"),  # as many rows as samples: it may be a sample
    (LiveWindow(0, 10, 5, (0, 3, 7)), [0, 7], "missing"),  # not full, yet a listed step is gone
    (LiveWindow(5, 6, 1, (5,)), [], "missing"),
    (LiveWindow(0, 1000, 1000), list(range(0, 1000)), "ok"),  # unknown steps, window as wide as samples
])
def test_judge_page(window, steps, verdict):
    assert judge_page(window, steps) == verdict


def test_split_keeps_every_listed_step():
    left, right = LiveWindow(0, 100, 10, (1, 49, 50, 99)).split()
    assert (left.min_step, left.max_step, left.expected) == (0, 50, (1, 49))
    assert (right.min_step, right.max_step, right.expected) == (50, 100, (50, 99))


@pytest.mark.parametrize("value, step", [(57, 57), (57.0, 57), (0.0, 0), (2**53, 2**53)])
def test_float_steps_become_ints(value, step):
    assert as_step(value) == step and isinstance(as_step(value), int)


@pytest.mark.parametrize("value", [57.5, float("nan"), float("inf"), "57", True, None])
def test_steps_that_are_not_whole_numbers_are_refused(value):
    with pytest.raises(ServerError, match="not a whole number"):
        as_step(value)


@pytest.mark.parametrize("runs, groups", [
    ([("p", 20, -1)] * 3, [[0, 1, 2]]),  # new runs: their counts
    ([("p", 400, -1)] * 3, [[0, 1], [2]]),  # at most 1,000 expected rows a request
    ([("p", 999, -1), ("p", 1000, -1)], [[0]]),  # a run that needs more than one window reads alone
    ([("p", 0, -1), ("p", None, -1), ("p", 5, -1)], [[2]]),  # no rows: no request; no count: alone
    ([("p", 120, 99), ("p", 0, 4)], [[0, 1]]),  # loaded runs: the new rows and the last one, read again
    ([("p", 5, -1), ("q", 5, -1), ("p", 5, -1)], [[0], [1], [2]]),  # one project per request
    ([("p", 1, -1)] * 51, [list(range(50)), [50]]),  # at most 50 runs
])
def test_batch_runs(runs, groups):
    assert batch_runs(runs, 1000, 50) == groups
