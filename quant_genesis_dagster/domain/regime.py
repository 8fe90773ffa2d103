"""Market regime label per session (SPEC §8): low-vol bull / high-vol chop / one-sided panic,
from the VIXTWN level and slope and the TAIEX trend.

Readings at session D (trailing windows only, so the label at D uses rows with session <= D):

* ``vix_level`` — VIXTWN at D (volatility points).
* ``vix_slope`` — VIXTWN(D) − VIXTWN(D − ``slope_window``) (points over the window).
* ``index_trend`` — TAIEX close(D) / its ``trend_window``-session simple moving average − 1
  (a fraction: the 乖離率 against the 20-session "monthly line" 月線 by default).

Rules, first match wins (defaults in ``RegimeSettings``):

1. ``panic`` — VIXTWN >= 30 (fear), or a one-sided sell-off: VIXTWN >= 25 and up at least
   5 points in 5 sessions while the TAIEX is below its 20-session average.
2. ``bull`` — VIXTWN < 20 (calm) and the TAIEX no more than 5% below its 20-session average
   (not in a pull-back).
3. ``chop`` — everything else (elevated volatility without a one-sided fall, or calm volatility
   in a falling tape).

Measured on the sample market (``SampleMarket(SampleMarketConfig(seed, n_symbols=20))``,
2010-01-04..2019-12-31, 2,432 sessions after the 19 warm-up sessions), agreement = share of
sessions labelled as planted, recall = share of a planted regime's sessions given its label:

======  =========  ===========  ===========  ============  =================
seed    agreement  bull recall  chop recall  panic recall  constant "bull"
======  =========  ===========  ===========  ============  =================
7       0.820      0.858        0.766        0.725         0.628
11      0.805      0.845        0.724        0.787         0.611
23      0.801      0.846        0.674        0.882         0.598
3       0.838      0.880        0.747        0.799         0.646
42      0.855      0.883        0.804        0.485         0.760
======  =========  ===========  ===========  ============  =================

Panic recall varies most: a seed holds only 11–16 panic spells (68–288 sessions; seed 42's are
short, so mostly lag). The label lags: the planted regime of D drives D's returns and VIX, but
the VIX mean-reverts only 12% a session towards its new level (half-life ~5.4 sessions) and the
moving average trails, so agreement with the planted regime of D − 3 is 0.03–0.05 higher than
with that of D, about half the misses fall in the 5 sessions after a planted switch, and the
median delay to the first matching label is 5–7 sessions into a bull, 2–4 into chop and 2–4 into
a panic. In the sample the trend adds little once the VIX is known (the sample's VIX already
jumps on down days): the two trend conditions cost 0.3–0.9 point of agreement there (the
sell-off rule buys 0.02–0.07 panic recall). They are kept because a panic is one-sided by
definition and a calm but falling tape is not a bull on real data.

Missing readings (a null TAIEX or VIXTWN in a window) give a null label on that session; the
first ``max(trend_window, slope_window + 1) − 1`` sessions are warm-up (``regime_warmup``, label
null). Values are elementwise or fixed-order rolling sums (``grid.rolling_mean``), so the
label at D is bit-identical whatever the frame's first row, as long as it holds D's windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.factors import grid
from quant_genesis_dagster.errors import QGError

#: Regime names (the sample market plants the same three).
BULL, CHOP, PANIC = "bull", "chop", "panic"
REGIMES: tuple[str, ...] = (BULL, CHOP, PANIC)
INPUT_COLUMNS: tuple[str, ...] = ("session", "taiex_close", "vixtwn")
OUTPUT_SCHEMA = pl.Schema(
    {
        "session": pl.Date,
        "regime": pl.String,
        "regime_warmup": pl.Boolean,
        "vix_level": pl.Float64,
        "vix_slope": pl.Float64,
        "index_trend": pl.Float64,
    }
)


@dataclass(frozen=True)
class RegimeSettings:
    """Windows (sessions) and thresholds (VIXTWN points; trend as a fraction, -0.05 = 5% below
    the moving average) of the regime rules."""

    slope_window: int = 5  # vix_slope = VIX(D) − VIX(D − slope_window)
    trend_window: int = 20  # sessions in the TAIEX moving average (月線)
    bull_max_vix: float = 20.0  # VIX strictly below: calm enough for a bull
    bull_min_trend: float = -0.05  # bull needs index_trend at or above (no pull-back)
    panic_vix: float = 30.0  # VIX at or above: panic whatever the trend
    selloff_vix: float = 25.0  # sell-off panic: VIX at or above ...
    selloff_slope: float = 5.0  # ... rising at least this many points over slope_window ...
    selloff_max_trend: float = 0.0  # ... with index_trend strictly below this

    def __post_init__(self) -> None:
        for name, lo, hi in (("slope_window", 1, 60), ("trend_window", 2, 250)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise QGError(f"regime setting {name}={v!r} must be an integer in [{lo}, {hi}]")
        for name, lo, hi in (
            ("bull_max_vix", 1.0, 100.0),
            ("panic_vix", 1.0, 100.0),
            ("selloff_vix", 1.0, 100.0),
            ("selloff_slope", 0.0, 100.0),
            ("bull_min_trend", -1.0, 1.0),
            ("selloff_max_trend", -1.0, 1.0),
        ):
            v = getattr(self, name)
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or not lo <= v <= hi:
                raise QGError(f"regime setting {name}={v!r} must be a number in [{lo}, {hi}]")
        if not self.bull_max_vix <= self.selloff_vix <= self.panic_vix:
            raise QGError(
                f"regime settings bull_max_vix={self.bull_max_vix}, selloff_vix="
                f"{self.selloff_vix}, panic_vix={self.panic_vix} must be in ascending order"
            )

    @property
    def warmup_sessions(self) -> int:
        """Sessions of history (the row's own included) before every window is full."""
        return max(self.trend_window, self.slope_window + 1)


def _market_arrays(indicators: pl.DataFrame) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """Sorted sessions and the (T,) TAIEX and VIXTWN arrays (NaN = missing) of one row per
    consecutive XTAI session; a one-line QGError otherwise."""
    for col in INPUT_COLUMNS:
        if col not in indicators.columns:
            raise QGError(
                f"regime: missing column {col!r}; pass one row per session with "
                f"{', '.join(INPUT_COLUMNS)}"
            )
    df = indicators.select(
        pl.col("session").cast(pl.Date),
        pl.col("taiex_close").cast(pl.Float64).fill_nan(None),
        pl.col("vixtwn").cast(pl.Float64).fill_nan(None),
    ).sort("session")
    if df["session"].null_count():
        raise QGError("regime: a row has a null session; pass one row per XTAI session")
    dup = df.filter(pl.col("session").is_duplicated())
    if dup.height:
        raise QGError(f"regime: several rows for session {dup['session'][0]}; pass one per session")
    if df.height:
        idx = calendar.session_index(df["session"].to_numpy())
        if (idx < 0).any():
            bad = df["session"][int(np.flatnonzero(idx < 0)[0])]
            raise QGError(f"regime: {bad} is not an XTAI session; pass XTAI sessions only")
        gaps = np.flatnonzero(np.diff(idx) != 1)
        if gaps.size:
            a, b = df["session"][int(gaps[0])], df["session"][int(gaps[0]) + 1]
            raise QGError(
                f"regime: sessions jump from {a} to {b} (sessions in between missing); pass "
                "consecutive XTAI sessions"
            )
    taiex = df["taiex_close"].to_numpy().astype(np.float64)
    vix = df["vixtwn"].to_numpy().astype(np.float64)
    return df["session"], taiex, vix


def _classify(
    vix: np.ndarray, slope: np.ndarray, trend: np.ndarray, s: RegimeSettings
) -> np.ndarray:
    """(T,) object array of regime names (None where a reading is NaN)."""
    known = ~(np.isnan(vix) | np.isnan(slope) | np.isnan(trend))
    selloff = (vix >= s.selloff_vix) & (slope >= s.selloff_slope) & (trend < s.selloff_max_trend)
    panic = (vix >= s.panic_vix) | selloff
    bull = (vix < s.bull_max_vix) & (trend >= s.bull_min_trend)
    out = np.where(panic, PANIC, np.where(bull, BULL, CHOP)).astype(object)
    out[~known] = None
    return out


def regime_labels(indicators: pl.DataFrame, settings: RegimeSettings | None = None) -> pl.DataFrame:
    """The regime label per session (``OUTPUT_SCHEMA``, sorted by session).

    ``indicators``: one row per consecutive XTAI session with ``session`` (Date),
    ``taiex_close`` (index points) and ``vixtwn`` (volatility points); other columns are ignored.
    Output per session: ``regime`` ∈ ``REGIMES`` (null in warm-up or when a reading is missing),
    ``regime_warmup`` (fewer than ``settings.warmup_sessions`` sessions of history, the row's own
    included), and the readings ``vix_level`` (points), ``vix_slope`` (points over
    ``slope_window`` sessions) and ``index_trend`` (close / ``trend_window``-session moving
    average − 1, a fraction). See the module docstring for the rules.
    """
    s = settings or RegimeSettings()
    sessions, taiex, vix = _market_arrays(indicators)
    slope = vix - grid.lag(vix, s.slope_window)
    with np.errstate(invalid="ignore", divide="ignore"):
        trend = taiex / grid.rolling_mean(taiex, s.trend_window) - 1.0
    warmup = np.arange(vix.shape[0]) + 1 < s.warmup_sessions
    label = _classify(vix, slope, trend, s)
    label[warmup] = None
    return pl.DataFrame(
        [
            sessions,
            pl.Series("regime", label.tolist(), dtype=pl.String),
            pl.Series("regime_warmup", warmup, dtype=pl.Boolean),
            pl.Series("vix_level", vix, nan_to_null=True),
            pl.Series("vix_slope", slope, nan_to_null=True),
            pl.Series("index_trend", trend, nan_to_null=True),
        ],
        schema=OUTPUT_SCHEMA,
    )


def regime_labels_from_panel(
    panel: pl.DataFrame, settings: RegimeSettings | None = None
) -> pl.DataFrame:
    """``regime_labels`` of an aligned panel: its market columns ``taiex_close`` and ``vixtwn``
    are repeated on every symbol row of a session, so the first row per session is used. The
    panel must cover consecutive sessions (history for the windows included)."""
    for col in INPUT_COLUMNS:
        if col not in panel.columns:
            raise QGError(f"regime: aligned panel has no column {col!r}; pass aligned_panel rows")
    market = panel.select(INPUT_COLUMNS).unique(subset="session", keep="first", maintain_order=True)
    return regime_labels(market, settings)
