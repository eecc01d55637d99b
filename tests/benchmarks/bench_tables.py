"""Logged tables benchmark: what loading every run's `wandb.Table`s adds to a load, against the emulator.

    .venv/bin/python tests/benchmarks/bench_tables.py                      # 40 runs x 1,000 steps, 50 ms latency
    .venv/bin/python tests/benchmarks/bench_tables.py --runs 100 --repeat 3

Each run logs an `eval/predictions` table (8 rows) every 50 steps (`DatasetSpec(tables=True)`). Scenarios, each
into a fresh DuckDB file, side by side in one process: every resource but `logged_tables`; every resource;
`logged_tables` alone; `logged_tables` alone with `last_steps=1` (the last version of each table); `logged_tables`
alone where each table also has an image column (`table_images`: every version's artifact copy is read for the
images' references); and a second load of every resource with nothing new. Prints wall seconds (median of
--repeat), requests and table rows.
Not a test: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")

import dlt  # noqa: E402

from wandb_source import wandb_source  # noqa: E402
from wandb_source.emulator import DatasetSpec, Emulator  # noqa: E402

ALL = ("projects", "runs", "history", "system_metrics", "run_metadata", "artifacts", "sweeps", "logged_tables")


def one_load(emu: Emulator, work: Path, resources: tuple[str, ...], again: bool = False, **options) -> tuple:
    pipeline = dlt.pipeline(f"bench_{len(list(work.iterdir()))}", destination=dlt.destinations.duckdb(
        str(work / f"{time.monotonic_ns()}.duckdb")), dataset_name="wandb_data", pipelines_dir=str(work / "p"))

    def run() -> None:
        source = wandb_source(entity="emulator", base_url=emu.url, api_key=emu.api_key, **options)
        pipeline.run(source.with_resources(*resources)).raise_on_failed_jobs()

    if again:
        run()
    emu.faults.clear_log()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    counts = pipeline.last_trace.last_normalize_info.row_counts if pipeline.last_trace.last_normalize_info else {}
    table_rows = sum(n for t, n in counts.items() if t.startswith("wandb_table__"))
    return seconds, len(emu.faults.requests()), Counter(r.operation for r in emu.faults.requests()), table_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    emu = Emulator(DatasetSpec(runs=args.runs, steps=args.steps, tables=True), latency=args.latency).start()
    with_images = Emulator(DatasetSpec(runs=args.runs, steps=args.steps, tables=True, table_images=True),
                           latency=args.latency).start()
    scenarios = {
        "every resource but logged_tables": dict(resources=tuple(r for r in ALL if r != "logged_tables")),
        "every resource": dict(resources=ALL),
        "logged_tables alone": dict(resources=("logged_tables",)),
        "logged_tables alone, last_steps=1": dict(resources=("logged_tables",), last_steps=1),
        "logged_tables alone, an image column": dict(resources=("logged_tables",), emu=with_images),
        "every resource, second load (nothing new)": dict(resources=ALL, again=True),
    }
    results: dict[str, list[tuple]] = {name: [] for name in scenarios}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):  # interleaved, so that the machine's noise hits every scenario alike
            for name, options in scenarios.items():
                work = Path(tmp) / f"{i}-{len(results[name])}-{abs(hash(name))}"
                work.mkdir()
                chosen = dict(options)
                results[name].append(one_load(chosen.pop("emu", emu), work, **chosen))
    emu.stop()
    with_images.stop()
    base = statistics.median(r[0] for r in results["every resource but logged_tables"])
    print(f"{args.runs} runs x {args.steps} steps, a table every 50 steps, {args.latency * 1000:.0f} ms per request, "
          f"median of {args.repeat}")
    print(f"  {'scenario':<44} {'seconds':>8} {'ratio':>6} {'requests':>9} {'table rows':>11}  requests by operation")
    for name, runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        _, requests, operations, table_rows = runs[-1]
        top = ", ".join(f"{op} {n}" for op, n in operations.most_common(4))
        print(f"  {name:<44} {seconds:>8.2f} {seconds / base:>6.2f} {requests:>9,} {table_rows:>11,}  {top}")


if __name__ == "__main__":
    main()
