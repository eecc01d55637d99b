"""What a load would do, without doing it (`wandb_pipeline.py --dry-run`): per project, the runs listed,
new and changed since the last load (from the pipeline's state), the history steps to fetch and the
requests to expect. One listing of the runs is all it costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from .. import settings
from ..convert.runs import SIGNATURE
from ..state import HistoryCursor, RunEntry, history_cursors, loaded_signatures, metadata_loaded


@dataclass
class ProjectPlan:
    entity: str
    project: str
    runs: int = 0
    new: int = 0
    changed: int = 0
    steps: int = 0  # history rows to fetch (for a changed run: the steps past the last one loaded)
    requests: int = 0  # an estimate: every history step fetched live (none from parquet), no empty pages

    @property
    def name(self) -> str:
        return f"{self.entity}/{self.project}"


def plan_load(source: Any, pipeline_state: dict[str, Any],
              history_page_size: int = settings.HISTORY_PAGE_SIZE) -> list[ProjectPlan]:
    """Plans of every project of `source` (a `wandb_source`), given the pipeline's state (`pipeline.state`)."""
    loaded_runs = loaded_signatures(pipeline_state)
    cursors = history_cursors(pipeline_state)
    metadata = metadata_loaded(pipeline_state)
    selected = set(source.selected_resources)
    (listing,) = list(source.resources["runs_listing"])
    return [_project_plan(page, loaded_runs, cursors, metadata, selected, history_page_size)
            for page in listing["projects"]]


def _project_plan(page: dict[str, Any], loaded: dict[str, Any], cursors: dict[str, RunEntry], metadata: set[str],
                  selected: set[Any], page_size: int) -> ProjectPlan:
    plan = ProjectPlan(page["entity"], page["project"], runs=len(page["runs"]))
    # viewer and server probe, projects, sweeps, listing
    plan.requests = 4 + math.ceil(len(page["runs"]) / settings.RUNS_PAGE_SIZE)
    changed_runs = []
    for node in page["runs"]:
        key = f"{page['entity']}/{page['project']}/{node['name']}"
        if key not in loaded:
            plan.new += 1
        elif loaded[key] != node[SIGNATURE]:
            plan.changed += 1
        else:
            continue
        changed_runs.append(node)
        steps = _steps_to_fetch(node, cursors.get(key))
        plan.steps += steps
        if "history" in selected and (steps or key not in cursors):
            # parquet lookup + live windows (each lists at most page_size - 1 steps)
            plan.requests += 1 + max(1, math.ceil(steps / max(1, page_size - 1)))
        # wandb-events.jsonl download, or the events read; none for a run W&B says has no samples
        plan.requests += "system_metrics" in selected and node.get("eventsLineCount") != 0
        plan.requests += "run_metadata" in selected and key not in metadata
    batches = math.ceil(len(changed_runs) / settings.DETAIL_BATCH_SIZE)
    # full runs, metadata file lookups, events file lookups: 50 runs per request
    plan.requests += batches * (("runs" in selected) + ("run_metadata" in selected) + ("system_metrics" in selected))
    if "artifacts" in selected:
        per_request = max(1, settings.ARTIFACTS_PER_REQUEST // (2 * settings.ARTIFACTS_NESTED_PAGE_SIZE))
        plan.requests += math.ceil(len(changed_runs) / per_request)
    return plan


def _steps_to_fetch(node: dict[str, Any], entry: Optional[RunEntry]) -> int:
    count = node.get("historyLineCount") or 0
    last_step = HistoryCursor.from_state(entry.cursor).last_step if entry else -1
    return count if last_step < 0 else max(0, count - (last_step + 1))  # steps past the last one, if from 0
