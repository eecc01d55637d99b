"""Dagster assets through dagster-dlt: one asset per resource of `wandb_source`, one partition per shard.

    from dagster import Definitions
    from dagster_dlt import DagsterDltResource
    from wandb_source.integrations.dagster import WandbShard, wandb_assets

    assets = wandb_assets({"vision": WandbShard(["team/cnn", "team/vit"]),
                           "nlp": WandbShard(["nlp-team/llm"], api_key_name="nlp")},
                          destination="postgres", dataset_name="wandb_data")
    defs = Definitions(assets=[assets], resources={"dlt": DagsterDltResource()})

Each partition loads its shard's projects with its own dlt pipeline (`<name>_<shard>`: its own state) into
the one shared dataset, through `runner.run_load` — crash repair, the dataset lock that lets shards load at
once, every table created — instead of dagster-dlt's `run`, which drops the local state and calls plain
`pipeline.run`. Asset keys are `wandb/<resource>` (the resource's table; the tables it also writes are in
the description); metadata is dagster-dlt's. A partition whose load leaves W&B runs unfetched (they are
retried on the next load) fails, naming them, so Dagster's retries and alerts see it.

Needs the `dagster` extra (`pip install 'wandb-source[dagster]'`).
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dlt

try:
    from dagster import (
        AssetExecutionContext,
        AssetKey,
        AssetsDefinition,
        AssetSpec,
        Failure,
        MaterializeResult,
        StaticPartitionsDefinition,
    )
    from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
    from dagster_dlt.translator import DltResourceTranslatorData
except ImportError as e:  # pragma: no cover - the extra is not installed
    raise ImportError(f"{e.name} is missing: pip install 'wandb-source[dagster]'") from None

from ..load.runner import run_load
from ..source import wandb_source
from ..state import failed_runs
from ..tables import SENT_BY, TABLE_HINTS

# the resources `wandb_source` loads (the assets), in its order; tests/test_dagster.py checks them against it
RESOURCES = ("projects", "runs", "history", "system_metrics", "run_metadata", "artifacts", "sweeps",
             "logged_tables")


@dataclass(frozen=True)
class WandbShard:
    """What one partition loads: `projects` (`entity/project` or names in `entity`), with the API key of
    `api_key` or, by name, the secret `[sources.wandb.shards.<api_key_name>] api_key` (else the default key:
    `[sources.wandb] api_key`, `WANDB_API_KEY`, netrc). `options`: any other `wandb_source` argument."""

    projects: Sequence[str]
    entity: str | None = None
    api_key: str | None = None
    api_key_name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def source(self, **defaults: Any) -> Any:
        key = self.api_key or (dlt.secrets.get(f"sources.wandb.shards.{self.api_key_name}.api_key")
                               if self.api_key_name else None)
        if self.api_key_name and not key:
            raise Failure(f"no API key for shard key {self.api_key_name!r}: set api_key under "
                          f"[sources.wandb.shards.{self.api_key_name}] in .dlt/secrets.toml or "
                          f"SOURCES__WANDB__SHARDS__{self.api_key_name.upper()}__API_KEY")
        arguments = {**defaults, **self.options, "projects": list(self.projects)}
        if self.entity:
            arguments["entity"] = self.entity
        if key:
            arguments["api_key"] = key
        return wandb_source(**arguments)


class WandbTranslator(DagsterDltTranslator):
    """Asset `wandb/<resource>`, described by the tables the resource writes."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> AssetSpec:
        spec = super().get_asset_spec(data)
        name = data.resource.name if data.resource is not None else "wandb"
        written = [t for t in TABLE_HINTS if name in SENT_BY.get(t, (t,))]
        return spec.replace_attributes(key=AssetKey(["wandb", name]), deps=[],
                                       description=f"W&B `{name}`: tables {', '.join(written)}")


@dlt.source(name="wandb")
def _asset_shape() -> Any:
    """Resources named as `wandb_source`'s, for asset definitions: building those asks W&B nothing."""
    return [dlt.resource([], name=name) for name in RESOURCES]


def wandb_assets(shards: Mapping[str, WandbShard], destination: Any, dataset_name: str = "wandb_data",
                 name: str = "wandb", group_name: str | None = "wandb", **source_options: Any) -> AssetsDefinition:
    """Assets of every `wandb_source` resource, partitioned by `shards` (partition key = shard name), loaded
    into `destination` (a dlt destination name or factory) and `dataset_name`; `source_options` go to every
    shard's `wandb_source` (`base_url`, `max_workers`, ...)."""
    if not shards:
        raise ValueError("wandb_assets needs at least one shard, e.g. {'all': WandbShard(['my-team/my-project'])}")
    translator = WandbTranslator()
    shape = dlt.pipeline(f"{name}_assets", destination=destination, dataset_name=dataset_name)

    @dlt_assets(dlt_source=_asset_shape(), dlt_pipeline=shape, name=name, group_name=group_name,
                partitions_def=StaticPartitionsDefinition(sorted(shards)), dagster_dlt_translator=translator)
    def wandb_tables(context: AssetExecutionContext, dlt: DagsterDltResource) -> Iterator[MaterializeResult[Any]]:
        yield from _load_shard(context, dlt, shards[context.partition_key], f"{name}_{context.partition_key}",
                               destination, dataset_name, source_options)

    return wandb_tables


def _load_shard(context: AssetExecutionContext, dagster_dlt: DagsterDltResource, shard: WandbShard, pipeline_name: str,
                destination: Any, dataset_name: str, source_options: Mapping[str, Any]) -> Iterator[MaterializeResult[Any]]:
    """Load the selected assets' resources of one shard; a materialization per asset; fail on unfetched runs."""
    pipeline = dlt.pipeline(pipeline_name, destination=destination, dataset_name=dataset_name)
    selected = [key.path[-1] for key in context.selected_asset_keys]
    source = shard.source(**source_options).with_resources(*selected)
    info = run_load(pipeline, source)
    for resource in source.selected_resources.values():
        metadata = dagster_dlt.extract_resource_metadata(context, resource, info, pipeline) if info else {}
        yield MaterializeResult(asset_key=AssetKey(["wandb", resource.name]), metadata=metadata)
    failed = failed_runs(pipeline.state)
    if failed:
        listed = "; ".join(f"{run}: {reason}" for run, reason in sorted(failed.items())[:20])
        raise Failure(f"{pipeline_name}: {len(failed)} W&B run(s) could not be fetched and will be retried on the "
                      f"next load: {listed}")
