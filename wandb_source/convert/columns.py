"""W&B key → column names for one table (`ColumnMap`): a pure function of the key and its kind, so that
shards loading one dataset name every key alike whatever each has seen. Pure, no I/O.

The rule (`column_name`):
- A readable key — lower-case words of letters and digits joined by single `_`, in sections joined by the
  table's section separator (`/` in history, `.` in system metrics) — is its own name, sections joined by
  `__`, dlt's nesting separator: `loss` → `loss`, `train/loss` → `train__loss`, `eval/top_1` → `eval__top_1`,
  `system.gpu.0.temp` → `system__gpu___0__temp` (dlt prefixes a leading digit with `_`).
- Any other key (upper case, spaces, other punctuation, a name of our own columns) gets its snake_case
  spelling and `___h` with the first 8 hex digits of its SHA-256: `Val Acc` → `val_acc___h1f0c6e2a`. No
  readable name holds `___` followed by a letter, so the two never meet, whatever keys another shard saw.
- A number (W&B's usual kind) has the bare name; another kind of the same key adds `___<kind>`:
  `status___text`, `loss___json`.
Names a dataset loaded before this rule gave keep theirs (kept in dlt state); a new name they already hold
falls back to the hashed spelling.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable
from typing import Any

from .values import DLT_COLUMNS, NAMING

_WORDS = r"[a-z0-9]+(?:_[a-z0-9]+)*"
PLAIN_KIND = "number"


def _readable(separator: str) -> re.Pattern[str]:
    sep = re.escape(separator)
    return re.compile(rf"{_WORDS}(?:{sep}{_WORDS})*")


SECTION_SEPARATORS = {"history": "/", "system_metrics": "."}
_READABLE = {table: _readable(sep) for table, sep in SECTION_SEPARATORS.items()}


def column_name(key: str, kind: str, table: str = "history", reserved: Iterable[str] = (), naming: Any = NAMING) -> str:
    """The column of `table` that holds `key`'s values of `kind`: a pure function of its arguments
    (`reserved`: the table's own columns, which a key never takes)."""
    separator = SECTION_SEPARATORS.get(table, "/")
    if _READABLE.get(table, _READABLE["history"]).fullmatch(key) and key not in set(reserved) | DLT_COLUMNS:
        name = key.replace(separator, "__")
    else:
        name = hashed_name(key)
    if kind != PLAIN_KIND:
        name = f"{name}___{kind}"
    # normalize_path is what dlt applies to Arrow column names (and shortens past a destination's limit)
    return str(naming.normalize_path(name))


def hashed_name(key: str) -> str:
    """`key`'s snake_case spelling made unique by its hash: `Val Acc` → `val_acc___h1f0c6e2a`."""
    base = NAMING.normalize_identifier(key or "key").strip("_") or "key"
    return f"{base}___h{hashlib.sha256(key.encode()).hexdigest()[:8]}"


class ColumnMap:
    """W&B key → column of one table, persisted in dlt state (`{key: {kind: column or ""}}`).

    New keys are named by `column_name`; once `budget` columns are spent, new keys map to "" (the long
    table). The budget counts the columns this pipeline assigned: shards sharing a dataset agree on every
    name, and on which keys are long while each stays under its budget.
    """

    def __init__(self, state: dict[str, Any], reserved: Iterable[str], budget: int, naming: Any = NAMING,
                 table: str = "history") -> None:
        self._state = state
        self._naming = naming  # the destination's: Postgres shortens names past 63 characters
        self._table = table
        self._reserved = tuple(reserved)
        self._lock = threading.Lock()
        self._budget = budget
        self.added: list[tuple[str, str, str]] = []  # (key, kind, column) assigned since creation
        self._taken = set(self._reserved) | DLT_COLUMNS
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
        name = column_name(key, kind, self._table, self._reserved, self._naming)
        if name in self._taken:  # held by a key of a dataset named before this rule
            suffix = f"___{kind}" if kind != PLAIN_KIND else ""
            name = self._naming.normalize_path(hashed_name(key) + suffix)
            if name in self._taken:
                return ""
        self._taken.add(name)
        return str(name)

    def added_rows(self, table: str) -> list[dict[str, Any]]:
        """Rows for `metric_columns`: where each newly seen W&B key+kind is stored."""
        rows = [{"table_name": table, "key": key, "kind": kind, "column_name": col or None,
                 "long_table": None if col else f"{table}_long"} for key, kind, col in self.added]
        self.added = []
        return rows
