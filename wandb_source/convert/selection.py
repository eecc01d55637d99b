"""Which history to load: W&B key patterns, a step window and the last N steps of each run.

Patterns are globs on W&B keys: `*` matches within one `/`-separated part (`train/*` is `train/loss`,
not `train/a/b`), `**` across parts (`eval/**`), `?` one character, `[...]` a class; a pattern
starting with `!` in an include list excludes. `_step`, `_timestamp` and `_runtime` are always kept.
A row (a logged step, or a system-metrics sample) is kept when it holds at least one selected key:
selection never drops a step where a selected key was logged, however sparse the key.

The step window `min_step`..`max_step` is inclusive at both ends. `last_steps` keeps, per run and per
load, the last N steps that hold a selected key (within the window).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pyarrow as pa
import pyarrow.compute as pc

from ..exceptions import ConfigurationError

ALWAYS_KEPT = ("_step", "_timestamp", "_runtime")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.S)


@dataclass(frozen=True)
class KeySelection:
    """Include/exclude globs for one table's keys (`what` names the setting, for messages)."""

    include: tuple[Any, ...] = ()
    exclude: tuple[Any, ...] = ()
    what: str = "history"
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @classmethod
    def of(cls, include: Any, exclude: Any, what: str) -> KeySelection:
        inc = _patterns(include, f"{what}_include")
        exc = _patterns(exclude, f"{what}_exclude")
        return cls(tuple(p for p in inc if not p.startswith("!")),
                   tuple(exc) + tuple(p[1:] for p in inc if p.startswith("!")), what)

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude)

    def wants(self, key: str) -> bool:
        if key in ALWAYS_KEPT:
            return True
        hit = self._cache.get(key)
        if hit is None:
            included = not self.include or any(_glob_regex(p).match(key) for p in self.include)
            hit = self._cache[key] = included and not any(_glob_regex(p).match(key) for p in self.exclude)
        return hit

    def unmatched(self, keys: Iterable[str]) -> list[str]:
        """Patterns that match none of `keys` (likely typos)."""
        keys = list(keys)
        return [p for p in (*self.include, *self.exclude) if not any(_glob_regex(p).match(k) for k in keys)]

    def rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows projected on the selected keys; rows left with no selected key are dropped."""
        if not self.active:
            return rows
        out = []
        for row in rows:
            kept = {k: v for k, v in row.items() if self.wants(k)}
            if any(k not in ALWAYS_KEPT for k in kept):
                out.append(kept)
        return out

    def arrow(self, table: pa.Table, index_keys: Sequence[str] = ALWAYS_KEPT) -> pa.Table:
        """`rows` for an Arrow table (a parquet export or a live page)."""
        if not self.active:
            return table
        keep = [c for c in table.column_names if self.wants(c)]
        metrics = [c for c in keep if c not in index_keys and c not in ALWAYS_KEPT]
        table = table.select(keep)
        if not metrics:
            return table.slice(0, 0)
        held = pc.is_valid(table[metrics[0]])
        for name in metrics[1:]:
            held = pc.or_(held, pc.is_valid(table[name]))
        return table.filter(held)


def _patterns(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p.strip("!") for p in value):
        raise ConfigurationError(f"`{name}` must be a list of glob patterns on W&B keys, e.g. "
                                 f'["train/*", "eval/**"] — got {value!r}')
    return list(value)


@dataclass(frozen=True)
class StepWindow:
    """`min_step`..`max_step` (inclusive) and `last_steps` per run."""

    min_step: Optional[int] = None
    max_step: Optional[int] = None
    last_steps: Optional[int] = None

    @classmethod
    def of(cls, min_step: Any, max_step: Any, last_steps: Any) -> StepWindow:
        for name, value in (("min_step", min_step), ("max_step", max_step), ("last_steps", last_steps)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigurationError(f"`{name}` must be a whole number ≥ 0, got {value!r}")
        if min_step is not None and max_step is not None and min_step > max_step:
            raise ConfigurationError(f"`min_step` ({min_step}) is above `max_step` ({max_step}): nothing would load")
        if last_steps == 0:
            raise ConfigurationError("`last_steps` = 0 would load no history: leave it out to load every step")
        return cls(min_step, max_step, last_steps)

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.min_step, self.max_step, self.last_steps))

    def contains(self, step: int) -> bool:
        return (self.min_step is None or step >= self.min_step) and (self.max_step is None or step <= self.max_step)

    def first(self, first_new: int) -> int:
        return max(first_new, self.min_step or 0)

    def arrow(self, table: pa.Table) -> pa.Table:
        if self.max_step is None:
            return table
        return table.filter(pc.less_equal(table["_step"], self.max_step))

    def rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.max_step is None:
            return rows
        return [r for r in rows if r["_step"] <= self.max_step]


@dataclass
class Selection:
    """What one table loads (keys and, for history, the step window), and the keys each project
    showed during this load — to report patterns that match nothing (`unmatched_report`)."""

    keys: KeySelection = field(default_factory=KeySelection)
    window: StepWindow = field(default_factory=StepWindow)
    seen: dict[str, Any] = field(default_factory=dict)  # "entity/project" -> keys seen in fetched rows
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    def observe(self, project: str, batch: Any) -> None:
        if not self.keys.active:
            return
        keys = batch.column_names if isinstance(batch, pa.Table) else {k for row in batch for k in row}
        with self._lock:
            self.seen.setdefault(project, set()).update(keys)

    def columns(self, project: str) -> Optional[Callable[[list[str]], list[str]]]:
        """For reading only the selected columns of a parquet export (None: read them all)."""
        if not self.keys.active:
            return None

        def pick(names: list[str]) -> list[str]:
            with self._lock:
                self.seen.setdefault(project, set()).update(names)
            return [n for n in names if self.keys.wants(n)]
        return pick

    def apply(self, batch: Any) -> Any:
        return self.keys.arrow(batch) if isinstance(batch, pa.Table) else self.keys.rows(batch)

    def unmatched_report(self) -> list[str]:
        """One message per project in which a pattern matched no key of the rows fetched this load."""
        messages = []
        for project, keys in sorted(self.seen.items()):
            missing = self.keys.unmatched(k for k in keys if k not in ALWAYS_KEPT)
            if missing:
                sample = ", ".join(sorted(k for k in keys if k not in ALWAYS_KEPT)[:8])
                messages.append(f"{self.keys.what} pattern(s) {', '.join(map(repr, missing))} matched no key of "
                                f"{project} in this load (a typo?); keys seen: {sample}"
                                f"{', ...' if len(keys) > 8 else ''}")
        return messages

    def fingerprint(self) -> list[Any]:
        return [list(self.keys.include), list(self.keys.exclude), self.window.min_step, self.window.max_step,
                self.window.last_steps]


def last_rows(batches: list[Any], n: int) -> list[Any]:
    """The last `n` rows of consecutive batches (Arrow tables or row lists), as batches."""
    out, total = [], 0
    for batch in reversed(batches):
        size = batch.num_rows if isinstance(batch, pa.Table) else len(batch)
        if total + size > n:
            keep = n - total
            if keep > 0:
                out.append(batch.slice(size - keep) if isinstance(batch, pa.Table) else batch[size - keep:])
            break
        out.append(batch)
        total += size
    return out[::-1]
