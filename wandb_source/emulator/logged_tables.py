"""Sample logged `wandb.Table`s for generated runs, in the shapes the wandb SDK 0.31 writes (see
`wandb_source/convert/logged_tables.py`): an `eval/predictions` table every `every` steps, its reference in the
step's history row and the summary, its file `media/table/eval/predictions_<n>_<hash>.table.json` among the
run's files. With `images`, each row also holds an image: the run file says `"Image"`, and the table's
`run_table` artifact copy (served with its manifest and files, its client id named by the reference's
`artifact_path`) holds the image's reference. Tests that need the SDK's own output serve runs it wrote
(`run_logs.py`)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import struct
import zlib

from ..convert.logged_tables import manifest_digest
from .store import Run, StoredArtifact

KEY = "eval/predictions"
COLUMNS = ["example", "label", "prediction", "confidence"]
CLASSES = ("cat", "dog", "bird")
_ARTIFACT_NUMBERS = itertools.count(500000)  # W&B's ids: base64 of "Artifact:<n>" (6 digits: no "/" or "=")


def predictions(run_id: str, step: int, rows: int = 8) -> list[list]:
    rng = random.Random(f"{run_id}/{step}")
    return [[i, CLASSES[i % 3], rng.choice(CLASSES), round(rng.random(), 4)] for i in range(rows)]


def add_predictions(run: Run, every: int = 50, images: bool = False) -> None:
    """Log an `eval/predictions` table at every step divisible by `every` (call before the history is read)."""
    refs = {}
    for n, step in enumerate(s for s in run.history.steps if s % every == 0):
        data = predictions(run.name, step)
        columns = COLUMNS + ["image"] * images
        body = _json({"columns": columns, "data": [row + ["Image"] * images for row in data]})
        digest = hashlib.sha256(body).hexdigest()
        path = f"media/table/{KEY}_{n}_{digest[:20]}.table.json"
        run.files[path] = body
        refs[step] = {"_type": "table-file", "path": path, "sha256": digest, "size": len(body), "nrows": len(data),
                      "ncols": len(columns), "log_mode": "IMMUTABLE"}
        if images:
            refs[step]["artifact_path"] = f"wandb-client-artifact://{_copy(run, step, columns, data)}/{KEY}.table.json"
    if not refs:
        return
    make_row = run.history._make_row
    if make_row is None:
        raise ValueError("add_predictions needs a generated history")
    run.history._make_row = lambda step: {**make_row(step), **({KEY: refs[step]} if step in refs else {})}
    run.summary[KEY] = refs[max(refs)]


def _copy(run: Run, step: int, columns: list[str], data: list[list]) -> str:
    """The table's `run_table` artifact copy, kept in `run.copies` for the store to serve; its client id."""
    artifact_id = base64.b64encode(f"Artifact:{next(_ARTIFACT_NUMBERS)}".encode()).decode()
    files, cells = {}, []
    for i, _ in enumerate(data):
        png = _png(hashlib.sha256(f"{run.name}/{step}/{i}".encode()).digest()[:3])
        digest = hashlib.sha256(png).hexdigest()
        image_path = f"media/images/{digest[:20]}.png"
        files[image_path] = png
        cells.append({"_type": "image-file", "format": "png", "height": 1, "width": 1, "path": image_path,
                      "sha256": digest})
    files[f"{KEY}.table.json"] = _json({"_type": "table", "columns": columns, "data": [
        row + [cell] for row, cell in zip(data, cells)], "ncols": len(columns), "nrows": len(data),
        "log_mode": "IMMUTABLE"})
    contents = {path: {"digest": manifest_digest(body), "size": len(body), "birthArtifactID": artifact_id}
                for path, body in files.items()}
    node = {"id": artifact_id, "name": f"run-{run.name}-{KEY.replace('/', '')}", "type": "run_table",
            "version_index": len(run.copies), "aliases": [f"v{len(run.copies)}"],
            "size": sum(len(b) for b in files.values()), "digest": hashlib.md5(b"".join(files.values())).hexdigest(),
            "created_at": run.created_at, "description": None, "metadata": {}, "entity": run.entity,
            "project": run.project}
    manifest = {"version": 1, "storagePolicy": "wandb-storage-policy-v1",
                "storagePolicyConfig": {"storageLayout": "V2"}, "contents": contents}
    client_id = hashlib.sha256(artifact_id.encode()).hexdigest()[:32]
    run.copies.append((client_id, StoredArtifact(artifact_id, node, manifest, files)))
    return client_id


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _png(rgb: bytes) -> bytes:
    """A 1x1 PNG of one colour."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" + rgb)) + \
        chunk(b"IEND", b"")
