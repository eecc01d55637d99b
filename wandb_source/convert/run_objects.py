"""What W&B keeps beside a run's config, summary and history: the `wandb-metadata.json` file
(`run_metadata`), the artifacts a run logged and used (`artifacts`) and its `define_metric` step
axes (`metric_axes`). Rows only; the resources that fetch them are in `__init__.py`, the run-log
path builds the same rows from the log's environment and metric records.
"""

from __future__ import annotations

from typing import Any, Optional

from ..tables import RUN_KEY
from .values import json_or_text, json_value, parse_time

METADATA_FILE = "wandb-metadata.json"
EVENTS_FILE = "wandb-events.jsonl"  # the SDK's system-metrics stream, one JSON object per sample
# define_metric records as the SDK stores them in config `_wandb.m` (protobuf field numbers)
_NAME, _GLOB, _STEP_METRIC, _STEP_INDEX, _OPTIONS, _SUMMARY, _GOAL = "1", "2", "4", "5", "6", "7", "8"
_SUMMARIES = {1: "min", 2: "max", 3: "mean", 4: "best", 5: "last", 6: "none", 7: "copy", 8: "first"}
_GOALS = {1: "minimize", 2: "maximize"}
_HIDDEN = 2


def metadata_row(run_key: tuple[Any, ...], metadata: Any) -> Optional[dict[str, Any]]:
    """`wandb-metadata.json` → one `run_metadata` row: top-level fields as columns (host, os, python,
    program, gpu, gpu_count, ...), one level of objects flattened (`git` → `git_remote`, `git_commit`),
    lists and deeper objects as JSON. None when the file is not a JSON object."""
    if not isinstance(metadata, dict):
        return None
    row: dict[str, Any] = dict(zip(RUN_KEY, run_key))
    for key, value in metadata.items():
        if isinstance(value, dict) and value and all(not isinstance(v, (dict, list)) for v in value.values()):
            for inner, item in value.items():
                row[_column(f"{key}_{inner}")] = item
        else:
            row[_column(key)] = json_value(value) if isinstance(value, (dict, list)) else value
    for key in ("started_at", "heartbeat_at"):
        if isinstance(row.get(key), str):
            row[key] = parse_time(row[key])
    return row


def _column(key: str) -> str:
    """Metadata keys are camelCase or snake_case; the run key's names stay ours."""
    name = "".join(f"_{c.lower()}" if c.isupper() else c for c in key).lstrip("_")
    return f"metadata_{name}" if name in RUN_KEY or name.startswith("_dlt") else name


def artifact_rows(run_key: tuple[Any, ...], direction: str, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Artifact versions a run logged (`direction` "output") or used ("input"), one row each, keyed by
    the run, the direction and the artifact version's id."""
    rows = []
    for node in nodes:
        index = node.get("versionIndex")
        rows.append({
            **dict(zip(RUN_KEY, run_key)), "direction": direction, "artifact_id": node["id"],
            "name": (node.get("artifactSequence") or {}).get("name"),
            "type": (node.get("artifactType") or {}).get("name"),
            "version": f"v{index}" if index is not None else None,
            "aliases": json_value([a["alias"] for a in node.get("aliases") or [] if a.get("alias")]),
            "size": node.get("size"), "digest": node.get("digest"), "file_count": node.get("fileCount"),
            "state": node.get("state"), "description": node.get("description"),
            "metadata": json_value(json_or_text(node.get("metadata"))),
            "created_at": parse_time(node.get("createdAt")), "updated_at": parse_time(node.get("updatedAt")),
        })
    return rows


def metric_axes_rows(run_key: tuple[Any, ...], wandb_config: Any) -> list[dict[str, Any]]:
    """`define_metric` definitions from config `_wandb.m` → one `metric_axes` row per metric: which
    metric it is plotted against (`step_metric`), its summary (min/max/...), goal and hidden flag."""
    metrics = wandb_config.get("m") if isinstance(wandb_config, dict) else None
    if not isinstance(metrics, list):
        return []
    rows = []
    for record in metrics:
        if not isinstance(record, dict) or not (record.get(_NAME) or record.get(_GLOB)):
            continue
        rows.append({**dict(zip(RUN_KEY, run_key)), "metric": record.get(_NAME) or record.get(_GLOB),
                     "is_glob": not record.get(_NAME), "step_metric": _step_metric(record, metrics),
                     "summary": json_value([_SUMMARIES.get(n, str(n)) for n in record.get(_SUMMARY) or []]),
                     "goal": _GOALS.get(record.get(_GOAL, 0)),
                     "hidden": _HIDDEN in (record.get(_OPTIONS) or [])})
    return rows


def _step_metric(record: dict[str, Any], metrics: list[Any]) -> Optional[str]:
    if record.get(_STEP_METRIC):
        return record[_STEP_METRIC]
    index = record.get(_STEP_INDEX)  # 1-based position of the step metric's own record
    if isinstance(index, int) and 0 < index <= len(metrics) and isinstance(metrics[index - 1], dict):
        return metrics[index - 1].get(_NAME)
    return None
