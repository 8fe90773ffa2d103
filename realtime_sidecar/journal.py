"""The sidecar's journal: an append-only file per session holding every micro-batch exactly as
it arrived, written before the batch counts as processed (SPEC §7.5).

A restart reads the journal and feeds the same batches, with the same clock readings, through
the same gate and state: it reaches exactly the state the crashed process had (and, because the
state does not depend on how the stream is cut, exactly the state of an uninterrupted run).

Record layout (little-endian): ``u32 length | u32 crc32 | u8 kind | body``; the CRC covers the
kind byte and the body. Kinds:

* ``HEADER`` (JSON) — the session, its symbols, the settings and the feed; a restart refuses a
  journal whose header differs (a different universe would not reproduce the state);
* ``TICKS`` — ``i64 now_us | i64 cursor`` then the raw batch as Arrow IPC (``now_us`` = −1: no
  clock, a replay; ``cursor`` = −1: none);
* ``PROXIES`` — ``i64 now_us`` then Arrow IPC;
* ``GAP`` (JSON) — feed, start, end, cause;
* ``CLOSE`` (JSON) — the end-of-day aggregates were computed (rows, time).

A crash can leave a torn last record (a partial write); opening the journal truncates it and says
so in the log. Records are written with one ``write`` call each; ``fsync`` after every record
(``fsync=True``) also survives a power cut, at a cost the benchmark measures.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from quant_genesis_dagster.errors import QGError

log = logging.getLogger("realtime_sidecar.journal")

HEADER, TICKS, PROXIES, GAP, CLOSE = 1, 2, 3, 4, 5
_PREFIX = struct.Struct("<IIB")
_TICK_META = struct.Struct("<qq")
_PROXY_META = struct.Struct("<q")
_MAX_RECORD = 1 << 31


@dataclass(frozen=True)
class Record:
    kind: int
    now: dt.datetime | None = None  # the clock reading the batch was admitted with
    cursor: int | None = None
    frame: pl.DataFrame | None = None
    info: dict | None = None


def _ipc(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_ipc(buf, compression="uncompressed")
    return buf.getvalue()


def _us(now: dt.datetime | None) -> int:
    return -1 if now is None else int(now.timestamp() * 1_000_000)


def _from_us(us: int) -> dt.datetime | None:
    return None if us < 0 else dt.datetime.fromtimestamp(us / 1e6, dt.UTC)


class Journal:
    """Append-only journal of one session (``open`` it; ``records()`` to replay)."""

    def __init__(self, path: Path, *, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self.bytes_written = 0
        self.records_written = 0
        self._fd: int | None = None

    # ----------------------------------------------------------------------------- reading

    def records(self) -> Iterator[Record]:
        """Every intact record in order (stops at a torn or corrupt tail)."""
        for kind, body in self._scan()[0]:
            yield _decode(kind, body)

    def _scan(self) -> tuple[list[tuple[int, bytes]], int]:
        """(intact records, byte offset where they end)."""
        if not self.path.exists():
            return [], 0
        data = self.path.read_bytes()
        out, pos = [], 0
        while pos + _PREFIX.size <= len(data):
            length, crc, kind = _PREFIX.unpack_from(data, pos)
            end = pos + _PREFIX.size + length
            if end > len(data):
                break
            body = data[pos + _PREFIX.size : end]
            if zlib.crc32(bytes([kind]) + body) != crc:
                break
            out.append((kind, body))
            pos = end
        return out, pos

    # ----------------------------------------------------------------------------- writing

    def open(self) -> list[Record]:
        """Open for appending; returns the records already there (after cutting a torn tail)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        intact, end = self._scan()
        size = self.path.stat().st_size if self.path.exists() else 0
        if size > end:
            log.warning(
                "journal %s: cut a torn last record (%d bytes after offset %d) left by a crash",
                self.path, size - end, end,
            )  # fmt: skip
            with open(self.path, "r+b") as f:
                f.truncate(end)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return [_decode(kind, body) for kind, body in intact]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, kind: int, body: bytes) -> None:
        if self._fd is None:
            raise QGError(f"journal {self.path}: not open; call open() first")
        if len(body) >= _MAX_RECORD:
            raise QGError(f"journal {self.path}: a record of {len(body)} bytes; use smaller batches")
        record = _PREFIX.pack(len(body), zlib.crc32(bytes([kind]) + body), kind) + body
        view = memoryview(record)
        while view:  # os.write may write less than asked
            view = view[os.write(self._fd, view) :]
        if self.fsync:
            os.fsync(self._fd)
        self.bytes_written += len(record)
        self.records_written += 1

    def header(self, info: dict) -> None:
        self._append(HEADER, json.dumps(info, sort_keys=True).encode())

    def ticks(self, frame: pl.DataFrame, now: dt.datetime | None, cursor: int | None) -> None:
        meta = _TICK_META.pack(_us(now), -1 if cursor is None else cursor)
        self._append(TICKS, meta + _ipc(frame))

    def proxies(self, frame: pl.DataFrame, now: dt.datetime | None) -> None:
        self._append(PROXIES, _PROXY_META.pack(_us(now)) + _ipc(frame))

    def gap(self, feed: str, start: dt.datetime, end: dt.datetime, cause: str) -> None:
        info = {"feed": feed, "start": start.isoformat(), "end": end.isoformat(), "cause": cause}
        self._append(GAP, json.dumps(info).encode())

    def close_marker(self, info: dict) -> None:
        self._append(CLOSE, json.dumps(info, sort_keys=True).encode())


def _decode(kind: int, body: bytes) -> Record:
    if kind == TICKS:
        now, cursor = _TICK_META.unpack_from(body)
        frame = pl.read_ipc(io.BytesIO(body[_TICK_META.size :]))
        return Record(kind, _from_us(now), None if cursor < 0 else cursor, frame)
    if kind == PROXIES:
        (now,) = _PROXY_META.unpack_from(body)
        return Record(kind, _from_us(now), None, pl.read_ipc(io.BytesIO(body[_PROXY_META.size :])))
    if kind in (HEADER, GAP, CLOSE):
        return Record(kind, info=json.loads(body))
    raise QGError(f"journal: unknown record kind {kind}; the file is not a sidecar journal")
