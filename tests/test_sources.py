"""The source registry, and what happens when an adapter hands back a corrupt table."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from quant_genesis_dagster.definitions import defs
from quant_genesis_dagster.demo import _failure_message
from quant_genesis_dagster.domain.sources import base
from quant_genesis_dagster.domain.sources.sample import SampleSource
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.domain.warehouse.db import open_warehouse
from quant_genesis_dagster.errors import QGError


class _DropsCloseSource(SampleSource):
    """The sample market, but its daily_prices come back without the `close` column."""

    name = "drops_close"

    def fetch(self, tables, start, end):
        frames = super().fetch(tables, start, end)
        if "daily_prices" in frames:
            frames["daily_prices"] = frames["daily_prices"].drop("close")
        return frames


@pytest.fixture
def drops_close_source():
    from quant_genesis_dagster.domain.sample import SampleMarketConfig

    base.register("drops_close")(lambda opts: _DropsCloseSource(SampleMarketConfig(n_symbols=20)))
    yield
    base._REGISTRY.pop("drops_close", None)


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(QGError) as err:
        base.make_source("bloomberg")
    assert "sample" in str(err.value) and "finmind" in str(err.value)


def test_unknown_sample_option_is_named():
    with pytest.raises(QGError, match="unknown option"):
        base.make_source("sample", {"n_symbol": 5})


def test_unknown_table_is_named():
    src = base.make_source("sample", {"n_symbols": 10})
    with pytest.raises(QGError, match="unknown raw table"):
        src.fetch(["daily_price"], dt.date(2024, 8, 30), dt.date(2024, 8, 30))


def test_a_table_missing_a_column_fails_with_one_line_and_writes_nothing(
    drops_close_source, tmp_path
):
    job = defs.resolve_job_def("daily_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            run_config={
                "resources": {
                    "warehouse": {"config": {"home": str(tmp_path)}},
                    "data_source": {"config": {"name": "drops_close"}},
                }
            },
            instance=instance,
            partition_key="2024-08-30",
            raise_on_error=False,
        )
    assert not result.success
    msg = _failure_message(result)
    assert "raw_daily_prices" in msg and "missing column(s) close" in msg and "\n" not in msg
    engine = open_warehouse(None, tmp_path)
    assert io.count_rows(engine, models.RawDailyPrices) == 0
    assert io.count_rows(engine, models.CleanedPrices) == 0
