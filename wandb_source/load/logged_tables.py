"""Logged `wandb.Table`s of a run → rows of `wandb_table__<key>` (convert/logged_tables.py), online and from run logs.

Online, per run whose change signals moved (`table_batches`, on a worker thread): the keys that logged a table
(from the run's summary and `historyKeys`, 50 runs per request), the history rows after the run's cursor read
for those keys only (the history reader of `api/history.py`: parquet exports and live pages, never sampled),
then each referenced table file downloaded once per load (`Run.files(names=[...])`, 50 names per request) and
checked against the reference's sha256. Where the run file may lack something (a media cell's reference, rows
past its 10,000), the table's artifact copy is read as wandb-core reads an artifact (`read_copies`). A file or
copy that is missing or malformed costs only that table: it is named in the resource state `failed` and fetched
again on the next load (the run's cursor keeps it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import pyarrow as pa
from dlt.common import logger

from .. import settings
from ..api.client import WandbClient
from ..api.history import read_history
from ..convert.columns import ColumnMap
from ..convert.logged_tables import (
    COPY_TYPES,
    INCREMENTAL_TABLE_FILE,
    LOADED_TYPES,
    MAX_FILE_ROWS,
    OWN_COLUMNS,
    ROW_INDEX,
    ArtifactCopy,
    TableFileError,
    TableRef,
    copy_matches,
    destination_table,
    media_cells,
    needs_copy,
    parse_copy,
    parse_table_file,
    table_arrow,
    table_refs,
    with_copy,
)
from ..convert.selection import KeySelection, Selection, StepWindow
from ..convert.values import KEY_FIELDS
from ..exceptions import NotFoundError, ServerError
from ..state import HistoryCursor
from .destination import run_rows


@dataclass
class TablesCursor:
    """Where a run's logged tables stand: the history cursor of the steps read, and the references whose
    file could not be loaded (fetched again next load)."""

    history: HistoryCursor = field(default_factory=HistoryCursor)
    retry: list[TableRef] = field(default_factory=list)

    def to_state(self) -> list[Any]:
        return [*self.history.to_state(), [ref.to_state() for ref in self.retry]]

    @classmethod
    def from_state(cls, value: Optional[list[Any]]) -> TablesCursor:
        if not value:
            return cls()
        retry = value[2] if len(value) > 2 and isinstance(value[2], list) else []
        return cls(HistoryCursor.from_state(value[:2]), [TableRef.from_state(r) for r in retry])


class TableColumns:
    """One `ColumnMap` per W&B table key, kept in resource state (`{key: {column: {kind: name}}}`)."""

    def __init__(self, state: dict[str, Any], naming: Any) -> None:
        self._state, self._naming = state, naming
        self._maps: dict[str, ColumnMap] = {}
        self._lock = threading.Lock()

    def of(self, key: str) -> ColumnMap:
        with self._lock:
            if key not in self._maps:
                self._maps[key] = ColumnMap(self._state.setdefault(key, {}), OWN_COLUMNS,
                                            settings.MAX_TABLE_COLUMNS, self._naming)
            return self._maps[key]

    def table(self, key: str) -> str:
        return destination_table(key, self._naming)

    def tables(self) -> list[str]:
        """The destination tables of the keys loaded so far (in any load)."""
        return [self.table(key) for key in list(self._state)]

    def added_rows(self) -> list[dict[str, Any]]:
        """`metric_columns` rows of the columns named since the last call (table_name: the destination table)."""
        with self._lock:
            maps = list(self._maps.items())
        return [{**row, "long_table": None} for key, names in maps for row in names.added_rows(self.table(key))]


@dataclass(frozen=True)
class TableSelection:
    """`tables_include` / `tables_exclude` on W&B keys and the step window (`last_steps`: per key)."""

    keys: KeySelection = field(default_factory=lambda: KeySelection(what="tables"))
    window: StepWindow = field(default_factory=StepWindow)

    def pick(self, refs: Iterable[TableRef]) -> list[TableRef]:
        kept = [r for r in refs if self.keys.wants(r.key) and self.window.contains(r.step)]
        if not self.window.last_steps:
            return kept
        by_key: dict[str, list[TableRef]] = {}
        for ref in sorted(kept, key=lambda r: r.step):
            by_key.setdefault(ref.key, []).append(ref)
        return sorted((r for refs in by_key.values() for r in refs[-self.window.last_steps:]),
                      key=lambda r: (r.step, r.key))

    def fingerprint(self) -> list[Any]:
        return [list(self.keys.include), list(self.keys.exclude), self.window.min_step, self.window.max_step,
                self.window.last_steps]


# each reference's artifact copy: an ArtifactCopy, None where there is none to read (the run file is loaded alone,
# with a warning), or why it could not be read (the table is fetched again next load)
CopyReader = Callable[[list[tuple[TableRef, list[str], list[list[Any]]]]], list[Any]]


def table_rows(refs: list[TableRef], run: tuple[str, str, str], columns: TableColumns,
               read: Callable[[list[str]], dict[str, Any]], read_copy: Optional[CopyReader] = None) -> Iterator[Any]:
    """(destination table, Arrow rows) of each reference whose file `read` gives ({path: bytes or the error}),
    50 files at a time (a run may have logged thousands), then ("failed", refs, problems): the references to
    fetch again and why. Where the run file may lack media references or rows (`needs_copy`), `read_copy`
    gives each such reference's artifact copy (or the error; without `read_copy` the run file is loaded as it
    is, with a warning). A joined or partitioned table is reported (a warning naming the run, key and step)
    and not loaded."""
    by_path: dict[str, list[TableRef]] = {}
    for ref in refs:
        if ref.type not in LOADED_TYPES:
            logger.warning("run %s: %s is a %s (it references other tables), which wandb_source does not load",
                           "/".join(run), ref.describe(), ref.type)
        else:
            by_path.setdefault(ref.path or "", []).append(ref)
    retry: list[TableRef] = []
    problems: list[str] = []
    paths = list(by_path)
    for start in range(0, len(paths), settings.DETAIL_BATCH_SIZE):
        chunk = paths[start:start + settings.DETAIL_BATCH_SIZE]
        files = read([p for p in chunk if p])
        parsed: list[tuple[TableRef, Any]] = []
        for path in chunk:
            for ref in by_path[path]:
                try:
                    parsed.append((ref, _parse(files.get(path), ref)))
                except TableFileError as e:
                    retry.append(ref)
                    problems.append(str(e))
        for ref, table in _with_copies(parsed, run, read_copy):
            try:
                if isinstance(table, TableFileError):
                    raise table
                names, rows = table
                yield columns.table(ref.key), table_arrow(names, rows, ref, run, columns.of(ref.key))
            except TableFileError as e:
                retry.append(ref)
                problems.append(str(e))
    yield "failed", retry, problems


def _parse(data: Any, ref: TableRef) -> tuple[list[str], list[list[Any]]]:
    if not isinstance(data, bytes):
        raise TableFileError(f"{ref.describe()}: {data or 'W&B lists no such run file'}")
    return parse_table_file(data, ref)


def _with_copies(parsed: list[tuple[TableRef, Any]], run: tuple[str, str, str],
                 read_copy: Optional[CopyReader]) -> Iterator[tuple[TableRef, Any]]:
    """Each (reference, (columns, rows) or the TableFileError), the rows completed from the artifact copy where
    the run file may lack media references or rows."""
    wanted = [(ref, *table) for ref, table in parsed if needs_copy(table[1], ref)]
    for ref, *_ in wanted:
        if ref.copy_entry is None:
            _warn_uncopied(run, ref, "its reference names no artifact copy")
    readable = [item for item in wanted if item[0].copy_entry is not None]
    found = read_copy(readable) if readable and read_copy is not None else [None] * len(readable)
    copies = dict(zip((id(item[0]) for item in readable), found))
    for ref, (names, rows) in parsed:
        copy = copies.get(id(ref), False)  # False: not wanted
        if copy is None:
            _warn_uncopied(run, ref, "its artifact copy is not at hand")
        elif isinstance(copy, ArtifactCopy):
            try:
                rows = with_copy(names, rows, copy, ref)
            except TableFileError as e:
                yield ref, e
                continue
            if ref.type != INCREMENTAL_TABLE_FILE and (ref.logged_rows or 0) > len(rows):
                logger.warning("run %s: %s was logged with %s rows; the SDK kept %d of them (wandb.Table."
                               "MAX_ARTIFACT_ROWS)", "/".join(run), ref.describe(), ref.logged_rows, len(rows))
        elif copy is not False:
            yield ref, TableFileError(f"{ref.describe()}: its artifact copy could not be read ({copy})")
            continue
        yield ref, (names, rows)


def _warn_uncopied(run: tuple[str, str, str], ref: TableRef, why: str) -> None:
    logger.warning("run %s: %s is loaded from its run file alone (%s): a media cell stays the name of its type "
                   "and rows past the file's %d are not loaded", "/".join(run), ref.describe(), why, MAX_FILE_ROWS)


def read_online(client: WandbClient, run: tuple[str, str, str], max_workers: int) -> Callable[[list[str]], dict[str, Any]]:
    """`read` for `table_rows`: the run's files by path, each downloaded once."""
    from concurrent.futures import ThreadPoolExecutor

    def read(paths: list[str]) -> dict[str, Any]:
        if not paths:
            return {}
        urls = client.run_files(*run, paths)

        def fetch(path: str) -> Any:
            if path not in urls:
                return None
            try:
                return client.download(urls[path])
            except (ServerError, NotFoundError) as e:
                return f"download failed ({e})"

        with ThreadPoolExecutor(min(max_workers, len(paths)), thread_name_prefix="wandb-table") as pool:
            return dict(zip(paths, pool.map(fetch, paths)))

    return read


def read_copies(client: WandbClient, run: tuple[str, str, str], max_workers: int) -> CopyReader:
    """`read_copy` for `table_rows`: each reference's artifact copy as wandb-core's artifact downloader fetches
    an artifact (core/pkg/artifacts/downloader.go): the reference's client id resolved to the artifact's id
    (ClientIDMapping, as core/pkg/artifacts/saver.go resolves one), its manifest (ArtifactManifest, then the
    manifest file), the entry's URL (ArtifactFileURLsByManifestEntries), the entry. The lookups are asked for up
    to 50 copies per request (`WandbClient._each`), the files downloaded in parallel. A client id W&B does not
    resolve (an artifact it deduplicated: the table logged before unchanged) is matched by content among the
    run's logged artifacts (`RunCopies`). The error, where one fails."""
    by_content = RunCopies(client, run, max_workers)

    def read(items: list[tuple[TableRef, list[str], list[list[Any]]]]) -> list[Any]:
        ids = client.artifact_server_ids([(item[0].copy_entry or ("", ""))[0] for item in items])
        resolved = [(i, artifact_id) for i, artifact_id in enumerate(ids) if isinstance(artifact_id, str)]
        copies = _copies(client, [(a, (items[i][0].copy_entry or ("", ""))[1], items[i][0]) for i, a in resolved],
                         max_workers)
        out: list[Any] = [str(a) if isinstance(a, Exception) else None for a in ids]
        for (i, _), copy in zip(resolved, copies):
            out[i] = copy
        for i, artifact_id in enumerate(ids):
            if artifact_id is None:
                out[i] = _get(lambda item=items[i]: by_content.find(*item))  # type: ignore[misc]
        return out

    return read


def _copies(client: WandbClient, wanted: list[tuple[str, str, TableRef]], max_workers: int,
            manifests: Optional[dict[str, Any]] = None) -> list[Any]:
    """The copy (or why not) of each (artifact id, entry, reference); `manifests` ({artifact id: manifest or its
    error}) keeps the manifests read, for a caller that asks again."""
    if not wanted:
        return []
    from concurrent.futures import ThreadPoolExecutor

    manifests = {} if manifests is None else manifests
    ids = [a for a in dict.fromkeys(a for a, _, _ in wanted) if a not in manifests]
    with ThreadPoolExecutor(min(max_workers, len(wanted)), thread_name_prefix="wandb-table-copy") as pool:
        urls = dict(zip(ids, client.artifact_manifest_urls(ids) if ids else []))
        manifests.update(zip(ids, pool.map(lambda a: _get(lambda: client.artifact_manifest(urls[a], a))
                                           if isinstance(urls[a], str) else urls[a], ids)))
        out: list[Any] = [None] * len(wanted)
        asked = []
        for n, (artifact_id, entry, _) in enumerate(wanted):
            manifest = manifests[artifact_id]
            if isinstance(manifest, Exception):
                out[n] = str(manifest)
            elif entry not in manifest["contents"]:
                out[n] = f"artifact {artifact_id} has no file {entry!r}"
            else:
                asked.append(n)
        file_urls = client.artifact_file_urls([(wanted[n][0], manifests[wanted[n][0]], wanted[n][1]) for n in asked])

        def fetch(n: int, url: Any) -> Any:
            artifact_id, entry, ref = wanted[n]
            if not isinstance(url, str):
                return str(url) if url is not None else f"W&B gave no URL for {entry!r} of artifact {artifact_id}"
            sizes = {path: int(e["size"]) for path, e in manifests[artifact_id]["contents"].items()
                     if isinstance(e, dict) and isinstance(e.get("size"), int)}
            return _get(lambda: parse_copy(client.download(url), ref, artifact_id, sizes))

        for n, copy in zip(asked, pool.map(fetch, asked, file_urls)):
            out[n] = copy
    return out


def _get(call: Callable[[], Any]) -> Any:
    """`call()`, or its error (a W&B error, or a copy that is not a table) as the answer."""
    try:
        return call()
    except (ServerError, NotFoundError, TableFileError) as e:
        return e


class RunCopies:
    """The table copies among a run's logged artifacts (`Run.logged_artifacts()`, the SDK's RunOutputArtifacts),
    read once per load and only when a client id is not resolved: the copy for a table is one whose content is
    the run file's (`copy_matches`). Several with the same values but different media: not at hand (None)."""

    def __init__(self, client: WandbClient, run: tuple[str, str, str], max_workers: int) -> None:
        self._client, self._run, self._max_workers = client, run, max_workers
        self._logged: Optional[list[str]] = None  # the ids of the run's artifacts of a copy's type
        self._copies: dict[tuple[str, str], Any] = {}
        self._manifests: dict[str, Any] = {}

    def find(self, ref: TableRef, columns: list[str], rows: list[list[Any]]) -> Any:
        entry = (ref.copy_entry or ("", ""))[1]
        found = [copy for copy in self._of_entry(entry, ref)
                 if isinstance(copy, ArtifactCopy) and copy_matches(columns, rows, copy)]
        if not found:
            return f"W&B resolves no artifact for {ref.ref.get('artifact_path')} and none of the run's holds this table"
        return found[0] if all(media_cells(c) == media_cells(found[0]) for c in found) else None

    def _of_entry(self, entry: str, ref: TableRef) -> list[Any]:
        if self._logged is None:
            entity, project, name = self._run
            logged = self._client.run_artifacts(entity, project, [name]).get(name, {}).get("output", [])
            self._logged = [a["id"] for a in logged if (a.get("artifactType") or {}).get("name") in COPY_TYPES]
        wanted = [(artifact_id, entry) for artifact_id in self._logged if (artifact_id, entry) not in self._copies]
        copies = _copies(self._client, [(a, e, ref) for a, e in wanted], self._max_workers, self._manifests)
        self._copies.update(zip(wanted, copies))
        return [self._copies[artifact_id, entry] for artifact_id in self._logged]


class LoadedRows:
    """The (_step, _row) of each destination table's rows loaded for one run this load; after a rewind, what the
    destination holds beyond them is deleted (`vanished`)."""

    def __init__(self) -> None:
        self.rows: dict[str, set[tuple[int, int]]] = {}

    def add(self, table: str, rows: pa.Table) -> None:
        self.rows.setdefault(table, set()).update(zip(rows["_step"].to_pylist(), rows[ROW_INDEX].to_pylist()))

    def vanished(self, pipeline: Any, run: tuple[str, str, str], refs: list[TableRef], retry: list[TableRef],
                 columns: TableColumns, window: StepWindow) -> Iterator[Any]:
        """Tombstones (`_deleted`) for the rows of a rewound run the destination holds at a step that no longer
        logged the table, or at a step loaded again without them (the new table is shorter). Rows outside the
        step window, and of tables to be fetched again, stay."""
        logged: dict[str, set[int]] = {}
        for ref in refs:
            logged.setdefault(columns.table(ref.key), set()).add(ref.step)
        pending = {(columns.table(r.key), r.step) for r in retry}
        for table in sorted({*logged, *columns.tables()}):
            steps, loaded = logged.get(table, set()), self.rows.get(table, set())
            reloaded = {step for step, _ in loaded}
            gone = sorted((r["_step"], r[ROW_INDEX]) for r in run_rows(pipeline, table, run, f"_step, {ROW_INDEX}")
                          if window.contains(r["_step"]) and (table, r["_step"]) not in pending
                          and (r["_step"] not in steps or (r["_step"] in reloaded and
                                                          (r["_step"], r[ROW_INDEX]) not in loaded)))
            if gone:
                n = len(gone)
                yield table, pa.table({**{name: pa.array([part] * n, typ) for (name, typ), part in zip(KEY_FIELDS, run)},
                                       "_step": pa.array([s for s, _ in gone], pa.int64()),
                                       ROW_INDEX: pa.array([r for _, r in gone], pa.int64()),
                                       "_deleted": pa.array([True] * n, pa.bool_())})


def history_refs(client: WandbClient, run: tuple[str, str, str], cursor: HistoryCursor, keys: set[str],
                 page_size: int, window: StepWindow, history_line_count: Optional[int]) -> list[TableRef]:
    """The table references of the run's history rows after `cursor`, reading only `keys` (advances `cursor`)."""
    selection = Selection(KeySelection(tuple(_exact(k) for k in sorted(keys)), (), "tables"))
    read = StepWindow(window.min_step, window.max_step)  # last_steps applies per key, after reading
    refs: list[TableRef] = []
    for batch in read_history(client, run, cursor, page_size, read, selection.columns(run[0] + "/" + run[1]),
                              history_line_count):
        batch = selection.apply(batch)
        rows = batch.to_pylist() if isinstance(batch, pa.Table) else batch
        refs += [r for r in table_refs(rows) if r.key in keys]
    return refs


def _exact(key: str) -> str:
    """A glob matching `key` alone."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in key)

