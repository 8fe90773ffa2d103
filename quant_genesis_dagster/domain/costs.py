"""Taiwan trading costs (SPEC §6, §12): commission, securities transaction tax and slippage.

* **Commission** — 0.1425% of the traded value per side (buy and sell), times the broker's
  discount (``commission_discount``: 1.0 = list price; online brokers commonly give 0.28–0.6),
  with a minimum per order (``min_commission``, NT$20 at most brokers). One order = one symbol's
  buy or sell on one session.
* **Securities transaction tax** — 0.3% of the value sold; 0.15% on the sell leg of a day trade
  (bought and sold the same session; the intraday strategy's trades).
* **Slippage** — the price paid against the session's VWAP: a fixed half-spread
  (``slippage_bps``) plus a square-root market-impact term that grows with participation
  (``impact_coef × sqrt(shares traded / session volume)``), the square-root law of the impact
  literature (impact ≈ Y·σ_daily·√(Q/V) with Y ≈ 1; the default 0.02 is a typical Taiwan
  stock's daily σ of 2%: 10% of a session's volume costs ~0.6% on top of the half-spread). Participation is also capped
  (``max_participation``): an order larger than that share of the session's volume is filled
  only up to it.

All amounts are TWD; rates are fractions (0.001425 = 0.1425%). Pure and vectorized.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from quant_genesis_dagster.domain import market
from quant_genesis_dagster.errors import QGError


@dataclass(frozen=True)
class CostModel:
    """Cost parameters (market facts and broker terms, not tuned by the RL agent)."""

    commission_rate: float = market.COMMISSION_RATE  # per side, of the traded value
    commission_discount: float = 1.0  # multiplier on the rate (0.6 = a 40% discount)
    min_commission: float = 20.0  # TWD per order (0 = no minimum)
    sell_tax: float = market.TRANSACTION_TAX  # of the value sold
    day_trade_tax: float = market.DAY_TRADE_TAX  # of the value sold in a same-session round trip
    slippage_bps: float = 5.0  # fixed cost against VWAP, basis points of the traded value
    impact_coef: float = 0.02  # × sqrt(participation): Y·σ with Y ≈ 1, a daily σ of ~2%
    max_participation: float = 0.10  # largest share of a session's volume one order may take

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
                raise QGError(f"cost model: {f.name}={v!r}; use a finite number >= 0")
        if self.commission_discount > 1:
            raise QGError(
                f"cost model: commission_discount={self.commission_discount}; a discount is a "
                "multiplier in [0, 1] (0.6 = 40% off the list rate)"
            )
        if not 0 < self.max_participation <= 1:
            raise QGError(
                f"cost model: max_participation={self.max_participation}; use a share of the "
                "session volume in (0, 1]"
            )


@dataclass(frozen=True)
class TradeCosts:
    """Per order (arrays shaped like the inputs), TWD."""

    commission: np.ndarray
    tax: np.ndarray
    slippage: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.commission + self.tax + self.slippage


def trade_costs(
    buy_value,
    sell_value,
    volume_share,
    model: CostModel,
    *,
    day_trade_value=0.0,
) -> TradeCosts:
    """Costs of orders executed at VWAP.

    ``buy_value`` / ``sell_value``: TWD bought / sold per order (≥ 0; an order is one symbol's
    trading on one session, so a symbol bought and sold the same session is two orders);
    ``volume_share``: shares traded / the session's volume (the participation, ≥ 0);
    ``day_trade_value``: the part of ``sell_value`` that closes a position opened the same
    session (taxed at ``day_trade_tax`` instead of ``sell_tax``).
    """
    buy = np.asarray(buy_value, dtype=np.float64)
    sell = np.asarray(sell_value, dtype=np.float64)
    part = np.asarray(volume_share, dtype=np.float64)
    day = np.broadcast_to(np.asarray(day_trade_value, dtype=np.float64), sell.shape)
    for name, a in (("buy_value", buy), ("sell_value", sell), ("volume_share", part)):
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise QGError(f"trade costs: {name} has negative or non-finite values; pass >= 0")
    if np.any(day > sell + 1e-9):
        raise QGError("trade costs: day_trade_value exceeds sell_value; it is a part of the sells")
    rate = model.commission_rate * model.commission_discount

    def commission(value: np.ndarray) -> np.ndarray:
        return np.where(value > 0, np.maximum(value * rate, model.min_commission), 0.0)

    tax = (sell - day) * model.sell_tax + day * model.day_trade_tax
    slip_rate = model.slippage_bps / 1e4 + model.impact_coef * np.sqrt(part)
    return TradeCosts(
        commission=commission(buy) + commission(sell),
        tax=tax,
        slippage=(buy + sell) * slip_rate,
    )
