"""The Dagster assets (dagster-dlt), materialized in-process against the emulator: one partition per shard,
each with its own API key, into one DuckDB or Postgres dataset; a partition that fails names the run and,
run again, loads it — every step exactly once."""

from __future__ import annotations

import dlt
import pytest

dagster = pytest.importorskip("dagster")  # the `dagster` extra (installed by `make test`)
from dagster_dlt import DagsterDltResource  # noqa: E402

from tests.helpers import POSTGRES_DSN, assert_history_equals_emulator, drop_dataset  # noqa: E402
from wandb_source import wandb_source  # noqa: E402
from wandb_source.emulator import DatasetSpec  # noqa: E402
from wandb_source.integrations.dagster import RESOURCES, WandbShard, wandb_assets  # noqa: E402

pytestmark = pytest.mark.one_profile  # orchestration, not server behaviour

PROJECTS = ("alpha", "beta")
BETA_KEY = "beta-team-key-" + "0" * 26


def test_the_assets_are_the_resources_of_the_source(make_emulator):
    emu = make_emulator(DatasetSpec(runs=1, steps=5))
    source = wandb_source(entity="emulator", base_url=emu.url, api_key=emu.api_key)
    assert tuple(source.selected_resources) == RESOURCES
    assets = wandb_assets({"all": WandbShard(["emulator/demo"])}, destination="duckdb")
    assert {key.path[-1] for key in assets.keys} == set(RESOURCES)


@pytest.fixture(params=["duckdb", "postgres"])
def destination(request, tmp_path):
    if request.param == "duckdb":
        yield dlt.destinations.duckdb(str(tmp_path / "wandb.duckdb"))
    else:
        yield dlt.destinations.postgres(POSTGRES_DSN)


def _materialize(assets, shard: str, instance):
    return dagster.materialize([assets], partition_key=shard, resources={"dlt": DagsterDltResource()},
                               instance=instance, raise_on_error=False)


def _shard_pipeline(shard: str, destination, dataset: str) -> dlt.Pipeline:
    return dlt.pipeline(f"wandb_{shard}", destination=destination, dataset_name=dataset)


def test_partitions_load_their_shards_with_their_keys_and_a_failed_one_is_retried(tmp_path, make_emulator,
                                                                                monkeypatch, destination):
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("SOURCES__WANDB__SHARDS__BETA__API_KEY", BETA_KEY)
    emu = make_emulator(DatasetSpec(projects=PROJECTS, runs=3, steps=40))
    emu.store.api_keys[BETA_KEY] = "beta-user"
    dataset = f"dagster_{tmp_path.name[-8:].replace('-', '_')}"
    shards = {"alpha": WandbShard(["emulator/alpha"], api_key=emu.api_key),
              "beta": WandbShard(["emulator/beta"], api_key_name="beta")}
    assets = wandb_assets(shards, destination=destination, dataset_name=dataset, base_url=emu.url)
    instance = dagster.DagsterInstance.ephemeral()
    try:
        for shard in PROJECTS:
            result = _materialize(assets, shard, instance)
            assert result.success, shard
            materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
            assert materialized == set(RESOURCES)
            assert_history_equals_emulator(_shard_pipeline(shard, destination, dataset), emu, shard)
        users = {(r.variables.get("project"), r.user) for r in emu.faults.requests() if r.variables.get("project")}
        assert users == {("alpha", "emulator-user"), ("beta", "beta-user")}, users

        running = next(r for r in emu.store.project("emulator", "alpha").runs.values() if r.state == "running")
        last = running.history.last_step
        emu.store.append_steps("emulator", "alpha", running.name, [
            {"_step": last + i, "_runtime": 500.0 + i, "_timestamp": 1.8e9 + i, "train/loss": 0.1 * i} for i in (1, 2)])
        for operation, variable in (("HistoryBatch", "run0"), ("HistoryPage", "run")):  # batched or alone
            emu.faults.add(operation=operation, kind="graphql_error", times=1000, match={variable: running.name},
                           message="query complexity too high")
        failed = _materialize(assets, "alpha", instance)
        assert not failed.success
        failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
        assert running.name in str(failure.event_specific_data.error.message)

        emu.faults.clear()
        again = _materialize(assets, "alpha", instance)
        assert again.success
        assert_history_equals_emulator(_shard_pipeline("alpha", destination, dataset), emu, "alpha")
        assert_history_equals_emulator(_shard_pipeline("beta", destination, dataset), emu, "beta")
    finally:
        drop_dataset(_shard_pipeline("alpha", destination, dataset))
