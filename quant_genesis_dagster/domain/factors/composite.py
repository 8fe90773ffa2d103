"""``zscored_factors``: every component standardized per day and the composites F_C, F_S, F_D.

Inputs are the three factor tables for the same (session, symbol) rows plus the panel's
industry. Per family: each component of its ``COMPONENTS`` is standardized
(``standardize.standardize``; the value family within industry), sentiment readings that the
noise filter rejects are set to 0, the family's signed weighted mean is taken over the available
components and standardized again, so F_C, F_S and F_D are unit-variance cross-sectional scores
with the documented signs (high = expected to outperform).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from quant_genesis_dagster.domain.factors import chip, sentiment, standardize, value
from quant_genesis_dagster.domain.factors.grid import Components, Grid
from quant_genesis_dagster.domain.params import FactorSettings
from quant_genesis_dagster.domain.tables import polars_schema
from quant_genesis_dagster.domain.warehouse import models
from quant_genesis_dagster.errors import QGError

ZSCORED_SCHEMA = polars_schema(models.ZscoredFactors)
#: Threads for the per-component standardization (numpy releases the GIL in array loops).
_WORKERS = max(1, min(4, os.cpu_count() or 1))
#: family → (composite column, component weights, within-industry)
FAMILIES: dict[str, tuple[str, dict[str, float], bool]] = {
    "chip": ("f_c", chip.COMPONENTS, chip.INDUSTRY_NEUTRAL),
    "sentiment": ("f_s", sentiment.COMPONENTS, sentiment.INDUSTRY_NEUTRAL),
    "value": ("f_d", value.COMPONENTS, value.INDUSTRY_NEUTRAL),
}


def _require(df: pl.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise QGError(f"{what}: missing column(s) {', '.join(missing)}; nothing written")


def _on_rows(keys: pl.DataFrame, df: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    """``df``'s ``cols`` on the rows of ``keys``: taken as they are when ``df`` has the same
    (session, symbol) rows in the same order (what the factor functions return for the same
    panel), else by a left join (missing rows → null)."""
    same = (
        df.height == keys.height
        and df["session"].equals(keys["session"])
        and df["symbol"].equals(keys["symbol"])
    )
    if same:
        return df.select(cols)
    return (
        keys.select("session", "symbol")
        .join(df.select("session", "symbol", *cols), on=["session", "symbol"], how="left",
              maintain_order="left")
        .select(cols)
    )  # fmt: skip


def zscored_factors(
    chip_df: pl.DataFrame,
    sentiment_df: pl.DataFrame,
    value_df: pl.DataFrame,
    panel: pl.DataFrame,
    settings: FactorSettings | None = None,
    *,
    layout: Grid | None = None,
) -> pl.DataFrame:
    """Rows of ``polars_schema(models.ZscoredFactors)``, one per ``panel`` row (panel order).

    All frames hold the same consecutive sessions (history included when
    ``settings.zscore_method == "time_series"``); factor rows missing for a panel row count as
    no value. ``layout``: the panel's ``Grid`` when the caller already has it.
    """
    settings = settings or FactorSettings()
    _require(panel, ["session", "symbol", "industry"], "aligned_panel")
    keys = panel.select("session", "symbol", "industry")
    g = layout or Grid.of(keys, what="zscored_factors input")
    inputs = {"chip": chip_df, "sentiment": sentiment_df, "value": value_df}
    frames = {}
    for family, df in inputs.items():
        cols = [*FAMILIES[family][1], *_EXTRA[family]]
        _require(df, ["session", "symbol", *cols], f"{family}_factors")
        frames[family] = _on_rows(keys, df, cols)
    # a panel row without a factor row is in warm-up (the join left it null)
    warm = frames["chip"]["warmup"].fill_null(True) | frames["sentiment"]["warmup"].fill_null(True)
    abnormal = g.dense(frames["sentiment"]["abnormal_move"].cast(pl.Float64), fill=0) > 0
    inputs = {
        (family, comp): g.dense(frames[family][comp])  # NaN where a pair has no row
        for family, (_, weights, _) in FAMILIES.items()
        for comp in weights
    }
    return _zscored_rows(keys, g, inputs, None, abnormal, warm, settings, owned=set(inputs))


def zscored_from_components(
    chip_c: Components,
    sentiment_c: Components,
    value_c: Components,
    panel: pl.DataFrame,
    settings: FactorSettings | None = None,
    *,
    industry_codes: np.ndarray | None = None,
    consume: bool = False,
) -> pl.DataFrame:
    """``zscored_factors`` from the three families' ``Components`` on the panel's grid (the
    in-memory stack: the component arrays go straight into the standardization).
    ``industry_codes``: ``industry_grid(panel, grid)`` when the caller already has it.
    ``consume``: the weighted components' arrays are taken out of the ``Components`` and
    overwritten by their z-scores (no second set of arrays: the peak memory of a long range)."""
    settings = settings or FactorSettings()
    _require(panel, ["session", "symbol", "industry"], "aligned_panel")
    keys = panel.select("session", "symbol", "industry")
    parts = {"chip": chip_c, "sentiment": sentiment_c, "value": value_c}
    g = chip_c.grid
    for family, c in parts.items():
        if c.grid is not g:
            raise QGError(f"zscored_factors: {family} components are on another grid")
    if g.t.size != keys.height:
        raise QGError("zscored_factors: the panel is not the components' panel; pass the same rows")
    warm = g.rows(chip_c.dense["warmup"] | sentiment_c.dense["warmup"])
    abnormal = sentiment_c.dense["abnormal_move"].astype(bool)
    inputs = {}
    for family, (_, weights, _) in FAMILIES.items():
        c = parts[family]
        for comp in weights:
            if comp not in c.dense:
                inputs[family, comp] = c.array(comp)  # a fresh array: ours to overwrite
            elif consume:
                inputs[family, comp] = c.dense.pop(comp)
                c.partial = True
            else:
                inputs[family, comp] = c.dense[comp]
    owned = {item for item in inputs if consume or item[1] not in parts[item[0]].dense}
    # a window's value on a (session, symbol) without a panel row is not a value: the rows
    # path never sees it, so neither may the standardization (masked block by block)
    return _zscored_rows(
        keys, g, inputs, g.missing_mask(), abnormal, pl.Series(warm), settings,
        industry_codes=industry_codes, owned=owned,
    )  # fmt: skip


#: Columns besides the weighted components that the standardization reads per family.
_EXTRA = {"chip": ["warmup"], "sentiment": ["warmup", "abnormal_move"], "value": []}
#: Every column of the factor tables ``zscored_factors`` reads.
INPUT_COLUMNS: dict[str, list[str]] = {
    family: [*weights, *_EXTRA[family]] for family, (_, weights, _) in FAMILIES.items()
}


def industry_grid(panel: pl.DataFrame, g: Grid) -> np.ndarray:
    """(T, N) int64 industry codes of the panel rows (a null industry is its own group)."""
    industry = panel["industry"].fill_null("")
    codes = industry.cast(pl.Categorical).to_physical().cast(pl.Int64).to_numpy()
    out = np.zeros(g.shape, dtype=np.int64)
    out.ravel()[g.flat] = codes
    return out


#: Sessions per block of the cross-sectional standardization: every step of it (neutralize,
#: winsorize, z-score, noise filter, composite) reads one session's row only, so a block of
#: sessions goes through the whole chain while its arrays (~1 MB each) stay in cache.
SESSION_BLOCK = 64


def _zscored_rows(
    keys: pl.DataFrame,
    g: Grid,
    inputs: dict[tuple[str, str], np.ndarray],
    missing: np.ndarray | None,
    abnormal: np.ndarray,
    warm: pl.Series,
    settings: FactorSettings,
    *,
    industry_codes: np.ndarray | None = None,
    owned: set[tuple[str, str]] = frozenset(),
) -> pl.DataFrame:
    """Standardize every weighted component (``inputs[family, comp]``: (T, N) values; NaN
    also where ``missing`` is True), apply the noise filter (``abnormal``: (T, N) bool), build
    the composites and return the zscored rows on ``keys`` (session, symbol, industry in grid
    row order).

    Cross-sectional methods run block by block of ``SESSION_BLOCK`` sessions on a small thread
    pool (numpy releases the GIL in its array loops); the time-series method needs whole
    columns and runs on the full range at once. Same values either way. The float64 arrays of
    the ``owned`` items are overwritten by their z-scores (each block's values are read before
    its z-scores are written, and blocks do not overlap).
    """
    codes = industry_grid(keys, g) if industry_codes is None else industry_codes
    t_n, n = g.shape
    items = list(inputs)
    z = {
        item: a if item in owned and a.dtype == np.float64 and a.flags.c_contiguous
        else np.empty((t_n, n))
        for item, a in inputs.items()
    }  # fmt: skip
    composites = {FAMILIES[f][0]: np.empty((t_n, n)) for f in FAMILIES}
    noise_count = np.zeros((t_n, n), dtype=np.int32)

    def run(lo: int) -> None:
        rows = slice(lo, lo + step)
        groups = codes[rows]
        done = {}
        for item in items:
            x = np.asarray(inputs[item][rows], dtype=np.float64)
            if missing is not None:
                x = np.where(missing[rows], np.nan, x)
            neutral = FAMILIES[item[0]][2]
            done[item] = standardize.standardize(x, settings, groups=groups, neutral=neutral)
        for comp in sentiment.NOISE_FILTERED:
            zc = done["sentiment", comp]
            mask = sentiment.noise_mask(zc, abnormal[rows], settings.noise_extreme_z)
            noise_count[rows] += mask
            zc[mask] = 0.0
        for family, (name, weights, neutral) in FAMILIES.items():
            raw = standardize.combine({c: done[family, c] for c in weights}, weights)
            composites[name][rows] = standardize.standardize(
                raw, settings, groups=groups, neutral=neutral
            )
        for item in items:
            z[item][rows] = done[item]

    step = t_n if settings.zscore_method == "time_series" else SESSION_BLOCK
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        list(pool.map(run, range(0, max(t_n, 1), step)))
    inputs = {}  # the caller's arrays are not needed any more (ours are the z-scores now)

    def col(a: np.ndarray) -> pl.Series:
        return pl.Series(g.rows(a), dtype=pl.Float64, nan_to_null=True)

    # gather each array onto the rows and let it go: the dense arrays never all coexist with
    # their row copies (the peak memory of a full-history run)
    columns = {f"z_{comp}": col(z.pop((family, comp))) for family, comp in items}
    columns |= {c: col(composites.pop(c)) for c in list(composites)}
    out = keys.with_columns(
        **columns,
        noise_filtered=pl.Series(g.rows(noise_count), dtype=pl.Int32),
        warmup=warm,
    )
    return out.select(list(ZSCORED_SCHEMA)).cast(dict(ZSCORED_SCHEMA))


# --------------------------------------------------------------------------------------------
# asset-check helpers
# --------------------------------------------------------------------------------------------

#: Columns whose per-day moments the zscored check verifies.
MOMENT_COLUMNS = ("f_c", "f_s", "f_d")


def check_moments(z: pl.DataFrame, tol: float = 0.05, min_names: int = 5) -> tuple[bool, dict]:
    """Per day and composite: mean ≈ 0 and std ≈ 1 (within ``tol``) where ≥ ``min_names``
    values exist. Noise-filtered components are not checked (the filter zeroes readings); a day
    whose values are all 0 (no dispersion to standardize) is counted, not failed."""
    cols = [c for c in z.columns if c.startswith("z_") or c in MOMENT_COLUMNS]
    filtered = {f"z_{c}" for c in sentiment.NOISE_FILTERED}
    cols = [c for c in cols if c not in filtered]
    stats = z.group_by("session").agg(
        *[pl.col(c).mean().alias(f"{c}:mean") for c in cols],
        *[pl.col(c).std().alias(f"{c}:std") for c in cols],
        *[pl.col(c).count().alias(f"{c}:n") for c in cols],
    )
    worst_mean, worst_std, bad, flat = 0.0, 0.0, [], 0
    for c in cols:
        s = stats.filter(pl.col(f"{c}:n") >= min_names)
        # a cross-section without dispersion (e.g. every name alone in its industry after
        # neutralization) is standardized to 0 by design: no information, not a wrong z-score
        no_dispersion = (pl.col(f"{c}:std") == 0) & (pl.col(f"{c}:mean") == 0)
        flat += s.filter(no_dispersion).height
        s = s.filter(~no_dispersion)
        if s.is_empty():
            continue
        dm = s[f"{c}:mean"].abs().max()
        ds = (s[f"{c}:std"] - 1).abs().max()
        worst_mean, worst_std = max(worst_mean, dm), max(worst_std, ds)
        if dm > tol or ds > tol:
            bad.append(c)
    return not bad, {
        "columns_checked": len(cols),
        "max_abs_mean": float(worst_mean),
        "max_abs_std_minus_1": float(worst_std),
        "failing": ", ".join(bad) or "none",
        "days_without_dispersion": flat,
    }


def check_finite(df: pl.DataFrame) -> tuple[bool, dict]:
    """No ±inf or NaN in any float column (missing values are null)."""
    floats = [c for c, t in df.schema.items() if t == pl.Float64]
    if not floats or df.is_empty():
        return True, {"columns": len(floats), "bad_values": 0}
    counts = df.select(
        [(pl.col(c).is_infinite() | pl.col(c).is_nan()).sum().alias(c) for c in floats]
    ).row(0, named=True)
    bad = {c: int(n) for c, n in counts.items() if n}
    return not bad, {"columns": len(floats), "bad_values": sum(bad.values()),
                     "bad_columns": ", ".join(bad) or "none"}  # fmt: skip


def coverage(df: pl.DataFrame, column: str) -> float:
    """Share of rows where ``column`` has a value."""
    return float(df[column].is_not_null().mean()) if df.height else 0.0
