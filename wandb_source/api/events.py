"""A run's system metrics: every sample from its `wandb-events.jsonl`, else W&B's capped `events` read.

A finished run with few samples is read with others in one request (`events_batch`); its answer is used
only when it holds exactly the `eventsLineCount` samples W&B lists for the run (a capped answer holds fewer),
else the run is read on its own."""

from __future__ import annotations

import json
from typing import Any, Optional, cast

from dlt.common import logger

from .. import settings
from ..convert.metrics import parse_history_lines
from .batch import RunBatch
from .client import RunGone, WandbClient

FINAL_STATES = ("finished", "crashed", "failed", "killed")  # no more samples will come


def events_batch(client: WandbClient, entity: str, project: str, runs: list[str]) -> RunBatch:
    """The `events` of several finished runs in one request (`WandbClient.events_batch`)."""
    return RunBatch("system metrics", entity, project, runs, lambda: client.events_batch(entity, project, runs))


def batched_size(state: str | None, line_count: int | None) -> int | None:
    """A run's weight in an events batch, None for a run read on its own: one still running (its count may
    be behind), without samples, or with more than one batch holds."""
    if state not in FINAL_STATES or not line_count or line_count > settings.EVENTS_BATCH_SAMPLES:
        return None
    return line_count


def read_events(client: WandbClient, run_key: tuple[str, str, str], after: float | None, url: str | None = None,
                line_count: int | None = None, batch: RunBatch | None = None) -> tuple[list[dict[str, Any]], bool | None]:
    """System-metric samples newer than `after` (a `_timestamp`), and whether they are a sample of the
    run's: from the run file `wandb-events.jsonl` (every sample, as the SDK streamed it) when `url` is
    given, else from `events(samples:)`, which W&B caps: sampled when it returns fewer than `line_count`
    (`eventsLineCount`), unknown (None) when W&B does not say how many there are. `batch`: the run's
    answer in an events batch, used when it holds all `line_count` samples."""
    batched = batch.take(run_key[2]) if batch is not None else None
    if batched is not None and len(batched) == line_count:
        rows, sampled = parse_history_lines(batched), cast(Optional[bool], False)
    elif url:
        rows, sampled = parse_events_file(client.download(url)), False
    else:
        lines = client.events(*run_key)
        if lines is None:
            raise RunGone("/".join(run_key))
        rows = parse_history_lines(lines)
        sampled = None if line_count is None else len(rows) < line_count
    rows = [r for r in rows if isinstance(r, dict) and isinstance(r.get("_timestamp"), (int, float))
            and not isinstance(r.get("_timestamp"), bool)]
    return [{k: v for k, v in r.items() if k != "_wandb"} for r in rows if after is None or r["_timestamp"] > after], sampled


def parse_events_file(data: bytes) -> list[dict[str, Any]]:
    """`wandb-events.jsonl`: one JSON object per line (NaN/Infinity tokens allowed). A last line that does
    not parse is still being written and is left for the next load; a damaged line is skipped."""
    lines = data.split(b"\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            if number < len(lines):
                logger.warning("skipped line %d of a wandb-events.jsonl: not JSON", number)
    return rows


