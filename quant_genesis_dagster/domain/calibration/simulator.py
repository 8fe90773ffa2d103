"""One calibration period under a parameter set, through the daily engine's own functions.

For the sessions a..b of a ``CalibrationData`` window (indices, inclusive) and a ``ParamSet``:

1. ``model.predict`` on the zscored rows of sessions a−1..b−1 (the decisions after those closes),
2. ``signals.build_signals`` on the same sessions' signal inputs (the market-risk rows were made
   once with the base set: only non-tunable parameters read them),
3. ``portfolio.decide`` on the panel of those sessions (their own grid, widened to the window's
   symbols so the book keeps one layout),
4. ``backtest.run_backtest`` over the market rows a−1..b from the book after the close of a−1.

That is what ``backtest.simulate`` (the ``book`` asset) does for one parameter version; the
difference is only where the rows come from (the window, already in memory) and that the book
is carried in memory from one period to the next. ``tests/test_calibration.py`` checks that a
chain of periods equals ``backtest.simulate`` over the same sessions.

Besides the book's daily returns the result carries what the observation and the sub-agents'
reward read: the 1-session residuals of the period (realized − r_pred_1d made the session
before, over every predicted name), and the book's exposure to each composite (Σ weight × z of
the names held over a session, z known at the close before).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant_genesis_dagster.domain import backtest, model, portfolio, signals
from quant_genesis_dagster.domain.calibration.data import COMPOSITES, CalibrationData
from quant_genesis_dagster.domain.costs import CostModel
from quant_genesis_dagster.domain.factors.grid import Grid
from quant_genesis_dagster.domain.params import ParamSet
from quant_genesis_dagster.errors import QGError

#: The param_version label of the simulator's prediction and signal rows.
SIM_VERSION = "calibration/simulated"


@dataclass
class PeriodResult:
    """Sessions a..b: ``net_return`` (b−a+1,) of the whole book (macro sleeve + the intraday
    sleeve's cash), ``cost_drag`` and ``turnover`` (same shape, fractions of NAV), the book
    after b's close, ``residuals`` (b−a+1, N) realized − predicted (NaN where either is
    missing), ``exposure`` (b−a+1, 3) the book's Σ w·z per composite (``COMPOSITES`` order)
    and ``contribution`` (same) exposure × that session's factor return."""

    first: int
    last: int
    net_return: np.ndarray
    cost_drag: np.ndarray
    turnover: np.ndarray
    gross_exposure: np.ndarray
    book: backtest.Book
    residuals: np.ndarray
    exposure: np.ndarray
    contribution: np.ndarray
    weights: np.ndarray  # (b−a+1, N) weights held over each session (fractions of NAV)


class Simulator:
    """Runs periods of a window (see the module docstring). ``settings`` / ``costs``: the
    daily engine's portfolio settings and Taiwan cost model (the same defaults)."""

    def __init__(
        self,
        data: CalibrationData,
        settings: portfolio.PortfolioSettings | None = None,
        costs: CostModel | None = None,
    ) -> None:
        self.data = data
        self.settings = settings or portfolio.PortfolioSettings()
        self.costs = costs or CostModel()

    def empty_book(self) -> backtest.Book:
        return backtest.Book.empty(self.data.symbols.size, self.settings.capital)

    def decide(self, params: ParamSet, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Decisions after the closes of sessions a..b: (b−a+1, N) macro weights (NaN = hold)
        on the window's symbols, and (b−a+1, N) r_pred_1d (NaN = no prediction)."""
        d = self.data
        if not 0 <= a <= b < d.n_sessions:
            raise QGError(
                f"simulator: sessions {a}..{b} are outside the window 0..{d.n_sessions - 1}"
            )
        z = d.frame("zscored", a, b)
        pred = model.predict(z, d.us, params, SIM_VERSION)
        sig = signals.build_signals(
            d.frame("day", a, b), d.frame("market_risk", a, b), params, SIM_VERSION
        )
        panel = d.frame("panel", a, b)
        g = Grid.of(panel, what="calibration panel")
        dec = portfolio.decide(
            g, panel, pred, d.frame("lac", a, b), d.frame("value", a, b), sig, params,
            self.settings,
        )  # fmt: skip
        rows = b - a + 1
        if g.shape[0] != rows:
            raise QGError(
                f"simulator: sessions {a}..{b} have panel rows on {g.shape[0]} of {rows} sessions; "
                "the calibration window must have panel rows on every session"
            )
        cols = np.searchsorted(d.symbols, g.symbols)
        weights = np.zeros((rows, d.symbols.size))
        weights[:, cols] = dec.weights
        r1 = np.full((rows, d.symbols.size), np.nan)
        gp = Grid.of(pred, what="calibration predictions")
        if gp.shape[0]:
            pcols = np.searchsorted(d.symbols, gp.symbols)
            prows = np.searchsorted(g.sessions, gp.sessions)
            dense = gp.dense(pred["r_pred_1d"])
            r1[np.ix_(prows, pcols)] = dense
        return weights, r1

    def run(self, params: ParamSet, a: int, b: int, book: backtest.Book) -> PeriodResult:
        """Sessions a..b (1 ≤ a ≤ b) traded under ``params`` from ``book`` (after a−1's close)."""
        d = self.data
        if a < 1:
            raise QGError("simulator: the first simulated session needs the session before it")
        weights, r1 = self.decide(params, a - 1, b - 1)
        t_n = b - a + 2
        sl = slice(a - 1, b + 1)
        m = d.market
        market = backtest.MarketData(
            close=m.close[sl], close_adj=m.close_adj[sl], vwap_adj=m.vwap_adj[sl],
            volume=m.volume[sl], has_bar=m.has_bar[sl], limit_up=m.limit_up[sl],
            limit_down=m.limit_down[sl], listed=m.listed[sl],
        )  # fmt: skip
        w = np.vstack([weights, np.full((1, d.symbols.size), np.nan)])
        r = backtest.run_backtest(
            market, w, np.full(t_n, params.w_macro), book, self.settings, self.costs
        )
        held = r.positions["weight"]  # after each session's close = held over the next
        prev_held = np.vstack([_weights_of(book), held[:-1]])  # held over sessions a..b
        realized = d.realized[a : b + 1]
        with np.errstate(invalid="ignore"):
            residuals = realized - r1
        exposure = np.zeros((t_n - 1, len(COMPOSITES)))
        for k, name in enumerate(COMPOSITES):
            z = np.nan_to_num(d.factors[name][a - 1 : b])
            exposure[:, k] = (prev_held * z).sum(axis=1)
        contribution = exposure * np.nan_to_num(d.factor_returns[a : b + 1])
        daily = r.daily
        return PeriodResult(
            first=a,
            last=b,
            net_return=daily["net_return"],
            cost_drag=daily["cost_drag"],
            turnover=daily["turnover"],
            gross_exposure=daily["gross_exposure"],
            book=r.book,
            residuals=residuals,
            exposure=exposure,
            contribution=contribution,
            weights=prev_held,
        )


def _weights_of(book: backtest.Book) -> np.ndarray:
    """(N,) the book's weights at its last marks (0 when flat)."""
    with np.errstate(invalid="ignore"):
        mark = np.where(book.shares != 0, book.shares * np.nan_to_num(book.last_close), 0.0)
    return mark / book.nav if book.nav > 0 else np.zeros_like(mark)
