"""The one async interface every feed implements, and the machinery they share: clocks, the
bounded hand-off queue, reconnect with exponential backoff and jitter, and gap records.

A feed is an object with a ``name`` and ``async def run(self, out: FeedQueue) -> None``. It puts
items on ``out`` until its source ends (a replay reaches the end of the session) or it is
stopped (``FeedQueue.stop`` set — the close, or the trader's Ctrl-C), then returns:

* ``Ticks(frame)`` — Taiwan stock ticks in ``ticks.TICK_SCHEMA`` columns (or a list of row tuples
  in that column order, cheaper for per-tick callbacks); ``cursor`` is the feed's position after
  them (a replay's row offset), so a restart can resume where the journal ends;
* ``Proxies(frame)`` — cross-market proxy prints in ``PROXY_SCHEMA`` (US trades/quotes);
* ``Gap`` — a stretch without data: start, end (UTC) and cause (disconnect, reconnect failures,
  a restart after a crash). Feeds record gaps through ``Reconnector``.

Vendor objects never cross this boundary: each adapter converts at the edge. Parsers are pure
(payload and timestamps in, rows out); clocks are injected (``SystemClock`` live,
``ManualClock`` in tests), so backoff timing is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from quant_genesis_dagster.errors import QGError

log = logging.getLogger("realtime_sidecar.feeds")

#: Cross-market proxy prints (SPEC §7.4 risk-off): UTC time, the proxy's symbol, a price
#: (trade price, or the quote midpoint), its size (shares; 0 for a quote) and ``kind``
#: ("trade" | "quote").
PROXY_SCHEMA = pl.Schema(
    {
        "ts": pl.Datetime("us", "UTC"),
        "symbol": pl.String(),
        "price": pl.Float64(),
        "size": pl.Int64(),
        "kind": pl.String(),
    }
)


class FeedError(QGError):
    """A feed cannot go on (bad keys, gave up reconnecting); the message says what to do."""


# --------------------------------------------------------------------------------------------
# items a feed produces
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticks:
    """A batch of Taiwan ticks (``TICK_SCHEMA`` frame or row tuples in its column order)."""

    frame: pl.DataFrame | list[tuple]
    cursor: int | None = None
    #: monotonic time (``Clock.monotonic``) the batch was handed over: latency is measured from it
    received: float = 0.0

    def __len__(self) -> int:
        return len(self.frame) if isinstance(self.frame, list) else self.frame.height


@dataclass(frozen=True)
class Proxies:
    """A batch of cross-market proxy prints (``PROXY_SCHEMA`` frame)."""

    frame: pl.DataFrame
    received: float = 0.0

    def __len__(self) -> int:
        return self.frame.height


@dataclass(frozen=True)
class Gap:
    """A stretch of time a feed delivered nothing it should have: [start, end) UTC, and why."""

    feed: str
    start: dt.datetime
    end: dt.datetime
    cause: str

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


FeedItem = Ticks | Proxies | Gap


# --------------------------------------------------------------------------------------------
# clocks
# --------------------------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Wall-clock time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (latency, intervals)."""

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The machine's clocks and ``asyncio.sleep``."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass
class ManualClock:
    """A clock that moves only when slept on (or ``advance``d): tests see every sleep."""

    start: dt.datetime = dt.datetime(2024, 5, 2, 1, 0, tzinfo=dt.UTC)
    elapsed: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += max(0.0, seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


# --------------------------------------------------------------------------------------------
# the bounded hand-off
# --------------------------------------------------------------------------------------------


class FeedQueue:
    """Bounded queue between a feed and the engine, counted in ticks (not items).

    ``await put(item)`` waits while the queue holds ``max_ticks`` or more (backpressure: a replay
    slows down, nothing is lost). ``put_threadsafe(item)`` is for vendor callback threads that
    cannot wait: it schedules the put on the loop, and when the buffer is full the item is
    dropped and counted in ``dropped`` (the engine reports it; a live feed cannot be paused).
    ``stop`` is set when the feed should end (the close, shutdown).
    """

    def __init__(self, max_ticks: int = 1_000_000, clock: Clock | None = None):
        if max_ticks < 1:
            raise QGError(f"FeedQueue: max_ticks={max_ticks}; use a positive number of ticks")
        self.max_ticks = max_ticks
        self.clock = clock or SystemClock()
        self.stop = asyncio.Event()
        self.dropped = 0
        self._items: asyncio.Queue[FeedItem] = asyncio.Queue()
        self._held = 0
        self._space = asyncio.Event()
        self._space.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: deque[FeedItem] = deque()
        self._wake_pending = False

    @property
    def held(self) -> int:
        """Ticks (and proxy prints) waiting to be processed."""
        return self._held

    def bind_loop(self) -> None:
        """Remember the running loop (call from it) so ``put_threadsafe`` can reach it."""
        self._loop = asyncio.get_running_loop()

    async def put(self, item: FeedItem) -> None:
        """Put, waiting while the queue is full."""
        n = _size(item)
        while n and self._held >= self.max_ticks:
            self._space.clear()
            await self._space.wait()
        self._held += n
        self._items.put_nowait(item)

    def put_nowait(self, item: FeedItem) -> bool:
        """Put without waiting (on the loop thread); False (and counted in ``dropped``) when
        the item does not fit."""
        n = _size(item)
        if n and self._held + n > self.max_ticks:
            self.dropped += n
            log.error("feed queue full: %d ticks dropped (%d in total)", n, self.dropped)
            return False
        self._held += n
        self._items.put_nowait(item)
        return True

    def put_threadsafe(self, item: FeedItem) -> None:
        """From a foreign thread (a vendor callback): hand ``item`` to the loop.

        Items wait in a thread-safe inbox; the loop is woken once per burst, not per tick (a
        ``call_soon_threadsafe`` per tick costs a self-pipe write and a loop wake-up each —
        at 20,000 ticks/s that alone saturated a core). Order is kept."""
        if self._loop is None:
            raise QGError("FeedQueue.put_threadsafe: call bind_loop() on the event loop first")
        self._inbox.append(item)  # deque.append is atomic
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._drain_inbox)

    def _drain_inbox(self) -> None:
        """On the loop: move everything the threads handed over into the queue."""
        self._wake_pending = False  # first: a put racing with the drain schedules another
        while self._inbox:
            self.put_nowait(self._inbox.popleft())

    async def get(self) -> FeedItem:
        """The next item, waiting for one."""
        return self._taken(await self._items.get())

    def get_nowait(self) -> FeedItem | None:
        """The next item, or None when the queue is empty."""
        try:
            return self._taken(self._items.get_nowait())
        except asyncio.QueueEmpty:
            return None

    def _taken(self, item: FeedItem) -> FeedItem:
        self._held -= _size(item)
        if self._held < self.max_ticks:
            self._space.set()
        return item

    def empty(self) -> bool:
        return self._items.empty()


def _size(item: FeedItem) -> int:
    return 0 if isinstance(item, Gap) else len(item)


# --------------------------------------------------------------------------------------------
# reconnect with backoff and jitter
# --------------------------------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential backoff with jitter: attempt k (0-based) waits
    ``min(cap, base × factor**k) × (1 − jitter × u)``, u uniform in [0, 1) from ``rng``
    ("equal jitter" for jitter = 0.5: never less than half the nominal delay, so a fleet of
    clients reconnecting at once spreads out without hammering). Seconds."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.factor >= 1 and self.cap >= self.base):
            raise QGError("Backoff: need base > 0, factor >= 1 and cap >= base (seconds)")
        if not 0 <= self.jitter <= 1:
            raise QGError(f"Backoff: jitter={self.jitter}; use a fraction in [0, 1]")

    def next_delay(self) -> float:
        nominal = min(self.cap, self.base * self.factor**self.attempt)
        self.attempt += 1
        return nominal * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.attempt = 0


class Reconnector:
    """Runs a feed's connection loop: connect, stream until the connection drops, wait with
    ``Backoff``, connect again — recording every gap (from the drop to the moment the adapter
    calls ``connected()`` again) with its cause.

    ``session(connected)`` is the adapter's coroutine for one connection: it calls
    ``connected()`` once it is subscribed and streaming, returns when the source ended cleanly
    (``run`` returns too) and raises on a drop (``run`` reconnects). ``max_attempts``
    consecutive failed attempts raise ``FeedError``; None retries until ``stop`` is set.

    The backoff starts over only after a connection stayed up ``stable_s`` seconds: a server
    that accepts and drops at once is retried with growing delays, not hammered at the base one.
    """

    def __init__(
        self,
        feed: str,
        *,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        on_gap: Callable[[Gap], None] | None = None,
        stable_s: float = 30.0,
    ):
        self.feed = feed
        self.clock = clock or SystemClock()
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts
        self.on_gap = on_gap
        self.gaps: list[Gap] = []
        self.connects = 0
        self.stable_s = stable_s
        self._connected_at: float | None = None
        self._down_since: dt.datetime | None = None
        self._cause = ""

    def connected(self) -> None:
        """Called by the adapter when a (re)connection is streaming: closes an open gap."""
        self.connects += 1
        self._connected_at = self.clock.monotonic()
        if self._down_since is not None:
            self._close_gap(self.clock.now())

    def down(self, cause: str) -> None:
        """Called by the adapter (or ``run``) when data stopped arriving: opens a gap."""
        if self._down_since is None:
            self._down_since = self.clock.now()
            self._cause = cause
            log.warning("%s: feed down (%s)", self.feed, cause)
        elif cause not in self._cause:
            self._cause = f"{self._cause}; {cause}"

    @property
    def is_down(self) -> bool:
        """A gap is open."""
        return self._down_since is not None

    def close_gap(self, end: dt.datetime | None = None) -> None:
        """Close an open gap (at ``end``, default now) — the feed stops while down."""
        if self._down_since is not None:
            self._close_gap(end or self.clock.now())

    def _close_gap(self, end: dt.datetime) -> None:
        assert self._down_since is not None
        gap = Gap(self.feed, self._down_since, end, self._cause)
        self._down_since, self._cause = None, ""
        self.gaps.append(gap)
        log.warning("%s: gap %.1f s (%s)", self.feed, gap.seconds, gap.cause)
        if self.on_gap is not None:
            self.on_gap(gap)

    async def _sleep(self, seconds: float, stop: asyncio.Event | None) -> None:
        """Back off, but wake up at once when ``stop`` is set (a shutdown while down)."""
        if stop is None:
            await self.clock.sleep(seconds)
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeper, stopper):
            task.cancel()

    async def run(
        self,
        session: Callable[[Callable[[], None]], Awaitable[None]],
        stop: asyncio.Event | None = None,
    ) -> None:
        failures = 0
        while stop is None or not stop.is_set():
            before = self.connects
            try:
                await session(self.connected)
                self.close_gap()  # the session ended cleanly (or was stopped) while down
                return
            except asyncio.CancelledError:
                raise
            except FeedError:
                raise
            except Exception as err:  # a drop: any transport error of the vendor's client
                cause = f"{type(err).__name__}: {err}".strip().rstrip(":")
                self.down(cause)
            failures = 0 if self.connects > before else failures + 1
            up = self._connected_at
            if (
                self.connects > before
                and up is not None
                and self.clock.monotonic() - up >= self.stable_s
            ):
                self.backoff.reset()  # it was a real connection, not a flap
            if self.max_attempts is not None and failures >= self.max_attempts:
                raise FeedError(
                    f"{self.feed}: gave up after {failures} failed reconnect attempts "
                    f"({self._cause}); check the network and the vendor's status, then restart"
                )
            await self._sleep(self.backoff.next_delay(), stop)
        self.close_gap()  # stopped while down: the gap ends now
