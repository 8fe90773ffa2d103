"""The whole factor stack in memory: F_C, F_S and F_D → z-scores and composites → predictions.

The same functions the Dagster assets chain through the warehouse (``chip``, ``news``,
``sentiment``, ``value``, ``composite``, ``model``), called on one panel in one process. Two
things differ, and neither changes a value:

* the three families are independent and run concurrently (numpy and polars release the GIL),
  as Dagster's multiprocess executor runs the three assets side by side;
* their components stay dense (``grid.Components``) and go straight into the standardization;
  the family tables (the rows the assets store) are built only when asked for
  (``tables=True``).

For a long range in one pass: the backfill benchmark, research notebooks, and the RL
environment's factor recomputation.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from quant_genesis_dagster.domain import model
from quant_genesis_dagster.domain.factors import chip, composite, news, sentiment, value
from quant_genesis_dagster.domain.factors.grid import Grid
from quant_genesis_dagster.domain.params import FactorSettings, ParamSet


@dataclass
class StackResult:
    """``zscored`` and ``predictions`` rows (panel order); ``tables`` holds the family tables
    ("chip", "sentiment", "value") when they were asked for; ``seconds`` per step (the family
    steps overlap, so they add up to more than the wall time)."""

    zscored: pl.DataFrame
    predictions: pl.DataFrame
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def factor_stack(
    flows: pl.DataFrame,
    panel: pl.DataFrame,
    headlines: pl.DataFrame,
    params: ParamSet,
    param_version: str,
    *,
    eod: pl.DataFrame | None = None,
    settings: FactorSettings | None = None,
    tables: bool = False,
    layout: Grid | None = None,
    workers: int = 2,
) -> StackResult:
    """The factor stack over ``panel``'s rows (consecutive sessions, history included).

    ``flows``: ``chip.main_force_flows`` rows; ``headlines``: raw news rows (session, symbol,
    title) scored by ``news.daily_news_sentiment``; ``eod``: the sidecar aggregates or None;
    ``params`` / ``param_version``: the parameter version the predictions come from. Rows equal
    those of the asset chain (``chip_factors`` → … → ``predict``) on the same inputs.
    """
    settings = settings or FactorSettings()
    seconds: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[name] = time.perf_counter() - t
        return out

    g = layout or timed("grid", Grid.of, panel)

    def family(name: str, fn, *args, **kwargs):
        c = timed(name, fn, *args, **kwargs)
        if not tables:  # only what the standardization reads, freed as soon as it is known
            c.keep(composite.INPUT_COLUMNS[name])
        return c

    def sentiment_step():
        daily = timed("news", news.daily_news_sentiment, headlines)
        return family("sentiment", sentiment.sentiment_components, panel, daily, settings,
                      layout=g)  # fmt: skip

    with ThreadPoolExecutor(max_workers=workers) as pool:
        chip_f = pool.submit(family, "chip", chip.chip_components, flows, panel, eod, settings,
                             layout=g)  # fmt: skip
        sent_f = pool.submit(sentiment_step)
        value_f = pool.submit(family, "value", value.value_components, panel, settings, layout=g)
        codes_f = pool.submit(composite.industry_grid, panel, g)
        parts = {"chip": chip_f.result(), "sentiment": sent_f.result(), "value": value_f.result()}
        codes = codes_f.result()
        del chip_f, sent_f, value_f, codes_f  # a future holds its result: let them go

    built = {}
    if tables:
        built = {name: timed(f"{name}_rows", c.frame) for name, c in parts.items()}
    z = timed(
        "zscore", composite.zscored_from_components, *parts.values(), panel, settings,
        industry_codes=codes, consume=not tables,
    )  # fmt: skip
    parts.clear()
    del codes
    us = model.us_move(panel)
    pred = timed("predict", model.predict, z, us, params, param_version)
    return StackResult(zscored=z, predictions=pred, tables=built, seconds=seconds)
