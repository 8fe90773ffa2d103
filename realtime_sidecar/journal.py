"""The sidecar's journal: an append-only file per session holding every micro-batch exactly as
it arrived, written before the batch counts as processed (SPEC §7.5).

A restart reads the journal and feeds the same batches, with the same clock readings, through
the same gate and state: it reaches exactly the state the crashed process had (and, because the
state does not depend on how the stream is cut, exactly the state of an uninterrupted run).

Record layout (little-endian): ``u32 length | u32 crc32 | u8 kind | body``; the CRC covers the
kind byte and the body. Kinds:

* ``HEADER`` (JSON) — the session, its symbols, the settings and the feed; a restart refuses a
  journal whose header differs (a different universe would not reproduce the state);
* ``TICKS`` — ``i64 now_us | i64 cursor`` then the raw batch in the tick codec below
  (``now_us`` = −1: no clock, a replay; ``cursor`` = −1: none);
* ``PROXIES`` — ``i64 now_us`` then Arrow IPC;
* ``GAP`` (JSON) — feed, start, end, cause;
* ``TIMER`` — ``i64 now_us``: a live run's periodic silence check ran at that clock reading;
* ``CLOSE`` (JSON) — the end-of-day aggregates were computed (rows, time).

The tick codec is columnar and compact (about 50 bytes a tick whatever the batch size; Arrow IPC
spends ~1 KB of schema per record, which a live feed's one-tick batches would pay every time):
``u32 rows | u32 extra`` then, per ``TICK_SCHEMA`` column, ``u8 has_nulls`` [``rows`` validity
bytes] and the values (fixed width; nulls as 0); ``symbol`` is stored as a u32 index into the
header's symbols, an index past them pointing into ``extra`` bytes of JSON holding the symbols
outside the universe (kept as sent: the gate rejects them, and a restart must reject them too).

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from quant_genesis_dagster.errors import QGError
from realtime_sidecar.ticks import TICK_SCHEMA

log = logging.getLogger("realtime_sidecar.journal")

HEADER, TICKS, PROXIES, GAP, CLOSE, TIMER = 1, 2, 3, 4, 5, 6
#: the record layout's version, kept in the header: another version's journal is refused
FORMAT = 2
_PREFIX = struct.Struct("<IIB")
_TICK_META = struct.Struct("<qq")
_PROXY_META = struct.Struct("<q")
_MAX_RECORD = 1 << 31


@dataclass(frozen=True)
class Record:
    kind: int
    now: dt.datetime | None = None  # the clock reading the batch was admitted with
    cursor: int | None = None
    info: dict | None = None
    #: PROXIES: the prints; TICKS: decoded on first use (``frame``) — a restart decodes runs
    #: of tick records together instead (``TickCodec.decode_many``)
    proxies: pl.DataFrame | None = None
    body: memoryview | None = field(default=None, repr=False)
    codec: TickCodec | None = field(default=None, repr=False)

    @property
    def rows(self) -> int:
        """Ticks in a TICKS record (0 for the other kinds)."""
        if self.kind != TICKS or self.body is None:
            return 0
        return _CODEC_HEAD.unpack_from(self.body)[0]

    @property
    def frame(self) -> pl.DataFrame | None:
        if self.kind == PROXIES:
            return self.proxies
        if self.kind == TICKS and self.codec is not None and self.body is not None:
            return self.codec.decode(self.body)
        return None


_CODEC_HEAD = struct.Struct("<II")
_FIXED = {
    "ts": np.dtype("<i8"),
    "price": np.dtype("<f8"),
    "volume": np.dtype("<i8"),
    "side": np.dtype("<i1"),
    "bid": np.dtype("<f8"),
    "ask": np.dtype("<f8"),
    "simtrade": np.dtype("u1"),
}


class TickCodec:
    """Encodes raw tick batches (``TICK_SCHEMA``) against a session's symbol list."""

    def __init__(self, symbols: Sequence[str]):
        self.symbols = list(symbols)
        self.enum = pl.Enum(self.symbols)

    def encode(self, frame: pl.DataFrame) -> bytes:
        df = frame
        if df.schema != TICK_SCHEMA:
            df = df.select([pl.col(c).cast(t, strict=False) for c, t in TICK_SCHEMA.items()])
        n = df.height
        parts: list[bytes] = []
        # symbols: index into the universe; the others (and nulls) spelled out in ``extra``
        idx = df["symbol"].cast(self.enum, strict=False).to_physical()
        extra: list[str | None] = []
        if idx.null_count():
            miss = idx.is_null().to_numpy()
            codes = idx.fill_null(0).to_numpy().astype(np.uint32)
            others = df["symbol"].to_numpy()[miss].tolist()
            uniq = list(dict.fromkeys(others))
            pos = {s: i for i, s in enumerate(uniq)}
            codes[miss] = [len(self.symbols) + pos[s] for s in others]
            extra = uniq
        else:
            codes = idx.to_numpy().astype(np.uint32)
        blob = json.dumps(extra).encode() if extra else b""
        parts.append(_CODEC_HEAD.pack(n, len(blob)))
        parts.append(blob)
        parts.append(codes.astype("<u4").tobytes())
        for name, dtype in _FIXED.items():
            col = df[name]
            if name == "ts":
                col = col.to_physical()
            nulls = col.null_count()
            parts.append(b"\x01" if nulls else b"\x00")
            if nulls:
                parts.append(col.is_not_null().to_numpy().astype("u1").tobytes())
                col = col.fill_null(0)
            parts.append(col.to_numpy().astype(dtype).tobytes())
        return b"".join(parts)

    def decode(self, body: bytes | memoryview) -> pl.DataFrame:
        return self.decode_many([body])

    def decode_many(self, bodies: Sequence[bytes | memoryview]) -> pl.DataFrame:
        """The ticks of several records as one frame, in order (numpy per record, one frame:
        a restart after a day of one-tick batches decodes a million records)."""
        names = list(self.symbols)
        where: dict[str, int] = {}
        codes_parts: list[np.ndarray] = []
        values: dict[str, list[np.ndarray]] = {c: [] for c in _FIXED}
        valid: dict[str, list[np.ndarray | None]] = {c: [] for c in _FIXED}
        sizes: list[int] = []
        for body in bodies:
            buf = memoryview(body)
            n, n_extra = _CODEC_HEAD.unpack_from(buf)
            pos = _CODEC_HEAD.size
            codes = np.frombuffer(buf, "<u4", n, pos + n_extra).astype(np.int64)
            if n_extra:  # symbols outside the universe: index them in this decode's list
                extra = json.loads(bytes(buf[pos : pos + n_extra]))
                remap = []
                for sym in extra:
                    if sym not in where:
                        where[sym] = len(names)
                        names.append(sym)
                    remap.append(where[sym])
                out = codes >= len(self.symbols)
                codes[out] = np.asarray(remap, np.int64)[codes[out] - len(self.symbols)]
            pos += n_extra + 4 * n
            codes_parts.append(codes)
            sizes.append(n)
            for name, dtype in _FIXED.items():
                has_nulls = buf[pos]
                pos += 1
                mask = None
                if has_nulls:
                    mask = np.frombuffer(buf, "u1", n, pos).astype(bool)
                    pos += n
                values[name].append(np.frombuffer(buf, dtype, n, pos))
                valid[name].append(mask)
                pos += dtype.itemsize * n
        table = np.array(names, dtype=object)
        cols = [pl.Series("symbol", table[np.concatenate(codes_parts or [np.empty(0, int)])],
                          pl.String)]  # fmt: skip
        for name, dtype in _FIXED.items():
            series = pl.Series(name, np.concatenate(values[name] or [np.empty(0, dtype)]))
            if any(m is not None for m in valid[name]):
                ok = np.concatenate([np.ones(k, bool) if m is None else m
                                     for m, k in zip(valid[name], sizes, strict=True)])  # fmt: skip
                series = pl.select(pl.when(pl.lit(pl.Series(ok))).then(pl.lit(series)))
                series = series.to_series().alias(name)
            cols.append(series)
        frame = pl.DataFrame(cols).select(list(TICK_SCHEMA))
        return frame.cast(dict(TICK_SCHEMA))


def decode_ticks(records: Sequence[Record]) -> pl.DataFrame:
    """The ticks of consecutive TICKS records as one frame (one decode for all of them)."""
    codec = records[0].codec
    assert codec is not None
    return codec.decode_many([r.body for r in records if r.body is not None])


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
        self.codec: TickCodec | None = None  # set by the header (its symbols)
        self.bytes_written = 0
        self.records_written = 0
        self._fd: int | None = None

    # ----------------------------------------------------------------------------- reading

    def records(self) -> Iterator[Record]:
        """Every intact record in order (stops at a torn or corrupt tail)."""
        for kind, body in self._scan()[0]:
            yield self._decode(kind, body)

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
        return [self._decode(kind, body) for kind, body in intact]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, kind: int, body: bytes) -> None:
        if self._fd is None:
            raise QGError(f"journal {self.path}: not open; call open() first")
        if len(body) >= _MAX_RECORD:
            raise QGError(
                f"journal {self.path}: a record of {len(body)} bytes; use smaller batches"
            )
        record = _PREFIX.pack(len(body), zlib.crc32(bytes([kind]) + body), kind) + body
        view = memoryview(record)
        while view:  # os.write may write less than asked
            view = view[os.write(self._fd, view) :]
        if self.fsync:
            os.fsync(self._fd)
        self.bytes_written += len(record)
        self.records_written += 1

    def header(self, info: dict) -> None:
        """The first record: ``info`` must hold the session's ``symbols`` (the tick codec's)."""
        self.codec = TickCodec(info["symbols"])
        info = {**info, "format": FORMAT}
        self._append(HEADER, json.dumps(info, sort_keys=True).encode())

    def ticks(self, frame: pl.DataFrame, now: dt.datetime | None, cursor: int | None) -> None:
        if self.codec is None:
            raise QGError(f"journal {self.path}: write the header before ticks")
        meta = _TICK_META.pack(_us(now), -1 if cursor is None else cursor)
        self._append(TICKS, meta + self.codec.encode(frame))

    def proxies(self, frame: pl.DataFrame, now: dt.datetime | None) -> None:
        self._append(PROXIES, _PROXY_META.pack(_us(now)) + _ipc(frame))

    def gap(self, feed: str, start: dt.datetime, end: dt.datetime, cause: str) -> None:
        info = {"feed": feed, "start": start.isoformat(), "end": end.isoformat(), "cause": cause}
        self._append(GAP, json.dumps(info).encode())

    def timer(self, now: dt.datetime) -> None:
        self._append(TIMER, _PROXY_META.pack(_us(now)))

    def close_marker(self, info: dict) -> None:
        self._append(CLOSE, json.dumps(info, sort_keys=True).encode())

    def _decode(self, kind: int, body: bytes) -> Record:
        if kind == HEADER:
            info = json.loads(body)
            if info.pop("format", None) != FORMAT:
                raise QGError(
                    f"journal {self.path}: written by another version of the sidecar; set it "
                    "aside (--fresh) to start the session over"
                )
            self.codec = TickCodec(info["symbols"])
            return Record(kind, info=info)
        if kind == TICKS:
            if self.codec is None:
                raise QGError(f"journal {self.path}: ticks before the header; not a journal")
            now, cursor = _TICK_META.unpack_from(body)
            return Record(kind, _from_us(now), None if cursor < 0 else cursor,
                          body=memoryview(body)[_TICK_META.size :], codec=self.codec)  # fmt: skip
        if kind == PROXIES:
            (now,) = _PROXY_META.unpack_from(body)
            frame = pl.read_ipc(io.BytesIO(body[_PROXY_META.size :]))
            return Record(kind, _from_us(now), proxies=frame)
        if kind == TIMER:
            return Record(kind, _from_us(_PROXY_META.unpack_from(body)[0]))
        if kind in (GAP, CLOSE):
            return Record(kind, info=json.loads(body))
        raise QGError(f"journal {self.path}: unknown record kind {kind}; not a sidecar journal")
