"""Load W&B run logs (`run-<id>.wandb`) from a directory: no server, no API key.

    from wandb_source.offline import wandb_offline_source
    pipeline.run(wandb_offline_source("./wandb"))

Every log under `offline_dir` (recursively; online and offline runs alike) becomes the same rows as the
online path: `runs` (+ `run_config`, `run_summary`), `history` (+ `history_long`), `system_metrics`,
`metric_columns`. Entity and project are the ones recorded in the log, or `entity` / `project` when
given (a run logged offline without them has none). One resource, `history`, sends all tables; its
state holds per log (path) the size and mtime last read and the last step loaded, so a second load
skips unchanged logs and sends only the new steps of logs that grew. A log being written or cut by a
crash loads up to its last intact record; a corrupt record (CRC mismatch) is reported with the file
and offset, and nothing after it is loaded.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import dlt
from dlt.common import logger

from . import settings
from .exceptions import ConfigurationError
from .jobs import named_tables, run_tables, table_item
from .runlog import LogEnd, read_records
from .transform import ColumnMap, metric_tables


@dataclass
class RunLog:
    """What one log holds, as the GraphQL run node `run_row` reads, plus history and system samples."""

    path: Path
    node: dict = field(default_factory=dict)
    entity: str = ""
    project: str = ""
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    summary_json: dict = field(default_factory=dict)  # (key, nested...) -> value JSON, as the log updates it
    history: list = field(default_factory=list)
    events: list = field(default_factory=list)
    exit_code: Optional[int] = None
    end: LogEnd = field(default_factory=lambda: LogEnd(0))


@dlt.source(name="wandb", max_table_nesting=0)
def wandb_offline_source(offline_dir: str = dlt.config.value, entity: Optional[str] = None,
                         project: Optional[str] = None,
                         max_history_columns: int = settings.MAX_HISTORY_COLUMNS) -> Any:
    """Loads every `.wandb` run log under `offline_dir` into the tables of the online source."""
    root = Path(offline_dir).expanduser()
    if not root.is_dir():
        raise ConfigurationError(f"offline_dir {str(root)!r} is not a directory: point it at a `wandb/` folder "
                                 "(where runs write run-<id>.wandb), with --offline-dir or [sources.wandb] offline_dir.")
    return _logs_resource(root, entity, project, max_history_columns)


def _logs_resource(root: Path, entity: Optional[str], project: Optional[str], max_columns: int) -> Any:
    @dlt.resource(name="history", write_disposition=settings.MERGE)
    def history() -> Iterator[Any]:
        """All tables from run logs. State: per log [size, mtime_ns, run], per run the last step loaded."""
        state = dlt.current.resource_state()
        seen, last_steps = state.setdefault("logs", {}), state.setdefault("last_step", {})
        naming = dlt.current.source_schema().naming
        columns = ColumnMap(state.setdefault("columns", {}), settings.OWN_METRIC_COLUMNS, max_columns, naming)
        system = ColumnMap(state.setdefault("system_columns", {}), settings.OWN_METRIC_COLUMNS,
                           settings.MAX_SYSTEM_METRICS_COLUMNS, naming)
        for run, logs in _changed_runs(root, seen, entity, project).items():
            combined = combine(logs)
            yield from _log_tables(combined, last_steps.get(run), columns, system)
            last_steps[run] = max((r["_step"] for r in combined.history), default=last_steps.get(run))
            for log in logs:
                stat = log.path.stat()
                seen[str(log.path)] = [stat.st_size, stat.st_mtime_ns, run]
        for table, mapping in (("history", columns), ("system_metrics", system)):
            rows = mapping.added_rows(table)
            if rows:
                yield table_item("metric_columns", rows)

    return history


def _changed_runs(root: Path, seen: dict, entity: Optional[str], project: Optional[str]) -> dict[str, list[RunLog]]:
    """Runs with a new or changed log, each with all its logs (a resumed run writes one per session),
    oldest first. Unchanged logs are parsed only when another log of their run changed."""
    paths = sorted({p.resolve() for p in root.rglob("*.wandb")})
    parsed: dict[Path, RunLog] = {}
    for path in paths:
        stat, previous = path.stat(), seen.get(str(path))
        if not previous or previous[:2] != [stat.st_size, stat.st_mtime_ns]:
            parsed[path] = parse_log(path, entity, project)
    changed = {_run_key(log) for log in parsed.values()}
    runs: dict[str, list[RunLog]] = {}
    for path in paths:
        run = _run_key(parsed[path]) if path in parsed else seen[str(path)][2]
        if run in changed:
            runs.setdefault(run, []).append(parsed.get(path) or parse_log(path, entity, project))
    return runs


def _run_key(log: RunLog) -> str:
    return f"{log.entity}/{log.project}/{log.node.get('name')}"


def combine(logs: list[RunLog]) -> RunLog:
    """One run from its logs, oldest first: later logs win for the same step, key or field."""
    if len(logs) == 1:
        return logs[0]
    out = RunLog(logs[-1].path, entity=logs[-1].entity, project=logs[-1].project)
    steps: dict[int, dict] = {}
    for log in logs:
        out.node.update({k: v for k, v in log.node.items() if v is not None})
        out.config.update(log.config)
        out.summary.update(log.summary)
        steps.update((row["_step"], row) for row in log.history)
        out.events += log.events
    out.history = [steps[s] for s in sorted(steps)]
    out.exit_code = logs[-1].exit_code
    out.node["createdAt"] = logs[0].node.get("createdAt")  # the run started with its first session
    out.node.update(_node_fields(out))
    return out


def _log_tables(log: RunLog, last_step: Optional[int], columns: ColumnMap, system: ColumnMap) -> Iterator[Any]:
    yield from run_tables([{**log.node, "url": str(log.path)}], log.entity, log.project, "")
    run_key = (log.entity, log.project, log.node["name"])
    new = [r for r in log.history if last_step is None or r["_step"] > last_step]
    for table, tables in (("history", metric_tables(new, run_key, columns, "_step")),
                          ("system_metrics", metric_tables(log.events, run_key, system, "_timestamp"))):
        for name, arrow in named_tables(tables, table):
            yield table_item(name, arrow)


def parse_log(path: Path, entity: Optional[str] = None, project: Optional[str] = None) -> RunLog:
    """Read one run log up to its last intact record."""
    log = RunLog(path)
    for record, _ in read_records(path, 0, log.end):
        _apply(log, record)
    for keys, text in log.summary_json.items():
        _set(log.summary, keys, _loads(text))
    if log.end.corrupt:
        logger.warning("run log %s: %s; records from byte %d on are not loaded", path, log.end.corrupt,
                       log.end.offset)
    elif log.end.truncated:
        logger.warning("run log %s ends in a partial record at byte %d (still being written, or cut by a "
                       "crash): loaded up to the last intact record", path, log.end.offset)
    log.entity = entity or log.entity or "offline"
    log.project = project or log.project or "uncategorized"
    log.node.update(_node_fields(log))
    return log


def _apply(log: RunLog, record: Any) -> None:
    kind = record.WhichOneof("record_type")
    if kind == "run":
        run = record.run
        log.entity, log.project = run.entity, run.project
        log.node.update({"name": run.run_id, "displayName": run.display_name or None, "notes": run.notes or None,
                         "tags": list(run.tags), "group": run.run_group or None, "jobType": run.job_type or None,
                         "sweepName": run.sweep_id or None, "host": run.host or None,
                         "createdAt": _time(run.start_time)})
        _update(log.config, run.config.update)
    elif kind == "history":
        row = _items(record.history.item)
        if "_step" not in row and record.history.HasField("step"):
            row["_step"] = record.history.step.num
        if isinstance(row.get("_step"), int):
            log.history.append(row)
    elif kind == "config":
        _update(log.config, record.config.update)
        for item in record.config.remove:
            log.config.pop(item.key, None)
    elif kind == "summary":  # written twice per step: values are decoded once, at the end
        for item in record.summary.update:
            log.summary_json[tuple(item.nested_key) or (item.key,)] = item.value_json
        for item in record.summary.remove:
            gone = tuple(item.nested_key) or (item.key,)
            log.summary_json = {k: v for k, v in log.summary_json.items() if k[:len(gone)] != gone}
    elif kind == "stats":
        row = {item.key: _loads(item.value_json) for item in record.stats.item}
        row["_timestamp"] = record.stats.timestamp.seconds + record.stats.timestamp.nanos / 1e9
        log.events.append(row)
    elif kind == "exit":
        log.exit_code = record.exit.exit_code


def _items(items: Any) -> dict:
    row: dict = {}
    _update(row, items)
    return row


def _update(target: dict, items: Any) -> None:
    """Apply W&B's `{key | nested_key, value_json}` items (history, config, summary) to `target`."""
    for item in items:
        keys = item.nested_key
        if len(keys) == 1:  # the common case, kept fast: 20k rows x 20 keys is 400k items
            target[keys[0]] = _loads(item.value_json)
            continue
        _set(target, list(keys) or [item.key], _loads(item.value_json))


def _set(target: dict, keys: Any, value: Any) -> None:
    for key in keys[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[keys[-1]] = value


_DECODER = json.JSONDecoder(parse_int=lambda digits: -0.0 if digits == "-0" else int(digits))
_NUMBER_START = frozenset("-0123456789NI")


def _loads(text: str) -> Any:
    """W&B's value JSON: NaN/Infinity tokens; the SDK writes -0.0 as `-0`, kept as the float -0.0.
    Plain numbers skip the JSON decoder (most values are)."""
    if text and text[0] in _NUMBER_START:
        digits = text[1:] if text[0] == "-" else text
        try:
            if digits.isdigit():
                return -0.0 if text == "-0" else int(text)
            return float(text)  # decimals, exponents, NaN, Infinity, -Infinity
        except ValueError:
            pass
    return _DECODER.decode(text)


def _node_fields(log: RunLog) -> dict:
    state = "running" if log.exit_code is None else ("finished" if log.exit_code == 0 else "failed")
    last = log.history[-1] if log.history else {}
    config = {k: {"value": v} for k, v in log.config.items()}
    return {"state": state, "config": json.dumps(config), "summaryMetrics": json.dumps(log.summary),
            "historyLineCount": len(log.history), "historyKeys": {"lastStep": last.get("_step")},
            "updatedAt": _time_from_epoch(last.get("_timestamp")) or log.node.get("createdAt")}


def _time(stamp: Any) -> Optional[str]:
    if not stamp.seconds:
        return None
    return _time_from_epoch(stamp.seconds + stamp.nanos / 1e9)


def _time_from_epoch(seconds: Any) -> Optional[str]:
    if not isinstance(seconds, (int, float)):
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat()
