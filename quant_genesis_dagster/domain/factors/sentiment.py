"""F_S — the sentiment factor (SPEC §5.2): the market fear & greed index and the symbol-level
contrarian components (news tone, margin crowding and changes, short-sale changes), with the
abnormal-move flags the noise filter needs.

Market level (``fear_greed``): five indicators, each scored 0–100 as the percentile rank of
today's value within its trailing ``fg_window`` sessions, oriented so 100 = greed; the index is
their mean (0 = extreme fear; ``ParamSet.t_fear`` is the contrarian-buying threshold).

Symbol level (``sentiment_factors``): retail crowding is read from the margin book relative to
liquidity, short-sellers from the short book, tone from headlines (``factors.news``). The
composite F_S (built in ``standardize``) is contrarian: fear is positive, so crowding and
euphoric news enter with negative weights (``COMPONENTS``).

Noise filter (the notes): an extreme reading (|z| ≥ ``noise_extreme_z``) on a row without an
abnormal price move or volume (``abnormal_move``) is noise and is ignored (``noise_mask``).

Point in time: every value at session D comes from rows with session ≤ D, through the
start-independent windows of ``grid``; given ``FactorSettings.lookback()`` sessions of history
before D, D's values are bit-identical whatever the frame's first session.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from quant_genesis_dagster.domain.factors import grid
from quant_genesis_dagster.domain.params import FactorSettings
from quant_genesis_dagster.errors import QGError

#: Market-wide indicator columns the fear & greed index reads (one value per session).
INDICATOR_COLUMNS: tuple[str, ...] = (
    "taiex_close",
    "vixtwn",
    "put_call_ratio",
    "tx_foreign_net_oi",
    "margin_total",
)
#: Fear & greed component columns, in output order.
FG_COMPONENTS: tuple[str, ...] = (
    "fg_vix_level",
    "fg_vix_slope",
    "fg_put_call",
    "fg_foreign_oi",
    "fg_margin",
)
#: Sessions over which margin and short balance changes are measured.
CHANGE_SESSIONS = 5
PANEL_COLUMNS: tuple[str, ...] = (
    "ret_1d",
    "volume_shares",
    "margin_balance",
    "short_balance",
    *INDICATOR_COLUMNS,
)
NEWS_COLUMNS: tuple[str, ...] = ("session", "symbol", "news_score_sum", "news_count")
#: Output columns and dtypes of ``sentiment_factors``.
OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "symbol": pl.String(),
    "fear_greed": pl.Float64(),
    "market_abnormal": pl.Boolean(),
    "news_sentiment": pl.Float64(),
    "news_count": pl.Int32(),
    "margin_crowding": pl.Float64(),
    "margin_change": pl.Float64(),
    "short_change": pl.Float64(),
    "short_ratio": pl.Float64(),
    "abnormal_move": pl.Boolean(),
    "warmup": pl.Boolean(),
}
OUTPUT_COLUMNS: tuple[str, ...] = tuple(OUTPUT_SCHEMA)

#: Signed weights of the z-scored components in F_S (contrarian: fear is positive). Signs and
#: sizes from the sample market (seed 7, 120 symbols, 500 sessions to 2019-12-31): ρ is the mean
#: daily cross-sectional Spearman correlation of the raw component with the planted sentiment
#: exposure (high = retail fear), asserted in tests/test_sentiment.py. The two book *levels* get
#: full weight, the fast readings half: with these weights F_S (z-scored, noise-filtered) has
#: ρ ≈ 0.93 with the planted exposure.
COMPONENTS: dict[str, float] = {
    # margin balance in days of volume = retail leverage, the crowding a contrarian fades:
    # crowded → greed → negative (ρ ≈ −0.92)
    "margin_crowding": -1.0,
    # 券資比: shorts pile into names retail shuns, and a high ratio is the classic Taiwan
    # short-squeeze / contrarian-buy reading → positive (ρ ≈ +0.99 here, because the sample's
    # margin and short books share their per-name scale; expect far less on real data)
    "short_ratio": 1.0,
    # headline tone is euphoric on crowded names, fearful on shunned ones → negative
    # (ρ ≈ −0.67 on the ~10% of rows with a headline in the news window)
    "news_sentiment": -0.5,
    # margin build-up over CHANGE_SESSIONS = crowding rising → negative (ρ ≈ −0.42)
    "margin_change": -0.5,
    # short build-up = fear rising → positive (ρ ≈ +0.38)
    "short_change": 0.5,
}
#: Components the noise filter applies to: the fast *readings* (headline tone, balance changes)
#: whose extremes are often one-off noise. The book levels (crowding, short ratio) are positions
#: held over weeks and are not filtered.
NOISE_FILTERED: tuple[str, ...] = ("news_sentiment", "margin_change", "short_change")
#: Sentiment z-scores are cross-sectional over the whole market (crowding is not an industry
#: trait); the value family is the industry-neutral one.
INDUSTRY_NEUTRAL = False


# ------------------------------------------------------------------------------ helpers


def _require(df: pl.DataFrame, cols, what: str) -> None:
    for col in cols:
        if col not in df.columns:
            raise QGError(f"{what}: missing column {col!r}; expected {', '.join(cols)}")


def _half(window: int) -> int:
    """Values a window needs before its statistic counts: half of it, at least 2."""
    return max(2, math.ceil(window / 2))


def window_percentile(x: np.ndarray, window: int, min_count: int) -> np.ndarray:
    """Percentile rank (0–100) of each row's value within the last ``window`` rows (itself
    included), per column: ``100 × (below + ½·(ties − 1)) / (n − 1)`` over the ``n`` non-NaN
    values of the window, so the window's minimum scores 0, its maximum 100 and ties share the
    mid rank. NaN where the value is NaN or ``n < min_count`` (at least 2). Exact counts over
    the window only: start-independent."""
    valid = ~np.isnan(x)
    below = np.zeros(x.shape, np.int64)
    ties = np.zeros(x.shape, np.int64)
    count = np.zeros(x.shape, np.int64)
    for k in range(window):  # one vectorized comparison per lag
        prev = grid.lag(x, k)
        ok = ~np.isnan(prev)
        with np.errstate(invalid="ignore"):
            below += ok & (prev < x)
            ties += ok & (prev == x)
        count += ok
    need = max(min_count, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = 100.0 * (below + 0.5 * (ties - 1)) / (count - 1)
    return np.where(valid & (count >= need), pct, np.nan)


def _abnormal(value: np.ndarray, reference: np.ndarray, multiple: float) -> np.ndarray:
    """|value| ≥ multiple × reference with a non-zero move and a known reference (else False)."""
    with np.errstate(invalid="ignore"):
        out = (np.abs(value) >= multiple * reference) & (np.abs(value) > 0)
    return out & ~np.isnan(reference) & ~np.isnan(value)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den where den > 0, else NaN (never inf)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _log(x: np.ndarray) -> np.ndarray:
    """Natural log where x > 0, else NaN (a zero balance has no log, not −inf)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan)


def _series(name: str, values: np.ndarray, dtype=pl.Float64) -> pl.Series:
    if dtype == pl.Float64:
        return pl.Series(name, np.asarray(values, dtype=np.float64), nan_to_null=True)
    return pl.Series(name, values).cast(dtype)


def noise_mask(z: np.ndarray, abnormal: np.ndarray, extreme_z: float) -> np.ndarray:
    """True where a sentiment reading must be ignored as noise: the z-score is extreme
    (|z| ≥ ``extreme_z``) but the row has no abnormal price move or volume to confirm it.
    ``abnormal`` is boolean (or float with NaN = unknown, treated as unconfirmed); NaN z → False
    (nothing to ignore)."""
    z = np.asarray(z, dtype=np.float64)
    a = np.asarray(abnormal)
    confirmed = a.astype(bool) if a.dtype == bool else np.nan_to_num(a.astype(float)) != 0
    with np.errstate(invalid="ignore"):
        extreme = np.abs(z) >= extreme_z
    return extreme & ~np.isnan(z) & ~confirmed


# ------------------------------------------------------------------------------ market level


def _fear_greed_arrays(
    ind: dict[str, np.ndarray], settings: FactorSettings
) -> dict[str, np.ndarray]:
    """The fear & greed columns from (T,) indicator arrays of consecutive sessions."""
    fw, sw = settings.fg_window, settings.vix_slope_window
    need = _half(fw)
    vix = ind["vixtwn"]
    margin = ind["margin_total"]
    # oriented raw readings: larger = greedier
    raw = {
        "fg_vix_level": -vix,  # high volatility = fear
        "fg_vix_slope": -(vix - grid.lag(vix, sw)) / sw,  # VIX points per session, rising = fear
        "fg_put_call": -ind["put_call_ratio"],  # put buying = fear
        "fg_foreign_oi": ind["tx_foreign_net_oi"],  # foreigners net long TX = greed
        # market margin balance growth over the slope window (log), rising = greed
        "fg_margin": _log(_ratio(margin, grid.lag(margin, sw))),
    }
    out = {k: window_percentile(v, fw, need) for k, v in raw.items()}
    n = vix.shape[0]
    warmup = np.arange(n) + 1 < fw
    stacked = np.vstack([out[k] for k in FG_COMPONENTS])
    avail = (~np.isnan(stacked)).sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.where(avail > 0, np.nansum(stacked, axis=0) / np.maximum(avail, 1), np.nan)
    out["fear_greed"] = np.where(warmup, np.nan, mean)
    out["fg_warmup"] = warmup
    taiex = ind["taiex_close"]
    ret = _ratio(taiex, grid.lag(taiex, 1)) - 1.0
    mw = settings.move_window
    ref = grid.lag(grid.rolling_std(ret, mw, min_count=_half(mw)), 1)
    out["market_abnormal"] = _abnormal(ret, ref, settings.abnormal_ret_z)
    return out


def fear_greed(indicators: pl.DataFrame, settings: FactorSettings | None = None) -> pl.DataFrame:
    """The market fear & greed index, one row per session (sorted).

    Input: one row per consecutive XTAI session with ``session`` and ``INDICATOR_COLUMNS``
    (TAIEX close in points, VIXTWN in volatility points, TXO put/call ratio, TX foreign net OI
    in contracts, market margin balance in TWD). Output columns:

    * ``fg_vix_level``, ``fg_vix_slope``, ``fg_put_call``, ``fg_foreign_oi``, ``fg_margin`` —
      component scores 0–100 (100 = greed): the percentile rank (``window_percentile``) of the
      day's reading within the trailing ``fg_window`` sessions, of respectively −VIXTWN,
      −(VIXTWN change over ``vix_slope_window`` sessions), −put/call, foreign net OI, and the log
      change of the market margin balance over ``vix_slope_window`` sessions. Null when the
      reading is missing or the window holds fewer than half its values.
    * ``fear_greed`` — mean of the available components (0 = extreme fear, 100 = extreme
      greed); null in warm-up or without any component.
    * ``fg_warmup`` — fewer than ``fg_window`` sessions of history (the row's own included).
    * ``market_abnormal`` — |TAIEX daily return| ≥ ``abnormal_ret_z`` × the sample std of the
      previous ``move_window`` daily returns (a move that confirms an extreme reading); False
      when the reference is unknown.
    """
    settings = settings or FactorSettings()
    _require(indicators, ("session", *INDICATOR_COLUMNS), "market indicators")
    df = indicators.sort("session")
    g = grid.Grid.of(df.with_columns(symbol=pl.lit("")), what="market indicators")
    ind = {c: g.market(df[c]) for c in INDICATOR_COLUMNS}
    out = _fear_greed_arrays(ind, settings)
    return pl.DataFrame(
        [
            df["session"].cast(pl.Date),
            _series("fear_greed", out["fear_greed"]),
            *[_series(c, out[c]) for c in FG_COMPONENTS],
            _series("fg_warmup", out["fg_warmup"], pl.Boolean),
            _series("market_abnormal", out["market_abnormal"], pl.Boolean),
        ]
    )


# ------------------------------------------------------------------------------ symbol level


def _news_grid(g: grid.Grid, news_daily: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(T, N) Σ score and headline count of the day (0 without a headline); news rows off the
    grid (sessions or symbols not on the panel, or a pair without a panel row) are ignored."""
    _require(news_daily, NEWS_COLUMNS, "news_daily")
    day = (
        news_daily.select(
            pl.col("session").cast(pl.Date),
            pl.col("symbol").cast(pl.String),
            pl.col("news_score_sum").cast(pl.Float64).fill_nan(None).fill_null(0.0),
            pl.col("news_count").cast(pl.Int64),
        )
        .filter(pl.col("symbol").is_not_null() & (pl.col("news_count") > 0))
        .group_by("session", "symbol", maintain_order=True)
        .agg(pl.col("news_score_sum").sum(), pl.col("news_count").sum())
    )
    days = day["session"].to_numpy().astype("datetime64[D]")
    syms = day["symbol"].to_numpy().astype(str)
    t = np.minimum(np.searchsorted(g.sessions, days), g.sessions.size - 1)
    s = np.minimum(np.searchsorted(g.symbols, syms), g.symbols.size - 1)
    on = (g.sessions[t] == days) & (g.symbols[s] == syms) if day.height else np.zeros(0, bool)
    t, s = t[on], s[on]
    on_panel = g.present()[t, s]
    t, s = t[on_panel], s[on_panel]
    score = np.zeros(g.shape)
    count = np.zeros(g.shape, np.int64)
    score[t, s] = day["news_score_sum"].to_numpy()[on][on_panel]
    count[t, s] = day["news_count"].to_numpy()[on][on_panel]
    return score, count


def sentiment_factors(
    panel: pl.DataFrame,
    news_daily: pl.DataFrame,
    settings: FactorSettings | None = None,
    *,
    layout: grid.Grid | None = None,
) -> pl.DataFrame:
    """F_S components, one row per panel row (same order): the rows of
    ``sentiment_components`` (see there for the definitions)."""
    if panel.height == 0:
        _require(panel, ("session", "symbol", *PANEL_COLUMNS), "panel")
        return pl.DataFrame(schema=OUTPUT_SCHEMA)
    return sentiment_components(panel, news_daily, settings, layout=layout).frame()


def sentiment_components(
    panel: pl.DataFrame,
    news_daily: pl.DataFrame,
    settings: FactorSettings | None = None,
    *,
    layout: grid.Grid | None = None,
) -> grid.Components:
    """F_S components on the panel's grid (``OUTPUT_SCHEMA`` columns; ``frame()`` gives the
    rows in panel order).

    ``panel``: aligned-panel rows over consecutive sessions, including the history the windows
    need (``FactorSettings.lookback()`` sessions before the first session used); ``news_daily``:
    ``news.daily_news_sentiment`` rows (session, symbol, news_score_sum, news_count). Columns:

    * ``fear_greed`` (0–100), ``market_abnormal`` — ``fear_greed()`` of the panel's market
      columns, repeated on every row of the session.
    * ``news_sentiment`` — Σ scores / Σ headlines over the last ``news_window`` sessions, in
      [-1, 1] (positive = euphoric); null without a headline. ``news_count`` (Int32) — headlines
      in that window.
    * ``margin_crowding`` — log(margin balance / mean daily volume over the last
      ``move_window`` sessions), both in shares: retail leverage in days of liquidity (log).
      Null without margin data (or a zero balance, or no volume reference).
    * ``margin_change`` / ``short_change`` — (balance − balance ``CHANGE_SESSIONS`` sessions
      earlier) / that mean volume: the build-up in days of volume.
    * ``short_ratio`` — short balance / margin balance (券資比), null when the margin balance is 0.
    * ``abnormal_move`` — |ret_1d| ≥ ``abnormal_ret_z`` × the std of the previous
      ``move_window`` daily returns, or volume ≥ ``abnormal_volume_ratio`` × the mean volume of
      the previous ``move_window`` sessions; False when neither can be established.
    * ``warmup`` — the symbol has fewer than ``move_window`` sessions of history in the frame.

    The volume references need at least half their window; the news window has none.
    """
    settings = settings or FactorSettings()
    _require(panel, ("session", "symbol", *PANEL_COLUMNS), "panel")
    g = layout or grid.Grid.of(panel)

    # market columns per session (first row wins, as Grid.market; gathered once for all five)
    first = np.unique(g.t, return_index=True)[1]
    ind: dict[str, np.ndarray] = {}
    for c in INDICATOR_COLUMNS:
        ind[c] = np.full(g.shape[0], np.nan)
        ind[c][g.t[first]] = panel[c].gather(first).cast(pl.Float64).fill_null(np.nan).to_numpy()
    fg = _fear_greed_arrays(ind, settings)

    score, count = _news_grid(g, news_daily)
    inputs = {
        "ret": g.dense(panel["ret_1d"]),
        "vol": g.dense(panel["volume_shares"]),
        "mb": g.dense(panel["margin_balance"]),
        "sb": g.dense(panel["short_balance"]),
        "present": g.present(),
        "score": score,
        "count": count,
    }
    del score, count
    # every window is per symbol: blocks of symbols keep the temporaries small and in cache
    dense = grid.map_symbol_blocks(_symbol_windows, inputs, settings)
    del inputs

    keys = panel.select(pl.col("session").cast(pl.Date), pl.col("symbol").cast(pl.String))
    return grid.Components(
        grid=g,
        keys=keys,
        schema=pl.Schema(OUTPUT_SCHEMA),
        dense=dense,
        row_columns={
            # market values per session, onto the rows by the session index
            "fear_greed": _series("fear_greed", fg["fear_greed"][g.t]),
            "market_abnormal": _series("market_abnormal", fg["market_abnormal"][g.t], pl.Boolean),
        },
    )


def _symbol_windows(x: dict[str, np.ndarray], settings: FactorSettings) -> dict[str, np.ndarray]:
    """The symbol-level sentiment components of a block of symbols (``sentiment_components``
    defines them) from its (T, b) inputs: ret (daily return), vol (volume), mb / sb (margin and
    short balances), present, score / count (the day's news score sum and headline count)."""
    mw = settings.move_window
    half = _half(mw)
    ret, vol, mb, sb = x["ret"], x["vol"], x["mb"], x["sb"]
    liquidity = grid.rolling_mean(vol, mw, min_count=half)  # shares per session, today included
    ret_ref = grid.lag(grid.rolling_std(ret, mw, min_count=half), 1)
    vol_ref = grid.lag(liquidity, 1)  # mean volume of the previous move_window sessions
    abnormal = _abnormal(ret, ret_ref, settings.abnormal_ret_z) | _abnormal(
        vol, vol_ref, settings.abnormal_volume_ratio
    )
    score_sum, _ = grid.rolling_sum(x["score"], settings.news_window)
    n_news = grid.rolling_int_sum(x["count"], settings.news_window)
    return {
        "news_sentiment": np.where(n_news > 0, score_sum / np.maximum(n_news, 1), np.nan),
        "news_count": n_news.astype(np.int32),
        "margin_crowding": _log(_ratio(mb, liquidity)),  # null for a zero balance
        "margin_change": _ratio(mb - grid.lag(mb, CHANGE_SESSIONS), liquidity),
        "short_change": _ratio(sb - grid.lag(sb, CHANGE_SESSIONS), liquidity),
        "short_ratio": _ratio(sb, mb),
        "abnormal_move": abnormal,
        "warmup": grid.history_count(x["present"], mw) < mw,
    }
