"""Run the source into a pipeline the way `wandb-source load` does.

`run_load(pipeline, source)` is `pipeline.run(source)` plus what a scheduled loader needs:

- a load that a killed process left behind is repaired (`dlt_internals.py`) and finished first — plain
  `pipeline.run` would finish it and stop without extracting anything new;
- a destination that lost the dataset (DuckDB file deleted, schema dropped) makes it load everything
  again, instead of trusting the local state and loading nothing;
- shards loading one dataset at once take turns writing it (`shards.py`), and a schema change another
  pipeline made first (a table or column created in between) is retried, as dlt advises;
- per-destination options (`load_options`: Delta tables on the filesystem, parquet via ADBC on Postgres);
- every table the source's resources may send exists after the load, with no rows if W&B had none
  (`empty_tables.py`);
- DuckDB's memory is capped for each load by the width of the widest table, decided between
  extract and load (extract learns the widths of Arrow tables — history, system_metrics, the wide
  ones; dict tables are typed at normalize), for that load only.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from typing import Any, Optional

import dlt
from dlt.common import logger
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.pipeline.helpers import retry_schema_update

from .destination import duckdb_memory_limit, load_options
from .dlt_internals import (
    duckdb_global_config,
    forget_lost_destination,
    repair_interrupted_normalize,
    reset_interrupted_merges,
    user_set_duckdb_global_config,
)
from .empty_tables import create_missing_tables
from .shards import dataset_lock, destination_name, run_lock


def run_load(pipeline: dlt.Pipeline, source: Any, refresh: Optional[str] = None) -> Any:
    """Finish an interrupted load, then extract, normalize and load `source`; returns the LoadInfo
    (None when nothing was extracted). Raises on failed jobs. `refresh="drop_sources"` drops the
    source's tables and state first (dlt's refresh modes), so everything is loaded again."""
    with run_lock(pipeline):
        return _run_load(pipeline, source, refresh)


def _run_load(pipeline: dlt.Pipeline, source: Any, refresh: Optional[str]) -> Any:
    if pipeline.has_pending_data:
        logger.warning("finishing the load that was interrupted last time")
        repair_interrupted_normalize(pipeline)
        reset_interrupted_merges(pipeline)
    else:
        forget_lost_destination(pipeline)
    _normalize_and_load(pipeline)  # also syncs state with the destination, once
    pipeline.extract(source, refresh=refresh, **load_options(destination_name(pipeline)))  # type: ignore[arg-type]
    info = _normalize_and_load(pipeline)
    with dataset_lock(pipeline):
        create_missing_tables(pipeline, _resource_names(source))
    return info


SCHEMA_RACE_RETRIES = 5


def _normalize_and_load(pipeline: dlt.Pipeline) -> Any:
    """Normalize and load the pending packages, if any. A schema update that failed because another
    pipeline changed the same tables meanwhile (shards racing to create a table or add a column) is
    retried: dlt reads the destination again and applies only what is still missing."""
    for attempt in range(SCHEMA_RACE_RETRIES + 1):
        try:
            with dataset_lock(pipeline), duckdb_sizing(pipeline):
                info = pipeline.run()  # no data: normalizes and loads the pending packages, if any
            break
        except PipelineStepFailed as e:
            if attempt == SCHEMA_RACE_RETRIES or not retry_schema_update()(e):
                raise
            logger.warning("the schema of %s changed under this load (another pipeline loading the same "
                           "dataset?): loading again (%s)", pipeline.dataset_name, e.__context__ or e)
            time.sleep(0.5 * (attempt + 1))
    if info is not None:
        info.raise_on_failed_jobs()
    return info


def duckdb_sizing(pipeline: dlt.Pipeline) -> Any:
    """For the load inside the block: DuckDB's memory capped by the widest table (`duckdb_memory_limit`),
    unless the user set `global_config` under [destination.duckdb.credentials] or in the environment."""
    if destination_name(pipeline) != "duckdb" or not pipeline.default_schema_name or user_set_duckdb_global_config():
        return nullcontext()
    return duckdb_global_config(json.dumps({"memory_limit": duckdb_memory_limit(pipeline.default_schema)}))


def _resource_names(data: Any) -> list[str]:
    """The resources `data` (a source, a resource, or a list of resources) runs."""
    if hasattr(data, "selected_resources"):
        return list(data.selected_resources)
    items = data if isinstance(data, (list, tuple)) else [data]
    return [item.name for item in items if hasattr(item, "name")]
