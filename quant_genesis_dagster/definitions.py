"""The one Dagster entry point (``workspace.yaml``, ``dagster dev``, ``make up``)."""

from __future__ import annotations

import dagster as dg

from quant_genesis_dagster.defs.clean import aligned_panel, cleaned_prices
from quant_genesis_dagster.defs.jobs import daily_job
from quant_genesis_dagster.defs.raw import raw_stock_info, raw_tables
from quant_genesis_dagster.defs.resources import DataSourceResource, WarehouseResource

defs = dg.Definitions(
    assets=[raw_stock_info, raw_tables, cleaned_prices, aligned_panel],
    jobs=[daily_job],
    resources={
        "warehouse": WarehouseResource(),
        "data_source": DataSourceResource(),
    },
)
