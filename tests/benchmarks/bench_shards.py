"""Shards benchmark: one pipeline for every project vs one shard per project, one after another and all at once,
each into its own fresh dataset of one Postgres database (or DuckDB file), against the emulator.

    .venv/bin/python tests/benchmarks/bench_shards.py                     # 4 projects x 40 runs, 50 ms latency
    .venv/bin/python tests/benchmarks/bench_shards.py --projects 2 --repeat 3 --destination duckdb

Each load is `pipelines/wandb_pipeline.py` in its own process (what a scheduler starts); the emulator runs in
its own process too. Prints wall seconds per scenario (median of --repeat) and how often a shard waited for the
dataset lock. Not a test: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
API_KEY = "local-" + "e" * 40
PG_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/test"


def start_emulator(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    projects = ",".join(f"p{i}" for i in range(args.projects))
    cmd = [sys.executable, "-m", "wandb_source.emulator", "--port", "0", "--projects", projects,
           "--runs", str(args.runs), "--steps", str(args.steps), "--latency", str(args.latency), "--api-key", API_KEY]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            return proc, json.loads(line)["url"]
    raise RuntimeError("the emulator did not start")


def load(work: Path, url: str, dataset: str, pipeline: str, projects: list[str], destination: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    env.update({"DLT_DATA_DIR": str(work / "dlt"), "WANDB_BASE_URL": url, "WANDB_API_KEY": API_KEY,
                "WANDB_ERROR_REPORTING": "false", "PYTHONPATH": str(ROOT), "RUNTIME__LOG_LEVEL": "WARNING",
                "DESTINATION__POSTGRES__CREDENTIALS": PG_DSN,
                "DESTINATION__DUCKDB__CREDENTIALS": str(work / "shared.duckdb")})
    cmd = [sys.executable, str(ROOT / "pipelines" / "wandb_pipeline.py"), "--destination", destination,
           "--dataset", dataset, "--pipeline-name", pipeline, "--progress", "none"]
    for project in projects:
        cmd += ["--project", f"emulator/{project}"]
    return subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen]) -> int:
    """Wait for every load; returns how many waited for the dataset lock. Raises on a failed load."""
    waits = 0
    for proc in procs:
        _, err = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"a load failed ({proc.returncode}): {err[-2000:]}")
        waits += err.count("another pipeline is loading into")
    return waits


def scenario(name: str, args: argparse.Namespace, url: str, work: Path) -> tuple[float, int, int]:
    projects = [f"p{i}" for i in range(args.projects)]
    dataset = f"bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    if name == "one-pipeline":
        waits = finish([load(work, url, dataset, f"one_{dataset}", projects, args.destination)])
    elif name == "shards-serial":
        waits = sum(finish([load(work, url, dataset, f"{p}_{dataset}", [p], args.destination)]) for p in projects)
    else:
        waits = finish([load(work, url, dataset, f"{p}_{dataset}", [p], args.destination) for p in projects])
    seconds, rows = time.perf_counter() - started, -1
    if args.destination == "postgres":
        with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {dataset}.history")
            rows = cur.fetchone()[0]
            cur.execute(f"SELECT nspname FROM pg_namespace WHERE nspname LIKE '{dataset}%'")
            for (schema,) in cur.fetchall():
                cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return seconds, waits, rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--projects", type=int, default=4)
    p.add_argument("--runs", type=int, default=40, help="runs per project (default 40)")
    p.add_argument("--steps", type=int, default=200, help="steps per run (default 200)")
    p.add_argument("--latency", type=float, default=0.05, help="seconds per request (default 0.05)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--destination", choices=["postgres", "duckdb"], default="postgres")
    args = p.parse_args()
    emulator, url = start_emulator(args)
    try:
        results: dict[str, list[tuple[float, int, int]]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for attempt in range(args.repeat):  # interleaved, so that machine noise hits every scenario
                for name in ("one-pipeline", "shards-serial", "shards-parallel"):
                    work = Path(tmp) / f"{name}-{attempt}"
                    work.mkdir()
                    results.setdefault(name, []).append(scenario(name, args, url, work))
        base = statistics.median(r[0] for r in results["one-pipeline"])
        print(f"{args.projects} projects x {args.runs} runs x {args.steps} steps, {args.latency * 1000:.0f} ms per "
              f"request, into {args.destination}, median of {args.repeat}:")
        print(f"{'scenario':<18}{'wall s':>9}{'vs one':>8}{'lock waits':>12}{'history rows':>14}")
        for name, runs in results.items():
            wall = statistics.median(r[0] for r in runs)
            rows = sorted({r[2] for r in runs})
            print(f"{name:<18}{wall:>9.1f}{wall / base:>8.2f}{sum(r[1] for r in runs):>12}{rows!s:>14}")
    finally:
        emulator.terminate()


if __name__ == "__main__":
    main()
