"""Regime labels (SPEC §8): the rules on hand-built sessions, point in time (SPEC §11: truncation,
perturbation, start independence), input and settings errors, and agreement with the regimes the
sample market planted."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
import pytest

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.regime import (
    OUTPUT_SCHEMA,
    REGIMES,
    RegimeSettings,
    regime_labels,
    regime_labels_from_panel,
)
from quant_genesis_dagster.domain.sample import SampleMarket, SampleMarketConfig
from quant_genesis_dagster.errors import QGError

HISTORY = (dt.date(2010, 1, 4), dt.date(2019, 12, 31))
SEEDS = (7, 11, 23)
#: Measured agreement 0.820 / 0.805 / 0.801 for seeds 7 / 11 / 23 (module docstring); the bar
#: sits ~0.05 below the weakest so a recalibration of the sample market that moves it by a few
#: points does not fail, while a broken rule (constant "bull" scores 0.60–0.63) does.
MIN_AGREEMENT = 0.75
#: Measured panic recall 0.725 / 0.787 / 0.882 on 15–16 panic spells per seed: a few spells more
#: or less detected move it by ~0.05 each, hence the wider margin. Precision measured 0.63–0.67.
MIN_PANIC_RECALL = 0.60
MIN_PANIC_PRECISION = 0.50


def make_indicators(
    vix: list[float] | np.ndarray,
    taiex: list[float] | np.ndarray | None = None,
    start: dt.date = dt.date(2015, 1, 5),
) -> pl.DataFrame:
    """Indicator rows on consecutive XTAI sessions from ``start`` (TAIEX flat at 9,000 points
    unless given)."""
    vix = np.asarray(vix, dtype=float)
    taiex = np.full(vix.shape, 9_000.0) if taiex is None else np.asarray(taiex, dtype=float)
    sessions = calendar.sessions(start, calendar.shift_session(start, vix.size - 1))
    return pl.DataFrame({"session": sessions, "taiex_close": taiex, "vixtwn": vix})


@pytest.fixture(scope="module")
def sample_history() -> dict[int, tuple[pl.DataFrame, pl.DataFrame]]:
    """(market_indicators, planted regimes) over ten years, per seed (~1 s of simulation each)."""
    out = {}
    for seed in SEEDS:
        m = SampleMarket(SampleMarketConfig(seed=seed, n_symbols=20))
        ind = m.tables(*HISTORY, ["market_indicators"])["market_indicators"]
        out[seed] = (ind, m.truth(*HISTORY).regimes)
    return out


# ---------------------------------------------------------------------------------- the rules


def test_readings_are_the_vix_change_and_the_bias_against_the_moving_average():
    s = RegimeSettings()
    vix = np.linspace(15.0, 20.0, 30)
    taiex = 9_000.0 + 10.0 * np.arange(30)
    out = regime_labels(make_indicators(vix, taiex), s)
    assert out.schema == OUTPUT_SCHEMA
    d = 25
    assert out["vix_level"][d] == vix[d]
    assert out["vix_slope"][d] == pytest.approx(vix[d] - vix[d - s.slope_window])
    sma = taiex[d - s.trend_window + 1 : d + 1].mean()
    assert out["index_trend"][d] == pytest.approx(taiex[d] / sma - 1)


def test_warmup_rows_are_flagged_and_unlabelled_until_every_window_is_full():
    s = RegimeSettings(slope_window=5, trend_window=20)
    out = regime_labels(make_indicators(np.full(30, 15.0)), s)
    warm = out["regime_warmup"].to_list()
    assert warm == [True] * 19 + [False] * 11  # the 20-session average needs 20 rows
    assert out["regime"][:19].null_count() == 19
    assert out["regime"][19:].to_list() == ["bull"] * 11
    # the slope alone would be ready after 6 rows; a longer slope window extends the warm-up
    longer = regime_labels(make_indicators(np.full(30, 15.0)), RegimeSettings(slope_window=25))
    assert longer["regime_warmup"].sum() == 25


def _last_label(vix, taiex=None, settings: RegimeSettings | None = None) -> str | None:
    return regime_labels(make_indicators(vix, taiex), settings)["regime"][-1]


def test_calm_volatility_with_the_index_near_its_average_is_a_bull():
    assert _last_label(np.full(25, 15.0)) == "bull"
    assert _last_label(np.full(25, 19.99)) == "bull"
    assert _last_label(np.full(25, 20.0)) == "chop"  # bull_max_vix is strict


def test_calm_volatility_in_a_pull_back_is_chop_not_bull():
    taiex = np.r_[np.full(24, 9_000.0), 8_400.0]  # last close 6.4% below its 20-session average
    assert _last_label(np.full(25, 15.0), taiex) == "chop"
    # a shallower dip (2%) is still a bull
    assert _last_label(np.full(25, 15.0), np.r_[np.full(24, 9_000.0), 8_820.0]) == "bull"


def test_elevated_volatility_without_a_one_sided_fall_is_chop():
    assert _last_label(np.full(25, 25.0)) == "chop"


def test_very_high_vix_is_a_panic_whatever_the_trend():
    rising = 9_000.0 * 1.01 ** np.arange(25)
    assert _last_label(np.full(25, 30.0)) == "panic"
    assert _last_label(np.full(25, 35.0), rising) == "panic"


def test_a_fast_vix_rise_in_a_falling_tape_is_a_panic_before_vix_reaches_30():
    vix = np.r_[np.full(20, 20.0), [22.0, 23.0, 24.0, 25.0, 26.0]]  # +6 points in 5 sessions
    falling = 9_000.0 * 0.99 ** np.arange(25)
    assert _last_label(vix, falling) == "panic"
    # the same VIX path with the index above its average is not one-sided: chop
    assert _last_label(vix, 9_000.0 * 1.002 ** np.arange(25)) == "chop"
    # and a slower rise (+4 points) is not a sell-off either
    slow = np.r_[np.full(20, 22.0), [23.0, 24.0, 25.0, 25.5, 26.0]]
    assert _last_label(slow, falling) == "chop"


def test_settings_move_the_thresholds():
    s = RegimeSettings(bull_max_vix=18.0, selloff_vix=22.0, panic_vix=24.0)
    assert _last_label(np.full(25, 19.0), settings=s) == "chop"
    assert _last_label(np.full(25, 24.0), settings=s) == "panic"


def test_a_missing_reading_gives_a_null_label_not_a_warmup():
    vix = np.full(40, 15.0)
    vix[30] = np.nan
    taiex = np.full(40, 9_000.0)
    taiex[35] = np.nan
    ind = make_indicators(vix, taiex).with_columns(pl.col("vixtwn").fill_nan(None))
    out = regime_labels(ind)
    assert not out["regime_warmup"][30:].any()
    labels = out["regime"].to_list()
    # VIX missing at 30 → level unknown at 30 and slope unknown at 30 and 35; the TAIEX hole
    # leaves the 20-session average unknown for the 20 sessions whose window holds it
    missing = {30, *range(35, 40)}
    assert [i for i in range(20, 40) if labels[i] is None] == sorted(missing)
    assert all(labels[i] == "bull" for i in range(20, 30))


def test_rows_are_sorted_and_other_columns_are_ignored():
    ind = make_indicators(np.linspace(14.0, 40.0, 60)).with_columns(put_call_ratio=pl.lit(1.0))
    shuffled = ind.sample(fraction=1.0, shuffle=True, seed=3)
    assert regime_labels(shuffled).equals(regime_labels(ind))


def test_panel_helper_takes_the_market_columns_of_the_first_row_per_session():
    ind = make_indicators(np.linspace(14.0, 40.0, 60), 9_000.0 * 0.995 ** np.arange(60))
    panel = (
        ind.join(pl.DataFrame({"symbol": ["2330", "2317", "1101"]}), how="cross")
        .with_columns(close=pl.lit(100.0))
        .sort("session", "symbol")
    )
    assert regime_labels_from_panel(panel).equals(regime_labels(ind))


def test_an_empty_frame_gives_an_empty_result_with_the_output_schema():
    empty = pl.DataFrame(
        schema={"session": pl.Date, "taiex_close": pl.Float64, "vixtwn": pl.Float64}
    )
    out = regime_labels(empty)
    assert out.height == 0 and out.schema == OUTPUT_SCHEMA


# ----------------------------------------------------------------------------- point in time


def test_truncation_labels_up_to_d_are_identical_with_or_without_later_rows(sample_history):
    ind, _ = sample_history[7]
    full = regime_labels(ind)
    for d in (30, 400, 1_234, ind.height - 2):
        short = regime_labels(ind.head(d + 1))
        assert short.equals(full.head(d + 1)), f"labels up to row {d} changed with later rows"


def test_perturbation_changing_rows_after_d_leaves_everything_up_to_d_unchanged(sample_history):
    ind, _ = sample_history[11]
    base = regime_labels(ind)
    rng = np.random.default_rng(0)
    d = 1_000
    later = pl.int_range(pl.len()) > d
    noisy = ind.with_columns(
        vixtwn=pl.when(later).then(pl.col("vixtwn") * rng.uniform(0.5, 2.0)).otherwise("vixtwn"),
        taiex_close=pl.when(later).then(pl.col("taiex_close") * 0.7).otherwise("taiex_close"),
    )
    out = regime_labels(noisy)
    assert out.head(d + 1).equals(base.head(d + 1))
    assert not out.slice(d + 1).equals(base.slice(d + 1))  # the perturbation did reach the rows


def test_labels_are_bit_identical_whatever_the_first_row_once_windows_are_full(sample_history):
    ind, _ = sample_history[23]
    full = regime_labels(ind)
    start = 700
    late = regime_labels(ind.slice(start))
    warm = RegimeSettings().warmup_sessions - 1
    assert late.slice(warm).equals(full.slice(start + warm))


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("column", ["session", "taiex_close", "vixtwn"])
def test_a_missing_column_is_a_one_line_error_naming_it(column):
    ind = make_indicators(np.full(25, 15.0)).drop(column)
    with pytest.raises(QGError, match=f"missing column '{column}'") as err:
        regime_labels(ind)
    assert "\n" not in str(err.value)


def test_the_panel_helper_names_a_missing_market_column():
    panel = make_indicators(np.full(25, 15.0)).drop("vixtwn").with_columns(symbol=pl.lit("2330"))
    with pytest.raises(QGError, match="aligned panel has no column 'vixtwn'"):
        regime_labels_from_panel(panel)


def test_a_hole_in_the_sessions_is_an_error_naming_both_sides():
    ind = make_indicators(np.full(25, 15.0))
    holed = pl.concat([ind.head(10), ind.slice(11)])
    a, b = ind["session"][9], ind["session"][11]
    with pytest.raises(QGError, match=f"sessions jump from {a} to {b}"):
        regime_labels(holed)


def test_a_duplicate_session_is_an_error():
    ind = make_indicators(np.full(25, 15.0))
    with pytest.raises(QGError, match=f"several rows for session {ind['session'][3]}"):
        regime_labels(pl.concat([ind, ind.slice(3, 1)]))


def test_a_date_that_is_not_an_xtai_session_is_an_error():
    saturday = dt.date(2015, 1, 3)
    ind = pl.concat(
        [
            pl.DataFrame({"session": [saturday], "taiex_close": [9_000.0], "vixtwn": [15.0]}),
            make_indicators(np.full(5, 15.0)),
        ]
    )
    with pytest.raises(QGError, match=f"{saturday} is not an XTAI session"):
        regime_labels(ind)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"slope_window": 0}, "slope_window"),
        ({"trend_window": 1}, "trend_window"),
        ({"trend_window": 20.0}, "trend_window"),
        ({"slope_window": True}, "slope_window"),
        ({"panic_vix": float("nan")}, "panic_vix"),
        ({"selloff_slope": -1.0}, "selloff_slope"),
        ({"bull_min_trend": -2.0}, "bull_min_trend"),
        ({"bull_max_vix": 26.0}, "bull_max_vix"),  # above selloff_vix
        ({"selloff_vix": 31.0}, "panic_vix"),  # above panic_vix
    ],
)
def test_bad_settings_are_a_one_line_error_naming_the_setting(change, name):
    with pytest.raises(QGError, match=name) as err:
        dataclasses.replace(RegimeSettings(), **change)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------- agreement with the sample market


def _scored(sample_history, seed: int) -> pl.DataFrame:
    ind, planted = sample_history[seed]
    return (
        regime_labels(ind)
        .join(planted.rename({"regime": "planted"}), on="session", how="inner")
        .filter(~pl.col("regime_warmup"))
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_labels_agree_with_the_planted_regimes_of_the_sample_market(sample_history, seed):
    df = _scored(sample_history, seed)
    assert df["regime"].null_count() == 0 and set(df["regime"].unique()) == set(REGIMES)
    hit = df["regime"] == df["planted"]
    agreement = hit.mean()
    always_bull = (df["planted"] == "bull").mean()
    assert agreement >= MIN_AGREEMENT, f"seed {seed}: agreement {agreement:.3f}"
    assert agreement >= always_bull + 0.10, f"seed {seed}: no better than always 'bull'"
    panic = df.filter(pl.col("planted") == "panic")
    recall = (panic["regime"] == "panic").mean()
    precision = (df.filter(pl.col("regime") == "panic")["planted"] == "panic").mean()
    assert recall >= MIN_PANIC_RECALL, f"seed {seed}: panic recall {recall:.3f}"
    assert precision >= MIN_PANIC_PRECISION, f"seed {seed}: panic precision {precision:.3f}"
    for regime, floor in (("bull", 0.75), ("chop", 0.55)):  # measured ≥ 0.84 and ≥ 0.67
        got = (df.filter(pl.col("planted") == regime)["regime"] == regime).mean()
        assert got >= floor, f"seed {seed}: {regime} recall {got:.3f}"


def test_labels_lag_the_planted_switches_as_trailing_windows_must(sample_history):
    # the planted regime of D moves D's VIX only 12% of the way to its new level, so the label
    # matches the planted regime of a few sessions earlier better than that of D itself
    df = _scored(sample_history, 7)
    now = (df["regime"] == df["planted"]).mean()
    lagged = (df["regime"].slice(3) == df["planted"].slice(0, df.height - 3)).mean()
    assert lagged > now + 0.02
