"""The GraphQL side of the emulator: W&B's schema (schema.graphql) executed by graphql-core.

Resolvers read the store; `info.context` is a `Context` carrying the store, the viewer and the base
URL used for file and parquet links.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from graphql import GraphQLError, build_schema

from ..convert.logged_tables import manifest_digest
from .filters import FilterError, matches, sort_runs
from .profile import PESSIMISTIC, ServerProfile
from .store import NotFound, Project, Run, Store, StoredArtifact, Sweep, dumps_wandb

SDL = (Path(__file__).parent / "schema.graphql").read_text()
EVENTS_FILE = "wandb-events.jsonl"


@dataclass
class Context:
    store: Store
    username: str | None  # None: no valid API key
    base_url: str
    history_page_serves_exported: bool = False
    profile: ServerProfile = PESSIMISTIC
    history_windows: list | None = None  # (rows the window held, samples) of every HistoryPage served

    def page_size(self, first: int | None) -> int:
        first = 50 if first is None else first
        return first if self.profile.max_page_size is None else min(first, self.profile.max_page_size)


# -- formatting -----------------------------------------------------------------------------

def iso(value: dt.datetime | None, precise: bool = False) -> str | None:
    """W&B's timestamps: ISO-8601 in UTC without a zone suffix."""
    if value is None:
        return None
    naive = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return naive.isoformat(timespec="microseconds" if precise else "seconds")


def _cursor(offset: int) -> str:
    return base64.b64encode(f"cursor:{offset}".encode()).decode()


def _offset_after(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.b64decode(cursor).decode().split(":", 1)[1]) + 1
    except (ValueError, IndexError) as e:
        raise GraphQLError(f"invalid cursor {cursor!r}") from e


def connection(items: list, after: str | None, first: int, node: Callable = lambda x: x,
               total: bool = False) -> dict:
    start = _offset_after(after)
    page = items[start:start + first]
    edges = [{"node": node(item), "cursor": _cursor(start + i)} for i, item in enumerate(page)]
    result = {
        "edges": edges,
        "pageInfo": {"endCursor": edges[-1]["cursor"] if edges else None,
                     "startCursor": edges[0]["cursor"] if edges else None,
                     "hasNextPage": start + len(page) < len(items), "hasPreviousPage": start > 0},
    }
    if total:
        result["totalCount"] = len(items)
    return result


def sample(items: list, samples: int | None) -> list:
    """W&B's sampled reads: evenly spaced, first and last kept."""
    samples = 500 if samples is None else samples
    n = len(items)
    if n <= samples:
        return items
    if samples <= 1:
        return items[:samples]
    return [items[round(i * (n - 1) / (samples - 1))] for i in range(samples)]


def _user(username: str) -> dict:
    return {
        "id": base64.b64encode(f"User:{username}".encode()).decode(), "name": username,
        "username": username, "email": f"{username}@example.com", "admin": False,
        "flags": "{}", "entity": username, "deletedAt": None,
        "apiKeys": {"edges": []}, "teams": {"edges": []},
    }


# -- root -----------------------------------------------------------------------------------

def resolve_viewer(_root: Any, info: Any) -> dict | None:
    ctx: Context = info.context
    if ctx.username is None:
        return None
    user = _user(ctx.username)
    user["entity"] = ctx.store.default_entity
    user["teams"] = {"edges": [{"node": {"name": e}} for e in ctx.store.entities]}
    return user


def resolve_project(_root: Any, info: Any, name: str | None = None, entityName: str | None = None):
    ctx: Context = info.context
    if ctx.username is None:
        return None
    try:
        return ctx.store.project(entityName or ctx.store.default_entity, name or "")
    except NotFound:
        return None


def resolve_models(_root: Any, info: Any, entityName: str | None = None, after: str | None = None,
                   first: int | None = None, order: str | None = None) -> dict:
    ctx: Context = info.context
    projects = list(ctx.store.entities.get(entityName or ctx.store.default_entity, {}).values())
    if ctx.username is None:
        projects = []  # W&B projects are private: an anonymous caller sees none
    projects.sort(key=lambda p: (p.created_at, p.name), reverse=True)
    return connection(projects, after, ctx.page_size(first))


def resolve_entity(_root: Any, info: Any, name: str | None = None) -> dict | None:
    ctx: Context = info.context
    if name not in ctx.store.entities:
        return None
    return {"id": name, "name": name, "isTeam": name != ctx.username, "xxhashDigestsEnabled": False}


# -- project --------------------------------------------------------------------------------

def _filtered_runs(project: Project, filters: str | None) -> list[Run]:
    runs = list(project.runs.values())
    if not filters:
        return runs
    try:
        parsed = json.loads(filters)
        return [r for r in runs if matches(r, parsed)] if parsed else runs
    except (ValueError, FilterError) as e:
        raise GraphQLError(f"invalid filters: {e}") from e


def _named_runs(project: Project, filters: str | None) -> list[Run] | None:
    """`{"name": {"$in": [...]}}` answered by looking the names up (as W&B's index would), not by testing
    every run of a 100,000-run project against the filter; None for any other filter."""
    try:
        parsed = json.loads(filters) if filters else None
    except ValueError:
        return None
    if not (isinstance(parsed, dict) and list(parsed) == ["name"] and isinstance(parsed["name"], dict)
            and list(parsed["name"]) == ["$in"] and isinstance(parsed["name"]["$in"], list)
            and all(isinstance(n, str) for n in parsed["name"]["$in"])):
        return None
    return [project.runs[n] for n in dict.fromkeys(parsed["name"]["$in"]) if n in project.runs]


HIDDEN = "hidden:"


def resolve_runs(project: Project, info: Any, filters: str | None = None, after: str | None = None,
                 first: int | None = None, order: str | None = None) -> dict:
    ctx: Context = info.context
    if ctx.profile.hidden_pages:
        passed = after is not None and after.startswith(HIDDEN)
        if not passed:  # a page of runs hidden from the caller: empty, and more to come
            marker = HIDDEN + (after or "")
            return {"edges": [], "totalCount": len(project.runs), "pageInfo": {
                "endCursor": marker, "startCursor": None, "hasNextPage": True, "hasPreviousPage": False}}
        after = after[len(HIDDEN):] or None
    with ctx.store.lock:
        runs = _listed_runs(project, filters, order)
        return connection(runs, after, ctx.page_size(first), total=True)


LARGE_PROJECT = 10_000  # runs past which a project's filtered, sorted listing is kept between pages
_LISTINGS: dict[tuple, list] = {}


def _listed_runs(project: Project, filters: str | None, order: str | None) -> list:
    """The project's runs as filtered and ordered. For a large project (benchmarks) the list is kept while
    no run changes: sorting 100,000 runs for every page of 50 is this emulator's cost, not W&B's."""
    key = None
    named = _named_runs(project, filters) if len(project.runs) > LARGE_PROJECT else None
    if named is not None:
        try:
            return sort_runs(named, order)
        except FilterError as e:
            raise GraphQLError(str(e)) from e
    if len(project.runs) > LARGE_PROJECT:
        key = (id(project), filters, order, len(project.runs), sum(r.version for r in project.runs.values()))
        if key in _LISTINGS:
            return _LISTINGS[key]
    try:
        runs = sort_runs(_filtered_runs(project, filters), order)
    except FilterError as e:
        raise GraphQLError(str(e)) from e
    if key is not None:
        _LISTINGS.clear()
        _LISTINGS[key] = runs
    return runs


PROJECT_FIELDS: dict[str, Callable] = {
    "id": lambda p, info: p.storage_id,
    "internalId": lambda p, info: str(p.internal_id),
    "entityName": lambda p, info: p.entity,
    "entity": lambda p, info: {"id": p.entity, "name": p.entity, "isTeam": False},
    "createdAt": lambda p, info: iso(p.created_at),
    "updatedAt": lambda p, info: iso(p.created_at),
    "isBenchmark": lambda p, info: False,
    "readOnly": lambda p, info: False,
    "access": lambda p, info: "PRIVATE",
    "views": lambda p, info: "{}",
    "user": lambda p, info: _user(info.context.username or "anonymous"),
    "runCount": lambda p, info, filters=None: len(_filtered_runs(p, filters)),
    "runs": resolve_runs,
    "run": lambda p, info, name: p.runs.get(name),
    "totalSweeps": lambda p, info: len(p.sweeps),
    "sweeps": lambda p, info, after=None, first=None, filters=None, order=None: connection(
        sorted(p.sweeps.values(), key=lambda s: s.created_at, reverse=True), after, info.context.page_size(first)),
    "sweep": lambda p, info, sweepName: p.sweeps.get(sweepName),
}

SWEEP_FIELDS: dict[str, Callable] = {
    "id": lambda s, info: base64.b64encode(f"Sweep:{s.entity}/{s.project}/{s.name}".encode()).decode(),
    "displayName": lambda s, info: s.display_name,
    "bestLoss": lambda s, info: s.best_loss,
    "config": lambda s, info: s.config_yaml,
    "createdAt": lambda s, info: iso(s.created_at),
    "updatedAt": lambda s, info: iso(s.updated_at),
    "runCount": lambda s, info: _sweep_run_count(s, info),
    "runCountExpected": lambda s, info: s.run_count_expected,
}


def _sweep_run_count(sweep: Sweep, info: Any) -> int:
    project = info.context.store.project(sweep.entity, sweep.project)
    return sum(1 for r in project.runs.values() if r.sweep_name == sweep.name)


# -- run ------------------------------------------------------------------------------------

def _wrapped_config(run: Run) -> str:
    wrapped = {k: ({"value": v} if k == "_wandb" else {"value": v, "desc": None}) for k, v in run.config.items()}
    return dumps_wandb(wrapped)


def resolve_history(run: Run, info: Any, minStep: int | None = None, maxStep: int | None = None,
                    samples: int | None = None) -> list[str]:
    """The rows minStep <= _step < maxStep. A window holding more rows than `samples` is sampled
    (evenly spaced, first and last kept) under `profile.sample_history`, else cut after `samples` rows
    (the reading the loader used to rely on). No range at all: W&B's sampled read."""
    ctx: Context = info.context
    with ctx.store.lock:
        history = run.history
        if minStep is None and maxStep is None:
            return [dumps_wandb(r) for r in sample(list(history.rows()), samples)]
        start = history.index_of(minStep or 0)
        if not ctx.history_page_serves_exported:
            start = max(start, run.exported_rows)
        stop = history.index_of(maxStep) if maxStep is not None else len(history)
        held, samples = max(0, stop - start), 500 if samples is None else samples
        if ctx.history_windows is not None:
            ctx.history_windows.append((held, samples))
        if held <= samples:
            return history.lines(start, stop) if held else []
        if not ctx.profile.sample_history:
            return history.lines(start, start + samples)
        return [history.lines(i, i + 1)[0] for i in sample(list(range(start, stop)), samples)]


def resolve_sampled_history(run: Run, info: Any, specs: list[str]) -> list[list[dict]]:
    out = []
    with info.context.store.lock:
        for raw in specs:
            spec = json.loads(raw)
            keys = spec.get("keys") or []
            lo, hi = spec.get("minStep", -(2**63)), spec.get("maxStep", 2**63)
            rows = [{k: r[k] for k in keys} for r in run.history.rows()
                    if lo <= r["_step"] <= hi and all(k in r for k in keys)]
            out.append([_finite(r) for r in sample(rows, spec.get("samples"))])
    return out


def _finite(value: Any) -> Any:
    """Objects in JSON-typed fields must be strict JSON: non-finite floats become null."""
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def resolve_parquet_history(run: Run, info: Any, liveKeys: list[str]) -> dict:
    ctx: Context = info.context
    with ctx.store.lock:
        urls = [parquet_url(ctx.base_url, run, i) for i in range(len(run.export_bounds))]
        live = [{k: row[k] for k in liveKeys if k in row} for row in run.history.rows(run.exported_rows)]
    return {"parquetUrls": urls, "liveData": live}


def parquet_url(base_url: str, run: Run, index: int) -> str:
    return (f"{base_url}/_emulator/parquet/{quote(run.entity)}/{quote(run.project)}/{quote(run.name)}"
            f"/{run.export_generation}-{index}.parquet")


def file_url(base_url: str, run: Run, name: str) -> str:
    return f"{base_url}/files/{quote(run.entity)}/{quote(run.project)}/{quote(run.name)}/{quote(name)}"


def run_files(run: Run, profile: ServerProfile) -> list[str]:
    """The run's file names: its stored files and, under `events_file`, its system-metrics stream."""
    names = list(run.files)
    if profile.events_file and run.events:
        names.append(EVENTS_FILE)
    return names


def run_file(run: Run, name: str, profile: ServerProfile) -> bytes:
    """A run file's content (`wandb-events.jsonl`: one JSON object per system-metrics sample)."""
    if name == EVENTS_FILE and name in run_files(run, profile):
        return "".join(dumps_wandb(e) + "\n" for e in run.events).encode()
    if name not in run.files:
        raise NotFound(name)
    return run.files[name]


def resolve_files(run: Run, info: Any, names: list | None = None, after: str | None = None,
                  first: int | None = None, pattern: str | None = None) -> dict:
    import fnmatch

    ctx: Context = info.context
    selected = sorted(n for n in run_files(run, ctx.profile) if (not names or n in names)
                      and (not pattern or fnmatch.fnmatch(n, pattern.replace("%", "*"))))

    def node(name: str) -> dict:
        data = run_file(run, name, ctx.profile)
        return {"id": base64.b64encode(f"File:{run.name}/{name}".encode()).decode(), "name": name,
                "url": file_url(ctx.base_url, run, name), "directUrl": file_url(ctx.base_url, run, name),
                "sizeBytes": len(data), "mimetype": "application/json" if name.endswith(".json") else "text/plain",
                "updatedAt": iso(run.updated_at), "md5": manifest_digest(data)}

    return connection(selected, after, ctx.page_size(first), node)


def _artifact_node(art: dict, project: Project) -> dict:
    collection = {"__typename": "ArtifactSequence", "name": art["name"], "project": project}
    return {
        "id": art["id"], "artifactSequence": collection, "versionIndex": art["version_index"],
        "artifactType": {"name": art["type"]}, "description": art["description"],
        "metadata": json.dumps(art["metadata"]), "ttlDurationSeconds": -1, "ttlIsInherited": True,
        "tags": [], "historyStep": None, "state": "COMMITTED", "size": art["size"], "digest": art["digest"],
        "digestAlgorithm": "MANIFEST_MD5", "commitHash": art["digest"][:12], "fileCount": 1,
        "createdAt": iso(art["created_at"]), "updatedAt": iso(art["created_at"]),
        "aliases": [{"id": f"{art['id']}:{a}", "alias": a, "artifactCollection": collection}
                    for a in art["aliases"]],
    }


def resolve_client_id_mapping(_root: Any, info: Any, clientID: str) -> dict | None:
    """`clientIDMapping`: the id of the artifact the SDK logged under `clientID` (None: unknown)."""
    store: Store = info.context.store
    server_id = store.client_ids.get(clientID)
    if server_id is None and info.context.profile.client_ids_of_duplicates:
        server_id = store.duplicate_client_ids.get(clientID)
    return {"serverID": server_id} if server_id else None


def resolve_artifact(_root: Any, info: Any, id: str) -> dict | None:  # noqa: A002 - W&B's argument name
    """`artifact(id:)`: an artifact version the emulator holds files for."""
    store: Store = info.context.store
    stored = store.artifacts.get(id)
    if stored is None:
        return None
    node = stored.node
    return {**_artifact_node(node, store.project(node["entity"], node["project"])), "_stored": stored}


def artifact_file_url(base_url: str, artifact_id: str, name: str | None) -> str:
    """A stored artifact's file (`name`) or, for None, its manifest."""
    if name is None:
        return f"{base_url}/_emulator/artifact-manifest/{quote(artifact_id, safe='')}"
    return f"{base_url}/_emulator/artifact-file/{quote(artifact_id, safe='')}/{quote(name)}"


def _artifact_file(info: Any, stored: StoredArtifact, name: str | None, size: int) -> dict:
    url = artifact_file_url(info.context.base_url, stored.id, name)
    return {"id": base64.b64encode(f"File:{stored.id}/{name}".encode()).decode(), "name": name or "wandb_manifest.json",
            "url": url, "directUrl": url, "sizeBytes": size, "mimetype": None, "updatedAt": None, "md5": None}


def _current_manifest(artifact: dict, info: Any) -> dict | None:
    stored = artifact.get("_stored")
    if stored is None:
        return None
    return {"id": f"{stored.id}:manifest", "file": _artifact_file(info, stored, None, len(json.dumps(stored.manifest)))}


def _files_by_manifest_entries(artifact: dict, info: Any, storageLayout: str, manifestVersion: str,
                               entries: list | None = None, storageRegion: str | None = None,
                               after: str | None = None, first: int | None = None) -> dict:
    """The download URLs of the named entries (wandb-core asks in batches; unknown names are left out)."""
    stored: StoredArtifact | None = artifact.get("_stored")
    names = [e["name"] for e in entries or [] if stored is not None and e["name"] in stored.files]
    return connection(names, after, info.context.page_size(first),
                      lambda name: _artifact_file(info, stored, name, len(stored.files[name])))  # type: ignore[union-attr]


ARTIFACT_FIELDS: dict[str, Callable] = {"currentManifest": _current_manifest,
                                        "filesByManifestEntries": _files_by_manifest_entries}


def _artifacts(run: Run, info: Any, artifacts: list, after: str | None, first: int | None) -> dict:
    project = info.context.store.project(run.entity, run.project)
    return connection(artifacts, after, info.context.page_size(first), lambda art: _artifact_node(art, project),
                      total=True)


RUN_FIELDS: dict[str, Callable] = {
    "id": lambda r, info: r.storage_id,
    "displayName": lambda r, info: r.display_name,
    "projectId": lambda r, info: str(info.context.store.project(r.entity, r.project).internal_id),
    "project": lambda r, info: info.context.store.project(r.entity, r.project),
    "sweepName": lambda r, info: r.sweep_name,
    "sweep": lambda r, info: info.context.store.project(r.entity, r.project).sweeps.get(r.sweep_name),
    "config": lambda r, info: _wrapped_config(r),
    "jobType": lambda r, info: r.job_type,
    "readOnly": lambda r, info: False,
    "createdAt": lambda r, info: iso(r.created_at),
    "heartbeatAt": lambda r, info: iso(r.heartbeat_at),
    "updatedAt": lambda r, info: iso(r.updated_at, precise=True),
    "computeSeconds": lambda r, info: float(r.summary.get("_wandb", {}).get("runtime", 0)),
    "systemMetrics": lambda r, info: dumps_wandb(r.system_metrics),
    "summaryMetrics": lambda r, info: dumps_wandb(r.summary),
    "historyLineCount": lambda r, info: len(r.history),
    "eventsLineCount": lambda r, info: len(r.events),
    "user": lambda r, info: _user(r.username),
    "historyKeys": lambda r, info, format=None: _history_keys(r, info),
    "history": resolve_history,
    "sampledHistory": resolve_sampled_history,
    "events": lambda r, info, samples=None: [dumps_wandb(e) for e in sample(r.events, _events_samples(info, samples))],
    "parquetHistory": resolve_parquet_history,
    "fileCount": lambda r, info: len(r.files),
    "files": resolve_files,
    "outputArtifacts": lambda r, info, after=None, first=None: _artifacts(r, info, r.output_artifacts, after, first),
    "inputArtifacts": lambda r, info, after=None, first=None: _artifacts(r, info, r.input_artifacts, after, first),
}


def _history_keys(run: Run, info: Any) -> dict:
    """`historyKeys`; under a profile without `table_key_types`, a table's type count says only "map"."""
    keys = run.history_keys()
    if info.context.profile.table_key_types:
        return keys
    plain = {key: {**value, "typeCounts": [{**c, "type": "map" if str(c.get("type")).endswith("table-file")
                                             or c.get("type") in ("joined-table", "partitioned-table") else c["type"]}
                                            for c in value.get("typeCounts", [])]}
             for key, value in keys["keys"].items()}
    return {**keys, "keys": plain}


def _events_samples(info: Any, samples: int | None) -> int:
    cap = info.context.profile.events_cap
    samples = 500 if samples is None else samples
    return samples if cap is None else min(samples, cap)


def _install(schema: Any) -> Any:
    query = schema.query_type
    assert query is not None
    for name, fn in {"viewer": resolve_viewer, "project": resolve_project, "models": resolve_models,
                     "entity": resolve_entity, "clientIDMapping": resolve_client_id_mapping,
                     "artifact": resolve_artifact,
                     "serverInfo": lambda root, info: {"features": [], "latestLocalVersionInfo": None}}.items():
        query.fields[name].resolve = fn
    for type_name, fields in (("Project", PROJECT_FIELDS), ("Run", RUN_FIELDS), ("Sweep", SWEEP_FIELDS),
                              ("Artifact", ARTIFACT_FIELDS)):
        gql_type = schema.type_map[type_name]
        for name, fn in fields.items():
            if name in gql_type.fields:
                gql_type.fields[name].resolve = fn
    return schema


_SCHEMAS: dict[frozenset, Any] = {}


def schema_for(missing_fields: tuple[str, ...] = ()) -> Any:
    """W&B's schema, less `missing_fields` ("Type.field": a server older than the field)."""
    key = frozenset(missing_fields)
    if key not in _SCHEMAS:
        _SCHEMAS[key] = _install(build_schema(_without_fields(SDL, key)))
    return _SCHEMAS[key]


def _without_fields(sdl: str, missing: frozenset) -> str:
    out, current = [], None
    for line in sdl.splitlines():
        words = line.split()
        if words[:1] in (["type"], ["input"], ["interface"]) and len(words) > 1:
            current = words[1]
        field_name = words[0].split("(")[0].rstrip(":") if words and current else None
        if field_name and f"{current}.{field_name}" in missing:
            continue
        out.append(line)
    return "\n".join(out)


SCHEMA = schema_for()
