"""Raw layer assets: what the configured data source returns, written to the warehouse as is.

``raw_stock_info`` is the unpartitioned security master; the other raw tables are one
multi-asset (one fetch from the source per run, one transactional slice write per table), so a
backfill over years is a single vectorized run.
"""

from collections.abc import Iterator

import dagster as dg

from quant_genesis_dagster.defs.common import (
    as_failure,
    definition_metadata,
    session_range,
    table_metadata,
)
from quant_genesis_dagster.defs.partitions import trading_days_partitions_def
from quant_genesis_dagster.defs.resources import DataSourceResource, WarehouseResource
from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.errors import QGError

RAW_GROUP = "raw"
CHECK_RAW_PRICES_PRESENT = "sessions_have_prices"


def raw_asset_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(f"raw_{table}")


@dg.asset(group_name=RAW_GROUP, kinds={"sql"}, metadata=definition_metadata(models.RawStockInfo))
def raw_stock_info(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    data_source: DataSourceResource,
) -> dg.MaterializeResult:
    """The security master from the data source: symbol, name, market, industry, listing and
    delisting dates. Delisted names are kept (no survivorship bias)."""
    try:
        df = data_source.source().stock_info()
        rows = io.replace_all(warehouse.engine(), models.RawStockInfo, df)
    except QGError as err:
        raise as_failure(err) from err
    listed = df.filter(df["delisted_date"].is_null()).height
    return dg.MaterializeResult(
        metadata=table_metadata(
            rows,
            source=data_source.name,
            delisted=rows - listed,
            warehouse=warehouse.location(),
        )
    )


_RAW_SPECS = [
    dg.AssetSpec(
        raw_asset_key(name),
        partitions_def=trading_days_partitions_def,
        group_name=RAW_GROUP,
        description=(model.__doc__ or "").strip(),
        kinds={"sql"},
        metadata=definition_metadata(model),
    )
    for name, model in models.RAW_PARTITIONED_TABLES.items()
]

_PRICES_CHECK = dg.AssetCheckSpec(
    CHECK_RAW_PRICES_PRESENT,
    asset=raw_asset_key("daily_prices"),
    description="Every session of the range has daily price rows from the source "
    "(a whole missing session is a vendor gap; the cleaner quarantines it as missing_session).",
)


@dg.multi_asset(
    name="raw_tables",
    specs=_RAW_SPECS,
    check_specs=[_PRICES_CHECK],
    can_subset=True,
    partitions_def=trading_days_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def raw_tables(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    data_source: DataSourceResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Fetch every selected raw table for the partition range and replace its slice."""
    start, end = session_range(context)
    selected = [
        name
        for name in models.RAW_PARTITIONED_TABLES
        if raw_asset_key(name) in context.selected_asset_keys
    ]
    engine = warehouse.engine()
    try:
        frames = data_source.source().fetch(selected, start, end)
        for name in selected:
            model = models.RAW_PARTITIONED_TABLES[name]
            df = frames[name]
            rows = io.replace_slice(engine, model, df, start, end)
            context.log.info(f"raw_{name}: {rows} rows for {start}..{end}")
            yield dg.MaterializeResult(
                asset_key=raw_asset_key(name),
                metadata=table_metadata(
                    rows,
                    source=data_source.name,
                    sessions=df["session"].n_unique() if rows else 0,
                    range=f"{start}..{end}",
                ),
            )
            if name == "daily_prices":
                expected = set(calendar.sessions(start, end))
                present = set(df["session"].unique().to_list())
                missing = sorted(expected - present)
                yield dg.AssetCheckResult(
                    check_name=CHECK_RAW_PRICES_PRESENT,
                    asset_key=raw_asset_key("daily_prices"),
                    passed=not missing,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "sessions_expected": len(expected),
                        "sessions_missing": len(missing),
                        "missing": ", ".join(map(str, missing[:20])) or "none",
                    },
                )
    except QGError as err:
        raise as_failure(err) from err
