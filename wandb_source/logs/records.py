"""Reading W&B's local run logs (`run-<id>.wandb`), which every run writes, online or offline.

Format: a 7-byte header (`:W&B`, uint16 LE 0xBEE1, version 0), then a LevelDB-style log of 32 KiB
blocks. A chunk is `crc32 u32le | length u16le | type u8 | payload`; type 1 is a whole record, 2/3/4
the first/middle/last piece of one split across blocks; the CRC (zlib's CRC-32) covers the type byte
and the payload. A block tail shorter than a chunk header is padding, as are zero-filled chunks.
Each record is a `wandb.proto.wandb_internal_pb2.Record`.

`read_records(path, offset)` yields `(Record, end_offset)` from `offset` (0 = from the header, or where an
earlier read ended), so a later load resumes where the last one stopped. It stops at the last intact record: a
log still being written, or cut by a crash, ends in a partial chunk (`LogEnd.truncated`); a chunk whose CRC
does not match ends the read at that offset (`LogEnd.corrupt`) — nothing after it is guessed."""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HEADER = b":W&B" + struct.pack("<H", 0xBEE1) + b"\x00"
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class LogEnd:
    """Where and why reading stopped: `offset` of the first byte not consumed."""

    offset: int
    truncated: bool = False  # a partial chunk or record at the end (being written, or cut by a crash)
    corrupt: str | None = None  # why a chunk was rejected (CRC mismatch, bad type)


class RunLogError(ValueError):
    """Not a W&B run log (bad header)."""


def read_records(path: str | Path, offset: int = 0, end: LogEnd | None = None) -> Iterator[tuple[object, int]]:
    """Records of the log from `offset` (0, or an offset a previous read ended at); fills `end`."""
    from wandb.proto import wandb_internal_pb2

    end = end if end is not None else LogEnd(offset)
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return  # just created: nothing written yet
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:  # a resumed read touches only the new part
            for payload, stop in _payloads(data, offset, end):
                record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
                record.ParseFromString(payload)
                yield record, stop


def _payloads(data: bytes | mmap.mmap, offset: int, end: LogEnd) -> Iterator[tuple[bytes, int]]:
    if offset == 0:
        if len(data) < len(HEADER) and HEADER.startswith(data[:]):
            end.truncated = True  # the header is being written
            return
        if data[:len(HEADER)] != HEADER:
            raise RunLogError(f"not a W&B run log (header {data[:7]!r})")
        offset = len(HEADER)
    pieces: list[bytes] = []
    record_start = pos = offset
    while True:
        room = BLOCK_SIZE - pos % BLOCK_SIZE
        if room < CHUNK_HEADER:  # block tail padding
            pos += room
            continue
        if pos + CHUNK_HEADER > len(data):
            break
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if crc == 0 and length == 0 and kind == 0:  # zero-filled padding
            pos += room
            continue
        body_start = pos + CHUNK_HEADER
        if body_start + length > len(data):
            break  # a chunk still being written, or cut short
        payload = data[body_start:body_start + length]
        if kind not in (FULL, FIRST, MIDDLE, LAST) or length > room - CHUNK_HEADER:
            end.offset, end.corrupt = record_start, f"bad chunk (type {kind}, length {length}) at byte {pos}"
            return
        if zlib.crc32(bytes([kind]) + payload) != crc:
            end.offset, end.corrupt = record_start, f"CRC mismatch in the chunk at byte {pos}"
            return
        pos = body_start + length
        if kind == FULL:
            pieces = []
            end.offset = record_start = pos
            yield payload, pos
        elif kind == FIRST:
            pieces = [payload]
        else:
            pieces.append(payload)
            if kind == LAST:
                whole, pieces = b"".join(pieces), []
                end.offset = record_start = pos
                yield whole, pos
    end.offset = record_start
    end.truncated = record_start < len(data) and data[record_start:].strip(b"\x00") != b""
