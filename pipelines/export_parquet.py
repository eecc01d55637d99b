"""Write the loaded W&B dataset as the parquet files of the exporter this project replaces:
runs_metadata.parquet, runs_metadata_{config,summary,metadata,system_metrics,system_attrs,sweep_info}.parquet
and runs_history.parquet (see wandb_source/export.py for their columns).

    python pipelines/export_parquet.py                 # from the dataset wandb_pipeline.py loaded, into ./data
    python pipelines/export_parquet.py --out exports --destination postgres --dataset wandb_data

Reads from whichever destination the pipeline loads into (DuckDB, Postgres, parquet/delta files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dlt  # noqa: E402
from wandb_pipeline import add_loaded_dataset_options, on_loaded  # noqa: E402 - also puts the project on sys.path

from wandb_source.readback.export import export_parquet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data", help="folder for the files (default: data/ in the project)")
    add_loaded_dataset_options(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    def export(pipeline: dlt.Pipeline, out: Path) -> int:
        for name, count in export_parquet(pipeline, out).items():
            print(f"  {out / name}  {count:>12,} rows")
        return 0

    return on_loaded(parse_args(argv), "runs", "export_parquet", export)


if __name__ == "__main__":
    sys.exit(main())
