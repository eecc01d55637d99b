"""Load W&B run logs (`run-<id>.wandb`) from a directory: no server, no API key.

    from wandb_source import wandb_offline_source
    pipeline.run(wandb_offline_source("./wandb"))

Every log under `offline_dir` (recursively; online and offline runs alike) becomes the same rows as the online
path: `runs` (+ `run_config`, `run_summary`, `metric_axes`), `history` (+ `history_long`), `system_metrics`,
`run_metadata` (from the log's environment record), `metric_columns`. Artifacts are not in the log in a form
that names them as the server does: not loaded from logs. Entity and project are the ones recorded in the log,
or `entity` / `project` when given (a run logged offline without them has none). One resource, `history`,
sends all tables. Its state holds per log (path) the size and mtime last read, per run the last step loaded,
and for a log without an exit record (a run still going) a checkpoint: the byte offset read up to and what the
records before it said. A second load skips unchanged logs and reads a grown log from its offset. Logs are
parsed in `max_workers` processes (one per CPU by default) when there is enough to read. A log being written
or cut by a crash loads up to its last intact record; a corrupt record (CRC mismatch) is reported with the
file and offset, and nothing after it is loaded."""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import dlt
from dlt.common import logger

from .. import settings
from ..convert.columns import ColumnMap
from ..convert.metrics import metric_tables
from ..convert.run_objects import metadata_row
from ..convert.selection import KeySelection, Selection, StepWindow
from ..exceptions import ConfigurationError
from ..load.jobs import named_tables, run_tables, table_item
from .records import RunLogError
from .run_log import RunLog, combine, end_message, parse_log


@dlt.source(name="wandb", max_table_nesting=0)
def wandb_offline_source(offline_dir: str = dlt.config.value, entity: Optional[str] = None,
                         project: Optional[str] = None,
                         max_history_columns: int = settings.MAX_HISTORY_COLUMNS,
                         max_workers: Optional[int] = None, history_include: Optional[Sequence[str]] = None,
                         history_exclude: Optional[Sequence[str]] = None, min_step: Optional[int] = None,
                         max_step: Optional[int] = None, last_steps: Optional[int] = None,
                         system_metrics_include: Optional[Sequence[str]] = None,
                         system_metrics_exclude: Optional[Sequence[str]] = None) -> Any:
    """Loads every `.wandb` run log under `offline_dir` into the tables of the online source, with the
    same history and system-metrics selection as `wandb_source` (see selection.py)."""
    root = Path(offline_dir).expanduser()
    if not root.is_dir():
        raise ConfigurationError(f"offline_dir {str(root)!r} is not a directory: point it at a `wandb/` folder "
                                 "(where runs write run-<id>.wandb), with --offline-dir or [sources.wandb] offline_dir.")
    selections = (Selection(KeySelection.of(history_include, history_exclude, "history"),
                            StepWindow.of(min_step, max_step, last_steps)),
                  Selection(KeySelection.of(system_metrics_include, system_metrics_exclude, "system_metrics")))
    return _logs_resource(root, LogReader(entity, project, max_workers or os.cpu_count() or 1), max_history_columns,
                          selections)


@dataclass(frozen=True)
class LogReader:
    """How logs are parsed: entity/project overrides and the number of worker processes."""

    entity: Optional[str]
    project: Optional[str]
    workers: int

    def parse(self, paths: list[Path], checkpoints: dict[str, Any]) -> list[Any]:
        """Each log of one run (by file name), or the reason it is not a run log."""
        out: list[Any] = []
        for path in paths:
            try:
                out.append(parse_log(path, self.entity, self.project, checkpoints.get(str(path))))
            except (RunLogError, OSError) as e:
                out.append(f"{path}: {e}")
        return out


def _logs_resource(root: Path, reader: LogReader, max_columns: int, selections: tuple[Selection, Selection]) -> Any:
    @dlt.resource(name="history", write_disposition=settings.MERGE)
    def history() -> Iterator[Any]:
        """All tables from run logs. State: `logs` {path: [size, mtime_ns, run]}, `last_step` {run: step},
        `open_logs` {path: checkpoint} for logs without an exit record."""
        state = dlt.current.resource_state()
        seen, loaded_steps = state.setdefault("logs", {}), state.setdefault("last_step", {})
        checkpoints = state.setdefault("open_logs", {})
        naming = dlt.current.source_schema().naming
        columns = ColumnMap(state.setdefault("columns", {}), settings.OWN_METRIC_COLUMNS, max_columns, naming)
        system = ColumnMap(state.setdefault("system_columns", {}), settings.OWN_SYSTEM_METRIC_COLUMNS,
                           settings.MAX_SYSTEM_METRICS_COLUMNS, naming)
        for group, parsed in _parsed_groups(_changed_groups(root, seen), reader, checkpoints):
            for run, logs in _by_run(parsed).items():
                combined = combine(logs)
                yield from _log_tables(combined, loaded_steps.get(run), (columns, system), selections)
                loaded_steps[run] = combined.last_row.get("_step", loaded_steps.get(run))
                for log in logs:
                    seen[str(log.path)] = [*group[log.path], run]
                    if log.exit_code is None:
                        checkpoints[str(log.path)] = log.checkpoint()
                    else:
                        checkpoints.pop(str(log.path), None)
        for table, mapping in (("history", columns), ("system_metrics", system)):
            rows = mapping.added_rows(table)
            if rows:
                yield table_item("metric_columns", rows)
        for selection in selections:
            for message in selection.unmatched_report():
                logger.warning(message)

    return history


_RUN_ID = re.compile(r"run-(.+)\.wandb$")


def _changed_groups(root: Path, seen: dict[str, Any]) -> list[dict[Path, list[int]]]:
    """The logs to read, grouped by the run id in their file name (a resumed run writes one log per
    session), each with [size, mtime_ns] taken before reading: a group is read when one of its logs is
    new or changed. Stat first, read after — a log that grows meanwhile is read again next time."""
    groups: dict[str, dict[Path, list[int]]] = {}
    for path in sorted({p.resolve() for p in root.rglob("*.wandb")}):
        stat = path.stat()
        match = _RUN_ID.search(path.name)
        groups.setdefault(match.group(1) if match else path.name, {})[path] = [stat.st_size, stat.st_mtime_ns]
    return [g for g in groups.values() if any((seen.get(str(p)) or [])[:2] != s for p, s in g.items())]


def _parsed_groups(groups: list[dict[Path, list[int]]], reader: LogReader,
                   checkpoints: dict[str, Any]) -> Iterator[tuple[dict[Path, list[int]], list[RunLog]]]:
    """Each group with its parsed logs, in order; in worker processes when there is enough to read."""
    size = sum(s[0] for g in groups for s in g.values())
    workers = min(reader.workers, len(groups)) if size >= settings.PARALLEL_PARSE_MIN_BYTES else 1
    with _executor(workers) as pool:
        window: list[tuple[dict[Path, list[int]], Future[Any]]] = []
        for group in groups:
            window.append((group, pool.submit(reader.parse, list(group), _picked(checkpoints, group))))
            if len(window) > 2 * workers:  # parse ahead, but hold few parsed runs in memory
                yield _done(*window.pop(0))
        while window:
            yield _done(*window.pop(0))


def _picked(checkpoints: dict[str, Any], group: dict[Path, list[int]]) -> dict[str, Any]:
    return {str(p): checkpoints[str(p)] for p in group if str(p) in checkpoints}


def _done(group: dict[Path, list[int]], future: Future[Any]) -> tuple[dict[Path, list[int]], list[RunLog]]:
    logs = []
    for log in future.result():
        if isinstance(log, str):
            logger.warning("skipped %s", log)
        elif not log.node.get("name"):
            logger.warning("run log %s holds no run record yet: read again on the next load", log.path)
        else:
            message = end_message(log)
            if message:
                logger.warning(message)
            logs.append(log)
    return group, logs


def _executor(workers: int) -> Executor:
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return _InlineExecutor()


class _InlineExecutor(Executor):
    """Runs each call at once, in this process (one worker, or no fork)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _by_run(logs: list[RunLog]) -> dict[str, list[RunLog]]:
    runs: dict[str, list[RunLog]] = {}
    for log in logs:
        runs.setdefault(_run_key(log), []).append(log)
    return runs


def _run_key(log: RunLog) -> str:
    return f"{log.entity}/{log.project}/{log.node.get('name')}"


def _log_tables(log: RunLog, last_step: Optional[int], columns: tuple[ColumnMap, ColumnMap],
                selections: tuple[Selection, Selection]) -> Iterator[Any]:
    yield from run_tables([{**log.node, "url": str(log.path)}], log.entity, log.project, "")
    run_key = (log.entity, log.project, log.node["name"])
    metadata = metadata_row(run_key, log.node.get("metadata"))
    if metadata:
        yield table_item("run_metadata", [metadata])
    history, system = selections
    new = [r for r in log.history if (last_step is None or r["_step"] > last_step) and history.window.contains(r["_step"])]
    new, events = _selected(history, log, new), _selected(system, log, log.events)
    if history.window.last_steps:
        new = new[-history.window.last_steps:]
    for table, tables in (("history", metric_tables(new, run_key, columns[0], "_step")),
                          ("system_metrics", metric_tables(events, run_key, columns[1], "_timestamp"))):
        for name, arrow in named_tables(tables, table):
            yield table_item(name, arrow)


def _selected(selection: Selection, log: RunLog, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    selection.observe(f"{log.entity}/{log.project}", rows)
    return selection.apply(rows)
