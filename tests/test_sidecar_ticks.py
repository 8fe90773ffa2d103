"""The sidecar's tick gate: every kind of bad tick is rejected with its reason and counted, and
any split of a stream into batches accepts and rejects the same ticks."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from quant_genesis_dagster.domain.sample import SampleMarket, SampleMarketConfig
from realtime_sidecar.ticks import REJECT_REASONS, TICK_SCHEMA, TickGate

SESSION = dt.date(2024, 5, 2)
UTC = dt.UTC


def _ts(h: int, m: int, s: int = 0, us: int = 0) -> dt.datetime:
    """A Taipei wall-clock time of SESSION, in UTC."""
    return dt.datetime(2024, 5, 2, h - 8, m, s, us, tzinfo=UTC)


def _tick(ts, symbol="2330", price=600.0, volume=1000, side=1, simtrade=False) -> dict:
    return {"ts": ts, "symbol": symbol, "price": price, "volume": volume, "side": side,
            "bid": 599.0, "ask": 600.0, "simtrade": simtrade}  # fmt: skip


# (tick, the reason it must be rejected with, or None for accepted) in arrival order
CORPUS = [
    (_tick(_ts(9, 0, 1)), None),
    (_tick(_ts(9, 0, 2), price=0.0), "non_positive_price"),
    (_tick(_ts(9, 0, 2), price=-5.0), "non_positive_price"),
    (_tick(_ts(9, 0, 2), price=float("inf")), "non_positive_price"),
    (_tick(_ts(9, 0, 2), volume=0), "non_positive_volume"),
    (_tick(_ts(9, 0, 2), volume=-1000), "non_positive_volume"),
    (_tick(_ts(9, 0, 2), price=float("nan")), "missing_value"),
    (_tick(_ts(9, 0, 2), volume=None), "missing_value"),
    (_tick(None), "missing_value"),
    (_tick(_ts(9, 0, 2), symbol="9999"), "unknown_symbol"),
    (_tick(_ts(8, 59, 59)), "outside_session"),
    (_tick(_ts(13, 30, 0, 1)), "outside_session"),
    (_tick(_ts(8, 45), simtrade=True), "trial_match"),
    (_tick(_ts(9, 0, 3)), None),
    (_tick(_ts(9, 0, 3)), "duplicate"),
    (_tick(_ts(9, 0, 3), volume=2000), None),  # same instant, another print
    (_tick(_ts(9, 0, 2, 500)), "out_of_order"),
    (_tick(_ts(9, 0, 2), symbol="2317"), None),  # other symbols keep their own order
    (_tick(_ts(13, 30)), None),  # the closing auction
]


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TICK_SCHEMA)


def test_every_kind_of_bad_tick_is_rejected_with_its_reason_and_counted():
    gate = TickGate(SESSION, ["2330", "2317"])
    accepted, rejected = gate.admit(_frame([t for t, _ in CORPUS]))
    expected = [r for _, r in CORPUS if r is not None]
    assert rejected["reason"].to_list() == expected
    assert set(expected) == set(REJECT_REASONS) - {"stale"}
    assert accepted.height == sum(r is None for _, r in CORPUS) == gate.accepted
    assert dict(gate.rejected) == {r: expected.count(r) for r in set(expected)}
    assert accepted.columns == [*TICK_SCHEMA, "sym"]


def test_stale_ticks_are_rejected_only_against_a_clock():
    gate = TickGate(SESSION, ["2330"], max_lag=dt.timedelta(seconds=5))
    now = _ts(10, 0, 10)
    batch = _frame([_tick(_ts(10, 0, 4)), _tick(_ts(10, 0, 6))])
    accepted, rejected = gate.admit(batch, now=now)
    assert rejected["reason"].to_list() == ["stale"] and accepted.height == 1
    replay = TickGate(SESSION, ["2330"])
    assert replay.admit(batch)[0].height == 2  # a replay passes no clock


@pytest.mark.parametrize("sizes", [[1], [3], [7, 1, 100], [2, 5]])
def test_any_split_into_batches_accepts_and_rejects_the_same_ticks(sizes):
    market = SampleMarket(SampleMarketConfig(seed=3, n_symbols=12))
    ticks = market.ticks(SESSION).rename({"is_big": "simtrade"}).with_columns(simtrade=False)
    # re-sent and late ticks, as after a reconnect
    stream = pl.concat([ticks.head(200), ticks.slice(150, 80), ticks.slice(200, 300)])
    symbols = ticks["symbol"].unique().to_list()
    whole_gate = TickGate(SESSION, symbols)
    whole, whole_rejected = whole_gate.admit(stream)
    assert whole_gate.rejected["duplicate"] > 0
    gate, parts, i, k = TickGate(SESSION, symbols), [], 0, 0
    while i < stream.height:
        n = sizes[k % len(sizes)]
        parts.append(gate.admit(stream.slice(i, n))[0])
        i, k = i + n, k + 1
    assert pl.concat(parts).equals(whole)
    assert gate.rejected == whole_gate.rejected
    assert whole.height + whole_rejected.height == stream.height


def test_per_tick_clock_readings_equal_batch_by_batch_readings():
    """A restart replays many journaled batches in one call, each tick with its batch's reading."""
    ticks = [_tick(_ts(10, 0, s)) for s in (1, 2, 3, 4)]
    nows = [_ts(10, 0, 10), _ts(10, 0, 10), _ts(10, 1, 0), None]  # the third is stale by then
    one = TickGate(SESSION, ["2330"], max_lag=dt.timedelta(seconds=30))
    by_batch = [
        one.admit(_frame([t]), now=n)[1]["reason"].to_list()
        for t, n in zip(ticks, nows, strict=True)
    ]
    together = TickGate(SESSION, ["2330"], max_lag=dt.timedelta(seconds=30))
    stamps = np.array([-1 if n is None else int(n.timestamp() * 1e6) for n in nows])
    _, rejected = together.admit(_frame(ticks), now_us=stamps)
    assert [r for rs in by_batch for r in rs] == rejected["reason"].to_list() == ["stale"]
    assert together.rejected == one.rejected and together.accepted == one.accepted == 3
