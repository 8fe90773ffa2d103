"""Cleaning of raw vendor tables (SPEC §4): validate, adjust for corporate actions, and record
every fault as a quarantine row with a machine-readable reason.

Pure functions: polars frames in, a :class:`Cleaned` (valid rows + quarantine rows) out.

Price rows are checked in this fixed order; a row failing several checks gets one quarantine row
with the first reason that applies (:data:`PRICE_REASON_ORDER`):

1. ``duplicate`` — an exact copy of an earlier row (one copy is kept);
2. ``conflicting_duplicate`` — several different rows for one (session, symbol): all rejected;
3. ``unknown_symbol`` — symbol not in stock_info, or session outside [listed_date, delisted_date);
4. ``non_positive_price`` — an open/high/low/close that is <= 0, null or NaN;
5. ``ohlc_inconsistent`` — high < max(open, close), low > min(open, close) or high < low;
6. ``negative_volume`` — volume null or < 0, or a negative turnover or trade count;
7. ``limit_breach`` — a price outside the daily limit band around the last *valid* close.

Decisions (documented here because other modules rely on them):

* **Delisting boundary**: ``delisted_date`` is the first day the symbol no longer trades, so a
  symbol is listed on session ``s`` iff ``listed_date <= s < delisted_date`` (or never delisted).
* **Limit band on ex-dates**: instead of skipping the check (SPEC §4 allows either), an ex-date
  bar is checked against the band around the ex-right *reference price*
  ``(prev_close - cash_dividend) / ((1 + stock_dividend_ratio) * split_ratio)`` — the exchange
  sets that day's limits the same way — so a bad print on an ex-date is still caught (and cannot
  become the anchor that makes every later bar look like a breach). The same applies to the
  first bar after a suspension that spanned one ex-date; after two or more ex-dates in one
  suspension the bar is not checked. ``limit_up``/``limit_down`` use the same reference.
* **First bar without history**: a symbol's first bar with no prior row is checked against the
  band around its own VWAP (turnover / volume), which a 10x price spike does not move.
* **No limit** in the first five sessions after listing (``sessions_since_listing`` 0..4).
* **Late financials**: a filing is late when its available_date falls after the first XTAI
  session on or after the regulatory deadline (a deadline on a holiday moves to the next
  business day).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import calendar, market
from quant_genesis_dagster.domain.tables import RAW_SCHEMAS, conform, polars_schema
from quant_genesis_dagster.domain.warehouse import models
from quant_genesis_dagster.errors import QGError

QUARANTINE_SCHEMA = polars_schema(models.Quarantine)
CLEANED_PRICES_SCHEMA = polars_schema(models.CleanedPrices)

# quarantine reasons (the planted-fault kinds of the sample market use the same strings)
MISSING_SESSION = "missing_session"
DUPLICATE = "duplicate"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
UNKNOWN_SYMBOL = "unknown_symbol"
NON_POSITIVE_PRICE = "non_positive_price"
OHLC_INCONSISTENT = "ohlc_inconsistent"
NEGATIVE_VOLUME = "negative_volume"
LIMIT_BREACH = "limit_breach"
FINANCIALS_DATE_BEFORE_PERIOD_END = "financials_date_before_period_end"
MISSING_AVAILABLE_DATE = "missing_available_date"
LATE_FILING = "late_filing"

PRICE_REASON_ORDER: tuple[str, ...] = (
    DUPLICATE,
    CONFLICTING_DUPLICATE,
    UNKNOWN_SYMBOL,
    NON_POSITIVE_PRICE,
    OHLC_INCONSISTENT,
    NEGATIVE_VOLUME,
    LIMIT_BREACH,
)

# quarantine actions
REJECTED = "rejected"
CORRECTED = "corrected"
FLAGGED = "flagged"

#: Each pass of the limit-breach fixed point settles at least the next row of every run of
#: consecutive suspect bars, so this allows a run of 19 bad sessions before giving up.
MAX_LIMIT_PASSES = 20
_OHLC = ("open", "high", "low", "close")
_EPS = 1e-6  # price comparison tolerance (prices are tick-rounded to 0.01 at most)
_NO_DATE = dt.date(1900, 1, 1)
#: What a limit band was built around (quarantine detail ``reference_kind``).
_REFERENCE_KINDS = ("vwap", "last_valid_close", "ex_right_reference")


@dataclass(frozen=True)
class Cleaned:
    """Result of every cleaner."""

    data: pl.DataFrame  #: valid rows, in the table's cleaned schema
    #: ``polars_schema(models.Quarantine)``; ``detail`` is JSON: ``{"row": <raw row>, ...context}``
    quarantine: pl.DataFrame


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def _normalize(raw: pl.DataFrame, model: type[models.Base], what: str) -> pl.DataFrame:
    """Conform to the model's columns and turn float NaN into null (a NaN price is a missing one)."""
    df = conform(raw, model, what=what)
    return df.with_columns(
        [pl.col(c).fill_nan(None) for c, t in df.schema.items() if t == pl.Float64]
    )


def _first_reason(rules: list[tuple[pl.Expr, str]]) -> pl.Expr:
    """The reason of the first rule whose condition holds (null conditions count as false)."""
    expr = pl.when(rules[0][0]).then(pl.lit(rules[0][1]))
    for cond, reason in rules[1:]:
        expr = expr.when(cond).then(pl.lit(reason))
    return expr.otherwise(pl.lit(None, pl.String))


def _duplicate_rules(data_cols: list[str], key_cols: list[str]) -> list[tuple[pl.Expr, str]]:
    """Exact copies after the first → duplicate; several distinct rows for one key → conflict.

    The key must be a function of the data columns (exact copies share their key). A key has
    several distinct rows exactly when it has more rows than any one of its rows has exact
    copies: two row counts over window groups (polars' fast path), not a per-group expression
    over ~one million tiny groups (8x slower on a day of broker rows)."""
    first = pl.struct(data_cols).is_first_distinct()
    conflict = pl.len().over(key_cols) > pl.len().over(data_cols)
    return [(~first, DUPLICATE), (conflict, CONFLICTING_DUPLICATE)]


def _quarantine(
    df: pl.DataFrame, table: str, action: str, row_cols: list[str] | None, **context: pl.Expr
) -> pl.DataFrame:
    """Quarantine rows for ``df`` (which has a ``_reason`` column), in the session of the raw
    row; detail = JSON of the raw row (``row_cols``, under ``"row"``) plus named context."""
    symbol = pl.col("symbol") if "symbol" in df.columns else pl.lit(None, pl.String)
    fields = [pl.struct(row_cols).alias("row")] if row_cols else []
    detail = pl.struct(*fields, *[e.alias(k) for k, e in context.items()])
    return df.select(
        pl.col("session"),
        pl.lit(table).alias("table_name"),
        symbol.alias("symbol"),
        pl.col("_reason").alias("reason"),
        pl.lit(action).alias("action"),
        detail.struct.json_encode().alias("detail"),
    ).cast(QUARANTINE_SCHEMA)


def _concat_quarantine(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    return pl.concat(frames).sort(
        ["session", "table_name", "symbol", "reason", "detail"], nulls_last=False
    )


def _session_positions(dates: pl.Series | np.ndarray) -> np.ndarray:
    """Position of each date in the XTAI session array (a non-session maps to the next session)."""
    arr = calendar.session_array()
    d = np.asarray(dates, dtype="datetime64[D]")
    return np.searchsorted(arr, d, side="left").astype(np.int64)


def listing_positions(listed_dates: pl.Series) -> np.ndarray:
    """Session position of each listing day; dates before the calendar starts get a negative
    position estimated from the weekdays between them and HISTORY_START (the calendar knows no
    earlier sessions), so long-listed names never look newly listed."""
    d = np.asarray(listed_dates.to_numpy(), dtype="datetime64[D]")
    start = np.datetime64(calendar.HISTORY_START, "D")
    before = np.where(d < start, np.busday_count(np.minimum(d, start), start), 0)
    return _session_positions(d) - before


def _stock_info(stock_info: pl.DataFrame) -> pl.DataFrame:
    info = conform(stock_info, models.RawStockInfo, what="stock_info")
    dup = info.filter(pl.col("symbol").is_duplicated())
    if dup.height:
        raise QGError(
            f"stock_info: symbol {dup['symbol'][0]} appears {dup.height} times; "
            "keep one row per symbol"
        )
    bad = info.filter(pl.col("listed_date").is_null())
    if bad.height:
        raise QGError(f"stock_info: symbol {bad['symbol'][0]} has no listed_date; fill it in")
    return info.with_columns(
        pl.Series("_listing_pos", listing_positions(info["listed_date"]), pl.Int64)
    )


def listed_on(session: pl.Expr | str = "session") -> pl.Expr:
    """True where the symbol (with listed_date/delisted_date columns) is listed on ``session``."""
    s = pl.col(session) if isinstance(session, str) else session
    return (pl.col("listed_date") <= s) & (
        pl.col("delisted_date").is_null() | (s < pl.col("delisted_date"))
    )


# --------------------------------------------------------------------------------------------
# prices
# --------------------------------------------------------------------------------------------


def _prepare_actions(actions: pl.DataFrame) -> pl.DataFrame:
    """Validated corporate actions, one row per (symbol, ex_date): exact repeats of a row count
    once; several different events on one day combine (dividends add, splits multiply)."""
    a = _normalize(actions, models.RawCorporateActions, "corporate_actions")
    bad = a.filter(
        pl.col("ex_date").is_null()
        | pl.col("cash_dividend").is_null()
        | (pl.col("cash_dividend") < 0)
        | pl.col("stock_dividend_ratio").is_null()
        | (pl.col("stock_dividend_ratio") < 0)
        | pl.col("split_ratio").is_null()
        | (pl.col("split_ratio") <= 0)
    )
    if bad.height:
        r = bad.row(0, named=True)
        raise QGError(
            f"corporate_actions: {r['symbol']} ex_date {r['ex_date']} has cash_dividend="
            f"{r['cash_dividend']}, stock_dividend_ratio={r['stock_dividend_ratio']}, "
            f"split_ratio={r['split_ratio']}; dividends must be >= 0 and split_ratio > 0"
        )
    cols = ["symbol", "ex_date", "cash_dividend", "stock_dividend_ratio", "split_ratio"]
    return (
        a.select(cols)
        .unique()
        .sort(cols)  # a fixed summation order whatever the input order
        .group_by("symbol", "ex_date", maintain_order=True)
        .agg(
            pl.col("cash_dividend").sum(),
            pl.col("stock_dividend_ratio").sum(),
            pl.col("split_ratio").product(),
        )
        .sort("symbol", "ex_date")
    )


def _prepare_prior(prior: pl.DataFrame, first_session: dt.date) -> pl.DataFrame:
    p = conform(prior, models.CleanedPrices, what="prior cleaned_prices")
    late = p.filter(pl.col("session") >= first_session)
    if late.height:
        raise QGError(
            f"prior cleaned_prices: row {late['symbol'][0]} {late['session'][0]} is not before the "
            f"first session cleaned ({first_session}); pass only rows before it"
        )
    p = p.sort("symbol", "session").group_by("symbol", maintain_order=True).last()
    bad = p.filter(~(pl.col("close") > 0) | ~(pl.col("adj_factor") > 0) | pl.col("close").is_nan())
    if bad.height:
        raise QGError(
            f"prior cleaned_prices: {bad['symbol'][0]} {bad['session'][0]} has a non-positive "
            "close or adj_factor; re-clean that session"
        )
    return p.select("symbol", "session", "close", "adj_factor")


def _missing_sessions(
    raw: pl.DataFrame, info: pl.DataFrame, sessions: list[dt.date]
) -> pl.DataFrame:
    """Open sessions with no price row at all while at least one symbol was listed."""
    present = raw.select("session").unique()
    missing = pl.DataFrame({"session": sessions}, schema={"session": pl.Date}).join(
        present, on="session", how="anti"
    )
    if not missing.height:
        return missing.with_columns(n=pl.lit(0, pl.Int64))
    d = missing["session"].to_numpy()
    listed = np.sort(info["listed_date"].to_numpy())
    delisted = np.sort(info["delisted_date"].drop_nulls().to_numpy())
    n = np.searchsorted(listed, d, side="right") - np.searchsorted(delisted, d, side="right")
    return missing.with_columns(n=pl.Series(n, dtype=pl.Int64)).filter(pl.col("n") > 0)


def _limit_fixed_point(work: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accepted mask over ``work`` (seed rows from ``prior`` + candidate bars, sorted by symbol
    and session) after rejecting limit breaches, the reference price each row was checked
    against (NaN: not checked) and which kind of reference that was.

    The reference is the last *accepted* close — ex-right adjusted when one ex-date lies between
    that close and the bar (module docstring). A bar with no accepted close before it (a symbol's
    first bar when there is no prior row) is checked against its own VWAP (turnover / volume),
    which a price spike leaves unchanged; otherwise a spike there would become the anchor and
    every later bar would look like a breach. Row i's status depends only on earlier rows of its
    symbol, so the recursion has exactly one fixed point (the sequential answer) and Jacobi
    iteration from "all accepted" reaches it; each pass settles at least one more row of every
    run of suspect bars.
    """
    is_seed = work["_seed"].to_numpy()
    checkable = (~is_seed) & (
        work["sessions_since_listing"].to_numpy() >= (market.NO_LIMIT_SESSIONS_AFTER_LISTING)
    )
    pct = market.limit_pct(work["session"].to_numpy())
    day_vwap = work["_day_vwap"].to_numpy().astype(float)
    ev_cnt = work["_ev_cnt"].to_numpy()
    ev_cash = work["_ev_cash"].to_numpy().astype(float)
    ev_div = work["_ev_div"].to_numpy().astype(float)
    lo_price = np.minimum(work["low"].to_numpy(), work["open"].to_numpy())
    lo_price = np.minimum(lo_price, work["close"].to_numpy())
    hi_price = np.maximum(work["high"].to_numpy(), work["open"].to_numpy())
    hi_price = np.maximum(hi_price, work["close"].to_numpy())
    accepted = np.ones(work.height, dtype=bool)
    for _ in range(MAX_LIMIT_PASSES):
        prev = work.with_columns(_acc=pl.Series(accepted)).select(
            pl.when("_acc").then(c).shift(1).forward_fill().over("symbol").alias(c)
            for c in ("close", "_ev_cnt")
        )
        pc = prev["close"].to_numpy().astype(float)  # null → NaN
        events_between = ev_cnt - prev["_ev_cnt"].fill_null(0).to_numpy()
        cases = [np.isnan(pc), events_between == 0, events_between == 1]
        # two or more ex-dates while suspended: not checked
        ref = np.select(cases, [day_vwap, pc, (pc - ev_cash) / ev_div], np.nan)
        ref = np.where(checkable & (ref > 0), ref, np.nan)
        upper = ref * (1 + pct)
        lower = ref * (1 - pct)
        upper = upper + market.tick_size(np.nan_to_num(upper))
        lower = lower - market.tick_size(np.nan_to_num(lower))
        # comparisons with NaN are false: unchecked rows stay accepted
        new = ~((hi_price > upper + _EPS) | (lo_price < lower - _EPS))
        if np.array_equal(new, accepted):
            kind = np.select(cases, list(_REFERENCE_KINDS), "")
            return accepted, ref, np.where(np.isnan(ref), "", kind)
        changed = new != accepted
        accepted = new
    i = int(np.flatnonzero(changed)[0])
    raise QGError(
        f"daily_prices: limit-breach check did not settle after {MAX_LIMIT_PASSES} passes for "
        f"{work['symbol'][i]} around {work['session'][i]} (a lasting price level shift: a split "
        "or dividend missing from corporate_actions?); fix the actions or the prices"
    )


def _last_events(work: pl.DataFrame, acts: pl.DataFrame) -> pl.DataFrame:
    """Per work row (by ``_w``): how many of the symbol's ex-dates fall on or before its session,
    and the cash dividend and share multiplier ``(1 + stock_dividend_ratio) * split_ratio`` of the
    latest one."""
    ev = acts.select(
        "symbol",
        "ex_date",
        _ev_cnt=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("symbol"),
        _ev_cash=pl.col("cash_dividend"),
        _ev_div=(1 + pl.col("stock_dividend_ratio")) * pl.col("split_ratio"),
    )
    return (
        work.select("_w", "symbol", "session")
        .sort("session")
        .join_asof(
            ev.sort("ex_date"),
            left_on="session",
            right_on="ex_date",
            by="symbol",
            strategy="backward",
            check_sortedness=False,
        )
        .sort("_w")
        .select("_w", pl.col("_ev_cnt").fill_null(0), "_ev_cash", "_ev_div")
    )


def _adj_factors(
    accepted: pl.DataFrame, acts: pl.DataFrame, prior: pl.DataFrame, last_session: dt.date
) -> pl.DataFrame:
    """adj_factor per accepted row: prior's factor times the per-event factors
    ``reference / prev_close`` of later ex-dates up to the row's session, multiplied in date
    order so one call over a range and calls session by session give identical floats."""
    symbols = accepted.select("symbol").unique()
    seed_session = prior.select("symbol", pl.col("session").alias("_seed_session"))
    ev = (
        acts.join(symbols, on="symbol", how="semi")
        .join(seed_session, on="symbol", how="left")
        .filter(
            (pl.col("ex_date") <= last_session)
            & (pl.col("_seed_session").is_null() | (pl.col("ex_date") > pl.col("_seed_session")))
        )
        .sort("ex_date")
        .join_asof(
            accepted.select("symbol", "session", pl.col("close").alias("_pc")).sort("session"),
            left_on="ex_date",
            right_on="session",
            by="symbol",
            strategy="backward",
            allow_exact_matches=False,  # the close *before* the ex-date
            check_sortedness=False,
        )
        .with_columns(
            _ref=(pl.col("_pc") - pl.col("cash_dividend"))
            / ((1 + pl.col("stock_dividend_ratio")) * pl.col("split_ratio"))
        )
    )
    bad = ev.filter(pl.col("_ref") <= 0)
    if bad.height:
        r = bad.row(0, named=True)
        raise QGError(
            f"corporate_actions: {r['symbol']} ex_date {r['ex_date']} gives a non-positive "
            f"reference price (prev close {r['_pc']}, cash_dividend {r['cash_dividend']}); "
            "fix the row"
        )
    # An event before the symbol's first valid bar has no previous close: factor 1.
    ev = ev.select(
        "symbol",
        pl.col("ex_date").alias("_d"),
        (pl.col("_ref") / pl.col("_pc")).fill_null(1.0).alias("_f"),
    )
    seeds = prior.select("symbol", pl.col("session").alias("_d"), pl.col("adj_factor").alias("_f"))
    unseeded = symbols.join(prior, on="symbol", how="anti").select(
        "symbol", pl.lit(_NO_DATE).alias("_d"), pl.lit(1.0).alias("_f")
    )
    seq = (
        pl.concat([seeds, unseeded, ev])
        .sort("symbol", "_d")
        .with_columns(adj_factor=pl.col("_f").cum_prod().over("symbol"))
        .select("symbol", "_d", "adj_factor")
        .sort("_d")
    )
    return (
        accepted.sort("session")
        .join_asof(
            seq,
            left_on="session",
            right_on="_d",
            by="symbol",
            strategy="backward",
            check_sortedness=False,
        )
        .drop("_d")
        .sort("symbol", "session")
    )


def clean_prices(
    raw: pl.DataFrame,
    actions: pl.DataFrame,
    stock_info: pl.DataFrame,
    prior: pl.DataFrame,
    sessions: list[dt.date],
) -> Cleaned:
    """Validate and adjust raw daily bars for ``sessions``.

    ``raw``: raw daily_prices rows of those sessions. ``actions``: raw corporate_actions; must
    include every ex-date after each symbol's ``prior`` row up to the last session (passing all
    history is fine: events on or before a symbol's prior row are already in its adj_factor).
    ``prior``: the last cleaned row per symbol before the first session (may be empty); it
    carries the last valid close and adj_factor in, so cleaning a range in one call or session
    by session gives identical results. Returns cleaned_prices rows and quarantine rows (see the
    module docstring for the checks and their order).
    """
    if not sessions:
        raise QGError("clean_prices: no sessions given; pass the XTAI sessions to clean")
    sessions = sorted(set(sessions))
    not_sessions = [d for d in sessions if calendar.session_index([d])[0] < 0]
    if not_sessions:
        raise QGError(f"clean_prices: {not_sessions[0]} is not an XTAI session")
    raw_cols = list(RAW_SCHEMAS["daily_prices"])
    raw = _normalize(raw, models.RawDailyPrices, "raw daily_prices")
    stray = raw.filter(~pl.col("session").is_in(sessions) | pl.col("session").is_null())
    if stray.height:
        raise QGError(
            f"raw daily_prices: row {stray['symbol'][0]} {stray['session'][0]} is outside the "
            f"sessions being cleaned ({sessions[0]}..{sessions[-1]}); pass matching rows"
        )
    info = _stock_info(stock_info)
    acts = _prepare_actions(actions)
    prior = _prepare_prior(prior, sessions[0])

    o, h, lo, c = (pl.col(x) for x in _OHLC)
    df = (
        raw.with_row_index("_i")
        .with_columns(pl.col("_i").cast(pl.Int64))
        .join(
            info.select("symbol", "listed_date", "delisted_date", "_listing_pos"),
            on="symbol",
            how="left",
        )
        .sort("_i")
        .with_columns(
            sessions_since_listing=(
                pl.Series(_session_positions(raw["session"].to_numpy()), dtype=pl.Int64)
                - pl.col("_listing_pos")
            ).cast(pl.Int32)
        )
    )
    rules = [
        *_duplicate_rules(raw_cols, ["session", "symbol"]),
        (~listed_on().fill_null(False), UNKNOWN_SYMBOL),
        (pl.any_horizontal([x.is_null() | (x <= 0) for x in (o, h, lo, c)]), NON_POSITIVE_PRICE),
        (
            (h < pl.max_horizontal(o, c)) | (lo > pl.min_horizontal(o, c)) | (h < lo),
            OHLC_INCONSISTENT,
        ),
        (
            pl.col("volume_shares").is_null()
            | (pl.col("volume_shares") < 0)
            | (pl.col("turnover_twd") < 0)
            | (pl.col("trades") < 0),
            NEGATIVE_VOLUME,
        ),
    ]
    df = df.with_columns(_reason=_first_reason(rules))

    # limit breaches: fixed point over seeds + intrinsically valid bars
    day_vwap = pl.when((pl.col("turnover_twd") > 0) & (pl.col("volume_shares") > 0)).then(
        pl.col("turnover_twd") / pl.col("volume_shares")
    )
    cand = df.filter(pl.col("_reason").is_null())
    work = (
        pl.concat(
            [
                prior.select(
                    "symbol",
                    "session",
                    *[pl.col("close").alias(x) for x in _OHLC],
                    pl.lit(None, pl.Int64).alias("_i"),
                    pl.lit(0, pl.Int32).alias("sessions_since_listing"),
                    pl.lit(True).alias("_seed"),
                    pl.lit(None, pl.Float64).alias("_day_vwap"),
                ),
                cand.select(
                    "symbol",
                    "session",
                    *_OHLC,
                    "_i",
                    "sessions_since_listing",
                    pl.lit(False).alias("_seed"),
                    _day_vwap=day_vwap,
                ),
            ]
        )
        .sort("symbol", "session")
        .with_row_index("_w")
    )
    work = work.join(_last_events(work, acts), on="_w", how="left")
    accepted, reference, kind = _limit_fixed_point(work)
    work = work.with_columns(
        _acc=pl.Series(accepted),
        _ref=pl.Series(reference),
        _ref_kind=pl.Series(kind, dtype=pl.String),
    )
    breach_i = work.filter(~pl.col("_acc"))["_i"]
    df = df.with_columns(
        _reason=pl.when(pl.col("_i").is_in(breach_i.implode()))
        .then(pl.lit(LIMIT_BREACH))
        .otherwise(pl.col("_reason"))
    )

    # accepted bars (+ seeds): prev_close, adjustment, limit flags
    acc = (
        work.filter("_acc")
        .select("symbol", "session", "_i", "_seed", "close")
        .with_columns(
            prev_close=pl.col("close").shift(1).over("symbol"),
        )
    )
    acc = (
        _adj_factors(acc, acts, prior, sessions[-1])
        .with_columns(
            _limit_ref=pl.col("prev_close")
            * pl.col("adj_factor")
            / pl.col("adj_factor").shift(1).over("symbol")
        )
        .filter(~pl.col("_seed"))
    )
    ev_days = acts.select("symbol", pl.col("ex_date").alias("session"), _ex=pl.lit(True))
    bars = (
        df.join(acc.select("_i", "prev_close", "adj_factor", "_limit_ref"), on="_i", how="inner")
        .join(ev_days, on=["symbol", "session"], how="left")
        .sort("symbol", "session")
    )
    ref = bars["_limit_ref"].to_numpy().astype(float)
    up, down = market.limit_prices(np.nan_to_num(ref), market.limit_pct(bars["session"].to_numpy()))
    has_limit = pl.col("_limit_ref").is_not_null() & (
        pl.col("sessions_since_listing") >= market.NO_LIMIT_SESSIONS_AFTER_LISTING
    )
    data = bars.with_columns(
        vwap=day_vwap.fill_null(pl.col("close")),
        is_ex_date=pl.col("_ex").fill_null(False),
        limit_up=has_limit & (pl.col("close") >= pl.Series(up) - _EPS),
        limit_down=has_limit & (pl.col("close") <= pl.Series(down) + _EPS),
    ).with_columns([(pl.col(x) / pl.col("adj_factor")).alias(f"{x}_adj") for x in (*_OHLC, "vwap")])
    data = conform(data, models.CleanedPrices).sort("session", "symbol")

    intrinsic = df.filter(pl.col("_reason").is_not_null() & (pl.col("_reason") != LIMIT_BREACH))
    breaches = df.filter(pl.col("_reason") == LIMIT_BREACH).join(
        work.select("_i", "_ref", "_ref_kind"), on="_i", how="left"
    )
    q_rows = _quarantine(intrinsic, "daily_prices", REJECTED, raw_cols)
    q_breaches = _quarantine(
        breaches,
        "daily_prices",
        REJECTED,
        raw_cols,
        reference=pl.col("_ref"),
        reference_kind=pl.col("_ref_kind"),
    )
    gaps = _missing_sessions(raw, info, sessions).with_columns(_reason=pl.lit(MISSING_SESSION))
    q_gaps = _quarantine(gaps, "daily_prices", FLAGGED, None, listed_symbols=pl.col("n"))
    return Cleaned(data=data, quarantine=_concat_quarantine([q_rows, q_breaches, q_gaps]))


# --------------------------------------------------------------------------------------------
# other daily tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RecordRules:
    model: type[models.Base]
    key: tuple[str, ...]  # natural key: several distinct rows for it are a conflict
    counts: tuple[str, ...] = ()  # share counts / volumes that must not be negative
    # prices or levels that must be > 0 when present; the optional second name is a share count
    # that must be > 0 for the price to be expected (an average buy price of a branch that bought
    # nothing may legitimately be 0)
    prices: tuple[tuple[str, str | None], ...] = ()
    required: tuple[str, ...] = ()  # prices that must be present


_RECORD_RULES: dict[str, _RecordRules] = {
    "institutional_flows": _RecordRules(
        models.RawInstitutionalFlows,
        ("session", "symbol", "investor"),
        counts=("buy_shares", "sell_shares"),
    ),
    "margin": _RecordRules(
        models.RawMargin,
        ("session", "symbol"),
        counts=models.MARGIN_COLUMNS,
    ),
    "broker_flows": _RecordRules(
        models.RawBrokerFlows,
        ("session", "symbol", "broker_id"),
        counts=("buy_shares", "sell_shares"),
        prices=(("avg_buy_price", "buy_shares"), ("avg_sell_price", "sell_shares")),
    ),
    "market_indicators": _RecordRules(
        models.RawMarketIndicators,
        ("session",),
        prices=(
            ("taiex_close", None),
            ("vixtwn", None),
            ("put_call_ratio", None),
            ("margin_total", None),
        ),
    ),
    "us_market": _RecordRules(
        models.RawUsMarket,
        ("ny_date", "symbol"),
        counts=("volume",),
        prices=(("open", None), ("high", None), ("low", None), ("close", None)),
        required=("close",),
    ),
}

#: Reason order of :func:`clean_records` (first applicable wins).
RECORD_REASON_ORDER: tuple[str, ...] = (
    DUPLICATE,
    CONFLICTING_DUPLICATE,
    NON_POSITIVE_PRICE,
    NEGATIVE_VOLUME,
)


def clean_records(name: str, raw: pl.DataFrame) -> Cleaned:
    """Generic cleaner for institutional_flows, margin, broker_flows, market_indicators and
    us_market: exact duplicates (one copy kept), conflicting rows for one natural key (all
    rejected), non-positive prices/levels, negative share counts. Output: ``RAW_SCHEMAS[name]``
    sorted by the natural key."""
    rules = _RECORD_RULES.get(name)
    if rules is None:
        raise QGError(
            f"clean_records: unknown table {name!r}; expected one of {', '.join(_RECORD_RULES)}"
        )
    cols = list(RAW_SCHEMAS[name])
    df = _normalize(raw, rules.model, f"raw {name}")
    bad_price = pl.lit(False)
    for price, guard in rules.prices:
        cond = pl.col(price) <= 0
        if guard is not None:
            cond = cond & (pl.col(guard) > 0)
        bad_price = bad_price | cond.fill_null(False)
    for price in rules.required:
        bad_price = bad_price | pl.col(price).is_null()
    negative = pl.lit(False)
    for count in rules.counts:
        negative = negative | (pl.col(count) < 0).fill_null(False)
    df = df.with_columns(
        _reason=_first_reason(
            [
                *_duplicate_rules(cols, list(rules.key)),
                (bad_price, NON_POSITIVE_PRICE),
                (negative, NEGATIVE_VOLUME),
            ]
        )
    )
    data = df.filter(pl.col("_reason").is_null()).select(cols).sort(list(rules.key))
    q = _quarantine(df.filter(pl.col("_reason").is_not_null()), name, REJECTED, cols)
    return Cleaned(data=data, quarantine=_concat_quarantine([q]))


# --------------------------------------------------------------------------------------------
# financials
# --------------------------------------------------------------------------------------------


def _deadline_expr(period_end: pl.Expr) -> pl.Expr:
    q = (period_end.dt.month() - 1) // 3  # 0..3
    year = period_end.dt.year().cast(pl.Int32) + (q == 3).cast(pl.Int32)
    month = pl.when(q == 0).then(5).when(q == 1).then(8).when(q == 2).then(11).otherwise(3)
    day = pl.when(q == 0).then(15).when(q == 1).then(14).when(q == 2).then(14).otherwise(31)
    return pl.date(year, month, day)


def regulatory_deadline(period_end: pl.Expr | pl.Series) -> pl.Expr | pl.Series:
    """Statutory publication deadline of the quarter containing ``period_end``: Q1 May 15,
    Q2 Aug 14, Q3 Nov 14, Q4 (annual report) Mar 31 of the next year. Expr in → Expr out,
    Series in → Series out."""
    if isinstance(period_end, pl.Series):
        name = period_end.name
        frame = pl.DataFrame({"p": period_end.cast(pl.Date)})
        return frame.select(_deadline_expr(pl.col("p")).alias(name)).to_series()
    return _deadline_expr(period_end)


#: Reason order of :func:`clean_financials` (first applicable wins; the last three are exclusive).
FINANCIALS_REASON_ORDER: tuple[str, ...] = (
    DUPLICATE,
    CONFLICTING_DUPLICATE,
    MISSING_AVAILABLE_DATE,
    FINANCIALS_DATE_BEFORE_PERIOD_END,
    LATE_FILING,
)


def clean_financials(raw: pl.DataFrame) -> Cleaned:
    """Financial statements with a trustworthy ``available_date`` (never null, never on or
    before the period end) and ``session`` = the first XTAI session on or after it.

    A missing date or one on/before the period end (a vendor stamping the period end — look-ahead)
    is replaced by the regulatory deadline (``corrected``); a filing after the deadline keeps its
    real date (``flagged`` as late). Exact copies are rejected (one kept); several different rows
    for one (symbol, period_end, available_date) are all rejected. Output: RAW_SCHEMAS["financials"]
    sorted by symbol, period_end, available_date.

    A corrected row moves to a later session than its raw row (its new publication session);
    its quarantine row stays in the raw row's session, like every quarantine row.
    """
    cols = list(RAW_SCHEMAS["financials"])
    df = _normalize(raw, models.RawFinancials, "raw financials")
    bad = df.filter(pl.col("symbol").is_null() | pl.col("period_end").is_null())
    if bad.height:
        raise QGError(
            f"raw financials: a row of {bad['symbol'][0]} has no period_end; every statement "
            "needs its symbol and period_end"
        )
    deadline = regulatory_deadline(pl.col("period_end"))
    avail = pl.col("available_date")
    df = df.with_columns(_deadline=deadline)
    df = df.with_columns(
        _deadline_session=pl.Series(
            calendar.session_on_or_after(df["_deadline"].to_numpy()), dtype=pl.Date
        ),
        _corrected=pl.when(avail.is_null() | (avail <= pl.col("period_end")))
        .then(pl.col("_deadline"))
        .otherwise(avail),
    )
    df = df.with_columns(
        _reason=_first_reason(
            [
                *_duplicate_rules(cols, ["symbol", "period_end", "_corrected"]),
                (avail.is_null(), MISSING_AVAILABLE_DATE),
                (avail <= pl.col("period_end"), FINANCIALS_DATE_BEFORE_PERIOD_END),
                (avail > pl.col("_deadline_session"), LATE_FILING),
            ]
        )
    )
    df = df.with_columns(
        _session=pl.Series(calendar.session_on_or_after(df["_corrected"].to_numpy()), dtype=pl.Date)
    )
    beyond = df.filter(pl.col("_session").is_null())
    if beyond.height:
        raise QGError(
            f"raw financials: {beyond['symbol'][0]} period {beyond['period_end'][0]} becomes "
            f"public on {beyond['_corrected'][0]}, beyond the XTAI calendar; drop the row"
        )
    reason = pl.col("_reason")
    rejected = reason.is_in([DUPLICATE, CONFLICTING_DUPLICATE]).fill_null(False)
    kept = df.filter(~rejected)
    q_rejected = _quarantine(df.filter(rejected), "financials", REJECTED, cols)
    q_corrected = _quarantine(
        kept.filter(reason.is_in([MISSING_AVAILABLE_DATE, FINANCIALS_DATE_BEFORE_PERIOD_END])),
        "financials",
        CORRECTED,
        cols,
        corrected_available_date=pl.col("_corrected"),
    )
    q_late = _quarantine(
        kept.filter(reason == LATE_FILING),
        "financials",
        FLAGGED,
        cols,
        deadline=pl.col("_deadline"),
    )
    data = (
        kept.with_columns(available_date=pl.col("_corrected"), session=pl.col("_session"))
        .select(cols)
        .sort("symbol", "period_end", "available_date")
    )
    return Cleaned(data=data, quarantine=_concat_quarantine([q_rejected, q_corrected, q_late]))


# --------------------------------------------------------------------------------------------
# asset-check helpers: (passed, details)
# --------------------------------------------------------------------------------------------


def _examples(df: pl.DataFrame, n: int = 5) -> list[dict]:
    return [
        {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in r.items()}
        for r in df.head(n).select("session", "symbol").iter_rows(named=True)
    ]


def check_positive_prices(cleaned: pl.DataFrame) -> tuple[bool, dict]:
    """Every raw and adjusted price and the adj_factor of cleaned_prices is finite and > 0."""
    cols = [*_OHLC, "vwap", "adj_factor", *[f"{c}_adj" for c in (*_OHLC, "vwap")]]
    bad = cleaned.filter(
        pl.any_horizontal(
            [~(pl.col(c) > 0) | pl.col(c).is_null() | ~pl.col(c).is_finite() for c in cols]
        )
    )
    return bad.height == 0, {
        "rows": cleaned.height,
        "violations": bad.height,
        "examples": _examples(bad),
    }


def check_ohlc_consistent(cleaned: pl.DataFrame) -> tuple[bool, dict]:
    """low <= min(open, close) <= max(open, close) <= high on every cleaned bar (raw and adj)."""
    conds = []
    for sfx in ("", "_adj"):
        o, h, lo, c = (pl.col(f"{x}{sfx}") for x in _OHLC)
        # adjusted prices are raw / factor: allow float rounding
        tol = 1e-9 * h.abs()
        conds.append((h < pl.max_horizontal(o, c) - tol) | (lo > pl.min_horizontal(o, c) + tol))
    bad = cleaned.filter(pl.any_horizontal(conds))
    return bad.height == 0, {
        "rows": cleaned.height,
        "violations": bad.height,
        "examples": _examples(bad),
    }
