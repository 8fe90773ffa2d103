"""The ``attribution`` asset (SPEC §8): the attribution of the predictions, the strategies'
rolling performance in both conventions, the market regime, and the pictures.

It writes six tables in one transaction (``models.ATTRIBUTION_TABLES``): per factor and horizon
(``attribution_factors``), per composite (``attribution_diagnosis``), per horizon
(``attribution_daily``), per symbol (``attribution_residuals``, horizon 1), per strategy and
convention (``strategy_performance``) and per session (``market_regimes``). Its materialization
carries the last session's Sharpe 30D, MDD 30D and regime so a sensor can read them
(``SENSOR_KEYS``), the headline table in both conventions, and the equity curve, rolling IC and
regime timeline, which also go to an HTML report under ``QG_HOME/reports``.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import polars as pl

from quant_genesis_dagster.defs.common import as_failure, session_range, table_metadata
from quant_genesis_dagster.defs.factors import lookback_start
from quant_genesis_dagster.defs.partitions import trading_days_partitions_def
from quant_genesis_dagster.defs.resources import WarehouseResource
from quant_genesis_dagster.domain import attribution as attr
from quant_genesis_dagster.domain import backtest, calendar, metrics, regime, report
from quant_genesis_dagster.domain.tables import polars_schema
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.errors import QGError

ATTRIBUTION_GROUP = "attribution"
CHECK_FINITE = "metrics_finite"
CHECK_VERSIONS = "rows_record_param_version"
#: Metadata keys a sensor reads from the latest materialization (the last session of the run).
SENSOR_KEYS = ("sharpe_30d", "mdd_30d", "regime")
#: The warehouse keeps one residual row per symbol-day (horizon 1); the other horizons' residual
#: statistics are in attribution_daily.
SETTINGS = attr.AttributionSettings(residual_horizons=(1,))
#: Sessions of strategy returns the rolling metrics read before the first session.
PERF_LOOKBACK = max(metrics.ROLLING) - 1
REPORT_NAME = "backtest.html"
STRATEGIES = (backtest.COMBINED, backtest.MACRO)


def _spec(name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset="attribution", description=description)


@dg.asset(
    partitions_def=trading_days_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=ATTRIBUTION_GROUP,
    kinds={"sql", "polars", "matplotlib"},
    metadata={"tables": ", ".join(m.__tablename__ for m in models.ATTRIBUTION_TABLES)},
    deps=[
        dg.AssetDep(
            "strategy_returns",
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-PERF_LOOKBACK),
        ),
        dg.AssetDep(
            "portfolio_positions",
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1),
        ),
        dg.AssetDep(
            "predictions",
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-SETTINGS.lookback()),
        ),
        dg.AssetDep(
            "zscored_factors",
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-SETTINGS.lookback()),
        ),
        dg.AssetDep(
            "aligned_panel",
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-SETTINGS.lookback()),
        ),
    ],
    check_specs=[
        _spec(CHECK_FINITE, "No ±inf or NaN in the attribution and performance figures."),
        _spec(
            CHECK_VERSIONS,
            "Every attribution row with a cross-section names the parameter "
            "version that produced its predictions.",
        ),
    ],  # fmt: skip
)
def attribution(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Residuals, factor returns and contributions, IC / rank IC per factor and horizon, the
    factor that failed, factor aging; Sharpe 7D/30D, Sortino, MDD 30D, turnover and cost drag
    per strategy in the standard (compounded, 252) and Qlib (summed, 238) conventions; the
    market regime; pictures and the HTML report of the whole history to the last session."""
    start, end = session_range(context)
    engine = warehouse.engine()
    try:
        tables, warnings = _compute(engine, start, end)
        counts = io.replace_slices(
            engine, start, end, [(m, tables[m.__tablename__], None)
                                 for m in models.ATTRIBUTION_TABLES],
        )  # fmt: skip
        summary = _history_summary(engine, end, warehouse.settings().home)
    except QGError as err:
        raise as_failure(err) from err
    for w in warnings:
        context.log.warning(w)
    yield dg.MaterializeResult(
        asset_key="attribution",
        metadata=table_metadata(
            sum(counts),
            **{
                f"rows:{m.__tablename__}": n
                for m, n in zip(models.ATTRIBUTION_TABLES, counts, strict=True)
            },
            **summary,
            warnings=dg.MetadataValue.md("\n".join(f"* {w}" for w in warnings) or "none"),
            range=f"{start}..{end}",
        ),  # fmt: skip
    )
    yield _finite_check(tables)
    yield _version_check(tables)


def _compute(engine, start: dt.date, end: dt.date) -> tuple[dict[str, pl.DataFrame], list[str]]:
    keys = ["session", "symbol"]
    lb = lookback_start(start, SETTINGS.lookback())
    z = io.read_slice(engine, models.ZscoredFactors, lb, end, columns=[*keys, "f_c", "f_s", "f_d"])
    preds = io.read_slice(
        engine, models.Predictions, lb, end,
        columns=[*keys, "r_pred_1d", "r_pred_5d", "r_pred_10d", "param_version"],
    )  # fmt: skip
    panel = io.read_slice(
        engine, models.AlignedPanel, lb, end,
        columns=[*keys, "close_adj", "has_bar", "taiex_close", "vixtwn"],
    )  # fmt: skip
    # the weight held over session D: the book after the close of D−1 (fractions of the book)
    held = io.read_slice(
        engine, models.PortfolioPositions, lookback_start(lb, 1), end,
        columns=["session", "strategy", "symbol", "weight"],
    ).filter(pl.col("strategy") == backtest.MACRO)  # fmt: skip
    days = calendar.sessions(lb, end)
    nxt = dict(zip(days[:-1], days[1:], strict=True))
    weights = (
        held.filter(pl.col("session").is_in(list(nxt)) & (pl.col("weight") != 0))
        .with_columns(pl.col("session").replace_strict(nxt, return_dtype=pl.Date))
        .select(*keys, "weight")
    )
    warnings: list[str] = []
    if preds.is_empty():
        warnings.append(f"no predictions in {lb}..{end}: the attribution tables are empty")
        a = None
    else:
        a = attr.attribution(z, preds, panel, weights if weights.height else None, SETTINGS)
        if a.days_without_predictions:
            first = a.missing_prediction_sessions[0]
            warnings.append(
                f"{a.days_without_predictions} session(s) without predictions (first {first}): "
                "their attribution rows are null"
            )
    in_range = pl.col("session").is_between(start, end)

    def part(name: str, model) -> pl.DataFrame:
        schema = polars_schema(model)
        if a is None:
            return pl.DataFrame(schema=schema)
        return getattr(a, name).filter(in_range).select(list(schema)).cast(dict(schema))

    regimes = regime.regime_labels_from_panel(
        panel.filter(pl.col("session") >= lookback_start(start, 40)).select(
            "session", "symbol", "taiex_close", "vixtwn"
        )
    )
    perf = _performance(engine, start, end, regimes)
    return {
        models.AttributionFactors.__tablename__: part("factors", models.AttributionFactors),
        models.AttributionDiagnosis.__tablename__: part("diagnosis", models.AttributionDiagnosis),
        models.AttributionDaily.__tablename__: part("daily", models.AttributionDaily),
        models.AttributionResiduals.__tablename__: part("residuals", models.AttributionResiduals),
        models.StrategyPerformance.__tablename__: perf,
        models.MarketRegimes.__tablename__: regimes.filter(in_range)
        .select(list(polars_schema(models.MarketRegimes)))
        .cast(dict(polars_schema(models.MarketRegimes))),
    }, warnings


def _performance(engine, start, end, regimes: pl.DataFrame) -> pl.DataFrame:
    """Rolling metrics per strategy and convention for the sessions [start, end]."""
    schema = polars_schema(models.StrategyPerformance)
    lb = lookback_start(start, PERF_LOOKBACK)
    days = pl.DataFrame({"session": calendar.sessions(lb, end)})
    r = io.read_slice(
        engine, models.StrategyReturns, lb, end,
        columns=["session", "strategy", "net_return", "turnover", "cost_drag", "param_version"],
    )  # fmt: skip
    parts = []
    for name in STRATEGIES:
        s = days.join(r.filter(pl.col("strategy") == name), on="session", how="left")
        rolling = metrics.rolling_performance(s["net_return"].to_numpy(), s["session"])
        means = s.select(
            "session",
            "param_version",
            turnover_30d=pl.col("turnover").rolling_mean(30, min_samples=30),
            cost_drag_30d=pl.col("cost_drag").rolling_mean(30, min_samples=30),
        )
        parts.append(
            rolling.join(means, on="session", how="left").with_columns(strategy=pl.lit(name))
        )
    out = (
        pl.concat(parts)
        .join(regimes.select("session", "regime"), on="session", how="left")
        .filter(pl.col("session").is_between(start, end))
        .with_columns(pl.col(pl.Float64).fill_nan(None))
    )
    return out.select(list(schema)).cast(dict(schema)).sort("session", "strategy", "convention")


def _history_summary(engine, end: dt.date, home) -> dict:
    """The sensor keys, the headline table, the pictures and the HTML report of the whole
    history up to ``end`` (read back from the warehouse: a daily run reports the whole book)."""
    returns = io.read_slice(
        engine, models.StrategyReturns, None, end,
        columns=["session", "strategy", "net_return", "gross_return", "turnover", "cost_drag"],
    )  # fmt: skip
    perf = io.read_slice(engine, models.StrategyPerformance, end, end)
    factors = io.read_slice(
        engine, models.AttributionFactors, None, end,
        columns=["session", "factor", "horizon", "ic", "rank_ic", "rolling_rank_ic"],
    )  # fmt: skip
    regimes = io.read_slice(engine, models.MarketRegimes, None, end, columns=["session", "regime"])
    index = io.read_market_columns(engine, models.AlignedPanel, None, end, ["taiex_close"])
    out: dict = {}
    last = perf.filter(
        (pl.col("strategy") == backtest.COMBINED) & (pl.col("convention") == "standard")
    )
    row = last.row(0, named=True) if last.height else {}
    for key in ("sharpe_30d", "mdd_30d"):
        v = row.get(key)
        out[key] = float(v) if v is not None else dg.MetadataValue.null()
    out["regime"] = row.get("regime") or "unknown"
    if returns.is_empty():
        return out
    table = headline_table(returns, factors)
    out["headline"] = dg.MetadataValue.md(report.frame_markdown(table))
    pictures = {
        "Equity curve and drawdown": report.equity_curve_png(returns),
        "Rolling rank IC per factor": report.rolling_ic_png(factors),
        "Market regime": report.regime_timeline_png(regimes, index),
    }
    for name, png in pictures.items():
        out[name] = dg.MetadataValue.md(report.markdown_image(png, name))
    path = report.write_report(
        home / "reports" / REPORT_NAME,
        report.report_html(
            f"Quant Genesis backtest to {end}",
            {"Headline (macro strategy)": table},
            pictures,
            notes=[f"Sessions {returns['session'].min()}..{end}; standard = compounded, 252 "
                   "sessions a year; qlib = summed, 238 (Qlib's risk_analysis)."],
        ),
    )  # fmt: skip
    out["report"] = dg.MetadataValue.path(str(path))
    return out


def headline_table(returns: pl.DataFrame, factors: pl.DataFrame) -> pl.DataFrame:
    """The demo's headline table: per convention, the macro strategy's annual return, Sharpe,
    Sortino, MDD, mean daily turnover and cost drag, and the mean IC / rank IC (horizon 1) per
    factor."""
    m = returns.filter(pl.col("strategy") == backtest.MACRO).sort("session")
    table = metrics.headline(
        m["net_return"].to_numpy(),
        turnover=m["turnover"].to_numpy(),
        costs=m["cost_drag"].to_numpy(),
    )
    h1 = factors.filter(pl.col("horizon") == 1)
    ics = {}
    for name in attr.FACTORS:
        f = h1.filter(pl.col("factor") == name)
        ics[f"ic_{name}"] = float(f["ic"].mean()) if f["ic"].drop_nulls().len() else None
        ics[f"rank_ic_{name}"] = (
            float(f["rank_ic"].mean()) if f["rank_ic"].drop_nulls().len() else None
        )
    return table.with_columns(**{k: pl.lit(v, pl.Float64) for k, v in ics.items()})


def _finite_check(tables: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    bad = {}
    for name, df in tables.items():
        floats = [c for c, t in df.schema.items() if t == pl.Float64]
        if not floats or df.is_empty():
            continue
        n = df.select(
            pl.sum_horizontal(
                [(pl.col(c).is_infinite() | pl.col(c).is_nan()).sum() for c in floats]
            )  # fmt: skip
        ).item()
        if n:
            bad[name] = int(n)
    return dg.AssetCheckResult(
        check_name=CHECK_FINITE,
        asset_key="attribution",
        passed=not bad,
        metadata={"bad_values": sum(bad.values()), "bad_tables": ", ".join(bad) or "none"},
    )


def _version_check(tables: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    f = tables[models.AttributionFactors.__tablename__]
    missing = f.filter((pl.col("n") > 0) & pl.col("param_version").is_null()).height
    versions = sorted(set(",".join(f["param_version"].drop_nulls().unique().to_list()).split(",")))
    return dg.AssetCheckResult(
        check_name=CHECK_VERSIONS,
        asset_key="attribution",
        passed=missing == 0,
        metadata={"rows_without_version": missing,
                  "versions": ", ".join(v for v in versions if v) or "none"},
    )  # fmt: skip
