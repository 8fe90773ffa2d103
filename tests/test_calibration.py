"""The calibration environment: the simulator is the daily engine's backtest, the spaces stay in
range, the environment passes both checkers, seeds reproduce, and nothing reads the future."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from quant_genesis_dagster.domain import backtest, cleaning, model, params, signals
from quant_genesis_dagster.domain.calibration import agents, spaces, walkforward
from quant_genesis_dagster.domain.calibration.data import FEATURES, CalibrationData
from quant_genesis_dagster.domain.calibration.env import CalibrationEnv, EnvSettings
from quant_genesis_dagster.domain.calibration.simulator import SIM_VERSION, Simulator
from quant_genesis_dagster.domain.factors import chip
from quant_genesis_dagster.domain.factors import stack as factor_stack
from quant_genesis_dagster.domain.params import DEFAULTS
from quant_genesis_dagster.errors import QGError
from tests.sample_data import sample_data

pytestmark = pytest.mark.xdist_group("calibration")


@pytest.fixture(scope="module")
def tables():
    data = sample_data()
    flows = chip.main_force_flows(
        cleaning.clean_records("broker_flows", data.raw["broker_flows"]).data, data.panel
    )
    s = factor_stack.factor_stack(flows, data.panel, data.raw["news"], DEFAULTS, "v1",
                                  tables=True)  # fmt: skip
    return {
        "panel": data.panel,
        "zscored": s.zscored,
        "chip": s.tables["chip"],
        "sentiment": s.tables["sentiment"],
        "value": s.tables["value"],
    }


def _build(t: dict) -> CalibrationData:
    return CalibrationData.build(t["panel"], t["zscored"], t["chip"], t["sentiment"], t["value"],
                                 DEFAULTS)  # fmt: skip


@pytest.fixture(scope="module")
def cdata(tables):
    return _build(tables)


@pytest.fixture(scope="module")
def sim(cdata):
    return Simulator(cdata)


# --------------------------------------------------------------------------- simulator


def test_a_chain_of_periods_is_the_daily_engines_backtest_bit_for_bit(cdata, sim, tables):
    """The simulator carries the book period to period; ``backtest.simulate`` (the book asset)
    runs the same sessions in one go from the same flat start."""
    p = DEFAULTS.replace(beta_c=0.6, beta_s=0.2, beta_d=0.2, t_fear=25.0, leverage=1.3)
    book, rets = sim.empty_book(), []
    for a in range(251, 491, 5):
        r = sim.run(p, a, a + 4, book)
        book, rets = r.book, [*rets, r.net_return]
    lo, hi = cdata.sessions[250], cdata.sessions[490]

    def window(df):
        return df.filter(pl.col("session").is_between(lo, hi))

    pred = model.predict(tables["zscored"], model.us_move(tables["panel"]), p, SIM_VERSION)
    sig = signals.build_signals(cdata.frames["day"], cdata.frames["market_risk"], p, SIM_VERSION)
    out = backtest.simulate(
        window(tables["panel"]), window(pred),
        window(tables["chip"].select("session", "symbol", "lac")),
        window(tables["value"].select("session", "symbol", "equity_multiplier")),
        window(sig), lambda v: p, p,
        pl.DataFrame(schema=backtest.POSITIONS_SCHEMA), pl.DataFrame(schema=backtest.RETURNS_SCHEMA),
    )  # fmt: skip
    ref = out.strategy_returns.filter(pl.col("strategy") == "combined").sort("session")
    np.testing.assert_array_equal(np.concatenate(rets), ref["net_return"].to_numpy())
    assert ref["n_positions"].max() > 5  # it traded


def test_the_parameters_change_the_book(sim):
    a, b = 300, 339
    base = sim.run(DEFAULTS, a, b, sim.empty_book())
    flat = sim.run(DEFAULTS.replace(leverage=0.0), a, b, sim.empty_book())
    chip_only = sim.run(DEFAULTS.replace(beta_c=1.0, beta_s=0.0, beta_d=0.0), a, b,
                        sim.empty_book())  # fmt: skip
    assert np.all(flat.gross_exposure == 0) and np.any(base.gross_exposure > 0)
    assert not np.array_equal(base.net_return, chip_only.net_return)


# ------------------------------------------------------------------------------ spaces


@pytest.mark.parametrize("role", spaces.ROLES)
def test_any_action_maps_inside_the_parameter_ranges_and_betas_sum_to_one(role):
    rng = np.random.default_rng(0)
    n = spaces.action_size(role)
    actions = [np.full(n, -1.0), np.full(n, 1.0), np.full(n, 1e6), np.full(n, -1e6),
               *rng.uniform(-3, 3, size=(300, n))]  # fmt: skip
    bounds = params.ranges()
    current = DEFAULTS
    for a in actions:
        current = spaces.apply_action(role, a, current)  # the deltas accumulate
        for name, value in current.to_dict().items():
            lo, hi = bounds[name]
            assert lo <= value <= hi, (role, name, value)
        assert sum(current.betas) == pytest.approx(1.0)
        assert (current.beta_c, current.beta_s, current.beta_d) == pytest.approx(current.betas)


def test_the_action_extremes_reach_the_range_ends_and_leverage_can_go_below_one():
    lo = spaces.apply_action("supervisor", [-1, -1, -1, -1], DEFAULTS)
    hi = spaces.apply_action("supervisor", [1, 1, 1, 1], DEFAULTS)
    assert (lo.w_macro, lo.leverage, lo.position_weight, lo.t_runup_dev) == (0.0, 0.0, 0.1, 0.2)
    assert (hi.w_macro, hi.leverage, hi.position_weight, hi.t_runup_dev) == (1.0, 2.0, 1.0, 0.5)
    up = spaces.apply_action("sentiment", [0.0, 1.0], DEFAULTS)
    assert up.t_fear == DEFAULTS.t_fear + 2.0 and up.betas == pytest.approx(DEFAULTS.betas)
    # the neutral action keeps the parameters
    for role in spaces.ROLES:
        kept = spaces.apply_action(role, spaces.neutral_action(role, DEFAULTS), DEFAULTS)
        for name, value in kept.to_dict().items():
            assert value == pytest.approx(getattr(DEFAULTS, name), abs=1e-6), (role, name)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_nan_action_is_an_error_naming_the_parameter(bad):
    with pytest.raises(QGError, match=r"t_fear.*not a number"):
        spaces.apply_action("sentiment", [0.0, bad], DEFAULTS)
    with pytest.raises(QGError, match="has 2 entries"):
        spaces.apply_action("chip", [0.0, 0.0, 0.0], DEFAULTS)


# --------------------------------------------------------------------------------- env


@pytest.mark.parametrize("role", spaces.ROLES)
def test_the_environment_passes_gymnasiums_and_sb3s_checkers(sim, role):
    env = CalibrationEnv(sim, DEFAULTS, role=role, first=200, last=400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning fails the test
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)


def test_an_episode_steps_through_periods_and_truncates(sim):
    env = CalibrationEnv(sim, DEFAULTS, first=200, last=400,
                         settings=EnvSettings(period=5, episode_periods=4, warmup=30))  # fmt: skip
    obs, info = env.reset(options={"start": 260})
    assert env.session == 259 and info["session"] == str(sim.data.sessions[260])
    assert env.observation_space.contains(obs)
    for k in range(4):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        assert (info["first_session"], info["last_session"]) == (260 + 5 * k, 264 + 5 * k)
        assert np.isfinite(r) and not term and trunc == (k == 3)
    with pytest.raises(QGError, match="outside"):
        env.reset(options={"start": 10})


def test_the_same_seed_gives_the_same_episode(sim):
    def episode(seed):
        env = CalibrationEnv(sim, DEFAULTS, role="flat", first=200, last=400)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for _ in range(6):
            obs, r, *_ = env.step(env.action_space.sample())
            out += [obs, np.array([r])]
        return np.concatenate(out)

    np.testing.assert_array_equal(episode(3), episode(3))
    assert not np.array_equal(episode(3), episode(4))


def test_training_twice_with_the_same_seed_gives_identical_actions_and_rewards(sim):
    s = agents.TrainSettings(total_steps=256, n_steps=64, rounds=1, seed=5)

    def trained():
        a = agents.train(sim, DEFAULTS, first=200, last=400, settings=s)
        env = CalibrationEnv(sim, DEFAULTS, role="supervisor", first=200, last=400,
                             others={r: a.policy(r) for r in ("chip", "sentiment")})  # fmt: skip
        obs, _ = env.reset(seed=9)
        acts, rewards = [], []
        for _ in range(4):
            act = a.policy("supervisor")(obs)
            obs, r, *_ = env.step(act)
            acts.append(act)
            rewards.append(r)
        return np.array(acts), np.array(rewards), a

    a1, r1, agents1 = trained()
    a2, r2, _ = trained()
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(r1, r2)
    assert agents1.train_steps == 3 * 128  # 256 / 3 roles → rounded up to 2 rollouts of 64


def test_saved_agents_load_and_act_the_same(sim, tmp_path):
    a = agents.train(sim, DEFAULTS, first=200, last=400,
                     settings=agents.TrainSettings(hierarchical=False, total_steps=64, n_steps=64))  # fmt: skip
    files = a.save(tmp_path)
    assert set(files) == {"flat", "agents.json"}
    b = agents.Agents.load(tmp_path)
    obs = np.linspace(-1, 1, len(spaces.OBSERVATION)).astype(np.float32)
    assert a.act(obs, DEFAULTS) == b.act(obs, DEFAULTS)


# --------------------------------------------------------------------------- no look-ahead


def test_truncation_and_perturbation_after_d_leave_everything_up_to_d_unchanged(tables, cdata):
    """SPEC §11: the features, the simulated book and the observation of a session D depend on
    nothing after D (the window cut at D, or every price and factor after D scrambled)."""
    d = 420
    cut_day = cdata.sessions[d]
    upto = pl.col("session") <= pl.lit(cut_day)
    later = ~upto
    cut = _build({k: v.filter(upto) for k, v in tables.items()})
    scrambled = {
        "panel": tables["panel"].with_columns(
            *[pl.when(later).then(pl.col(c) * 1.37).otherwise(pl.col(c))
              for c in ("close", "close_adj", "vwap_adj", "taiex_close", "vixtwn")]
        ),
        "zscored": tables["zscored"].with_columns(
            *[pl.when(later).then(-pl.col(c)).otherwise(pl.col(c)) for c in ("f_c", "f_s", "f_d")]
        ),
    }  # fmt: skip
    moved = _build(tables | scrambled)
    for other in (cut, moved):
        np.testing.assert_array_equal(other.features[: d + 1], cdata.features[: d + 1])

    def run(data):
        s = Simulator(data)
        env = CalibrationEnv(s, DEFAULTS, first=200, last=d)
        obs, _ = env.reset(options={"start": 300})
        out = [obs]
        while env.session + 5 <= d:
            obs, r, *_ = env.step(np.zeros(env.action_space.shape, np.float32))
            out += [obs, np.array([r])]
        return np.concatenate(out)

    ref = run(cdata)
    np.testing.assert_array_equal(run(cut), ref)
    np.testing.assert_array_equal(run(moved), ref)


def test_rolling_least_squares_betas_use_only_returns_up_to_the_decision(sim, cdata):
    chooser = walkforward.rolling_ls(DEFAULTS)
    env = CalibrationEnv(sim, DEFAULTS, first=200, last=480)
    env.reset(options={"start": 400})
    before = chooser(env, None)
    saved = cdata.realized[env.session + 1 :].copy()
    try:
        cdata.realized[env.session + 1 :] = 0.5  # the future, made absurd
        assert chooser(env, None) == before
    finally:
        cdata.realized[env.session + 1 :] = saved
    assert before != DEFAULTS and sum(before.betas) == pytest.approx(1.0)


def test_the_observation_has_every_spec_entry_and_is_finite(sim):
    env = CalibrationEnv(sim, DEFAULTS, first=200, last=400)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (len(spaces.OBSERVATION),) and np.isfinite(obs).all()
    assert {"sharpe_7d", "sharpe_30d", "mdd_30d", "ab_corr", "residual_mean",
            "residual_abs_mean", "contribution_f_c"} <= set(spaces.PERFORMANCE)  # fmt: skip
    assert {"vix_level", "vix_slope", "atr_ratio", "regime_panic", "lac_dist_mean",
            "tier_ratio_mean", "corr_fc_fs", "half_life_f_c"} <= set(FEATURES)  # fmt: skip
    assert len(spaces.PARAMETERS) == len(params.tunable())


def test_a_window_too_short_for_a_period_after_the_warm_up_is_refused(sim):
    with pytest.raises(QGError, match="longer window"):
        CalibrationEnv(sim, DEFAULTS, first=100, last=120)
