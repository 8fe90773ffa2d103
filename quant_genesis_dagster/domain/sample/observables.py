"""Observable raw tables of the sample market, cut from the latent world one session block at a
time.

Each builder takes a session-index range [t0, t1) and returns a frame that conforms exactly to
``RAW_SCHEMAS[name]``, sorted by session then symbol. Row-level noise comes from per-session
generators (``session_rng``), and per-block arithmetic is elementwise (+ − × ÷, rounding; no
transcendental functions whose SIMD and scalar paths could differ in the last bit), so a session's
rows are bit-identical whichever block it is built in.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import market
from quant_genesis_dagster.domain.sample.config import (
    INSTITUTIONS,
    MAIN_FORCE_BRANCHES,
    NOISE_BRANCH_POOL,
)
from quant_genesis_dagster.domain.sample.faults import (
    DUPLICATE,
    LIMIT_BREACH,
    NEGATIVE_VOLUME,
    NON_POSITIVE_PRICE,
    OHLC_INCONSISTENT,
    SPIKE,
    locate,
    repeat_duplicates,
)
from quant_genesis_dagster.domain.sample.latent import World
from quant_genesis_dagster.domain.sample.rng import Stream, session_rng
from quant_genesis_dagster.domain.tables import RAW_SCHEMAS
from quant_genesis_dagster.domain.warehouse.models import US_PROXIES

#: Noise branch ids: 83 distinct 4-digit codes, none equal to a main-force branch.
NOISE_BRANCHES: tuple[str, ...] = tuple(f"{1020 + 107 * i:04d}" for i in range(NOISE_BRANCH_POOL))
BRANCH_IDS: tuple[str, ...] = MAIN_FORCE_BRANCHES + NOISE_BRANCHES
#: Broker rows per symbol-day: up to 3 campaign branches plus 14–22 noise branches.
MIN_NOISE_ROWS, MAX_NOISE_ROWS = 14, 22
# Institutional investors in INSTITUTIONS order: gross share of volume (base + range × U),
# share of the main-force net flow, net noise (share of volume), probability of a row.
_INST_GROSS_BASE = np.array([0.08, 0.004, 0.02, 0.02, 0.015])
_INST_GROSS_RANGE = np.array([0.25, 0.01, 0.06, 0.05, 0.04])
_INST_CHIP_SHARE = np.array([0.5, 0.0, 0.2, 0.0, 0.0])
_INST_NOISE = np.array([0.04, 0.003, 0.01, 0.01, 0.008])
_INST_PRESENCE = np.array([1.0, 0.15, 0.35, 0.5, 0.5])


def _lots(x: np.ndarray) -> np.ndarray:
    return np.round(x).astype(np.int64) * 1000


class Observables:
    """Builds the raw tables of a World for session-index ranges."""

    def __init__(self, world: World, financials: pl.DataFrame) -> None:
        self.w = world
        self.faults = world.cfg.faults
        self.n = world.universe.n
        self.symbols = pl.Series(world.universe.symbols.tolist(), dtype=pl.String)
        self.branches = pl.Series(BRANCH_IDS, dtype=pl.String)
        self.institutions = pl.Series(INSTITUTIONS, dtype=pl.String)
        self.us_symbols = pl.Series(US_PROXIES, dtype=pl.String)
        self.dates = pl.Series(world.sessions.astype(np.int64).astype(np.int32)).cast(pl.Date)
        self.fin = financials
        self.fin_t = np.searchsorted(
            world.sessions, financials["session"].to_numpy().astype("datetime64[D]")
        )

    def _session_col(self, t: int, size: int) -> pl.Series:
        day = np.int32(self.w.sessions[t].astype(np.int64))
        return pl.Series(np.full(size, day, np.int32)).cast(pl.Date)

    @staticmethod
    def _frame(name: str, columns: dict[str, object]) -> pl.DataFrame:
        """A frame with exactly RAW_SCHEMAS[name]; NaN in float columns becomes null."""
        series = []
        for col, dtype in RAW_SCHEMAS[name].items():
            v = columns[col]
            if isinstance(v, pl.Series):
                s = v.alias(col)
            else:
                s = pl.Series(col, v, nan_to_null=dtype == pl.Float64())
            series.append(s if s.dtype == dtype else s.cast(dtype))
        return pl.DataFrame(series)

    # ---------------------------------------------------------------- daily prices
    def daily_prices(self, t0: int, t1: int) -> pl.DataFrame:
        w, n = self.w, self.n
        mask = w.traded[t0:t1].copy()
        if self.faults:
            mask[w.drop_mask[t0:t1]] = False
        ti, si = np.nonzero(mask)
        cols = {k: w.price(k, t0, t1)[ti, si] for k in ("open", "high", "low", "close")}
        volume = w.volume[t0:t1][ti, si].astype(np.int64)
        turnover = np.round(w.vwap[t0:t1][ti, si].astype(np.float64) * volume)
        trades = w.trades[t0:t1][ti, si].astype(np.int64)
        gather = np.arange(ti.size)
        if self.faults:
            rf = w.row_faults["daily_prices"].in_range(t0, t1)
            keys = (ti + t0) * n + si
            o, h, lo, c = cols["open"], cols["high"], cols["low"], cols["close"]
            p = locate(keys, rf.cells(LIMIT_BREACH, n))
            for col in (o, h, lo, c):
                col[p] = np.round(col[p] * SPIKE, 2)
            p = locate(keys, rf.cells(OHLC_INCONSISTENT, n))
            locked = h[p] == lo[p]
            at_up = c[p] >= w.ref[ti[p] + t0, si[p]]
            swap_h, swap_l = lo[p].copy(), h[p].copy()
            # a bar locked at a limit (high == low) cannot be swapped: push one side past the other
            swap_h = np.where(locked & at_up, np.round(lo[p] - market.tick_size(lo[p]), 2), swap_h)
            swap_l = np.where(locked & ~at_up, np.round(h[p] + market.tick_size(h[p]), 2), swap_l)
            h[p], lo[p] = swap_h, swap_l
            p = locate(keys, rf.cells(NON_POSITIVE_PRICE, n))
            all_zero = rf.variant[rf.kind == NON_POSITIVE_PRICE] == 1
            lo[p] = 0.0
            for col in (o, h, c):
                col[p[all_zero]] = 0.0
            p = locate(keys, rf.cells(NEGATIVE_VOLUME, n))
            volume[p] = -volume[p]
            gather = repeat_duplicates(ti.size, locate(keys, rf.cells(DUPLICATE, n)))
        return self._frame(
            "daily_prices",
            {
                "session": self.dates.gather(ti[gather] + t0),
                "symbol": self.symbols.gather(si[gather]),
                **{k: v[gather] for k, v in cols.items()},
                "volume_shares": volume[gather],
                "turnover_twd": turnover[gather],
                "trades": trades[gather],
            },
        )

    # ---------------------------------------------------------------- corporate actions
    def corporate_actions(self, t0: int, t1: int) -> pl.DataFrame:
        w = self.w
        lo, hi = np.searchsorted(w.ex_t, [t0, t1])
        t = w.ex_t[lo:hi]
        dates = self.dates.gather(t)
        return self._frame(
            "corporate_actions",
            {
                "session": dates,
                "symbol": self.symbols.gather(w.ex_s[lo:hi]),
                "ex_date": dates,
                "cash_dividend": w.ex_cash[lo:hi],
                "stock_dividend_ratio": w.ex_stock[lo:hi],
                "split_ratio": np.ones(t.size),
            },
        )

    # ---------------------------------------------------------------- institutional flows
    def institutional_flows(self, t0: int, t1: int) -> pl.DataFrame:
        """Five investor types. Foreign investors trade every traded symbol-day and half of the
        main-force net flow shows up in their net buying (foreign ~ chip); the investment trust
        takes a smaller share; dealers are noise."""
        frames = [self._institutional_session(t) for t in range(t0, t1)]
        return (
            pl.concat(frames) if frames else pl.DataFrame(schema=RAW_SCHEMAS["institutional_flows"])
        )

    def _institutional_session(self, t: int) -> pl.DataFrame:
        w, n = self.w, self.n
        k = len(INSTITUTIONS)
        tr = np.flatnonzero(w.traded[t])
        draws = session_rng(w.cfg.seed, Stream.INSTITUTIONS, t).random((3, n, k))[:, tr]
        lots = (w.volume[t, tr] // 1000).astype(np.float64)[:, None]
        camp = (w.campaign[t, tr] / 1000.0)[:, None]
        gross = lots * (_INST_GROSS_BASE + _INST_GROSS_RANGE * draws[0])
        net = camp * _INST_CHIP_SHARE + lots * _INST_NOISE * (2 * draws[1] - 1)
        gross = np.maximum(gross, np.abs(net))
        buy = np.maximum(np.round((gross + net) / 2), 0)
        sell = np.maximum(np.round((gross - net) / 2), 0)
        buy[:, 0] = np.maximum(buy[:, 0], 1)  # foreign investors always have a row
        sell[:, 0] = np.maximum(sell[:, 0], 1)
        ok = (draws[2] < _INST_PRESENCE) & (buy + sell > 0)
        si, ki = np.nonzero(ok)
        buy_s = buy[si, ki].astype(np.int64) * 1000
        sell_s = sell[si, ki].astype(np.int64) * 1000
        sym = tr[si]
        gather = np.arange(si.size)
        if self.faults:
            rf = w.row_faults["institutional_flows"].in_range(t, t + 1)
            keys = sym * k + ki
            p = locate(keys, rf.cells(NEGATIVE_VOLUME, n) % n * k)  # the Foreign_Investor row
            buy_s[p] = -buy_s[p]
            gather = repeat_duplicates(si.size, locate(keys, rf.cells(DUPLICATE, n) % n * k))
        return self._frame(
            "institutional_flows",
            {
                "session": self._session_col(t, gather.size),
                "symbol": self.symbols.gather(sym[gather]),
                "investor": self.institutions.gather(ki[gather]),
                "buy_shares": buy_s[gather],
                "sell_shares": sell_s[gather],
            },
        )

    # ---------------------------------------------------------------- broker flows
    def broker_flows(self, t0: int, t1: int) -> pl.DataFrame:
        """Per symbol-day: the symbol's campaign branches trade the main-force net flow at prices
        within 0.1% of the day's VWAP — so a cost line over a campaign recovers their average
        cost — then up to 14–22 noise branches (fewer for illiquid names), distinct per day, from
        a pool of 83, buying and/or selling at prices scattered over the day's range."""
        frames = [self._broker_session(t) for t in range(t0, t1)]  # ~30k rows per session
        return pl.concat(frames) if frames else pl.DataFrame(schema=RAW_SCHEMAS["broker_flows"])

    def _broker_session(self, t: int) -> pl.DataFrame:
        w, u = self.w, self.w.universe
        g = session_rng(w.cfg.seed, Stream.BROKERS, t)
        per = g.random((5, self.n), dtype=np.float32)
        tr = np.flatnonzero(w.traded[t])
        m = tr.size
        lots = (w.volume[t, tr] // 1000).astype(np.float32)
        vwap = w.vwap[t, tr].astype(np.float64)
        high = w.high[t, tr].astype(np.float64)
        low = w.low[t, tr].astype(np.float64)

        # campaign branches (≤ 3 per symbol): the net flow split by fixed weights, some churn
        weight = u.campaign_weights[tr]
        net = np.round((w.campaign[t, tr] / 1000.0)[:, None] * weight)
        churn = np.round(np.abs(net) * 0.1 * per[3, tr, None])
        c_buy, c_sell = np.maximum(net, 0) + churn, np.maximum(-net, 0) + churn
        c_ok = (weight > 0) & (c_buy + c_sell > 0)
        c_price = np.minimum(np.maximum(vwap * (1 + 0.002 * (per[4, tr] - 0.5)), low), high)
        c_sym, c_slot = np.nonzero(c_ok)
        c_n = c_ok.sum(axis=1)

        # noise branches: an affine walk over the prime-sized pool gives distinct ids per day
        k = MIN_NOISE_ROWS + (per[0, tr] * (MAX_NOISE_ROWS - MIN_NOISE_ROWS + 1)).astype(np.int64)
        k = np.minimum(k, np.maximum(lots.astype(np.int64) // 3, 1))  # illiquid: fewer branches
        sym = np.repeat(np.arange(m), k)
        j = np.arange(sym.size) - np.repeat(np.cumsum(k) - k, k)
        offset = (per[1, tr] * NOISE_BRANCH_POOL).astype(np.int64) + len(MAIN_FORCE_BRANCHES)
        stride = 1 + (per[2, tr] * (NOISE_BRANCH_POOL - 1)).astype(np.int64)
        noise_id = (stride[sym] * j) % NOISE_BRANCH_POOL + offset[sym]
        noise_id -= (noise_id >= len(BRANCH_IDS)) * NOISE_BRANCH_POOL
        rd = g.random((5, sym.size), dtype=np.float32)
        scale = (np.float32(0.225) * lots / k)[sym]
        # heavy-tailed weights from uniforms by arithmetic only (1/u is Pareto-like); a branch
        # trades at least a lot on each side it is active on (buys 85%, sells 85% of the time)
        n_buy = np.maximum(np.round(scale / (rd[0] + np.float32(0.05))), 1) * (rd[4] < 0.85)
        n_sell = np.maximum(np.round(scale / (rd[1] + np.float32(0.05))), 1) * (rd[4] > 0.15)
        # prices: uniform over the half of the day's range centred (in rank) on the VWAP
        base = (low + 0.5 * (vwap - low))[sym]
        span = (0.5 * (high - low))[sym]
        n_bp = base + span * rd[2]
        n_sp = base + span * rd[3]

        # interleave: each symbol's campaign rows, then its noise rows
        size = c_n + k
        start = np.cumsum(size) - size
        total = int(size.sum())
        c_pos = start[c_sym] + np.arange(c_sym.size) - (np.cumsum(c_n) - c_n)[c_sym]
        n_pos = (start + c_n)[sym] + j
        out = {
            "sym": np.empty(total, np.int64),
            "id": np.empty(total, np.int64),
            "buy": np.empty(total),
            "sell": np.empty(total),
            "bp": np.empty(total),
            "sp": np.empty(total),
        }
        c_vals = (
            tr[c_sym],
            u.campaign_brokers[tr[c_sym], c_slot],
            c_buy[c_sym, c_slot],
            c_sell[c_sym, c_slot],
            c_price[c_sym],
            c_price[c_sym],
        )
        n_vals = (tr[sym], noise_id, n_buy, n_sell, n_bp, n_sp)
        for key, cv, nv in zip(out, c_vals, n_vals, strict=True):
            out[key][c_pos] = cv
            out[key][n_pos] = nv
        buy = (out["buy"] * 1000).astype(np.int64)
        sell = (out["sell"] * 1000).astype(np.int64)
        return self._frame(
            "broker_flows",
            {
                "session": self._session_col(t, total),
                "symbol": self.symbols.gather(out["sym"]),
                "broker_id": self.branches.gather(out["id"]),
                "buy_shares": buy,
                "sell_shares": sell,
                "avg_buy_price": np.where(buy > 0, np.round(out["bp"], 2), np.nan),
                "avg_sell_price": np.where(sell > 0, np.round(out["sp"], 2), np.nan),
            },
        )

    # ---------------------------------------------------------------- margin
    def margin(self, t0: int, t1: int) -> pl.DataFrame:
        """Balances from the latent path; daily buys/sells = churn + the balance change, so
        ``balance[t] = balance[t-1] + buy - sell`` holds row to row."""
        w, n, u = self.w, self.n, self.w.universe
        draws = np.stack(
            [session_rng(w.cfg.seed, Stream.MARGIN_ROWS, t).random((2, n)) for t in range(t0, t1)]
        )
        mb = w.margin_balance[t0:t1].astype(np.int64)
        sb = w.short_balance[t0:t1].astype(np.int64)
        prev = np.maximum(t0 - 1, 0)
        mb_prev = np.concatenate([w.margin_balance[prev : prev + 1].astype(np.int64), mb[:-1]])
        sb_prev = np.concatenate([w.short_balance[prev : prev + 1].astype(np.int64), sb[:-1]])
        if t0 == 0:
            mb_prev[0], sb_prev[0] = mb[0], sb[0]
        lots = (w.volume[t0:t1] // 1000).astype(np.float64)
        m_churn = _lots(lots * 0.03 * draws[:, 0])
        s_churn = _lots(lots * 0.006 * draws[:, 1])
        dm, ds = mb - mb_prev, sb - sb_prev
        mask = w.traded[t0:t1] & u.margin_eligible[None, :]
        ti, si = np.nonzero(mask)
        cols = {
            "margin_balance": mb[ti, si],
            "short_balance": sb[ti, si],
            "margin_buy": (m_churn + np.maximum(dm, 0))[ti, si],
            "margin_sell": (m_churn + np.maximum(-dm, 0))[ti, si],
            "short_sell": (s_churn + np.maximum(ds, 0))[ti, si],
            "short_cover": (s_churn + np.maximum(-ds, 0))[ti, si],
        }
        gather = np.arange(ti.size)
        if self.faults:
            rf = w.row_faults["margin"].in_range(t0, t1)
            gather = repeat_duplicates(ti.size, locate((ti + t0) * n + si, rf.cells(DUPLICATE, n)))
        return self._frame(
            "margin",
            {
                "session": self.dates.gather(ti[gather] + t0),
                "symbol": self.symbols.gather(si[gather]),
                **{k: v[gather] for k, v in cols.items()},
            },
        )

    # ---------------------------------------------------------------- financials
    def financials(self, t0: int, t1: int) -> pl.DataFrame:
        lo, hi = np.searchsorted(self.fin_t, [t0, t1])
        return self.fin.slice(int(lo), int(hi - lo))

    # ---------------------------------------------------------------- market-wide
    def market_indicators(self, t0: int, t1: int) -> pl.DataFrame:
        w = self.w
        t = np.arange(t0, t1)
        return self._frame(
            "market_indicators",
            {"session": self.dates.gather(t), **{k: v[t0:t1] for k, v in w.indicators.items()}},
        )

    def us_market(self, t0: int, t1: int) -> pl.DataFrame:
        us = self.w.us
        lo, hi = np.searchsorted(us.session_idx, [t0, t1])
        k = len(US_PROXIES)
        rows = np.repeat(np.arange(lo, hi), k)
        col = np.tile(np.arange(k), hi - lo)
        return self._frame(
            "us_market",
            {
                "session": self.dates.gather(us.session_idx[rows]),
                "ny_date": us.ny_dates[rows],
                "symbol": self.us_symbols.gather(col),
                "open": us.open[rows, col],
                "high": us.high[rows, col],
                "low": us.low[rows, col],
                "close": us.close[rows, col],
                "volume": us.volume[rows, col],
            },
        )
