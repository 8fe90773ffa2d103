"""Factor layer assets (SPEC §5): ``main_force_flows`` → ``chip_factors``; ``sentiment_factors``;
``value_factors`` → ``zscored_factors``. Each reads its inputs (with the lookback its windows
need) from the warehouse, calls one domain function, keeps the rows of its partition range and
replaces that slice in one transaction.

Lookback is explicit: an asset for sessions [start, end] reads upstream rows from
``lookback`` sessions before ``start``; rows whose window is not full are computed from what
exists and flagged (``warmup``), never silently short.
"""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from quant_genesis_dagster.defs.common import (
    as_failure,
    session_asset,
    session_range,
    table_metadata,
)
from quant_genesis_dagster.defs.intraday import intraday_eod
from quant_genesis_dagster.defs.raw import raw_asset_key
from quant_genesis_dagster.defs.resources import FactorSettingsResource, WarehouseResource
from quant_genesis_dagster.domain import calendar, cleaning
from quant_genesis_dagster.domain.factors import chip, composite, news, sentiment, value
from quant_genesis_dagster.domain.params import FactorSettings
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.errors import QGError

FACTORS_GROUP = "factors"
#: Share of listed rows (outside warm-up) with a value below which coverage checks warn.
MIN_FACTOR_COVERAGE = 0.80
#: Sessions of raw broker rows processed at once by main_force_flows (bounds memory).
BROKER_BLOCK_SESSIONS = 60
DEFAULT_LOOKBACK = FactorSettings().lookback()

CHECK_FINITE = "no_infinities"
CHECK_COVERAGE = "coverage"
CHECK_MOMENTS = "zscore_moments"
CHECK_FEAR_GREED_RANGE = "fear_greed_in_0_100"


def _lookback_dep(asset, sessions: int = DEFAULT_LOOKBACK) -> dg.AssetDep:
    """Upstream dependency on the partition range plus ``sessions`` sessions before it."""
    return dg.AssetDep(
        asset, partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-sessions)
    )


def lookback_start(start, sessions: int):
    """The session ``sessions`` before ``start`` (the first session of history if earlier)."""
    try:
        return calendar.shift_session(start, -sessions)
    except QGError:
        return calendar.HISTORY_START


def _finite_check(asset: str, df: pl.DataFrame) -> dg.AssetCheckResult:
    ok, detail = composite.check_finite(df)
    return dg.AssetCheckResult(check_name=CHECK_FINITE, asset_key=asset, passed=ok, metadata=detail)


def _coverage_check(asset: str, df: pl.DataFrame, columns: list[str]) -> dg.AssetCheckResult:
    """Share of rows with a value per column, outside warm-up rows when the table flags them."""
    rows = df.filter(~pl.col("warmup")) if "warmup" in df.columns else df
    shares = {c: composite.coverage(rows, c) for c in columns}
    worst = min(shares.values()) if shares and rows.height else 0.0
    return dg.AssetCheckResult(
        check_name=CHECK_COVERAGE,
        asset_key=asset,
        passed=bool(rows.height) and worst >= MIN_FACTOR_COVERAGE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rows_checked": rows.height, **{f"coverage:{c}": v for c, v in shares.items()}},
    )


def _spec(asset: str, name: str, description: str, blocking: bool = False) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking)


def _finite_spec(asset: str) -> dg.AssetCheckSpec:
    return _spec(asset, CHECK_FINITE, "No ±inf or NaN in any float column.", blocking=True)


def _coverage_spec(asset: str, what: str) -> dg.AssetCheckSpec:
    return _spec(
        asset,
        CHECK_COVERAGE,
        f"Share of listed rows outside warm-up with {what}; warns below {MIN_FACTOR_COVERAGE:.0%}.",
    )


def factor_coverage(df: pl.DataFrame, columns) -> dg.MetadataValue:
    """Markdown table: column → share of rows with a value."""
    lines = ["| column | coverage |", "|---|---:|"]
    lines += [f"| {c} | {composite.coverage(df, c):.1%} |" for c in columns]
    return dg.MetadataValue.md("\n".join(lines))


def _read_panel(engine, start, end, columns) -> pl.DataFrame:
    return io.read_slice(
        engine, models.AlignedPanel, start, end, columns=["session", "symbol", *columns]
    )


def _write(engine, model, df: pl.DataFrame, start, end) -> int:
    out = df.filter(pl.col("session").is_between(start, end))
    return io.replace_slice(engine, model, out, start, end)


@session_asset(
    models.MainForceFlows,
    group=FACTORS_GROUP,
    deps=[raw_asset_key("broker_flows"), "aligned_panel"],
    check_specs=[_coverage_spec("main_force_flows", "a main-force net flow")],
)
def main_force_flows(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    factor_settings: FactorSettingsResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Main-force net flow per session and listed symbol (SPEC §5.1): the net buying of the day's
    top 15 broker branches by absolute net volume, or — when the symbol has no branch report —
    the institutional net buying; which one is recorded in ``mf_source``. Also the day's broker
    concentration and dealer tier ratio. Rejected broker rows go to ``quarantine``."""
    start, end = session_range(context)
    engine = warehouse.engine()
    settings = factor_settings.settings()
    sessions = calendar.sessions(start, end)
    parts, quarantine, raw_rows = [], [], 0
    try:
        for i in range(0, len(sessions), BROKER_BLOCK_SESSIONS):
            a, b = sessions[i], sessions[min(i + BROKER_BLOCK_SESSIONS, len(sessions)) - 1]
            raw = io.read_slice(engine, models.RawBrokerFlows, a, b)
            raw_rows += raw.height
            cleaned = cleaning.clean_records("broker_flows", raw)
            panel = _read_panel(engine, a, b, ["inst_net"])
            parts.append(chip.main_force_flows(cleaned.data, panel, settings))
            quarantine.append(cleaned.quarantine)
        flows = pl.concat(parts)
        rows = io.replace_slices(
            engine,
            start,
            end,
            [
                (models.MainForceFlows, flows, None),
                (models.Quarantine, pl.concat(quarantine), {"table_name": ["broker_flows"]}),
            ],
        )[0]
    except QGError as err:
        raise as_failure(err) from err
    sources = flows["mf_source"].value_counts().iter_rows() if rows else []
    yield dg.MaterializeResult(
        asset_key="main_force_flows",
        metadata=table_metadata(
            rows,
            raw_broker_rows=raw_rows,
            **{f"source:{k}": int(n) for k, n in sources},
            range=f"{start}..{end}",
        ),
    )
    yield _coverage_check("main_force_flows", flows, ["mf_net"])


@session_asset(
    models.ChipFactors,
    group=FACTORS_GROUP,
    deps=[_lookback_dep("main_force_flows"), _lookback_dep("aligned_panel"), intraday_eod],
    check_specs=[
        _finite_spec("chip_factors"),
        _coverage_spec("chip_factors", "a 20-session net ratio"),
    ],
)
def chip_factors(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    factor_settings: FactorSettingsResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """F_C components (SPEC §5.1): the main-force average cost line LAC over the last 180
    sessions (VWAP-weighted; null where the window's net accumulation is not positive and
    material), LAC_dist, consecutive net-buy days, 20-session net ratio, broker concentration,
    dealer tier ratio, and the sidecar's end-of-day aggregates (null when absent)."""
    start, end = session_range(context)
    engine = warehouse.engine()
    settings = factor_settings.settings()
    lb = lookback_start(start, settings.lookback())
    try:
        flows = io.read_slice(engine, models.MainForceFlows, lb, end)
        panel = _read_panel(engine, lb, end, list(chip.PANEL_PRICE_COLUMNS))
        eod = io.read_slice(engine, models.IntradayEod, start, end)
        df = chip.chip_factors(flows, panel, eod, settings)
        rows = _write(engine, models.ChipFactors, df, start, end)
    except QGError as err:
        raise as_failure(err) from err
    out = df.filter(pl.col("session").is_between(start, end))
    yield dg.MaterializeResult(
        asset_key="chip_factors",
        metadata=table_metadata(
            rows,
            warmup_rows=int(out["warmup"].sum()),
            lac_defined=int(out["lac"].is_not_null().sum()),
            intraday_eod_rows=eod.height,
            coverage=factor_coverage(out, chip.COMPONENTS),
            range=f"{start}..{end}",
        ),
    )
    yield _finite_check("chip_factors", out)
    yield _coverage_check("chip_factors", out, ["net_ratio_20d"])


@session_asset(
    models.SentimentFactors,
    group=FACTORS_GROUP,
    deps=[_lookback_dep("aligned_panel"), _lookback_dep(raw_asset_key("news"))],
    check_specs=[
        _finite_spec("sentiment_factors"),
        _spec(
            "sentiment_factors",
            CHECK_FEAR_GREED_RANGE,
            "The fear & greed index lies in [0, 100] wherever it is defined.",
            blocking=True,
        ),
        _coverage_spec("sentiment_factors", "margin crowding"),
    ],
)
def sentiment_factors(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    factor_settings: FactorSettingsResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """F_S components (SPEC §5.2): the market fear & greed index (0 = extreme fear) from VIXTWN
    level and slope, put/call, TX foreign net OI and market margin change, whether an abnormal
    market move confirms it; per symbol the headline tone (offline lexicon, Chinese and
    English), margin and short-sale crowding, and whether the day's price or volume move was
    abnormal (the noise filter's confirmation)."""
    start, end = session_range(context)
    engine = warehouse.engine()
    settings = factor_settings.settings()
    lb = lookback_start(start, settings.lookback())
    try:
        panel = _read_panel(engine, lb, end, list(sentiment.PANEL_COLUMNS))
        headlines = io.read_slice(engine, models.RawNews, lb, end)
        daily = news.daily_news_sentiment(headlines)
        df = sentiment.sentiment_factors(panel, daily, settings)
        rows = _write(engine, models.SentimentFactors, df, start, end)
    except QGError as err:
        raise as_failure(err) from err
    out = df.filter(pl.col("session").is_between(start, end))
    fg = out["fear_greed"].drop_nulls()
    in_range = bool(fg.is_empty() or (fg.min() >= 0 and fg.max() <= 100))
    yield dg.MaterializeResult(
        asset_key="sentiment_factors",
        metadata=table_metadata(
            rows,
            headlines=headlines.filter(pl.col("session") >= start).height,
            fear_greed_last=float(fg[-1]) if fg.len() else None,
            warmup_rows=int(out["warmup"].sum()),
            coverage=factor_coverage(out, sentiment.COMPONENTS),
            range=f"{start}..{end}",
        ),
    )
    yield _finite_check("sentiment_factors", out)
    yield dg.AssetCheckResult(
        check_name=CHECK_FEAR_GREED_RANGE,
        asset_key="sentiment_factors",
        passed=in_range,
        metadata={
            "min": float(fg.min()) if fg.len() else None,
            "max": float(fg.max()) if fg.len() else None,
        },  # fmt: skip
    )
    yield _coverage_check("sentiment_factors", out, ["margin_crowding"])


@session_asset(
    models.ValueFactors,
    group=FACTORS_GROUP,
    deps=[_lookback_dep("aligned_panel")],
    check_specs=[_finite_spec("value_factors"), _coverage_spec("value_factors", "a TTM ROE")],
)
def value_factors(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    factor_settings: FactorSettingsResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """F_D components (SPEC §5.3): three- and five-factor DuPont on TTM values available at the
    session (net margin × asset turnover × equity multiplier; tax burden × interest burden ×
    EBIT margin × turnover × multiplier), ROE and margin trends over about a year; the equity
    multiplier also drives the leverage filter of the signals."""
    start, end = session_range(context)
    engine = warehouse.engine()
    settings = factor_settings.settings()
    lb = lookback_start(start, settings.lookback())
    try:
        panel = _read_panel(engine, lb, end, list(value.PANEL_COLUMNS))
        df = value.value_factors(panel, settings)
        rows = _write(engine, models.ValueFactors, df, start, end)
    except QGError as err:
        raise as_failure(err) from err
    out = df.filter(pl.col("session").is_between(start, end))
    yield dg.MaterializeResult(
        asset_key="value_factors",
        metadata=table_metadata(
            rows,
            with_fundamentals=int(out["has_fundamentals"].sum()),
            coverage=factor_coverage(out, value.COMPONENTS),
            range=f"{start}..{end}",
        ),
    )
    yield _finite_check("value_factors", out)
    yield _coverage_check("value_factors", out, ["roe"])


@session_asset(
    models.ZscoredFactors,
    group=FACTORS_GROUP,
    deps=["chip_factors", "sentiment_factors", "value_factors", "aligned_panel"],
    check_specs=[
        _spec(
            "zscored_factors",
            CHECK_MOMENTS,
            "Per day: every z-score column and composite has mean 0 and std 1 (±0.05) where at "
            "least five names have a value.",
            blocking=True,
        ),
        _finite_spec("zscored_factors"),
        _coverage_spec("zscored_factors", "an F_C composite"),
    ],
)
def zscored_factors(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    factor_settings: FactorSettingsResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Every factor component standardized per day (winsorized 1st/99th percentile + z-score by
    default; rank or time-series z optional; value within industry), the noise filter applied
    to sentiment readings, and the composites F_C, F_S, F_D (SPEC §5.4)."""
    start, end = session_range(context)
    engine = warehouse.engine()
    settings = factor_settings.settings()
    lb = (
        start
        if settings.zscore_method != "time_series"
        else lookback_start(start, settings.ts_window)
    )
    try:
        frames = [
            io.read_slice(engine, model, lb, end)
            for model in (models.ChipFactors, models.SentimentFactors, models.ValueFactors)
        ]
        panel = _read_panel(engine, lb, end, ["industry"])
        df = composite.zscored_factors(*frames, panel, settings)
        rows = _write(engine, models.ZscoredFactors, df, start, end)
    except QGError as err:
        raise as_failure(err) from err
    out = df.filter(pl.col("session").is_between(start, end))
    ok_m, moments = composite.check_moments(out, min_names=settings.min_names)
    yield dg.MaterializeResult(
        asset_key="zscored_factors",
        metadata=table_metadata(
            rows,
            method=settings.zscore_method,
            noise_filtered=int(out["noise_filtered"].sum()),
            coverage=factor_coverage(out, ["f_c", "f_s", "f_d"]),
            range=f"{start}..{end}",
        ),
    )
    yield dg.AssetCheckResult(
        check_name=CHECK_MOMENTS, asset_key="zscored_factors", passed=ok_m, metadata=moments
    )
    yield _finite_check("zscored_factors", out)
    yield _coverage_check("zscored_factors", out, ["f_c"])
