"""Run the W&B emulator standalone: `python -m wandb_source.emulator --help`."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys

from .generator import DatasetSpec
from .profile import PROFILES, default_profile
from .server import DEFAULT_API_KEY, Emulator

SIZES = {
    "demo": dict(runs=12, steps=200, metrics=8, tables=True, table_images=True),
    "S": dict(runs=50, steps=1000, metrics=20, awkward=False, vary_steps=False),
    "M": dict(runs=200, steps=2000, metrics=50, awkward=False, vary_steps=False),
    "L": dict(runs=800, steps=2000, metrics=50, awkward=False, vary_steps=False),
    "wide": dict(runs=20, steps=5000, metrics=500, awkward=False, vary_steps=False),
    "many-runs": dict(runs=10_000, steps=20, metrics=10, awkward=False, vary_steps=False),
    "5M-rows": dict(runs=1000, steps=5000, metrics=20, awkward=False, vary_steps=False),
    "100k-runs": dict(runs=100_000, steps=3, metrics=2, awkward=False, vary_steps=False),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m wandb_source.emulator",
        description="A W&B-compatible GraphQL server on 127.0.0.1 with generated sample data. "
                    "Point wandb.Api() or wandb_source at it with WANDB_BASE_URL=<url> and the printed API key.",
    )
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0 = any free port; default 8765)")
    p.add_argument("--size", choices=sorted(SIZES), default="demo",
                   help="dataset preset: demo (12 awkward runs), S, M, L, wide, many-runs, 5M-rows, 100k-runs (default demo)")
    p.add_argument("--seed", type=int, default=0, help="data generator seed (default 0)")
    p.add_argument("--entity", default="emulator", help="entity that owns the projects (default emulator)")
    p.add_argument("--projects", default="demo", help="comma-separated project names (default demo)")
    p.add_argument("--runs", type=int, help="runs per project (overrides --size)")
    p.add_argument("--steps", type=int, help="steps per run (overrides --size)")
    p.add_argument("--metrics", type=int, help="float metrics per step (overrides --size)")
    p.add_argument("--wide-keys", type=int, default=0, help="add project wide-keys with N distinct metric keys")
    p.add_argument("--parquet-fraction", type=float, default=0.5,
                   help="share of each finished run's history already exported to parquet (default 0.5)")
    p.add_argument("--pages-serve-exported", action="store_true",
                   help="HistoryPage also serves steps already exported to parquet "
                        "(default: only the live tail, as wandb-core's reader expects)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every request (default 0)")
    p.add_argument("--rate-limit", type=float, help="requests per window before answering 429 (default none)")
    p.add_argument("--rate-window", type=float, default=1.0,
                   help="seconds of the sliding rate-limit window (default 1: --rate-limit is per second)")
    p.add_argument("--api-key", default=DEFAULT_API_KEY, help="the API key the server accepts")
    p.add_argument("--profile", choices=sorted(PROFILES), default=default_profile().name,
                   help="which reading of W&B's undocumented behaviour to serve (profile.py; default "
                        "WANDB_EMULATOR_PROFILE, else pessimistic)")
    return p.parse_args(argv)


def spec_from_args(args: argparse.Namespace) -> DatasetSpec:
    preset = dict(SIZES[args.size])
    for name in ("runs", "steps", "metrics"):
        if getattr(args, name) is not None:
            preset[name] = getattr(args, name)
    return DatasetSpec(seed=args.seed, entity=args.entity, projects=tuple(args.projects.split(",")),
                       wide_keys=args.wide_keys, parquet_fraction=args.parquet_fraction, **preset)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    emu = Emulator(spec_from_args(args), port=args.port, latency=args.latency, rate_limit=args.rate_limit,
                   rate_window=args.rate_window,
                   api_key=args.api_key, history_page_serves_exported=args.pages_serve_exported,
                   profile=PROFILES[args.profile])
    print(json.dumps({"url": emu.url, "api_key": emu.api_key, "entity": args.entity}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        emu.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
