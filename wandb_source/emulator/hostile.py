"""The hostile corpus: a project `hostile` whose keys and values attack loaders.

Keys that are SQL (quotes, `;`, keywords, comment markers), that equal dlt's own columns (`_dlt_id`,
`_dlt_load_id`) or the source's key columns (`run_id`, `entity`, `project`, `_deleted`), that start
with digits or underscores, that are 200+ characters, unicode and emoji; values at the edges of every
type: NaN, ±Infinity, -0.0, the largest and smallest floats, ints at and beyond int64, empty and very
long strings, bools, nulls, dicts nested 10 deep, lists, histograms and media dicts. Config and summary
carry the same keys; tags and notes have newlines. Runs: finished (history partly in parquet exports),
still running (all live), no steps, forked (W&B `fork_from`: its first step is 60) and crashed.
"""

from __future__ import annotations

import datetime as dt
import math

from .store import Run, RunHistory, Store

HOSTILE_KEYS = [
    "it's", 'say "hi"', "a;b", "drop table history;--", "select", "from", "order", "group", "user", "table",
    "_dlt_id", "_dlt_load_id", "run_id", "entity", "project", "_deleted", "key", "1st_metric", "__double",
    "_leading", "Ünïcødé/损失/🚀", "emoji 🎉 key", "x" * 210, "tab\tkey", "new\nline", "back\\slash",
    "percent%s", "q?", "brace{}", "$dollar",
]


def _deep(levels: int) -> dict:
    node: dict = {"leaf": 1.5, "text": "end"}
    for i in range(levels - 1):
        node = {f"level{levels - 1 - i}": node}
    return node


def hostile_values(step: int) -> dict:
    """Values of one row: every edge case once in a while, so columns keep a stable kind."""
    values = {
        "edge/float": [math.nan, math.inf, -math.inf, -0.0, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308,
                       -1.7976931348623157e308][step % 8],
        "edge/int64_max": 2**63 - 1 - step,
        "edge/int64_min": -(2**63) + step,
        "edge/beyond_int64": 2**64 + step,  # no int64 fits: loaded as exact text
        "edge/below_int64": -(2**63) - 1 - step,
        "edge/int_53": 2**53 + 1 + step,
        "edge/empty": "",
        "edge/long_text": "long " * 20_000 if step % 7 == 0 else "short",
        "edge/bool": step % 2 == 0,
        "edge/null": None,
        "edge/nested10": _deep(10),
        "edge/list": [1.5, math.nan, -math.inf, step],  # mixed-type lists: config and summary below
        "edge/histogram": {"_type": "histogram", "values": [step, 0, 2], "bins": [-1.0, 0.0, 0.5, 1.0]},
        "edge/media": {"_type": "image-file", "path": f"media/images/x_{step}.png", "sha256": "ab" * 32,
                       "size": 10, "format": "png", "width": 1, "height": 1},
        "edge/sql_text": "'); DROP TABLE runs; --",
        "edge/newlines": "line1\nline2\r\nline3\x00end" if step % 3 == 0 else "one line",
    }
    values.update({key: float(step) + i / 100 for i, key in enumerate(HOSTILE_KEYS)})
    return values


def _make_row(t0: float) -> callable:
    def make_row(step: int) -> dict:
        return {"_step": step, "_runtime": step * 0.5, "_timestamp": t0 + step * 0.5, **hostile_values(step)}

    return make_row


def add_hostile_project(store: Store, entity: str, created: dt.datetime) -> None:
    store.add_project(entity, "hostile", created)
    config = {**{key: f"config {key}" for key in HOSTILE_KEYS}, "nested10": _deep(10), "nan": math.nan,
              "inf": -math.inf, "big": 2**64, "empty": "",
              "list": [1, "two", None, [3.5, math.nan], {"k": math.inf}], "none": None}
    for index, (name, state, steps) in enumerate((("hostile-finished", "finished", range(120)),
                                                   ("hostile-running", "running", range(45)),
                                                   ("hostile-empty", "finished", range(0)),
                                                   ("hostile-forked", "finished", range(60, 120)),
                                                   ("hostile-crashed", "crashed", range(33)))):
        start = created + dt.timedelta(hours=index)
        history = RunHistory(_make_row(start.timestamp()), list(steps))
        run = Run(entity=entity, project="hostile", name=name, display_name=f"it's \"{name}\"; --",
                  state=state, created_at=start, updated_at=start + dt.timedelta(minutes=5), heartbeat_at=start,
                  config=dict(config), tags=["multi\nline tag", "'quoted'", "🚀"], notes="notes\nwith\nlines; DROP",
                  history=history)
        run.summary = {**(dict(history.row(len(steps) - 1)) if steps else {}), "_wandb": {"runtime": len(steps) * 0.5}}
        run.export_bounds = [len(steps) // 2] if state != "running" and steps else []
        store.add_run(run)
