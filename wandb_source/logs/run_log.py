"""One run as its run log (`run-<id>.wandb`) records it: the records of `runlog.read_records` applied in order.

`parse_log(path)` reads a log from the start. `parse_log(path, checkpoint=...)` resumes a log that grew
since a previous read: the checkpoint (`RunLog.checkpoint()`, kept in dlt state) holds what the records
before its byte offset said about the run (run fields, config, summary, the number of history rows and
the last one), so only the records after the offset are read. A checkpoint that no longer fits the file
(it shrank, or the bytes before the offset changed) is ignored and the log is read from the start.
`combine(logs)` makes one run of a resumed run's logs (one per session).

This module imports no dlt, so that logs can be parsed in worker processes cheaply.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .records import LogEnd, read_records

TAIL_BYTES = 4096  # the bytes before a checkpoint's offset, fingerprinted to see the log is the same file


@dataclass
class RunLog:
    """What one log holds, as the GraphQL run node `run_row` reads, plus history and system samples."""

    path: Path
    node: dict[str, Any] = field(default_factory=dict)
    entity: str = ""
    project: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    # (key, nested...) -> value JSON, as the log updates it
    summary_json: dict[tuple[str, ...], Any] = field(default_factory=dict)
    history: list[Any] = field(default_factory=list)  # rows read this time
    events: list[Any] = field(default_factory=list)  # system metrics samples read this time
    rows_before: int = 0  # history rows before the offset this read started at
    last_row: dict[str, Any] = field(default_factory=dict)  # `_step`/`_timestamp` of the last history row
    exit_code: Optional[int] = None
    end: LogEnd = field(default_factory=lambda: LogEnd(0))
    started_at: int = 0  # byte offset this read started at (0: the whole log)

    def checkpoint(self) -> dict[str, Any]:
        """What a later read needs to resume after `end.offset` (JSON, for dlt state)."""
        return {"offset": self.end.offset, "tail": _tail_crc(self.path, self.end.offset), "entity": self.entity,
                "project": self.project, "node": {k: v for k, v in self.node.items() if k not in _DERIVED},
                "config": self.config,
                "summary": [[list(keys), text] for keys, text in self.summary_json.items()],
                "rows": self.rows_before + len(self.history), "last_row": self.last_row}


def parse_log(path: Path, entity: Optional[str] = None, project: Optional[str] = None,
              checkpoint: Optional[dict[str, Any]] = None) -> RunLog:
    """Read one run log up to its last intact record (from `checkpoint` when it still fits the file)."""
    log = RunLog(path)
    if checkpoint and _fits(path, checkpoint):
        _restore(log, checkpoint)
    for record, _ in read_records(path, log.started_at, log.end):
        _apply(log, record)
    for keys, text in log.summary_json.items():
        _set(log.summary, keys, _loads(text))
    log.entity = entity or log.entity or "offline"
    log.project = project or log.project or "uncategorized"
    if log.history:
        log.last_row = {k: log.history[-1].get(k) for k in ("_step", "_timestamp")}
    log.node.update(_node_fields(log))
    return log


def _fits(path: Path, checkpoint: dict[str, Any]) -> bool:
    offset = checkpoint["offset"]
    return path.stat().st_size >= offset and _tail_crc(path, offset) == checkpoint["tail"]


def _restore(log: RunLog, checkpoint: dict[str, Any]) -> None:
    log.started_at = log.end.offset = checkpoint["offset"]
    log.entity, log.project = checkpoint["entity"], checkpoint["project"]
    log.node, log.config = dict(checkpoint["node"]), dict(checkpoint["config"])
    log.summary_json = {tuple(keys): text for keys, text in checkpoint["summary"]}
    log.rows_before, log.last_row = checkpoint["rows"], dict(checkpoint["last_row"])


def _tail_crc(path: Path, offset: int) -> int:
    with open(path, "rb") as f:
        f.seek(max(0, offset - TAIL_BYTES))
        return zlib.crc32(f.read(min(offset, TAIL_BYTES)))


def end_message(log: RunLog) -> Optional[str]:
    """Why the read stopped before the end of the file, for a warning; None when it read it all."""
    if log.end.corrupt:
        return f"run log {log.path}: {log.end.corrupt}; records from byte {log.end.offset} on are not loaded"
    if log.end.truncated:
        return (f"run log {log.path} ends in a partial record at byte {log.end.offset} (still being written, "
                "or cut by a crash): loaded up to the last intact record")
    return None


def combine(logs: list[RunLog]) -> RunLog:
    """One run from its logs, oldest first: later logs win for the same step, key or field."""
    if len(logs) == 1:
        return logs[0]
    out = RunLog(logs[-1].path, entity=logs[-1].entity, project=logs[-1].project)
    steps: dict[int, dict[str, Any]] = {}
    for log in logs:
        out.node.update({k: v for k, v in log.node.items() if v is not None})
        out.config.update(log.config)
        out.summary.update(log.summary)
        steps.update((row["_step"], row) for row in log.history)
        out.events += log.events
        out.rows_before += log.rows_before
    out.history = [steps[s] for s in sorted(steps)]
    out.last_row = max((log.last_row for log in logs if log.last_row), key=lambda r: r.get("_step") or 0,
                       default={})
    out.exit_code = logs[-1].exit_code
    out.node["createdAt"] = logs[0].node.get("createdAt")  # the run started with its first session
    out.node.update(_node_fields(out))
    return out


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
    elif kind == "metric":
        _define_metric(log, record.metric)
    elif kind == "environment":  # what the API path reads from wandb-metadata.json
        from google.protobuf import json_format  # comes with wandb, the `offline` extra

        log.node["metadata"] = {**log.node.get("metadata", {}), **json_format.MessageToDict(record.environment)}


def _define_metric(log: RunLog, metric: Any) -> None:
    """A `define_metric` record → config `_wandb.m`, encoded as the SDK encodes it for the server."""
    internal = log.config.get("_wandb")
    if not isinstance(internal, dict):
        internal = log.config["_wandb"] = {}
    metrics = internal.setdefault("m", [])
    record = {"1": metric.name, "2": metric.glob_name, "4": metric.step_metric,
              "6": _set_flags(metric.options), "7": _set_flags(metric.summary), "8": metric.goal}
    record = {k: v for k, v in record.items() if v}
    name = record.get("1") or record.get("2")
    metrics[:] = [m for m in metrics if (m.get("1") or m.get("2")) != name] + [record]


def _set_flags(message: Any) -> list[int]:
    return [field.number for field, value in message.ListFields() if value is True]


def _items(items: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    _update(row, items)
    return row


def _update(target: dict[str, Any], items: Any) -> None:
    """Apply W&B's `{key | nested_key, value_json}` items (history, config, summary) to `target`."""
    for item in items:
        keys = item.nested_key
        if len(keys) == 1:  # the common case, kept fast: 20k rows x 20 keys is 400k items
            target[keys[0]] = _loads(item.value_json)
            continue
        _set(target, list(keys) or [item.key], _loads(item.value_json))


def _set(target: dict[str, Any], keys: Any, value: Any) -> None:
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


_DERIVED = ("state", "config", "summaryMetrics", "historyLineCount", "historyKeys", "updatedAt")


def _node_fields(log: RunLog) -> dict[str, Any]:
    state = "running" if log.exit_code is None else ("finished" if log.exit_code == 0 else "failed")
    config = {k: {"value": v} for k, v in log.config.items()}
    return {"state": state, "config": json.dumps(config), "summaryMetrics": json.dumps(log.summary),
            "historyLineCount": log.rows_before + len(log.history),
            "historyKeys": {"lastStep": log.last_row.get("_step")},
            "updatedAt": _time_from_epoch(log.last_row.get("_timestamp")) or log.node.get("createdAt")}


def _time(stamp: Any) -> Optional[str]:
    if not stamp.seconds:
        return None
    return _time_from_epoch(stamp.seconds + stamp.nanos / 1e9)


def _time_from_epoch(seconds: Any) -> Optional[str]:
    if not isinstance(seconds, (int, float)):
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat()
