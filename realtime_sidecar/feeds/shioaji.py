"""The live Taiwan feed: Sinopac's Shioaji SDK (1.7.x) behind the one feed interface (SPEC §7.1).

What it does, per connection (one ``Reconnector`` session):

1. construct the SDK client (``api_factory``; ``shioaji`` is imported only by the default one),
   register the session-event callback (the one call the SDK allows before login), log in with
   ``SJ_API_KEY``/``SJ_SEC_KEY`` from the environment (``subscribe_trade=False``: this adapter
   reads quotes only and never touches an order API);
2. register the tick and bid/ask callbacks, resolve every symbol's contract and subscribe its
   ticks and its bid/ask (v1);
3. stream until ``FeedQueue.stop`` is set, then unsubscribe and log out.

The blocking SDK calls (login, subscribe, logout) run in a worker thread (``asyncio.to_thread``)
so the event loop keeps serving the engine.

**Threads.** The SDK calls our callbacks on its own native threads, never on the event loop.
A tick is converted right there, at the boundary, by the pure ``tick_row`` into a plain tuple in
``TICK_SCHEMA`` column order (vendor objects never cross into the engine), and handed to the loop
with ``FeedQueue.put_threadsafe`` as a one-row ``Ticks`` item; the queue keeps them in a
thread-safe inbox and wakes the loop once per burst, and the engine builds one frame per batch
(``benchmarks.sidecar``'s thread phase: p99 under 8 ms at 20,000 one-tick hand-overs a second).
Session events reach the loop with ``call_soon_threadsafe``, so the ``Reconnector`` (and its gap
records) is only ever touched from the loop thread.

**Bid/ask.** The bid/ask callback keeps the latest best bid and ask per symbol in a dict; each
tick row carries the pair current when it is converted (trial-match and odd-lot quotes are
skipped). See ``_on_bidask`` for why that dict needs no lock.

**Session events** (Solace codes): 12 (reconnecting) and 1 (down) open a gap; 13 (reconnected)
resubscribes every symbol (the SDK may lose subscriptions across a reconnect) and then closes the
gap; 2 (connect failed) is counted and logged. In Solace terms 1 means the session went down for
good (its own reconnect gave up or was not attempted), so if no 13 follows within
``relogin_after`` seconds the session is torn down and the ``Reconnector`` logs in again with
backoff. Login failures are retried the same way (connection errors, timeouts, maintenance);
a refused key (``AuthError``/``TokenError``, a malformed key) raises ``FeedError`` at once.

**Keys** come only from the environment (``env``, default ``os.environ``); they never appear in
logs, exception messages or reprs (vendor messages are redacted before they are re-raised).

Trial-match (``simtrade``) ticks are passed through flagged: the engine's ``TickGate`` rejects
them as ``trial_match`` and counts them, so every dropped tick is counted in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.market import LOT_SIZE
from realtime_sidecar.feeds.base import (
    Backoff,
    Clock,
    FeedError,
    FeedQueue,
    Reconnector,
    SystemClock,
    Ticks,
)

log = logging.getLogger("realtime_sidecar.feeds.shioaji")

TAIPEI = ZoneInfo(calendar.TIMEZONE)
KEY_VARS = ("SJ_API_KEY", "SJ_SEC_KEY")
#: vendor tick_type → TICK_SCHEMA side: 1 外盤 (at the ask, buyer-initiated) → +1,
#: 2 內盤 (at the bid, seller-initiated) → −1, anything else (0, can't tell) → 0
_SIDE = {1: 1, 2: -1}
#: Vendor exception classes (matched by name along the MRO, so the SDK need not be imported)
#: that a retry cannot fix: at login, the key was refused or is malformed ...
_REFUSED = {"AuthError", "TokenError", "ShioajiValueError", "ValidationError", "BadRequestError"}
#: ... and at any step, a local set-up problem or a bad argument (the message says what to do).
#: Everything else (ShioajiConnectionError, ShioajiTimeoutError, SystemMaintenance, ...) is
#: retried with backoff.
_FATAL = {"CaError", "ShioajiPermissionError", "ShioajiTypeError", "ShioajiValueError"}
#: session event codes (Solace)
EV_UP, EV_DOWN, EV_CONNECT_FAILED, EV_RECONNECTING, EV_RECONNECTED, EV_SUBSCRIBED = (
    0,
    1,
    2,
    12,
    13,
    16,
)

Quote = tuple[float | None, float | None]


# --------------------------------------------------------------------------------------------
# conversion at the boundary (pure)
# --------------------------------------------------------------------------------------------


def to_utc(wall: dt.datetime) -> dt.datetime:
    """A naive Taiwan wall-clock time (the SDK's ``datetime``) as an aware UTC datetime, µs."""
    if wall.tzinfo is not None:  # not what the SDK sends, but never shift an aware time
        return wall.astimezone(dt.UTC)
    return wall.replace(tzinfo=TAIPEI).astimezone(dt.UTC)


def _price(value: Any) -> float | None:
    """A quote price (Decimal or str, TWD) as a float; 0 or missing means no quote → None."""
    if value is None or value == "":
        return None
    price = float(value)
    return price if price > 0 else None


def best_quote(bidask: Any) -> Quote:
    """(best bid, best ask) in TWD from a ``BidAskSTKv1`` (``bid_price[0]``, ``ask_price[0]``);
    None for a side without a quote (an empty level or a 0 price)."""
    bids, asks = bidask.bid_price, bidask.ask_price
    return (_price(bids[0]) if bids else None, _price(asks[0]) if asks else None)


def tick_row(tick: Any, bidask_state: Mapping[str, Quote]) -> tuple:
    """One ``TickSTKv1`` as a ``TICK_SCHEMA`` row tuple:
    ``(ts, symbol, price, volume, side, bid, ask, simtrade)``.

    * ts — ``tick.datetime`` (naive Asia/Taipei wall clock) as aware UTC;
    * price — ``float(tick.close)``, TWD;
    * volume — shares: board-lot ticks count lots (張) × ``LOT_SIZE``; intraday odd-lot ticks
      (``intraday_odd``) already count shares;
    * side — +1 buyer-initiated (tick_type 1), −1 seller-initiated (2), 0 unknown;
    * bid, ask — the symbol's latest best quote in ``bidask_state`` (symbol → (bid, ask)), None
      before any bid/ask arrived;
    * simtrade — passed through (a trial-match print; the engine's gate rejects and counts it).
    """
    volume = int(tick.volume)
    if not getattr(tick, "intraday_odd", False):
        volume *= LOT_SIZE
    bid, ask = bidask_state.get(tick.code, (None, None))
    return (
        to_utc(tick.datetime),
        tick.code,
        float(tick.close),
        volume,
        _SIDE.get(int(tick.tick_type), 0),
        bid,
        ask,
        bool(tick.simtrade),
    )


# --------------------------------------------------------------------------------------------
# the feed
# --------------------------------------------------------------------------------------------


class SessionLost(Exception):
    """The SDK session is gone (down without reconnecting, or a login/subscribe transport
    error): the ``Reconnector`` waits its backoff and logs in again. The message is redacted."""


class _Keys:
    """The key pair, kept out of every repr."""

    __slots__ = ("api_key", "secret_key")

    def __init__(self, api_key: str, secret_key: str):
        self.api_key, self.secret_key = api_key, secret_key

    def redact(self, text: str) -> str:
        for value in (self.secret_key, self.api_key):
            text = text.replace(value, "***")
        return text

    def __repr__(self) -> str:
        return "<shioaji keys hidden>"


def _read_keys(env: Mapping[str, str]) -> _Keys:
    missing = [name for name in KEY_VARS if not env.get(name, "").strip()]
    if missing:
        raise FeedError(
            f"shioaji: {' and '.join(missing)} not set; export your Sinopac API key pair as "
            "SJ_API_KEY and SJ_SEC_KEY (from the API management page), or use the replay feed"
        )
    return _Keys(env["SJ_API_KEY"].strip(), env["SJ_SEC_KEY"].strip())


def _class_names(err: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(err).__mro__}


class ShioajiFeed:
    """Live Taiwan stock ticks and best bid/ask from Shioaji, as ``Ticks`` and ``Gap`` items.

    ``symbols`` — stock codes ("2330"); ``api_factory`` — builds one SDK client per connection
    (default ``shioaji.Shioaji(simulation=simulation)``; tests pass a fake with the same method
    names); ``env`` — where the keys are read (default ``os.environ``); ``clock``/``backoff`` —
    for the ``Reconnector`` (``backoff`` defaults to 1 s doubling up to 60 s: the vendor allows
    1,000 logins a day); ``max_attempts`` — consecutive failed logins before ``FeedError``
    (None: until stopped); ``relogin_after`` — seconds to wait after a session-down event (1) for
    the SDK's own reconnect (13) before logging in again (None: never).
    """

    name = "shioaji"

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        api_factory: Callable[[], Any] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        simulation: bool = False,
        max_attempts: int | None = None,
        relogin_after: float | None = 10.0,
    ):
        self.symbols = list(dict.fromkeys(symbols))
        if not self.symbols:
            raise FeedError("shioaji: no symbols to subscribe; pass the session's stock codes")
        self._keys = _read_keys(os.environ if env is None else env)
        self.simulation = simulation
        self._sdk = api_factory is None
        self._api_factory = api_factory or self._default_api
        self.clock = clock or SystemClock()
        self.backoff = backoff or Backoff(base=1.0, cap=60.0)
        self.max_attempts = max_attempts
        self.relogin_after = relogin_after
        #: symbol → latest (best bid, best ask), TWD; written by the bid/ask callback thread
        self.quotes: dict[str, Quote] = {}
        self.reconnector: Reconnector | None = None
        # counters (diagnostics)
        self.ticks = 0  #: ticks handed to the queue
        self.unconvertible = 0  #: vendor ticks tick_row could not convert (logged)
        self.connect_failures = 0  #: session events 2
        self.resubscribes = 0  #: resubscriptions after event 13
        self._out: FeedQueue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gen = 0  # connection generation: events of an old client are ignored
        self._api: Any = None
        self._contracts: list[Any] = []
        self._down = False
        self._lost = asyncio.Event()
        self._lost_cause = ""
        self._watchdog: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def is_down(self) -> bool:
        """True from a session down/reconnecting event (1, 12) to the resubscribe after 13."""
        return self._down

    def __repr__(self) -> str:
        return f"ShioajiFeed(symbols={self.symbols!r}, simulation={self.simulation})"

    def _default_api(self) -> Any:
        import shioaji

        return shioaji.Shioaji(simulation=self.simulation)

    def _quote_args(self) -> tuple[Any, Any, Any]:
        """(tick, bid/ask, version) for ``subscribe``: the SDK's enums, or their strings for an
        injected client."""
        if self._sdk:
            import shioaji

            return shioaji.QuoteType.Tick, shioaji.QuoteType.BidAsk, shioaji.QuoteVersion.v1
        return "tick", "bidask", "v1"

    # -- the run loop (event-loop thread) -----------------------------------------------------

    async def run(self, out: FeedQueue) -> None:
        """Stream until ``out.stop`` is set; ``FeedError`` when the keys are refused, a symbol
        has no contract, or ``max_attempts`` logins in a row failed."""
        out.bind_loop()
        self._out, self._loop = out, asyncio.get_running_loop()
        rec = self.reconnector = Reconnector(
            self.name,
            clock=self.clock,
            backoff=self.backoff,
            max_attempts=self.max_attempts,
            on_gap=out.put_nowait,
        )
        try:
            await rec.run(self._session, out.stop)
        finally:
            self._out = None  # late callbacks from SDK threads are dropped from now on
            for task in list(self._tasks):
                task.cancel()
            rec.close_gap()  # stopped (or failed) while the SDK was reconnecting

    async def _session(self, connected: Callable[[], None]) -> None:
        """One connection: log in, subscribe, stream until stop (return) or loss (raise)."""
        assert self._out is not None
        stop = self._out.stop
        self._gen += 1
        gen = self._gen
        self._lost, self._lost_cause = asyncio.Event(), ""
        try:
            api = self._api_factory()
            api.set_event_callback(self._event_callback(gen))
        except ImportError as err:
            raise FeedError(
                f"shioaji: cannot import the SDK ({err}); install it (pip install 'shioaji>=1.7') "
                "or use the replay feed"
            ) from None
        except Exception as err:
            raise self._classify(err, "client set-up") from None
        self._api = api
        try:
            contracts = await asyncio.to_thread(self._connect, api)
        except BaseException:
            await asyncio.to_thread(self._teardown, api, [])
            raise
        self._contracts = contracts
        try:
            if stop.is_set():
                return
            self._down = False
            connected()
            stop_wait = asyncio.ensure_future(stop.wait())
            lost_wait = asyncio.ensure_future(self._lost.wait())
            try:
                await asyncio.wait({stop_wait, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
                lost_wait.cancel()
            if not stop.is_set():
                raise SessionLost(self._lost_cause)
        finally:
            self._gen += 1  # from here on, this client's events are stale
            self._api, self._contracts = None, []
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            await asyncio.to_thread(self._teardown, api, contracts)

    # -- blocking SDK calls (worker thread) ---------------------------------------------------

    def _connect(self, api: Any) -> list[Any]:
        """Log in, register the quote callbacks, resolve and subscribe every symbol; the
        contracts. Vendor errors come out as ``FeedError`` (not retried) or ``SessionLost``."""
        keys = self._keys
        try:
            api.login(api_key=keys.api_key, secret_key=keys.secret_key, subscribe_trade=False)
        except Exception as err:
            raise self._classify(err, "login") from None
        try:
            api.set_on_tick_stk_v1_callback(self._on_tick)
            api.set_on_bidask_stk_v1_callback(self._on_bidask)
            contracts = []
            for symbol in self.symbols:
                contract = api.contracts.get(symbol)
                if contract is None:
                    raise FeedError(
                        f"shioaji: no contract for symbol {symbol!r}; check the code (a listed "
                        "stock such as '2330') or remove it from the universe"
                    )
                contracts.append(contract)
            failed = self._subscribe(api, contracts)
        except FeedError:
            raise
        except Exception as err:
            raise self._classify(err, "subscribe") from None
        if failed:
            raise SessionLost(f"subscribe failed: {failed[0]}")
        log.info("shioaji: subscribed ticks and bid/ask of %d symbols", len(contracts))
        return contracts

    def _subscribe(self, api: Any, contracts: list[Any]) -> list[str]:
        """Subscribe ticks and bid/ask of every contract; the failures, redacted."""
        tick, bidask, version = self._quote_args()
        failed = []
        for contract in contracts:
            for quote_type in (tick, bidask):
                try:
                    api.subscribe(contract, quote_type=quote_type, version=version)
                except Exception as err:
                    failed.append(self._keys.redact(f"{contract.code} {type(err).__name__}: {err}"))
        return failed

    def _resubscribe(self, api: Any, contracts: list[Any]) -> list[str]:
        self.resubscribes += 1
        return self._subscribe(api, contracts)

    def _teardown(self, api: Any, contracts: list[Any]) -> None:
        """Unsubscribe and log out, best effort (the session may already be gone)."""
        if contracts:
            tick, bidask, version = self._quote_args()
            for contract in contracts:
                for quote_type in (tick, bidask):
                    try:
                        api.unsubscribe(contract, quote_type=quote_type, version=version)
                    except Exception as err:
                        log.debug("shioaji: unsubscribe %s: %s", contract.code, type(err).__name__)
        try:
            api.logout()
        except Exception as err:
            log.debug("shioaji: logout: %s", type(err).__name__)

    def _classify(self, err: Exception, step: str) -> Exception:
        """A vendor error as ``FeedError`` (a retry cannot help) or ``SessionLost`` (retry)."""
        names = _class_names(err)
        what = self._keys.redact(f"{type(err).__name__}: {err}".strip().rstrip(":"))
        mode = "simulation" if self.simulation else "production"
        if step == "login" and names & _REFUSED:
            return FeedError(
                f"shioaji: {step} refused ({what}); check SJ_API_KEY and SJ_SEC_KEY (a valid "
                f"key pair for {mode}, as issued on the API management page), then restart"
            )
        if names & _FATAL:
            return FeedError(f"shioaji: {step} failed ({what}); fix the setup, then restart")
        return SessionLost(f"{step} failed ({what})")

    # -- SDK callbacks (native threads) -------------------------------------------------------

    def _on_tick(self, tick: Any) -> None:
        """A ``TickSTKv1`` (SDK thread): convert and hand to the loop; never raises."""
        out = self._out
        if out is None:
            return
        try:
            row = tick_row(tick, self.quotes)
        except Exception as err:  # a malformed vendor tick must not kill the SDK's thread
            self.unconvertible += 1
            log.error("shioaji: unconvertible tick (%s: %s): %r", type(err).__name__, err, tick)
            return
        try:
            out.put_threadsafe(Ticks([row], received=self.clock.monotonic()))
        except RuntimeError:  # the loop closed under us at shutdown
            return
        self.ticks += 1  # diagnostic: not atomic should the SDK use several tick threads

    def _on_bidask(self, bidask: Any) -> None:
        """A ``BidAskSTKv1`` (SDK thread): remember the symbol's best bid and ask.

        No lock: the tick and bid/ask callbacks may run on different native threads, but one
        dict item assignment (and one ``get``) is atomic under the GIL (and internally locked on
        free-threaded builds), and the value is an immutable tuple built before the assignment,
        so a tick sees either the previous or the new (bid, ask) pair, never a mix. Which of the
        two it sees when both arrive within microseconds is a race across the vendor's two
        streams anyway. Trial-match quotes (``simtrade``, before the open and in the closing
        auction) are not executable and odd-lot quotes belong to another book: both are skipped.
        """
        if getattr(bidask, "simtrade", False) or getattr(bidask, "intraday_odd", False):
            return
        try:
            self.quotes[bidask.code] = best_quote(bidask)
        except Exception as err:
            log.error("shioaji: unreadable bid/ask (%s: %s)", type(err).__name__, err)

    def _event_callback(self, gen: int) -> Callable[[int, int, str, str], None]:
        def on_event(resp_code: int, event_code: int, info: str, event: str) -> None:
            loop = self._loop
            if loop is None or self._out is None:
                return
            with contextlib.suppress(RuntimeError):  # the loop closed under us at shutdown
                loop.call_soon_threadsafe(self._on_event, gen, event_code, info, event)

        return on_event

    # -- session events (event-loop thread) ---------------------------------------------------

    def _on_event(self, gen: int, code: int, info: str, event: str) -> None:
        rec = self.reconnector
        if gen != self._gen or rec is None or self._out is None or self._out.stop.is_set():
            return  # an event of a client already torn down
        if code in (EV_DOWN, EV_RECONNECTING):
            self._down = True
            rec.down(f"session {'down' if code == EV_DOWN else 'reconnecting'} (event {code})")
            log.warning("shioaji: event %d %s: %s", code, event, info)
            if code == EV_DOWN and self.relogin_after is not None and self._watchdog is None:
                self._watchdog = self._spawn(self._relogin_later(gen))
        elif code == EV_RECONNECTED:
            log.warning("shioaji: event %d %s: resubscribing", code, event)
            self._spawn(self._on_reconnected(gen))
        elif code == EV_CONNECT_FAILED:
            self.connect_failures += 1
            log.warning("shioaji: event %d %s (%d so far): %s", code, event,
                        self.connect_failures, info)  # fmt: skip
        else:  # 0 up, 16 subscribed, ...
            log.debug("shioaji: event %d %s: %s", code, event, info)

    async def _on_reconnected(self, gen: int) -> None:
        """Event 13: resubscribe everything, then close the gap; if nothing could be
        resubscribed, the session is treated as lost (log in again)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        api, contracts = self._api, self._contracts
        if api is None or not contracts:  # still connecting: its own subscribe comes next
            return
        failed = await asyncio.to_thread(self._resubscribe, api, contracts)
        if gen != self._gen or self.reconnector is None:
            return
        if len(failed) == 2 * len(contracts):
            log.error("shioaji: resubscribe failed (%s); logging in again", failed[0])
            self._lose(f"resubscribe after reconnect failed ({failed[0]})")
            return
        for failure in failed:
            log.error("shioaji: resubscribe failed: %s", failure)
        self._down = False
        self.reconnector.connected()

    async def _relogin_later(self, gen: int) -> None:
        assert self.relogin_after is not None
        await self.clock.sleep(self.relogin_after)
        self._watchdog = None
        if gen == self._gen and self._down:
            log.error("shioaji: no reconnect within %s s of session down", self.relogin_after)
            self._lose(f"session down and not reconnected within {self.relogin_after} s")

    def _lose(self, cause: str) -> None:
        """End the current session: ``_session`` raises ``SessionLost(cause)``."""
        self._lost_cause = cause
        self._lost.set()

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
