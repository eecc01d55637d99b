"""`python pipelines/wandb_pipeline.py` run as a user would: config from .dlt/config.toml, destination
switched by config alone, readable errors and exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import psycopg2
import pytest

from tests.helpers import POSTGRES_DATABASE, POSTGRES_DSN

pytestmark = pytest.mark.one_profile  # configuration and destinations of the command line: the server profile does not change it

ROOT = Path(__file__).resolve().parent.parent
PG_DSN = POSTGRES_DSN


def project_dir(tmp_path: Path, destination: str, entity: str = "emulator") -> Path:
    """A copy of the user-facing files: the pipeline script and a .dlt/config.toml."""
    (tmp_path / "pipelines").mkdir()
    shutil.copy(ROOT / "pipelines" / "wandb_pipeline.py", tmp_path / "pipelines")
    (tmp_path / ".dlt").mkdir()
    config = (ROOT / ".dlt" / "config.toml").read_text()
    config = config.replace('destination_type = "duckdb"', f'destination_type = "{destination}"')
    config = config.replace('# entity = "my-team"', f'entity = "{entity}"')
    config = config.replace('database = "postgres"', f'database = "{POSTGRES_DATABASE}"')
    (tmp_path / ".dlt" / "config.toml").write_text(config)
    (tmp_path / ".dlt" / "secrets.toml").write_text('[destination.postgres.credentials]\npassword = "postgres"\n')
    return tmp_path


def run_script(cwd: Path, emulator, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    environ.update({"DLT_DATA_DIR": str(cwd / "dlt_home"), "WANDB_BASE_URL": emulator.url,
                    "WANDB_API_KEY": emulator.api_key, "PYTHONPATH": str(ROOT)}, **env)
    return subprocess.run([sys.executable, str(cwd / "pipelines" / "wandb_pipeline.py"), *args], cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=300)


def test_duckdb_by_default_then_postgres_by_config(tmp_path, emulator):
    (tmp_path / "a").mkdir()
    cwd = project_dir(tmp_path / "a", "duckdb")
    done = run_script(cwd, emulator)
    assert done.returncode == 0, done.stderr
    assert "history" in done.stdout and "runs" in done.stdout
    with duckdb.connect(str(cwd / "wandb_pipeline.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from wandb_data.runs").fetchone()[0] == 12

    again = run_script(cwd, emulator)
    assert again.returncode == 0 and "nothing new" in again.stdout

    (tmp_path / "b").mkdir()
    cwd = project_dir(tmp_path / "b", "postgres")
    done = run_script(cwd, emulator)
    assert done.returncode == 0, done.stderr
    try:
        with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from wandb_data.runs")
            assert cur.fetchone()[0] == 12
    finally:
        with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
            cur.execute("drop schema if exists wandb_data cascade")


def test_filesystem_by_environment(tmp_path, emulator):
    cwd = project_dir(tmp_path, "duckdb")
    done = run_script(cwd, emulator, PIPELINES__WANDB_PIPELINE__DESTINATION_TYPE="filesystem")
    assert done.returncode == 0, done.stderr
    assert list((cwd / "_data" / "wandb_files" / "wandb_data" / "history").rglob("*.parquet"))


@pytest.mark.parametrize("env, message", [
    ({"WANDB_API_KEY": "local-" + "x" * 40}, "did not accept the API key"),
    ({"WANDB_API_KEY": ""}, "no W&B API key"),  # NETRC points at a file that does not exist (conftest)
    ({"SOURCES__WANDB__ENTITY": "nobody"}, "no projects of entity 'nobody'"),
    ({"SOURCES__WANDB__PROJECTS": '["no-such-project"]'}, "no project emulator/no-such-project"),
    ({"SOURCES__WANDB__FILTERS": '{"state": {"$bogus": 1}}'}, "rejected the run filter"),
    ({"WANDB_BASE_URL": "http://wandb.example.com"}, "refusing to send the W&B API key over plain http"),
])
def test_failures_exit_1_with_one_clear_message(tmp_path, emulator, env, message):
    done = run_script(project_dir(tmp_path, "duckdb"), emulator, **env)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert emulator.api_key not in done.stderr + done.stdout


def test_without_an_entity_the_keys_own_entity_loads(tmp_path, emulator):
    """As `wandb.Api()` does: no entity configured (nor WANDB_ENTITY) → the API key's user's entity."""
    cwd = project_dir(tmp_path, "duckdb", entity="")
    config = (cwd / ".dlt" / "config.toml").read_text().replace('entity = ""', "")
    (cwd / ".dlt" / "config.toml").write_text(config)
    done = run_script(cwd, emulator)
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(cwd / "wandb_pipeline.duckdb"), read_only=True) as con:
        loaded = con.sql("SELECT count(*) FROM wandb_data.runs").fetchone()[0]
    assert loaded == len(emulator.store.project("emulator", "demo").runs)


def test_an_empty_entity_says_where_to_set_it(tmp_path, emulator):
    done = run_script(project_dir(tmp_path, "duckdb", entity=" "), emulator)
    assert done.returncode == 1 and "entity" in done.stderr and "Traceback" not in done.stderr


def test_wide_history_loads_into_duckdb_with_memory_sized_to_the_columns(tmp_path, make_emulator):
    """DuckDB's MERGE pins buffers per column: a fixed 128 MB memory_limit fails this 600-column load
    (with a message saying how to raise it); the script sizes the limit from the widest table."""
    steps = 2000  # 2 runs x 2000 steps x 600 keys
    emulator = make_emulator(runs=1, steps=steps, wide_keys=600)
    cwd = project_dir(tmp_path, "duckdb")
    fixed = run_script(cwd, emulator, SOURCES__WANDB__PROJECTS='["wide-keys"]',
                       DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG='{"memory_limit": "128MB"}')
    assert fixed.returncode == 1 and "DuckDB ran out of memory" in fixed.stderr, fixed.stderr[-2000:]
    done = run_script(cwd, emulator, SOURCES__WANDB__PROJECTS='["wide-keys"]')  # finishes the failed load
    assert done.returncode == 0, done.stderr[-3000:]
    with duckdb.connect(str(cwd / "wandb_pipeline.duckdb"), read_only=True) as con:
        width = con.sql("select count(*) from information_schema.columns where table_name = 'history'").fetchone()[0]
        assert width > 600
        assert con.sql("select count(*) from wandb_data.history").fetchone()[0] == 2 * steps

