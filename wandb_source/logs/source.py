"""Load W&B run logs (`run-<id>.wandb`) from a directory: no server, no API key.

    from wandb_source import wandb_offline_source
    pipeline.run(wandb_offline_source("./wandb"))

Every log under `offline_dir` (recursively; online and offline runs alike) becomes the same rows as the online
path: `runs` (+ `run_config`, `run_summary`, `metric_axes`), `history` (+ `history_long`), `system_metrics`,
`run_metadata` (from the log's environment record), `metric_columns`, and the logged `wandb.Table`s
(`wandb_table__<key>`, from the table files in the run's folder). Artifacts are not in the log in a form
that names them as the server does: not loaded from logs. Entity and project are the ones recorded in the log,
or `entity` / `project` when given (a run logged offline without them has none).

One resource per table family, as online: `runs`, `history`, `system_metrics`, `run_metadata`, `logged_tables`, each a
transformer of `run_logs` (not loaded), which stats the logs and parses each run's logs once for all of them.
Each of the four keeps in its own state which version (size, mtime) of each log it has read, and for a log
without an exit record (a run still going) a checkpoint: the byte offset read up to and what the records
before it said (`state.py`). So `with_resources("runs")` leaves the logs unread for `history`, and a second
load skips unchanged logs and reads a grown log from the earliest offset a selected table needs. Logs are
parsed in `max_workers` processes (one per CPU by default) when there is enough to read. A log being written
or cut by a crash loads up to its last intact record; a corrupt record (CRC mismatch) is reported with the
file and offset, and nothing after it is loaded."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import dlt
from dlt.common import logger

from .. import settings
from ..convert.columns import ColumnMap
from ..convert.logged_tables import ArtifactCopy, TableFileError, TableRef, manifest_digest, parse_copy, table_refs
from ..convert.metrics import metric_tables
from ..convert.run_objects import metadata_row
from ..convert.selection import KeySelection, Selection, StepWindow
from ..exceptions import ConfigurationError
from ..load.jobs import named_tables, run_tables, table_item
from ..load.logged_tables import CopyReader, TableColumns, TableSelection, table_rows
from ..state import COLUMNS, LAST_STEP, LOG_TABLES, LOGS_READ, OPEN_LOGS, RETRY
from ..tables import MERGE, OWN_METRIC_COLUMNS, OWN_SYSTEM_METRIC_COLUMNS, with_storage_hints
from .records import RunLogError, read_records
from .run_log import RunLog, combine, end_message, parse_log


@dlt.source(name="wandb", max_table_nesting=0)
def wandb_offline_source(offline_dir: str = dlt.config.value, entity: Optional[str] = None,
                         project: Optional[str] = None,
                         max_history_columns: int = settings.MAX_HISTORY_COLUMNS,
                         max_workers: Optional[int] = None, history_include: Optional[Sequence[str]] = None,
                         history_exclude: Optional[Sequence[str]] = None, min_step: Optional[int] = None,
                         max_step: Optional[int] = None, last_steps: Optional[int] = None,
                         system_metrics_include: Optional[Sequence[str]] = None,
                         system_metrics_exclude: Optional[Sequence[str]] = None,
                         tables_include: Optional[Sequence[str]] = None,
                         tables_exclude: Optional[Sequence[str]] = None) -> Any:
    """Loads every `.wandb` run log under `offline_dir` into the tables of the online source, with the
    same history, system-metrics and logged-tables selection as `wandb_source` (see selection.py)."""
    if importlib.util.find_spec("wandb") is None:
        raise ConfigurationError("--offline-dir reads W&B run logs with the wandb package's protobufs: "
                                 "pip install 'wandb-source[offline]'")
    root = Path(offline_dir).expanduser()
    if not root.is_dir():
        raise ConfigurationError(f"offline_dir {str(root)!r} is not a directory: point it at a `wandb/` folder "
                                 "(where runs write run-<id>.wandb), with --offline-dir or [sources.wandb] offline_dir.")
    history = Selection(KeySelection.of(history_include, history_exclude, "history"),
                        StepWindow.of(min_step, max_step, last_steps))
    system = Selection(KeySelection.of(system_metrics_include, system_metrics_exclude, "system_metrics"))
    tables = TableSelection(KeySelection.of(tables_include, tables_exclude, "tables"), history.window)
    logs = _run_logs(root, LogReader(entity, project, max_workers or os.cpu_count() or 1),
                     {"history": history, "system_metrics": system})
    return with_storage_hints((
        logs,
        logs | _log_table("runs", _run_rows),
        logs | _log_table("history", _history_rows(max_history_columns, history)),
        logs | _log_table("system_metrics", _system_rows(system)),
        logs | _log_table("run_metadata", _metadata_rows),
        logs | _log_table("logged_tables", _logged_table_rows(tables)),
    ))


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


@dataclass(frozen=True)
class LogGroup:
    """The logs sharing one run id in their file name, as stat'ed before reading ({path: [size, mtime_ns]}),
    and what they hold per run: {run key: (its logs, the logs combined)}."""

    stats: dict[str, list[int]]
    runs: dict[str, tuple[list[RunLog], RunLog]]


def _run_logs(root: Path, reader: LogReader, selections: dict[str, Selection]) -> Any:
    @dlt.resource(name="run_logs", selected=False)
    def run_logs() -> Iterator[LogGroup]:
        """One `LogGroup` per run whose logs a selected table has not read in their present version,
        each log parsed once for all tables, from the earliest checkpoint they need. Not loaded."""
        tables = _reading_tables()
        for group, parsed in _parsed_groups(_unread_groups(root, tables), reader, tables):
            runs = {key: (logs, combine(logs)) for key, logs in _by_run(parsed).items()}
            for name, selection in selections.items():  # observed here: the report below sees every run
                if name in tables:
                    for _, log in runs.values():
                        selection.observe(f"{log.entity}/{log.project}", log.history if name == "history" else log.events)
            yield LogGroup({str(p): s for p, s in group.items()}, runs)
        for name, selection in selections.items():
            for message in selection.unmatched_report() if name in tables else ():
                logger.warning(message)

    return run_logs


def _reading_tables() -> dict[str, dict[str, Any]]:
    """{table: its resource state} of the selected tables of this load that read logs."""
    selected = sorted(set(dlt.current.source().resources.selected) & set(LOG_TABLES))
    _adopt_single_resource_state(dlt.current.source_state())
    return {name: dlt.current.resource_state(name) for name in selected}


def _adopt_single_resource_state(source_state: dict[str, Any]) -> None:
    """Until tables had their own resources, one resource, `history`, sent every table and kept the logs read in its own state
    (with `system_columns`): each table starts from that, so upgrading re-reads nothing."""
    resources = source_state.get("resources", {})
    old = resources.get("history", {})
    if "system_columns" not in old:
        return
    for name in LOG_TABLES[:4]:  # the tables of that time
        state = resources.setdefault(name, {})
        state.setdefault(LOGS_READ, dict(old.get(LOGS_READ, {})))
        state.setdefault(OPEN_LOGS, dict(old.get(OPEN_LOGS, {})))
    resources["system_metrics"].setdefault(COLUMNS, old.pop("system_columns"))


def _unread(state: dict[str, Any], stats: dict[str, list[int]]) -> bool:
    read = state.get(LOGS_READ, {})
    return any((read.get(path) or [])[:2] != stat for path, stat in stats.items())


def _log_table(name: str, rows: Callable[[RunLog, dict[str, Any]], Iterator[Any]]) -> Any:
    @dlt.transformer(name=name, write_disposition=MERGE)  # type: ignore[arg-type]  # dlt types it as a literal
    def table(group: LogGroup) -> Iterator[Any]:
        state = dlt.current.resource_state()
        if not _unread(state, group.stats):
            return  # another table needed this group; this one has read it
        for logs, combined in group.runs.values():
            yield from rows(combined, state)
            _mark_read(state, group, logs)

    table.__doc__ = f"`{name}` from run logs: a run's rows whenever one of its logs changed since this table read it."
    return table


def _mark_read(state: dict[str, Any], group: LogGroup, logs: list[RunLog]) -> None:
    read, checkpoints = state.setdefault(LOGS_READ, {}), state.setdefault(OPEN_LOGS, {})
    for log in logs:
        read[str(log.path)] = [*group.stats[str(log.path)], _run_key(log)]
        if log.exit_code is None:
            checkpoints[str(log.path)] = log.checkpoint()
        else:
            checkpoints.pop(str(log.path), None)


def _run_rows(log: RunLog, state: dict[str, Any]) -> Iterator[Any]:
    yield from run_tables([{**log.node, "url": str(log.path)}], log.entity, log.project, "")


def _metadata_rows(log: RunLog, state: dict[str, Any]) -> Iterator[Any]:
    row = metadata_row(_run_tuple(log), log.node.get("metadata"))
    if row:
        yield table_item("run_metadata", [row])


def _history_rows(max_columns: int, selection: Selection) -> Callable[[RunLog, dict[str, Any]], Iterator[Any]]:
    def rows(log: RunLog, state: dict[str, Any]) -> Iterator[Any]:
        """Steps after the last one this table loaded for the run, in the step window and selection."""
        columns = ColumnMap(state.setdefault(COLUMNS, {}), OWN_METRIC_COLUMNS, max_columns,
                            dlt.current.source_schema().naming)
        last_steps, key = state.setdefault(LAST_STEP, {}), _run_key(log)
        last = last_steps.get(key)
        new = [r for r in log.history if (last is None or r["_step"] > last) and selection.window.contains(r["_step"])]
        new = selection.apply(new)
        if selection.window.last_steps:
            new = new[-selection.window.last_steps:]
        yield from _metric_items(metric_tables(new, _run_tuple(log), columns, "_step"), columns, "history")
        last_steps[key] = log.last_row.get("_step", last)

    return rows


def _logged_table_rows(selection: TableSelection) -> Callable[[RunLog, dict[str, Any]], Iterator[Any]]:
    def rows(log: RunLog, state: dict[str, Any]) -> Iterator[Any]:
        """The tables referenced by steps after the last one this table read for the run, their files read
        from the run's folder (`files/<path>`); those that could not be read are tried again when the run's
        logs are read next."""
        columns = TableColumns(state.setdefault(COLUMNS, {}), dlt.current.source_schema().naming)
        last_steps, retries, key = state.setdefault(LAST_STEP, {}), state.setdefault(RETRY, {}), _run_key(log)
        last = last_steps.get(key, -1)
        refs = selection.pick(r for r in table_refs(log.history) if r.step > last)
        retry = [TableRef.from_state(r) for r in retries.pop(key, [])]
        for item in table_rows([*retry, *refs], _run_tuple(log), columns, _read_files(log), _read_staged_copies(log)):
            if item[0] != "failed":
                yield table_item(*item)
            elif item[1]:
                retries[key] = [r.to_state() for r in item[1]]
                for problem in item[2]:
                    logger.warning("run log %s: %s; tried again when the run's logs are read next", log.path, problem)
        last_steps[key] = max(last, log.last_row.get("_step", last))
        added = columns.added_rows()
        if added:
            yield table_item("metric_columns", added)

    return rows


def _run_folders(log: RunLog) -> list[Path]:
    """The log's folder, then (a resumed run) the sibling folders of the same run, newest first."""
    run_id = log.node.get("name")
    return [log.path.parent, *sorted(log.path.parent.parent.glob(f"*-{run_id}"), reverse=True)]


def _read_files(log: RunLog) -> Callable[[list[str]], dict[str, Any]]:
    """Run files by path, from the log's folder or, for a resumed run, a sibling folder of the same run."""
    folders = _run_folders(log)

    def read(paths: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for path in paths:
            for folder in folders:
                file = folder / "files" / path
                if file.is_file():
                    found[path] = file.read_bytes()
                    break
        return found

    return read


def _read_staged_copies(log: RunLog) -> CopyReader:
    """Logged tables' artifact copies where the SDK staged them on this machine: the run's artifact records (read
    when a copy is first needed) name each file's staging path and md5. A copy whose file is gone (a synced run,
    a folder copied from another machine) or changed is not at hand: None, the table loads from its run file."""
    staged: dict[str, Any] = {}

    def read(items: list[tuple[TableRef, list[str], list[list[Any]]]]) -> list[Any]:
        if not staged:
            staged.update(_staged_artifacts(_run_folders(log)))
        return [_staged_copy(staged.get(ref.copy_entry[0]) if ref.copy_entry else None, ref) for ref, *_ in items]

    return read


def _staged_artifacts(folders: list[Path]) -> dict[str, Any]:
    """{client id: artifact record} of the artifacts the run's logs record ("" marks that they were read)."""
    found: dict[str, Any] = {"": None}
    for folder in folders:
        for path in folder.glob("run-*.wandb"):
            try:
                found.update((r.artifact.client_id, r.artifact) for r, _ in read_records(path)  # type: ignore[attr-defined]
                             if r.WhichOneof("record_type") == "artifact")  # type: ignore[attr-defined]
            except (RunLogError, OSError) as e:
                logger.warning("run log %s: its artifact records could not be read (%s)", path, e)
    return found


def _staged_copy(record: Any, ref: TableRef) -> Optional[ArtifactCopy]:
    entries = {e.path: e for e in record.manifest.contents} if record is not None else {}
    entry = entries.get(ref.copy_entry[1]) if ref.copy_entry else None
    if entry is None or not entry.local_path:
        return None
    try:
        data = Path(entry.local_path).read_bytes()
        if manifest_digest(data) == entry.digest:
            return parse_copy(data, ref, None, {path: int(e.size) for path, e in entries.items()})
    except (OSError, TableFileError):
        pass
    return None


def _system_rows(selection: Selection) -> Callable[[RunLog, dict[str, Any]], Iterator[Any]]:
    def rows(log: RunLog, state: dict[str, Any]) -> Iterator[Any]:
        """The run's samples read this time (merged on `_timestamp`: a sample read again is not duplicated)."""
        columns = ColumnMap(state.setdefault(COLUMNS, {}), OWN_SYSTEM_METRIC_COLUMNS,
                            settings.MAX_SYSTEM_METRICS_COLUMNS, dlt.current.source_schema().naming, "system_metrics")
        tables = metric_tables(selection.apply(log.events), _run_tuple(log), columns, "_timestamp")
        yield from _metric_items(tables, columns, "system_metrics")

    return rows


def _metric_items(tables: Any, columns: ColumnMap, table: str) -> Iterator[Any]:
    for name, arrow in named_tables(tables, table):
        yield table_item(name, arrow)
    added = columns.added_rows(table)
    if added:
        yield table_item("metric_columns", added)


def _run_tuple(log: RunLog) -> tuple[Any, Any, Any]:
    return (log.entity, log.project, log.node["name"])


_RUN_ID = re.compile(r"run-(.+)\.wandb$")


def _unread_groups(root: Path, tables: dict[str, dict[str, Any]]) -> list[dict[Path, list[int]]]:
    """The logs to read, grouped by the run id in their file name (a resumed run writes one log per
    session), each with [size, mtime_ns] taken before reading: a group is read when one of its logs is
    new or changed for one of `tables`. Stat first, read after — a log that grows meanwhile is read again
    next time."""
    groups: dict[str, dict[Path, list[int]]] = {}
    for path in sorted({p.resolve() for p in root.rglob("*.wandb")}):
        stat = path.stat()
        match = _RUN_ID.search(path.name)
        groups.setdefault(match.group(1) if match else path.name, {})[path] = [stat.st_size, stat.st_mtime_ns]
    return [g for g in groups.values()
            if any(_unread(state, {str(p): s for p, s in g.items()}) for state in tables.values())]


def _parsed_groups(groups: list[dict[Path, list[int]]], reader: LogReader,
                   tables: dict[str, dict[str, Any]]) -> Iterator[tuple[dict[Path, list[int]], list[RunLog]]]:
    """Each group with its parsed logs, in order; in worker processes when there is enough to read."""
    size = sum(s[0] for g in groups for s in g.values())
    workers = min(reader.workers, len(groups)) if size >= settings.PARALLEL_PARSE_MIN_BYTES else 1
    with _executor(workers) as pool:
        window: list[tuple[dict[Path, list[int]], Future[Any]]] = []
        for group in groups:
            window.append((group, pool.submit(reader.parse, list(group), _checkpoints(group, tables))))
            if len(window) > 2 * workers:  # parse ahead, but hold few parsed runs in memory
                yield _done(*window.pop(0))
        while window:
            yield _done(*window.pop(0))


def _checkpoints(group: dict[Path, list[int]], tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per log, the checkpoint to read on from: the earliest of the tables that have not read the group,
    none (read from the start) when one of them has no checkpoint for it."""
    stats = {str(p): s for p, s in group.items()}
    behind = [state for state in tables.values() if _unread(state, stats)]
    picked = {}
    for path in stats:
        found = [state.get(OPEN_LOGS, {}).get(path) for state in behind]
        if found and all(found):
            picked[path] = min(found, key=lambda checkpoint: checkpoint["offset"])
    return picked


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
