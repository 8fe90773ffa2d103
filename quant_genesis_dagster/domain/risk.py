"""The risk manager's rules (SPEC §6), evaluated after the close of each session.

Symbol level:

* **LAC break stop** — the close (adjusted) is below the main-force cost line by more than
  ``lac_break_margin``: the accumulation has failed, exit.
* **Run-up warning** — ``LAC_dist > T_RunUp_Dev``: price far above the main force's cost, take
  profit.
* **Margin anomaly** — today's margin-balance change is beyond ``margin_anomaly_z`` standard
  deviations of the symbol's own changes over the previous ``RISK_WINDOW`` sessions.

Market level (each rule that fires multiplies the exposure by ``exposure_cut``):

* **VIX** — VIXTWN above ``vix_max``;
* **ATR compression** — the TAIEX's average absolute daily move over 14 sessions below
  ``atr_compression`` × its 60-session average (a volatility squeeze; the raw indicator table
  has index closes only, so the range is close-to-close);
* **Market margin anomaly** — the day's change of the market margin balance beyond
  ``margin_anomaly_z`` standard deviations of the previous ``RISK_WINDOW`` sessions' changes.

Windows use only sessions up to D (the reference windows end the session before D).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from quant_genesis_dagster.domain.factors import grid
from quant_genesis_dagster.domain.params import ParamSet
from quant_genesis_dagster.errors import QGError

RISK_WINDOW = 60
ATR_FAST, ATR_SLOW = 14, 60
#: Sessions of history the rules need before the first evaluated session.
RISK_LOOKBACK = RISK_WINDOW + 1


def _change_z(x: np.ndarray, window: int) -> np.ndarray:
    """z of today's change against the previous ``window`` changes (NaN without a full one)."""
    d = x - grid.lag(x, 1)
    ref = grid.lag(d, 1)
    mean = grid.rolling_mean(ref, window)
    std = grid.rolling_std(ref, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (d - mean) / std
    return np.where(std > 0, z, np.nan)


def market_risk(market: pl.DataFrame, params: ParamSet) -> pl.DataFrame:
    """Per session: session, vixtwn, vix_high, atr_ratio, atr_compressed, margin_z,
    margin_anomaly, exposure_scale. ``market``: one row per consecutive session with taiex_close,
    vixtwn, margin_total (include ``RISK_LOOKBACK`` sessions of history)."""
    need = ["session", "taiex_close", "vixtwn", "margin_total"]
    missing = [c for c in need if c not in market.columns]
    if missing:
        raise QGError(f"market indicators: missing column(s) {', '.join(missing)}")
    m = market.select(need).unique("session", keep="first").sort("session")
    taiex = m["taiex_close"].cast(pl.Float64).fill_null(np.nan).to_numpy()[:, None]
    move = np.abs(np.log(taiex) - np.log(grid.lag(taiex, 1)))
    atr_ratio = (grid.rolling_mean(move, ATR_FAST) / grid.rolling_mean(move, ATR_SLOW))[:, 0]
    total = m["margin_total"].cast(pl.Float64).fill_null(np.nan).to_numpy()[:, None]
    margin_z = _change_z(np.log(total), RISK_WINDOW)[:, 0]
    vix = m["vixtwn"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    vix_high = vix > params.vix_max
    compressed = atr_ratio < params.atr_compression
    anomaly = np.abs(margin_z) >= params.margin_anomaly_z
    fired = vix_high.astype(int) + compressed.astype(int) + anomaly.astype(int)
    return pl.DataFrame(
        {
            "session": m["session"],
            "vixtwn": vix,
            "vix_high": vix_high,
            "atr_ratio": atr_ratio,
            "atr_compressed": compressed,
            "margin_z": margin_z,
            "margin_anomaly": anomaly,
            "exposure_scale": params.exposure_cut**fired,
        }
    ).with_columns(pl.col("atr_ratio", "margin_z", "vixtwn").fill_nan(None))


def symbol_margin_z(panel: pl.DataFrame) -> pl.DataFrame:
    """Per panel row: session, symbol, margin_z (today's margin-balance change against the
    symbol's previous ``RISK_WINDOW`` changes)."""
    g = grid.Grid.of(panel, what="aligned_panel")
    bal = g.dense(panel["margin_balance"])
    z = g.rows(_change_z(bal, RISK_WINDOW))
    return panel.select("session", "symbol").with_columns(
        margin_z=pl.Series(z, dtype=pl.Float64).fill_nan(None)
    )
