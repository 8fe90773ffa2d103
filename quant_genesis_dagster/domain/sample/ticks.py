"""Intraday tick stream of one sample-market session, consistent with the day's bar.

Per traded symbol: 4–400 ticks (about half the day's trade count). The first tick is the opening
auction at 09:00:00 at the open, the last the closing auction at 13:30:00 at the close; in between
the price follows a noisy path through the day's high and low (both touched), on the tick grid.
Tick volumes are whole lots, heavy-tailed, and sum to the day's volume (odd-lot shares and the
rounding remainder go to the closing auction). Side follows the tick rule, except big orders
(≥ ``BIG_LOTS`` lots), whose side leans with the day's main-force campaign: buyer-initiated when
the campaign accumulates, seller-initiated when it distributes. Quotes are one tick wide, the
trade at the ask for buyer-initiated ticks and at the bid for seller-initiated ones.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import market
from quant_genesis_dagster.domain.sample.latent import World
from quant_genesis_dagster.domain.sample.rng import Stream, session_rng

BIG_LOTS = 50
MAX_TICKS = 400
TICK_SCHEMA = pl.Schema(
    {
        "ts": pl.Datetime("us", "UTC"),
        "symbol": pl.String(),
        "price": pl.Float64(),
        "volume": pl.Int64(),
        "side": pl.Int8(),
        "bid": pl.Float64(),
        "ask": pl.Float64(),
        "is_big": pl.Boolean(),
    }
)
_OPEN_UTC = np.timedelta64(1, "h")  # 09:00 Asia/Taipei
_CONTINUOUS_US = (4 * 3600 + 25 * 60 - 1) * 1_000_000  # 09:00:01 → 13:25:00
_CLOSE_UTC = np.timedelta64(5 * 3600 + 30 * 60, "s")  # 13:30 Asia/Taipei


def build_ticks(world: World, t: int) -> pl.DataFrame:
    """All ticks of session index ``t``, sorted by (ts, symbol)."""
    rng = session_rng(world.cfg.seed, Stream.TICKS, t)
    s_idx = np.flatnonzero(world.traded[t])
    if s_idx.size == 0:
        return pl.DataFrame(schema=TICK_SCHEMA)
    o, h, lo, c = (world.price(k, t, t + 1)[0, s_idx] for k in ("open", "high", "low", "close"))
    volume = world.volume[t, s_idx].astype(np.int64)
    lots, odd = volume // 1000, volume % 1000
    campaign = world.campaign[t, s_idx].astype(np.float64)
    n = np.clip(np.round(world.trades[t, s_idx] * 0.5), 4, MAX_TICKS).astype(np.int64)
    n = np.minimum(n, lots)
    m = s_idx.size
    total = int(n.sum())
    sym = np.repeat(np.arange(m), n)
    start = np.cumsum(n) - n
    j = np.arange(total) - start[sym]
    last = n[sym] - 1
    tau = j / last

    # price path: open → (high, low in random order) → close, plus bridge noise
    t_h, t_l = rng.uniform(0.05, 0.95, m), rng.uniform(0.05, 0.95, m)
    hi_first = t_h < t_l
    ta, tb = np.minimum(t_h, t_l)[sym], np.maximum(t_h, t_l)[sym]
    xa = np.where(hi_first, h, lo)[sym]
    xb = np.where(hi_first, lo, h)[sym]
    oo, cc = o[sym], c[sym]
    path = np.where(
        tau <= ta,
        oo + (xa - oo) * tau / ta,
        np.where(
            tau <= tb,
            xa + (xb - xa) * (tau - ta) / (tb - ta),
            xb + (cc - xb) * (tau - tb) / (1 - tb),
        ),
    )
    span = (h - lo)[sym]
    path += 0.25 * span * np.sqrt(tau * (1 - tau)) * rng.standard_normal(total)
    hh, ll = h[sym], lo[sym]
    price = np.clip(market.round_to_tick(np.clip(path, ll, hh)), ll, hh)
    i_h = np.clip(np.round(t_h * (n - 1)), 1, n - 2).astype(np.int64)
    i_l = np.clip(np.round(t_l * (n - 1)), 1, n - 2).astype(np.int64)
    i_l = np.where(i_l == i_h, np.where(i_h + 1 <= n - 2, i_h + 1, i_h - 1), i_l)
    price[start + i_h] = h
    price[start + i_l] = lo
    price[start] = o
    price[start + n - 1] = c

    # volumes: at least one lot each, heavy-tailed, summing to the day's lots
    weight = np.exp(rng.standard_normal(total))
    wsum = np.bincount(sym, weights=weight, minlength=m)
    vol_lots = 1 + np.floor(weight / wsum[sym] * (lots - n)[sym]).astype(np.int64)
    remainder = lots - np.bincount(sym, weights=vol_lots, minlength=m).astype(np.int64)
    vol_lots[start + n - 1] += remainder
    vol = vol_lots * 1000
    vol[start + n - 1] += odd
    is_big = vol_lots >= BIG_LOTS

    # side: tick rule, ties random; big orders lean with the campaign
    dp = np.diff(price, prepend=price[0])
    dp[start] = 0.0
    side = np.where(dp > 0, 1, np.where(dp < 0, -1, np.where(rng.random(total) < 0.5, 1, -1)))
    lean = 0.5 + 0.45 * np.tanh(10 * campaign / np.maximum(volume, 1))
    big_side = np.where(rng.random(total) < lean[sym], 1, -1)
    side = np.where(is_big, big_side, side).astype(np.int8)
    below = np.round(price - market.tick_size(price - 1e-6), 2)
    above = np.round(price + market.tick_size(price), 2)
    bid = np.where(side > 0, np.maximum(below, 0.01), price)
    ask = np.where(side > 0, price, above)

    # timestamps: opening auction, continuous trading sorted per symbol, closing auction
    u = rng.random(total)
    u_sorted = u[np.lexsort((u, sym))]
    offset_us = (1_000_000 + u_sorted * _CONTINUOUS_US).astype(np.int64)
    offset_us[start] = 0
    day = np.datetime64(world.sessions[t], "us") + _OPEN_UTC
    ts = day + offset_us.astype("timedelta64[us]")
    ts[start + n - 1] = np.datetime64(world.sessions[t], "us") + _CLOSE_UTC
    symbols = pl.Series(world.universe.symbols[s_idx].tolist(), dtype=pl.String)
    return (
        pl.DataFrame(
            {
                "ts": ts,
                "symbol": symbols.gather(sym),
                "price": price,
                "volume": vol,
                "side": side,
                "bid": bid,
                "ask": ask,
                "is_big": is_big,
            }
        )
        .with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
        .sort(["ts", "symbol"], maintain_order=True)
        .cast(dict(TICK_SCHEMA))
    )
