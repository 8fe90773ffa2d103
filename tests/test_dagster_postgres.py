"""A real Dagster instance on PostgreSQL storage (dagster-postgres) materializing the assets,
with the warehouse on PostgreSQL too."""

from __future__ import annotations

import dagster as dg
import pytest

from quant_genesis_dagster.definitions import defs
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.domain.warehouse.db import open_warehouse

pytestmark = pytest.mark.postgres


def test_materialize_with_postgres_instance_and_warehouse(pg_dagster_url, pg_url, tmp_path):
    overrides = {"storage": {"postgres": {"postgres_url": pg_dagster_url}}}
    job = defs.resolve_job_def("daily_job")
    with dg.instance_for_test(overrides=overrides) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = job.execute_in_process(
            run_config={
                "resources": {
                    "warehouse": {"config": {"url": pg_url, "home": str(tmp_path)}},
                    "data_source": {"config": {"n_symbols": 30, "seed": 3}},
                }
            },
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2024-08-26",
                "dagster/asset_partition_range_end": "2024-08-30",
            },
        )
        assert result.success
        mats = instance.fetch_materializations(dg.AssetKey("aligned_panel"), limit=10).records
        assert {r.partition_key for r in mats} == {
            "2024-08-26",
            "2024-08-27",
            "2024-08-28",
            "2024-08-29",
            "2024-08-30",
        }
    engine = open_warehouse(pg_url, tmp_path)
    assert engine.dialect.name == "postgresql"
    assert io.count_rows(engine, models.AlignedPanel) > 0
