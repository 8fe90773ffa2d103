"""Action interpreters (a symmetric float32 box → a parameter set) and the observation builder.

**Roles** (SPEC §9's hierarchy, plus a flat single agent for comparison). Each role owns some
parameters; an action entry in [−1, 1] sets an owned parameter either

* *absolutely*: ``lo + (a + 1) / 2 · (hi − lo)`` over the parameter's range (``params.ranges``),
  so any action lands inside the range, or
* as a *delta*: ``current + a · step``, clipped to the range (the sub-agents' small moves).

===============  =========================================================================
role             owned parameters
===============  =========================================================================
``flat``         every tunable parameter, absolute: β_C, β_S, β_D, T_Fear, T_RunUp_Dev,
                 Position_Weight, W_Macro, leverage, LAC deviation threshold
``supervisor``   W_Macro, leverage (absolute; leverage can go below 1 in a panic), and the
                 book's Position_Weight and take-profit threshold T_RunUp_Dev
``chip``         Δβ_C ∈ ±0.1, ΔLAC-deviation threshold (``lac_dev_max``) ∈ ±0.05
``sentiment``    Δβ_S ∈ ±0.1, ΔT_Fear ∈ ±2
===============  =========================================================================

After an action the β's are renormalized to sum 1 (the prediction uses them that way:
``ParamSet.betas``), so the stored set reads as the weights it trades with. A NaN or infinite
action is a ``QGError`` (never clipped into a number).

**Observation** (``observe``): the SPEC §9 state, each entry a fixed affine normalization of its
raw value (``OBS_SCALE``: centre and scale in the value's own unit), clipped to ±``OBS_CLIP``,
unknown (NaN) → 0 — so the box is finite and the same statistics hold for every window (no
running normalization to save beside the agent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant_genesis_dagster.domain import params as params_mod
from quant_genesis_dagster.domain.calibration.data import FEATURES
from quant_genesis_dagster.domain.params import BETA_KEYS, ParamSet
from quant_genesis_dagster.errors import QGError

ROLES: tuple[str, ...] = ("flat", "supervisor", "chip", "sentiment")
#: The hierarchical roles, in the order their actions are applied within a step.
HIERARCHY: tuple[str, ...] = ("supervisor", "chip", "sentiment")


@dataclass(frozen=True)
class Knob:
    """One action entry: the parameter it sets and how (``step`` None = absolute)."""

    name: str
    step: float | None = None


ROLE_KNOBS: dict[str, tuple[Knob, ...]] = {
    "flat": tuple(Knob(n) for n in params_mod.tunable()),
    "supervisor": (Knob("w_macro"), Knob("leverage"), Knob("position_weight"), Knob("t_runup_dev")),
    "chip": (Knob("beta_c", 0.1), Knob("lac_dev_max", 0.05)),
    "sentiment": (Knob("beta_s", 0.1), Knob("t_fear", 2.0)),
}


def _role(role: str) -> str:
    if role not in ROLES:
        raise QGError(f"calibration: unknown agent role {role!r}; use one of {', '.join(ROLES)}")
    return role


def action_size(role: str) -> int:
    return len(ROLE_KNOBS[_role(role)])


def normalize_betas(values: dict[str, float]) -> dict[str, float]:
    """β's rescaled to sum 1 (all zero → equal weights)."""
    b = np.array([values[k] for k in BETA_KEYS], dtype=float)
    total = b.sum()
    b = np.full(3, 1 / 3) if total <= 0 else b / total
    return values | dict(zip(BETA_KEYS, (float(x) for x in b), strict=True))


def apply_action(role: str, action, current: ParamSet) -> ParamSet:
    """The parameter set after ``role``'s ``action`` on ``current`` (see the module docstring)."""
    knobs = ROLE_KNOBS[_role(role)]
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.size != len(knobs):
        raise QGError(f"calibration: a {role} action has {len(knobs)} entries, got {a.size}")
    if not np.all(np.isfinite(a)):
        bad = [k.name for k, x in zip(knobs, a, strict=True) if not np.isfinite(x)]
        raise QGError(
            f"calibration: the {role} action for {', '.join(bad)} is not a number (NaN/inf); "
            "the agent diverged — retrain it (the champion is unchanged)"
        )
    a = np.clip(a, -1.0, 1.0)
    bounds = params_mod.ranges()
    values = current.to_dict()
    for knob, x in zip(knobs, a, strict=True):
        lo, hi = bounds[knob.name]
        if knob.step is None:
            v = lo + (x + 1.0) / 2.0 * (hi - lo)
        else:
            v = values[knob.name] + x * knob.step
        values[knob.name] = float(min(max(v, lo), hi))
    return ParamSet(**normalize_betas(values))


def neutral_action(role: str, current: ParamSet) -> np.ndarray:
    """The action that leaves ``current`` as it is (up to β renormalization): zeros for the
    delta roles, the inverse map for the absolute ones."""
    knobs = ROLE_KNOBS[_role(role)]
    bounds = params_mod.ranges()
    out = np.zeros(len(knobs), dtype=np.float32)
    values = current.to_dict()
    for i, knob in enumerate(knobs):
        if knob.step is None:
            lo, hi = bounds[knob.name]
            out[i] = 2.0 * (values[knob.name] - lo) / (hi - lo) - 1.0
    return out


# ------------------------------------------------------------------------------ observation

#: Performance / diagnostics entries of the observation, before the market features.
PERFORMANCE: tuple[str, ...] = (
    "sharpe_7d", "sharpe_30d", "mdd_30d", "ab_corr", "residual_mean", "residual_abs_mean",
    "contribution_f_c", "contribution_f_s", "contribution_f_d",
    "exposure_f_c", "exposure_f_s", "exposure_f_d",
)  # fmt: skip
#: Current parameter entries (the tunable set, each mapped to [−1, 1] over its range).
PARAMETERS: tuple[str, ...] = tuple(f"param_{n}" for n in params_mod.tunable())
OBSERVATION: tuple[str, ...] = (*PERFORMANCE, *FEATURES, *PARAMETERS)
OBS_CLIP = 5.0

#: (centre, scale) per raw entry: normalized = (raw − centre) / scale. Units: Sharpe annualized;
#: MDD a fraction ≤ 0; residuals, contributions and factor returns fractions per session;
#: exposures Σ w·z (z units); VIXTWN points; half-lives sessions.
OBS_SCALE: dict[str, tuple[float, float]] = {
    "sharpe_7d": (0.0, 3.0), "sharpe_30d": (0.0, 3.0), "mdd_30d": (-0.05, 0.05),
    "ab_corr": (0.0, 1.0), "residual_mean": (0.0, 0.005), "residual_abs_mean": (0.015, 0.01),
    "contribution_f_c": (0.0, 0.001), "contribution_f_s": (0.0, 0.001),
    "contribution_f_d": (0.0, 0.001),
    "exposure_f_c": (0.0, 0.5), "exposure_f_s": (0.0, 0.5), "exposure_f_d": (0.0, 0.5),
    "vix_level": (20.0, 8.0), "vix_slope": (0.0, 3.0), "atr_ratio": (1.0, 0.3),
    "regime_bull": (0.5, 0.5), "regime_chop": (0.5, 0.5), "regime_panic": (0.5, 0.5),
    "lac_dist_mean": (0.0, 0.1), "tier_ratio_mean": (0.0, 0.3), "corr_fc_fs": (0.0, 0.3),
    "rank_ic_f_c": (0.0, 0.05), "rank_ic_f_s": (0.0, 0.05), "rank_ic_f_d": (0.0, 0.05),
    "factor_return_f_c": (0.0, 0.001), "factor_return_f_s": (0.0, 0.001),
    "factor_return_f_d": (0.0, 0.001),
    "half_life_f_c": (10.0, 10.0), "half_life_f_s": (10.0, 10.0), "half_life_f_d": (10.0, 10.0),
} | {name: (0.0, 1.0) for name in PARAMETERS}  # fmt: skip
_CENTRE = np.array([OBS_SCALE[n][0] for n in OBSERVATION])
_SCALE = np.array([OBS_SCALE[n][1] for n in OBSERVATION])


def parameter_entries(current: ParamSet) -> np.ndarray:
    """The tunable parameters of ``current``, each mapped to [−1, 1] over its range."""
    bounds = params_mod.ranges()
    values = current.to_dict()
    return np.array(
        [2.0 * (values[n] - bounds[n][0]) / (bounds[n][1] - bounds[n][0]) - 1.0
         for n in params_mod.tunable()]
    )  # fmt: skip


def observe(performance: dict[str, float], features: np.ndarray, current: ParamSet) -> np.ndarray:
    """The normalized float32 observation (``OBSERVATION`` order)."""
    raw = np.concatenate(
        [
            np.array([performance.get(n, np.nan) for n in PERFORMANCE], dtype=np.float64),
            np.asarray(features, dtype=np.float64),
            parameter_entries(current),
        ]
    )
    if raw.size != len(OBSERVATION):
        raise QGError(
            f"calibration: observation has {raw.size} entries, expected {len(OBSERVATION)}"
        )
    with np.errstate(invalid="ignore"):
        x = np.clip((raw - _CENTRE) / _SCALE, -OBS_CLIP, OBS_CLIP)
    return np.where(np.isfinite(x), x, 0.0).astype(np.float32)
