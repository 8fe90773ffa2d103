"""Portfolio construction (SPEC §6): target weights from the predictions, per session.

After the close of session D, for the next session:

1. **Eligible names**: a positive expected return (``R_pred`` over ``horizon`` sessions above
   ``min_expected_return``), a bar on D, the DuPont leverage filter passed
   (``value.leverage_filter``) and no LAC-break stop in force (``close_adj < LAC × (1 −
   lac_break_margin)``; the stop holds while the condition does, not only on the day it fires).
2. **Scores**: the expected return × the name's signal boost (``1 + entry_boost`` on a session
   with a P1 value-accumulation or P2 momentum entry signal for it, else 1) × its risk
   multiplier (``exposure_cut`` after a margin anomaly, ``take_profit_cut`` while its LAC_dist is
   above ``T_RunUp_Dev`` — the take-profit rule — both when both hold, else 1); the
   ``max_names`` highest scores are kept (ties by symbol order). This is how the signal
   thresholds (``T_Fear``, ``lac_dev_max``, ``T_RunUp_Dev``) act on the book, and so what the
   calibration tunes them for.
3. **Weights** proportional to the scores, summing to the session's intended exposure
   ``position_weight × leverage × market exposure scale × US position scale`` (a fraction of
   the strategy's capital; above 1 with leverage), with every name capped at ``max_weight`` and
   the excess redistributed over the uncapped names ("water filling"). When the cap binds on all
   kept names the total is ``max_weight × names``, below the intended exposure, and the
   shortfall is reported, not hidden.
4. **Rebalancing** every ``rebalance_every`` sessions (anchored on the XTAI calendar): between
   rebalances positions are held as they are (Taiwan's 0.3% sell tax makes daily re-ranking
   expensive: on the sample market a daily rebalance turns over ~22% of the sleeve a day and
   loses more to costs than it earns), but a name that stops being eligible is sold at once.

Weights are fractions of the strategy's NAV. Vectorized over sessions: arrays are
(sessions, symbols); every session is computed from its own row only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import polars as pl

from quant_genesis_dagster.domain.factors.grid import Grid
from quant_genesis_dagster.domain.factors.value import leverage_filter
from quant_genesis_dagster.domain.params import ParamSet
from quant_genesis_dagster.domain.signals import ENTRY_SIGNALS  # raise a name's score
from quant_genesis_dagster.errors import QGError


@dataclass(frozen=True)
class PortfolioSettings:
    """How the book is built and traded (the tuned knobs are in ``ParamSet``)."""

    capital: float = 100_000_000.0  # TWD: the whole book (macro + intraday) at the start
    horizon: int = 5  # the R_pred horizon (sessions) that ranks the names: 1, 5 or 10
    min_expected_return: float = 0.0  # R_pred over the horizon must be above this
    max_names: int = 40  # positions at most
    max_weight: float = 0.05  # per name, fraction of the strategy's NAV
    odd_lots: bool = False  # trade odd lots (shares) instead of board lots of 1,000
    min_trade_weight: float = 0.0025  # skip an adjustment smaller than this share of NAV
    rebalance_every: int = 5  # sessions between rebalances (XTAI-calendar anchored); exits daily
    financing_rate: float = 0.065  # per year on borrowed cash (margin financing), 252 sessions

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "odd_lots":
                if not isinstance(v, bool):
                    raise QGError(f"portfolio settings: odd_lots={v!r}; use true or false")
                continue
            if not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
                raise QGError(f"portfolio settings: {f.name}={v!r}; use a finite number >= 0")
        if not isinstance(self.rebalance_every, int) or self.rebalance_every < 1:
            raise QGError(
                f"portfolio settings: rebalance_every={self.rebalance_every!r}; use sessions >= 1"
            )
        if self.horizon not in (1, 5, 10):
            raise QGError(f"portfolio settings: horizon={self.horizon}; use 1, 5 or 10 sessions")
        if self.capital <= 0 or self.max_names < 1 or not 0 < self.max_weight <= 1:
            raise QGError(
                "portfolio settings: capital must be > 0, max_names >= 1 and max_weight in (0, 1]"
            )


def target_weights(
    expected: np.ndarray,
    eligible: np.ndarray,
    exposure: np.ndarray,
    settings: PortfolioSettings,
    *,
    multiplier: np.ndarray | None = None,
    boost: np.ndarray | None = None,
) -> np.ndarray:
    """(T, N) target weights (fractions of NAV, ≥ 0) — see the module docstring.

    ``expected``: (T, N) R_pred over ``settings.horizon`` (NaN = no prediction);
    ``eligible``: (T, N) bool; ``exposure``: (T,) intended total weight per session (≥ 0);
    ``multiplier``: (T, N) per-name risk multiplier in [0, 1] (default 1); ``boost``: (T, N)
    per-name score boost >= 0 (the score is multiplied by 1 + boost; default 0).
    """
    x = np.asarray(expected, dtype=np.float64)
    ok = np.asarray(eligible, dtype=bool)
    e = np.asarray(exposure, dtype=np.float64)
    if x.ndim != 2 or ok.shape != x.shape or e.shape != (x.shape[0],):
        raise QGError("target weights: expected/eligible must be (T, N) and exposure (T,)")
    if np.any(~np.isfinite(e)) or np.any(e < 0):
        raise QGError("target weights: exposure must be finite and >= 0 on every session")
    with np.errstate(invalid="ignore"):
        score = np.where(ok & (x > settings.min_expected_return), x, 0.0)
    if boost is not None:
        score = score * (1.0 + np.maximum(np.nan_to_num(np.asarray(boost, float)), 0.0))
    if multiplier is not None:
        score = score * np.clip(np.nan_to_num(np.asarray(multiplier, float), nan=1.0), 0, 1)
    t_n, n = score.shape
    k = settings.max_names
    if n < k:  # pad, so the kept block is always k wide (see below)
        score = np.hstack([score, np.zeros((t_n, k - n))])
    # the k highest scores of each row, highest first (stable: ties by symbol order). All sums
    # run over this (T, k) block, so a name's weight does not depend on how many other (zero)
    # symbols the universe holds: a run over a narrower universe gives the same bits.
    order = np.argsort(-score, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(score, order, axis=1)
    total = top.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_top = np.where(total[:, None] > 0, top / total[:, None] * e[:, None], 0.0)
    w_top = _cap(w_top, top, settings.max_weight)
    out = np.zeros((t_n, max(n, k)))
    np.put_along_axis(out, order, w_top, axis=1)
    return out[:, :n]


def _cap(w: np.ndarray, score: np.ndarray, cap: float) -> np.ndarray:
    """Cap every weight at ``cap`` and hand the excess to the uncapped names of the row in
    proportion to their scores, until nothing exceeds the cap or every name is capped."""
    w = w.copy()
    for _ in range(w.shape[1] + 1):
        excess = np.maximum(w - cap, 0.0).sum(axis=1)
        if not np.any(excess > 1e-15):
            break
        np.minimum(w, cap, out=w)
        room = (w < cap - 1e-15) & (score > 0)
        share = np.where(room, score, 0.0)
        denom = share.sum(axis=1)
        has = denom > 0
        w += (
            np.where(has[:, None], share / np.where(has, denom, 1.0)[:, None], 0.0)
            * excess[:, None]
        )
    return np.minimum(w, cap)


# --------------------------------------------------------------------------------------------
# from the warehouse tables to the targets
# --------------------------------------------------------------------------------------------

#: Columns ``decide`` reads.
PANEL_COLUMNS: tuple[str, ...] = ("session", "symbol", "close_adj", "has_bar")
PREDICTION_COLUMNS: tuple[str, ...] = ("session", "symbol", "position_scale", "param_version")


def is_rebalance_session(sessions: np.ndarray, every: int) -> np.ndarray:
    """(T,) bool: the session's position in the XTAI calendar is a multiple of ``every`` (the
    schedule depends on the calendar only, so a one-day run and a backfill agree)."""
    from quant_genesis_dagster.domain import calendar

    pos = calendar.session_index(sessions)
    if np.any(pos < 0):
        raise QGError("portfolio: a decision date is not an XTAI session")
    return pos % every == 0


@dataclass
class Decisions:
    """Targets decided after each session's close, on the panel's grid: ``weights`` (T, N)
    of the macro sleeve (NaN = hold the position as it is: a session between rebalances), ``w_macro`` (T,), the intended exposure of the sleeve (T,), the
    market exposure scale (T,) and the parameter version of the predictions (T,; None on a
    session without predictions), ``no_predictions`` (T,) bool and ``rebalance`` (T,) bool
    (the session re-ranks the book; otherwise positions are held except exits)."""

    weights: np.ndarray
    w_macro: np.ndarray
    exposure: np.ndarray
    market_scale: np.ndarray
    param_version: list[str | None]
    no_predictions: np.ndarray
    rebalance: np.ndarray


def decide(
    grid: Grid,
    panel: pl.DataFrame,
    predictions: pl.DataFrame,
    lac: pl.DataFrame,
    value: pl.DataFrame,
    signals: pl.DataFrame,
    params: ParamSet,
    settings: PortfolioSettings,
) -> Decisions:
    """The macro sleeve's targets for every session of ``grid`` (the panel's layout).

    ``panel``: aligned-panel rows (``PANEL_COLUMNS``); ``predictions``: prediction rows
    (``PREDICTION_COLUMNS`` and ``r_pred_<horizon>d``); ``lac``: chip-factor rows (session,
    symbol, lac); ``value``: value-factor rows (session, symbol, equity_multiplier);
    ``signals``: signal rows (session, symbol, signal, action, strength); ``params``: the
    ``ParamSet`` the predictions were made with. A session without predictions gets no targets
    (weights 0: the book exits; ``no_predictions`` says so) — never a silent carry-over.
    """
    col = f"r_pred_{settings.horizon}d"
    for name, df, cols in (
        ("aligned_panel", panel, PANEL_COLUMNS),
        ("predictions", predictions, (*PREDICTION_COLUMNS, col)),
        ("chip_factors", lac, ("session", "symbol", "lac")),
        ("value_factors", value, ("session", "symbol", "equity_multiplier")),
        ("signals", signals, ("session", "symbol", "signal", "action", "strength")),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise QGError(f"{name}: missing column(s) {', '.join(missing)}; nothing written")
    keys = panel.select(pl.col("session").cast(pl.Date), pl.col("symbol").cast(pl.String))

    def on_panel(df, cols):
        return keys.join(
            df.select(pl.col("session").cast(pl.Date), pl.col("symbol").cast(pl.String), *cols),
            on=["session", "symbol"], how="left", maintain_order="left",
        )  # fmt: skip

    pred = on_panel(predictions, [col, "position_scale"])
    lac_rows = on_panel(lac, ["lac"])
    em_rows = on_panel(value, ["equity_multiplier"])
    close_adj = grid.dense(panel["close_adj"].cast(pl.Float64))
    has_bar = grid.dense(panel["has_bar"].cast(pl.Float64), fill=0) > 0
    expected = grid.dense(pred[col].cast(pl.Float64))
    lac_line = grid.dense(lac_rows["lac"].cast(pl.Float64))
    em = grid.dense(em_rows["equity_multiplier"].cast(pl.Float64))
    with np.errstate(invalid="ignore"):
        stop = close_adj < lac_line * (1 - params.lac_break_margin)  # NaN LAC → no stop
    eligible = has_bar & leverage_filter(em, params.equity_multiplier_max) & ~stop

    t_n = grid.shape[0]
    sessions = grid.sessions
    # per-session values: the US position scale (one per session), the market exposure scale
    per_session = (
        predictions.group_by(pl.col("session").cast(pl.Date))
        .agg(
            pl.col("position_scale").min().alias("scale"),
            pl.col("param_version").drop_nulls().first().alias("version"),
        )
    )  # fmt: skip
    idx = {d: i for i, d in enumerate(sessions.astype("datetime64[D]").astype(object))}
    us_scale = np.ones(t_n)
    version: list[str | None] = [None] * t_n
    for d, s, v in per_session.iter_rows():
        if d in idx:
            us_scale[idx[d]] = 1.0 if s is None else float(s)
            version[idx[d]] = v
    market_scale = np.ones(t_n)
    mult = np.ones(grid.shape)
    entry = np.zeros(grid.shape, dtype=bool)
    sig = signals.filter(
        (pl.col("action") == "reduce") | pl.col("signal").is_in(ENTRY_SIGNALS)
    ).select("session", "symbol", "signal", "strength")
    for d, sym, name, strength in sig.iter_rows():
        i = idx.get(d)
        if i is None:
            continue
        if sym is None:  # market-wide: strength = the exposure multiplier after the rules
            market_scale[i] = min(market_scale[i], float(strength))
            continue
        j = int(np.searchsorted(grid.symbols, sym))
        if j >= grid.symbols.size or grid.symbols[j] != sym:
            continue
        if name in ENTRY_SIGNALS:
            entry[i, j] = True
        else:
            mult[i, j] = min(mult[i, j], params.exposure_cut)
    with np.errstate(invalid="ignore"):
        run_up = close_adj > lac_line * (1 + params.t_runup_dev)  # NaN LAC → no take-profit
    mult = np.where(run_up, mult * params.take_profit_cut, mult)
    no_pred = np.array([v is None for v in version])
    exposure = params.position_weight * params.leverage * market_scale * us_scale
    exposure = np.where(no_pred, 0.0, exposure)
    weights = target_weights(
        expected, eligible, exposure, settings, multiplier=mult,
        boost=np.where(entry, params.entry_boost, 0.0),
    )  # fmt: skip
    # between rebalances a name is held as it is (NaN = hold) unless it must go: no longer
    # eligible (stop, leverage filter, no bar) or no predictions at all that session
    rebalance = is_rebalance_session(sessions, settings.rebalance_every) | no_pred
    weights = np.where(rebalance[:, None] | ~eligible, weights, np.nan)
    return Decisions(
        weights=weights,
        w_macro=np.full(t_n, params.w_macro),
        exposure=exposure,
        market_scale=market_scale,
        param_version=version,
        no_predictions=no_pred,
        rebalance=rebalance,
    )
