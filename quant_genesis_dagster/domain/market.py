"""Taiwan market facts (SPEC §12): tick sizes, daily price limits, lot size, trading costs."""

from __future__ import annotations

import datetime as dt

import numpy as np

LOT_SIZE = 1_000  # shares per board lot
#: Daily price limit widened from ±7% to ±10% on this date.
LIMIT_CHANGE_DATE = dt.date(2015, 6, 1)
#: Sessions after listing without a daily price limit.
NO_LIMIT_SESSIONS_AFTER_LISTING = 5
COMMISSION_RATE = 0.001425  # per side, before broker discount
TRANSACTION_TAX = 0.003  # on sells
DAY_TRADE_TAX = 0.0015

# Tick-size ladder: (upper bound exclusive, tick)
_TICK_BOUNDS = np.array([10.0, 50.0, 100.0, 500.0, 1000.0, np.inf])
_TICKS = np.array([0.01, 0.05, 0.1, 0.5, 1.0, 5.0])


def tick_size(price):
    """Vectorized TWSE/TPEx tick size for prices (TWD)."""
    p = np.asarray(price, dtype=float)
    return _TICKS[np.searchsorted(_TICK_BOUNDS, p, side="right").clip(0, len(_TICKS) - 1)]


def round_to_tick(price, mode: str = "nearest"):
    """Round prices to their tick: ``nearest``, ``down`` or ``up``."""
    p = np.asarray(price, dtype=float)
    t = tick_size(p)
    q = p / t
    r = {"nearest": np.round, "down": np.floor, "up": np.ceil}[mode](
        q + (1e-9 if mode == "down" else -1e-9 if mode == "up" else 0.0)
    )
    return np.round(r * t, 2)


def limit_pct(dates) -> np.ndarray:
    """Vectorized daily limit fraction: 0.07 before 2015-06-01, 0.10 since."""
    d = np.asarray(dates, dtype="datetime64[D]")
    return np.where(d < np.datetime64(LIMIT_CHANGE_DATE), 0.07, 0.10)


def limit_prices(reference, pct):
    """Up/down limit prices from a reference price: rounded inward to the tick."""
    ref = np.asarray(reference, dtype=float)
    up = round_to_tick(ref * (1 + np.asarray(pct)), "down")
    down = round_to_tick(ref * (1 - np.asarray(pct)), "up")
    return up, down
