"""Progress of a long load: log lines on the logger `wandb_source.progress` (INFO), at most one per
`settings.PROGRESS_EVERY_SECONDS` per table plus one when the table is done, e.g.

    history: 120/400 runs, 1,234,567 rows, 35,210 rows/s

The pipeline script shows them on stderr; a library user sees them by giving that logger a handler.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .. import settings

logger = logging.getLogger("wandb_source.progress")


class Progress:
    """Runs done out of `total` and rows sent to `table`, reported as they go."""

    def __init__(self, table: str, total: int, every: float = settings.PROGRESS_EVERY_SECONDS) -> None:
        self.table, self.total, self.every = table, total, every
        self.done = self.count = 0
        self.started = self.reported = time.monotonic()

    def rows(self, table: str, item: Any) -> None:
        if table == self.table:
            self.count += len(item)
        self._report()

    def run_done(self) -> None:
        self.done += 1
        self._report(final=self.done == self.total)

    def _report(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.reported < self.every:
            return
        self.reported = now
        rate = self.count / max(now - self.started, 1e-9)
        logger.info("%s: %d/%d runs, %s rows, %s rows/s", self.table, self.done, self.total, f"{self.count:,}",
                    f"{rate:,.0f}")
