"""Load W&B into the destination configured in .dlt/config.toml (DuckDB by default).

    wandb-source load                          # [sources.wandb] and [pipelines.wandb_pipeline] of ./.dlt
    wandb-source demo                          # no account needed: the bundled W&B emulator
    wandb-source plan --project team/proj --since 2026-11-01     # the dry run: what a load would fetch
    wandb-source load --offline-dir ./wandb    # local run logs, no server at all

(In a checkout, `python pipelines/wandb_pipeline.py` takes the same options as `wandb-source load`.)
Configuration comes from `.dlt/` in the current folder, as for every dlt pipeline.

Pipeline `wandb_pipeline` (or --pipeline-name), dataset `wandb_data` (or --dataset). Exit code 0 on success, 1 on a failed
load or bad option value (one readable message), 2 on a usage error (argparse: unknown option, missing
argument), 3 when the load succeeded but some runs could not be fetched (they are retried next time).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.common.exceptions import DltException

from .. import tables
from ..exceptions import ConfigurationError, WandbSourceError
from ..load.plan import plan_load
from ..load.runner import run_load
from ..load.shards import destination_name
from ..logs.source import wandb_offline_source
from ..source import wandb_source
from ..state import failed_runs, sampled_runs

PIPELINE_NAME, DATASET_NAME = "wandb_pipeline", "wandb_data"
# every table the source loads but its bookkeeping, in the order the summary reports them
TABLES = tuple(t for t in tables.TABLE_HINTS if t != "run_cursors")
PROGRESS = ("log", "tqdm", "enlighten", "alive_progress", "none")
PROGRESS_PACKAGES = {"tqdm": ("tqdm", "tqdm"), "enlighten": ("enlighten", "enlighten"),
                     "alive_progress": ("alive_progress", "alive-progress")}  # module, what pip installs


PARTIAL_LOAD = 3  # exit code: loaded, but some runs could not be fetched (2 is argparse's usage error)

def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0],
        epilog="Without options, everything comes from .dlt/config.toml and .dlt/secrets.toml ([sources.wandb]).")
    what = parser.add_argument_group("what to load")
    what.add_argument("--entity", help="W&B entity (user or team); overrides [sources.wandb] entity")
    what.add_argument("--project", action="append", metavar="[ENTITY/]PROJECT",
                      help="a project to load; repeat for several; ENTITY/PROJECT loads from another entity "
                           "(default: [sources.wandb] projects, else every project of the entity)")
    what.add_argument("--filter", metavar="JSON",
                      help='W&B run filter, Mongo-style JSON, e.g. \'{"state": "finished"}\' (runs, history, ...)')
    what.add_argument("--since", metavar="DATE",
                      help="only runs created or updated after DATE (ISO 8601, e.g. 2026-11-01 or 2026-11-01T12:00)")
    what.add_argument("--offline-dir", metavar="DIR",
                      help="load the W&B run logs (run-<id>.wandb) under DIR instead of the W&B API: no server, "
                           "no key (also [sources.wandb] offline_dir); --entity/--project override the log's")
    what.add_argument("--demo", action="store_true",
                      help="start the bundled W&B emulator with sample data and load it (no account needed)")
    history = parser.add_argument_group("which history", "glob patterns on W&B keys: * within a /-part, ** across, "
                                        "!pattern excludes; _step, _timestamp, _runtime are always kept")
    history.add_argument("--history-include", action="append", metavar="GLOB",
                         help="load only history keys matching GLOB (repeat), e.g. 'train/*' 'eval/**'")
    history.add_argument("--history-exclude", action="append", metavar="GLOB",
                         help="do not load history keys matching GLOB (repeat), e.g. 'gradients/*'")
    history.add_argument("--min-step", type=int, metavar="N", help="first step to load (inclusive)")
    history.add_argument("--max-step", type=int, metavar="N", help="last step to load (inclusive)")
    history.add_argument("--last-steps", type=int, metavar="N",
                         help="per run, only the last N steps that hold a selected key (per load)")
    history.add_argument("--system-metrics-include", action="append", metavar="GLOB",
                         help="load only system metrics matching GLOB (repeat), e.g. 'system.gpu.*'")
    history.add_argument("--system-metrics-exclude", action="append", metavar="GLOB",
                         help="do not load system metrics matching GLOB (repeat)")
    history.add_argument("--tables-include", action="append", metavar="GLOB",
                         help="load only the logged wandb.Tables of W&B keys matching GLOB (repeat), e.g. 'eval/*'")
    history.add_argument("--tables-exclude", action="append", metavar="GLOB",
                         help="do not load the logged wandb.Tables of keys matching GLOB (repeat)")
    where = parser.add_argument_group("where to load it")
    where.add_argument("--destination", help="dlt destination: duckdb, postgres, filesystem, ... "
                                             "(default: [pipelines.wandb_pipeline] destination_type)")
    where.add_argument("--dataset", default=DATASET_NAME, help=f"dataset (schema) name (default: {DATASET_NAME})")
    where.add_argument("--pipeline-name", default=PIPELINE_NAME,
                       help=f"dlt pipeline name: its own state and working folder; one per shard when several jobs "
                            f"load parts of W&B (default: {PIPELINE_NAME})")
    how = parser.add_argument_group("how")
    how.add_argument("--full-refresh", action="store_true",
                     help="drop this source's tables and state, then load everything again")
    how.add_argument("--dry-run", action="store_true",
                     help="print the plan (projects, new and changed runs, steps and requests) and load nothing")
    how.add_argument("--progress", choices=PROGRESS, default="log",
                     help="dlt's progress display (default: log); the source also reports runs done and rows/s")
    how.add_argument("--verbose", action="store_true", help="show tracebacks on failure, and debug logs")
    return parser


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    return build_parser(prog).parse_args(argv)


def run_filter(args: argparse.Namespace) -> dict[str, Any] | None:
    """--filter and --since as one W&B filter (None: no filter)."""
    parts = []
    if args.filter:
        try:
            parts.append(json.loads(args.filter))
        except ValueError as e:
            raise ConfigurationError(
                f"--filter is not valid JSON ({e}): write it like '{{\"state\": \"finished\"}}'") from None
        if not isinstance(parts[-1], dict):
            raise ConfigurationError("--filter must be a JSON object, like '{\"state\": \"finished\"}'")
    if args.since:
        since = parse_since(args.since)
        # createdAt and heartbeatAt: the filter fields W&B documents (updatedAt is not one of them)
        parts.append({"$or": [{"createdAt": {"$gt": since}}, {"heartbeatAt": {"$gt": since}}]})
    return None if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


def parse_since(text: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(f"--since {text!r} is not a date: use ISO 8601, e.g. 2026-11-01 or "
                                 "2026-11-01T12:00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # as the SDK's docs write it


def start_demo_server() -> Any:
    """The bundled W&B emulator with the demo dataset, on a free 127.0.0.1 port."""
    if importlib.util.find_spec("graphql") is None:
        raise ConfigurationError("the demo's W&B emulator needs graphql-core: pip install 'wandb-source[demo]'")
    from ..emulator import DatasetSpec, Emulator
    from ..emulator.profile import SDK

    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    # the profile the official SDK copes with: sampled windows, capped events, frozen updatedAt (profile.py)
    emulator = Emulator(DatasetSpec(tables=True, table_images=True), profile=SDK).start()
    print(f"W&B emulator with sample data at {emulator.url}")
    return emulator


SELECTION = ("history_include", "history_exclude", "min_step", "max_step", "last_steps", "system_metrics_include",
             "system_metrics_exclude", "tables_include", "tables_exclude")


def make_source(args: argparse.Namespace, emulator: Any) -> Any:
    offline_dir = args.offline_dir or dlt.config.get("sources.wandb.offline_dir")
    selection = {name: getattr(args, name) for name in SELECTION if getattr(args, name) is not None}
    if emulator is None and offline_dir:
        if args.filter or args.since:
            raise ConfigurationError("--filter and --since apply to the W&B API, not to --offline-dir")
        if len(args.project or []) > 1:
            raise ConfigurationError("--offline-dir takes one --project (it overrides the project the logs recorded)")
        entity, project = _entity_project(args.entity, (args.project or [None])[0])
        return wandb_offline_source(offline_dir, entity=entity, project=project, **selection)
    options: dict[str, Any] = {"filters": run_filter(args)} if (args.filter or args.since) else {}
    options.update(selection)
    if args.project:
        options["projects"] = args.project
    entity = args.entity or _entity_of(args.project)
    if emulator is not None:
        options.update(base_url=emulator.url, api_key=emulator.api_key)
        entity = entity or "emulator"
    return wandb_source(entity=entity, **options) if entity else wandb_source(**options)


def _entity_project(entity: str | None, project: str | None) -> tuple[str | None, str | None]:
    if project and "/" in project:
        return tuple(project.strip("/").split("/", 1))  # type: ignore[return-value]
    return entity, project


def _entity_of(projects: list[str] | None) -> str | None:
    """With only ENTITY/PROJECT forms given, the first one's entity is the default."""
    if projects and all("/" in p for p in projects) and not dlt.config.get("sources.wandb.entity"):
        return projects[0].split("/", 1)[0]
    return None


def destination_option(args: argparse.Namespace) -> dict[str, Any]:
    """`--destination`; else the pipeline's `[pipelines.<name>] destination_type`; else, for a shard named with
    `--pipeline-name`, the default pipeline's, so every shard loads where `.dlt/config.toml` says."""
    if args.destination:
        return {"destination": args.destination}
    if args.pipeline_name != PIPELINE_NAME and not dlt.config.get(f"pipelines.{args.pipeline_name}.destination_type"):
        default = dlt.config.get(f"pipelines.{PIPELINE_NAME}.destination_type")
        if default:
            return {"destination": default}
    return {}


def make_pipeline(args: argparse.Namespace) -> dlt.Pipeline:
    options = destination_option(args)
    progress = None if args.progress == "none" else args.progress
    package = PROGRESS_PACKAGES.get(progress or "")
    if package and importlib.util.find_spec(package[0]) is None:
        raise ConfigurationError(f"--progress {progress} needs the {package[1]} package: pip install {package[1]} "
                                 "(or use --progress log)")
    try:
        pipeline = dlt.pipeline(args.pipeline_name, dataset_name=args.dataset, progress=progress,  # type: ignore[arg-type]
                                **options)
    except UnknownDestinationModule:
        raise ConfigurationError(f"unknown destination {args.destination!r}: use --destination duckdb, postgres or "
                                 "filesystem, or another dlt destination (with its extra installed, e.g. "
                                 "pip install 'dlt[bigquery]')") from None
    warn_if_elsewhere(pipeline)
    return pipeline


def warn_if_elsewhere(pipeline: dlt.Pipeline) -> None:
    """dlt keeps a pipeline by name (in ~/.dlt or DLT_DATA_DIR) with the folder it was first run in:
    local files such as the DuckDB database stay there. Say so when that is another checkout."""
    try:
        home = pipeline.get_local_state_val("initial_cwd")
    except KeyError:
        return
    if home and Path(home).resolve() != Path.cwd().resolve():
        print(f"note: pipeline {pipeline.pipeline_name} was first run in {home}; dlt keeps its local files (the "
              f"DuckDB database) there. For this folder's own, use --pipeline-name or another DLT_DATA_DIR.",
              file=sys.stderr)


def add_loaded_dataset_options(parser: argparse.ArgumentParser) -> None:
    """--destination, --dataset, --pipeline-name of scripts that read what this one loaded."""
    parser.add_argument("--destination", help="where the dataset was loaded (default: as `wandb-source load`)")
    parser.add_argument("--dataset", default=DATASET_NAME, help=f"dataset name (default: {DATASET_NAME})")
    parser.add_argument("--pipeline-name", default=PIPELINE_NAME,
                        help=f"dlt pipeline that loaded it (default: {PIPELINE_NAME})")


def on_loaded(args: argparse.Namespace, table: str, script: str, work: Callable[[dlt.Pipeline, Path], int]) -> int:
    """Run `work(pipeline, out)` on the pipeline that loaded `args.dataset` (for `export` and `plot`; state
    synced from the destination, `out` = `args.out`, relative to the current folder). Exit code 1, with
    one paragraph, when `table` was never loaded or the destination fails."""
    options = destination_option(args)
    try:
        pipeline = dlt.pipeline(args.pipeline_name, dataset_name=args.dataset, **options)
        pipeline.sync_destination()
        if not pipeline.default_schema_name or table not in pipeline.default_schema.tables:
            print(f"{script}: dataset {args.dataset} has no {table} yet; load it first: wandb-source load "
                  "(python pipelines/wandb_pipeline.py in a checkout)", file=sys.stderr)
            return 1
        return work(pipeline, Path(args.out))
    except (WandbSourceError, dlt.common.exceptions.DltException) as e:
        print(f"{script} failed: {explain(e)}", file=sys.stderr)
        return 1


def show_source_progress(verbose: bool) -> None:
    """The source's own progress lines (logger `wandb_source.progress`) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    progress = logging.getLogger("wandb_source.progress")
    progress.addHandler(handler)
    progress.setLevel(logging.DEBUG if verbose else logging.INFO)


def print_plan(pipeline: dlt.Pipeline, source: Any) -> None:
    with contextlib.suppress(Exception):  # a destination not created yet: nothing loaded so far
        pipeline.sync_destination()  # the state of the last load may live only in the destination
    plan = plan_load(source, pipeline)
    print(f"\nPlan (dry run: nothing is loaded) into {destination_name(pipeline)} dataset {pipeline.dataset_name}:")
    print(f"  {'project':<40} {'runs':>8} {'new':>8} {'changed':>8} {'steps':>12} {'requests':>9}")
    for p in plan.projects:
        print(f"  {p.name:<40} {p.runs:>8,} {p.new:>8,} {p.changed:>8,} {p.steps:>12,} {p.requests:>9,}")
    def total(field: str) -> int:
        return sum(getattr(p, field) for p in plan.projects)

    print(f"  {'total':<40} {total('runs'):>8,} {total('new'):>8,} {total('changed'):>8,} {total('steps'):>12,} "
          f"{plan.requests:>9,}")
    print("  (steps: history rows to fetch; requests: with the viewer, server probe and project lists; fewer where\n"
          "   history comes from parquet exports, more where W&B answers a listing page empty)")


def print_summary(pipeline: dlt.Pipeline, seconds: float) -> int:
    normalized = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    counts = normalized.row_counts if normalized else {}
    print(f"\nLoaded into {destination_name(pipeline)} dataset {pipeline.dataset_name} in {seconds:.1f}s:")
    logged = sorted(t for t in counts if t.startswith(tables.LOGGED_TABLE_PREFIX))
    width = max(22, *map(len, logged)) if logged else 22
    print(f"  {'table':<{width}} {'rows':>10}")
    for table in (*TABLES, *logged):
        if counts.get(table):
            print(f"  {table:<{width}} {counts[table]:>10,} rows")
    if not any(counts.get(t) for t in ("runs", "history", "system_metrics", *logged)):
        print("  nothing new: every run is up to date")
    elif counts.get("history") and seconds > 0:
        print(f"  {'history rows/s':<{width}} {counts['history'] / seconds:>10,.0f}")
    sampled = sampled_runs(pipeline.state)
    if sampled:
        print(f"\n{len(sampled)} run(s) have sampled system metrics (W&B caps its events read and they have no "
              "wandb-events.jsonl); their system_metrics rows have _sampled = true:", file=sys.stderr)
        for key in sorted(sampled)[:20]:
            print(f"  {key}", file=sys.stderr)
    failed = failed_runs(pipeline.state)
    if failed:
        print(f"\n{len(failed)} run(s) could not be fetched and will be retried on the next load:", file=sys.stderr)
        for key, reason in sorted(failed.items()):
            print(f"  {key}: {reason}", file=sys.stderr)
        return PARTIAL_LOAD
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


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    show_source_progress(args.verbose)
    emulator = None
    started = time.monotonic()
    try:
        emulator = start_demo_server() if args.demo else None
        source = make_source(args, emulator)
        pipeline = make_pipeline(args)
        if args.dry_run:
            if args.offline_dir or not hasattr(source, "resources") or "runs_listing" not in source.resources:
                raise ConfigurationError("--dry-run plans loads from the W&B API; it does not read --offline-dir")
            print_plan(pipeline, source)
            return 0
        run_load(pipeline, source, refresh="drop_sources" if args.full_refresh else None)
        return print_summary(pipeline, time.monotonic() - started)
    except (DltException, WandbSourceError) as e:  # every dlt exception too: one paragraph, no traceback
        if args.verbose:
            raise
        print(f"wandb_pipeline failed: {explain(e)}", file=sys.stderr)
        return 1
    finally:
        if emulator is not None:
            emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
