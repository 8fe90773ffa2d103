"""The backtest engine (SPEC §6): one implementation for the daily run, backfills and the RL
environment.

Timing. Targets are decided after the close of session D (``portfolio.target_weights`` from
D's predictions) and executed during D+1 at D+1's VWAP; positions are marked at closes. The row
of session D+1 is what D's decisions earned over D+1: nothing of D+1 enters a decision, D+1's
market only decides what could be executed (bar, limits, volume) and at what price.

The book. One book of ``capital`` TWD: the macro (daily) strategy trades ``W_Macro`` of its NAV;
the intraday strategy's share (``W_Intraday = 1 − W_Macro``) is the sidecar's (issue 6) and,
without it, stays in cash. Holdings are **adjusted shares** ``a`` (value = a × close_adj), so
cash and stock dividends accrue through the adjusted price (reinvested in the name); orders are
in raw shares (a × close_adj / close) and rounded to board lots of 1,000 (odd lots optional).

Per session t, for every symbol:

* target raw shares = lots(weight × W_Macro × NAV_{t−1} / close_{t−1}); trade = target − held;
* no-trade band: an adjustment worth less than ``min_trade_weight`` × NAV is skipped (a full exit
  always goes through);
* feasibility on t: no trade without a bar or volume (``no_bar``), no buy at limit-up
  (``limit_up``), no sell at limit-down (``limit_down``), at most ``max_participation`` of the
  session's volume (``participation``: the rest of the order is not filled);
* costs (``costs.trade_costs``) at the raw VWAP; cash pays trades and costs; borrowed cash
  (leverage above 1) pays ``financing_rate`` per 252 sessions;
* a held name without a price on t is marked at its last adjusted close (``stale_marks``); a held
  name that left the panel (delisted) is sold at its last price, sell costs included
  (``delisted``).

Returns per session: ``combined`` = NAV_t / NAV_{t−1} − 1; ``macro`` = the macro sleeve's P&L
over its capital W_Macro × NAV_{t−1}. Gross returns add the costs back; ``turnover`` = traded
value / NAV_{t−1}; ``cost_drag`` = costs / NAV_{t−1}.

The loop runs over sessions (the book is path dependent: lots, blocked orders, compounding); each
step is vectorized over the universe. A state (``Book``) carried from the previous session makes a
one-day run equal to the same day of a backfill.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from quant_genesis_dagster.domain import market
from quant_genesis_dagster.domain.costs import CostModel, trade_costs
from quant_genesis_dagster.domain.portfolio import PortfolioSettings
from quant_genesis_dagster.errors import QGError

SESSIONS_PER_YEAR = 252
#: Reasons an order is not (fully) executed, in ``blocked`` codes (0 = none).
BLOCK_REASONS: tuple[str, ...] = ("", "no_bar", "limit_up", "limit_down", "participation")
NO_BAR, LIMIT_UP, LIMIT_DOWN, PARTICIPATION = 1, 2, 3, 4


@dataclass
class Book:
    """The book after a session's close: cash (TWD), adjusted shares per symbol (N,), the last
    known adjusted close and adjustment factor (close_adj / close) per symbol (for marking a
    name without a price), and NAV (TWD)."""

    cash: float
    adj_shares: np.ndarray
    last_adj: np.ndarray
    last_factor: np.ndarray
    nav: float

    @classmethod
    def empty(cls, n_symbols: int, capital: float) -> Book:
        return cls(
            cash=float(capital),
            adj_shares=np.zeros(n_symbols),
            last_adj=np.full(n_symbols, np.nan),
            last_factor=np.full(n_symbols, np.nan),
            nav=float(capital),
        )


@dataclass
class MarketData:
    """(T, N) arrays over consecutive sessions (NaN / False where a pair has no panel row):
    ``close`` (raw TWD), ``close_adj``, ``vwap_adj`` (adjusted TWD), ``volume`` (shares),
    ``has_bar``, ``limit_up``, ``limit_down`` (bool), ``listed`` (the pair has a panel row)."""

    close: np.ndarray
    close_adj: np.ndarray
    vwap_adj: np.ndarray
    volume: np.ndarray
    has_bar: np.ndarray
    limit_up: np.ndarray
    limit_down: np.ndarray
    listed: np.ndarray

    def __post_init__(self) -> None:
        shape = self.close.shape
        for name in ("close_adj", "vwap_adj", "volume", "has_bar", "limit_up", "limit_down",
                     "listed"):  # fmt: skip
            if getattr(self, name).shape != shape:
                raise QGError(f"backtest market data: {name} is not shaped like close {shape}")


@dataclass
class BacktestResult:
    """Per session t = 1..T−1 of the inputs (``session_index`` into them): ``daily`` arrays
    (T−1,) and per (session, symbol) ``positions`` arrays (T−1, N); ``book`` = the state after
    the last session."""

    session_index: np.ndarray
    daily: dict[str, np.ndarray]
    positions: dict[str, np.ndarray]
    book: Book
    warnings: list[str] = field(default_factory=list)


def _lots(shares: np.ndarray, lot: int) -> np.ndarray:
    """Round share counts toward zero to whole lots."""
    return np.trunc(shares / lot) * lot


def run_backtest(
    data: MarketData,
    weights: np.ndarray,
    w_macro: np.ndarray,
    book: Book,
    settings: PortfolioSettings | None = None,
    costs: CostModel | None = None,
) -> BacktestResult:
    """Execute the targets decided after each session's close during the next session.

    ``weights``: (T, N) macro target weights (fractions of the macro sleeve) decided after the
    close of each session (row T−1's targets are for the session after the inputs and are not
    executed here); ``w_macro``: (T,) the macro sleeve's share of the book at each decision;
    ``book``: the state after the close of session 0 of the inputs (``Book.empty`` to start
    flat). Session 0 is decision-only: the result covers sessions 1..T−1.
    """
    settings = settings or PortfolioSettings()
    costs = costs or CostModel()
    t_n, n = data.close.shape
    w = np.asarray(weights, dtype=np.float64)
    wm = np.asarray(w_macro, dtype=np.float64)
    if w.shape != (t_n, n) or wm.shape != (t_n,):
        raise QGError(f"backtest: weights must be {(t_n, n)} and w_macro ({t_n},)")
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        raise QGError("backtest: target weights must be finite and >= 0 (long only)")
    if book.adj_shares.shape != (n,):
        raise QGError(f"backtest: the book holds {book.adj_shares.size} symbols, the data {n}")
    lot = 1 if settings.odd_lots else market.LOT_SIZE

    a = book.adj_shares.astype(np.float64).copy()
    last_adj = book.last_adj.astype(np.float64).copy()
    last_k = book.last_factor.astype(np.float64).copy()
    cash, nav = float(book.cash), float(book.nav)

    def remember(t: int) -> None:
        price = data.close_adj[t]
        ok = np.isfinite(price) & (price > 0) & np.isfinite(data.close[t]) & (data.close[t] > 0)
        last_adj[ok] = price[ok]
        last_k[ok] = price[ok] / data.close[t][ok]

    remember(0)
    steps = max(t_n - 1, 0)
    daily = {k: np.zeros(steps) for k in (
        "nav", "cash", "net_return", "gross_return", "macro_return", "macro_gross_return",
        "turnover", "cost_drag", "commission", "tax", "slippage", "financing", "buy_value",
        "sell_value", "gross_exposure", "intended_exposure", "n_positions",
        "blocked_orders", "stale_marks", "delisted",
    )}  # fmt: skip
    pos = {k: np.zeros((steps, n)) for k in (
        "shares", "value", "weight", "trade_shares", "trade_price", "commission", "tax",
        "slippage", "target_weight",
    )}  # fmt: skip
    pos["blocked"] = np.zeros((steps, n), dtype=np.int8)
    warnings: list[str] = []

    for t in range(1, t_n):
        i = t - 1
        nav0 = nav
        sleeve = wm[t - 1] * nav0
        # --- orders decided after the close of t-1 -------------------------------------------
        prev_close = data.close[t - 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            target_raw = np.where(
                (w[t - 1] > 0) & np.isfinite(prev_close) & (prev_close > 0),
                _lots(w[t - 1] * sleeve / np.where(prev_close > 0, prev_close, 1.0), lot),
                0.0,
            )
        k_now = np.where(np.isfinite(data.close_adj[t]) & (data.close[t] > 0),
                         data.close_adj[t] / np.where(data.close[t] > 0, data.close[t], 1.0),
                         last_k)  # fmt: skip
        held_raw = np.where(a != 0, a * np.nan_to_num(k_now), 0.0)
        order = target_raw - held_raw
        ref_price = np.where(np.isfinite(prev_close), prev_close, 0.0)
        small = (np.abs(order) * ref_price < settings.min_trade_weight * nav0) & (target_raw > 0)
        order[small] = 0.0
        order[np.abs(order) < 1e-9] = 0.0

        # --- feasibility on t ------------------------------------------------------------------
        blocked = np.zeros(n, dtype=np.int8)
        volume = np.nan_to_num(data.volume[t])
        tradable = data.has_bar[t] & (volume > 0)
        blocked[(order != 0) & ~tradable] = NO_BAR
        blocked[(order > 0) & tradable & data.limit_up[t]] = LIMIT_UP
        blocked[(order < 0) & tradable & data.limit_down[t]] = LIMIT_DOWN
        order[blocked > 0] = 0.0
        cap = costs.max_participation * volume
        over = np.abs(order) > cap
        if over.any():
            # fill up to the cap; a sell that empties the position may keep its odd remainder
            order[over] = np.sign(order[over]) * _lots(cap[over], lot)
            blocked[over] = PARTICIPATION

        # --- execution at the raw VWAP ---------------------------------------------------------
        vwap_adj = np.where(np.isfinite(data.vwap_adj[t]), data.vwap_adj[t], data.close_adj[t])
        with np.errstate(invalid="ignore", divide="ignore"):
            price_raw = np.where(order != 0, vwap_adj / k_now, 0.0)
        trade_value = order * price_raw
        buy = np.where(order > 0, trade_value, 0.0)
        sell = np.where(order < 0, -trade_value, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            part = np.where(volume > 0, np.abs(order) / np.where(volume > 0, volume, 1), 0.0)
        c = trade_costs(buy, sell, part, costs)
        cost_total = c.total
        financing = max(-cash, 0.0) * settings.financing_rate / SESSIONS_PER_YEAR
        cash -= float(trade_value.sum() + cost_total.sum()) + financing
        with np.errstate(invalid="ignore", divide="ignore"):
            a = a + np.where(order != 0, order / k_now, 0.0)

        # --- marking, delistings -----------------------------------------------------------------
        remember(t)
        stale = (a != 0) & ~(np.isfinite(data.close_adj[t]) & (data.close_adj[t] > 0))
        gone = (a != 0) & ~data.listed[t]
        delisted = 0
        if gone.any():
            value = a[gone] * last_adj[gone]
            px = last_adj[gone] / last_k[gone]
            sc = trade_costs(np.zeros(value.size), value, np.zeros(value.size), costs)
            cash += float(value.sum() - sc.total.sum())
            cost_total[gone] += sc.total
            c.commission[gone] += sc.commission
            c.tax[gone] += sc.tax
            c.slippage[gone] += sc.slippage
            sell[gone] += value
            pos["trade_shares"][i][gone] = -a[gone] * last_k[gone]
            pos["trade_price"][i][gone] = px
            a[gone] = 0.0
            delisted = int(gone.sum())
            warnings.append(
                f"session {t}: {delisted} held name(s) left the panel; sold at the last price"
            )
        mark = np.where(a != 0, a * last_adj, 0.0)
        nav = cash + float(mark.sum())
        if not np.isfinite(nav) or nav <= 0:
            raise QGError(
                f"backtest: NAV is {nav} after session {t} (a held name without any price?); "
                "check the panel's close_adj for the held symbols"
            )

        costs_sum = float(cost_total.sum())
        d = daily
        d["nav"][i], d["cash"][i] = nav, cash
        d["net_return"][i] = nav / nav0 - 1.0
        d["gross_return"][i] = (nav + costs_sum + financing) / nav0 - 1.0
        pnl_macro = nav - nav0  # the intraday sleeve is cash: all P&L is the macro sleeve's
        if sleeve > 0:
            d["macro_return"][i] = pnl_macro / sleeve
            d["macro_gross_return"][i] = (pnl_macro + costs_sum + financing) / sleeve
        else:
            d["macro_return"][i] = d["macro_gross_return"][i] = np.nan
        d["turnover"][i] = float(buy.sum() + sell.sum()) / nav0
        d["cost_drag"][i] = (costs_sum + financing) / nav0
        d["commission"][i] = float(c.commission.sum())
        d["tax"][i] = float(c.tax.sum())
        d["slippage"][i] = float(c.slippage.sum())
        d["financing"][i] = financing
        d["buy_value"][i], d["sell_value"][i] = float(buy.sum()), float(sell.sum())
        d["gross_exposure"][i] = float(np.abs(mark).sum()) / nav
        d["intended_exposure"][i] = float(w[t - 1].sum()) * wm[t - 1]
        d["n_positions"][i] = int(np.count_nonzero(a))
        d["blocked_orders"][i] = int(np.count_nonzero(blocked))
        d["stale_marks"][i] = int(stale.sum())
        d["delisted"][i] = delisted

        p = pos
        with np.errstate(invalid="ignore"):
            p["shares"][i] = np.where(a != 0, a * last_k, 0.0)
        p["value"][i] = mark
        p["weight"][i] = mark / nav
        nz = order != 0
        p["trade_shares"][i][nz] = order[nz]
        p["trade_price"][i][nz] = price_raw[nz]
        p["commission"][i], p["tax"][i], p["slippage"][i] = c.commission, c.tax, c.slippage
        p["target_weight"][i] = w[t - 1] * wm[t - 1]
        p["blocked"][i] = blocked

    out = Book(cash=cash, adj_shares=a, last_adj=last_adj, last_factor=last_k, nav=nav)
    return BacktestResult(
        session_index=np.arange(1, t_n), daily=daily, positions=pos, book=out, warnings=warnings
    )
