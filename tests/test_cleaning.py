"""Cleaning (SPEC §4): each fault kind is caught with the right reason/action, adjustment factors
and limit flags match hand-computed values, and cleaning is window-independent."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.cleaning import (
    CLEANED_PRICES_SCHEMA,
    QUARANTINE_SCHEMA,
    check_ohlc_consistent,
    check_positive_prices,
    clean_financials,
    clean_prices,
    clean_records,
    regulatory_deadline,
)
from quant_genesis_dagster.domain.tables import RAW_SCHEMAS
from quant_genesis_dagster.errors import QGError

D = dt.date
S = calendar.sessions(D(2024, 3, 1), D(2024, 5, 31))  # S[0] = 2024-03-01 (a Friday)
LISTED = D(2008, 1, 2)


# ------------------------------------------------------------------------------ factories


def make_bar(session: dt.date, close: float = 100.0, *, symbol: str = "2330", **kw) -> dict:
    """A consistent bar (open = high = low = close unless given)."""
    row = {
        "session": session,
        "symbol": symbol,
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "volume_shares": 10_000,
        "turnover_twd": close * 10_000,
        "trades": 10,
    }
    row.update(kw)
    return row


def make_info(
    symbol: str = "2330", listed_date: dt.date = LISTED, delisted_date: dt.date | None = None
) -> dict:
    return {
        "symbol": symbol,
        "name": symbol,
        "market": "TWSE",
        "industry": "Semis",
        "listed_date": listed_date,
        "delisted_date": delisted_date,
    }


def make_action(
    ex_date: dt.date,
    symbol: str = "2330",
    cash: float = 0.0,
    stock: float = 0.0,
    split: float = 1.0,
) -> dict:
    return {
        "session": ex_date,
        "symbol": symbol,
        "ex_date": ex_date,
        "cash_dividend": cash,
        "stock_dividend_ratio": stock,
        "split_ratio": split,
    }


def frame(rows: list[dict], table: str) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RAW_SCHEMAS[table])


def run(
    bars: list[dict],
    sessions: list[dt.date] | None = None,
    *,
    actions=(),
    infos=None,
    prior: pl.DataFrame | None = None,
):
    sessions = sessions or sorted({b["session"] for b in bars})
    return clean_prices(
        frame(bars, "daily_prices"),
        frame(list(actions), "corporate_actions"),
        frame(infos or [make_info()], "stock_info"),
        prior if prior is not None else pl.DataFrame(schema=CLEANED_PRICES_SCHEMA),
        sessions,
    )


def reasons(q: pl.DataFrame) -> list[tuple]:
    return sorted(q.select("session", "symbol", "reason", "action").iter_rows())


def closes(data: pl.DataFrame) -> dict[dt.date, float]:
    return dict(data.select("session", "close").iter_rows())


# ------------------------------------------------------------------------------ intrinsic faults


def test_exact_duplicate_keeps_one_copy_and_quarantines_the_extra():
    r = run([make_bar(S[0]), make_bar(S[1], 101.0), make_bar(S[1], 101.0)])
    assert r.data.height == 2 and closes(r.data)[S[1]] == 101.0
    assert reasons(r.quarantine) == [(S[1], "2330", "duplicate", "rejected")]
    assert r.quarantine.schema == QUARANTINE_SCHEMA
    detail = json.loads(r.quarantine["detail"][0])
    assert detail["row"]["close"] == 101.0 and detail["row"]["session"] == S[1].isoformat()


def test_conflicting_duplicates_are_all_rejected_and_next_day_uses_the_earlier_close():
    r = run(
        [
            make_bar(S[0]),
            make_bar(S[1], 101.0),
            make_bar(S[1], 102.0),
            make_bar(S[1], 102.0),
            make_bar(S[2], 103.0),
        ]
    )
    assert sorted(closes(r.data)) == [S[0], S[2]]
    assert reasons(r.quarantine) == [
        (S[1], "2330", "conflicting_duplicate", "rejected"),
        (S[1], "2330", "conflicting_duplicate", "rejected"),
        (S[1], "2330", "duplicate", "rejected"),
    ]
    assert r.data.filter(pl.col("session") == S[2])["prev_close"].item() == 100.0


@pytest.mark.parametrize(
    "bad",
    [
        {"high": 99.0},  # high < close
        {"low": 101.0},  # low > close
        {"open": 100.0, "close": 100.0, "high": 100.0, "low": 100.5},  # high < low
        {"open": 105.0, "high": 104.0, "low": 99.0},  # high < open
    ],
)
def test_ohlc_inconsistent_rows_are_rejected(bad):
    r = run([make_bar(S[0]), make_bar(S[1], **bad)])
    assert reasons(r.quarantine) == [(S[1], "2330", "ohlc_inconsistent", "rejected")]
    assert r.data["session"].to_list() == [S[0]]


@pytest.mark.parametrize(
    "bad",
    [
        {"close": 0.0, "low": 0.0},
        {"open": -1.0, "low": -1.0},
        {"high": None},
        {"close": float("nan")},
    ],
)
def test_non_positive_null_or_nan_prices_are_rejected(bad):
    r = run([make_bar(S[0]), make_bar(S[1], **bad)])
    assert reasons(r.quarantine) == [(S[1], "2330", "non_positive_price", "rejected")]


@pytest.mark.parametrize(
    "bad", [{"volume_shares": -1}, {"volume_shares": None}, {"turnover_twd": -5.0}, {"trades": -1}]
)
def test_negative_or_missing_volume_is_rejected(bad):
    r = run([make_bar(S[0]), make_bar(S[1], **bad)])
    assert reasons(r.quarantine) == [(S[1], "2330", "negative_volume", "rejected")]


def test_a_row_failing_several_checks_gets_one_row_with_the_first_reason():
    worst = make_bar(S[1], close=0.0, high=-1.0, low=5.0, volume_shares=-3)
    r = run([make_bar(S[0]), worst, dict(worst)])
    # the copy is a duplicate first; the kept copy's first failing check is the price
    assert reasons(r.quarantine) == [
        (S[1], "2330", "duplicate", "rejected"),
        (S[1], "2330", "non_positive_price", "rejected"),
    ]


def test_unknown_symbol_outside_listing_and_on_the_delisting_date():
    infos = [make_info("1101", listed_date=S[1], delisted_date=S[3])]
    bars = [make_bar(s, symbol="1101") for s in S[:4]] + [make_bar(S[0], symbol="9999")]
    r = run(bars, infos=infos)
    assert r.data["session"].to_list() == [S[1], S[2]]  # listed_date <= s < delisted_date
    assert reasons(r.quarantine) == [
        (S[0], "1101", "unknown_symbol", "rejected"),
        (S[0], "9999", "unknown_symbol", "rejected"),
        (S[3], "1101", "unknown_symbol", "rejected"),
    ]


def test_missing_session_is_flagged_once_with_null_symbol():
    r = run([make_bar(S[0]), make_bar(S[2])], sessions=S[:3])
    assert reasons(r.quarantine) == [(S[1], None, "missing_session", "flagged")]
    assert json.loads(r.quarantine["detail"][0]) == {"listed_symbols": 1}
    # nothing listed yet on those sessions: an empty day is not a gap
    r = run([], sessions=S[:3], infos=[make_info(listed_date=S[5])])
    assert r.quarantine.height == 0 and r.data.schema == CLEANED_PRICES_SCHEMA


# ------------------------------------------------------------------------------ limit breaches


def test_spike_is_rejected_and_next_day_is_compared_with_the_last_valid_close():
    r = run(
        [make_bar(S[0], close=100.0), make_bar(S[1], close=1000.0), make_bar(S[2], close=101.0)]
    )
    assert reasons(r.quarantine) == [(S[1], "2330", "limit_breach", "rejected")]
    detail = json.loads(r.quarantine["detail"][0])
    assert (detail["reference"], detail["reference_kind"]) == (100.0, "last_valid_close")
    assert r.data.filter(pl.col("session") == S[2])["prev_close"].item() == 100.0


def test_spike_on_a_first_bar_without_prior_is_caught_against_its_own_vwap():
    # turnover is untouched by the spike: vwap 100 vs prices of 1000
    spike = make_bar(S[0], close=1000.0, turnover_twd=1_000_000.0)
    r = run([spike] + [make_bar(s, close=100.0 + i) for i, s in enumerate(S[1:30])])
    assert reasons(r.quarantine) == [(S[0], "2330", "limit_breach", "rejected")]
    detail = json.loads(r.quarantine["detail"][0])
    assert (detail["reference"], detail["reference_kind"]) == (100.0, "vwap")
    assert r.data.height == 29 and r.data["prev_close"][0] is None


def test_consecutive_spikes_up_and_down_are_all_rejected():
    r = run(
        [
            make_bar(S[0], close=100.0),
            make_bar(S[1], close=1000.0),
            make_bar(S[2], close=1001.0),
            make_bar(S[3], close=102.0),
            make_bar(S[4], close=10.2),
            make_bar(S[5], close=103.0),
        ]
    )
    assert [x[0] for x in reasons(r.quarantine)] == [S[1], S[2], S[4]]
    assert closes(r.data) == {S[0]: 100.0, S[3]: 102.0, S[5]: 103.0}


def test_spike_on_the_first_session_is_caught_against_the_prior_close():
    prior = run([make_bar(S[0], close=100.0)]).data
    r = run([make_bar(S[1], close=1000.0), make_bar(S[2], close=99.0)], prior=prior)
    assert reasons(r.quarantine) == [(S[1], "2330", "limit_breach", "rejected")]
    assert r.data["prev_close"].to_list() == [100.0]


@pytest.mark.parametrize(
    ("kw", "rejected"),
    [
        # prev close 100, 10%: band [90 - 0.1, 110 + 0.5] (one tick at each edge)
        ({"close": 110.0, "high": 110.5}, False),
        ({"close": 110.0, "high": 111.0}, True),
        ({"close": 90.0, "low": 89.9}, False),
        ({"close": 90.0, "low": 89.8}, True),
    ],
)
def test_limit_band_is_the_daily_limit_plus_one_tick(kw, rejected):
    r = run([make_bar(S[0], close=100.0), make_bar(S[1], **kw)])
    assert (r.quarantine.height == 1) is rejected


@pytest.mark.parametrize(("day", "rejected"), [(D(2014, 3, 4), True), (D(2016, 3, 2), False)])
def test_limit_is_7_percent_before_june_2015(day, rejected):
    prev = calendar.shift_session(day, -1)
    r = run([make_bar(prev, close=100.0), make_bar(day, close=108.0)])
    assert (r.quarantine.height == 1) is rejected


def test_no_limit_in_the_first_five_sessions_after_listing():
    # listed on Saturday 2024-03-02: first session 2024-03-04 = S[1] has sessions_since_listing 0
    info = [make_info(listed_date=D(2024, 3, 2))]
    bars = [make_bar(S[i], close=100.0) for i in (1, 2, 3, 4)]
    bars += [make_bar(S[5], close=150.0), make_bar(S[6], close=300.0), make_bar(S[7], close=155.0)]
    r = run(bars, infos=info)
    assert r.data["sessions_since_listing"].to_list() == [0, 1, 2, 3, 4, 6]
    assert reasons(r.quarantine) == [(S[6], "2330", "limit_breach", "rejected")]
    day5 = r.data.filter(pl.col("session") == S[5])
    assert not day5["limit_up"].item()  # no limit, so not "at the limit" either


def test_sessions_since_listing_counts_weekdays_before_the_calendar_starts():
    # listed Monday 2009-12-28: five weekdays before the first calendar session 2010-01-04
    r = run(
        [make_bar(D(2010, 1, 4)), make_bar(D(2010, 1, 5), close=150.0)],
        infos=[make_info(listed_date=D(2009, 12, 28))],
    )
    assert r.data["sessions_since_listing"].to_list() == [5]
    assert reasons(r.quarantine) == [(D(2010, 1, 5), "2330", "limit_breach", "rejected")]


def test_a_lasting_level_shift_raises_instead_of_looping():
    bars = [make_bar(S[0], close=100.0)] + [make_bar(s, close=1000.0) for s in S[1:26]]
    with pytest.raises(QGError, match="2330.*did not settle|did not settle.*2330"):
        run(bars)


# ------------------------------------------------------------------------------ adjustment


def test_ex_date_reference_factor_and_adjusted_prices_by_hand():
    # prev close 100; cash 2 and 10% stock: reference (100 - 2) / 1.1, factor 0.98 / 1.1
    acts = [make_action(S[1], cash=2.0, stock=0.1)]
    r = run(
        [
            make_bar(S[0], close=100.0),
            make_bar(S[1], close=90.0),
            make_bar(S[2], close=91.0, turnover_twd=905_000.0),
        ],
        actions=acts,
    )
    rows = {x["session"]: x for x in r.data.iter_rows(named=True)}
    assert rows[S[0]]["adj_factor"] == 1.0 and not rows[S[0]]["is_ex_date"]
    assert rows[S[1]]["is_ex_date"] and not rows[S[2]]["is_ex_date"]
    assert rows[S[1]]["adj_factor"] == pytest.approx(0.98 / 1.1, rel=1e-12)
    assert rows[S[2]]["adj_factor"] == rows[S[1]]["adj_factor"]
    assert rows[S[1]]["close_adj"] == pytest.approx(9900 / 98, rel=1e-12)  # 90 * 1.1 / 0.98
    assert rows[S[2]]["vwap"] == 90.5
    assert rows[S[2]]["vwap_adj"] == pytest.approx(90.5 * 1.1 / 0.98, rel=1e-12)
    assert rows[S[1]]["prev_close"] == 100.0


def test_split_and_two_events_multiply():
    acts = [make_action(S[1], split=2.0), make_action(S[3], cash=5.0)]
    r = run(
        [
            make_bar(S[0], close=100.0),
            make_bar(S[1], close=51.0),
            make_bar(S[2], close=50.0),
            make_bar(S[3], close=46.0),
        ],
        actions=acts,
    )
    f = r.data["adj_factor"].to_list()
    assert f[:3] == [1.0, 0.5, 0.5]
    assert f[3] == pytest.approx(0.5 * 45 / 50, rel=1e-12)  # reference (50 - 5) / prev 50
    assert r.data["close_adj"][1] == pytest.approx(102.0)


def test_big_drop_on_ex_date_is_not_a_limit_breach_but_is_one_without_the_action():
    bars = [make_bar(S[0], close=100.0), make_bar(S[1], close=66.0)]
    assert run(bars, actions=[make_action(S[1], stock=0.5)]).quarantine.height == 0
    assert reasons(run(bars).quarantine) == [(S[1], "2330", "limit_breach", "rejected")]


def test_spike_on_an_ex_date_is_checked_against_the_reference_price():
    # reference (100 - 3) = 97: band [87.3 - 0.1, 106.7 + 0.5]
    acts = [make_action(S[1], cash=3.0)]
    r = run(
        [make_bar(S[0], close=100.0), make_bar(S[1], close=970.0), make_bar(S[2], close=98.0)],
        actions=acts,
    )
    assert reasons(r.quarantine) == [(S[1], "2330", "limit_breach", "rejected")]
    detail = json.loads(r.quarantine["detail"][0])
    assert (detail["reference"], detail["reference_kind"]) == (97.0, "ex_right_reference")
    # the ex-date bar was rejected, but the event still adjusts the next bar
    assert r.data["adj_factor"].to_list() == [1.0, 0.97]
    r = run([make_bar(S[0], close=100.0), make_bar(S[1], close=107.0)], actions=acts)
    assert r.quarantine.height == 0


@pytest.mark.parametrize(("resume", "rejected"), [(65.0, False), (73.4, False), (73.5, True)])
def test_bar_after_a_suspension_over_an_ex_date_uses_the_reference_band(resume, rejected):
    # 50% stock dividend on S1 while suspended: reference 100 / 1.5, band up to 73.33 + 0.1
    r = run(
        [make_bar(S[0], close=100.0), make_bar(S[2], close=resume)],
        sessions=[S[0], S[2]],
        actions=[make_action(S[1], stock=0.5)],
    )
    assert (r.quarantine.height == 1) is rejected
    if not rejected:
        last = r.data.row(1, named=True)
        assert last["adj_factor"] == pytest.approx(2 / 3, rel=1e-12)
        assert last["prev_close"] == 100.0 and not last["is_ex_date"]


def test_bar_after_a_suspension_over_two_ex_dates_is_not_band_checked():
    acts = [make_action(S[1], cash=1.0), make_action(S[2], stock=0.5)]
    r = run(
        [make_bar(S[0], close=100.0), make_bar(S[3], close=95.0)],
        sessions=[S[0], S[3]],
        actions=acts,
    )
    assert r.quarantine.height == 0
    assert r.data["adj_factor"][1] == pytest.approx(0.99 / 1.5, rel=1e-12)


def test_limit_flags_use_the_reference_price_on_ex_dates():
    # cash 3 on prev close 100: reference 97, up limit floor_tick(106.7) = 106.5
    acts = [make_action(S[1], cash=3.0)]
    r = run(
        [
            make_bar(S[0], close=100.0),
            make_bar(S[1], close=106.5),
            make_bar(S[2], close=117.0, low=106.5),
            make_bar(S[3], close=105.3, high=117.0),
        ],
        actions=acts,
    )
    flags = r.data.select("limit_up", "limit_down").rows()
    # S2: 106.5 * 1.1 = 117.15 → 117.0; S3: 117 * 0.9 = 105.3 exactly on the down limit
    assert flags == [(False, False), (True, False), (True, False), (False, True)]


def test_vwap_falls_back_to_close_without_volume():
    r = run(
        [
            make_bar(S[0], close=100.0, volume_shares=0, turnover_twd=0.0),
            make_bar(S[1], close=101.0, turnover_twd=1_005_000.0),
        ]
    )
    assert r.data["vwap"].to_list() == [100.0, 100.5]


# ------------------------------------------------------------------------------ window independence


def _messy_market() -> tuple[list[dict], list[dict], list[dict], list[dt.date]]:
    days = S[:14]
    infos = [
        make_info("A"),
        make_info("B"),
        make_info("C", listed_date=days[4]),
        make_info("D", delisted_date=days[9]),
    ]
    bars = []
    for sym, base in (("A", 100.0), ("B", 40.0), ("C", 20.0), ("D", 10.0)):
        for i, s in enumerate(days):
            close = base * (1 + 0.01 * ((i * 7) % 5 - 2))
            if sym == "B" and i >= 3:  # ex-rights 20% stock dividend on days[3]
                close /= 1.2
            if sym == "A" and i >= 11:  # cash 4 and 10% stock on days[11]
                close = (close - 4) / 1.1
            bars.append(make_bar(s, symbol=sym, close=round(close, 2)))
    bars = [b for b in bars if b["session"] != days[6]]  # a missing session
    bars = [b for b in bars if not (b["symbol"] == "B" and b["session"] in days[2:5])]
    bars.append(make_bar(days[1], 1000.0, symbol="A"))  # conflicting copy
    bars.append(dict(bars[20]))  # exact duplicate
    replace = {
        ("A", days[8]): make_bar(days[8], 1010.0, symbol="A"),  # spike
        ("B", days[10]): make_bar(days[10], -1.0, symbol="B"),
    }  # non-positive
    bars = [replace.get((b["symbol"], b["session"]), b) for b in bars]
    actions = [
        make_action(days[3], "B", stock=0.2),  # while B is suspended
        make_action(days[11], "A", cash=4.0),
        make_action(days[11], "A", stock=0.1),
    ]
    return bars, actions, infos, days


def test_cleaning_a_range_equals_cleaning_session_by_session():
    bars, actions, infos, days = _messy_market()
    whole = run(bars, days, actions=actions, infos=infos)
    kinds = set(whole.quarantine["reason"])
    assert kinds == {
        "missing_session",
        "duplicate",
        "conflicting_duplicate",
        "unknown_symbol",
        "limit_breach",
        "non_positive_price",
    }
    assert whole.data["adj_factor"].n_unique() == 3

    prior = pl.DataFrame(schema=CLEANED_PRICES_SCHEMA)
    parts, quarantines = [], []
    for s in days:
        r = run(
            [b for b in bars if b["session"] == s], [s], actions=actions, infos=infos, prior=prior
        )
        parts.append(r.data)
        quarantines.append(r.quarantine)
        prior = pl.concat([prior, r.data]).sort("session").unique("symbol", keep="last")
    stepwise = pl.concat(parts).sort("session", "symbol")
    assert_frame_equal(whole.data, stepwise, check_exact=True)
    assert_frame_equal(
        whole.quarantine,
        pl.concat(quarantines).sort(
            ["session", "table_name", "symbol", "reason", "detail"], nulls_last=False
        ),
        check_exact=True,
    )


def test_prior_rows_on_or_after_the_first_session_are_refused():
    prior = run([make_bar(S[1])]).data
    with pytest.raises(QGError, match="prior cleaned_prices"):
        run([make_bar(S[1])], prior=prior)


def test_invalid_corporate_action_is_a_clear_error():
    with pytest.raises(QGError, match="split_ratio"):
        run([make_bar(S[0])], actions=[make_action(S[0], split=0.0)])


# ------------------------------------------------------------------------------ other tables


def _flow(session=S[0], symbol="2330", investor="Foreign_Investor", buy=1000, sell=500) -> dict:
    return {
        "session": session,
        "symbol": symbol,
        "investor": investor,
        "buy_shares": buy,
        "sell_shares": sell,
    }


def test_clean_records_flows_duplicates_conflicts_and_negative_shares():
    rows = [
        _flow(),
        _flow(),
        _flow(investor="Investment_Trust", sell=-1),
        _flow(investor="Dealer_self", buy=5),
        _flow(investor="Dealer_self", buy=6),
        _flow(investor="Dealer_Hedging", buy=None),
    ]
    r = clean_records("institutional_flows", frame(rows, "institutional_flows"))
    assert sorted(r.quarantine["reason"].to_list()) == [
        "conflicting_duplicate",
        "conflicting_duplicate",
        "duplicate",
        "negative_volume",
    ]
    assert set(r.quarantine["action"]) == {"rejected"}
    assert r.data["investor"].to_list() == ["Dealer_Hedging", "Foreign_Investor"]


def test_clean_records_broker_price_only_expected_when_shares_traded():
    base = {"session": S[0], "symbol": "2330", "sell_shares": 0, "avg_sell_price": None}
    rows = [
        dict(base, broker_id="1", buy_shares=0, avg_buy_price=0.0),
        dict(base, broker_id="2", buy_shares=100, avg_buy_price=0.0),
    ]
    r = clean_records("broker_flows", frame(rows, "broker_flows"))
    assert r.data["broker_id"].to_list() == ["1"]
    assert r.quarantine["reason"].to_list() == ["non_positive_price"]


def test_clean_records_levels_and_us_bars():
    ind = frame(
        [
            {"session": S[0], "taiex_close": 20000.0, "vixtwn": None},
            {"session": S[1], "taiex_close": 20000.0, "vixtwn": -1.0},
        ],
        "market_indicators",
    )
    r = clean_records("market_indicators", ind)
    assert r.data["session"].to_list() == [S[0]]
    assert reasons(r.quarantine) == [(S[1], None, "non_positive_price", "rejected")]
    us = [
        {"session": S[1], "ny_date": S[0], "symbol": "SMH", "close": None, "volume": 1.0},
        {"session": S[2], "ny_date": S[1], "symbol": "SMH", "close": 200.0, "volume": -1.0},
        {"session": S[3], "ny_date": S[2], "symbol": "SMH", "close": 201.0, "volume": 1.0},
    ]
    r = clean_records("us_market", frame(us, "us_market"))
    assert r.data["ny_date"].to_list() == [S[2]]
    assert sorted(r.quarantine["reason"]) == ["negative_volume", "non_positive_price"]


def test_clean_records_margin_negative_balance_and_unknown_table():
    rows = [
        {"session": S[0], "symbol": "2330", "margin_balance": -1},
        {"session": S[0], "symbol": "2317", "margin_balance": 5},
    ]
    r = clean_records("margin", frame(rows, "margin"))
    assert r.data["symbol"].to_list() == ["2317"]
    assert r.quarantine["reason"].to_list() == ["negative_volume"]
    with pytest.raises(QGError, match="unknown table"):
        clean_records("daily_prices", frame([], "daily_prices"))


# ------------------------------------------------------------------------------ financials


@pytest.mark.parametrize(
    ("period_end", "deadline"),
    [
        (D(2024, 3, 31), D(2024, 5, 15)),
        (D(2024, 6, 30), D(2024, 8, 14)),
        (D(2024, 9, 30), D(2024, 11, 14)),
        (D(2023, 12, 31), D(2024, 3, 31)),
        (D(2024, 2, 29), D(2024, 5, 15)),
    ],
)
def test_regulatory_deadline_series_and_expr(period_end, deadline):
    assert regulatory_deadline(pl.Series("p", [period_end])).to_list() == [deadline]
    df = pl.DataFrame({"p": [period_end]})
    assert df.select(regulatory_deadline(pl.col("p"))).item() == deadline


def _fin(period_end, available_date, symbol="2330", revenue=100.0) -> dict:
    d = available_date or period_end
    return {
        "session": d,
        "symbol": symbol,
        "period_end": period_end,
        "available_date": available_date,
        "revenue": revenue,
        "net_income": 10.0,
    }


def test_financials_corrections_late_flags_and_duplicates():
    rows = [
        _fin(D(2023, 12, 31), D(2024, 3, 29)),  # on time
        _fin(D(2024, 3, 31), None),  # missing date
        _fin(D(2024, 6, 30), D(2024, 6, 30)),  # stamped with the period end
        _fin(D(2024, 9, 30), D(2024, 12, 20)),  # late
        _fin(D(2024, 9, 30), D(2024, 12, 20)),  # exact copy
        _fin(D(2021, 3, 31), D(2021, 5, 17)),  # deadline Sat 05-15: Monday is on time
        _fin(D(2021, 3, 31), D(2021, 5, 18), symbol="2317"),  # one session later: late
    ]
    r = clean_financials(frame(rows, "financials"))
    got = {
        (x["symbol"], x["period_end"]): (x["available_date"], x["session"])
        for x in r.data.iter_rows(named=True)
    }
    assert got == {
        ("2330", D(2023, 12, 31)): (D(2024, 3, 29), D(2024, 3, 29)),
        ("2330", D(2024, 3, 31)): (D(2024, 5, 15), D(2024, 5, 15)),
        ("2330", D(2024, 6, 30)): (D(2024, 8, 14), D(2024, 8, 14)),
        ("2330", D(2024, 9, 30)): (D(2024, 12, 20), D(2024, 12, 20)),
        ("2330", D(2021, 3, 31)): (D(2021, 5, 17), D(2021, 5, 17)),
        ("2317", D(2021, 3, 31)): (D(2021, 5, 18), D(2021, 5, 18)),
    }
    assert r.data.schema == pl.Schema(RAW_SCHEMAS["financials"])
    assert reasons(r.quarantine) == [
        (D(2021, 5, 18), "2317", "late_filing", "flagged"),
        (D(2024, 3, 31), "2330", "missing_available_date", "corrected"),
        (D(2024, 6, 30), "2330", "financials_date_before_period_end", "corrected"),
        (D(2024, 12, 20), "2330", "duplicate", "rejected"),
        (D(2024, 12, 20), "2330", "late_filing", "flagged"),
    ]
    corrected = json.loads(
        r.quarantine.filter(pl.col("reason") == "missing_available_date")["detail"].item()
    )
    assert corrected["corrected_available_date"] == "2024-05-15"
    assert corrected["row"]["available_date"] is None


# ------------------------------------------------------------------------------ checks


def test_check_helpers_pass_on_clean_output_and_fail_on_tampered_rows():
    data = run(
        [
            make_bar(S[0], close=100.0, high=101.0, low=99.0),
            make_bar(S[1], close=101.0, high=102.0, low=100.0),
        ]
    ).data
    assert check_positive_prices(data)[0] and check_ohlc_consistent(data)[0]
    bad = data.with_columns(
        close_adj=pl.when(pl.col("session") == S[1]).then(0.0).otherwise("close_adj")
    )
    ok, details = check_positive_prices(bad)
    assert (
        not ok and details["violations"] == 1 and details["examples"][0]["session"] == "2024-03-04"
    )
    bad = data.with_columns(high=pl.col("low") - 1)
    assert check_ohlc_consistent(bad) == (
        False,
        {
            "rows": 2,
            "violations": 2,
            "examples": [
                {"session": "2024-03-01", "symbol": "2330"},
                {"session": "2024-03-04", "symbol": "2330"},
            ],
        },
    )


def test_the_duplicate_rules_match_their_definition_on_random_collisions():
    """duplicate = an exact copy after the first; conflicting = the key has several distinct
    rows (checked against the per-group definition on random keys, copies and nulls)."""
    import numpy as np

    from quant_genesis_dagster.domain.cleaning import (
        CONFLICTING_DUPLICATE,
        DUPLICATE,
        _duplicate_rules,
        _first_reason,
    )

    rng = np.random.default_rng(0)
    n = 2_000
    df = (
        pl.DataFrame(
            {
                "k1": rng.integers(0, 30, n),
                "k2": rng.choice(["a", "b", "c"], n),
                "v": rng.integers(0, 3, n),
                "w": rng.choice([1.5, 2.5], n),
                "_null": rng.random(n) < 0.1,
            }
        )
        .with_columns(v=pl.when(~pl.col("_null")).then(pl.col("v")))
        .drop("_null")
    )
    cols, key = ["k1", "k2", "v", "w"], ["k1", "k2"]
    got = df.select(_first_reason(_duplicate_rules(cols, key)).alias("r"))["r"]
    first = pl.struct(cols).is_first_distinct()
    ref = df.select(
        pl.when(~first).then(pl.lit(DUPLICATE))
        .when(first.cast(pl.Int32).sum().over(key) > 1).then(pl.lit(CONFLICTING_DUPLICATE))
        .otherwise(None).alias("r")
    )["r"]  # fmt: skip
    assert got.to_list() == ref.to_list()
    assert {DUPLICATE, CONFLICTING_DUPLICATE} <= set(got.drop_nulls().to_list())
