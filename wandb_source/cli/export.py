"""Write the loaded W&B dataset as the parquet files of the exporter this project replaces:
runs_metadata.parquet, runs_metadata_{config,summary,metadata,system_metrics,system_attrs,sweep_info}.parquet
and runs_history.parquet (see wandb_source/export.py for their columns).

    wandb-source export                 # from the dataset `wandb-source load` loaded, into ./data
    wandb-source export --out exports --destination postgres --dataset wandb_data

(In a checkout, `python pipelines/export_parquet.py` takes the same options.)

Reads from whichever destination the pipeline loads into (DuckDB, Postgres, parquet/delta files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dlt

from ..readback.export import export_parquet
from .load import add_loaded_dataset_options, on_loaded


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data", help="folder for the files (default: ./data)")
    add_loaded_dataset_options(parser)
    return parser


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    return build_parser(prog).parse_args(argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    def export(pipeline: dlt.Pipeline, out: Path) -> int:
        for name, count in export_parquet(pipeline, out).items():
            print(f"  {out / name}  {count:>12,} rows")
        return 0

    return on_loaded(parse_args(argv, prog), "runs", "export", export)


if __name__ == "__main__":
    sys.exit(main())
