"""Jobs. ``daily_job`` materializes the whole asset graph for a session or a range of sessions
(one run; every partitioned asset uses a single-run backfill policy)."""

import dagster as dg

DAILY_JOB_NAME = "daily_job"

daily_job = dg.define_asset_job(
    DAILY_JOB_NAME,
    selection=dg.AssetSelection.all(),
    description="The daily engine: raw data → cleaned prices → aligned panel (later issues add "
    "factors, predictions, backtest and calibration) for the selected trading days.",
)
