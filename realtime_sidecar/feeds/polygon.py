"""Polygon websocket feed: US trades and quotes of the cross-market proxies (TSM, SOXX, QQQ, …)
for the risk-off signal (SPEC §7.1, §7.4), as ``Proxies`` batches in ``PROXY_SCHEMA``.

**The protocol is spoken directly with ``websockets``, not through the SDK's
``polygon.WebSocketClient``.** The SDK's ``connect`` runs its own reconnect loop (websockets'
backoff, not ours), so a drop never reaches us and no gap could be recorded; a clean server close
makes it return, which we would have to tell apart from the end of our own run; it subscribes from
a ``set`` (the subscribe string's order varies), drops status replies before we see them, and its
default key is read from the environment once, at import. The documented protocol is four steps,
so owning it costs less than wrapping the SDK: one connection (``_session``) is

1. server ``[{"ev":"status","status":"connected"}]``;
2. client ``{"action":"auth","params":KEY}`` → server ``auth_success`` (``auth_failed`` →
   ``FeedError``, never retried: a bad key does not heal by reconnecting);
3. client ``{"action":"subscribe","params":"T.TSM,…,Q.TSM,…"}`` — on every connection, so a
   reconnect always resubscribes; the connection counts as streaming from here (``connected()``);
4. server frames: JSON arrays of events, parsed by the pure ``parse_messages``.

``run`` hands ``_session`` to base's ``Reconnector``: any drop (an abrupt close, a failed connect
or handshake, a missed keepalive pong — websockets pings every 20 s) waits ``Backoff`` (ours,
exponential with jitter) and connects again, and the gap from the drop to the next subscribe goes
on the queue as a ``Gap`` with its cause. **A clean close by the server is a drop too** unless
``out.stop`` is set: Polygon ends connections cleanly for its own reasons (maintenance, another
connection with the same key), and a trader expects the proxies to keep coming until the sidecar
stops. ``run`` returns only when ``out.stop`` is set (it then closes the socket with a normal
close) or raises ``FeedError`` (auth failed, or ``max_attempts`` failed reconnects in a row).

Batches are put with ``await out.put`` (backpressure, nothing dropped by us): a slow engine
leaves frames in websockets' and the kernel's buffers; an engine stuck long enough that Polygon
drops us shows up as a gap. Trade conditions (odd lot, extended hours, …) are not filtered here.

The key is read only from ``POLYGON_API_KEY`` in ``env`` (``os.environ`` by default). It is
sent once per connection in the auth frame and appears nowhere else: not in ``repr``, errors or
our logs, and websockets' DEBUG frame log goes through ``_RedactingLogger``, which hides the
auth frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import polars as pl
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime_sidecar.feeds.base import (
    PROXY_SCHEMA,
    Backoff,
    Clock,
    FeedError,
    FeedQueue,
    Proxies,
    Reconnector,
    SystemClock,
)

log = logging.getLogger("realtime_sidecar.feeds.polygon")

ENV_KEY = "POLYGON_API_KEY"
_SYMBOL = re.compile(r"[A-Z][A-Z0-9.]*")
#: ``t`` (ms since the epoch) must fall in [2000-01-01, 2100-01-01): anything else is garbage
_T_MIN_MS, _T_MAX_MS = 946_684_800_000, 4_102_444_800_000


class ConnectionDropped(Exception):
    """One connection ended without ``stop``: ``Reconnector`` records a gap and reconnects."""


# --------------------------------------------------------------------------------------------
# the pure parser
# --------------------------------------------------------------------------------------------


def parse_messages(msgs: list[dict], skipped: Counter[str] | None = None) -> pl.DataFrame:
    """Polygon stock events (one decoded frame) → ``PROXY_SCHEMA`` rows, in arrival order.

    * trade (``ev == "T"``): price ``p`` (USD), size ``s`` (shares), ``kind = "trade"``;
    * quote (``ev == "Q"``): price = the midpoint ``(bp + ap) / 2`` (USD) when both sides are
      positive, size 0, ``kind = "quote"``; a one-sided quote (a side ≤ 0) has no midpoint and
      is skipped (counted as ``one_sided_quote``);
    * ``ts`` from ``t`` (ms since the epoch, UTC) for both; ``symbol`` from ``sym``;
    * status and any other event are ignored (not counted);
    * a malformed trade or quote (a missing key, a non-numeric or non-finite value, a price ≤ 0,
      a negative or fractional size, ``t`` outside 2000–2100) or a message that is not a JSON
      object is skipped and counted as ``malformed``.

    Never raises on bad input. ``skipped``, when given, is incremented by reason.
    """
    ts: list[int] = []
    symbols: list[str] = []
    prices: list[float] = []
    sizes: list[int] = []
    kinds: list[str] = []
    counts = skipped if skipped is not None else Counter()
    for m in msgs:
        ev = m.get("ev") if isinstance(m, dict) else None
        if ev not in ("T", "Q"):
            if not isinstance(m, dict):
                counts["malformed"] += 1
            continue
        sym, t = m.get("sym"), _number(m.get("t"))
        if not (isinstance(sym, str) and sym) or t is None or not _T_MIN_MS <= t < _T_MAX_MS:
            counts["malformed"] += 1
            continue
        if ev == "T":
            price, size = _number(m.get("p")), _number(m.get("s"))
            if price is None or price <= 0 or size is None or size < 0 or size != int(size):
                counts["malformed"] += 1
                continue
            kind = "trade"
        else:
            bid, ask = _number(m.get("bp")), _number(m.get("ap"))
            if bid is None or ask is None:
                counts["malformed"] += 1
                continue
            if bid <= 0 or ask <= 0:
                counts["one_sided_quote"] += 1
                continue
            price, size, kind = (bid + ask) / 2.0, 0, "quote"
        ts.append(round(t * 1000))  # ms → µs
        symbols.append(sym)
        prices.append(float(price))
        sizes.append(int(size))
        kinds.append(kind)
    return pl.DataFrame(
        {
            "ts": pl.Series(ts, dtype=pl.Int64).cast(PROXY_SCHEMA["ts"]),
            "symbol": pl.Series(symbols, dtype=pl.String),
            "price": pl.Series(prices, dtype=pl.Float64),
            "size": pl.Series(sizes, dtype=pl.Int64),
            "kind": pl.Series(kinds, dtype=pl.String),
        }
    )


def _number(value: Any) -> float | None:
    """A finite int/float (not a bool, not a numeric string), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------------------------
# the feed
# --------------------------------------------------------------------------------------------


class PolygonFeed:
    """Trades and quotes (``T.SYM``, ``Q.SYM``) of US proxy ``symbols`` from Polygon's stocks
    websocket (``wss://{host}/stocks``; ``secure=False`` → ``ws://``, for a local test server).

    ``clock`` times backoff sleeps, gaps and ``Proxies.received``; ``backoff`` (seconds) and
    ``max_attempts`` (consecutive failed connects before ``FeedError``; None: until stopped) go
    to the ``Reconnector``. ``handshake_timeout`` (s) bounds each wait for a status reply.
    After ``run``: ``skipped`` counts messages dropped by ``parse_messages`` (by reason) and
    ``reconnector`` holds the gaps and the number of connections.
    """

    name = "polygon"

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        env: Mapping[str, str] | None = None,
        host: str = "socket.polygon.io",
        secure: bool = True,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        handshake_timeout: float = 10.0,
    ):
        self.symbols = _symbols(symbols)
        key = (os.environ if env is None else env).get(ENV_KEY, "").strip()
        if not key:
            raise FeedError(
                f"polygon: {ENV_KEY} is not set; export your Polygon API key as {ENV_KEY} "
                "(or run without the Polygon feed)"
            )
        self._key = key
        self.url = f"{'wss' if secure else 'ws'}://{host}/stocks"
        self.clock = clock or SystemClock()
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts
        self.handshake_timeout = handshake_timeout
        #: the subscribe ``params``: every symbol's trades, then every symbol's quotes
        self.params = ",".join([f"T.{s}" for s in self.symbols] + [f"Q.{s}" for s in self.symbols])
        self.skipped: Counter[str] = Counter()
        self.reconnector: Reconnector | None = None

    def __repr__(self) -> str:
        return f"PolygonFeed(symbols={self.symbols!r}, url={self.url!r})"

    async def run(self, out: FeedQueue) -> None:
        """Stream into ``out`` until ``out.stop`` is set; reconnect (recording gaps) on drops."""
        self.reconnector = Reconnector(
            self.name,
            clock=self.clock,
            backoff=self.backoff,
            max_attempts=self.max_attempts,
            on_gap=lambda gap: out.put_nowait(gap),  # a Gap holds no ticks: always fits
        )
        await self.reconnector.run(lambda connected: self._session(connected, out), out.stop)

    async def _session(self, connected: Callable[[], None], out: FeedQueue) -> None:
        """One connection: handshake, subscribe, stream. Returns when ``out.stop`` is set;
        raises ``ConnectionDropped`` (or websockets'/the OS's error) on anything else."""
        async with connect(
            self.url,
            open_timeout=self.handshake_timeout,
            close_timeout=2.0,
            max_size=2**24,  # bytes per frame: a busy second of quotes stays well below
            logger=_RedactingLogger(log, self._key),
        ) as ws:
            stopper = asyncio.create_task(_close_on(out.stop, ws))
            try:
                await self._handshake(ws)
                connected()
                async for raw in ws:  # ends on a clean close, raises on an abrupt one
                    received = self.clock.monotonic()
                    frame = parse_messages(self._decode(raw), self.skipped)
                    if frame.height:
                        await out.put(Proxies(frame, received=received))
            except ConnectionClosed:
                if out.stop.is_set():
                    return
                raise
            finally:
                stopper.cancel()
            if out.stop.is_set():
                return
            raise ConnectionDropped(
                f"server closed the connection ({ws.close_code} {ws.close_reason})".strip()
            )

    async def _handshake(self, ws: ClientConnection) -> None:
        status, message = await self._status(ws)
        if status != "connected":
            raise ConnectionDropped(f"expected status 'connected', got {status!r} ({message})")
        await ws.send(_dumps({"action": "auth", "params": self._key}))
        status, message = await self._status(ws)
        if status == "auth_failed":
            raise FeedError(
                f"polygon: authentication failed ({self._redact(message)}); check that "
                f"{ENV_KEY} holds a valid key with websocket access"
            )
        if status != "auth_success":
            raise ConnectionDropped(f"expected status 'auth_success', got {status!r} ({message})")
        await ws.send(_dumps({"action": "subscribe", "params": self.params}))
        log.info("polygon: subscribed to %s", self.params)

    async def _status(self, ws: ClientConnection) -> tuple[str, str]:
        """The first status event of the next frame: (status, message)."""
        try:
            raw = await asyncio.wait_for(ws.recv(), self.handshake_timeout)
        except TimeoutError:
            raise ConnectionDropped(
                f"no status reply within {self.handshake_timeout:g} s"
            ) from None
        for m in self._decode(raw):
            if isinstance(m, dict) and m.get("ev") == "status":
                return str(m.get("status", "")), self._redact(str(m.get("message", "")))
        raise ConnectionDropped("expected a status frame during the handshake")

    def _decode(self, raw: str | bytes) -> list:
        """A frame's JSON array (a lone object is wrapped); an undecodable frame counts as one
        ``malformed`` message and yields nothing."""
        try:
            msgs = json.loads(raw)
        except ValueError:
            self.skipped["malformed"] += 1
            return []
        if isinstance(msgs, dict):
            return [msgs]
        if not isinstance(msgs, list):
            self.skipped["malformed"] += 1
            return []
        return msgs

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***")


async def _close_on(stop: asyncio.Event, ws: ClientConnection) -> None:
    """Close ``ws`` normally (code 1000) once ``stop`` is set; the reader then ends."""
    await stop.wait()
    await ws.close()


def _symbols(symbols: Iterable[str]) -> list[str]:
    """Upper-cased, de-duplicated (first occurrence kept), each a plain ticker (``BRK.B``)."""
    if isinstance(symbols, str):
        symbols = [symbols]
    out: list[str] = []
    for raw in symbols:
        sym = str(raw).strip().upper()
        if not _SYMBOL.fullmatch(sym):
            raise FeedError(
                f"polygon: symbol {raw!r} is not a ticker; use US tickers such as TSM, SOXX, QQQ"
            )
        if sym not in out:
            out.append(sym)
    if not out:
        raise FeedError("polygon: no symbols; give the US proxy tickers (e.g. TSM, SOXX, QQQ)")
    return out


def _dumps(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"))


class _RedactingLogger(logging.LoggerAdapter):
    """websockets logs every frame at DEBUG (``> TEXT '{"action":"auth","params":KEY}'``): this
    adapter, handed to ``connect(logger=…)``, replaces an auth frame's text and the key itself."""

    def __init__(self, logger: logging.Logger, secret: str):
        super().__init__(logger, {})
        self._secret = secret

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args}"
        if '"action":"auth"' in text:
            text = text.split(" ", 1)[0] + " (auth frame, not logged)"
        self.logger.log(level, "%s", text.replace(self._secret, "***"), **kwargs)


__all__ = ["ENV_KEY", "ConnectionDropped", "PolygonFeed", "parse_messages"]
