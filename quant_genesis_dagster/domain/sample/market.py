"""``SampleMarket``: the embedded, deterministic synthetic Taiwan market (SPEC §3.1).

It produces every raw table for any session range, an intraday tick stream per session, and
the ground truth (regime path, true loadings and exposures, forward returns, planted faults)
that tests and reports use to measure recovery. The latent world is simulated once per
instance over the whole XTAI calendar and reused by every call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.sample.config import (
    FACTORS,
    LOADINGS,
    MAIN_FORCE_BRANCHES,
    REGIMES,
    SampleMarketConfig,
)
from quant_genesis_dagster.domain.sample.faults import (
    FAULTS_SCHEMA,
    MISSING_SESSION,
    faults_frame,
)
from quant_genesis_dagster.domain.sample.fundamentals import build_financials
from quant_genesis_dagster.domain.sample.latent import World, simulate
from quant_genesis_dagster.domain.sample.news import build_news
from quant_genesis_dagster.domain.sample.observables import Observables
from quant_genesis_dagster.domain.sample.ticks import build_ticks
from quant_genesis_dagster.domain.warehouse.models import RAW_PARTITIONED_TABLES
from quant_genesis_dagster.errors import QGError

TABLES: tuple[str, ...] = tuple(RAW_PARTITIONED_TABLES)


@dataclass(frozen=True)
class GroundTruth:
    """What the sample market planted, for tests and reports only (never read by the pipeline).

    * ``regimes``: session, regime ∈ {bull, chop, panic}.
    * ``loadings``: regime, chip, sentiment, value — expected next-session return per unit of
      exposure (already scaled by ``signal_strength``).
    * ``exposures``: session, symbol, chip, sentiment, value for every listed symbol (unit
      variance; sentiment is contrarian: high = retail fear, low = crowding).
    * ``forward_returns``: session, symbol, ret_next — the realized, dividend-adjusted return
      from this session's close to the next session's close (both traded; else null). The
      return over session t+1 loads on the exposures and the regime of session t.
    * ``faults``: session, table, symbol, kind — every planted fault (empty when faults=False).
    * ``campaign_brokers``: symbol, broker_id, weight — the main-force branches of each symbol
      and their share of its campaign flow.
    """

    regimes: pl.DataFrame
    loadings: pl.DataFrame
    exposures: pl.DataFrame
    forward_returns: pl.DataFrame
    faults: pl.DataFrame
    campaign_brokers: pl.DataFrame


def _as_date(value: dt.date | str, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise QGError(f"sample market {what}={value!r} is not a date; use YYYY-MM-DD") from None


class SampleMarket:
    """A seeded synthetic Taiwan market; see the package docstring for the API."""

    def __init__(self, cfg: SampleMarketConfig | None = None) -> None:
        self.cfg = cfg or SampleMarketConfig()

    # ---------------------------------------------------------------- cached state
    @cached_property
    def _world(self) -> World:
        return simulate(self.cfg)

    @cached_property
    def _financials(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        return build_financials(self._world)

    @cached_property
    def _obs(self) -> Observables:
        clean, raw, _ = self._financials
        return Observables(self._world, raw if self.cfg.faults else clean)

    # ---------------------------------------------------------------- helpers
    def _range(self, start: dt.date | str, end: dt.date | str) -> tuple[int, int]:
        """Session-index range [t0, t1) of the sessions in [start, end]."""
        s, e = _as_date(start, "start"), _as_date(end, "end")
        if s > e:
            raise QGError(f"sample market range start {s} is after end {e}; swap them")
        last = calendar.last_known_session()
        if s < calendar.HISTORY_START or e > last:
            raise QGError(
                f"sample market range {s}..{e} leaves the XTAI calendar "
                f"{calendar.HISTORY_START}..{last}; narrow it"
            )
        arr = calendar.session_array()
        t0 = np.searchsorted(arr, np.datetime64(s), side="left")
        t1 = np.searchsorted(arr, np.datetime64(e), side="right")
        return int(t0), int(t1)

    def _build(self, t0: int, t1: int, names: Sequence[str]) -> dict[str, pl.DataFrame]:
        obs = self._obs
        out = {}
        for name in names:  # nine tables
            if name == "news":
                out[name] = build_news(self._world, t0, t1)
            else:
                out[name] = getattr(obs, name)(t0, t1)
        return out

    @staticmethod
    def _names(tables: Sequence[str] | None) -> list[str]:
        if tables is None:
            return list(TABLES)
        unknown = [t for t in tables if t not in TABLES]
        if unknown:
            raise QGError(
                f"sample market has no table {', '.join(unknown)}; choose from {', '.join(TABLES)}"
            )
        return list(tables)

    # ---------------------------------------------------------------- public API
    def stock_info(self) -> pl.DataFrame:
        """The security master, IPOs inside the history and delisted names included."""
        return self._world.universe.stock_info()

    def tables(
        self, start: dt.date | str, end: dt.date | str, tables: Sequence[str] | None = None
    ) -> dict[str, pl.DataFrame]:
        """The raw partitioned tables holding exactly the rows whose session is in [start, end]."""
        names = self._names(tables)
        t0, t1 = self._range(start, end)
        return self._build(t0, t1, names)

    def iter_tables(
        self,
        start: dt.date | str,
        end: dt.date | str,
        block_sessions: int = 250,
        tables: Sequence[str] | None = None,
    ) -> Iterator[dict[str, pl.DataFrame]]:
        """The same rows as ``tables``, in blocks of ``block_sessions`` sessions."""
        if block_sessions < 1:
            raise QGError(f"sample market block_sessions={block_sessions} must be at least 1")
        names = self._names(tables)
        t0, t1 = self._range(start, end)
        for a in range(t0, t1, block_sessions):
            yield self._build(a, min(a + block_sessions, t1), names)

    def ticks(self, session: dt.date | str, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        """The intraday tick stream of one session (ts, symbol, price, volume, side, bid, ask,
        is_big), sorted by ts. Ticks reflect the true market, not the vendor's faulty bars."""
        day = _as_date(session, "session")
        t0, t1 = self._range(day, day)
        if t1 - t0 != 1:
            raise QGError(f"sample market ticks: {day} is not an XTAI trading session")
        df = build_ticks(self._world, t0)
        if symbols is not None:
            known = set(self._world.universe.symbols.tolist())
            unknown = [s for s in symbols if s not in known]
            if unknown:
                raise QGError(
                    f"sample market ticks: unknown symbol(s) {', '.join(unknown[:5])}; "
                    "see stock_info()"
                )
            df = df.filter(pl.col("symbol").is_in(list(symbols)))
        return df

    def truth(self, start: dt.date | str, end: dt.date | str) -> GroundTruth:
        """The planted structure over the sessions in [start, end]."""
        t0, t1 = self._range(start, end)
        w = self._world
        u = w.universe
        sessions = w.sessions[t0:t1]
        listed = w.listed(t0, t1)
        ti, si = np.nonzero(listed)
        session_col = pl.Series("session", sessions[ti])
        symbol_col = pl.Series("symbol", u.symbols[si])
        exposures = pl.DataFrame(
            [session_col, symbol_col]
            + [pl.Series(k, w.exposures[k][t0:t1][ti, si].astype(np.float64)) for k in FACTORS]
        )
        # realized next-session return: next close over the ex-adjusted reference (= this close)
        nxt = np.minimum(np.arange(t0, t1) + 1, w.n_sessions - 1)
        both = w.traded[t0:t1] & w.traded[nxt] & (np.arange(t0, t1) + 1 < w.n_sessions)[:, None]
        ret = np.round(w.close[nxt].astype(np.float64), 2) / w.ref[nxt].astype(np.float64) - 1
        ret = np.where(both, ret, np.nan)[ti, si]
        forward = pl.DataFrame([session_col, symbol_col, pl.Series("ret_next", ret).fill_nan(None)])
        regimes = pl.DataFrame({"session": sessions, "regime": np.array(REGIMES)[w.regime[t0:t1]]})
        loadings = pl.DataFrame(
            {"regime": list(REGIMES)} | {k: self.cfg.signal_strength * LOADINGS[k] for k in FACTORS}
        )
        brokers = pl.DataFrame(
            {
                "symbol": np.repeat(u.symbols, 3),
                "broker_id": np.array(MAIN_FORCE_BRANCHES)[u.campaign_brokers.ravel()],
                "weight": u.campaign_weights.ravel(),
            }
        ).filter(pl.col("weight") > 0)
        return GroundTruth(
            regimes=regimes,
            loadings=loadings,
            exposures=exposures,
            forward_returns=forward,
            faults=self._faults(t0, t1),
            campaign_brokers=brokers,
        )

    def _faults(self, t0: int, t1: int) -> pl.DataFrame:
        if not self.cfg.faults:
            return pl.DataFrame(schema=FAULTS_SCHEMA)
        w = self._world
        frames = []
        drop_t = np.flatnonzero(w.drop_mask[t0:t1]) + t0
        frames.append(
            faults_frame(
                "daily_prices", drop_t, None, np.full(drop_t.size, MISSING_SESSION), w.sessions
            )
        )
        for table, rf in w.row_faults.items():
            r = rf.in_range(t0, t1)
            frames.append(faults_frame(table, r.t, w.universe.symbols[r.s], r.kind, w.sessions))
        fin = self._financials[2]
        lo, hi = w.sessions[t0], w.sessions[t1 - 1]
        frames.append(fin.filter(pl.col("session").is_between(lo, hi)))
        return pl.concat(frames).sort(["session", "table", "symbol", "kind"], nulls_last=False)
