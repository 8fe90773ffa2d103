"""Standardization of factor components and the composites F_C, F_S, F_D (SPEC §5.4).

Per trading day, cross-sectionally (default): winsorize at the ``winsor_pct`` tails (linear
interpolated quantiles, as numpy and pandas compute them), then z-score ``(F − μ) / σ`` (σ with
ddof=1). Alternatives: ``rank`` (percentile rank mapped to a unit-variance uniform score) and
``time_series`` (each symbol against its own trailing ``ts_window`` sessions). Optional industry
neutralization removes the (session, industry) mean before standardizing; the value family is
always neutralized (SPEC §5.3).

The composite of a family is the weighted mean of its available component z-scores with the
family's documented signed weights (``COMPONENTS`` in each factor module), re-standardized the
same way. Sentiment readings that are extreme without an abnormal price or volume move are set
to 0 (neutral) first — the noise filter of ``sentiment.noise_mask``.

Arrays are (T sessions, N symbols), NaN = no value. Every day is computed from that day's values
only (time-series z from its trailing window only), so results are point-in-time and
start-independent.
"""

from __future__ import annotations

import numpy as np

from quant_genesis_dagster.domain.factors import grid
from quant_genesis_dagster.domain.params import FactorSettings
from quant_genesis_dagster.errors import QGError

METHODS = ("cross_section", "rank", "time_series")


def _row_quantile(sorted_rows: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Per-row linear-interpolated quantile of rows sorted ascending with NaNs last."""
    pos = q * np.maximum(counts - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(counts - 1, 0))
    rows = np.arange(sorted_rows.shape[0])
    a = sorted_rows[rows, lo]
    b = sorted_rows[rows, hi]
    return a + (b - a) * (pos - lo)


def winsorize(x: np.ndarray, pct: float) -> np.ndarray:
    """Clip each row to its [pct, 1 − pct] quantiles (NaN kept)."""
    if pct <= 0:
        return x.copy()
    counts = np.sum(~np.isnan(x), axis=1)
    s = np.sort(x, axis=1)  # NaN sorts last
    lo = _row_quantile(s, counts, pct)
    hi = _row_quantile(s, counts, 1 - pct)
    del s
    with np.errstate(invalid="ignore"):
        return np.clip(x, lo[:, None], hi[:, None])


def zscore_rows(x: np.ndarray, min_names: int) -> np.ndarray:
    """Row-wise (x − mean) / std (ddof=1); rows with fewer than ``min_names`` values are NaN;
    a row without dispersion is 0 (no information, not infinity)."""
    valid = ~np.isnan(x)
    n = valid.sum(axis=1)
    work = np.where(valid, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = work.sum(axis=1) / n
        z = x - mean[:, None]  # NaN stays NaN
        np.copyto(work, z, where=valid)
        std = np.sqrt(np.einsum("ij,ij->i", work, work) / (n - 1))
        z /= std[:, None]
    flat = ~(std > 1e-12 * np.maximum(np.abs(mean), 1.0))
    if flat.any():
        z[flat] = np.where(valid[flat], 0.0, np.nan)
    z[n < min_names] = np.nan
    return z


def rank_rows(x: np.ndarray, min_names: int) -> np.ndarray:
    """Row-wise percentile rank (ties averaged) mapped to a unit-variance score:
    ``(p − 0.5)·√12`` with ``p = (rank − 1) / (n − 1)``."""
    from scipy.stats import rankdata

    valid = ~np.isnan(x)
    n = valid.sum(axis=1)
    ranks = rankdata(x, axis=1, nan_policy="omit")
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (ranks - 1) / (n - 1)[:, None]
    out = (p - 0.5) * np.sqrt(12.0)
    out[~valid] = np.nan
    out[n < min_names] = np.nan
    return out


def ts_zscore(x: np.ndarray, window: int) -> np.ndarray:
    """Each symbol against its own trailing ``window`` sessions (today included); NaN until the
    window is full; 0 when the window has no dispersion."""
    mean = grid.rolling_mean(x, window)
    std = grid.rolling_std(x, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - mean) / std
    z = np.where(std > 0, z, np.where(np.isnan(std), np.nan, 0.0))
    z[np.isnan(x)] = np.nan
    return z


def neutralize(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Remove the mean of each (row, group) from its members; ``groups`` (T, N) int codes ≥ 0."""
    t_n, n = x.shape
    n_groups = int(groups.max()) + 1 if groups.size else 1
    key = (np.arange(t_n)[:, None] * n_groups + groups).ravel()
    valid = ~np.isnan(x).ravel()
    vals = np.where(valid, x.ravel(), 0.0)
    size = t_n * n_groups
    sums = np.bincount(key, weights=vals, minlength=size)
    counts = np.bincount(key, weights=valid.astype(np.float64), minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return x - means[key].reshape(t_n, n)


def standardize(
    x: np.ndarray,
    settings: FactorSettings,
    *,
    groups: np.ndarray | None = None,
    neutral: bool = False,
) -> np.ndarray:
    """One component → z-scores by ``settings.zscore_method`` (see the module docstring)."""
    method = settings.zscore_method
    if method not in METHODS:
        raise QGError(f"zscore method {method!r}; use one of {', '.join(METHODS)}")
    if (neutral or settings.industry_neutral) and groups is not None:
        x = neutralize(x, groups)
    if method == "rank":
        return rank_rows(x, settings.min_names)
    if method == "time_series":
        return ts_zscore(x, settings.ts_window)
    return zscore_rows(winsorize(x, settings.winsor_pct), settings.min_names)


def combine(z: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Σ w_k z_k / Σ |w_k| over the components available on each row (NaN when none)."""
    missing = [k for k in weights if k not in z]
    if missing:
        raise QGError(f"composite: no z-scores for component(s) {', '.join(missing)}")
    shape = next(iter(z.values())).shape
    num = np.zeros(shape)
    den = np.zeros(shape)
    for name, w in weights.items():
        v = z[name]
        ok = ~np.isnan(v)
        # an unavailable component adds 0 to the numerator and its |w| nowhere (plain ufunc
        # loops: masked ``where=`` loops are several times slower)
        term = np.where(ok, v, 0.0)
        term *= w
        num += term
        den += ok * abs(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        num /= den
    num[den == 0] = np.nan
    return num
