"""W&B's operations, as the official clients send them (documents in `queries.py`): the viewer, the server's
fields, projects, runs, run files, artifacts, history, system metrics, sweeps — and the one paging helper.

- A key W&B does not accept may be answered HTTP 200 with `viewer: null`: `viewer()` turns that into an
  `AuthenticationError` before anything is listed.
- Paging (`_pages`): a null connection is empty, empty pages with `hasNextPage` are followed, a cursor that
  is missing or repeats fails with an error instead of looping.
- Fields a server lacks (an older W&B Server) are dropped from the documents (`fields`), with one warning.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

from dlt.common import logger

from .. import settings
from ..exceptions import AuthenticationError, ConfigurationError, NotFoundError, ServerError, WandbSourceError
from . import queries
from .transport import Transport

MAX_EMPTY_PAGES = 1000  # empty pages in a row (runs hidden from the caller) before a listing gives up


class WandbClient(Transport):
    """A thread-safe W&B client: every operation this source needs, paged and retried."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._server_fields: dict[str, frozenset[str] | None] | None = None
        self._viewer: dict[str, Any] | None = None
        self._warned: set[str] = set()
        self._refused: set[str] = set()  # aliased lookups this server refused (`_each`)
        self._lock = threading.Lock()

    # -- the server ----------------------------------------------------------------------------
    def viewer(self) -> dict[str, Any]:
        """The key's user (`id`, `entity`, `username`). W&B may answer a key it does not accept with HTTP
        200 and `viewer: null` rather than 401: both are an AuthenticationError."""
        if self._viewer is None:
            viewer = self.query(queries.VIEWER).get("viewer")
            if not viewer:
                raise AuthenticationError(
                    f"W&B at {self.base_url} did not accept the API key (it answered with no user). Set a valid "
                    "key as `api_key` in .dlt/secrets.toml [sources.wandb], or WANDB_API_KEY, or run `wandb login`.")
            self._viewer = dict(viewer)
        return self._viewer

    def fields(self, type_name: str, wanted: tuple[str, ...], required: tuple[str, ...] = ()) -> str:
        """`wanted` less the fields this server's `type_name` lacks (asked once per client, as the SDK's
        ProbeServerCapabilities does); one warning per missing field, an error for a `required` one."""
        have = self._probe().get(type_name)
        if have is None:
            return " ".join(wanted)
        kept: list[str] = []
        missing: list[str] = []
        for field in wanted:
            (kept if field.split()[0].split("(")[0] in have else missing).append(field)
        for field in missing:
            name = f"{type_name}.{field.split()[0]}"
            if field in required:
                raise ServerError(f"this W&B server has no {name}, which wandb_source needs; it is older than "
                                  "any server the wandb SDK 0.31 supports. Upgrade the W&B Server.")
            with self._lock:
                new = name not in self._warned
                self._warned.add(name)
            if new:
                logger.warning("this W&B server has no %s (an older W&B Server): it is not asked for and "
                               "its column stays empty", name)
        return " ".join(kept)

    def has_field(self, type_name: str, field: str) -> bool:
        have = self._probe().get(type_name)
        return have is None or field in have

    def _probe(self) -> dict[str, frozenset[str] | None]:
        with self._lock:
            if self._server_fields is not None:
                return self._server_fields
        try:
            data = self.query(queries.PROBE)
        except ServerError as e:  # a server that refuses introspection: ask for every field, as before
            logger.warning("this W&B server did not say which fields it has (%s); asking for all of them", e)
            data = {}
        found: dict[str, frozenset[str] | None] = {}
        for name in queries.PROBE_TYPES:
            node = data.get(f"{name}Type")
            fields = node.get("fields") if isinstance(node, dict) else None
            found[name] = frozenset(f["name"] for f in fields if isinstance(f, dict)) if fields else None
        with self._lock:
            self._server_fields = found
        return found

    # -- paging ----------------------------------------------------------------------------------
    def _pages(self, document: str, variables: dict[str, Any], locate: Callable[[dict[str, Any]], Any],
               what: str, cursor_variable: str = "cursor") -> Iterator[list[dict[str, Any]]]:
        """The nodes of a relay connection, page by page. `locate(data)` returns the connection (None:
        empty) or raises. Pages may be empty while `hasNextPage` holds (runs hidden from the caller);
        a missing or repeated cursor fails rather than loop forever."""
        variables, seen, empty = dict(variables), set(), 0
        while True:
            conn = locate(self.query(document, variables)) or {}
            edges = [e for e in conn.get("edges") or [] if isinstance(e, dict)]
            nodes = [e["node"] for e in edges if isinstance(e.get("node"), dict)]
            yield nodes
            info = conn.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return
            cursor = info.get("endCursor") or (edges[-1].get("cursor") if edges else None)
            if not cursor or cursor in seen:
                raise ServerError(f"W&B said more {what} follow but gave {'the same' if cursor else 'no'} page "
                                  f"cursor {'again' if cursor else ''}: the listing cannot go on. Try again later; "
                                  "if it persists, report it to W&B support.")
            empty = empty + 1 if not nodes else 0
            if empty > MAX_EMPTY_PAGES:
                raise ServerError(f"W&B sent {MAX_EMPTY_PAGES} empty pages of {what} in a row; giving up.")
            seen.add(cursor)
            variables[cursor_variable] = cursor

    # -- W&B operations ------------------------------------------------------------------------
    def projects(self, entity: str) -> Iterator[dict[str, Any]]:
        document = queries.PROJECTS % {"fields": self.fields("Project", queries.PROJECT_FIELDS)}

        def locate(data: dict[str, Any]) -> Any:
            if data.get("models") is None:
                raise NotFoundError(f"W&B has no entity {entity!r} visible to this API key; check `entity`.")
            return data["models"]

        for page in self._pages(document, {"entity": entity, "perPage": settings.PROJECTS_PAGE_SIZE}, locate,
                                f"projects of {entity}"):
            yield from page

    def run_pages(self, entity: str, project: str, filters: dict[str, Any] | None = None, *, full: bool = False,
                  per_page: int | None = None, fields: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of runs in creation order; `full` asks for config, summary and system metrics too,
        `fields` for other run fields."""
        wanted = queries.RUN_FIELDS if full else queries.LISTING_FIELDS
        document = queries.RUNS % {"fields": fields or self.fields("Run", wanted, queries.REQUIRED_RUN_FIELDS)}
        variables: dict[str, Any] = {"entity": entity, "project": project, "perPage": per_page or settings.RUNS_PAGE_SIZE,
                           "order": "+created_at"}
        if filters:
            variables["filters"] = json.dumps(filters)

        def locate(data: dict[str, Any]) -> Any:
            if data.get("project") is None:
                raise NotFoundError(f"W&B has no project {entity}/{project} visible to this API key; "
                                    "check `entity` and `projects` in [sources.wandb].")
            return data["project"].get("runs")

        yield from self._pages(document, variables, locate, f"runs of {entity}/{project}")

    def runs_by_name(self, entity: str, project: str, names: list[str]) -> list[dict[str, Any]]:
        """The full run objects of `names` (one request per page of names)."""
        pages = self.run_pages(entity, project, {"name": {"$in": names}}, full=True, per_page=len(names))
        return [run for page in pages for run in page]

    def run_file_urls(self, entity: str, project: str, names: list[str], file_name: str) -> dict[str, str]:
        """{run: download URL} of the file `file_name` of each run in `names` that has it. The SDK downloads
        a run file from `url` (apis/public/files.py); `directUrl` only when there is none."""
        fields = queries.RUN_FILES % {"names": json.dumps([file_name])}
        urls = {}
        for page in self.run_pages(entity, project, {"name": {"$in": names}}, per_page=len(names), fields=fields):
            for run in page:
                for edge in (run.get("files") or {}).get("edges") or []:
                    node = (edge or {}).get("node") or {}
                    if node.get("name") == file_name and (node.get("url") or node.get("directUrl")):
                        urls[run["name"]] = node.get("url") or node["directUrl"]
        return urls

    def run_files(self, entity: str, project: str, run: str, file_names: list[str]) -> dict[str, str]:
        """{file: download URL} of the files `file_names` of one run (those it has; none when the run is gone), 50
        names per request: the SDK's `Run.files(names=[...])` (RunFiles)."""
        urls: dict[str, str] = {}
        for start in range(0, len(file_names), settings.DETAIL_BATCH_SIZE):
            wanted = file_names[start:start + settings.DETAIL_BATCH_SIZE]
            variables = {"entity": entity, "project": project, "name": run, "fileNames": wanted,
                         "fileLimit": settings.DETAIL_BATCH_SIZE}
            locate: Callable[[dict[str, Any]], Any] = lambda data: ((data.get("project") or {}).get("run") or {}).get("files")  # noqa: E731
            for page in self._pages(queries.RUN_FILES_OF_RUN, variables, locate, f"files of run {run}",
                                    cursor_variable="fileCursor"):
                for node in page:
                    if node.get("name") in wanted and (node.get("url") or node.get("directUrl")):
                        urls[node["name"]] = node.get("url") or node["directUrl"]
        return urls

    def run_table_keys(self, entity: str, project: str, names: list[str]) -> dict[str, tuple[Any, Any]]:
        """{run: (summary, historyKeys)} of the runs in `names`: the two fields of the SDK's RUN_FRAGMENT that
        say which keys logged a `wandb.Table` (`convert.logged_tables.table_keys`)."""
        fields = self.fields("Run", ("name", "summaryMetrics", "historyKeys"), queries.REQUIRED_RUN_FIELDS)
        out = {}
        for page in self.run_pages(entity, project, {"name": {"$in": names}}, per_page=len(names), fields=fields):
            for run in page:
                out[run["name"]] = (run.get("summaryMetrics"), run.get("historyKeys"))  # JSON text, or JSON
        return out

    def artifact_server_ids(self, client_ids: list[str]) -> list[Any]:
        """The id of the artifact the SDK logged under each client id: the id, None (W&B knows none) or the
        error (a WandbSourceError)."""
        found = self._each(queries.CLIENT_ID_MAPPING, queries.CLIENT_ID_MAPPING_FIELD, "ClientIDMappings",
                           [{"clientID": c} for c in client_ids])
        return [f if isinstance(f, Exception) else _text((f or {}).get("serverID")) for f in found]

    def artifact_manifest_urls(self, artifact_ids: list[str]) -> list[Any]:
        """Where each artifact's manifest file is (a URL), or the error."""
        found = self._each(queries.ARTIFACT_MANIFEST, queries.ARTIFACT_MANIFEST_FIELD, "ArtifactManifests",
                           [{"artifact_id": a} for a in artifact_ids])
        out: list[Any] = []
        for answer, artifact_id in zip(found, artifact_ids):
            manifest = (answer or {}).get("currentManifest") if not isinstance(answer, Exception) else None
            url = _text(((manifest or {}).get("file") or {}).get("directUrl"))
            out.append(answer if isinstance(answer, Exception) else
                       url or NotFoundError(f"W&B gave no manifest for artifact {artifact_id}"))
        return out

    def artifact_manifest(self, url: str, artifact_id: str) -> dict[str, Any]:
        """The manifest file at `url` (`{"version", "storagePolicyConfig", "contents": {path: {"digest", "size",
        ...}}}`)."""
        try:
            body = json.loads(self.download(url))
        except (UnicodeDecodeError, ValueError) as e:
            raise ServerError(f"the manifest of artifact {artifact_id} is not JSON ({e})") from None
        if not isinstance(body, dict) or not isinstance(body.get("contents"), dict):
            raise ServerError(f"the manifest of artifact {artifact_id} has no `contents`")
        return body

    def artifact_file_urls(self, wanted: list[tuple[str, dict[str, Any], str]]) -> list[Any]:
        """The download URL of each (artifact id, its manifest, entry name): the URL, None (W&B gave none) or the
        error. wandb-core asks with the entry's digest, birth artifact and size, and the manifest's storage layout
        and version."""
        variables = []
        for artifact_id, manifest, name in wanted:
            entry, config = manifest["contents"][name], manifest.get("storagePolicyConfig") or {}
            variables.append({"id": artifact_id, "storageLayout": str(config.get("storageLayout") or "V2"),
                              "manifestVersion": str(manifest.get("version") or 1),
                              "storageRegion": config.get("storageRegion"),
                              "entries": [{"name": name, "digest": entry.get("digest"),
                                           "birthArtifactID": entry.get("birthArtifactID"), "size": entry.get("size")}]})
        found = self._each(queries.ARTIFACT_FILE_URLS, queries.ARTIFACT_FILE_URLS_FIELD, "ArtifactFileURLs", variables)
        return [f if isinstance(f, Exception) else _entry_url(f, name) for f, (_, _, name) in zip(found, wanted)]

    def _each(self, single: str, field: tuple[str, dict[str, str]], operation: str,
              variables: list[dict[str, Any]]) -> list[Any]:
        """The answer of `single` (a document with one root field) for each variables, 50 per request under
        aliases (`queries.aliased`); a server that refuses that is asked one by one. An item's error is its
        answer (a WandbSourceError), so that one bad item costs only itself."""
        out: list[Any] = []
        root = field[0].split("(")[0]
        for start in range(0, len(variables), settings.DETAIL_BATCH_SIZE):
            chunk = variables[start:start + settings.DETAIL_BATCH_SIZE]
            if len(chunk) > 1 and operation not in self._refused:
                try:
                    data = self.query(queries.aliased(operation, field, len(chunk)),
                                      {f"{k}{i}": v for i, item in enumerate(chunk) for k, v in item.items()})
                    out += [data.get(f"a{i}") for i in range(len(chunk))]
                    continue
                except (AuthenticationError, ConfigurationError):
                    raise
                except WandbSourceError as e:
                    with self._lock:
                        self._refused.add(operation)
                    logger.warning("W&B refused %d artifact lookups in one request (%s); they are asked one by one",
                                   len(chunk), e)
            for item in chunk:
                try:
                    out.append(self.query(single, item).get(root))
                except (AuthenticationError, ConfigurationError):
                    raise
                except WandbSourceError as e:
                    out.append(e)
        return out

    def run_artifacts(self, entity: str, project: str, names: list[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """{run: {"output": [artifact version...], "input": [...]}} for the runs in `names`. At most
        `ARTIFACTS_PER_REQUEST` artifact nodes per request, as the SDK's page of 100 for one run."""
        connection = queries.ARTIFACT_CONNECTION % {"fields": self.fields("Artifact", queries.ARTIFACT_FIELDS)}
        first = settings.ARTIFACTS_NESTED_PAGE_SIZE
        fields = queries.RUN_ARTIFACTS % {"first": first, "connection": connection}
        per_request = max(1, settings.ARTIFACTS_PER_REQUEST // (2 * first))
        out = {}
        for start in range(0, len(names), per_request):
            batch = names[start:start + per_request]
            for page in self.run_pages(entity, project, {"name": {"$in": batch}}, per_page=len(batch), fields=fields):
                for run in page:
                    out[run["name"]] = {
                        direction: self._all_artifacts(entity, project, run["name"], field, run.get(field) or {},
                                                       connection)
                        for direction, field in (("output", "outputArtifacts"), ("input", "inputArtifacts"))}
        return out

    def _all_artifacts(self, entity: str, project: str, run: str, field: str, conn: dict[str, Any],
                       connection: str) -> list[dict[str, Any]]:
        nodes = [edge["node"] for edge in conn.get("edges") or [] if (edge or {}).get("node")]
        info = conn.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return nodes
        document = queries.MORE_ARTIFACTS % {"field": field, "connection": connection}
        variables = {"entity": entity, "project": project, "run": run, "perPage": settings.ARTIFACTS_PAGE_SIZE,
                     "cursor": info.get("endCursor")}
        locate: Callable[[dict[str, Any]], Any] = lambda data: ((data.get("project") or {}).get("run") or {}).get(field)  # noqa: E731
        for page in self._pages(document, variables, locate, f"artifacts of run {run}"):
            nodes += page
        return nodes

    def parquet_history(self, entity: str, project: str, run: str) -> tuple[list[str], list[int]] | None:
        """(parquet URLs, live steps, ascending), or None when the run is gone."""
        data = self.query(queries.PARQUET_HISTORY, {"entity": entity, "project": project, "run": run})
        node = (data.get("project") or {}).get("run")
        return None if node is None else _parquet_listing(node)

    def history_batch(self, entity: str, project: str, windows: dict[str, tuple[int, int]],
                      samples: int) -> dict[str, tuple[list[str], list[int], list[str]] | None]:
        """For each run of `windows` ({run: (minStep, maxStep)}, each at most `samples` steps wide): its
        parquet URLs, live steps and the rows of its window, in one request; None for a run that is gone.
        The fields are wandb-core's RunParquetHistory and HistoryPage (core/api/graphql), aliased per run."""
        names = list(windows)
        variables: dict[str, Any] = {"entity": entity, "project": project, "pageSize": samples}
        for i, name in enumerate(names):
            low, high = windows[name]
            if not 0 < high - low <= samples:
                raise ValueError(f"window [{low}, {high}) of run {name} is wider than {samples} steps")
            variables.update({f"run{i}": name, f"min{i}": low, f"max{i}": high})
        project_node = self.query(queries.history_batch(len(names)), variables).get("project") or {}
        out: dict[str, tuple[list[str], list[int], list[str]] | None] = {}
        for i, name in enumerate(names):
            node = project_node.get(f"run{i}")
            out[name] = None if node is None else (*_parquet_listing(node), list(node.get("history") or []))
        return out

    def history_page(self, entity: str, project: str, run: str, min_step: int, max_step: int,
                     samples: int) -> list[str] | None:
        """Logged rows with min_step <= _step < max_step (JSON lines); the window must not hold more than
        `samples` rows, or W&B may sample it. None when the run is gone."""
        variables = {"entity": entity, "project": project, "run": run, "minStep": min_step,
                     "maxStep": max_step, "pageSize": samples}
        node = (self.query(queries.HISTORY_PAGE, variables).get("project") or {}).get("run")
        return None if node is None else node.get("history") or []

    def last_history_step(self, entity: str, project: str, run: str) -> int | None:
        """`historyKeys.lastStep` (-1: no history), or None when the run is gone."""
        data = self.query(queries.HISTORY_KEYS, {"entity": entity, "project": project, "run": run})
        node = (data.get("project") or {}).get("run")
        if node is None:
            return None
        keys = node.get("historyKeys") or {}
        last = keys.get("lastStep") if isinstance(keys, dict) else None
        return -1 if last is None else as_step(last)

    def events(self, entity: str, project: str, run: str) -> list[str] | None:
        """System-metric samples from `events(samples:)`: W&B caps `samples`, so this may be a sample."""
        variables = {"entity": entity, "project": project, "run": run, "samples": settings.EVENTS_SAMPLES}
        node = (self.query(queries.EVENTS, variables).get("project") or {}).get("run")
        return None if node is None else node.get("events") or []

    def events_batch(self, entity: str, project: str, names: list[str]) -> dict[str, list[str] | None]:
        """`events` of each run in `names` in one request; None for a run that is gone. Capped like `events`.
        The field is the SDK's `Run.history(stream="system")` (apis/public/runs.py), aliased per run."""
        variables: dict[str, Any] = {"entity": entity, "project": project, "samples": settings.EVENTS_SAMPLES}
        variables.update({f"run{i}": name for i, name in enumerate(names)})
        project_node = self.query(queries.events_batch(len(names)), variables).get("project") or {}
        nodes = [project_node.get(f"run{i}") for i in range(len(names))]
        return {name: None if node is None else list(node.get("events") or []) for name, node in zip(names, nodes)}

    def sweeps(self, entity: str, project: str) -> Iterator[dict[str, Any]]:
        document = queries.SWEEPS % {"fields": self.fields("Sweep", queries.SWEEP_FIELDS, ("name",))}
        variables = {"entity": entity, "project": project, "perPage": settings.SWEEPS_PAGE_SIZE}
        locate: Callable[[dict[str, Any]], Any] = lambda data: (data.get("project") or {}).get("sweeps")  # noqa: E731
        for page in self._pages(document, variables, locate, f"sweeps of {entity}/{project}"):
            yield from page


def _parquet_listing(run: dict[str, Any]) -> tuple[list[str], list[int]]:
    history = run.get("parquetHistory") or {}
    live = sorted({as_step(item["_step"]) for item in history.get("liveData") or []
                   if isinstance(item, dict) and item.get("_step") is not None})
    return list(history.get("parquetUrls") or []), live


def as_step(value: Any) -> int:
    """A `_step` as an int: W&B sometimes sends steps as floats (wandb-core's livedata.go converts them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")) or int(value) != value:
        raise ServerError(f"W&B sent a history step that is not a whole number: {value!r}")
    return int(value)


class RunGone(Exception):
    """The run was deleted between listing and fetching."""




def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _entry_url(artifact: Any, name: str) -> str | None:
    for edge in ((artifact or {}).get("filesByManifestEntries") or {}).get("edges") or []:
        node = (edge or {}).get("node") or {}
        if node.get("name") == name and node.get("directUrl"):
            return str(node["directUrl"])
    return None
