"""Shared fixtures: the W&B emulator on an ephemeral 127.0.0.1 port, and an isolated environment.

The wandb SDK and dlt never reach the internet here: error reporting and telemetry are off and every
base URL points at the emulator.
"""

from __future__ import annotations

import os
import tempfile

import pytest

_HOME = tempfile.mkdtemp(prefix="wandb-source-tests-")
os.environ.update({
    "WANDB_ERROR_REPORTING": "false",
    "WANDB_SILENT": "true",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_CONFIG_DIR": os.path.join(_HOME, "wandb-config"),
    "WANDB_DIR": os.path.join(_HOME, "wandb-dir"),
    "WANDB_CACHE_DIR": os.path.join(_HOME, "wandb-cache"),
    "WANDB_DATA_DIR": os.path.join(_HOME, "wandb-data"),
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "NETRC": os.path.join(_HOME, "netrc"),
})
for _var in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT"):
    os.environ.pop(_var, None)

from tests import no_network  # noqa: E402

# The W&B host names some tests give pure resolution functions are never connected to: any connection from
# this process to a non-loopback address fails (tests/test_units.py checks).
no_network.install()

# `make test` runs two workers (pytest-xdist): each loads into its own Postgres database, so that tests loading
# a fixed dataset name (the command line's `wandb_data`) never meet
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("WANDB_TEST_PG_DATABASE", f"test_{os.environ['PYTEST_XDIST_WORKER']}")

from tests.helpers import DESTINATIONS, POSTGRES_DATABASE, drop_dataset, ensure_database, make_pipeline  # noqa: E402

if POSTGRES_DATABASE != "test":
    ensure_database(POSTGRES_DATABASE)
from wandb_source.emulator import DatasetSpec, Emulator  # noqa: E402


@pytest.fixture
def make_emulator():
    """Factory: `make_emulator(runs=5, steps=50, ...)` starts an emulator with that dataset."""
    started: list[Emulator] = []

    def make(spec: DatasetSpec | None = None, **kwargs) -> Emulator:
        server_kwargs = {k: kwargs.pop(k) for k in ("latency", "rate_limit", "history_page_serves_exported",
                                                    "profile") if k in kwargs}
        emu = Emulator(spec or DatasetSpec(**kwargs), **server_kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
        wide = [(held, samples) for held, samples in emu.history_windows if held > samples]
        assert not wide, f"HistoryPage windows held more rows than `samples` (W&B may sample them): {wide[:5]}"


@pytest.fixture
def emulator(make_emulator) -> Emulator:
    """The demo dataset: 12 awkward runs x up to 200 steps in `emulator/demo`, served under the profile
    `WANDB_EMULATOR_PROFILE` names (default: pessimistic, see wandb_source/emulator/profile.py)."""
    return make_emulator()


@pytest.fixture
def wandb_env(emulator, monkeypatch, tmp_path):
    """Point the wandb SDK at the emulator (base URL, key, a fresh history cache)."""
    monkeypatch.setenv("WANDB_BASE_URL", emulator.url)
    monkeypatch.setenv("WANDB_API_KEY", emulator.api_key)
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    return emulator


@pytest.fixture(params=DESTINATIONS)
def pipeline(request, tmp_path):
    """A fresh pipeline on each destination (DuckDB file, the Postgres `test` database, local Delta files);
    its Postgres schemas are dropped afterwards."""
    p = make_pipeline(request.param, tmp_path)
    yield p
    drop_dataset(p)


def pytest_collection_modifyitems(config, items):
    """Under the convenient profile, a test parametrized over destinations runs on DuckDB only: the profile
    changes what the server answers, the destination what stores it, and the pessimistic pass runs every
    destination (`make test`). Set WANDB_TEST_EVERY_DESTINATION=1 to run them all."""
    if os.environ.get("WANDB_EMULATOR_PROFILE") != "convenient" or os.environ.get("WANDB_TEST_EVERY_DESTINATION"):
        return
    other = [item for item in items if _destination(item) not in (None, "duckdb")]
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = [item for item in items if _destination(item) in (None, "duckdb")]


def _destination(item) -> str | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    found = [v for k, v in params.items() if k in ("pipeline", "destination") and v in DESTINATIONS]
    return found[0] if found else None
