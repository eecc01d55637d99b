"""Pure pieces: key and URL resolution, value kinds, column naming, timestamps, transport checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random

import pytest

from wandb_source import AuthenticationError, ConfigurationError
from wandb_source.api.credentials import default_base_url, resolve_api_key
from wandb_source.api.transport import check_transport
from wandb_source.convert.columns import ColumnMap, column_name
from wandb_source.convert.metrics import metric_tables
from wandb_source.convert.runs import key_value_table, unwrap_config
from wandb_source.convert.values import parse_time, value_kind


def test_api_key_precedence_explicit_env_netrc(monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine wandb.example.org\n  login user\n  password netrc-key\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    url = "https://wandb.example.org"
    assert resolve_api_key(None, url) == "netrc-key"
    monkeypatch.setenv("WANDB_API_KEY", "env-key")
    assert resolve_api_key(None, url) == "env-key"
    assert resolve_api_key("explicit-key", url) == "explicit-key"
    monkeypatch.delenv("WANDB_API_KEY")
    with pytest.raises(AuthenticationError, match="secrets.toml"):
        resolve_api_key(None, "https://other.example.org")


def test_base_url_from_env_else_the_sdk_default(monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9/")
    assert default_base_url() == "http://127.0.0.1:9"
    monkeypatch.delenv("WANDB_BASE_URL")
    from wandb.sdk.wandb_settings import Settings

    assert default_base_url() == Settings().base_url.rstrip("/")


@pytest.mark.parametrize("url, allowed", [
    ("http://127.0.0.1:8080", True), ("http://localhost", True), ("https://api.wandb.ai", True),
    ("http://wandb.internal.example.com", False), ("ftp://x", False), ("not a url", False),
])
def test_key_is_never_sent_in_clear_to_a_remote_host(url, allowed):
    if allowed:
        check_transport(url, allow_insecure_http=False)
    else:
        with pytest.raises(ConfigurationError):
            check_transport(url, allow_insecure_http=False)
    if url.startswith("http://"):
        check_transport(url, allow_insecure_http=True)


@pytest.mark.parametrize("value, kind", [
    (1, "number"), (0.5, "number"), (math.nan, "number"), (True, "bool"), ("x", "text"), ({"a": 1}, "json"),
    ([1], "json"), (2**53, "number"), (2**53 + 1, "int"), (2**63, "number"), (None, None),
])
def test_value_kinds(value, kind):
    assert value_kind(value) == kind


def test_timestamps_with_and_without_zone_and_epoch():
    utc = dt.timezone.utc
    assert parse_time("2026-01-05T10:00:00") == dt.datetime(2026, 1, 5, 10, tzinfo=utc)
    assert parse_time("2026-01-05T12:00:00+02:00") == dt.datetime(2026, 1, 5, 10, tzinfo=utc)
    assert parse_time("2026-01-05T10:00:00Z") == dt.datetime(2026, 1, 5, 10, tzinfo=utc)
    assert parse_time(1767607200.5) == dt.datetime(2026, 1, 5, 10, 0, 0, 500000, tzinfo=utc)
    assert parse_time(None) is None and parse_time(math.inf) is None


OWN = ("entity", "project", "run_id", "_step")


@pytest.mark.parametrize("key, kind, table, name", [
    ("loss", "number", "history", "loss"),
    ("train/loss", "number", "history", "train__loss"),
    ("train_loss", "number", "history", "train_loss"),
    ("eval/top_1", "number", "history", "eval__top_1"),
    ("status", "text", "history", "status___text"),
    ("Val Acc", "number", "history", "val_acc___h" + hashlib.sha256(b"Val Acc").hexdigest()[:8]),
    ("run_id", "number", "history", "run_id___h" + hashlib.sha256(b"run_id").hexdigest()[:8]),
    ("system.cpu", "number", "system_metrics", "system__cpu"),
    ("system.gpu.0.temp", "number", "system_metrics", "system__gpu___0__temp"),
    ("train.loss", "number", "history", "train_loss___h" + hashlib.sha256(b"train.loss").hexdigest()[:8]),
])
def test_column_names_follow_the_documented_rule(key, kind, table, name):
    assert column_name(key, kind, table, OWN) == name


CONFUSABLE = ["val/acc", "val_acc", "val.acc", "Val/Acc", "val acc", "val/acc/", "val__acc", "val/_acc", "run_id",
              "_dlt_id", "val/acc___text", "x/0abc", "x/h0abc", "val", "VAL", "val-acc", "vaL"]


def test_column_names_do_not_depend_on_what_else_a_shard_saw_or_in_which_order():
    keys = [(k, kind) for k in CONFUSABLE for kind in ("number", "text", "json")]
    names = []
    for order in (keys, keys[::-1], random.Random(7).sample(keys, len(keys)), keys[::3]):
        columns = ColumnMap({}, OWN, budget=1000)
        names.append({kk: columns.column(*kk) for kk in order})
        assert len(set(names[-1].values())) == len(order), "two keys share a column"
        assert not set(names[-1].values()) & (set(OWN) | {"_dlt_id"})
    assert all(n[kk] == names[0][kk] for n in names[1:] for kk in n)


def test_column_map_keeps_the_names_state_holds():
    state = {"val/acc": {"number": "val_acc"}, "val_acc": {"number": "val_acc__number"}}  # named before the rule
    columns = ColumnMap(state, OWN, budget=100)
    assert columns.column("val/acc", "number") == "val_acc" and columns.column("val_acc", "number") == "val_acc__number"
    assert columns.column("val/loss", "number") == "val__loss"
    legacy = ColumnMap({"a/b": {"number": "b"}}, OWN, budget=100)  # `b` taken: the new key falls back to its hash
    assert legacy.column("b", "number") == "b___h" + hashlib.sha256(b"b").hexdigest()[:8]


def test_column_budget_sends_the_rest_to_the_long_table():
    columns = ColumnMap({}, ("entity", "project", "run_id", "_step"), budget=6)
    rows = [{"_step": 0, "_timestamp": 1.0, "a": 1.0, "b": 2.0, "c": "x"}]
    wide, long = metric_tables(rows, ("e", "p", "r"), columns, "_step")
    assert [c for c in wide.column_names if c in "abc"] == ["a", "b"]
    assert long.to_pylist()[0]["key"] == "c" and long.to_pylist()[0]["value_text"] == "x"


def test_config_unwrapping_and_key_value_rows_keep_types():
    config = unwrap_config({"lr": {"value": 0.001, "desc": None}, "_wandb": {"value": {"m": []}},
                            "plain": 3, "nested": {"value": {"a": [1, 2]}}})
    assert config == {"lr": 0.001, "_wandb": {"m": []}, "plain": 3, "nested": {"a": [1, 2]}}
    table = key_value_table([("e", "p", "r")], [config], skip=("_wandb",)).to_pylist()
    by_key = {r["key"]: r for r in table}
    assert set(by_key) == {"lr", "plain", "nested"}
    assert by_key["lr"]["value_number"] == 0.001 and by_key["nested"]["value_json"] == '{"a":[1,2]}'


def test_timestamps_of_every_shape_in_one_page():
    rows = [{"_step": 0, "_timestamp": 1767607200.5}, {"_step": 1, "_timestamp": "2026-01-05T10:00:01"},
            {"_step": 2, "_timestamp": "2026-01-05T12:00:02+02:00"}, {"_step": 3, "_timestamp": "garbage"},
            {"_step": 4}]
    wide, _ = metric_tables(rows, ("e", "p", "r"), ColumnMap({}, (), 10), "_step")
    got = [t.timestamp() if t else None for t in wide.column("_timestamp").to_pylist()]
    assert got == [1767607200.5, 1767607201.0, 1767607202.0, None, None]


def test_the_public_api_is_a_sorted_all_and_nothing_else():
    import wandb_source

    assert wandb_source.__all__ == sorted(wandb_source.__all__)
    public = {name for name in vars(wandb_source) if not name.startswith("_")}
    subpackages = {"api", "cli", "convert", "emulator", "exceptions", "integrations", "load", "logs", "readback",
                   "settings", "source", "state", "tables"}
    assert public - subpackages == set(wandb_source.__all__)


def test_tests_cannot_connect_beyond_loopback():
    """conftest.py's guard: a test that tried to reach W&B's real hosts fails instead of leaving the machine."""
    import socket

    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="never leave 127.0.0.1"):
        sock.connect(("203.0.113.7", 443))  # TEST-NET-3: refused before any packet is sent


@pytest.mark.parametrize("headers, expected", [
    ({"RateLimit-Remaining": "3", "RateLimit-Reset": "1", "RateLimit-Limit": "10"}, (3.0, 1.0, 10.0)),
    ({"RateLimit-Remaining": "3", "RateLimit-Reset": "1"}, (3.0, 1.0, None)),
    ({"RateLimit-Remaining": "3", "RateLimit-Reset": "inf", "RateLimit-Limit": "10"}, (None, None, None)),
    ({"RateLimit-Remaining": "nan", "RateLimit-Reset": "1"}, (None, None, None)),
    ({"RateLimit-Remaining": "0", "RateLimit-Reset": "-5"}, (None, None, None)),
    ({"RateLimit-Remaining": "0", "RateLimit-Reset": "999999", "RateLimit-Limit": "0"}, (0.0, 3600.0, None)),
    ({"RateLimit-Remaining": "soon", "RateLimit-Reset": "1"}, (None, None, None)),
])
def test_ratelimit_headers_a_server_sends_wrong_are_ignored_or_bounded(headers, expected):
    """A server's RateLimit-* headers pace the load; nonsense in them must never stall it (an infinite or
    negative reset, NaN) or make it wait longer than an hour."""
    import requests

    from wandb_source.api.transport import _rate_headers

    response = requests.Response()
    response.headers.update(headers)
    assert _rate_headers(response) == expected


def test_the_rate_gate_learns_what_a_request_costs_in_the_servers_opaque_quota():
    """W&B's `RateLimit-Remaining` is a quota on a 0-1000 scale, not a count of requests: answers teach the
    gate what a request of each operation costs; a refusal (whose Remaining is 0 whatever the request would
    have cost) teaches nothing; once what is left is less than a request costs, that request waits for the
    window while a cheaper one may go."""
    import threading

    from wandb_source.api.transport import RateGate

    gate = RateGate()
    gate.leave(gate.enter("Runs"), remaining=900, reset=1)
    gate.leave(gate.enter("HistoryPage"), remaining=600, reset=1)
    gate.leave(gate.enter("Runs"), remaining=500, reset=1)
    assert (gate.cost("HistoryPage"), gate.cost("Runs"), gate.cost("RunEvents")) == (300, 100, 300)
    gate.leave(gate.enter("HistoryPage"), remaining=200, reset=1)
    gate.enter("Runs")  # 200 left: a runs page fits
    entered = threading.Event()
    threading.Thread(target=lambda: (gate.enter("HistoryPage"), entered.set()), daemon=True).start()
    assert not entered.wait(0.5)  # 100 left: a history page waits for the window, not sent into a 429
    assert entered.wait(1.5)  # then it asks what is left
    gate.leave(gate._sent, remaining=0, reset=1, refused=True)
    assert gate.cost("HistoryPage") == 300  # not 100 (what Remaining fell by)


def test_a_remaining_that_never_falls_does_not_hold_requests_to_one_at_a_time():
    """A proxy that sends a fixed `RateLimit-Remaining` teaches no cost: after a few answers an operation
    goes side by side again."""
    import threading

    from wandb_source.api.transport import RateGate

    gate = RateGate()
    for _ in range(5):
        gate.leave(gate.enter("HistoryPage"), remaining=1000, reset=60)
    gate.enter("HistoryPage")
    entered = threading.Event()
    threading.Thread(target=lambda: (gate.enter("HistoryPage"), entered.set()), daemon=True).start()
    assert entered.wait(1.0)
