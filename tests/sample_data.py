"""The sample market run through cleaning and alignment without Dagster: shared, cached inputs
for the factor tests (one build per process and argument set)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import polars as pl

from quant_genesis_dagster.domain import alignment, calendar, cleaning
from quant_genesis_dagster.domain.sample import GroundTruth, SampleMarket, SampleMarketConfig


@dataclass(frozen=True)
class SampleData:
    sessions: list[dt.date]
    info: pl.DataFrame
    raw: dict[str, pl.DataFrame]  # raw tables as the source returned them
    prices: pl.DataFrame  # cleaned_prices
    panel: pl.DataFrame  # aligned_panel
    truth: GroundTruth
    market: SampleMarket


@lru_cache(maxsize=4)
def sample_data(
    seed: int = 7, n_symbols: int = 120, end: dt.date = dt.date(2019, 12, 31), n_sessions: int = 500
) -> SampleData:
    """``n_sessions`` sessions ending at ``end`` (faults on), cleaned and aligned."""
    m = SampleMarket(SampleMarketConfig(seed=seed, n_symbols=n_symbols))
    sessions = calendar.last_sessions(n_sessions, end)
    start = sessions[0]
    info = m.stock_info()
    raw = m.tables(start, end)
    # financials: everything published up to the end, so TTM is warm from the first session
    raw["financials"] = m.tables(calendar.HISTORY_START, end, ["financials"])["financials"]
    prices = cleaning.clean_prices(
        raw["daily_prices"],
        raw["corporate_actions"],
        info,
        pl.DataFrame(schema=cleaning.CLEANED_PRICES_SCHEMA),
        sessions,
    ).data
    cleaned = {
        name: cleaning.clean_records(name, raw[name]).data
        for name in ("institutional_flows", "margin", "market_indicators", "us_market")
    }
    fin = cleaning.clean_financials(raw["financials"]).data
    panel = alignment.align_panel(
        sessions,
        info,
        prices,
        cleaned["institutional_flows"],
        cleaned["margin"],
        fin,
        cleaned["market_indicators"],
        cleaned["us_market"],
    )
    return SampleData(
        sessions=sessions,
        info=info,
        raw=raw,
        prices=prices,
        panel=panel,
        truth=m.truth(start, end),
        market=m,
    )


def daily_spearman(
    df: pl.DataFrame, column: str, truth: str, min_names: int = 10
) -> tuple[float, int]:
    """Mean over sessions of the cross-sectional Spearman correlation between ``column`` and
    ``truth`` (sessions with at least ``min_names`` values), and the number of sessions."""
    daily = (
        df.filter(pl.col(column).is_not_null() & pl.col(truth).is_not_null())
        .group_by("session")
        .agg(rho=pl.corr(column, truth, method="spearman"), n=pl.len())
        .filter(pl.col("n") >= min_names)
    )
    return float(daily["rho"].mean()), daily.height
