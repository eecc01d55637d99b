"""Exact under the least convenient reading of W&B (wandb_source/emulator/profile.py): history windows that
W&B may sample, capped system metrics, `updatedAt` that does not move or does not exist, bad keys answered
HTTP 200, empty pages, GraphQL errors, HTTP-date `Retry-After`, and the official client's headers."""

from __future__ import annotations

import math

import pytest

from tests.helpers import assert_history_equals_emulator, load, loaded_counts, make_pipeline, rows
from wandb_source import AuthenticationError, wandb_source
from wandb_source.emulator import DatasetSpec
from wandb_source.emulator.profile import LEGACY_SWEEP_FIELDS, PESSIMISTIC
from wandb_source.emulator.store import new_run
from wandb_source.state import sampled_runs

ENTITY, PROJECT = "emulator", "fidelity"
PAGE = 1000


def _rows(steps, t0=1.75e9):
    return [{"_step": s, "_runtime": s * 0.01, "_timestamp": t0 + s * 0.01, "loss": 1.0 / (s + 1),
             "acc": float(s % 7), **({"eval/score": s / 3} if s % 5 == 0 else {})} for s in steps]


def _fidelity_emulator(make_emulator, **kwargs):
    """The runs the issue names: 20,000 live steps; 15,000 exported + 5,000 live; gaps; every 1,000th step."""
    emu = make_emulator(DatasetSpec(runs=1, steps=10), **kwargs)
    store = emu.store
    store.add_run(new_run(ENTITY, PROJECT, "live20k", rows=_rows(range(20_000))))
    store.add_run(new_run(ENTITY, PROJECT, "mixed", state="finished", rows=_rows(range(20_000))))
    store.export_history(ENTITY, PROJECT, "mixed", upto_rows=15_000)
    gaps = [*range(0, 1500), *range(90_000, 90_700), *range(10**9, 10**9 + 5)]
    store.add_run(new_run(ENTITY, PROJECT, "gaps", state="crashed", rows=_rows(gaps)))
    store.add_run(new_run(ENTITY, PROJECT, "sparse", state="finished", rows=_rows(range(0, 3000 * 1000, 1000))))
    return emu


def _history_pages(emu, run):
    return [r for r in emu.faults.requests("HistoryPage") if r.variables.get("run") == run]


def test_every_step_exactly_once_where_w_and_b_may_sample(pipeline, make_emulator):
    emu = _fidelity_emulator(make_emulator)
    load(pipeline, emu, projects=[PROJECT])
    assert assert_history_equals_emulator(pipeline, emu, project=PROJECT) == 20_000 + 20_000 + 2_205 + 3_000
    for record in emu.faults.requests("HistoryPage"):
        v = record.variables
        assert v["pageSize"] <= PAGE
    # a run logging every 1,000th step costs rows / page size requests, not steps / page size (windows list
    # 999 steps and ask for 1,000 samples: a full answer would show rows nobody listed)
    assert len(_history_pages(emu, "sparse")) == 4
    assert len(_history_pages(emu, "live20k")) == 21
    assert len(_history_pages(emu, "mixed")) == 6  # the 15,000 exported steps come from parquet


def test_a_grown_run_is_read_on_exactly_under_sampling(tmp_path, make_emulator):
    emu = _fidelity_emulator(make_emulator)
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu, projects=[PROJECT])
    emu.store.append_steps(ENTITY, PROJECT, "live20k", _rows(range(20_000, 23_500), t0=1.76e9))
    emu.store.append_steps(ENTITY, PROJECT, "sparse", _rows(range(3_000_000, 4_000_000, 1000), t0=1.76e9))
    emu.faults.clear_log()
    load(pipeline, emu, projects=[PROJECT])
    assert assert_history_equals_emulator(pipeline, emu, project=PROJECT) == 23_500 + 20_000 + 2_205 + 4_000
    assert loaded_counts(pipeline)["history"] == 3_500 + 1_000  # the new steps (the last loaded ones are re-read, not loaded)
    assert len(_history_pages(emu, "live20k")) == 4 and len(_history_pages(emu, "sparse")) == 2


def test_a_hundred_live_runs_load_exactly(tmp_path, make_emulator):
    emu = make_emulator(DatasetSpec(projects=("many",), runs=100, steps=1_500, metrics=3, awkward=False,
                                    parquet_fraction=0.0, system_metrics=False))
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu, projects=["many"])
    assert assert_history_equals_emulator(pipeline, emu, project="many") == sum(
        len(r.history) for r in emu.store.project(ENTITY, "many").runs.values()) > 100_000


def test_a_page_that_comes_back_sampled_is_split_not_accepted(tmp_path, make_emulator, monkeypatch):
    """If W&B listed fewer live steps than a window holds (steps logged between the two requests), the
    answer is a sample: the window is split until no answer can be."""
    from wandb_source.api import client as client_module

    emu = _fidelity_emulator(make_emulator)
    real = client_module.WandbClient.parquet_history

    def stale(self, entity, project, run):  # W&B lists only every 10th live step of one run (and its last)
        urls, live = real(self, entity, project, run)
        return urls, (live[::10] + live[-1:] if run == "live20k" else live)

    monkeypatch.setattr(client_module.WandbClient, "parquet_history", stale)
    emu.history_windows.clear()
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu, projects=[PROJECT])
    assert_history_equals_emulator(pipeline, emu, project=PROJECT)
    sampled = [w for w in emu.history_windows if w[0] > w[1]]
    assert sampled, "the stale listing should have made W&B sample some windows"
    emu.history_windows.clear()  # those were sampled on purpose; the fixture checks the rest


def test_system_metrics_complete_under_the_events_cap(tmp_path, make_emulator):
    emu = make_emulator(DatasetSpec(runs=2, steps=20), profile=PESSIMISTIC)
    run = next(iter(emu.store.project(ENTITY, "demo").runs.values()))
    run.events = [{"_timestamp": 1.7e9 + 15 * i, "_runtime": 15.0 * i, "system.cpu": (i % 100) / 1.0,
                   "system.gpu.0.temp": float("nan") if i == 7 else 40 + i % 9} for i in range(2_500)]
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu)
    got = [r for r in rows(pipeline, "system_metrics") if r["run_id"] == run.name]
    assert len(got) == 2_500 and not any(r["_sampled"] for r in got)
    assert "RunEvents" not in emu.faults.counts()  # read from wandb-events.jsonl
    assert any(math.isnan(r["system__gpu___0__temp"]) for r in got)


def test_system_metrics_without_the_stream_are_marked_sampled(tmp_path, make_emulator):
    emu = make_emulator(DatasetSpec(runs=2, steps=20), profile=PESSIMISTIC.but(events_file=False))
    big, small = list(emu.store.project(ENTITY, "demo").runs.values())
    big.events = [{"_timestamp": 1.7e9 + 15 * i, "system.cpu": float(i)} for i in range(2_500)]
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu)
    loaded = rows(pipeline, "system_metrics")
    got = [r for r in loaded if r["run_id"] == big.name]
    assert len(got) == 1_000 and all(r["_sampled"] for r in got)  # W&B's cap, and said so
    assert all(r["_sampled"] is False for r in loaded if r["run_id"] == small.name)
    assert list(sampled_runs(pipeline.state)) == [f"{ENTITY}/demo/{big.name}"]


@pytest.mark.parametrize("profile", [
    PESSIMISTIC,  # updatedAt moves on edits only
    PESSIMISTIC.but(name="no-updatedAt", missing_fields=(*LEGACY_SWEEP_FIELDS, "Run.updatedAt")),
], ids=lambda p: p.name)
def test_changes_are_seen_without_trusting_updated_at(tmp_path, make_emulator, profile):
    emu = make_emulator(profile=profile)
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu)
    runs = list(emu.store.project(ENTITY, "demo").runs.values())
    running = next(r for r in runs if r.state == "running" and len(r.history))
    finished = next(r for r in runs if r.state == "finished")
    before = running.updated_at
    emu.store.append_steps(ENTITY, "demo", running.name, _rows(range(running.history.last_step + 1,
                                                                     running.history.last_step + 4)))
    assert running.updated_at == before  # the least convenient reading: appends do not move it
    emu.store.update_run(ENTITY, "demo", finished.name, tags=["seen"])
    load(pipeline, emu)
    assert_history_equals_emulator(pipeline, emu)
    loaded = {r["run_id"]: r for r in rows(pipeline, "runs")}
    assert "seen" in str(loaded[finished.name]["tags"])
    if "Run.updatedAt" in profile.missing_fields:
        assert all(r["updated_at"] is None for r in loaded.values())


def test_a_key_answered_with_viewer_null_is_an_authentication_error(emulator):
    with pytest.raises(AuthenticationError, match="did not accept the API key"):
        wandb_source(entity=ENTITY, base_url=emulator.url, api_key="local-" + "x" * 40)


def test_requests_carry_the_public_clients_headers(tmp_path, emulator):
    load(make_pipeline("duckdb", tmp_path), emulator)
    headers = [r.headers for r in emulator.faults.requests() if r.headers]
    assert headers and all(h["User-Agent"].startswith("W&B Public Client ") and "wandb-source/" in h["User-Agent"]
                           for h in headers)
    assert all(h["Use-Admin-Privileges"] == "true" for h in headers)
    emulator.faults.clear_log()
    load(make_pipeline("duckdb", tmp_path, name="no_admin"), emulator, use_admin_privileges=False)
    assert all(r.headers.get("Use-Admin-Privileges") is None for r in emulator.faults.requests() if r.headers)


def test_an_older_server_without_recent_fields_loads_with_them_empty(tmp_path, make_emulator):
    emulator = make_emulator(profile=PESSIMISTIC)
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emulator)
    (sweep,) = rows(pipeline, "sweeps")
    assert sweep["method"] == "bayes" and sweep.get("display_name") is None
    documents = [r.request[2].decode() for r in emulator.faults.requests("GetSweeps") if r.request]
    assert documents and all("displayName" not in d for d in documents)


def _client_answering(pages):
    """A client whose server answers `pages` in turn (the pathological answers no emulator profile models)."""
    from wandb_source.api.client import WandbClient

    client = WandbClient("http://127.0.0.1:9", "local-" + "k" * 40)
    answers = iter(pages)
    client.query = lambda document, variables=None: next(answers)  # type: ignore[method-assign]
    return client


def _runs_page(names, end_cursor, more):
    return {"project": {"runs": {"edges": [{"node": {"name": n}} for n in names],
                                 "pageInfo": {"endCursor": end_cursor, "hasNextPage": more}}}}


def test_paging_follows_empty_pages_and_takes_a_null_connection_as_empty():
    client = _client_answering([_runs_page([], "c1", True), _runs_page(["a"], "c2", True),
                                {"project": {"runs": None}}])
    client._server_fields = {}  # no probe request
    assert list(client.run_pages(ENTITY, PROJECT)) == [[], [{"name": "a"}], []]


@pytest.mark.parametrize("pages, says", [
    ([_runs_page(["a"], "c1", True), _runs_page(["b"], "c1", True)], "the same page cursor"),
    ([_runs_page(["a"], None, True)], "no page cursor"),
])
def test_paging_that_would_loop_forever_fails_clearly(pages, says):
    from wandb_source import ServerError

    client = _client_answering(pages)
    client._server_fields = {}
    with pytest.raises(ServerError, match=says):
        list(client.run_pages(ENTITY, PROJECT))


def test_a_server_that_refuses_introspection_is_asked_for_every_field(tmp_path, make_emulator):
    from wandb_source.emulator.profile import CONVENIENT

    emu = make_emulator(profile=CONVENIENT)
    emu.faults.add(operation="ProbeServerCapabilities", kind="graphql_error", times=1,
                   message="introspection is disabled")
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu)
    assert_history_equals_emulator(pipeline, emu)
    assert rows(pipeline, "sweeps")[0]["display_name"]


def test_a_run_without_samples_costs_no_system_metrics_request(tmp_path, make_emulator):
    emu = make_emulator(DatasetSpec(runs=3, steps=20))
    quiet = list(emu.store.project(ENTITY, "demo").runs.values())[0]
    quiet.events = []
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu)
    assert_history_equals_emulator(pipeline, emu)
    asked = [r for r in emu.faults.requests() if r.operation in ("RunEvents", "file")
             and quiet.name in (r.variables.get("run") or r.variables.get("path") or "")
             and "metadata" not in (r.variables.get("path") or "")]
    assert asked == []
    lookups = [r.request[2].decode() for r in emu.faults.requests("Runs") if r.request and b"wandb-events" in r.request[2]]
    assert lookups and all(quiet.name not in body for body in lookups)


def _small_runs(make_emulator, runs=120):
    emu = make_emulator(DatasetSpec(projects=("small",), runs=runs, steps=20, parquet_fraction=0.5))
    return emu, emu.store.project(ENTITY, "small").runs


def test_small_runs_share_a_request_and_load_exactly(tmp_path, make_emulator):
    """Runs whose new steps fit one window are read up to 50 to a request (`HistoryBatch`: each run's parquet
    listing and one window at most `samples` steps wide, never sampled) — exact where live pages do not serve
    exported steps, on a first load and on a reload; a run that logged far past its window reads the rest alone."""
    emu, runs = _small_runs(make_emulator)
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu, projects=["small"])
    assert assert_history_equals_emulator(pipeline, emu, project="small") == sum(len(r.history) for r in runs.values())
    assert any(r.exported_rows for r in runs.values())  # some history comes from parquet exports
    assert 3 <= len(emu.faults.requests("HistoryBatch")) <= math.ceil(len(runs) / 25)
    assert not emu.faults.requests("RunParquetHistory") and not emu.faults.requests("HistoryPage")

    grown = [r for r in runs.values() if len(r.history)][:4]
    for run in grown[:3]:
        last = run.history.last_step
        emu.store.append_steps(ENTITY, "small", run.name, _rows(range(last + 1, last + 6), t0=1.76e9))
    far = grown[3]
    last = far.history.last_step
    emu.store.append_steps(ENTITY, "small", far.name, _rows([last + 1, last + 5_000], t0=1.76e9))
    emu.faults.clear_log()
    load(pipeline, emu, projects=["small"])
    assert_history_equals_emulator(pipeline, emu, project="small")
    assert loaded_counts(pipeline)["history"] == 3 * 5 + 2
    assert len(emu.faults.requests("HistoryBatch")) == 1 and not emu.faults.requests("RunParquetHistory")
    assert [r.variables["run"] for r in emu.faults.requests("HistoryPage")] == [far.name]  # beyond its window


def test_a_refused_batch_is_read_run_by_run(tmp_path, make_emulator, caplog):
    emu, runs = _small_runs(make_emulator, runs=30)
    emu.faults.add(operation="HistoryBatch", status=400, times=100, message="query too complex")
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu, projects=["small"])
    assert assert_history_equals_emulator(pipeline, emu, project="small") == sum(len(r.history) for r in runs.values())
    assert len(emu.faults.requests("RunParquetHistory")) == sum(1 for r in runs.values() if len(r.history))


def test_finished_runs_system_metrics_share_a_request_when_complete(tmp_path, make_emulator, monkeypatch):
    """Finished runs with few samples are read together (`EventsBatch`); an answer is used only when it holds
    every sample W&B counts for the run — a capped one (here 1,500 samples against a cap of 1,000) is not, and
    that run is read from its wandb-events.jsonl. A running run is read on its own."""
    from wandb_source import settings

    monkeypatch.setattr(settings, "EVENTS_BATCH_SAMPLES", 5_000)  # so that the capped run is in a batch
    emu = make_emulator(DatasetSpec(runs=12, steps=20), profile=PESSIMISTIC)
    runs = list(emu.store.project(ENTITY, "demo").runs.values())
    for i, run in enumerate(runs):
        run.state = "running" if i == 0 else "finished"
        run.events = [{"_timestamp": 1.7e9 + 15 * k, "system.cpu": float(k + i)} for k in range(30)]
    capped = runs[1]
    capped.events = [{"_timestamp": 1.7e9 + 15 * k, "system.cpu": k / 3} for k in range(1_500)]
    pipeline = make_pipeline("duckdb", tmp_path)
    load(pipeline, emu)
    loaded = rows(pipeline, "system_metrics")
    for run in runs:
        got = sorted((r["_timestamp"].timestamp(), r["system__cpu"]) for r in loaded if r["run_id"] == run.name)
        assert got == [(e["_timestamp"], e["system.cpu"]) for e in run.events], run.name
    assert not any(r["_sampled"] for r in loaded)
    assert len(emu.faults.requests("EventsBatch")) == 1
    files = [r.variables.get("path", "") for r in emu.faults.requests("file") if "wandb-events" in r.variables.get("path", "")]
    assert sorted(p.split("/")[-2] for p in files) == sorted([runs[0].name, capped.name])  # running; capped
