"""Load W&B into the destination configured in .dlt/config.toml (DuckDB by default).

    python pipelines/wandb_pipeline.py           # uses [sources.wandb] and [pipelines.wandb_pipeline]
    python pipelines/wandb_pipeline.py --demo    # no account needed: the bundled W&B emulator
    python pipelines/wandb_pipeline.py --offline-dir ./wandb   # local run logs, no server at all

Pipeline `wandb_pipeline`, dataset `wandb_data`. Exit code 0 on success, 1 on a failed load (one
readable message), 2 when the load succeeded but some runs could not be fetched (they are retried
next time).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # .dlt/ and the DuckDB file live in the project folder

import dlt  # noqa: E402
from dlt.pipeline.exceptions import PipelineStepFailed  # noqa: E402

from wandb_source import WandbSourceError, wandb_source  # noqa: E402
from wandb_source.offline import wandb_offline_source  # noqa: E402
from wandb_source.runner import destination_name, run_load  # noqa: E402

PIPELINE_NAME, DATASET_NAME = "wandb_pipeline", "wandb_data"
TABLES = ("projects", "runs", "run_config", "run_summary", "history", "history_long", "system_metrics",
          "system_metrics_long", "sweeps")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true",
                        help="start the bundled W&B emulator with sample data and load it (no account needed)")
    parser.add_argument("--offline-dir", metavar="DIR",
                        help="load the W&B run logs (run-<id>.wandb) under DIR instead of the W&B API: no server, "
                             "no key (also [sources.wandb] offline_dir)")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on failure")
    return parser.parse_args(argv)


def start_demo_server():
    """The W&B emulator from tests/ with the demo dataset, on a free 127.0.0.1 port."""
    from tests.wandb_emulator import DatasetSpec, Emulator

    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    emulator = Emulator(DatasetSpec()).start()
    print(f"W&B emulator with sample data at {emulator.url}")
    return emulator


def make_pipeline() -> dlt.Pipeline:
    return dlt.pipeline(PIPELINE_NAME, dataset_name=DATASET_NAME, progress="log")


def print_summary(pipeline: dlt.Pipeline, seconds: float) -> int:
    normalized = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    counts = normalized.row_counts if normalized else {}
    state = pipeline.state.get("sources", {}).get("wandb", {}).get("resources", {})
    print(f"\nLoaded into {destination_name(pipeline)} dataset {DATASET_NAME} in {seconds:.1f}s:")
    for table in TABLES:
        if counts.get(table):
            print(f"  {table:<22} {counts[table]:>10,} rows")
    if not any(counts.get(t) for t in ("runs", "history", "system_metrics")):
        print("  nothing new: every run is up to date")
    failed = {**state.get("history", {}).get("failed", {}), **state.get("system_metrics", {}).get("failed", {})}
    if failed:
        print(f"\n{len(failed)} run(s) could not be fetched and will be retried on the next load:", file=sys.stderr)
        for key, reason in sorted(failed.items()):
            print(f"  {key}: {reason}", file=sys.stderr)
        return 2
    return 0


def explain(error: BaseException) -> str:
    """One readable paragraph: the source's own message when there is one."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, WandbSourceError):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    if "Out of Memory Error" in str(error):
        return ("DuckDB ran out of memory while loading. Raise its limit: under "
                "[destination.duckdb.credentials] in .dlt/secrets.toml set global_config = "
                '{memory_limit = "4GB"}, or set DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG=\'{"memory_limit": "4GB"}\'. '
                "Run the pipeline again afterwards: the interrupted load is finished first, nothing is lost.")
    return f"{type(error).__name__}: {error}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    emulator = start_demo_server() if args.demo else None
    started = time.monotonic()
    try:
        offline_dir = args.offline_dir or dlt.config.get("sources.wandb.offline_dir")
        if emulator is not None:
            source = wandb_source(entity="emulator", base_url=emulator.url, api_key=emulator.api_key)
        elif offline_dir:
            source = wandb_offline_source(offline_dir)
        else:
            source = wandb_source()
        pipeline = make_pipeline()
        run_load(pipeline, source)
        return print_summary(pipeline, time.monotonic() - started)
    except (PipelineStepFailed, WandbSourceError, dlt.common.configuration.exceptions.ConfigFieldMissingException) as e:
        if args.verbose:
            raise
        print(f"wandb_pipeline failed: {explain(e)}", file=sys.stderr)
        return 1
    finally:
        if emulator is not None:
            emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
