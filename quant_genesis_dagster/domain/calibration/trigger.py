"""When performance asks for a recalibration (SPEC §9, §10): the sensor's state machine, pure.

Each attribution materialization reports the combined book's Sharpe 30D and MDD 30D (standard
convention; MDD a fraction ≤ 0). A session's figures **trip** when any of

* Sharpe 30D < ``sharpe_30d_min``;
* Sharpe 30D < its average over the sessions seen before − ``below_average_by`` (once at
  least ``min_history`` sessions have been seen: an average of a few weeks is no baseline);
* MDD 30D deeper than ``mdd_30d_max`` (``mdd_30d < −mdd_30d_max``)

holds. The state is *tripped* while a condition holds and *clear* otherwise; a recalibration is
due on the transition clear → tripped only — one per crossing, however long the slump lasts.
A session without figures (the warm-up of the book) changes nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

from quant_genesis_dagster.errors import QGError


@dataclass(frozen=True)
class TriggerSettings:
    sharpe_30d_min: float = 0.0
    mdd_30d_max: float = 0.10  # a fraction: 0.10 = a 10% drawdown within 30 sessions
    below_average_by: float = 1.0  # Sharpe units
    min_history: int = 60  # sessions before the average counts

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | float) or not math.isfinite(v):
                raise QGError(f"recalibration trigger: {f.name}={v!r}; use a finite number")
        if self.mdd_30d_max <= 0 or self.below_average_by < 0 or self.min_history < 1:
            raise QGError(
                "recalibration trigger: mdd_30d_max must be > 0, below_average_by >= 0 and "
                "min_history >= 1"
            )


@dataclass(frozen=True)
class TriggerState:
    tripped: bool = False
    n: int = 0  # sessions with a Sharpe seen
    mean_sharpe: float = 0.0  # their average

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> TriggerState:
        if not text:
            return cls()
        try:
            d = json.loads(text)
            return cls(
                tripped=bool(d["tripped"]), n=int(d["n"]), mean_sharpe=float(d["mean_sharpe"])
            )
        except (ValueError, KeyError, TypeError):
            raise QGError(
                "recalibration trigger: the sensor cursor is not a trigger state; reset the "
                "sensor's cursor in the Dagster UI"
            ) from None


def _number(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def reasons(state: TriggerState, sharpe, mdd, s: TriggerSettings) -> list[str]:
    """The conditions that hold for one session's figures (empty = none)."""
    out: list[str] = []
    sh, dd = _number(sharpe), _number(mdd)
    if sh is not None and sh < s.sharpe_30d_min:
        out.append(f"Sharpe 30D {sh:.2f} < {s.sharpe_30d_min:g}")
    if sh is not None and state.n >= s.min_history and sh < state.mean_sharpe - s.below_average_by:
        out.append(
            f"Sharpe 30D {sh:.2f} < its average {state.mean_sharpe:.2f} − {s.below_average_by:g}"
        )
    if dd is not None and dd < -s.mdd_30d_max:
        out.append(f"MDD 30D {dd:.1%} deeper than −{s.mdd_30d_max:.0%}")
    return out


def step(
    state: TriggerState, sharpe, mdd, s: TriggerSettings
) -> tuple[TriggerState, list[str], bool]:
    """The state after one session's figures, the conditions that hold, and whether this
    session crossed into the tripped state (a recalibration is due)."""
    sh, dd = _number(sharpe), _number(mdd)
    if sh is None and dd is None:
        return state, [], False
    why = reasons(state, sh, dd, s)
    n, mean = state.n, state.mean_sharpe
    if sh is not None:
        n += 1
        mean += (sh - mean) / n
    tripped = bool(why)
    return TriggerState(tripped=tripped, n=n, mean_sharpe=mean), why, tripped and not state.tripped
