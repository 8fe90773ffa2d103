"""Point-in-time alignment of the cleaned tables into one panel row per (session, listed symbol)
(SPEC §4): prices with bounded carry-forward, institutional flows (null when unreported), margin,
as-of fundamentals with TTM sums, market indicators and US proxy returns.

Every value on the row for session D comes from input rows with ``session <= D`` (and, for
fundamentals, ``available_date <= D``). A symbol is on the panel on D iff
``listed_date <= D < delisted_date`` (``delisted_date`` = first day it no longer trades; see
``cleaning.listed_on``).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.cleaning import listed_on
from quant_genesis_dagster.domain.tables import conform, polars_schema
from quant_genesis_dagster.domain.warehouse import models
from quant_genesis_dagster.errors import QGError

PANEL_SCHEMA = polars_schema(models.AlignedPanel)

#: Panel flow column → the institutional investor types it nets.
INVESTOR_GROUPS: dict[str, tuple[str, ...]] = {
    "foreign_net": ("Foreign_Investor", "Foreign_Dealer_Self"),
    "trust_net": ("Investment_Trust",),
    "dealer_net": ("Dealer_self", "Dealer_Hedging"),
}
_MARGIN_COLS = models.MARGIN_COLUMNS
_FLOW_ITEMS = models.FINANCIAL_FLOW_ITEMS
#: Price columns carried forward over a suspension (flagged by stale_sessions) ...
_CARRIED_COLS = ("close", "close_adj", "vwap_adj")
#: ... and those that only exist on a day with a bar.
_BAR_ONLY_COLS = (
    "high_adj",
    "low_adj",
    "volume_shares",
    "turnover_twd",
    "limit_up",
    "limit_down",
)
_INDICATOR_COLS = ("taiex_close", "vixtwn", "put_call_ratio", "tx_foreign_net_oi", "margin_total")


def _positions(dates: pl.Series) -> pl.Series:
    """Session position in the XTAI calendar (the inputs here are sessions)."""
    arr = calendar.session_array()
    pos = np.searchsorted(arr, np.asarray(dates.to_numpy(), dtype="datetime64[D]"))
    return pl.Series(pos.astype(np.int64), dtype=pl.Int64)


def _unique_on(df: pl.DataFrame, key: list[str], what: str) -> None:
    dup = df.filter(pl.struct(key).is_duplicated())
    if dup.height:
        r = dup.row(0, named=True)
        where = " ".join(str(r[k]) for k in key)
        raise QGError(f"{what}: several rows for {where}; pass cleaned rows (one per key)")


def _null_aware_sum(e: pl.Expr) -> pl.Expr:
    """Sum, but null when there are no values or any value is null (unknown, not zero)."""
    return pl.when((e.len() > 0) & (e.null_count() == 0)).then(e.sum())


def _asof(left: pl.DataFrame, right: pl.DataFrame, left_on: str, right_on: str) -> pl.DataFrame:
    """Per-symbol backward as-of join (right rows dated <= the left row), keeping left's order."""
    return (
        left.with_row_index("_ord")
        .sort(left_on)
        .join_asof(
            right.sort(right_on),
            left_on=left_on,
            right_on=right_on,
            by="symbol",
            strategy="backward",
            check_sortedness=False,
        )
        .sort("_ord")
        .drop("_ord")
    )


def _grid(sessions: list[dt.date], stock_info: pl.DataFrame) -> pl.DataFrame:
    info = conform(stock_info, models.RawStockInfo, what="stock_info")
    _unique_on(info, ["symbol"], "stock_info")
    days = pl.DataFrame({"session": sorted(set(sessions))}, schema={"session": pl.Date})
    grid = (
        days.join(info, how="cross")
        .filter(listed_on())
        .select("session", "symbol", "market", "industry")
        .sort("session", "symbol")
    )
    return grid.with_columns(_pos=_positions(grid["session"]))


def _prices(grid: pl.DataFrame, prices: pl.DataFrame, max_carry: int) -> pl.DataFrame:
    p = conform(prices, models.CleanedPrices, what="cleaned_prices")
    _unique_on(p, ["session", "symbol"], "cleaned_prices")
    p = p.sort("symbol", "session")
    p = p.with_columns(_bar_pos=_positions(p["session"]))
    # ret_1d of a bar: against the previous bar if that one is still carried on the prior session
    gap = pl.col("_bar_pos") - pl.col("_bar_pos").shift(1).over("symbol")
    p = p.with_columns(
        _ret=pl.when(gap <= max_carry + 1).then(
            pl.col("close_adj") / pl.col("close_adj").shift(1).over("symbol") - 1
        )
    )
    bars = p.select(
        "symbol",
        pl.col("session").alias("_bar_session"),
        "_bar_pos",
        "_ret",
        *[pl.col(c).alias(f"_b_{c}") for c in (*_CARRIED_COLS, *_BAR_ONLY_COLS)],
    )
    out = _asof(grid, bars, "session", "_bar_session")
    stale = pl.col("_pos") - pl.col("_bar_pos")
    fresh = stale == 0
    carried = stale <= max_carry
    return out.with_columns(
        has_bar=fresh.fill_null(False),
        stale_sessions=pl.when(carried).then(stale).cast(pl.Int32),
        ret_1d=pl.when(fresh).then("_ret"),
        # close-type prices carry forward; the day's range, volume and limit state only exist
        # on a day with a bar
        **{c: pl.when(carried).then(f"_b_{c}") for c in _CARRIED_COLS},
        **{c: pl.when(fresh).then(f"_b_{c}") for c in _BAR_ONLY_COLS},
    )


def _flows(inst_flows: pl.DataFrame) -> pl.DataFrame:
    f = conform(inst_flows, models.RawInstitutionalFlows, what="institutional_flows")
    _unique_on(f, ["session", "symbol", "investor"], "institutional_flows")
    known = [i for group in INVESTOR_GROUPS.values() for i in group]
    unknown = f.filter(~pl.col("investor").is_in(known))
    if unknown.height:
        raise QGError(
            f"institutional_flows: unknown investor {unknown['investor'][0]!r} "
            f"({unknown['symbol'][0]} {unknown['session'][0]}); expected one of {', '.join(known)}"
        )
    net = pl.col("buy_shares") - pl.col("sell_shares")
    return f.group_by("session", "symbol").agg(
        *[
            _null_aware_sum(net.filter(pl.col("investor").is_in(list(group)))).alias(col)
            for col, group in INVESTOR_GROUPS.items()
        ],
        _null_aware_sum(net).alias("inst_net"),
    )


def _fundamentals(financials: pl.DataFrame) -> pl.DataFrame:
    """Fundamentals state per (symbol, event date): for every date on which a statement of the
    symbol became available, what was known by then (versions available by the event, the
    latest version of each period, the latest period, TTM over four consecutive quarters)."""
    fin = conform(financials, models.RawFinancials, what="financials")
    if fin["available_date"].null_count():
        raise QGError("financials: available_date is null; clean the financials first")
    _unique_on(fin, ["symbol", "period_end", "available_date"], "financials")
    fin = fin.with_columns(
        _q=pl.col("period_end").dt.year().cast(pl.Int64) * 4
        + (pl.col("period_end").dt.month().cast(pl.Int64) - 1) // 3
    )
    events = fin.select("symbol", pl.col("available_date").alias("_event")).unique()
    known = events.join(fin, on="symbol").filter(pl.col("available_date") <= pl.col("_event"))
    # the newest version of each period known at the event (restatements replace earlier ones)
    known = known.filter(
        pl.col("available_date") == pl.col("available_date").max().over("symbol", "_event", "_q")
    )
    latest_q = pl.col("_q").max().over("symbol", "_event")
    # sorted so every float sum adds the quarters in the same order (bit-reproducible)
    window = known.filter(pl.col("_q") > latest_q - 4).sort("symbol", "_event", "_q")
    complete = (pl.len() == 4) & (pl.col("_q").n_unique() == 4)
    return window.group_by("symbol", "_event", maintain_order=True).agg(
        *[
            pl.when(complete).then(_null_aware_sum(pl.col(c))).alias(f"{c}_ttm")
            for c in _FLOW_ITEMS
        ],
        *[pl.col(c).sort_by("_q").last() for c in ("total_assets", "total_equity")],
        pl.col("period_end").sort_by("_q").last().alias("fin_period_end"),
        pl.col("available_date").sort_by("_q").last().alias("fin_available_date"),
    )


def _us_returns(us_market: pl.DataFrame) -> pl.DataFrame:
    us = conform(us_market, models.RawUsMarket, what="us_market")
    _unique_on(us, ["ny_date", "symbol"], "us_market")
    us = us.filter(pl.col("symbol").is_in(list(models.US_PROXIES))).sort("symbol", "ny_date")
    us = us.with_columns(_ret=pl.col("close") / pl.col("close").shift(1).over("symbol") - 1)
    # several NY sessions map to one TW session across a TW holiday: compound them
    comp = us.group_by("session", "symbol", maintain_order=True).agg(
        pl.when(pl.col("_ret").null_count() == 0)
        .then((1 + pl.col("_ret")).product() - 1)
        .alias("_ret")
    )
    out = pl.DataFrame(schema={"session": pl.Date})
    for i, ticker in enumerate(models.US_PROXIES):
        one = comp.filter(pl.col("symbol") == ticker).select(
            "session", pl.col("_ret").alias(f"us_{ticker.lower()}_ret")
        )
        out = one if i == 0 else out.join(one, on="session", how="full", coalesce=True)
    return out


def align_panel(
    sessions: list[dt.date],
    stock_info: pl.DataFrame,
    prices: pl.DataFrame,
    inst_flows: pl.DataFrame,
    margin: pl.DataFrame,
    financials: pl.DataFrame,
    indicators: pl.DataFrame,
    us_market: pl.DataFrame,
    *,
    max_carry_sessions: int = 5,
) -> pl.DataFrame:
    """The aligned panel (``polars_schema(models.AlignedPanel)``) for ``sessions``.

    Inputs are cleaned frames. ``prices`` (cleaned_prices rows) must include at least
    ``max_carry_sessions + 1`` sessions before the first session, and ``us_market`` a row before
    the first session's NY dates, so carry-forward and returns work at the range start;
    ``financials`` must include every statement available by the first session (all history is
    fine). Bars are carried forward at most ``max_carry_sessions`` sessions (``stale_sessions``
    says how far; volume, range and limit flags are null on a carried row); beyond that all price
    columns and ``stale_sessions`` are null. ``ret_1d`` exists on fresh bars whose previous bar
    is still carried on the previous session. Unreported flows are null, not zero.
    """
    if max_carry_sessions < 0:
        raise QGError(f"max_carry_sessions={max_carry_sessions}; use 0 or more")
    if not sessions:
        return pl.DataFrame(schema=PANEL_SCHEMA)
    grid = _grid(sessions, stock_info)
    panel = _prices(grid, prices, max_carry_sessions)

    panel = panel.join(_flows(inst_flows), on=["session", "symbol"], how="left")

    mg = conform(margin, models.RawMargin, what="margin").select("session", "symbol", *_MARGIN_COLS)
    _unique_on(mg, ["session", "symbol"], "margin")
    panel = panel.join(mg, on=["session", "symbol"], how="left")

    panel = _asof(panel, _fundamentals(financials), "session", "_event")

    ind = conform(indicators, models.RawMarketIndicators, what="market_indicators")
    _unique_on(ind, ["session"], "market_indicators")
    panel = panel.join(ind, on="session", how="left")

    panel = panel.join(_us_returns(us_market), on="session", how="left")
    return conform(panel, models.AlignedPanel).sort("session", "symbol")


# --------------------------------------------------------------------------------------------
# asset-check helpers
# --------------------------------------------------------------------------------------------


def check_no_future_fundamentals(panel: pl.DataFrame) -> tuple[bool, dict]:
    """No panel row uses a statement published after its session."""
    bad = panel.filter(pl.col("fin_available_date") > pl.col("session"))
    examples = [
        {
            "session": r["session"].isoformat(),
            "symbol": r["symbol"],
            "fin_available_date": r["fin_available_date"].isoformat(),
        }
        for r in bad.head(5).iter_rows(named=True)
    ]
    return bad.height == 0, {"rows": panel.height, "violations": bad.height, "examples": examples}


def coverage(panel: pl.DataFrame) -> pl.DataFrame:
    """Per session: listed symbols, symbols with a fresh bar, and their ratio (``coverage``)."""
    return (
        panel.group_by("session")
        .agg(listed=pl.len(), fresh=pl.col("has_bar").sum())
        .with_columns(coverage=pl.col("fresh") / pl.col("listed"))
        .sort("session")
    )


def check_coverage(panel: pl.DataFrame, minimum: float) -> tuple[bool, dict]:
    """Every session has at least ``minimum`` (0..1) of its listed symbols with a fresh bar."""
    cov = coverage(panel)
    low = cov.filter(pl.col("coverage") < minimum)
    return low.height == 0, {
        "sessions": cov.height,
        "min_coverage": cov["coverage"].min() if cov.height else None,
        "sessions_below": [d.isoformat() for d in low["session"].head(10)],
    }
