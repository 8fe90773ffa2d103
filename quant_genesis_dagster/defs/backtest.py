"""Portfolio and backtest assets (SPEC §6): ``portfolio_positions`` and ``strategy_returns``,
written together by one step (``domain.backtest.simulate``). The book of session D continues the
book stored for D−1, so a daily run equals the same day of a backfill."""

from collections.abc import Iterator
from functools import lru_cache

import dagster as dg
import polars as pl

from quant_genesis_dagster.defs.common import (
    as_failure,
    definition_metadata,
    session_range,
    table_metadata,
)
from quant_genesis_dagster.defs.factors import lookback_start
from quant_genesis_dagster.defs.partitions import trading_days_partitions_def
from quant_genesis_dagster.defs.resources import (
    BacktestResource,
    ParamStoreResource,
    WarehouseResource,
)
from quant_genesis_dagster.domain import backtest, portfolio
from quant_genesis_dagster.domain.registry import parse_version_id
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.errors import QGError

BACKTEST_GROUP = "backtest"
CHECK_COSTS = "costs_non_negative"
CHECK_CAPS = "weights_within_caps"
CHECK_FINITE = "metrics_finite"

_PREVIOUS = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
#: The decision inputs of session D are those of D−1 (and D's own, for tomorrow's targets).
_FROM_PREVIOUS = dg.TimeWindowPartitionMapping(start_offset=-1)


def _check(asset: str, name: str, description: str, blocking: bool = False) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking)


@dg.multi_asset(
    name="book",
    specs=[
        dg.AssetSpec(
            "portfolio_positions",
            description="The book per session and symbol after the close: shares, value, "
            "weight, the trades of the session with their costs, why an order was not filled, "
            "and tomorrow's target weights.",
            group_name=BACKTEST_GROUP,
            kinds={"sql", "polars"},
            metadata=definition_metadata(models.PortfolioPositions),
            deps=[
                dg.AssetDep("predictions", partition_mapping=_FROM_PREVIOUS),
                dg.AssetDep("signals", partition_mapping=_FROM_PREVIOUS),
                dg.AssetDep("chip_factors", partition_mapping=_FROM_PREVIOUS),
                dg.AssetDep("value_factors", partition_mapping=_FROM_PREVIOUS),
                dg.AssetDep("aligned_panel", partition_mapping=_FROM_PREVIOUS),
                # the book continues the previous session's
                dg.AssetDep("portfolio_positions", partition_mapping=_PREVIOUS),
            ],
        ),
        dg.AssetSpec(
            "strategy_returns",
            description="What the book earned per session and strategy (macro, combined): "
            "P&L, net and gross returns, turnover, commission, tax, slippage, exposure, "
            "blocked orders, and the parameter version of the decisions.",
            group_name=BACKTEST_GROUP,
            kinds={"sql", "polars"},
            metadata=definition_metadata(models.StrategyReturns),
            deps=[
                "portfolio_positions",
                dg.AssetDep("strategy_returns", partition_mapping=_PREVIOUS),
            ],
        ),
    ],
    check_specs=[
        _check(
            "strategy_returns",
            CHECK_COSTS,
            "Commission, tax, slippage and financing are non-negative on every row of both tables.",
            blocking=True,
        ),
        _check(
            "portfolio_positions",
            CHECK_CAPS,
            "Every target weight is within the per-name "
            "cap and the targets of a session sum to at most its intended exposure.",
            blocking=True,
        ),
        _check("strategy_returns", CHECK_FINITE, "Returns, turnover and costs are finite."),
    ],  # fmt: skip
    partitions_def=trading_days_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def book(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    param_store: ParamStoreResource,
    backtest_settings: BacktestResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Decide after each close, trade the next session at its VWAP with Taiwan costs, mark at
    the close (``domain.backtest``)."""
    start, end = session_range(context)
    engine = warehouse.engine()
    settings, costs = backtest_settings.portfolio(), backtest_settings.costs()
    first = lookback_start(start, 1)
    try:
        if first == start:
            raise QGError(
                f"strategy_returns: {start} is the first session of history; the book needs a "
                "decision session before the first simulated one"
            )
        prior_positions, prior_combined = _prior_book(engine, start, first)
        keys = ["session", "symbol"]
        panel = io.read_slice(
            engine, models.AlignedPanel, first, end,
            columns=list(dict.fromkeys([*backtest.PANEL_COLUMNS, *portfolio.PANEL_COLUMNS])),
        )  # fmt: skip
        col = f"r_pred_{settings.horizon}d"
        preds = io.read_slice(
            engine, models.Predictions, first, end,
            columns=[*keys, col, "position_scale", "param_version"],
        )  # fmt: skip
        lac = io.read_slice(engine, models.ChipFactors, first, end, columns=[*keys, "lac"])
        value = io.read_slice(
            engine, models.ValueFactors, first, end, columns=[*keys, "equity_multiplier"]
        )
        sig = io.read_slice(
            engine, models.Signals, first, end,
            columns=["session", "symbol", "signal", "action", "strength"],
        )  # fmt: skip
        store = param_store.store()
        params_of = _params_lookup(store)
        fallback = store.champion().params
        out = backtest.simulate(panel, preds, lac, value, sig, params_of, fallback,
                                prior_positions, prior_combined, settings, costs)  # fmt: skip
        n_pos, n_ret = io.replace_slices(
            engine, start, end,
            [(models.PortfolioPositions, out.positions, None),
             (models.StrategyReturns, out.strategy_returns, None)],
        )  # fmt: skip
    except QGError as err:
        raise as_failure(err) from err
    for w in out.warnings:
        context.log.warning(w)
    r = out.strategy_returns
    combined = r.filter(pl.col("strategy") == backtest.COMBINED)
    macro = r.filter(pl.col("strategy") == backtest.MACRO)
    summary = _summary(combined, macro)
    warnings_md = dg.MetadataValue.md("\n".join(f"* {w}" for w in out.warnings) or "none")
    yield dg.MaterializeResult(
        asset_key="portfolio_positions",
        metadata=table_metadata(
            n_pos,
            held_at_end=int(combined["n_positions"][-1]) if combined.height else 0,
            blocked_orders=int(combined["blocked_orders"].sum()),
            range=f"{start}..{end}",
        ),
    )
    yield dg.MaterializeResult(
        asset_key="strategy_returns",
        metadata=table_metadata(n_ret, **summary, warnings=warnings_md, range=f"{start}..{end}"),
    )
    yield _costs_check(out)
    yield _caps_check(out, settings)
    yield _finite_check(r)


def _prior_book(engine, start, previous) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The stored book after ``previous`` (the session before ``start``): its positions and its
    combined strategy_returns row; both empty when no book was ever stored before ``start``
    (the first run starts flat). A hole (a book before, none on ``previous``) is an error."""
    combined = io.read_slice(engine, models.StrategyReturns, previous, previous).filter(
        pl.col("strategy") == backtest.COMBINED
    )
    positions = io.read_slice(engine, models.PortfolioPositions, previous, previous)
    if combined.is_empty():
        earlier = io.read_latest_before(
            engine, models.StrategyReturns, start, columns=["session", "strategy"]
        )
        if earlier.height:
            last = earlier["session"].max()
            raise QGError(
                f"strategy_returns: no book for {previous} (the last one is {last}); the book of "
                f"{start} continues the previous session's: materialize the sessions after {last}"
                " first (or the whole range in one run)"
            )
    return positions, combined


def _params_lookup(store):
    @lru_cache(maxsize=16)
    def params_of(version_id: str):
        name, number = parse_version_id(version_id)
        if name != store.name:
            raise QGError(
                f"predictions were made with {version_id}, which is not in the parameter "
                f"store's registered model {store.name!r}; re-materialize predictions"
            )
        return store.get(number).params

    return params_of


def _summary(combined: pl.DataFrame, macro: pl.DataFrame) -> dict:
    if combined.is_empty():
        return {}
    growth = float((1 + combined["net_return"].fill_null(0)).product())
    return {
        "nav_end": float(combined["nav"][-1]),
        "combined_return_over_range": growth - 1,
        "macro_mean_daily_turnover": float(macro["turnover"].mean() or 0.0),
        "macro_mean_daily_cost_drag": float(macro["cost_drag"].mean() or 0.0),
        "sessions_without_predictions": int(combined["no_predictions"].sum()),
        "first_session": str(combined["session"][0]),
    }


def _costs_check(out: backtest.BookTables) -> dg.AssetCheckResult:
    bad_r = out.strategy_returns.filter(
        pl.any_horizontal(pl.col("commission", "tax", "slippage", "financing") < 0)
    ).height
    bad_p = out.positions.filter(
        pl.any_horizontal(pl.col("commission", "tax", "slippage") < 0)
    ).height
    return dg.AssetCheckResult(
        check_name=CHECK_COSTS,
        asset_key="strategy_returns",
        passed=bad_r == 0 and bad_p == 0,
        metadata={"negative_return_rows": bad_r, "negative_position_rows": bad_p},
    )


def _caps_check(out: backtest.BookTables, settings) -> dg.AssetCheckResult:
    returns = out.strategy_returns.filter(
        (pl.col("strategy") == backtest.COMBINED) & pl.col("rebalanced")
    ).select("session", "intended_exposure")
    sums = out.positions.group_by("session").agg(
        pl.col("target_weight").sum().alias("targets"),
        pl.col("target_weight").max().alias("largest"),
    )
    j = returns.join(sums, on="session", how="left").fill_null(0.0)
    # a target is a fraction of the book: the sleeve's cap times its share (≤ the sleeve cap)
    over_cap = j.filter(pl.col("largest") > settings.max_weight + 1e-12).height
    over_total = j.filter(pl.col("targets") > pl.col("intended_exposure") + 1e-9).height
    shortfall = (j["intended_exposure"] - j["targets"]).max() if j.height else 0.0
    return dg.AssetCheckResult(
        check_name=CHECK_CAPS,
        asset_key="portfolio_positions",
        passed=over_cap == 0 and over_total == 0,
        metadata={
            "rebalance_sessions": j.height,
            "over_cap": over_cap,
            "over_intended_exposure": over_total,
            "largest_target": float(j["largest"].max() or 0.0) if j.height else 0.0,
            "max_shortfall_vs_intended": float(shortfall or 0.0),
        },
    )


def _finite_check(r: pl.DataFrame) -> dg.AssetCheckResult:
    cols = ["net_return", "gross_return", "turnover", "cost_drag"]
    bad = r.select(
        [(pl.col(c).is_infinite() | pl.col(c).is_nan()).sum().alias(c) for c in cols]
    ).row(0, named=True)
    bad = {c: int(v) for c, v in bad.items() if v}
    return dg.AssetCheckResult(
        check_name=CHECK_FINITE,
        asset_key="strategy_returns",
        passed=not bad,
        metadata={"bad_values": sum(bad.values()), "bad_columns": ", ".join(bad) or "none"},
    )
