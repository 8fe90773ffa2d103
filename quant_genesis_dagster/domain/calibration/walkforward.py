"""Walk-forward evaluation: the candidates on the next unseen window, with the same costs.

Every candidate trades the evaluation sessions ``[a, b]`` in ``CalibrationEnv`` from the same
start: a flat book ``warmup`` sessions before ``a`` traded with the current champion, then one
calibration period (5 sessions) at a time, each period's parameters chosen after the previous
period's close from data up to that close only:

* ``rl``             the trained agents (``Agents.act``) — what weekly recalibration with them
                     would have deployed, period by period;
* ``champion``       the current champion, fixed;
* ``defaults``       the static defaults (``ParamSet()``), fixed;
* ``rolling_ls``     the champion with β's from a rolling least-squares fit (scikit-learn
                     ``LinearRegression(positive=True)``) of the 1-session returns on the
                     previous session's F_C, F_S, F_D, pooled over the last ``ls_window``
                     sessions up to the decision (β = the coefficients renormalized; all zero
                     → equal weights), refitted every period;
* ``equal_weights``  the champion with β_C = β_S = β_D = 1/3.

The table has, per candidate, the standard-convention Sharpe, annual return, max drawdown
(compounded, 252) and the Qlib-convention Sharpe over the evaluation sessions, the mean daily
turnover and cost drag, and the final β's. ``rl``'s parameters per period are kept for the
beta-history plot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import metrics
from quant_genesis_dagster.domain.calibration.env import CalibrationEnv, EnvSettings
from quant_genesis_dagster.domain.calibration.reward import RewardSettings
from quant_genesis_dagster.domain.calibration.simulator import Simulator
from quant_genesis_dagster.domain.calibration.spaces import normalize_betas
from quant_genesis_dagster.domain.params import BETA_KEYS, DEFAULTS, ParamSet
from quant_genesis_dagster.errors import QGError

CANDIDATES: tuple[str, ...] = ("rl", "champion", "defaults", "rolling_ls", "equal_weights")
LS_WINDOW = 60

#: chooser(env, obs) → the parameter set of the next period
Chooser = Callable[[CalibrationEnv, np.ndarray], ParamSet]


@dataclass
class Rollout:
    """One candidate over the evaluation window: daily net returns (and their sessions'
    indices), daily turnover and cost drag, and the parameters of each period."""

    name: str
    sessions: np.ndarray
    net_return: np.ndarray
    turnover: np.ndarray
    cost_drag: np.ndarray
    params: list[ParamSet]
    final_obs: np.ndarray  # the observation after the last close (what the next choice reads)

    def summary(self) -> dict[str, float]:
        r = self.net_return
        last = self.params[-1]
        return {
            "sharpe": _finite(metrics.sharpe_ratio(r)),
            "annual_return": _finite(metrics.annual_return(r)),
            "max_drawdown": _finite(metrics.max_drawdown(r)),
            "sharpe_qlib": _finite(metrics.sharpe_ratio(r, "qlib")),
            "turnover": float(np.mean(self.turnover)),
            "cost_drag": float(np.mean(self.cost_drag)),
            **{k: float(v) for k, v in zip(BETA_KEYS, last.betas, strict=True)},
        }


def _finite(x: float) -> float:
    return float(x) if np.isfinite(x) else float("nan")


def rollout(
    sim: Simulator,
    name: str,
    chooser: Chooser,
    start_params: ParamSet,
    a: int,
    b: int,
    *,
    env_settings: EnvSettings | None = None,
    rewards: RewardSettings | None = None,
) -> Rollout:
    """``chooser``'s parameters, period by period, over sessions a..b (see the module
    docstring)."""
    es = env_settings or EnvSettings()
    periods = -(-(b - a + 1) // es.period)
    env = CalibrationEnv(
        sim, start_params, first=a - es.warmup, last=b, rewards=rewards,
        settings=EnvSettings(period=es.period, episode_periods=periods, warmup=es.warmup),
    )  # fmt: skip
    obs, _ = env.reset(options={"start": a})
    rets, turn, drag, params = [], [], [], []
    while env.session < b:
        p = chooser(env, obs)
        obs, _, _, _, _ = env.step_params(p)
        last = env.last_result
        rets.append(last.net_return)
        turn.append(last.turnover)
        drag.append(last.cost_drag)
        params.append(p)
    return Rollout(
        name=name,
        sessions=np.arange(a, b + 1),
        net_return=np.concatenate(rets),
        turnover=np.concatenate(turn),
        cost_drag=np.concatenate(drag),
        params=params,
        final_obs=obs,
    )


def fixed(params: ParamSet) -> Chooser:
    return lambda env, obs: params


def rolling_ls(base: ParamSet, window: int = LS_WINDOW) -> Chooser:
    """Rolling least-squares β's on data up to the decision (see the module docstring)."""
    from sklearn.linear_model import LinearRegression

    def choose(env: CalibrationEnv, obs: np.ndarray) -> ParamSet:
        d = env.sim.data
        t = env.session  # the last close known
        lo = max(t - window + 1, 1)
        x = np.stack([d.factors[k][lo - 1 : t] for k in ("f_c", "f_s", "f_d")], axis=-1)
        y = d.realized[lo : t + 1]
        x, y = x.reshape(-1, 3), y.reshape(-1)
        ok = np.isfinite(y) & np.isfinite(x).all(axis=1)
        if ok.sum() < 30:
            return base
        coef = LinearRegression(positive=True).fit(x[ok], y[ok]).coef_
        values = dict(zip(BETA_KEYS, (float(c) for c in coef), strict=True))
        return base.replace(**normalize_betas(base.to_dict() | values))

    return choose


def agents_chooser(agents) -> Chooser:
    return lambda env, obs: agents.act(obs, env.params)


def equal_weights(base: ParamSet) -> ParamSet:
    return base.replace(beta_c=1 / 3, beta_s=1 / 3, beta_d=1 / 3)


def evaluate(
    sim: Simulator,
    agents,
    champion: ParamSet,
    a: int,
    b: int,
    *,
    env_settings: EnvSettings | None = None,
    rewards: RewardSettings | None = None,
    ls_window: int = LS_WINDOW,
) -> dict[str, Rollout]:
    """Every candidate of ``CANDIDATES`` over sessions a..b (``agents`` None: no ``rl`` row)."""
    if b < a:
        raise QGError(f"walk-forward: the evaluation window {a}..{b} is empty")
    choosers: dict[str, Chooser] = {
        "champion": fixed(champion),
        "defaults": fixed(DEFAULTS),
        "rolling_ls": rolling_ls(champion, ls_window),
        "equal_weights": fixed(equal_weights(champion)),
    }
    if agents is not None:
        choosers = {"rl": agents_chooser(agents)} | choosers
    return {
        name: rollout(sim, name, fn, champion, a, b, env_settings=env_settings, rewards=rewards)
        for name, fn in choosers.items()
    }


def table(rollouts: dict[str, Rollout]) -> pl.DataFrame:
    """One row per candidate (see the module docstring)."""
    return pl.DataFrame([{"candidate": n, **r.summary()} for n, r in rollouts.items()])
