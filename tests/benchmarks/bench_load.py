"""Load benchmark: this source vs the way people export today vs the network floor, side by side.

    .venv/bin/python tests/benchmarks/bench_load.py --size M              # 50 ms latency, parquet+live
    .venv/bin/python tests/benchmarks/bench_load.py --size M --live       # all history live (no exports)
    .venv/bin/python tests/benchmarks/bench_load.py --size S --rate-limit 10
    .venv/bin/python tests/benchmarks/bench_load.py --size S --rate-limit 100 --rate-window 60   # 100/minute
    .venv/bin/python tests/benchmarks/bench_load.py --size 100k-runs --resources runs,history --grow 100

Starts the W&B emulator in its own process (dataset, latency, rate limit), warms its caches, then runs
each scenario in a fresh process and prints one table and a summary line:

  ours-<dest>   wandb_source full load into duckdb / postgres / filesystem (delta)
  noop          the DuckDB pipeline again, nothing changed
  changed10     the DuckDB pipeline again after 10% of the runs gained 100 steps (--grow N: N runs)
  changed-floor the exact requests of changed10 replayed like floor: what the incremental load costs above
                its requests
  selected      (--select GLOBS) a full DuckDB load with history_include = GLOBS, for the saving
  baseline      wandb.Api().runs() + run.scan_history() per run, serially, dict rows into dlt/DuckDB
  floor         the exact requests of ours-duckdb replayed with the same concurrency, bodies discarded
  offline-duckdb  (--offline) the same sizes logged offline by the wandb SDK, loaded from the run logs

Not a test: numbers depend on the machine; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
API_KEY = "local-" + "e" * 40
PG_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/test"


# -- workers (each runs in its own process) ----------------------------------------------------

def _pipeline(destination: str, workdir: Path):
    import dlt

    dest = {"duckdb": lambda: dlt.destinations.duckdb(str(workdir / "bench.duckdb")),
            "postgres": lambda: dlt.destinations.postgres(PG_DSN),
            "filesystem": lambda: dlt.destinations.filesystem(bucket_url=(workdir / "files").as_uri())}[destination]()
    return dlt.pipeline(f"bench_{destination}", destination=dest, dataset_name=f"bench_{destination}",
                        pipelines_dir=str(workdir / "pipelines"))


def work_ours(args: argparse.Namespace) -> dict:
    """The load as `pipelines/wandb_pipeline.py` does it (`run_load`: recovery, load options, DuckDB memory)."""
    from wandb_source import wandb_source

    pipeline = _pipeline(args.destination, Path(args.workdir))
    selection: dict[str, Any] = {"history_include": args.select} if args.select else {}
    if args.requests_per_minute:
        selection["requests_per_minute"] = args.requests_per_minute
    source = wandb_source(entity="emulator", base_url=args.url, api_key=API_KEY, max_workers=args.workers,
                          **selection)
    if args.resources:
        source = source.with_resources(*args.resources)
    received = _count_bytes()
    result = timed_load(pipeline, source)
    return {**result, "mb": round(received[0] / 1e6, 1), **_state_bytes(pipeline)}


def _state_bytes(pipeline: Any) -> dict:
    """The pipeline's dlt state: bytes of the local state.json and of the destination's newest
    `_dlt_pipeline_state` row (compressed, as dlt stores it), and the runs it tracks."""
    from wandb_source.state import loaded_signatures

    out = {"state_local": (Path(pipeline.working_dir) / "state.json").stat().st_size,
           "tracked_runs": len(loaded_signatures(pipeline))}
    if pipeline.destination.destination_name != "filesystem":
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("_dlt_pipeline_state")
            found = client.execute_sql(f"SELECT state FROM {table} ORDER BY version DESC LIMIT 1")
            out["state_dest"] = len(found[0][0]) if found else 0
    return out


def _count_bytes() -> list[int]:
    """Bytes of every answer the source's client receives (bodies, after decompression)."""
    from wandb_source.api.client import WandbClient

    received, send = [0], WandbClient._send

    def counting(self: Any, method: str, url: str, operation: str, **kwargs: Any) -> Any:
        response = send(self, method, url, operation, **kwargs)
        received[0] += len(response.content)
        return response

    WandbClient._send = counting
    return received


def timed_load(pipeline: Any, source: Any) -> dict:
    """`run_load` with its phases: rows and runs loaded, seconds of extract, normalize, load."""
    from wandb_source.load.runner import run_load

    started = time.monotonic()
    run_load(pipeline, source)
    took = time.monotonic() - started
    normalized = pipeline.last_trace.last_normalize_info
    counts = normalized.row_counts if normalized else {}
    phases = {step.step: round((step.finished_at - step.started_at).total_seconds(), 2)
              for step in pipeline.last_trace.steps if step.step in ("normalize", "load")}
    phases["extract"] = round(took - sum(phases.values()), 2)  # extract is traced apart (see run_load)
    return {"rows": counts.get("history", 0), "runs": counts.get("runs", 0), "phases": phases}


def work_baseline(args: argparse.Namespace) -> dict:
    import dlt
    import wandb

    os.environ.update({"WANDB_BASE_URL": args.url, "WANDB_API_KEY": API_KEY, "WANDB_ERROR_REPORTING": "false",
                       "WANDB_CACHE_DIR": str(Path(args.workdir) / "wandb-cache")})
    api = wandb.Api(timeout=120)
    counted = {"rows": 0, "runs": 0}

    def history():
        for run in api.runs("emulator/demo", per_page=50):
            counted["runs"] += 1
            for row in run.scan_history(page_size=1000, use_cache=False):
                counted["rows"] += 1
                yield {"run_id": run.id, **row}

    pipeline = _pipeline("duckdb", Path(args.workdir))
    pipeline.run(dlt.resource(history, name="history"))
    return counted


def work_floor(args: argparse.Namespace) -> dict:
    """Replay: requests without a run first, in order; then each run's requests in order, runs in parallel."""
    log = json.loads(Path(args.requests).read_text())
    prelude, chains = [], {}
    for r in log:
        by_path = r["operation"] in ("parquet", "file")  # downloads: /<kind>/entity/project/run/name
        run = r["variables"].get("run") or (r["path"].split("/")[-2] if by_path else None)
        (chains.setdefault(run, []) if run else prelude).append(r)
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=args.workers + 4))
    auth = {"Authorization": "Basic " + __import__("base64").b64encode(f"api:{API_KEY}".encode()).decode(),
            "Content-Type": "application/json"}

    def send(r: dict) -> None:
        response = session.request(r["method"], args.url + r["path"], data=r["body"], headers=auth, timeout=120)
        _ = response.content

    for r in prelude:
        send(r)
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda chain: [send(r) for r in chain], chains.values()))
    return {"rows": 0, "runs": len(chains)}


def work_offline(args: argparse.Namespace) -> dict:
    """`pipelines/wandb_pipeline.py --offline-dir`: the run logs under workdir/logs into DuckDB."""
    from wandb_source.logs.source import wandb_offline_source

    logs = Path(args.workdir) / "logs"
    result = timed_load(_pipeline("duckdb", Path(args.workdir)), wandb_offline_source(str(logs)))
    megabytes = sum(p.stat().st_size for p in logs.rglob("*.wandb") if "latest-run" not in str(p)) / 1e6
    return {**result, "log_mb": round(megabytes, 1)}


SDK_LOGGING = """
import sys, wandb
runs, steps, metrics = map(int, sys.argv[1:4])
for r in range(runs):
    run = wandb.init(project="bench", entity="offline", id=f"run{r:05d}")
    for i in range(steps):
        run.log({f"train/m{j:03d}": (i * 0.001 + j + r) for j in range(metrics)})
    run.finish()
"""


def write_run_logs(args: argparse.Namespace, folder: Path) -> None:
    """Run logs of the size's runs x steps x metrics, written by the wandb SDK in offline mode."""
    from wandb_source.emulator.__main__ import SIZES

    size = SIZES[args.size]
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(folder), "WANDB_SILENT": "true",
           "WANDB_ERROR_REPORTING": "false", "WANDB_DISABLE_GIT": "true"}
    subprocess.run([sys.executable, "-c", SDK_LOGGING, str(size["runs"]), str(size["steps"]), str(size["metrics"])],
                   env=env, check=True)


WORKERS = {"ours": work_ours, "baseline": work_baseline, "floor": work_floor, "offline": work_offline}


def worker_main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    result = WORKERS[args.worker](args)
    result["wall"] = time.monotonic() - started
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


# -- the parent: emulator, scenarios, table ------------------------------------------------------

def start_emulator(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "wandb_source.emulator", "--port", "0", "--size", args.size,
           "--latency", str(args.latency), "--parquet-fraction", "0" if args.live else str(args.parquet_fraction)]
    if args.rate_limit:
        cmd += ["--rate-limit", str(args.rate_limit), "--rate-window", str(args.rate_window)]
    cmd += ["--profile", args.profile]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    url = json.loads(proc.stdout.readline())["url"]
    return proc, url


def control(url: str, action: str, body: dict | None = None) -> None:
    requests.post(f"{url}/_emulator/control/{action}", json=body or {}, timeout=3600).raise_for_status()


OURS_OPTIONS: dict[str, Any] = {}  # options every `ours` scenario gets (--requests-per-minute, --resources)


def run_scenario(url: str, worker: str, workdir: Path, **extra: Any) -> dict:
    requests.post(f"{url}/_emulator/control/clear_requests", json={}, timeout=60)
    cmd = [sys.executable, __file__, "--worker", worker, "--url", url, "--workdir", str(workdir)]
    for key, value in {**(OURS_OPTIONS if worker == "ours" else {}), **extra}.items():
        cmd += [f"--{key}", str(value)]
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false", "RUNTIME__LOG_LEVEL": "ERROR"}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{worker} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    statuses = requests.get(f"{url}/_emulator/requests/status", timeout=60).json()
    result["requests"] = sum(statuses.values())
    result["throttled"] = statuses.get("429", 0)
    spans = requests.get(f"{url}/_emulator/requests/span", timeout=60).json()
    result["span"], result["refused_span"] = spans["all"], spans["refused"]
    result["light_requests"] = spans["light_requests"]  # the quota spent, in light requests
    print(f"  {worker} {extra.get('destination', '')}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def grow(url: str, count: int | None) -> int:
    """Append 100 steps to `count` runs spread over the project, every 10th run when None (as still-training
    runs would)."""
    query = """query Runs($cursor: String) { project(name: "demo", entityName: "emulator") {
      runs(first: 1000, after: $cursor) { edges { node { name historyKeys } } pageInfo { endCursor hasNextPage } } } }"""
    auth = {"Authorization": "Basic " + __import__("base64").b64encode(f"api:{API_KEY}".encode()).decode()}
    runs, variables = [], {}
    while True:  # empty pages may say more follow (the pessimistic profile): follow them
        page = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, headers=auth,
                             timeout=600).json()["data"]["project"]["runs"]
        runs += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        variables = {"cursor": page["pageInfo"]["endCursor"]}
    step = 10 if count is None else max(1, len(runs) // count)
    grown = runs[::step][:count] if count else runs[::step]
    for node in grown:
        last = node["historyKeys"]["lastStep"]
        rows = [{"_step": last + i, "_runtime": float(last + i), "_timestamp": 1.8e9 + i, "train/loss": 0.5 / i}
                for i in range(1, 101)]
        control(url, "append_steps", {"entity": "emulator", "project": "demo", "run": node["name"], "rows": rows})
    return len(grown)


def bench(args: argparse.Namespace) -> list[tuple[str, dict]]:
    if args.requests_per_minute:
        OURS_OPTIONS["requests-per-minute"] = args.requests_per_minute
    if args.resources:
        OURS_OPTIONS["resources"] = ",".join(args.resources)
    proc, url = start_emulator(args)
    results: list[tuple[str, dict]] = []
    root = Path(tempfile.mkdtemp(prefix="wandb-bench-"))
    try:
        started = time.monotonic()
        control(url, "warm")
        print(f"emulator {url}: size {args.size}, latency {args.latency}s, warmed in {time.monotonic() - started:.0f}s",
              file=sys.stderr)
        for destination in args.destinations:
            results.append((f"ours-{destination}", run_scenario(url, "ours", root / destination,
                                                                 destination=destination, workers=args.workers)))
            if destination == "duckdb":
                log = requests.get(f"{url}/_emulator/requests/full", timeout=600).json()
                (root / "requests.json").write_text(json.dumps(log))
                if args.select:  # the same load with only the keys matching --select
                    results.append(("selected", run_scenario(url, "ours", root / "selected", destination=destination,
                                                             workers=args.workers, select=",".join(args.select))))
                results.append(("noop", run_scenario(url, "ours", root / destination, destination=destination,
                                                     workers=args.workers)))
                grown = grow(url, args.grow)
                control(url, "warm")
                results.append((f"changed{'10' if args.grow is None else f'-{grown}-runs'}",
                                run_scenario(url, "ours", root / destination, destination=destination,
                                             workers=args.workers)))
                log = requests.get(f"{url}/_emulator/requests/full", timeout=600).json()
                (root / "changed.json").write_text(json.dumps(log))
        if "floor" not in args.skip and (root / "requests.json").exists():
            results.append(("floor", run_scenario(url, "floor", root / "floor", requests=root / "requests.json",
                                                  workers=args.workers)))
        if "changed-floor" not in args.skip and (root / "changed.json").exists():
            results.append(("changed-floor", run_scenario(url, "floor", root / "floor",
                                                          requests=root / "changed.json", workers=args.workers)))
        if "baseline" not in args.skip:
            results.append(("baseline", run_scenario(url, "baseline", root / "baseline")))
        if args.offline:
            started = time.monotonic()
            write_run_logs(args, root / "offline" / "logs")
            print(f"  run logs written by the SDK in {time.monotonic() - started:.0f}s", file=sys.stderr)
            results.append(("offline-duckdb", run_scenario(url, "offline", root / "offline")))
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)
        _drop_postgres(args.destinations)
    return results


def _drop_postgres(destinations: list[str]) -> None:
    if "postgres" in destinations:
        import psycopg2

        with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
            cur.execute("drop schema if exists bench_postgres cascade; drop schema if exists bench_postgres_staging cascade")


def report(args: argparse.Namespace, results: list[tuple[str, dict]]) -> None:
    print(f"\n## size {args.size}, latency {args.latency * 1000:.0f} ms, "
          f"{'all live' if args.live else f'{args.parquet_fraction:.0%} of finished runs exported to parquet'}"
          f"{f', rate limit {args.rate_limit:g} per {args.rate_window:g} s' if args.rate_limit else ''}"
          f", {args.workers} workers"
          f"{f', requests_per_minute {args.requests_per_minute:g}' if args.requests_per_minute else ''}\n")
    print("| scenario | wall s | history rows | rows/s | runs | requests (429) | requests/run | MB received "
          "| peak RSS MB | state KB per 1,000 runs (local / destination) | span s (of 429s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results:
        rate = r["rows"] / r["wall"] if r["rows"] else 0
        received = f"{r['mb']:,.1f}" if "mb" in r else ""
        per_run = f"{r['requests'] / r['runs']:.2f}" if r["runs"] else ""
        state = ""
        if r.get("tracked_runs"):
            per_k = 1000 / r["tracked_runs"] / 1024
            state = f"{r['state_local'] * per_k:,.0f} / " + (f"{r['state_dest'] * per_k:,.0f}" if "state_dest" in r else "-")
        print(f"| {name} | {r['wall']:.1f} | {r['rows']:,} | {rate:,.0f} | {r['runs']:,} | "
              f"{r['requests']:,} ({r['throttled']}) | {per_run} | {received} | {r['rss_mb']:.0f} | {state} | "
              f"{r.get('span', 0):.1f} ({r.get('refused_span', 0):.1f}) |")
    by = dict(results)
    ratios = []
    full = by.get("ours-duckdb")
    if full:
        for name, label in (("baseline", "baseline/ours"), ("floor", "ours/floor"), ("ours-postgres", "postgres/duckdb"),
                            ("ours-filesystem", "filesystem/duckdb"), ("noop", "noop/full"),
                            ("changed10", "changed10/full"), ("selected", "selected/full")):
            if name in by:
                value = by[name]["wall"] / full["wall"] if name != "floor" else full["wall"] / by[name]["wall"]
                ratios.append(f"{label} {value:.2f}")
        if args.rate_limit:  # the measure: first to last request against what the limit allows
            # (the quota spent: under the pessimistic profile a heavy read costs several light ones)
            ideal = full["light_requests"] / (args.rate_limit / args.rate_window)
            ratios.append(f"span/(quota/rate) {full['span'] / ideal:.2f}, wall/(quota/rate) "
                          f"{full['wall'] / ideal:.2f}, 429s {full['throttled']} within {full['refused_span']:.1f} s")
    changed = next((r for name, r in results if name.startswith("changed") and name != "changed-floor"), None)
    if changed and "changed-floor" in by:
        ratios.append(f"changed - changed-floor {changed['wall'] - by['changed-floor']['wall']:+.1f} s")
    offline = by.get("offline-duckdb")
    if offline:
        ratios.append(f"offline {offline['log_mb'] / offline['wall']:.1f} MB/s")
        if full:
            ratios.append(f"offline/ours {offline['wall'] / full['wall']:.2f}")
    print("\nsummary: " + ", ".join(ratios))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="M", choices=["S", "M", "L", "wide", "many-runs", "5M-rows", "100k-runs", "demo"])
    p.add_argument("--latency", type=float, default=0.05, help="seconds per request (default 0.05)")
    p.add_argument("--rate-limit", type=float, help="requests per window the emulator allows before 429")
    p.add_argument("--rate-window", type=float, default=1.0, help="seconds of the rate-limit window (default 1)")
    p.add_argument("--grow", type=int, help="runs that gain 100 steps before `changed` (default: every 10th)")
    p.add_argument("--resources", type=lambda s: s.split(","), default=[],
                   help="load only these resources (e.g. runs,history)")
    p.add_argument("--live", action="store_true", help="no parquet exports: all history through live pages")
    p.add_argument("--profile", default="pessimistic", choices=["pessimistic", "convenient", "sdk"],
                   help="the emulator's reading of W&B's undocumented behaviour (default pessimistic)")
    p.add_argument("--parquet-fraction", type=float, default=0.9, help="share of finished runs exported (default 0.9)")
    p.add_argument("--destinations", type=lambda s: s.split(","), default=["duckdb", "postgres", "filesystem"])
    p.add_argument("--skip", type=lambda s: s.split(","), default=[], help="scenarios to leave out: baseline,floor,changed-floor")
    p.add_argument("--workers", type=int, default=8, help="runs fetched at once (default 8)")
    p.add_argument("--requests-per-minute", type=float, help="the source's requests_per_minute (default: no cap)")
    p.add_argument("--offline", action="store_true",
                   help="also write the dataset as offline run logs with the wandb SDK and load them (--offline-dir)")
    # worker mode (internal)
    p.add_argument("--select", type=lambda s: s.split(","), default=[],
                   help="also load with history_include set to these globs (comma-separated), e.g. 'train/*'")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--destination", default="duckdb", help=argparse.SUPPRESS)
    p.add_argument("--requests", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0
    report(args, bench(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
