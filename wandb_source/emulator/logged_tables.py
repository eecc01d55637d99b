"""Sample logged `wandb.Table`s for generated runs, in the shapes the wandb SDK 0.31 writes (see
`wandb_source/convert/logged_tables.py`): an `eval/predictions` table every `every` steps, its reference in the
step's history row and the summary, its file `media/table/eval/predictions_<n>_<hash>.table.json` among the
run's files. Tests that need the SDK's own output serve runs it wrote (`run_logs.py`)."""

from __future__ import annotations

import hashlib
import json
import random

from .store import Run

KEY = "eval/predictions"
COLUMNS = ["example", "label", "prediction", "confidence"]
CLASSES = ("cat", "dog", "bird")


def predictions(run_id: str, step: int, rows: int = 8) -> list[list]:
    rng = random.Random(f"{run_id}/{step}")
    return [[i, CLASSES[i % 3], rng.choice(CLASSES), round(rng.random(), 4)] for i in range(rows)]


def add_predictions(run: Run, every: int = 50) -> None:
    """Log an `eval/predictions` table at every step divisible by `every` (call before the history is read)."""
    refs = {}
    for n, step in enumerate(s for s in run.history.steps if s % every == 0):
        data = predictions(run.name, step)
        body = json.dumps({"columns": COLUMNS, "data": data}, separators=(",", ":")).encode()
        digest = hashlib.sha256(body).hexdigest()
        path = f"media/table/{KEY}_{n}_{digest[:20]}.table.json"
        run.files[path] = body
        refs[step] = {"_type": "table-file", "path": path, "sha256": digest, "size": len(body), "nrows": len(data),
                      "ncols": len(COLUMNS), "log_mode": "IMMUTABLE"}
    if not refs:
        return
    make_row = run.history._make_row
    if make_row is None:
        raise ValueError("add_predictions needs a generated history")
    run.history._make_row = lambda step: {**make_row(step), **({KEY: refs[step]} if step in refs else {})}
    run.summary[KEY] = refs[max(refs)]
