"""End to end through Dagster's own APIs: single-run backfills, daily runs that agree with them,
the SPEC §11 truncation test on the warehouse outputs, idempotent re-materialization, and every
planted fault kind caught."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster_events import check_evaluations

from quant_genesis_dagster.definitions import defs
from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.sample import SampleMarket, SampleMarketConfig
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.domain.warehouse.db import open_warehouse

pytestmark = pytest.mark.xdist_group("pipeline")  # one worker builds the shared worlds

N_SYMBOLS = 60
SEED = 11
D = dt.date(2024, 8, 30)  # the "today" of the truncation test; the window spans typhoon Gaemi
WINDOW = calendar.last_sessions(62, D)
S = WINDOW[0]
D20 = calendar.shift_session(D, 20)
D1 = calendar.shift_session(D, 1)

PARTITIONED_MODELS = [
    *models.RAW_PARTITIONED_TABLES.values(),
    models.CleanedPrices,
    models.AlignedPanel,
    models.Quarantine,
    *models.DERIVED_TABLES,
]
#: A short LAC window so the 82-session test history has defined cost lines.
LAC_WINDOW = 30


def run_config(url: str, home: Path) -> dict:
    return {
        "resources": {
            "warehouse": {"config": {"url": url, "home": str(home)}},
            "data_source": {"config": {"n_symbols": N_SYMBOLS, "seed": SEED}},
            "factor_settings": {"config": {"lac_window": LAC_WINDOW}},
            "param_store": {"config": {"home": str(home)}},
        }
    }


def run_range(instance, url, home, start, end):
    job = defs.resolve_job_def("daily_job")
    return job.execute_in_process(
        run_config=run_config(url, home),
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
        },
    )


def run_partition(instance, url, home, day):
    job = defs.resolve_job_def("daily_job")
    return job.execute_in_process(
        run_config=run_config(url, home), instance=instance, partition_key=day.isoformat()
    )


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """W1: one backfill run over [S, D+20]. W2: a backfill over [S, D], then the daily run D+1."""
    out = {}
    with dg.instance_for_test() as instance:
        for name in ("w1", "w2"):
            home = tmp_path_factory.mktemp(name)
            url = f"sqlite:///{home}/warehouse.sqlite"
            out[name] = {"home": home, "url": url, "engine": open_warehouse(url, home)}
        out["w1"]["result"] = run_range(instance, out["w1"]["url"], out["w1"]["home"], S, D20)
        out["w2"]["result"] = run_range(instance, out["w2"]["url"], out["w2"]["home"], S, D)
        out["w2"]["daily"] = run_partition(instance, out["w2"]["url"], out["w2"]["home"], D1)
        out["runs"] = instance.get_runs()
        out["materializations"] = {
            key: len(instance.fetch_materializations(dg.AssetKey(key), limit=1000).records)
            for key in ("raw_daily_prices", "cleaned_prices", "aligned_panel")
        }
        yield out


def test_backfill_over_the_range_is_one_successful_run(worlds):
    assert worlds["w1"]["result"].success
    assert worlds["w2"]["result"].success and worlds["w2"]["daily"].success
    assert len(worlds["runs"]) == 3  # one per backfill, one daily
    n1 = len(calendar.sessions(S, D20))
    n2 = len(calendar.sessions(S, D)) + 1
    assert n1 >= 60
    # a single range run records one materialization per partition
    for key, count in worlds["materializations"].items():
        assert count == n1 + n2, key


def test_every_table_has_rows_for_every_session(worlds):
    eng = worlds["w1"]["engine"]
    assert io.count_rows(eng, models.RawStockInfo) >= N_SYMBOLS
    for model in (models.CleanedPrices, models.AlignedPanel, models.RawBrokerFlows):
        per_session = io.count_rows(eng, model, S, D20, group_by="session")
        missing = set(calendar.sessions(S, D20)) - {
            dt.date.fromisoformat(str(k)) for k in per_session
        }
        # a planted missing_session leaves cleaned_prices without rows for that session only
        assert len(missing) <= (2 if model is models.CleanedPrices else 0), (model, missing)


@pytest.mark.parametrize("model", PARTITIONED_MODELS, ids=lambda m: m.__tablename__)
def test_truncation_outputs_up_to_d_do_not_depend_on_later_history(worlds, model):
    """SPEC §11: rows for sessions <= D are identical whether history ends at D or D+20."""
    h1 = io.slice_hash(worlds["w1"]["engine"], model, S, D)
    h2 = io.slice_hash(worlds["w2"]["engine"], model, S, D)
    assert h1 == h2


@pytest.mark.parametrize("model", PARTITIONED_MODELS, ids=lambda m: m.__tablename__)
def test_daily_run_agrees_with_the_backfill(worlds, model):
    h1 = io.slice_hash(worlds["w1"]["engine"], model, D1, D1)
    h2 = io.slice_hash(worlds["w2"]["engine"], model, D1, D1)
    assert h1 == h2


def test_rematerializing_a_range_is_idempotent(worlds):
    w = worlds["w2"]
    eng = w["engine"]
    sub = (calendar.shift_session(D, -5), D1)
    before = {m.__tablename__: io.slice_hash(eng, m, S, D1) for m in PARTITIONED_MODELS}
    counts = {m.__tablename__: io.count_rows(eng, m, S, D1) for m in PARTITIONED_MODELS}
    with dg.instance_for_test() as instance:
        assert run_range(instance, w["url"], w["home"], *sub).success
    after = {m.__tablename__: io.slice_hash(eng, m, S, D1) for m in PARTITIONED_MODELS}
    assert after == before
    assert {m.__tablename__: io.count_rows(eng, m, S, D1) for m in PARTITIONED_MODELS} == counts


def test_every_planted_fault_kind_is_quarantined_with_its_reason(worlds):
    truth = SampleMarket(SampleMarketConfig(seed=SEED, n_symbols=N_SYMBOLS)).truth(S, D20).faults
    q = io.read_slice(worlds["w1"]["engine"], models.Quarantine, S, D20)
    kinds = set(truth["kind"].unique().to_list())
    assert kinds >= {
        "missing_session",
        "duplicate",
        "ohlc_inconsistent",
        "non_positive_price",
        "negative_volume",
        "limit_breach",
    }
    for kind in sorted(kinds):
        planted = truth.filter(pl.col("kind") == kind)
        caught = q.filter(pl.col("reason") == kind)
        keys = (
            ["table_name", "symbol"]
            if kind.startswith(("financials", "missing_avail", "late"))
            else ["session", "table_name", "symbol"]
        )
        planted_keys = planted.rename({"table": "table_name"}).select(keys).unique()
        missed = planted_keys.join(
            caught.select(keys).unique(), on=keys, how="anti", nulls_equal=True
        )
        assert missed.is_empty(), f"{kind}: not caught {missed.head(5)}"


def test_aligned_panel_uses_no_future_fundamentals(worlds):
    panel = io.read_slice(worlds["w1"]["engine"], models.AlignedPanel, S, D20)
    assert panel.height > 0
    bad = panel.filter(pl.col("fin_available_date") > pl.col("session"))
    assert bad.is_empty()
    # Statements published inside the window are used from their session on ...
    assert panel["fin_period_end"].is_not_null().any()
    # ... but the warehouse holds fewer than four quarters of them, so TTM is honestly null
    # (the panel never builds a TTM from a short history).
    assert panel["revenue_ttm"].is_null().all()


def test_checks_pass_on_the_sample_market_and_flag_the_vendor_gap(worlds):
    by_name = check_evaluations(worlds["w1"]["result"])
    assert by_name[("cleaned_prices", "positive_prices")].passed
    assert by_name[("cleaned_prices", "ohlc_consistent")].passed
    assert by_name[("cleaned_prices", "quarantine_counts")].passed
    assert by_name[("aligned_panel", "no_future_fundamentals")].passed
    # The planted missing session (a whole vendor day absent) must make the completeness and
    # coverage checks warn, and name that session.
    truth = SampleMarket(SampleMarketConfig(seed=SEED, n_symbols=N_SYMBOLS)).truth(S, D20).faults
    gaps = set(truth.filter(pl.col("kind") == "missing_session")["session"].to_list())
    assert gaps, "the window should contain a planted missing session"
    prices_check = by_name[("raw_daily_prices", "sessions_have_prices")]
    assert not prices_check.passed
    assert prices_check.metadata["sessions_missing"].value == len(gaps)
    coverage = by_name[("aligned_panel", "coverage")]
    assert not coverage.passed
    below = coverage.metadata["sessions_below"].value  # e.g. "['2024-07-10']"
    assert {d.isoformat() for d in gaps} <= {x.strip(" '") for x in below.strip("[]").split(",")}


def test_the_book_has_two_strategy_rows_per_session_after_the_first_and_holds_names(worlds):
    eng = worlds["w1"]["engine"]
    r = io.read_slice(eng, models.StrategyReturns, S, D20)
    # the first session has no decision before it (the data start there): no row
    assert r["session"].min() == calendar.shift_session(S, 1)
    per_session = r.group_by("session").len()
    assert (per_session["len"] == 2).all()
    assert per_session.height == len(calendar.sessions(S, D20)) - 1
    pos = io.read_slice(eng, models.PortfolioPositions, S, D20)
    assert pos.filter(pl.col("shares") > 0).height > 0
    assert (r.filter(pl.col("strategy") == "combined")["n_positions"].max() or 0) > 5


def test_attribution_reports_the_sensor_keys_pictures_and_the_report(worlds):
    eng = worlds["w1"]["engine"]
    perf = io.read_slice(eng, models.StrategyPerformance, S, D20)
    assert set(perf["convention"].unique()) == {"standard", "qlib"}
    assert perf["sharpe_7d"].drop_nulls().len() > 0
    regimes = io.read_slice(eng, models.MarketRegimes, S, D20)
    assert regimes.height == len(calendar.sessions(S, D20))
    factors = io.read_slice(eng, models.AttributionFactors, S, D20)
    assert set(factors["factor"].unique()) == {"f_c", "f_s", "f_d", "r_pred"}
    assert factors.filter(pl.col("n") > 0)["param_version"].null_count() == 0
    result = worlds["w1"]["result"]
    (mat,) = [
        e.event_specific_data.materialization
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and e.event_specific_data.materialization.asset_key == dg.AssetKey("attribution")
        and e.event_specific_data.materialization.partition == D20.isoformat()
    ]
    meta = mat.metadata
    for key in ("sharpe_30d", "mdd_30d", "regime", "headline", "Equity curve and drawdown"):
        assert key in meta, key
    assert meta["regime"].value in ("bull", "chop", "panic", "unknown")
    assert "data:image/png;base64," in meta["Equity curve and drawdown"].value
    assert (worlds["w1"]["home"] / "reports" / "backtest.html").exists()


def test_a_calibration_run_registers_a_version_through_the_gate(worlds):
    """``calibration_job`` for the last session of W1: PPO trains on the warehouse's factor
    history, the candidates are compared walk-forward, and the proposal becomes a new MLflow
    version whose status the gate decided; the champion moves only if the gate promoted it."""
    from quant_genesis_dagster.domain.registry import CHAMPION, ParamStore
    from quant_genesis_dagster.settings import Settings

    w = worlds["w1"]
    store = ParamStore(Settings.from_env({"QG_HOME": str(w["home"])}).mlflow_tracking_uri)
    before = store.champion()
    config = run_config(w["url"], w["home"])
    config["resources"]["calibration"] = {
        "config": {"eval_sessions": 10, "train_sessions": 60, "total_steps": 96}
    }
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("calibration_job").execute_in_process(
            run_config=config, instance=instance, partition_key=D20.isoformat()
        )
        assert result.success
        mat = instance.fetch_materializations(dg.AssetKey("rl_betas"), limit=1).records[0]
    meta = mat.asset_materialization.metadata
    version = meta["version"].value
    assert meta["status"].value in ("approved", "pending_approval", "not_promoted")
    assert (
        "rolling_ls" in meta["walk_forward"].value and "equal_weights" in meta["walk_forward"].value
    )
    pv = store.get(int(version.rsplit("v", 1)[1]))
    assert pv.status == meta["status"].value
    after = store.champion()
    if meta["promoted"].value:
        assert after.version == pv.version and CHAMPION in pv.aliases
    else:
        assert after.version == before.version
    run = store._client().get_run(pv.run_id)
    assert run.data.tags["dagster/partition_key"] == D20.isoformat()
    assert "walk_forward/champion/sharpe" in run.data.metrics
    names = {a.path for a in store._client().list_artifacts(pv.run_id)}
    assert {"agents", "evaluation", "plots"} <= names
