"""The ``sample`` source: the embedded synthetic Taiwan market (SPEC §3.1) behind the source
interface, so the pipeline cannot tell it from a vendor adapter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

import polars as pl

from quant_genesis_dagster.domain.sample import SampleMarket, SampleMarketConfig
from quant_genesis_dagster.domain.sources.base import check_tables, register
from quant_genesis_dagster.errors import QGError


class SampleSource:
    name = "sample"

    def __init__(self, config: SampleMarketConfig):
        self.config = config
        self.market = SampleMarket(config)

    def stock_info(self) -> pl.DataFrame:
        return self.market.stock_info()

    def fetch(self, tables: Iterable[str], start: dt.date, end: dt.date) -> dict[str, pl.DataFrame]:
        return self.market.tables(start, end, tables=check_tables(tables))


@register("sample")
def _make(options: Mapping[str, Any]) -> SampleSource:
    known = {f.name for f in fields(SampleMarketConfig)}
    bad = sorted(set(options) - known)
    if bad:
        raise QGError(
            f"sample source: unknown option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}"
        )
    return SampleSource(SampleMarketConfig(**options))
