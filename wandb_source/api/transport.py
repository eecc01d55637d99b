"""How requests reach W&B: one session, the public client's headers, retries by HTTP status, rate limits.

- `POST {base_url}/graphql`, Basic auth `api:<key>`, the headers of the SDK's public client
  (`User-Agent: W&B Public Client <version>`, `Use-Admin-Privileges: true`), strict JSON.
- Retries go by HTTP status, as wandb-core's (every status but 400 401 403 404 409 410 413 422 501, and
  connection faults); `Retry-After` in seconds or as an HTTP date. GraphQL `errors` on HTTP 200 fail at
  once unless the server marks them transient (`extensions.code`).
- 429 and an exhausted `RateLimit-Remaining` close a gate every worker waits at; `requests_per_minute`
  spaces requests out before that (`Pacer`).
"""

from __future__ import annotations

import base64
import collections
import email.utils
import json
import math
import random
import statistics
import threading
import time
from importlib import metadata
from typing import Any
from urllib.parse import urlparse

import requests
from dlt.common import logger
from requests.adapters import HTTPAdapter

from .. import settings
from ..exceptions import AuthenticationError, ConfigurationError, FilterRejectedError, NotFoundError, ServerError

PERMANENT_STATUSES = {400, 401, 403, 404, 409, 410, 413, 422, 501}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
TRANSIENT_CODES = {"UNAVAILABLE", "TIMEOUT", "DEADLINE_EXCEEDED", "RATE_LIMITED", "TOO_MANY_REQUESTS",
                   "SERVICE_UNAVAILABLE", "TRANSIENT"}


class RateGate:
    """Shared by all threads: nobody sends while it is closed (after a 429, for its `Retry-After`), nor more
    than the server's last `RateLimit-Remaining` leaves of its window. The server counted its window when
    that request arrived; every request that may have arrived since is spent too: those sent after it, and
    those sent before it but answered (or still unanswered) after it was sent — they may have reached the
    server later. So a server that says how much is left is not made to refuse (a 429 then comes only when
    something else spends the same key).

    W&B's `RateLimit-Remaining` counts an opaque quota (documented as a 0-1000 scale, limited by database
    time), not requests: as wandb-core's `core/internal/api/ratelimittracker.go` does, the gate learns what a
    request costs from how far `Remaining` fell from one answer to the next — per operation (a history page
    costs the database more than a runs page), the median of what it saw (a request that overtakes another
    makes one sample too dear and the next too cheap), the dearest while it has seen few. An operation not
    priced yet is sent one request at a time and taken to cost as much as the dearest priced.

    When nothing is left, the next request waits for `RateLimit-Reset` — or less: with the server's
    `RateLimit-Limit` (else the most its window was seen to hold), the window has room once the newest
    requests that would fill it (counting those in flight) were answered longer than a window ago (a sliding
    window frees a request's cost as it leaves; `RateLimit-Reset` counts whole seconds). Then one request asks
    what is left, the others wait for its answer."""

    def __init__(self) -> None:
        self._open_at = 0.0
        self._left: float | None = None  # units the server's window still allows; None: it has not said
        self._samples: dict[str, collections.deque[float]] = {}  # per operation: what its requests cost
        self._costs: dict[str, float] = {}  # per operation: the median of its samples
        self._flat: collections.Counter[str] = collections.Counter()  # per operation: answers alone that fell 0
        self._window_ends = self._window = 0.0  # when the server said its window resets; the longest reset
        self._limit: float | None = None  # RateLimit-Limit, else the most the window was seen to hold
        self._most_held = 0.0  # the most Remaining said (less than the window holds by one request)
        self._sent = self._told_by = 0  # tickets: requests sent so far, the newest whose answer told _left
        self._told: float | None = None  # the last Remaining a cost can be learned from
        self._answers_since_told = 0  # answers (not 429s) since it
        self._flying: dict[int, tuple[float, str]] = {}  # tickets not answered yet: when sent, operation
        self._answered: collections.deque[tuple[int, float, str]] = collections.deque(maxlen=10_000)
        self._probe: int | None = None  # the ticket asking what is left after a spent window
        self._probe_refused = False  # the last probe was answered 429: the window frees slower than it said
        self._lock = threading.Lock()
        self._answer_came = threading.Condition(self._lock)

    def cost(self, operation: str) -> float:
        """Units of `RateLimit-Remaining` a request of `operation` is taken to cost (1 until answers tell)."""
        return self._costs.get(operation) or max(self._costs.values(), default=1.0)

    def enter(self, operation: str = "") -> int:
        """Wait until a request of `operation` may be sent, count it as sent; returns its ticket for `leave`.
        A waiting thread looks again whenever an answer comes back (it may tell what is left)."""
        with self._answer_came:
            while True:
                now, cost = time.monotonic(), self.cost(operation)
                delay = self._open_at - now
                if delay <= 0 and self._unlearned_in_flight(operation):
                    delay = 0.005  # one request of an operation not priced yet at a time, till it is
                elif delay <= 0 and self._left is not None and self._left < cost:
                    frees_at = self._frees_at(cost)
                    if self._probe is None and now >= frees_at:
                        self._left, self._probe = cost, self._sent + 1  # one asks what is left
                    else:
                        delay = max(frees_at - now, 0.005)
                if delay <= 0:
                    self._sent += 1
                    self._flying[self._sent] = (now, operation)
                    if self._left is not None:
                        self._left -= cost
                    return self._sent
                self._answer_came.wait(min(delay, 1.0))

    def _unlearned_in_flight(self, operation: str) -> bool:
        """Under a quota that said what is left, a request of an operation whose cost is not known yet is
        flying (a burst of them could cost far more than the gate counts) — unless a few of its answers, each
        alone since the last, found Remaining not fallen: a server whose Remaining does not fall must not hold
        every operation to one request at a time."""
        return (self._left is not None and operation not in self._costs and self._flat[operation] < 4
                and any(op == operation for _, op in self._flying.values()))

    def _frees_at(self, cost: float) -> float:
        """When the server's window has room for `cost` again (at the latest when it said it resets): once
        the newest answered requests that fill it beside those in flight have left it."""
        ends = self._window_ends + (self._window if self._probe_refused else 0.0)
        if self._limit is None:
            return ends
        room = self._limit - cost - sum(self.cost(op) for _, op in self._flying.values())
        for _, answered_at, operation in reversed(self._answered):
            room -= self.cost(operation)
            if room < 0:
                return min(ends, answered_at + self._window)
        return ends

    def leave(self, ticket: int, remaining: float | None = None, reset: float | None = None,
              limit: float | None = None, refused: bool = False) -> None:
        """Request `ticket` came back (or failed), with the server's `RateLimit-Remaining`, `-Reset` and
        `-Limit` if sent; `refused` for a 429 (which spent nothing: its `Remaining` says too little was left,
        not what it cost). Only an answer newer than the last that told updates the budget."""
        with self._lock:
            now = time.monotonic()
            sent_at, operation = self._flying.pop(ticket, (now, ""))
            probing = ticket == self._probe
            if probing:
                self._probe = None
            if not refused:
                self._answers_since_told += 1
            if remaining is not None and reset is not None and ticket > self._told_by:
                if probing:
                    self._probe_refused = refused
                if not refused:
                    self._learn_cost(operation, remaining, now)
                    self._most_held = max(self._most_held, remaining)
                self._told_by, self._window = ticket, max(self._window, reset)
                self._limit = limit if limit is not None else (self._most_held or None)
                self._left = remaining - self._spent_since(ticket, sent_at)
                self._window_ends = now + reset
            self._answered.append((ticket, now, operation))
            self._answer_came.notify_all()

    def _learn_cost(self, operation: str, remaining: float, now: float) -> None:
        """When this is the only answer since the last that told, within one window, `Remaining` fell by what
        this request cost (answers come back in about the order requests arrived)."""
        fell = self._told - remaining if self._told is not None else 0.0
        alone = self._told is not None and now < self._window_ends and self._answers_since_told == 1
        if alone and fell <= 0:  # a window that slid as it arrived, or a Remaining that never falls
            self._flat[operation] += 1
        elif alone:
            samples = self._samples.setdefault(operation, collections.deque(maxlen=15))
            samples.append(fell)  # a window that slid meanwhile makes it too cheap: the dearest of the first few
            self._costs[operation] = statistics.median(samples) if len(samples) >= 5 else max(samples)
        self._told, self._answers_since_told = remaining, 0

    def _spent_since(self, ticket: int, sent_at: float) -> float:
        """What the requests that may have reached the server after `ticket` cost: those sent after it, and
        those sent before it, unanswered or answered after it was sent."""
        spent = sum(self.cost(op) for _, op in self._flying.values())
        for _, answered_at, operation in reversed(self._answered):
            if answered_at <= sent_at:
                break
            spent += self.cost(operation)
        return spent

    def close_for(self, seconds: float) -> None:
        """A 429's `Retry-After`: nobody sends for `seconds`; then one request asks what is left (the budget
        counted before the refusal was wrong)."""
        with self._lock:
            self._open_at = max(self._open_at, time.monotonic() + seconds)
            if self._left is not None:
                self._left = min(self._left, 0.0)


class Pacer:
    """Spaces requests evenly to at most `requests_per_minute`, shared by every worker, so that a known
    per-key limit is kept before the server has to refuse (no cap when None).

    For a server that sends no `RateLimit-*` headers (the `RateGate` paces from them when it does). Spreading
    what is left of a window over its rest was tried and left out: right for fixed windows, it halves the
    throughput under a sliding one (demo data, 10 requests/s: 17.2 s against 12.9 s with this cap)."""

    def __init__(self, requests_per_minute: float | None = None) -> None:
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:  # held while sleeping: the next slot counts from when this request really left
            delay = self._next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next = time.monotonic() + self._interval


class Transport:
    """A thread-safe session to W&B: headers, GraphQL posts and downloads, bounded rate-limit-aware retries."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = settings.REQUEST_TIMEOUT_SECONDS,
                 max_retries: int = settings.MAX_RETRIES, backoff: float = settings.BACKOFF_SECONDS,
                 max_backoff: float = settings.MAX_BACKOFF_SECONDS, pool_size: int = settings.MAX_WORKERS,
                 allow_insecure_http: bool = False, use_admin_privileges: bool = True,
                 requests_per_minute: float | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        check_transport(self.base_url, allow_insecure_http)
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.gate = RateGate()
        self.pacer = Pacer(requests_per_minute)
        self.requests_made = 0
        self._in_flight = threading.BoundedSemaphore(max(1, pool_size))  # every worker of every table together
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(pool_maxsize=pool_size + 4))
        self._session.mount("https://", HTTPAdapter(pool_maxsize=pool_size + 4))
        token = base64.b64encode(f"api:{api_key}".encode()).decode()
        self._session.headers.update({"Authorization": f"Basic {token}", "User-Agent": user_agent()})
        if use_admin_privileges:  # as the SDK's public API sends it (apis/public/api.py)
            self._session.headers["Use-Admin-Privileges"] = "true"

    # -- transport -------------------------------------------------------------------------
    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a GraphQL document and return its `data`; retries what is worth retrying."""
        variables = variables or {}
        body = json.dumps({"query": document, "variables": variables, "operationName": None}, allow_nan=False)
        filtered = variables.get("filters") is not None
        operation = _operation(document)
        return self._with_retries(lambda: self._post_graphql(body, operation, filtered), operation)

    def download(self, url: str) -> bytes:
        """GET a file (parquet export, run file); the key is sent only to the W&B host itself."""
        return self._with_retries(lambda: self._get(url), "download")

    def _with_retries(self, call: Any, operation: str) -> Any:
        attempt = 0
        while True:
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
                    self.gate.close_for(wait)  # every worker waits, not only this one (gate.enter)
                else:
                    wait = self._backoff(attempt)
                logger.warning("W&B %s failed (%s); retry %d/%d in %.1fs", operation, e, attempt,
                               self.max_retries, wait)
                if e.retry_after is None:
                    time.sleep(wait)

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)

    def _post_graphql(self, body: str, operation: str, filtered: bool = False) -> dict[str, Any]:
        response = self._send("POST", f"{self.base_url}/graphql", operation, data=body,
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
        response = self._send("GET", url, "download", headers=headers)
        if response.status_code >= 400:  # a JSON error body is not the file
            raise ServerError(f"W&B answered HTTP {response.status_code} for {url}: {response.text[:200]}")
        return response.content

    def _send(self, method: str, url: str, operation: str, **kwargs: Any) -> requests.Response:
        self.requests_made += 1
        try:
            with self._in_flight:  # then the gate: a request waiting for a slot still waits out a 429
                ticket, response = self.gate.enter(operation), None
                try:
                    self.pacer.wait()
                    response = self._session.request(method, url, timeout=self.timeout, **kwargs)
                    _ = response.content  # read the whole body now: a truncated one raises here
                finally:
                    self.gate.leave(ticket, *_rate_headers(response),
                                    refused=response is not None and response.status_code == 429)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
            raise _Retryable(type(e).__name__) from None
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
            if response.status_code == 404 and method == "GET":  # a file deleted since it was listed (or its run)
                raise NotFoundError(f"W&B no longer has {url} (HTTP 404)")
            raise ServerError(f"W&B answered HTTP {response.status_code} for {url}: {response.text[:200]}")
        if response.status_code >= 400:  # wandb-core retries every other failure status
            raise _Retryable(f"HTTP {response.status_code}", _retry_after(response))
        return response


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


def _rate_headers(response: requests.Response | None) -> tuple[float | None, float | None, float | None]:
    """(wandb-core reads the same two headers the same way: core/internal/api/ratelimitheaders.go, non-negative
    floats, and core/internal/api/ratelimittracker.go, which treats Remaining as an opaque quota unit.)
    `RateLimit-Remaining`, `RateLimit-Reset` (seconds, at most `MAX_RATE_RESET_SECONDS`) and
    `RateLimit-Limit`: the first two when the server sent both as finite numbers, the limit when it sent a
    positive one too. Anything else is ignored (the load is then paced by 429s alone)."""
    if response is None:
        return None, None, None
    remaining, reset = _header_number(response, "RateLimit-Remaining"), _header_number(response, "RateLimit-Reset")
    if remaining is None or reset is None or reset < 0:
        return None, None, None
    limit = _header_number(response, "RateLimit-Limit")
    return remaining, min(reset, settings.MAX_RATE_RESET_SECONDS), limit if limit and limit > 0 else None


def _header_number(response: requests.Response, name: str) -> float | None:
    try:
        value = float(response.headers[name])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _is_graphql_body(response: requests.Response) -> bool:
    try:
        return isinstance(response.json(), dict) and "errors" in response.json()
    except ValueError:
        return False


AUTH_WORDS = ("not logged in", "permission", "unauthorized", "relogin", "api key")


def _raise_graphql_errors(errors: list[Any], filtered: bool = False) -> None:
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

