"""The only module doing network I/O: W&B's GraphQL documents, paging, retries and rate limits.

W&B protocol facts used here (see docs/wandb-protocol in the project's shared notes):
- `POST {base_url}/graphql`, Basic auth `api:<key>`; strict JSON; an `errors` array fails the call.
- Runs listing via `project.runs(filters, after, first, order)`; relay cursors.
- Full-resolution history via `HistoryPage` (minStep inclusive, maxStep exclusive) and the parquet
  export path `parquetHistory(liveKeys)`; sampled endpoints are never used for loading.
- 429 carries `Retry-After`; `RateLimit-Remaining`/`RateLimit-Reset` announce the window.
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

from . import settings
from .exceptions import (AuthenticationError, ConfigurationError, FilterRejectedError, NotFoundError,
                         ServerError)
from dlt.common import logger

LISTING_FIELDS = "name displayName state updatedAt createdAt historyLineCount"
RUN_FIELDS = """id name displayName state config group jobType commit host createdAt heartbeatAt
  updatedAt description notes systemMetrics summaryMetrics historyLineCount eventsLineCount
  sweepName tags user { username } historyKeys"""

PROJECTS_QUERY = """query Projects($entity: String, $cursor: String, $perPage: Int) {
  models(entityName: $entity, after: $cursor, first: $perPage) {
    pageInfo { endCursor hasNextPage }
    edges { node { id name entityName createdAt description } } } }"""
RUNS_QUERY = """query Runs($entity: String!, $project: String!, $cursor: String, $perPage: Int,
    $filters: JSONString, $order: String) {
  project(name: $project, entityName: $entity) {
    runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
      pageInfo { endCursor hasNextPage }
      edges { node { %s } } } } }"""
ARTIFACT_FIELDS = """totalCount pageInfo { endCursor hasNextPage }
  edges { node { id artifactSequence { name } versionIndex artifactType { name } description metadata state
    size digest fileCount createdAt updatedAt aliases { alias } } }"""
RUN_ARTIFACTS_FIELDS = "name outputArtifacts(first: %d) { %s } inputArtifacts(first: %d) { %s }"
MORE_ARTIFACTS_QUERY = """query RunArtifacts($entity: String!, $project: String!, $run: String!, $cursor: String,
    $perPage: Int) {
  project(name: $project, entityName: $entity) { run(name: $run) { %s(after: $cursor, first: $perPage) { %s } } } }"""
PARQUET_QUERY = """query RunParquetHistory($entity: String!, $project: String!, $run: String!) {
  project(name: $project, entityName: $entity) {
    run(name: $run) { parquetHistory(liveKeys: ["_step"]) { parquetUrls liveData } } } }"""
HISTORY_QUERY = """query HistoryPage($entity: String!, $project: String!, $run: String!,
    $minStep: Int64!, $maxStep: Int64!, $pageSize: Int!) {
  project(name: $project, entityName: $entity) {
    run(name: $run) { history(minStep: $minStep, maxStep: $maxStep, samples: $pageSize) } } }"""
EVENTS_QUERY = """query RunEvents($entity: String!, $project: String!, $run: String!, $samples: Int) {
  project(name: $project, entityName: $entity) { run(name: $run) { events(samples: $samples) } } }"""
SWEEPS_QUERY = """query Sweeps($entity: String!, $project: String!, $cursor: String, $perPage: Int) {
  project(name: $project, entityName: $entity) {
    sweeps(after: $cursor, first: $perPage) {
      pageInfo { endCursor hasNextPage }
      edges { node { id name displayName method state description bestLoss config createdAt
        updatedAt runCount runCountExpected } } } } }"""

PERMANENT_STATUSES = {400, 401, 403, 404, 409, 410, 413, 422, 501}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
MAX_STEP = 2**62


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
                 allow_insecure_http: bool = False) -> None:
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
        self._session.headers.update({"Authorization": f"Basic {token}", "User-Agent": "wandb-source"})

    # -- transport -------------------------------------------------------------------------
    def query(self, document: str, variables: dict | None = None) -> dict:
        """Run a GraphQL document and return its `data`; retries what is worth retrying."""
        body = json.dumps({"query": document, "variables": variables or {}, "operationName": None},
                          allow_nan=False)
        return self._with_retries(lambda: self._post_graphql(body), _operation(document))

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

    def _post_graphql(self, body: str) -> dict:
        response = self._send("POST", f"{self.base_url}/graphql", data=body,
                              headers={"Content-Type": "application/json"})
        try:
            payload = json.loads(response.content)  # stdlib: 2x faster than requests' simplejson here
        except ValueError:
            raise _Retryable(f"HTTP {response.status_code} with a body that is not JSON") from None
        if not isinstance(payload, dict):
            raise _Retryable("a JSON body that is not an object")
        if payload.get("errors"):
            _raise_graphql_errors(payload["errors"])
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
                f"W&B at {self.base_url} rejected the API key (HTTP {response.status_code}). Set a valid key "
                "as `api_key` in .dlt/secrets.toml [sources.wandb], or WANDB_API_KEY, or run `wandb login`."
            )
        if response.status_code in PERMANENT_STATUSES and not _is_graphql_body(response):
            raise ServerError(f"W&B answered HTTP {response.status_code} for {url}: {response.text[:200]}")
        if response.status_code >= 500 or response.status_code in (408, 425):
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

    # -- W&B operations ------------------------------------------------------------------------
    def projects(self, entity: str) -> Iterator[dict]:
        variables = {"entity": entity, "perPage": 100}
        while True:
            conn = self.query(PROJECTS_QUERY, variables).get("models")
            if conn is None:
                raise NotFoundError(f"W&B has no entity {entity!r} visible to this API key; check `entity`.")
            yield from (edge["node"] for edge in conn["edges"])
            if not conn["pageInfo"]["hasNextPage"]:
                return
            variables["cursor"] = conn["pageInfo"]["endCursor"]

    def run_pages(self, entity: str, project: str, filters: dict | None = None, *, full: bool = False,
                  per_page: int | None = None, fields: str | None = None) -> Iterator[list[dict]]:
        """Pages of runs in creation order; `full` asks for config, summary and system metrics too,
        `fields` for other run fields."""
        document = RUNS_QUERY % (fields or (RUN_FIELDS if full else LISTING_FIELDS))
        variables: dict = {"entity": entity, "project": project, "perPage": per_page or settings.RUNS_PAGE_SIZE,
                           "order": "+created_at"}
        if filters:
            variables["filters"] = json.dumps(filters)
        while True:
            data = self.query(document, variables)
            if data.get("project") is None:
                raise NotFoundError(f"W&B has no project {entity}/{project} visible to this API key; "
                                    "check `entity` and `projects` in [sources.wandb].")
            conn = data["project"]["runs"]
            yield [edge["node"] for edge in conn["edges"]]
            if not conn["pageInfo"]["hasNextPage"]:
                return
            variables["cursor"] = conn["pageInfo"]["endCursor"]

    def runs_by_name(self, entity: str, project: str, names: list[str]) -> list[dict]:
        """The full run objects of `names` (one request per page of names)."""
        pages = self.run_pages(entity, project, {"name": {"$in": names}}, full=True, per_page=len(names))
        return [run for page in pages for run in page]

    def run_file_urls(self, entity: str, project: str, names: list[str], file_name: str) -> dict[str, str]:
        """{run: download URL} of the file `file_name` of each run in `names` that has it."""
        fields = 'name files(names: [%s]) { edges { node { name url directUrl } } }' % json.dumps(file_name)
        urls = {}
        for page in self.run_pages(entity, project, {"name": {"$in": names}}, per_page=len(names), fields=fields):
            for run in page:
                for edge in (run.get("files") or {}).get("edges") or []:
                    if edge["node"].get("name") == file_name and (edge["node"].get("directUrl") or edge["node"].get("url")):
                        urls[run["name"]] = edge["node"].get("directUrl") or edge["node"]["url"]
        return urls

    def run_artifacts(self, entity: str, project: str, names: list[str]) -> dict[str, dict[str, list[dict]]]:
        """{run: {"output": [artifact version...], "input": [...]}} for the runs in `names`."""
        size = settings.ARTIFACTS_PAGE_SIZE
        fields = RUN_ARTIFACTS_FIELDS % (size, ARTIFACT_FIELDS, size, ARTIFACT_FIELDS)
        out = {}
        for page in self.run_pages(entity, project, {"name": {"$in": names}}, per_page=len(names), fields=fields):
            for run in page:
                out[run["name"]] = {
                    direction: self._all_artifacts(entity, project, run["name"], field, run.get(field) or {})
                    for direction, field in (("output", "outputArtifacts"), ("input", "inputArtifacts"))}
        return out

    def _all_artifacts(self, entity: str, project: str, run: str, field: str, conn: dict) -> list[dict]:
        nodes = [edge["node"] for edge in conn.get("edges") or []]
        variables = {"entity": entity, "project": project, "run": run, "perPage": settings.ARTIFACTS_PAGE_SIZE}
        while (conn.get("pageInfo") or {}).get("hasNextPage"):
            variables["cursor"] = conn["pageInfo"]["endCursor"]
            node = (self.query(MORE_ARTIFACTS_QUERY % (field, ARTIFACT_FIELDS), variables).get("project") or {})
            conn = (node.get("run") or {}).get(field) or {}
            nodes += [edge["node"] for edge in conn.get("edges") or []]
        return nodes

    def parquet_history(self, entity: str, project: str, run: str) -> tuple[list[str], list[int]] | None:
        """(parquet URLs, live steps), or None when the run is gone."""
        data = self.query(PARQUET_QUERY, {"entity": entity, "project": project, "run": run})
        node = (data.get("project") or {}).get("run")
        if node is None:
            return None
        history = node.get("parquetHistory") or {}
        live = sorted(int(item["_step"]) for item in history.get("liveData") or [] if "_step" in item)
        return list(history.get("parquetUrls") or []), live

    def history_page(self, entity: str, project: str, run: str, min_step: int, page_size: int,
                     max_step: int | None = None) -> list[str] | None:
        """Logged rows with min_step <= _step < max_step (JSON lines), at most `page_size`."""
        variables = {"entity": entity, "project": project, "run": run, "minStep": min_step,
                     "maxStep": MAX_STEP if max_step is None else max_step, "pageSize": page_size}
        node = (self.query(HISTORY_QUERY, variables).get("project") or {}).get("run")
        return None if node is None else node.get("history") or []

    def events(self, entity: str, project: str, run: str) -> list[str] | None:
        variables = {"entity": entity, "project": project, "run": run, "samples": settings.EVENTS_SAMPLES}
        node = (self.query(EVENTS_QUERY, variables).get("project") or {}).get("run")
        return None if node is None else node.get("events") or []

    def sweeps(self, entity: str, project: str) -> Iterator[dict]:
        variables: dict = {"entity": entity, "project": project, "perPage": 100}
        while True:
            project_node = self.query(SWEEPS_QUERY, variables).get("project")
            if project_node is None:
                return
            conn = project_node["sweeps"]
            yield from (edge["node"] for edge in conn["edges"])
            if not conn["pageInfo"]["hasNextPage"]:
                return
            variables["cursor"] = conn["pageInfo"]["endCursor"]


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(response: requests.Response) -> float | None:
    for header in ("Retry-After", "RateLimit-Reset"):
        value = response.headers.get(header)
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                continue
    return None


def _is_graphql_body(response: requests.Response) -> bool:
    try:
        return isinstance(response.json(), dict) and "errors" in response.json()
    except ValueError:
        return False


def _raise_graphql_errors(errors: list) -> None:
    messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
    lowered = messages.lower()
    if "filter" in lowered or "order" in lowered:
        raise FilterRejectedError(f"W&B rejected the run filter: {messages}. Fix `filters` in [sources.wandb] "
                                  "(W&B's Mongo-style syntax, e.g. {\"state\": \"finished\"}).")
    if "not logged in" in lowered or "permission" in lowered or "unauthorized" in lowered:
        raise AuthenticationError(f"W&B refused the request: {messages}. Check the API key and its access.")
    if "cannot query field" in lowered or "unknown argument" in lowered or "syntax error" in lowered:
        raise ServerError(f"this W&B server does not support a query wandb_source needs: {messages}")
    raise _Retryable(f"GraphQL errors: {messages}")


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
