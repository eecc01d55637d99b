"""A run's system metrics: every sample from its `wandb-events.jsonl`, else W&B's capped `events` read."""

from __future__ import annotations

import json
from typing import Any, Optional, cast

from dlt.common import logger

from ..convert.metrics import parse_history_lines
from .client import RunGone, WandbClient


def read_events(client: WandbClient, run_key: tuple[str, str, str], after: float | None, url: str | None = None,
                line_count: int | None = None) -> tuple[list[dict[str, Any]], bool | None]:
    """System-metric samples newer than `after` (a `_timestamp`), and whether they are a sample of the
    run's: from the run file `wandb-events.jsonl` (every sample, as the SDK streamed it) when `url` is
    given, else from `events(samples:)`, which W&B caps: sampled when it returns fewer than `line_count`
    (`eventsLineCount`), unknown (None) when W&B does not say how many there are."""
    if url:
        rows, sampled = parse_events_file(client.download(url)), cast(Optional[bool], False)
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


