"""The Definitions load, and hold every asset, check and job the issue promises."""

import datetime as dt

import dagster as dg

from quant_genesis_dagster.definitions import defs
from quant_genesis_dagster.defs.partitions import trading_days_partitions_def
from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.warehouse.models import RAW_PARTITIONED_TABLES

EXPECTED_ASSETS = {
    "raw_stock_info",
    *(f"raw_{t}" for t in RAW_PARTITIONED_TABLES),
    "cleaned_prices",
    "aligned_panel",
    "intraday_eod",
    "main_force_flows",
    "chip_factors",
    "sentiment_factors",
    "value_factors",
    "zscored_factors",
    "predictions",
    "signals",
    "portfolio_positions",
    "strategy_returns",
    "attribution",
    "rl_betas",
}
#: External assets: reported by the sidecar, not materialized by a job.
EXTERNAL_ASSETS = {"intraday_eod"}
EXPECTED_CHECKS = {
    ("raw_daily_prices", "sessions_have_prices"),
    ("cleaned_prices", "positive_prices"),
    ("cleaned_prices", "ohlc_consistent"),
    ("cleaned_prices", "quarantine_counts"),
    ("aligned_panel", "no_future_fundamentals"),
    ("aligned_panel", "coverage"),
    ("aligned_panel", "quarantine_counts"),
    ("main_force_flows", "coverage"),
    ("chip_factors", "no_infinities"),
    ("chip_factors", "coverage"),
    ("sentiment_factors", "no_infinities"),
    ("sentiment_factors", "fear_greed_in_0_100"),
    ("sentiment_factors", "coverage"),
    ("value_factors", "no_infinities"),
    ("value_factors", "coverage"),
    ("zscored_factors", "zscore_moments"),
    ("zscored_factors", "no_infinities"),
    ("zscored_factors", "coverage"),
    ("predictions", "every_row_has_param_version"),
    ("predictions", "params_in_range"),
    ("predictions", "no_infinities"),
    ("signals", "every_signal_has_reasons"),
    ("strategy_returns", "costs_non_negative"),
    ("portfolio_positions", "weights_within_caps"),
    ("strategy_returns", "metrics_finite"),
    ("attribution", "metrics_finite"),
    ("attribution", "rows_record_param_version"),
}


def test_definitions_load_with_every_asset_check_and_job():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assets = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert assets == EXPECTED_ASSETS
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == EXPECTED_CHECKS
    daily = defs.resolve_job_def("daily_job").asset_layer.executable_asset_keys
    assert dg.AssetKey("rl_betas") not in daily and dg.AssetKey("attribution") in daily
    calibration = defs.resolve_job_def("calibration_job").asset_layer.executable_asset_keys
    assert calibration == {dg.AssetKey("rl_betas")}


def test_partitioned_assets_use_trading_days_and_single_run_backfills():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if key.to_user_string() == "raw_stock_info":
            assert node.partitions_def is None
            continue
        assert node.partitions_def == trading_days_partitions_def
        if key.to_user_string() in EXTERNAL_ASSETS:
            assert not node.is_materializable
            continue
        assert node.backfill_policy == dg.BackfillPolicy.single_run()


def test_partition_keys_are_exactly_the_xtai_sessions():
    keys = trading_days_partitions_def.get_partition_keys_in_range(
        dg.PartitionKeyRange("2024-01-02", "2024-12-31")
    )
    expected = [
        d.isoformat() for d in calendar.sessions(dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    ]
    assert keys == expected
    assert "2024-07-24" not in keys and "2024-07-25" not in keys  # typhoon Gaemi


def test_a_non_session_partition_key_is_refused_before_anything_runs(tmp_path):
    job = defs.resolve_job_def("daily_job")
    with dg.instance_for_test() as instance:
        try:
            job.execute_in_process(instance=instance, partition_key="2024-07-24")  # typhoon
        except dg.DagsterUnknownPartitionError as err:
            assert "2024-07-24" in str(err) and "\n" not in str(err)
        else:
            raise AssertionError("a typhoon closure must not be a partition")
        assert instance.get_runs() == []


def test_the_daily_schedule_runs_after_each_session_and_skips_a_holiday_week_gap():
    """The week of Taiwan's National Day (Thursday 2024-10-10, no session): ticks at 06:00
    Asia/Taipei process the previous day; the holiday and the weekend give no run."""
    import zoneinfo

    from quant_genesis_dagster.defs.schedules import daily_schedule

    tz = zoneinfo.ZoneInfo("Asia/Taipei")
    runs, skips = {}, {}
    for day in range(8, 15):  # Tuesday 10-08 .. Monday 10-14 mornings
        tick = dt.datetime(2024, 10, day, 6, 0, tzinfo=tz)
        with dg.build_schedule_context(
            scheduled_execution_time=tick, repository_def=defs.get_repository_def()
        ) as ctx:
            out = daily_schedule.evaluate_tick(ctx)
        if out.run_requests:
            (req,) = out.run_requests
            runs[tick.date()] = req.partition_key
        else:
            skips[tick.date()] = out.skip_message
    assert runs == {
        dt.date(2024, 10, 8): "2024-10-07",
        dt.date(2024, 10, 9): "2024-10-08",
        dt.date(2024, 10, 10): "2024-10-09",
        dt.date(2024, 10, 12): "2024-10-11",  # Saturday morning: Friday's session
    }
    assert "2024-10-10 is not an XTAI session" in skips[dt.date(2024, 10, 11)]
    assert set(skips) == {dt.date(2024, 10, 11), dt.date(2024, 10, 13), dt.date(2024, 10, 14)}
    # every requested partition is a partition of the job
    keys = set(trading_days_partitions_def.get_partition_keys())
    assert set(runs.values()) <= keys
    assert daily_schedule.execution_timezone == "Asia/Taipei"
