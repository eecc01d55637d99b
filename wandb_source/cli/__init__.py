"""The `wandb-source` command: load W&B into a dlt destination, plan a load, export and plot what was loaded.

    wandb-source load [options]     load into the destination of ./.dlt/config.toml (DuckDB by default)
    wandb-source plan [options]     the dry run: projects, new and changed runs, steps, requests
    wandb-source demo [options]     load the bundled W&B emulator's sample data (no account needed)
    wandb-source export [options]   the loaded dataset as the parquet files of the exporter this replaces
    wandb-source plot --metric KEY  metric curves of loaded runs as a PNG
    wandb-source --version

`wandb-source COMMAND --help` lists a command's options. Exit codes: 0 done, 1 failed (one paragraph says why),
2 usage error, 3 loaded but some runs could not be fetched (retried next time).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import metadata

from . import export, load, plot

USAGE_ERROR = 2


def _load(argv: list[str], prog: str) -> int:
    return load.main(argv, prog)


def _plan(argv: list[str], prog: str) -> int:
    return load.main([*argv, "--dry-run"], prog)


def _demo(argv: list[str], prog: str) -> int:
    return load.main([*argv, "--demo"], prog)


COMMANDS: dict[str, Callable[[list[str], str], int]] = {
    "load": _load, "plan": _plan, "demo": _demo, "export": export.main, "plot": plot.main}


def version() -> str:
    try:
        return metadata.version("wandb-source")
    except metadata.PackageNotFoundError:  # run from a checkout that was not installed
        return "0+checkout"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else USAGE_ERROR
    if args[0] == "--version":
        print(f"wandb-source {version()}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"wandb-source: unknown command {args[0]!r}; use one of {', '.join(COMMANDS)} "
              "(wandb-source --help)", file=sys.stderr)
        return USAGE_ERROR
    return command(args[1:], f"wandb-source {args[0]}")
