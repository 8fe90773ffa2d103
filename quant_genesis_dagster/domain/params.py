"""The one module of parameters: defaults and allowed ranges (SPEC §9), validated as a set.

Two kinds:

* ``ParamSet`` — the **versioned** parameters: the RL-tunable ones (β's, T_Fear, T_RunUp_Dev,
  Position_Weight, W_Macro, leverage, the LAC deviation threshold) and the prediction / signal /
  risk thresholds they work with. Predictions and signals read them from the current champion
  version in the parameter store (``domain.registry``); the defaults below are version 1.
* ``FactorSettings`` — the shape of the factor computations (windows, winsorization, the
  standardization method). Not versioned by calibration: changing them changes what the factor
  tables mean, so they are definition-level settings of the factor assets.

Every value has a range; ``validate`` names the first parameter outside its range.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from quant_genesis_dagster.errors import QGError

#: Prediction horizons in sessions (tomorrow, this week, next week).
HORIZONS: tuple[int, ...] = (1, 5, 10)
BETA_KEYS: tuple[str, ...] = ("beta_c", "beta_s", "beta_d")


def _p(default: float, lo: float, hi: float, doc: str, *, tunable: bool = False) -> Any:
    return field(default=default, metadata={"range": (lo, hi), "doc": doc, "tunable": tunable})


@dataclass(frozen=True)
class ParamSet:
    """The versioned parameter set. Units: returns and distances as fractions (0.3 = 30%)."""

    # --- RL-tunable (SPEC §9 actions) ---------------------------------------------------------
    beta_c: float = _p(0.40, 0.0, 1.0, "weight of the chip composite F_C", tunable=True)
    beta_s: float = _p(0.30, 0.0, 1.0, "weight of the sentiment composite F_S", tunable=True)
    beta_d: float = _p(0.30, 0.0, 1.0, "weight of the value composite F_D", tunable=True)
    t_fear: float = _p(20.0, 10.0, 30.0, "fear & greed level at or below which contrarian "
                       "(P1) buying is allowed", tunable=True)  # fmt: skip
    t_runup_dev: float = _p(0.30, 0.20, 0.50, "LAC_dist above which a take-profit warning is "
                            "raised", tunable=True)  # fmt: skip
    position_weight: float = _p(0.50, 0.10, 1.0, "share of capital the strategy may deploy",
                                tunable=True)  # fmt: skip
    w_macro: float = _p(0.70, 0.0, 1.0, "capital share of the daily (macro) strategy; "
                        "W_Intraday = 1 - W_Macro", tunable=True)  # fmt: skip
    leverage: float = _p(1.0, 0.0, 2.0, "gross exposure multiplier (below 1 de-risks)",
                         tunable=True)  # fmt: skip
    lac_dev_max: float = _p(0.10, 0.0, 0.30, "P1: LAC_dist must lie in (0, lac_dev_max]",
                            tunable=True)  # fmt: skip
    # --- portfolio (how the signals shape the book) --------------------------------------------
    entry_boost: float = _p(0.50, 0.0, 3.0, "a name with a P1 or P2 entry signal that session "
                            "ranks on its score x (1 + entry_boost)")  # fmt: skip
    take_profit_cut: float = _p(0.50, 0.0, 1.0, "weight multiplier of a name whose LAC_dist is "
                                "above T_RunUp_Dev (take profit)")  # fmt: skip
    # --- prediction ---------------------------------------------------------------------------
    return_per_score: float = _p(0.002, 0.0, 0.05, "expected return per session and unit of "
                                 "the combined score (z units)")  # fmt: skip
    alpha: float = _p(0.0, -0.01, 0.01, "intercept of R_pred per session")
    us_threshold: float = _p(0.015, 0.0, 0.10, "overnight US proxy move (abs) beyond which the "
                             "cross-market correction applies")  # fmt: skip
    us_sensitivity: float = _p(0.30, 0.0, 2.0, "R_pred change per unit of US proxy move beyond "
                               "the threshold")  # fmt: skip
    us_position_cut: float = _p(0.50, 0.0, 1.0, "position weight multiplier after a US "
                                "risk-off move (below -threshold)")  # fmt: skip
    # --- signals ------------------------------------------------------------------------------
    fc_strong: float = _p(1.0, 0.0, 3.0, "F_C (z) at or above which the chip factor is strong")
    sweep_min: float = _p(0.15, 0.0, 1.0, "P2: intraday sweep ratio at or above which the "
                          "main force pushed")  # fmt: skip
    equity_multiplier_max: float = _p(6.0, 1.0, 30.0, "DuPont filter: no long entry above this "
                                      "equity multiplier (assets / equity)")  # fmt: skip
    # --- risk manager -------------------------------------------------------------------------
    lac_break_margin: float = _p(0.05, 0.0, 0.30, "stop when close < LAC x (1 - margin)")
    vix_max: float = _p(30.0, 10.0, 80.0, "VIXTWN above which exposure is cut")
    atr_compression: float = _p(0.60, 0.1, 1.0, "market ATR(14)/ATR(60) below which exposure is "
                                "cut (volatility squeeze before a break)")  # fmt: skip
    margin_anomaly_z: float = _p(3.0, 1.0, 10.0, "|z| of a margin-balance change that counts as "
                                 "an anomaly")  # fmt: skip
    exposure_cut: float = _p(0.50, 0.0, 1.0, "exposure multiplier applied per market-level risk "
                             "rule that fires")  # fmt: skip

    def __post_init__(self) -> None:
        validate(dataclasses.asdict(self))

    # ---------------------------------------------------------------- helpers
    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ParamSet:
        """Build from a mapping (e.g. MLflow params, all strings); unknown keys are an error,
        missing keys take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise QGError(
                f"parameter set: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        parsed: dict[str, float] = {}
        for k, v in values.items():
            try:
                parsed[k] = float(v)
            except (TypeError, ValueError):
                raise QGError(f"parameter {k}={v!r} is not a number") from None
        return cls(**parsed)

    def replace(self, **changes: float) -> ParamSet:
        return dataclasses.replace(self, **changes)

    @property
    def betas(self) -> tuple[float, float, float]:
        """(β_C, β_S, β_D) renormalized to sum 1 (all zero → equal weights)."""
        b = (self.beta_c, self.beta_s, self.beta_d)
        total = sum(b)
        return (1 / 3, 1 / 3, 1 / 3) if total <= 0 else tuple(x / total for x in b)  # type: ignore[return-value]

    @property
    def w_intraday(self) -> float:
        return 1.0 - self.w_macro


def ranges() -> dict[str, tuple[float, float]]:
    """Parameter name → (low, high), inclusive."""
    return {f.name: f.metadata["range"] for f in dataclasses.fields(ParamSet)}


def tunable() -> tuple[str, ...]:
    """The RL-tunable parameter names (SPEC §9 actions), in declaration order."""
    return tuple(f.name for f in dataclasses.fields(ParamSet) if f.metadata["tunable"])


def describe() -> dict[str, str]:
    return {f.name: f.metadata["doc"] for f in dataclasses.fields(ParamSet)}


def validate(values: dict[str, Any]) -> None:
    """Raise ``QGError`` naming the first parameter that is not finite or outside its range."""
    bounds = ranges()
    for name, value in values.items():
        if name not in bounds:
            raise QGError(f"parameter set: unknown parameter {name!r}")
        lo, hi = bounds[name]
        if not isinstance(value, int | float) or not math.isfinite(value) or not lo <= value <= hi:
            raise QGError(
                f"parameter {name}={value!r} is outside its range [{lo}, {hi}]; "
                "choose a value inside it"
            )
    if all(k in values for k in BETA_KEYS) and sum(values[k] for k in BETA_KEYS) <= 0:
        raise QGError("parameters beta_c, beta_s, beta_d are all 0; at least one must be > 0")


DEFAULTS = ParamSet()


@dataclass(frozen=True)
class FactorSettings:
    """Shape of the factor computations (definition-level, not calibrated)."""

    lac_window: int = 180  # sessions in the LAC window (SPEC §5.1)
    #: LAC defined only where Σ_w n >= lac_min_net_share × Σ_w volume (material accumulation)
    lac_min_net_share: float = 0.01
    top_branches: int = 15  # main force = top-N branches by |net| of the day
    tier_branches: int = 5  # "top tier" of the main force for the dealer tier ratio
    flow_window: int = 20  # net ratio, concentration, tier ratio windows
    streak_cap: int = 60  # consecutive net-buy days are counted up to this many sessions
    vix_slope_window: int = 5
    fg_window: int = 60  # history for the fear & greed components' scaling (percentiles)
    news_window: int = 5  # sessions of headlines in the news sentiment
    move_window: int = 20  # abnormal price / volume move: window of the reference
    abnormal_ret_z: float = 2.0  # |ret| / rolling std at or above → abnormal price move
    abnormal_volume_ratio: float = 2.0  # volume / rolling mean at or above → abnormal volume
    noise_extreme_z: float = 2.0  # |z| at or above which a sentiment reading is extreme
    roe_trend_sessions: int = 250  # ROE trend: change over about a year of sessions
    winsor_pct: float = 0.01  # winsorize at this tail share (1st / 99th percentile)
    zscore_method: str = "cross_section"  # | "rank" | "time_series"
    ts_window: int = 250  # time-series z window (method "time_series")
    industry_neutral: bool = False  # neutralize every factor within industry before z-scoring
    min_names: int = 5  # fewer symbols with a value on a day → no z-score that day

    def __post_init__(self) -> None:
        checks = {
            "lac_window": (20, 1000),
            "top_branches": (1, 100),
            "tier_branches": (1, 100),
            "flow_window": (2, 250),
            "streak_cap": (1, 1000),
            "vix_slope_window": (2, 60),
            "fg_window": (5, 1000),
            "news_window": (1, 60),
            "move_window": (5, 250),
            "roe_trend_sessions": (20, 1000),
            "ts_window": (20, 2000),
            "min_names": (2, 10_000),
        }
        for name, (lo, hi) in checks.items():
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise QGError(f"factor setting {name}={v!r} must be an integer in [{lo}, {hi}]")
        if self.tier_branches > self.top_branches:
            raise QGError(
                f"factor setting tier_branches={self.tier_branches} exceeds "
                f"top_branches={self.top_branches}"
            )
        for name, lo, hi in (
            ("lac_min_net_share", 0.0, 1.0),
            ("abnormal_ret_z", 0.0, 10.0),
            ("abnormal_volume_ratio", 1.0, 20.0),
            ("noise_extreme_z", 0.0, 10.0),
            ("winsor_pct", 0.0, 0.2),
        ):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not lo <= v <= hi:
                raise QGError(f"factor setting {name}={v!r} must be in [{lo}, {hi}]")
        if self.zscore_method not in ("cross_section", "rank", "time_series"):
            raise QGError(
                f"factor setting zscore_method={self.zscore_method!r}; "
                "use cross_section, rank or time_series"
            )

    def lookback(self) -> int:
        """Sessions of history before the first output session that the factor assets read."""
        return max(
            self.lac_window,
            self.flow_window,
            self.streak_cap,
            self.fg_window + self.vix_slope_window,
            self.move_window + 1,
            self.roe_trend_sessions,
            self.ts_window if self.zscore_method == "time_series" else 0,
        )
