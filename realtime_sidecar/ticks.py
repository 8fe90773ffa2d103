"""Ticks at the sidecar's boundary: the project's tick columns, and the gate every feed's ticks
pass before they count (SPEC §7.5).

A feed converts vendor ticks to ``TICK_SCHEMA`` (UTC timestamps, shares, TWD; ``side`` +1
buyer-initiated, −1 seller-initiated, 0 unknown; ``simtrade`` true for a trial-match print) and
hands batches to ``TickGate.admit``, which splits them into accepted ticks and rejected ones with
a reason. Bad ticks never raise: they are counted by reason (``TickGate.rejected``).

Reasons, the first that applies, in this order:

* ``missing_value`` — null/NaN timestamp, symbol, price or volume;
* ``trial_match`` — a simtrade (試撮) print, not a trade;
* ``unknown_symbol`` — not in the session's universe;
* ``non_positive_price`` — price <= 0 (or inf);
* ``non_positive_volume`` — volume <= 0;
* ``outside_session`` — before 09:00 or after 13:30 Asia/Taipei of the gate's session;
* ``stale`` — older than ``now − max_lag`` when the caller passes ``now`` (live feeds);
* ``out_of_order`` — earlier than a tick of the same symbol already accepted;
* ``duplicate`` — the same (ts, price, volume, side) as a tick of the same symbol already
  accepted (a re-sent tick after a reconnect; two genuine prints identical to the microsecond
  are taken as one).

The order-dependent reasons use the gate's state (per symbol: the ticks accepted at its last
accepted timestamp), so any split of a stream into batches accepts and rejects the same ticks.
Everything is vectorized (numpy): a tick is out of order when its timestamp is below the running
maximum of its symbol's earlier ticks (rejected ticks never raise that maximum, so the running
maximum over all of them equals the one over the accepted ones), and a duplicate when its key
already occurred among the in-order ticks (equal keys share a timestamp, so only the ticks at the
last accepted timestamp need carrying).

Accepted ticks come back with ``sym``, the symbol's index in ``TickGate.symbols`` (UInt32), which
indexes the per-symbol state arrays downstream.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import calendar

TICK_SCHEMA = pl.Schema(
    {
        "ts": pl.Datetime("us", "UTC"),
        "symbol": pl.String(),
        "price": pl.Float64(),
        "volume": pl.Int64(),
        "side": pl.Int8(),
        "bid": pl.Float64(),
        "ask": pl.Float64(),
        "simtrade": pl.Boolean(),
    }
)
REJECT_REASONS: tuple[str, ...] = (
    "missing_value",
    "trial_match",
    "unknown_symbol",
    "non_positive_price",
    "non_positive_volume",
    "outside_session",
    "stale",
    "out_of_order",
    "duplicate",
)
_SHIFT = 1 << 35  # symbol index above the µs since the open in one int64 key
_NAT = np.iinfo(np.int64).min


def _floats(col: pl.Series) -> np.ndarray:
    """A numeric column as numpy (float64 with NaN for nulls when it has any)."""
    arr = col.to_numpy()
    return arr.astype(np.float64) if arr.dtype.kind != "f" else arr


_OPEN, _CLOSE = dt.time(9, 0), dt.time(13, 30)


@dataclass
class TickGate:
    """Validates one session's ticks batch by batch; carries what ordering needs."""

    session: dt.date
    symbols: Sequence[str]
    max_lag: dt.timedelta = dt.timedelta(seconds=30)
    rejected: Counter = field(default_factory=Counter)
    accepted: int = 0

    def __post_init__(self) -> None:
        self.symbols = tuple(dict.fromkeys(self.symbols))
        self.enum = pl.Enum(self.symbols)
        tz = ZoneInfo(calendar.TIMEZONE)
        self._open = dt.datetime.combine(self.session, _OPEN, tz).astimezone(dt.UTC)
        self._close = dt.datetime.combine(self.session, _CLOSE, tz).astimezone(dt.UTC)
        self._open_us = int(self._open.timestamp() * 1_000_000)
        self._close_us = int(self._close.timestamp() * 1_000_000)
        # per symbol: the last accepted timestamp (µs since the open; −1 none) and the keys
        # (price, volume, side) of the ticks accepted at it
        self._last_t = np.full(len(self.symbols), -1, np.int64)
        self._last_keys: dict[int, set[tuple]] = {}

    def admit(
        self,
        batch: pl.DataFrame,
        now: dt.datetime | None = None,
        *,
        now_us: np.ndarray | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(accepted ticks in arrival order with ``sym``, rejected ticks with a ``reason``).

        ``now``: the clock reading for the stale check (None: no check, a replay); ``now_us``
        instead gives one per tick (µs since the epoch, −1: none) — a restart replaying many
        journaled batches, each with its own reading, in one call."""
        df = batch
        if df.schema != TICK_SCHEMA:
            df = df.select([pl.col(c).cast(t, strict=False) for c, t in TICK_SCHEMA.items()])
        sym_s = df["symbol"].cast(self.enum, strict=False).to_physical().cast(pl.UInt32)
        code = np.zeros(df.height, np.int8)  # 0 accepted, else 1 + index into REJECT_REASONS

        def mark(reason: str, cond: np.ndarray) -> None:
            code[(code == 0) & cond] = REJECT_REASONS.index(reason) + 1

        # numpy views of the columns (polars Series methods cost ~0.1 ms each on small batches)
        ts_raw = df["ts"].to_numpy().view(np.int64)  # NaT (null) is the int64 minimum
        p = df["price"].to_numpy()  # float, NaN where null
        v = _floats(df["volume"])
        missing = (ts_raw == _NAT) | np.isnan(p) | np.isnan(v)
        if df["symbol"].null_count():
            missing |= df["symbol"].is_null().to_numpy()
        mark("missing_value", missing)
        sim = df["simtrade"]
        mark("trial_match", sim.fill_null(False).to_numpy() if sim.null_count() else sim.to_numpy())
        if sym_s.null_count():
            mark("unknown_symbol", sym_s.is_null().to_numpy())
        mark("non_positive_price", ~(p > 0) | np.isinf(p))
        mark("non_positive_volume", v <= 0)
        t = ts_raw
        mark("outside_session", (t < self._open_us) | (t > self._close_us))
        lag_us = int(self.max_lag.total_seconds() * 1_000_000)
        if now is not None:
            mark("stale", t < int(now.timestamp() * 1_000_000) - lag_us)
        elif now_us is not None:
            mark("stale", (now_us >= 0) & (t < now_us - lag_us))
        sym = np.nan_to_num(_floats(sym_s)).astype(np.int64)
        self._order_and_duplicates(code, sym, t - self._open_us, p, v, _floats(df["side"]))
        ok = code == 0
        if ok.all():
            accepted = df.with_columns(sym=sym_s)
            rejected = df.head(0).with_columns(reason=pl.lit(None, pl.String))
        else:
            bad = code[~ok]
            for k, count in enumerate(np.bincount(bad, minlength=len(REJECT_REASONS) + 1)):
                if k and count:
                    self.rejected[REJECT_REASONS[k - 1]] += int(count)
            keep = pl.Series(ok)
            accepted = df.with_columns(sym=sym_s).filter(keep)
            reasons = pl.Series("reason", np.array(REJECT_REASONS, dtype=object)[bad - 1],
                                dtype=pl.String)  # fmt: skip
            rejected = df.filter(~keep).with_columns(reasons)
        self.accepted += accepted.height
        return accepted, rejected

    def _order_and_duplicates(
        self,
        code: np.ndarray,
        sym: np.ndarray,
        t: np.ndarray,
        p: np.ndarray,
        v: np.ndarray,
        side: np.ndarray,
    ) -> None:
        """Mark out-of-order and duplicate ticks among the valid ones (``code`` == 0), in
        arrival order, against the carried state; then update it."""
        valid = np.flatnonzero(code == 0)
        if valid.size == 0:
            return
        s, tt = sym[valid], t[valid]  # tt: µs since the open, in [0, 2**35)
        o = np.argsort(s, kind="stable")
        ss, ts = s[o], tt[o]
        key = ss * _SHIFT + ts
        newseg = np.empty(ss.size, bool)
        newseg[0] = True
        np.not_equal(ss[1:], ss[:-1], out=newseg[1:])
        # running maximum of the symbol's earlier ticks, starting from the carried last one
        carried = ss * _SHIFT + self._last_t[ss]  # −1 (nothing yet) stays below every tick
        run = np.maximum.accumulate(np.maximum(key, np.where(newseg, carried, key)))
        prior = carried.copy()
        prior[1:] = np.where(newseg[1:], carried[1:], run[:-1])
        ooo = key < prior
        # duplicates: equal (symbol, ts, price, volume, side) among the in-order ticks
        vol = v[valid][o].astype(np.int64)
        side = np.nan_to_num(side[valid][o]).astype(np.int64)
        pp = p[valid][o]
        inord = np.flatnonzero(~ooo)
        by = np.lexsort((inord, side[inord], vol[inord], pp[inord], key[inord]))
        srt = inord[by]
        same = (key[srt][1:] == key[srt][:-1]) & (pp[srt][1:] == pp[srt][:-1]) & (
            vol[srt][1:] == vol[srt][:-1]) & (side[srt][1:] == side[srt][:-1])  # fmt: skip
        dup = np.zeros(ss.size, bool)
        dup[srt[1:][same]] = True
        # ... and against the ticks accepted at the symbol's carried last timestamp
        at_last = np.flatnonzero(~ooo & ~dup & (ts == self._last_t[ss]))
        for i in at_last.tolist():
            seen = self._last_keys.get(int(ss[i]))
            if seen and (float(pp[i]), int(vol[i]), int(side[i])) in seen:
                dup[i] = True
        # carried state: each symbol's last accepted timestamp and the keys accepted at it
        acc = np.flatnonzero(~ooo & ~dup)
        if acc.size:
            a_s, a_t = ss[acc], ts[acc]
            last = np.append(a_s[1:] != a_s[:-1], True)
            for sym_i, t_last in zip(a_s[last].tolist(), a_t[last].tolist(), strict=True):
                if t_last != self._last_t[sym_i]:
                    self._last_keys[sym_i] = set()
                    self._last_t[sym_i] = t_last
            top = acc[ts[acc] == self._last_t[ss[acc]]]
            for i in top.tolist():
                self._last_keys[int(ss[i])].add((float(pp[i]), int(vol[i]), int(side[i])))
        marks = np.where(ooo, REJECT_REASONS.index("out_of_order") + 1,
                         np.where(dup, REJECT_REASONS.index("duplicate") + 1, 0))  # fmt: skip
        back = np.empty_like(marks)
        back[o] = marks
        code[valid] = back.astype(np.int8)
