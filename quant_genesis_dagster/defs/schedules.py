"""Schedules. ``daily_schedule`` runs the daily engine for each XTAI session once its data is
public: at 06:00 Asia/Taipei the morning after (TWSE publishes the margin and short balances at
about 21:00 and the branch reports in the evening, and session D's partition exists once D has
ended in Taipei — ``partitions.py``), well before the next open at 09:00, so the predictions,
signals and tomorrow's targets are ready for the trader. Weekends and XTAI holidays (typhoon
closures included) have no run: the tick skips with the reason."""

import datetime as dt

import dagster as dg

from quant_genesis_dagster.defs.jobs import daily_job
from quant_genesis_dagster.domain import calendar

DAILY_SCHEDULE_NAME = "daily_schedule"
#: Minute, hour (Asia/Taipei), Tuesday to Saturday: the mornings after Monday to Friday.
DAILY_CRON = "0 6 * * 2-6"


def session_for_tick(tick: dt.datetime) -> dt.date:
    """The session a tick processes: the calendar day before the tick (in Asia/Taipei)."""
    return tick.date() - dt.timedelta(days=1)


@dg.schedule(
    name=DAILY_SCHEDULE_NAME,
    cron_schedule=DAILY_CRON,
    execution_timezone=calendar.TIMEZONE,
    job=daily_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="The daily engine for the previous XTAI session, at 06:00 Asia/Taipei the next "
    "morning (its margin and branch data are public by then); no run after a weekend day, an "
    "XTAI holiday or a typhoon closure.",
)
def daily_schedule(context: dg.ScheduleEvaluationContext):
    day = session_for_tick(context.scheduled_execution_time)
    if not calendar.is_session(day):
        return dg.SkipReason(f"{day} is not an XTAI session (weekend, holiday or typhoon closure)")
    return dg.RunRequest(run_key=f"daily-{day.isoformat()}", partition_key=day.isoformat())
