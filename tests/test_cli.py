"""The ``quant-genesis`` command: a small real demo run, and one-line errors for bad input."""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys

import dagster as dg
import polars as pl
import pytest

from quant_genesis_dagster import cli
from quant_genesis_dagster.definitions import defs
from quant_genesis_dagster.demo import _failure_message
from quant_genesis_dagster.settings import Settings


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
        # the sidecar replayed the last session and reported its aggregates into the graph ...
        eod = inst.get_materialized_partitions(dg.AssetKey("intraday_eod"))
        assert eod == {"2024-08-30"}
    assert "Intraday engine (sidecar replay of 2024-08-30)" in out
    # ... where that day's chip factor picked them up
    assert "Intraday aggregates in the chip factor F_C of 2024-08-30" in out
    from quant_genesis_dagster.domain.warehouse import io, models
    from quant_genesis_dagster.domain.warehouse.db import open_warehouse

    engine = open_warehouse(None, qg_home)
    day = dt.date(2024, 8, 30)
    chip = io.read_slice(engine, models.ChipFactors, day, day)
    stored = io.read_slice(engine, models.IntradayEod, day, day)
    assert stored.height > 0
    assert chip.filter(pl.col("sweep_ratio").is_not_null()).height == stored.height


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


# ------------------------------------------------------------------------------ make up
def test_mlflow_ui_command_binds_localhost_over_the_embedded_store(tmp_path):
    settings = Settings.from_env({"QG_HOME": str(tmp_path)})
    cmd = cli.mlflow_ui_command(settings, 5123)
    assert cmd[:4] == [sys.executable, "-m", "mlflow", "server"]

    def arg(flag):
        return cmd[cmd.index(flag) + 1]

    assert arg("--host") == "127.0.0.1" and "0.0.0.0" not in cmd
    assert arg("--port") == "5123"
    assert arg("--backend-store-uri") == settings.mlflow_tracking_uri  # the parameter store's
    assert arg("--default-artifact-root") == settings.mlflow_artifacts.as_uri()
    assert arg("--workers") == "1"
    env = cli.mlflow_ui_env({"PATH": "/usr/bin"})
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true" and env["PATH"] == "/usr/bin"


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("https://ann:s3cret@mlflow.example:5000/", "MLflow UI on https://mlflow.example:5000/"),
        ("postgresql+psycopg2://u:s3cret@db/mlflow", "postgresql+psycopg2://u:***@db/mlflow"),
    ],
)
def test_up_prints_a_remote_tracking_store_instead_of_serving_it(tmp_path, capsys, uri, shown):
    settings = Settings.from_env({"QG_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": uri})
    assert cli.mlflow_ui_command(settings, 5000) is None
    assert cli._start_mlflow_ui(settings, 5000) is None
    out = capsys.readouterr().out
    assert shown in out and "s3cret" not in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_up_stops_the_mlflow_ui_when_the_dagster_ui_stops(qg_home, tmp_path, monkeypatch, capsys):
    """Stand-ins for the two servers (starting the real ones takes 5-15 s): the MLflow one
    records its pid and sleeps; the Dagster one exits once the MLflow one runs."""
    pid_file = tmp_path / "mlflow.pid"
    mlflow_stand_in = (
        "import os, time\n"
        f"open({str(pid_file)!r} + '.tmp', 'w').write(str(os.getpid()))\n"
        f"os.replace({str(pid_file)!r} + '.tmp', {str(pid_file)!r})\n"
        "time.sleep(120)\n"
    )
    dagster_stand_in = (
        "import pathlib, sys, time\n"
        "for _ in range(400):\n"
        f"    if pathlib.Path({str(pid_file)!r}).exists(): sys.exit(0)\n"
        "    time.sleep(0.05)\n"
        "sys.exit(3)\n"
    )
    monkeypatch.setattr(
        cli, "mlflow_ui_command", lambda settings, port: [sys.executable, "-c", mlflow_stand_in]
    )
    monkeypatch.setattr(
        cli, "dagster_ui_command", lambda host, port: [sys.executable, "-c", dagster_stand_in]
    )
    port = _free_port()
    assert cli.main(["up", "--mlflow-port", str(port)]) == 0
    out = capsys.readouterr().out
    assert f"MLflow UI on http://127.0.0.1:{port}" in out
    assert "Dagster UI on http://127.0.0.1:3000" in out
    with pytest.raises(ProcessLookupError):  # stopped (and reaped) when the Dagster UI exited
        os.kill(int(pid_file.read_text()), 0)


def test_up_refuses_a_busy_mlflow_port(qg_home, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert cli.main(["up", "--mlflow-port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"port {port} on 127.0.0.1 is in use" in err and "\n" not in err


def test_the_demo_calibration_fits_its_window_or_is_skipped_with_a_reason(capsys):
    from quant_genesis_dagster import demo
    from quant_genesis_dagster.domain import calendar

    long = calendar.last_sessions(500, "2024-08-30")
    assert demo.calibration_config(long, 768) == {
        "total_steps": 768, "train_sessions": 250, "eval_sessions": 60,
    }  # fmt: skip
    assert demo.calibration_config(long[-200:], 768)["train_sessions"] == 139
    short = long[-90:]
    assert demo.calibration_config(short, 768) is None
    assert demo.run_calibration(cli.Settings.from_env(), short, 768, {}) == 0
    assert "too few for a walk-forward window" in capsys.readouterr().out
