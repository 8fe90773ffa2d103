"""``CalibrationEnv``: the gymnasium environment of the calibration loop (SPEC §9).

* **Episode**: a historical window of ``episode_periods`` calibration periods whose first
  session is drawn (``self.np_random``, seeded by ``reset(seed=...)``) from the training range
  ``[first, last]`` — or given as ``reset(options={"start": index})``. The book starts flat
  ``warmup`` sessions before it and trades them under ``start_params`` (the champion), so the
  first observation already has a 30-session performance history.
* **Step**: the action (a symmetric float32 box, ``spaces.apply_action`` for the role) sets the
  parameters of the next ``period`` sessions; ``Simulator.run`` trades them (the daily engine's
  predict → signals → decide → backtest); the reward is ``reward.step_reward`` (plus the
  sub-agents' bonus for the ``chip`` / ``sentiment`` roles). Parameters carry over from step to
  step (the sub-agents' actions are deltas on them). The episode is truncated after
  ``episode_periods`` steps or at the end of the range; it never terminates early (a drawdown
  is a cost, not the end of the world).
* **Other agents**: in the hierarchy one role learns while the others act with fixed policies
  (``others``: role → obs → action), applied in ``spaces.HIERARCHY`` order before the learner's.
* ``info`` has the period's parameter set, returns and reward parts (for the walk-forward
  tables and the beta-history plot).

Nothing is random except the window start; the simulator is deterministic, so the same seed
gives the same episode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from quant_genesis_dagster.domain.calibration import reward as reward_mod
from quant_genesis_dagster.domain.calibration import spaces
from quant_genesis_dagster.domain.calibration.data import COMPOSITES
from quant_genesis_dagster.domain.calibration.simulator import PeriodResult, Simulator
from quant_genesis_dagster.domain.params import ParamSet
from quant_genesis_dagster.errors import QGError

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EnvSettings:
    period: int = 5  # sessions per step (one calibration period)
    episode_periods: int = 12  # steps per episode
    warmup: int = 30  # sessions traded with the start parameters before the first step

    def __post_init__(self) -> None:
        for name in ("period", "episode_periods", "warmup"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise QGError(f"calibration env: {name}={v!r}; use an integer >= 1")


class CalibrationEnv(gym.Env):
    """See the module docstring. ``first`` / ``last``: the range of sessions (indices into the
    simulator's window) the episodes trade in, warm-up included."""

    metadata = {"render_modes": []}
    render_mode = None

    def __init__(
        self,
        sim: Simulator,
        start_params: ParamSet,
        *,
        role: str = "flat",
        first: int = 1,
        last: int | None = None,
        settings: EnvSettings | None = None,
        rewards: reward_mod.RewardSettings | None = None,
        others: Mapping[str, Policy] | None = None,
    ) -> None:
        super().__init__()
        self.sim = sim
        self.start_params = start_params
        self.role = role
        self.settings = settings or EnvSettings()
        self.rewards = rewards or reward_mod.RewardSettings()
        self.others = dict(others or {})
        if role == "flat" and self.others:
            raise QGError("calibration env: the flat agent acts alone; drop `others`")
        n = sim.data.n_sessions
        self.first = max(int(first), 1)
        self.last = n - 1 if last is None else int(last)
        s = self.settings
        self.min_start = self.first + s.warmup
        if self.last >= n or self.last - self.min_start + 1 < s.period:
            raise QGError(
                f"calibration env: sessions {self.first}..{self.last} of a {n}-session window "
                f"leave no {s.period}-session period after the {s.warmup}-session warm-up; "
                "give the calibration a longer window"
            )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (spaces.action_size(role),), np.float32)
        self.observation_space = gym.spaces.Box(
            -spaces.OBS_CLIP, spaces.OBS_CLIP, (len(spaces.OBSERVATION),), np.float32
        )
        self._t = 0
        self._steps = 0
        self._params = start_params
        self._book = sim.empty_book()
        self._history = np.zeros(0)
        self._last: PeriodResult | None = None
        self._obs = np.zeros(len(spaces.OBSERVATION), np.float32)

    # --------------------------------------------------------------------------- gymnasium
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        s = self.settings
        latest = max(self.min_start, self.last - s.period * s.episode_periods + 1)
        start = (options or {}).get("start")
        if start is None:
            start = int(self.np_random.integers(self.min_start, latest + 1))
        elif not self.min_start <= int(start) <= self.last - s.period + 1:
            raise QGError(
                f"calibration env: start {start} is outside {self.min_start}.."
                f"{self.last - s.period + 1}"
            )
        start = int(start)
        self._params = self.start_params
        warm = self.sim.run(self._params, start - s.warmup, start - 1, self.sim.empty_book())
        self._book = warm.book
        self._history = warm.net_return.copy()
        self._last = warm
        self._t = start - 1  # the last session traded
        self._steps = 0
        self._obs = self._observe()
        return self._obs, {"start": start, "session": str(self.sim.data.sessions[start])}

    def step(self, action):
        own = np.asarray(action, dtype=np.float32)
        params = self._params
        for role in spaces.HIERARCHY:
            if role in self.others and role != self.role:
                params = spaces.apply_action(role, self.others[role](self._obs), params)
        return self.step_params(spaces.apply_action(self.role, own, params))

    def step_params(self, params: ParamSet):
        """A step with the parameter set given directly (the walk-forward baselines)."""
        a = self._t + 1
        b = min(self._t + self.settings.period, self.last)
        result = self.sim.run(params, a, b, self._book)
        self._book = result.book
        self._history = np.concatenate([self._history, result.net_return])
        self._params = params
        self._last = result
        self._t = b
        self._steps += 1
        perf = reward_mod.performance(self._history, self.rewards)
        r = reward_mod.step_reward(result.net_return, perf, self.rewards)
        parts = {"performance": r}
        if self.role in ("chip", "sentiment"):
            bonus = reward_mod.sub_agent_bonus(self._cross_corr(result), result.residuals,
                                               self.rewards)  # fmt: skip
            parts["bonus"] = bonus
            r += bonus
        self._obs = self._observe()
        truncated = (
            self._steps >= self.settings.episode_periods
            or self._t + self.settings.period > self.last
        )
        info = {
            "params": params,
            "first_session": a,
            "last_session": b,
            "net_return": result.net_return,
            "reward_parts": parts,
        }
        return self._obs, float(r), False, bool(truncated), info

    # --------------------------------------------------------------------------- helpers
    @property
    def params(self) -> ParamSet:
        """The parameter set in force (the last step's)."""
        return self._params

    @property
    def last_result(self) -> PeriodResult | None:
        """The last step's (or the warm-up's) simulator result."""
        return self._last

    @property
    def session(self) -> int:
        """The last session traded (index)."""
        return self._t

    def _cross_corr(self, result: PeriodResult) -> float:
        d = self.sim.data
        held = result.weights[-1] > 0
        t = result.last - 1  # the z-scores the last session's holdings were chosen on
        return reward_mod.cross_factor_corr(d.factors["f_c"][t], d.factors["f_s"][t], held)

    def _observe(self) -> np.ndarray:
        last = self._last
        perf = reward_mod.performance(self._history, self.rewards)
        res = last.residuals[np.isfinite(last.residuals)] if last is not None else np.zeros(0)
        perf |= {
            "ab_corr": 0.0,  # no intraday (strategy B) returns in the simulator: see docs
            "residual_mean": float(res.mean()) if res.size else 0.0,
            "residual_abs_mean": float(np.abs(res).mean()) if res.size else 0.0,
        }
        if last is not None:
            for k, name in enumerate(COMPOSITES):
                perf[f"contribution_{name}"] = float(last.contribution[:, k].sum())
                perf[f"exposure_{name}"] = float(last.exposure[-1, k])
        return spaces.observe(perf, self.sim.data.features[self._t], self._params)
