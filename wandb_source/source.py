"""`wandb_source`: the dlt source over W&B's API, one resource per table family.

    pipeline.run(wandb_source(entity="my-team", projects=["my-project"]))

Each resource's docstring says what it loads, its key, its cursor and what a second load fetches. W&B's
public API is GraphQL and changes without versioning: its documents live in `api/queries.py` only. Every
table is merged on its key, so a load can be repeated or resumed after a crash without duplicates.

Keys and columns: a resource that sends one table declares them in its decorator; the transformers that
send several tables (`runs`, `history`, `system_metrics`) give each item its own table's hints
(`load.jobs.table_item`), because dlt copies a decorator's columns into every table a resource sends
(tests/test_offline.py's online/offline comparison caught that). Both read `tables.TABLE_HINTS`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import dlt
from dlt.common import logger
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from . import settings
from .api.client import RunGone, WandbClient
from .api.credentials import (
    app_url,
    default_base_url,
    default_entity,
    default_projects,
    normalize_base_url,
    resolve_api_key,
)
from .convert.columns import ColumnMap
from .convert.logged_tables import table_keys
from .convert.run_objects import EVENTS_FILE, METADATA_FILE, artifact_rows, metadata_row
from .convert.runs import SIGNATURE, project_row, signed, sweep_row, sweeps_table
from .convert.selection import KeySelection, Selection, StepWindow
from .convert.values import json_or_text
from .exceptions import (
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    ServerError,
)
from .load.destination import cursor_rows, run_rows
from .load.dlt_internals import active_pipeline
from .load.jobs import (
    RunJob,
    TableBatches,
    batch_small_event_runs,
    batch_small_runs,
    event_batches,
    history_batches,
    run_tables,
    table_item,
)
from .load.logged_tables import (
    LoadedRows,
    TableColumns,
    TablesCursor,
    TableSelection,
    history_refs,
    read_copies,
    read_online,
    table_rows,
)
from .load.pool import DONE, in_parallel
from .load.progress import Progress
from .state import (
    CURSOR_TABLE,
    DIGESTS,
    FAILED,
    KEPT_IN,
    LEGACY_PATHS,
    SAMPLED,
    RunCursors,
    RunEntry,
    entries_of,
    gone_rows,
    run_key,
    signature_of,
)
from .tables import MERGE, OWN_METRIC_COLUMNS, OWN_SYSTEM_METRIC_COLUMNS, TABLE_HINTS, with_storage_hints


@dlt.source(name="wandb", max_table_nesting=0)
def wandb_source(
    entity: Optional[str] = None,
    projects: Optional[Sequence[str]] = None,
    base_url: Optional[str] = None,
    api_key: Optional[TSecretStrValue] = None,
    filters: Optional[dict[str, Any]] = None,
    history_page_size: int = settings.HISTORY_PAGE_SIZE,
    max_workers: int = settings.MAX_WORKERS,
    max_retries: int = settings.MAX_RETRIES,
    backoff_seconds: float = settings.BACKOFF_SECONDS,
    request_timeout: float = settings.REQUEST_TIMEOUT_SECONDS,
    max_history_columns: int = settings.MAX_HISTORY_COLUMNS,
    allow_insecure_http: bool = False,
    history_include: Optional[Sequence[str]] = None,
    history_exclude: Optional[Sequence[str]] = None,
    min_step: Optional[int] = None,
    max_step: Optional[int] = None,
    last_steps: Optional[int] = None,
    system_metrics_include: Optional[Sequence[str]] = None,
    system_metrics_exclude: Optional[Sequence[str]] = None,
    tables_include: Optional[Sequence[str]] = None,
    tables_exclude: Optional[Sequence[str]] = None,
    use_admin_privileges: bool = True,
    requests_per_minute: Optional[float] = None,
) -> Sequence[DltResource]:
    """Loads W&B data of `entity` (all its projects, or `projects`).

    Args:
        entity: W&B entity (user or team) that owns the projects. Default: WANDB_ENTITY, else the API
            key's own entity (as `wandb.Api()` does).
        projects: project names; `entity/project` also accepted. Default: WANDB_PROJECT, else every
            project of the entity.
        base_url: W&B API URL. Default: WANDB_BASE_URL, else `base_url` in the wandb SDK's settings files
            (`wandb login --host`), else the SDK's default server.
        api_key: W&B API key. Default: WANDB_API_KEY, else the netrc entry for the server.
        filters: W&B run filter (Mongo-style, e.g. {"state": "finished"}) applied to runs and history.
        history_page_size: rows per history request.
        max_workers: requests W&B gets at the same time, every table together (the tables are fetched
            side by side, each with up to this many runs at once).
        max_retries: retries of a failing request (429, 5xx, timeouts) before the load fails.
        backoff_seconds: first wait between retries (doubles each time, with jitter); a 429's
            `Retry-After` wins.
        request_timeout: seconds to wait for one answer before retrying.
        max_history_columns: metric columns in `history` before new keys go to `history_long`.
        allow_insecure_http: allow sending the key over plain http to a non-loopback host.
        history_include: glob patterns of W&B keys to load into `history` (`train/*`, `eval/**`;
            `!pattern` excludes); default every key. `_step`, `_timestamp`, `_runtime` are always kept.
        history_exclude: glob patterns of W&B keys not to load.
        min_step: first step to load (inclusive).
        max_step: last step to load (inclusive).
        last_steps: per run and load, only the last N steps holding a selected key.
        system_metrics_include: glob patterns of system-metric keys to load (`system.gpu.*`).
        system_metrics_exclude: glob patterns of system-metric keys not to load.
        tables_include: glob patterns of the W&B keys whose logged `wandb.Table`s to load (`eval/*`); default
            every key. The tables' steps follow `min_step`/`max_step`; `last_steps` N keeps each key's last N.
        tables_exclude: glob patterns of the keys whose tables not to load.
        use_admin_privileges: send `Use-Admin-Privileges: true` as `wandb.Api()` does (an admin then sees
            what `wandb.Api()` shows them); false to read with the user's own view.
        requests_per_minute: at most this many requests a minute, spread evenly over every worker (W&B limits
            reads per key; a production W&B source documents 50–200 a minute). Default: no cap; a 429 or an
            exhausted `RateLimit-Remaining` still makes every worker wait.

    Returns:
        Resources `projects`, `runs` (+ `run_config`, `run_summary`, `metric_axes`), `history`
        (+ `history_long`), `system_metrics`, `run_metadata`, `artifacts`, `sweeps` and `logged_tables`
        (one `wandb_table__<key>` table per W&B key that logged a `wandb.Table`).
    """
    if entity is not None and (not isinstance(entity, str) or not entity.strip()):
        raise ConfigurationError(f"`entity` {entity!r} is not a W&B entity name: set it under [sources.wandb] in "
                                 ".dlt/config.toml or SOURCES__WANDB__ENTITY (or WANDB_ENTITY).")
    url = normalize_base_url(base_url) if base_url else default_base_url()
    client = WandbClient(url, resolve_api_key(api_key, url), max_retries=max_retries, backoff=backoff_seconds,
                         timeout=request_timeout, pool_size=max_workers, allow_insecure_http=allow_insecure_http,
                         use_admin_privileges=use_admin_privileges, requests_per_minute=_rate(requests_per_minute))
    client.viewer()  # a key W&B does not accept fails here, in one paragraph (W&B may answer it with HTTP 200)
    entity = entity or default_entity() or _viewer_entity(client)
    projects = projects or default_projects()
    history_selection = Selection(KeySelection.of(history_include, history_exclude, "history"),
                                  StepWindow.of(min_step, max_step, last_steps))
    system_selection = Selection(KeySelection.of(system_metrics_include, system_metrics_exclude, "system_metrics"))
    table_selection = TableSelection(KeySelection.of(tables_include, tables_exclude, "tables"), history_selection.window)
    targets = _project_list(client, entity, projects)
    listing = _runs_listing(client, targets, filters, discovered=() if projects else (entity,))
    return with_storage_hints((
        _projects(client, targets),
        listing,
        listing | _runs(client, app_url(url), track_deletions=not filters),
        listing | _history(client, history_page_size, max_workers, max_history_columns, history_selection),
        listing | _system_metrics(client, max_workers, system_selection),
        listing | _run_metadata(client, max_workers),
        listing | _artifacts(client),
        _sweeps(client, targets),
        listing | _logged_tables(client, history_page_size, max_workers, table_selection),
    ))


def _project_list(client: WandbClient, entity: str, projects: Optional[Sequence[str]]) -> list[tuple[str, str]]:
    if isinstance(projects, str):
        projects = [projects]
    if not projects:
        found = [(entity, node["name"]) for node in client.projects(entity)]
        if not found:
            raise NotFoundError(f"W&B shows no projects of entity {entity!r} to this API key: check `entity` "
                                "under [sources.wandb] (a user or team name), or list `projects`.")
        return found
    targets = []
    for name in projects:
        if not isinstance(name, str) or not name.strip("/ "):
            raise ConfigurationError(f"invalid project {name!r} in `projects`: use names or entity/project.")
        parts = name.strip("/").split("/")
        if len(parts) > 2:
            raise ConfigurationError(f"invalid project {name!r}: expected `project` or `entity/project`.")
        targets.append((parts[0], parts[1]) if len(parts) == 2 else (entity, parts[0]))
    return targets


def _rate(requests_per_minute: Any) -> Optional[float]:
    if requests_per_minute is None:
        return None
    if isinstance(requests_per_minute, bool) or not isinstance(requests_per_minute, (int, float)) \
            or not requests_per_minute > 0:
        raise ConfigurationError(f"`requests_per_minute` must be a number above 0, got {requests_per_minute!r}: "
                                 "set it under [sources.wandb] (e.g. 120), or leave it out for no cap")
    return float(requests_per_minute)


def _viewer_entity(client: WandbClient) -> str:
    entity = client.viewer().get("entity")
    if not entity:
        raise ConfigurationError("`entity` is required and the API key's user has no default entity: set it "
                                 "under [sources.wandb] in .dlt/config.toml, SOURCES__WANDB__ENTITY or WANDB_ENTITY.")
    return str(entity)


def _projects(client: WandbClient, targets: list[tuple[str, str]]) -> DltResource:
    @dlt.resource(name="projects", write_disposition=MERGE, **TABLE_HINTS["projects"])
    def projects() -> Iterator[list[dict[str, Any]]]:
        """One row per project (entity, name, id, created_at, description). Merged on (entity, name);
        a second load sends only projects whose row changed."""
        wanted = set(targets)
        digests = dlt.current.resource_state().setdefault(DIGESTS, {})
        for owner in sorted({e for e, _ in targets}):
            rows = [project_row(n) for n in client.projects(owner) if (owner, n["name"]) in wanted]
            rows = _changed_rows(rows, ("entity", "name"), digests)
            if rows:
                yield rows

    return projects


def _runs_listing(client: WandbClient, targets: list[tuple[str, str]], filters: Optional[dict[str, Any]],
                  discovered: tuple[str, ...]) -> DltResource:
    @dlt.resource(name="runs_listing", selected=False)
    def runs_listing() -> Iterator[dict[str, Any]]:
        """One item: the light run records (name, state, change signals...) of every project, the parent of
        runs, history and system_metrics. One item, not one per page, because dlt interleaves the
        generators of a transformer's items: per-project bookkeeping (deleted runs) and one bounded
        pool of fetches both need the whole listing in one call. `discovered`: the entities whose
        projects were listed to find them (the dry-run plan counts those requests)."""
        yield {"projects": [{"entity": entity, "project": project,
                             "runs": [signed(run) for page in client.run_pages(entity, project, filters) for run in page]}
                            for entity, project in targets],
               "discovered": discovered}

    return runs_listing


def _changed(page: dict[str, Any], seen: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs of a project's listing whose change signature (`convert.runs.change_signature`: updatedAt,
    heartbeatAt, state, row counts, tags, notes...) differs from what this table loaded last time."""
    return [node for node in page["runs"]
            if signature_of(seen.get(_run_key_str(page, node["name"]))) != node[SIGNATURE]]


def _changed_rows(rows: list[dict[str, Any]], key: tuple[Any, ...], digests: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows whose content differs from the last load (digests in resource state, keyed by `key`)."""
    out = []
    for row in rows:
        name = "/".join(str(row[k]) for k in key)
        digest = hashlib.sha1(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()
        if digests.get(name) != digest:
            digests[name] = digest
            out.append(row)
    return out


def _run_key_str(page: dict[str, Any], run_id: str) -> str:
    return run_key(page["entity"], page["project"], run_id)


def _runs(client: WandbClient, app_url: str, track_deletions: bool) -> DltResource:
    @dlt.transformer(name="runs", write_disposition=MERGE, parallelized=True)  # type: ignore[arg-type]  # dlt types it as a literal
    def runs(listing: dict[str, Any]) -> Iterator[Any]:
        """One row per run, keyed (entity, project, run_id), with config and summary also as
        `run_config` / `run_summary` (one row per key). Incremental on each run's change signals
        (`updated_at` when W&B has it, `heartbeat_at`, state, row counts, tags, notes): a second load
        fetches in full only runs where one changed; runs gone from a complete listing get `deleted_at`
        (no rows are purged)."""
        state = _cursors("runs")
        for page in listing["projects"]:
            try:
                yield from _project_runs(client, page, state, app_url)
            except NotFoundError:
                logger.warning("project %s/%s was deleted during the load; its runs were skipped",
                               page["entity"], page["project"])
                continue
            if track_deletions:
                yield from _mark_deleted(page, state, {n["name"] for n in page["runs"]})
        yield from _cursor_items(state)

    return runs


def _cursors(resource: str) -> RunCursors:
    """The resource's per-run entries, read from the destination's `run_cursors` once per load (those
    dlt state still holds from before that table move to it: `state.py`)."""
    state = dlt.current.resource_state()
    legacy = state.pop(LEGACY_PATHS[resource], None) or {}
    kept = entries_of(cursor_rows(active_pipeline(), resource)) if state.get(KEPT_IN) == CURSOR_TABLE else {}
    state[KEPT_IN] = CURSOR_TABLE  # a refresh that wipes the state makes the next load ignore the rows
    return RunCursors(resource, kept, legacy)


def _cursor_items(cursors: RunCursors) -> Iterator[Any]:
    """The entries set or removed during this load, as `run_cursors` rows of the same load package."""
    rows = cursors.rows()
    if rows:
        yield table_item(CURSOR_TABLE, rows)


def _project_runs(client: WandbClient, page: dict[str, Any], state: dict[str, Any], app_url: str) -> Iterator[Any]:
    """The changed runs of one project's listing, fetched in full in batches of names."""
    changed = _changed(page, state)
    for start in range(0, len(changed), settings.DETAIL_BATCH_SIZE):
        listed = {n["name"]: n[SIGNATURE] for n in changed[start:start + settings.DETAIL_BATCH_SIZE]}
        nodes = client.runs_by_name(page["entity"], page["project"], list(listed))
        yield from run_tables(nodes, page["entity"], page["project"], app_url)
        for node in nodes:  # the listed signature: a run that changed since is fetched again next load
            state[_run_key_str(page, node["name"])] = listed.get(node["name"])


def _mark_deleted(page: dict[str, Any], state: RunCursors, listed: set[Any]) -> Iterator[Any]:
    """Runs gone from a complete listing: their `runs` row gets `deleted_at`, their cursors of every
    resource are dropped (fetched in full should the run come back)."""
    prefix = f"{page['entity']}/{page['project']}/"
    gone = [k for k in state if k.startswith(prefix) and k[len(prefix):] not in listed]
    now = dt.datetime.now(dt.timezone.utc)
    for key in gone:
        run_id = key[len(prefix):]
        rows = run_rows(active_pipeline(), "runs", (page["entity"], page["project"], run_id))
        state.pop(key)
        yield table_item(CURSOR_TABLE, gone_rows(key, other_than="runs"))
        for row in rows:
            row = {k: v for k, v in row.items() if not k.startswith("_dlt")}
            row["deleted_at"] = now
            logger.info("run %s was deleted in W&B; marking it deleted", key)
            yield table_item("runs", [row])


def _history(client: WandbClient, page_size: int, max_workers: int, max_columns: int,
             selection: Selection) -> DltResource:
    @dlt.transformer(name="history", write_disposition=MERGE, parallelized=True)  # type: ignore[arg-type]  # dlt types it as a literal
    def history(listing: dict[str, Any]) -> Iterator[Any]:
        """One row per logged step, keyed (entity, project, run_id, _step), metrics as columns (keys
        past `max_history_columns` go to `history_long`). Full resolution from parquet exports and live
        pages, narrowed by `history_include`/`history_exclude`, `min_step`/`max_step`, `last_steps`.
        Per-run `_step` cursor: a second load fetches only steps after the last one loaded, and
        only for runs whose change signals moved; a rewound run is reloaded and its vanished steps
        deleted. A run that fails is listed in the resource state `failed` and retried next load."""
        state = dlt.current.resource_state()
        cursors = _cursors("history")
        columns = ColumnMap(state.setdefault("columns", {}), OWN_METRIC_COLUMNS, max_columns,
                            dlt.current.source_schema().naming)
        _note_selection_change(state, selection, bool(cursors))
        jobs = _jobs(listing, cursors)
        if selection.window == StepWindow():
            batch_small_runs(client, jobs, page_size)
        pipeline = active_pipeline()  # read on this thread: workers have no pipeline context
        work = lambda job: history_batches(client, job, columns, page_size, pipeline, selection)  # noqa: E731
        yield from _run_jobs(jobs, work, max_workers, state, cursors, "history")
        yield from _cursor_items(cursors)
        yield from _metric_columns(columns, "history")
        _report_unmatched(selection)

    return history


def _system_metrics(client: WandbClient, max_workers: int, selection: Selection) -> DltResource:
    @dlt.transformer(name="system_metrics", write_disposition=MERGE, parallelized=True)  # type: ignore[arg-type]  # dlt types it as a literal
    def system_metrics(listing: dict[str, Any]) -> Iterator[Any]:
        """W&B's system-metric samples (CPU, GPU, memory, network...) keyed (entity, project, run_id,
        _timestamp), narrowed by `system_metrics_include`/`system_metrics_exclude`. Every sample from the
        run file `wandb-events.jsonl` when the run has it; else W&B's `events` read, which W&B caps:
        `_sampled` is true when it gave fewer samples than the run holds (those runs are also listed in
        the resource state `sampled`). Per-run cursor on `_timestamp`, fetched only for runs whose change
        signals moved."""
        state = dlt.current.resource_state()
        cursors = _cursors("system_metrics")
        columns = ColumnMap(state.setdefault("columns", {}), OWN_SYSTEM_METRIC_COLUMNS,
                            settings.MAX_SYSTEM_METRICS_COLUMNS, dlt.current.source_schema().naming, "system_metrics")
        _note_selection_change(state, selection, bool(cursors))
        jobs = _jobs(listing, cursors)
        _find_events_files(client, jobs)
        batch_small_event_runs(client, jobs)
        work = lambda job: event_batches(client, job, columns, selection)  # noqa: E731
        yield from _run_jobs(jobs, work, max_workers, state, cursors, "system_metrics")
        yield from _cursor_items(cursors)
        yield from _metric_columns(columns, "system_metrics")
        _report_unmatched(selection)

    return system_metrics


def _note_selection_change(state: dict[str, Any], selection: Selection | TableSelection, loaded_before: bool) -> None:
    """A changed selection applies from this load on; steps loaded before keep the old one."""
    previous, now = state.get("selection"), selection.fingerprint()
    if previous is not None and previous != now and loaded_before:
        logger.warning("the %s selection changed since the last load (%s -> %s): it applies to steps loaded "
                       "from now on; run with --full-refresh to reload everything with it", selection.keys.what,
                       previous, now)
    state["selection"] = now


def _report_unmatched(selection: Selection) -> None:
    for message in selection.unmatched_report():
        logger.warning(message)
    selection.seen.clear()


def _metric_columns(columns: ColumnMap, table: str) -> Iterator[Any]:
    """`metric_columns`: which column of `history`/`system_metrics` holds which W&B key (and kind)."""
    rows = columns.added_rows(table)
    if rows:
        yield table_item("metric_columns", rows)


def _jobs(listing: dict[str, Any], cursors: dict[str, Any]) -> list[RunJob]:
    return [RunJob(page["entity"], page["project"], n["name"], n[SIGNATURE],
                   RunEntry.from_state(cursors.get(_run_key_str(page, n["name"]))), n.get("historyLineCount"),
                   n.get("eventsLineCount"), state=n.get("state"))
            for page in listing["projects"] for n in _changed(page, cursors)]


def _find_events_files(client: WandbClient, jobs: list[RunJob]) -> None:
    """Each job's `wandb-events.jsonl` URL, looked up 50 runs per request."""
    by_project: dict[tuple[str, str], list[RunJob]] = {}
    for job in jobs:
        if job.events_line_count == 0:
            continue  # no samples: nothing to look up
        by_project.setdefault((job.entity, job.project), []).append(job)
    for (entity, project), project_jobs in by_project.items():
        for start in range(0, len(project_jobs), settings.DETAIL_BATCH_SIZE):
            batch = {job.run_id: job for job in project_jobs[start:start + settings.DETAIL_BATCH_SIZE]}
            try:
                urls = client.run_file_urls(entity, project, list(batch), EVENTS_FILE)
            except NotFoundError:
                break  # the project went away during the load
            for name, url in urls.items():
                if name in batch:
                    batch[name].events_url = url


def _run_jobs(jobs: list[Any], work: Any, max_workers: int, state: dict[str, Any], cursors: dict[str, Any],
              table: str) -> Iterator[Any]:
    """Fetch runs concurrently; tables are batched (fewer, larger items for dlt). A run's cursor
    advances in state, which dlt commits only with the extracted package."""
    failed = state.setdefault(FAILED, {})
    sampled = state.setdefault(SAMPLED, {}) if table == "system_metrics" else {}
    batches = TableBatches()
    progress = Progress(table, len(jobs))
    for job, item, error in in_parallel(jobs, work, max_workers):
        if item is not DONE:
            progress.rows(*item)
            yield from batches.add(*item)
            continue
        progress.run_done()
        if error is None:
            entry = job.entry()
            failed.pop(job.key, None)
            _note_sampled(job, sampled)
            if job.problems:  # logged tables not loaded: kept in the run's cursor, the run is read again next load
                entry.signature = None
                for problem in job.problems:
                    logger.error("run %s: %s; it will be fetched again on the next load", job.key, problem)
                failed[job.key] = "; ".join(job.problems)
            cursors[job.key] = entry.to_state()
        elif isinstance(error, (RunGone, NotFoundError)):  # deleted during the load: fetched in full if it returns
            cursors.pop(job.key, None)
        elif isinstance(error, (AuthenticationError, ConfigurationError)):
            raise error
        else:
            logger.error("could not load run %s (%s: %s); it will be retried on the next load",
                         job.key, type(error).__name__, error)
            failed[job.key] = f"{type(error).__name__}: {error}"
    yield from batches.flush()


def _note_sampled(job: RunJob, sampled: dict[str, Any]) -> None:
    if job.sampled:
        sampled[job.key] = f"W&B's events read returned fewer samples than the run's {job.events_line_count}"
        logger.warning("system metrics of run %s are a sample (W&B caps its events read and the run has no "
                       "wandb-events.jsonl); their rows have _sampled = true", job.key)
    elif job.sampled is False:
        sampled.pop(job.key, None)


def _run_metadata(client: WandbClient, max_workers: int) -> DltResource:
    @dlt.transformer(name="run_metadata", write_disposition=MERGE, parallelized=True)  # type: ignore[arg-type]  # dlt types it as a literal
    def run_metadata(listing: dict[str, Any]) -> Iterator[Any]:
        """One row per run from its `wandb-metadata.json` (host, os, python, gpu, gpu_count, git_remote,
        git_commit, program, args, ...), keyed (entity, project, run_id). Fetched once per run (files
        looked up 50 runs per request, downloaded `max_workers` at a time): a second load fetches it only
        for runs that had none yet (a run that has not uploaded it, or whose download failed)."""
        loaded = _cursors("run_metadata")
        for page in listing["projects"]:
            todo = [n["name"] for n in page["runs"] if _run_key_str(page, n["name"]) not in loaded]
            for start in range(0, len(todo), settings.DETAIL_BATCH_SIZE):
                rows = _metadata_rows(client, page, todo[start:start + settings.DETAIL_BATCH_SIZE], max_workers)
                if rows:
                    yield table_item("run_metadata", rows)
                loaded.update((_run_key_str(page, row["run_id"]), True) for row in rows)
        yield from _cursor_items(loaded)

    return run_metadata


def _metadata_rows(client: WandbClient, page: dict[str, Any], names: list[str], max_workers: int) -> list[dict[str, Any]]:
    try:
        urls = client.run_file_urls(page["entity"], page["project"], names, METADATA_FILE)
    except NotFoundError:
        return []  # the project went away during the load

    def fetch(name: str) -> Optional[dict[str, Any]]:
        try:
            return metadata_row((page["entity"], page["project"], name), json.loads(client.download(urls[name])))
        except (ServerError, NotFoundError, ValueError) as e:
            logger.warning("could not read %s of run %s: %s; retried on the next load", METADATA_FILE,
                           _run_key_str(page, name), e)
            return None

    with ThreadPoolExecutor(max_workers, thread_name_prefix="wandb-metadata") as pool:
        return [row for row in pool.map(fetch, sorted(urls)) if row]


def _artifacts(client: WandbClient) -> DltResource:
    @dlt.transformer(name="artifacts", write_disposition=MERGE, parallelized=True)  # type: ignore[arg-type]  # dlt types it as a literal
    def artifacts(listing: dict[str, Any]) -> Iterator[Any]:
        """Artifact versions each run logged (`direction` = output) and used (input): name, type, version,
        aliases, size, digest, created_at. Keyed (entity, project, run_id, direction, artifact_id); join
        on `name`/`version` or `digest` for lineage. At most 100 artifact versions per request (as the
        SDK's page), only for runs whose change signals moved since the last load."""
        seen = _cursors("artifacts")
        for page in listing["projects"]:
            changed = _changed(page, seen)
            for start in range(0, len(changed), settings.DETAIL_BATCH_SIZE):
                batch = changed[start:start + settings.DETAIL_BATCH_SIZE]
                try:
                    found = client.run_artifacts(page["entity"], page["project"], [n["name"] for n in batch])
                except NotFoundError:
                    break
                rows = [row for name, by_direction in found.items() for direction, nodes in by_direction.items()
                        for row in artifact_rows((page["entity"], page["project"], name), direction, nodes)]
                if rows:
                    yield table_item("artifacts", rows)
                seen.update((_run_key_str(page, n["name"]), n[SIGNATURE]) for n in batch)
        yield from _cursor_items(seen)

    return artifacts


def _sweeps(client: WandbClient, targets: list[tuple[str, str]]) -> DltResource:
    @dlt.resource(name="sweeps", write_disposition=MERGE, **TABLE_HINTS["sweeps"])
    def sweeps() -> Iterator[list[dict[str, Any]]]:
        """One row per sweep (config parsed from YAML, method, state, best loss, run counts), keyed
        (entity, project, sweep_id); runs link to it through `runs.sweep`. Listed in full each time;
        only sweeps whose row changed are sent to the destination."""
        digests = dlt.current.resource_state().setdefault(DIGESTS, {})
        for entity, project in targets:
            rows = [sweep_row(node, entity, project) for node in client.sweeps(entity, project)]
            rows = _changed_rows(rows, ("entity", "project", "sweep_id"), digests)
            if rows:
                yield table_item("sweeps", sweeps_table(rows))

    return sweeps


def _logged_tables(client: WandbClient, page_size: int, max_workers: int, selection: TableSelection) -> DltResource:
    @dlt.transformer(name="logged_tables", write_disposition=MERGE, parallelized=True)  # type: ignore[arg-type]  # dlt types it as a literal
    def logged_tables(listing: dict[str, Any]) -> Iterator[Any]:
        """Every `wandb.Table` a run logged, one destination table per W&B key (`wandb_table__<key>`), keyed
        (entity, project, run_id, _step, _row): the table's columns as columns, named as metric columns are
        (the map is in `metric_columns`, `table_name` = the destination table). Narrowed by `tables_include`/
        `tables_exclude`, `min_step`/`max_step`, `last_steps` (per key). Per-run cursor on `_step`: a second
        load reads only the steps after the last one read, only for runs whose change signals moved, and
        fetches each new table file once; a file that could not be loaded is fetched again."""
        state = dlt.current.resource_state()
        cursors = _cursors("logged_tables")
        columns = TableColumns(state.setdefault("columns", {}), dlt.current.source_schema().naming)
        _note_selection_change(state, selection, bool(cursors))
        jobs = _jobs(listing, cursors)
        _find_table_keys(client, jobs, selection)

        pipeline = active_pipeline()  # read on this thread: workers have no pipeline context

        def work(job: RunJob) -> Iterator[Any]:
            cursor = job.cursor = TablesCursor.from_state(job.previous.cursor if job.previous else None)
            refs = history_refs(client, job.run_key, cursor.history, set(job.table_keys), page_size,
                                selection.window, job.history_line_count) if job.table_keys else []
            loaded = LoadedRows()
            for item in table_rows([*cursor.retry, *selection.pick(refs)], job.run_key, columns,
                                   read_online(client, job.run_key, max_workers), read_copies(client, job.run_key, max_workers)):
                if item[0] == "failed":
                    cursor.retry, job.problems = item[1], item[2]
                else:
                    loaded.add(*item)
                    yield item
            if cursor.history.rewound:  # rows of steps (and rows) the rewound run no longer has: deleted
                yield from loaded.vanished(pipeline, job.run_key, refs, cursor.retry, columns, selection.window)

        yield from _run_jobs(jobs, work, max_workers, state, cursors, "logged_tables")
        yield from _cursor_items(cursors)
        rows = columns.added_rows()
        if rows:
            yield table_item("metric_columns", rows)

    return logged_tables


def _find_table_keys(client: WandbClient, jobs: list[RunJob], selection: TableSelection) -> None:
    """Each job's keys that logged a table (and that the selection wants), 50 runs per request."""
    by_project: dict[tuple[str, str], list[RunJob]] = {}
    for job in jobs:
        by_project.setdefault((job.entity, job.project), []).append(job)
    for (entity, project), project_jobs in by_project.items():
        for start in range(0, len(project_jobs), settings.DETAIL_BATCH_SIZE):
            batch = {job.run_id: job for job in project_jobs[start:start + settings.DETAIL_BATCH_SIZE]}
            try:
                found = client.run_table_keys(entity, project, list(batch))
            except NotFoundError:
                break  # the project went away during the load
            for name, (summary, history_keys) in found.items():
                if name in batch:
                    keys = table_keys(json_or_text(summary), json_or_text(history_keys))
                    batch[name].table_keys = frozenset(k for k in keys if selection.keys.wants(k))
