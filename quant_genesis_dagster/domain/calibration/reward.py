"""Rewards of a calibration step (SPEC §9).

* **fast**: the period's net profit in percent of NAV, ``100 · Σ net_return`` — the book's NAV
  is net of brokerage, tax, slippage and financing, so this is "profit − slippage − brokerage";
* **slow**: ``Sharpe_30D − λ · |MDD_30D|`` over the last ``window`` sessions of the book
  (standard convention: compounded, annualized on 252; Sharpe clipped to ±``sharpe_clip`` — a
  flat book's zero-variance window has an infinite or undefined ratio, counted as 0);
* the step reward ``fast_weight · fast + slow_weight · slow`` (λ = 5, weights 1 and 0.5 by
  default, all configurable) — every agent's;
* the **sub-agents** (F_C, F_S) add ``orthogonality · 1 / (1 + |corr(F_C, F_S)|)`` over the
  names the book held at the period's end (the window's cross-section when it holds fewer than
  5) minus ``residual_weight · 100 · mean |residual|`` (the period's 1-session residuals of
  every predicted name, percent).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from quant_genesis_dagster.domain import metrics
from quant_genesis_dagster.errors import QGError


@dataclass(frozen=True)
class RewardSettings:
    lam: float = 5.0  # λ: weight of |MDD_30D| against Sharpe_30D
    fast_weight: float = 1.0
    slow_weight: float = 0.5
    window: int = 30  # sessions of the Sharpe / MDD
    sharpe_clip: float = 10.0
    orthogonality: float = 1.0  # sub-agents only
    residual_weight: float = 1.0  # sub-agents only

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
                raise QGError(f"reward settings: {f.name}={v!r}; use a finite number >= 0")
        if self.window < 2:
            raise QGError(f"reward settings: window={self.window}; use at least 2 sessions")


def _clean(x: float, clip: float) -> float:
    return float(np.clip(x, -clip, clip)) if np.isfinite(x) else 0.0


def performance(history: np.ndarray, settings: RewardSettings) -> dict[str, float]:
    """Sharpe 7D / 30D and MDD 30D (≤ 0) of the book's last sessions (``history``: its daily
    net returns, oldest first)."""
    h = np.asarray(history, dtype=np.float64)
    last = h[-settings.window :]
    return {
        "sharpe_7d": _clean(
            metrics.sharpe_ratio(h[-7:]) if h.size >= 2 else np.nan, settings.sharpe_clip
        ),  # fmt: skip
        "sharpe_30d": _clean(
            metrics.sharpe_ratio(last) if last.size >= 2 else np.nan, settings.sharpe_clip
        ),  # fmt: skip
        "mdd_30d": float(metrics.max_drawdown(last)) if last.size else 0.0,
    }


def step_reward(period_returns: np.ndarray, perf: dict[str, float], s: RewardSettings) -> float:
    """``fast_weight · 100 · Σ period net returns + slow_weight · (Sharpe_30D − λ·|MDD_30D|)``."""
    fast = 100.0 * float(np.sum(period_returns))
    slow = perf["sharpe_30d"] - s.lam * abs(perf["mdd_30d"])
    return s.fast_weight * fast + s.slow_weight * slow


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 5:
        return np.nan
    a, b = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else np.nan


def cross_factor_corr(f_c: np.ndarray, f_s: np.ndarray, held: np.ndarray) -> float:
    """corr(F_C, F_S) over the held names (``held``: bool), else over every name."""
    c = _corr(f_c[held], f_s[held]) if held.sum() >= 5 else np.nan
    return c if np.isfinite(c) else _corr(f_c, f_s)


def sub_agent_bonus(corr: float, residuals: np.ndarray, s: RewardSettings) -> float:
    """``orthogonality / (1 + |corr|) − residual_weight · 100 · mean |residual|``."""
    c = abs(corr) if np.isfinite(corr) else 0.0
    r = np.abs(residuals[np.isfinite(residuals)])
    mean_abs = float(r.mean()) if r.size else 0.0
    return s.orthogonality / (1.0 + c) - s.residual_weight * 100.0 * mean_abs
