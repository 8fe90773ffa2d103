"""The sidecar's session state: incremental RCNC equals the whole-session computation for any
split into micro-batches (property-based), and so do the signals and the end-of-day aggregates;
each signal fires on the condition SPEC §7.4 describes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quant_genesis_dagster.domain import market
from quant_genesis_dagster.domain.sample import SampleMarket, SampleMarketConfig
from realtime_sidecar.config import IntradaySettings
from realtime_sidecar.session import SIGNAL_SCHEMA, SessionState, reference_rcnc
from realtime_sidecar.ticks import TICK_SCHEMA, TickGate

SESSION = dt.date(2024, 5, 2)


@pytest.fixture(scope="module")
def ticks() -> pl.DataFrame:
    market = SampleMarket(SampleMarketConfig(seed=5, n_symbols=15))
    return market.ticks(SESSION).drop("is_big").with_columns(simtrade=False)


def _run(ticks: pl.DataFrame, cuts: list[int], settings: IntradaySettings | None = None):
    symbols = sorted(ticks["symbol"].unique().to_list())
    gate, state = TickGate(SESSION, symbols), SessionState(SESSION, symbols, settings)
    lines = []
    bounds = [0, *sorted(set(cuts)), ticks.height]
    for a, b in zip(bounds, bounds[1:], strict=False):
        accepted, _ = gate.admit(ticks.slice(a, b - a))
        state.update(accepted)
        lines.append(state.last_rcnc)
    return state, np.concatenate(lines)


@pytest.fixture(scope="module")
def whole(ticks):
    return _run(ticks, [])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_incremental_rcnc_equals_the_whole_session_for_any_split(ticks, whole, data):
    cuts = data.draw(st.lists(st.integers(1, ticks.height - 1), max_size=30))
    state, lines = _run(ticks, cuts)
    ref_state, ref_lines = whole
    # the carried integer state makes every split bit-identical to one batch ...
    np.testing.assert_array_equal(lines, ref_lines)
    assert state.eod().equals(ref_state.eod())
    assert state.all_signals().equals(ref_state.all_signals())
    # ... and that equals SPEC §7.2 computed over the whole session at once
    np.testing.assert_allclose(lines, reference_rcnc(ticks), rtol=1e-9, equal_nan=True)


def test_the_sample_session_raises_signals_and_aggregates(whole, ticks):
    state, lines = whole
    eod = state.eod()
    assert eod.height == ticks["symbol"].n_unique()
    assert eod["tick_count"].sum() == ticks.height
    big = ticks.filter(pl.col("volume") >= 50_000)
    assert eod["big_buy_volume"].sum() == big.filter(pl.col("side") > 0)["volume"].sum()
    assert eod["big_sell_volume"].sum() == big.filter(pl.col("side") < 0)["volume"].sum()
    last = ticks.group_by("symbol").agg(pl.col("price").last()).sort("symbol")
    assert eod["close"].to_list() == last["price"].to_list()
    kinds = set(state.all_signals()["kind"])
    assert {"accumulation", "break", "sweep"} <= kinds


# --------------------------------------------------------------------------- crafted sessions


def _at(minute: float) -> dt.datetime:
    """SESSION 09:00 Taipei + minutes, UTC."""
    return dt.datetime(2024, 5, 2, 1, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)


def _t(minute, price, lots, side, bid=None, ask=None, symbol="2330"):
    tick = float(market.tick_size(price - 1e-6))
    return {
        "ts": _at(minute), "symbol": symbol, "price": price, "volume": lots * 1000,
        "side": side, "bid": bid if bid is not None else price - tick,
        "ask": ask if ask is not None else price, "simtrade": False,
    }  # fmt: skip


def _feed(rows, settings=None, references=None, symbols=("2330",)):
    gate = TickGate(SESSION, list(symbols))
    state = SessionState(SESSION, list(symbols), settings, references)
    accepted, rejected = gate.admit(pl.DataFrame(rows, schema=TICK_SCHEMA))
    assert rejected.height == 0
    return state, state.update(accepted)


def test_rcnc_and_slope_drive_accumulation_and_break():
    rows = [
        _t(0.0, 600.0, 60, +1),  # RCNC 600
        _t(0.5, 600.0, 1, -1),  # small: no flow
        _t(1.2, 604.0, 60, +1),  # RCNC 602, up 2 since minute 0 closed at 600; price above
        _t(1.4, 605.0, 1, +1),  # still accumulating: no second signal
        _t(2.1, 590.0, 100, -1),  # net 20 lots: RCNC (600·60 + 604·60 − 590·100) / 20 = 662
        _t(3.3, 580.0, 60, -1),  # net −40: RCNC (13240 − 580·60) / −40 = 539
    ]
    state, sig = _feed(rows)
    acc = sig.filter(pl.col("kind") == "accumulation")
    assert acc["ts"].to_list() == [_at(1.2)]
    assert acc["rcnc"].to_list() == [602.0] and acc["value"].to_list() == [2.0]
    assert state.last_rcnc.tolist() == [600.0, 600.0, 602.0, 602.0, 662.0, 539.0]
    assert sig.filter(pl.col("kind") == "break").height == 0  # 580 > 539: not below the line
    # a net seller selling lower and lower: price below a falling RCNC on big sells
    rows = [
        _t(0.0, 600.0, 60, -1),  # RCNC 600 (net −60)
        _t(1.2, 596.0, 60, -1),  # RCNC 598, down 2 since minute 0; price below → break
        _t(1.5, 595.0, 60, -1),  # still breaking: no second signal
    ]
    state, sig = _feed(rows)
    brk = sig.filter(pl.col("kind") == "break")
    assert brk["ts"].to_list() == [_at(1.2)]
    assert brk["rcnc"].to_list() == [598.0] and brk["value"].to_list() == [-2.0]
    assert "big sell of 60 lots" in brk["reason"][0]
    # "falling faster": a slowing fall is no break, a renewed acceleration is a new one
    rows = [
        _t(0.0, 600.0, 60, -1),  # RCNC 600
        _t(1.0, 590.0, 60, -1),  # RCNC 595: −5 → break
        _t(2.0, 594.0, 60, -1),  # RCNC 594.67: −0.33, slower than −5 → not a break
        _t(3.0, 580.0, 60, -1),  # RCNC 591: −3.67, faster than −0.33 → break again
    ]
    _, sig = _feed(rows)
    brk = sig.filter(pl.col("kind") == "break")
    assert brk["ts"].to_list() == [_at(1.0), _at(3.0)]
    assert brk["value"].to_list() == pytest.approx([-5.0, 591.0 - 1784 / 3])


def test_sweep_fires_on_each_upward_crossing_of_100_lots_in_3_minutes():
    rows = [
        _t(0.0, 100.0, 60, +1),
        _t(1.0, 100.5, 50, +1),  # 110 lots within 3 min → sweep
        _t(2.0, 101.0, 60, +1),  # still above: no new signal
        _t(6.0, 101.0, 60, +1),  # window holds 60 only
        _t(6.5, 101.5, 40, -1),  # a sell: not counted
        _t(7.0, 102.0, 50, +1),  # 110 again → a second crossing
    ]
    _, sig = _feed(rows)
    sweep = sig.filter(pl.col("kind") == "sweep")
    assert sweep["ts"].to_list() == [_at(1.0), _at(7.0)]
    assert sweep["value"].to_list() == [110.0, 110.0]
    assert "P2" in sweep["reason"][0]


def test_liquidity_alerts_spread_limit_and_silence():
    rows = [
        _t(0.0, 200.0, 1, +1),
        _t(1.0, 200.0, 1, +1, bid=199.0, ask=200.0),  # 2 ticks of 0.5: not wide
        _t(2.0, 200.0, 1, +1, bid=197.5, ask=200.0),  # 5 ticks → spread_wide
        _t(3.0, 220.0, 1, +1),  # limit-up of 200 × 1.1
        _t(15.0, 219.0, 1, -1),  # 12 min of silence
    ]
    _, sig = _feed(rows, references={"2330": 200.0})
    got = {k: v for k, v in sig.select("kind", "ts").iter_rows()}
    assert got == {"spread_wide": _at(2.0), "limit_locked": _at(3.0), "liquidity_dry": _at(15.0)}
    dry = sig.filter(pl.col("kind") == "liquidity_dry")
    assert dry["value"].to_list() == [12.0]


def test_cross_market_risk_off_on_a_1_5_pct_drop_within_30_minutes():
    state = SessionState(SESSION, ["2330"])
    start = dt.datetime(2024, 5, 2, 1, 0, tzinfo=dt.UTC)
    prints = pl.DataFrame(
        {
            "ts": [start + dt.timedelta(minutes=m) for m in (0, 10, 20, 35, 40, 41)],
            "symbol": ["TSM"] * 6,
            "price": [100.0, 99.5, 98.6, 98.0, 97.0, -1.0],
            "size": [100] * 6,
            "kind": ["trade"] * 6,
        }
    )
    sig = state.update_proxies(prints)
    # 09:20 is −1.4% (no); 09:35 vs 09:00's 100 (last print at or before 09:05) → −2.0%
    assert sig["ts"].to_list() == [start + dt.timedelta(minutes=35)]
    assert sig["value"][0] == pytest.approx(-0.02)
    assert sig.schema == SIGNAL_SCHEMA and state.proxy_rejected == 1


def test_eod_aggregates_by_hand():
    rows = [
        _t(0.0, 100.0, 60, +1, bid=99.5, ask=100.0),  # RCNC 100 (minute 0 closes at 100)
        _t(1.0, 102.0, 60, +1, bid=101.5, ask=102.0),  # RCNC 101 (minute 1 open at the close)
        _t(1.5, 101.0, 10, -1, bid=101.0, ask=102.0),
    ]
    state, _ = _feed(rows)
    eod = state.eod().row(0, named=True)
    assert eod["rcnc_close"] == 101.0 and eod["close"] == 101.0
    assert eod["rcnc_vol"] == pytest.approx(np.std([100.0, 101.0]) / 100.5)
    assert eod["sweep_ratio"] == pytest.approx(120 / 130)
    assert eod["big_buy_volume"] == 120_000 and eod["big_sell_volume"] == 0
    spreads = [0.5 / 99.75, 0.5 / 101.75, 1.0 / 101.5]
    assert eod["liquidity_pressure"] == pytest.approx(np.median(spreads))
    assert eod["tick_count"] == 3


def test_per_symbol_big_order_threshold_and_all_ticks_mode():
    rows = [_t(0.0, 100.0, 20, +1), _t(1.0, 110.0, 20, +1)]
    state, _ = _feed(rows, IntradaySettings(big_lots_by_symbol={"2330": 10}))
    assert state.last_rcnc.tolist() == [100.0, 105.0]
    state, _ = _feed(rows)  # default 50 lots: no big orders
    assert np.isnan(state.last_rcnc).all()
    state, _ = _feed([*rows, _t(2.0, 120.0, 1, -1)], IntradaySettings(net_mode="all"))
    assert state.last_rcnc[-1] == pytest.approx((2000 + 2200 - 120) / 39)


def test_live_silence_check_fires_once_per_silence():
    rows = [_t(0.0, 200.0, 1, +1), _t(5.0, 100.0, 1, +1, symbol="2317")]
    state, _ = _feed(rows, symbols=("2317", "2330"))
    got = state.check_silence(_at(12.0))
    assert got["symbol"].to_list() == ["2330"] and got["value"].to_list() == [12.0]
    assert got["reason"][0] == "liquidity drying up: no trade for 12.0 min"
    assert state.check_silence(_at(13.0)).height == 0  # still the same silence
    gate = TickGate(SESSION, ["2317", "2330"])
    gate.admit(pl.DataFrame(rows, schema=TICK_SCHEMA))
    again = gate.admit(pl.DataFrame([_t(14.0, 201.0, 1, +1)], schema=TICK_SCHEMA))[0]
    resumed = state.update(again)  # the first trade after 14 min says so too
    assert resumed["kind"].to_list() == ["liquidity_dry"] and resumed["value"][0] == 14.0
    later = state.check_silence(_at(30.0))
    assert later["symbol"].to_list() == ["2317", "2330"] and later["value"].to_list() == [
        25.0,
        16.0,
    ]
    assert state.check_silence(dt.datetime(2024, 5, 2, 5, 26, tzinfo=dt.UTC)).height == 0
