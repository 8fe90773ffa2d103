"""The feed machinery every adapter shares: the bounded queue (backpressure, drops counted,
thread hand-off in order), the reconnect loop's backoff (flapping vs stable connections) and the
replay feed's pacing."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading

import polars as pl
import pytest

from realtime_sidecar.feeds.base import (
    Backoff,
    FeedError,
    FeedQueue,
    Gap,
    ManualClock,
    Reconnector,
    Ticks,
)
from realtime_sidecar.feeds.replay import ReplayFeed, sample_session


def test_the_queue_holds_back_a_fast_feed_and_counts_what_a_callback_thread_loses():
    async def scenario():
        q = FeedQueue(max_ticks=10)
        await q.put(Ticks([("x",)] * 8))
        await asyncio.wait_for(q.put(Ticks([("y",)] * 5)), 1)  # below the bound: taken (13)
        waiting = asyncio.create_task(q.put(Ticks([("z",)])))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # full: the replay waits, nothing is lost
        assert q.put_nowait(Ticks([("w",)])) is False and q.dropped == 1
        await q.get()
        await asyncio.wait_for(waiting, 1)
        assert q.held == 5 + 1
        now = dt.datetime(2024, 5, 2, tzinfo=dt.UTC)
        await asyncio.wait_for(q.put(Gap("f", now, now, "x")), 1)  # a gap takes no room
        return q

    assert asyncio.run(scenario()).held == 6


def test_ticks_handed_over_from_threads_arrive_in_order_on_the_loop():
    async def scenario():
        q = FeedQueue()
        q.bind_loop()
        loop_thread = threading.get_ident()
        seen_threads = set()
        real = q.put_nowait

        def spy(item):
            seen_threads.add(threading.get_ident())
            return real(item)

        q.put_nowait = spy  # type: ignore[method-assign]

        def vendor():
            for i in range(5000):
                q.put_threadsafe(Ticks([(i,)]))

        t = threading.Thread(target=vendor)
        t.start()
        got = []
        while len(got) < 5000:
            got.append((await asyncio.wait_for(q.get(), 5)).frame[0][0])
        t.join()
        return got, seen_threads, loop_thread

    got, threads, loop_thread = asyncio.run(scenario())
    assert got == list(range(5000))
    assert threads == {loop_thread}


def _flapping(clock: ManualClock, up_s: float, drops: int):
    """A session that connects, stays up ``up_s`` seconds, then drops — ``drops`` times."""
    state = {"n": 0}

    async def session(connected):
        state["n"] += 1
        connected()
        clock.advance(up_s)
        if state["n"] > drops:
            return
        raise ConnectionResetError("peer reset")

    return session


@pytest.mark.parametrize(("up_s", "grows"), [(0.1, True), (60.0, False)])
def test_backoff_grows_for_a_flapping_server_and_restarts_after_a_stable_connection(up_s, grows):
    clock = ManualClock()
    rec = Reconnector(
        "f", clock=clock, backoff=Backoff(base=1, factor=2, cap=30, jitter=0, rng=random.Random(0))
    )
    asyncio.run(rec.run(_flapping(clock, up_s, drops=4)))
    assert clock.sleeps == ([1, 2, 4, 8] if grows else [1, 1, 1, 1])
    assert len(rec.gaps) == 4 and all(
        g.cause == "ConnectionResetError: peer reset" for g in rec.gaps
    )


def test_reconnect_gives_up_after_max_attempts_with_a_clear_message():
    clock = ManualClock()

    async def refused(connected):
        raise ConnectionRefusedError("connection refused")

    rec = Reconnector("polygon", clock=clock, max_attempts=3, backoff=Backoff(jitter=0))
    with pytest.raises(FeedError, match="polygon: gave up after 3 failed reconnect attempts"):
        asyncio.run(rec.run(refused))
    assert clock.sleeps == [0.5, 1.0]


def test_replay_paces_by_exchange_time():
    ticks = sample_session(dt.date(2024, 5, 2), seed=3, n_symbols=12).head(300)
    clock = ManualClock()
    feed = ReplayFeed(ticks, speed=600.0, clock=clock)

    async def scenario():
        q = FeedQueue()
        await feed.run(q)
        items = []
        while (item := q.get_nowait()) is not None:
            items.append(item)
        return items

    items = asyncio.run(scenario())
    assert sum(len(i) for i in items) == 300 and items[-1].cursor == 300
    span = (ticks["ts"].max() - ticks["ts"].min()).total_seconds()
    assert clock.elapsed == pytest.approx(span / 600.0, abs=0.01)  # x600: real time / 600
    # every batch was handed over no earlier than its first tick was due
    first = ticks["ts"][0]
    for item in items:
        due = (item.frame["ts"][0] - first).total_seconds() / 600.0
        assert item.received == pytest.approx(due, abs=1e-9)
    assert pl.concat([i.frame for i in items]).equals(ticks)
