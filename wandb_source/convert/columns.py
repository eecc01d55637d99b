"""Stable W&B key → column names for one table (`ColumnMap`), persisted in dlt state. Pure, no I/O."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from typing import Any

from .values import DLT_COLUMNS, NAMING


class ColumnMap:
    """Stable W&B key → column assignment for one table, persisted in dlt state.

    The first kind seen for a key gets the snake_case name; another kind, or a name already taken
    (`train/loss` vs `train_loss`, or a key equal to one of our own columns), gets a suffix. Once the
    budget of columns is spent, new keys map to "" (the long table).
    """

    def __init__(self, state: dict[str, Any], reserved: Iterable[str], budget: int, naming: Any = NAMING) -> None:
        self._state = state  # {key: {kind: column or ""}}
        self._naming = naming  # the destination's: Postgres shortens names past 63 characters
        self._lock = threading.Lock()
        self._budget = budget
        self.added: list[tuple[str, str, str]] = []  # (key, kind, column) assigned since creation
        self._taken = set(reserved) | DLT_COLUMNS
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
        suffixes = itertools.chain([""], [f"__{kind}"], (f"__{kind}_{n}" for n in itertools.count(2)))
        for suffix in suffixes:  # lazily: only as many names as needed
            # normalize_path is what dlt applies to Arrow column names: the result is the final name
            candidate = self._naming.normalize_path((key or "key") + suffix)
            if candidate not in self._taken:
                self._taken.add(candidate)
                return candidate
        return ""

    def added_rows(self, table: str) -> list[dict[str, Any]]:
        """Rows for `metric_columns`: where each newly seen W&B key+kind is stored."""
        rows = [{"table_name": table, "key": key, "kind": kind, "column_name": col or None,
                 "long_table": None if col else f"{table}_long"} for key, kind, col in self.added]
        self.added = []
        return rows


