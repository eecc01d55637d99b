"""The API key never leaves the process except in the Authorization header to the W&B server: not in
output (at DEBUG log level, with progress), exceptions, dlt state, the trace, load packages or the
destination. Checked by grepping every byte the pipeline leaves behind, on the three destinations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_pipeline_script import PG_DSN, project_dir, run_script

ROOT = Path(__file__).resolve().parent.parent


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def postgres_dump_contains(needle: str) -> bool:
    done = subprocess.run(["pg_dump", "--data-only", "--schema=wandb_data", PG_DSN.replace("postgres:postgres@", "postgres@")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "history" in done.stdout
    return needle in done.stdout


@pytest.mark.parametrize("destination", ["duckdb", "postgres", "filesystem"])
def test_api_key_appears_nowhere(tmp_path, emulator, destination):
    key = emulator.api_key
    cwd = project_dir(tmp_path, destination)
    debug = {"RUNTIME__LOG_LEVEL": "DEBUG"}
    secrets = cwd / ".dlt" / "secrets.toml"  # the first load takes the key from secrets.toml, as dlt users do
    secrets.write_text(secrets.read_text() + f'\n[sources.wandb]\napi_key = "{key}"\n')
    try:
        outputs = [run_script(cwd, emulator, "--verbose", WANDB_API_KEY="", **debug)]
        emulator.faults.add(operation="HistoryPage", kind="status", status=500, times=2)  # retries get logged
        emulator.store.append_steps("emulator", "demo", next(
            r.name for r in emulator.store.project("emulator", "demo").runs.values() if r.state == "running"),
            [{"_step": 10_000, "_timestamp": 1.9e9, "train/loss": 1.0}])
        outputs.append(run_script(cwd, emulator, **debug))
        outputs.append(run_script(cwd, emulator, SOURCES__WANDB__API_KEY=key[:-1] + "x"))  # a wrong key: the error path
        trace = subprocess.run([str(Path(sys.executable).parent / "dlt"), "pipeline", "wandb_pipeline", "trace"],
                               cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=120)
        outputs.append(trace)
        assert [o.returncode for o in outputs] == [0, 0, 1, 0], [o.stderr[-2000:] for o in outputs]
        assert "DEBUG" in outputs[0].stderr + outputs[0].stdout  # the log level took effect
        assert "LOADED" in trace.stdout
        for out in outputs:
            assert key not in out.stdout + out.stderr
            assert key[:-1] not in out.stdout + out.stderr
        # state, trace, schemas, load packages (kept after loading), DuckDB file or delta files
        assert files_containing(cwd, key.encode()) == [str(secrets)]
        assert files_containing(cwd, key.encode("utf-16-le")) == []
        if destination == "postgres":
            assert not postgres_dump_contains(key)
    finally:
        if destination == "postgres":
            import psycopg2

            with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
                cur.execute("drop schema if exists wandb_data cascade; drop schema if exists wandb_data_staging cascade")


def _env(cwd: Path) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    env.update({"DLT_DATA_DIR": str(cwd / "dlt_home"), "PYTHONPATH": str(ROOT)})
    return env
