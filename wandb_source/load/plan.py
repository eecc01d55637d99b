"""What a load would do, without doing it (`wandb-source plan`): per project, the runs listed,
new and changed since the last load (from the pipeline's state), the history steps to fetch and the
requests to expect. One listing of the runs is all it costs.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

from .. import settings
from ..api.events import batched_size
from ..api.history_plan import batch_runs, group_runs
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
    requests: int = 0  # an estimate: every history step fetched live (none from parquet), no empty pages, no
    # logged tables (their history reads and files depend on summaries the listing does not hold)

    @property
    def name(self) -> str:
        return f"{self.entity}/{self.project}"


@dataclass
class LoadPlan:
    projects: list[ProjectPlan]
    overhead: int  # requests made once per load: viewer, server probe, project lists

    @property
    def requests(self) -> int:
        return self.overhead + sum(p.requests for p in self.projects)


def plan_load(source: Any, pipeline: Any,
              history_page_size: int = settings.HISTORY_PAGE_SIZE) -> LoadPlan:
    """The plan of every project of `source` (a `wandb_source`), given what `pipeline` loaded so far."""
    loaded_runs = loaded_signatures(pipeline)
    cursors = history_cursors(pipeline)
    metadata = metadata_loaded(pipeline)
    selected = set(source.selected_resources)
    (listing,) = list(source.resources["runs_listing"])
    plans = [_project_plan(page, loaded_runs, cursors, metadata, selected, history_page_size)
             for page in listing["projects"]]
    return LoadPlan(plans, _overhead(listing, selected))


def _overhead(listing: dict[str, Any], selected: set[Any]) -> int:
    """The viewer, the server probe, and per entity its project list (a page per 50 projects) for the
    `projects` table and, when no projects were named, to find them."""
    per_entity = Counter(page["entity"] for page in listing["projects"])
    pages = sum(math.ceil(n / settings.PROJECTS_PAGE_SIZE) for n in per_entity.values())
    listed = sum(math.ceil(per_entity[e] / settings.PROJECTS_PAGE_SIZE) for e in listing.get("discovered", ()))
    return 2 + ("projects" in selected) * pages + listed


def _project_plan(page: dict[str, Any], loaded: dict[str, Any], cursors: dict[str, RunEntry], metadata: set[str],
                  selected: set[Any], page_size: int) -> ProjectPlan:
    plan = ProjectPlan(page["entity"], page["project"], runs=len(page["runs"]))
    # sweeps, listing
    plan.requests = ("sweeps" in selected) + math.ceil(len(page["runs"]) / settings.RUNS_PAGE_SIZE)
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
        plan.steps += _steps_to_fetch(node, cursors.get(key))
    if "history" in selected:
        plan.requests += _history_requests(page, changed_runs, cursors, page_size)
    # full runs: 50 per request
    plan.requests += ("runs" in selected) * math.ceil(len(changed_runs) / settings.DETAIL_BATCH_SIZE)
    if "system_metrics" in selected:
        plan.requests += _events_requests(changed_runs)
    if "run_metadata" in selected:  # every listed run without metadata yet: lookups of 50, a download each
        todo = sum(f"{page['entity']}/{page['project']}/{node['name']}" not in metadata for node in page["runs"])
        plan.requests += math.ceil(todo / settings.DETAIL_BATCH_SIZE) + todo
    if "logged_tables" in selected:  # which keys logged a table: 50 runs per request (their reads are not counted)
        plan.requests += math.ceil(len(changed_runs) / settings.DETAIL_BATCH_SIZE)
    if "artifacts" in selected:
        per_request = max(1, settings.ARTIFACTS_PER_REQUEST // (2 * settings.ARTIFACTS_NESTED_PAGE_SIZE))
        plan.requests += math.ceil(len(changed_runs) / per_request)
    return plan


def _history_requests(page: dict[str, Any], changed: list[dict[str, Any]], cursors: dict[str, RunEntry],
                      page_size: int) -> int:
    """One request per batch of small runs (`history_plan.batch_runs`); for every other run a parquet
    lookup and its live windows (each lists at most page_size - 1 steps); none for a new run with no rows."""
    keys = [f"{page['entity']}/{page['project']}/{node['name']}" for node in changed]
    lasts = [HistoryCursor.from_state(cursors[k].cursor).last_step if k in cursors else -1 for k in keys]
    groups = batch_runs([(None, node.get("historyLineCount"), last) for node, last in zip(changed, lasts)],
                        page_size, settings.DETAIL_BATCH_SIZE)
    batched = {i for group in groups for i in group}
    requests = len(groups)
    for i, node in enumerate(changed):
        steps = _steps_to_fetch(node, cursors.get(keys[i]))
        if i not in batched and (steps or (keys[i] not in cursors and node.get("historyLineCount") != 0)):
            requests += 1 + max(1, math.ceil(steps / max(1, page_size - 1)))
    return requests


def _events_requests(changed: list[dict[str, Any]]) -> int:
    """Events file lookups of 50, a batch per group of finished runs with few samples (`api.events`), and
    for every other run its wandb-events.jsonl download or events read; none for a run without samples."""
    sampled = sum(node.get("eventsLineCount") != 0 for node in changed)
    sizes = [(None, batched_size(node.get("state"), node.get("eventsLineCount"))) for node in changed]
    groups = group_runs(sizes, settings.EVENTS_BATCH_SAMPLES, settings.DETAIL_BATCH_SIZE)
    batched = sum(len(group) for group in groups)
    return math.ceil(sampled / settings.DETAIL_BATCH_SIZE) + len(groups) + sampled - batched


def _steps_to_fetch(node: dict[str, Any], entry: Optional[RunEntry]) -> int:
    count = node.get("historyLineCount") or 0
    last_step = HistoryCursor.from_state(entry.cursor).last_step if entry else -1
    return count if last_step < 0 else max(0, count - (last_step + 1))  # steps past the last one, if from 0
