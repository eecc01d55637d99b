"""The emulator's wire protocol, mutations and fault injection, checked over raw HTTP."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import requests

from wandb_source.api.transport import parse_retry_after
from wandb_source.emulator import DatasetSpec
from wandb_source.emulator.profile import CONVENIENT, PESSIMISTIC

ENTITY, PROJECT = "emulator", "demo"
RUN_QUERY = """query Run($entity: String!, $project: String!, $name: String!) {
  project(name: $project, entityName: $entity) { run(name: $name) {
    name state updatedAt historyLineCount historyKeys
    parquetHistory(liveKeys: ["_step"]) { parquetUrls liveData } } } }"""
PAGE_QUERY = """query HistoryPage($entity: String!, $project: String!, $run: String!, $minStep: Int64!,
  $maxStep: Int64!, $pageSize: Int!) { project(name: $project, entityName: $entity) {
  run(name: $run) { history(minStep: $minStep, maxStep: $maxStep, samples: $pageSize) } } }"""
RUNS_QUERY = """query Runs($entity: String!, $project: String!, $cursor: String, $perPage: Int, $filters: JSONString,
  $order: String) { project(name: $project, entityName: $entity) { runCount(filters: $filters)
  runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
    edges { node { name updatedAt } cursor } pageInfo { endCursor hasNextPage } } } }"""


def post(emu, query, variables=None, key=None, operation_name="", raw=None):
    headers = {"Content-Type": "application/json"}
    if key is not False:
        token = base64.b64encode(f"api:{key or emu.api_key}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    body = raw if raw is not None else json.dumps(
        {"query": query, "variables": variables or {}, "operationName": operation_name})
    return requests.post(f"{emu.url}/graphql", data=body, headers=headers, timeout=10)


def run_info(emu, run_id):
    resp = post(emu, RUN_QUERY, {"entity": ENTITY, "project": PROJECT, "name": run_id})
    resp.raise_for_status()
    return resp.json()["data"]["project"]["run"]


def first_run(emu, state="finished"):
    return next(r for r in emu.store.project(ENTITY, PROJECT).runs.values() if r.state == state and len(r.history))


def test_responses_are_strict_json_and_history_lines_keep_nan(emulator):
    run = first_run(emulator)
    resp = post(emulator, PAGE_QUERY, {"entity": ENTITY, "project": PROJECT, "run": run.name,
                                       "minStep": 0, "maxStep": 10_000, "pageSize": 10_000})
    json.loads(resp.text, parse_constant=lambda t: pytest.fail(f"bare {t} in a response"))
    lines = resp.json()["data"]["project"]["run"]["history"]
    assert any("NaN" in line for line in lines) and any("Infinity" in line for line in lines)


def test_requests_with_nan_tokens_are_rejected(emulator):
    raw = '{"query": "query { viewer { id } }", "variables": {"x": NaN}}'
    assert post(emulator, None, raw=raw).status_code == 400


def test_operation_name_empty_string_means_no_name_and_named_operations_are_logged(emulator):
    assert post(emulator, "query Viewer { viewer { username } }").json()["data"]["viewer"]["username"]
    resp = post(emulator, "query A { viewer { id } } query B { serverInfo { features { name } } }",
                operation_name="B")
    assert resp.json()["data"] == {"serverInfo": {"features": []}}
    assert emulator.faults.counts() == {"Viewer": 1, "B": 1}


def test_unknown_fields_fail_validation_like_the_real_schema(emulator):
    resp = post(emulator, "query { viewer { noSuchField } }")
    assert resp.status_code == 400 and "noSuchField" in resp.text


@pytest.mark.parametrize("profile", [CONVENIENT, PESSIMISTIC], ids=lambda p: p.name)
def test_auth_wrong_key_and_missing_key(make_emulator, profile):
    """A wrong key: HTTP 401 (convenient), or HTTP 200 with `viewer: null` and nothing visible (pessimistic)."""
    emulator = make_emulator(profile=profile)
    wrong = post(emulator, "query { viewer { id } }", key="local-" + "z" * 40)
    if profile.viewer_null_on_bad_key:
        assert wrong.status_code == 200 and wrong.json()["data"]["viewer"] is None
        found = post(emulator, RUNS_QUERY, {"entity": ENTITY, "project": PROJECT}, key="local-" + "z" * 40)
        assert found.status_code == 200 and found.json()["data"]["project"] is None
    else:
        assert wrong.status_code == 401
    anonymous = post(emulator, "query { viewer { id } }", key=False)
    assert anonymous.status_code == 200 and anonymous.json()["data"]["viewer"] is None


def test_pagination_run_count_and_cursors(make_emulator):
    emulator = make_emulator(profile=CONVENIENT)
    variables = {"entity": ENTITY, "project": PROJECT, "perPage": 5, "filters": json.dumps({"state": "finished"})}
    seen, pages = [], 0
    while True:
        data = post(emulator, RUNS_QUERY, variables).json()["data"]["project"]
        conn = data["runs"]
        seen += [e["node"]["name"] for e in conn["edges"]]
        pages += 1
        assert conn["pageInfo"]["endCursor"] == (conn["edges"][-1]["cursor"] if conn["edges"] else None)
        if not conn["pageInfo"]["hasNextPage"]:
            break
        variables["cursor"] = conn["pageInfo"]["endCursor"]
    finished = [r.name for r in emulator.store.project(ENTITY, PROJECT).runs.values() if r.state == "finished"]
    assert data["runCount"] == len(finished) == len(seen) and sorted(seen) == sorted(finished)


def test_pessimistic_pages_empty_pages_with_more_to_come_and_first_clamped(make_emulator):
    emulator = make_emulator(DatasetSpec(runs=230, steps=2, awkward=False), profile=PESSIMISTIC)
    variables = {"entity": ENTITY, "project": PROJECT, "perPage": 500}
    sizes = []
    while True:
        conn = post(emulator, RUNS_QUERY, variables).json()["data"]["project"]["runs"]
        sizes.append(len(conn["edges"]))
        if not conn["pageInfo"]["hasNextPage"]:
            break
        variables["cursor"] = conn["pageInfo"]["endCursor"]
    assert sizes == [0, 100, 0, 100, 0, 30]


def test_rejected_filter_is_a_graphql_error(emulator):
    resp = post(emulator, RUNS_QUERY, {"entity": ENTITY, "project": PROJECT, "filters": '{"state": {"$bogus": 1}}'})
    assert resp.status_code == 200 and "$bogus" in resp.json()["errors"][0]["message"]


def test_every_mutation_advances_updated_at(make_emulator):
    emulator = make_emulator(profile=CONVENIENT)
    run = first_run(emulator, "running")
    store = emulator.store
    mutations = [
        lambda: store.append_steps(ENTITY, PROJECT, run.name, [{"_step": run.history.last_step + 1, "x": 1}]),
        lambda: store.update_run(ENTITY, PROJECT, run.name, tags=["t"], notes="n", config={"lr": 1}),
        lambda: store.set_state(ENTITY, PROJECT, run.name, "crashed"),
        lambda: store.rewind(ENTITY, PROJECT, run.name, 3),
    ]
    before = run_info(emulator, run.name)["updatedAt"]
    for mutate in mutations:
        mutate()
        after = run_info(emulator, run.name)["updatedAt"]
        assert after > before
        before = after


def test_pessimistic_updated_at_moves_on_edits_not_on_appends(make_emulator):
    emulator = make_emulator(profile=PESSIMISTIC)
    run = first_run(emulator, "running")
    before = run_info(emulator, run.name)["updatedAt"]
    emulator.store.append_steps(ENTITY, PROJECT, run.name, [{"_step": run.history.last_step + 1, "x": 1}])
    assert run_info(emulator, run.name)["updatedAt"] == before
    emulator.store.update_run(ENTITY, PROJECT, run.name, notes="edited")
    assert run_info(emulator, run.name)["updatedAt"] > before


@pytest.mark.parametrize("profile", [CONVENIENT, PESSIMISTIC], ids=lambda p: p.name)
def test_a_window_holding_more_rows_than_samples(make_emulator, profile):
    """Pessimistic: evenly spaced samples, first and last kept. Convenient: the first `samples` rows."""
    emulator = make_emulator(DatasetSpec(runs=1, steps=300, awkward=False, parquet_fraction=0), profile=profile)
    run = next(iter(emulator.store.project(ENTITY, PROJECT).runs.values()))
    lines = post(emulator, PAGE_QUERY, {"entity": ENTITY, "project": PROJECT, "run": run.name, "minStep": 0,
                                        "maxStep": 2**62, "pageSize": 100}).json()["data"]["project"]["run"]["history"]
    steps = [json.loads(line)["_step"] for line in lines]
    assert len(steps) == 100
    if profile.sample_history:
        assert steps[0] == 0 and steps[-1] == 299 and steps != list(range(100))
    else:
        assert steps == list(range(100))
    assert emulator.history_windows == [(300, 100)]
    emulator.history_windows.clear()  # asked on purpose; the fixture fails any test that sends such a window


@pytest.mark.parametrize("profile", [CONVENIENT, PESSIMISTIC], ids=lambda p: p.name)
def test_events_capped_and_the_full_stream_as_a_run_file(make_emulator, profile):
    emulator = make_emulator(DatasetSpec(runs=1, steps=5), profile=profile)
    run = next(iter(emulator.store.project(ENTITY, PROJECT).runs.values()))
    run.events = [{"_timestamp": 1.7e9 + i, "system.cpu": float(i)} for i in range(1500)]
    query = """query E($entity: String!, $project: String!, $run: String!) { project(name: $project,
      entityName: $entity) { run(name: $run) { eventsLineCount events(samples: 1000000)
      files(names: ["wandb-events.jsonl"]) { edges { node { name url } } } } } }"""
    node = post(emulator, query, {"entity": ENTITY, "project": PROJECT, "run": run.name}).json()["data"]["project"]["run"]
    assert node["eventsLineCount"] == 1500
    assert len(node["events"]) == (profile.events_cap or 1500)
    files = node["files"]["edges"]
    assert bool(files) == profile.events_file
    if files:
        body = requests.get(files[0]["node"]["url"], timeout=10).content.decode()
        assert [json.loads(line)["system.cpu"] for line in body.splitlines()] == [float(i) for i in range(1500)]


def test_an_older_server_lacks_the_legacy_sweep_fields(make_emulator):
    emulator = make_emulator(profile=PESSIMISTIC)
    query = """query { project(name: "demo", entityName: "emulator") { sweeps { edges { node { %s } } } } }"""
    assert post(emulator, query % "name method bestLoss config").status_code == 200
    resp = post(emulator, query % "name displayName")
    assert resp.status_code == 400 and "displayName" in resp.text


def test_history_pages_live_tail_only_or_everything(make_emulator):
    for serves_exported in (False, True):
        emu = make_emulator(history_page_serves_exported=serves_exported)
        run = first_run(emu)
        info = run_info(emu, run.name)
        assert len(info["parquetHistory"]["parquetUrls"]) == len(run.export_bounds) == 2
        live_steps = [d["_step"] for d in info["parquetHistory"]["liveData"]]
        assert live_steps == list(run.history.steps[run.exported_rows:])
        page = post(emu, PAGE_QUERY, {"entity": ENTITY, "project": PROJECT, "run": run.name,
                                      "minStep": 0, "maxStep": 10**9, "pageSize": 10**6}).json()
        steps = [json.loads(line)["_step"] for line in page["data"]["project"]["run"]["history"]]
        assert steps == list(run.history.steps[0 if serves_exported else run.exported_rows:])


def test_parquet_exports_are_real_files_and_follow_export_and_rewind(emulator):
    run = first_run(emulator)
    urls = run_info(emulator, run.name)["parquetHistory"]["parquetUrls"]
    tables = [pq.read_table(io.BytesIO(requests.get(u, timeout=10).content)) for u in urls]
    assert sum(t.num_rows for t in tables) == run.exported_rows
    assert tables[0].schema.field("_step").type == "int64"
    emulator.store.export_history(ENTITY, PROJECT, run.name)
    info = run_info(emulator, run.name)
    assert len(info["parquetHistory"]["parquetUrls"]) == 3 and info["parquetHistory"]["liveData"] == []
    emulator.store.rewind(ENTITY, PROJECT, run.name, 5)
    info = run_info(emulator, run.name)
    assert requests.get(urls[0], timeout=10).status_code == 404  # superseded export
    new = [pq.read_table(io.BytesIO(requests.get(u, timeout=10).content)) for u in info["parquetHistory"]["parquetUrls"]]
    assert [s for t in new for s in t.column("_step").to_pylist()] == list(range(6))


def test_history_keys_and_line_count(emulator):
    run = first_run(emulator)
    info = run_info(emulator, run.name)
    assert info["historyLineCount"] == len(run.history)
    assert info["historyKeys"]["lastStep"] == run.history.last_step
    counts = info["historyKeys"]["keys"]["eval/loss"]["typeCounts"]
    assert counts == [{"type": "number", "count": sum(1 for r in run.history.rows() if "eval/loss" in r)}]


@pytest.mark.parametrize("kind, check", [
    ("status", lambda r: r.status_code == 503),
    ("graphql_error", lambda r: r.status_code == 200 and r.json()["errors"]),
    ("non_json", lambda r: r.status_code == 200 and r.text.startswith("<html>")),
])
def test_faults_answer_then_recover(emulator, kind, check):
    emulator.faults.add(operation="Viewer", kind=kind, status=503, times=1)
    assert check(post(emulator, "query Viewer { viewer { id } }"))
    assert post(emulator, "query Viewer { viewer { id } }").json()["data"]["viewer"]


@pytest.mark.parametrize("kind", ["drop", "truncate", "hang"])
def test_connection_faults(emulator, kind):
    emulator.faults.add(operation="Viewer", kind=kind, times=1, delay=3)
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                        requests.Timeout)):
        requests.post(f"{emulator.url}/graphql", timeout=1, json={"query": "query Viewer { viewer { id } }"},
                      headers={"Authorization": "Basic " + base64.b64encode(f"api:{emulator.api_key}".encode()).decode()})


@pytest.mark.parametrize("profile", [CONVENIENT, PESSIMISTIC], ids=lambda p: p.name)
def test_retry_after_and_rate_limit_headers(make_emulator, profile):
    emu = make_emulator(rate_limit=3, profile=profile)
    statuses = [post(emu, "query { viewer { id } }") for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    if profile.quota_units:  # an opaque quota on W&B's documented 0-1000 scale, no limit said
        assert "RateLimit-Limit" not in statuses[0].headers and statuses[0].headers["RateLimit-Remaining"] == "666"
    else:
        assert statuses[0].headers["RateLimit-Limit"] == "3" and statuses[0].headers["RateLimit-Remaining"] == "2"
    retry_after = statuses[3].headers["Retry-After"]
    assert (retry_after.endswith("GMT") if profile.retry_after_date else int(retry_after) >= 1)
    assert 0 < parse_retry_after(retry_after) <= 2  # an HTTP date is rounded up to the whole second
    time.sleep(1.05)
    assert post(emu, "query { viewer { id } }").status_code == 200


def test_latency_is_added_to_every_request(make_emulator):
    emu = make_emulator(latency=0.2)
    start = time.monotonic()
    post(emu, "query { viewer { id } }")
    assert time.monotonic() - start >= 0.2


def test_control_endpoint_mutates_and_counts(emulator):
    run = first_run(emulator, "running")
    body = {"entity": ENTITY, "project": PROJECT, "run": run.name,
            "rows": [{"_step": run.history.last_step + 1, "train/loss": 0.25}]}
    assert requests.post(f"{emulator.url}/_emulator/control/append_steps", json=body, timeout=5).ok
    assert requests.post(f"{emulator.url}/_emulator/control/add_fault",
                         json={"operation": "Viewer", "status": 500}, timeout=5).ok
    assert post(emulator, "query Viewer { viewer { id } }").status_code == 500
    assert requests.get(f"{emulator.url}/_emulator/requests", timeout=5).json() == {"Viewer": 1}
    bad = requests.post(f"{emulator.url}/_emulator/control/nope", json={}, timeout=5)
    assert bad.status_code == 404 and "append_steps" in bad.text
    assert run.history.row(len(run.history) - 1)["train/loss"] == 0.25


def test_generator_is_deterministic_and_covers_awkward_cases():
    from wandb_source.emulator import Store, generate
    stores = []
    for _ in range(2):
        store = Store()
        generate(store, DatasetSpec(seed=3, wide_keys=2100))
        stores.append(store)
    a, b = (list(s.project(ENTITY, PROJECT).runs.values()) for s in stores)
    assert [r.name for r in a] == [r.name for r in b]
    assert json.dumps(list(a[1].history.rows())) == json.dumps(list(b[1].history.rows()))
    assert {r.state for r in a} == {"running", "finished", "crashed", "failed", "killed", "preempted", "pending"}
    assert any(len(r.history) == 0 for r in a)
    keys = set().union(*(r.history_keys()["keys"] for r in a))
    for key in ("eval/loss", "weird/special", "status", "is_best", "nested", "gradients/layer0",
                "media/sample", "key with spaces", "dotted.key.name", "val/acc", "val_acc", "ünï/损失"):
        assert key in keys
    assert any(len(k) > 100 for k in keys)
    wide = stores[0].project(ENTITY, "wide-keys").runs.values()
    assert len(set().union(*(r.history_keys()["keys"] for r in wide))) > 2000


def test_cli_help_documents_the_standalone_server():
    out = subprocess.run([sys.executable, "-m", "wandb_source.emulator", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for option in ("--port", "--size", "--latency", "--rate-limit", "--seed", "--pages-serve-exported"):
        assert option in out


def test_cli_starts_a_server(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "wandb_source.emulator", "--port", "0", "--runs", "3"],
                            stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        assert requests.get(f"{info['url']}/healthz", timeout=5).json() == {"ok": True}
    finally:
        proc.terminate()
        proc.wait(10)


def test_control_endpoint_adds_a_run(emulator):
    body = {"entity": ENTITY, "project": PROJECT, "run": "newrun01", "state": "running",
            "config": {"lr": 0.5}, "tags": ["fresh"], "rows": [{"_step": 0, "loss": 1.0}, {"_step": 1, "loss": 0.5}]}
    assert requests.post(f"{emulator.url}/_emulator/control/add_run", json=body, timeout=5).ok
    info = run_info(emulator, "newrun01")
    assert info["historyLineCount"] == 2 and info["historyKeys"]["lastStep"] == 1
    again = requests.post(f"{emulator.url}/_emulator/control/add_run", json=body, timeout=5)
    assert again.status_code == 400 and "already exists" in again.text


def test_generated_rewound_run_is_a_second_branch():
    from wandb_source.emulator import Store, generate
    store = Store()
    generate(store, DatasetSpec())
    run = list(store.project(ENTITY, PROJECT).runs.values())[9]
    rows = list(run.history.rows())
    jumps = [b["_runtime"] - a["_runtime"] for a, b in zip(rows, rows[1:])]
    assert max(jumps) > 7000 and list(run.history.steps) == list(range(len(rows)))


def test_a_name_filter_looked_up_answers_as_the_filter_does(emulator):
    """The emulator's shortcut for `{"name": {"$in": [...]}}` (large projects) gives the runs the general
    filter gives: names W&B lacks are left out, a repeated name counts once; other filters take the long way."""
    from wandb_source.emulator.graphql_api import _filtered_runs, _named_runs

    project = emulator.store.project("emulator", "demo")
    names = list(project.runs)
    filters = json.dumps({"name": {"$in": [names[3], "no-such-run", names[0], names[3]]}})
    assert {r.name for r in _named_runs(project, filters)} == {r.name for r in _filtered_runs(project, filters)}
    assert len(_named_runs(project, filters)) == 2
    assert _named_runs(project, json.dumps({"state": "finished"})) is None
    assert _named_runs(project, json.dumps({"name": {"$in": names[:2]}, "state": "finished"})) is None
