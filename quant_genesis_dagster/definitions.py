"""The one Dagster entry point (``workspace.yaml``, ``dagster dev``, ``make up``)."""

from __future__ import annotations

import dagster as dg

from quant_genesis_dagster.defs.approval import approval_job
from quant_genesis_dagster.defs.attribution import attribution
from quant_genesis_dagster.defs.backtest import book
from quant_genesis_dagster.defs.calibration import calibration_job, rl_betas
from quant_genesis_dagster.defs.clean import aligned_panel, cleaned_prices
from quant_genesis_dagster.defs.factors import (
    chip_factors,
    main_force_flows,
    sentiment_factors,
    value_factors,
    zscored_factors,
)
from quant_genesis_dagster.defs.intraday import intraday_eod, intraday_eod_reconcile_sensor
from quant_genesis_dagster.defs.jobs import daily_job
from quant_genesis_dagster.defs.predictions import predictions, signals
from quant_genesis_dagster.defs.raw import raw_stock_info, raw_tables
from quant_genesis_dagster.defs.recalibration import (
    recalibration_sensor,
    weekly_calibration_schedule,
)
from quant_genesis_dagster.defs.resources import (
    BacktestResource,
    CalibrationResource,
    DataSourceResource,
    FactorSettingsResource,
    ParamStoreResource,
    WarehouseResource,
)
from quant_genesis_dagster.defs.schedules import daily_schedule

defs = dg.Definitions(
    assets=[
        raw_stock_info,
        raw_tables,
        cleaned_prices,
        aligned_panel,
        intraday_eod,
        main_force_flows,
        chip_factors,
        sentiment_factors,
        value_factors,
        zscored_factors,
        predictions,
        signals,
        book,
        attribution,
        rl_betas,
    ],
    jobs=[daily_job, calibration_job, approval_job],
    schedules=[daily_schedule, weekly_calibration_schedule],
    sensors=[recalibration_sensor, intraday_eod_reconcile_sensor],
    resources={
        "warehouse": WarehouseResource(),
        "data_source": DataSourceResource(),
        "factor_settings": FactorSettingsResource(),
        "param_store": ParamStoreResource(),
        "backtest_settings": BacktestResource(),
        "calibration": CalibrationResource(),
    },
)
