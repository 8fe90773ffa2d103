"""The intraday engine's place in the graph: ``intraday_eod`` is an external asset — the sidecar
writes its rows after the close and reports a materialization of the session's partition
(SPEC §7.5); the daily chip factor depends on it.

* ``eod_materialization`` builds that report from the session's rows, the same way for the
  sidecar (``realtime_sidecar/report.py``: through the webserver or the instance) and for the
  reconcile sensor, so a partition's metadata does not depend on which of them reported it.
* ``validate_partition`` checks a session against ``trading_days_partitions_def`` before
  anything is reported: the webserver does not validate partition keys (DAGSTER.md), and a
  weekend or holiday "partition" would sit in the event log matching no partition.
* ``intraday_eod_reconcile_sensor`` reports the sessions whose rows are in the warehouse but
  whose partition has no materialization — the sidecar wrote its rows and then could not reach
  Dagster (SPEC §7.5: the rows are kept, a sensor reconciles later).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl

from quant_genesis_dagster.defs.common import ROW_COUNT, definition_metadata
from quant_genesis_dagster.defs.partitions import trading_days_partitions_def
from quant_genesis_dagster.defs.resources import WarehouseResource
from quant_genesis_dagster.domain import calendar, tables
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.errors import QGError

INTRADAY_GROUP = "intraday"
INTRADAY_EOD = dg.AssetKey("intraday_eod")
RECONCILE_SENSOR_NAME = "intraday_eod_reconcile_sensor"
#: Who reported a partition: the sidecar at the close, or the reconcile sensor later.
SOURCES = ("sidecar", "reconcile")
#: Sessions the sensor reports per tick: bounds a tick (each is one read of <= ~2k rows) after,
#: say, a replay that wrote years of sessions; the rest follow on the next ticks.
RECONCILE_BATCH = 100

intraday_eod = dg.AssetSpec(
    "intraday_eod",
    partitions_def=trading_days_partitions_def,
    group_name=INTRADAY_GROUP,
    description=(models.IntradayEod.__doc__ or "").strip(),
    kinds={"sql"},
    metadata=definition_metadata(models.IntradayEod),
)


def validate_partition(session: dt.date | str, *, today: dt.date | None = None) -> str:
    """The partition key of ``session`` (ISO date), or ``QGError`` with a one-line message.

    A key must be a partition of ``trading_days_partitions_def`` as it stands once the session's
    day has ended (the sidecar reports session D at its 13:30 close, before D's window ends at
    midnight Taipei and D becomes the definition's latest partition), inside the calendar's range
    and not after ``today`` (default: today in Asia/Taipei) — a future date is a wrong session
    date or clock in the reporter, never a session that happened.
    """
    key = session.isoformat() if isinstance(session, dt.date) else str(session).strip()
    try:
        day = dt.date.fromisoformat(key)
    except ValueError:
        raise QGError(f"intraday_eod: session {key!r} is not a date; use YYYY-MM-DD") from None
    first, last = calendar.HISTORY_START, calendar.last_known_session()
    if not first <= day <= last:
        raise QGError(
            f"intraday_eod: session {key} is outside the trading-day partitions {first}..{last}; "
            "report a session inside that range (or update exchange-calendars for later years)"
        )
    today = today or dt.datetime.now(ZoneInfo(calendar.TIMEZONE)).date()
    if day > today:
        raise QGError(
            f"intraday_eod: session {key} is after today ({today}, Asia/Taipei); check the "
            "sidecar's session date and clock"
        )
    day_end = dt.datetime.combine(
        day + dt.timedelta(days=1), dt.time(), ZoneInfo(calendar.TIMEZONE)
    )
    with dg.partition_loading_context(effective_dt=day_end):
        known = trading_days_partitions_def.has_partition_key(key)
    if not known:
        after = calendar.sessions(day, last)
        nxt = f"; the next session is {after[0]}" if after else ""
        raise QGError(
            f"intraday_eod: {key} is not an XTAI trading session (weekend, holiday or typhoon "
            f"closure){nxt} — report the session the ticks belong to"
        )
    return key


def _plain(value) -> float | None:
    """A polars statistic as a JSON-safe float: NaN and missing become None."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def eod_metadata(
    frame: pl.DataFrame, *, source: str, location: str | None = None
) -> dict[str, int | float | str | None]:
    """What a Dagster user wants to see on an ``intraday_eod`` partition, as plain JSON values
    (the webserver's report endpoint takes JSON; the instance stores the same values).

    ``frame``: one session's rows (``models.IntradayEod`` columns). ``location``: where the rows
    live, password hidden.
    """
    if source not in SOURCES:
        raise QGError(f"intraday_eod: source {source!r} is not one of {', '.join(SOURCES)}")
    eod = tables.conform(frame, models.IntradayEod, what="intraday_eod rows")
    eod = eod.with_columns(pl.col(pl.Float64).fill_nan(None))
    meta: dict[str, int | float | str | None] = {
        ROW_COUNT: eod.height,
        "symbols": eod["symbol"].n_unique(),
        "ticks": int(eod["tick_count"].sum()),
        "symbols_with_rcnc_close": int(eod["rcnc_close"].is_not_null().sum()),
        "sweep_ratio_mean": _plain(eod["sweep_ratio"].mean()),
        "sweep_ratio_median": _plain(eod["sweep_ratio"].median()),
        "liquidity_pressure_median": _plain(eod["liquidity_pressure"].median()),
        "big_buy_volume": int(eod["big_buy_volume"].sum()),
        "big_sell_volume": int(eod["big_sell_volume"].sum()),
        "source": source,
    }
    if location is not None:
        meta["warehouse"] = location
    return meta


def eod_description(key: str, meta: dict) -> str:
    who = (
        "reported by the sidecar at the close"
        if meta["source"] == "sidecar"
        else f"reconciled from the warehouse rows by {RECONCILE_SENSOR_NAME}"
    )
    return f"End-of-day aggregates of {meta['symbols']} symbols for session {key}, {who}."


def eod_materialization(
    session: dt.date | str, frame: pl.DataFrame, *, source: str, location: str | None = None
) -> dg.AssetMaterialization:
    """The materialization of ``intraday_eod``'s partition ``session`` for its rows ``frame``.

    ``source``: ``"sidecar"`` or ``"reconcile"``. The key is validated first (``QGError``); rows
    of another session are refused, since the metadata would describe the wrong partition.
    """
    key = validate_partition(session)
    if "session" in frame.columns:
        other = frame.filter(
            pl.col("session").cast(pl.Date, strict=False) != dt.date.fromisoformat(key)
        )
        if other.height:
            raise QGError(
                f"intraday_eod: the rows for {key} include session {other['session'][0]}; "
                "pass one session's rows"
            )
    else:
        frame = frame.with_columns(session=pl.lit(dt.date.fromisoformat(key)))
    meta = eod_metadata(frame, source=source, location=location)
    return dg.AssetMaterialization(
        asset_key=INTRADAY_EOD,
        partition=key,
        metadata=meta,
        description=eod_description(key, meta),
    )


# ------------------------------------------------------------------------------ the sensor


def _load_cursor(text: str | None) -> tuple[set[str], set[str]]:
    """(sessions this sensor reported that the instance did not show yet, sessions skipped)."""
    if not text:
        return set(), set()
    d = json.loads(text)
    return set(d.get("pending", [])), set(d.get("skipped", []))


@dg.sensor(
    name=RECONCILE_SENSOR_NAME,
    minimum_interval_seconds=60,
    # Running by default, unlike the schedules and the recalibration sensor: those launch runs
    # (compute, a new parameter version), this one launches none and only records what the
    # warehouse already holds. Its whole point is the day nobody is watching — a reconciler that
    # someone has to remember to switch on is the gap it exists to close. A tick is one GROUP BY
    # over intraday_eod's key and one read of each missing session.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports the intraday_eod partitions whose rows the sidecar wrote to the "
    "warehouse but could not report (Dagster unreachable at the close); non-session rows are "
    "skipped with a warning.",
)
def intraday_eod_reconcile_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult:
    """Idempotent twice over: the instance's materialized partitions are the truth, and the
    cursor remembers what this sensor reported until the instance shows it (so a tick evaluated
    before the daemon stored the previous tick's events reports nothing twice). The cursor also
    remembers the dates already warned about as not sessions (one warning each, not one a
    minute)."""
    engine = warehouse.engine()
    counts = io.count_rows(engine, models.IntradayEod, group_by="session")
    assert isinstance(counts, dict)
    in_warehouse = {str(day)[:10]: n for day, n in counts.items()}  # dates, as ISO keys
    materialized = context.instance.get_materialized_partitions(INTRADAY_EOD)
    pending, skipped = _load_cursor(context.cursor)
    pending &= set(in_warehouse) - materialized  # shown by the instance (or rows gone): done
    skipped &= set(in_warehouse)
    events: list[dg.AssetMaterialization] = []
    location = warehouse.location()
    for key in sorted(set(in_warehouse) - materialized - pending):
        try:
            # every tick, not once: a date refused today (after "today", beyond the calendar)
            # may be a session tomorrow; only the warning is given once
            validate_partition(key)
        except QGError as err:
            if key not in skipped:
                context.log.warning(
                    f"{err}; its {in_warehouse[key]} warehouse rows are not reported"
                )
                skipped.add(key)
            continue
        skipped.discard(key)
        if len(events) >= RECONCILE_BATCH:
            break
        day = dt.date.fromisoformat(key)
        rows = io.read_slice(engine, models.IntradayEod, day, day)
        events.append(eod_materialization(day, rows, source="reconcile", location=location))
        pending.add(key)
    cursor = json.dumps({"pending": sorted(pending), "skipped": sorted(skipped)})
    if not events:
        why = f"; {len(skipped)} non-session date(s) skipped" if skipped else ""
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"every intraday_eod session in the warehouse is reported{why}"
            ),
            cursor=cursor,
        )
    context.log.info(
        f"reporting {len(events)} intraday_eod partition(s) found only in the warehouse: "
        f"{events[0].partition}..{events[-1].partition}"
    )
    return dg.SensorResult(asset_events=events, cursor=cursor)
