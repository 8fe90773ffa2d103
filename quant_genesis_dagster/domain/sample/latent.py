"""The latent world of the sample market, simulated once over the whole XTAI calendar.

Everything that carries state from one session to the next lives here, as dense
(sessions × symbols) arrays computed vectorized over symbols: the regime chain, the US lead,
the true exposures (chip, sentiment, value), suspensions, ex-dividend events, the planted
fault schedule, the price path (limits, ticks, ex-date drops), volumes, campaign flows and
margin balances, and the market-wide indicators. Observable rows are then cut from these
arrays per requested session (``observables``), so a session's rows never depend on the range.

Simulating from HISTORY_START to the calendar's last session regardless of the request keeps
range independence trivial; at 1,800 symbols it takes ~4 s and ~0.5 GB (float32/int32 storage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from quant_genesis_dagster.domain import calendar, market
from quant_genesis_dagster.domain.sample.config import (
    EXPOSURE_PHI,
    FACTORS,
    IDIO_VOL,
    LOADINGS,
    MARKET_DRIFT,
    MARKET_VOL,
    PANIC,
    TRANSITION,
    US_DRIFT,
    US_TO_TW_BETA,
    US_VOL,
    SampleMarketConfig,
)
from quant_genesis_dagster.domain.sample.faults import (
    INVALIDATING,
    RowFaults,
    schedule_row_faults,
)
from quant_genesis_dagster.domain.sample.rng import Stream, world_rng
from quant_genesis_dagster.domain.sample.universe import Universe, build_universe, drop_sessions
from quant_genesis_dagster.domain.warehouse.models import US_PROXIES

#: US proxies: (loading on the US common move, idiosyncratic vol, price on 2009-12-31, volume).
_US_PARAMS = {
    "SMH": (1.35, 0.006, 28.3, 6.0e6),
    "SOXX": (1.35, 0.006, 50.0, 1.5e6),
    "QQQ": (1.05, 0.004, 45.75, 5.0e7),
    "TSM": (1.25, 0.011, 11.44, 1.2e7),
    "SPY": (0.85, 0.002, 111.44, 1.2e8),
}
#: Share of the day's volume the main force trades net, per unit of chip exposure.
CAMPAIGN_INTENSITY = 0.08
MIN_LOTS = 5


@dataclass
class UsMarket:
    ny_dates: np.ndarray  # datetime64[D]
    session_idx: np.ndarray  # TW session each NY date belongs to
    open: np.ndarray  # (n_ny, 5) in US_PROXIES order
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


@dataclass
class World:
    """The simulated world. (T, N) arrays are indexed [session index, symbol index]."""

    cfg: SampleMarketConfig
    sessions: np.ndarray  # datetime64[D], the whole calendar
    universe: Universe
    drop_mask: np.ndarray  # (T,) bool: vendor-dropped daily_prices sessions
    regime: np.ndarray  # (T,) int8
    market_ret: np.ndarray  # (T,)
    exposures: dict[str, np.ndarray]  # factor -> (T, N) float32, unit variance
    traded: np.ndarray  # (T, N) bool: listed and not suspended
    ex_t: np.ndarray  # ex-dividend events, sorted by (session, symbol)
    ex_s: np.ndarray
    ex_cash: np.ndarray
    ex_stock: np.ndarray
    ref: np.ndarray  # (T, N) float32 exchange reference price (last close, ex-adjusted)
    open: np.ndarray  # (T, N) float32 prices, NaN where not traded (see ``price``)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    vwap: np.ndarray
    volume: np.ndarray  # (T, N) int32 shares
    trades: np.ndarray
    campaign: np.ndarray  # (T, N) int32 shares: main-force net buying
    margin_balance: np.ndarray  # (T, N) int32 shares, held through non-traded sessions
    short_balance: np.ndarray
    indicators: dict[str, np.ndarray]  # (T,) market-wide series
    us: UsMarket
    row_faults: dict[str, RowFaults]

    @property
    def n_sessions(self) -> int:
        return len(self.sessions)

    def listed(self, t0: int, t1: int) -> np.ndarray:
        """(t1 - t0, N) bool: listed on the session (delisted_date is the first day off)."""
        t = np.arange(t0, t1)[:, None]
        return (t >= self.universe.list_idx) & (t < self.universe.delist_idx)

    def price(self, name: str, t0: int, t1: int) -> np.ndarray:
        """Tick-grid prices of sessions [t0, t1) as float64 (stored as float32 to halve memory;
        every tick-grid price is k/100 for an integer k, so rounding restores it exactly)."""
        return np.round(getattr(self, name)[t0:t1].astype(np.float64), 2)


def _regimes(seed: int, n: int) -> np.ndarray:
    u = world_rng(seed, Stream.REGIME).random(n)
    cum = np.cumsum(TRANSITION, axis=1)
    out = np.empty(n, np.int8)
    state = 0
    for t in range(n):  # a scalar Markov chain over ~4,000 sessions
        state = int(np.searchsorted(cum[state], u[t], side="right"))
        state = min(state, 2)
        out[t] = state
    return out


def _ema(x: np.ndarray, alpha: float) -> np.ndarray:
    return lfilter([alpha], [1.0, -(1 - alpha)], x)


def _us_market(seed: int, sessions: np.ndarray, regime: np.ndarray) -> tuple[UsMarket, np.ndarray]:
    import exchange_calendars as xc

    first = sessions[0] - np.timedelta64(4, "D")  # 2009-12-31: maps to the first TW session
    nyse = xc.get_calendar("XNYS", start=str(first), end=str(sessions[-1]))
    ny = nyse.sessions.values.astype("datetime64[D]")
    ny = ny[(ny >= first) & (ny < sessions[-1])]
    idx = calendar.session_index(calendar.session_after(ny))
    rng = world_rng(seed, Stream.US)
    reg = regime[idx]
    common = US_DRIFT[reg] + US_VOL[reg] * rng.standard_normal(ny.size)
    k = len(US_PROXIES)
    load = np.array([_US_PARAMS[p][0] for p in US_PROXIES])
    idio = np.array([_US_PARAMS[p][1] for p in US_PROXIES])
    r = common[:, None] * load + idio * rng.standard_normal((ny.size, k))
    base = np.array([_US_PARAMS[p][2] for p in US_PROXIES])
    close = np.round(base * np.cumprod(1 + r, axis=0), 2)
    prev = np.vstack([base, close[:-1]])
    open_ = np.round(prev * (1 + 0.3 * r + 0.002 * rng.standard_normal((ny.size, k))), 2)
    high = np.round(
        np.maximum(open_, close) * (1 + np.abs(0.004 * rng.standard_normal((ny.size, k)))), 2
    )
    low = np.round(
        np.minimum(open_, close) * (1 - np.abs(0.004 * rng.standard_normal((ny.size, k)))), 2
    )
    vol0 = np.array([_US_PARAMS[p][3] for p in US_PROXIES])
    volume = np.round(vol0 * np.exp(0.3 * rng.standard_normal((ny.size, k)) + 10 * np.abs(r)))
    us = UsMarket(ny, idx, open_, high, low, close, volume)
    return us, np.bincount(idx, weights=common, minlength=len(sessions))


def _suspended(seed: int, listed: np.ndarray, u: Universe) -> np.ndarray:
    """Suspension spells of 1–15 sessions, ~1 start per 500 listed sessions, never inside an
    IPO's first 10 sessions (drawn as sparse events: the mask is written once)."""
    n_t, n = listed.shape
    rng = world_rng(seed, Stream.SUSPENSIONS)
    k = int(rng.binomial(n_t * n, 1 / 500))
    cell = np.unique((rng.random(k) * (n_t * n)).astype(np.int64))
    t0, s = cell // n, cell % n
    keep = listed[t0, s] & ~(u.is_ipo[s] & (t0 < u.list_idx[s] + 10))
    t0, s = t0[keep], s[keep]
    length = np.minimum(1 + rng.geometric(0.3, size=t0.size), 15)
    t = np.repeat(t0, length) + (
        np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    )
    s = np.repeat(s, length)
    ok = t < n_t
    out = np.zeros((n_t, n), bool)
    out[t[ok], s[ok]] = True
    return out


def _ex_dates(seed: int, sessions: np.ndarray, ok: np.ndarray, u: Universe):
    """One ex-date per payer and year (mostly Jun–Sep) on a session where the symbol trades."""
    n_t, n = ok.shape
    idx = np.where(ok, np.arange(n_t, dtype=np.int32)[:, None], np.int32(n_t))
    nxt = np.minimum.accumulate(idx[::-1], axis=0)[::-1]
    del idx
    years = sessions.astype("datetime64[Y]")
    ts, ss, yields, stocks = [], [], [], []
    for year in np.unique(years):  # a handful of years
        rng = world_rng(seed, Stream.DIVIDENDS, int(year.astype(int)))
        summer = rng.random(n) < 0.9
        offset = np.where(summer, 151 + rng.integers(0, 122, n), 14 + rng.integers(0, 330, n))
        target = year.astype("datetime64[D]") + offset.astype("timedelta64[D]")
        t_target = np.minimum(np.searchsorted(sessions, target), n_t - 1)
        t_ex = nxt[t_target, np.arange(n)].astype(np.int64)
        t_safe = np.minimum(t_ex, n_t - 1)
        valid = (
            u.dividend_payer
            & (t_ex < n_t)
            & (t_ex >= u.list_idx + 250)
            & (t_ex < u.delist_idx)
            & (t_ex >= 5)
            & (years[t_safe] == year)
        )
        y = u.dividend_yield * rng.uniform(0.7, 1.3, n)
        stock = np.where(rng.random(n) < 0.15, rng.choice([0.02, 0.05, 0.1, 0.15, 0.2], n), 0.0)
        y = np.where((stock > 0) & (rng.random(n) < 0.3), 0.0, y)  # some pay only in stock
        s = np.flatnonzero(valid)
        ts.append(t_ex[s])
        ss.append(s)
        yields.append(y[s])
        stocks.append(stock[s])
    t_all, s_all = np.concatenate(ts), np.concatenate(ss)
    order = np.lexsort((s_all, t_all))
    return t_all[order], s_all[order], np.concatenate(yields)[order], np.concatenate(stocks)[order]


def _evolve(
    cfg: SampleMarketConfig,
    u: Universe,
    sessions: np.ndarray,
    regime: np.ndarray,
    market_ret: np.ndarray,
    traded: np.ndarray,
    invalid_t: np.ndarray,
    invalid_s: np.ndarray,
    ex: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> dict[str, np.ndarray]:
    """The session recursion: exposures, returns, bars under Taiwan rules, margin balances.

    One step per session (~4,000), each vectorized over symbols. ``fair`` is the fair value,
    moved every listed session (suspended too) by the next-session return model
    ``beta × market + Σ λ_k(regime[t-1]) × exposure_k[t-1] + idio``. The traded close is ``fair``
    on the tick grid, clipped to the exchange band around the reference price (last close,
    ex-adjusted) and to the band around the last *valid* close (the one the cleaner compares
    with after a rejected print or a dropped session); open, high and low stay in the same band.
    IPOs have no band for their first five sessions.
    """
    n_t, n = traded.shape
    ex_t, ex_s, ex_yield, ex_stock = ex
    rng = world_rng(cfg.seed, Stream.RETURNS)
    rng_bars = world_rng(cfg.seed, Stream.BARS)
    pct = market.limit_pct(sessions)
    phi = np.array([EXPOSURE_PHI[k] for k in FACTORS])[:, None]
    innov = np.sqrt(1 - phi**2)
    lam = cfg.signal_strength * np.stack([LOADINGS[k] for k in FACTORS], axis=1)  # (regime, k)
    idio = IDIO_VOL[:, None] * u.vol_mult[None, :]
    volume_bump = np.array([0.0, 0.15, 0.35])
    panic = _ema((regime == PANIC).astype(float), 0.1)
    eligible = u.margin_eligible
    margin_lots = u.adv_lots

    f32 = {
        k: np.empty((n_t, n), np.float32) for k in ("open", "high", "low", "close", "vwap", "ref")
    }
    i32 = {
        k: np.empty((n_t, n), np.int32)
        for k in ("volume", "trades", "campaign", "margin_balance", "short_balance")
    }
    exposures = {k: np.empty((n_t, n), np.float32) for k in FACTORS}
    ex_cash = np.zeros(ex_t.size)

    x = np.zeros((3, n))
    noise = np.zeros(n)
    alpha = np.zeros(n)
    last_close = u.price0.copy()
    last_valid = u.price0.copy()
    fair = u.price0.copy()
    anchor = u.price0.copy()
    mb = np.zeros(n)
    sb = np.zeros(n)
    no_limit_until = np.where(u.is_ipo, u.list_idx + 5, -1)
    ipo_pop = np.exp(rng.normal(0.12, 0.15, n))
    ex_bounds = np.searchsorted(ex_t, np.arange(n_t + 1))
    inv_bounds = np.searchsorted(invalid_t, np.arange(n_t + 1))
    valid_now = np.ones(n, bool)
    for t in range(n_t):
        z = rng.standard_normal((5, n))
        x = z[:3] if t == 0 else phi * x + innov * z[:3]
        noise = z[4] if t == 0 else 0.9 * noise + 0.43589 * z[4]
        e0, e1 = ex_bounds[t], ex_bounds[t + 1]
        if e1 > e0:
            s = ex_s[e0:e1]
            cash = np.round(ex_yield[e0:e1] * last_close[s], 2)
            ex_cash[e0:e1] = cash
            div = 1 + ex_stock[e0:e1]
            last_close[s] = (last_close[s] - cash) / div
            last_valid[s] = (last_valid[s] - cash) / div
            new_fair = np.maximum(fair[s] - cash, 0.5 * fair[s]) / div
            anchor[s] *= new_fair / fair[s]
            fair[s] = new_fair
        # Mean reversion towards the market-implied anchor keeps 16 years of idiosyncratic
        # noise from drifting prices to pennies (half-life ~460 sessions; a weak reversal).
        m = market_ret[t]
        ret = u.beta * m + alpha + idio[regime[t]] * z[3] - 0.0015 * np.log(fair / anchor)
        fair *= np.maximum(1 + ret, 0.5)
        anchor *= 1 + u.beta * m
        new = np.flatnonzero(u.is_ipo & (u.list_idx == t))
        if new.size:
            fair[new] = u.price0[new] * ipo_pop[new]
            anchor[new] = fair[new]
            last_close[new] = u.price0[new]
            last_valid[new] = u.price0[new]

        # the day's band
        tr = traded[t]
        up, dn = market.limit_prices(last_close, pct[t])
        diff = np.flatnonzero((last_valid != last_close) & tr)
        if diff.size:
            upv, dnv = market.limit_prices(last_valid[diff], pct[t])
            up_d, dn_d = np.minimum(up[diff], upv), np.maximum(dn[diff], dnv)
            empty = dn_d > up_d
            up[diff] = np.where(empty, upv, up_d)
            dn[diff] = np.where(empty, dnv, dn_d)
        free = t < no_limit_until
        up = np.where(free, np.inf, up)
        dn = np.where(free, 0.01, dn)

        # the bar: close from the fair value, open part-way, high/low around them, all in band
        ref = last_close
        c = np.maximum(np.clip(market.round_to_tick(fair), dn, up), 0.01)
        zb = rng_bars.standard_normal((5, n))
        ub = rng_bars.random((3, n))
        move = np.log(c / ref)
        o = ref * np.exp(0.5 * move + 0.006 * zb[0])
        o = np.clip(market.round_to_tick(np.clip(o, dn, up)), dn, up)
        top, bottom = np.maximum(o, c), np.minimum(o, c)
        h = market.round_to_tick(np.minimum(top * (1 + np.abs(0.008 * zb[1])), up))
        h = np.maximum(np.minimum(h, up), top)
        lo = market.round_to_tick(np.maximum(bottom * (1 - np.abs(0.008 * zb[2])), dn))
        lo = np.minimum(np.maximum(lo, dn), bottom)
        vwap = np.clip((h + lo + 2 * c) / 4 * (1 + 0.002 * zb[3]), lo, h)
        lots = np.maximum(
            np.round(u.adv_lots * np.exp(0.35 * zb[4] + 5 * np.abs(move) + volume_bump[regime[t]])),
            MIN_LOTS,
        )
        odd = np.where(ub[0] < 0.03, np.floor(1 + 999 * ub[1]), 0)
        campaign = np.clip(np.round(CAMPAIGN_INTENSITY * x[0] * lots), -0.3 * lots, 0.3 * lots)
        for k, v in (("open", o), ("high", h), ("low", lo), ("close", c), ("vwap", vwap)):
            f32[k][t] = np.where(tr, v, np.nan)
        f32["ref"][t] = ref
        i32["volume"][t] = np.where(tr, lots * 1000 + odd, 0)
        i32["trades"][t] = np.where(tr, np.maximum(1, np.round(lots * (0.3 + 0.4 * ub[2]))), 0)
        i32["campaign"][t] = np.where(tr, np.round(campaign) * 1000, 0)
        for i, k in enumerate(FACTORS):
            exposures[k][t] = x[i]

        last_close = np.where(tr, c, last_close)
        valid_now[:] = True
        valid_now[invalid_s[inv_bounds[t] : inv_bounds[t + 1]]] = False
        last_valid = np.where(tr & valid_now, c, last_valid)
        # Margin: retail crowding (= −sentiment) drives margin buying; panics force margin
        # liquidations and attract shorts. Balances move only on traded sessions.
        crowd = -x[1]
        upd = tr & eligible
        m_target = margin_lots * 2.5 * np.exp(0.25 * crowd + 0.05 * noise) * (1 - 0.35 * panic[t])
        s_target = margin_lots * 0.35 * np.exp(-0.2 * crowd + 0.6 * panic[t] + 0.1 * noise)
        mb = np.where(upd, np.round(m_target) * 1000, mb)
        sb = np.where(upd, np.round(s_target) * 1000, sb)
        i32["margin_balance"][t] = mb
        i32["short_balance"][t] = sb
        alpha = lam[regime[t]] @ x
    return {**f32, **i32, "ex_cash": ex_cash, "exposures": exposures}


def _indicators(seed: int, regime: np.ndarray, market_ret: np.ndarray) -> dict[str, np.ndarray]:
    """TAIEX, a VIXTWN-like index, TXO put/call and TX foreign net OI, noisy in the regime."""
    n_t = len(regime)
    rng = world_rng(seed, Stream.INDICATORS)
    z = rng.standard_normal((3, n_t))
    vix_level = np.array([14.0, 21.0, 32.0])[regime]
    oi_level = np.array([20_000.0, -5_000.0, -40_000.0])[regime]
    vix = np.empty(n_t)
    oi = np.empty(n_t)
    v, o = vix_level[0], oi_level[0]
    for t in range(n_t):  # scalar recursions over ~4,000 sessions
        m = market_ret[t]
        v = v + 0.12 * (vix_level[t] - v) + 120 * max(-m, 0.0) - 20 * max(m, 0.0) + 0.8 * z[0, t]
        v = min(max(v, 9.0), 80.0)
        o = 0.95 * o + 0.05 * oi_level[t] + 3_000 * z[1, t]
        vix[t], oi[t] = v, o
    pcr = np.clip(np.array([0.85, 1.0, 1.3])[regime] + 0.12 * z[2], 0.4, 2.5)
    return {
        "taiex_close": np.round(8_188.11 * np.cumprod(1 + market_ret), 2),
        "vixtwn": np.round(vix, 2),
        "put_call_ratio": np.round(pcr, 4),
        "tx_foreign_net_oi": np.round(oi),
    }


def simulate(cfg: SampleMarketConfig) -> World:
    """Simulate the latent world over the whole XTAI calendar."""
    seed = cfg.seed
    sessions = calendar.session_array()
    n_t = len(sessions)
    u = build_universe(cfg, sessions)
    t_col = np.arange(n_t)[:, None]
    listed = (t_col >= u.list_idx[None, :]) & (t_col < u.delist_idx[None, :])
    drop_mask = np.zeros(n_t, bool)
    drop_mask[drop_sessions(seed, n_t)] = True

    regime = _regimes(seed, n_t)
    us, us_common = _us_market(seed, sessions, regime)
    z = world_rng(seed, Stream.MARKET).standard_normal(n_t)
    market_ret = US_TO_TW_BETA * us_common + MARKET_DRIFT[regime] + MARKET_VOL[regime] * z

    traded = listed & ~_suspended(seed, listed, u)
    del listed
    ex = _ex_dates(seed, sessions, traded & ~drop_mask[:, None], u)
    ex_mask = np.zeros(traded.shape, bool)
    ex_mask[ex[0], ex[1]] = True
    settled = (t_col >= u.list_idx[None, :] + 5) & (t_col >= 5) & traded
    eligible = {
        "daily_prices": settled & ~drop_mask[:, None] & ~ex_mask,
        "institutional_flows": settled,
        "margin": settled & u.margin_eligible[None, :],
    }
    del ex_mask, settled
    row_faults = schedule_row_faults(world_rng(seed, Stream.FAULTS), eligible, cfg.fault_rate)
    del eligible
    # Cells the cleaner will not accept as a valid close: rejected prints and dropped sessions.
    pf = row_faults["daily_prices"]
    bad = np.isin(pf.kind, list(INVALIDATING))
    drop_t = np.flatnonzero(drop_mask)
    inv_t = np.concatenate([pf.t[bad], np.repeat(drop_t, u.n)])
    inv_s = np.concatenate([pf.s[bad], np.tile(np.arange(u.n), drop_t.size)])
    order = np.argsort(inv_t, kind="stable")

    path = _evolve(cfg, u, sessions, regime, market_ret, traded, inv_t[order], inv_s[order], ex)
    indicators = _indicators(seed, regime, market_ret)
    indicators["margin_total"] = _margin_total(path, traded, u)
    return World(
        cfg=cfg,
        sessions=sessions,
        universe=u,
        drop_mask=drop_mask,
        regime=regime,
        market_ret=market_ret,
        traded=traded,
        ex_t=ex[0],
        ex_s=ex[1],
        ex_stock=ex[3],
        indicators=indicators,
        us=us,
        row_faults=row_faults,
        **path,
    )


def _margin_total(path: dict[str, np.ndarray], traded: np.ndarray, u: Universe) -> np.ndarray:
    """Market margin balance in TWD: Σ balance × last traded close over listed symbols."""
    n_t, n = traded.shape
    out = np.empty(n_t)
    last = u.price0.copy()
    for t0 in range(0, n_t, 256):  # chunks of sessions bound the temporaries
        t1 = min(t0 + 256, n_t)
        close = path["close"][t0:t1].astype(np.float64)
        rows = np.arange(t0, t1)[:, None]
        listed = (rows >= u.list_idx) & (rows < u.delist_idx)
        # carry the last close through suspensions (a running "last valid" per column)
        idx = np.where(traded[t0:t1], np.arange(t1 - t0)[:, None], -1)
        idx = np.maximum.accumulate(idx, axis=0)
        carried = np.where(idx >= 0, close[np.maximum(idx, 0), np.arange(n)], last)
        last = carried[-1]
        balance = path["margin_balance"][t0:t1].astype(np.float64)
        out[t0:t1] = np.where(listed, balance * carried, 0.0).sum(axis=1)
    return np.round(out)
