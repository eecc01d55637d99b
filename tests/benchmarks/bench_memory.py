"""Where a load's memory peaks: extract, normalize and load run one after another, peak RSS after each.

    .venv/bin/python tests/benchmarks/bench_memory.py --runs 10000            # runs, history, both

Starts the W&B emulator in its own process (RUNS runs x 3 steps x 2 metrics, history all live), then loads
each resource selection into a fresh DuckDB pipeline in a fresh process. Not a test: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "local-" + "e" * 40


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(url: str, resources: list[str]) -> None:
    import dlt

    from wandb_source import wandb_source

    folder = tempfile.mkdtemp(prefix="wandb-memory-")
    pipeline = dlt.pipeline("bench_memory", destination=dlt.destinations.duckdb(f"{folder}/bench.duckdb"),
                            dataset_name="wandb_data", pipelines_dir=folder)
    source = wandb_source(entity="emulator", base_url=url, api_key=API_KEY).with_resources(*resources)
    started, imported = time.monotonic(), _peak_mb()
    pipeline.extract(source)
    extracted = _peak_mb()
    pipeline.normalize()
    normalized = _peak_mb()
    pipeline.load()
    print(f"| {','.join(resources)} | {imported:.0f} | {extracted:.0f} | {normalized:.0f} | {_peak_mb():.0f} | "
          f"{time.monotonic() - started:.0f} |", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="10000")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1].split(","))
        return 0
    emulator = subprocess.Popen([sys.executable, "-m", "wandb_source.emulator", "--port", "0", "--size", "many-runs",
                                 "--runs", args.runs, "--steps", "3", "--metrics", "2", "--parquet-fraction", "0"],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(emulator.stdout.readline())["url"]  # type: ignore[union-attr]
        print(f"\n{args.runs} runs x 3 steps; peak RSS in MB after each step\n")
        print("| resources | imported | extract | normalize | load | seconds |\n|---|---:|---:|---:|---:|---:|", flush=True)
        for resources in ("runs", "history", "runs,history"):
            subprocess.run([sys.executable, __file__, "--worker", url, resources], cwd=ROOT, check=True,
                           env={"WANDB_ERROR_REPORTING": "false", "RUNTIME__LOG_LEVEL": "ERROR",
                                "RUNTIME__DLTHUB_TELEMETRY": "false", "PATH": "/usr/bin:/bin",
                                "PYTHONPATH": str(ROOT)})
    finally:
        emulator.terminate()
        emulator.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
