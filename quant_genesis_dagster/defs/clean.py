"""Clean layer assets: ``cleaned_prices`` (validated, adjusted bars + quarantine) and
``aligned_panel`` (the point-in-time panel every factor reads). Each reads its inputs from the
warehouse, calls one domain function, and replaces its slice."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from quant_genesis_dagster.defs.common import (
    as_failure,
    counts_markdown,
    definition_metadata,
    session_range,
    table_metadata,
    value_counts,
)
from quant_genesis_dagster.defs.partitions import trading_days_partitions_def
from quant_genesis_dagster.defs.raw import raw_asset_key, raw_stock_info
from quant_genesis_dagster.defs.resources import WarehouseResource
from quant_genesis_dagster.domain import alignment, calendar, cleaning
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.errors import QGError

CLEAN_GROUP = "clean"
#: Sessions a suspended symbol's last price is carried forward in the panel (flagged).
MAX_CARRY_SESSIONS = 5
#: Rejected share of raw rows above which the quarantine check warns.
MAX_REJECT_RATE = 0.01
#: Share of listed symbols with a fresh bar below which the coverage check warns.
MIN_COVERAGE = 0.80

CHECK_POSITIVE_PRICES = "positive_prices"
CHECK_OHLC_CONSISTENT = "ohlc_consistent"
CHECK_QUARANTINE = "quarantine_counts"
CHECK_NO_FUTURE_FUNDAMENTALS = "no_future_fundamentals"
CHECK_COVERAGE = "coverage"

# Raw tables whose quarantine rows each clean asset owns (its slice of the quarantine table).
PRICE_TABLES = ("daily_prices",)
PANEL_TABLES = ("institutional_flows", "margin", "financials", "market_indicators", "us_market")


def _check(asset: str, name: str, description: str, blocking: bool = False) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking)


def _quarantine_check(asset: str, quarantine: pl.DataFrame, raw_rows: int) -> dg.AssetCheckResult:
    rejected = quarantine.filter(pl.col("action") == "rejected").height
    rate = rejected / raw_rows if raw_rows else 0.0
    return dg.AssetCheckResult(
        check_name=CHECK_QUARANTINE,
        asset_key=asset,
        passed=rate <= MAX_REJECT_RATE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "raw_rows": raw_rows,
            "rejected": rejected,
            "reject_rate": float(rate),
            "by_reason": counts_markdown(value_counts(quarantine, "reason")),
        },
    )


@dg.asset(
    partitions_def=trading_days_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=CLEAN_GROUP,
    kinds={"sql", "polars"},
    metadata=definition_metadata(models.CleanedPrices),
    deps=[
        raw_asset_key("daily_prices"),
        raw_asset_key("corporate_actions"),
        raw_stock_info,
        # Each session continues the previous one (last valid close, adjustment factor).
        dg.AssetDep(
            "cleaned_prices",
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1),
        ),
    ],
    check_specs=[
        _check("cleaned_prices", CHECK_POSITIVE_PRICES, "All raw and adjusted prices > 0.", True),
        _check(
            "cleaned_prices",
            CHECK_OHLC_CONSISTENT,
            "low <= min(open, close) <= max(open, close) <= high on every row.",
            True,
        ),
        _check(
            "cleaned_prices",
            CHECK_QUARANTINE,
            f"Quarantined rows by reason; warns above {MAX_REJECT_RATE:.0%} rejected.",
        ),
    ],
)
def cleaned_prices(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Validated daily bars with raw and dividend/rights-adjusted prices (SPEC §4).

    Bad prints (OHLC-inconsistent, non-positive, negative volume, beyond the daily limit,
    duplicates, unknown symbols) go to ``quarantine`` with a reason; a whole missing session is
    recorded there too. Adjusted prices are point-in-time: a row never changes when later
    corporate actions arrive.
    """
    start, end = session_range(context)
    engine = warehouse.engine()
    try:
        _require_previous_session(engine, start)
        raw = io.read_slice(engine, models.RawDailyPrices, start, end)
        # all ex-dates up to end: a symbol suspended across an ex-date needs it
        actions = io.read_slice(engine, models.RawCorporateActions, None, end)
        info = io.read_all(engine, models.RawStockInfo)
        prior = io.read_latest_before(engine, models.CleanedPrices, start)
        result = cleaning.clean_prices(raw, actions, info, prior, calendar.sessions(start, end))
        rows = io.replace_slices(
            engine,
            start,
            end,
            [
                (models.CleanedPrices, result.data, None),
                (models.Quarantine, result.quarantine, {"table_name": PRICE_TABLES}),
            ],
        )[0]
    except QGError as err:
        raise as_failure(err) from err

    ok_pos, pos_detail = cleaning.check_positive_prices(result.data)
    ok_ohlc, ohlc_detail = cleaning.check_ohlc_consistent(result.data)
    yield dg.MaterializeResult(
        asset_key="cleaned_prices",
        metadata=table_metadata(
            rows,
            raw_rows=raw.height,
            quarantined=result.quarantine.height,
            ex_dates=int(result.data["is_ex_date"].sum()) if rows else 0,
            range=f"{start}..{end}",
        ),
    )
    yield dg.AssetCheckResult(
        check_name=CHECK_POSITIVE_PRICES,
        asset_key="cleaned_prices",
        passed=ok_pos,
        metadata=_md(pos_detail),
    )
    yield dg.AssetCheckResult(
        check_name=CHECK_OHLC_CONSISTENT,
        asset_key="cleaned_prices",
        passed=ok_ohlc,
        metadata=_md(ohlc_detail),
    )
    yield _quarantine_check("cleaned_prices", result.quarantine, raw.height)


def _require_previous_session(engine, start) -> None:
    """Cleaning continues the previous session's state; refuse to start from a hole."""
    if start <= calendar.HISTORY_START:
        return
    prev = calendar.shift_session(start, -1)
    raw_prev = io.count_rows(engine, models.RawDailyPrices, prev, prev)
    clean_prev = io.count_rows(engine, models.CleanedPrices, prev, prev)
    if raw_prev and not clean_prev:
        raise QGError(
            f"cleaned_prices for {start} needs session {prev} cleaned first (each session carries "
            f"the last valid close and the adjustment factor forward); backfill cleaned_prices "
            f"from the first uncleaned session"
        )


def _md(detail: dict) -> dict:
    return {k: (v if isinstance(v, int | float | str) else str(v)) for k, v in detail.items()}


@dg.asset(
    partitions_def=trading_days_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=CLEAN_GROUP,
    kinds={"sql", "polars"},
    metadata=definition_metadata(models.AlignedPanel),
    deps=[
        "cleaned_prices",
        raw_stock_info,
        *(raw_asset_key(t) for t in PANEL_TABLES),
    ],
    check_specs=[
        _check(
            "aligned_panel",
            CHECK_NO_FUTURE_FUNDAMENTALS,
            "No fundamentals row with available_date after the session it is used on.",
            True,
        ),
        _check(
            "aligned_panel",
            CHECK_COVERAGE,
            f"Share of listed symbols with a fresh bar; warns below {MIN_COVERAGE:.0%}.",
        ),
        _check(
            "aligned_panel",
            CHECK_QUARANTINE,
            "Quarantined flow / margin / financials / indicator / US rows by reason.",
        ),
    ],
)
def aligned_panel(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """One row per session and listed symbol with everything known by the end of the session:
    prices (suspensions carried forward at most a few sessions, flagged), institutional net
    flows (null when unreported, never zero), margin, TTM fundamentals as of their
    ``available_date``, market indicators and US proxy returns mapped to the Taiwan session
    (SPEC §4)."""
    start, end = session_range(context)
    engine = warehouse.engine()
    lookback = _session_or_first(start, -(MAX_CARRY_SESSIONS + 1))
    us_lookback = _session_or_first(start, -10)
    try:
        info = io.read_all(engine, models.RawStockInfo)
        prices = io.read_slice(engine, models.CleanedPrices, lookback, end)
        raw = {
            "institutional_flows": io.read_slice(engine, models.RawInstitutionalFlows, start, end),
            "margin": io.read_slice(engine, models.RawMargin, start, end),
            "market_indicators": io.read_slice(engine, models.RawMarketIndicators, start, end),
            "us_market": io.read_slice(engine, models.RawUsMarket, us_lookback, end),
        }
        cleaned = {name: cleaning.clean_records(name, df) for name, df in raw.items()}
        fin = cleaning.clean_financials(io.read_slice(engine, models.RawFinancials, None, end))
        panel = alignment.align_panel(
            calendar.sessions(start, end),
            info,
            prices,
            cleaned["institutional_flows"].data,
            cleaned["margin"].data,
            fin.data,
            cleaned["market_indicators"].data,
            cleaned["us_market"].data,
            max_carry_sessions=MAX_CARRY_SESSIONS,
        )
        quarantine = pl.concat(
            [c.quarantine for c in cleaned.values()] + [fin.quarantine], how="vertical"
        ).filter(pl.col("session").is_between(start, end))
        rows = io.replace_slices(
            engine,
            start,
            end,
            [
                (models.AlignedPanel, panel, None),
                (models.Quarantine, quarantine, {"table_name": PANEL_TABLES}),
            ],
        )[0]
    except QGError as err:
        raise as_failure(err) from err

    ok_future, future_detail = alignment.check_no_future_fundamentals(panel)
    ok_coverage, coverage_detail = alignment.check_coverage(panel, MIN_COVERAGE)
    raw_rows = sum(df.filter(pl.col("session") >= start).height for df in raw.values())
    yield dg.MaterializeResult(
        asset_key="aligned_panel",
        metadata=table_metadata(
            rows,
            symbols=panel["symbol"].n_unique() if rows else 0,
            with_fundamentals=int(panel["revenue_ttm"].is_not_null().sum()) if rows else 0,
            range=f"{start}..{end}",
        ),
    )
    yield dg.AssetCheckResult(
        check_name=CHECK_NO_FUTURE_FUNDAMENTALS,
        asset_key="aligned_panel",
        passed=ok_future,
        metadata=_md(future_detail),
    )
    yield dg.AssetCheckResult(
        check_name=CHECK_COVERAGE,
        asset_key="aligned_panel",
        passed=ok_coverage,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=_md(coverage_detail),
    )
    yield _quarantine_check("aligned_panel", quarantine, raw_rows)


def _session_or_first(day, k: int):
    try:
        return calendar.shift_session(day, k)
    except QGError:
        return calendar.HISTORY_START
