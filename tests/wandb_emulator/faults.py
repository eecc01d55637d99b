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


def retry_after_value(seconds: float, as_date: bool) -> str:
    """`Retry-After` as seconds, or as an HTTP date that far ahead (the form wandb-core also reads)."""
    if as_date:  # whole seconds, rounded up: never earlier than `seconds` from now
        return email.utils.formatdate(math.ceil(time.time() + seconds), usegmt=True)
    return str(seconds)


class RateLimiter:
    """A sliding window of `window` seconds (default 1): more than `limit` requests in it answer 429. A
    request counts from when it arrived (as a front-door limiter stamps it), not from when its handler got
    round to checking."""

    def __init__(self, limit: float, retry_after_date: bool = False, window: float = 1.0):
        self.limit, self.window = limit, window
        self.retry_after_date = retry_after_date
        self._times: list[float] = []
        self._lock = threading.Lock()
        self.send_headers = True  # False: a server (or proxy) that sends no RateLimit-* headers, only 429s

    def check(self, arrived: float | None = None) -> tuple[bool, dict[str, str]]:
        now = time.monotonic() if arrived is None else arrived
        with self._lock:
            # handlers may check out of arrival order: a request counts those that arrived before it
            self._times = [t for t in self._times if now - t < self.window]
            counted = sorted(t for t in self._times if t <= now)
            limit = max(1, int(self.limit))
            reset = self.window - (now - counted[0]) if counted else self.window
            headers = {"RateLimit-Limit": str(limit), "RateLimit-Reset": str(max(1, math.ceil(reset)))}
            if len(counted) >= limit:
                refused = {"Retry-After": retry_after_value(max(1, math.ceil(reset)), self.retry_after_date)}
                return False, {**headers, "RateLimit-Remaining": "0", **refused} if self.send_headers else refused
            self._times.append(now)
            headers["RateLimit-Remaining"] = str(limit - len(counted) - 1)
            return True, headers if self.send_headers else {}


class Faults:
    """The server's injection settings and its request log (thread-safe)."""

    def __init__(self, latency: float = 0.0, rate_limit: float | None = None, retry_after_date: bool = False,
                 rate_window: float = 1.0):
        self.latency = latency
        self.retry_after_date = retry_after_date
        self.rate_limiter = RateLimiter(rate_limit, retry_after_date, rate_window) if rate_limit else None
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
        """At most `limit` requests per sliding `window` seconds (None: no limit)."""
        self.rate_limiter = RateLimiter(limit, self.retry_after_date, window) if limit else None

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
               request: tuple | None = None, headers: dict | None = None) -> None:
        now = time.time()
        with self._lock:
            self.log.append(RequestRecord(operation, variables, status, arrived or now, now, request, headers or {}))

    def counts(self) -> Counter:
        with self._lock:
            return Counter(r.operation for r in self.log)

    def requests(self, operation: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.log if operation in (None, r.operation)]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()
