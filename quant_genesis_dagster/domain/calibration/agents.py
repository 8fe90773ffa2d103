"""The calibration agents: stable-baselines3 PPO models acting in ``CalibrationEnv``.

* **Hierarchical** (default, SPEC §9): a supervisor (W_Macro, leverage, Position_Weight,
  T_RunUp_Dev) and the F_C and F_S sub-agents (Δβ_C / ΔLAC threshold, Δβ_S / ΔT_Fear), each its
  own PPO model and saved zip. Training alternates: ``rounds`` times, each role learns for its
  share of the budget while the other two act with their current deterministic policies (a
  role not trained yet keeps the parameters as they are: ``spaces.neutral_action``).
* **Flat**: one PPO model setting every tunable parameter (the comparison).

``Agents.act(obs, current)`` is the parameter set the agents choose for the next period — the
same composition the environment applies in a step (supervisor, then chip, then sentiment).

Determinism: PPO on ``device="cpu"`` with ``torch.set_num_threads(threads)`` and a seed gives
the same parameters and actions run to run (``docs/MLFLOW_SB3.md``); each role's seed is
``seed + its index``. stable-baselines3 and torch are imported here only (``import`` ~1.5 s).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from quant_genesis_dagster.domain.calibration import spaces
from quant_genesis_dagster.domain.calibration.env import CalibrationEnv, EnvSettings
from quant_genesis_dagster.domain.calibration.reward import RewardSettings
from quant_genesis_dagster.domain.calibration.simulator import Simulator
from quant_genesis_dagster.domain.params import ParamSet
from quant_genesis_dagster.errors import QGError


@dataclass(frozen=True)
class TrainSettings:
    """The training budget and PPO's knobs. ``total_steps`` = environment steps over all roles
    (each role gets ``total_steps / (rounds · roles)``, rounded up to whole rollouts)."""

    hierarchical: bool = True
    total_steps: int = 3072
    rounds: int = 2
    n_steps: int = 128  # rollout length per PPO update
    batch_size: int = 64
    n_epochs: int = 10
    learning_rate: float = 3e-4
    gamma: float = 0.9  # a period is a week: ~10 weeks of horizon
    ent_coef: float = 0.0
    net_arch: tuple[int, ...] = (64, 64)
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("total_steps", "rounds", "n_steps", "batch_size", "n_epochs", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise QGError(f"training settings: {name}={v!r}; use an integer >= 1")
        if not 0 < self.gamma <= 1 or not self.learning_rate > 0:
            raise QGError("training settings: gamma must be in (0, 1] and learning_rate > 0")

    @property
    def roles(self) -> tuple[str, ...]:
        return spaces.HIERARCHY if self.hierarchical else ("flat",)

    def steps_per_turn(self) -> int:
        turns = self.rounds * len(self.roles) if self.hierarchical else 1
        per = -(-self.total_steps // turns)
        return -(-per // self.n_steps) * self.n_steps


@dataclass
class Agents:
    """Trained models by role (``models``) and what they were trained with."""

    models: dict[str, object]
    settings: TrainSettings
    train_steps: int = 0
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    def policy(self, role: str):
        """``role``'s deterministic policy: observation → action."""
        return _policy(self.models[role])

    def act(self, obs: np.ndarray, current: ParamSet) -> ParamSet:
        """The parameters the agents choose for the next period from ``obs`` and ``current``."""
        params = current
        for role in self.settings.roles:
            if role in self.models:
                params = spaces.apply_action(role, self.policy(role)(obs), params)
        return params

    def save(self, directory: Path) -> dict[str, Path]:
        """Each model's zip (``<role>.zip``) and ``agents.json`` (settings, roles, the data
        hash in ``meta``); returns the files by name. No normalization statistics to save: the
        observation normalization is fixed (``spaces.OBS_SCALE``)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        out: dict[str, Path] = {}
        for role, model in self.models.items():
            path = directory / f"{role}.zip"
            model.save(path)
            out[role] = path
        meta = {"settings": asdict(self.settings), "roles": list(self.models),
                "train_steps": self.train_steps, **self.meta}  # fmt: skip
        (directory / "agents.json").write_text(json.dumps(meta, indent=2, default=str))
        out["agents.json"] = directory / "agents.json"
        return out

    @classmethod
    def load(cls, directory: Path) -> Agents:
        from stable_baselines3 import PPO

        directory = Path(directory)
        meta_path = directory / "agents.json"
        if not meta_path.exists():
            raise QGError(f"agents: no agents.json in {directory}; save the agents there first")
        meta = json.loads(meta_path.read_text())
        s = meta.pop("settings")
        settings = TrainSettings(**(s | {"net_arch": tuple(s["net_arch"])}))
        models = {r: PPO.load(directory / f"{r}.zip", device="cpu") for r in meta.pop("roles")}
        return cls(models=models, settings=settings, train_steps=meta.pop("train_steps", 0),
                   meta=meta)  # fmt: skip


def config_hash(*parts: object) -> str:
    """A short sha256 of the JSON of ``parts`` (settings, data fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def train(
    sim: Simulator,
    start_params: ParamSet,
    *,
    first: int,
    last: int,
    settings: TrainSettings | None = None,
    env_settings: EnvSettings | None = None,
    rewards: RewardSettings | None = None,
) -> Agents:
    """Train the agents on sessions ``first..last`` of the simulator's window (see the module
    docstring)."""
    import time

    import torch
    from stable_baselines3 import PPO

    s = settings or TrainSettings()
    torch.set_num_threads(s.threads)
    t0 = time.perf_counter()
    models: dict[str, PPO] = {}
    steps = 0

    def others_for(role: str) -> dict:
        if role == "flat":
            return {}
        return {r: _policy(models[r]) for r in spaces.HIERARCHY if r != role and r in models}

    def make_env(role: str, seed: int) -> CalibrationEnv:
        env = CalibrationEnv(sim, start_params, role=role, first=first, last=last,
                             settings=env_settings, rewards=rewards, others=others_for(role))  # fmt: skip
        env.reset(seed=seed)
        return env

    per_turn = s.steps_per_turn()
    rounds = s.rounds if s.hierarchical else 1
    for rnd in range(rounds):
        for i, role in enumerate(s.roles):
            seed = s.seed + i + 100 * rnd
            env = make_env(role, seed)
            if role not in models:
                models[role] = PPO(
                    "MlpPolicy", env, n_steps=s.n_steps, batch_size=s.batch_size,
                    n_epochs=s.n_epochs, learning_rate=s.learning_rate, gamma=s.gamma,
                    ent_coef=s.ent_coef, policy_kwargs={"net_arch": list(s.net_arch)},
                    seed=s.seed + i, device="cpu", verbose=0,
                )  # fmt: skip
            else:
                models[role].set_env(env)
            models[role].learn(per_turn, reset_num_timesteps=False)
            steps += per_turn
    return Agents(models=models, settings=s, train_steps=steps,
                  seconds=time.perf_counter() - t0)  # fmt: skip


def _policy(model):
    def act(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(obs, deterministic=True)
        return action

    return act
