"""The per-run state every part reads — change signatures, cursors, failed and sampled runs — typed, with
where dlt keeps it spelled in this one module.

dlt commits a resource's state with the load package that holds its rows, so a cursor never runs ahead
of the data, and restores it from the destination when the local pipeline folder is gone. Below
`state["sources"]["wandb"]["resources"]`:

    runs            "updated_at": {run key: change signature}   (the name of the field it replaced)
    artifacts       "updated_at": {run key: change signature}
    history         "runs": {run key: [signature, last _step, its _timestamp]}
                    "failed": {run key: reason}, "columns", "selection"
    system_metrics  "runs": {run key: [signature, last _timestamp]}
                    "failed": {run key: reason}, "sampled": {run key: note}, "columns", "selection"
    run_metadata    "loaded": {run key: true}
    projects        "digests": {entity/name: digest of the row}
    sweeps          "digests": {entity/project/sweep_id: digest of the row}

The offline source (`logs/source.py`) keeps, in each of `runs`, `history`, `system_metrics` and
`run_metadata`, which versions of which logs that table has read, so a load of some tables never
marks a log read for the others:

    "logs"          {log path: [size, mtime_ns, run key]}
    "open_logs"     {log path: checkpoint}   logs without an exit record (`logs.run_log.RunLog.checkpoint`)
    history         also "last_step": {run key: last _step loaded}, "columns"
    system_metrics  also "columns"

A run key is `entity/project/run_id`. A change signature is `convert.runs.change_signature` of the run's
listing: when it differs from the one stored, the run is fetched again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

SOURCE = "wandb"
SIGNATURES = "updated_at"  # runs, artifacts
CURSORS = "runs"  # history, system_metrics
FAILED = "failed"
SAMPLED = "sampled"
METADATA_LOADED = "loaded"
DIGESTS = "digests"
RUN_TABLES = ("history", "system_metrics")  # the resources that fetch run by run and may fail a run
LOGS_READ = "logs"  # offline source
OPEN_LOGS = "open_logs"
LAST_STEP = "last_step"
COLUMNS = "columns"
LOG_TABLES = ("runs", "history", "system_metrics", "run_metadata")  # the offline source's resources


def run_key(entity: str, project: str, run_id: str) -> str:
    return f"{entity}/{project}/{run_id}"


def signature_of(entry: Any) -> Optional[str]:
    """The change signature stored for a run (a bare signature, or the first item of a cursor entry)."""
    return entry[0] if isinstance(entry, list) else entry


@dataclass
class HistoryCursor:
    """Where a run's history load stands: last step loaded and its `_timestamp`."""

    last_step: int = -1
    last_timestamp: Optional[float] = None
    steps_seen: set[int] = field(default_factory=set)  # filled only for a full (re)read
    rewound: bool = False

    def to_state(self) -> list[Any]:
        return [self.last_step, self.last_timestamp]

    @classmethod
    def from_state(cls, value: Optional[list[Any]]) -> HistoryCursor:
        return cls(*value) if value else cls()


@dataclass
class EventsCursor:
    """Where a run's system-metrics load stands: the last sample's `_timestamp`."""

    last_timestamp: Optional[float] = None

    def to_state(self) -> list[Any]:
        return [self.last_timestamp]

    @classmethod
    def from_state(cls, value: Optional[list[Any]]) -> EventsCursor:
        return cls(*value) if value else cls()


@dataclass
class RunEntry:
    """One run's entry in `history` or `system_metrics`: its signature when loaded, then its cursor."""

    signature: Optional[str]
    cursor: list[Any]  # HistoryCursor.to_state() or EventsCursor.to_state()

    def to_state(self) -> list[Any]:
        return [self.signature, *self.cursor]

    @classmethod
    def from_state(cls, value: Any) -> Optional[RunEntry]:
        if not isinstance(value, list) or not value:
            return None
        return cls(value[0], list(value[1:]))


def resources(pipeline_state: Mapping[str, Any]) -> dict[str, Any]:
    """`state["sources"]["wandb"]["resources"]` of a pipeline's state (empty before the first load)."""
    return dict(pipeline_state.get("sources", {}).get(SOURCE, {}).get("resources", {}))


def failed_runs(pipeline_state: Mapping[str, Any]) -> dict[str, str]:
    """Runs that could not be fetched in the last load, and why; they are fetched again next load."""
    found = resources(pipeline_state)
    return {key: reason for table in RUN_TABLES for key, reason in found.get(table, {}).get(FAILED, {}).items()}


def sampled_runs(pipeline_state: Mapping[str, Any]) -> dict[str, str]:
    """Runs whose system metrics are a sample (W&B's capped `events` read, no `wandb-events.jsonl`)."""
    return dict(resources(pipeline_state).get("system_metrics", {}).get(SAMPLED, {}))


def loaded_signatures(pipeline_state: Mapping[str, Any]) -> dict[str, Optional[str]]:
    """{run key: change signature} of the runs the `runs` table holds."""
    return {key: signature_of(v) for key, v in resources(pipeline_state).get("runs", {}).get(SIGNATURES, {}).items()}


def history_cursors(pipeline_state: Mapping[str, Any]) -> dict[str, RunEntry]:
    """{run key: RunEntry} of `history` (cursor: last _step, its _timestamp)."""
    entries = resources(pipeline_state).get("history", {}).get(CURSORS, {})
    return {key: entry for key, value in entries.items() if (entry := RunEntry.from_state(value)) is not None}


def metadata_loaded(pipeline_state: Mapping[str, Any]) -> set[str]:
    return set(resources(pipeline_state).get("run_metadata", {}).get(METADATA_LOADED, {}))


def open_logs(pipeline_state: Mapping[str, Any], table: str = "history") -> dict[str, Any]:
    """{log path: checkpoint} of the run logs `table` has read up to a checkpoint (offline source)."""
    return dict(resources(pipeline_state).get(table, {}).get(OPEN_LOGS, {}))
