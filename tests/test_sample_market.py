"""The embedded sample market: determinism, range independence, schemas, Taiwan realism, planted
structure and planted faults (SPEC §3.1).

A 60-symbol market over May–August 2015 (84 sessions: the 7% → 10% limit change on 2015-06-01,
the ex-dividend season, the Q2 filing deadline) keeps the file fast; structure-recovery tests use
the ground truth over longer spans, which is cheap.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections import Counter

import numpy as np
import polars as pl
import pytest

from quant_genesis_dagster.domain import calendar, market
from quant_genesis_dagster.domain.sample import GroundTruth, SampleMarket, SampleMarketConfig
from quant_genesis_dagster.domain.tables import RAW_SCHEMAS
from quant_genesis_dagster.domain.warehouse.models import RAW_PARTITIONED_TABLES, US_PROXIES
from quant_genesis_dagster.errors import QGError

CFG = SampleMarketConfig(seed=11, n_symbols=60)
START, END = dt.date(2015, 5, 4), dt.date(2015, 8, 31)
PRICES = ("open", "high", "low", "close")
ALL_KINDS = {
    "missing_session",
    "duplicate",
    "ohlc_inconsistent",
    "non_positive_price",
    "negative_volume",
    "limit_breach",
    "financials_date_before_period_end",
    "missing_available_date",
    "late_filing",
}


@pytest.fixture(scope="module")
def sm() -> SampleMarket:
    return SampleMarket(CFG)


@pytest.fixture(scope="module")
def clean_sm() -> SampleMarket:
    return SampleMarket(dataclasses.replace(CFG, faults=False))


@pytest.fixture(scope="module")
def raw(sm: SampleMarket) -> dict[str, pl.DataFrame]:
    return sm.tables(START, END)


@pytest.fixture(scope="module")
def clean(clean_sm: SampleMarket) -> dict[str, pl.DataFrame]:
    return clean_sm.tables(START, END)


@pytest.fixture(scope="module")
def truth(sm: SampleMarket) -> GroundTruth:
    return sm.truth(START, END)


def _ipc(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_ipc(buf)
    return buf.getvalue()


def _sessions_since_listing(info: pl.DataFrame) -> dict[str, int]:
    """Session index of each symbol's first session (pre-history listings: far in the past)."""
    first = calendar.session_index(calendar.session_on_or_after(info["listed_date"].to_numpy()))
    pre = info["listed_date"].to_numpy() < np.datetime64(calendar.HISTORY_START)
    return dict(zip(info["symbol"], np.where(pre, -10_000, first), strict=True))


# ------------------------------------------------------------------------------------ contract


def test_same_config_gives_identical_bytes_for_every_table(raw):
    other = SampleMarket(CFG)
    again = other.tables(START, END)
    for name in RAW_PARTITIONED_TABLES:
        assert _ipc(again[name]) == _ipc(raw[name]), name
    assert _ipc(other.stock_info()) == _ipc(SampleMarket(CFG).stock_info())


def test_a_different_seed_gives_a_different_market(raw):
    other = SampleMarket(dataclasses.replace(CFG, seed=12)).tables(START, START, ["daily_prices"])
    assert not other["daily_prices"].equals(raw["daily_prices"].filter(pl.col("session") == START))


def test_rows_of_a_session_do_not_depend_on_the_requested_range(sm, raw):
    for day in (START, dt.date(2015, 6, 1), END):
        alone = sm.tables(day, day)
        for name, frame in alone.items():
            assert frame.equals(raw[name].filter(pl.col("session") == day)), (name, day)
    blocks = list(sm.iter_tables(START, END, block_sessions=7))
    assert len(blocks) == 12
    for name in RAW_PARTITIONED_TABLES:
        assert pl.concat([b[name] for b in blocks]).equals(raw[name]), name


def test_every_table_conforms_to_raw_schemas_and_holds_only_sessions_in_range(sm, raw):
    assert sm.stock_info().schema == RAW_SCHEMAS["stock_info"]
    assert set(raw) == set(RAW_PARTITIONED_TABLES)
    sessions = set(calendar.sessions(START, END))
    for name, frame in raw.items():
        assert frame.schema == RAW_SCHEMAS[name], name
        assert frame.height > 0, name
        assert set(frame["session"].unique()) <= sessions, name


def test_bad_requests_raise_one_line_qgerrors(sm):
    with pytest.raises(QGError, match="after end"):
        sm.tables(END, START)
    with pytest.raises(QGError, match="leaves the XTAI calendar"):
        sm.tables("2009-12-01", "2010-01-29")
    with pytest.raises(QGError, match="leaves the XTAI calendar"):
        sm.tables("2027-11-01", "2099-01-01")
    with pytest.raises(QGError, match="not a date"):
        sm.tables("yesterday", END)
    with pytest.raises(QGError, match="no table"):
        sm.tables(START, END, ["prices"])
    with pytest.raises(QGError, match="not an XTAI trading session"):
        sm.ticks("2015-05-02")  # a Saturday
    with pytest.raises(QGError, match="n_symbols"):
        SampleMarketConfig(n_symbols=5)


# ------------------------------------------------------------------------------------ realism


def test_universe_has_taiwan_codes_markets_industries_ipos_and_delistings(sm):
    info = sm.stock_info()
    assert info.height == 60 and info["symbol"].n_unique() == 60
    assert info["symbol"].str.contains(r"^\d{4}$").all()
    assert set(info["market"]) == {"TWSE", "TPEx"}
    assert info["industry"].n_unique() >= 10
    assert (info["listed_date"] > calendar.HISTORY_START).sum() >= 5  # IPOs inside the history
    assert info["delisted_date"].is_not_null().sum() >= 2


def test_ipo_first_bar_is_on_listing_and_delisted_names_stop_trading(sm):
    info = sm.stock_info()
    ipo = info.filter(pl.col("listed_date").is_between(dt.date(2011, 1, 1), dt.date(2024, 1, 1)))
    row = ipo.row(0, named=True)
    around = sm.tables(
        calendar.shift_session(row["listed_date"], -3),
        calendar.shift_session(row["listed_date"], 3),
        ["daily_prices"],
    )["daily_prices"].filter(pl.col("symbol") == row["symbol"])
    assert around["session"].min() == row["listed_date"]
    gone = info.filter(pl.col("delisted_date").is_not_null()).row(0, named=True)
    last = calendar.shift_session(gone["delisted_date"], -1)
    near = sm.tables(
        calendar.shift_session(last, -5), calendar.shift_session(last, 5), ["daily_prices"]
    )["daily_prices"].filter(pl.col("symbol") == gone["symbol"])
    assert near["session"].max() <= last
    assert near.height > 0


def test_clean_prices_sit_on_the_tick_grid_inside_the_daily_limits(clean_sm, clean):
    """Every O/H/L/C of the clean market is on the tick grid and inside the limit band around
    the reference price: the previous close, or (prev − cash)/(1 + stock) on an ex-date
    (7% before 2015-06-01, 10% after); IPOs are free for five sessions."""
    lookback = clean_sm.tables(calendar.shift_session(START, -30), END, ["daily_prices"])
    px = lookback["daily_prices"].sort("symbol", "session")
    for col in PRICES:
        v = px[col].to_numpy()
        assert np.array_equal(market.round_to_tick(v), v), col
    acts = clean["corporate_actions"].select(
        "symbol", "ex_date", "cash_dividend", "stock_dividend_ratio"
    )
    first = _sessions_since_listing(clean_sm.stock_info())
    px = (
        px.with_columns(prev=pl.col("close").shift(1).over("symbol"))
        .join(acts, left_on=["symbol", "session"], right_on=["symbol", "ex_date"], how="left")
        .filter(pl.col("session") >= START, pl.col("prev").is_not_null())
        .with_columns(
            ref=(pl.col("prev") - pl.col("cash_dividend").fill_null(0.0))
            / (1 + pl.col("stock_dividend_ratio").fill_null(0.0))
        )
    )
    idx = calendar.session_index(px["session"].to_numpy())
    settled = idx - np.array([first[s] for s in px["symbol"]]) >= 5
    pct = market.limit_pct(px["session"].to_numpy())
    up, down = market.limit_prices(px["ref"].to_numpy(), pct)
    for col in PRICES:
        v = px[col].to_numpy()
        ok = (v <= up + 1e-9) & (v >= down - 1e-9)
        assert ok[settled].all(), col
    moves = np.abs(px["close"].to_numpy() / px["ref"].to_numpy() - 1)
    before = px["session"].to_numpy() < np.datetime64("2015-06-01")
    assert moves[before & settled].max() <= 0.07 + 0.01
    assert (moves > 0.05).sum() > 0  # limits are not an artefact of tiny moves


def test_clean_bars_are_consistent_with_whole_lot_volumes(clean):
    px = clean["daily_prices"]
    ok = px.select(
        (pl.col("low") <= pl.min_horizontal("open", "close"))
        & (pl.col("high") >= pl.max_horizontal("open", "close"))
    ).to_series()
    assert ok.all()
    assert (px["volume_shares"] >= 5_000).all()
    assert (px["volume_shares"] % 1000 == 0).mean() > 0.9
    vwap = px["turnover_twd"] / px["volume_shares"]
    assert ((vwap >= px["low"] - 0.01) & (vwap <= px["high"] + 0.01)).all()
    assert (px["trades"] >= 1).all()


def test_ex_dates_drop_the_raw_price_by_the_dividend(clean_sm, clean):
    acts = clean["corporate_actions"]
    assert acts.height >= 10
    assert (acts["session"] == acts["ex_date"]).all()
    assert (acts["split_ratio"] == 1.0).all()
    assert ((acts["stock_dividend_ratio"] >= 0) & (acts["stock_dividend_ratio"] <= 0.2)).all()
    px = clean_sm.tables(calendar.shift_session(START, -30), END, ["daily_prices"])[
        "daily_prices"
    ].sort("symbol", "session")
    px = px.with_columns(prev=pl.col("close").shift(1).over("symbol"))
    ev = acts.join(px, left_on=["symbol", "ex_date"], right_on=["symbol", "session"])
    raw_ret = ev["close"] / ev["prev"] - 1
    ref = (ev["prev"] - ev["cash_dividend"]) / (1 + ev["stock_dividend_ratio"])
    adj_ret = ev["close"] / ref - 1
    assert raw_ret.mean() < adj_ret.mean() - 0.015  # the drop is the dividend, not the market
    assert abs(adj_ret.mean()) < 0.02


def test_suspended_symbols_have_no_bar_for_a_few_sessions(clean_sm, clean):
    info = clean_sm.stock_info().filter(
        pl.col("listed_date") < START,
        pl.col("delisted_date").is_null() | (pl.col("delisted_date") > END),
    )
    n_sessions = len(calendar.sessions(START, END))
    counts = clean["daily_prices"].group_by("symbol").len()
    bars = info.join(counts, on="symbol", how="left").with_columns(pl.col("len").fill_null(0))
    assert (bars["len"] < n_sessions).sum() >= 1  # some listed name missed sessions
    assert (bars["len"] > n_sessions - 20).mean() > 0.8  # suspensions are short and rare


def test_margin_balances_move_by_buys_minus_sells(clean):
    mg = clean["margin"].sort("symbol", "session")
    d = mg.with_columns(
        dm=pl.col("margin_balance").diff().over("symbol"),
        ds=pl.col("short_balance").diff().over("symbol"),
    ).drop_nulls("dm")
    assert (d["dm"] == d["margin_buy"] - d["margin_sell"]).all()
    assert (d["ds"] == d["short_sell"] - d["short_cover"]).all()
    assert (mg["margin_balance"] % 1000 == 0).all()


def test_financials_are_dupont_consistent_and_published_before_the_deadline(clean, sm):
    fin = clean["financials"]
    assert fin.height > 0
    lag = (fin["available_date"] - fin["period_end"]).dt.total_days()
    assert lag.min() >= 20 and lag.max() <= 90
    deadline = {
        dt.date(2015, 3, 31): dt.date(2015, 5, 15),
        dt.date(2015, 6, 30): dt.date(2015, 8, 14),
        dt.date(2014, 12, 31): dt.date(2015, 3, 31),
    }
    for row in fin.iter_rows(named=True):  # a few dozen rows
        assert row["available_date"] <= deadline[row["period_end"]]
        assert row["session"] == calendar.session_on_or_after([row["available_date"]])[0]
    net_margin = fin["net_income"] / fin["revenue"]
    turnover = fin["revenue"] / fin["total_assets"]
    multiplier = fin["total_assets"] / fin["total_equity"]
    roe = fin["net_income"] / fin["total_equity"]
    assert np.allclose(roe, net_margin * turnover * multiplier)
    assert net_margin.is_between(-0.2, 0.4).all()
    assert turnover.is_between(0.005, 0.6).all() and multiplier.is_between(1.2, 20).all()
    # the true value exposure at the period end drives the net margin
    exp = sm.truth(dt.date(2015, 6, 30), dt.date(2015, 6, 30)).exposures
    q2 = fin.filter(pl.col("period_end") == dt.date(2015, 6, 30)).join(exp, on="symbol")
    assert np.corrcoef(q2["value"], q2["net_income"] / q2["revenue"])[0, 1] > 0.7


def test_us_rows_map_to_the_next_tw_session_and_lead_the_market(sm):
    us = sm.tables("2012-01-02", "2013-12-31", ["us_market", "market_indicators"])
    bars = us["us_market"]
    assert set(bars["symbol"]) == set(US_PROXIES)
    mapped = calendar.session_after(bars["ny_date"].to_numpy())
    assert np.array_equal(mapped, bars["session"].to_numpy().astype("datetime64[D]"))
    spy = (
        bars.filter(pl.col("symbol") == "SPY")
        .with_columns(ret=pl.col("close").pct_change())
        .group_by("session")
        .agg(pl.col("ret").sum())
    )
    taiex = us["market_indicators"].select("session", tw=pl.col("taiex_close").pct_change())
    j = taiex.join(spy, on="session").drop_nulls()
    assert np.corrcoef(j["tw"], j["ret"])[0, 1] > 0.2


def test_news_is_timestamped_in_utc_and_mapped_to_the_taipei_session(raw):
    news = raw["news"]
    taipei_day = news["published_at"].dt.convert_time_zone("Asia/Taipei").dt.date()
    mapped = calendar.session_on_or_after(taipei_day.to_numpy())
    assert np.array_equal(mapped, news["session"].to_numpy().astype("datetime64[D]"))
    assert news["symbol"].is_null().any() and news["symbol"].is_not_null().any()
    assert news["title"].str.contains(r"[\u4e00-\u9fff]").any()
    assert news["title"].str.contains(r"^[A-Za-z]").any()


def test_headline_tone_follows_retail_crowding(sm):
    news = sm.tables("2013-01-02", "2014-12-31", ["news"])["news"].drop_nulls("symbol")
    exp = sm.truth("2013-01-02", "2014-12-31").exposures
    j = news.join(exp, on=["session", "symbol"])
    euphoric = j.filter(
        pl.col("title").str.contains("暴增|創新高|漲停|喊進|surge|pile into|upgrade")
    )
    fearful = j.filter(pl.col("title").str.contains("重挫|崩跌|跌停|恐慌|plunge|dump|Panic"))
    # sentiment is contrarian (= −crowding): euphoric headlines sit on crowded, low-sentiment names
    assert euphoric["sentiment"].mean() < fearful["sentiment"].mean() - 0.5


def test_indicators_are_noisy_but_follow_the_regime(sm):
    ind = sm.tables("2010-01-04", "2017-12-29", ["market_indicators"])["market_indicators"]
    reg = sm.truth("2010-01-04", "2017-12-29").regimes
    by = (
        ind.join(reg, on="session")
        .group_by("regime")
        .agg(
            pl.col("vixtwn").mean(),
            pl.col("put_call_ratio").mean(),
            pl.col("tx_foreign_net_oi").mean(),
        )
    )
    v = dict(zip(by["regime"], by["vixtwn"], strict=True))
    pc = dict(zip(by["regime"], by["put_call_ratio"], strict=True))
    assert v["bull"] < v["chop"] < v["panic"]
    assert pc["bull"] < pc["panic"]
    assert (ind["vixtwn"] > 0).all() and (ind["margin_total"] > 0).all()


# ------------------------------------------------------------------------------------ structure


def test_regimes_persist_and_loadings_switch_by_regime(sm):
    t = sm.truth("2010-01-04", "2017-12-29")
    reg = t.regimes["regime"].to_list()
    assert set(reg) == {"bull", "chop", "panic"}
    stays = Counter()
    runs = Counter()
    for a, b in zip(reg, reg[1:], strict=False):
        stays[a] += a == b
        runs[a] += 1
    assert stays["bull"] / runs["bull"] > 0.95 and stays["panic"] / runs["panic"] > 0.85
    lo = {r["regime"]: r for r in t.loadings.iter_rows(named=True)}
    assert lo["bull"]["chip"] > 0.001 and abs(lo["chop"]["chip"]) < 0.0005
    assert lo["panic"]["sentiment"] > max(lo["panic"]["chip"], lo["panic"]["value"])


def test_true_exposures_predict_next_returns_with_regime_dependent_ic(sm):
    """Daily cross-sectional IC of the true exposures with the realized next return: chip works
    in the bull (≈0.08) and not in chop, sentiment dominates the panic, value is steady."""
    t = sm.truth("2010-01-04", "2017-12-29")
    df = t.exposures.join(t.forward_returns, on=["session", "symbol"]).join(t.regimes, on="session")
    ic = (
        df.drop_nulls("ret_next")
        .group_by("session", "regime")
        .agg(
            pl.corr(k, "ret_next", method="spearman").alias(k)
            for k in ("chip", "sentiment", "value")
        )
        .group_by("regime")
        .agg(pl.col("chip", "sentiment", "value").mean(), pl.len())
    )
    by = {r["regime"]: r for r in ic.iter_rows(named=True)}
    assert min(r["len"] for r in by.values()) >= 100
    assert 0.04 < by["bull"]["chip"] < 0.15
    assert abs(by["chop"]["chip"]) < 0.03
    assert by["panic"]["sentiment"] > 0.05
    assert by["panic"]["sentiment"] > by["panic"]["chip"] + 0.03
    assert all(0.0 < r["value"] < 0.08 for r in by.values() if r["regime"] != "panic")


def test_campaign_branches_buy_near_vwap_and_follow_the_chip_exposure(raw, truth):
    px = (
        raw["daily_prices"]
        .unique(["session", "symbol"])
        .with_columns(vwap=pl.col("turnover_twd") / pl.col("volume_shares"))
    )
    camp = raw["broker_flows"].join(truth.campaign_brokers, on=["symbol", "broker_id"])
    j = camp.join(px, on=["session", "symbol"]).filter(pl.col("buy_shares") > 0)
    j = j.filter(pl.col("volume_shares") > 0, pl.col("low") > 0, pl.col("high") < 1e4)
    rel = (j["avg_buy_price"] / j["vwap"] - 1).abs()
    assert rel.quantile(0.95) < 0.003
    # the average cost of a campaign (Σ p·q / Σ q) equals its VWAP-weighted cost
    cost = j.group_by("symbol", "broker_id").agg(
        lac=(pl.col("avg_buy_price") * pl.col("buy_shares")).sum() / pl.col("buy_shares").sum(),
        vw=(pl.col("vwap") * pl.col("buy_shares")).sum() / pl.col("buy_shares").sum(),
    )
    assert ((cost["lac"] / cost["vw"] - 1).abs() < 0.002).all()
    net = (
        camp.group_by("session", "symbol")
        .agg(net=(pl.col("buy_shares") - pl.col("sell_shares")).sum())
        .join(px.select("session", "symbol", "volume_shares"), on=["session", "symbol"])
        .join(truth.exposures, on=["session", "symbol"])
    )
    assert np.corrcoef(net["net"] / net["volume_shares"], net["chip"])[0, 1] > 0.8


def test_foreign_investors_net_buying_correlates_with_chip(clean, clean_sm):
    exp = clean_sm.truth(START, END).exposures
    f = (
        clean["institutional_flows"]
        .filter(pl.col("investor") == "Foreign_Investor")
        .join(clean["daily_prices"], on=["session", "symbol"])
        .join(exp, on=["session", "symbol"])
    )
    ratio = (f["buy_shares"] - f["sell_shares"]) / f["volume_shares"]
    assert np.corrcoef(ratio, f["chip"])[0, 1] > 0.5


def test_broker_flows_have_about_twenty_distinct_branches_per_symbol_day(raw):
    bf = raw["broker_flows"]
    per = bf.group_by("session", "symbol").agg(
        rows=pl.len(), distinct=pl.col("broker_id").n_unique()
    )
    assert (per["rows"] == per["distinct"]).all()
    assert 15 <= per["rows"].mean() <= 24
    assert (bf["buy_shares"] >= 0).all() and (bf["sell_shares"] >= 0).all()
    assert ((bf["buy_shares"] > 0) == bf["avg_buy_price"].is_not_null()).all()


# ------------------------------------------------------------------------------------ faults


def _deadline(period_end: dt.date) -> dt.date:
    return {
        3: dt.date(period_end.year, 5, 15),
        6: dt.date(period_end.year, 8, 14),
        9: dt.date(period_end.year, 11, 14),
        12: dt.date(period_end.year + 1, 3, 31),
    }[period_end.month]


def _detect(raw: dict[str, pl.DataFrame], info: pl.DataFrame, prior: dict[str, float]) -> Counter:
    """An independent, minimal cleaner following the fault contract word by word."""
    found: Counter = Counter()
    px = raw["daily_prices"]
    for day in set(calendar.sessions(START, END)) - set(px["session"]):
        found[(day, "daily_prices", None, "missing_session")] += 1
    for table in ("daily_prices", "institutional_flows", "margin"):
        dup = raw[table].group_by(raw[table].columns).len().filter(pl.col("len") > 1)
        for row in dup.iter_rows(named=True):
            found[(row["session"], table, row["symbol"], "duplicate")] += row["len"] - 1
    fl = raw["institutional_flows"].filter((pl.col("buy_shares") < 0) | (pl.col("sell_shares") < 0))
    for row in fl.iter_rows(named=True):
        found[(row["session"], "institutional_flows", row["symbol"], "negative_volume")] += 1

    ex = set(
        zip(raw["corporate_actions"]["symbol"], raw["corporate_actions"]["ex_date"], strict=True)
    )
    first = _sessions_since_listing(info)
    last = dict(prior)
    for row in px.unique(maintain_order=True).sort("symbol", "session").iter_rows(named=True):
        sym, day = row["symbol"], row["session"]
        prices = [row[c] for c in PRICES]
        if min(prices) <= 0:
            found[(day, "daily_prices", sym, "non_positive_price")] += 1
            continue
        if (
            row["high"] < max(row["open"], row["close"])
            or row["low"] > min(row["open"], row["close"])
            or row["high"] < row["low"]
        ):
            found[(day, "daily_prices", sym, "ohlc_inconsistent")] += 1
            continue
        if row["volume_shares"] < 0:
            found[(day, "daily_prices", sym, "negative_volume")] += 1
            continue
        idx = int(calendar.session_index([day])[0])
        ref = last.get(sym)
        if ref is not None and (sym, day) not in ex and idx - first[sym] >= 5:
            pct = float(market.limit_pct([day])[0])
            lo = ref * (1 - pct) - float(market.tick_size(ref * (1 - pct)))
            hi = ref * (1 + pct) + float(market.tick_size(ref * (1 + pct)))
            if not all(lo <= p <= hi for p in prices):
                found[(day, "daily_prices", sym, "limit_breach")] += 1
                continue
        last[sym] = row["close"]

    for row in raw["financials"].iter_rows(named=True):
        key = (row["session"], "financials", row["symbol"])
        if row["available_date"] is None:
            found[(*key, "missing_available_date")] += 1
        elif row["available_date"] <= row["period_end"]:
            found[(*key, "financials_date_before_period_end")] += 1
        elif row["available_date"] > _deadline(row["period_end"]):
            found[(*key, "late_filing")] += 1
    return found


def test_planted_faults_are_exactly_what_the_contract_detects(sm, clean_sm, raw, truth):
    """Every kind is planted in an 84-session window, and a cleaner that follows the contract
    finds exactly the planted rows: nothing missed, no false alarm (e.g. a genuine move right
    after a rejected print or a dropped session never looks like a limit breach)."""
    assert set(truth.faults["kind"]) == ALL_KINDS
    before = clean_sm.tables(
        calendar.shift_session(START, -20), calendar.shift_session(START, -1), ["daily_prices"]
    )["daily_prices"].sort("session")
    prior = dict(before.group_by("symbol").agg(pl.col("close").last()).iter_rows())
    found = _detect(raw, sm.stock_info(), prior)
    planted = Counter(truth.faults.iter_rows())
    assert found == planted


def test_faults_off_keeps_the_world_and_removes_only_the_faulty_rows(raw, clean, truth, clean_sm):
    assert clean_sm.truth(START, END).faults.is_empty()
    assert clean_sm.truth(START, END).exposures.equals(truth.exposures)
    bad = truth.faults.filter(pl.col("table") == "daily_prices", pl.col("symbol").is_not_null())
    keys = ["session", "symbol"]
    kept = (
        raw["daily_prices"].unique(maintain_order=True).join(bad.select(keys), on=keys, how="anti")
    )
    same = clean["daily_prices"].join(bad.select(keys), on=keys, how="anti")
    missing = truth.faults.filter(pl.col("kind") == "missing_session")["session"]
    assert kept.equals(same.filter(~pl.col("session").is_in(missing.implode())))


def test_every_fault_kind_appears_in_every_60_session_window(sm):
    """Row-level kinds and dated financial kinds: in every window of 60 sessions. Missing
    publication dates land on the filing deadlines (the cleaner dates them there): every
    deadline session holds one."""
    start, end = dt.date(2012, 1, 2), dt.date(2013, 12, 31)
    faults = sm.truth(start, end).faults
    idx = calendar.session_index(faults["session"].to_numpy())
    sessions = calendar.session_index(
        np.array(calendar.sessions(start, end), dtype="datetime64[D]")
    )
    for kind in ALL_KINDS - {"missing_available_date"}:
        have = np.unique(idx[(faults["kind"] == kind).to_numpy()])
        for a in sessions[: len(sessions) - 59]:
            assert ((have >= a) & (have < a + 60)).any(), (kind, a)
    deadlines = [
        dt.date(2012, 5, 15),
        dt.date(2012, 8, 14),
        dt.date(2012, 11, 14),
        dt.date(2013, 4, 1),
        dt.date(2013, 5, 15),
    ]  # 2013-03-31 is a Sunday
    missing = set(faults.filter(pl.col("kind") == "missing_available_date")["session"])
    assert set(deadlines) <= missing
    rows = sm.tables(start, end, ["daily_prices"])["daily_prices"].height
    assert faults.filter(pl.col("kind") == "limit_breach").height < 0.01 * rows  # rare


# ------------------------------------------------------------------------------------ ticks


def test_ticks_reproduce_the_daily_bar(clean_sm, clean):
    day = dt.date(2015, 6, 10)
    ticks = clean_sm.ticks(day)
    assert ticks.schema["ts"] == pl.Datetime("us", "UTC")
    assert ticks["ts"].is_sorted()
    local = ticks["ts"].dt.convert_time_zone("Asia/Taipei")
    assert (local.dt.time() >= dt.time(9, 0)).all() and (local.dt.time() <= dt.time(13, 30)).all()
    assert (local.dt.date() == day).all()
    agg = ticks.group_by("symbol", maintain_order=True).agg(
        volume=pl.col("volume").sum(),
        first=pl.col("price").first(),
        last=pl.col("price").last(),
        lo=pl.col("price").min(),
        hi=pl.col("price").max(),
    )
    bars = clean["daily_prices"].filter(pl.col("session") == day).join(agg, on="symbol")
    assert bars.height == clean["daily_prices"].filter(pl.col("session") == day).height
    assert (bars["volume"] == bars["volume_shares"]).all()
    assert (bars["first"] == bars["open"]).all() and (bars["last"] == bars["close"]).all()
    assert (bars["lo"] == bars["low"]).all() and (bars["hi"] == bars["high"]).all()
    p = ticks["price"].to_numpy()
    assert np.array_equal(market.round_to_tick(p), p)
    assert (ticks["bid"] < ticks["ask"]).all()
    assert ((ticks["price"] == ticks["bid"]) | (ticks["price"] == ticks["ask"])).all()
    assert set(ticks["side"].unique()) == {-1, 1}
    assert ticks["is_big"].any()
    assert ticks.filter(pl.col("is_big"))["volume"].min() >= 50_000
    subset = clean_sm.ticks(day, symbols=bars["symbol"][:3].to_list())
    assert subset.equals(ticks.filter(pl.col("symbol").is_in(bars["symbol"][:3].implode())))


def test_big_orders_lean_with_the_days_campaign(clean_sm, clean):
    truth = clean_sm.truth(START, END)
    bf = clean["broker_flows"].join(truth.campaign_brokers, on=["symbol", "broker_id"])
    camp = bf.group_by("session", "symbol").agg(
        net=(pl.col("buy_shares") - pl.col("sell_shares")).sum()
    )
    agree = []
    for day in calendar.sessions(dt.date(2015, 6, 1), dt.date(2015, 6, 12)):
        big = (
            clean_sm.ticks(day)
            .filter(pl.col("is_big"))
            .group_by("symbol")
            .agg(big_net=(pl.col("side").cast(pl.Int64) * pl.col("volume")).sum(), n=pl.len())
            .filter(pl.col("n") >= 5)
        )
        j = big.join(camp.filter(pl.col("session") == day), on="symbol").filter(pl.col("net") != 0)
        agree += (np.sign(j["big_net"]) == np.sign(j["net"])).to_list()
    assert len(agree) >= 30
    assert np.mean(agree) > 0.7
