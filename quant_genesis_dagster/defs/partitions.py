"""Trading-day partitions: one partition per XTAI session (exchange-calendars).

Weekends are excluded by cron, weekday holidays and typhoon closures by date, so every window is
exactly one session long and a holiday is never a partition (DAGSTER.md). No ``end_offset``:
session D becomes materializable once D has ended in Asia/Taipei.
"""

import datetime as dt

import dagster as dg

from quant_genesis_dagster.domain import calendar


def _holiday_exclusions() -> list[dt.datetime]:
    return [
        dt.datetime.combine(d, dt.time())
        for d in calendar.non_session_weekdays(
            calendar.HISTORY_START, calendar.last_known_session()
        )
    ]


trading_days_partitions_def = dg.DailyPartitionsDefinition(
    start_date=calendar.HISTORY_START.isoformat(),
    timezone=calendar.TIMEZONE,
    exclusions=["0 0 * * 6", "0 0 * * 0", *_holiday_exclusions()],
)
