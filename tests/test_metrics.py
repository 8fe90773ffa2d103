"""Performance metrics (SPEC §8): the standard convention against empyrical, the Qlib convention
by hand and against Qlib's formulas, rolling windows as whole-period metrics of their window and
point in time, and the one-line errors for bad input."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pandas as pd
import polars as pl
import pytest

from quant_genesis_dagster.domain import calendar, metrics
from quant_genesis_dagster.errors import QGError

NAN = np.nan
SQ238 = math.sqrt(238)


def _seeded(n: int = 750, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0006, 0.012, n)


def _crash() -> np.ndarray:
    r = _seeded(300, seed=11)
    r[150:155] = [-0.07, -0.10, -0.065, 0.04, -0.09]  # a one-week crash and a dead-cat bounce
    return r


def _gappy() -> np.ndarray:
    r = _seeded(400, seed=3)
    r[[0, 57, 58, 59, 200, 399]] = NAN  # the first and last sessions too
    return r


SERIES = {
    "seeded": _seeded(),
    "crash": _crash(),
    "all_positive": np.abs(_seeded(260, seed=5)) + 1e-4,
    "gap": _gappy(),
}


# --- standard convention == empyrical ------------------------------------------------------------


@pytest.mark.parametrize("name", SERIES)
def test_standard_convention_matches_empyrical(name):
    r = SERIES[name]
    present = r[~np.isnan(r)]
    expected = {
        metrics.sharpe_ratio: empyrical.sharpe_ratio(r),
        metrics.sortino_ratio: empyrical.sortino_ratio(r),
        metrics.max_drawdown: empyrical.max_drawdown(r),
        metrics.annual_volatility: empyrical.annual_volatility(r),
        # empyrical counts NaN sessions in the CAGR's n; ours drops them like every other
        # metric, which is empyrical's figure on the returns that exist
        metrics.annual_return: empyrical.annual_return(present),
    }
    for fn, ref in expected.items():
        got = fn(r, "standard")
        if math.isinf(ref):  # all_positive: no losing session, Sortino is +inf in both
            assert got == ref, fn.__name__
        else:
            assert got == pytest.approx(ref, rel=1e-12, abs=1e-15), fn.__name__


def test_a_gap_is_dropped_not_read_as_a_zero_return():
    r = SERIES["gap"]
    present = r[~np.isnan(r)]
    zero_filled = np.nan_to_num(r)
    for fn in (metrics.sharpe_ratio, metrics.sortino_ratio, metrics.annual_return):
        for conv in ("standard", "qlib"):
            assert fn(r, conv) == pytest.approx(fn(present, conv), rel=1e-12)
            assert fn(r, conv) != pytest.approx(fn(zero_filled, conv), rel=1e-6)
    # empyrical's CAGR does count the gaps (the one place the two differ)
    assert empyrical.annual_return(r) != pytest.approx(metrics.annual_return(r), rel=1e-6)


def test_standard_drawdown_counts_a_first_session_loss_from_the_starting_nav():
    assert metrics.max_drawdown([-0.05, 0.01]) == pytest.approx(-0.05)
    assert metrics.max_drawdown([0.01, 0.02]) == 0.0
    # 1.1 → 0.88 → 0.968: the trough is 20% below the peak, compounded
    assert metrics.max_drawdown([0.10, -0.20, 0.10]) == pytest.approx(-0.20)


def test_degenerate_series_follow_empyrical_inf_and_nan():
    assert metrics.sharpe_ratio(np.full(10, 0.01)) == math.inf  # no dispersion
    assert empyrical.sharpe_ratio(np.full(10, 0.01)) == math.inf
    assert math.isnan(metrics.sharpe_ratio(np.zeros(10)))  # 0 / 0
    assert math.isnan(metrics.sharpe_ratio([0.01]))  # one return has no std
    assert math.isnan(metrics.max_drawdown([]))
    assert math.isnan(metrics.annual_return([NAN, NAN]))


# --- Qlib convention -----------------------------------------------------------------------------


def test_qlib_convention_by_hand_on_five_returns():
    r = [0.01, -0.02, 0.03, -0.01, 0.02]
    # mean 0.006; deviations .004 -.026 .024 -.016 .014 → squares sum 0.00172, /4 = 0.00043
    mean, std = 0.006, math.sqrt(0.00043)
    # cumsum .01 -.01 .02 .01 .03, running peak .01 .01 .02 .02 .03 → worst gap -0.02
    # downside: (-.02)² + (-.01)² = 0.0005, / 5 = 0.0001 → 0.01
    assert metrics.qlib_risk_analysis(r) == pytest.approx(
        {
            "mean": mean,
            "std": std,
            "annualized_return": mean * 238,
            "information_ratio": mean / std * SQ238,
            "max_drawdown": -0.02,
        },
        rel=1e-12,
    )
    assert metrics.annual_volatility(r, "qlib") == pytest.approx(std * SQ238, rel=1e-12)
    assert metrics.sortino_ratio(r, "qlib") == pytest.approx(0.006 / 0.01 * SQ238, rel=1e-12)


def test_qlib_drawdown_peak_starts_at_the_first_cumulative_sum_as_in_qlib():
    # Qlib's cumsum - cummax(cumsum) is 0 on the first session: a first-day loss is no drawdown
    assert metrics.max_drawdown([-0.05, 0.01], "qlib") == 0.0
    assert metrics.max_drawdown([NAN, -0.05, 0.01], "qlib") == 0.0  # nor after a leading gap
    assert metrics.max_drawdown([0.01, -0.05, NAN, -0.01, 0.02], "qlib") == pytest.approx(-0.06)


def _qlib_reference(r: pd.Series, n: int = 238) -> dict[str, float]:
    """qlib.contrib.evaluate.risk_analysis(r, freq="day", mode="sum"), line for line."""
    mean = r.mean()
    std = r.std(ddof=1)
    annualized_return = mean * n
    max_drawdown = (r.cumsum() - r.cumsum().cummax()).min()
    information_ratio = mean / std * np.sqrt(n)
    return {
        "mean": mean,
        "std": std,
        "annualized_return": annualized_return,
        "information_ratio": information_ratio,
        "max_drawdown": max_drawdown,
    }


@pytest.mark.parametrize("name", ["seeded", "crash", "gap"])
def test_qlib_convention_equals_qlib_formulas_on_pandas(name):
    r = SERIES[name]
    ref = _qlib_reference(pd.Series(r))
    assert metrics.qlib_risk_analysis(r) == pytest.approx(ref, rel=1e-12)
    assert metrics.sharpe_ratio(r, "qlib") == pytest.approx(ref["information_ratio"], rel=1e-12)
    assert metrics.annual_return(r, "qlib") == pytest.approx(ref["annualized_return"], rel=1e-12)


# --- headline ----------------------------------------------------------------------------------


def test_headline_has_one_labelled_row_per_convention_with_turnover_and_cost_drag():
    r = SERIES["gap"]
    turnover = np.full(r.size, 0.2)
    costs = np.full(r.size, 0.0004)
    costs[10] = NAN
    table = metrics.headline(pl.Series(r), turnover=turnover, costs=costs)
    assert table["convention"].to_list() == ["standard", "qlib"]
    assert table["sessions"].to_list() == [394, 394]
    std, qlib = table.row(0, named=True), table.row(1, named=True)
    for m in metrics.METRICS:
        assert std[m] == pytest.approx(getattr(metrics, _FN[m])(r, "standard"), rel=1e-15)
        assert qlib[m] == pytest.approx(getattr(metrics, _FN[m])(r, "qlib"), rel=1e-15)
    assert std["mean_daily_turnover"] == qlib["mean_daily_turnover"] == pytest.approx(0.2)
    assert std["cost_drag"] == pytest.approx(0.0004 * 252)
    assert qlib["cost_drag"] == pytest.approx(0.0004 * 238)


_FN = {
    "annual_return": "annual_return",
    "annual_volatility": "annual_volatility",
    "sharpe": "sharpe_ratio",
    "sortino": "sortino_ratio",
    "max_drawdown": "max_drawdown",
}


def test_headline_without_turnover_or_costs_leaves_them_null():
    table = metrics.headline(SERIES["seeded"])
    assert table["mean_daily_turnover"].null_count() == 2
    assert table["cost_drag"].null_count() == 2


# --- rolling -----------------------------------------------------------------------------------


ROLLING_FNS = {
    "sharpe": (metrics.rolling_sharpe, metrics.sharpe_ratio),
    "sortino": (metrics.rolling_sortino, metrics.sortino_ratio),
    "max_drawdown": (metrics.rolling_max_drawdown, metrics.max_drawdown),
}


@pytest.mark.parametrize("convention", ["standard", "qlib"])
@pytest.mark.parametrize("metric", ROLLING_FNS)
@pytest.mark.parametrize("window", [7, 30])
def test_rolling_value_is_the_whole_period_metric_of_the_window_ending_at_the_session(
    convention, metric, window
):
    r = SERIES["crash"]
    rolling, whole = ROLLING_FNS[metric]
    got = rolling(r, window, convention)
    assert got.shape == r.shape
    assert np.isnan(got[: window - 1]).all()
    expected = [whole(r[d - window + 1 : d + 1], convention) for d in range(window - 1, r.size)]
    np.testing.assert_allclose(got[window - 1 :], expected, rtol=1e-12, atol=1e-15)


def test_rolling_with_gaps_needs_min_obs_returns_in_the_window():
    r = SERIES["gap"]  # NaN at 0, 57-59, 200, 399
    strict = metrics.rolling_sharpe(r, 30)
    assert np.isnan(strict[57:89]).all()  # every window holding 57..59 lacks returns
    assert not np.isnan(strict[89])
    assert np.isnan(strict[399])
    loose = metrics.rolling_sharpe(r, 30, min_obs=27)
    assert loose[88] == pytest.approx(metrics.sharpe_ratio(r[59:89]), rel=1e-12)
    assert loose[59] == pytest.approx(metrics.sharpe_ratio(r[30:60]), rel=1e-12)
    assert np.isnan(metrics.rolling_sharpe(r, 30, min_obs=28)[59])  # 27 returns < 28


def test_rolling_is_point_in_time_truncating_later_sessions_changes_nothing():
    r = SERIES["crash"]
    d, k = 180, 60
    for fn, _ in ROLLING_FNS.values():
        for conv in ("standard", "qlib"):
            np.testing.assert_array_equal(
                fn(r[: d + 1], 30, conv), fn(r[: d + 1 + k], 30, conv)[: d + 1]
            )
            # and the start does not matter either, once a window is full
            np.testing.assert_array_equal(
                fn(r[100 : d + 1], 30, conv)[29:], fn(r, 30, conv)[129 : d + 1]
            )


def test_rolling_shorter_than_the_window_is_all_nan():
    assert np.isnan(metrics.rolling_sortino(SERIES["seeded"][:5], 30)).all()


def test_rolling_performance_frame_per_session_and_convention():
    r = SERIES["crash"][:60]
    days = calendar.last_sessions(60, "2024-12-31")
    frame = metrics.rolling_performance(r, days)
    assert frame.columns == [
        "session",
        "convention",
        "sharpe_7d",
        "sharpe_30d",
        "sortino_30d",
        "mdd_30d",
    ]
    assert frame.height == 120
    assert frame["convention"].head(2).to_list() == ["standard", "qlib"]
    qlib = frame.filter(pl.col("convention") == "qlib")
    assert qlib["session"].to_list() == days
    assert qlib["sharpe_7d"].null_count() == 6 and qlib["mdd_30d"].null_count() == 29
    np.testing.assert_allclose(
        qlib["sortino_30d"].fill_null(NAN).to_numpy(),
        metrics.rolling_sortino(r, 30, "qlib"),
        rtol=0,
        equal_nan=True,
    )


def test_rolling_over_ten_years_of_sessions_is_vectorized_and_fast():
    r = np.random.default_rng(0).normal(0.0005, 0.01, 2520)
    days = calendar.last_sessions(2520, "2025-12-31")
    frame = metrics.rolling_performance(r, days)  # no per-day Python loop: well under a second
    assert frame.height == 5040 and frame["sharpe_30d"].null_count() == 2 * 29


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.sharpe_ratio([0.01, np.inf]), "returns: 1 infinite value"),
        (lambda: metrics.annual_return([0.01, -2.5]), "below -100%"),
        (lambda: metrics.max_drawdown(np.zeros((3, 2))), "1-D"),
        (lambda: metrics.sharpe_ratio(["a", "b"]), "not numbers"),
        (lambda: metrics.sharpe_ratio(pl.Series(["a"])), "not numeric"),
        (lambda: metrics.sharpe_ratio([0.01], "product"), "convention 'product' is unknown"),
        (lambda: metrics.headline([0.01, 0.02], turnover=[0.1]), "turnover: 1 values for 2"),
        (lambda: metrics.headline([0.01, 0.02], costs=[0.0, -np.inf]), "costs: 1 infinite"),
        (lambda: metrics.rolling_sharpe([0.01] * 5, 1), "window=1"),
        (lambda: metrics.rolling_sharpe([0.01] * 5, 2.5), "window=2.5"),
        (lambda: metrics.rolling_sharpe([0.01] * 5, 5, min_obs=6), "min_obs=6"),
        (lambda: metrics.rolling_performance([0.01] * 2, ["2024-01-02"]), "1 values for 2"),
        (
            lambda: metrics.rolling_performance([0.01] * 2, ["2024-01-02", "2024-01-04"]),
            "2024-01-02 is followed by 2024-01-04",
        ),
        (lambda: metrics.rolling_performance([0.01], ["2024-01-06"]), "not an XTAI session"),
    ],
)
def test_bad_input_raises_a_one_line_qgerror(call, message):
    with pytest.raises(QGError, match=message) as err:
        call()
    assert "\n" not in str(err.value)
