"""Taiwan costs, portfolio construction and the backtest engine: hand-computed cases."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_genesis_dagster.domain import backtest, portfolio
from quant_genesis_dagster.domain.costs import CostModel, trade_costs
from quant_genesis_dagster.errors import QGError

NO_COSTS = CostModel(commission_rate=0.0, min_commission=0.0, sell_tax=0.0, day_trade_tax=0.0,
                     slippage_bps=0.0, impact_coef=0.0, max_participation=1.0)  # fmt: skip


# ------------------------------------------------------------------------------------- costs


def test_a_round_trip_with_a_broker_discount_and_the_sell_tax():
    m = CostModel(commission_discount=0.6, slippage_bps=0.0, impact_coef=0.0)
    # buy 10 lots at 100 TWD, sell them at 110 TWD on another session
    buy = trade_costs([1_000_000.0], [0.0], [0.01], m)
    sell = trade_costs([0.0], [1_100_000.0], [0.01], m)
    assert buy.commission[0] == pytest.approx(1_000_000 * 0.001425 * 0.6)  # 855
    assert buy.tax[0] == 0.0
    assert sell.commission[0] == pytest.approx(1_100_000 * 0.001425 * 0.6)  # 940.5
    assert sell.tax[0] == pytest.approx(1_100_000 * 0.003)  # 3,300
    total = buy.total[0] + sell.total[0]
    assert total == pytest.approx(855 + 940.5 + 3_300)


def test_a_day_trade_pays_half_the_tax_on_its_sell_leg_and_commission_on_both():
    m = CostModel(commission_discount=1.0, slippage_bps=0.0, impact_coef=0.0)
    c = trade_costs([500_000.0], [505_000.0], [0.0], m, day_trade_value=505_000.0)
    assert c.tax[0] == pytest.approx(505_000 * 0.0015)
    assert c.commission[0] == pytest.approx((500_000 + 505_000) * 0.001425)


def test_the_minimum_commission_and_slippage_growing_with_participation():
    m = CostModel(commission_discount=0.6, slippage_bps=5.0, impact_coef=0.1)
    c = trade_costs([10_000.0, 1_000_000.0, 1_000_000.0], [0.0, 0.0, 0.0], [0.0, 0.01, 0.04], m)
    assert c.commission[0] == 20.0  # 10,000 × 0.001425 × 0.6 = 8.55 < NT$20
    assert c.slippage[1] == pytest.approx(1_000_000 * (0.0005 + 0.1 * 0.1))
    assert c.slippage[2] == pytest.approx(1_000_000 * (0.0005 + 0.1 * 0.2))  # 4x volume, 2x rate


@pytest.mark.parametrize(
    "kwargs",
    [{"commission_discount": 1.5}, {"sell_tax": -0.003}, {"max_participation": 0.0}],
)
def test_bad_cost_settings_fail_with_one_line(kwargs):
    with pytest.raises(QGError, match=next(iter(kwargs))):
        CostModel(**kwargs)


# ------------------------------------------------------------------------- portfolio weights


def test_weights_are_proportional_capped_and_sum_to_the_intended_exposure():
    s = portfolio.PortfolioSettings(max_weight=0.4, max_names=3)
    expected = np.array([[0.05, 0.01, 0.01, -0.02, 0.03, np.nan]])
    eligible = np.array([[True, True, True, True, False, True]])
    w = portfolio.target_weights(expected, eligible, np.array([0.8]), s)
    # eligible positives: 0.05, 0.01, 0.01 → 0.8 × (5/7, 1/7, 1/7) = 0.571, 0.114, 0.114;
    # the first is capped at 0.4 and its excess 0.171 goes to the other two equally
    np.testing.assert_allclose(w[0], [0.4, 0.2, 0.2, 0.0, 0.0, 0.0])
    assert w.sum() == pytest.approx(0.8)


def test_when_the_cap_binds_everywhere_the_total_falls_short_rather_than_breaking_the_cap():
    s = portfolio.PortfolioSettings(max_weight=0.1, max_names=40)
    w = portfolio.target_weights(np.array([[0.02, 0.01, 0.03]]), np.ones((1, 3), bool),
                                 np.array([1.0]), s)  # fmt: skip
    np.testing.assert_allclose(w[0], [0.1, 0.1, 0.1])


def test_only_the_max_names_highest_expected_returns_are_kept_ties_by_symbol_order():
    s = portfolio.PortfolioSettings(max_weight=1.0, max_names=2)
    w = portfolio.target_weights(np.array([[0.01, 0.02, 0.02, 0.03]]), np.ones((1, 4), bool),
                                 np.array([1.0]), s)  # fmt: skip
    assert np.flatnonzero(w[0]).tolist() == [1, 3]  # 0.03 and the first of the two 0.02


# ------------------------------------------------------------------------------------ engine


def _market(close, *, volume=1e9, vwap=None, has_bar=None, up=None, down=None, listed=None):
    close = np.asarray(close, dtype=float)
    shape = close.shape
    full = np.ones(shape, bool)
    return backtest.MarketData(
        close=close,
        close_adj=close.copy(),
        vwap_adj=close.copy() if vwap is None else np.asarray(vwap, float),
        volume=np.full(shape, float(volume)),
        has_bar=full.copy() if has_bar is None else np.asarray(has_bar),
        limit_up=~full if up is None else np.asarray(up),
        limit_down=~full if down is None else np.asarray(down),
        listed=full.copy() if listed is None else np.asarray(listed),
    )


def test_one_name_bought_in_lots_at_the_next_vwap_and_marked_at_the_close():
    # decided after session 0's close (price 100): 50% of a 1,000,000 TWD book → 5,000 shares;
    # executed on session 1 at its VWAP 101, marked at 102; session 2 closes at 99
    data = _market([[100.0], [102.0], [99.0]], vwap=[[100.0], [101.0], [99.5]])
    weights = np.array([[0.5], [0.5], [0.5]])
    s = portfolio.PortfolioSettings(capital=1_000_000, max_weight=1.0, min_trade_weight=0.0)
    r = backtest.run_backtest(data, weights, np.ones(3), backtest.Book.empty(1, 1e6), s, NO_COSTS)
    assert r.positions["trade_shares"][0, 0] == 5_000
    assert r.positions["trade_price"][0, 0] == 101.0
    nav1 = 1_000_000 - 5_000 * 101 + 5_000 * 102
    assert r.daily["nav"][0] == pytest.approx(nav1)
    # session 2: the target is 50% of nav1 (1,005,000) at session 1's close 102 = 4,926 shares,
    # 4,000 in whole lots (toward zero): sell 1,000 at session 2's VWAP 99.5, mark 4,000 at 99
    assert r.positions["trade_shares"][1, 0] == -1_000
    cash = 1_000_000 - 5_000 * 101 + 1_000 * 99.5
    assert r.book.cash == pytest.approx(cash)
    assert r.daily["nav"][1] == pytest.approx(cash + 4_000 * 99)  # 990,500
    assert r.daily["net_return"][1] == pytest.approx(990_500 / 1_005_000 - 1)
    assert r.positions["weight"][1, 0] == pytest.approx(4_000 * 99 / 990_500)


def test_costs_come_out_of_the_nav_and_are_reported_separately():
    data = _market([[100.0], [100.0]])
    m = CostModel(commission_discount=0.6, slippage_bps=10.0, impact_coef=0.0)
    s = portfolio.PortfolioSettings(max_weight=1.0, min_trade_weight=0.0)
    r = backtest.run_backtest(data, np.array([[1.0], [1.0]]), np.ones(2),
                              backtest.Book.empty(1, 1e6), s, m)  # fmt: skip
    value = 10_000 * 100.0
    commission, slippage = value * 0.001425 * 0.6, value * 0.001
    assert r.daily["commission"][0] == pytest.approx(commission)
    assert r.daily["slippage"][0] == pytest.approx(slippage)
    assert r.daily["net_return"][0] == pytest.approx(-(commission + slippage) / 1e6)
    assert r.daily["gross_return"][0] == pytest.approx(0.0, abs=1e-15)
    assert r.daily["turnover"][0] == pytest.approx(1.0)


def test_no_buy_at_limit_up_no_sell_at_limit_down_no_trade_without_a_bar():
    close = np.full((4, 3), 50.0)
    up = np.zeros((4, 3), bool)
    down = np.zeros((4, 3), bool)
    bar = np.ones((4, 3), bool)
    up[1, 0] = True  # symbol 0 is locked limit-up on the session the buy would execute
    bar[1, 1] = False  # symbol 1 has no bar then
    down[2, 2] = True  # symbol 2 is locked limit-down when its sell would execute
    w = np.array([[0.3, 0.3, 0.3], [0.3, 0.3, 0.0], [0.3, 0.3, 0.0], [0.3, 0.3, 0.0]])
    s = portfolio.PortfolioSettings(max_weight=1.0, min_trade_weight=0.0)
    r = backtest.run_backtest(_market(close, has_bar=bar, up=up, down=down), w, np.ones(4),
                              backtest.Book.empty(3, 1e6), s, NO_COSTS)  # fmt: skip
    blocked = r.positions["blocked"]
    assert blocked[0].tolist() == [backtest.LIMIT_UP, backtest.NO_BAR, 0]
    assert r.positions["shares"][0].tolist() == [0.0, 0.0, 6_000.0]
    assert blocked[1, 2] == backtest.LIMIT_DOWN  # the exit of symbol 2 waits ...
    assert r.positions["shares"][1].tolist() == [6_000.0, 6_000.0, 6_000.0]
    assert r.positions["shares"][2, 2] == 0.0  # ... and goes through the next session


def test_participation_is_capped_and_the_rest_of_the_order_is_not_filled():
    data = _market([[10.0], [10.0]], volume=20_000)
    m = CostModel(commission_rate=0.0, min_commission=0.0, sell_tax=0.0, slippage_bps=0.0,
                  impact_coef=0.0, max_participation=0.1)  # fmt: skip
    s = portfolio.PortfolioSettings(max_weight=1.0, min_trade_weight=0.0)
    r = backtest.run_backtest(data, np.array([[1.0], [1.0]]), np.ones(2),
                              backtest.Book.empty(1, 1e6), s, m)  # fmt: skip
    assert r.positions["trade_shares"][0, 0] == 2_000  # 10% of 20,000 shares, not 100,000
    assert r.positions["blocked"][0, 0] == backtest.PARTICIPATION


def test_odd_lots_and_the_no_trade_band():
    data = _market([[333.0], [333.0], [334.0]])
    odd = portfolio.PortfolioSettings(max_weight=1.0, odd_lots=True, min_trade_weight=0.01)
    r = backtest.run_backtest(data, np.array([[0.5], [0.5], [0.5]]), np.ones(3),
                              backtest.Book.empty(1, 1e6), odd, NO_COSTS)  # fmt: skip
    assert r.positions["trade_shares"][0, 0] == 1_501  # trunc(500,000 / 333)
    assert r.positions["trade_shares"][1, 0] == 0  # the drift is below 1% of NAV: no trade


def test_a_name_that_leaves_the_panel_is_sold_at_its_last_price():
    listed = np.array([[True], [True], [False]])
    close = np.array([[20.0], [22.0], [np.nan]])
    data = _market(close, listed=listed, has_bar=listed)
    s = portfolio.PortfolioSettings(max_weight=1.0, min_trade_weight=0.0)
    r = backtest.run_backtest(data, np.array([[0.5], [0.5], [0.0]]), np.ones(3),
                              backtest.Book.empty(1, 1e6), s, NO_COSTS)  # fmt: skip
    assert r.daily["delisted"][1] == 1
    assert r.positions["shares"][1, 0] == 0.0
    assert r.book.cash == pytest.approx(r.daily["nav"][1])
    assert r.warnings and "left the panel" in r.warnings[0]


def test_a_run_split_in_two_with_the_book_carried_equals_one_run():
    rng = np.random.default_rng(5)
    t_n, n = 30, 8
    close = 50 * np.cumprod(1 + 0.02 * rng.standard_normal((t_n, n)), axis=0)
    data = _market(close, vwap=close * (1 + 0.002 * rng.standard_normal((t_n, n))))
    w = portfolio.target_weights(rng.standard_normal((t_n, n)) * 0.01, np.ones((t_n, n), bool),
                                 np.full(t_n, 0.9), portfolio.PortfolioSettings(max_weight=0.3))  # fmt: skip
    s = portfolio.PortfolioSettings(max_weight=0.3)
    whole = backtest.run_backtest(data, w, np.full(t_n, 0.7), backtest.Book.empty(n, 1e8), s)
    k = 12

    def part(lo, hi):
        return backtest.MarketData(**{f: getattr(data, f)[lo:hi] for f in (
            "close", "close_adj", "vwap_adj", "volume", "has_bar", "limit_up", "limit_down",
            "listed")})  # fmt: skip

    first = backtest.run_backtest(part(0, k + 1), w[: k + 1], np.full(k + 1, 0.7),
                                  backtest.Book.empty(n, 1e8), s)  # fmt: skip
    second = backtest.run_backtest(part(k, t_n), w[k:], np.full(t_n - k, 0.7), first.book, s)
    for key, v in whole.daily.items():
        np.testing.assert_array_equal(np.r_[first.daily[key], second.daily[key]], v, err_msg=key)
    np.testing.assert_array_equal(second.book.shares, whole.book.shares)


def test_bad_weights_fail_with_one_line():
    data = _market([[10.0], [10.0]])
    with pytest.raises(QGError, match="long only"):
        backtest.run_backtest(data, np.array([[-0.1], [0.0]]), np.ones(2),
                              backtest.Book.empty(1, 1e6))  # fmt: skip


# ------------------------------------------------------------------ the sample market, frames

from sample_data import sample_data  # noqa: E402

from quant_genesis_dagster.domain import cleaning  # noqa: E402
from quant_genesis_dagster.domain.factors import chip  # noqa: E402
from quant_genesis_dagster.domain.factors import stack as factor_stack  # noqa: E402
from quant_genesis_dagster.domain.params import DEFAULTS  # noqa: E402

VERSION = "quant_genesis_params/v1"
SIGNAL_COLUMNS = {"session": pl.Date, "symbol": pl.String, "signal": pl.String,
                  "action": pl.String, "strength": pl.Float64}  # fmt: skip


@pytest.fixture(scope="module")
def book_inputs():
    data = sample_data()
    flows = chip.main_force_flows(
        cleaning.clean_records("broker_flows", data.raw["broker_flows"]).data, data.panel
    )
    s = factor_stack.factor_stack(flows, data.panel, data.raw["news"], DEFAULTS, VERSION,
                                  tables=True)  # fmt: skip
    return {
        "panel": data.panel,
        "predictions": s.predictions,
        "lac": s.tables["chip"].select("session", "symbol", "lac"),
        "value": s.tables["value"].select("session", "symbol", "equity_multiplier"),
        "signals": pl.DataFrame(schema=SIGNAL_COLUMNS),
    }


def _simulate(inputs, lo, hi, prior_positions=None, prior_combined=None, **changes):
    def window(df):
        return df.filter(pl.col("session").is_between(lo, hi))

    frames = {k: window(v) for k, v in inputs.items()} | changes
    return backtest.simulate(
        frames["panel"], frames["predictions"], frames["lac"], frames["value"],
        frames["signals"], lambda v: DEFAULTS, DEFAULTS,
        prior_positions if prior_positions is not None
        else pl.DataFrame(schema=backtest.POSITIONS_SCHEMA),
        prior_combined if prior_combined is not None
        else pl.DataFrame(schema=backtest.RETURNS_SCHEMA),
    )  # fmt: skip


def _sessions(inputs):
    return inputs["panel"]["session"].unique().sort().to_list()


def test_the_sample_book_trades_pays_costs_and_respects_its_caps(book_inputs):
    days = _sessions(book_inputs)
    out = _simulate(book_inputs, days[250], days[-1])
    r = out.strategy_returns
    combined = r.filter(pl.col("strategy") == "combined")
    assert combined.height == len(days) - 251
    assert combined["n_positions"].max() > 10
    assert (combined["commission"] > 0).any() and (combined["tax"] > 0).any()
    assert (r["cost_drag"].drop_nulls() >= 0).all()
    pos = out.positions
    cap = DEFAULTS.w_macro * portfolio.PortfolioSettings().max_weight
    # a target is within the cap exactly; between rebalances the target is the held weight
    decided = pos.filter(pl.col("next_target_weight") != pl.col("weight"))
    assert decided.height and (decided["next_target_weight"] <= cap + 1e-12).all()
    # held weights drift with prices between rebalances: at most the cap plus the no-trade
    # band, moved by the price limit on every session until the next rebalance
    s = portfolio.PortfolioSettings()
    assert (pos["weight"] <= (cap + s.min_trade_weight) * 1.10**s.rebalance_every).all()
    lots = pos.filter(pl.col("trade_shares") != 0)["trade_shares"]
    assert ((lots % 1000) == 0).mean() > 0.99  # whole lots (an exit may sell an odd remainder)
    assert (r["param_version"].drop_nulls() == VERSION).all()


def test_a_daily_run_from_the_stored_book_equals_the_backfill(book_inputs):
    days = _sessions(book_inputs)
    lo, mid, hi = days[250], days[400], days[-1]
    whole = _simulate(book_inputs, lo, hi)
    first = _simulate(book_inputs, lo, mid)
    at_mid = pl.col("session") == mid
    second = _simulate(
        book_inputs, mid, hi,
        first.positions.filter(at_mid),
        first.strategy_returns.filter(at_mid & (pl.col("strategy") == "combined")),
    )  # fmt: skip
    for name in ("strategy_returns", "positions"):
        a = getattr(whole, name).filter(pl.col("session") > mid)
        b = getattr(second, name)
        assert_frame_equal(a, b, check_exact=True)


def test_truncation_and_perturbation_after_d_leave_the_book_up_to_d_unchanged(book_inputs):
    days = _sessions(book_inputs)
    lo, d = days[250], days[420]
    full = _simulate(book_inputs, lo, days[-1])
    cut = _simulate(book_inputs, lo, d)
    later = pl.col("session") > d
    moved = {
        "panel": book_inputs["panel"].with_columns(
            close=pl.when(later).then(pl.col("close") * 1.3).otherwise(pl.col("close")),
            close_adj=pl.when(later).then(pl.col("close_adj") * 1.3).otherwise(pl.col("close_adj")),
        ),
        "predictions": book_inputs["predictions"].with_columns(
            r_pred_5d=pl.when(later).then(-pl.col("r_pred_5d")).otherwise(pl.col("r_pred_5d"))
        ),
    }
    perturbed = _simulate(book_inputs | moved, lo, days[-1])
    upto = pl.col("session") <= d
    for name in ("strategy_returns", "positions"):
        ref = getattr(cut, name)
        assert_frame_equal(getattr(full, name).filter(upto), ref, check_exact=True)
        assert_frame_equal(getattr(perturbed, name).filter(upto), ref, check_exact=True)
    assert not full.strategy_returns.filter(later).equals(perturbed.strategy_returns.filter(later))


def test_a_session_without_predictions_exits_the_book_and_says_so(book_inputs):
    days = _sessions(book_inputs)
    lo, gap = days[250], days[300]
    preds = book_inputs["predictions"].filter(pl.col("session") != gap)
    out = _simulate(book_inputs, lo, days[320], predictions=preds.filter(
        pl.col("session").is_between(lo, days[320])))  # fmt: skip
    after = out.strategy_returns.filter(
        (pl.col("session") == days[301]) & (pl.col("strategy") == "combined")
    )
    assert after["no_predictions"].item() is True
    assert after["intended_exposure"].item() == 0.0
    assert any("without predictions" in w for w in out.warnings)


def test_a_market_risk_cut_scales_the_intended_exposure(book_inputs):
    days = _sessions(book_inputs)
    lo, hi = days[250], days[260]
    cut = pl.DataFrame(
        {"session": [days[255]], "symbol": [None], "signal": ["vix_high"], "action": ["reduce"],
         "strength": [0.5]}, schema=SIGNAL_COLUMNS,
    )  # fmt: skip
    base = _simulate(book_inputs, lo, hi)
    reduced = _simulate(book_inputs, lo, hi, signals=cut)

    def intended(out):
        r = out.strategy_returns.filter(
            (pl.col("session") == days[256]) & (pl.col("strategy") == "macro")
        )
        return r["intended_exposure"].item()

    assert intended(reduced) == pytest.approx(0.5 * intended(base))


def test_between_rebalances_positions_are_held_and_exits_still_go_through():
    data = _market(np.full((4, 2), 40.0))
    nan = np.nan
    # session 0 decides 40% each; sessions 1-2 are between rebalances (NaN = hold) except that
    # symbol 1 must go on session 2 (0 = exit)
    w = np.array([[0.4, 0.4], [nan, nan], [nan, 0.0], [nan, nan]])
    s = portfolio.PortfolioSettings(max_weight=1.0, min_trade_weight=0.0)
    r = backtest.run_backtest(data, w, np.ones(4), backtest.Book.empty(2, 1e6), s, NO_COSTS)
    shares = r.positions["shares"]
    assert shares[0].tolist() == [10_000.0, 10_000.0]
    assert shares[1].tolist() == [10_000.0, 10_000.0]  # held
    assert shares[2].tolist() == [10_000.0, 0.0]  # the exit went through
    assert r.positions["target_weight"][1, 0] == pytest.approx(r.positions["weight"][1, 0])


def test_the_rebalance_schedule_is_anchored_on_the_calendar():
    from quant_genesis_dagster.domain import calendar

    days = np.array(calendar.sessions("2024-01-02", "2024-03-29"), dtype="datetime64[D]")
    every = portfolio.is_rebalance_session(days, 5)
    assert every.sum() in (len(days) // 5, len(days) // 5 + 1)
    later = portfolio.is_rebalance_session(days[7:], 5)
    np.testing.assert_array_equal(every[7:], later)  # a later start, the same schedule


def test_an_entry_signal_boosts_the_score_before_the_weights_are_formed():
    s = portfolio.PortfolioSettings(max_weight=1.0, max_names=2)
    expected = np.array([[0.01, 0.01, 0.012]])
    boost = np.array([[0.5, 0.0, 0.0]])  # symbol 0 had a P1/P2 signal: score 0.015
    w = portfolio.target_weights(expected, np.ones((1, 3), bool), np.array([1.0]), s,
                                 boost=boost)  # fmt: skip
    # the two highest boosted scores are 0.015 and 0.012: weights 15/27 and 12/27
    np.testing.assert_allclose(w[0], [15 / 27, 0.0, 12 / 27])


def _one_session_decision(signals_rows, *, close=(100.0, 100.0, 100.0), **params):
    import datetime as dt

    from quant_genesis_dagster.domain.factors.grid import Grid
    from quant_genesis_dagster.domain.params import ParamSet

    day = dt.date(2024, 1, 2)
    syms = ["1101", "2330", "2603"]
    panel = pl.DataFrame({"session": [day] * 3, "symbol": syms, "close_adj": list(close),
                          "has_bar": [True] * 3})  # fmt: skip
    preds = panel.select("session", "symbol", r_pred_5d=pl.lit(0.01), position_scale=pl.lit(1.0),
                         param_version=pl.lit("v1"))  # fmt: skip
    lac = panel.select("session", "symbol", lac=pl.lit(100.0))
    value = panel.select("session", "symbol", equity_multiplier=pl.lit(2.0))
    sig = pl.DataFrame(
        [{"session": day, **r} for r in signals_rows], schema=SIGNAL_COLUMNS
    ) if signals_rows else pl.DataFrame(schema=SIGNAL_COLUMNS)  # fmt: skip
    p = ParamSet(position_weight=1.0, leverage=1.0, lac_break_margin=0.30, **params)
    s = portfolio.PortfolioSettings(max_weight=1.0, rebalance_every=1)
    d = portfolio.decide(Grid.of(panel), panel, preds, lac, value, sig, p, s)
    return d.weights[0]


def test_decide_boosts_names_with_an_entry_signal_and_cuts_run_ups_for_take_profit():
    flat = _one_session_decision([])
    np.testing.assert_allclose(flat, [1 / 3, 1 / 3, 1 / 3])
    boosted = _one_session_decision(
        [{"symbol": "2330", "signal": "P2", "action": "buy", "strength": 1.2}], entry_boost=1.0
    )
    np.testing.assert_allclose(boosted, [0.25, 0.5, 0.25])  # scores 1 : 2 : 1
    # 2603 trades 40% above its LAC (> T_RunUp_Dev 30%): its score is cut by take_profit_cut
    cut = _one_session_decision([], close=(100.0, 100.0, 140.0), take_profit_cut=0.5)
    np.testing.assert_allclose(cut, [0.4, 0.4, 0.2])
    # a warning row alone (the signal table's run_up_warning) does not cut twice
    warned = _one_session_decision(
        [{"symbol": "2603", "signal": "run_up_warning", "action": "warn", "strength": 0.4}],
        close=(100.0, 100.0, 140.0), take_profit_cut=0.5,
    )  # fmt: skip
    np.testing.assert_allclose(warned, cut)
