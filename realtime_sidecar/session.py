"""One session's intraday state: RCNC per symbol, the intraday signals (SPEC §7.4) and the
end-of-day aggregates (SPEC §7.5) — pure, vectorized, and independent of how the stream is cut.

``SessionState.update(accepted)`` takes a batch of ticks the ``TickGate`` accepted (arrival
order, with ``sym``) and returns the signals they raise. Everything it carries between batches
is exact, so processing a session whole or in any split into micro-batches gives the same
RCNC, the same signals and the same aggregates, bit for bit (tests/test_sidecar_session.py):

* RCNC (SPEC §7.2) is ``chip.cost_lines`` — the daily engine's cost-line maths, integer
  fixed-point sums carried for the whole session. Net flow per tick: +volume for a
  buyer-initiated big order, −volume for a seller-initiated one, 0 otherwise (big: volume >=
  the symbol's ``big_lots``); or every signed tick (``net_mode="all"``).
* Counters are integers; the RCNC slope compares with the RCNC at the end of the symbol's
  previous minute with trades (carried); the sweep window keeps the big buys of the last
  ``sweep_window_s`` seconds; edge-triggered signals carry their last condition per symbol.
* The aggregates use stored samples (per-minute RCNC closes, per-tick relative spreads), reduced
  in a fixed order at the close.

Signals (``SIGNAL_SCHEMA``; ``ts`` is the tick's exchange time; ``value`` per kind below), each
raised when its condition turns true for the symbol (not on every tick while it holds):

* ``accumulation`` — price > RCNC, RCNC rising (slope > 0) and the main force net long;
  value = slope (TWD).
* ``break`` — price < RCNC on a big sell order while RCNC falls faster than in the minute
  before (slope < 0 and below the previous minute's slope); value = slope (TWD).
* ``sweep`` — big buys within ``sweep_window_s`` reach ``sweep_lots`` (the P2 trigger); raised on
  every upward crossing; value = lots in the window.
* ``spread_wide`` — quoted spread >= ``spread_alert_ticks`` ticks; value = spread in ticks.
* ``limit_locked`` — a trade at the limit-up (value +1) or limit-down (value −1) price (needs the
  reference prices).
* ``liquidity_dry`` — a trade after >= ``dry_after_s`` seconds without one; and, live, the
  clock's check (``check_silence``) that a symbol has not traded for that long (once per
  silence); value = minutes.
* ``risk_off`` — a cross-market proxy down >= ``riskoff_move`` over ``riskoff_window_s``
  (``update_proxies``); value = the move (fraction).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import calendar, market
from quant_genesis_dagster.domain.factors import chip
from realtime_sidecar.config import BIG_LOTS, IntradaySettings

SIGNAL_SCHEMA = pl.Schema(
    {
        "session": pl.Date(),
        "ts": pl.Datetime("us", "UTC"),
        "symbol": pl.String(),
        "kind": pl.String(),
        "price": pl.Float64(),
        "rcnc": pl.Float64(),
        "value": pl.Float64(),
        "reason": pl.String(),
    }
)
SIGNAL_KINDS: tuple[str, ...] = (
    "accumulation",
    "break",
    "sweep",
    "spread_wide",
    "limit_locked",
    "liquidity_dry",
    "risk_off",
)
#: per-symbol aggregates at the close (the warehouse's intraday_eod columns)
EOD_SCHEMA = pl.Schema(
    {
        "session": pl.Date(),
        "symbol": pl.String(),
        "rcnc_close": pl.Float64(),
        "close": pl.Float64(),
        "rcnc_vol": pl.Float64(),
        "sweep_ratio": pl.Float64(),
        "liquidity_pressure": pl.Float64(),
        "big_buy_volume": pl.Int64(),
        "big_sell_volume": pl.Int64(),
        "tick_count": pl.Int64(),
    }
)
_MINUTE_US = 60_000_000
_CONTINUOUS_END_US = (4 * 3600 + 25 * 60) * 1_000_000  # 13:25: the closing call auction starts
#: symbols are packed above the µs-since-open timestamps in one int64 key (a session is < 2**35 µs)
_KEY_SHIFT = 1 << 35
_EDGE_KINDS = ("accumulation", "break", "spread_wide", "limit_up", "limit_down")


def reference_rcnc(ticks: pl.DataFrame, big_lots: int = BIG_LOTS) -> np.ndarray:
    """SPEC §7.2 written out over a whole session at once (float cumulative sums per symbol,
    the last valid value carried) — the definition ``SessionState``'s incremental RCNC is
    checked against (tests, ``benchmarks.sidecar``). Per tick, in ``ticks``' order."""
    big = pl.col("volume") >= big_lots * market.LOT_SIZE
    net = pl.when(big).then(pl.col("side").cast(pl.Int64) * pl.col("volume")).otherwise(0)
    return (
        ticks.with_columns(net=net)
        .with_columns(
            cum_net=pl.col("net").cum_sum().over("symbol"),
            cum_cost=(pl.col("price") * pl.col("net")).cum_sum().over("symbol"),
        )
        .select(
            pl.when(pl.col("cum_net") != 0)
            .then(pl.col("cum_cost") / pl.col("cum_net"))
            .forward_fill()
            .over("symbol")
        )
        .to_series()
        .to_numpy()
    )


def session_open(session: dt.date) -> dt.datetime:
    """09:00 Asia/Taipei of ``session``, in UTC."""
    tz = ZoneInfo(calendar.TIMEZONE)
    return dt.datetime.combine(session, dt.time(9, 0), tz).astimezone(dt.UTC)


class SessionState:
    """RCNC, signals and aggregates of one session over a fixed symbol list (``TickGate``'s)."""

    def __init__(
        self,
        session: dt.date,
        symbols: Sequence[str],
        settings: IntradaySettings | None = None,
        references: Mapping[str, float] | None = None,
    ):
        self.session = session
        self.symbols = tuple(symbols)
        self.settings = settings or IntradaySettings()
        n = len(self.symbols)
        st = self.settings
        self._open_us = int(session_open(session).timestamp() * 1_000_000)
        lots = [st.big_lots_by_symbol.get(s, st.big_lots) for s in self.symbols]
        self.big_shares = np.asarray(lots, dtype=np.int64) * market.LOT_SIZE
        ref = np.array([(references or {}).get(s, np.nan) for s in self.symbols], dtype=float)
        ref = np.where(ref > 0, ref, np.nan)
        self.limit_up, self.limit_down = market.limit_prices(ref, market.limit_pct([session])[0])
        # --- carried state (see the module docstring) ---
        self.cost = chip.cost_states(n)
        self.tick_count = np.zeros(n, np.int64)
        self.volume = np.zeros(n, np.int64)
        self.big_buy = np.zeros(n, np.int64)
        self.big_sell = np.zeros(n, np.int64)
        self.last_price = np.full(n, np.nan)
        self.last_t = np.full(n, -1, np.int64)  # µs since the open of the symbol's last tick
        self.silent = np.zeros(n, bool)  # check_silence reported it; cleared by its next tick
        self.minute = np.full(n, -1, np.int64)  # minute (since the open) of the last tick
        self.minute_last = np.full(n, np.nan)  # RCNC at the last tick of that minute
        self.prev_minute_close = np.full(n, np.nan)  # RCNC at the end of the minute before
        self.prev2_minute_close = np.full(n, np.nan)  # ... and of the one before that
        self.edges = {k: np.zeros(n, bool) for k in _EDGE_KINDS}
        self.last_fired = {k: np.full(n, -1, np.int64) for k in SIGNAL_KINDS}
        self._sweep = (np.empty(0, np.int64), np.empty(0, np.int64))  # (key, shares) big buys
        # growable columns: one small array per batch would cost ~100 B each, and a live feed
        # makes millions of one-tick batches
        self._minutes = Columns(sym=np.int32, minute=np.int32, rcnc=np.float64)
        self._spreads = Columns(sym=np.int32, spread=np.float64)
        self._proxies: dict[str, list[tuple[int, float]]] = {}  # symbol → [(µs epoch, price)]
        self._proxy_down: dict[str, bool] = {}
        self.proxy_rejected = 0
        self.signals: list[pl.DataFrame] = []
        self.last_rcnc = np.empty(0)

    # ----------------------------------------------------------------------------------- ticks

    def update(self, accepted: pl.DataFrame) -> pl.DataFrame:
        """Fold a batch of accepted ticks (``TickGate.admit``'s first frame) into the state;
        the signals it raises (``SIGNAL_SCHEMA``, ordered by ts, symbol, kind)."""
        if accepted.height == 0:
            return pl.DataFrame(schema=SIGNAL_SCHEMA)
        st = self.settings
        s = accepted["sym"].to_numpy().astype(np.int64)
        t = accepted["ts"].to_numpy().view(np.int64) - self._open_us
        p = accepted["price"].to_numpy()
        v = accepted["volume"].to_numpy().astype(np.int64)
        side = np.nan_to_num(accepted["side"].to_numpy().astype(float)).astype(np.int64)
        bid = accepted["bid"].to_numpy()  # NaN where null
        ask = accepted["ask"].to_numpy()
        big = v >= self.big_shares[s]
        signed = side * v
        net = signed if st.net_mode == "all" else np.where(big, signed, 0)
        cum_net0 = self.cost[0]
        lines, self.cost = chip.cost_lines(s, p, net, self.cost)
        self.last_rcnc = lines  # per tick, arrival order (the status endpoint, the tests)

        # per-symbol segments in arrival order
        o = np.argsort(s, kind="stable")
        ss, ts, ps, ls, ns, vs = s[o], t[o], p[o], lines[o], net[o], v[o]
        n_ev = ss.size
        newseg = _starts(ss)
        first = np.flatnonzero(newseg)
        seg = np.cumsum(newseg) - 1
        segsym = ss[first]
        last_ev = np.append(first[1:], n_ev) - 1
        start_of = first[seg]
        cn = np.cumsum(ns)
        cn = cn - (cn - ns)[first][seg] + cum_net0[segsym][seg]  # cum net after each tick

        # RCNC slope against the close of the symbol's previous minute with trades (ref), and
        # the previous minute's own slope (ref − ref2, ref2 = the close of the minute before)
        m = ts // _MINUTE_US
        newmin = newseg | _starts(m)
        run_start = np.maximum.accumulate(np.where(newmin, np.arange(n_ev), 0))
        first_run = run_start == start_of
        same = m[start_of] == self.minute[ss]  # the batch continues the carried minute
        c1 = np.where(same, self.prev_minute_close[ss], self.minute_last[ss])
        c2 = np.where(same, self.prev2_minute_close[ss], self.prev_minute_close[ss])
        prev_run = run_start[np.maximum(run_start - 1, 0)]  # start of the run before (if any)
        ref = np.where(first_run, c1, ls[np.maximum(run_start - 1, 0)])
        ref2 = np.where(
            first_run, c2, np.where(prev_run == start_of, c1, ls[np.maximum(prev_run - 1, 0)])
        )
        slope = ls - ref
        prev_slope = np.nan_to_num(ref - ref2, nan=0.0)  # no earlier minute: it was flat

        # closed minutes → RCNC samples (a carried minute closes when a new one starts)
        run_end = np.append(newmin[1:], True)
        run_end[last_ev] = False  # a segment's last minute stays open (carried)
        closes_carried = (self.minute[segsym] >= 0) & (m[first] != self.minute[segsym])
        cs = segsym[closes_carried]
        self._minutes.append(
            sym=np.concatenate([cs, ss[run_end]]),
            minute=np.concatenate([self.minute[cs], m[run_end]]),
            rcnc=np.concatenate([self.minute_last[cs], ls[run_end]]),
        )
        m_last = m[last_ev]
        self.prev_minute_close[segsym] = ref[last_ev]
        self.prev2_minute_close[segsym] = ref2[last_ev]
        self.minute[segsym] = m_last
        self.minute_last[segsym] = ls[last_ev]

        # spreads
        quoted = (bid > 0) & (ask >= bid) & np.isfinite(ask)
        mid = (ask + bid) / 2
        self._spreads.append(sym=s[quoted], spread=((ask - bid) / mid)[quoted])

        # counters and last values
        n = len(self.symbols)
        self.tick_count += np.bincount(s, minlength=n)
        self.volume += np.bincount(s, weights=v, minlength=n).astype(np.int64)
        buy = big & (side > 0)
        sell = big & (side < 0)
        self.big_buy += np.bincount(s, weights=np.where(buy, v, 0), minlength=n).astype(np.int64)
        self.big_sell += np.bincount(s, weights=np.where(sell, v, 0), minlength=n).astype(np.int64)
        prev_t = np.empty_like(ts)
        prev_t[1:] = ts[:-1]
        prev_t[first] = self.last_t[segsym]
        self.last_price[segsym] = ps[last_ev]
        self.last_t[segsym] = ts[last_ev]
        self.silent[segsym] = False

        # --- conditions (symbol-sorted order) -------------------------------------------------
        fired: list[tuple[str, np.ndarray, np.ndarray]] = []  # (kind, event indices, value)

        def rising(kind: str, cond: np.ndarray) -> np.ndarray:
            prev = np.empty_like(cond)
            prev[1:] = cond[:-1]
            prev[first] = self.edges[kind][segsym]
            self.edges[kind][segsym] = cond[last_ev]
            return np.flatnonzero(cond & ~prev)

        with np.errstate(invalid="ignore"):
            acc = (ps > ls) & (slope > 0) & (cn > 0)
            brk = (ps < ls) & (ns < 0) & (slope < 0) & (slope < prev_slope)
        i = rising("accumulation", acc)
        fired.append(("accumulation", i, slope[i]))
        i = rising("break", brk)
        fired.append(("break", i, slope[i]))

        bs, bo = bid[o], ask[o]
        with np.errstate(invalid="ignore"):
            spread_ticks = np.where(quoted[o], (bo - bs) / market.tick_size(bs), 0.0)
        i = rising("spread_wide", spread_ticks >= st.spread_alert_ticks - 1e-9)
        fired.append(("spread_wide", i, np.round(spread_ticks[i], 2)))
        with np.errstate(invalid="ignore"):
            up = rising("limit_up", ps >= self.limit_up[ss] - 1e-9)
            down = rising("limit_down", ps <= self.limit_down[ss] + 1e-9)
        fired.append(
            (
                "limit_locked",
                np.concatenate([up, down]),
                np.concatenate([np.ones(up.size), -np.ones(down.size)]),
            )  # fmt: skip
        )

        gap = ts - prev_t
        i = np.flatnonzero((prev_t >= 0) & (gap >= st.dry_after_s * 1_000_000))
        fired.append(("liquidity_dry", i, np.round(gap[i] / _MINUTE_US, 1)))

        i, lots = self._sweeps(ss, ts, vs, buy[o])
        fired.append(("sweep", i, lots))

        out = self._signal_frame(fired, ss, ts, ps, ls, vs, cn)
        if out.height:
            self.signals.append(out)
        return out

    def _sweeps(
        self, ss: np.ndarray, ts: np.ndarray, vs: np.ndarray, buy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Big-buy ticks whose window sum crosses ``sweep_lots`` upward; (indices, lots)."""
        st = self.settings
        window = st.sweep_window_s * 1_000_000
        threshold = st.sweep_lots * market.LOT_SIZE
        idx = np.flatnonzero(buy)
        key = ss[idx] * _KEY_SHIFT + ts[idx]
        old_key, old_v = self._sweep
        keys = np.concatenate([old_key, key])
        vols = np.concatenate([old_v, vs[idx]])
        order = np.argsort(keys, kind="stable")  # carried events first within a symbol
        keys, vols = keys[order], vols[order]
        csum = np.cumsum(vols)
        pos = np.flatnonzero(order >= old_key.size)  # the new events, in key order
        lo = np.searchsorted(keys, keys[pos] - window, side="right")
        incl = csum[pos] - np.where(lo > 0, csum[np.maximum(lo - 1, 0)], 0)
        before = incl - vols[pos]
        cross = (before < threshold) & (incl >= threshold)
        hits = idx[order[pos[cross]] - old_key.size]
        # keep what a future window can still see: newer than the symbol's last tick − window
        sym = keys // _KEY_SHIFT
        keep = keys - sym * _KEY_SHIFT > self.last_t[sym] - window
        self._sweep = (keys[keep], vols[keep])
        return hits, incl[cross] / market.LOT_SIZE

    def _signal_frame(self, fired, ss, ts, ps, ls, vs, cn) -> pl.DataFrame:
        rows = []
        st = self.settings
        for kind, idx, values in fired:
            for j, value in zip(idx.tolist(), np.asarray(values, float).tolist(), strict=True):
                sym = int(ss[j])
                t = int(ts[j])
                if self.last_fired[kind][sym] == t:  # one signal per kind, symbol and instant
                    continue
                self.last_fired[kind][sym] = t
                rows.append(
                    (kind, sym, t, float(ps[j]), float(ls[j]), value,
                     _reason(kind, st, float(ps[j]), float(ls[j]), value, int(vs[j]), int(cn[j])))
                )  # fmt: skip
        if not rows:
            return pl.DataFrame(schema=SIGNAL_SCHEMA)
        rows.sort(key=lambda r: (r[2], self.symbols[r[1]], r[0]))  # ts, symbol, kind
        kind, sym, t, price, rcnc, value, reason = zip(*rows, strict=True)
        ts = pl.Series("ts", np.asarray(t, np.int64) + self._open_us, pl.Int64)
        return pl.DataFrame(
            [
                pl.Series("session", [self.session] * len(rows), pl.Date),
                ts.cast(pl.Datetime("us", "UTC")),
                pl.Series("symbol", [self.symbols[i] for i in sym], pl.String),
                pl.Series("kind", kind, pl.String),
                pl.Series("price", price, pl.Float64),
                pl.Series("rcnc", rcnc, pl.Float64, nan_to_null=True),
                pl.Series("value", value, pl.Float64),
                pl.Series("reason", reason, pl.String),
            ]
        )

    def check_silence(self, now: dt.datetime) -> pl.DataFrame:
        """Live: the symbols that traded today but not in the last ``dry_after_s`` seconds of
        ``now`` (once per silence; continuous trading only, until 13:25), as ``liquidity_dry``
        signals stamped ``now``."""
        t = int(now.timestamp() * 1_000_000) - self._open_us
        if not 0 <= t <= _CONTINUOUS_END_US:
            return pl.DataFrame(schema=SIGNAL_SCHEMA)
        quiet = (
            (self.last_t >= 0)
            & ~self.silent
            & (t - self.last_t >= self.settings.dry_after_s * 1_000_000)
        )
        idx = np.flatnonzero(quiet)
        if idx.size == 0:
            return pl.DataFrame(schema=SIGNAL_SCHEMA)
        self.silent[idx] = True
        minutes = np.round((t - self.last_t[idx]) / _MINUTE_US, 1)
        out = pl.DataFrame(
            [
                pl.Series("session", [self.session] * idx.size, pl.Date),
                pl.Series("ts", np.full(idx.size, t + self._open_us), pl.Int64).cast(
                    pl.Datetime("us", "UTC")
                ),
                pl.Series("symbol", [self.symbols[i] for i in idx], pl.String),
                pl.Series("kind", ["liquidity_dry"] * idx.size, pl.String),
                pl.Series("price", self.last_price[idx], pl.Float64),
                pl.Series("rcnc", self.cost[2][idx], pl.Float64, nan_to_null=True),
                pl.Series("value", minutes, pl.Float64),
                pl.Series(
                    "reason",
                    [f"liquidity drying up: no trade for {m:.1f} min" for m in minutes.tolist()],
                    pl.String,
                ),  # fmt: skip
            ]
        ).sort("symbol")
        self.last_fired["liquidity_dry"][idx] = t
        self.signals.append(out)
        return out

    # --------------------------------------------------------------------------------- proxies

    def update_proxies(self, prints: pl.DataFrame) -> pl.DataFrame:
        """Fold cross-market proxy trades (``feeds.base.PROXY_SCHEMA``; quotes are ignored) into
        the risk-off check; the ``risk_off`` signals raised. Prints with a missing or
        non-positive price, or older than the proxy's last print, are skipped and counted in
        ``proxy_rejected``."""
        st = self.settings
        window = st.riskoff_window_s * 1_000_000
        trades = prints.filter(pl.col("kind") == "trade")
        rows = []
        for sym, ts, price in trades.select(
            "symbol", pl.col("ts").dt.epoch("us"), "price"
        ).iter_rows():
            if sym is None or ts is None or price is None or not (0 < price < math.inf):
                self.proxy_rejected += 1
                continue
            hist = self._proxies.setdefault(sym, [])
            if hist and ts < hist[-1][0]:
                self.proxy_rejected += 1
                continue
            hist.append((ts, price))
            # keep the last print at or before ts − window (the reference) and everything after
            while len(hist) > 1 and hist[1][0] <= ts - window:
                hist.pop(0)
            ref_ts, ref = hist[0]
            move = price / ref - 1.0
            down = move <= -st.riskoff_move
            if down and not self._proxy_down.get(sym, False):
                full = ref_ts <= ts - window
                span = st.riskoff_window_s // 60 if full else (ts - ref_ts) / _MINUTE_US
                rows.append(
                    {
                        "session": self.session,
                        "ts": dt.datetime.fromtimestamp(ts / 1e6, dt.UTC),
                        "symbol": sym,
                        "kind": "risk_off",
                        "price": price,
                        "rcnc": None,
                        "value": move,
                        "reason": f"cross-market risk-off: {sym} {move:+.2%} over the last "
                        f"{span:.0f} min (<= -{st.riskoff_move:.1%})",
                    }
                )
            self._proxy_down[sym] = down
        out = pl.DataFrame(rows, schema=SIGNAL_SCHEMA)
        if out.height:
            self.signals.append(out)
        return out

    # ----------------------------------------------------------------------------- the close

    def rcnc(self) -> dict[str, float]:
        """The current RCNC per symbol with one (TWD/share)."""
        last = self.cost[2]
        return {self.symbols[i]: float(last[i]) for i in np.flatnonzero(np.isfinite(last))}

    def eod(self) -> pl.DataFrame:
        """The end-of-day aggregates of every symbol with ticks (``EOD_SCHEMA``, by symbol):

        * ``rcnc_close`` — RCNC after the last tick (TWD/share; null if never defined);
        * ``close`` — the last trade price;
        * ``rcnc_vol`` — std / mean of the RCNC at the end of each minute with trades (null
          with fewer than 2 defined minutes);
        * ``sweep_ratio`` — big-order volume (buy + sell) / total volume;
        * ``liquidity_pressure`` — the median relative quoted spread (ask − bid) / mid;
        * ``big_buy_volume``, ``big_sell_volume`` (shares), ``tick_count``.
        """
        traded = np.flatnonzero(self.tick_count > 0)
        open_ = traded[self.minute[traded] >= 0]
        closed = self._minutes.frame()
        minutes = pl.concat(
            [
                closed,
                pl.DataFrame(
                    {"sym": open_, "minute": self.minute[open_], "rcnc": self.minute_last[open_]}
                ).cast(closed.schema),
            ]
        )
        vol = (
            minutes.filter(pl.col("rcnc").is_finite())
            .sort("sym", "minute")
            .group_by("sym", maintain_order=True)
            .agg(
                pl.when(pl.len() >= 2).then(pl.col("rcnc").std(ddof=0) / pl.col("rcnc").mean())
                .alias("rcnc_vol")
            )
        )  # fmt: skip
        spreads = self._spreads.frame()
        lp = spreads.group_by("sym").agg(pl.col("spread").median().alias("liquidity_pressure"))
        rcnc = self.cost[2][traded]
        base = pl.DataFrame(
            {
                "sym": traded.astype(np.int64),
                "session": [self.session] * traded.size,
                "symbol": [self.symbols[i] for i in traded],
                "rcnc_close": np.where(np.isfinite(rcnc), rcnc, np.nan),
                "close": self.last_price[traded],
                "sweep_ratio": (self.big_buy + self.big_sell)[traded] / self.volume[traded],
                "big_buy_volume": self.big_buy[traded],
                "big_sell_volume": self.big_sell[traded],
                "tick_count": self.tick_count[traded],
            },
            schema_overrides={"session": pl.Date},
        ).with_columns(pl.col("rcnc_close").fill_nan(None))
        return (
            base.with_columns(pl.col("sym").cast(pl.Int32))
            .join(vol, on="sym", how="left")
            .join(lp, on="sym", how="left")
            .sort("symbol")
            .select(EOD_SCHEMA.names())
            .cast(dict(EOD_SCHEMA))
        )

    def all_signals(self) -> pl.DataFrame:
        """Every signal of the session so far, ordered by ts, symbol, kind."""
        if not self.signals:
            return pl.DataFrame(schema=SIGNAL_SCHEMA)
        return pl.concat(self.signals).sort("ts", "symbol", "kind", maintain_order=True)


class Columns:
    """Append-only numeric columns in growable numpy buffers (capacity doubles)."""

    def __init__(self, **dtypes):
        self._data = {k: np.empty(1024, dtype=t) for k, t in dtypes.items()}
        self.n = 0

    def append(self, **values: np.ndarray) -> None:
        k = len(next(iter(values.values())))
        if self.n + k > len(next(iter(self._data.values()))):
            size = max(2 * (self.n + k), 1024)
            for name, arr in self._data.items():
                grown = np.empty(size, dtype=arr.dtype)
                grown[: self.n] = arr[: self.n]
                self._data[name] = grown
        for name, arr in self._data.items():
            arr[self.n : self.n + k] = values[name]
        self.n += k

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame({k: v[: self.n] for k, v in self._data.items()})


def _starts(a: np.ndarray) -> np.ndarray:
    """True where a run of equal values starts."""
    out = np.empty(a.size, bool)
    if a.size:
        out[0] = True
        np.not_equal(a[1:], a[:-1], out=out[1:])
    return out


def _reason(kind: str, st: IntradaySettings, price, rcnc, value, volume, cum_net) -> str:
    lots = volume / market.LOT_SIZE
    if kind == "accumulation":
        return (
            f"accumulation: price {price:.2f} above RCNC {rcnc:.2f}, RCNC up {value:+.3f} since "
            f"the previous minute, main force net long {cum_net / market.LOT_SIZE:,.0f} lots"
        )
    if kind == "break":
        return (
            f"break: price {price:.2f} below RCNC {rcnc:.2f} on a big sell of {lots:,.0f} lots, "
            f"RCNC down {value:+.3f} since the previous minute and falling faster"
        )
    if kind == "sweep":
        return (
            f"sweep (P2 trigger): big buys of {value:,.0f} lots within {st.sweep_window_s} s "
            f"(>= {st.sweep_lots} lots)"
        )
    if kind == "spread_wide":
        return f"liquidity: spread widened to {value:.0f} ticks (>= {st.spread_alert_ticks})"
    if kind == "limit_locked":
        where = "limit-up" if value > 0 else "limit-down"
        return f"liquidity: trading at the {where} price {price:.2f}"
    if kind == "liquidity_dry":
        return f"liquidity drying up: first trade after {value:.1f} min without one"
    raise AssertionError(kind)
