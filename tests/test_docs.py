"""The README is the user's manual: every option and config key is in it, and its SQL runs."""

from __future__ import annotations

import importlib.util
import inspect
import re

import pytest

from tests.helpers import drop_dataset, load, make_pipeline
from tests.test_pipeline_script import ROOT
from wandb_source.emulator import DatasetSpec

pytestmark = pytest.mark.one_profile  # the README against the code and the demo data: the server profile does not change it

README = (ROOT / "README.md").read_text()
SCRIPTS = ["load", "export", "plot"]


def options_of(command: str) -> list[str]:
    """Every --option of a `wandb-source` command, from its own argparse parser."""
    module = importlib.import_module(f"wandb_source.cli.{command}")
    return [o for action in module.build_parser()._actions for o in action.option_strings
            if o.startswith("--") and o != "--help"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_line_option_is_documented(script):
    options = options_of(script)
    assert len(options) >= 3
    missing = [o for o in options if not re.search(rf"{re.escape(o)}(?![\w-])", README)]
    assert not missing, f"wandb-source {script} options missing from README: {missing}"


def test_every_source_argument_and_config_key_is_documented():
    from wandb_source import wandb_source
    from wandb_source.logs.source import wandb_offline_source

    arguments = {*inspect.signature(wandb_source).parameters, *inspect.signature(wandb_offline_source).parameters}
    missing = [a for a in arguments if f"| `{a}`" not in README]
    assert not missing, f"source arguments missing from README's configuration table: {missing}"
    config = (ROOT / ".dlt" / "config.toml").read_text()
    keys = re.findall(r"^#?\s*([a-z_]+)\s*=", config, flags=re.M)
    sections = re.findall(r"^\[([a-z_.]+)\]", config, flags=re.M)
    assert len(keys) >= 10 and sections
    missing = [k for k in keys if f"`{k}`" not in README and f" {k}`" not in README]
    missing += [s for s in sections if f"[{s}]" not in README]
    assert not missing, f".dlt/config.toml keys missing from README: {missing}"


@pytest.fixture
def emulator(make_emulator):
    """The demo dataset as `make demo` serves it: with logged tables."""
    return make_emulator(DatasetSpec(tables=True))


SQL = re.findall(r"```sql\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("destination", ["duckdb", "postgres"])
def test_readme_sql_runs_and_finds_rows(tmp_path, emulator, destination):
    assert len(SQL) >= 5
    pipeline = make_pipeline(destination, tmp_path)
    try:
        load(pipeline, emulator)
        with pipeline.sql_client() as sql:
            for query in SQL:
                rows = sql.execute_sql(query.replace("wandb_data.", f"{pipeline.dataset_name}."))
                assert rows, f"no rows from README query:\n{query}"
    finally:
        drop_dataset(pipeline)


def test_every_table_is_documented_with_its_key():
    """A new table added to tables.TABLE_HINTS fails here until the README's Tables section names it."""
    from wandb_source import tables

    section = README.split("## Tables", 1)[1].split("\n## ", 1)[0]
    for table, hints in tables.TABLE_HINTS.items():
        row = next((line for line in section.splitlines() if line.startswith(f"| `{table}` |")), None)
        assert row is not None, f"table {table} is not in the README's Tables section"
        assert ", ".join(hints["primary_key"]) in row, f"the README gives {table} another key than {hints['primary_key']}"
