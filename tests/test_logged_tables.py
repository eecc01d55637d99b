"""Logged `wandb.Table`s: written by the real wandb SDK (offline), served by the emulator as W&B would after a
sync, loaded into `wandb_table__<key>` and compared cell by cell with what the script logged."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import loaded_counts, make_pipeline, rows, same_value
from wandb_source import wandb_source
from wandb_source.convert.logged_tables import (
    MEDIA_NAMES,
    ArtifactCopy,
    TableFileError,
    TableRef,
    copy_matches,
    destination_table,
    first_row_index,
    needs_copy,
    parse_table_file,
    table_keys,
    with_copy,
)
from wandb_source.convert.selection import KeySelection
from wandb_source.convert.values import NAMING, value_kind
from wandb_source.emulator import DatasetSpec
from wandb_source.emulator.run_logs import add_logged_run
from wandb_source.load.destination import load_options
from wandb_source.load.logged_tables import _exact
from wandb_source.state import resources

ENTITY, PROJECT, STEPS = "lab", "tables", 6
# what each run logs: shared by the logging script and the expectations below
DATA = """
import math

def preds(run, step):
    special = [math.nan, math.inf, -math.inf, -0.0]
    return [[i, f"r{run}-s{step}-{i}", special[(step + i) % 4] if i == 1 else step + i / 4, 2**60 + step * 10 + i,
             (step + i) % 2 == 0, "media" if i == 0 else None, {"a": [i, None], "t": "x" * i}] for i in range(3)]

PREDS_COLUMNS = ["id", "label", "score", "big", "ok", "img", "meta"]

PER_CLASS_COLUMNS = ["class", "acc", "_deleted"]  # a column named as our hard-delete flag is data, never a delete

def per_class(run, step):
    return [[c, run + step / 10, True] for c in ("cat", "dog")]

def increment(run, step):
    return [[step, f"added at {step}"]]

def big(run, step):  # past the 10,000 rows the SDK writes to the run file
    return [[i, [math.nan, math.inf, -math.inf][i % 3] if i % 5 == 0 else i / 3] for i in range(10_004)]
"""
LOGGING = DATA + """
import sys, numpy as np, wandb
run_index = int(sys.argv[1])
run = wandb.init(project="tables", entity="lab", id=f"run-{run_index}")
inc = wandb.Table(columns=["step", "note", "img"], log_mode="INCREMENTAL")
for step in range(6):
    data = [[wandb.Image(np.zeros((2, 2, 3), dtype=np.uint8)) if c == "media" else c for c in row]
            for row in preds(run_index, step)]
    row = {"loss": 1.0 / (step + 1), "preds": wandb.Table(columns=PREDS_COLUMNS, data=data)}
    if step % 2 == 1:
        for cells in increment(run_index, step):
            inc.add_data(*cells, wandb.Image(np.full((2, 2, 3), step, dtype=np.uint8)))
        row["inc"] = inc
    if step in (2, 5):
        row["eval/per_class"] = wandb.Table(columns=PER_CLASS_COLUMNS, data=per_class(run_index, step))
    if run_index == 1 and step in (0, 3):  # the same table twice: W&B keeps one artifact version of it
        row["static"] = wandb.Table(columns=["name", "img"], data=[[c, wandb.Image(np.zeros((2, 2, 3), dtype=np.uint8))
                                                                    if c == "a" else None] for c in "ab"])
    if run_index == 0 and step == 1:
        row["big"] = wandb.Table(columns=["i", "x"], data=big(run_index, step))
    if step == 4:
        a, b = wandb.Table(columns=["id", "x"], data=[[1, 2.0]]), wandb.Table(columns=["id", "y"], data=[[1, 3.0]])
        row["joined"] = wandb.JoinedTable(a, b, "id")
    run.log(row)
run.finish()
"""
EXPECTED: dict = {}
exec(DATA, EXPECTED)  # noqa: S102  # the same functions the script ran


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    """Two finished runs logged offline by the wandb SDK."""
    root = tmp_path_factory.mktemp("tables")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(root), "WANDB_DATA_DIR": str(root / "data"),
           "WANDB_ERROR_REPORTING": "false",
           "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    env.pop("WANDB_API_KEY", None)
    for i in range(2):
        subprocess.run([sys.executable, "-c", LOGGING, str(i)], env=env, check=True, timeout=120)
    return sorted(p for p in (root / "wandb").glob("offline-run-*"))


def expected_rows(run: int, steps: range, copies: bool) -> dict[str, list[tuple]]:
    """{destination table: [(run_id, _step, _row, {column: value})]} of what run `run` logged at `steps` (without
    the artifact `copies`: a media cell as its type's name, the big table cut at the run file's 10,000 rows)."""
    out: dict[str, list[tuple]] = {"wandb_table__preds": [], "wandb_table__eval__per_class": [],
                                   "wandb_table__inc": [], "wandb_table__big": [], "wandb_table__static": []}
    increments = 0
    for step in range(STEPS):
        if step % 2 == 1:
            increments += 1
        if step not in steps:
            continue
        for i, cells in enumerate(EXPECTED["preds"](run, step)):
            values = dict(zip(EXPECTED["PREDS_COLUMNS"], cells))
            values["img"] = (MEDIA if copies else "Image") if values["img"] == "media" else None
            out["wandb_table__preds"].append((f"run-{run}", step, i, values))
        if run == 0 and step == 1:  # past the run file's rows, from the artifact copy: NaN is null there
            cells = EXPECTED["big"](run, step)[:None if copies else 10_000]
            out["wandb_table__big"] += [(f"run-{run}", step, i, {"i": c[0], "x": None if i >= 10_000 and c[1] != c[1]
                                                                  else c[1]}) for i, c in enumerate(cells)]
        if run == 1 and step in (0, 3):
            out["wandb_table__static"] += [(f"run-{run}", step, 0, {"name": "a", "img": MEDIA if copies else "Image"}),
                                           (f"run-{run}", step, 1, {"name": "b", "img": None})]
        if step in (2, 5):
            out["wandb_table__eval__per_class"] += [(f"run-{run}", step, i, dict(zip(EXPECTED["PER_CLASS_COLUMNS"], cells)))
                                                    for i, cells in enumerate(EXPECTED["per_class"](run, step))]
        if step % 2 == 1:
            out["wandb_table__inc"] += [(f"run-{run}", step, increments - 1, {**dict(zip(["step", "note"], cells)),
                                                                             "img": MEDIA if copies else "Image"})
                                        for cells in EXPECTED["increment"](run, step)]
    return out


MEDIA = object()  # the expected value of the Image cell where the artifact copies are read: checked by `media_holds`


def assert_tables_hold(pipeline, steps: range, store=None) -> int:
    """Every logged cell, in the column the state's map names for its key and kind; nothing else. With `store` (the
    emulator's, holding the runs' artifacts), the artifact copies were read (media references, the big table
    whole). Returns cells."""
    columns = resources(pipeline.state)["logged_tables"]["columns"]
    checked = 0
    for table, key in (("wandb_table__preds", "preds"), ("wandb_table__eval__per_class", "eval/per_class"),
                       ("wandb_table__inc", "inc"), ("wandb_table__big", "big"), ("wandb_table__static", "static")):
        got = {(r["run_id"], r["_step"], r["_row"]): r for r in rows(pipeline, table)}
        want = [w for run in range(2) for w in expected_rows(run, steps, store is not None)[table]]
        assert sorted(got) == sorted(w[:3] for w in want), table
        for run_id, step, index, values in want:
            row = got[(run_id, step, index)]
            for name, value in values.items():
                if value is MEDIA:
                    media_holds(store, row[columns[key][name]["json"]], run_id, step, key)
                    checked += 1
                    continue
                kind = value_kind(value)
                if kind is None:
                    assert all(row.get(col) is None for col in columns[key][name].values()), (table, name, row)
                    continue
                column = columns[key][name][kind]
                assert same_value(row[column], value, kind), (table, run_id, step, index, name, row[column], value)
                checked += 1
    return checked


def media_holds(store, cell: str, run_id: str, step: int, key: str) -> None:
    """The Image cell's reference names the image file of the artifact copy logged at that run's `step` (the
    artifact by its id; offline, where the copy has no id yet, the run's copy holding that step's table)."""
    media = json.loads(cell)
    name, column, labels = {"preds": ("preds", 1, [r[1] for r in EXPECTED["preds"](int(run_id[-1]), step)]),
                            "static": ("static", 0, ["a", "b"]), "inc": ("incr-inc", 0, [step])}[key]

    def holds_step(artifact) -> bool:
        copy = next(data for path, data in artifact.files.items() if path.endswith(f"{key}.table.json"))
        return [r[column] for r in json.loads(copy)["data"]] == labels

    if media["artifact_id"] is None:
        artifact = next(a for a in store.artifacts.values() if a.node["name"] == f"run-{run_id}-{name}" and holds_step(a))
    else:
        artifact = store.artifacts[media["artifact_id"]]
    image = artifact.files[media["path"]]
    assert image.startswith(b"\x89PNG") and hashlib.sha256(image).hexdigest() == media["sha256"]
    assert media["size"] == len(image) and (media["_type"], media["width"], media["height"]) == ("image-file", 2, 2)
    assert artifact.node["name"] == f"run-{run_id}-{name}" and holds_step(artifact)  # the version logged at `step`


def serve(emu, run_dirs, upto_step: int | None = None) -> list:
    runs = [add_logged_run(emu.store, d) for d in run_dirs]
    if upto_step is not None:
        for run in runs:
            run.history.truncate_after(upto_step)
    return runs


def _load(pipeline, emu, **kwargs):
    source = wandb_source(entity=ENTITY, projects=[PROJECT], base_url=emu.url, api_key=emu.api_key, **kwargs)
    info = pipeline.run(source, **load_options(pipeline.destination.destination_name))
    info.raise_on_failed_jobs()
    return info


def test_every_cell_of_every_logged_table_full_then_incremental(pipeline, run_dirs, make_emulator, caplog):
    """Three steps first, then the rest: each step's rows once, each table file downloaded once in all."""
    emu = make_emulator(DatasetSpec(runs=0))
    runs = serve(emu, run_dirs, upto_step=2)
    emu.store.export_history(ENTITY, PROJECT, "run-0", upto_rows=2)  # its references read from a parquet export too
    logged = {run.name: list(run.history.rows()) for run in runs}
    _load(pipeline, emu)
    exports = [r.variables["path"] for r in emu.faults.requests("parquet")]
    assert len(exports) == 2 * len(set(exports)) > 0  # run-0's export read by history and by logged_tables
    assert assert_tables_hold(pipeline, range(3), emu.store) > 50
    assert resources(pipeline.state)["logged_tables"]["failed"] == {}

    complete = [add_logged_run(make_emulator(DatasetSpec(runs=0)).store, d) for d in run_dirs]
    for run, full in zip(runs, complete):
        emu.store.append_steps(ENTITY, PROJECT, run.name, list(full.history.rows())[len(logged[run.name]):])
    with caplog.at_level(logging.WARNING, logger="dlt"):
        _load(pipeline, emu)
    assert assert_tables_hold(pipeline, range(STEPS), emu.store) > 100
    assert loaded_counts(pipeline)["wandb_table__preds"] == 2 * 3 * (STEPS - 3)  # only the new steps' rows
    paths = [r.variables["path"] for r in emu.faults.requests("file") if ".table.json" in r.variables["path"]]
    assert len(paths) == len(set(paths)) == 2 * (STEPS + 3 + 2) + 1 + 2  # preds, inc, eval/per_class, big, static
    # artifact copies read only where the run file lacks something (preds' and static's Image, big's rows), once
    copies = [v for r in emu.faults.requests() if r.operation.startswith("ClientIDMapping")
              for k, v in r.variables.items() if k.startswith("clientID")]
    assert len(copies) == len(set(copies)) == 2 * STEPS + 1 + 2 + 2 * 3  # preds, big, static, inc
    assert len(emu.faults.requests("ClientIDMapping")) == 0  # asked 50 to a request (one per run and load here)
    static = {r["_step"]: json.loads(r["img___json"]) for r in rows(pipeline, "wandb_table__static") if r["_row"] == 0}
    assert static[0] == static[3]  # one artifact version: the second client id resolved by W&B or by content
    joined = [m for m in caplog.messages if "'joined' at step 4" in m and "joined-table" in m]
    assert len(joined) == 2  # reported, run by run, never silently skipped
    assert "wandb_table__joined" not in pipeline.default_schema.tables
    mapped = {(r["table_name"], r["key"]) for r in rows(pipeline, "metric_columns")}
    assert ("wandb_table__preds", "score") in mapped and ("wandb_table__eval__per_class", "acc") in mapped


def test_a_bad_table_file_costs_only_that_table_and_is_fetched_again(tmp_path, run_dirs, make_emulator):
    emu = make_emulator(DatasetSpec(runs=0))
    runs = serve(emu, run_dirs)
    ref = next(r for r in runs[0].history.rows() if r["_step"] == 3)["preds"]
    good = runs[0].files[ref["path"]]
    runs[0].files[ref["path"]] = good[:-20]  # cut short: not the file its sha256 names
    del runs[1].files[next(r for r in runs[1].history.rows() if r["_step"] == 5)["inc"]["path"]]
    copy_of = emu.store.artifacts[emu.store.client_ids[_client_id(runs[1], 2, "preds")]].files
    copy = copy_of.pop("preds.table.json")  # run-1's preds copy of step 2 gone: its Image has no reference
    pipeline = make_pipeline("duckdb", tmp_path)
    _load(pipeline, emu)
    failed = resources(pipeline.state)["logged_tables"]["failed"]
    assert set(failed) == {f"{ENTITY}/{PROJECT}/run-0", f"{ENTITY}/{PROJECT}/run-1"}
    assert "'preds' at step 3" in failed[f"{ENTITY}/{PROJECT}/run-0"] and "sha256" in failed[f"{ENTITY}/{PROJECT}/run-0"]
    assert "'inc' at step 5" in failed[f"{ENTITY}/{PROJECT}/run-1"]
    assert "'preds' at step 2" in failed[f"{ENTITY}/{PROJECT}/run-1"] and "artifact copy" in failed[f"{ENTITY}/{PROJECT}/run-1"]
    held = {(r["run_id"], r["_step"]) for r in rows(pipeline, "wandb_table__preds")}
    assert ("run-0", 3) not in held and ("run-1", 2) not in held and len(held) == 2 * STEPS - 2

    runs[0].files[ref["path"]] = good  # the files arrive; nothing else about the runs changes
    copy_of["preds.table.json"] = copy
    runs[1].files.update(add_logged_run(make_emulator(DatasetSpec(runs=0)).store, run_dirs[1]).files)
    _load(pipeline, emu)
    assert resources(pipeline.state)["logged_tables"]["failed"] == {}
    assert assert_tables_hold(pipeline, range(STEPS), emu.store) > 100


def _client_id(run, step: int, key: str) -> str:
    ref = next(r for r in run.history.rows() if r["_step"] == step)[key]
    return ref["artifact_path"].split("://", 1)[1].split("/", 1)[0]


def test_table_selection_and_last_version(tmp_path, run_dirs, make_emulator):
    emu = make_emulator(DatasetSpec(runs=0))
    serve(emu, run_dirs)
    pipeline = make_pipeline("duckdb", tmp_path)
    _load(pipeline, emu, tables_include=["eval/*", "preds"], last_steps=1)
    assert {(r["run_id"], r["_step"]) for r in rows(pipeline, "wandb_table__preds")} == {("run-0", 5), ("run-1", 5)}
    assert {r["_step"] for r in rows(pipeline, "wandb_table__eval__per_class")} == {5}
    assert "wandb_table__inc" not in pipeline.default_schema.tables


@pytest.mark.one_profile
def test_offline_run_logs_give_the_same_tables(tmp_path, run_dirs, caplog):
    """Offline, the artifact copies are the files the SDK staged (on the machine that ran it); without them a
    table loads from its run file alone, with a warning: a media cell as its type's name, 10,000 rows."""
    from wandb_source.emulator.store import Store
    from wandb_source.logs.source import wandb_offline_source

    logged = Store()
    for run_dir in run_dirs:
        add_logged_run(logged, run_dir)
    pipeline = make_pipeline("duckdb", tmp_path)
    pipeline.run(wandb_offline_source(str(run_dirs[0].parent)).with_resources("logged_tables"))
    assert assert_tables_hold(pipeline, range(STEPS), logged) > 100
    pipeline.run(wandb_offline_source(str(run_dirs[0].parent)).with_resources("logged_tables"))
    assert not any(t.startswith("wandb_table") for t in loaded_counts(pipeline))  # nothing new

    staged = run_dirs[0].parents[1] / "data"  # WANDB_DATA_DIR of the logging script
    staged.rename(staged.with_name("synced"))
    try:
        alone = make_pipeline("duckdb", tmp_path)
        with caplog.at_level(logging.WARNING, logger="dlt"):
            alone.run(wandb_offline_source(str(run_dirs[0].parent)).with_resources("logged_tables"))
    finally:
        staged.with_name("synced").rename(staged)
    assert assert_tables_hold(alone, range(STEPS)) > 100
    uncopied = [m for m in caplog.messages if "artifact copy is not at hand" in m]
    assert len(uncopied) == 2 * STEPS + 1 + 2 + 2 * 3  # each version with an Image (preds, static, inc), big


@pytest.mark.one_profile
def test_table_file_checks_and_names():
    ref = TableRef(3, "preds", {"_type": "table-file", "path": "media/table/p.table.json",
                                "sha256": "0" * 64})
    body = json.dumps({"columns": ["a", "b"], "data": [[1, 2]]}).encode()
    with pytest.raises(TableFileError, match="sha256"):
        parse_table_file(body, ref)
    unsigned = TableRef(3, "preds", {"_type": "table-file", "path": "p"})
    assert parse_table_file(body, unsigned) == (["a", "b"], [[1, 2]])
    for bad, reason in ((b"{", "not a JSON"), (b'{"columns": ["a"], "data": [[1, 2]]}', "row 0"),
                        (b'{"columns": ["a", "a"], "data": []}', "twice"), (b"[1]", "no `columns`")):
        with pytest.raises(TableFileError, match=reason):
            parse_table_file(bad, unsigned)
    increment = TableRef(5, "inc", {"_type": "incremental-table-file", "nrows": 7})
    assert first_row_index(increment, 2) == 5 and first_row_index(unsigned, 2) == 0
    with pytest.raises(TableFileError, match="nrows"):
        first_row_index(TableRef(5, "inc", {"_type": "incremental-table-file"}), 2)
    assert destination_table("preds", NAMING) == "wandb_table__preds"
    assert destination_table("eval/per_class", NAMING) == "wandb_table__eval__per_class"
    assert destination_table("Top K!", NAMING).startswith("wandb_table__top_kx___h")
    assert table_keys({"a": {"_type": "table-file"}, "b": 1}, {"keys": {"c": {"typeCounts": [{"type": "map"}]},
                                                                         "d": {"typeCounts": [{"type": "table-file"}]}}}) \
        == {"a", "d"}
    copy = ArtifactCopy("A1", ["a", "b"], [[1, {"_type": "image-file", "path": "m/x.png", "sha256": "s"}], [2, None]],
                        {"m/x.png": 7})
    media = {"_type": "image-file", "path": "m/x.png", "sha256": "s", "size": 7, "artifact_id": "A1"}
    assert with_copy(["a", "b"], [[1.5, "Image"]], copy, unsigned) == [[1.5, media], [2, None]]  # values: run file's
    for columns, cut in ((["a", "c"], [[1, "Image"]]), (["a", "b"], [[1, "Image"]] * 3)):
        with pytest.raises(TableFileError, match="not the table of the run file"):
            with_copy(columns, cut, copy, unsigned)
    nan_copy = ArtifactCopy(None, ["a", "b"], [[None, {"_type": "image-file", "path": "p"}], [True, 2]], {})
    assert copy_matches(["a", "b"], [[math.nan, "Image"], [True, 2.0]], nan_copy)
    for cells in ([[math.nan, "Image"], [1, 2.0]], [[0.0, "Image"], [True, 2.0]], [[math.nan, "Html "], [True, 2]],
                  [[math.nan, "Image"]]):
        assert not copy_matches(["a", "b"], cells, nan_copy), cells
    assert needs_copy([[1, "Image"]], unsigned) and not needs_copy([[1, "image"]], unsigned)
    assert needs_copy([[i] for i in range(10_000)], TableRef(1, "t", {"_type": "table-file", "nrows": 10_001}))
    assert not needs_copy([[i] for i in range(10_000)], TableRef(1, "t", {"_type": "table-file", "nrows": 10_000}))
    assert TableRef(1, "t", {"artifact_path": "wandb-client-artifact://abc/t.table.json"}).copy_entry == \
        ("abc", "t.table.json")
    assert TableRef(1, "t", {"artifact_path": "wandb-artifact://abc/t.table.json"}).copy_entry is None
    for key in ("a*b", "x?[y]", "plain/key"):
        assert KeySelection((_exact(key),)).wants(key) and not KeySelection((_exact(key),)).wants(key + "z")


@pytest.mark.one_profile
def test_media_names_are_the_installed_sdks_media_classes():
    """A media cell in a run file is the name of its class: every `wandb.data_types` media class must be known,
    or its cells would load as that name with no reference."""
    import inspect

    import wandb.data_types as data_types
    from wandb.sdk.data_types.base_types.media import BatchableMedia, Media

    classes = {name for name, value in vars(data_types).items()
               if inspect.isclass(value) and issubclass(value, Media) and value not in (Media, BatchableMedia)}
    assert "Image" in classes and classes <= MEDIA_NAMES, classes - MEDIA_NAMES


@pytest.mark.one_profile
def test_the_copy_documents_are_wandb_cores_own():
    """The three documents an artifact copy is read with are the ones the installed wandb-core sends (its
    GraphQL documents are string constants in the binary the SDK ships), up to whitespace."""
    import re
    from pathlib import Path

    import wandb

    from wandb_source.api import queries

    binary = (Path(wandb.__file__).parent / "bin" / "wandb-core").read_bytes()

    def document(name: str) -> str:
        start = binary.index(f"query {name} (".encode())
        depth, end = 0, start
        for end in range(binary.index(b"{", start), len(binary)):
            depth += {ord("{"): 1, ord("}"): -1}.get(binary[end], 0)
            if depth == 0:
                break
        return re.sub(r"\s+", "", binary[start:end + 1].decode())

    for ours in (queries.CLIENT_ID_MAPPING, queries.ARTIFACT_MANIFEST, queries.ARTIFACT_FILE_URLS):
        name = ours.split()[1].split("(")[0]
        assert re.sub(r"\s+", "", ours) == document(name), name


def test_a_rewound_run_keeps_only_the_tables_it_still_logged(pipeline, run_dirs, make_emulator):
    """`resume_from` a step: the steps after it are gone from the run, and so from every `wandb_table__*` (a
    step logged again with a shorter table keeps only its new rows)."""
    emu = make_emulator(DatasetSpec(runs=0))
    runs = serve(emu, run_dirs)
    _load(pipeline, emu)
    assert {r["_step"] for r in rows(pipeline, "wandb_table__inc") if r["run_id"] == "run-0"} == {1, 3, 5}
    per_class = next(r for r in runs[0].history.rows() if r["_step"] == 2)["eval/per_class"]
    emu.store.rewind(ENTITY, PROJECT, "run-0", 2)  # steps 3-5 gone, then step 3 logged again:
    emu.store.append_steps(ENTITY, PROJECT, "run-0", [{"_step": 3, "preds": per_class}])  # a 2-row "preds"
    _load(pipeline, emu)
    held = {(r["_step"], r["_row"]) for r in rows(pipeline, "wandb_table__preds") if r["run_id"] == "run-0"}
    assert held == {(s, i) for s in range(3) for i in range(3)} | {(3, 0), (3, 1)}
    assert {r["_step"] for r in rows(pipeline, "wandb_table__inc") if r["run_id"] == "run-0"} == {1}
    assert {r["_step"] for r in rows(pipeline, "wandb_table__eval__per_class") if r["run_id"] == "run-0"} == {2}
    assert len([r for r in rows(pipeline, "wandb_table__big") if r["run_id"] == "run-0"]) == 10_004
    assert {r["_step"] for r in rows(pipeline, "wandb_table__preds") if r["run_id"] == "run-1"} == set(range(STEPS))
    assert resources(pipeline.state)["logged_tables"]["failed"] == {}


def test_generated_tables_with_images_load_their_references(tmp_path, make_emulator):
    """The demo's tables (`DatasetSpec(table_images=True)`): each image cell is the reference its copy holds."""
    emu = make_emulator(DatasetSpec(runs=3, steps=120, tables=True, table_images=True, awkward=False))
    pipeline = make_pipeline("duckdb", tmp_path)
    pipeline.run(wandb_source(entity="emulator", base_url=emu.url, api_key=emu.api_key).with_resources("logged_tables"))
    columns = resources(pipeline.state)["logged_tables"]["columns"]["eval/predictions"]
    loaded = rows(pipeline, "wandb_table__eval__predictions")
    runs = emu.store.entities["emulator"]["demo"].runs.values()
    assert len(loaded) == 8 * sum(1 for run in runs for step in run.history.steps if step % 50 == 0) > 0
    for row in loaded:
        media = json.loads(row[columns["image"]["json"]])
        image = emu.store.artifacts[media["artifact_id"]].files[media["path"]]
        assert hashlib.sha256(image).hexdigest() == media["sha256"] and media["size"] == len(image)
        assert emu.store.artifacts[media["artifact_id"]].node["name"] == f"run-{row['run_id']}-evalpredictions"


def test_refused_batched_lookups_are_asked_one_by_one(tmp_path, run_dirs, make_emulator, caplog):
    emu = make_emulator(DatasetSpec(runs=0))
    serve(emu, run_dirs)
    for operation in ("ClientIDMappings", "ArtifactManifests", "ArtifactFileURLs"):
        emu.faults.add(operation=operation, status=400, times=100, message="query too complex")
    pipeline = make_pipeline("duckdb", tmp_path)
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.addHandler(caplog.handler)  # dlt's logger may not propagate to the root logger caplog listens on
    try:
        _load(pipeline, emu)
    finally:
        dlt_logger.removeHandler(caplog.handler)
    assert assert_tables_hold(pipeline, range(STEPS), emu.store) > 100
    assert len(emu.faults.requests("ClientIDMapping")) == 2 * STEPS + 1 + 2 + 2 * 3
    assert emu.faults.requests("ArtifactManifest") and emu.faults.requests("ArtifactFileURLsByManifestEntries")
    assert any("asked one by one" in m for m in caplog.messages), caplog.messages


@pytest.mark.one_profile
def test_a_table_the_sdk_cut_is_loaded_whole_from_its_copy_and_reported(monkeypatch):
    """A run file cut at 10,000 rows: the copy's further rows are loaded; a copy itself shorter than `nrows` (the SDK
    keeps 200,000) is reported, naming the run, key and step."""
    from wandb_source.load import logged_tables
    from wandb_source.load.logged_tables import TableColumns, table_rows

    warned: list[str] = []
    monkeypatch.setattr(logged_tables.logger, "warning", lambda msg, *args: warned.append(msg % args))
    ref = TableRef(7, "big", {"_type": "table-file", "path": "media/table/big.table.json", "nrows": 10_005,
                              "artifact_path": "wandb-client-artifact://c1/big.table.json"})
    body = json.dumps({"columns": ["i"], "data": [[i] for i in range(10_000)]}).encode()
    copy = ArtifactCopy("A1", ["i"], [[i] for i in range(10_003)], {})
    (table, loaded), failed = table_rows([ref], ("e", "p", "r"), TableColumns({}, NAMING),
                                         lambda paths: {ref.path: body}, lambda wanted: [copy for _ in wanted])
    assert table == "wandb_table__big" and loaded["_row"].to_pylist() == list(range(10_003)) and failed[1] == []
    assert any("'big' at step 7" in m and "10005 rows" in m and "kept 10003" in m for m in warned), warned
