"""Quarterly statements of the sample market, published with realistic lags.

Income items are single-quarter flows, balance items period-end stocks, and they are consistent
so DuPont ratios make sense: ``net_income / total_equity = net margin × asset turnover × equity
multiplier``. The true value exposure at the period end drives the net margin (hence ROE).
Statements publish 20–45 days after a Q1–Q3 period end and 30–90 days after Q4, never after the
regulatory deadline unless the row carries a planted ``late_filing`` fault. The table is small
(symbols × ~70 quarters), so it is built once over the whole history.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.sample.config import FAULT_BLOCK_SESSIONS
from quant_genesis_dagster.domain.sample.faults import (
    DATE_BEFORE_PERIOD_END,
    LATE_FILING,
    MISSING_AVAILABLE_DATE,
    faults_frame,
)
from quant_genesis_dagster.domain.sample.latent import World
from quant_genesis_dagster.domain.sample.rng import Stream, world_rng
from quant_genesis_dagster.domain.tables import RAW_SCHEMAS
from quant_genesis_dagster.domain.warehouse import models

#: First period end generated: four quarters before the history, so TTM sums exist from the start.
FIRST_PERIOD_END = np.datetime64("2008-12-31")
_SEASON = np.array([0.93, 0.98, 1.03, 1.06])  # revenue seasonality Q1..Q4
ITEMS = (*models.FINANCIAL_FLOW_ITEMS, *models.FINANCIAL_STOCK_ITEMS)


def quarter_ends(last: np.datetime64) -> np.ndarray:
    """Calendar quarter ends from FIRST_PERIOD_END up to ``last`` (datetime64[D])."""
    months = np.arange(np.datetime64("2009-01", "M"), np.datetime64(last, "M") + 1, 3)
    ends = (months + 3).astype("datetime64[D]") - np.timedelta64(1, "D")
    return np.concatenate([[FIRST_PERIOD_END], ends[ends <= last]]).astype("datetime64[D]")


def regulatory_deadline(period_end: np.ndarray) -> np.ndarray:
    """Q1 → May 15, Q2 → Aug 14, Q3 → Nov 14, Q4 → Mar 31 of the next year (datetime64[D])."""
    pe = np.asarray(period_end, dtype="datetime64[D]")
    year = pe.astype("datetime64[Y]")
    q = (pe.astype("datetime64[M]").astype(np.int64) % 12) // 3  # 0..3
    month_day = np.array([[4, 14], [7, 13], [10, 13], [14, 30]])  # months after Jan, day - 1
    months = year.astype("datetime64[M]") + month_day[q, 0]
    return months.astype("datetime64[D]") + month_day[q, 1]


def _session_of(days: np.ndarray) -> np.ndarray:
    return calendar.session_on_or_after(days.ravel()).reshape(days.shape)


def build_financials(world: World) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(clean rows, rows as published with faults, fault truth), all over the whole history."""
    u, sessions = world.universe, world.sessions
    n, n_t = u.n, world.n_sessions
    pe = quarter_ends(sessions[-1])
    n_q = pe.size
    rng = world_rng(world.cfg.seed, Stream.FINANCIALS)
    z = rng.standard_normal((5, n_q, n))
    q_idx = np.arange(n_q)[:, None]
    t_pe = np.clip(np.searchsorted(sessions, pe, side="right") - 1, 0, n_t - 1)
    value = world.exposures["value"][t_pe].astype(np.float64)  # (Q, N)

    pb = 1.0 + 2.0 * rng.random(n)
    assets0 = u.shares_out * u.price0 * u.equity_multiplier / pb
    assets = assets0 * np.exp(0.012 * q_idx + 0.06 * z[0])
    season = _SEASON[(pe.astype("datetime64[M]").astype(np.int64) % 12) // 3][:, None]
    revenue = assets * u.asset_turnover * season * np.exp(0.05 * z[1])
    net_margin = 0.07 + 0.035 * value + 0.01 * z[2]
    net_income = revenue * net_margin
    pretax = np.where(net_income > 0, net_income / 0.8, net_income)  # 20% tax on profits
    equity = assets / u.equity_multiplier * np.exp(0.02 * z[3])
    interest = (assets - equity) * 0.012 / 4
    non_operating = revenue * 0.01 * z[4]
    operating = pretax + interest - non_operating
    gross = operating + revenue * u.opex_ratio
    values = {
        "revenue": revenue,
        "gross_profit": gross,
        "operating_income": operating,
        "pretax_income": pretax,
        "net_income": net_income,
        "interest_expense": interest,
        "total_assets": assets,
        "total_equity": equity,
    }

    deadline = regulatory_deadline(pe)
    is_q4 = (pe.astype("datetime64[M]").astype(np.int64) % 12) == 11
    lag = np.where(
        is_q4[:, None], 30 + rng.integers(0, 61, (n_q, n)), 20 + rng.integers(0, 26, (n_q, n))
    )
    available = np.minimum(pe[:, None] + lag.astype("timedelta64[D]"), deadline[:, None])
    session = _session_of(available)
    last_session = sessions[-1]
    delisted = np.where(np.isnat(u.delisted_date), np.datetime64("2999-12-31"), u.delisted_date)
    exists = (
        (u.listed_date[None, :] <= pe[:, None])
        & (available < delisted[None, :])
        & ~np.isnat(session)
        & (available <= last_session)
    )
    raw_avail = available.copy()
    kinds = np.full((n_q, n), "", dtype=object)
    _plant(world, rng, pe, deadline, available, session, exists, raw_avail, kinds)
    # The row's partition: when it became public, or the deadline when the date is unknown.
    raw_session = _session_of(np.where(np.isnat(raw_avail), deadline[:, None], raw_avail))
    keep = exists & ~np.isnat(raw_session) & (raw_session <= last_session)

    schema = dict(RAW_SCHEMAS["financials"])
    order = ["session", "symbol", "period_end"]

    def frame(rows: np.ndarray, session_of: np.ndarray, avail: np.ndarray) -> pl.DataFrame:
        qi, si = np.nonzero(rows)
        columns = {
            "session": session_of[qi, si],
            "symbol": u.symbols[si],
            "period_end": pe[qi],
            "available_date": avail[qi, si],
        } | {k: np.round(v[qi, si]) for k, v in values.items()}
        return pl.DataFrame(columns).cast(schema).select(list(schema)).sort(order)

    clean = frame(exists, session, available)
    raw = frame(keep, raw_session, raw_avail)
    qi, si = np.nonzero(keep & (kinds != ""))
    truth = faults_frame(
        "financials",
        np.searchsorted(sessions, raw_session[qi, si]),
        u.symbols[si],
        kinds[qi, si].astype(str),
        sessions,
    ).sort(["session", "symbol", "kind"])
    return clean, raw, truth


def _plant(
    world: World,
    rng: np.random.Generator,
    pe: np.ndarray,
    deadline: np.ndarray,
    available: np.ndarray,
    session: np.ndarray,
    exists: np.ndarray,
    raw_avail: np.ndarray,
    kinds: np.ndarray,
) -> None:
    """Plant the three financials faults into ``raw_avail`` / ``kinds`` (in place).

    Guarantees, for any window of 60 sessions: a ``financials_date_before_period_end`` row and
    a ``late_filing`` row in every block of FAULT_BLOCK_SESSIONS sessions (their publication date
    can be any date, so each block gets one dated inside it). ``missing_available_date`` rows land
    on a deadline session (≥ 1 per quarter), because the cleaner dates them at the deadline.
    """
    u, sessions = world.universe, world.sessions
    n_q, n = exists.shape
    rate = world.cfg.fault_rate
    t_avail = np.searchsorted(sessions, session)
    eligible = exists & (t_avail >= 5)
    # rate-based faults on random rows
    for kind in (MISSING_AVAILABLE_DATE, DATE_BEFORE_PERIOD_END, LATE_FILING):
        hit = eligible & (rng.random((n_q, n)) < 4 * rate) & (kinds == "")
        kinds[hit] = kind
        if kind == MISSING_AVAILABLE_DATE:
            raw_avail[hit] = np.datetime64("NaT")
        elif kind == DATE_BEFORE_PERIOD_END:
            raw_avail[hit] = np.broadcast_to(pe[:, None], hit.shape)[hit]
        else:
            late = rng.integers(1, 61, (n_q, n)).astype("timedelta64[D]")
            raw_avail[hit] = (deadline[:, None] + late)[hit]
    # missing_available_date: at least one per quarter
    for q in range(n_q):
        cand = np.flatnonzero(eligible[q] & (kinds[q] == ""))
        if cand.size:
            s = cand[int(rng.random() * cand.size)]
            kinds[q, s] = MISSING_AVAILABLE_DATE
            raw_avail[q, s] = np.datetime64("NaT")
    # one dated inside every session block for the two kinds whose date can be anywhere
    n_t = len(sessions)
    listed_until = u.delist_idx
    for b0 in range(5, n_t, FAULT_BLOCK_SESSIONS):  # ~150 blocks
        for kind in (DATE_BEFORE_PERIOD_END, LATE_FILING):
            t = b0 + int(rng.random() * min(FAULT_BLOCK_SESSIONS, n_t - b0))
            day = sessions[t]
            if kind == DATE_BEFORE_PERIOD_END:
                q = int(np.searchsorted(pe, day))  # the quarter the day falls in
            else:
                q = int(np.searchsorted(deadline, day)) - 1  # latest quarter already overdue
            if not 0 <= q < n_q:
                continue
            ok = exists[q] & (kinds[q] == "") & (u.list_idx <= t) & (t < listed_until)
            if kind == LATE_FILING:
                ok &= available[q] <= day  # (always true: available <= deadline < day)
            cand = np.flatnonzero(ok)
            if cand.size:
                s = cand[int(rng.random() * cand.size)]
                kinds[q, s] = kind
                raw_avail[q, s] = day
