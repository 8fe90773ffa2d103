"""The calibration asset ``rl_betas`` and its job (SPEC §9): for session D, train the agents on
the factor history before D's walk-forward window, evaluate every candidate on that window,
and register the proposal through the approval gate (``domain.calibration``).

The asset is partitioned by session like the daily graph, but it is not part of the daily job:
the weekly schedule and the recalibration sensor (``defs/recalibration.py``) launch
``calibration_job`` for one session, and a person can from the UI. A range of partitions
calibrates once, for its last session. Predictions never read the proposal directly — only
through the champion alias, which the gate or a human approval moves.
"""

import tempfile
from pathlib import Path

import dagster as dg
import polars as pl

from quant_genesis_dagster.defs.common import as_failure, session_range
from quant_genesis_dagster.defs.factors import lookback_start
from quant_genesis_dagster.defs.partitions import trading_days_partitions_def
from quant_genesis_dagster.defs.resources import (
    BacktestResource,
    CalibrationResource,
    ParamStoreResource,
    WarehouseResource,
)
from quant_genesis_dagster.domain import report
from quant_genesis_dagster.domain.calibration import data as cal_data
from quant_genesis_dagster.domain.calibration import governance
from quant_genesis_dagster.domain.calibration.calibrate import calibrate, write_artifacts
from quant_genesis_dagster.domain.params import DEFAULTS
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.errors import QGError

CALIBRATION_GROUP = "calibration"
CALIBRATION_JOB_NAME = "calibration_job"
WHO = "quant-genesis (calibration)"


def read_window(engine, start, end) -> cal_data.CalibrationData:
    """The calibration window's inputs from the warehouse (sessions ``start..end``), with the
    parameter set the market-risk rows are computed with (the defaults: only non-tunable
    parameters read them)."""

    def read(model, cols):
        return io.read_slice(engine, model, start, end, columns=list(cols))

    panel = read(models.AlignedPanel, cal_data.PANEL_COLUMNS)
    if panel.is_empty():
        raise QGError(
            f"rl_betas: no aligned_panel rows in {start}..{end}; materialize the daily graph "
            "for those sessions first"
        )
    factors = read(models.AttributionFactors,
                   ("session", "factor", "horizon", "rolling_rank_ic", "factor_return"))  # fmt: skip
    diagnosis = read(models.AttributionDiagnosis, ("session", "factor", "half_life"))
    if factors.is_empty():
        raise QGError(
            f"rl_betas: no attribution rows in {start}..{end}; materialize attribution for "
            "those sessions first"
        )
    return cal_data.CalibrationData.build(
        panel,
        read(models.ZscoredFactors, cal_data.ZSCORED_COLUMNS),
        read(models.ChipFactors, cal_data.CHIP_COLUMNS),
        read(models.SentimentFactors, cal_data.SENTIMENT_COLUMNS),
        read(models.ValueFactors, cal_data.VALUE_COLUMNS),
        DEFAULTS,
        factors=factors.with_columns(pl.col("horizon").cast(pl.Int64)),
        diagnosis=diagnosis,
    )


@dg.asset(
    name="rl_betas",
    partitions_def=trading_days_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),  # a range calibrates once, for its end
    group_name=CALIBRATION_GROUP,
    kinds={"python", "mlflow", "pytorch"},
    deps=[
        "attribution",
        "zscored_factors",
        "chip_factors",
        "sentiment_factors",
        "value_factors",
        "aligned_panel",
    ],  # fmt: skip
    description="A calibration for the session: PPO agents trained on the history before its "
    "walk-forward window, every candidate (RL, champion, defaults, rolling least squares, "
    "equal weights) evaluated on that window with the same costs, and the proposal registered "
    "as a new MLflow parameter version — champion only if it needs no human and beat the "
    "champion walk-forward, else pending approval or not promoted.",
)
def rl_betas(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    param_store: ParamStoreResource,
    calibration: CalibrationResource,
    backtest_settings: BacktestResource,
) -> dg.MaterializeResult:
    _, end = session_range(context)
    settings = calibration.settings()
    start = lookback_start(end, settings.sessions_needed() - 1)
    store = param_store.store()
    try:
        data = read_window(warehouse.engine(), start, end)
        champion = store.champion()
        result = calibrate(data, champion.params, settings,
                           portfolio_settings=backtest_settings.portfolio(),
                           costs=backtest_settings.costs())  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="qg-calibration-") as tmp:
            artifacts = write_artifacts(result, Path(tmp))
            pictures = {
                "Walk-forward equity": (Path(tmp) / "plots" / "walk_forward_equity.png").read_bytes(),
                "RL parameters per period": (Path(tmp) / "plots" / "parameter_history.png").read_bytes(),
            }  # fmt: skip
            decision = governance.record_calibration(
                store,
                result.proposal,
                champion=champion,
                walk_forward_sharpe=result.walk_forward_sharpe(),
                metrics=result.metrics(),
                artifacts=artifacts,
                tags={
                    "qg/data_hash": result.data_hash,
                    "qg/config_hash": result.config_hash,
                    "qg/seed": str(settings.train.seed),
                    **{f"qg/{k}": v for k, v in result.ranges.items()},
                },
                description=f"calibration for {end}: trained {result.ranges['train_first']}.."
                f"{result.ranges['train_last']}, walk-forward {result.ranges['eval_first']}.."
                f"{result.ranges['eval_last']}",
                dagster_run_id=context.run_id,
                partition_key=end.isoformat(),
                gate=calibration.gate(),
                who=WHO,
            )
    except QGError as err:
        raise as_failure(err) from err
    table = result.table()
    pv = decision.version
    context.log.info("calibration %s: %s (%s)", pv.id, decision.status, decision.why)
    metadata = {
        "version": pv.id,
        "status": decision.status,
        "why": decision.why,
        "promoted": decision.promoted,
        "gate_reasons": dg.MetadataValue.md("\n".join(f"* {r}" for r in decision.reasons) or "none"),
        "walk_forward": dg.MetadataValue.md(report.frame_markdown(table)),
        "walk_forward_table": dg.MetadataValue.json({"rows": _json_rows(table)}),
        "train_steps": result.agents.train_steps,
        "train_seconds": round(result.seconds["train"], 1),
        "data_hash": result.data_hash,
        **{f"walk_forward_sharpe/{k}": float(v) for k, v in result.walk_forward_sharpe().items()},
        **{name: dg.MetadataValue.md(report.markdown_image(png, name))
           for name, png in pictures.items()},
    }  # fmt: skip
    url = store.run_url(pv)
    if url:
        metadata["mlflow_run"] = dg.MetadataValue.url(url)
    return dg.MaterializeResult(metadata=metadata)


def _json_rows(table: pl.DataFrame) -> list[dict]:
    """Rows with NaN as null (JSON has no NaN)."""
    return table.with_columns(pl.col(pl.Float64).fill_nan(None)).to_dicts()


calibration_job = dg.define_asset_job(
    CALIBRATION_JOB_NAME,
    selection=dg.AssetSelection.assets(rl_betas),
    partitions_def=trading_days_partitions_def,
    description="One calibration (rl_betas) for a session: train, walk-forward, register "
    "through the approval gate. Launched by the weekly schedule and the recalibration sensor.",
)
