"""The Polygon websocket feed against a real local websocket server speaking Polygon's protocol
(status connected → auth → subscribe → event frames), and its pure parser.

``FakePolygon`` checks what the client sends (the auth key, the exact subscribe params) and
records it per connection; each connection follows a script: frames to send, then how it ends
(``hold`` until the client closes, ``drop`` = abort the TCP connection without a close frame,
``close`` = a clean close by the server, ``reject`` = abort before the handshake). The frames are
written by hand in the documented wire format (CONNECTORS.md §2), not recorded from Polygon.
Every await is bounded by ``asyncio.wait_for``; backoff sleeps use ``ManualClock`` (no real
waiting), so the whole module runs in well under a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import polars as pl
import pytest
from websockets.asyncio.server import ServerConnection, serve

from realtime_sidecar.feeds.base import (
    PROXY_SCHEMA,
    Backoff,
    FeedError,
    FeedItem,
    FeedQueue,
    Gap,
    ManualClock,
    Proxies,
)
from realtime_sidecar.feeds.polygon import PolygonFeed, parse_messages

KEY = "pk_TEST_0123456789abcdef_SECRET"
ENV = {"POLYGON_API_KEY": KEY}
SYMBOLS = ["TSM", "soxx", "QQQ", "TSM"]  # normalized to TSM, SOXX, QQQ
PARAMS = "T.TSM,T.SOXX,T.QQQ,Q.TSM,Q.SOXX,Q.QQQ"
T0 = 1_714_657_800_123  # ms since the epoch: 2024-05-02 13:50:00.123 UTC
UTC = dt.UTC
TIMEOUT = 5.0  # seconds, for every wait in a test


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, UTC)


def _trade(sym: str, p: float, s: int, t: int) -> dict:
    return {"ev": "T", "sym": sym, "x": 4, "i": "52983525029461", "z": 1, "p": p, "s": s,
            "c": [12, 37], "t": t, "q": 1063}  # fmt: skip


def _quote(sym: str, bp: float, ap: float, t: int) -> dict:
    return {"ev": "Q", "sym": sym, "bx": 11, "bp": bp, "bs": 2, "ax": 12, "ap": ap, "as": 3,
            "c": 1, "i": [604], "t": t, "z": 1, "q": 77}  # fmt: skip


# connection 1: two frames with four events, a status event, a non-JSON frame and a bad trade
FRAMES_A: list = [
    [_trade("TSM", 171.25, 100, T0), _quote("TSM", 171.20, 171.30, T0 + 5)],
    [{"ev": "status", "status": "success", "message": "subscribed to: T.TSM"}],
    "garbage{",
    [_trade("SOXX", 230.5, 7, T0 + 10), {"ev": "T", "sym": "QQQ", "p": "x", "s": 1, "t": T0}],
    [_quote("QQQ", 440.0, 440.5, T0 + 20)],
]
ROWS_A = [
    (_utc(T0), "TSM", 171.25, 100, "trade"),
    (_utc(T0 + 5), "TSM", 171.25, 0, "quote"),
    (_utc(T0 + 10), "SOXX", 230.5, 7, "trade"),
    (_utc(T0 + 20), "QQQ", 440.25, 0, "quote"),
]
# connection 2 (after a reconnect)
FRAMES_B: list = [
    [_trade("TSM", 169.0, 300, T0 + 60_000), _quote("SOXX", 228.0, 229.0, T0 + 60_001)]
]
ROWS_B = [
    (_utc(T0 + 60_000), "TSM", 169.0, 300, "trade"),
    (_utc(T0 + 60_001), "SOXX", 228.5, 0, "quote"),
]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """websockets honours proxy variables; the local server must be reached directly."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


# --------------------------------------------------------------------------------------------
# the local Polygon server
# --------------------------------------------------------------------------------------------


@dataclass
class Conn:
    """What one client connection sent, and how it ended."""

    auth: dict | None = None
    subscribe: dict | None = None
    close_code: int | None = None


class FakePolygon:
    """Polygon's stocks websocket: ``scripts[n]`` = (frames, ending) for connection n (the last
    script repeats)."""

    def __init__(self, scripts: list[tuple[list, str]]):
        self.scripts = scripts
        self.conns: list[Conn] = []

    async def handler(self, ws: ServerConnection) -> None:
        conn = Conn()
        self.conns.append(conn)
        frames, ending = self.scripts[min(len(self.conns), len(self.scripts)) - 1]
        if ending == "reject":
            ws.transport.abort()
            return
        await ws.send(_status("connected", "Connected Successfully"))
        conn.auth = json.loads(await ws.recv())
        if conn.auth != {"action": "auth", "params": KEY}:
            # a hostile echo of what was sent: the client must not repeat it
            await ws.send(_status("auth_failed", f"authentication failed: {conn.auth['params']}"))
            await ws.close()
            return
        await ws.send(_status("auth_success", "authenticated"))
        conn.subscribe = json.loads(await ws.recv())
        if conn.subscribe != {"action": "subscribe", "params": PARAMS}:
            await ws.close(1008, "unexpected subscribe")
            return
        for frame in frames:
            await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
        if ending in ("drop", "close"):
            await (await ws.ping())  # the client has read every frame before the ending
        if ending == "drop":
            ws.transport.abort()  # no close frame: an abrupt drop
        elif ending == "close":
            await ws.close(1000, "maintenance")
        else:
            await ws.wait_closed()
        conn.close_code = ws.close_code


def _status(status: str, message: str) -> str:
    return json.dumps([{"ev": "status", "status": status, "message": message}])


@contextlib.asynccontextmanager
async def serving(fake: FakePolygon) -> AsyncIterator[str]:
    """Serve ``fake`` on 127.0.0.1 (a free port); yields the feed's ``host``."""
    server_log = logging.getLogger("tests.fake_polygon")  # it logs the auth frame it receives
    async with serve(fake.handler, "127.0.0.1", 0, logger=server_log) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"127.0.0.1:{port}"


def _feed(host: str, **kwargs) -> PolygonFeed:
    kwargs.setdefault("env", ENV)
    kwargs.setdefault("clock", ManualClock())
    return PolygonFeed(SYMBOLS, host=host, secure=False, handshake_timeout=TIMEOUT, **kwargs)


async def _items_until(out: FeedQueue, rows: int) -> list[FeedItem]:
    """Items from ``out`` until ``rows`` proxy rows have arrived."""
    items: list[FeedItem] = []
    while sum(len(i) for i in items if isinstance(i, Proxies)) < rows:
        items.append(await asyncio.wait_for(out.get(), TIMEOUT))
    return items


async def _stream(fake: FakePolygon, rows: int, **kwargs) -> tuple[PolygonFeed, list[FeedItem]]:
    """Run a feed against ``fake`` until ``rows`` rows arrived, then stop it (run must return)."""
    async with serving(fake) as host:
        feed = _feed(host, **kwargs)
        out = FeedQueue()
        task = asyncio.create_task(feed.run(out))
        try:
            items = await _items_until(out, rows)
        finally:
            out.stop.set()
            await asyncio.wait_for(task, TIMEOUT)
    return feed, items


def _rows(items: list[FeedItem]) -> list[tuple]:
    frames = [i.frame for i in items if isinstance(i, Proxies)]
    return pl.concat(frames).rows() if frames else []


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 2 * TIMEOUT))


# --------------------------------------------------------------------------------------------
# the parser
# --------------------------------------------------------------------------------------------


def test_parser_turns_trades_and_quotes_into_proxy_rows():
    msgs = [m for frame in FRAMES_A if isinstance(frame, list) for m in frame][:4]
    msgs.insert(2, {"ev": "status", "status": "success", "message": "subscribed to: Q.TSM"})
    msgs.insert(3, {"ev": "AM", "sym": "TSM", "o": 1.0, "t": T0})  # another event: ignored
    skipped: Counter[str] = Counter()
    frame = parse_messages(msgs, skipped)
    assert frame.schema == PROXY_SCHEMA
    assert frame.rows() == ROWS_A[:3]
    assert frame["ts"][0] == dt.datetime(2024, 5, 2, 13, 50, 0, 123_000, tzinfo=UTC)
    assert skipped == Counter()
    assert parse_messages([]).schema == PROXY_SCHEMA


def test_parser_skips_and_counts_malformed_messages_without_raising():
    good = _trade("TSM", 171.25, 100, T0)
    bad = [
        {k: v for k, v in good.items() if k != "p"},  # missing price
        {k: v for k, v in good.items() if k != "t"},  # missing timestamp
        {**good, "p": "171.25"},  # numeric string
        {**good, "p": True},  # a bool is not a number
        {**good, "p": float("nan")},
        {**good, "p": 0.0},
        {**good, "s": 10.5},  # fractional size
        {**good, "s": -1},
        {**good, "t": "2024-05-02"},
        {**good, "t": 0},  # 1970: not a real timestamp
        {**good, "sym": None},
        {k: v for k, v in _quote("TSM", 1.0, 2.0, T0).items() if k != "ap"},
        {**_quote("TSM", 1.0, 2.0, T0), "bp": float("inf")},
        "garbage",
        None,
        [good],
    ]
    one_sided = [_quote("TSM", 0.0, 171.3, T0), _quote("TSM", 171.2, -1.0, T0)]
    skipped: Counter[str] = Counter()
    frame = parse_messages([*bad, good, *one_sided, {**good, "s": 200.0}], skipped)
    assert skipped == Counter({"malformed": len(bad), "one_sided_quote": 2})
    assert frame.rows() == [
        (_utc(T0), "TSM", 171.25, 100, "trade"),
        (_utc(T0), "TSM", 171.25, 200, "trade"),
    ]


# --------------------------------------------------------------------------------------------
# the feed against the local server
# --------------------------------------------------------------------------------------------


def test_frames_arrive_as_proxy_rows_and_stop_closes_the_socket_cleanly():
    fake = FakePolygon([(FRAMES_A, "hold")])
    feed, items = _run(_stream(fake, rows=len(ROWS_A)))
    assert [type(i) for i in items] == [Proxies, Proxies, Proxies]  # one batch per data frame
    assert all(i.frame.schema == PROXY_SCHEMA for i in items)
    assert _rows(items) == ROWS_A
    assert feed.skipped == Counter({"malformed": 2})  # the non-JSON frame and the "p": "x" trade
    assert len(fake.conns) == 1
    assert fake.conns[0].auth == {"action": "auth", "params": KEY}
    assert fake.conns[0].subscribe == {"action": "subscribe", "params": PARAMS}
    assert fake.conns[0].close_code == 1000  # stop: a normal close, not an abort
    assert feed.reconnector.gaps == [] and feed.reconnector.connects == 1


def test_a_dropped_connection_reconnects_resubscribes_and_records_the_gap():
    clock = ManualClock()
    fake = FakePolygon([(FRAMES_A, "drop"), (FRAMES_B, "hold")])
    backoff = Backoff(rng=random.Random(7))
    feed, items = _run(_stream(fake, rows=len(ROWS_A) + len(ROWS_B), clock=clock, backoff=backoff))
    assert [type(i) for i in items] == [Proxies, Proxies, Proxies, Gap, Proxies]
    assert _rows(items) == ROWS_A + ROWS_B
    # re-authenticated and resubscribed with the same params on the second connection
    assert len(fake.conns) == 2
    for conn in fake.conns:
        assert conn.auth == {"action": "auth", "params": KEY}
        assert conn.subscribe == {"action": "subscribe", "params": PARAMS}
    # one backoff sleep: attempt 0 of Backoff(base 0.5 s, jitter 0.5) with the seeded draw
    expected = 0.5 * (1 - 0.5 * random.Random(7).random())
    assert clock.sleeps == [pytest.approx(expected)]
    assert 0.25 <= clock.sleeps[0] <= 0.5
    gap = items[3]
    assert gap.feed == "polygon"
    assert gap.start == ManualClock().start  # dropped at clock time 0
    assert gap.start <= gap.end and gap.seconds == pytest.approx(expected)
    assert gap.cause.startswith("ConnectionClosedError")
    assert feed.reconnector.gaps == [gap] and feed.reconnector.connects == 2


def test_a_clean_server_close_is_a_drop_too_unless_stopped():
    fake = FakePolygon([(FRAMES_A, "close"), (FRAMES_B, "hold")])
    feed, items = _run(_stream(fake, rows=len(ROWS_A) + len(ROWS_B)))
    assert _rows(items) == ROWS_A + ROWS_B
    (gap,) = [i for i in items if isinstance(i, Gap)]
    assert gap.cause == "ConnectionDropped: server closed the connection (1000 maintenance)"
    assert [c.subscribe for c in fake.conns] == [{"action": "subscribe", "params": PARAMS}] * 2


def test_failed_reconnects_back_off_exponentially_with_jitter_then_give_up():
    async def scenario(clock: ManualClock) -> tuple[FakePolygon, str]:
        fake = FakePolygon([([], "reject")])
        async with serving(fake) as host:
            feed = _feed(host, clock=clock, backoff=Backoff(rng=random.Random(3)), max_attempts=4)
            with pytest.raises(FeedError) as err:
                await asyncio.wait_for(feed.run(FeedQueue()), TIMEOUT)
        return fake, str(err.value)

    clock = ManualClock()
    fake, message = _run(scenario(clock))
    assert len(fake.conns) == 4
    assert "gave up after 4 failed reconnect attempts" in message
    assert "ConnectionClosedError" in message
    # attempt k waits 0.5 s × 2**k × (1 − 0.5 u_k): three sleeps between four attempts
    rng = random.Random(3)
    nominal = [0.5, 1.0, 2.0]
    assert clock.sleeps == pytest.approx([d * (1 - 0.5 * rng.random()) for d in nominal])
    assert all(d / 2 <= s <= d for d, s in zip(nominal, clock.sleeps, strict=True))


def test_connection_refused_is_retried_then_gives_up():
    async def scenario(clock: ManualClock) -> str:
        async with serving(FakePolygon([([], "hold")])) as host:
            pass  # the port is free again: nothing listens on it
        feed = _feed(host, clock=clock, max_attempts=2)
        with pytest.raises(FeedError) as err:
            await asyncio.wait_for(feed.run(FeedQueue()), TIMEOUT)
        return str(err.value)

    clock = ManualClock()
    message = _run(scenario(clock))
    assert "gave up after 2 failed reconnect attempts" in message
    assert len(clock.sleeps) == 1 and 0.25 <= clock.sleeps[0] <= 0.5


def test_backoff_delays_follow_base_times_factor_to_the_k_capped_then_reset():
    exact = Backoff(base=1.0, factor=3.0, cap=10.0, jitter=0.0)
    assert [exact.next_delay() for _ in range(5)] == [1.0, 3.0, 9.0, 10.0, 10.0]
    exact.reset()
    assert exact.next_delay() == 1.0
    jittered = Backoff(base=0.5, factor=2.0, cap=30.0, jitter=0.5, rng=random.Random(11))
    for k in range(8):
        nominal = min(30.0, 0.5 * 2**k)
        assert nominal * 0.5 <= jittered.next_delay() <= nominal


def test_auth_failed_raises_feed_error_without_retrying_or_leaking_the_key():
    clock = ManualClock()
    wrong = "pk_WRONG_KEY_987654"

    async def scenario() -> str:
        fake = FakePolygon([(FRAMES_A, "hold")])
        async with serving(fake) as host:
            feed = _feed(host, env={"POLYGON_API_KEY": wrong}, clock=clock)
            with pytest.raises(FeedError) as err:
                await asyncio.wait_for(feed.run(FeedQueue()), TIMEOUT)
        assert len(fake.conns) == 1  # not retried
        assert fake.conns[0].subscribe is None
        return str(err.value)

    message = _run(scenario())
    assert "authentication failed" in message and "POLYGON_API_KEY" in message
    assert wrong not in message  # the server echoed the key; we do not
    assert "\n" not in message
    assert clock.sleeps == []


@pytest.mark.parametrize("env", [{}, {"POLYGON_API_KEY": "   "}, {"POLYGON_KEY": "pk_OTHER_1"}])
def test_a_missing_key_is_a_one_line_feed_error_naming_the_variable(env):
    with pytest.raises(FeedError) as err:
        PolygonFeed(["TSM"], env=env)
    message = str(err.value)
    assert "POLYGON_API_KEY" in message and "\n" not in message
    assert "pk_OTHER_1" not in message


def test_the_key_is_not_in_repr_nor_in_any_log_record(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)  # websockets then logs every frame it sends
    fake = FakePolygon([(FRAMES_A, "hold")])
    feed, _ = _run(_stream(fake, rows=len(ROWS_A)))
    assert KEY not in repr(feed)
    assert repr(feed) == (
        f"PolygonFeed(symbols=['TSM', 'SOXX', 'QQQ'], url='ws://{feed.url.split('//')[1]}')"
    )
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("tests.")]
    assert any('"action":"subscribe"' in m for m in ours)  # frames are logged at DEBUG …
    assert any("auth frame, not logged" in m for m in ours)  # … but not the auth frame
    assert not [m for m in ours if KEY in m]


@pytest.mark.parametrize("symbols", [[], ["TSM,QQQ"], ["T SM"], [""]])
def test_bad_symbols_are_refused(symbols):
    with pytest.raises(FeedError, match="polygon"):
        PolygonFeed(symbols, env=ENV)
