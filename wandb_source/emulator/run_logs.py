"""Runs the real wandb SDK wrote (a run folder: `run-<id>.wandb` and `files/`), served as W&B would after a sync:
its history rows, summary and config from the log, its run files (logged tables' `media/table/*.table.json`
among them) under their paths."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ..logs.run_log import parse_log
from .store import Run, RunHistory, Store

UTC = dt.timezone.utc


def add_logged_run(store: Store, run_dir: Path) -> Run:
    """Add the run logged in `run_dir` (its project created when missing); returns it."""
    logs = sorted(Path(run_dir).glob("run-*.wandb"))
    if len(logs) != 1:
        raise ValueError(f"{run_dir} holds {len(logs)} run logs, not one")
    log = parse_log(logs[0])
    now = dt.datetime.now(UTC)
    run = Run(entity=log.entity, project=log.project, name=log.node["name"], display_name=log.node["displayName"],
              state=log.node["state"], created_at=now, updated_at=now, heartbeat_at=now, config=dict(log.config),
              summary=dict(log.summary), tags=list(log.node.get("tags") or []), notes=log.node.get("notes"),
              history=RunHistory(), host=log.node.get("host"))
    for row in log.history:
        run.history.append(row)
    files = Path(run_dir) / "files"
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        run.files[path.relative_to(files).as_posix()] = path.read_bytes()
    return store.add_run(run)  # creates the project when missing
