"""Planted vendor faults of the sample market: where they go and what they do to the rows.

The schedule is part of the world (drawn from the seed over the whole calendar, whether or not
``faults`` is on) because the clean price path must respect it: the first bar after a row the
cleaner will reject (or after a dropped session) stays inside the daily limit band around the
last *valid* close, so the cleaner's limit check never flags a genuine move as a fault. With
``faults=False`` the schedule is simply not applied.

Every row-level kind is planted at least once in each block of ``FAULT_BLOCK_SESSIONS`` sessions
(when an eligible row exists) plus at ``fault_rate`` per eligible row; each row carries at most
one fault. Kinds and actions follow the cleaning contract (``reason`` of the quarantine row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from quant_genesis_dagster.domain.sample.config import FAULT_BLOCK_SESSIONS

MISSING_SESSION = "missing_session"
DUPLICATE = "duplicate"
OHLC_INCONSISTENT = "ohlc_inconsistent"
NON_POSITIVE_PRICE = "non_positive_price"
NEGATIVE_VOLUME = "negative_volume"
LIMIT_BREACH = "limit_breach"
DATE_BEFORE_PERIOD_END = "financials_date_before_period_end"
MISSING_AVAILABLE_DATE = "missing_available_date"
LATE_FILING = "late_filing"

#: Row-level kinds per table, in scheduling order. The daily_prices kinds other than
#: ``duplicate`` make the row invalid for the cleaner (rejected).
ROW_FAULTS: dict[str, tuple[str, ...]] = {
    "daily_prices": (
        LIMIT_BREACH,
        OHLC_INCONSISTENT,
        NON_POSITIVE_PRICE,
        NEGATIVE_VOLUME,
        DUPLICATE,
    ),
    "institutional_flows": (NEGATIVE_VOLUME, DUPLICATE),
    "margin": (DUPLICATE,),
}
INVALIDATING = frozenset({LIMIT_BREACH, OHLC_INCONSISTENT, NON_POSITIVE_PRICE, NEGATIVE_VOLUME})
#: The spike factor of a limit_breach print.
SPIKE = 10.0

FAULTS_SCHEMA = pl.Schema(
    {"session": pl.Date(), "table": pl.String(), "symbol": pl.String(), "kind": pl.String()}
)


@dataclass(frozen=True)
class RowFaults:
    """Faults of one table as parallel arrays, sorted by (t, s)."""

    t: np.ndarray  # session index
    s: np.ndarray  # symbol index
    kind: np.ndarray  # str
    variant: np.ndarray  # int8: which flavour of the kind (e.g. low=0 vs all prices 0)

    def in_range(self, t0: int, t1: int) -> RowFaults:
        lo, hi = np.searchsorted(self.t, [t0, t1])
        return RowFaults(self.t[lo:hi], self.s[lo:hi], self.kind[lo:hi], self.variant[lo:hi])

    def cells(self, kind: str, n_symbols: int) -> np.ndarray:
        """Flat (t * n_symbols + s) keys of the rows carrying ``kind``, sorted."""
        m = self.kind == kind
        return self.t[m] * n_symbols + self.s[m]


def _pick(rng: np.random.Generator, free: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Cells (t, s) of ``free`` (T, N): one per session block, plus each cell at ``rate``."""
    n_t, n = free.shape
    ts, ss = [], []
    for b0 in range(0, n_t, FAULT_BLOCK_SESSIONS):  # ~150 blocks
        cells = np.flatnonzero(free[b0 : b0 + FAULT_BLOCK_SESSIONS])
        if cells.size:
            c = cells[int(rng.random() * cells.size)]
            ts.append(b0 + c // n)
            ss.append(c % n)
    # Rate: uniform draws over the whole grid, kept where free (same law as a Bernoulli draw per
    # free cell, without touching every cell).
    k = int(rng.binomial(n_t * n, rate))
    cell = np.unique((rng.random(k) * (n_t * n)).astype(np.int64))
    t, s = cell // n, cell % n
    keep = free[t, s]
    t = np.concatenate([np.array(ts, np.int64), t[keep]])
    s = np.concatenate([np.array(ss, np.int64), s[keep]])
    key = np.unique(t * n + s)
    return key // n, key % n


def schedule_row_faults(
    rng: np.random.Generator,
    eligible: dict[str, np.ndarray],
    rate: float,
) -> dict[str, RowFaults]:
    """Draw the row-level faults of each table from its (T, N) eligibility mask (consumed)."""
    out: dict[str, RowFaults] = {}
    for table, kinds in ROW_FAULTS.items():
        free = eligible[table]
        n = free.shape[1]
        keys, names = [], []
        for kind in kinds:
            t, s = _pick(rng, free, rate)
            free[t, s] = False  # one fault per row
            keys.append(t * n + s)
            names.append(np.full(t.size, kind))
        key = np.concatenate(keys)
        kind_arr = np.concatenate(names)
        order = np.argsort(key, kind="stable")
        key, kind_arr = key[order], kind_arr[order]
        out[table] = RowFaults(
            t=key // n,
            s=key % n,
            kind=kind_arr,
            variant=rng.integers(0, 2, key.size).astype(np.int8),
        )
    return out


def faults_frame(
    table: str,
    t: np.ndarray,
    symbol: np.ndarray | None,
    kind: np.ndarray,
    sessions: np.ndarray,
) -> pl.DataFrame:
    """Ground-truth rows (session, table, symbol, kind); ``symbol`` None means market-wide."""
    return pl.DataFrame(
        {
            "session": sessions[t],
            "table": np.full(t.size, table),
            "symbol": pl.Series(symbol, dtype=pl.String)
            if symbol is not None
            else pl.Series([None] * t.size, dtype=pl.String),
            "kind": kind,
        },
        schema=FAULTS_SCHEMA,
    )


def repeat_duplicates(n_rows: int, dup_rows: np.ndarray) -> np.ndarray:
    """Row gather index that emits every row once and the rows in ``dup_rows`` twice, adjacent."""
    counts = np.ones(n_rows, np.int64)
    counts[dup_rows] += 1
    return np.repeat(np.arange(n_rows), counts)


def locate(keys: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Positions of ``cells`` in the sorted, unique ``keys`` (every cell must be present)."""
    pos = np.searchsorted(keys, cells)
    if cells.size and not np.array_equal(keys[np.minimum(pos, keys.size - 1)], cells):
        raise AssertionError("a scheduled fault has no row to land on")
    return pos
