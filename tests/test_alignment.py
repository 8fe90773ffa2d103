"""Alignment (SPEC §4, §11): carry-forward limits, null-not-zero flows, as-of TTM fundamentals
(late filings, restatements), US returns compounded across TW holidays, and point-in-time
truncation / perturbation tests."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.alignment import (
    PANEL_SCHEMA,
    align_panel,
    check_coverage,
    check_no_future_fundamentals,
    coverage,
)
from quant_genesis_dagster.domain.cleaning import CLEANED_PRICES_SCHEMA
from quant_genesis_dagster.domain.tables import RAW_SCHEMAS
from quant_genesis_dagster.errors import QGError

D = dt.date
S = calendar.sessions(D(2024, 3, 1), D(2024, 12, 31))
LISTED = D(2008, 1, 2)


# ------------------------------------------------------------------------------ factories


def make_info(
    symbol: str, listed_date: dt.date = LISTED, delisted_date: dt.date | None = None
) -> dict:
    return {
        "symbol": symbol,
        "name": symbol,
        "market": "TWSE",
        "industry": "Semis",
        "listed_date": listed_date,
        "delisted_date": delisted_date,
    }


def make_price(
    session: dt.date, symbol: str = "A", close: float = 100.0, adj_factor: float = 1.0, **kw
) -> dict:
    """A cleaned_prices row (flat bar)."""
    row = {
        "session": session,
        "symbol": symbol,
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "volume_shares": 1000,
        "turnover_twd": close * 1000,
        "trades": 1,
        "vwap": close,
        "adj_factor": adj_factor,
        "prev_close": None,
        "is_ex_date": False,
        "limit_up": False,
        "limit_down": False,
        "sessions_since_listing": 100,
    }
    row.update(kw)
    for c in ("open", "high", "low", "close", "vwap"):
        row[f"{c}_adj"] = row[c] / row["adj_factor"]
    return row


def make_flow(session, symbol="A", investor="Foreign_Investor", buy=0, sell=0) -> dict:
    return {
        "session": session,
        "symbol": symbol,
        "investor": investor,
        "buy_shares": buy,
        "sell_shares": sell,
    }


def make_fin(period_end, available_date, symbol="A", revenue=1.0, **kw) -> dict:
    row = {
        "session": calendar.session_on_or_after([available_date])[0].item(),
        "symbol": symbol,
        "period_end": period_end,
        "available_date": available_date,
        "revenue": revenue,
        "gross_profit": revenue / 2,
        "operating_income": revenue / 4,
        "pretax_income": revenue / 5,
        "net_income": revenue / 10,
        "interest_expense": 0.0,
        "total_assets": revenue * 10,
        "total_equity": revenue * 5,
    }
    row.update(kw)
    return row


def make_us(ny_date, close, symbol="SMH") -> dict:
    return {
        "session": calendar.session_after([ny_date])[0].item(),
        "ny_date": ny_date,
        "symbol": symbol,
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "volume": 1.0,
    }


def raw(rows: list[dict], table: str) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RAW_SCHEMAS[table])


def align(
    sessions, *, infos=None, prices=(), flows=(), margin=(), fins=(), ind=(), us=(), max_carry=5
) -> pl.DataFrame:
    return align_panel(
        sessions,
        raw(infos or [make_info("A")], "stock_info"),
        pl.DataFrame(list(prices), schema=CLEANED_PRICES_SCHEMA),
        raw(list(flows), "institutional_flows"),
        raw(list(margin), "margin"),
        raw(list(fins), "financials"),
        raw(list(ind), "market_indicators"),
        raw(list(us), "us_market"),
        max_carry_sessions=max_carry,
    )


def col(panel: pl.DataFrame, name: str, symbol: str = "A") -> list:
    return panel.filter(pl.col("symbol") == symbol)[name].to_list()


# ------------------------------------------------------------------------------ prices


def test_carry_forward_at_most_max_sessions_then_null():
    prices = [
        make_price(S[0], close=100.0),
        make_price(S[1], close=110.0, adj_factor=2.0),
        make_price(S[8], close=120.0, adj_factor=2.0),
        make_price(S[9], close=126.0, adj_factor=2.0),
    ]
    p = align(S[:10], prices=prices)
    assert p.schema == PANEL_SCHEMA
    assert col(p, "has_bar") == [True, True] + [False] * 6 + [True, True]
    assert col(p, "stale_sessions") == [0, 0, 1, 2, 3, 4, 5, None, 0, 0]
    assert col(p, "close") == [100.0, 110.0] + [110.0] * 5 + [None, 120.0, 126.0]
    assert col(p, "close_adj") == [100.0, 55.0] + [55.0] * 5 + [None, 60.0, 63.0]
    assert col(p, "vwap_adj")[6] == 55.0
    # the day's volume, range and limit state exist only on a day with a bar
    assert col(p, "volume_shares")[2:8] == [None] * 6
    assert col(p, "high_adj")[2:8] == [None] * 6 and col(p, "limit_up")[2:8] == [None] * 6
    # ret_1d: fresh bars only; S8's previous bar is 7 sessions back, past the carry limit
    assert col(p, "ret_1d") == [
        None,
        pytest.approx(-0.45),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        pytest.approx(0.05),
    ]


def test_ret_1d_across_a_gap_still_within_the_carry_limit_and_from_the_lookback():
    prices = [
        make_price(S[0], close=100.0),
        make_price(S[6], close=90.0),
        make_price(S[7], close=99.0),
    ]
    p = align(S[6:8], prices=prices)  # S0 is lookback only
    assert col(p, "ret_1d") == [pytest.approx(-0.1), pytest.approx(0.1)]
    p = align(S[1:3], prices=prices)
    assert col(p, "stale_sessions") == [1, 2] and col(p, "close") == [100.0, 100.0]
    assert align(S[6:7], prices=prices, max_carry=4)["ret_1d"].to_list() == [None]


def test_listing_and_delisting_boundaries():
    infos = [make_info("A"), make_info("B", listed_date=S[1]), make_info("C", delisted_date=S[2])]
    p = align(S[:4], infos=infos)
    assert p.group_by("symbol").agg(pl.col("session").sort()).sort("symbol").rows() == [
        ("A", S[:4]),
        ("B", S[1:4]),
        ("C", S[:2]),
    ]  # listed_date <= s < delisted_date
    assert p.select("market", "industry").unique().rows() == [("TWSE", "Semis")]


# ------------------------------------------------------------------------------ flows, margin, market


def test_institutional_nets_pivot_and_missing_reports_are_null_not_zero():
    flows = [
        make_flow(S[0], investor="Foreign_Investor", buy=1000, sell=400),
        make_flow(S[0], investor="Foreign_Dealer_Self", buy=10),
        make_flow(S[0], investor="Investment_Trust", sell=200),
        make_flow(S[0], investor="Dealer_self", buy=5, sell=5),
        make_flow(S[0], "B", investor="Investment_Trust", buy=300),
        make_flow(S[1], "B", investor="Dealer_Hedging", buy=None, sell=7),
        make_flow(S[1], "B", investor="Investment_Trust", buy=1, sell=0),
    ]
    p = align(S[:2], infos=[make_info("A"), make_info("B")], flows=flows)
    got = {
        (r[0], r[1]): r[2:]
        for r in p.select(
            "session", "symbol", "foreign_net", "trust_net", "dealer_net", "inst_net"
        ).rows()
    }
    assert got == {
        (S[0], "A"): (610, -200, 0, 410),
        (S[0], "B"): (None, 300, None, 300),
        (S[1], "A"): (None, None, None, None),
        (S[1], "B"): (None, 1, None, None),  # an unknown buy makes the dealer and total unknown
    }


def test_unknown_investor_type_is_a_clear_error():
    with pytest.raises(QGError, match="unknown investor 'Retail'"):
        align(S[:1], flows=[make_flow(S[0], investor="Retail")])


def test_margin_and_market_indicators_join_and_broadcast():
    margin = [{"session": S[1], "symbol": "B", "margin_balance": 5000, "short_sell": 3}]
    ind = [
        {
            "session": S[0],
            "taiex_close": 20000.0,
            "vixtwn": 15.0,
            "put_call_ratio": 0.9,
            "tx_foreign_net_oi": -1000.0,
            "margin_total": 2.5e11,
        }
    ]
    p = align(S[:2], infos=[make_info("A"), make_info("B")], margin=margin, ind=ind)
    assert p.select("session", "symbol", "margin_balance", "short_sell", "short_cover").rows() == [
        (S[0], "A", None, None, None),
        (S[0], "B", None, None, None),
        (S[1], "A", None, None, None),
        (S[1], "B", 5000, 3, None),
    ]
    assert p["vixtwn"].to_list() == [15.0, 15.0, None, None]
    assert p["tx_foreign_net_oi"].to_list() == [-1000.0, -1000.0, None, None]


def test_duplicate_cleaned_rows_are_refused():
    with pytest.raises(QGError, match="cleaned_prices: several rows"):
        align(S[:1], prices=[make_price(S[0]), make_price(S[0], close=101.0)])


def test_us_returns_compound_across_a_tw_holiday():
    # TW is closed 2024-04-04/05: NY closes of 04-03, 04-04 and 04-05 all map to TW 04-08
    tw = calendar.sessions(D(2024, 4, 2), D(2024, 4, 8))
    assert tw == [D(2024, 4, 2), D(2024, 4, 3), D(2024, 4, 8)]
    us = [
        make_us(D(2024, 4, 1), 100.0),
        make_us(D(2024, 4, 2), 102.0),
        make_us(D(2024, 4, 3), 101.0),
        make_us(D(2024, 4, 4), 103.0),
        make_us(D(2024, 4, 5), 104.03),
        make_us(D(2024, 4, 5), 50.0, symbol="XYZ"),
    ]
    p = align(tw, us=us)
    # first NY row has no earlier close: no return on 04-02
    assert p["us_smh_ret"].to_list() == [
        None,
        pytest.approx(0.02),
        pytest.approx(104.03 / 102.0 - 1, rel=1e-12),
    ]
    assert p["us_qqq_ret"].null_count() == 3


# ------------------------------------------------------------------------------ fundamentals


def _fundamentals_history() -> list[dict]:
    return [
        make_fin(D(2023, 3, 31), D(2023, 5, 10), revenue=10.0),
        make_fin(D(2023, 6, 30), D(2023, 8, 10), revenue=20.0),
        make_fin(D(2023, 9, 30), D(2023, 11, 10), revenue=30.0),
        make_fin(D(2023, 12, 31), D(2024, 3, 20), revenue=40.0),
        make_fin(D(2024, 3, 31), D(2024, 5, 10), revenue=50.0),
        make_fin(D(2024, 3, 31), D(2024, 8, 1), revenue=55.0),  # restated Q1
        make_fin(D(2024, 9, 30), D(2024, 11, 12), revenue=70.0, net_income=None),
        make_fin(D(2024, 6, 30), D(2024, 11, 20), revenue=60.0),  # late Q2, after Q3
    ]


def test_ttm_as_of_with_late_filing_and_restatement_by_hand():
    days = [
        D(2024, 3, 19),
        D(2024, 3, 20),
        D(2024, 5, 10),
        D(2024, 7, 31),
        D(2024, 8, 1),
        D(2024, 11, 12),
        D(2024, 11, 19),
        D(2024, 11, 20),
    ]
    p = align(days, fins=_fundamentals_history())
    assert col(p, "revenue_ttm") == [
        None,  # latest Q3'23; Q4'22 never filed
        100.0,  # Q1..Q4'23
        140.0,  # Q2'23..Q1'24
        140.0,
        145.0,  # restated Q1'24 (55) replaces 50 from its publication day
        None,  # Q3'24 is latest but Q2'24 is not yet public: no four consecutive quarters
        None,
        225.0,  # 40 + 55 + 60 + 70
    ]
    assert col(p, "fin_period_end") == [
        D(2023, 9, 30),
        D(2023, 12, 31),
        D(2024, 3, 31),
        D(2024, 3, 31),
        D(2024, 3, 31),
        D(2024, 9, 30),
        D(2024, 9, 30),
        D(2024, 9, 30),
    ]
    assert col(p, "fin_available_date")[4] == D(2024, 8, 1)
    assert col(p, "fin_available_date")[7] == D(2024, 11, 12)
    assert col(p, "total_assets") == [300.0, 400.0, 500.0, 500.0, 550.0, 700.0, 700.0, 700.0]
    assert col(p, "gross_profit_ttm")[7] == 112.5
    assert col(p, "net_income_ttm")[4] == pytest.approx(14.5)
    assert col(p, "net_income_ttm")[7] is None  # Q3'24 net income unknown
    assert check_no_future_fundamentals(p)[0]


def test_fundamentals_are_null_before_the_first_statement_and_need_consecutive_quarters():
    fins = [
        make_fin(D(2023, 3, 31), D(2023, 5, 10)),
        make_fin(D(2023, 6, 30), D(2023, 8, 10)),
        make_fin(D(2023, 12, 31), D(2024, 3, 20)),
        make_fin(D(2024, 3, 31), D(2024, 5, 10)),
    ]
    p = align([D(2023, 5, 9), D(2024, 5, 10)], fins=fins)  # Q3'23 missing
    assert col(p, "fin_period_end") == [None, D(2024, 3, 31)]
    assert col(p, "revenue_ttm") == [None, None]


# ------------------------------------------------------------------------------ point in time


def _random_market(seed: int = 7, n: int = 60) -> dict:
    """A small random market over S[:n] with suspensions, gaps, filings and US bars."""
    rng = np.random.default_rng(seed)
    days = S[:n]
    symbols = ["A", "B", "C"]
    infos = [
        make_info("A"),
        make_info("B", listed_date=days[12]),
        make_info("C", delisted_date=days[45]),
    ]
    prices, flows, margin = [], [], []
    for sym in symbols:
        close = 50.0
        for s in days:
            close = round(close * float(np.exp(rng.normal(0, 0.02))), 2)
            if rng.random() < 0.15:  # suspended / missing
                continue
            prices.append(make_price(s, sym, close, adj_factor=1.0 + (s > days[30]) * 0.1))
            for inv in ("Foreign_Investor", "Investment_Trust", "Dealer_Hedging"):
                if rng.random() < 0.8:
                    flows.append(
                        make_flow(
                            s, sym, inv, int(rng.integers(0, 5000)), int(rng.integers(0, 5000))
                        )
                    )
            if rng.random() < 0.9:
                margin.append(
                    {"session": s, "symbol": sym, "margin_balance": int(rng.integers(0, 10**6))}
                )
    fins = []
    for sym in symbols:
        for pe in (D(2023, 3, 31), D(2023, 6, 30), D(2023, 9, 30), D(2023, 12, 31)):
            fins.append(
                make_fin(pe, pe + dt.timedelta(days=40), sym, revenue=float(rng.uniform(1, 100)))
            )
        for k in range(4):  # filings scattered through the window, some out of order
            fins.append(
                make_fin(
                    D(2024, 3, 31) if k < 2 else D(2023, 12, 31),
                    days[int(rng.integers(1, n))],
                    sym,
                    revenue=float(rng.uniform(1, 100)),
                )
            )
    fins = list({(f["symbol"], f["period_end"], f["available_date"]): f for f in fins}.values())
    ind = [
        {
            "session": s,
            "taiex_close": float(rng.uniform(1e4, 2e4)),
            "vixtwn": float(rng.uniform(10, 30)),
        }
        for s in days
        if rng.random() < 0.9
    ]
    ny = np.arange(np.datetime64(days[0]) - 5, np.datetime64(days[-1]) + 1)
    ny = [x.item() for x in ny if x.item().weekday() < 5]
    us = [make_us(d, float(100 + rng.normal(0, 3)), t) for d in ny for t in ("SMH", "TSM")]
    return {
        "infos": infos,
        "prices": prices,
        "flows": flows,
        "margin": margin,
        "fins": fins,
        "ind": ind,
        "us": us,
    }


def _upto(market: dict, last: dt.date) -> dict:
    """The market as it was known at the end of ``last``."""
    out = {"infos": market["infos"]}
    for k in ("prices", "flows", "margin", "ind", "us"):
        out[k] = [r for r in market[k] if r["session"] <= last]
    out["fins"] = [r for r in market["fins"] if r["available_date"] <= last]
    return out


def test_truncation_rows_up_to_d_are_bit_identical_with_or_without_the_future():
    market = _random_market()
    days = S[10:60]
    d = S[35]
    full = align(days, **market)
    cut = align([s for s in days if s <= d], **_upto(market, d))
    assert_frame_equal(full.filter(pl.col("session") <= d), cut, check_exact=True)
    assert full.filter(pl.col("session") > d).height > 0
    # the test has teeth: prices, flows, fundamentals and US returns are all populated
    past = cut.filter(pl.col("session") <= d)
    for c in ("close", "ret_1d", "foreign_net", "revenue_ttm", "us_smh_ret", "vixtwn"):
        assert past[c].drop_nulls().len() > 0, c


def _perturb(rows: list[dict], after: dt.date, date_key: str, rng) -> list[dict]:
    out = []
    for r in rows:
        if r[date_key] > after:
            r = {
                k: (
                    v * float(rng.uniform(0.5, 2.0))
                    if isinstance(v, float)
                    else v + int(rng.integers(1, 100))
                    if isinstance(v, int) and not isinstance(v, bool)
                    else v
                )
                for k, v in r.items()
            }
        out.append(r)
    return out


def test_perturbing_rows_after_d_leaves_rows_up_to_d_unchanged():
    market = _random_market(seed=11)
    days = S[10:60]
    d = S[40]
    rng = np.random.default_rng(3)
    changed = dict(market)
    for k in ("prices", "flows", "margin", "ind", "us"):
        changed[k] = _perturb(market[k], d, "session", rng)
    changed["fins"] = _perturb(market["fins"], d, "available_date", rng)
    # perturbed adjusted prices stay consistent with their factors
    changed["prices"] = [
        make_price(**{k: r[k] for k in ("session", "symbol", "close", "adj_factor")})
        for r in changed["prices"]
    ]
    a, b = align(days, **market), align(days, **changed)
    assert_frame_equal(
        a.filter(pl.col("session") <= d), b.filter(pl.col("session") <= d), check_exact=True
    )
    after_a, after_b = a.filter(pl.col("session") > d), b.filter(pl.col("session") > d)
    assert not after_a.equals(after_b)


# ------------------------------------------------------------------------------ checks


def test_check_no_future_fundamentals_catches_a_leak():
    p = align([D(2024, 5, 10)], fins=_fundamentals_history())
    assert check_no_future_fundamentals(p) == (True, {"rows": 1, "violations": 0, "examples": []})
    leak = p.with_columns(fin_available_date=pl.lit(D(2024, 5, 13)))
    ok, details = check_no_future_fundamentals(leak)
    assert not ok and details["examples"] == [
        {"session": "2024-05-10", "symbol": "A", "fin_available_date": "2024-05-13"}
    ]


def test_coverage_counts_fresh_bars_of_listed_symbols():
    infos = [make_info("A"), make_info("B")]
    prices = [make_price(S[0], "A"), make_price(S[0], "B"), make_price(S[1], "A")]
    p = align(S[:2], infos=infos, prices=prices)
    assert coverage(p).rows() == [(S[0], 2, 2, 1.0), (S[1], 2, 1, 0.5)]
    assert check_coverage(p, 0.5)[0]
    ok, details = check_coverage(p, 0.6)
    assert not ok and details["sessions_below"] == [S[1].isoformat()]
