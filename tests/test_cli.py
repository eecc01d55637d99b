"""The options of `pipelines/wandb_pipeline.py`, run as a user would against the emulator."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import psycopg2
import pytest

from tests.test_pipeline_script import PG_DSN, ROOT, project_dir, run_script

pytestmark = pytest.mark.one_profile  # options and exit codes of the command line: the server profile does not change it

ENTITY, PROJECT = "emulator", "demo"


def duck(cwd, sql: str) -> list:
    with duckdb.connect(str(cwd / "wandb_pipeline.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def server_runs(emulator) -> list:
    return list(emulator.store.project(ENTITY, PROJECT).runs.values())


def test_projects_of_two_entities_in_one_go(tmp_path, emulator):
    from wandb_source.emulator.store import Run, RunHistory

    now = dt.datetime.now(dt.timezone.utc)
    emulator.store.add_project("other-team", "side")
    emulator.store.add_run(Run(entity="other-team", project="side", name="side-run", display_name="side",
                               state="finished", created_at=now, updated_at=now, heartbeat_at=now,
                               history=RunHistory()))
    cwd = project_dir(tmp_path, "duckdb", entity="")
    done = run_script(cwd, emulator, "--project", "emulator/demo", "--project", "other-team/side")
    assert done.returncode == 0, done.stderr
    got = duck(cwd, "SELECT entity, project, count(*) FROM wandb_data.runs GROUP BY 1, 2 ORDER BY 1")
    assert got == [("emulator", "demo", len(server_runs(emulator))), ("other-team", "side", 1)]


def test_destination_and_dataset_options(tmp_path, emulator):
    cwd = project_dir(tmp_path, "duckdb")
    dataset = f"cli_{tmp_path.name[-8:].replace('-', '_')}"
    done = run_script(cwd, emulator, "--destination", "postgres", "--dataset", dataset, "--project", PROJECT)
    try:
        assert done.returncode == 0, done.stderr
        with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {dataset}.runs")
            assert cur.fetchone()[0] == len(server_runs(emulator))
        assert not (cwd / "wandb_pipeline.duckdb").exists()
        assert f"into postgres dataset {dataset}" in done.stdout
    finally:
        with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {dataset} CASCADE; DROP SCHEMA IF EXISTS {dataset}_staging CASCADE")


def test_filter_and_since_select_runs(tmp_path, emulator):
    runs = server_runs(emulator)
    cwd = project_dir(tmp_path, "duckdb")
    done = run_script(cwd, emulator, "--filter", '{"state": "finished"}')
    assert done.returncode == 0, done.stderr
    finished = {r.name for r in runs if r.state == "finished"}
    assert {r for (r,) in duck(cwd, "SELECT run_id FROM wandb_data.runs")} == finished
    assert {r for (r,) in duck(cwd, "SELECT DISTINCT run_id FROM wandb_data.history")} <= finished

    since = sorted(r.created_at for r in runs)[len(runs) // 2]
    (tmp_path / "since").mkdir()
    cwd = project_dir(tmp_path / "since", "duckdb")
    done = run_script(cwd, emulator, "--since", since.isoformat())
    assert done.returncode == 0, done.stderr
    want = {r.name for r in runs if r.created_at > since or r.heartbeat_at > since}  # the documented filter fields
    assert {r for (r,) in duck(cwd, "SELECT run_id FROM wandb_data.runs")} == want and want != {r.name for r in runs}


@pytest.mark.parametrize("args, message", [
    (["--filter", "{state: finished"], "--filter is not valid JSON"),
    (["--filter", "[1]"], "--filter must be a JSON object"),
    (["--since", "last tuesday"], "--since 'last tuesday' is not a date"),
    (["--destination", "nosuchdb"], "nosuchdb"),
    (["--progress", "alive_progress"], "pip install alive-progress"),  # a display whose package is missing
])
def test_bad_options_exit_1_with_one_paragraph(tmp_path, emulator, args, message):
    done = run_script(project_dir(tmp_path, "duckdb"), emulator, *args)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_dry_run_plans_without_loading(tmp_path, emulator):
    runs = server_runs(emulator)
    cwd = project_dir(tmp_path, "duckdb")
    done = run_script(cwd, emulator, "--dry-run")
    assert done.returncode == 0, done.stderr
    total = _plan_row(done.stdout, "total")
    assert total[:4] == [len(runs), len(runs), 0, sum(len(r.history) for r in runs)]
    assert not (cwd / "wandb_pipeline.duckdb").exists() or not duck(
        cwd, "SELECT * FROM information_schema.tables WHERE table_name = 'runs'")

    assert run_script(cwd, emulator).returncode == 0
    changed = next(r for r in runs if r.state == "running")
    last = changed.history.last_step
    emulator.store.append_steps(ENTITY, PROJECT, changed.name, [{"_step": last + i, "loss": 1 / i} for i in (1, 2, 3)])
    done = run_script(cwd, emulator, "--dry-run")
    assert _plan_row(done.stdout, f"{ENTITY}/{PROJECT}")[:4] == [len(runs), 0, 1, 3]


def _plan_row(stdout: str, name: str) -> list[int]:
    line = next(line for line in stdout.splitlines() if line.split() and line.split()[0] == name)
    return [int(v.replace(",", "")) for v in line.split()[1:]]


def test_full_refresh_reloads_everything_and_progress_is_shown(tmp_path, emulator):
    cwd = project_dir(tmp_path, "duckdb")
    first = run_script(cwd, emulator)
    assert first.returncode == 0, first.stderr
    steps = sum(len(r.history) for r in server_runs(emulator))
    assert f"history: {len(server_runs(emulator))}/{len(server_runs(emulator))} runs" in first.stderr
    assert "nothing new" in run_script(cwd, emulator).stdout
    again = run_script(cwd, emulator, "--full-refresh")
    assert again.returncode == 0, again.stderr
    assert f"{'history':<22} {steps:>10,} rows" in again.stdout
    assert duck(cwd, "SELECT count(*) FROM wandb_data.history")[0][0] == steps


def test_summary_lists_the_new_tables(tmp_path, emulator):
    cwd = project_dir(tmp_path, "duckdb")
    done = run_script(cwd, emulator)
    for table in ("runs", "run_metadata", "metric_axes", "artifacts", "history", "system_metrics"):
        assert f"  {table:<22}" in done.stdout, done.stdout
    assert json.loads(duck(cwd, "SELECT args FROM wandb_data.run_metadata LIMIT 1")[0][0])[0] == "--lr"


def test_history_selection_options(tmp_path, emulator):
    cwd = project_dir(tmp_path, "duckdb")
    done = run_script(cwd, emulator, "--history-include", "eval/*", "--history-exclude", "eval/acc",
                      "--min-step", "0", "--max-step", "150", "--last-steps", "2",
                      "--system-metrics-include", "system.cpu", "--history-include", "typo/*")
    assert done.returncode == 0, done.stderr
    got = duck(cwd, "SELECT run_id, _step FROM wandb_data.history")
    want = {(run.name, s) for run in server_runs(emulator)
            for s in sorted(r["_step"] for r in run.history.rows() if "eval/loss" in r and r["_step"] <= 150)[-2:]}
    assert set(got) == want
    columns = {c for (c,) in duck(cwd, "SELECT column_name FROM information_schema.columns WHERE table_name = 'history'")}
    assert "eval__loss" in columns and "eval__acc" not in columns and "train__loss" not in columns
    assert "'typo/*' matched no key of emulator/demo" in done.stderr
    bad = run_script(cwd, emulator, "--min-step", "9", "--max-step", "3")
    assert bad.returncode == 1 and "`min_step` (9) is above `max_step` (3)" in bad.stderr


def test_a_worker_that_lost_its_disk_resumes_from_the_destination(tmp_path, emulator):
    """README, at scale: the state travels with the data, so a fresh working folder loads nothing twice."""
    import shutil

    cwd = project_dir(tmp_path, "postgres")
    dataset = f"lost_{tmp_path.name[-8:].replace('-', '_')}"
    try:
        assert run_script(cwd, emulator, "--dataset", dataset).returncode == 0
        shutil.rmtree(cwd / "dlt_home")  # the pipeline's local state and working folder are gone
        again = run_script(cwd, emulator, "--dataset", dataset)
        assert again.returncode == 0 and "nothing new" in again.stdout, again.stdout + again.stderr
    finally:
        with psycopg2.connect(PG_DSN) as conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {dataset} CASCADE; DROP SCHEMA IF EXISTS {dataset}_staging CASCADE")


def test_a_deleted_duckdb_file_is_loaded_again_not_left_empty(tmp_path, emulator):
    cwd = project_dir(tmp_path, "duckdb")
    assert run_script(cwd, emulator).returncode == 0
    steps = duck(cwd, "SELECT count(*) FROM wandb_data.history")[0][0]
    (cwd / "wandb_pipeline.duckdb").unlink()  # "start over"
    again = run_script(cwd, emulator)
    assert again.returncode == 0 and "nothing new" not in again.stdout, again.stdout
    assert "loading everything again" in again.stderr
    assert duck(cwd, "SELECT count(*) FROM wandb_data.history")[0][0] == steps > 0


def test_a_second_checkout_is_told_where_the_pipeline_lives(tmp_path, emulator):
    shared = str(tmp_path / "dlt_home")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = project_dir(tmp_path / "a", "duckdb"), project_dir(tmp_path / "b", "duckdb")
    assert "first run in" not in run_script(first, emulator, DLT_DATA_DIR=shared).stderr
    done = run_script(second, emulator, "--dry-run", DLT_DATA_DIR=shared)
    assert done.returncode == 0 and f"was first run in {first}" in done.stderr


def test_exit_codes_tell_a_usage_error_from_a_partial_load(tmp_path, emulator):
    """2 is argparse's usage error; a load that succeeded but could not fetch a run exits 3, naming it."""
    cwd = project_dir(tmp_path, "duckdb")
    usage = run_script(cwd, emulator, "--no-such-option")
    assert usage.returncode == 2 and "unrecognized arguments" in usage.stderr, usage.stderr

    bad = next(r for r in server_runs(emulator) if r.state == "finished" and r.export_bounds)
    emulator.faults.add(operation="RunParquetHistory", kind="graphql_error", times=1000, match={"run": bad.name},
                        message="query complexity too high")
    partial = run_script(cwd, emulator, SOURCES__WANDB__HISTORY_PAGE_SIZE="50")  # read run by run
    assert partial.returncode == 3 and f"emulator/demo/{bad.name}: " in partial.stderr, partial.stderr
    assert "query complexity too high" in partial.stderr

    emulator.faults.clear()
    assert run_script(cwd, emulator).returncode == 0  # fetched again: nothing left to retry


def _cli_without(module: str, cwd, *args: str, **env: str):
    """`wandb-source ARGS` in a Python where `module` cannot be imported (an extra not installed)."""
    import os
    import subprocess
    import sys

    code = (f"import sys; sys.modules[{module!r}] = None; from wandb_source.cli import main; "
            f"sys.exit(main({list(args)!r}))")
    env = {**os.environ, "DLT_DATA_DIR": str(cwd / "dlt_home"), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module, args, extra", [
    ("wandb", ("load", "--offline-dir", "."), "offline"),
    ("matplotlib", ("plot", "--metric", "train/loss"), "plot"),
    ("graphql", ("demo",), "demo"),
])
def test_a_missing_extra_is_named_in_one_line(tmp_path, module, args, extra):
    done = _cli_without(module, tmp_path, *args)
    assert done.returncode == 1, done.stderr
    assert f"pip install 'wandb-source[{extra}]'" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_console_command_dispatches_and_says_its_version(tmp_path, emulator):
    from wandb_source.cli import main

    assert main(["--version"]) == 0
    assert main(["no-such-command"]) == 2 and main([]) == 2
    cwd = project_dir(tmp_path, "duckdb")
    done = _cli_without("no_module_at_all", cwd, "plan",  # from .dlt/ in the current folder, as dlt does
                        WANDB_BASE_URL=emulator.url, WANDB_API_KEY=emulator.api_key)
    assert done.returncode == 0 and "into duckdb dataset wandb_data" in done.stdout, done.stderr
