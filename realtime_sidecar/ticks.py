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

The order-dependent reasons use the gate's state (per symbol: the last accepted timestamp and the
ticks accepted at it), so any split of a stream into batches accepts and rejects the same ticks.
The per-row reasons are vectorized; the order-dependent pass is a plain loop over the ticks that
survive them (to be measured by ``benchmarks.sidecar``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

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
_KEY = ("ts", "price", "volume", "side")
_OPEN, _CLOSE = dt.time(9, 0), dt.time(13, 30)


@dataclass
class TickGate:
    """Validates one session's ticks batch by batch; carries what ordering needs."""

    session: dt.date
    symbols: Iterable[str]
    max_lag: dt.timedelta = dt.timedelta(seconds=30)
    rejected: Counter = field(default_factory=Counter)
    accepted: int = 0
    #: symbol → (last accepted ts in µs since the epoch, keys accepted at that ts)
    _last: dict[str, tuple[int, set[tuple]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.symbols = frozenset(self.symbols)
        tz = ZoneInfo(calendar.TIMEZONE)
        self._open = dt.datetime.combine(self.session, _OPEN, tz).astimezone(dt.UTC)
        self._close = dt.datetime.combine(self.session, _CLOSE, tz).astimezone(dt.UTC)

    def admit(
        self, batch: pl.DataFrame, now: dt.datetime | None = None
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(accepted ticks in arrival order, rejected ticks with a ``reason`` column)."""
        df = batch.select([pl.col(c).cast(t, strict=False) for c, t in TICK_SCHEMA.items()])
        df = df.with_row_index("_i")
        reason = pl.when(
            pl.any_horizontal(pl.col(c).is_null() for c in ("ts", "symbol", "price", "volume"))
            | pl.col("price").is_nan()
        ).then(pl.lit("missing_value"))
        reason = reason.when(pl.col("simtrade").fill_null(False)).then(pl.lit("trial_match"))
        reason = reason.when(~pl.col("symbol").is_in(list(self.symbols))).then(
            pl.lit("unknown_symbol")
        )
        reason = reason.when((pl.col("price") <= 0) | pl.col("price").is_infinite()).then(
            pl.lit("non_positive_price")
        )
        reason = reason.when(pl.col("volume") <= 0).then(pl.lit("non_positive_volume"))
        reason = reason.when(~pl.col("ts").is_between(self._open, self._close)).then(
            pl.lit("outside_session")
        )
        if now is not None:
            reason = reason.when(pl.col("ts") < now.astimezone(dt.UTC) - self.max_lag).then(
                pl.lit("stale")
            )
        df = df.with_columns(reason.otherwise(None).alias("reason"))
        df = self._order_and_duplicates(df)
        self.rejected.update(df["reason"].drop_nulls().to_list())
        accepted = df.filter(pl.col("reason").is_null()).drop("_i", "reason")
        self.accepted += accepted.height
        rejected = df.filter(pl.col("reason").is_not_null()).drop("_i")
        return accepted, rejected

    def _order_and_duplicates(self, df: pl.DataFrame) -> pl.DataFrame:
        """Sequential per-symbol checks over the ticks valid so far, in arrival order."""
        valid = df.filter(pl.col("reason").is_null())
        if valid.height == 0:
            return df
        us = valid["ts"].dt.epoch("us").to_list()
        keys = valid.select(_KEY).rows()
        verdict: list[str | None] = []
        for sym, t, key in zip(valid["symbol"].to_list(), us, keys, strict=True):
            last_t, seen = self._last.get(sym, (None, set()))
            if last_t is not None and t < last_t:
                verdict.append("out_of_order")
            elif last_t == t and key in seen:
                verdict.append("duplicate")
            else:
                if last_t != t:
                    seen = set()
                    self._last[sym] = (t, seen)
                seen.add(key)
                verdict.append(None)
        marks = pl.DataFrame({"_i": valid["_i"], "_v": pl.Series(verdict, dtype=pl.String())})
        return (
            df.join(marks, on="_i", how="left")
            .with_columns(pl.coalesce("reason", "_v").alias("reason"))
            .drop("_v")
            .sort("_i")
        )
