"""The sidecar engine: feeds → bounded queue → micro-batches → journal → gate → RCNC and signals →
publish; at the close, the end-of-day aggregates into the warehouse and the asset graph.

One ``Sidecar`` runs one session. Per micro-batch (whatever the feeds queued since the last one,
up to ``max_batch`` ticks — nothing waits for a timer, so a quiet market is processed tick by
tick and a busy one in larger vectorized batches):

1. the raw batch is appended to the journal (with the clock reading the gate will use);
2. the ``TickGate`` accepts or rejects each tick (counted by reason);
3. ``SessionState.update`` advances RCNC and the signals (one vectorized pass);
4. new signals go to the log, the optional callback and, in the background, the warehouse.

A batch counts as processed only after step 1. On start, an existing journal of the session is
read back through steps 2–3 (publishing nothing again) and the feed resumes after its last
cursor: the state equals the one an uninterrupted run reaches (tests/test_sidecar_recovery.py).
A live feed's restart is recorded as a gap.

The close: a replay ends with its data; a live run stops its feeds at ``close_at`` (13:30 Taipei
plus a grace period for the closing auction's prints). Then ``SessionState.eod`` is written to
``intraday_eod`` and reported to Dagster (``report``), and the signals slice is rewritten whole.
A run stopped early (Ctrl-C) keeps its journal and computes no aggregates: restart it to go on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.errors import QGError
from realtime_sidecar import journal as jr
from realtime_sidecar.config import IntradaySettings
from realtime_sidecar.feeds.base import Clock, FeedQueue, Gap, Proxies, SystemClock, Ticks
from realtime_sidecar.session import SIGNAL_KINDS, SessionState, session_open
from realtime_sidecar.ticks import REJECT_REASONS, TICK_SCHEMA, TickGate

log = logging.getLogger("realtime_sidecar")
signal_log = logging.getLogger("realtime_sidecar.signals")

_TAIPEI = ZoneInfo(calendar.TIMEZONE)
#: after 13:30 the closing auction's prints still arrive for a moment
CLOSE_GRACE = dt.timedelta(minutes=3)


#: a live run checks for silent symbols this often (seconds of its clock)
SILENCE_CHECK_S = 30.0


@dataclass(frozen=True)
class _SilenceCheck:
    """Queue item: the clock's periodic silence check (journaled like the ticks)."""

    now: dt.datetime

    def __len__(self) -> int:
        return 0


class Feed(Protocol):
    name: str

    async def run(self, out: FeedQueue) -> None: ...


class LatencyHistogram:
    """Tick-weighted latencies in log-spaced bins (100 per decade, 1 µs .. 1,000 s): bounded
    memory over a whole live session. A percentile is its bin's upper edge (at most 2.3% above
    the exact value); the maximum is exact."""

    EDGES = np.logspace(-6, 3, 901)

    def __init__(self) -> None:
        self.counts = np.zeros(self.EDGES.size + 1, np.int64)
        self.max_s = 0.0

    def add(self, seconds: Sequence[float], weights: Sequence[int]) -> None:
        s = np.asarray(seconds, float)
        if s.size:
            np.add.at(self.counts, np.searchsorted(self.EDGES, s), np.asarray(weights, np.int64))
            self.max_s = max(self.max_s, float(s.max()))

    def percentiles_ms(self) -> dict[str, float]:
        total = self.counts.sum()
        if total == 0:
            return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
        cum = np.cumsum(self.counts)
        upper = np.append(self.EDGES, np.inf)

        def q(f: float) -> float:
            return min(float(upper[np.searchsorted(cum, f * total)]), self.max_s) * 1000

        return {"p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": self.max_s * 1000}


@dataclass
class RunSummary:
    """What a run did (printed by the CLI, compared by the recovery test)."""

    session: dt.date
    complete: bool
    accepted: int
    rejected: dict[str, int]
    signals: dict[str, int]
    gaps: list[Gap]
    eod_rows: int
    recovered_batches: int
    dropped: int
    report: Any = None
    latency: LatencyHistogram = field(default_factory=lambda: LatencyHistogram(), repr=False)

    def as_dict(self, seconds: float | None = None) -> dict:
        """Plain values (``--summary-json``)."""
        out = {
            "session": self.session.isoformat(),
            "complete": self.complete,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "signals": dict(sorted(self.signals.items())),
            "gaps": [
                {
                    "feed": g.feed,
                    "start": g.start.isoformat(),
                    "end": g.end.isoformat(),
                    "cause": g.cause,
                }
                for g in self.gaps
            ],  # fmt: skip
            "eod_rows": self.eod_rows,
            "recovered_batches": self.recovered_batches,
            "dropped": self.dropped,
            "report": None if self.report is None else vars(self.report),
            **self.latency_percentiles(),
        }
        if seconds is not None:
            out["seconds"] = seconds
        return out

    def latency_percentiles(self) -> dict[str, float]:
        """Tick-weighted tick-to-signal latency percentiles, milliseconds."""
        return self.latency.percentiles_ms()


class Sidecar:
    """The intraday engine for one session (see the module docstring)."""

    def __init__(
        self,
        session: dt.date,
        symbols: Sequence[str],
        feed: Feed,
        *,
        proxy_feed: Feed | None = None,
        settings: IntradaySettings | None = None,
        references: Mapping[str, float] | None = None,
        journal: jr.Journal | None = None,
        clock: Clock | None = None,
        live: bool = False,
        close_at: dt.datetime | None = None,
        max_batch: int = 65_536,
        queue_ticks: int = 1_000_000,
        on_signal: Callable[[pl.DataFrame], None] | None = None,
        warehouse: Any = None,
        report: Callable[[dt.date, pl.DataFrame], Any] | None = None,
        signal_flush_s: float = 1.0,
    ):
        if not symbols:
            raise QGError(f"sidecar {session}: no symbols; pass the session's universe")
        self.session = session
        self.feed, self.proxy_feed = feed, proxy_feed
        self.settings = settings or IntradaySettings()
        self.references = dict(references or {})
        self.gate = TickGate(session, symbols)
        self.symbols = self.gate.symbols
        self.state = SessionState(session, self.symbols, self.settings, self.references)
        self.journal = journal
        self.clock = clock or SystemClock()
        self.live = live
        self.close_at = close_at or (
            session_open(session) + dt.timedelta(hours=4, minutes=30) + CLOSE_GRACE
        )
        self.max_batch = max_batch
        self.queue = FeedQueue(queue_ticks, self.clock)
        self.on_signal = on_signal
        self.warehouse = warehouse
        self.report = report
        self.signal_flush_s = signal_flush_s
        self.gaps: list[Gap] = []
        self.cursor: int | None = None
        self.recovered_batches = 0
        self.signal_counts: Counter = Counter()
        self.batches = 0
        self.last_tick_ts: dt.datetime | None = None
        self.last_latency_s = 0.0
        self.latency = LatencyHistogram()
        self._rate: deque[tuple[float, int]] = deque(maxlen=64)
        self._pending: list[pl.DataFrame] = []
        self._interrupted = False
        self.report_outcome: Any = None
        self.started = time.monotonic()

    # ------------------------------------------------------------------------------ running

    def stop(self) -> None:
        """Stop early (Ctrl-C): the feeds end, the journal is kept, no aggregates are computed."""
        self._interrupted = True
        self.queue.stop.set()

    async def run(self) -> RunSummary:
        self.queue.bind_loop()
        records = self.journal.open() if self.journal else []
        try:
            self._recover(records)
        except BaseException:  # e.g. a journal of another run: nothing starts
            if self.journal:
                self.journal.close()
            raise
        feeds = [f for f in (self.feed, self.proxy_feed) if f is not None]
        tasks = [asyncio.create_task(self._run_feed(f), name=f"feed:{f.name}") for f in feeds]
        helpers = [asyncio.create_task(self._flush_signals_forever())]
        if self.live:
            helpers.append(asyncio.create_task(self._close_timer()))
            helpers.append(asyncio.create_task(self._silence_timer()))
        try:
            try:
                await self._consume(tasks)
            finally:
                self.queue.stop.set()
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*tasks, *helpers, return_exceptions=True)
            for task in tasks:  # a feed that failed (bad keys, gave up reconnecting) fails the run
                if not task.cancelled() and task.exception() is not None:
                    await asyncio.to_thread(self._flush_signals)
                    raise task.exception()  # type: ignore[misc]
            complete = not self._interrupted
            eod = await asyncio.to_thread(self._finish) if complete else None
        finally:
            if self.journal:
                self.journal.close()
        return self.summary(complete=complete, eod=eod)

    async def _run_feed(self, feed: Feed) -> None:
        try:
            await feed.run(self.queue)
        finally:
            self.queue.put_nowait(Ticks([]))  # wakes the consumer to notice the feed ended

    async def _close_timer(self) -> None:
        wait = (self.close_at - self.clock.now()).total_seconds()
        if wait > 0:
            await self.clock.sleep(wait)
        log.info("%s: the session closed (%s); stopping the feeds", self.session, self.close_at)
        self.queue.stop.set()

    async def _silence_timer(self) -> None:
        while not self.queue.stop.is_set():
            await self.clock.sleep(SILENCE_CHECK_S)
            if self.queue.stop.is_set():
                return
            self.queue.put_nowait(_SilenceCheck(self.clock.now()))  # type: ignore[arg-type]

    async def _consume(self, tasks: list[asyncio.Task]) -> None:
        while True:
            if all(t.done() for t in tasks) and self.queue.empty():
                return
            items = [await self.queue.get()]
            n = len(items[0]) if not isinstance(items[0], Gap) else 0
            while n < self.max_batch and (item := self.queue.get_nowait()) is not None:
                items.append(item)
                n += 0 if isinstance(item, Gap) else len(item)
            self._process(items)
            if any(t.done() and not t.cancelled() and t.exception() for t in tasks):
                return
            await asyncio.sleep(0)  # let the feeds (and vendor callbacks) run

    # --------------------------------------------------------------------------- processing

    def _process(self, items: list) -> None:
        ticks = [i for i in items if isinstance(i, Ticks) and len(i)]
        for gap in (i for i in items if isinstance(i, Gap)):
            if self.journal:
                self.journal.gap(gap.feed, gap.start, gap.end, gap.cause)
            self.gaps.append(gap)
        proxies = [i for i in items if isinstance(i, Proxies) and len(i)]
        if proxies:
            frame = pl.concat([p.frame for p in proxies], how="vertical_relaxed")
            now = self.clock.now() if self.live else None
            if self.journal:
                self.journal.proxies(frame, now)
            self._publish(self.state.update_proxies(frame))
        if ticks:
            self._process_ticks(ticks)
        for check in (i for i in items if isinstance(i, _SilenceCheck)):
            if self.journal:
                self.journal.timer(check.now)
            self._publish(self.state.check_silence(check.now))

    def _process_ticks(self, ticks: list[Ticks]) -> None:
        frame = _as_frame(ticks)
        now = self.clock.now() if self.live else None
        cursor = next((t.cursor for t in reversed(ticks) if t.cursor is not None), None)
        if self.journal:
            self.journal.ticks(frame, now, cursor)
        self._advance(frame, now=now)
        if cursor is not None:
            self.cursor = cursor
        done = self.clock.monotonic()
        self.latency.add([done - t.received for t in ticks], [len(t) for t in ticks])
        self.last_latency_s = done - ticks[0].received
        self._rate.append((done, self.gate.accepted + sum(self.gate.rejected.values())))

    def _advance(
        self,
        frame: pl.DataFrame,
        *,
        now: dt.datetime | None = None,
        now_us: np.ndarray | None = None,
        replaying: bool = False,
    ) -> None:
        """Gate ``frame`` and fold what is accepted into the state (live, or a restart replaying
        its journal — then with ``now_us`` per tick, and nothing published again)."""
        accepted, _ = self.gate.admit(frame, now, now_us=now_us)
        if accepted.height:
            self.last_tick_ts = accepted["ts"].max()
        self.batches += 1
        self._publish(self.state.update(accepted), replaying=replaying)

    def _publish(self, signals: pl.DataFrame, *, replaying: bool = False) -> None:
        if signals.height == 0:
            return
        self.signal_counts.update(signals["kind"].to_list())
        if replaying:  # published before the restart; the warehouse slice is rewritten whole
            return
        if signal_log.isEnabledFor(logging.INFO):
            for row in signals.select("ts", "symbol", "reason").iter_rows():
                when = row[0].astimezone(_TAIPEI).strftime("%H:%M:%S")  # exchange time, Taipei
                signal_log.info("%s %s %s", when, *row[1:])
        if self.on_signal is not None:
            try:
                self.on_signal(signals)
            except Exception:  # a subscriber's bug must not stop the session
                log.exception("signal callback failed; the signals are still stored")
        if self.warehouse is not None:
            self._pending.append(signals)

    # ----------------------------------------------------------------------------- recovery

    def header(self) -> dict:
        return {
            "session": self.session.isoformat(),
            "symbols": list(self.symbols),
            "settings": self.settings.as_dict(),
            "references": {k: self.references[k] for k in sorted(self.references)},
            "feed": self.feed.name,
        }

    def _recover(self, records: list[jr.Record]) -> None:
        assert self.journal is not None or not records
        if not records:
            if self.journal:
                self.journal.header(self.header())
            return
        if records[0].kind != jr.HEADER or records[0].info != self.header():
            raise QGError(
                f"journal {self.journal.path} belongs to another run (session, symbols, settings "  # type: ignore[union-attr]
                "or feed differ); move it away, or start over with --fresh"
            )
        last_now: dt.datetime | None = None
        pending: list[jr.Record] = []  # consecutive tick records, replayed in one call
        pending_rows = 0

        def flush() -> None:
            nonlocal pending_rows
            pending_rows = 0
            if pending:
                stamps = [-1 if r.now is None else int(r.now.timestamp() * 1_000_000)
                          for r in pending]  # fmt: skip
                now_us = np.repeat(np.asarray(stamps, np.int64), [r.rows for r in pending])
                self._advance(jr.decode_ticks(pending), now_us=now_us, replaying=True)
                pending.clear()

        for rec in records[1:]:
            if rec.kind == jr.TICKS:
                pending.append(rec)
                pending_rows += rec.rows
                self.cursor = rec.cursor if rec.cursor is not None else self.cursor
                last_now = rec.now or last_now
                if pending_rows >= self.max_batch:
                    flush()
                continue
            flush()  # the state must see the ticks before anything after them in the journal
            if rec.kind == jr.TIMER:
                self._publish(self.state.check_silence(rec.now), replaying=True)  # type: ignore[arg-type]
            elif rec.kind == jr.PROXIES:
                self._publish(self.state.update_proxies(rec.frame), replaying=True)  # type: ignore[arg-type]
            elif rec.kind == jr.GAP:
                i = rec.info or {}
                self.gaps.append(
                    Gap(i["feed"], dt.datetime.fromisoformat(i["start"]),
                        dt.datetime.fromisoformat(i["end"]), i["cause"])
                )  # fmt: skip
        flush()
        self.recovered_batches = len(records) - 1
        log.warning(
            "%s: recovered %d journal records (%d ticks accepted, cursor %s)",
            self.session, self.recovered_batches, self.gate.accepted, self.cursor,
        )  # fmt: skip
        if self.cursor is not None and hasattr(self.feed, "resume"):
            self.feed.resume(self.cursor)
        if self.live:
            start = last_now or self.last_tick_ts or self.clock.now()
            gap = Gap(self.feed.name, start, self.clock.now(), "sidecar restart")
            self.journal.gap(gap.feed, gap.start, gap.end, gap.cause)  # type: ignore[union-attr]
            self.gaps.append(gap)
        if self.warehouse is not None:
            self._write_signals_slice()

    # ------------------------------------------------------------------------ warehouse side

    async def _flush_signals_forever(self) -> None:
        while True:
            await asyncio.sleep(self.signal_flush_s)
            if self._pending:
                await asyncio.to_thread(self._flush_signals)

    def _flush_signals(self) -> None:
        from quant_genesis_dagster.domain.warehouse import io, models

        pending, self._pending = self._pending, []
        if not pending or self.warehouse is None:
            return
        try:
            io.append_rows(self.warehouse, models.IntradaySignals, pl.concat(pending))
        except Exception as err:  # the slice is rewritten whole at the close
            log.error("signals not stored yet (%s); they are rewritten at the close", err)

    def _write_signals_slice(self) -> None:
        from quant_genesis_dagster.domain.warehouse import io, models

        self._pending = []
        io.replace_slice(
            self.warehouse, models.IntradaySignals, self.state.all_signals(),
            self.session, self.session,
        )  # fmt: skip

    def _finish(self) -> pl.DataFrame:
        """The close: aggregates → journal marker → warehouse → Dagster."""
        eod = self.state.eod()
        if self.journal:
            self.journal.close_marker({"eod_rows": eod.height, "accepted": self.gate.accepted})
        if self.warehouse is not None:
            from realtime_sidecar.report import write_eod

            self._write_signals_slice()
            write_eod(self.warehouse, self.session, eod)
        if self.report is not None:
            self.report_outcome = self.report(self.session, eod)
        return eod

    # ------------------------------------------------------------------------------- status

    def ticks_per_second(self) -> float:
        if len(self._rate) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._rate[0], self._rate[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def status(self) -> dict:
        """What the status endpoint shows."""
        now = self.clock.now()
        # feed lag only means something live (a replay plays old exchange times)
        lag = (now - self.last_tick_ts).total_seconds() if self.live and self.last_tick_ts else None
        return {
            "session": self.session.isoformat(),
            "feed": self.feed.name,
            "accepted": self.gate.accepted,
            "rejected": {r: self.gate.rejected.get(r, 0) for r in REJECT_REASONS},
            "signals": {k: self.signal_counts.get(k, 0) for k in SIGNAL_KINDS},
            "gaps": len(self.gaps),
            "gap_seconds": sum(g.seconds for g in self.gaps),
            "queue_ticks": self.queue.held,
            "dropped": self.queue.dropped,
            "ticks_per_s": self.ticks_per_second(),
            "lag_s": lag,
            "latency_s": self.last_latency_s,
            "journal_bytes": self.journal.bytes_written if self.journal else 0,
            "rcnc": self.state.rcnc(),
            "uptime_s": time.monotonic() - self.started,
        }

    def summary(self, *, complete: bool, eod: pl.DataFrame | None) -> RunSummary:
        return RunSummary(
            session=self.session,
            complete=complete,
            accepted=self.gate.accepted,
            rejected=dict(self.gate.rejected),
            signals=dict(self.signal_counts),
            gaps=list(self.gaps),
            eod_rows=0 if eod is None else eod.height,
            recovered_batches=self.recovered_batches,
            dropped=self.queue.dropped,
            report=self.report_outcome,
            latency=self.latency,
        )


def _as_frame(items: list[Ticks]) -> pl.DataFrame:
    """One frame of the items' ticks in arrival order (row tuples are gathered into one list
    first: a frame per one-tick item would cost ~50 µs each)."""
    frames: list[pl.DataFrame] = []
    rows: list[tuple] = []
    for item in items:
        if isinstance(item.frame, list):
            rows.extend(item.frame)
            continue
        if rows:
            frames.append(pl.DataFrame(rows, schema=TICK_SCHEMA, orient="row"))
            rows = []
        frames.append(item.frame)
    if rows:
        frames.append(pl.DataFrame(rows, schema=TICK_SCHEMA, orient="row"))
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed")
