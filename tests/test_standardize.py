"""Standardization (SPEC §5.4): winsorize + z-score by hand, rank and time-series z, industry
neutralization, composites, and the start independence of the rolling grid helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quant_genesis_dagster.domain.factors import grid, standardize
from quant_genesis_dagster.domain.params import FactorSettings
from quant_genesis_dagster.errors import QGError

NAN = np.nan


def test_winsorize_clips_each_day_to_its_linear_quantiles():
    # 11 values 0..10: the 10% / 90% linear quantiles are exactly 1 and 9
    x = np.array([np.arange(11, dtype=float), [*range(10), NAN]])
    w = standardize.winsorize(x, 0.10)
    assert w[0].tolist() == [1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9]
    # row 2 has 10 values 0..9: quantiles at positions 0.9 and 8.1 → 0.9 and 8.1
    assert w[1, 0] == pytest.approx(0.9) and w[1, 9] == pytest.approx(8.1)
    assert np.isnan(w[1, 10])
    # same as pandas' quantile + clip, the reference a researcher would check against
    df = pd.DataFrame(x.T)
    ref = df.clip(df.quantile(0.10), df.quantile(0.90), axis=1).T.to_numpy()
    np.testing.assert_allclose(w, ref, equal_nan=True)


def test_zscore_by_hand_and_degenerate_days():
    x = np.array([[1.0, 2.0, 3.0, NAN], [5.0, 5.0, 5.0, 5.0], [1.0, NAN, NAN, NAN]])
    z = standardize.zscore_rows(x, min_names=2)
    # mean 2, sample std 1
    assert z[0, :3].tolist() == [-1.0, 0.0, 1.0] and np.isnan(z[0, 3])
    assert z[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # no dispersion: no information, not inf
    assert np.isnan(z[2]).all()  # fewer than min_names values


def test_rank_scores_average_ties_and_have_unit_scale():
    x = np.array([[3.0, 1.0, 2.0, 2.0, NAN]])
    r = standardize.rank_rows(x, min_names=2)
    # ranks 4, 1, 2.5, 2.5 of n=4 → p = 1, 0, 0.5, 0.5
    np.testing.assert_allclose(r[0, :4], (np.array([1, 0, 0.5, 0.5]) - 0.5) * np.sqrt(12))
    big = standardize.rank_rows(np.random.default_rng(0).normal(size=(1, 5000)), min_names=2)
    assert big.std() == pytest.approx(1.0, abs=0.01)


def test_time_series_z_uses_only_the_trailing_window():
    x = np.array([1.0, 2.0, 3.0, 4.0, 10.0])[:, None]
    z = standardize.ts_zscore(x, 3)
    assert np.isnan(z[:2, 0]).all()
    assert z[2, 0] == pytest.approx(1.0)  # window 1,2,3: mean 2, std 1
    window = np.array([3.0, 4.0, 10.0])
    assert z[4, 0] == pytest.approx((10 - window.mean()) / window.std(ddof=1))


def test_industry_neutralization_removes_each_industry_mean():
    x = np.array([[1.0, 3.0, 10.0, 20.0, NAN]])
    groups = np.array([[0, 0, 1, 1, 1]])
    assert standardize.neutralize(x, groups)[0, :4].tolist() == [-1.0, 1.0, -5.0, 5.0]


def test_combine_renormalizes_over_available_components():
    a = np.array([[1.0, NAN, NAN]])
    b = np.array([[3.0, 2.0, NAN]])
    out = standardize.combine({"a": a, "b": b}, {"a": 1.0, "b": -0.5})
    assert out[0, 0] == pytest.approx((1.0 - 1.5) / 1.5)
    assert out[0, 1] == pytest.approx(-2.0)  # only b (z 2): its sign, full weight
    assert np.isnan(out[0, 2])
    with pytest.raises(QGError, match="component"):
        standardize.combine({"a": a}, {"a": 1.0, "c": 1.0})


def test_standardize_method_dispatch_and_bad_method():
    x = np.random.default_rng(1).normal(size=(3, 50))
    for method in ("cross_section", "rank", "time_series"):
        z = standardize.standardize(x, FactorSettings(zscore_method=method, ts_window=20))
        assert z.shape == x.shape
    with pytest.raises(QGError, match="zscore_method"):
        FactorSettings(zscore_method="minmax")


def test_rolling_helpers_are_start_independent_and_match_pandas():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 30))
    x[rng.random(x.shape) < 0.05] = NAN
    s_full, c_full = grid.rolling_sum(x, 20)
    s_late, c_late = grid.rolling_sum(x[300:], 20)
    assert (s_full[319:] == s_late[19:]).all() and (c_full[319:] == c_late[19:]).all()
    sd_full = grid.rolling_std(x, 20, min_count=10)
    sd_late = grid.rolling_std(x[300:], 20, min_count=10)
    np.testing.assert_array_equal(sd_full[319:], sd_late[19:])
    ref = pd.DataFrame(x).rolling(20, min_periods=10).std().to_numpy()
    np.testing.assert_allclose(sd_full, ref, rtol=1e-9, atol=1e-12, equal_nan=True)
    m = np.array([1, 1, 0, 1, 1, 1, 0], dtype=bool)[:, None]
    assert grid.streak(m, cap=2)[:, 0].tolist() == [1, 2, 0, 1, 2, 2, 0]
    ints = rng.integers(-1000, 1000, size=(400, 3))
    np.testing.assert_array_equal(grid.rolling_int_sum(ints, 180)[-1], ints[-180:].sum(axis=0))


def test_the_moments_check_counts_a_day_without_dispersion_instead_of_failing_it():
    import datetime as dt

    import polars as pl

    from quant_genesis_dagster.domain.factors import composite

    rng = np.random.default_rng(4)
    day1, day2 = dt.date(2024, 7, 1), dt.date(2024, 7, 2)
    good = rng.standard_normal(30)
    good = (good - good.mean()) / good.std(ddof=1)
    z = pl.DataFrame(
        {
            "session": [day1] * 30 + [day2] * 6,
            "f_d": [*good.tolist(), *[0.0] * 6],  # day 2: every name alone in its industry
        }
    )
    ok, detail = composite.check_moments(z)
    assert ok and detail["days_without_dispersion"] == 1
    bad = z.with_columns(f_d=pl.when(pl.col("session") == day1).then(pl.col("f_d") * 2)
                         .otherwise(pl.col("f_d")))  # fmt: skip
    assert not composite.check_moments(bad)[0]
