"""Jobs. ``daily_job`` materializes the whole asset graph for a session or a range of sessions
(one run; every partitioned asset uses a single-run backfill policy)."""

import dagster as dg

DAILY_JOB_NAME = "daily_job"

daily_job = dg.define_asset_job(
    DAILY_JOB_NAME,
    selection=dg.AssetSelection.all(),
    description="The daily engine for the selected trading days: raw data → cleaned prices → "
    "aligned panel → main-force flows and chip / sentiment / value factors → z-scores → "
    "predictions and signals (later issues add the backtest and calibration).",
)
