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
Everything is vectorized (polars): a tick is out of order when its timestamp is below the running
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
_CARRIED = pl.Schema(
    {
        "sym": pl.UInt32(),
        "ts": pl.Datetime("us", "UTC"),
        "price": pl.Float64(),
        "volume": pl.Int64(),
        "side": pl.Int8(),
    }
)
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
        #: the ticks accepted at each symbol's last accepted timestamp (sym, ts, price, volume, side)
        self._last = pl.DataFrame(schema=_CARRIED)

    def admit(
        self, batch: pl.DataFrame, now: dt.datetime | None = None
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(accepted ticks in arrival order with ``sym``, rejected ticks with a ``reason``)."""
        df = batch.select([pl.col(c).cast(t, strict=False) for c, t in TICK_SCHEMA.items()])
        df = df.with_columns(
            sym=pl.col("symbol").cast(self.enum, strict=False).to_physical().cast(pl.UInt32)
        )
        reason = pl.when(
            pl.any_horizontal(pl.col(c).is_null() for c in ("ts", "symbol", "price", "volume"))
            | pl.col("price").is_nan()
        ).then(pl.lit("missing_value"))
        reason = reason.when(pl.col("simtrade").fill_null(False)).then(pl.lit("trial_match"))
        reason = reason.when(pl.col("sym").is_null()).then(pl.lit("unknown_symbol"))
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
        bad = df.filter(pl.col("reason").is_not_null())
        if bad.height:
            self.rejected.update(bad["reason"].to_list())
        accepted = df.filter(pl.col("reason").is_null()).drop("reason")
        self.accepted += accepted.height
        return accepted, bad.drop("sym")

    def _order_and_duplicates(self, df: pl.DataFrame) -> pl.DataFrame:
        """Mark out-of-order and duplicate ticks among the valid ones; update the carried state."""
        valid = df.select(pl.col("reason").is_null()).to_series()
        if not valid.any():
            return df
        cols = list(_CARRIED)
        rows = df.filter(valid).select(cols).with_row_index("_i")
        carried = self._last.select(pl.lit(None, pl.UInt32).alias("_i"), *cols)
        both = pl.concat([carried, rows])  # carried ticks first: they happened before
        prior = pl.col("ts").cum_max().shift(1).over("sym")
        both = both.with_columns(ooo=(pl.col("ts") < prior).fill_null(False))
        first = pl.struct(cols).is_first_distinct()
        both = both.with_columns(dup=pl.when(pl.col("ooo")).then(False).otherwise(~first))
        new = both.filter(~pl.col("ooo") & ~pl.col("dup"))
        self._last = new.filter(pl.col("ts") == pl.col("ts").max().over("sym")).select(cols)
        marks = (
            both.filter(pl.col("_i").is_not_null())
            .select(
                pl.when(pl.col("ooo"))
                .then(pl.lit("out_of_order"))
                .when(pl.col("dup"))
                .then(pl.lit("duplicate"))
                .alias("r")
            )
            .to_series()
        )
        reason = df["reason"].scatter(np.flatnonzero(valid.to_numpy()), marks)
        return df.with_columns(reason=reason)
