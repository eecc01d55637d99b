"""Plot metric curves of loaded runs to a PNG — for looking at runs without the W&B UI.

    wandb-source plot --metric train/loss                      # the 10 newest runs
    wandb-source plot --metric eval/loss --metric eval/acc --run bright-sun-3 --run k2x9a
    wandb-source plot --metric eval/acc --x epoch --out acc.png --log-y

Reads the dataset `wandb-source load` loaded (any destination). One panel per metric, one line per run.
The x axis is the metric's define_metric step axis when the run set one, else `_step` (or --x).
Needs matplotlib: pip install 'wandb-source[plot]'. (In a checkout: python pipelines/plot_runs.py.)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import dlt

from ..readback.curves import curve, find_runs, numeric_columns
from .load import add_loaded_dataset_options, on_loaded


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", action="append", required=True, help="W&B key to plot; repeat for several")
    parser.add_argument("--run", action="append", default=[],
                        help="run id, display name or entity/project/run_id; repeat (default: the newest runs)")
    parser.add_argument("--max-runs", type=int, default=10, help="runs plotted without --run (default: 10)")
    parser.add_argument("--x", help="x axis: _step, _runtime, _timestamp or a logged key such as epoch "
                                    "(default: the metric's define_metric step axis, else _step)")
    parser.add_argument("--out", default="runs.png", help="PNG file to write (default: runs.png)")
    parser.add_argument("--log-y", action="store_true", help="logarithmic y axis")
    add_loaded_dataset_options(parser)
    return parser


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    return build_parser(prog).parse_args(argv)


def plot(curves_by_metric: dict[str, Any], out: Path, log_y: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(curves_by_metric), 1, figsize=(9, 3.5 * len(curves_by_metric)), squeeze=False)
    for ax, (metric, curves) in zip(axes[:, 0], curves_by_metric.items()):
        for c in curves:
            if c.points:
                xs, ys = zip(*c.points)
                ax.plot(xs, ys, label=c.run.get("display_name") or c.run["run_id"], linewidth=1.2)
        ax.set_title(metric)
        ax.set_xlabel(curves[0].x_key if curves else "_step")
        ax.set_yscale("log" if log_y else "linear")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    if importlib.util.find_spec("matplotlib") is None:
        print("plot needs matplotlib: pip install 'wandb-source[plot]'", file=sys.stderr)
        return 1

    def draw(pipeline: dlt.Pipeline, out: Path) -> int:
        runs, columns = find_runs(pipeline, args.run, args.max_runs), numeric_columns(pipeline)
        curves = {m: [curve(pipeline, run, m, args.x, columns) for run in runs] for m in args.metric}
        plot(curves, out, args.log_y)
        points = sum(len(c.points) for cs in curves.values() for c in cs)
        print(f"wrote {out}: {len(args.metric)} metric(s), {len(runs)} run(s), {points:,} points")
        return 0

    return on_loaded(args, "history", "plot", draw)


if __name__ == "__main__":
    sys.exit(main())
