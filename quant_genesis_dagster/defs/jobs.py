"""Jobs. ``daily_job`` materializes the daily asset graph for a session or a range of sessions
(one run; every partitioned asset uses a single-run backfill policy) — everything except the
calibration group, which ``calibration_job`` (``defs/calibration.py``) runs weekly or when the
recalibration sensor trips."""

import dagster as dg

DAILY_JOB_NAME = "daily_job"

daily_job = dg.define_asset_job(
    DAILY_JOB_NAME,
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("calibration"),
    description="The daily engine for the selected trading days: raw data → cleaned prices → "
    "aligned panel → main-force flows and chip / sentiment / value factors → z-scores → "
    "predictions and signals → the book (positions, strategy returns) → attribution. "
    "Calibration runs separately (calibration_job).",
)
