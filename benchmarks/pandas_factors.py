"""The factor stack written in idiomatic pandas: the reference implementation that
``benchmarks.factors`` times against the domain code and checks it agrees with.

Same inputs as the Dagster assets — the main-force daily flows, the aligned panel and the raw
headlines — and the same definitions (the domain modules are the specification: their
docstrings and code), written the way a capable pandas user would: one long frame with a row
per (session, symbol), sorted by symbol then session, that every step adds its columns to;
per-symbol windows with ``groupby("symbol").rolling`` (several columns per call), ``shift``,
``cumsum`` and ``cumcount``; per-day cross sections with ``groupby("session")`` (``quantile``
for both tails in one call, ``transform`` for the moments); market-level series mapped onto the
rows by session. No row loops, and none of the domain functions is called: only constants are
imported (component weights, the noise-filtered components, the lexicon, the settings).

Definitional points mirrored from the domain code:

* windows run over the panel's sessions; a symbol is on the panel on consecutive sessions (one
  listing interval), so per-symbol row windows are session windows (``check_consecutive``);
* the LAC sums p·n in milli-TWD rounded to integers (exact, like the domain's int64 sums);
* "full window" tests count the symbol's rows (its panel history), not its non-null values;
  missing flows and volumes count as 0 in the chip sums, but a day without any flow is not a
  flow day; the sentiment volume mean skips missing volumes;
* z-scores: quantiles with linear interpolation, σ with ddof=1, days with fewer than
  ``min_names`` values are null and a day without dispersion scores 0; value components and
  F_D are demeaned within (session, industry) first;
* the fear & greed warm-up is the frame's first ``fg_window − 1`` sessions (market level).

Outputs keep the frame's row order (symbol, session); the benchmark aligns them with the
stack's (session, symbol) rows outside the timing.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd

from quant_genesis_dagster.domain.factors import chip as chip_def
from quant_genesis_dagster.domain.factors import news as news_def
from quant_genesis_dagster.domain.factors import sentiment as sent_def
from quant_genesis_dagster.domain.factors import value as value_def
from quant_genesis_dagster.domain.model import US_MOVE_COLUMNS
from quant_genesis_dagster.domain.params import DEFAULTS, HORIZONS, FactorSettings, ParamSet

KEYS = ["session", "symbol"]
INDICATORS = ["taiex_close", "vixtwn", "put_call_ratio", "tx_foreign_net_oi", "margin_total"]
FG_COMPONENTS = ["fg_vix_level", "fg_vix_slope", "fg_put_call", "fg_foreign_oi", "fg_margin"]
#: family → (composite column, signed component weights, within industry)
FAMILIES = {
    "chip": ("f_c", chip_def.COMPONENTS, chip_def.INDUSTRY_NEUTRAL),
    "sentiment": ("f_s", sent_def.COMPONENTS, sent_def.INDUSTRY_NEUTRAL),
    "value": ("f_d", value_def.COMPONENTS, value_def.INDUSTRY_NEUTRAL),
}
#: The LAC's p·n products are summed in integer milli-TWD (as the domain's int64 sums).
LAC_SCALE = 1000
EOD_COLUMNS = ["rcnc_close_dev", "rcnc_vol", "sweep_ratio", "liquidity_pressure"]


# ------------------------------------------------------------------------------ helpers


def check_consecutive(panel: pd.DataFrame) -> None:
    """Windows below are per-symbol *row* windows; they equal the domain's *session* windows
    because a symbol is on the panel on consecutive sessions (one listing interval). Raise if
    a symbol skips a panel session (the benchmark checks this once, outside the timing)."""
    pos = panel["session"].rank(method="dense").astype(np.int64)  # session index on the panel
    order = panel.assign(_pos=pos).sort_values(["symbol", "_pos"])
    step = order.groupby("symbol", observed=True)["_pos"].diff()
    if not step.dropna().eq(1).all():
        raise ValueError("a symbol skips panel sessions; session windows != row windows")


def _by_symbol(df: pd.DataFrame):
    return df.groupby("symbol", sort=False, observed=True)


def _rolling(df: pd.DataFrame, cols: list[str], window: int, min_periods: int, how: str):
    """Per-symbol trailing ``window``-row ``how`` of ``cols`` (one groupby-rolling call), on
    the frame's index."""
    r = _by_symbol(df)[cols].rolling(window, min_periods=min_periods)
    return getattr(r, how)().droplevel(0)


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    """num / den where den > 0, else NaN."""
    return (num / den.where(den > 0)).where(den > 0)


def _log(x: pd.Series) -> pd.Series:
    """log(x) where x > 0, else NaN."""
    return np.log(x.where(x > 0))


def _abnormal(value: pd.Series, reference: pd.Series, multiple: float) -> pd.Series:
    """|value| >= multiple × reference with a non-zero value and a known reference."""
    a = value.abs()
    return (a >= multiple * reference) & (a > 0) & reference.notna() & value.notna()


def _half(window: int) -> int:
    return max(2, -(-window // 2))


# ------------------------------------------------------------------------------ the frame


def frame(flows: pd.DataFrame, panel: pd.DataFrame) -> pd.DataFrame:
    """The panel with the day's main-force flows, sorted by symbol then session."""
    cols = ["mf_net", "mf_source", "broker_concentration", "tier_ratio"]
    df = panel.merge(flows[[*KEYS, *cols]], on=KEYS, how="left")
    return df.sort_values(["symbol", "session"], kind="stable", ignore_index=True)


# ------------------------------------------------------------------------------ F_C


def chip_factors(df: pd.DataFrame, s: FactorSettings) -> pd.DataFrame:
    """Adds the chip components (``chip.CHIP_SCHEMA`` columns) to the frame."""
    L, F = s.lac_window, s.flow_window
    history = _by_symbol(df).cumcount() + 1  # the symbol's rows so far = its panel sessions
    df["n"] = df["mf_net"].fillna(0)  # a missing flow counts as 0 in the sums ...
    df["known"] = df["mf_net"].notna().astype(np.int64)  # ... but is not a flow day
    df["v"] = df["volume_shares"].fillna(0)
    price = df["vwap_adj"].fillna(df["close_adj"])
    df["n_lac"] = df["n"].where(price.notna(), 0)  # a flow without a price: out of both sums
    df["pn"] = np.rint(price.fillna(0) * df["n_lac"] * LAC_SCALE)  # integer milli-TWD

    lw = _rolling(df, ["pn", "n_lac", "v", "known"], L, 1, "sum")
    full = history >= L
    material = (lw["n_lac"] > 0) & (lw["n_lac"] >= s.lac_min_net_share * lw["v"])
    ok = full & (lw["known"] > 0) & material
    df["lac"] = ((lw["pn"] / LAC_SCALE) / lw["n_lac"]).where(ok)
    df["lac_status"] = np.select(
        [~full, lw["known"] == 0, material],
        [chip_def.LAC_WARMUP, chip_def.LAC_NO_FLOW, chip_def.LAC_OK],
        chip_def.LAC_IMMATERIAL,
    )
    df["lac_dist"] = df["close_adj"] / df["lac"] - 1.0

    # consecutive net-buy sessions: a run id that steps at every non-buy day, cumsum within it
    buy = df["n"] > 0
    run = (~buy).groupby(df["symbol"], sort=False, observed=True).cumsum()
    streak = buy.groupby([df["symbol"], run], sort=False, observed=True).cumsum()
    df["consec_buy_days"] = streak.clip(upper=s.streak_cap).astype(np.int32)

    fw = _rolling(df, ["n", "v", "known"], F, 1, "sum")
    f_ok = (history >= F) & (fw["known"] > 0) & (fw["v"] > 0)
    df["net_ratio_20d"] = (fw["n"] / fw["v"]).where(f_ok)
    # daily readings: a mean over the window, with at least half a window of values
    means = _rolling(df, ["broker_concentration", "tier_ratio"], F, F // 2, "mean")
    df["broker_concentration_20d"] = means["broker_concentration"]
    df["tier_ratio_20d"] = means["tier_ratio"]
    df[EOD_COLUMNS] = np.nan  # no sidecar aggregates in the benchmark
    df["chip_warmup"] = ~full
    return df


# ------------------------------------------------------------------------------ news


def _alternation(terms) -> str:
    return "|".join(re.escape(t) for t in sorted(terms, key=lambda t: (-len(t), t)))


def _lexicon_patterns() -> tuple[str, str]:
    """(match, strip-leading-negator) regexes of the default lexicon: longest term first,
    English on word boundaries, an optional negator directly before a term."""
    lex = news_def.LEXICON
    zh = _alternation(t for t in lex if not t.isascii())
    en = _alternation(t for t in lex if t.isascii())
    neg_zh, neg_en = _alternation(news_def.NEGATORS_ZH), _alternation(news_def.NEGATORS_EN)
    match = rf"(?:(?:{neg_zh})?(?:{zh}))|(?:\b(?:(?:{neg_en})\s+)?(?:{en})\b)"
    return match, rf"^(?:(?:{neg_zh})|(?:(?:{neg_en})\s+))"


def daily_news_sentiment(headlines: pd.DataFrame) -> pd.DataFrame:
    """Per (session, symbol) with a headline: Σ lexicon scores and the headline count."""
    match, strip = _lexicon_patterns()
    rows = headlines[headlines["title"].str.strip().str.len() > 0]  # null / blank: no headline
    hits = rows["title"].str.lower().str.findall(match).explode()
    tone = hits.map(news_def.LEXICON)
    # a hit not in the lexicon as written is a negated term: the term's tone, reversed
    negated = -hits.str.replace(strip, "", regex=True).map(news_def.LEXICON).fillna(0)
    tone = tone.fillna(negated)
    pos = (tone > 0).groupby(level=0).sum()
    neg = (tone < 0).groupby(level=0).sum()
    score = ((pos - neg) / (pos + neg)).where(pos + neg > 0, 0.0)
    scored = rows[KEYS].assign(score=score)
    return (
        scored[scored["symbol"].notna()]
        .groupby(KEYS, observed=True, sort=True)
        .agg(news_score_sum=("score", "sum"), news_count=("score", "size"))
        .reset_index()
    )


# ------------------------------------------------------------------------------ F_S


def _window_percentile(x: pd.DataFrame, window: int, need: int) -> pd.DataFrame:
    """Percentile rank 0–100 of each value within its trailing window (ties share the mid
    rank; the window's minimum scores 0, its maximum 100); NaN below ``need`` values."""
    rank = x.rolling(window, min_periods=need).rank(method="average")
    count = x.notna().rolling(window, min_periods=1).sum()
    return (100.0 * (rank - 1) / (count - 1)).where(x.notna() & (count >= need))


def fear_greed(df: pd.DataFrame, s: FactorSettings) -> pd.DataFrame:
    """The market fear & greed index per session (sorted), from the market columns that
    repeat on every row of a session."""
    m = df.groupby("session")[INDICATORS].first()
    sw, fw = s.vix_slope_window, s.fg_window
    vix = m["vixtwn"]
    raw = pd.DataFrame(
        {
            "fg_vix_level": -vix,
            "fg_vix_slope": -(vix - vix.shift(sw)) / sw,
            "fg_put_call": -m["put_call_ratio"],
            "fg_foreign_oi": m["tx_foreign_net_oi"],
            "fg_margin": _log(_ratio(m["margin_total"], m["margin_total"].shift(sw))),
        }
    )
    fg = _window_percentile(raw, fw, _half(fw))
    warm = np.arange(len(fg)) + 1 < fw  # the frame's first sessions (market level)
    fg["fear_greed"] = fg[FG_COMPONENTS].mean(axis=1).where(~warm)
    ret = _ratio(m["taiex_close"], m["taiex_close"].shift(1)) - 1.0
    ref = ret.rolling(s.move_window, min_periods=_half(s.move_window)).std().shift(1)
    fg["market_abnormal"] = _abnormal(ret, ref, s.abnormal_ret_z)
    return fg


def sentiment_factors(df: pd.DataFrame, daily_news: pd.DataFrame, s: FactorSettings):
    """Adds the sentiment components (``sentiment.OUTPUT_SCHEMA`` columns) to the frame."""
    news_cols = ["news_score_sum", "news_count"]
    df[news_cols] = df[KEYS].merge(daily_news, on=KEYS, how="left")[news_cols].fillna(0)
    mw = s.move_window
    g = _by_symbol(df)
    liquidity = _rolling(df, ["volume_shares"], mw, _half(mw), "mean")["volume_shares"]
    ret_sd = _rolling(df, ["ret_1d"], mw, _half(mw), "std")["ret_1d"]
    mb, sb = df["margin_balance"], df["short_balance"]
    k = sent_def.CHANGE_SESSIONS
    df["margin_crowding"] = _log(_ratio(mb, liquidity))
    df["margin_change"] = _ratio(mb - g["margin_balance"].shift(k), liquidity)
    df["short_change"] = _ratio(sb - g["short_balance"].shift(k), liquidity)
    df["short_ratio"] = _ratio(sb, mb)

    # references from the previous move_window sessions (today excluded)
    refs = pd.DataFrame({"ret_sd": ret_sd, "liquidity": liquidity})
    refs = refs.groupby(df["symbol"], sort=False, observed=True).shift(1)
    df["abnormal_move"] = _abnormal(df["ret_1d"], refs["ret_sd"], s.abnormal_ret_z) | _abnormal(
        df["volume_shares"], refs["liquidity"], s.abnormal_volume_ratio
    )
    df["sentiment_warmup"] = g.cumcount() + 1 < mw

    window = _rolling(df, news_cols, s.news_window, 1, "sum")
    df["news_sentiment"] = (window["news_score_sum"] / window["news_count"]).where(
        window["news_count"] > 0
    )
    df["news_count"] = window["news_count"].astype(np.int32)

    fg = fear_greed(df, s)
    df["fear_greed"] = df["session"].map(fg["fear_greed"])
    df["market_abnormal"] = df["session"].map(fg["market_abnormal"])
    return df


# ------------------------------------------------------------------------------ F_D


def _div(num: pd.Series, den: pd.Series) -> pd.Series:
    """num / den; NaN when den is 0 or the quotient is not finite."""
    q = num / den
    return q.where((den != 0) & np.isfinite(q))


def value_factors(df: pd.DataFrame, s: FactorSettings) -> pd.DataFrame:
    """Adds the DuPont components (``value.OUTPUT_SCHEMA`` columns) to the frame."""
    rev, ni, pbt = df["revenue_ttm"], df["net_income_ttm"], df["pretax_income_ttm"]
    assets, equity = df["total_assets"], df["total_equity"]
    ebit = pbt + df["interest_expense_ttm"]
    pos_eq = equity > 0  # leverage and ROE are meaningless on a deficit
    df["net_margin"] = _div(ni, rev)
    df["asset_turnover"] = _div(rev, assets)
    df["equity_multiplier"] = _div(assets, equity).where(pos_eq)
    df["roe"] = _div(ni, equity).where(pos_eq)
    df["tax_burden"] = _div(ni, pbt)
    df["interest_burden"] = _div(pbt, ebit)
    df["ebit_margin"] = _div(ebit, rev)
    df["roe_5f"] = (
        df["tax_burden"]
        * df["interest_burden"]
        * df["ebit_margin"]
        * df["asset_turnover"]
        * df["equity_multiplier"]
    )
    k = s.roe_trend_sessions  # about a year of sessions earlier
    before = _by_symbol(df)[["roe", "net_margin"]].shift(k)
    df["roe_trend"] = df["roe"] - before["roe"]
    df["margin_trend"] = df["net_margin"] - before["net_margin"]
    df["negative_equity"] = equity <= 0
    df["has_fundamentals"] = (
        df[["revenue_ttm", "net_income_ttm", "total_assets", "total_equity"]].notna().all(axis=1)
    )
    return df


# ------------------------------------------------------------------------------ z-scores


def standardize(
    x: pd.DataFrame, session: pd.Series, industry: pd.Series, s: FactorSettings, neutral: bool
) -> pd.DataFrame:
    """Per day: (within-industry demeaned), winsorized at the winsor_pct quantiles, z-scored."""
    if neutral or s.industry_neutral:
        x = x - x.groupby([session, industry], observed=True).transform("mean")
    if s.winsor_pct > 0:
        p = s.winsor_pct
        tails = x.groupby(session).quantile([p, 1 - p])  # both tails in one pass
        lo = tails.xs(p, level=-1).loc[session].to_numpy()
        hi = tails.xs(1 - p, level=-1).loc[session].to_numpy()
        x = x.clip(lo, hi)
    by_day = x.groupby(session)
    mean = by_day.transform("mean")
    std = by_day.transform("std")
    n = by_day.transform("count")
    z = ((x - mean) / std).where(std > 1e-12 * np.maximum(mean.abs(), 1.0), 0.0)
    return z.where(x.notna() & (n >= s.min_names))


def zscored_factors(df: pd.DataFrame, s: FactorSettings) -> pd.DataFrame:
    """``models.ZscoredFactors`` columns per row of the frame."""
    session, industry = df["session"], df["industry"]
    out = df[[*KEYS, "industry"]].copy()
    raw = {}
    noise = pd.Series(0, index=df.index, dtype=np.int32)
    for family, (fcol, weights, neutral) in FAMILIES.items():
        z = standardize(df[list(weights)].astype(np.float64), session, industry, s, neutral)
        if family == "sentiment":
            # noise filter: an extreme reading without an abnormal move is set to neutral
            for c in sent_def.NOISE_FILTERED:
                mask = (z[c].abs() >= s.noise_extreme_z) & z[c].notna() & ~df["abnormal_move"]
                z[c] = z[c].mask(mask, 0.0)
                noise += mask.astype(np.int32)
        # the signed weighted mean over the components available on the row
        num = sum(w * z[c].fillna(0.0) for c, w in weights.items())
        den = sum(abs(w) * z[c].notna() for c, w in weights.items())
        raw[fcol] = (num / den).where(den > 0)
        out[[f"z_{c}" for c in weights]] = z.to_numpy()
    # the composites standardized again (F_D within industry)
    for neutral in (False, True):
        cols = [fcol for fcol, _, nt in FAMILIES.values() if nt == neutral]
        if cols:
            x = pd.DataFrame({c: raw[c] for c in cols})
            out[cols] = standardize(x, session, industry, s, neutral).to_numpy()
    out["noise_filtered"] = noise
    out["warmup"] = df["chip_warmup"] | df["sentiment_warmup"]
    return out


# ------------------------------------------------------------------------------ predictions


def predict(zscored: pd.DataFrame, df: pd.DataFrame, params: ParamSet) -> pd.DataFrame:
    """``models.Predictions`` columns per row (``param_version`` left to the caller)."""
    us = df.groupby("session")[list(US_MOVE_COLUMNS)].first().mean(axis=1)
    out = zscored[[*KEYS, "f_c", "f_s", "f_d", "warmup"]].copy()
    b_c, b_s, b_d = params.betas
    out["score"] = (
        b_c * out["f_c"].fillna(0.0) + b_s * out["f_s"].fillna(0.0) + b_d * out["f_d"].fillna(0.0)
    )
    out["us_move"] = out["session"].map(us)
    m = out["us_move"].fillna(0.0)
    excess = np.sign(m) * np.maximum(m.abs() - params.us_threshold, 0.0)
    out["us_adjust"] = params.us_sensitivity * excess
    out["position_scale"] = np.where(m <= -params.us_threshold, params.us_position_cut, 1.0)
    base = out["score"] * params.return_per_score + params.alpha
    for h in HORIZONS:
        out[f"r_pred_{h}d"] = base * h + out["us_adjust"]
    return out


# ------------------------------------------------------------------------------ the stack


def factor_stack(
    flows: pd.DataFrame,
    panel: pd.DataFrame,
    headlines: pd.DataFrame,
    settings: FactorSettings | None = None,
    params: ParamSet = DEFAULTS,
) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """``{"frame": panel rows with every component, "news": daily headline sums, "zscored",
    "predictions"}`` (rows in the frame's symbol, session order) and the seconds per step."""
    s = settings or FactorSettings()
    steps: dict[str, float] = {}
    t = time.perf_counter()
    df = frame(flows, panel)
    steps["frame"] = time.perf_counter() - t
    t = time.perf_counter()
    df = chip_factors(df, s)
    steps["chip"] = time.perf_counter() - t
    t = time.perf_counter()
    daily = daily_news_sentiment(headlines)
    steps["news"] = time.perf_counter() - t
    t = time.perf_counter()
    df = sentiment_factors(df, daily, s)
    steps["sentiment"] = time.perf_counter() - t
    t = time.perf_counter()
    df = value_factors(df, s)
    steps["value"] = time.perf_counter() - t
    t = time.perf_counter()
    z = zscored_factors(df, s)
    steps["zscore"] = time.perf_counter() - t
    t = time.perf_counter()
    p = predict(z, df, params)
    steps["predict"] = time.perf_counter() - t
    return {"frame": df, "news": daily, "zscored": z, "predictions": p}, steps
