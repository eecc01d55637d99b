"""A dlt source for Weights & Biases: projects, runs, config, summaries, full-resolution history,
system metrics and sweeps, loaded incrementally into any dlt destination.

    import dlt
    from wandb_source import wandb_source

    pipeline = dlt.pipeline("wandb_pipeline", destination="duckdb", dataset_name="wandb_data")
    pipeline.run(wandb_source(entity="my-team", projects=["my-project"]))

The package, by concern (README, "Architecture"): `source` wires the dlt resources; `api` talks to W&B;
`logs` reads W&B run logs with no server; `convert` turns W&B payloads into rows and Arrow tables; `load`
runs pipelines safely; `readback` reads a loaded dataset back; `state` is the typed per-run state.
"""

from .api.client import WandbClient
from .exceptions import (
                         AuthenticationError,
                         ConfigurationError,
                         FilterRejectedError,
                         NotFoundError,
                         ServerError,
                         WandbSourceError,
)
from .logs.source import wandb_offline_source
from .source import wandb_source

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "FilterRejectedError",
    "NotFoundError",
    "ServerError",
    "WandbClient",
    "WandbSourceError",
    "wandb_offline_source",
    "wandb_source",
]
