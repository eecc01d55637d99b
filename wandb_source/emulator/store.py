"""In-memory W&B data: entities, projects, runs, history, system metrics, files, sweeps, artifacts.

The store holds what the server would hold and every mutation W&B can see between two loads
(append steps, finish/crash, add/edit/delete runs, rewind, export to parquet). Every change to a run
advances its `updated_at`, as W&B does. All methods are thread-safe behind one lock.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import os
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

UTC = dt.timezone.utc
RUN_STATES = ("running", "finished", "crashed", "failed", "killed", "preempted", "pending")


class NotFound(KeyError):
    """An entity, project or run that the store does not hold."""


class ByteLRU:
    """A thread-safe cache bounded by the size of what it holds (JSON lines, parquet files)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any], size: Callable[[Any], int]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        value = make()
        with self._lock:
            n = size(value)
            if key not in self._items and n <= self.max_bytes:
                self._items[key] = (value, n)
                self._size += n
                while self._size > self.max_bytes:
                    _, (_, old) = self._items.popitem(last=False)
                    self._size -= old
        return value


# Encoded history blocks and parquet exports, shared by all runs: serving a page costs a lookup, so
# benchmarks measure the loader rather than the emulator's own JSON encoding.
CACHE = ByteLRU(int(os.environ.get("WANDB_EMULATOR_CACHE_MB", "2048")) * 2**20)
BLOCK = 500
_UIDS = itertools.count()


class RunHistory:
    """A run's logged rows, ordered by `_step`.

    Generated rows are made on demand by `make_row(step)` (large datasets never sit in memory);
    rows logged later are kept explicitly. `steps` is the ordered list of steps present. Encoded
    JSON lines are cached per block of rows in `CACHE`; any change gives the history a new version.
    """

    def __init__(self, make_row: Callable[[int], dict] | None = None, steps: list[int] | None = None):
        self._make_row = make_row
        self.steps = array("q", steps or [])
        self._explicit: dict[int, dict] = {}
        self.version = 0
        self.uid = next(_UIDS)  # cache key (an id() could be reused after a run is deleted)

    def lines(self, start: int, stop: int) -> list[str]:
        """JSON lines (W&B's encoding, NaN tokens kept) of rows start..stop, from the block cache."""
        out: list[str] = []
        for block in range(start // BLOCK, (max(start, stop - 1)) // BLOCK + 1):
            first = block * BLOCK
            encoded = CACHE.get((self.uid, self.version, block),
                                lambda first=first: [dumps_wandb(r) for r in self.rows(first, first + BLOCK)],
                                lambda lines: sum(len(x) for x in lines) + 64 * len(lines))
            out += encoded[max(0, start - first):max(0, stop - first)]
        return out

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def last_step(self) -> int:
        return self.steps[-1] if self.steps else -1

    def row(self, index: int) -> dict:
        step = self.steps[index]
        row = self._explicit.get(step)
        if row is None:
            row = self._make_row(step)  # type: ignore[misc]
        return row

    def index_of(self, step: int) -> int:
        """Index of the first row whose step is >= `step`."""
        return bisect.bisect_left(self.steps, step)

    def rows(self, start: int = 0, stop: int | None = None) -> Iterator[dict]:
        stop = len(self.steps) if stop is None else min(stop, len(self.steps))
        for i in range(start, stop):
            yield self.row(i)

    def append(self, row: dict) -> None:
        step = row["_step"]
        if step <= self.last_step:
            raise ValueError(f"step {step} is not after the last step {self.last_step}")
        self.steps.append(step)
        self._explicit[step] = row
        self.version += 1

    def truncate_after(self, step: int) -> None:
        """Drop every row with `_step` > step (W&B's rewind)."""
        keep = bisect.bisect_right(self.steps, step)
        for s in self.steps[keep:]:
            self._explicit.pop(s, None)
        del self.steps[keep:]
        self.version += 1


@dataclass
class Run:
    entity: str
    project: str
    name: str  # the run id
    display_name: str
    state: str
    created_at: dt.datetime
    updated_at: dt.datetime
    heartbeat_at: dt.datetime
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    system_metrics: dict = field(default_factory=dict)
    tags: list = field(default_factory=list)
    group: str | None = None
    job_type: str | None = None
    commit: str | None = None
    host: str | None = None
    notes: str | None = None
    description: str | None = None
    username: str = "emulator-user"
    sweep_name: str | None = None
    history: RunHistory = field(default_factory=RunHistory)
    events: list = field(default_factory=list)
    files: dict = field(default_factory=dict)  # name -> bytes
    # parquet exports: row counts of the exported prefix, one file per export
    export_bounds: list = field(default_factory=list)
    export_generation: int = 0
    output_artifacts: list = field(default_factory=list)
    input_artifacts: list = field(default_factory=list)
    copies: list = field(default_factory=list)  # (client id, StoredArtifact) logged tables' copies: add_run serves them
    version: int = 0  # bumped on every change; caches key on it
    _keys_cache: tuple = (-1, None)

    @property
    def storage_id(self) -> str:
        return _b64id("Run", f"{self.entity}/{self.project}/{self.name}")

    @property
    def exported_rows(self) -> int:
        return self.export_bounds[-1] if self.export_bounds else 0

    def history_keys(self) -> dict:
        """W&B's `historyKeys`: last step and per-key type counts (cached per version)."""
        cached_version, cached = self._keys_cache
        if cached_version == self.version:
            return cached
        counts: dict[str, dict[str, int]] = {}
        for row in self.history.rows():
            for key, value in row.items():
                kind = _value_type(value)
                per_key = counts.setdefault(key, {})
                per_key[kind] = per_key.get(kind, 0) + 1
        keys = {
            k: {"typeCounts": [{"type": t, "count": c} for t, c in v.items()]} for k, v in counts.items()
        }
        result = {"lastStep": self.history.last_step, "keys": keys}
        self._keys_cache = (self.version, result)
        return result


@dataclass
class Sweep:
    entity: str
    project: str
    name: str
    display_name: str
    method: str
    state: str
    config_yaml: str
    created_at: dt.datetime
    updated_at: dt.datetime
    best_loss: float | None = None
    run_count_expected: int | None = None
    description: str | None = None


@dataclass
class Project:
    entity: str
    name: str
    created_at: dt.datetime
    description: str | None = None
    internal_id: int = 0  # W&B's numeric project id (`internalId`, a run's `projectId`)
    runs: dict = field(default_factory=dict)  # run id -> Run, in creation order
    sweeps: dict = field(default_factory=dict)

    @property
    def storage_id(self) -> str:
        return _b64id("Project", f"{self.entity}/{self.name}")


def _b64id(kind: str, key: str) -> str:
    import base64

    return base64.b64encode(f"{kind}:v1:{key}".encode()).decode()


def _value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return value.get("_type", "map") if isinstance(value.get("_type"), str) else "map"
    if value is None:
        return "nil"
    return "list"


@dataclass
class StoredArtifact:
    """An artifact version whose files the emulator serves: its manifest (W&B's manifest file, version 1) and
    each entry's bytes."""

    id: str
    node: dict  # the artifact as a run's outputArtifacts list it
    manifest: dict
    files: dict  # path -> bytes


class Store:
    """Everything the emulated server holds, plus the mutations tests apply between loads."""

    def __init__(self, api_keys: dict[str, str] | None = None, default_entity: str = "emulator"):
        self.lock = threading.RLock()
        self.api_keys = dict(api_keys or {})  # key -> username
        self.default_entity = default_entity
        self.entities: dict[str, dict[str, Project]] = {default_entity: {}}
        self._clock = dt.datetime(2000, 1, 1, tzinfo=UTC)
        self._next_project_id = 0
        self.updated_at_on_append = True  # False: appends and heartbeats leave `updatedAt` alone (profile.py)
        # artifacts with stored files (the run_table artifacts of logged runs): {id: StoredArtifact}, and the
        # SDK's client ids of them ({client id: id}; `clientIDMapping`)
        self.artifacts: dict[str, StoredArtifact] = {}
        self.client_ids: dict[str, str] = {}
        self.duplicate_client_ids: dict[str, str] = {}  # of artifacts deduplicated (profile.client_ids_of_duplicates)

    # -- time ---------------------------------------------------------------------------
    def now(self) -> dt.datetime:
        """Wall-clock UTC, strictly increasing across calls (two changes never share a time)."""
        with self.lock:
            now = dt.datetime.now(UTC)
            self._clock = max(now, self._clock + dt.timedelta(microseconds=1))
            return self._clock

    def touch(self, run: Run, edit: bool = True) -> None:
        """A change to `run`: `updatedAt` moves on an edit, and on an append only when the profile says
        so; a running run heartbeats."""
        run.version += 1
        now = self.now()
        if edit or self.updated_at_on_append:
            run.updated_at = now
        run.heartbeat_at = max(run.heartbeat_at, now) if run.state == "running" else run.heartbeat_at

    # -- lookups ------------------------------------------------------------------------
    def project(self, entity: str, name: str) -> Project:
        try:
            return self.entities[entity][name]
        except KeyError:
            raise NotFound(f"{entity}/{name}") from None

    def run(self, entity: str, project: str, run_id: str) -> Run:
        try:
            return self.project(entity, project).runs[run_id]
        except KeyError:
            raise NotFound(f"{entity}/{project}/{run_id}") from None

    def add_project(self, entity: str, name: str, created_at: dt.datetime | None = None) -> Project:
        with self.lock:
            projects = self.entities.setdefault(entity, {})
            if name not in projects:
                self._next_project_id += 1
                projects[name] = Project(entity, name, created_at or self.now(), internal_id=self._next_project_id)
            return projects[name]

    def add_run(self, run: Run) -> Run:
        with self.lock:
            project = self.add_project(run.entity, run.project)
            if run.name in project.runs:
                raise ValueError(f"run {run.name} already exists in {run.entity}/{run.project}")
            project.runs[run.name] = run
            for client_id, artifact in run.copies:
                self.artifacts[artifact.id] = artifact
                self.client_ids[client_id] = artifact.id
                run.output_artifacts.append(artifact.node)
            return run

    # -- mutations (each advances updated_at) ----------------------------------------------
    def append_steps(self, entity: str, project: str, run_id: str, rows: list[dict]) -> Run:
        """Log rows on a run (a running run keeps growing); summary follows the last values."""
        with self.lock:
            run = self.run(entity, project, run_id)
            for row in rows:
                run.history.append(row)
                run.summary.update(dict(row))
            self.touch(run, edit=False)
            return run

    def set_state(self, entity: str, project: str, run_id: str, state: str) -> Run:
        if state not in RUN_STATES:
            raise ValueError(f"unknown run state {state!r}; one of {RUN_STATES}")
        with self.lock:
            run = self.run(entity, project, run_id)
            run.state = state
            self.touch(run)
            return run

    def update_run(self, entity: str, project: str, run_id: str, **changes: Any) -> Run:
        """Edit config (merged), summary (merged), tags, notes, display_name, group, job_type."""
        allowed = {"config", "summary", "tags", "notes", "display_name", "group", "job_type", "description"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; allowed: {sorted(allowed)}")
        with self.lock:
            run = self.run(entity, project, run_id)
            for key, value in changes.items():
                if key in ("config", "summary"):
                    getattr(run, key).update(value)
                else:
                    setattr(run, key, value)
            self.touch(run)
            return run

    def delete_run(self, entity: str, project: str, run_id: str) -> None:
        with self.lock:
            project_obj = self.project(entity, project)
            if project_obj.runs.pop(run_id, None) is None:
                raise NotFound(f"{entity}/{project}/{run_id}")

    def delete_project(self, entity: str, project: str) -> None:
        with self.lock:
            self.project(entity, project)
            del self.entities[entity][project]

    def rewind(self, entity: str, project: str, run_id: str, step: int) -> Run:
        """W&B's `resume_from=<run>?_step=k`: history after step k is dropped, exports re-made."""
        with self.lock:
            run = self.run(entity, project, run_id)
            run.history.truncate_after(step)
            kept = len(run.history)
            if run.exported_rows > kept:
                run.export_bounds = [kept] if kept else []
                run.export_generation += 1
            last = run.history.row(kept - 1) if kept else {}
            run.summary = {k: v for k, v in run.summary.items() if not k.startswith("_")}
            run.summary.update(last)
            run.state = "running"
            self.touch(run)
            return run

    def export_history(self, entity: str, project: str, run_id: str, upto_rows: int | None = None) -> Run:
        """Export the first `upto_rows` rows (default: all) to a new parquet file."""
        with self.lock:
            run = self.run(entity, project, run_id)
            target = len(run.history) if upto_rows is None else min(upto_rows, len(run.history))
            if target > run.exported_rows:
                run.export_bounds.append(target)
                # an export does not change the run as W&B's API reports it
            return run

    # -- files --------------------------------------------------------------------------
    def file_bytes(self, entity: str, project: str, run_id: str, name: str) -> bytes:
        run = self.run(entity, project, run_id)
        if name not in run.files:
            raise NotFound(name)
        return run.files[name]


def dumps_wandb(value: Any) -> str:
    """JSON as W&B writes it inside string fields: NaN/Infinity tokens kept, no spaces."""
    return json.dumps(value, allow_nan=True, separators=(",", ":"), ensure_ascii=False)


def new_run(entity: str, project: str, run: str, state: str = "running", rows: list | None = None,
            **fields: Any) -> Run:
    """A run created now (as `wandb.init` would), with explicit history rows."""
    now = dt.datetime.now(UTC)
    created = Run(entity=entity, project=project, name=run, display_name=fields.pop("display_name", run),
                  state=state, created_at=now, updated_at=now, heartbeat_at=now, **fields)
    for row in rows or []:
        created.history.append(row)
        created.summary.update(row)
    return created
