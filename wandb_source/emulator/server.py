"""The emulator's HTTP server: W&B's `/graphql`, file downloads, parquet exports and a control API.

    emu = Emulator(DatasetSpec(runs=5)).start()     # ephemeral port on 127.0.0.1
    emu.url, emu.api_key                             # point wandb.Api() or wandb_source here
    emu.store.append_steps(...); emu.faults.add(operation="HistoryPage", status=429, times=3)
    emu.stop()

Control endpoint (for the demo, benchmarks and other processes): `POST /_emulator/control/<action>`
with a JSON body; actions are listed in `CONTROL_ACTIONS`. `GET /_emulator/requests` returns the
request counts per operation.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from graphql import GraphQLError, execute, parse, validate
from graphql.language import OperationDefinitionNode

from .exports import parquet_bytes
from .faults import FaultRule, Faults
from .generator import DatasetSpec, generate
from .graphql_api import Context, run_file, schema_for
from .profile import ServerProfile, default_profile
from .store import NotFound, Store, new_run

DEFAULT_API_KEY = "local-" + "e" * 40
HTML_ERROR = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def _reject_constant(token: str) -> Any:
    raise ValueError(f"invalid JSON token {token}")



class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed, timed out) is normal here: no traceback on stderr."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

class Emulator:
    """A W&B-compatible server on 127.0.0.1 backed by a `Store`."""

    def __init__(self, spec: DatasetSpec | None = None, *, port: int = 0, latency: float = 0.0,
                 rate_limit: float | None = None, api_key: str = DEFAULT_API_KEY,
                 history_page_serves_exported: bool = False, store: Store | None = None,
                 profile: ServerProfile | None = None, rate_window: float = 1.0):
        self.api_key = api_key
        self.profile = profile or default_profile()
        self.store = store or Store({api_key: "emulator-user"},
                                    default_entity=(spec or DatasetSpec()).entity)
        self.store.updated_at_on_append = self.profile.updated_at_on_append
        if spec is not None:
            generate(self.store, spec)
        self.faults = Faults(latency, rate_limit, retry_after_date=self.profile.retry_after_date,
                             rate_window=rate_window, quota_units=self.profile.quota_units)
        self.history_page_serves_exported = history_page_serves_exported
        self.schema = schema_for(self.profile.missing_fields)
        self.history_windows: list[tuple[int, int]] = []  # (rows held, samples) per HistoryPage
        self._documents: dict[str, Any] = {}
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Emulator:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="wandb-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def warm(self) -> None:
        """Encode every run's live history and parquet exports now (benchmarks measure the loader)."""
        for projects in list(self.store.entities.values()):
            for project in list(projects.values()):
                for run in list(project.runs.values()):
                    run.history_keys()
                    run.history.lines(run.exported_rows, len(run.history))
                    for index in range(len(run.export_bounds)):
                        parquet_bytes(run, index)

    # -- graphql -----------------------------------------------------------------------------
    def document(self, query: str) -> tuple[Any, str, list]:
        """Parse and validate once per distinct query text; returns (document, op name, errors)."""
        cached = self._documents.get(query)
        if cached is None:
            try:
                doc = parse(query)
            except GraphQLError as e:
                return None, "", [e]
            errors = validate(self.schema, doc)
            ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
            name = ops[0].name.value if ops and ops[0].name else ""
            cached = (doc, name, errors)
            if len(self._documents) < 1000:
                self._documents[query] = cached
        return cached

    def username_for(self, authorization: str | None) -> tuple[bool, str | None]:
        """(valid, username): no header is anonymous; a header with an unknown key is invalid."""
        if not authorization:
            return True, None
        try:
            scheme, encoded = authorization.split(" ", 1)
            user, key = base64.b64decode(encoded).decode().split(":", 1)
        except (ValueError, UnicodeDecodeError):
            return False, None
        username = self.store.api_keys.get(key) if scheme.lower() == "basic" else None
        return username is not None, username


CONTROL_ACTIONS = {
    "append_steps": lambda emu, a: emu.store.append_steps(a["entity"], a["project"], a["run"], a["rows"]),
    "add_run": lambda emu, a: emu.store.add_run(new_run(**a)),
    "set_state": lambda emu, a: emu.store.set_state(a["entity"], a["project"], a["run"], a["state"]),
    "update_run": lambda emu, a: emu.store.update_run(a["entity"], a["project"], a["run"], **a["changes"]),
    "delete_run": lambda emu, a: emu.store.delete_run(a["entity"], a["project"], a["run"]),
    "rewind": lambda emu, a: emu.store.rewind(a["entity"], a["project"], a["run"], a["step"]),
    "export_history": lambda emu, a: emu.store.export_history(a["entity"], a["project"], a["run"],
                                                              a.get("upto_rows")),
    "add_fault": lambda emu, a: emu.faults.add(**a),
    "clear_faults": lambda emu, a: emu.faults.clear(),
    "set_latency": lambda emu, a: setattr(emu.faults, "latency", float(a["latency"])),
    "set_rate_limit": lambda emu, a: emu.faults.set_rate_limit(a.get("per_second"), a.get("window", 1.0)),
    "clear_requests": lambda emu, a: emu.faults.clear_log(),
    "warm": lambda emu, a: emu.warm(),
}


def _spans(log: list[Any], limiter: Any) -> dict[str, float]:
    """Seconds from the first request's arrival to the last's, and from the first 429 to the last; and the
    quota the allowed requests spent, counted in light requests (= requests unless `quota_units`)."""
    def span(times: list[float]) -> float:
        return max(times) - min(times) if times else 0.0

    light = limiter.spent / limiter.cost("") if limiter is not None else float(len(log))
    return {"all": span([r.at for r in log]), "refused": span([r.at for r in log if r.status == 429]),
            "light_requests": light}


def _handler_for(emu: Emulator) -> type:
    class Handler(_Handler):
        emulator = emu

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    emulator: Emulator

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    # -- plumbing ----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict | None = None, truncate: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if truncate else body)
        if truncate:
            self.close_connection = True

    def _json(self, status: int, payload: Any, headers: dict | None = None, truncate: bool = False) -> None:
        body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
        self._send(status, body, headers=headers, truncate=truncate)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _gate(self, operation: str, variables: dict) -> tuple[FaultRule | None, dict] | None:
        """Latency, rate limit and faults shared by every route; None when already answered."""
        emu = self.emulator
        if emu.faults.latency:
            time.sleep(emu.faults.latency)
        headers: dict = {}
        if emu.faults.rate_limiter is not None:
            allowed, headers = emu.faults.rate_limiter.check(self.arrived_clock, operation)
            if not allowed:
                emu.faults.record(operation, variables, 429, self.arrived)
                self._json(429, {"errors": [{"message": "rate limit exceeded"}]}, headers)
                return None
        rule = emu.faults.take(operation, variables)
        if rule is not None and self._inject(rule, operation, variables):
            return None
        return rule, headers

    def _inject(self, rule: FaultRule, operation: str, variables: dict) -> bool:
        """Apply a fault; True when the request has been answered (or dropped) by it."""
        emu = self.emulator
        emu.faults.record(operation, variables, -1 if rule.kind in ("drop", "hang") else rule.status,
                          self.arrived)
        if rule.kind == "slow":
            time.sleep(rule.delay)
            return False
        if rule.kind == "hang":
            emu._stopping.wait(rule.delay or 300.0)
        if rule.kind in ("hang", "drop"):
            self.close_connection = True
            return True
        if rule.kind == "status":
            headers = dict(rule.headers)
            if rule.retry_after is not None:
                headers["Retry-After"] = emu.faults.retry_after_value(rule.retry_after)
            self._json(rule.status, {"errors": [{"message": rule.message}]}, headers)
        elif rule.kind == "graphql_error":
            error = {"message": rule.message, "path": [operation], **({"extensions": rule.extensions}
                                                                       if rule.extensions else {})}
            self._json(200, {"data": None, "errors": [error]})
        elif rule.kind == "non_json":
            self._send(200, HTML_ERROR, "text/html")
        return rule.kind != "truncate"

    # -- routes ------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        self.arrived, self.arrived_clock = time.time(), time.monotonic()
        path = self.path.split("?", 1)[0]
        if path == "/graphql":
            self._graphql()
        elif path.startswith("/_emulator/control/"):
            self._control(path.rsplit("/", 1)[1])
        elif path.startswith("/sdk/otel"):
            self._send(200, b"{}")
        else:
            self._json(404, {"errors": [{"message": f"no route {path}"}]})

    def do_GET(self) -> None:  # noqa: N802
        self.arrived, self.arrived_clock = time.time(), time.monotonic()
        path = unquote(self.path.split("?", 1)[0])
        if path.startswith("/files/"):
            self._download("file", path[len("/files/"):])
        elif path.startswith("/_emulator/parquet/"):
            self._download("parquet", path[len("/_emulator/parquet/"):])
        elif path.startswith(("/_emulator/artifact-manifest/", "/_emulator/artifact-file/")):
            self._download("artifact", path[len("/_emulator/"):])
        elif path == "/_emulator/requests":
            self._json(200, dict(self.emulator.faults.counts()))
        elif path == "/_emulator/requests/status":
            self._json(200, {str(k): v for k, v in Counter(r.status for r in self.emulator.faults.requests()).items()})
        elif path == "/_emulator/requests/span":  # seconds from the first arrival to the last, and of the 429s
            self._json(200, _spans(self.emulator.faults.requests(), self.emulator.faults.rate_limiter))
        elif path == "/_emulator/requests/full":
            self._json(200, [{"operation": r.operation, "variables": r.variables, "status": r.status,
                              "method": r.request[0], "path": r.request[1],
                              "body": r.request[2].decode() if r.request[2] else None}
                             for r in self.emulator.faults.requests() if r.request])
        elif path in ("/", "/healthz"):
            self._json(200, {"ok": True})
        else:
            self._json(404, {"errors": [{"message": f"no route {path}"}]})

    def _graphql(self) -> None:
        emu = self.emulator
        self._raw_body = self._body()
        try:
            request = json.loads(self._raw_body, parse_constant=_reject_constant)
            query, variables = request["query"], request.get("variables") or {}
            op_name = request.get("operationName") or None  # "" means no name
        except (ValueError, KeyError, TypeError) as e:
            self._json(400, {"errors": [{"message": f"bad request: {e}"}]})
            return
        doc, doc_name, errors = emu.document(query)
        operation = op_name or doc_name or "anonymous"
        gate = self._gate(operation, variables)
        if gate is None:
            return
        rule, headers = gate
        if errors:
            emu.faults.record(operation, variables, 400, self.arrived)
            self._json(400, {"errors": [e.formatted for e in errors]}, headers)
            return
        valid, username = emu.username_for(self.headers.get("Authorization"))
        if not valid and not emu.profile.viewer_null_on_bad_key:
            emu.faults.record(operation, variables, 401, self.arrived)
            self._json(401, {"errors": [{"message": "user is not logged in"}]}, headers)
            return
        context = Context(emu.store, username, emu.url, emu.history_page_serves_exported, emu.profile,
                          emu.history_windows)
        result = execute(emu.schema, doc, variable_values=variables, operation_name=op_name, context_value=context)
        payload: dict = {"data": result.data}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        emu.faults.record(operation, variables, 200, self.arrived, ("POST", self.path, self._raw_body),
                          {k: self.headers.get(k) for k in ("User-Agent", "Use-Admin-Privileges")}, username)
        self._json(200, payload, headers, truncate=rule is not None and rule.kind == "truncate")

    def _download(self, kind: str, rest: str) -> None:
        emu = self.emulator
        parts = rest.split("/", 3)
        gate = self._gate(kind, {"path": rest})
        if gate is None:
            return
        rule, headers = gate
        try:
            with emu.store.lock:
                if kind == "artifact":
                    body = self._artifact(rest)
                elif kind == "file":
                    entity, project, run_id, name = parts
                    body = run_file(emu.store.run(entity, project, run_id), name, emu.profile)
                else:
                    entity, project, run_id, name = parts
                    body = self._parquet(entity, project, run_id, name)
        except (ValueError, NotFound, IndexError):
            emu.faults.record(kind, {"path": rest}, 404, self.arrived)
            self._send(404, b"not found", "text/plain", headers)
            return
        emu.faults.record(kind, {"path": rest}, 200, self.arrived, ("GET", self.path, None))
        self._send(200, body, "application/octet-stream", headers,
                   truncate=rule is not None and rule.kind == "truncate")

    def _artifact(self, rest: str) -> bytes:
        """`artifact-manifest/<id>`: the manifest file; `artifact-file/<id>/<path>`: an entry's bytes."""
        kind, artifact_id, *name = rest.split("/", 2)
        stored = self.emulator.store.artifacts.get(artifact_id)
        if stored is None:
            raise NotFound(artifact_id)
        if kind == "artifact-manifest":
            return json.dumps(stored.manifest).encode()
        if not name or name[0] not in stored.files:
            raise NotFound(rest)
        return bytes(stored.files[name[0]])

    def _parquet(self, entity: str, project: str, run_id: str, name: str) -> bytes:
        run = self.emulator.store.run(entity, project, run_id)
        generation, index = name.removesuffix(".parquet").split("-")
        if int(generation) != run.export_generation:
            raise NotFound(name)  # superseded by a rewind
        return parquet_bytes(run, int(index))

    def _control(self, action: str) -> None:
        handler = CONTROL_ACTIONS.get(action)
        if handler is None:
            self._json(404, {"error": f"unknown action {action!r}; one of {sorted(CONTROL_ACTIONS)}"})
            return
        try:
            handler(self.emulator, json.loads(self._body() or b"{}"))
        except (KeyError, ValueError, TypeError) as e:
            self._json(400, {"error": f"{type(e).__name__}: {e}"})
            return
        self._json(200, {"ok": True})
