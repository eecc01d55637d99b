"""Fault and load injection: per-operation fault rules, a global latency, a rate limit, a request log.

A `FaultRule` matches requests by operation (GraphQL operation name such as `HistoryPage`, or
`file` / `parquet` for downloads, or `*`) and optionally by GraphQL variables, and fires `times` times:

    kind="status"         HTTP `status` (429, 500, 502, 503, 401...) with optional `retry_after`
                          and RateLimit-* `headers`
    kind="graphql_error"  HTTP 200 with an `errors` array (and `data: null`); `extensions` are the
                          error's (e.g. {"code": "UNAVAILABLE"} for a server marking it transient)
    kind="slow"           answer correctly after `delay` seconds
    kind="hang"           never answer within `delay` seconds (default 300), then close the connection
    kind="drop"           close the connection without answering
    kind="truncate"       send half of the correct body, then close
    kind="non_json"       HTTP 200 with an HTML body
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("status", "graphql_error", "slow", "hang", "drop", "truncate", "non_json")


@dataclass
class FaultRule:
    operation: str = "*"
    kind: str = "status"
    status: int = 500
    times: int = 1
    retry_after: float | None = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    message: str = "injected fault"
    match: dict = field(default_factory=dict)  # GraphQL variables that must be equal
    extensions: dict = field(default_factory=dict)  # graphql_error: the error's `extensions`
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {FAULT_KINDS}")

    def applies(self, operation: str, variables: dict) -> bool:
        if self.fired >= self.times:
            return False
        if self.operation not in ("*", operation):
            return False
        return all(variables.get(k) == v for k, v in self.match.items())


@dataclass
class RequestRecord:
    operation: str
    variables: dict
    status: int
    at: float  # arrival (epoch seconds)
    done: float  # answer sent
    request: tuple | None = None  # (method, path, body) for replaying the exact traffic
    headers: dict = field(default_factory=dict)  # the request's User-Agent and Use-Admin-Privileges
    user: str | None = None  # whose API key asked


def retry_after_value(seconds: float, as_date: bool) -> str:
    """`Retry-After` as seconds, or as an HTTP date that far ahead (the form wandb-core also reads)."""
    if as_date:  # whole seconds, rounded up: never earlier than `seconds` from now
        return email.utils.formatdate(math.ceil(time.time() + seconds), usegmt=True)
    return str(seconds)


# Reads that make W&B's database work hardest: a history or events page, a run file, a parquet export.
HEAVY_OPERATIONS = frozenset({"HistoryPage", "HistoryBatch", "RunEvents", "EventsBatch", "file", "parquet"})
QUOTA_SCALE = 1000.0  # W&B's docs: RateLimit-Remaining is "quota remaining (0-1000 scale)"
HEAVY_COST = 3.0  # a heavy read costs this many light ones, under `quota_units`


class RateLimiter:
    """A sliding window of `window` seconds (default 1) that allows `limit` light requests. A request counts
    from when it arrived (as a front-door limiter stamps it), not from when its handler got round to checking.

    With `quota_units` (the pessimistic profile) the window is a quota of `QUOTA_SCALE` opaque units, as W&B
    documents it (limited by database time; wandb-core's ratelimittracker.go converts the unit to requests
    by estimate): a light request costs `QUOTA_SCALE / limit`, a heavy one `HEAVY_COST` times that,
    `RateLimit-Remaining` is on the 0-1000 scale and no `RateLimit-Limit` is sent. Without it every request
    costs 1 and `RateLimit-Limit` is `limit`."""

    def __init__(self, limit: float, retry_after_date: bool = False, window: float = 1.0,
                 quota_units: bool = False):
        self.limit, self.window, self.quota_units = limit, window, quota_units
        self.retry_after_date = retry_after_date
        self.capacity = QUOTA_SCALE if quota_units else float(max(1, int(limit)))
        self._arrivals: list[tuple[float, float]] = []  # (arrived, cost)
        self._lock = threading.Lock()
        self.send_headers = True  # False: a server (or proxy) that sends no RateLimit-* headers, only 429s
        self.spent = 0.0  # units of every allowed request so far

    def cost(self, operation: str) -> float:
        if not self.quota_units:
            return 1.0
        return QUOTA_SCALE / self.limit * (HEAVY_COST if operation in HEAVY_OPERATIONS else 1.0)

    def check(self, arrived: float | None = None, operation: str = "") -> tuple[bool, dict[str, str]]:
        now = time.monotonic() if arrived is None else arrived
        cost = self.cost(operation)
        with self._lock:
            # handlers may check out of arrival order: a request counts those that arrived before it
            self._arrivals = [(t, c) for t, c in self._arrivals if now - t < self.window]
            counted = sorted((t, c) for t, c in self._arrivals if t <= now)
            used = sum(c for _, c in counted)
            reset = self.window - (now - counted[0][0]) if counted else self.window
            headers = {"RateLimit-Reset": str(max(1, math.ceil(reset)))}
            if not self.quota_units:
                headers["RateLimit-Limit"] = str(int(self.capacity))
            if used + cost > self.capacity + 1e-9:
                refused = {"Retry-After": retry_after_value(max(1, math.ceil(reset)), self.retry_after_date)}
                return False, {**headers, "RateLimit-Remaining": "0", **refused} if self.send_headers else refused
            self._arrivals.append((now, cost))
            self.spent += cost
            headers["RateLimit-Remaining"] = str(max(0, math.floor(self.capacity - used - cost + 1e-9)))
            return True, headers if self.send_headers else {}


class Faults:
    """The server's injection settings and its request log (thread-safe)."""

    def __init__(self, latency: float = 0.0, rate_limit: float | None = None, retry_after_date: bool = False,
                 rate_window: float = 1.0, quota_units: bool = False):
        self.latency = latency
        self.retry_after_date, self.quota_units = retry_after_date, quota_units
        self.rate_limiter = RateLimiter(rate_limit, retry_after_date, rate_window, quota_units) if rate_limit else None
        self.rules: list[FaultRule] = []
        self.log: list[RequestRecord] = []
        self._lock = threading.Lock()

    def add(self, **rule: Any) -> FaultRule:
        fault = FaultRule(**rule)
        with self._lock:
            self.rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def set_rate_limit(self, limit: float | None, window: float = 1.0) -> None:
        """At most `limit` light requests per sliding `window` seconds (None: no limit)."""
        self.rate_limiter = RateLimiter(limit, self.retry_after_date, window, self.quota_units) if limit else None

    def retry_after_value(self, seconds: float) -> str:
        return retry_after_value(seconds, self.retry_after_date)

    def take(self, operation: str, variables: dict) -> FaultRule | None:
        with self._lock:
            for rule in self.rules:
                if rule.applies(operation, variables):
                    rule.fired += 1
                    return rule
        return None

    def record(self, operation: str, variables: dict, status: int, arrived: float | None = None,
               request: tuple | None = None, headers: dict | None = None, user: str | None = None) -> None:
        now = time.time()
        with self._lock:
            self.log.append(RequestRecord(operation, variables, status, arrived or now, now, request, headers or {},
                                          user))

    def counts(self) -> Counter:
        with self._lock:
            return Counter(r.operation for r in self.log)

    def requests(self, operation: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.log if operation in (None, r.operation)]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()
