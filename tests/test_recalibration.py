"""What launches a calibration: the trigger's state machine, the sensor on the attribution
materializations (Dagster's test contexts, a real instance) and the weekly schedule."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import dagster as dg
import pytest

from quant_genesis_dagster.definitions import defs
from quant_genesis_dagster.defs.recalibration import (
    recalibration_sensor,
    week_session,
    weekly_calibration_schedule,
)
from quant_genesis_dagster.defs.resources import CalibrationResource
from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.calibration import trigger
from quant_genesis_dagster.errors import QGError

S = trigger.TriggerSettings(sharpe_30d_min=0.0, mdd_30d_max=0.10, below_average_by=1.0,
                            min_history=3)  # fmt: skip


def _run(figures, state=None):
    state = state or trigger.TriggerState()
    due = []
    for sharpe, mdd in figures:
        state, _, d = trigger.step(state, sharpe, mdd, S)
        due.append(d)
    return state, due


def test_the_trigger_is_due_once_per_crossing():
    _, due = _run([(1.5, -0.02), (-0.3, -0.03), (-0.8, -0.05), (0.4, -0.02), (-0.1, -0.02)])
    assert due == [False, True, False, False, True]  # two crossings, two recalibrations


def test_a_deep_drawdown_trips_and_missing_figures_change_nothing():
    state, due = _run([(None, None), (2.0, -0.12)])
    assert due == [False, True] and state.n == 1
    assert trigger.reasons(state, 2.0, -0.12, S) == ["MDD 30D -12.0% deeper than −10%"]


def test_below_the_historical_average_counts_only_after_enough_history():
    state, due = _run([(3.0, -0.01), (3.0, -0.01), (1.5, -0.01)])  # n=2 < 3 at the third
    assert due == [False, False, False]
    state, due = _run([(1.9, -0.01)], state)  # mean 2.5 − 1 = 1.5 → 1.9 is fine
    assert due == [False]
    state, due = _run([(1.0, -0.01)], state)  # below 2.35 − 1
    assert due == [True]


def test_bad_trigger_settings_and_a_foreign_cursor_are_one_line_errors():
    with pytest.raises(QGError, match="mdd_30d_max"):
        trigger.TriggerSettings(mdd_30d_max=0.0)
    with pytest.raises(QGError, match="reset the sensor's cursor"):
        trigger.TriggerState.from_json('{"x": 1}')


# ------------------------------------------------------------------------------------ sensor

DAYS = calendar.sessions("2024-06-03", "2024-06-28")


def _report(instance, day, sharpe, mdd):
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "attribution", partition=day.isoformat(),
            metadata={"sharpe_30d": sharpe, "mdd_30d": mdd, "regime": "chop"},
        )
    )  # fmt: skip


def _tick(instance, cursor):
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs,
        resources={"calibration": CalibrationResource(sharpe_30d_min=0.0, mdd_30d_max=0.10)},
    )  # fmt: skip
    out = recalibration_sensor.evaluate_tick(ctx)
    return out, ctx.cursor


def test_the_sensor_requests_one_calibration_per_threshold_crossing():
    with dg.instance_for_test() as instance:
        out, cursor = _tick(instance, None)
        assert not out.run_requests and "no new attribution" in out.skip_message
        for day in DAYS[:3]:
            _report(instance, day, 1.2, -0.02)
        out, cursor = _tick(instance, cursor)
        assert not out.run_requests and "within thresholds" in out.skip_message
        _report(instance, DAYS[3], -0.4, -0.04)  # crosses below Sharpe 0
        out, cursor = _tick(instance, cursor)
        (req,) = out.run_requests
        assert req.partition_key == DAYS[3].isoformat()
        assert req.run_key == f"recalibrate-{DAYS[3].isoformat()}"
        assert "Sharpe 30D -0.40 < 0" in req.tags["qg/trigger"]
        _report(instance, DAYS[4], -0.9, -0.06)  # still tripped: nothing new
        out, cursor = _tick(instance, cursor)
        assert not out.run_requests and "already requested" in out.skip_message
        out, cursor = _tick(instance, cursor)  # no new event: nothing
        assert not out.run_requests
        _report(instance, DAYS[5], 0.8, -0.03)  # recovered
        _report(instance, DAYS[6], 1.1, -0.11)  # a new crossing, through the drawdown
        out, cursor = _tick(instance, cursor)
        (req,) = out.run_requests
        assert req.partition_key == DAYS[6].isoformat() and "MDD 30D" in req.tags["qg/trigger"]


def test_a_crossing_that_is_over_by_the_newest_session_of_a_backfill_requests_nothing():
    with dg.instance_for_test() as instance:
        for day, sharpe in zip(DAYS[:8], [1.0, 1.1, -0.5, -0.2, 0.6, 0.9, 1.2, 1.0], strict=True):
            _report(instance, day, sharpe, -0.02)
        out, cursor = _tick(instance, None)
        assert not out.run_requests and "within thresholds" in out.skip_message
        _report(instance, DAYS[8], -0.3, -0.02)
        out, _ = _tick(instance, cursor)
        assert [r.partition_key for r in out.run_requests] == [DAYS[8].isoformat()]


# ---------------------------------------------------------------------------------- schedule


def _week_tick(day: dt.date):
    tick = dt.datetime.combine(day, dt.time(8, 0), tzinfo=zoneinfo.ZoneInfo("Asia/Taipei"))
    with dg.build_schedule_context(
        scheduled_execution_time=tick, repository_def=defs.get_repository_def()
    ) as ctx:
        return weekly_calibration_schedule.evaluate_tick(ctx)


def test_the_weekly_schedule_calibrates_the_weeks_last_session_and_skips_a_closed_week():
    # the National Day week (Thursday 2024-10-10 closed): Friday's session
    (req,) = _week_tick(dt.date(2024, 10, 12)).run_requests
    assert req.partition_key == "2024-10-11" and req.run_key == "weekly-2024-10-11"
    # Children's Day / Tomb Sweeping (Thursday-Friday 2024-04-04/05 closed): Wednesday's
    (req,) = _week_tick(dt.date(2024, 4, 6)).run_requests
    assert req.partition_key == "2024-04-03"
    # Lunar New Year 2023: no session from Monday 01-23 to Friday 01-27
    out = _week_tick(dt.date(2023, 1, 28))
    assert not out.run_requests and "no XTAI session" in out.skip_message
    assert week_session(dt.datetime(2023, 1, 28, 8)) is None
    assert weekly_calibration_schedule.execution_timezone == "Asia/Taipei"
    assert weekly_calibration_schedule.cron_schedule == "0 8 * * 6"
