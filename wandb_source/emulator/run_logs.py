"""Runs the real wandb SDK wrote (a run folder: `run-<id>.wandb` and `files/`), served as W&B would after a sync:
its history rows, summary and config from the log, its run files (logged tables' `media/table/*.table.json`
among them) under their paths, and the artifacts it logged (a logged table's `run_table` copy among them) with
their files, read from where the log's artifact records say the SDK staged them.

An artifact whose content (digest) equals a version already logged under its name is that version, as W&B
deduplicates; whether its client id then names that version is the profile's `client_ids_of_duplicates`."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

from ..logs.records import read_records
from ..logs.run_log import parse_log
from .store import Run, RunHistory, Store, StoredArtifact

UTC = dt.timezone.utc


def add_logged_run(store: Store, run_dir: Path) -> Run:
    """Add the run logged in `run_dir` (its project created when missing); returns it."""
    logs = sorted(Path(run_dir).glob("run-*.wandb"))
    if len(logs) != 1:
        raise ValueError(f"{run_dir} holds {len(logs)} run logs, not one")
    log = parse_log(logs[0])
    now = dt.datetime.now(UTC)
    run = Run(entity=log.entity, project=log.project, name=log.node["name"], display_name=log.node["displayName"],
              state=log.node["state"], created_at=now, updated_at=now, heartbeat_at=now, config=dict(log.config),
              summary=dict(log.summary), tags=list(log.node.get("tags") or []), notes=log.node.get("notes"),
              history=RunHistory(), host=log.node.get("host"))
    for row in log.history:
        run.history.append(row)
    files = Path(run_dir) / "files"
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        run.files[path.relative_to(files).as_posix()] = path.read_bytes()
    added = store.add_run(run)  # creates the project when missing
    with store.lock:
        for record, _ in read_records(logs[0]):
            if record.WhichOneof("record_type") == "artifact":  # type: ignore[attr-defined]
                _add_artifact(store, added, record.artifact)  # type: ignore[attr-defined]
    return added


def _add_artifact(store: Store, run: Run, record: Any) -> None:
    versions = [a for a in run.output_artifacts if a["name"] == record.name]
    same = next((a for a in versions if a["digest"] == record.digest), None)
    if same is not None:
        store.duplicate_client_ids[record.client_id] = same["id"]
        return
    artifact_id = base64.b64encode(f"Artifact:{100000 + len(store.artifacts)}".encode()).decode()
    files, contents = {}, {}
    for entry in record.manifest.contents:
        contents[entry.path] = {"digest": entry.digest, "size": entry.size, "birthArtifactID": artifact_id}
        staged = Path(entry.local_path)
        if staged.is_file():
            files[entry.path] = staged.read_bytes()
    for earlier in versions:
        earlier["aliases"] = [a for a in earlier["aliases"] if a != "latest"]
    node = {"id": artifact_id, "name": record.name, "type": record.type, "version_index": len(versions),
            "aliases": ["latest", f"v{len(versions)}"], "size": sum(e["size"] for e in contents.values()),
            "digest": record.digest, "created_at": store.now(), "description": record.description or None,
            "metadata": {}, "entity": run.entity, "project": run.project}
    manifest = {"version": record.manifest.version, "storagePolicy": record.manifest.storage_policy,
                "storagePolicyConfig": {"storageLayout": "V2"}, "contents": contents}
    run.output_artifacts.append(node)
    store.artifacts[artifact_id] = StoredArtifact(artifact_id, node, manifest, files)
    store.client_ids[record.client_id] = artifact_id
