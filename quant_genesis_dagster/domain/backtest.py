"""The backtest engine (SPEC §6): one implementation for the daily run, backfills and the RL
environment.

Timing. Targets are decided after the close of session D (``portfolio.target_weights`` from
D's predictions) and executed during D+1 at D+1's VWAP; positions are marked at closes. The row
of session D+1 is what D's decisions earned over D+1: nothing of D+1 enters a decision, D+1's
market only decides what could be executed (bar, limits, volume) and at what price.

The book. One book of ``capital`` TWD: the macro (daily) strategy trades ``W_Macro`` of its NAV;
the intraday strategy's share (``W_Intraday = 1 − W_Macro``) is the sidecar's (issue 6) and,
without it, stays in cash. Holdings are raw shares in board lots of 1,000 (odd lots optional),
marked at the raw close. Corporate actions come from the panel's adjustment factor
``k = close_adj / close``: on an ex-date the step ``k_t / k_{t−1} − 1`` of a held name's value at
the close is credited to cash (a cash dividend exactly; a stock dividend as the value of its new
shares), so the book earns the total return without odd share counts.

Per session t, for every symbol:

* target raw shares = lots(weight × W_Macro × NAV_{t−1} / close_{t−1}); trade = target − held;
* no-trade band: an adjustment worth less than ``min_trade_weight`` × NAV is skipped (a full exit
  always goes through);
* feasibility on t: no trade without a bar or volume (``no_bar``), no buy at limit-up
  (``limit_up``), no sell at limit-down (``limit_down``), at most ``max_participation`` of the
  session's volume (``participation``: the rest of the order is not filled);
* costs (``costs.trade_costs``) at the raw VWAP; cash pays trades and costs; borrowed cash
  (leverage above 1) pays ``financing_rate`` per 252 sessions;
* a held name without a price on t is marked at its last close (``stale_marks``); a held name
  that left the panel (delisted) is sold at its last close, sell costs included (``delisted``).

Returns per session: ``combined`` = NAV_t / NAV_{t−1} − 1; ``macro`` = the macro sleeve's P&L
over its capital W_Macro × NAV_{t−1}. Gross returns add the costs back; ``turnover`` = traded
value / NAV_{t−1}; ``cost_drag`` = costs / NAV_{t−1}.

The loop runs over sessions (the book is path dependent: lots, blocked orders, compounding); each
step is vectorized over the universe. A state (``Book``) carried from the previous session makes a
one-day run equal to the same day of a backfill.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import market, portfolio
from quant_genesis_dagster.domain.costs import CostModel, trade_costs
from quant_genesis_dagster.domain.factors.grid import Grid
from quant_genesis_dagster.domain.params import ParamSet
from quant_genesis_dagster.domain.portfolio import PortfolioSettings
from quant_genesis_dagster.domain.tables import polars_schema
from quant_genesis_dagster.domain.warehouse import models
from quant_genesis_dagster.errors import QGError

RETURNS_SCHEMA = polars_schema(models.StrategyReturns)
POSITIONS_SCHEMA = polars_schema(models.PortfolioPositions)

SESSIONS_PER_YEAR = 252
#: Reasons an order is not (fully) executed, in ``blocked`` codes (0 = none).
BLOCK_REASONS: tuple[str, ...] = ("", "no_bar", "limit_up", "limit_down", "participation")
NO_BAR, LIMIT_UP, LIMIT_DOWN, PARTICIPATION = 1, 2, 3, 4


@dataclass
class Book:
    """The book after a session's close: cash (TWD), raw shares per symbol (N,), the last known
    raw close and adjustment factor (close_adj / close) per symbol (to mark a name without a
    price and to see the next ex-date), and NAV (TWD)."""

    cash: float
    shares: np.ndarray
    last_close: np.ndarray
    last_factor: np.ndarray
    nav: float

    @classmethod
    def empty(cls, n_symbols: int, capital: float) -> Book:
        return cls(
            cash=float(capital),
            shares=np.zeros(n_symbols),
            last_close=np.full(n_symbols, np.nan),
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


def _total(x: np.ndarray) -> float:
    """Σ of the non-zero entries in symbol order: the same sum whatever other (zero) symbols
    the arrays hold, so a run over a shorter window's universe gives the same bits."""
    return float(x[x != 0].sum())


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

    ``weights``: (T, N) macro target weights (fractions of the macro sleeve; NaN = hold the
    position as it is) decided after the close of each session (row T−1's targets are for the session after the inputs and are not
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
    if np.any(np.isinf(w)) or np.any(w < 0):
        raise QGError("backtest: target weights must be >= 0 (long only) or NaN (hold)")
    if book.shares.shape != (n,):
        raise QGError(f"backtest: the book holds {book.shares.size} symbols, the data {n}")
    lot = 1 if settings.odd_lots else market.LOT_SIZE

    q = book.shares.astype(np.float64).copy()
    last_close = book.last_close.astype(np.float64).copy()
    last_k = book.last_factor.astype(np.float64).copy()
    cash, nav = float(book.cash), float(book.nav)

    def priced(t: int) -> np.ndarray:
        c, ca = data.close[t], data.close_adj[t]
        return np.isfinite(c) & (c > 0) & np.isfinite(ca) & (ca > 0)

    def remember(t: int) -> None:
        ok = priced(t)
        last_close[ok] = data.close[t][ok]
        last_k[ok] = data.close_adj[t][ok] / data.close[t][ok]

    remember(0)
    steps = max(t_n - 1, 0)
    daily = {k: np.zeros(steps) for k in (
        "nav_before", "nav", "cash", "net_return", "gross_return", "macro_return", "macro_gross_return",
        "turnover", "cost_drag", "commission", "tax", "slippage", "financing", "buy_value",
        "sell_value", "dividends", "gross_exposure", "n_positions",
        "blocked_orders", "stale_marks", "delisted",
    )}  # fmt: skip
    pos = {k: np.zeros((steps, n)) for k in (
        "shares", "mark", "factor", "value", "weight", "trade_shares", "trade_price",
        "commission", "tax", "slippage", "dividend", "target_weight",
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
                (np.nan_to_num(w[t - 1]) > 0) & np.isfinite(prev_close) & (prev_close > 0),
                _lots(w[t - 1] * sleeve / np.where(prev_close > 0, prev_close, 1.0), lot),
                0.0,
            )
        # --- corporate actions on t (before the session trades) --------------------------------
        ok_t = priced(t)
        with np.errstate(invalid="ignore", divide="ignore"):
            k_now = np.where(ok_t, data.close_adj[t] / np.where(ok_t, data.close[t], 1.0), last_k)
            step = np.where(ok_t & (q != 0) & np.isfinite(last_k), k_now / last_k - 1.0, 0.0)
        dividend = np.where(step != 0, q * np.where(ok_t, data.close[t], 0.0) * step, 0.0)
        cash += _total(dividend)
        hold = np.isnan(w[t - 1])  # between rebalances: keep the position as it is
        order = np.where(hold, 0.0, target_raw - q)
        ref_price = np.where(np.isfinite(prev_close), prev_close, 0.0)
        small = (np.abs(order) * ref_price < settings.min_trade_weight * nav0) & (target_raw > 0)
        small &= ~hold
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
            price_raw = np.where(order != 0, vwap_adj / k_now, 0.0)  # the raw VWAP
        trade_value = order * price_raw
        buy = np.where(order > 0, trade_value, 0.0)
        sell = np.where(order < 0, -trade_value, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            part = np.where(volume > 0, np.abs(order) / np.where(volume > 0, volume, 1), 0.0)
        c = trade_costs(buy, sell, part, costs)
        cost_total = c.total
        financing = max(-cash, 0.0) * settings.financing_rate / SESSIONS_PER_YEAR
        cash -= _total(trade_value) + _total(cost_total) + financing
        q = q + order

        # --- marking, delistings -----------------------------------------------------------------
        remember(t)
        stale = (q != 0) & ~ok_t
        gone = (q != 0) & ~data.listed[t]
        delisted = 0
        if gone.any():
            value = q[gone] * last_close[gone]
            sc = trade_costs(np.zeros(value.size), value, np.zeros(value.size), costs)
            cash += _total(value) - _total(sc.total)
            cost_total[gone] += sc.total
            c.commission[gone] += sc.commission
            c.tax[gone] += sc.tax
            c.slippage[gone] += sc.slippage
            sell[gone] += value
            order[gone] = -q[gone]
            price_raw[gone] = last_close[gone]
            q[gone] = 0.0
            delisted = int(gone.sum())
            warnings.append(
                f"session {t}: {delisted} held name(s) left the panel; sold at the last close"
            )
        mark = np.where(q != 0, q * last_close, 0.0)
        nav = cash + _total(mark)
        if not np.isfinite(nav) or nav <= 0:
            raise QGError(
                f"backtest: NAV is {nav} after session {t} (a held name without any price?); "
                "check the panel's close_adj for the held symbols"
            )

        costs_sum = _total(cost_total)
        d = daily
        d["nav_before"][i], d["nav"][i], d["cash"][i] = nav0, nav, cash
        d["net_return"][i] = nav / nav0 - 1.0
        d["gross_return"][i] = (nav + costs_sum + financing) / nav0 - 1.0
        pnl_macro = nav - nav0  # the intraday sleeve is cash: all P&L is the macro sleeve's
        if sleeve > 0:
            d["macro_return"][i] = pnl_macro / sleeve
            d["macro_gross_return"][i] = (pnl_macro + costs_sum + financing) / sleeve
        else:
            d["macro_return"][i] = d["macro_gross_return"][i] = np.nan
        d["turnover"][i] = (_total(buy) + _total(sell)) / nav0
        d["cost_drag"][i] = (costs_sum + financing) / nav0
        d["commission"][i] = _total(c.commission)
        d["tax"][i] = _total(c.tax)
        d["slippage"][i] = _total(c.slippage)
        d["financing"][i] = financing
        d["buy_value"][i], d["sell_value"][i] = _total(buy), _total(sell)
        d["dividends"][i] = _total(dividend)
        d["gross_exposure"][i] = _total(np.abs(mark)) / nav
        d["n_positions"][i] = int(np.count_nonzero(q))
        d["blocked_orders"][i] = int(np.count_nonzero(blocked))
        d["stale_marks"][i] = int(stale.sum())
        d["delisted"][i] = delisted

        p = pos
        p["shares"][i] = q
        p["mark"][i] = last_close
        p["factor"][i] = last_k
        p["value"][i] = mark
        p["weight"][i] = mark / nav
        nz = order != 0
        p["trade_shares"][i][nz] = order[nz]
        p["trade_price"][i][nz] = price_raw[nz]
        p["commission"][i], p["tax"][i], p["slippage"][i] = c.commission, c.tax, c.slippage
        p["dividend"][i] = dividend
        p["target_weight"][i] = np.where(hold, mark / nav, w[t - 1] * wm[t - 1])
        p["blocked"][i] = blocked

    out = Book(cash=cash, shares=q, last_close=last_close, last_factor=last_k, nav=nav)
    return BacktestResult(
        session_index=np.arange(1, t_n), daily=daily, positions=pos, book=out, warnings=warnings
    )


# --------------------------------------------------------------------------------------------
# the warehouse tables (strategy_returns, portfolio_positions)
# --------------------------------------------------------------------------------------------

#: Panel columns the backtest reads.
PANEL_COLUMNS: tuple[str, ...] = (
    "session", "symbol", "close", "close_adj", "vwap_adj", "volume_shares", "has_bar",
    "limit_up", "limit_down",
)  # fmt: skip
MACRO, COMBINED = "macro", "combined"


def book_from_rows(
    positions: pl.DataFrame, combined: pl.DataFrame, symbols: np.ndarray, capital: float
) -> Book:
    """The book after a session's close from its stored rows: ``positions`` (portfolio_positions
    rows of that session, strategy macro) and ``combined`` (its strategy_returns row, strategy
    combined; empty = no book yet: start flat with ``capital``). ``symbols``: the sorted symbols
    of the arrays the book is for (every held name must be among them)."""
    if combined.is_empty():
        if positions.height:
            raise QGError(
                "portfolio_positions has rows for a session without a strategy_returns row; "
                "re-materialize strategy_returns for that session"
            )
        return Book.empty(symbols.size, capital)
    book = Book.empty(symbols.size, capital)
    row = combined.row(0, named=True)
    book.cash, book.nav = float(row["cash"]), float(row["nav"])
    held = positions.filter(pl.col("shares") != 0)
    names = held["symbol"].to_numpy().astype(str)
    j = np.searchsorted(symbols, names)
    if names.size and not np.array_equal(symbols[np.minimum(j, symbols.size - 1)], names):
        raise QGError("backtest: a held symbol is missing from the symbols; include the book's")
    book.shares[j] = held["shares"].to_numpy()
    book.last_close[j] = held["mark"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    book.last_factor[j] = held["factor"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    return book


@dataclass
class BookTables:
    """``strategy_returns`` and ``portfolio_positions`` rows (warehouse schemas) of the
    simulated sessions, and the warnings of the run (one line each)."""

    strategy_returns: pl.DataFrame
    positions: pl.DataFrame
    warnings: list[str]


def simulate(
    panel: pl.DataFrame,
    predictions: pl.DataFrame,
    lac: pl.DataFrame,
    value: pl.DataFrame,
    signals: pl.DataFrame,
    params_of: Callable[[str], ParamSet],
    fallback: ParamSet,
    prior_positions: pl.DataFrame,
    prior_combined: pl.DataFrame,
    settings: PortfolioSettings | None = None,
    costs: CostModel | None = None,
) -> BookTables:
    """The book over the panel's sessions after the first: decisions after each close
    (``portfolio.decide`` with the parameter set of that session's predictions,
    ``params_of(version id)``; ``fallback`` on a session without predictions), executed the next
    session (``run_backtest``), from the book stored for the first session (``prior_*``: its
    portfolio_positions and combined strategy_returns rows; empty = start flat).

    ``panel``: aligned-panel rows over consecutive sessions [S−1, E] (``PANEL_COLUMNS`` and
    ``portfolio.PANEL_COLUMNS``); ``predictions``, ``lac`` (chip_factors: session, symbol, lac),
    ``value`` (value_factors: session, symbol, equity_multiplier) and ``signals`` over the same
    sessions. Returns the rows of sessions S..E.
    """
    settings = settings or PortfolioSettings()
    costs = costs or CostModel()
    missing = [c for c in (*PANEL_COLUMNS, *portfolio.PANEL_COLUMNS) if c not in panel.columns]
    if missing:
        raise QGError(f"aligned_panel: missing column(s) {', '.join(missing)}; nothing written")
    g = Grid.of(panel, what="backtest panel")
    if g.shape[0] < 2:
        raise QGError("backtest: the panel needs the session before the first simulated one")
    held = prior_positions.filter(pl.col("shares") != 0)["symbol"].cast(pl.String)
    extra = sorted(set(held.to_list()) - set(g.symbols.tolist()))
    symbols = np.array(sorted([*g.symbols.tolist(), *extra]), dtype=str)
    cols = np.searchsorted(symbols, g.symbols)  # the panel's symbols in the widened arrays

    def wide(a: np.ndarray, fill) -> np.ndarray:
        if not extra:
            return a
        out = np.full((a.shape[0], symbols.size), fill, dtype=a.dtype)
        out[:, cols] = a
        return out

    def dense(name: str) -> np.ndarray:
        return wide(g.dense(panel[name].cast(pl.Float64)), np.nan)

    def flag(name: str) -> np.ndarray:
        return wide(g.dense(panel[name].cast(pl.Float64), fill=0) > 0, False)

    data = MarketData(
        close=dense("close"),
        close_adj=dense("close_adj"),
        vwap_adj=dense("vwap_adj"),
        volume=dense("volume_shares"),
        has_bar=flag("has_bar"),
        limit_up=flag("limit_up"),
        limit_down=flag("limit_down"),
        listed=wide(g.present(), False),
    )

    # decisions per parameter version (sessions are independent, so each version's sessions
    # take their rows from a decide() with that version's parameters)
    t_n = g.shape[0]
    weights = np.zeros((t_n, symbols.size))
    w_macro = np.full(t_n, fallback.w_macro)
    versions: list[str | None] = [None] * t_n
    intended = np.zeros(t_n)
    rebalance = portfolio.is_rebalance_session(g.sessions, settings.rebalance_every)
    found = predictions["param_version"].drop_nulls().unique().sort().to_list()
    for v in found:
        params = params_of(v)
        d = portfolio.decide(g, panel, predictions.filter(pl.col("param_version") == v), lac,
                             value, signals, params, settings)  # fmt: skip
        rows = np.array([x == v for x in d.param_version])
        weights[rows] = wide(d.weights, 0.0)[rows]
        w_macro[rows] = params.w_macro
        intended[rows] = d.exposure[rows]
        rebalance[rows] = d.rebalance[rows]
        for i in np.flatnonzero(rows):
            versions[i] = v
    no_pred = np.array([v is None for v in versions])
    rebalance |= no_pred  # a session without predictions exits the book

    book = book_from_rows(
        prior_positions.filter(pl.col("strategy") == MACRO) if "strategy" in prior_positions.columns
        else prior_positions,
        prior_combined, symbols, settings.capital,
    )  # fmt: skip
    r = run_backtest(data, weights, w_macro, book, settings, costs)
    warnings = list(r.warnings)
    if no_pred[:-1].any():
        days = g.sessions[:-1][no_pred[:-1]]
        warnings.append(
            f"{days.size} decision session(s) without predictions (first {days[0]}): no targets, "
            "the book exits its positions"
        )
    return BookTables(
        strategy_returns=_returns_rows(
            g.sessions, r, w_macro, intended, no_pred, rebalance, versions
        ),
        positions=_position_rows(g.sessions, symbols, r, weights, w_macro, versions),
        warnings=warnings,
    )


def _returns_rows(sessions, r: BacktestResult, w_macro, intended, no_pred, rebalance, versions):
    d = r.daily
    prev = r.session_index - 1  # the decision session of each simulated one
    nav0 = d["nav_before"]
    sleeve = w_macro[prev] * nav0
    pnl = d["nav"] - nav0
    costs_twd = d["commission"] + d["tax"] + d["slippage"] + d["financing"]
    traded = d["buy_value"] + d["sell_value"]
    held = d["gross_exposure"] * d["nav"]

    def frac(x, base):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(base > 0, x / np.where(base > 0, base, 1.0), np.nan)

    common = {
        "session": sessions[r.session_index],
        "nav": d["nav"],
        "cash": d["cash"],
        "pnl": pnl,
        "commission": d["commission"],
        "tax": d["tax"],
        "slippage": d["slippage"],
        "financing": d["financing"],
        "dividends": d["dividends"],
        "n_positions": d["n_positions"].astype(np.int32),
        "blocked_orders": d["blocked_orders"].astype(np.int32),
        "stale_marks": d["stale_marks"].astype(np.int32),
        "delisted": d["delisted"].astype(np.int32),
        "no_predictions": no_pred[prev],
        "rebalanced": rebalance[prev],
        "param_version": [versions[i] for i in prev],
    }
    combined = pl.DataFrame(
        {
            **common,
            "strategy": COMBINED,
            "capital": nav0,
            "net_return": d["net_return"],
            "gross_return": d["gross_return"],
            "turnover": d["turnover"],
            "cost_drag": d["cost_drag"],
            "gross_exposure": frac(held, d["nav"]),
            "intended_exposure": intended[prev] * w_macro[prev],
        }
    )
    macro = pl.DataFrame(
        {
            **common,
            "strategy": MACRO,
            "capital": sleeve,
            "net_return": frac(pnl, sleeve),
            "gross_return": frac(pnl + costs_twd, sleeve),
            "turnover": frac(traded, sleeve),
            "cost_drag": frac(costs_twd, sleeve),
            "gross_exposure": frac(held, w_macro[prev] * d["nav"]),
            "intended_exposure": intended[prev],
        }
    )
    out = pl.concat([macro, combined], how="diagonal").with_columns(
        pl.col("net_return", "gross_return", "turnover", "cost_drag").fill_nan(None)
    )
    return out.select(list(RETURNS_SCHEMA)).cast(dict(RETURNS_SCHEMA)).sort("session", "strategy")


def _position_rows(sessions, symbols, r: BacktestResult, weights, w_macro, versions):
    p = r.positions
    idx = r.session_index
    # tomorrow's orders: a target, or (NaN: between rebalances) the position as it stands
    next_target = np.where(
        np.isnan(weights[idx]), p["weight"], weights[idx] * w_macro[idx][:, None]
    )
    keep = (
        (p["shares"] != 0)
        | (p["trade_shares"] != 0)
        | (p["target_weight"] != 0)
        | (next_target != 0)
    )
    ti, si = np.nonzero(keep)
    value = p["value"][ti, si]
    shares = p["shares"][ti, si]
    blocked = np.array(BLOCK_REASONS, dtype=object)[p["blocked"][ti, si]]
    out = pl.DataFrame(
        {
            "session": sessions[idx][ti],
            "strategy": MACRO,
            "symbol": symbols[si],
            "shares": shares,
            "mark": p["mark"][ti, si],
            "factor": p["factor"][ti, si],
            "value": value,
            "weight": p["weight"][ti, si],
            "target_weight": p["target_weight"][ti, si],
            "next_target_weight": next_target[ti, si],
            "trade_shares": p["trade_shares"][ti, si],
            "trade_price": np.where(
                p["trade_shares"][ti, si] != 0, p["trade_price"][ti, si], np.nan
            ),  # fmt: skip
            "commission": p["commission"][ti, si],
            "tax": p["tax"][ti, si],
            "slippage": p["slippage"][ti, si],
            "dividend": p["dividend"][ti, si],
            "blocked": [b or None for b in blocked],
            "param_version": [versions[idx[t]] for t in ti],
        }
    ).with_columns(pl.col("mark", "factor", "trade_price").fill_nan(None))
    return out.select(list(POSITIONS_SCHEMA)).cast(dict(POSITIONS_SCHEMA))
