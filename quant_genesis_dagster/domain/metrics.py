"""Performance metrics of a daily strategy return series (SPEC §8), in two labelled conventions.

Input: one return per consecutive XTAI session, as fractions (0.01 = 1%); NaN (or a polars null)
marks a session without a strategy return. Everything is pure numpy/polars and vectorized.

**"standard"** — compounded, annualized on 252 sessions (the empyrical / pyfolio definitions):

* NAV = cumprod(1 + r), starting at 1 before the first return;
* annual_return = NAV_end ** (252 / n) − 1 (CAGR);
* annual_volatility = std(r, ddof=1) · √252;
* sharpe = mean(r) / std(r, ddof=1) · √252 (risk-free rate 0);
* sortino = mean(r) / DD · √252, DD = sqrt(mean(min(r, 0)²)) (downside deviation against a
  required return of 0, empyrical's ``downside_risk``);
* max_drawdown = min(NAV / cummax(NAV) − 1), a fraction ≤ 0 (the starting 1 is a peak, so a loss
  on the first session counts).

**"qlib"** — Qlib's ``risk_analysis(r, freq="day", mode="sum")`` (repository microsoft/qlib, file
qlib/contrib/evaluate.py, commit 0320bdd), which sums returns instead of compounding them "to
avoid the cumulated curve being skewed exponentially", annualized on N = 238 (its scaler for
``Freq.NORM_FREQ_DAY``)::

    mean = r.mean()
    std = r.std(ddof=1)
    annualized_return = mean * N
    max_drawdown = (r.cumsum() - r.cumsum().cummax()).min()
    information_ratio = mean / std * np.sqrt(N)

Here annual_return = mean · 238, sharpe = Qlib's information_ratio, max_drawdown = Qlib's (the
running peak starts at the first cumulative sum, not at 0: unlike "standard", a loss on the first
session is not a drawdown — copied as is, for comparability). Qlib reports no volatility or
Sortino; their analogues in the same summed convention are annual_volatility = std · √238 (so
that sharpe = annual_return / annual_volatility, as in Qlib) and sortino = mean / DD · √238 with
DD as above (= annual_return / (DD · √238)).

Why both: the standard convention is what the system publishes; the Qlib one lets a figure be
compared with a Qlib benchmark or paper without re-deriving it (238 vs 252 alone moves a Sharpe by
~3%, summing vs compounding moves returns and drawdowns much more).

Missing returns are dropped, never read as 0: a metric is computed over the sessions that have a
return (n = their count; NAV and cumulative sums carry over a gap unchanged). This is what pandas'
NaN-skipping gives Qlib, and empyrical's Sharpe, Sortino, volatility and drawdown; empyrical's
``annual_return`` alone differs, counting NaN sessions in n. A zero denominator (no dispersion, no
losing session) gives ±inf as in empyrical, 0/0 gives NaN; fewer than 2 returns give NaN.

Rolling metrics at session D use the last ``window`` sessions up to D only (point in time: later
returns never change D's value, and D's value is the whole-period metric of that window). A
window needs ``min_obs`` non-missing returns (default: all ``window``) or its value is NaN — so
the first ``window − 1`` sessions are NaN, and by default so is every window containing a gap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.errors import QGError

ConventionName = Literal["standard", "qlib"]
#: Anything a return, turnover or cost series may be given as (1-D, one value per session).
SeriesLike = np.ndarray | pl.Series | Sequence[float]


@dataclass(frozen=True)
class Convention:
    """How returns are accumulated and annualized."""

    name: str
    periods_per_year: int  # sessions per year used to annualize
    compounded: bool  # True: NAV = cumprod(1 + r); False: cumulative return = cumsum(r)


STANDARD = Convention("standard", 252, compounded=True)
QLIB = Convention("qlib", 238, compounded=False)
CONVENTIONS: dict[str, Convention] = {c.name: c for c in (STANDARD, QLIB)}

#: SPEC §8's rolling figures: window (sessions) → (metric, column of ``rolling_performance``).
ROLLING: dict[int, tuple[tuple[str, str], ...]] = {
    7: (("sharpe", "sharpe_7d"),),
    30: (("sharpe", "sharpe_30d"), ("sortino", "sortino_30d"), ("max_drawdown", "mdd_30d")),
}

METRICS = ("annual_return", "annual_volatility", "sharpe", "sortino", "max_drawdown")


# --- input checks ---------------------------------------------------------------------------


def _convention(name: str) -> Convention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise QGError(
            f"metrics convention {name!r} is unknown; use one of {', '.join(CONVENTIONS)}"
        ) from None


def _series(x: SeriesLike, what: str) -> np.ndarray:
    """``x`` as a 1-D float64 array (nulls → NaN); QGError if not numeric, not 1-D or infinite."""
    if isinstance(x, pl.Series):
        if not x.dtype.is_numeric():
            raise QGError(f"{what}: polars dtype {x.dtype} is not numeric; pass float fractions")
        arr = x.cast(pl.Float64).fill_null(np.nan).to_numpy()
    else:
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise QGError(f"{what}: values are not numbers; pass float fractions") from None
    if arr.ndim != 1:
        raise QGError(f"{what}: expected one value per session (1-D), got shape {arr.shape}")
    bad = np.flatnonzero(np.isinf(arr))
    if bad.size:
        raise QGError(
            f"{what}: {bad.size} infinite value(s), first at position {bad[0]}; "
            "pass finite values (NaN for a session without one)"
        )
    return arr


def _returns(returns: SeriesLike) -> np.ndarray:
    r = _series(returns, "returns")
    low = np.flatnonzero(r < -1.0)
    if low.size:
        raise QGError(
            f"returns: {r[low[0]]!r} at position {low[0]} is below -100% and cannot be "
            "compounded; returns are fractions (0.01 = 1%), not percent"
        )
    return r


def _aligned(x: SeriesLike | None, n: int, what: str) -> np.ndarray | None:
    if x is None:
        return None
    arr = _series(x, what)
    if arr.size != n:
        raise QGError(
            f"{what}: {arr.size} values for {n} returns; pass one value per session of returns"
        )
    return arr


def _window(window: int, min_obs: int | None) -> int:
    """Check ``window`` and return the number of returns a window needs."""
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
        raise QGError(f"rolling window={window!r}; use an integer of 2 or more sessions")
    need = int(window) if min_obs is None else min_obs
    if isinstance(need, bool) or not isinstance(need, int | np.integer) or not 2 <= need <= window:
        raise QGError(f"min_obs={min_obs!r}; use an integer from 2 to the window ({window})")
    return int(need)


# --- the one kernel: metrics of each row of a (windows, sessions) matrix ----------------------


def _row_metrics(x: np.ndarray, conv: Convention) -> dict[str, np.ndarray]:
    """Every metric of each row of ``x`` (rows = return series, NaN = missing), plus ``n``.

    The whole-period functions call this on one row, the rolling ones on the matrix of windows,
    so a rolling value is by construction the whole-period metric of its window.
    """
    valid = ~np.isnan(x)
    n = valid.sum(axis=1)
    z = np.where(valid, x, 0.0)
    a = conv.periods_per_year
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = z.sum(axis=1) / n
        dev = np.where(valid, x - mean[:, None], 0.0)
        std = np.sqrt((dev * dev).sum(axis=1) / (n - 1))
        # identical values have no dispersion; the float mean can miss them by an ulp and leave a
        # ~1e-18 residue that would turn an infinite ratio into ~1e15 (empyrical does the same)
        lo = np.where(valid, x, np.inf).min(axis=1, initial=np.inf)
        hi = np.where(valid, x, -np.inf).max(axis=1, initial=-np.inf)
        std = np.where((lo == hi) & (n >= 2), 0.0, std)
        down = np.minimum(z, 0.0)
        downside = np.sqrt((down * down).sum(axis=1) / n)
        sharpe = mean / std * np.sqrt(a)
        sortino = mean / downside * np.sqrt(a)
        if conv.compounded:
            nav = np.cumprod(np.where(valid, 1.0 + x, 1.0), axis=1)  # a gap carries NAV over
            peak = np.maximum.accumulate(np.maximum(nav, 1.0), axis=1)  # NAV starts at 1
            mdd = (nav / peak - 1.0).min(axis=1, initial=0.0)
            nav_end = nav[:, -1] if x.shape[1] else np.ones(x.shape[0])
            annual_return = nav_end ** (a / n) - 1.0
        else:
            cum = np.cumsum(z, axis=1)
            started = np.cumsum(valid, axis=1) > 0  # Qlib's peak starts at the first return
            peak = np.maximum.accumulate(np.where(started, cum, -np.inf), axis=1)
            mdd = np.where(valid, cum - peak, np.inf).min(axis=1, initial=np.inf)
            annual_return = mean * a
    few = n < 2
    nothing = n < 1
    return {
        "n": n,
        "mean": np.where(nothing, np.nan, mean),
        "std": np.where(few, np.nan, std),
        "annual_return": np.where(nothing, np.nan, annual_return),
        "annual_volatility": np.where(few, np.nan, std * np.sqrt(a)),
        "sharpe": np.where(few, np.nan, sharpe),
        "sortino": np.where(few, np.nan, sortino),
        "max_drawdown": np.where(nothing, np.nan, mdd),
    }


def _whole(returns: SeriesLike, convention: ConventionName, metric: str) -> float:
    r = _returns(returns)
    return float(_row_metrics(r[None, :], _convention(convention))[metric][0])


def _rolling(
    returns: SeriesLike,
    window: int,
    convention: ConventionName,
    min_obs: int | None,
    metrics: Sequence[str],
) -> dict[str, np.ndarray]:
    r = _returns(returns)
    need = _window(window, min_obs)
    conv = _convention(convention)
    out = {m: np.full(r.size, np.nan) for m in metrics}
    if r.size < window:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(r, window)  # row i: sessions i..i+w-1
    stats = _row_metrics(windows, conv)
    enough = stats["n"] >= need
    for m in metrics:
        out[m][window - 1 :] = np.where(enough, stats[m], np.nan)
    return out


# --- whole period -------------------------------------------------------------------------------


def annual_return(returns: SeriesLike, convention: ConventionName = "standard") -> float:
    """Annualized return (fraction per year): CAGR of the NAV ("standard") or mean · 238
    ("qlib"). ``returns``: daily returns, fractions, one per session (NaN = no return)."""
    return _whole(returns, convention, "annual_return")


def annual_volatility(returns: SeriesLike, convention: ConventionName = "standard") -> float:
    """Annualized volatility (fraction per √year): std(r, ddof=1) · √252 or · √238."""
    return _whole(returns, convention, "annual_volatility")


def sharpe_ratio(returns: SeriesLike, convention: ConventionName = "standard") -> float:
    """Annualized Sharpe ratio, risk-free 0 (for "qlib": its information_ratio)."""
    return _whole(returns, convention, "sharpe")


def sortino_ratio(returns: SeriesLike, convention: ConventionName = "standard") -> float:
    """Annualized Sortino ratio: mean / downside deviation · √periods (required return 0)."""
    return _whole(returns, convention, "sortino")


def max_drawdown(returns: SeriesLike, convention: ConventionName = "standard") -> float:
    """Maximum drawdown, a fraction ≤ 0: of the compounded NAV ("standard") or of the summed
    cumulative return ("qlib")."""
    return _whole(returns, convention, "max_drawdown")


def qlib_risk_analysis(returns: SeriesLike) -> dict[str, float]:
    """The five figures of Qlib's ``risk_analysis(r, freq="day", mode="sum")``, under its own
    names: mean and std (daily fractions), annualized_return, information_ratio, max_drawdown."""
    s = _row_metrics(_returns(returns)[None, :], QLIB)
    names = {
        "mean": "mean",
        "std": "std",
        "annualized_return": "annual_return",
        "information_ratio": "sharpe",
        "max_drawdown": "max_drawdown",
    }
    return {qlib: float(s[ours][0]) for qlib, ours in names.items()}


def headline(
    returns: SeriesLike,
    turnover: SeriesLike | None = None,
    costs: SeriesLike | None = None,
) -> pl.DataFrame:
    """The headline table of a period: one row per convention ("standard", "qlib").

    ``returns``: daily strategy returns (fractions, one per session, NaN = no return).
    ``turnover``: optional, the fraction of NAV traded on each session (same length).
    ``costs``: optional, the trading cost of each session as a fraction of NAV, positive = paid
    (same length).

    Columns: convention, sessions (returns present), annual_return, annual_volatility, sharpe,
    sortino, max_drawdown (see the module docstring), mean_daily_turnover (fraction of NAV per
    session; the same in both conventions) and cost_drag — the annualized sum of the cost
    returns, mean(costs) · 252 or · 238, a positive fraction of NAV per year. The last two are
    null without their series; NaN figures are null.
    """
    r = _returns(returns)
    turn = _aligned(turnover, r.size, "turnover")
    cost = _aligned(costs, r.size, "costs")
    rows = []
    for conv in CONVENTIONS.values():
        s = _row_metrics(r[None, :], conv)
        row: dict[str, object] = {"convention": conv.name, "sessions": int(s["n"][0])}
        row.update({m: float(s[m][0]) for m in METRICS})
        row["mean_daily_turnover"] = _nanmean(turn)
        cost_mean = _nanmean(cost)
        row["cost_drag"] = None if cost_mean is None else cost_mean * conv.periods_per_year
        rows.append(row)
    schema = {"convention": pl.String, "sessions": pl.Int64}
    schema |= {c: pl.Float64 for c in (*METRICS, "mean_daily_turnover", "cost_drag")}
    return pl.DataFrame(rows, schema=schema).fill_nan(None)


def _nanmean(x: np.ndarray | None) -> float | None:
    """Mean of the present values; None without a series, NaN when none is present."""
    if x is None:
        return None
    present = x[~np.isnan(x)]
    return float(present.mean()) if present.size else float("nan")


# --- rolling ------------------------------------------------------------------------------------


def rolling_sharpe(
    returns: SeriesLike,
    window: int,
    convention: ConventionName = "standard",
    min_obs: int | None = None,
) -> np.ndarray:
    """Sharpe ratio of the last ``window`` sessions ending at each session (annualized, one
    value per session; NaN while the window holds fewer than ``min_obs`` returns, default
    ``window``). ``returns``: daily fractions, NaN = no return."""
    return _rolling(returns, window, convention, min_obs, ["sharpe"])["sharpe"]


def rolling_sortino(
    returns: SeriesLike,
    window: int,
    convention: ConventionName = "standard",
    min_obs: int | None = None,
) -> np.ndarray:
    """Sortino ratio of the last ``window`` sessions ending at each session (as
    ``rolling_sharpe``)."""
    return _rolling(returns, window, convention, min_obs, ["sortino"])["sortino"]


def rolling_max_drawdown(
    returns: SeriesLike,
    window: int,
    convention: ConventionName = "standard",
    min_obs: int | None = None,
) -> np.ndarray:
    """Maximum drawdown within the last ``window`` sessions ending at each session (a fraction
    ≤ 0; the path restarts at each window's start: NAV 1 for "standard", the first cumulative
    sum for "qlib")."""
    return _rolling(returns, window, convention, min_obs, ["max_drawdown"])["max_drawdown"]


def rolling_performance(
    returns: SeriesLike,
    sessions: pl.Series | np.ndarray | Sequence[dt.date] | Sequence[str],
    min_obs: dict[int, int] | None = None,
) -> pl.DataFrame:
    """SPEC §8's rolling figures: one row per session and convention ("standard" first).

    ``returns``: daily strategy returns (fractions, NaN = no return) for ``sessions``, which must
    be consecutive XTAI sessions, oldest first (a gap is a NaN return, not a missing row: a
    missing row would make a 30-session window silently span more). ``min_obs``: optional
    window → returns the window needs (default: all of them).

    Columns: session, convention, sharpe_7d, sharpe_30d, sortino_30d (annualized ratios),
    mdd_30d (fraction ≤ 0); null where the window holds too few returns.
    """
    r = _returns(returns)
    try:
        days = pl.Series("session", sessions)
        days = days.str.to_date("%Y-%m-%d") if days.dtype == pl.String else days.cast(pl.Date)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        raise QGError(
            "sessions: not dates; pass XTAI session dates (dates or YYYY-MM-DD)"
        ) from None
    if days.len() != r.size:
        raise QGError(
            f"sessions: {days.len()} values for {r.size} returns; pass one session per return"
        )
    pos = calendar.session_index(days.to_numpy())
    if (pos < 0).any():
        bad = days[int(np.flatnonzero(pos < 0)[0])]
        raise QGError(f"sessions: {bad} is not an XTAI session; pass XTAI session dates")
    jumps = np.flatnonzero(np.diff(pos) != 1)
    if jumps.size:
        a, b = days[int(jumps[0])], days[int(jumps[0]) + 1]
        raise QGError(
            f"sessions: {a} is followed by {b}, not by the next XTAI session; pass consecutive "
            "sessions, oldest first, with NaN returns for sessions without one"
        )
    need = min_obs or {}
    frames = []
    for conv in CONVENTIONS:
        cols: dict[str, object] = {"session": days, "convention": [conv] * r.size}
        for w, metrics in ROLLING.items():
            stats = _rolling(r, w, conv, need.get(w), [m for m, _ in metrics])
            cols.update({name: stats[m] for m, name in metrics})
        frames.append(pl.DataFrame(cols))
    # a stable sort by session keeps "standard" before "qlib" within a session
    return pl.concat(frames).sort("session", maintain_order=True).fill_nan(None)
