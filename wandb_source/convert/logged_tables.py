"""Logged `wandb.Table`s → Arrow rows of one destination table per W&B key. Pure, no I/O.

How wandb 0.31 keeps a logged table (`wandb/sdk/data_types/table.py`, checked against files the installed SDK
wrote): `run.log({"preds": table})` puts a reference in that step's history row (and the summary),
`{"_type": "table-file", "path": "media/table/preds_<n>_<hash>.table.json", "sha256", "size", "nrows", "ncols",
"log_mode", "artifact_path", ...}`, and writes the run file at `path` holding `{"columns": [...], "data":
[[...], ...]}` (NaN/±Infinity as JSON tokens, a media cell as the bare name of its type, e.g. "Image").
`<n>` is a counter of the SDK's, not the step: a row's step is the step of the history row that referenced
the file. A table logged with `log_mode="INCREMENTAL"` is an `incremental-table-file`: its file holds only the
rows added at that step, and `nrows` counts the whole table so far. `joined-table` and `partitioned-table`
reference other tables: not loaded, reported.

The run file is not the whole table: it holds at most `wandb.Table.MAX_ROWS` (10,000) rows, and a media cell
(an image, audio, HTML, ...) only as its type's name. The table is also logged as an artifact (`run_table`,
or `wandb-run-incremental-table` for increments) whose copy holds up to 200,000 rows and media cells as
references (`{"_type": "image-file", "path", "sha256", ...}`, the file's size in the artifact's manifest), but
NaN as null. The reference's `artifact_path` (`wandb-client-artifact://<client id>/<entry>`) names that copy.
So: values from the run file; media references, and rows past the run file's, from the artifact copy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlparse

import pyarrow as pa

from ..tables import LOGGED_TABLE_PREFIX
from .columns import ColumnMap, column_name
from .values import KEY_FIELDS, KIND_TYPES, convert, value_kind

TABLE_FILE = "table-file"
INCREMENTAL_TABLE_FILE = "incremental-table-file"
LOADED_TYPES = (TABLE_FILE, INCREMENTAL_TABLE_FILE)
NOT_LOADED_TYPES = ("joined-table", "partitioned-table")
TABLE_TYPES = (*LOADED_TYPES, *NOT_LOADED_TYPES)
ROW_INDEX = "_row"
MAX_FILE_ROWS = 10_000  # wandb.Table.MAX_ROWS: the most rows the SDK writes to the run file
CLIENT_ARTIFACT_SCHEME = "wandb-client-artifact"
COPY_TYPES = ("run_table", "wandb-run-incremental-table")  # the artifact types the SDK logs a table's copy as
# The names the SDK writes to a run file for a media cell (the class of a `wandb.data_types` value that can sit
# in a table; tests/test_logged_tables.py checks the list against the installed SDK's classes).
MEDIA_NAMES = frozenset({"Audio", "Bokeh", "BoundingBoxes2D", "Classes", "EvalTable", "Graph", "Html", "Image",
                         "ImageMask", "JoinedTable", "Molecule", "Object3D", "PartitionedTable", "Plotly", "Table",
                         "Video", "WBTraceTree"})
OWN_COLUMNS = ("entity", "project", "run_id", "_step", ROW_INDEX, "_deleted")  # "_deleted": tombstones (rewinds)


class TableFileError(ValueError):
    """A table file that cannot be loaded (missing, not the file the reference names, malformed)."""


@dataclass(frozen=True)
class TableRef:
    """One logged table: the step that logged it, its W&B key and the history row's reference."""

    step: int
    key: str
    ref: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.ref.get("_type"))

    @property
    def path(self) -> Optional[str]:
        path = self.ref.get("path")
        return path if isinstance(path, str) and path else None

    def describe(self) -> str:
        return f"table {self.key!r} at step {self.step} ({self.path or self.type})"

    @property
    def copy_entry(self) -> Optional[tuple[str, str]]:
        """(client id, entry name) of the artifact copy the reference names, if it names one."""
        path = self.ref.get("artifact_path")
        parsed = urlparse(path) if isinstance(path, str) else None
        if not parsed or parsed.scheme != CLIENT_ARTIFACT_SCHEME or not parsed.netloc or not parsed.path.strip("/"):
            return None
        return parsed.netloc, parsed.path.lstrip("/")

    @property
    def logged_rows(self) -> Optional[int]:
        total = self.ref.get("nrows")
        return total if isinstance(total, int) and not isinstance(total, bool) else None

    def to_state(self) -> list[Any]:
        return [self.step, self.key, self.ref]

    @classmethod
    def from_state(cls, value: list[Any]) -> TableRef:
        return cls(int(value[0]), str(value[1]), dict(value[2]))


def is_table_ref(value: Any) -> bool:
    return isinstance(value, dict) and value.get("_type") in TABLE_TYPES


def table_refs(rows: list[dict[str, Any]]) -> list[TableRef]:
    """The table references of history rows (dicts with `_step`), in step order."""
    return [TableRef(int(row["_step"]), key, value) for row in rows for key, value in row.items()
            if is_table_ref(value)]


def table_keys(summary: Any, history_keys: Any) -> set[str]:
    """The keys of a run that logged a table, from its summary (the latest value of each key) and its
    `historyKeys` type counts (a server may name a table's type there, or only say "map")."""
    keys = {k for k, v in summary.items() if is_table_ref(v)} if isinstance(summary, dict) else set()
    per_key = history_keys.get("keys") if isinstance(history_keys, dict) else None
    for key, info in (per_key or {}).items():
        counts = info.get("typeCounts") if isinstance(info, dict) else None
        if any(isinstance(c, dict) and c.get("type") in TABLE_TYPES for c in counts or []):
            keys.add(key)
    return keys


def destination_table(key: str, naming: Any) -> str:
    """`wandb_table__<key as a column name>`: `preds` → `wandb_table__preds`, `eval/preds` →
    `wandb_table__eval__preds` (the rule of `columns.column_name`)."""
    return str(naming.normalize_tables_path(LOGGED_TABLE_PREFIX + column_name(key, "number", "history", (), naming)))


def parse_table_file(data: bytes, ref: TableRef) -> tuple[list[Any], list[Any]]:
    """(columns, rows) of a table file, checked against its reference: sha256 when it names one, the shape."""
    digest = ref.ref.get("sha256")
    if isinstance(digest, str) and digest and hashlib.sha256(data).hexdigest() != digest:
        raise TableFileError(f"{ref.describe()}: the file's sha256 is not the one the history row names "
                             "(a partial upload?)")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise TableFileError(f"{ref.describe()}: not a JSON table file ({e})") from None
    columns, rows = (body.get("columns"), body.get("data")) if isinstance(body, dict) else (None, None)
    if not isinstance(columns, list) or not isinstance(rows, list):
        raise TableFileError(f"{ref.describe()}: the file has no `columns` and `data` lists")
    if len(set(map(str, columns))) != len(columns):
        raise TableFileError(f"{ref.describe()}: the file names a column twice")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise TableFileError(f"{ref.describe()}: row {i} does not have the table's {len(columns)} cells")
    return [str(c) for c in columns], rows


@dataclass(frozen=True)
class ArtifactCopy:
    """A logged table's artifact copy: its rows and the sizes of the artifact's files ({path: bytes}); the
    artifact's id on W&B (None: a copy the SDK staged locally, not yet synced)."""

    artifact_id: Optional[str]
    columns: list[str]
    rows: list[list[Any]]
    sizes: dict[str, int]


def manifest_digest(data: bytes) -> str:
    """A file's digest as W&B's artifact manifests (and run files' `md5`) hold it: the base64 of its MD5."""
    import base64

    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - W&B's digest, not security


def needs_copy(rows: list[list[Any]], ref: TableRef) -> bool:
    """Whether the run file may lack what the artifact copy holds: a cell that may be a media cell (a string
    naming a media type), or rows beyond the run file's (a table cut at `MAX_FILE_ROWS`; an increment's
    count is not in its reference, so a full-size increment counts as cut)."""
    if len(rows) >= MAX_FILE_ROWS and (ref.type == INCREMENTAL_TABLE_FILE or (ref.logged_rows or 0) > len(rows)):
        return True
    return any(isinstance(cell, str) and cell in MEDIA_NAMES for row in rows for cell in row)


def parse_copy(data: bytes, ref: TableRef, artifact_id: Optional[str], sizes: dict[str, int]) -> ArtifactCopy:
    """The artifact copy's table file (`{"_type": "table", "columns", "data", "column_types", ...}`)."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise TableFileError(f"{ref.describe()}: its artifact copy is not JSON ({e})") from None
    columns, rows = (body.get("columns"), body.get("data")) if isinstance(body, dict) else (None, None)
    if not isinstance(columns, list) or not isinstance(rows, list) or \
            any(not isinstance(row, list) or len(row) != len(columns) for row in rows):
        raise TableFileError(f"{ref.describe()}: its artifact copy is not a table of `columns` and `data` rows")
    return ArtifactCopy(artifact_id, [str(c) for c in columns], rows, sizes)


def with_copy(columns: list[str], rows: list[list[Any]], copy: ArtifactCopy, ref: TableRef) -> list[list[Any]]:
    """The run file's rows with each media cell replaced by its reference from the artifact copy (JSON: the
    copy's cell, its `size` from the manifest and the `artifact_id`), then the copy's rows past the run file's
    (values as the copy holds them: NaN there is null)."""
    if copy.columns != columns or len(copy.rows) < len(rows):
        raise TableFileError(f"{ref.describe()}: its artifact copy ({len(copy.rows)} rows of {copy.columns}) is not "
                             f"the table of the run file ({len(rows)} rows of {columns})")
    out = [[_media(copy, copied) if _is_media(copied) and isinstance(cell, str) else cell
            for cell, copied in zip(row, copied_row)] for row, copied_row in zip(rows, copy.rows)]
    out += [[_media(copy, cell) if _is_media(cell) else cell for cell in row] for row in copy.rows[len(rows):]]
    return out


def copy_matches(columns: list[str], rows: list[list[Any]], copy: ArtifactCopy) -> bool:
    """Whether `copy` is the artifact copy of the run file's table: the same columns, every row of the file (a
    file of fewer than `MAX_FILE_ROWS` rows is not cut: as many rows), each cell equal, NaN as null, a media
    name as a media reference."""
    if copy.columns != columns or len(copy.rows) < len(rows) or \
            (len(rows) < MAX_FILE_ROWS and len(copy.rows) != len(rows)):
        return False
    return all(_same_cell(cell, copied) for row, copied_row in zip(rows, copy.rows)
               for cell, copied in zip(row, copied_row))


def _same_cell(cell: Any, copied: Any) -> bool:
    if isinstance(cell, float) and cell != cell:
        return copied is None
    if isinstance(cell, str) and cell in MEDIA_NAMES and _is_media(copied):
        return True
    return type(cell) is type(copied) and cell == copied or \
        (isinstance(cell, (int, float)) and not isinstance(cell, bool) and
         isinstance(copied, (int, float)) and not isinstance(copied, bool) and cell == copied)


def media_cells(copy: ArtifactCopy) -> list[Any]:
    """The copy's media cells, in order (two copies with the same values differ only in these)."""
    return [cell for row in copy.rows for cell in row if _is_media(cell)]


def _is_media(cell: Any) -> bool:
    return isinstance(cell, dict) and isinstance(cell.get("_type"), str) and isinstance(cell.get("path"), str)


def _media(copy: ArtifactCopy, cell: dict[str, Any]) -> dict[str, Any]:
    return {**cell, "size": copy.sizes.get(cell["path"]), "artifact_id": copy.artifact_id}


def first_row_index(ref: TableRef, increment_rows: int) -> int:
    """The place of a file's first row in the logged table: 0, or for an increment the rows logged before
    (`nrows` counts the whole table so far)."""
    if ref.type != INCREMENTAL_TABLE_FILE:
        return 0
    total = ref.ref.get("nrows")
    if isinstance(total, int) and not isinstance(total, bool) and total >= increment_rows:
        return total - increment_rows
    raise TableFileError(f"{ref.describe()}: an increment without a usable `nrows` ({total!r}): its rows' places "
                         "in the table are unknown")


def table_arrow(columns: list[str], rows: list[list[Any]], ref: TableRef, run: tuple[str, str, str],
                names: ColumnMap) -> pa.Table:
    """One table file's rows: the run key, `_step`, `_row` (the row's place in the logged table), then one
    column per table column and kind, named by `names` (a value's kind as in history: numbers as float64,
    ints beyond 2**53 exact, text, bool, nested values as JSON)."""
    n, first = len(rows), first_row_index(ref, len(rows))
    out: dict[str, Any] = {name: pa.array([part] * n, typ) for (name, typ), part in zip(KEY_FIELDS, run)}
    out["_step"] = pa.array([ref.step] * n, pa.int64())
    out[ROW_INDEX] = pa.array(range(first, first + n), pa.int64())
    values: dict[str, list[Any]] = {}
    kinds: dict[str, str] = {}
    for j, name in enumerate(columns):
        for i, row in enumerate(rows):
            kind = value_kind(row[j])
            if kind is None:
                continue
            column = names.column(name, kind)
            if not column:
                raise TableFileError(f"{ref.describe()}: more columns than a destination table may hold")
            if column not in values:
                values[column], kinds[column] = [None] * n, kind
            values[column][i] = convert(row[j], kind)
    for column, cells in values.items():
        out[column] = pa.array(cells, KIND_TYPES[kinds[column]])
    return pa.table(out)
