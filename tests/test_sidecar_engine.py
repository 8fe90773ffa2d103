"""The sidecar engine end to end in one process: replay → journal → gate → RCNC/signals →
warehouse and report at the close; a live run closing on its clock with gaps and stale ticks;
the status endpoint; the command line's errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import urllib.error
import urllib.request

import polars as pl
import pytest

from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.domain.warehouse.db import open_warehouse
from quant_genesis_dagster.errors import QGError
from realtime_sidecar.engine import Sidecar, _SilenceCheck
from realtime_sidecar.feeds.base import PROXY_SCHEMA, FeedQueue, Gap, ManualClock, Proxies, Ticks
from realtime_sidecar.feeds.replay import ReplayFeed, sample_session
from realtime_sidecar.journal import Journal
from realtime_sidecar.session import SessionState
from realtime_sidecar.status import StatusServer, prometheus_text
from realtime_sidecar.ticks import TICK_SCHEMA, TickGate

SESSION = dt.date(2024, 5, 2)


@pytest.fixture(scope="module")
def ticks() -> pl.DataFrame:
    return sample_session(SESSION, seed=11, n_symbols=20)


def _symbols(ticks: pl.DataFrame) -> list[str]:
    return sorted(ticks["symbol"].unique().to_list())


def test_replay_to_the_close_writes_eod_and_signals_and_reports_once(ticks, tmp_path):
    engine = open_warehouse(None, tmp_path)
    reports: list[tuple[dt.date, pl.DataFrame]] = []
    seen: list[pl.DataFrame] = []
    sidecar = Sidecar(
        SESSION, _symbols(ticks), ReplayFeed(ticks, chunk=500),
        journal=Journal(tmp_path / "j.qgj"), warehouse=engine,
        report=lambda s, eod: reports.append((s, eod)) or "ok", on_signal=seen.append,
    )  # fmt: skip
    summary = asyncio.run(sidecar.run())
    assert summary.complete and summary.accepted == ticks.height and summary.dropped == 0
    # the same numbers as the pure state fed in one batch
    gate, state = TickGate(SESSION, _symbols(ticks)), SessionState(SESSION, _symbols(ticks))
    state.update(gate.admit(ticks)[0])
    stored = io.read_slice(engine, models.IntradayEod, SESSION, SESSION)
    assert stored.drop("session").equals(state.eod().drop("session"))
    assert summary.eod_rows == stored.height == len(_symbols(ticks))
    signals = io.read_slice(engine, models.IntradaySignals, SESSION, SESSION)
    assert signals.height == state.all_signals().height == sum(summary.signals.values()) > 0
    assert pl.concat(seen).height == signals.height  # the callback saw each signal once
    assert [s for s, _ in reports] == [SESSION] and reports[0][1].height == stored.height
    assert summary.report == "ok"
    p = summary.latency_percentiles()
    assert 0 < p["p50_ms"] <= p["p99_ms"] <= p["max_ms"]


class _GatedClock(ManualClock):
    """A manual clock whose sleepers wait until the feed has played its part."""

    def __init__(self, start: dt.datetime):
        super().__init__(start=start)
        self.gate: asyncio.Event | None = None

    async def sleep(self, seconds: float) -> None:
        self.gate = self.gate or asyncio.Event()
        await self.gate.wait()
        await super().sleep(seconds)


async def _drained(out: FeedQueue) -> None:
    while not out.empty():
        await asyncio.sleep(0)
    await asyncio.sleep(0)


class _LiveFeed:
    """A live feed: some ticks, a 90 s gap, ticks (one stale on arrival), 11 quiet minutes (and
    the engine's silence check — put here, where the manual clock's order is known), silence
    until stop."""

    name = "fake-live"

    def __init__(self, rows: list[tuple], clock: _GatedClock):
        self.rows, self.clock = rows, clock

    async def run(self, out: FeedQueue) -> None:
        if self.rows:
            await out.put(Ticks(self.rows[:2], received=self.clock.monotonic()))
            await _drained(out)
            start = self.clock.now()
            self.clock.advance(90)
            await out.put(Gap(self.name, start, self.clock.now(), "ConnectionResetError: drop"))
            await out.put(Ticks(self.rows[2:], received=self.clock.monotonic()))
            await _drained(out)
            self.clock.advance(660)  # 11 quiet minutes: the live silence check reports both
            await out.put(_SilenceCheck(self.clock.now()))
            await _drained(out)
        self.clock.gate = self.clock.gate or asyncio.Event()
        self.clock.gate.set()  # now the close may come
        await out.stop.wait()


def test_a_live_run_closes_on_its_clock_with_gaps_and_stale_ticks(tmp_path):
    t0 = dt.datetime(2024, 5, 2, 2, 0, tzinfo=dt.UTC)  # 10:00 Taipei
    clock = _GatedClock(t0)
    rows = [
        (t0 - dt.timedelta(seconds=1), "2330", 600.0, 60_000, 1, 599.0, 600.0, False),
        (t0 - dt.timedelta(seconds=5), "2317", 150.0, 60_000, -1, 150.0, 150.5, False),
        # arrives 90 s later, timestamped before the gap: stale against the clock
        (t0, "2330", 601.0, 1_000, 1, 600.0, 601.0, False),
        (t0 + dt.timedelta(seconds=89), "2330", 602.0, 60_000, 1, 601.0, 602.0, False),
    ]
    path = tmp_path / "live.qgj"
    sidecar = Sidecar(SESSION, ["2317", "2330"], _LiveFeed(rows, clock),
                      journal=Journal(path), clock=clock, live=True)  # fmt: skip
    summary = asyncio.run(asyncio.wait_for(sidecar.run(), 10))
    assert summary.complete  # the close timer stopped the feed at 13:33 Taipei
    assert clock.now() >= sidecar.close_at
    assert summary.rejected == {"stale": 1} and summary.accepted == 3
    assert [g.cause for g in summary.gaps] == ["ConnectionResetError: drop"]
    assert summary.gaps[0].seconds == 90
    assert sidecar.state.rcnc() == {"2317": 150.0, "2330": 601.0}
    quiet = sidecar.state.all_signals().filter(pl.col("reason").str.contains("no trade for"))
    assert sorted(quiet["symbol"]) == ["2317", "2330"]  # the clock's silence check, once each
    # the journal kept the clock readings: a restart rejects the same tick as stale
    clock.gate = None
    again = Sidecar(SESSION, ["2317", "2330"], _LiveFeed([], clock),
                    journal=Journal(path), clock=clock, live=True)  # fmt: skip
    summary2 = asyncio.run(asyncio.wait_for(again.run(), 10))
    assert summary2.rejected == {"stale": 1} and summary2.accepted == 3
    assert (
        again.state.all_signals()
        .head(quiet.height + 3)
        .equals(sidecar.state.all_signals().head(quiet.height + 3))
    )
    assert [g.cause for g in summary2.gaps] == ["ConnectionResetError: drop", "sidecar restart"]


def test_a_journal_of_another_universe_is_refused(ticks, tmp_path):
    path = tmp_path / "j.qgj"
    asyncio.run(Sidecar(SESSION, _symbols(ticks), ReplayFeed(ticks), journal=Journal(path)).run())
    other = Sidecar(SESSION, _symbols(ticks)[:5], ReplayFeed(ticks), journal=Journal(path))
    with pytest.raises(QGError, match="belongs to another run"):
        asyncio.run(other.run())


def test_a_failing_signal_callback_does_not_stop_the_session(ticks):
    def boom(_):
        raise RuntimeError("subscriber bug")

    summary = asyncio.run(
        Sidecar(SESSION, _symbols(ticks), ReplayFeed(ticks), on_signal=boom).run()
    )
    assert summary.complete and summary.accepted == ticks.height


def test_status_endpoint_serves_prometheus_text_and_health_on_localhost(ticks):
    sidecar = Sidecar(SESSION, [*_symbols(ticks), "9999"], ReplayFeed(
        pl.concat([ticks, ticks.head(3)])))  # three duplicates at the end  # fmt: skip

    async def scenario():
        server = StatusServer(sidecar.status)
        port = await server.start()
        assert server.host == "127.0.0.1"
        await sidecar.run()

        def get(path):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.headers["Content-Type"], r.read().decode()

        try:
            metrics = await asyncio.to_thread(get, "/metrics")
            health = await asyncio.to_thread(get, "/health")
            with pytest.raises(urllib.error.HTTPError, match="404"):
                await asyncio.to_thread(get, "/nope")
        finally:
            await server.close()
        return metrics, health

    (ctype, text), (_, health) = asyncio.run(scenario())
    assert ctype.startswith("text/plain; version=0.0.4")
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert samples["qg_sidecar_ticks_accepted_total"] == str(ticks.height)
    assert samples['qg_sidecar_ticks_rejected_total{reason="out_of_order"}'] == "3"
    assert samples['qg_sidecar_ticks_rejected_total{reason="stale"}'] == "0"
    some = _symbols(ticks)[0]
    assert float(samples[f'qg_sidecar_rcnc{{symbol="{some}"}}']) == pytest.approx(
        sidecar.state.rcnc()[some]
    )
    assert 'qg_sidecar_rcnc{symbol="9999"}' not in samples  # no RCNC without ticks
    assert json.loads(health)["status"] == "ok"
    assert prometheus_text(sidecar.status()).endswith("\n")


def test_ticks_as_row_tuples_are_processed_like_frames(ticks):
    rows = ticks.head(200).rows()
    feed_rows = Sidecar(SESSION, _symbols(ticks), _Rows(rows))
    asyncio.run(feed_rows.run())
    feed_frame = Sidecar(SESSION, _symbols(ticks), ReplayFeed(pl.DataFrame(rows, TICK_SCHEMA,
                                                                           orient="row")))  # fmt: skip
    asyncio.run(feed_frame.run())
    assert feed_rows.state.eod().equals(feed_frame.state.eod())


class _Rows:
    name = "rows"

    def __init__(self, rows):
        self.rows = rows

    async def run(self, out: FeedQueue) -> None:
        for row in self.rows:  # one tick per hand-over, as a vendor callback would
            await out.put(Ticks([row]))


def test_the_command_line_names_missing_keys_and_bad_sessions(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "QG_HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "realtime_sidecar", "--feed", "shioaji", "--symbol-list", "2330",
         "--session", "2024-05-02", "--no-warehouse"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert "SJ_API_KEY" in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "realtime_sidecar", "--session", "2024-05-04", "--no-warehouse"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "2024-05-04" in run.stderr and "trading" in run.stderr


class _Proxies:
    """US proxy prints: TSM falls 2% within 20 minutes."""

    name = "proxies"

    async def run(self, out: FeedQueue) -> None:
        start = dt.datetime(2024, 5, 2, 1, 0, tzinfo=dt.UTC)
        for minute, price in ((0, 100.0), (10, 99.0), (20, 98.0), (25, 97.5)):
            frame = pl.DataFrame(
                {"ts": [start + dt.timedelta(minutes=minute)], "symbol": ["TSM"],
                 "price": [price], "size": [100], "kind": ["trade"]},
                schema=PROXY_SCHEMA,
            )  # fmt: skip
            await out.put(Proxies(frame))


def test_cross_market_proxies_raise_risk_off_and_survive_a_restart(ticks, tmp_path):
    path = tmp_path / "j.qgj"
    first = Sidecar(SESSION, _symbols(ticks), ReplayFeed(ticks.head(100)),
                    proxy_feed=_Proxies(), journal=Journal(path))  # fmt: skip
    asyncio.run(first.run())
    risk = first.state.all_signals().filter(pl.col("kind") == "risk_off")
    assert risk["symbol"].to_list() == ["TSM"] and risk["value"][0] == pytest.approx(-0.02)
    again = Sidecar(SESSION, _symbols(ticks), ReplayFeed(ticks.head(100)), journal=Journal(path))
    asyncio.run(again.run())
    assert again.state.all_signals().equals(first.state.all_signals())


def test_quant_genesis_sidecar_is_the_same_command(tmp_path, monkeypatch, capsys):
    from quant_genesis_dagster import cli

    monkeypatch.setenv("QG_HOME", str(tmp_path))
    assert cli.main(["sidecar", "paths"]) == 0
    assert str(tmp_path / "sidecar" / "journal") in capsys.readouterr().out
