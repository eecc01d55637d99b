"""The per-run state every part reads — change signatures, cursors, failed and sampled runs — typed, with
where it is kept spelled in this one module.

Per-run entries grow with the runs, so they are not kept in dlt state (which dlt rewrites whole, locally and
at the destination, at every load) but in the destination table `run_cursors`, one row per run and
resource (`RunCursors`): read once per load, and written as rows of the same load package as the data they
describe, so a cursor commits only with its data (a killed load's package is finished before the next one
reads them). Entries, by resource:

    runs            change signature
    artifacts       change signature
    history         [signature, last _step, its _timestamp]
    system_metrics  [signature, last _timestamp]
    run_metadata    true

What stays in dlt state (committed with the package too), below `state["sources"]["wandb"]["resources"]`:

    history         "failed": {run key: reason}, "columns", "selection"
    system_metrics  "failed": {run key: reason}, "sampled": {run key: note}, "columns", "selection"
    projects        "digests": {entity/name: digest of the row}
    sweeps          "digests": {entity/project/sweep_id: digest of the row}

Each of those resources marks its state with `"cursors_kept_in": "run_cursors"`: dlt's refresh modes and
`dlt pipeline drop` wipe a resource's state, and a resource without the mark ignores the table's rows (so
it loads everything again, as it did when its entries were in state).

Before `run_cursors`, the entries were kept in dlt state (runs and artifacts "updated_at", history and
system_metrics "runs", run_metadata "loaded"): a load reads those too, writes them to the table and drops them.

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

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

SOURCE = "wandb"
SIGNATURES = "updated_at"  # runs, artifacts
CURSORS = "runs"  # history, system_metrics
FAILED = "failed"
SAMPLED = "sampled"
METADATA_LOADED = "loaded"
DIGESTS = "digests"
RUN_TABLES = ("history", "system_metrics", "logged_tables")  # the resources that fetch run by run and may fail a run
LOGS_READ = "logs"  # offline source
OPEN_LOGS = "open_logs"
LAST_STEP = "last_step"
COLUMNS = "columns"
RETRY = "retry"  # offline logged tables: references whose file could not be read, per run
LOG_TABLES = ("runs", "history", "system_metrics", "run_metadata", "logged_tables")  # the offline source's resources
CURSOR_TABLE = "run_cursors"
KEPT_IN = "cursors_kept_in"  # resource state: CURSOR_TABLE once the resource wrote there; dlt's refresh and
# `dlt pipeline drop` wipe it with the resource's state, and the table's rows of that resource are then ignored
LEGACY_PATHS = {"runs": SIGNATURES, "artifacts": SIGNATURES, "history": CURSORS, "system_metrics": CURSORS,
                "run_metadata": METADATA_LOADED,  # where dlt state kept the entries before `run_cursors`
                "logged_tables": CURSORS}  # (never: it started in `run_cursors`)


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


class RunCursors(dict[str, Any]):
    """One resource's entries {run key: entry}, as read at the start of a load; `rows()` gives the rows of
    `run_cursors` for what was set or removed since (a removed run's row is deleted)."""

    def __init__(self, resource: str, entries: Optional[Mapping[str, Any]] = None,
                 legacy: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(entries or {})
        self.resource = resource
        self._set: set[str] = set()
        self._removed: set[str] = set()
        for key, value in dict(legacy or {}).items():  # kept in dlt state before: moved to the table
            if key not in self:
                self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._set.add(key)
        self._removed.discard(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self._removed.add(key)
            self._set.discard(key)
        return super().pop(key, *default)

    def rows(self) -> list[dict[str, Any]]:
        """Rows for `run_cursors` of the entries set or removed since the last call."""
        out = [_cursor_row(self.resource, key, self[key]) for key in sorted(self._set)]
        out += [{**_cursor_row(self.resource, key, None), "_deleted": True} for key in sorted(self._removed)]
        self._set.clear()
        self._removed.clear()
        return out


def _cursor_row(resource: str, key: str, entry: Any) -> dict[str, Any]:
    entity, project, run_id = key.split("/", 2)
    return {"entity": entity, "project": project, "run_id": run_id, "resource": resource,
            "signature": signature_of(entry), "entry": None if entry is None else json.dumps(entry)}


def gone_rows(key: str, other_than: str) -> list[dict[str, Any]]:
    """Rows deleting a run's entries of every resource but `other_than` (a run deleted in W&B)."""
    return [{**_cursor_row(resource, key, None), "_deleted": True} for resource in LEGACY_PATHS if resource != other_than]


def entries_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """{run key: entry} of `run_cursors` rows."""
    return {run_key(r["entity"], r["project"], r["run_id"]): json.loads(r["entry"]) for r in rows if r.get("entry")}


def run_cursors(pipeline: Any, resource: str) -> dict[str, Any]:
    """{run key: entry} of `resource` as a pipeline's destination holds them (with entries still in its
    dlt state from before `run_cursors`)."""
    from .load.destination import cursor_rows  # the destination side reads the table

    state = resources(pipeline.state).get(resource, {})
    kept = entries_of(cursor_rows(pipeline, resource)) if state.get(KEPT_IN) == CURSOR_TABLE else {}
    return {**state.get(LEGACY_PATHS[resource], {}), **kept}


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


def loaded_signatures(pipeline: Any) -> dict[str, Optional[str]]:
    """{run key: change signature} of the runs the `runs` table holds."""
    return {key: signature_of(v) for key, v in run_cursors(pipeline, "runs").items()}


def history_cursors(pipeline: Any) -> dict[str, RunEntry]:
    """{run key: RunEntry} of `history` (cursor: last _step, its _timestamp)."""
    return {key: entry for key, value in run_cursors(pipeline, "history").items()
            if (entry := RunEntry.from_state(value)) is not None}


def metadata_loaded(pipeline: Any) -> set[str]:
    return set(run_cursors(pipeline, "run_metadata"))


def open_logs(pipeline_state: Mapping[str, Any], table: str = "history") -> dict[str, Any]:
    """{log path: checkpoint} of the run logs `table` has read up to a checkpoint (offline source)."""
    return dict(resources(pipeline_state).get(table, {}).get(OPEN_LOGS, {}))
