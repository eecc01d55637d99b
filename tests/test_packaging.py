"""The wheel as `pip install wandb-source` gets it: what it pulls without extras, what it ships."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.one_profile  # the wheel's metadata and contents: the server profile does not change it

ROOT = Path(__file__).resolve().parent.parent
EXTRAS_ONLY = {"wandb", "psycopg2", "psycopg2-binary", "adbc-driver-postgresql", "deltalake", "graphql-core",
               "matplotlib", "dagster", "dagster-dlt"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(out.glob("wandb_source-*.whl"))


def _wheel_file(wheel: Path, suffix: str) -> str:
    with zipfile.ZipFile(wheel) as z:
        return z.read(next(n for n in z.namelist() if n.endswith(suffix))).decode()


def _closure(requirements: list[Requirement], extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution `requirements` pull in, transitively, read from the installed packages' metadata."""
    seen: set[str] = set()
    todo = [(r, extras) for r in requirements]
    while todo:
        req, wanted = todo.pop()
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        dist = metadata.distribution(req.name)
        todo.extend((Requirement(r), frozenset(req.extras)) for r in dist.requires or [])
    return seen


def test_a_wheel_without_extras_pulls_neither_wandb_nor_psycopg2(wheel):
    requires = [Requirement(line.split(":", 1)[1].strip())
                for line in _wheel_file(wheel, ".dist-info/METADATA").splitlines() if line.startswith("Requires-Dist:")]
    base = [r for r in requires if not (r.marker and "extra" in str(r.marker))]
    pulled = _closure(base)
    assert {"dlt", "duckdb", "pyarrow", "requests"} <= pulled
    assert not pulled & EXTRAS_ONLY, sorted(pulled & EXTRAS_ONLY)
    offline = _closure([r for r in requires if r.marker and r.marker.evaluate({"extra": "offline"})],
                       frozenset({"offline"}))
    assert "wandb" in offline  # the check above can see wandb when it is pulled


def test_the_wheel_ships_the_command_and_the_demo_emulator(wheel):
    assert "wandb-source = wandb_source.cli:main" in _wheel_file(wheel, ".dist-info/entry_points.txt")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {"wandb_source/emulator/schema.graphql", "wandb_source/emulator/server.py",
            "wandb_source/cli/load.py"} <= names
    assert not any(n.startswith(("tests/", "pipelines/")) for n in names)
