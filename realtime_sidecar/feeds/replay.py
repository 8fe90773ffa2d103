"""The replay feed (the default): a recorded session or the sample market's tick stream for a
session, played at real time, ×N, a fixed offered load, or as fast as possible.

Pacing follows the ticks' own exchange times: at ``speed`` N a tick is handed over when
``(ts − first ts) / N`` seconds have passed since the start; ``speed=None`` hands batches over as
fast as the engine takes them (backpressure through ``FeedQueue``); ``rate`` (ticks/s) ignores the
timestamps and offers a fixed load (the benchmark's latency run). ``start`` resumes after the
journal's last cursor, so a restart neither loses nor repeats a tick.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from quant_genesis_dagster.errors import QGError
from realtime_sidecar.feeds.base import Clock, FeedQueue, SystemClock, Ticks
from realtime_sidecar.ticks import TICK_SCHEMA

#: rows per hand-over when a replay runs as fast as possible
CHUNK = 8192


def load_recorded(path: Path | str) -> pl.DataFrame:
    """A recorded session (Parquet, Arrow IPC or CSV with ``TICK_SCHEMA`` columns; ``simtrade``
    may be absent, ``is_big`` — the sample market's column — is ignored)."""
    p = Path(path)
    if not p.exists():
        raise QGError(f"replay: {p} does not exist; pass a recorded session file (.parquet/.csv)")
    readers = {".parquet": pl.read_parquet, ".arrow": pl.read_ipc, ".ipc": pl.read_ipc,
               ".csv": lambda f: pl.read_csv(f, try_parse_dates=True)}  # fmt: skip
    reader = readers.get(p.suffix.lower())
    if reader is None:
        raise QGError(f"replay: {p.name}: unknown format; use .parquet, .arrow or .csv")
    return as_ticks(reader(p), str(p))


def as_ticks(df: pl.DataFrame, what: str = "replay") -> pl.DataFrame:
    """``df`` in ``TICK_SCHEMA`` columns (values are left for the gate to judge)."""
    missing = [c for c in ("ts", "symbol", "price", "volume") if c not in df.columns]
    if missing:
        raise QGError(f"{what}: missing column(s) {', '.join(missing)}; see ticks.TICK_SCHEMA")
    if "simtrade" not in df.columns:
        df = df.with_columns(simtrade=pl.lit(False))
    ts = df.schema["ts"]
    if isinstance(ts, pl.Datetime) and ts.time_zone is None:
        raise QGError(f"{what}: ts has no time zone; store UTC timestamps (tz-aware)")
    exprs = [
        (pl.col(c) if c in df.columns else pl.lit(None)).cast(t, strict=False).alias(c)
        for c, t in TICK_SCHEMA.items()
    ]
    return df.select(exprs)


def sample_session(session: dt.date, *, seed: int = 7, n_symbols: int = 300) -> pl.DataFrame:
    """The sample market's ticks of ``session`` in ``TICK_SCHEMA`` (what ``make demo``'s
    market traded that day)."""
    from quant_genesis_dagster.domain.sample import SampleMarket, SampleMarketConfig

    market = SampleMarket(SampleMarketConfig(seed=seed, n_symbols=n_symbols))
    return as_ticks(market.ticks(session), "sample market")


class ReplayFeed:
    """Plays ``ticks`` (``TICK_SCHEMA`` rows in arrival order) into the queue."""

    name = "replay"

    def __init__(
        self,
        ticks: pl.DataFrame,
        *,
        speed: float | None = None,
        rate: float | None = None,
        start: int = 0,
        chunk: int = CHUNK,
        clock: Clock | None = None,
    ):
        if speed is not None and not speed > 0:
            raise QGError(f"replay: speed={speed}; use a positive factor (1 = real time)")
        if rate is not None and not rate > 0:
            raise QGError(f"replay: rate={rate}; use a positive number of ticks per second")
        if not 0 <= start <= ticks.height:
            raise QGError(f"replay: start={start} is outside the {ticks.height} ticks")
        self.ticks = ticks
        self.speed, self.rate = speed, rate
        self.start, self.chunk = start, chunk
        self.clock = clock or SystemClock()
        self.sent = 0

    def resume(self, cursor: int) -> None:
        """Start after the first ``cursor`` ticks (the journal's last cursor)."""
        self.start = max(self.start, cursor)

    def _due_offsets(self) -> np.ndarray | None:
        """Seconds after the start at which each tick is due (None: as fast as possible)."""
        n = self.ticks.height
        if self.rate is not None:
            return np.arange(n) / self.rate
        if self.speed is None:
            return None
        us = self.ticks["ts"].dt.epoch("us").fill_null(strategy="forward").fill_null(0)
        us = us.to_numpy().astype(np.int64)
        first = us[self.start] if n > self.start else 0
        return np.maximum(us - first, 0) / 1e6 / self.speed

    async def run(self, out: FeedQueue) -> None:
        n, pos = self.ticks.height, self.start
        due = self._due_offsets()
        if due is not None:
            due = due - (due[pos] if pos < n else 0.0)
        t0 = self.clock.monotonic()
        while pos < n and not out.stop.is_set():
            if due is None:
                end = min(n, pos + self.chunk)
            else:
                elapsed = self.clock.monotonic() - t0
                end = int(np.searchsorted(due, elapsed, side="right"))
                end = min(max(end, pos), pos + self.chunk)
                if end == pos:  # nothing due yet: sleep until the next tick (≥ 1 ms)
                    await self.clock.sleep(max(float(due[pos]) - elapsed, 0.001))
                    continue
            frame = self.ticks.slice(pos, end - pos)
            # paced: latency counts from when the batch's first tick was due, not handed over
            received = self.clock.monotonic() if due is None else t0 + float(due[pos])
            await out.put(Ticks(frame, cursor=end, received=received))
            self.sent += end - pos
            pos = end
