"""Prediction layer assets (SPEC §6): ``predictions`` from the champion parameter version in
MLflow, and ``signals`` (P1/P2 entries and risk-manager actions) made with the same version."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from quant_genesis_dagster.defs.common import (
    as_failure,
    session_asset,
    session_range,
    table_metadata,
)
from quant_genesis_dagster.defs.factors import lookback_start
from quant_genesis_dagster.defs.resources import ParamStoreResource, WarehouseResource
from quant_genesis_dagster.domain import model, risk
from quant_genesis_dagster.domain import signals as signals_domain
from quant_genesis_dagster.domain.factors import composite
from quant_genesis_dagster.domain.params import validate
from quant_genesis_dagster.domain.registry import parse_version_id
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.errors import QGError

PREDICTIONS_GROUP = "predictions"
CHECK_PARAM_VERSION = "every_row_has_param_version"
CHECK_PARAMS_IN_RANGE = "params_in_range"
CHECK_FINITE = "no_infinities"
CHECK_REASONS = "every_signal_has_reasons"


def _spec(asset: str, name: str, description: str, blocking: bool = False) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking)


@session_asset(
    models.Predictions,
    group=PREDICTIONS_GROUP,
    kinds=("sql", "polars", "mlflow"),
    deps=["zscored_factors", "aligned_panel"],
    check_specs=[
        _spec(
            "predictions",
            CHECK_PARAM_VERSION,
            "Every prediction row names the parameter version (MLflow registry) it was made with.",
            blocking=True,
        ),  # fmt: skip
        _spec(
            "predictions",
            CHECK_PARAMS_IN_RANGE,
            "The champion's parameters lie inside their SPEC §9 ranges.",
            blocking=True,
        ),  # fmt: skip
        _spec("predictions", CHECK_FINITE, "No ±inf or NaN in any prediction.", blocking=True),
    ],
)
def predictions(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    param_store: ParamStoreResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Expected returns for the next 1, 5 and 10 sessions per symbol, made after each session's
    close: ``R_pred = k·h·(β_C·F_C + β_S·F_S + β_D·F_D) + h·α`` plus the cross-market correction
    from the overnight US semiconductor/Nasdaq move, with the champion parameter version (read
    from MLflow; the defaults are registered as version 1 on first use) stored on every row."""
    start, end = session_range(context)
    engine = warehouse.engine()
    try:
        store = param_store.store()
        store.ensure_defaults(
            tags={"dagster/run_id": context.run_id, "dagster/partition_key": f"{start}..{end}"}
        )
        champion = store.champion()
        z = io.read_slice(engine, models.ZscoredFactors, start, end)
        panel = io.read_slice(
            engine, models.AlignedPanel, start, end,
            columns=["session", "symbol", *model.US_MOVE_COLUMNS],
        )  # fmt: skip
        df = model.predict(z, model.us_move(panel), champion.params, champion.id)
        rows = io.replace_slice(engine, models.Predictions, df, start, end)
    except QGError as err:
        raise as_failure(err) from err
    url = store.run_url(champion)
    yield dg.MaterializeResult(
        asset_key="predictions",
        metadata=table_metadata(
            rows,
            param_version=champion.id,
            betas=", ".join(f"{b:.3f}" for b in champion.params.betas),
            corrected_rows=int((df["us_adjust"] != 0).sum()),
            **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
            range=f"{start}..{end}",
        ),
    )
    ok_v, detail_v = model.check_param_versions(df)
    yield dg.AssetCheckResult(
        check_name=CHECK_PARAM_VERSION, asset_key="predictions", passed=ok_v, metadata=detail_v
    )
    try:
        validate(champion.params.to_dict())
        ok_r, detail_r = True, {"param_version": champion.id}
    except QGError as err:
        ok_r, detail_r = False, {"param_version": champion.id, "error": str(err)}
    yield dg.AssetCheckResult(
        check_name=CHECK_PARAMS_IN_RANGE, asset_key="predictions", passed=ok_r, metadata=detail_r
    )
    ok_f, detail_f = composite.check_finite(df)
    yield dg.AssetCheckResult(
        check_name=CHECK_FINITE, asset_key="predictions", passed=ok_f, metadata=detail_f
    )


@session_asset(
    models.Signals,
    group=PREDICTIONS_GROUP,
    deps=[
        "predictions",
        "zscored_factors",
        "chip_factors",
        "sentiment_factors",
        "value_factors",
        dg.AssetDep(
            "aligned_panel",
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-risk.RISK_LOOKBACK),
        ),
    ],
    check_specs=[_spec("signals", CHECK_REASONS, "Every signal row carries at least one reason.")],
)
def signals(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    param_store: ParamStoreResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """P1 value-accumulation and P2 momentum-push entry signals, and the risk manager's actions
    (LAC break stop, run-up warning at T_RunUp_Dev, VIX, ATR compression, margin anomalies),
    each with its reasons, made with the parameter version the session's predictions used."""
    start, end = session_range(context)
    engine = warehouse.engine()
    try:
        store = param_store.store()
        versions = io.read_slice(
            engine, models.Predictions, start, end, columns=["session", "param_version"]
        ).unique()
        day = _signal_inputs(engine, start, end)
        market_in = io.read_slice(
            engine, models.AlignedPanel, lookback_start(start, risk.RISK_LOOKBACK), end,
            columns=["session", "taiex_close", "vixtwn", "margin_total"],
        ).unique("session", keep="first")  # fmt: skip
        parts = []
        for version_id in sorted(versions["param_version"].unique().to_list()):
            days = versions.filter(pl.col("param_version") == version_id)["session"]
            name, number = parse_version_id(version_id)
            if name != store.name:
                raise QGError(
                    f"predictions for {days[0]} were made with {version_id}, which is not in the "
                    f"parameter store's registered model {store.name!r}; re-materialize predictions"
                )
            params = store.get(number).params
            mk = risk.market_risk(market_in, params)
            parts.append(
                signals_domain.build_signals(
                    day.filter(pl.col("session").is_in(days.implode())),
                    mk.filter(pl.col("session").is_in(days.implode())),
                    params,
                    version_id,
                )
            )
        df = pl.concat(parts) if parts else pl.DataFrame(schema=signals_domain.SIGNALS_SCHEMA)
        rows = io.replace_slice(engine, models.Signals, df, start, end)
    except QGError as err:
        raise as_failure(err) from err
    counts = dict(df["signal"].value_counts().iter_rows()) if rows else {}
    yield dg.MaterializeResult(
        asset_key="signals",
        metadata=table_metadata(
            rows,
            **{f"signals:{k}": int(v) for k, v in sorted(counts.items())},
            top_signals=dg.MetadataValue.md(signals_domain.top_signals_markdown(df)),
            range=f"{start}..{end}",
        ),
    )
    no_reason = df.filter(pl.col("reasons").is_null() | (pl.col("reasons") == "[]")).height
    yield dg.AssetCheckResult(
        check_name=CHECK_REASONS,
        asset_key="signals",
        passed=no_reason == 0,
        metadata={"rows": df.height, "without_reasons": no_reason},
    )


def _signal_inputs(engine, start, end) -> pl.DataFrame:
    """One row per (session, symbol) with every column the signal rules read."""
    keys = ["session", "symbol"]
    z = io.read_slice(engine, models.ZscoredFactors, start, end, columns=[*keys, "f_c"])
    # from the session before start: the LAC rules fire on the day their condition starts
    chip_df = io.read_slice(
        engine, models.ChipFactors, lookback_start(start, 1), end,
        columns=[*keys, "lac", "lac_dist", "rcnc_close_dev", "sweep_ratio"],
    )  # fmt: skip
    sent = io.read_slice(
        engine, models.SentimentFactors, start, end,
        columns=[*keys, "fear_greed", "market_abnormal"],
    )  # fmt: skip
    val = io.read_slice(
        engine, models.ValueFactors, start, end, columns=[*keys, "equity_multiplier"]
    )
    lb = lookback_start(start, risk.RISK_LOOKBACK)
    panel = io.read_slice(
        engine, models.AlignedPanel, lb, end, columns=[*keys, "close_adj", "margin_balance"]
    )
    return signals_domain.signal_inputs(z, chip_df, sent, val, panel)
