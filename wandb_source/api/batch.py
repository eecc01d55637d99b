"""`RunBatch`: one request that answers for several runs of a project, made when a worker first needs it
and shared by the workers reading the other runs. Used for small runs' history (`history.history_batch`)
and system metrics (`events.events_batch`): W&B's per-run fields, asked under one alias per run."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Optional

from dlt.common import logger

from ..exceptions import AuthenticationError, ConfigurationError, WandbSourceError
from .client import RunGone


class RunBatch:
    """`ask()` answers {run: answer, or None for a run W&B no longer has}. Asked once, on the first
    `take`; a request the server refuses (any error but a bad key or configuration) leaves every run of
    the batch to its own requests, with one warning."""

    def __init__(self, what: str, entity: str, project: str, runs: Sequence[str],
                 ask: Callable[[], dict[str, Any]]) -> None:
        self.what, self.entity, self.project, self.runs = what, entity, project, list(runs)
        self._ask = ask
        self._answers: Optional[dict[str, Any]] = None
        self._lock = threading.Lock()

    def take(self, run: str) -> Any:
        """The run's answer (once); None when it is to be read on its own; RunGone when W&B no longer has it."""
        with self._lock:
            if self._answers is None:
                self._answers = self._asked()
            answer = self._answers.pop(run, False)
        if answer is None:
            raise RunGone(f"{self.entity}/{self.project}/{run}")
        return None if answer is False else answer

    def _asked(self) -> dict[str, Any]:
        try:
            return dict(self._ask())
        except (AuthenticationError, ConfigurationError):
            raise
        except WandbSourceError as e:
            logger.warning("W&B refused reading the %s of %d runs of %s/%s in one request (%s); they are read "
                           "one by one", self.what, len(self.runs), self.entity, self.project, e)
            return {}
