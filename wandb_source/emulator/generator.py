"""Deterministic W&B-like data: training curves plus everything that breaks naive loaders.

`generate(store, DatasetSpec(...))` fills a store. The same spec always gives the same runs, rows
and values. History rows are made on demand from (seed, run, step), so large datasets cost no memory.

With `awkward=True` (the default) the data includes: sparse metrics on their own cadence (eval every N
steps), NaN/±Infinity, an int-then-float metric, strings and bools in history, histograms and media
dicts, nested dicts, keys with `/`, `.`, spaces, unicode and 100+ characters, two keys that collide
after snake_case (`val/acc`, `val_acc`), int64 values beyond 2**53, runs in every state, runs with no
history, a resumed run (a gap in `_step` and time) and a rewound-looking run. `wide_keys=N` adds a
project `wide-keys` whose runs log N distinct metric keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from .store import RUN_STATES, UTC, Project, Run, RunHistory, Store, Sweep, dumps_wandb

LONG_KEY = "a_very_long_metric_name_that_goes_on_" + "and_on_" * 12 + "end"  # > 100 characters
ADJECTIVES = ("bright", "calm", "eager", "fancy", "gentle", "lively", "misty", "proud", "quiet", "vivid")
NOUNS = ("sun", "river", "forest", "meadow", "cloud", "star", "wave", "field", "stone", "leaf")
SECONDS_PER_STEP = 0.5
SYSTEM_EVERY_SECONDS = 15.0


@dataclass(frozen=True)
class DatasetSpec:
    """What to generate. Sizes are per project."""

    seed: int = 0
    entity: str = "emulator"
    projects: tuple = ("demo",)
    runs: int = 12
    steps: int = 200
    metrics: int = 8  # float metrics logged on every step
    eval_every: int = 10
    awkward: bool = True
    vary_steps: bool = True  # runs of different lengths (catches shared-cursor bugs)
    parquet_fraction: float = 0.5  # share of a finished run's rows already exported to parquet
    wide_keys: int = 0
    system_metrics: bool = True
    hostile: bool = False  # a project `hostile` whose keys and values attack loaders (see hostile.py)
    tables: bool = False  # logged wandb.Tables: `eval/predictions` every 50 steps (see logged_tables.py)
    table_images: bool = False  # ... with an image column (the run file says "Image"; artifact copies served)


def generate(store: Store, spec: DatasetSpec) -> None:
    for p_index, name in enumerate(spec.projects):
        project = store.add_project(spec.entity, name, _base_time(spec) - dt.timedelta(days=1 + p_index))
        sweep = _add_sweep(project, spec) if spec.awkward else None
        for i in range(spec.runs):
            store.add_run(_make_run(spec, name, i, sweep))
    if spec.wide_keys:
        store.add_project(spec.entity, "wide-keys", _base_time(spec))
        for i in range(2):
            store.add_run(_make_run(spec, "wide-keys", i, None, wide=spec.wide_keys))
    if spec.hostile:
        from .hostile import add_hostile_project

        add_hostile_project(store, spec.entity, _base_time(spec))


def _base_time(spec: DatasetSpec) -> dt.datetime:
    return dt.datetime(2026, 1, 5, tzinfo=UTC) + dt.timedelta(days=spec.seed % 300)


def run_id_for(spec: DatasetSpec, project: str, index: int) -> str:
    digest = hashlib.sha1(f"{spec.seed}/{project}/{index}".encode()).hexdigest()
    width = 8 if spec.runs <= 10_000 else 12  # W&B's 8 characters collide among 100,000 runs
    return format(int(digest[:12], 16), "x")[:width].rjust(width, "0")


def _state(spec: DatasetSpec, index: int) -> str:
    return RUN_STATES[index % len(RUN_STATES)] if spec.awkward else "finished"


def _n_steps(spec: DatasetSpec, index: int, state: str) -> int:
    if state == "pending" or (spec.awkward and index == 7):
        return 0
    if spec.vary_steps:
        return max(1, spec.steps - (index * 37) % max(1, spec.steps // 3))
    return spec.steps


def _steps(spec: DatasetSpec, index: int, n: int) -> list[int]:
    """A resumed run (index 8) jumps over 50 steps half-way, as `wandb.log(step=...)` after resume."""
    if spec.awkward and index == 8 and n > 2:
        half = n // 2
        return list(range(half)) + list(range(half + 50, n + 50))
    return list(range(n))


def _make_run(spec: DatasetSpec, project: str, index: int, sweep: Sweep | None, wide: int = 0) -> Run:
    state = "finished" if wide else _state(spec, index)
    run_id = run_id_for(spec, project, index)
    created = _base_time(spec) + dt.timedelta(minutes=37 * index)
    n = spec.steps if wide else _n_steps(spec, index, state)
    steps = _steps(spec, index, n)
    rewound_at = int(n * 0.6) if spec.awkward and index == 9 and n > 10 else None
    make_row = _row_maker(spec, project, index, created, wide, resumed=steps != list(range(n)), rewound_at=rewound_at)
    history = RunHistory(make_row, steps)
    runtime = make_row(steps[-1])["_runtime"] if steps else 0.0
    end = created + dt.timedelta(seconds=runtime)
    run = Run(
        entity=spec.entity, project=project, name=run_id,
        display_name=f"{ADJECTIVES[index % 10]}-{NOUNS[(index // 10) % 10]}-{index}",
        state=state, created_at=created, updated_at=end + dt.timedelta(seconds=5), heartbeat_at=end,
        config=_config(spec, index), tags=_tags(index), group=f"group-{index % 3}",
        job_type="train" if index % 4 else "eval", commit=hashlib.sha1(f"c{index}".encode()).hexdigest(),
        host=f"gpu-node-{index % 4}", notes=f"run {index}\nsecond line" if index % 5 == 0 else None,
        sweep_name=sweep.name if sweep and index % 3 == 0 else None, history=history,
    )
    run.summary = _summary(run, runtime, full_scan=spec.awkward or bool(wide), tail=spec.eval_every)
    if spec.system_metrics and not wide:
        run.events = _events(spec, index, created, runtime)
        run.system_metrics = {k: v for k, v in (run.events[-1] if run.events else {}).items() if not k.startswith("_")}
    run.files = _files(spec, run)
    if spec.tables and not wide:
        from .logged_tables import add_predictions

        add_predictions(run, images=spec.table_images)
    if state not in ("running", "pending") and n:
        exported = int(n * spec.parquet_fraction)
        run.export_bounds = [b for b in sorted({exported // 2, exported}) if b > 0]
    if state == "finished":
        run.output_artifacts = [_artifact(run, "model", f"model-{run_id}", index)]
        run.input_artifacts = [_artifact(run, "dataset", "cifar10", 0)]
        earlier = next((i for i in range(index - 1, -1, -1) if _state(spec, i) == "finished"), None)
        if earlier is not None:  # fine-tunes the model of the last finished run before it (lineage)
            previous = run_id_for(spec, project, earlier)
            run.input_artifacts.append(_artifact(run, "model", f"model-{previous}", earlier))
    return run


def _row_maker(spec: DatasetSpec, project: str, index: int, created: dt.datetime, wide: int,
               resumed: bool, rewound_at: int | None = None) -> Callable[[int], dict]:
    """Rows of one run. `resumed`: an hour's pause from step 50 on. `rewound_at`: W&B's `resume_from`
    rewound the run to that step two hours later, so later steps are a second branch of training."""
    run_seed = int(hashlib.sha1(f"{spec.seed}/{project}/{index}".encode()).hexdigest()[:12], 16)
    t0 = created.timestamp()
    names = [f"train/m{j:03d}" for j in range(max(0, spec.metrics - 3))]
    awkward = spec.awkward and not wide

    def make_row(step: int) -> dict:
        branch = 1 if rewound_at is not None and step > rewound_at else 0
        rng = random.Random(run_seed * 1_000_003 + step + branch * 7_777_777)
        runtime = step * SECONDS_PER_STEP + rng.random() * 0.01 + branch * 7200.0
        if resumed and step >= 50:
            runtime += 3600.0  # resumed an hour later
        decay = math.exp(-step / 300.0)
        row: dict = {"_step": step, "_runtime": round(runtime, 6), "_timestamp": round(t0 + runtime, 6)}
        if wide:
            start = step * 500 % wide
            for k in range(start, min(wide, start + 500)):
                row[f"layer_{k:04d}/grad_norm"] = rng.random()
            row["train/loss"] = 2.0 * decay + rng.random() * 0.05
            return row
        row["train/loss"] = 2.5 * decay + 0.1 + rng.random() * 0.05
        row["train/acc"] = 1.0 - 0.9 * decay - rng.random() * 0.02
        row["lr"] = 0.001 * (0.5 ** (step // 100))
        for j, name in enumerate(names):
            row[name] = math.sin(step / (10.0 + j)) + (rng.random() - 0.5) * 0.02
        if step % spec.eval_every == 0:
            row["eval/loss"] = 2.6 * decay + 0.15 + rng.random() * 0.05
            row["eval/acc"] = 1.0 - 0.95 * decay
        if awkward:
            _add_awkward(row, step, rng)
        return row

    return make_row


def _add_awkward(row: dict, step: int, rng: random.Random) -> None:
    row["epoch"] = step // 50
    row["grad_norm"] = step + 1 if step < 5 else round(rng.random() * 3, 6)  # ints first, then floats
    row["weird/special"] = (
        math.nan if step % 13 == 0 else math.inf if step % 17 == 0 else -math.inf if step % 19 == 0
        else -0.0 if step % 23 == 0 else rng.random()
    )
    row["status"] = "warmup" if step < 10 else "train"
    if step % 25 == 0:
        row["is_best"] = step % 50 == 0
    if step % 5 == 0:
        row["key with spaces"] = rng.random()
        row["dotted.key.name"] = rng.random()
        row["ünï/损失"] = rng.random()
    if step % 10 == 0:
        row["val/acc"] = rng.random()
        row["val_acc"] = rng.random() + 10.0
        row[LONG_KEY] = float(step)
    if step % 20 == 0:
        row["nested"] = {"depth1": {"depth2": rng.random(), "label": "x"}}
    if step % 50 == 0:
        row["big_int"] = 2**62 + step
        row["gradients/layer0"] = {
            "_type": "histogram",
            "values": [rng.randint(0, 100) for _ in range(8)],
            "bins": [round(-1.0 + i * 0.25, 2) for i in range(9)],
        }
    if step % 100 == 0:
        row["media/sample"] = {
            "_type": "image-file", "path": f"media/images/media/sample_{step}_{step:04x}.png",
            "sha256": hashlib.sha256(str(step).encode()).hexdigest(), "size": 1234 + step,
            "format": "png", "width": 32, "height": 32,
        }


def _config(spec: DatasetSpec, index: int) -> dict:
    config: dict = {
        "lr": [0.001, 0.0003, 0.01][index % 3],
        "batch_size": [32, 64, 128][index % 3],
        "epochs": 10,
        "seed": index,
        "dataset": "cifar10",
        "optimizer": {"name": ["adam", "sgd"][index % 2], "betas": [0.9, 0.999], "eps": 1e-8},
        "model": {"layers": 2 + index % 4, "hidden": 256, "dropout": 0.1},
        "_wandb": {
            "python_version": "3.11.7", "cli_version": "0.31.0", "framework": "torch",
            # define_metric("epoch"); define_metric("eval/loss", step_metric="epoch", summary="min",
            # goal="minimize"); define_metric("eval/acc", step_metric="epoch", summary="max") — as the SDK
            # stores them: protobuf field numbers, "5" the 1-based index of the step metric's record
            "m": [{"1": "epoch", "6": [3]}, {"1": "eval/loss", "5": 1, "6": [1, 3], "7": [1], "8": 1},
                  {"1": "eval/acc", "5": 1, "6": [1, 3], "7": [2]}],
            "t": {"1": [1, 55], "3": [13, 16]},
        },
        "wandb_version": "0.31.0",
    }
    if spec.awkward:
        config["dotted.config.key"] = "dotted"
        config["weight decay"] = 0.01
        config["nan_param"] = math.nan
    return config


def _tags(index: int) -> list:
    tags = ["baseline"] if index % 2 == 0 else ["experiment", f"v{index % 3}"]
    return tags + (["tag with space"] if index % 6 == 5 else [])


def _summary(run: Run, runtime: float, full_scan: bool, tail: int) -> dict:
    """The last value of every key; clean datasets log every key within the last `tail` rows."""
    summary: dict = {}
    start = 0 if full_scan else max(0, len(run.history) - tail)
    for row in run.history.rows(start):
        summary.update(row)
    summary["_wandb"] = {"runtime": int(runtime)}
    if full_scan and "train/loss" in summary:
        summary["best/train_loss"] = min(r["train/loss"] for r in run.history.rows())
    return summary


def _events(spec: DatasetSpec, index: int, created: dt.datetime, runtime: float) -> list:
    rng = random.Random(spec.seed * 7919 + index)
    events = []
    t = SYSTEM_EVERY_SECONDS
    while t <= runtime + SYSTEM_EVERY_SECONDS:
        events.append({
            "_runtime": t, "_timestamp": created.timestamp() + t, "_wandb": True,
            "system.cpu": round(rng.uniform(5, 95), 2),
            "system.memory_percent": round(rng.uniform(10, 80), 2),
            "system.gpu.0.gpu": round(rng.uniform(0, 100), 2),
            "system.gpu.0.memoryAllocated": round(rng.uniform(0, 100), 2),
            "system.network.sent": int(t * 1000),
        })
        t += SYSTEM_EVERY_SECONDS
    return events


def _files(spec: DatasetSpec, run: Run) -> dict:
    metadata = {
        "os": "Linux-6.1.0-x86_64-with-glibc2.36", "python": "CPython 3.11.7",
        "startedAt": run.created_at.isoformat().replace("+00:00", "Z"),
        "program": "train.py", "codePath": "train.py", "args": ["--lr", str(run.config["lr"])],
        "git": {"remote": "https://example.com/team/repo.git", "commit": run.commit},
        "host": run.host, "username": run.username, "executable": "/usr/bin/python3",
        "cpu_count": 8, "cpu_count_logical": 16, "gpu": "NVIDIA A100-SXM4-40GB", "gpu_count": 2,
        "memory": {"total": "270000000000"},
    }
    return {
        "wandb-metadata.json": json.dumps(metadata, indent=2).encode(),
        "config.yaml": "\n".join(f"{k}:\n  value: {json.dumps(v)}" for k, v in run.config.items()
                                 if k != "_wandb").encode(),
        "wandb-summary.json": dumps_wandb(run.summary).encode(),
        "output.log": f"training {run.display_name}\n".encode(),
        "requirements.txt": b"torch==2.13.0\nwandb==0.31.0\n",
    }


def _add_sweep(project: Project, spec: DatasetSpec) -> Sweep:
    name = run_id_for(spec, project.name, 10_000)
    config_yaml = (
        "method: bayes\nmetric:\n  goal: minimize\n  name: eval/loss\nparameters:\n"
        "  lr:\n    distribution: log_uniform_values\n    max: 0.1\n    min: 0.0001\n"
        "  batch_size:\n    values: [32, 64, 128]\nprogram: train.py\n"
    )
    sweep = Sweep(
        entity=project.entity, project=project.name, name=name, display_name="lr-search",
        method="bayes", state="FINISHED", config_yaml=config_yaml, created_at=project.created_at,
        updated_at=project.created_at + dt.timedelta(hours=6), best_loss=0.1234, run_count_expected=20,
    )
    project.sweeps[name] = sweep
    return sweep


def _artifact(run: Run, kind: str, name: str, version: int) -> dict:
    digest = hashlib.md5(f"{name}:{version}".encode()).hexdigest()
    return {
        "id": f"artifact-{digest[:12]}", "name": name, "type": kind, "version_index": version,
        "aliases": ["latest", f"v{version}"], "size": 1000 + version, "digest": digest,
        "created_at": run.created_at, "description": f"{kind} {name}", "metadata": {"format": "pt"},
        "entity": run.entity, "project": run.project,
    }
