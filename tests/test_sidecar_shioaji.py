"""The Shioaji live feed: vendor ticks converted at the boundary (UTC, shares, side, best
bid/ask), handed from the SDK's native thread to the loop in order, session events turned into
gaps and resubscriptions, login retried with backoff unless the key is refused, keys never
shown. A plain fake client stands in for the SDK; one contract test converts real ``shioaji``
objects built from msgpack."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import subprocess
import sys
import threading
import time
from decimal import Decimal
from types import SimpleNamespace

import msgpack
import polars as pl
import pytest

from realtime_sidecar.feeds.base import Backoff, FeedError, FeedQueue, Gap, ManualClock, Ticks
from realtime_sidecar.feeds.shioaji import ShioajiFeed, best_quote, tick_row, to_utc
from realtime_sidecar.ticks import TICK_SCHEMA

UTC = dt.UTC
API_KEY = "APIKEY-0123456789abcdef"
SECRET = "SECRET-fedcba9876543210"
ENV = {"SJ_API_KEY": API_KEY, "SJ_SEC_KEY": SECRET}
TIMEOUT = 5.0
#: every SDK method a quotes-only adapter may call
QUOTE_API = {
    "set_event_callback",
    "login",
    "set_on_tick_stk_v1_callback",
    "set_on_bidask_stk_v1_callback",
    "contracts",
    "subscribe",
    "unsubscribe",
    "logout",
}


# --------------------------------------------------------------------------------------------
# fakes with the SDK's names
# --------------------------------------------------------------------------------------------


class AuthError(Exception):  # the SDK's names: the feed classifies vendor errors by class name
    pass


class TokenError(AuthError):
    pass


class ShioajiValueError(ValueError):
    pass


class ShioajiConnectionError(ConnectionError):
    pass


class ShioajiTimeoutError(TimeoutError):
    pass


class SubscribeError(Exception):
    pass


def wall(h: int, m: int, s: int = 0, us: int = 0) -> dt.datetime:
    """A naive Taiwan wall-clock time on 2024-05-02, as the SDK gives it."""
    return dt.datetime(2024, 5, 2, h, m, s, us)


def fake_tick(code="2330", at=None, close="782", volume=5, tick_type=1, simtrade=False,
              intraday_odd=False) -> SimpleNamespace:  # fmt: skip
    """An object with ``TickSTKv1``'s attribute names and runtime types."""
    return SimpleNamespace(
        code=code, datetime=at or wall(9, 0, 1, 123456), close=Decimal(close), volume=volume,
        tick_type=tick_type, simtrade=simtrade, intraday_odd=intraday_odd, open=Decimal(close),
        high=Decimal(close), low=Decimal(close), total_volume=volume, suspend=False,
    )  # fmt: skip


def fake_bidask(code="2330", bid="781", ask="782", simtrade=False) -> SimpleNamespace:
    """An object with ``BidAskSTKv1``'s attribute names (5 levels of Decimal prices)."""
    return SimpleNamespace(
        code=code, datetime=wall(9, 0, 1), bid_price=[Decimal(bid)] + [Decimal("780")] * 4,
        ask_price=[Decimal(ask)] + [Decimal("783")] * 4, bid_volume=[1] * 5, ask_volume=[1] * 5,
        simtrade=simtrade, intraday_odd=False, suspend=False,
    )  # fmt: skip


class FakeShioaji:
    """The SDK's sync client, as far as the feed uses it. Like the real one it refuses
    everything but ``set_event_callback`` before login, and it calls the callbacks from a real
    ``threading.Thread`` (``emit``)."""

    def __init__(self, login_error: Exception | None = None, known=("2330", "2317")):
        self.login_error = login_error
        self.known = set(known)
        self.calls: list[str] = []
        self.login_kwargs: dict = {}
        self.logged_in = False
        self.logouts = 0
        self.subscriptions: list[tuple[str, str, str]] = []
        self.unsubscriptions: list[tuple[str, str, str]] = []
        self.on_tick = self.on_bidask = self.on_event = None
        self.callback_threads: set[int] = set()
        self.subscribe_error: Exception | None = None

    def _auth(self, name: str) -> None:
        self.calls.append(name)
        if not self.logged_in:
            raise AuthError("Not authenticated")

    def set_event_callback(self, callback) -> None:
        self.calls.append("set_event_callback")
        self.on_event = callback

    def login(self, api_key, secret_key, subscribe_trade=True, receive_window=30000,
              force_refresh=False):  # fmt: skip
        self.calls.append("login")
        self.login_kwargs = {"api_key": api_key, "secret_key": secret_key,
                             "subscribe_trade": subscribe_trade}  # fmt: skip
        if self.login_error is not None:
            raise self.login_error
        self.logged_in = True
        return []

    @property
    def contracts(self):
        self._auth("contracts")
        return SimpleNamespace(get=lambda code: self._contract(code))

    def _contract(self, code: str):
        return SimpleNamespace(code=code, exchange="TSE") if code in self.known else None

    def set_on_tick_stk_v1_callback(self, callback, bind=False) -> None:
        self._auth("set_on_tick_stk_v1_callback")
        self.on_tick = callback

    def set_on_bidask_stk_v1_callback(self, callback, bind=False) -> None:
        self._auth("set_on_bidask_stk_v1_callback")
        self.on_bidask = callback

    def subscribe(self, contract, quote_type="tick", intraday_odd=False, version=None) -> None:
        self._auth("subscribe")
        if self.subscribe_error is not None:
            raise self.subscribe_error
        self.subscriptions.append((contract.code, quote_type, version))

    def unsubscribe(self, contract, quote_type="tick", intraday_odd=False, version=None) -> None:
        self._auth("unsubscribe")
        self.unsubscriptions.append((contract.code, quote_type, version))

    def logout(self) -> None:
        self._auth("logout")
        self.logged_in = False
        self.logouts += 1

    def emit(self, *messages) -> None:
        """Deliver messages from a native-like thread, in order: a ``BidAskSTKv1``-like
        object, a tick, or ``("event", code, event_name)``."""

        def deliver() -> None:
            self.callback_threads.add(threading.get_ident())
            for msg in messages:
                if isinstance(msg, tuple):
                    self.on_event(0, msg[1], f"host 'fake', event {msg[1]}", msg[2])
                elif hasattr(msg, "bid_price"):
                    self.on_bidask(msg)
                else:
                    self.on_tick(msg)

        thread = threading.Thread(target=deliver)
        thread.start()
        thread.join()


class Factory:
    """Builds one ``FakeShioaji`` per connection; the first ones fail login with ``errors``."""

    def __init__(self, *errors: Exception, known=("2330", "2317")):
        self.errors = list(errors)
        self.known = known
        self.apis: list[FakeShioaji] = []

    def __call__(self) -> FakeShioaji:
        api = FakeShioaji(self.errors.pop(0) if self.errors else None, self.known)
        self.apis.append(api)
        return api


class CheckedQueue(FeedQueue):
    """A FeedQueue that records which threads put on it: only the loop's thread may."""

    def __init__(self):
        super().__init__()
        self.put_threads: set[int] = set()

    def put_nowait(self, item) -> bool:
        self.put_threads.add(threading.get_ident())
        return super().put_nowait(item)


def make_feed(factory: Factory, symbols=("2330", "2317"), **kw) -> ShioajiFeed:
    kw.setdefault("clock", ManualClock())
    kw.setdefault("backoff", Backoff(base=1.0, factor=2.0, cap=60.0, jitter=0.0))
    return ShioajiFeed(list(symbols), api_factory=factory, env=ENV, **kw)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 4 * TIMEOUT))


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def next_item(out: FeedQueue):
    return await asyncio.wait_for(out.get(), TIMEOUT)


async def started(
    feed: ShioajiFeed, factory: Factory, n_api: int = 1, n_subs: int = 4, connects: int = 1
) -> FakeShioaji:
    """Client ``n_api`` once it subscribed ``n_subs`` times and the feed's ``connects``-th
    session is streaming."""
    await until(lambda: len(factory.apis) >= n_api, f"client #{n_api}")
    api = factory.apis[n_api - 1]
    await until(lambda: len(api.subscriptions) >= n_subs, f"{n_subs} subscriptions")
    await until(lambda: feed.reconnector.connects >= connects, f"connection #{connects}")
    return api


async def stop(task: asyncio.Task, out: FeedQueue) -> None:
    out.stop.set()
    await asyncio.wait_for(task, TIMEOUT)


def ts(h: int, m: int, s: int = 0, us: int = 0) -> dt.datetime:
    """The UTC instant of a Taipei wall-clock time on 2024-05-02 (Taipei is UTC+8)."""
    return dt.datetime(2024, 5, 2, h - 8, m, s, us, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------


def test_tick_row_converts_time_units_side_and_quote():
    quotes = {"2330": (781.0, 782.0)}
    row = tick_row(fake_tick(close="782.5", volume=5, tick_type=1), quotes)
    assert row == (ts(9, 0, 1, 123456), "2330", 782.5, 5000, 1, 781.0, 782.0, False)
    assert list(TICK_SCHEMA) == ["ts", "symbol", "price", "volume", "side", "bid", "ask",
                                 "simtrade"]  # fmt: skip
    assert type(row[2]) is float and row[0].utcoffset() == dt.timedelta(0)
    # seller-initiated, unknown side, no quote yet for the symbol
    assert tick_row(fake_tick(code="2317", tick_type=2), quotes)[3:7] == (5000, -1, None, None)
    assert tick_row(fake_tick(tick_type=0), quotes)[4] == 0
    # intraday odd-lot ticks count shares already
    assert tick_row(fake_tick(volume=300, intraday_odd=True), quotes)[3] == 300
    # a trial-match print passes through, flagged
    assert tick_row(fake_tick(simtrade=True), quotes)[7] is True
    # Taipei → UTC crosses the date boundary before 08:00
    assert to_utc(wall(7, 59, 59)) == dt.datetime(2024, 5, 1, 23, 59, 59, tzinfo=UTC)


def test_best_quote_zero_or_empty_means_no_quote():
    assert best_quote(fake_bidask(bid="781.5", ask="782")) == (781.5, 782.0)
    assert best_quote(fake_bidask(bid="0", ask="782")) == (None, 782.0)
    assert best_quote(SimpleNamespace(bid_price=[], ask_price=[Decimal("0")])) == (None, None)


def test_rows_fit_the_tick_schema():
    rows = [tick_row(fake_tick(), {"2330": (781.0, None)}), tick_row(fake_tick(code="2317"), {})]
    frame = pl.DataFrame(rows, schema=TICK_SCHEMA, orient="row")
    assert frame.schema == TICK_SCHEMA
    assert frame["ts"].to_list() == [ts(9, 0, 1, 123456)] * 2
    assert frame["volume"].to_list() == [5000, 5000]
    assert frame["bid"].to_list() == [781.0, None] and frame["ask"].to_list() == [None, None]


# --------------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------------


def test_ticks_from_the_sdk_thread_arrive_in_order_with_quotes():
    factory = Factory()
    feed = make_feed(factory)

    async def main():
        out = CheckedQueue()
        task = asyncio.create_task(feed.run(out))
        api = await started(feed, factory)
        api.emit(
            fake_bidask("2330", bid="781", ask="782"),
            fake_tick("2330", at=wall(9, 0, 1), close="782", volume=5, tick_type=1),
            fake_tick("2317", at=wall(9, 0, 2), close="140.5", volume=12, tick_type=2),
            fake_bidask("2330", bid="0", ask="783"),  # bid side emptied
            fake_bidask("2330", bid="1", ask="1", simtrade=True),  # not executable: ignored
            fake_tick("2330", at=wall(9, 0, 3), close="783", volume=1, tick_type=0),
            fake_tick("2330", at=wall(13, 25, 10), close="784", volume=2, simtrade=True),
        )
        items = [await next_item(out) for _ in range(4)]
        await stop(task, out)
        return api, out, items

    api, out, items = run(main())
    assert all(isinstance(i, Ticks) and len(i) == 1 for i in items)
    assert [i.frame[0] for i in items] == [
        (ts(9, 0, 1), "2330", 782.0, 5000, 1, 781.0, 782.0, False),
        (ts(9, 0, 2), "2317", 140.5, 12000, -1, None, None, False),
        (ts(9, 0, 3), "2330", 783.0, 1000, 0, None, 783.0, False),
        (ts(13, 25, 10), "2330", 784.0, 2000, 1, None, 783.0, True),  # passed on, flagged
    ]
    assert out.empty() and feed.ticks == 4 and feed.unconvertible == 0
    # a foreign thread delivered them; only the loop's thread put them on the queue
    assert api.callback_threads and threading.get_ident() not in api.callback_threads
    assert out.put_threads == {threading.get_ident()}
    assert feed.quotes == {"2330": (None, 783.0)}
    # ticks and bid/ask of every symbol, after login; unsubscribed and logged out at stop
    subs = [("2330", "tick", "v1"), ("2330", "bidask", "v1"),
            ("2317", "tick", "v1"), ("2317", "bidask", "v1")]  # fmt: skip
    assert api.subscriptions == subs and api.unsubscriptions == subs
    assert api.logouts == 1 and not api.logged_in
    assert feed.reconnector is not None and feed.reconnector.gaps == []


def test_only_quote_apis_are_touched_and_callbacks_registered_after_login():
    factory = Factory()
    feed = make_feed(factory, symbols=["2330"])

    async def main():
        out = CheckedQueue()
        task = asyncio.create_task(feed.run(out))
        await started(feed, factory, n_subs=2)
        await stop(task, out)

    run(main())
    (api,) = factory.apis
    # the fake raises AuthError for anything but set_event_callback before login: none was
    # raised, and the call order shows it
    assert api.calls[:2] == ["set_event_callback", "login"]
    assert set(api.calls) <= QUOTE_API  # no order, account or trade-report API
    assert api.login_kwargs == {"api_key": API_KEY, "secret_key": SECRET, "subscribe_trade": False}


def test_a_malformed_vendor_tick_is_counted_not_raised_into_the_sdk_thread():
    factory = Factory()
    feed = make_feed(factory, symbols=["2330"])

    async def main():
        out = CheckedQueue()
        task = asyncio.create_task(feed.run(out))
        api = await started(feed, factory, n_subs=2)
        api.emit(SimpleNamespace(code="2330", datetime=None), fake_tick(at=wall(9, 1)))
        item = await next_item(out)
        await stop(task, out)
        return item

    item = run(main())
    assert item.frame == [(ts(9, 1), "2330", 782.0, 5000, 1, None, None, False)]
    assert feed.unconvertible == 1 and feed.ticks == 1


# --------------------------------------------------------------------------------------------
# session events, gaps, reconnects
# --------------------------------------------------------------------------------------------


def test_down_reconnecting_reconnected_records_a_gap_and_resubscribes():
    factory = Factory()
    clock = ManualClock()
    feed = make_feed(factory, clock=clock, relogin_after=None)

    async def main():
        out = CheckedQueue()
        task = asyncio.create_task(feed.run(out))
        api = await started(feed, factory)
        api.emit(("event", 1, "Session down"))
        await until(lambda: feed.is_down, "the down event")
        clock.advance(7.5)
        api.emit(("event", 12, "Session reconnecting"), ("event", 2, "Connect failed"))
        clock.advance(2.5)
        api.emit(("event", 13, "Session reconnected"))
        gap = await next_item(out)
        api.emit(fake_tick(at=wall(9, 5)))
        after = await next_item(out)
        await stop(task, out)
        return api, gap, after, out.put_threads

    api, gap, after, put_threads = run(main())
    assert put_threads == {threading.get_ident()}  # the gap too was put from the loop's thread
    assert gap == Gap("shioaji", clock.start, clock.start + dt.timedelta(seconds=10),
                      "session down (event 1); session reconnecting (event 12)")  # fmt: skip
    assert gap.seconds == 10.0
    assert len(api.subscriptions) == 8 and api.subscriptions[4:] == api.subscriptions[:4]
    assert feed.resubscribes == 1 and feed.connect_failures == 1 and not feed.is_down
    assert after.frame[0][:2] == (ts(9, 5), "2330")
    assert len(factory.apis) == 1 and clock.sleeps == []  # the SDK reconnected by itself


def test_session_down_without_reconnect_logs_in_again():
    factory = Factory()
    clock = ManualClock()
    feed = make_feed(factory, clock=clock, relogin_after=5.0)

    async def main():
        out = CheckedQueue()
        task = asyncio.create_task(feed.run(out))
        first = await started(feed, factory)
        first.emit(("event", 1, "Session down"))
        second = await started(feed, factory, n_api=2, connects=2)
        gap = await next_item(out)
        first.emit(("event", 12, "Session reconnecting"))  # the old client: ignored
        await asyncio.sleep(0.01)
        down_after_stale_event = feed.is_down
        second.emit(fake_tick(at=wall(9, 7)))
        tick = await next_item(out)
        await stop(task, out)
        return first, second, gap, down_after_stale_event, tick

    first, second, gap, stale_down, tick = run(main())
    assert clock.sleeps == [5.0, 1.0]  # the grace for the SDK's reconnect, then backoff
    assert (gap.start, gap.end) == (clock.start, clock.start + dt.timedelta(seconds=6))
    assert gap.cause.startswith("session down (event 1); SessionLost: session down and not")
    assert first.logouts == 1 and len(first.unsubscriptions) == 4
    assert len(second.subscriptions) == 4 and not stale_down
    assert tick.frame[0][0] == ts(9, 7)


def test_a_failed_resubscribe_after_reconnect_logs_in_again():
    factory = Factory()
    clock = ManualClock()
    feed = make_feed(factory, clock=clock)

    async def main():
        out = CheckedQueue()
        task = asyncio.create_task(feed.run(out))
        first = await started(feed, factory)
        first.subscribe_error = SubscribeError("topic rejected")
        first.emit(("event", 12, "Session reconnecting"), ("event", 13, "Session reconnected"))
        second = await started(feed, factory, n_api=2, connects=2)
        gap = await next_item(out)
        await stop(task, out)
        return first, second, gap

    first, second, gap = run(main())
    assert feed.resubscribes == 1 and first.logouts == 1 and len(second.subscriptions) == 4
    assert gap.cause == (
        "session reconnecting (event 12); SessionLost: resubscribe after reconnect failed "
        "(2330 SubscribeError: topic rejected)"
    )
    assert clock.sleeps == [1.0] and gap.seconds == 1.0


def test_stop_while_reconnecting_closes_the_gap():
    factory = Factory()
    clock = ManualClock()
    feed = make_feed(factory, clock=clock)

    async def main():
        out = CheckedQueue()
        task = asyncio.create_task(feed.run(out))
        api = await started(feed, factory)
        api.emit(("event", 12, "Session reconnecting"))
        await until(lambda: feed.is_down, "the reconnecting event")
        clock.advance(3.0)
        await stop(task, out)
        return api, out.get_nowait(), out.get_nowait()

    api, gap, nothing = run(main())
    assert gap == Gap("shioaji", clock.start, clock.start + dt.timedelta(seconds=3),
                      "session reconnecting (event 12)")  # fmt: skip
    assert nothing is None and api.logouts == 1


def test_login_connection_failures_are_retried_with_backoff():
    factory = Factory(
        ShioajiConnectionError(f"solace connect failed (key {SECRET})"),
        ShioajiTimeoutError("login timed out"),
        ShioajiConnectionError("solace connect failed"),
    )
    clock = ManualClock()
    feed = make_feed(factory, clock=clock)

    async def main():
        out = CheckedQueue()
        task = asyncio.create_task(feed.run(out))
        await started(feed, factory, n_api=4)
        gap = await next_item(out)
        await stop(task, out)
        return gap

    gap = run(main())
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert (gap.start, gap.end) == (clock.start, clock.start + dt.timedelta(seconds=7))
    assert "SessionLost: login failed (ShioajiConnectionError: solace connect failed" in gap.cause
    assert "ShioajiTimeoutError: login timed out" in gap.cause
    assert SECRET not in gap.cause and "***" in gap.cause
    assert [a.logged_in for a in factory.apis] == [False, False, False, False]  # all logged out
    assert len(factory.apis[3].unsubscriptions) == 4


def test_login_gives_up_after_max_attempts():
    factory = Factory(*[ShioajiConnectionError("down")] * 3)
    clock = ManualClock()
    feed = make_feed(factory, clock=clock, max_attempts=3)
    with pytest.raises(FeedError, match="gave up after 3 failed reconnect attempts"):
        run(feed.run(FeedQueue()))
    assert clock.sleeps == [1.0, 2.0] and len(factory.apis) == 3


def test_backoff_jitter_is_applied_to_login_retries():
    rng_seed = 11
    factory = Factory(ShioajiConnectionError("down"), ShioajiConnectionError("down"))
    clock = ManualClock()
    feed = make_feed(factory, clock=clock, backoff=Backoff(rng=random.Random(rng_seed)))

    async def main():
        out = CheckedQueue()
        task = asyncio.create_task(feed.run(out))
        await started(feed, factory, n_api=3)
        await stop(task, out)

    run(main())
    expected = Backoff(rng=random.Random(rng_seed))
    assert clock.sleeps == [expected.next_delay(), expected.next_delay()]
    assert 0.25 <= clock.sleeps[0] <= 0.5 and 0.5 <= clock.sleeps[1] <= 1.0


@pytest.mark.parametrize(
    "error",
    [
        AuthError(f"login failed: invalid secret {SECRET}"),
        TokenError("401 token invalid"),
        ShioajiValueError("login validation error: api_key must be at least 10 characters"),
    ],
)
def test_a_refused_key_is_not_retried(error):
    factory = Factory(error)
    clock = ManualClock()
    feed = make_feed(factory, clock=clock)
    with pytest.raises(FeedError) as info:
        run(feed.run(FeedQueue()))
    message = str(info.value)
    assert f"login refused ({type(error).__name__}" in message
    assert "SJ_API_KEY and SJ_SEC_KEY" in message and "\n" not in message
    assert SECRET not in message and API_KEY not in message
    assert clock.sleeps == [] and len(factory.apis) == 1


def test_a_missing_sdk_is_a_feed_error_not_a_retry():
    def factory():
        raise ModuleNotFoundError("No module named 'shioaji'")

    clock = ManualClock()
    feed = ShioajiFeed(["2330"], api_factory=factory, env=ENV, clock=clock)
    with pytest.raises(FeedError, match=r"cannot import the SDK .*pip install"):
        run(feed.run(FeedQueue()))
    assert clock.sleeps == []


def test_an_unknown_symbol_is_a_feed_error_naming_it():
    factory = Factory(known=("2330",))
    feed = make_feed(factory, symbols=["2330", "9999"])
    with pytest.raises(FeedError, match="no contract for symbol '9999'"):
        run(feed.run(FeedQueue()))
    (api,) = factory.apis
    assert api.subscriptions == [] and api.logouts == 1


# --------------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SJ_API_KEY": API_KEY}, "SJ_SEC_KEY not set"),
        ({"SJ_API_KEY": API_KEY, "SJ_SEC_KEY": "  "}, "SJ_SEC_KEY not set"),
        ({"SJ_SEC_KEY": SECRET}, "SJ_API_KEY not set"),
        ({}, "SJ_API_KEY and SJ_SEC_KEY not set"),
    ],
)
def test_a_missing_key_is_a_feed_error_naming_it(env, named):
    with pytest.raises(FeedError) as info:
        ShioajiFeed(["2330"], api_factory=Factory(), env=env)
    message = str(info.value)
    assert named in message and "export" in message and "\n" not in message
    assert API_KEY not in message and SECRET not in message


def test_keys_are_read_from_os_environ_by_default_and_never_shown(monkeypatch):
    monkeypatch.setenv("SJ_API_KEY", API_KEY)
    monkeypatch.setenv("SJ_SEC_KEY", SECRET)
    feed = ShioajiFeed(["2330"], api_factory=Factory())
    for text in (repr(feed), str(feed), repr(vars(feed))):
        assert SECRET not in text and API_KEY not in text
    assert repr(feed) == "ShioajiFeed(symbols=['2330'], simulation=False)"


# --------------------------------------------------------------------------------------------
# the real SDK
# --------------------------------------------------------------------------------------------


def test_the_module_imports_without_shioaji():
    code = "import sys, realtime_sidecar.feeds.shioaji; print('shioaji' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert result.stdout.strip() == "False"


@pytest.fixture
def sj(tmp_path, monkeypatch):
    monkeypatch.setenv("SJ_HOME_PATH", str(tmp_path / "sj_home"))
    monkeypatch.setenv("SJ_LOG_PATH", str(tmp_path / "shioaji.log"))
    return pytest.importorskip("shioaji")


def test_contract_real_tick_and_bidask_objects(sj):
    tick = sj.TickSTKv1.from_msgpack(
        msgpack.packb(
            ["2330", "2024/05/02", "09:00:01.123456",
             "780", "781.5", "782", "783", "779",
             "3910000", "120000000", 5, 1500,
             2, 2, "7", 90,
             800, 700, 300, 280,
             0, "", "", "", "", 0, "",
             False, False]
        )
    )  # fmt: skip
    bidask = sj.BidAskSTKv1.from_msgpack(
        msgpack.packb(
            ["2330", "2024/05/02", "09:00:01.100000",
             ["781", "780.5", "780", "779.5", "779"], [10, 20, 30, 40, 50], [0] * 5,
             ["0", "0", "0", "0", "0"], [0] * 5, [0] * 5,
             False, False]
        )
    )  # fmt: skip
    assert isinstance(tick.close, Decimal) and tick.datetime.tzinfo is None
    assert best_quote(bidask) == (781.0, None)
    row = tick_row(tick, {"2330": best_quote(bidask)})
    assert row == (ts(9, 0, 1, 123456), "2330", 782.0, 5000, -1, 781.0, None, False)


@pytest.mark.parametrize(
    ("name", "retried"),
    [
        ("AuthError", False),
        ("TokenError", False),
        ("ShioajiValueError", False),
        ("ShioajiConnectionError", True),
        ("ShioajiTimeoutError", True),
        ("SystemMaintenance", True),
    ],
)
def test_contract_real_sdk_exceptions_are_classified(sj, name, retried):
    error = getattr(sj, name)(f"from the SDK, key {SECRET}")
    factory = Factory(error)
    clock = ManualClock()
    feed = make_feed(factory, clock=clock, symbols=["2330"])

    async def main():
        out = FeedQueue()
        task = asyncio.create_task(feed.run(out))
        await started(feed, factory, n_api=2, n_subs=2)
        gap = await next_item(out)
        await stop(task, out)
        return gap

    if retried:
        gap = run(main())
        assert f"login failed ({name}: from the SDK, key ***)" in gap.cause
        assert clock.sleeps == [1.0]
    else:
        with pytest.raises(FeedError, match=rf"login refused \({name}: from the SDK, key \*\*\*\)"):
            run(feed.run(FeedQueue()))
        assert clock.sleeps == []


def test_contract_default_factory_uses_the_sdk_client_and_enums(sj, monkeypatch):
    """The default factory builds ``shioaji.Shioaji(simulation=...)`` (replaced here: the real
    client reaches for the network when constructed) and subscribes with the SDK's enums."""
    built: list[tuple[bool, FakeShioaji]] = []

    def client(simulation=None):
        built.append((simulation, FakeShioaji()))
        return built[-1][1]

    monkeypatch.setattr(sj, "Shioaji", client)
    feed = ShioajiFeed(["2330"], env=ENV, clock=ManualClock(), simulation=True)

    async def main():
        out = FeedQueue()
        task = asyncio.create_task(feed.run(out))
        await until(lambda: feed.reconnector and feed.reconnector.connects, "the connection")
        await stop(task, out)

    run(main())
    ((simulation, api),) = built
    assert simulation is True
    assert api.subscriptions == [
        ("2330", sj.QuoteType.Tick, sj.QuoteVersion.v1),
        ("2330", sj.QuoteType.BidAsk, sj.QuoteVersion.v1),
    ]
