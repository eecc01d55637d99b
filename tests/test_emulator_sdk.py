"""The official wandb SDK reads the emulator's data back unchanged: proof that it speaks W&B's protocol.

These tests run under the `sdk` profile: every pessimistic switch except empty pages with `hasNextPage`,
because the SDK's own runs listing stops at the first empty page (wandb_source/emulator/profile.py).
"""

from __future__ import annotations

import json
import math

import pytest
import wandb
import yaml

from wandb_source.emulator import Emulator
from wandb_source.emulator.profile import CONVENIENT, SDK

ENTITY, PROJECT = "emulator", "demo"


def same(a, b) -> bool:
    """Equality where NaN equals NaN, recursively."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if hasattr(a, "keys") and hasattr(b, "keys"):
        return set(a.keys()) == set(b.keys()) and all(same(a[k], b[k]) for k in a.keys())  # noqa: SIM118 - the SDK's summary iterates otherwise
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def server_runs(emu: Emulator, project: str = PROJECT):
    return list(emu.store.project(ENTITY, project).runs.values())


@pytest.fixture
def emulator(make_emulator) -> Emulator:
    return make_emulator(profile=SDK)


@pytest.fixture
def api(wandb_env) -> wandb.Api:
    return wandb.Api(timeout=30)


def test_runs_lazy_paginated_in_created_order(api, emulator):
    runs = api.runs(f"{ENTITY}/{PROJECT}", per_page=5)
    expected = sorted(server_runs(emulator), key=lambda r: r.created_at)
    assert len(runs) == len(expected) == 12
    assert [r.id for r in runs] == [r.name for r in expected]
    assert emulator.faults.counts()["Runs"] == 3  # 12 runs at 5 per page


def test_runs_full_fragment_config_summary_and_fields(api, emulator):
    runs = {r.id: r for r in api.runs(f"{ENTITY}/{PROJECT}", lazy=False, per_page=50)}
    assert emulator.faults.counts().get("Run", 0) == 0  # full fragment: no per-run query
    for srv in server_runs(emulator):
        run = runs[srv.name]
        expected_config = {k: v for k, v in srv.config.items() if k not in ("_wandb", "wandb_version")}
        assert same(run.config, expected_config)
        assert run.name == srv.display_name and run.state == srv.state and run.tags == srv.tags
        assert run.group == srv.group and run.job_type == srv.job_type and run.notes == srv.notes
        assert run.created_at == srv.created_at.strftime("%Y-%m-%dT%H:%M:%S")
        summary = dict(run.summary)
        assert summary.keys() == srv.summary.keys()
        for key, value in srv.summary.items():
            if isinstance(value, float) and not math.isfinite(value):
                continue  # the SDK's summary turns NaN/Infinity into its own representation
            assert same(summary[key], value), key
        assert run.lastHistoryStep == srv.history.last_step


@pytest.mark.parametrize("filters, predicate", [
    ({"state": "finished"}, lambda r: r.state == "finished"),
    ({"state": {"$in": ["crashed", "failed"]}}, lambda r: r.state in ("crashed", "failed")),
    ({"config.lr": 0.01}, lambda r: r.config["lr"] == 0.01),
    ({"config.batch_size.value": {"$gte": 64}}, lambda r: r.config["batch_size"] >= 64),
    ({"tags": "baseline"}, lambda r: "baseline" in r.tags),
    ({"$or": [{"group": "group-1"}, {"jobType": "eval"}]}, lambda r: r.group == "group-1" or r.job_type == "eval"),
    ({"summary_metrics.train/loss": {"$lt": 1.9}}, lambda r: r.summary.get("train/loss", 99) < 1.9),
    ({"displayName": {"$regex": "^bright"}}, lambda r: r.display_name.startswith("bright")),
])
def test_runs_filters(api, emulator, filters, predicate):
    got = {r.id for r in api.runs(f"{ENTITY}/{PROJECT}", filters=filters)}
    expected = {r.name for r in server_runs(emulator) if predicate(r)}
    assert expected and got == expected


def test_runs_filter_by_name_in_and_updated_at(api, emulator):
    names = [r.name for r in server_runs(emulator)[:3]]
    assert {r.id for r in api.runs(f"{ENTITY}/{PROJECT}", filters={"name": {"$in": names}})} == set(names)
    emulator.store.update_run(ENTITY, PROJECT, names[1], tags=["edited"])
    cutoff = max(r.updated_at for r in server_runs(emulator) if r.name != names[1]).isoformat()
    changed = api.runs(f"{ENTITY}/{PROJECT}", filters={"updatedAt": {"$gt": cutoff}})
    assert [r.id for r in changed] == [names[1]]


def test_runs_order(api, emulator):
    got = [r.id for r in api.runs(f"{ENTITY}/{PROJECT}", order="-created_at", per_page=4)]
    assert got == [r.name for r in sorted(server_runs(emulator), key=lambda r: r.created_at, reverse=True)]


@pytest.mark.parametrize("state", ["finished", "running"])
def test_scan_history_exact(api, emulator, state):
    srv = next(r for r in server_runs(emulator) if r.state == state and len(r.history))
    assert (srv.exported_rows > 0) == (state == "finished")  # parquet + live, or live only
    rows = list(api.run(f"{ENTITY}/{PROJECT}/{srv.name}").scan_history(page_size=37, use_cache=False))
    expected = list(srv.history.rows())
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected):
        # parquet exports are columnar: a key the row did not log reads back as null
        assert same({k: v for k, v in got.items() if v is not None}, want), want["_step"]
    counts = emulator.faults.counts()
    assert counts["parquet"] == (2 if state == "finished" else 0)


def test_scan_history_resumed_run_with_step_gap(api, emulator):
    srv = next(r for r in server_runs(emulator) if list(r.history.steps) != list(range(len(r.history))))
    rows = list(api.run(f"{ENTITY}/{PROJECT}/{srv.name}").scan_history(use_cache=False))
    assert [r["_step"] for r in rows] == list(srv.history.steps)


def test_system_metrics_stream(api, emulator):
    srv = next(r for r in server_runs(emulator) if len(r.events) > 3)
    events = api.run(f"{ENTITY}/{PROJECT}/{srv.name}").history(stream="system", pandas=False, samples=10_000)
    assert events == srv.events


def test_projects_sweeps_files_and_metadata(api, emulator):
    assert [p.name for p in api.projects(ENTITY)] == [PROJECT]
    sweeps = api.project(PROJECT, ENTITY).sweeps()
    assert len(sweeps) == 1
    sweep = api.sweep(f"{ENTITY}/{PROJECT}/{sweeps[0].id}")
    srv_sweep = next(iter(emulator.store.project(ENTITY, PROJECT).sweeps.values()))
    assert sweep.config == yaml.safe_load(srv_sweep.config_yaml)
    srv = server_runs(emulator)[1]
    run = api.run(f"{ENTITY}/{PROJECT}/{srv.name}")
    assert sorted(f.name for f in run.files()) == sorted([*srv.files, "wandb-events.jsonl"])  # the SDK streams it
    assert run.metadata == json.loads(srv.files["wandb-metadata.json"])


def test_logged_and_used_artifacts(api, emulator):
    srv = next(r for r in server_runs(emulator) if r.output_artifacts)
    run = api.run(f"{ENTITY}/{PROJECT}/{srv.name}")
    logged = list(run.logged_artifacts())
    assert [a.name for a in logged] == [f"{a['name']}:v{a['version_index']}" for a in srv.output_artifacts]
    assert [a.type for a in run.used_artifacts()] == ["dataset"]


def test_mutations_are_seen_by_the_sdk(api, emulator):
    srv = next(r for r in server_runs(emulator) if r.state == "running" and len(r.history))
    path = f"{ENTITY}/{PROJECT}/{srv.name}"
    last = srv.history.last_step
    emulator.store.append_steps(ENTITY, PROJECT, srv.name, [{"_step": last + 1, "train/loss": 0.5}])
    emulator.store.set_state(ENTITY, PROJECT, srv.name, "finished")
    run = api.run(path)
    assert run.state == "finished" and run.lastHistoryStep == last + 1
    assert list(run.scan_history(use_cache=False))[-1]["train/loss"] == 0.5
    emulator.store.rewind(ENTITY, PROJECT, srv.name, 10)
    assert [r["_step"] for r in api.run(path).scan_history(use_cache=False)] == list(range(11))
    emulator.store.delete_run(ENTITY, PROJECT, srv.name)
    assert srv.name not in {r.id for r in api.runs(f"{ENTITY}/{PROJECT}")}


@pytest.mark.serial  # request timing: not beside another worker
def test_429_burst_with_retry_after_is_survived(api, emulator):
    srv = server_runs(emulator)[0]
    emulator.faults.add(operation="Run", kind="status", status=429, times=2, retry_after=1)
    run = api.run(f"{ENTITY}/{PROJECT}/{srv.name}")
    assert run.id == srv.name
    statuses = [r.status for r in emulator.faults.requests("Run")]
    assert statuses == [429, 429, 200]


@pytest.mark.parametrize("profile", [SDK, CONVENIENT], ids=lambda p: p.name)
def test_wrong_api_key_fails(make_emulator, monkeypatch, tmp_path, profile):
    emu = make_emulator(profile=profile)
    monkeypatch.setenv("WANDB_BASE_URL", emu.url)
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_API_KEY", "local-" + "x" * 40)
    with pytest.raises(Exception) as err:
        wandb.Api(timeout=10).runs(f"{ENTITY}/{PROJECT}")[0]  # noqa: B018
    assert "credentials" in str(err.value) or "API key" in str(err.value)
    assert [r.status for r in emu.faults.requests()][:1] == [200 if profile.viewer_null_on_bad_key else 401]
