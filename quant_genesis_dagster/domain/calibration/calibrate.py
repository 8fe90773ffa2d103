"""One calibration: train on the past, evaluate on the next unseen window, propose a set.

The window's last ``eval_sessions`` sessions are the **walk-forward** window; the agents train
on the ``train_sessions`` before it (episodes never reach into it). Then every candidate
(``walkforward.CANDIDATES``) trades the walk-forward window, and the **proposal** is what the
agents choose from the state after its last close — the parameter set for the sessions after
the window, which the governance gate then registers (``governance.record_calibration``).

The in-sample figures are the same rollouts over the training range (``rl`` and ``champion``).
``data_hash`` fingerprints the inputs (sessions, symbols, prices, composites, features) and
``config_hash`` the settings and the champion: both go to MLflow beside the agent zips.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from quant_genesis_dagster.domain.calibration import agents as agents_mod
from quant_genesis_dagster.domain.calibration import walkforward
from quant_genesis_dagster.domain.calibration.data import CalibrationData
from quant_genesis_dagster.domain.calibration.env import EnvSettings
from quant_genesis_dagster.domain.calibration.reward import RewardSettings
from quant_genesis_dagster.domain.calibration.simulator import Simulator
from quant_genesis_dagster.domain.costs import CostModel
from quant_genesis_dagster.domain.params import ParamSet
from quant_genesis_dagster.domain.portfolio import PortfolioSettings
from quant_genesis_dagster.errors import QGError


@dataclass(frozen=True)
class CalibrationSettings:
    eval_sessions: int = 60  # the walk-forward window (12 weekly periods)
    train_sessions: int = 250  # the agents' training range before it
    ls_window: int = walkforward.LS_WINDOW
    train: agents_mod.TrainSettings = field(default_factory=agents_mod.TrainSettings)
    env: EnvSettings = field(default_factory=EnvSettings)
    rewards: RewardSettings = field(default_factory=RewardSettings)

    def __post_init__(self) -> None:
        for name in ("eval_sessions", "train_sessions", "ls_window"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise QGError(f"calibration settings: {name}={v!r}; use an integer >= 1")
        if self.eval_sessions < self.env.period:
            raise QGError(
                f"calibration settings: eval_sessions={self.eval_sessions} is shorter than one "
                f"period ({self.env.period} sessions)"
            )

    def sessions_needed(self) -> int:
        """Sessions of factor history a calibration reads (warm-ups included)."""
        return self.train_sessions + self.eval_sessions + 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CalibrationResult:
    proposal: ParamSet
    champion: ParamSet
    agents: agents_mod.Agents
    walk_forward: dict[str, walkforward.Rollout]
    in_sample: dict[str, walkforward.Rollout]
    ranges: dict[str, str]  # train_first, train_last, eval_first, eval_last (ISO dates)
    data_hash: str
    config_hash: str
    seconds: dict[str, float]
    settings: CalibrationSettings
    sessions: np.ndarray  # the window's sessions (datetime64[D]); rollouts index into it

    def table(self) -> pl.DataFrame:
        return walkforward.table(self.walk_forward)

    def walk_forward_sharpe(self) -> dict[str, float]:
        return {name: r.summary()["sharpe"] for name, r in self.walk_forward.items()}

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: ``walk_forward/<candidate>/<metric>``, ``in_sample/...``,
        ``train_steps``, ``train_seconds``, ``env_steps_per_s``."""
        out: dict[str, float] = {}
        for prefix, rollouts in (("walk_forward", self.walk_forward),
                                 ("in_sample", self.in_sample)):  # fmt: skip
            for name, r in rollouts.items():
                for k, v in r.summary().items():
                    if np.isfinite(v):
                        out[f"{prefix}/{name}/{k}"] = float(v)
        out["train_steps"] = float(self.agents.train_steps)
        out["train_seconds"] = float(self.seconds.get("train", 0.0))
        if self.seconds.get("train"):
            out["env_steps_per_s"] = self.agents.train_steps / self.seconds["train"]
        return out


def data_fingerprint(data: CalibrationData) -> str:
    h = hashlib.sha256()
    h.update(data.sessions.astype("datetime64[D]").astype(np.int64).tobytes())
    h.update("\n".join(data.symbols.tolist()).encode())
    for a in (data.market.close_adj, data.market.volume, *data.factors.values(), data.features):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def calibrate(
    data: CalibrationData,
    champion: ParamSet,
    settings: CalibrationSettings | None = None,
    *,
    portfolio_settings: PortfolioSettings | None = None,
    costs: CostModel | None = None,
) -> CalibrationResult:
    """Train, evaluate walk-forward and propose (see the module docstring)."""
    s = settings or CalibrationSettings()
    n = data.n_sessions
    eval_first = n - s.eval_sessions
    train_last = eval_first - 1
    train_first = max(1, train_last - s.train_sessions + 1)
    if train_last - train_first + 1 < s.env.warmup + s.env.period:
        raise QGError(
            f"calibration: the window has {n} sessions; training needs at least "
            f"{s.env.warmup + s.env.period} before the {s.eval_sessions}-session walk-forward "
            f"window — read a longer window (settings.sessions_needed() = {s.sessions_needed()})"
        )
    sim = Simulator(data, portfolio_settings, costs)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    agents = agents_mod.train(sim, champion, first=train_first, last=train_last,
                              settings=s.train, env_settings=s.env, rewards=s.rewards)  # fmt: skip
    seconds["train"] = time.perf_counter() - t
    data_hash = data_fingerprint(data)
    config_hash = agents_mod.config_hash(s.to_dict(), champion.to_dict(), data_hash)
    agents.meta |= {"data_hash": data_hash, "config_hash": config_hash}

    t = time.perf_counter()
    wf = walkforward.evaluate(sim, agents, champion, eval_first, n - 1, env_settings=s.env,
                              rewards=s.rewards, ls_window=s.ls_window)  # fmt: skip
    seconds["walk_forward"] = time.perf_counter() - t
    rl = wf["rl"]
    proposal = agents.act(rl.final_obs, rl.params[-1])
    start = train_first + s.env.warmup
    in_sample = {
        name: walkforward.rollout(
            sim, name, chooser, champion, start, train_last, env_settings=s.env, rewards=s.rewards
        )  # fmt: skip
        for name, chooser in (
            ("rl", walkforward.agents_chooser(agents)),
            ("champion", walkforward.fixed(champion)),
        )  # fmt: skip
    }
    day = data.sessions.astype("datetime64[D]").astype(str)
    return CalibrationResult(
        proposal=proposal,
        champion=champion,
        agents=agents,
        walk_forward=wf,
        in_sample=in_sample,
        ranges={
            "train_first": str(day[train_first]),
            "train_last": str(day[train_last]),
            "eval_first": str(day[eval_first]),
            "eval_last": str(day[n - 1]),
        },  # fmt: skip
        data_hash=data_hash,
        config_hash=config_hash,
        seconds=seconds,
        settings=s,
        sessions=data.sessions,
    )


def write_artifacts(result: CalibrationResult, directory: Path) -> dict[str, Path]:
    """The calibration's MLflow artifacts under ``directory``, by artifact path:

    * ``agents``: each agent's zip and ``agents.json`` (settings, data / config hash);
    * ``evaluation``: ``walk_forward.csv`` and ``in_sample.csv`` (one row per candidate),
      ``walk_forward_returns.csv`` (daily net returns per candidate), ``calibration.json``
      (settings, ranges, hashes, seconds, the proposal and the champion);
    * ``plots``: ``walk_forward_equity.png`` (every candidate's NAV) and
      ``parameter_history.png`` (the RL agents' β's, leverage, position weight and W_Macro per
      period of the walk-forward window).
    """
    from quant_genesis_dagster.domain import report

    directory = Path(directory)
    agents_dir, eval_dir, plot_dir = (directory / n for n in ("agents", "evaluation", "plots"))
    for d in (eval_dir, plot_dir):
        d.mkdir(parents=True, exist_ok=True)
    result.agents.save(agents_dir)
    result.table().write_csv(eval_dir / "walk_forward.csv")
    walkforward.table(result.in_sample).write_csv(eval_dir / "in_sample.csv")
    days = result.sessions[next(iter(result.walk_forward.values())).sessions]
    pl.DataFrame(
        {"session": days} | {n: r.net_return for n, r in result.walk_forward.items()}
    ).write_csv(eval_dir / "walk_forward_returns.csv")
    summary = {
        "settings": result.settings.to_dict(),
        "ranges": result.ranges,
        "data_hash": result.data_hash,
        "config_hash": result.config_hash,
        "seconds": result.seconds,
        "proposal": result.proposal.to_dict(),
        "champion": result.champion.to_dict(),
        "walk_forward_sharpe": result.walk_forward_sharpe(),
    }
    (eval_dir / "calibration.json").write_text(json.dumps(summary, indent=2, default=str))
    curves = {n: (days, r.net_return) for n, r in result.walk_forward.items()}
    (plot_dir / "walk_forward_equity.png").write_bytes(
        report.candidates_equity_png(
            curves, f"Walk-forward {result.ranges['eval_first']}..{result.ranges['eval_last']}"
        )
    )
    rl = result.walk_forward["rl"]
    period_days = days[:: result.settings.env.period][: len(rl.params)]
    history = {
        k: np.array([getattr(p, k) for p in rl.params])
        for k in ("beta_c", "beta_s", "beta_d", "leverage", "position_weight", "w_macro")
    }
    (plot_dir / "parameter_history.png").write_bytes(
        report.parameter_history_png(period_days, history, "RL parameters per period")
    )
    return {"agents": agents_dir, "evaluation": eval_dir, "plots": plot_dir}
