"""Attribution of the predictions (SPEC §8): residuals, daily factor returns and contributions,
IC / rank IC, "which factor failed" and factor aging.

Timing (SPEC §11). Z-scores and predictions dated D are made after D's close; a prediction for
h sessions is realized at the close of session D + h. Every attribution row is therefore dated at
its **realization session** D and attributes what was predicted at ``pred_session`` = D − h
(h XTAI sessions earlier); a row dated D reads nothing dated after D:

* realized return   ``R_h[D] = close_adj[D] / close_adj[D−h] − 1`` — the h-session return that
  ends at D; null when either close is missing, and — when the panel has ``has_bar`` — when
  either session has no bar of its own: a close carried over a missing day or a suspension is
  not a price anyone traded at, and would book two sessions' move as one. So ``R_1`` is the
  panel's ``ret_1d`` on the rows whose previous session had a bar (null on the others).
* residual          ``Res_h[D] = R_h[D] − r_pred_{h}d[D−h]``: ``Res_1[D]`` is session D's return
  minus the 1-session prediction made after the close of D−1.
* factor return     OLS of ``R_h[D]`` on F_C, F_S, F_D of D−h (with intercept), per (D, h).
* IC, rank IC       corr(F_k[D−h], R_h[D]) — Pearson, and Spearman with ties averaged.
* lag rank IC       rank corr(F_k[D−h], R_1[D]): how much a factor h sessions old still says
  about one session's return — the IC-decay curve the half-life is fitted to (the IC of the
  cumulative R_h grows like √h for a factor that does not decay, so it cannot show aging).
* factor change     ``ΔF_k[D] = F_k[D−1] − F_k[D−2]``: the change of the exposure the prediction
  for session D was built on.
* resid_corr        ``Σ_d Σ_i dRes·dΔF / √(Σ_d Σ_i dRes² · Σ_d Σ_i dΔF²)`` over the last
  ``resid_window`` sessions d ≤ D, with Res_1 and ΔF_k centered within each day's
  cross-section (the day's market move, common to every residual, drops out); the
  ``failed_factor`` of D is the composite with the largest |resid_corr| when it reaches
  ``fail_min_corr`` (null otherwise): the factor whose change best explains what the
  prediction missed.
* aging             ``rolling_*``: means of the daily ICs over the last ``ic_window`` sessions;
  ``half_life`` = ln 2 / λ from IC(h) = IC(1)·exp(−λ(h−1)) fitted to the rolling lag rank ICs
  at h = 1, 5, 10; ``aging_alert`` when the rolling rank IC at horizon 1 is below
  ``alert_threshold``.
* contribution      ``Σ_i w_i[D] · F_k,i[D−1] · f_k[D]`` with ``w[D]`` the weight held over
  session D (set at the close of D−1) and ``f_k[D]`` the 1-session factor return.

The cross-section of (D, h) is every name with a prediction at D−h, all three composites at D−h
and realized R_h and R_1 at D (fewer than ``min_names`` → null metrics). A day without any
prediction rows gives null metrics, ``n_predicted = 0`` on its rows and an entry in
``Attribution.missing_prediction_sessions`` — never a silent zero.

The maths runs on dense (session × symbol) arrays of every input on one calendar layout.
Cross-sectional sums of real values run symbol by symbol in symbol order (``_xsum``), so a day's
value does not depend on which other symbols the frame holds (a symbol listed after D, or
delisted long before, changes nothing up to D, bit for bit); rank correlations are computed from
exact integer sums; windows over sessions use ``grid.rolling_sum`` (start-independent).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.factors import grid
from quant_genesis_dagster.domain.factors.grid import Grid
from quant_genesis_dagster.domain.params import HORIZONS
from quant_genesis_dagster.errors import QGError

#: The z-scored composites regressed on (columns of ``zscored_factors``).
COMPOSITES: tuple[str, ...] = ("f_c", "f_s", "f_d")
#: Rows of the per-factor tables: the composites and the combined prediction ``r_pred_{h}d``.
FACTORS: tuple[str, ...] = (*COMPOSITES, "r_pred")
#: A day's factor covariance matrix with a condition number above this → no regression that day
#: (a constant or collinear factor; the solution would be noise).
MAX_CONDITION = 1e10

RESIDUALS_SCHEMA = pl.Schema(
    {
        "session": pl.Date,  # realization session D
        "symbol": pl.String,
        "horizon": pl.Int32,  # h, sessions
        "pred_session": pl.Date,  # D − h: when the prediction was made
        "r_actual": pl.Float64,  # R_h[D], fraction
        "r_pred": pl.Float64,  # r_pred_{h}d made at D − h, fraction
        "residual": pl.Float64,  # r_actual − r_pred, fraction
        "param_version": pl.String,  # of the prediction row
    }
)
FACTORS_SCHEMA = pl.Schema(
    {
        "session": pl.Date,
        "factor": pl.String,  # f_c, f_s, f_d, r_pred
        "horizon": pl.Int32,
        "pred_session": pl.Date,
        "n": pl.Int32,  # names in the (D, h) cross-section
        "ic": pl.Float64,  # Pearson corr(F[D−h], R_h[D])
        "rank_ic": pl.Float64,  # Spearman, ties averaged
        "lag_rank_ic": pl.Float64,  # Spearman corr(F[D−h], R_1[D])
        "factor_return": pl.Float64,  # OLS slope: R_h per unit z (composites only)
        "exposure": pl.Float64,  # Σ w·z at D−1 (horizon 1, with weights)
        "contribution": pl.Float64,  # exposure × factor_return, fraction of capital
        "rolling_ic": pl.Float64,  # mean of ic over ic_window sessions
        "rolling_rank_ic": pl.Float64,
        "rolling_lag_rank_ic": pl.Float64,
        "param_version": pl.String,  # of the predictions made at pred_session
    }
)
DIAGNOSIS_SCHEMA = pl.Schema(
    {
        "session": pl.Date,
        "factor": pl.String,
        "resid_corr": pl.Float64,  # rolling corr(Res_1, ΔF) (composites only)
        "decay_rate": pl.Float64,  # λ per session: rolling lag rank IC(h) = IC(1)·e^(−λ(h−1))
        "half_life": pl.Float64,  # ln 2 / λ, sessions
        "aging_alert": pl.Boolean,  # rolling rank IC (h = 1) below alert_threshold
        "param_version": pl.String,  # of the predictions made at D − 1
    }
)
DAILY_SCHEMA = pl.Schema(
    {
        "session": pl.Date,
        "horizon": pl.Int32,
        "pred_session": pl.Date,
        "n_predicted": pl.Int32,  # prediction rows at pred_session (0 = a day without any)
        "n_realized": pl.Int32,  # of those, with a realized return (the residual rows)
        "n": pl.Int32,  # the cross-section of the ICs and the regression
        "resid_mean": pl.Float64,  # mean residual over the realized names, fraction
        "resid_std": pl.Float64,  # their standard deviation (ddof 1)
        "intercept": pl.Float64,  # OLS intercept, fraction over h sessions
        "r2": pl.Float64,
        "failed_factor": pl.String,  # horizon 1: composite with the largest |resid_corr|
        "portfolio_return": pl.Float64,  # horizon 1, with weights: Σ w·R_1 over the cross-section
        "intercept_contribution": pl.Float64,  # intercept × Σ w
        "specific_return": pl.Float64,  # Σ w·(OLS residual); factor + intercept + specific = total
        "weight_covered": pl.Float64,  # Σ w over the cross-section
        "weight_uncovered": pl.Float64,  # Σ w of held names outside it (no return, no factor)
        "param_version": pl.String,
    }
)


@dataclass(frozen=True)
class AttributionSettings:
    """Windows and thresholds of the attribution (definition-level, not calibrated).

    * ``min_names`` — fewer names in a day's cross-section → null IC, regression and residual
      correlation that day (a correlation of 20 names has a standard error of ~0.23).
    * ``ic_window`` / ``ic_min_sessions`` — the rolling IC: mean of the daily IC over the last
      ``ic_window`` sessions (about a quarter), null with fewer than ``ic_min_sessions`` values.
    * ``resid_window`` / ``resid_min_sessions`` — sessions pooled in the residual / factor-change
      correlation (SPEC §8: 5), null with fewer sessions that have a cross-section.
    * ``fail_min_corr`` — |resid_corr| at or above which the best-explaining factor is named
      ``failed_factor`` (below it no factor is blamed). 0.05 is ~2 standard errors of a
      correlation pooled over 5 sessions of 300 names.
    * ``alert_threshold`` — ``aging_alert`` when the rolling rank IC at horizon 1 is below it:
      0 means the factor has stopped predicting in its documented direction over the window.
    * ``residual_horizons`` — horizons of the per-symbol residual rows (one row per prediction
      row and horizon; (1,) keeps the table at one row per symbol-day).
    """

    min_names: int = 20
    ic_window: int = 60
    ic_min_sessions: int = 40
    resid_window: int = 5
    resid_min_sessions: int = 3
    fail_min_corr: float = 0.05
    alert_threshold: float = 0.0
    residual_horizons: tuple[int, ...] = field(default=HORIZONS)

    def __post_init__(self) -> None:
        ints = {
            "min_names": (5, 100_000),
            "ic_window": (2, 2_000),
            "ic_min_sessions": (1, self.ic_window),
            "resid_window": (1, 250),
            "resid_min_sessions": (1, self.resid_window),
        }
        for name, (lo, hi) in ints.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise QGError(
                    f"attribution setting {name}={v!r} must be an integer in [{lo}, {hi}]"
                )
        for name, (lo, hi) in {"fail_min_corr": (0.0, 1.0), "alert_threshold": (-1.0, 1.0)}.items():
            v = getattr(self, name)
            if not isinstance(v, int | float) or not lo <= v <= hi:
                raise QGError(f"attribution setting {name}={v!r} must be in [{lo}, {hi}]")
        bad = [h for h in self.residual_horizons if h not in HORIZONS]
        if bad or not self.residual_horizons:
            raise QGError(
                f"attribution setting residual_horizons={self.residual_horizons!r}; "
                f"use a non-empty subset of {HORIZONS}"
            )

    def lookback(self) -> int:
        """Sessions of input history before the first output session that every value of that
        session reads (the longest horizon through the rolling IC window, or ΔF through the
        residual window)."""
        return max(self.ic_window - 1 + max(HORIZONS), self.resid_window + 1)


@dataclass(frozen=True)
class Attribution:
    """The attribution tables (long, warehouse-friendly; schemas are the module constants).

    * ``residuals`` (session, symbol, horizon) — ``RESIDUALS_SCHEMA``: one row per prediction
      row and horizon of ``residual_horizons`` whose realization session is on the inputs.
    * ``factors`` (session, factor, horizon) — ``FACTORS_SCHEMA``: IC, rank IC, lag rank IC,
      factor return, exposure and contribution, rolling ICs.
    * ``diagnosis`` (session, factor) — ``DIAGNOSIS_SCHEMA``: residual / factor-change
      correlation ("which factor failed"), IC half-life, aging alert.
    * ``daily`` (session, horizon) — ``DAILY_SCHEMA``: counts, regression intercept and R²,
      residual moments, the failed factor, the portfolio's return split.
    * ``missing_prediction_sessions`` — sessions between the first and last prediction session
      with no prediction rows (their attribution rows are null).

    Rows exist for every session D with D − h between the first and last prediction session.
    """

    residuals: pl.DataFrame
    factors: pl.DataFrame
    diagnosis: pl.DataFrame
    daily: pl.DataFrame
    missing_prediction_sessions: tuple[dt.date, ...]

    @property
    def days_without_predictions(self) -> int:
        return len(self.missing_prediction_sessions)

    def tables(self) -> dict[str, pl.DataFrame]:
        return {
            "residuals": self.residuals,
            "factors": self.factors,
            "diagnosis": self.diagnosis,
            "daily": self.daily,
        }


# --------------------------------------------------------------------------------------------
# layout: every input on one (session × symbol) calendar grid
# --------------------------------------------------------------------------------------------


def _require(df: pl.DataFrame, cols: list[str], what: str, hint: str) -> None:
    for col in cols:
        if col not in df.columns:
            raise QGError(f"{what}: missing column {col!r}; {hint}")
    if df.schema["session"] != pl.Date:
        raise QGError(f"{what}: session is {df.schema['session']}, not Date; pass session dates")


@dataclass(frozen=True, eq=False)
class _Layout:
    """Consecutive XTAI sessions spanning every input and the union of their symbols. Unlike
    ``Grid.of`` a frame may miss sessions (a day without predictions is a finding, not an
    error); each frame becomes a ``Grid`` of the layout's sessions and symbols."""

    sessions: np.ndarray  # (T,) datetime64[D]
    symbols: pl.Series  # sorted, unique
    _seen: list[tuple[pl.DataFrame, Grid]] = field(default_factory=list)

    @classmethod
    def of(cls, frames: list[pl.DataFrame]) -> _Layout:
        filled = [f for f in frames if f.height]
        if not filled:
            return cls(np.array([], dtype="datetime64[D]"), pl.Series("symbol", [], pl.String))
        lo = min(np.datetime64(f["session"].min(), "D") for f in filled)
        hi = max(np.datetime64(f["session"].max(), "D") for f in filled)
        arr = calendar.session_array()
        sessions = arr[np.searchsorted(arr, lo) : np.searchsorted(arr, hi, side="right")]
        symbols = pl.concat([f["symbol"].cast(pl.String).unique() for f in filled]).unique().sort()
        return cls(sessions, symbols.alias("symbol"))

    @property
    def shape(self) -> tuple[int, int]:
        return self.sessions.size, self.symbols.len()

    def grid(self, df: pl.DataFrame, what: str) -> Grid:
        """``df``'s rows on the layout (reused for a frame with the same keys in the same order,
        as zscored_factors, predictions and the panel usually are)."""
        for other, g in self._seen:
            if (
                other.height == df.height
                and other["session"].equals(df["session"])
                and other["symbol"].equals(df["symbol"])
            ):
                return g
        if df["session"].null_count() or df["symbol"].null_count():
            raise QGError(f"{what}: rows without session or symbol; pass keyed rows")
        n_t, n_s = self.shape
        day = df["session"].cast(pl.Int32).to_numpy().astype(np.int64)
        t = np.zeros(0, dtype=np.int64)
        if day.size:
            base = int(self.sessions[0].astype(np.int64))
            lookup = np.full(int(self.sessions[-1].astype(np.int64)) - base + 1, -1, np.int64)
            lookup[self.sessions.astype(np.int64) - base] = np.arange(n_t)
            t = lookup[day - base]
            if (t < 0).any():
                bad = df["session"][int(np.flatnonzero(t < 0)[0])]
                raise QGError(f"{what}: {bad} is not an XTAI session; pass session-dated rows")
        s = (
            df.select(pl.col("symbol").cast(pl.String))
            .join(self.symbols.to_frame().with_row_index("_s"), on="symbol", how="left",
                  maintain_order="left")["_s"]
            .to_numpy()
            .astype(np.int64)
        )  # fmt: skip
        if day.size and np.bincount(t * n_s + s).max() > 1:
            raise QGError(f"{what}: several rows for one (session, symbol); pass unique rows")
        g = Grid(sessions=self.sessions, symbols=self.symbols.to_numpy(), t=t, s=s)
        self._seen.append((df, g))
        return g


def _dense(g: Grid, values: pl.Series) -> np.ndarray:
    """(T, N) float64 of ``values`` (one per row of ``g``; null → NaN), NaN where no row, in
    Fortran order: each session's values are strided, so ``_xsum`` adds them symbol by symbol
    (and writing columns of a (N, T) buffer is ~5× faster than transposing a C array)."""
    n_t, n_s = g.shape
    out = np.full((n_s, n_t), np.nan)
    out.ravel()[g.s * n_t + g.t] = values.cast(pl.Float64).to_numpy()
    return out.T


def _xsum(a: np.ndarray) -> np.ndarray:
    """(T,) sums over the symbol axis of a (T, N) array, added in symbol order one symbol at a
    time. numpy sums along a contiguous axis pairwise — inserting zero columns (symbols without
    a value that day) would change the rounding — but along a strided axis sequentially, where
    adding 0.0 is exact; a single row is accumulated explicitly for the same reason."""
    if a.shape[1] == 0:
        return np.zeros(a.shape[0])
    if a.shape[0] == 1:
        return np.cumsum(a, axis=1)[:, -1]
    if a.strides[1] <= a.strides[0]:
        a = np.asfortranarray(a)
    return np.add.reduce(a, axis=1)


# --------------------------------------------------------------------------------------------
# cross-sectional statistics: one value per session (row of a (T, N) array)
# --------------------------------------------------------------------------------------------


def _center(x: np.ndarray, mask: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-row mean over ``mask``, x minus it on ``mask`` and 0 elsewhere)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = _xsum(np.where(mask, x, 0.0)) / n
        return mean, np.where(mask, x - mean[:, None], 0.0)


def _corr(sxy: np.ndarray, sxx: np.ndarray, syy: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((sxx > 0) & (syy > 0), sxy / np.sqrt(sxx * syy), np.nan)


@dataclass(frozen=True, eq=False)
class _Sorted:
    """The ascending sort of each row of a (T, N) array (NaN last).

    ``index`` (T, N): flat C-order positions of the entries in sorted order. Ties: ``tie_at``
    holds the flat sorted positions that belong to a run of equal values (ascending), and
    ``tie_first`` / ``tie_last`` the run's first and last sorted position — few entries, so the
    tie correction of a ranking touches only them."""

    index: np.ndarray
    tie_at: np.ndarray
    tie_first: np.ndarray
    tie_last: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, hint: _Sorted | None = None) -> _Sorted:
        """Sort ``x``; with ``hint``, first try its order (the argsort is the costly step, and
        r_pred_5d / r_pred_10d usually order each day like r_pred_1d)."""
        c = np.ascontiguousarray(x, dtype=np.float64)
        n_t, n = c.shape
        index = None
        if hint is not None and hint.index.shape == c.shape and n > 1:
            vals = c.ravel().take(hint.index).reshape(n_t, n)
            valid = ~np.isnan(vals)
            with np.errstate(invalid="ignore"):
                ordered = (valid[:, :-1] >= valid[:, 1:]) & (
                    (vals[:, 1:] >= vals[:, :-1]) | ~valid[:, 1:]
                )
            index = hint.index if ordered.all() else None
        if index is None:
            index = np.argsort(c, axis=1)
            index += (np.arange(n_t, dtype=np.int64) * n)[:, None]
            vals = c.ravel().take(index).reshape(n_t, n)
        # runs of equal values (NaN != NaN: never a run); every row starts and ends one
        starts = np.ones((n_t, n), dtype=bool)
        np.not_equal(vals[:, 1:], vals[:, :-1], out=starts[:, 1:])
        ends = np.ones((n_t, n), dtype=bool)
        ends[:, :-1] = starts[:, 1:]
        tie_at = np.flatnonzero(~(starts & ends))  # members of runs, run by run
        opens, closes = starts.ravel()[tie_at], ends.ravel()[tie_at]
        run = np.cumsum(opens) - 1
        return cls(index, tie_at, tie_at[opens][run], tie_at[closes][run])

    def rows(self, sl: slice) -> _Sorted:
        """The sort of the rows ``sl`` (a contiguous range) as an array of its own."""
        n_t, n = self.index.shape
        start, stop, _ = sl.indices(n_t)
        lo, hi = np.searchsorted(self.tie_at, [start * n, stop * n])
        off = start * n
        return _Sorted(
            self.index[sl] - off,
            self.tie_at[lo:hi] - off,
            self.tie_first[lo:hi] - off,
            self.tie_last[lo:hi] - off,
        )


def subset_ranks(srt: _Sorted, mask: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """Ranks (1 = smallest; a tie group shares the mean of its positions) of each row's values
    among the entries of ``mask`` only, ``fill`` elsewhere — ``scipy.stats.rankdata`` on each
    row's subset.

    From the row's sort: the k-th masked entry in sorted order has subset position k, and the
    masked entries of a run of equal values share the mean of the run's first and last subset
    position; one argsort per variable serves every subset (horizon) it is ranked on."""
    n_t, n = srt.index.shape
    out = np.full(n_t * n, fill)
    if out.size == 0:
        return out.reshape(n_t, n)
    ms = np.ascontiguousarray(mask).ravel().take(srt.index.ravel())  # in sorted order
    cnt = np.cumsum(ms.reshape(n_t, n), axis=1, dtype=np.int32).ravel()
    rank = np.where(ms, cnt, fill)
    if srt.tie_at.size:
        before = cnt[srt.tie_first] - ms[srt.tie_first]  # masked entries before the run
        mean = (before + cnt[srt.tie_last] + 1) * 0.5
        rank[srt.tie_at] = np.where(ms[srt.tie_at], mean, fill)
    out[srt.index.ravel()] = rank
    return out.reshape(n_t, n)


@dataclass(frozen=True, eq=False)
class _Ranked:
    """Ranks within a mask (0 outside) and their per-row sum and n·Σr² − (Σr)². Ranks are
    multiples of 0.5, so with fewer than 9,000 names a day (n·Σr² < 2**51) every sum and
    co-moment here is exact in float64: the Spearman correlation does not depend on the order
    of the sums."""

    r: np.ndarray
    s: np.ndarray
    v: np.ndarray

    @classmethod
    def of(cls, srt: _Sorted, mask: np.ndarray, n: np.ndarray) -> _Ranked:
        r = subset_ranks(srt, mask, fill=0.0)
        s = r.sum(axis=1)
        return cls(r, s, n * np.einsum("ij,ij->i", r, r) - s * s)

    def corr(self, other: _Ranked, n: np.ndarray) -> np.ndarray:
        cov = n * np.einsum("ij,ij->i", self.r, other.r) - self.s * other.s
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((self.v > 0) & (other.v > 0), cov / np.sqrt(self.v * other.v), np.nan)


@dataclass(frozen=True, eq=False)
class Regression:
    """Per-row OLS fit (NaN = no fit that row): ``beta`` (T, k) slopes, ``intercept``, ``r2``,
    ``resid`` (T, N) y − intercept − x·beta on the mask (0 elsewhere); ``sxx`` (T, k, k) and
    ``sxy`` (T, k) centered cross-products, ``syy`` the centered sum of squares of y."""

    beta: np.ndarray
    intercept: np.ndarray
    r2: np.ndarray
    resid: np.ndarray
    sxx: np.ndarray
    sxy: np.ndarray
    syy: np.ndarray


def cross_sectional_ols(
    xs: list[np.ndarray], y: np.ndarray, mask: np.ndarray, min_names: int
) -> Regression:
    """Per-row OLS ``y = a + Σ_k b_k x_k + e`` over the masked names of each row (a session).

    Solved from the centered cross-products (a k × k system per row). Rows with fewer than
    ``min_names`` (and at least k + 2) names, no dispersion in y or an ill-conditioned factor
    matrix (``MAX_CONDITION``) get NaN."""
    n = mask.sum(axis=1)
    my, dy = _center(y, mask, n)
    centered = [_center(x, mask, n) for x in xs]
    return _ols(centered, my, dy, n, min_names)


def _ols(
    centered: list[tuple[np.ndarray, np.ndarray]],
    my: np.ndarray,
    dy: np.ndarray,
    n: np.ndarray,
    min_names: int,
) -> Regression:
    k = len(centered)
    dxs = [d for _, d in centered]
    sxx = np.empty((n.size, k, k))
    sxy = np.empty((n.size, k))
    for i in range(k):
        sxy[:, i] = _xsum(dxs[i] * dy)
        for j in range(i, k):
            sxx[:, i, j] = sxx[:, j, i] = _xsum(dxs[i] * dxs[j])
    syy = _xsum(dy * dy)
    good = (n >= max(min_names, k + 2)) & (syy > 0) & np.isfinite(sxx).all(axis=(1, 2))
    if good.any():
        good[good] = np.linalg.cond(sxx[good]) < MAX_CONDITION
    beta = np.full((n.size, k), np.nan)
    if good.any():
        beta[good] = np.linalg.solve(sxx[good], sxy[good][..., None])[..., 0]
    b0 = np.where(good[:, None], beta, 0.0)
    resid = dy.copy(order="K")
    for i in range(k):
        resid -= b0[:, i : i + 1] * dxs[i]
    ssr = _xsum(resid * resid)
    with np.errstate(invalid="ignore", divide="ignore"):
        intercept = my - sum(b0[:, i] * centered[i][0] for i in range(k))
        r2 = 1.0 - ssr / syy
    return Regression(
        beta=beta,
        intercept=np.where(good, intercept, np.nan),
        r2=np.where(good, r2, np.nan),
        resid=resid,
        sxx=sxx,
        sxy=sxy,
        syy=syy,
    )


def decay_half_life(ic: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(decay rate λ per session, half-life ln 2 / λ in sessions) of IC(h) = IC(1)·exp(−λ(h−1)).

    ``ic``: horizon → (T,) IC at that horizon (1 required). Least squares of
    ln(IC(h) / IC(1)) = −λ(h−1) through the origin over the horizons h > 1 whose IC is positive
    (a log needs one; a horizon where the IC is gone carries no rate). Null when IC(1) ≤ 0 or
    null or no later horizon has a positive IC; the half-life also when λ ≤ 0 (no decay).
    """
    ic1 = np.asarray(ic[1], dtype=np.float64)
    num = np.zeros(ic1.shape)
    den = np.zeros(ic1.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        for h, v in ic.items():
            if h == 1:
                continue
            use = (ic1 > 0) & (np.asarray(v) > 0)
            num += np.where(use, (h - 1) * np.log(np.where(use, v / ic1, 1.0)), 0.0)
            den += np.where(use, float((h - 1) ** 2), 0.0)
        rate = np.where((ic1 > 0) & (den > 0), -num / den, np.nan)
        half = np.where(rate > 0, math.log(2.0) / rate, np.nan)
    return rate, half


# --------------------------------------------------------------------------------------------
# the attribution
# --------------------------------------------------------------------------------------------

#: Threads for the per-variable sorts and the per-horizon work (numpy releases the GIL).
_WORKERS = max(1, min(2, os.cpu_count() or 1))
_STATS = ("n", "ic", "rank_ic", "lag_rank_ic", "factor_return", "exposure", "contribution")
_DAY = tuple(c for c in DAILY_SCHEMA if c not in ("session", "horizon", "pred_session",
                                                  "failed_factor", "param_version"))  # fmt: skip


@dataclass(frozen=True, eq=False)
class _Inputs:
    """The dense (T, N) inputs on the layout (Fortran order) and their row sorts."""

    factors: dict[str, np.ndarray]  # f_c, f_s, f_d at their session
    all_f: np.ndarray  # the three composites exist
    preds: dict[int, np.ndarray]  # r_pred_{h}d at the prediction session
    realized: dict[int, np.ndarray]  # R_h at the realization session
    per_day: np.ndarray  # (T,) prediction rows per session
    weights: np.ndarray | None  # weight held over the session
    sorted: dict[str | int, _Sorted]  # f_c, f_s, f_d, ("r_pred", h) → _Sorted; h → R_h


@dataclass(frozen=True, eq=False)
class _HorizonResult:
    stats: dict[str, dict[str, np.ndarray]]  # factor → column → (T,)
    day: dict[str, np.ndarray]  # column → (T,)
    resid: np.ndarray | None = None  # (T − h, N) Res_h on rows D = h … T−1
    mask: np.ndarray | None = None  # its cross-section


def _horizon(h: int, inp: _Inputs, settings: AttributionSettings) -> _HorizonResult:
    """Every per-(session, horizon) statistic of horizon ``h``, as (T,) arrays by row D."""
    n_t = inp.per_day.size
    stats = {name: {c: np.full(n_t, np.nan) for c in _STATS} for name in FACTORS}
    day = {c: np.full(n_t, np.nan) for c in _DAY}
    day["n_predicted"][h:] = inp.per_day[: max(n_t - h, 0)]
    m_t = n_t - h
    if m_t <= 0:
        return _HorizonResult(stats, day)
    now, then = slice(h, n_t), slice(0, m_t)  # rows D against rows D − h

    def put(out: np.ndarray, values: np.ndarray) -> None:
        out[h:] = values

    r_h, r_1 = inp.realized[h][now], inp.realized[1][now]
    xs = {k: inp.factors[k][then] for k in COMPOSITES} | {"r_pred": inp.preds[h][then]}
    resid = r_h - xs["r_pred"]  # NaN unless predicted at D − h and realized at D
    realized = np.isfinite(resid)
    n_real = realized.sum(axis=1)
    mean, dev = _center(resid, realized, n_real)
    with np.errstate(invalid="ignore", divide="ignore"):
        put(
            day["resid_std"], np.where(n_real > 1, np.sqrt(_xsum(dev * dev) / (n_real - 1)), np.nan)
        )
    put(day["n_realized"], n_real)
    put(day["resid_mean"], np.where(n_real > 0, mean, np.nan))
    del dev

    mask = realized & inp.all_f[then] & np.isfinite(r_1)
    n = mask.sum(axis=1)
    ok = n >= settings.min_names
    mask &= ok[:, None]
    n = np.where(ok, n, 0)
    put(day["n"], n)

    # factor returns (the Fama–MacBeth cross-section) and Pearson ICs from its cross-products
    my, dy = _center(r_h, mask, n)
    centered = {name: _center(x, mask, n) for name, x in xs.items()}
    reg = _ols([centered[k] for k in COMPOSITES], my, dy, n, settings.min_names)
    put(day["intercept"], reg.intercept)
    put(day["r2"], reg.r2)
    for i, k in enumerate(COMPOSITES):
        put(stats[k]["factor_return"], reg.beta[:, i])
        put(stats[k]["ic"], _corr(reg.sxy[:, i], reg.sxx[:, i, i], reg.syy))
    dp = centered["r_pred"][1]
    put(stats["r_pred"]["ic"], _corr(_xsum(dp * dy), _xsum(dp * dp), reg.syy))
    del centered, dp, dy

    # rank ICs: Spearman within the cross-section, against R_h and against R_1 (lag IC)
    ranked_h = _Ranked.of(inp.sorted[h].rows(now), mask, n)
    ranked_1 = ranked_h if h == 1 else _Ranked.of(inp.sorted[1].rows(now), mask, n)
    for name in FACTORS:
        key = ("r_pred", h) if name == "r_pred" else name
        ranked = _Ranked.of(inp.sorted[key].rows(then), mask, n)
        put(stats[name]["n"], n)
        put(stats[name]["rank_ic"], ranked.corr(ranked_h, n))
        put(stats[name]["lag_rank_ic"], ranked.corr(ranked_1, n))
    del ranked_h, ranked_1

    if h == 1 and inp.weights is not None:
        w = inp.weights[now]
        held = np.isfinite(w)
        wm = np.where(mask & held, w, 0.0)
        fit = np.isfinite(reg.intercept)
        covered = _xsum(wm)
        for i, k in enumerate(COMPOSITES):
            expo = np.where(fit, _xsum(wm * np.where(mask, xs[k], 0.0)), np.nan)
            put(stats[k]["exposure"], expo)
            put(stats[k]["contribution"], expo * reg.beta[:, i])
        put(day["portfolio_return"], np.where(fit, _xsum(wm * np.where(mask, r_h, 0.0)), np.nan))
        put(day["intercept_contribution"], reg.intercept * covered)
        put(day["specific_return"], np.where(fit, _xsum(wm * reg.resid), np.nan))
        put(day["weight_covered"], np.where(fit, covered, np.nan))
        put(day["weight_uncovered"], _xsum(np.where(held & ~mask, w, 0.0)))
    if h == 1:
        return _HorizonResult(stats, day, resid=resid, mask=mask)
    return _HorizonResult(stats, day)


def _resid_corr(
    res: _HorizonResult, factors: dict[str, np.ndarray], settings: AttributionSettings
) -> dict[str, np.ndarray]:
    """Per composite, (T,) rolling correlation of Res_1[D] with ΔF_k[D] = F_k[D−1] − F_k[D−2]:
    within-day centered cross-products summed over the last ``resid_window`` sessions that
    have a cross-section (the market move of a day, common to every residual, drops out)."""
    n_t = next(iter(factors.values())).shape[0]
    out = {k: np.full(n_t, np.nan) for k in COMPOSITES}
    if res.resid is None or res.mask is None or n_t <= 2:
        return out
    resid, mask = res.resid[1:], res.mask[1:]  # rows D = 2 … T−1
    for k in COMPOSITES:
        f = factors[k]
        change = f[1:-1] - f[:-2]
        m = mask & np.isfinite(change)
        n = m.sum(axis=1)
        _, dx = _center(change, m, n)
        _, dy = _center(resid, m, n)
        use = n >= settings.min_names
        sums = []
        for a, b in ((dx, dy), (dx, dx), (dy, dy)):
            s = np.full(n_t, np.nan)
            s[2:] = np.where(use, _xsum(a * b), np.nan)
            sums.append(grid.rolling_sum(s, settings.resid_window))
        (sxy, count), (sxx, _), (syy, _) = sums
        out[k] = np.where(count >= settings.resid_min_sessions, _corr(sxy, sxx, syy), np.nan)
    return out


def attribution(
    zscored: pl.DataFrame,
    predictions: pl.DataFrame,
    panel: pl.DataFrame,
    weights: pl.DataFrame | None = None,
    settings: AttributionSettings | None = None,
) -> Attribution:
    """Attribute ``predictions`` to realized returns and factors (see the module docstring).

    * ``zscored`` — zscored_factors rows: session, symbol, f_c, f_s, f_d (per-day z-scores made
      after the close of ``session``).
    * ``predictions`` — predictions rows: session, symbol, r_pred_1d, r_pred_5d, r_pred_10d
      (fractions from the session's close), param_version.
    * ``panel`` — aligned_panel rows: session, symbol, close_adj (dividend-adjusted close, TWD);
      ``has_bar`` when present (a carried close is not a price: no realization from or to it).
    * ``weights`` — optional: session, symbol, weight (fraction of capital held over the
      session); gives the exposures, contributions and the portfolio return split.

    Inputs may cover different sessions; values at a session are complete when the inputs hold
    ``settings.lookback()`` sessions before it.
    """
    settings = settings or AttributionSettings()
    _require(zscored, ["session", "symbol", *COMPOSITES], "zscored_factors",
             "pass the zscored_factors rows (session, symbol, f_c, f_s, f_d)")  # fmt: skip
    _require(predictions, ["session", "symbol", *[f"r_pred_{h}d" for h in HORIZONS],
                           "param_version"], "predictions",
             "pass the predictions rows (model.predict) with their param_version")  # fmt: skip
    _require(panel, ["session", "symbol", "close_adj"], "aligned_panel",
             "pass the aligned_panel rows with the dividend-adjusted close")  # fmt: skip
    if weights is not None:
        _require(weights, ["session", "symbol", "weight"], "weights",
                 "pass session, symbol, weight (fraction of capital held over the session)")  # fmt: skip
    versionless = predictions.filter(
        pl.col("param_version").is_null() | (pl.col("param_version") == "")
    )
    if versionless.height:
        r = versionless.row(0, named=True)
        raise QGError(
            f"predictions: {versionless.height} rows without param_version (first "
            f"{r['session']} {r['symbol']}); write predictions from a parameter version"
        )
    frames = [zscored, predictions, panel] + ([weights] if weights is not None else [])
    lay = _Layout.of(frames)
    if predictions.is_empty():
        return _empty()
    gp = lay.grid(predictions, "predictions")
    gz = lay.grid(zscored, "zscored_factors")
    gx = lay.grid(panel, "aligned_panel")

    # realized returns R_h[D] (row D): traded closes at D − h and D
    close = _dense(gx, panel["close_adj"])
    close[~(close > 0)] = np.nan
    if "has_bar" in panel.columns:
        close[_dense(gx, panel["has_bar"]) != 1.0] = np.nan
    realized = {h: close / grid.lag(close, h) - 1.0 for h in HORIZONS}
    del close
    factors = {k: _dense(gz, zscored[k]) for k in COMPOSITES}
    preds = {h: _dense(gp, predictions[f"r_pred_{h}d"]) for h in HORIZONS}
    w = None if weights is None else _dense(lay.grid(weights, "weights"), weights["weight"])

    with ThreadPoolExecutor(_WORKERS) as pool:
        jobs = {key: pool.submit(_Sorted.of, x) for key, x in
                [(("r_pred", 1), preds[1]), *factors.items(), *realized.items()]}  # fmt: skip
        sorted_: dict = {key: job.result() for key, job in jobs.items()}
        hinted = {("r_pred", h): pool.submit(_Sorted.of, preds[h], sorted_["r_pred", 1])
                  for h in HORIZONS[1:]}  # fmt: skip
        sorted_ |= {key: job.result() for key, job in hinted.items()}
        inp = _Inputs(
            factors=factors,
            all_f=np.isfinite(factors["f_c"]) & np.isfinite(factors["f_s"])
            & np.isfinite(factors["f_d"]),
            preds=preds,
            realized=realized,
            per_day=np.bincount(gp.t, minlength=lay.shape[0]),
            weights=w,
            sorted=sorted_,
        )  # fmt: skip
        futures = {h: pool.submit(_horizon, h, inp, settings) for h in HORIZONS}
        results = {h: f.result() for h, f in futures.items()}
    del sorted_, inp
    resid_corr = _resid_corr(results[1], factors, settings)
    residuals = _residual_rows(predictions, gp, realized, lay, settings)
    del factors, preds, realized, w
    return _assemble(results, resid_corr, residuals, predictions, gp, lay, settings)


def _assemble(
    results: dict[int, _HorizonResult],
    resid_corr: dict[str, np.ndarray],
    residuals: pl.DataFrame,
    predictions: pl.DataFrame,
    gp: Grid,
    lay: _Layout,
    settings: AttributionSettings,
) -> Attribution:
    """The long tables from the (T,) arrays: sessions D with D − h between the first and the
    last prediction session."""
    n_t = lay.shape[0]
    per_day = np.bincount(gp.t, minlength=n_t)
    first, last = int(gp.t.min()), int(gp.t.max())
    sessions = pl.Series("session", lay.sessions)
    versions = _day_versions(predictions, gp, n_t)

    def rolling(x: np.ndarray) -> np.ndarray:
        return grid.rolling_mean(x, settings.ic_window, settings.ic_min_sessions)

    for res in results.values():
        for st in res.stats.values():
            st["rolling_ic"] = rolling(st["ic"])
            st["rolling_rank_ic"] = rolling(st["rank_ic"])
            st["rolling_lag_rank_ic"] = rolling(st["lag_rank_ic"])

    blame = np.column_stack([np.abs(resid_corr[k]) for k in COMPOSITES])
    blame = np.where(np.isnan(blame), -1.0, blame)
    worst = np.argmax(blame, axis=1)
    failed = np.where(
        blame[np.arange(n_t), worst] >= settings.fail_min_corr, np.array(COMPOSITES)[worst], None
    )

    def keys(t: np.ndarray, h: int, factor: str | None = None) -> dict[str, pl.Series]:
        out = {
            "session": sessions.gather(t),
            "horizon": pl.Series([h] * t.size, dtype=pl.Int32),
            "pred_session": sessions.gather(t - h),
            "param_version": pl.Series(versions[t - h].tolist(), dtype=pl.String),
        }
        if factor is not None:
            out["factor"] = pl.Series([factor] * t.size, dtype=pl.String)
        return out

    def values(arrays: dict[str, np.ndarray], t: np.ndarray) -> dict[str, pl.Series]:
        return {c: pl.Series(c, a[t], nan_to_null=True) for c, a in arrays.items()}

    def rows_of(h: int) -> np.ndarray:
        return np.arange(first + h, min(last + h, n_t - 1) + 1)

    factor_frames, daily_frames, diagnosis_frames = [], [], []
    for h, res in results.items():
        t = rows_of(h)
        for name, st in res.stats.items():
            factor_frames.append(pl.DataFrame(keys(t, h, name) | values(st, t)))
        fail = failed[t] if h == 1 else np.full(t.size, None)
        daily_frames.append(
            pl.DataFrame(
                keys(t, h)
                | values(res.day, t)
                | {"failed_factor": pl.Series(fail.tolist(), dtype=pl.String)}
            )
        )
    t = rows_of(1)
    for name in FACTORS:
        rate, half = decay_half_life(
            {h: results[h].stats[name]["rolling_lag_rank_ic"] for h in HORIZONS}
        )
        ric = results[1].stats[name]["rolling_rank_ic"]
        alert = np.where(np.isnan(ric), np.nan, ric < settings.alert_threshold)
        corr = resid_corr.get(name, np.full(n_t, np.nan))
        arrays = {"resid_corr": corr, "decay_rate": rate, "half_life": half, "aging_alert": alert}
        diagnosis_frames.append(pl.DataFrame(keys(t, 1, name) | values(arrays, t)))

    return Attribution(
        residuals=residuals,
        factors=_frame(factor_frames, FACTORS_SCHEMA, ["session", "factor", "horizon"]),
        diagnosis=_frame(diagnosis_frames, DIAGNOSIS_SCHEMA, ["session", "factor"]),
        daily=_frame(daily_frames, DAILY_SCHEMA, ["session", "horizon"]),
        missing_prediction_sessions=tuple(
            sessions.gather(first + np.flatnonzero(per_day[first : last + 1] == 0)).to_list()
        ),
    )


def _day_versions(predictions: pl.DataFrame, gp: Grid, n_t: int) -> np.ndarray:
    """(T,) object: each session's parameter version — the sorted distinct ids joined by ","
    when a day's rows disagree — None for a session without predictions."""
    per = (
        pl.DataFrame({"t": gp.t, "param_version": predictions["param_version"].cast(pl.String)})
        .group_by("t")
        .agg(pl.col("param_version").unique().sort().str.join(","))
    )
    out = np.full(n_t, None, dtype=object)
    out[per["t"].to_numpy()] = per["param_version"].to_numpy()
    return out


def _residual_rows(
    predictions: pl.DataFrame,
    gp: Grid,
    realized: dict[int, np.ndarray],
    lay: _Layout,
    settings: AttributionSettings,
) -> pl.DataFrame:
    """One row per prediction row (in their order) and horizon whose realization session is on
    the layout."""
    n_t = lay.shape[0]
    sessions = pl.Series("session", lay.sessions)
    parts = []
    for h in settings.residual_horizons:
        keep = gp.t + h < n_t
        t, s = gp.t[keep] + h, gp.s[keep]
        actual = realized[h].ravel(order="F").take(s * n_t + t)  # (t, s) at s·T + t
        rows = predictions.filter(pl.Series(keep))
        r_actual = pl.Series("r_actual", actual, nan_to_null=True)
        r_pred = rows[f"r_pred_{h}d"].cast(pl.Float64)
        parts.append(
            pl.DataFrame(
                {
                    "session": sessions.gather(t),
                    "symbol": rows["symbol"],
                    "horizon": pl.Series([h] * t.size, dtype=pl.Int32),
                    "pred_session": rows["session"],
                    "r_actual": r_actual,
                    "r_pred": r_pred,
                    "residual": r_actual - r_pred,
                    "param_version": rows["param_version"],
                }
            )
        )
    return _frame(parts, RESIDUALS_SCHEMA, None)


def _frame(parts: list[pl.DataFrame], schema: pl.Schema, key: list[str] | None) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema=schema)
    out = pl.concat([p.select(list(schema)).cast(dict(schema)) for p in parts])
    return out.sort(key) if key else out


def _empty() -> Attribution:
    return Attribution(
        residuals=pl.DataFrame(schema=RESIDUALS_SCHEMA),
        factors=pl.DataFrame(schema=FACTORS_SCHEMA),
        diagnosis=pl.DataFrame(schema=DIAGNOSIS_SCHEMA),
        daily=pl.DataFrame(schema=DAILY_SCHEMA),
        missing_prediction_sessions=(),
    )
