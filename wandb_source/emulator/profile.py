"""Which reading of W&B's undocumented behaviour the emulator takes.

Where W&B documents nothing, the emulator must not answer the way the loader hopes: each behaviour below
is a switch, and `PESSIMISTIC` (the least convenient reading the evidence allows, see the protocol notes
in the project's shared docs) is what tests get unless they ask for another profile. `CONVENIENT` is how
the emulator behaved before: every exactness test runs under both (`WANDB_EMULATOR_PROFILE`).

| switch | pessimistic | evidence |
|---|---|---|
| `sample_history` | `history(minStep, maxStep, samples)` downsamples (evenly spaced, first and last kept) when the window holds more rows than `samples` | documented as sampled; no official client sends a window holding more |
| `events_cap` | `events(samples)` returns at most 1,000 samples | wandb/wandb issue 6501 |
| `events_file` | the full system-metrics stream is the run file `wandb-events.jsonl` | the SDK streams it there |
| `updated_at_on_append` | off: `updatedAt` moves on edits only, not when steps are appended or the run heartbeats | no SDK query selects `updatedAt` |
| `viewer_null_on_bad_key` | a bad key is answered HTTP 200 with `viewer: null` (and sees nothing) | a production W&B source, verified live |
| `hidden_pages` | every runs page is preceded by an empty page with `hasNextPage: true` | the same source, verified live |
| `max_page_size` | `first` clamped to 100 | no server maximum is documented |
| `retry_after_date` | `Retry-After` as an HTTP date | wandb-core parses both forms |
| `quota_units` | under a rate limit, `RateLimit-Remaining` counts an opaque quota on a 0-1000 scale, a history, events or file read costs 3x a light one, no `RateLimit-Limit` | W&B's docs (limited by database time; "0-1000 scale"); wandb-core's ratelimittracker.go estimates requests per unit |
| `table_key_types` | off: `historyKeys` type counts say `map` for a logged table, not its `_type` (`table-file`) | W&B documents no type names; the SDK never reads them |
| `client_ids_of_duplicates` | off: the client id of an artifact W&B deduplicated (the same content as a version already logged under its name, e.g. a table logged twice unchanged) has no `clientIDMapping` | W&B documents nothing on client ids; wandb-core resolves only those of artifacts it saved (core/pkg/artifacts/saver.go) |
| `missing_fields` | an older server: sweeps without `displayName`, `description`, `runCountExpected` | the SDK's legacy sweep fragment |

`SDK` is the pessimistic profile less `hidden_pages` and `missing_fields`: the SDK's own runs listing stops
at an empty page, and it picks its legacy sweep fragment from server feature flags this emulator does not
model; the tests that prove the emulator speaks W&B's protocol through the official SDK use it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

LEGACY_SWEEP_FIELDS = ("Sweep.displayName", "Sweep.description", "Sweep.runCountExpected")


@dataclass(frozen=True)
class ServerProfile:
    name: str
    sample_history: bool = True
    events_cap: int | None = 1000
    events_file: bool = True
    updated_at_on_append: bool = False
    viewer_null_on_bad_key: bool = True
    hidden_pages: bool = True
    max_page_size: int | None = 100
    retry_after_date: bool = True
    quota_units: bool = True
    table_key_types: bool = False
    client_ids_of_duplicates: bool = False
    missing_fields: tuple[str, ...] = LEGACY_SWEEP_FIELDS  # "Type.field" absent from the schema

    def but(self, **changes: object) -> ServerProfile:
        """This profile with some switches changed (`PESSIMISTIC.but(missing_fields=(...))`)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


PESSIMISTIC = ServerProfile("pessimistic")
CONVENIENT = ServerProfile("convenient", sample_history=False, events_cap=None, events_file=False,
                           updated_at_on_append=True, viewer_null_on_bad_key=False, hidden_pages=False,
                           max_page_size=None, retry_after_date=False, quota_units=False, missing_fields=(),
                           table_key_types=True, client_ids_of_duplicates=True)
SDK = PESSIMISTIC.but(name="sdk", hidden_pages=False, missing_fields=())
PROFILES = {p.name: p for p in (PESSIMISTIC, CONVENIENT, SDK)}


def default_profile() -> ServerProfile:
    """`WANDB_EMULATOR_PROFILE` (pessimistic, convenient or sdk); pessimistic when unset."""
    name = os.environ.get("WANDB_EMULATOR_PROFILE", "pessimistic")
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"WANDB_EMULATOR_PROFILE={name!r}: use one of {sorted(PROFILES)}") from None
