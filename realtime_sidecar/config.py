"""The intraday engine's settings: what counts as a big order, and the signal thresholds of
SPEC §7.4. Frozen and validated; secrets never live here (feeds read keys from the environment).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from quant_genesis_dagster.errors import QGError

#: Default big-order size (lots, 1 lot = 1,000 shares); the sample market's big orders too.
BIG_LOTS = 50


@dataclass(frozen=True)
class IntradaySettings:
    """Thresholds of the sidecar (units in the names: lots, seconds, ticks, fractions)."""

    #: a tick of at least this many lots is a big (main-force) order; per-symbol overrides below
    big_lots: int = BIG_LOTS
    big_lots_by_symbol: Mapping[str, int] = field(default_factory=dict)
    #: "big": net flow = ±volume of big orders only (SPEC §7.2); "all": every signed tick counts
    net_mode: str = "big"
    #: sweep (P2 trigger): big buys of at least ``sweep_lots`` within ``sweep_window_s`` seconds
    sweep_lots: int = 100
    sweep_window_s: int = 180
    #: liquidity: the quoted spread at or above this many ticks is "spread widening"
    spread_alert_ticks: int = 5
    #: liquidity drying up: a symbol's next trade after at least this many seconds of silence
    dry_after_s: int = 600
    #: cross-market risk-off: a proxy down at least this much (fraction) over ``riskoff_window_s``
    riskoff_move: float = 0.015
    riskoff_window_s: int = 1800

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "big_lots_by_symbol", MappingProxyType(dict(self.big_lots_by_symbol))
        )
        positive = {
            "big_lots": self.big_lots,
            "sweep_lots": self.sweep_lots,
            "sweep_window_s": self.sweep_window_s,
            "spread_alert_ticks": self.spread_alert_ticks,
            "dry_after_s": self.dry_after_s,
            "riskoff_window_s": self.riskoff_window_s,
        }
        for sym, lots in self.big_lots_by_symbol.items():
            positive[f"big_lots_by_symbol[{sym!r}]"] = lots
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise QGError(f"intraday settings: {name}={value!r}; use a whole number >= 1")
        if self.net_mode not in ("big", "all"):
            raise QGError(f"intraday settings: net_mode={self.net_mode!r}; use 'big' or 'all'")
        if not 0 < self.riskoff_move < 1:
            raise QGError(
                f"intraday settings: riskoff_move={self.riskoff_move!r}; use a fraction in (0, 1)"
            )

    def as_dict(self) -> dict:
        """Plain values (the journal header records them: a restart must use the same)."""
        return {
            "big_lots": self.big_lots,
            "big_lots_by_symbol": dict(sorted(self.big_lots_by_symbol.items())),
            "net_mode": self.net_mode,
            "sweep_lots": self.sweep_lots,
            "sweep_window_s": self.sweep_window_s,
            "spread_alert_ticks": self.spread_alert_ticks,
            "dry_after_s": self.dry_after_s,
            "riskoff_move": self.riskoff_move,
            "riskoff_window_s": self.riskoff_window_s,
        }


def parse_big_lots(items: list[str]) -> dict[str, int]:
    """``["2330=500", "2317=200"]`` (the CLI's ``--big-lots SYMBOL=LOTS``) → {symbol: lots}."""
    out: dict[str, int] = {}
    for item in items:
        sym, sep, lots = item.partition("=")
        if not sep or not sym.strip() or not lots.strip().isdigit():
            raise QGError(f"--big-lots {item!r}: write SYMBOL=LOTS, e.g. 2330=500")
        out[sym.strip()] = int(lots)
    return out
