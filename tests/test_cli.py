"""The ``quant-genesis`` command: a small real demo run, and one-line errors for bad input."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from quant_genesis_dagster import cli
from quant_genesis_dagster.definitions import defs
from quant_genesis_dagster.demo import _failure_message


@pytest.fixture
def qg_home(tmp_path, monkeypatch):
    monkeypatch.setenv("QG_HOME", str(tmp_path / "qg"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "qg" / "dagster"))  # restored afterwards
    monkeypatch.delenv("QG_DATABASE_URL", raising=False)
    return tmp_path / "qg"


def test_demo_runs_the_main_job_and_prints_a_summary(qg_home, capsys):
    code = cli.main(["demo", "--symbols", "20", "--sessions", "8", "--end", "2024-08-30"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (qg_home / "warehouse.sqlite").exists()
    assert (qg_home / "dagster" / "dagster.yaml").exists()
    for word in ("raw_daily_prices", "cleaned_prices", "aligned_panel", "Quarantined", "make up"):
        assert word in out
    # the run is in the persistent embedded instance, so the UI shows it
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(qg_home / "dagster"))) as inst:
        assert len(inst.get_runs()) == 1


def test_demo_window_default_ends_before_today():
    window = cli.demo_window(250, None, today=dt.date(2024, 7, 26))
    assert len(window) == 250 and window[-1] == dt.date(2024, 7, 23)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["demo", "--end", "2024-07-24"], "not an XTAI trading session"),
        (["demo", "--end", "yesterday"], "not a date"),
        (["demo", "--sessions", "0"], "--sessions"),
    ],
)
def test_bad_arguments_give_one_line_errors(qg_home, capsys, argv, needle):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    "url, needle",
    [
        ("mysql://u:secret@127.0.0.1/x", "QG_DATABASE_URL"),
        ("not a url at all", "QG_DATABASE_URL"),
        ("postgresql+psycopg2://u:secret@127.0.0.1:1/qg", "QG_DATABASE_URL"),
    ],
)
def test_bad_database_url_is_one_line_without_the_password(
    qg_home, capsys, monkeypatch, url, needle
):
    monkeypatch.setenv("QG_DATABASE_URL", url)
    assert cli.main(["demo", "--sessions", "5", "--end", "2024-08-30"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "secret" not in err


def test_sidecar_entry_point_exists():
    from realtime_sidecar.__main__ import main

    assert main(["paths"]) == 0


@pytest.mark.parametrize(
    "resources, needle",
    [
        ({"data_source": {"config": {"name": "bloomberg"}}}, "unknown data source 'bloomberg'"),
        (
            {"warehouse": {"config": {"url": "postgresql+psycopg2://qg:hunter2@127.0.0.1:1/qg"}}},
            "set QG_DATABASE_URL in the environment",
        ),
        ({"warehouse": {"config": {"url": "oracle://127.0.0.1/qg"}}}, "QG_DATABASE_URL"),
    ],
)
def test_bad_resource_settings_fail_the_run_with_one_line(tmp_path, resources, needle):
    config = {"warehouse": {"config": {"home": str(tmp_path)}}}
    for key, value in resources.items():
        config[key] = {"config": {**config.get(key, {}).get("config", {}), **value["config"]}}
    job = defs.resolve_job_def("daily_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            run_config={"resources": config},
            instance=instance,
            partition_key="2024-08-30",
            raise_on_error=False,
        )
    assert not result.success
    msg = _failure_message(result)
    assert needle in msg and "\n" not in msg and "hunter2" not in msg
