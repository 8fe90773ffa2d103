"""Point-in-time inputs of a calibration window, loaded once and sliced per period.

``CalibrationData.build`` takes the daily engine's own tables over the window (as the
``rl_betas`` asset reads them from the warehouse, or as the in-memory factor stack makes them)
and keeps:

* the tables the decision functions read (``model.predict``, ``signals.build_signals``,
  ``portfolio.decide``), sorted by session with a row offset per session, so one period's rows
  are a zero-copy slice;
* the backtest's ``MarketData`` on one (session × symbol) grid of the whole window, so a book
  carried from period to period keeps its symbol layout;
* per-session **market features** of the observation (``FEATURES``), each computed from data
  dated at or before its session: VIXTWN level and 5-session slope, the TAIEX ATR ratio (the
  risk manager's), the regime one-hot (``regime.regime_labels_from_panel``), the cross-sectional
  means of LAC_dist and of the dealer tier ratio, the 20-session mean of the daily
  cross-sectional correlation of F_C and F_S, and per composite the attribution's rolling rank
  IC, 20-session mean factor return and IC half-life (rows dated at their realization session,
  so the row of D reads nothing after D).

The parameters that only the market-risk rules read (``vix_max``, ``atr_compression``,
``margin_anomaly_z``, ``exposure_cut``) are not tuned (``params.tunable``), so the market-risk
rows are computed once with the base parameter set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import attribution as attr
from quant_genesis_dagster.domain import backtest, model, portfolio, regime, risk, signals
from quant_genesis_dagster.domain.factors import grid as grid_mod
from quant_genesis_dagster.domain.factors.grid import Grid
from quant_genesis_dagster.domain.params import ParamSet
from quant_genesis_dagster.errors import QGError

#: aligned_panel columns the calibration reads.
PANEL_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        (
            *backtest.PANEL_COLUMNS,
            *portfolio.PANEL_COLUMNS,
            "margin_balance",
            "taiex_close",
            "vixtwn",
            "margin_total",
            *model.US_MOVE_COLUMNS,
        )
    )
)
ZSCORED_COLUMNS: tuple[str, ...] = ("session", "symbol", "f_c", "f_s", "f_d", "warmup")
CHIP_COLUMNS: tuple[str, ...] = (
    "session", "symbol", "lac", "lac_dist", "rcnc_close_dev", "sweep_ratio", "tier_ratio_20d",
)  # fmt: skip
SENTIMENT_COLUMNS: tuple[str, ...] = ("session", "symbol", "fear_greed", "market_abnormal")
VALUE_COLUMNS: tuple[str, ...] = ("session", "symbol", "equity_multiplier")
COMPOSITES: tuple[str, ...] = ("f_c", "f_s", "f_d")
#: Label of the predictions the data builder makes for the attribution features (their r_pred
#: rows are not used; the composite ICs do not depend on parameters).
FEATURE_VERSION = "calibration/features"

#: Market / factor features per session (observation entries, before normalization).
FEATURES: tuple[str, ...] = (
    "vix_level", "vix_slope", "atr_ratio", "regime_bull", "regime_chop", "regime_panic",
    "lac_dist_mean", "tier_ratio_mean", "corr_fc_fs",
    "rank_ic_f_c", "rank_ic_f_s", "rank_ic_f_d",
    "factor_return_f_c", "factor_return_f_s", "factor_return_f_d",
    "half_life_f_c", "half_life_f_s", "half_life_f_d",
)  # fmt: skip
FEATURE_WINDOW = 20


def _require(df: pl.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise QGError(
            f"calibration data: {what} has no column(s) {', '.join(missing)}; "
            f"pass the {what} rows of the calibration window"
        )


def _sorted(df: pl.DataFrame, cols) -> pl.DataFrame:
    return df.select(cols).with_columns(pl.col("session").cast(pl.Date)).sort("session", "symbol")


def _offsets(df: pl.DataFrame, sessions: np.ndarray) -> np.ndarray:
    """(T + 1,) first row of each session in a session-sorted frame (row i of session t lies in
    [off[t], off[t + 1]))."""
    days = df["session"].cast(pl.Int32).to_numpy()
    keys = sessions.astype("datetime64[D]").astype(np.int64)
    return np.searchsorted(days, np.append(keys, keys[-1] + 1), side="left")


@dataclass(eq=False)
class CalibrationData:
    """The calibration window's inputs (see the module docstring). Sessions are indices into
    ``sessions``; ``frame(name, a, b)`` is the rows of sessions a..b (inclusive)."""

    sessions: np.ndarray  # (T,) datetime64[D]
    symbols: np.ndarray  # (N,) str
    market: backtest.MarketData  # (T, N)
    frames: dict[str, pl.DataFrame]
    offsets: dict[str, np.ndarray]
    features: np.ndarray  # (T, len(FEATURES)), NaN where unknown
    realized: np.ndarray  # (T, N) one-session return ending at t (traded closes), NaN unknown
    factors: dict[str, np.ndarray]  # composite → (T, N) z
    factor_returns: np.ndarray  # (T, 3) 1-session factor return of COMPOSITES realized at t
    us: pl.DataFrame  # session, us_move
    base: ParamSet

    @property
    def n_sessions(self) -> int:
        return int(self.sessions.size)

    def frame(self, name: str, a: int, b: int) -> pl.DataFrame:
        off = self.offsets[name]
        lo, hi = int(off[max(a, 0)]), int(off[min(b, self.n_sessions - 1) + 1])
        return self.frames[name].slice(lo, hi - lo)

    def index(self, session) -> int:
        """Index of ``session`` (a date) in the window; QGError when it is not one of them."""
        d = np.datetime64(session, "D")
        i = int(np.searchsorted(self.sessions, d))
        if i >= self.sessions.size or self.sessions[i] != d:
            raise QGError(f"calibration data: {session} is not a session of the window")
        return i

    # ------------------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        panel: pl.DataFrame,
        zscored: pl.DataFrame,
        chip: pl.DataFrame,
        sentiment: pl.DataFrame,
        value: pl.DataFrame,
        base: ParamSet,
        *,
        factors: pl.DataFrame | None = None,
        diagnosis: pl.DataFrame | None = None,
    ) -> CalibrationData:
        """From the daily engine's tables over the window (consecutive sessions; the first
        ``FactorSettings.lookback()`` or so only warm the features up).

        ``factors`` / ``diagnosis``: the attribution tables (``attribution_factors`` with
        factor, horizon, rolling_rank_ic, factor_return; ``attribution_diagnosis`` with factor,
        half_life); computed from ``zscored`` and ``panel`` when not given.
        """
        for df, cols, what in (
            (panel, PANEL_COLUMNS, "aligned_panel"),
            (zscored, ZSCORED_COLUMNS, "zscored_factors"),
            (chip, CHIP_COLUMNS, "chip_factors"),
            (sentiment, SENTIMENT_COLUMNS, "sentiment_factors"),
            (value, VALUE_COLUMNS, "value_factors"),
        ):
            _require(df, cols, what)
        panel = _sorted(panel, PANEL_COLUMNS)
        if panel.is_empty():
            raise QGError("calibration data: the aligned panel of the window is empty")
        g = Grid.of(panel, what="calibration panel")
        zscored = _sorted(zscored, ZSCORED_COLUMNS)
        chip = _sorted(chip, CHIP_COLUMNS)
        sentiment = _sorted(sentiment, SENTIMENT_COLUMNS)
        value = _sorted(value, VALUE_COLUMNS)

        def dense(df: pl.DataFrame, col: str) -> np.ndarray:
            keyed = panel.select("session", "symbol").join(
                df.select("session", "symbol", col), on=["session", "symbol"], how="left",
                maintain_order="left",
            )  # fmt: skip
            return g.dense(keyed[col].cast(pl.Float64))

        def flag(col: str) -> np.ndarray:
            return g.dense(panel[col].cast(pl.Float64), fill=0) > 0

        market = backtest.MarketData(
            close=g.dense(panel["close"].cast(pl.Float64)),
            close_adj=g.dense(panel["close_adj"].cast(pl.Float64)),
            vwap_adj=g.dense(panel["vwap_adj"].cast(pl.Float64)),
            volume=g.dense(panel["volume_shares"].cast(pl.Float64)),
            has_bar=flag("has_bar"),
            limit_up=flag("limit_up"),
            limit_down=flag("limit_down"),
            listed=g.present(),
        )
        close = market.close_adj.copy()
        close[~(close > 0) | ~market.has_bar] = np.nan
        realized = close / grid_mod.lag(close, 1) - 1.0
        comp = {k: dense(zscored, k) for k in COMPOSITES}

        day = signals.signal_inputs(zscored, chip, sentiment, value, panel)
        mkt = panel.select("session", "taiex_close", "vixtwn", "margin_total").unique(
            "session", keep="first", maintain_order=True
        )
        frames = {
            "panel": panel,
            "zscored": zscored,
            "lac": chip.select("session", "symbol", "lac"),
            "value": value,
            "day": day.sort("session", "symbol"),
            "market_risk": risk.market_risk(mkt, base),
        }
        offsets = {name: _offsets(df, g.sessions) for name, df in frames.items()}

        us = model.us_move(panel)
        if factors is None or diagnosis is None:
            preds = model.predict(zscored, us, base, FEATURE_VERSION)
            a = attr.attribution(zscored, preds, panel)
            factors, diagnosis = a.factors, a.diagnosis
        features = _features(g, panel, chip, comp, factors, diagnosis, frames["market_risk"])
        f1 = factors.filter(pl.col("horizon") == 1)
        factor_returns = np.stack(
            [
                _per_session(g, f1.filter(pl.col("factor") == k), "factor_return")
                for k in COMPOSITES
            ],
            axis=1,
        )
        return cls(
            sessions=g.sessions,
            symbols=g.symbols,
            market=market,
            frames=frames,
            offsets=offsets,
            features=features,
            realized=realized,
            factors=comp,
            factor_returns=factor_returns,
            us=us,
            base=base,
        )


def _per_session(g: Grid, df: pl.DataFrame, col: str) -> np.ndarray:
    """(T,) values of a per-session frame (session, col) on the grid's sessions (NaN absent)."""
    out = np.full(g.shape[0], np.nan)
    if df.is_empty():
        return out
    days = df["session"].cast(pl.Date).to_numpy().astype("datetime64[D]")
    i = np.searchsorted(g.sessions, days)
    ok = (i < g.shape[0]) & (g.sessions[np.minimum(i, g.shape[0] - 1)] == days)
    out[i[ok]] = df[col].cast(pl.Float64).fill_null(np.nan).to_numpy()[ok]
    return out


def _xs_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(T,) cross-sectional Pearson correlation per session over pairs where both are finite."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(axis=1)
    xs, ys = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = xs.sum(axis=1) / n, ys.sum(axis=1) / n
        dx, dy = np.where(ok, x - mx[:, None], 0.0), np.where(ok, y - my[:, None], 0.0)
        c = (dx * dy).sum(axis=1) / np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    return np.where(n >= 5, c, np.nan)


def _features(g, panel, chip, comp, factors, diagnosis, market_risk) -> np.ndarray:
    t_n = g.shape[0]
    out = np.full((t_n, len(FEATURES)), np.nan)
    col = {name: i for i, name in enumerate(FEATURES)}
    labels = regime.regime_labels_from_panel(panel)
    out[:, col["vix_level"]] = _per_session(g, labels, "vix_level")
    out[:, col["vix_slope"]] = _per_session(g, labels, "vix_slope")
    out[:, col["atr_ratio"]] = _per_session(g, market_risk, "atr_ratio")
    reg = labels.select("session", "regime")
    for name in regime.REGIMES:
        one = reg.with_columns(
            pl.when(pl.col("regime").is_null()).then(None).otherwise(pl.col("regime") == name)
            .cast(pl.Float64).alias("x")
        )  # fmt: skip
        out[:, col[f"regime_{name}"]] = _per_session(g, one, "x")
    keyed = panel.select("session", "symbol").join(
        chip.select("session", "symbol", "lac_dist", "tier_ratio_20d"),
        on=["session", "symbol"], how="left", maintain_order="left",
    )  # fmt: skip
    with np.errstate(invalid="ignore"):
        for name, c in (("lac_dist_mean", "lac_dist"), ("tier_ratio_mean", "tier_ratio_20d")):
            x = np.clip(g.dense(keyed[c].cast(pl.Float64)), -1.0, 1.0)
            ok = np.isfinite(x)
            n = ok.sum(axis=1)
            out[:, col[name]] = np.where(n > 0, np.where(ok, x, 0.0).sum(axis=1) / np.maximum(n, 1),
                                         np.nan)  # fmt: skip
    corr = _xs_corr(comp["f_c"], comp["f_s"])[:, None]
    out[:, col["corr_fc_fs"]] = grid_mod.rolling_mean(corr, FEATURE_WINDOW, min_count=5)[:, 0]
    f1 = factors.filter(pl.col("horizon") == 1)
    for k in COMPOSITES:
        rows = f1.filter(pl.col("factor") == k)
        out[:, col[f"rank_ic_{k}"]] = _per_session(g, rows, "rolling_rank_ic")
        fr = _per_session(g, rows, "factor_return")[:, None]
        out[:, col[f"factor_return_{k}"]] = grid_mod.rolling_mean(fr, FEATURE_WINDOW, min_count=5)[
            :, 0
        ]
        out[:, col[f"half_life_{k}"]] = _per_session(
            g, diagnosis.filter(pl.col("factor") == k), "half_life"
        )
    return out
