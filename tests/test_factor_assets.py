"""The factor, prediction and signal assets through Dagster with a real MLflow store: checks and
metadata, a champion change reaching the predictions, and bad input failing with one line and
writing nothing."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import polars as pl
import pytest
from dagster_events import check_evaluations

from quant_genesis_dagster.definitions import defs
from quant_genesis_dagster.defs.predictions import predictions
from quant_genesis_dagster.defs.resources import ParamStoreResource, WarehouseResource
from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.factors import composite
from quant_genesis_dagster.domain.params import DEFAULTS
from quant_genesis_dagster.domain.registry import CHAMPION, REGISTERED_NAME, ParamStore
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.domain.warehouse.db import open_warehouse
from quant_genesis_dagster.errors import QGError
from quant_genesis_dagster.settings import Settings

pytestmark = pytest.mark.xdist_group("factor_assets")

END = dt.date(2024, 8, 30)
WINDOW = calendar.last_sessions(45, END)
LAST = WINDOW[-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("factor_assets")
    url = f"sqlite:///{home}/warehouse.sqlite"
    config = {
        "resources": {
            "warehouse": {"config": {"url": url, "home": str(home)}},
            "data_source": {"config": {"n_symbols": 40, "seed": 5}},
            "factor_settings": {"config": {"lac_window": 20}},
            "param_store": {"config": {"home": str(home)}},
        }
    }
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("daily_job").execute_in_process(
            run_config=config,
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": WINDOW[0].isoformat(),
                "dagster/asset_partition_range_end": LAST.isoformat(),
            },
        )
        yield {
            "home": home,
            "url": url,
            "engine": open_warehouse(url, home),
            "result": result,
            "instance": instance,
            "store": ParamStore(Settings.from_env({"QG_HOME": str(home)}).mlflow_tracking_uri),
        }


def test_the_daily_job_runs_the_factor_and_prediction_assets_and_their_checks(world):
    assert world["result"].success
    checks = check_evaluations(world["result"])
    for asset, name in [
        ("zscored_factors", "zscore_moments"),
        ("zscored_factors", "no_infinities"),
        ("chip_factors", "no_infinities"),
        ("sentiment_factors", "fear_greed_in_0_100"),
        ("predictions", "every_row_has_param_version"),
        ("predictions", "params_in_range"),
        ("predictions", "no_infinities"),
        ("signals", "every_signal_has_reasons"),
    ]:
        assert checks[(asset, name)].passed, (asset, name, checks[(asset, name)].metadata)
    # 45 sessions of history: the 180-session windows are warm-up, and that is said, not hidden
    assert checks[("zscored_factors", "coverage")].metadata["rows_checked"].value > 0
    eng = world["engine"]
    chip_rows = io.read_slice(eng, models.ChipFactors, LAST, LAST)
    assert chip_rows["lac"].is_not_null().any()  # 20-session LAC window configured
    assert set(chip_rows["mf_source"].drop_nulls()) <= {"broker", "institutional"}


def test_predictions_record_the_champion_version_and_metadata_shows_the_top_signals(world):
    pred = io.read_slice(world["engine"], models.Predictions, WINDOW[0], LAST)
    assert pred.height > 0
    assert set(pred["param_version"]) == {f"{REGISTERED_NAME}/v1"}
    inst = world["instance"]
    mat = inst.fetch_materializations(dg.AssetKey("signals"), limit=1).records[0]
    meta = mat.asset_materialization.metadata
    assert "top entry signals" in meta["top_signals"].value
    pmat = inst.fetch_materializations(dg.AssetKey("predictions"), limit=1).records[0]
    assert pmat.asset_materialization.metadata["param_version"].value.endswith("/v1")
    # every signal carries readable reasons and the same version as that day's predictions
    sig = io.read_slice(world["engine"], models.Signals, WINDOW[0], LAST)
    assert sig.height > 0 and all(json.loads(r) for r in sig["reasons"])
    assert set(sig["param_version"]) == {f"{REGISTERED_NAME}/v1"}


def _materialize_predictions(world, day: dt.date):
    return dg.materialize(
        [predictions],
        partition_key=day.isoformat(),
        resources={
            "warehouse": WarehouseResource(url=world["url"], home=str(world["home"])),
            "param_store": ParamStoreResource(home=str(world["home"])),
        },
        raise_on_error=False,
    )


def test_changing_the_champion_changes_predictions_and_records_the_new_version(world):
    eng = world["engine"]
    before = io.read_slice(eng, models.Predictions, LAST, LAST)
    store = world["store"]
    v2 = store.register(
        DEFAULTS.replace(beta_c=1.0, beta_s=0.0, beta_d=0.0), description="chip only"
    )
    store.promote(v2.version, who="test", why="chip-only champion")
    try:
        assert _materialize_predictions(world, LAST).success
        after = io.read_slice(eng, models.Predictions, LAST, LAST)
        assert set(after["param_version"]) == {v2.id}
        assert not after["r_pred_1d"].equals(before["r_pred_1d"])
        # chip only: the score is F_C (missing → neutral 0)
        assert after["score"].to_list() == after["f_c"].fill_null(0.0).to_list()
        earlier = io.read_slice(eng, models.Predictions, WINDOW[0], WINDOW[-2])
        assert set(earlier["param_version"]) == {f"{REGISTERED_NAME}/v1"}
    finally:
        store.promote(1, who="test", why="restore the defaults")
        assert _materialize_predictions(world, LAST).success


def _client(world):
    import mlflow

    return mlflow.MlflowClient(world["store"].where, registry_uri=world["store"].where)


def _one_line_failure(result) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the step should fail"
    message = failures[0].step_failure_data.user_failure_data.description
    assert "\n" not in message
    return message


def test_a_missing_champion_fails_with_one_line_and_writes_nothing(world):
    eng = world["engine"]
    before = io.slice_hash(eng, models.Predictions, LAST, LAST)
    client = _client(world)
    client.delete_registered_model_alias(REGISTERED_NAME, CHAMPION)
    try:
        result = _materialize_predictions(world, LAST)
        assert not result.success
        assert "no champion" in _one_line_failure(result)
        assert io.slice_hash(eng, models.Predictions, LAST, LAST) == before
    finally:
        client.set_registered_model_alias(REGISTERED_NAME, CHAMPION, "1")


def test_a_champion_with_a_parameter_outside_its_range_is_refused(world):
    eng = world["engine"]
    before = io.slice_hash(eng, models.Predictions, LAST, LAST)
    client = _client(world)
    exp = client.get_experiment_by_name("quant_genesis/params")
    run = client.create_run(exp.experiment_id)
    for k, v in DEFAULTS.replace(t_fear=20).to_dict().items():
        client.log_param(run.info.run_id, k, 35.0 if k == "t_fear" else v)
    client.set_terminated(run.info.run_id)
    mv = client.create_model_version(
        REGISTERED_NAME, source=f"runs:/{run.info.run_id}/params", run_id=run.info.run_id
    )
    client.set_registered_model_alias(REGISTERED_NAME, CHAMPION, mv.version)
    try:
        result = _materialize_predictions(world, LAST)
        assert not result.success
        message = _one_line_failure(result)
        assert "t_fear" in message and "range" in message
        assert io.slice_hash(eng, models.Predictions, LAST, LAST) == before
    finally:
        client.set_registered_model_alias(REGISTERED_NAME, CHAMPION, "1")


def test_a_factor_input_column_missing_upstream_names_the_column():
    chip_df = pl.DataFrame({"session": [LAST], "symbol": ["A"]})
    panel = pl.DataFrame({"session": [LAST], "symbol": ["A"], "industry": ["x"]})
    with pytest.raises(QGError, match="chip_factors: missing column.*net_ratio_20d"):
        composite.zscored_factors(chip_df, chip_df, chip_df, panel)
