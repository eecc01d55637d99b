"""The only module doing network I/O: sessions, headers, retries, rate limits, paging and W&B's operations.

The documents are in `queries.py`, each beside the official client that sends it. How this client talks:
- `POST {base_url}/graphql`, Basic auth `api:<key>`, the headers of the SDK's public client
  (`User-Agent: W&B Public Client <version>`, `Use-Admin-Privileges: true`), strict JSON.
- A key W&B does not accept may be answered HTTP 200 with `viewer: null`: `viewer()` turns that into an
  `AuthenticationError` before anything is listed.
- Retries go by HTTP status, as wandb-core's (every status but 400 401 403 404 409 410 413 422 501, and
  connection faults); `Retry-After` in seconds or as an HTTP date. GraphQL `errors` on HTTP 200 fail at
  once unless the server marks them transient (`extensions.code`).
- Paging (`_pages`): a null connection is empty, empty pages with `hasNextPage` are followed, a cursor that
  is missing or repeats fails with an error instead of looping.
- Fields a server lacks (an older W&B Server) are dropped from the documents (`fields`), with one warning.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from typing import Any, Iterator
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter

import email.utils
from importlib import metadata
from typing import Callable

from dlt.common import logger

from . import queries, settings
from .exceptions import (AuthenticationError, ConfigurationError, FilterRejectedError, NotFoundError,
                         ServerError)

PERMANENT_STATUSES = {400, 401, 403, 404, 409, 410, 413, 422, 501}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
TRANSIENT_CODES = {"UNAVAILABLE", "TIMEOUT", "DEADLINE_EXCEEDED", "RATE_LIMITED", "TOO_MANY_REQUESTS",
                   "SERVICE_UNAVAILABLE", "TRANSIENT"}
MAX_EMPTY_PAGES = 1000  # empty pages in a row (runs hidden from the caller) before a listing gives up


class RateGate:
    """Shared by all threads: after a 429 or an exhausted window, nobody sends until it reopens."""

    def __init__(self) -> None:
        self._open_at = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        while True:
            with self._lock:
                delay = self._open_at - time.monotonic()
            if delay <= 0:
                return
            time.sleep(min(delay, 1.0))

    def close_for(self, seconds: float) -> None:
        with self._lock:
            self._open_at = max(self._open_at, time.monotonic() + seconds)


class WandbClient:
    """A thread-safe W&B GraphQL client with bounded, rate-limit-aware retries."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = settings.REQUEST_TIMEOUT_SECONDS,
                 max_retries: int = settings.MAX_RETRIES, backoff: float = settings.BACKOFF_SECONDS,
                 max_backoff: float = settings.MAX_BACKOFF_SECONDS, pool_size: int = settings.MAX_WORKERS,
                 allow_insecure_http: bool = False, use_admin_privileges: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        check_transport(self.base_url, allow_insecure_http)
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.gate = RateGate()
        self.requests_made = 0
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(pool_maxsize=pool_size + 4))
        self._session.mount("https://", HTTPAdapter(pool_maxsize=pool_size + 4))
        token = base64.b64encode(f"api:{api_key}".encode()).decode()
        self._session.headers.update({"Authorization": f"Basic {token}", "User-Agent": user_agent()})
        if use_admin_privileges:  # as the SDK's public API sends it (apis/public/api.py)
            self._session.headers["Use-Admin-Privileges"] = "true"
        self._server_fields: dict[str, frozenset[str] | None] | None = None
        self._viewer: dict | None = None
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    # -- transport -------------------------------------------------------------------------
    def query(self, document: str, variables: dict | None = None) -> dict:
        """Run a GraphQL document and return its `data`; retries what is worth retrying."""
        variables = variables or {}
        body = json.dumps({"query": document, "variables": variables, "operationName": None}, allow_nan=False)
        filtered = variables.get("filters") is not None
        return self._with_retries(lambda: self._post_graphql(body, filtered), _operation(document))

    def download(self, url: str) -> bytes:
        """GET a file (parquet export, run file); the key is sent only to the W&B host itself."""
        return self._with_retries(lambda: self._get(url), "download")

    def _with_retries(self, call: Any, operation: str) -> Any:
        attempt = 0
        while True:
            self.gate.wait()
            try:
                return call()
            except _Retryable as e:
                attempt += 1
                if attempt > self.max_retries:
                    raise ServerError(
                        f"W&B kept failing on {operation} after {self.max_retries} retries ({e}). "
                        f"Check {self.base_url} is reachable, or raise `max_retries` in [sources.wandb]."
                    ) from None
                if e.retry_after is not None:
                    wait = e.retry_after
                    self.gate.close_for(wait)  # every worker waits, not only this one (gate.wait above)
                else:
                    wait = self._backoff(attempt)
                logger.warning("W&B %s failed (%s); retry %d/%d in %.1fs", operation, e, attempt,
                               self.max_retries, wait)
                if e.retry_after is None:
                    time.sleep(wait)

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)

    def _post_graphql(self, body: str, filtered: bool = False) -> dict:
        response = self._send("POST", f"{self.base_url}/graphql", data=body,
                              headers={"Content-Type": "application/json"})
        try:
            payload = json.loads(response.content)  # stdlib: 2x faster than requests' simplejson here
        except ValueError:
            raise _Retryable(f"HTTP {response.status_code} with a body that is not JSON") from None
        if not isinstance(payload, dict):
            raise _Retryable("a JSON body that is not an object")
        if payload.get("errors"):
            _raise_graphql_errors(payload["errors"], filtered)
        return payload.get("data") or {}

    def _get(self, url: str) -> bytes:
        same_host = urlparse(url).netloc == urlparse(self.base_url).netloc
        headers = None if same_host else {"Authorization": None}  # never leak the key elsewhere
        response = self._send("GET", url, headers=headers)
        if response.status_code >= 400:  # a JSON error body is not the file
            raise ServerError(f"W&B answered HTTP {response.status_code} for {url}: {response.text[:200]}")
        return response.content

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.requests_made += 1
        try:
            response = self._session.request(method, url, timeout=self.timeout, **kwargs)
            _ = response.content  # read the whole body now: a truncated one raises here
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
            raise _Retryable(type(e).__name__) from None
        self._note_rate_headers(response)
        if response.status_code == 429:
            raise _Retryable("HTTP 429", _retry_after(response))
        if response.status_code in (401, 403):
            raise AuthenticationError(
                f"W&B at {self.base_url} did not accept the API key (HTTP {response.status_code}). Set a valid key "
                "as `api_key` in .dlt/secrets.toml [sources.wandb], or WANDB_API_KEY, or run `wandb login`."
            )
        if response.status_code in PERMANENT_STATUSES:
            if _is_graphql_body(response):
                return response  # its `errors` say what is wrong
            raise ServerError(f"W&B answered HTTP {response.status_code} for {url}: {response.text[:200]}")
        if response.status_code >= 400:  # wandb-core retries every other failure status
            raise _Retryable(f"HTTP {response.status_code}", _retry_after(response))
        return response

    def _note_rate_headers(self, response: requests.Response) -> None:
        remaining = response.headers.get("RateLimit-Remaining")
        reset = response.headers.get("RateLimit-Reset")
        if remaining is not None and reset is not None:
            try:
                if int(float(remaining)) <= 0:
                    self.gate.close_for(float(reset))
            except ValueError:
                pass

    # -- the server ----------------------------------------------------------------------------
    def viewer(self) -> dict:
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
        kept, missing = [], []
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
    def _pages(self, document: str, variables: dict, locate: Callable[[dict], Any], what: str) -> Iterator[list[dict]]:
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
            variables["cursor"] = cursor

    # -- W&B operations ------------------------------------------------------------------------
    def projects(self, entity: str) -> Iterator[dict]:
        document = queries.PROJECTS % {"fields": self.fields("Project", queries.PROJECT_FIELDS)}

        def locate(data: dict) -> Any:
            if data.get("models") is None:
                raise NotFoundError(f"W&B has no entity {entity!r} visible to this API key; check `entity`.")
            return data["models"]

        for page in self._pages(document, {"entity": entity, "perPage": settings.PROJECTS_PAGE_SIZE}, locate,
                                f"projects of {entity}"):
            yield from page

    def run_pages(self, entity: str, project: str, filters: dict | None = None, *, full: bool = False,
                  per_page: int | None = None, fields: str | None = None) -> Iterator[list[dict]]:
        """Pages of runs in creation order; `full` asks for config, summary and system metrics too,
        `fields` for other run fields."""
        wanted = queries.RUN_FIELDS if full else queries.LISTING_FIELDS
        document = queries.RUNS % {"fields": fields or self.fields("Run", wanted, queries.REQUIRED_RUN_FIELDS)}
        variables: dict = {"entity": entity, "project": project, "perPage": per_page or settings.RUNS_PAGE_SIZE,
                           "order": "+created_at"}
        if filters:
            variables["filters"] = json.dumps(filters)

        def locate(data: dict) -> Any:
            if data.get("project") is None:
                raise NotFoundError(f"W&B has no project {entity}/{project} visible to this API key; "
                                    "check `entity` and `projects` in [sources.wandb].")
            return data["project"].get("runs")

        yield from self._pages(document, variables, locate, f"runs of {entity}/{project}")

    def runs_by_name(self, entity: str, project: str, names: list[str]) -> list[dict]:
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

    def run_artifacts(self, entity: str, project: str, names: list[str]) -> dict[str, dict[str, list[dict]]]:
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

    def _all_artifacts(self, entity: str, project: str, run: str, field: str, conn: dict, connection: str) -> list[dict]:
        nodes = [edge["node"] for edge in conn.get("edges") or [] if (edge or {}).get("node")]
        info = conn.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return nodes
        document = queries.MORE_ARTIFACTS % {"field": field, "connection": connection}
        variables = {"entity": entity, "project": project, "run": run, "perPage": settings.ARTIFACTS_PAGE_SIZE,
                     "cursor": info.get("endCursor")}
        locate: Callable[[dict], Any] = lambda data: ((data.get("project") or {}).get("run") or {}).get(field)  # noqa: E731
        for page in self._pages(document, variables, locate, f"artifacts of run {run}"):
            nodes += page
        return nodes

    def parquet_history(self, entity: str, project: str, run: str) -> tuple[list[str], list[int]] | None:
        """(parquet URLs, live steps, ascending), or None when the run is gone."""
        data = self.query(queries.PARQUET_HISTORY, {"entity": entity, "project": project, "run": run})
        node = (data.get("project") or {}).get("run")
        if node is None:
            return None
        history = node.get("parquetHistory") or {}
        live = sorted({as_step(item["_step"]) for item in history.get("liveData") or []
                       if isinstance(item, dict) and item.get("_step") is not None})
        return list(history.get("parquetUrls") or []), live

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

    def sweeps(self, entity: str, project: str) -> Iterator[dict]:
        document = queries.SWEEPS % {"fields": self.fields("Sweep", queries.SWEEP_FIELDS, ("name",))}
        variables = {"entity": entity, "project": project, "perPage": settings.SWEEPS_PAGE_SIZE}
        locate: Callable[[dict], Any] = lambda data: (data.get("project") or {}).get("sweeps")  # noqa: E731
        for page in self._pages(document, variables, locate, f"sweeps of {entity}/{project}"):
            yield from page


def as_step(value: Any) -> int:
    """A `_step` as an int: W&B sometimes sends steps as floats (wandb-core's livedata.go converts them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")) or int(value) != value:
        raise ServerError(f"W&B sent a history step that is not a whole number: {value!r}")
    return int(value)


def user_agent() -> str:
    """The SDK's public client's User-Agent (the backend gates admin access on it), naming this package."""
    return f"W&B Public Client {_version('wandb', settings.MIRRORED_SDK_VERSION)} wandb-source/{_version('wandb-source', '0')}"


def _version(package: str, default: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return default

class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(response: requests.Response) -> float | None:
    """Seconds to wait: `Retry-After` (seconds or an HTTP date, as wandb-core reads it), else
    `RateLimit-Reset` (seconds)."""
    for header in ("Retry-After", "RateLimit-Reset"):
        value = response.headers.get(header)
        if value:
            seconds = parse_retry_after(value)
            if seconds is not None:
                return seconds
    return None


def parse_retry_after(value: str) -> float | None:
    """`120` or `Wed, 21 Oct 2026 07:28:00 GMT` → seconds from now (never negative); None if neither."""
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_graphql_body(response: requests.Response) -> bool:
    try:
        return isinstance(response.json(), dict) and "errors" in response.json()
    except ValueError:
        return False


AUTH_WORDS = ("not logged in", "permission", "unauthorized", "relogin", "api key")


def _raise_graphql_errors(errors: list, filtered: bool = False) -> None:
    """GraphQL `errors` on HTTP 200: permanent (wandb-core never retries on them alone), unless the
    server marks them transient with `extensions.code`."""
    messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
    codes = {str((e.get("extensions") or {}).get("code", "")).upper() for e in errors if isinstance(e, dict)}
    lowered = messages.lower()
    if codes & TRANSIENT_CODES:
        raise _Retryable(f"GraphQL errors marked transient: {messages}")
    if any(word in lowered for word in AUTH_WORDS):
        raise AuthenticationError(f"W&B refused the request: {messages}. Check the API key and what its user "
                                  "may see (`api_key` in .dlt/secrets.toml [sources.wandb], or WANDB_API_KEY).")
    if filtered and "filter" in lowered:
        raise FilterRejectedError(f"W&B rejected the run filter: {messages}. Fix `filters` in [sources.wandb] "
                                  "(W&B's Mongo-style syntax, e.g. {\"state\": \"finished\"}).")
    if "cannot query field" in lowered or "unknown argument" in lowered or "syntax error" in lowered:
        raise ServerError(f"this W&B server does not support a query wandb_source needs: {messages}")
    raise ServerError(f"W&B answered with an error: {messages}")


def _operation(document: str) -> str:
    words = document.split(None, 2)
    return words[1].split("(")[0] if len(words) > 1 else "query"


def check_transport(base_url: str, allow_insecure_http: bool) -> None:
    """Refuse to send the key in clear text to anything but loopback unless explicitly allowed."""
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigurationError(f"base_url {base_url!r} is not an http(s) URL; set `base_url` in [sources.wandb] "
                                 "or WANDB_BASE_URL to e.g. https://api.wandb.ai")
    if parsed.scheme == "http" and parsed.hostname not in LOOPBACK_HOSTS and not allow_insecure_http:
        raise ConfigurationError(
            f"refusing to send the W&B API key over plain http to {parsed.hostname}. Use https, or set "
            "`allow_insecure_http = true` in [sources.wandb] (SOURCES__WANDB__ALLOW_INSECURE_HTTP=true) "
            "if this network is trusted."
        )
