"""What launches ``calibration_job``: the recalibration sensor and the weekly schedule.

* ``recalibration_sensor`` reads every new ``attribution`` materialization (in storage order;
  the cursor holds the last storage id and the trigger state) and applies
  ``domain.calibration.trigger``. When the figures cross into the tripped state it requests one
  calibration for the newest session it read (run key ``recalibrate-<session>``: a second tick,
  or a re-materialization of that session, requests nothing new). A crossing that is already
  over by the newest session of the batch — history read after a backfill — requests nothing.
  Thresholds: the ``calibration`` resource (``sharpe_30d_min``, ``mdd_30d_max``).
* ``weekly_calibration_schedule``: Saturday 08:00 Asia/Taipei (after Friday's daily run at
  06:00), for the week's last XTAI session; a week without a session gives no run.

Both start stopped (turn them on in the UI, Automation tab), like the daily schedule.
"""

import datetime as dt
import json

import dagster as dg

from quant_genesis_dagster.defs.calibration import calibration_job
from quant_genesis_dagster.defs.resources import CalibrationResource
from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.calibration import trigger

SENSOR_NAME = "recalibration_sensor"
WEEKLY_SCHEDULE_NAME = "weekly_calibration_schedule"
#: Minute, hour (Asia/Taipei), Saturday.
WEEKLY_CRON = "0 8 * * 6"
ATTRIBUTION = dg.AssetKey("attribution")
BATCH = 1000


def _cursor(text: str | None) -> tuple[int | None, trigger.TriggerState]:
    if not text:
        return None, trigger.TriggerState()
    d = json.loads(text)
    return d.get("storage_id"), trigger.TriggerState.from_json(json.dumps(d["state"]))


def _meta_value(meta: dict, key: str):
    v = meta.get(key)
    return getattr(v, "value", v)


@dg.sensor(
    name=SENSOR_NAME,
    job=calibration_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Recalibrate when the attribution's Sharpe 30D falls below its threshold (or "
    "well below its historical average) or MDD 30D is deeper than its threshold; one run per "
    "crossing.",
)
def recalibration_sensor(context: dg.SensorEvaluationContext, calibration: CalibrationResource):
    settings = trigger.TriggerSettings(
        sharpe_30d_min=calibration.sharpe_30d_min, mdd_30d_max=calibration.mdd_30d_max
    )
    after, state = _cursor(context.cursor)
    crossed: list[str] | None = None
    newest: str | None = None
    last_id = after
    while True:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=ATTRIBUTION, after_storage_id=last_id),
            limit=BATCH,
            ascending=True,
        ).records
        for rec in records:
            meta = rec.asset_materialization.metadata if rec.asset_materialization else {}
            state, why, due = trigger.step(
                state, _meta_value(meta, "sharpe_30d"), _meta_value(meta, "mdd_30d"), settings
            )
            if due:
                crossed = why
            if not state.tripped:
                crossed = None  # a crossing that ended within the batch is history
            newest = rec.partition_key or newest
            last_id = rec.storage_id
        if len(records) < BATCH:
            break
    context.update_cursor(json.dumps({"storage_id": last_id, "state": json.loads(state.to_json())}))
    if last_id == after:
        return dg.SkipReason("no new attribution materialization")
    if crossed is None or newest is None:
        status = "tripped (already requested)" if state.tripped else "within thresholds"
        return dg.SkipReason(f"performance {status} after {newest or 'the new events'}")
    return dg.RunRequest(
        run_key=f"recalibrate-{newest}",
        partition_key=newest,
        tags={"qg/trigger": "; ".join(crossed)[:200]},
    )


def week_session(tick: dt.datetime) -> dt.date | None:
    """The last XTAI session of the Monday..Friday before a Saturday tick (None: no session)."""
    friday = tick.date() - dt.timedelta(days=1)
    days = calendar.sessions(friday - dt.timedelta(days=4), friday)
    return days[-1] if days else None


@dg.schedule(
    name=WEEKLY_SCHEDULE_NAME,
    cron_schedule=WEEKLY_CRON,
    execution_timezone=calendar.TIMEZONE,
    job=calibration_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="The weekly calibration, Saturday 08:00 Asia/Taipei, for the week's last XTAI "
    "session; no run for a week without sessions.",
)
def weekly_calibration_schedule(context: dg.ScheduleEvaluationContext):
    day = week_session(context.scheduled_execution_time)
    if day is None:
        return dg.SkipReason("the week had no XTAI session (holidays)")
    return dg.RunRequest(run_key=f"weekly-{day.isoformat()}", partition_key=day.isoformat())
