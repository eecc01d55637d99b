"""W&B run, project and sweep objects → rows; a run's change signature. Pure, no I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from ..settings import WANDB_INTERNAL_CONFIG_KEYS
from .values import TIMESTAMP, dumps_json, float_or_none, json_value, loads_wandb, parse_time, value_kind

# What tells a run changed: no single field does on every W&B server (`updatedAt` is selected by no SDK
# query and may not move when steps are appended, or be missing), so a run is fetched again when any moved.
CHANGE_SIGNALS = ("updatedAt", "heartbeatAt", "state", "historyLineCount", "eventsLineCount", "displayName",
                  "tags", "notes", "description", "group", "jobType", "sweepName")


SIGNATURE = "_signature"  # where the runs listing keeps each run's change signature


def change_signature(node: dict[str, Any]) -> str:
    """A short digest of a run's change signals (a signal the server does not give counts as null: it
    can never hide a change in the others)."""
    values = json.dumps([node.get(name) for name in CHANGE_SIGNALS], sort_keys=True, default=str)
    return hashlib.sha1(values.encode()).hexdigest()[:16]


def signed(node: dict[str, Any]) -> dict[str, Any]:
    """A listed run with its change signature, computed once per load for every resource that asks."""
    node[SIGNATURE] = change_signature(node)
    return node



def run_row(node: dict[str, Any], entity: str, project: str, app_url: str) -> dict[str, Any]:
    """A full W&B run object → one `runs` row (config/summary/system metrics kept as JSON too)."""
    config = unwrap_config(loads_wandb(node.get("config")))
    summary = loads_wandb(node.get("summaryMetrics"))
    history_keys = node.get("historyKeys") or {}
    runtime = (summary.get("_wandb") or {}).get("runtime") if isinstance(summary.get("_wandb"), dict) else None
    return {
        "entity": entity, "project": project, "run_id": node["name"], "storage_id": node.get("id"),
        "display_name": node.get("displayName"), "state": node.get("state"),
        "created_at": parse_time(node.get("createdAt")), "updated_at": parse_time(node.get("updatedAt")),
        "heartbeat_at": parse_time(node.get("heartbeatAt")), "runtime": float_or_none(runtime),
        "tags": json_value(node.get("tags") or []), "group": node.get("group"), "job_type": node.get("jobType"),
        "sweep": node.get("sweepName"), "user": (node.get("user") or {}).get("username"), "host": node.get("host"),
        "commit": node.get("commit"), "notes": node.get("notes"), "description": node.get("description"),
        "url": node.get("url") or f"{app_url}/{entity}/{project}/runs/{node['name']}",
        "history_line_count": node.get("historyLineCount"), "last_step": history_keys.get("lastStep"),
        "config": json_value({k: v for k, v in config.items() if k not in WANDB_INTERNAL_CONFIG_KEYS}),
        "wandb_internal": json_value({k: v for k, v in config.items() if k in WANDB_INTERNAL_CONFIG_KEYS}),
        "summary": json_value(summary), "system_metrics": json_value(loads_wandb(node.get("systemMetrics"))),
        "deleted_at": None,
    }


def unwrap_config(raw: dict[str, Any]) -> dict[str, Any]:
    """W&B wraps config values as {"value": v, "desc": d}; return {key: v}."""
    return {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in raw.items()}


def key_value_table(run_keys: list[tuple[str, str, str]], mappings: list[dict[str, Any]],
                    skip: Iterable[str] = ()) -> pa.Table | None:
    """Config or summary of several runs → one row per (run, key): queryable by key with plain SQL.

    An Arrow table with explicit types, so floats stay exact (dlt's dict path rounds them)."""
    cols: dict[str, list[Any]] = {n: [] for n in ("entity", "project", "run_id", "key", "value_number",
                                             "value_text", "value_bool", "value_json")}
    for run_key, values in zip(run_keys, mappings):
        for key, value in values.items():
            if key in skip:
                continue
            kind = value_kind(value)
            for name, part in zip(("entity", "project", "run_id"), run_key):
                cols[name].append(part)
            cols["key"].append(key)
            cols["value_number"].append(float(value) if kind == "number" else None)
            cols["value_text"].append(value if kind == "text" and isinstance(value, str) else None)
            cols["value_bool"].append(value if kind == "bool" else None)
            cols["value_json"].append(dumps_json(value) if kind in ("json", "int") else None)
    if not cols["key"]:
        return None
    types = {"value_number": pa.float64(), "value_bool": pa.bool_()}
    return pa.table({name: pa.array(vals, types.get(name, pa.string())) for name, vals in cols.items()})


def project_row(node: dict[str, Any]) -> dict[str, Any]:
    return {"entity": node["entityName"], "name": node["name"], "id": node.get("id"),
            "created_at": parse_time(node.get("createdAt")), "description": node.get("description")}


def sweep_row(node: dict[str, Any], entity: str, project: str) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load(node.get("config") or "") or {}
    except yaml.YAMLError:
        config = {"_unparsed": node.get("config")}
    metric = config.get("metric") if isinstance(config, dict) else None
    return {
        "entity": entity, "project": project, "sweep_id": node["name"], "storage_id": node.get("id"),
        "display_name": node.get("displayName"), "method": node.get("method") or config.get("method"),
        "state": node.get("state"), "description": node.get("description"), "best_loss": node.get("bestLoss"),
        "metric_name": (metric or {}).get("name"), "metric_goal": (metric or {}).get("goal"),
        "config": dumps_json(config), "created_at": parse_time(node.get("createdAt")),
        "updated_at": parse_time(node.get("updatedAt")), "run_count": node.get("runCount"),
        "run_count_expected": node.get("runCountExpected"),
    }


SWEEP_SCHEMA = pa.schema([
    ("entity", pa.string()), ("project", pa.string()), ("sweep_id", pa.string()), ("storage_id", pa.string()),
    ("display_name", pa.string()), ("method", pa.string()), ("state", pa.string()), ("description", pa.string()),
    ("best_loss", pa.float64()), ("metric_name", pa.string()), ("metric_goal", pa.string()),
    ("config", pa.string()), ("created_at", TIMESTAMP), ("updated_at", TIMESTAMP), ("run_count", pa.int64()),
    ("run_count_expected", pa.int64()),
])


def sweeps_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Sweep rows as Arrow with explicit types (exact `best_loss`)."""
    return pa.Table.from_pylist(rows, schema=SWEEP_SCHEMA)

