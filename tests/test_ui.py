"""``quant-genesis up`` (what ``make up`` runs): the webserver answers on 127.0.0.1, shows the
asset graph with trading-day partitions, and a backfill launched through its GraphQL API is run by
the daemon into the embedded warehouse."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.domain.warehouse.db import open_warehouse

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui")]

BACKFILL_SESSIONS = ["2024-07-23", "2024-07-26"]  # typhoon Gaemi closed the market in between


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = json.load(resp)
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    home = tmp_path_factory.mktemp("qg")
    port, mlflow_port = _free_port(), _free_port()
    env = {**os.environ, "QG_HOME": str(home)}
    env.pop("QG_DATABASE_URL", None)
    with open(home / "up.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quant_genesis_dagster.cli",
                "up",
                "--port",
                str(port),
                "--mlflow-port",
                str(mlflow_port),
            ],  # fmt: skip
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError((home / "up.log").read_text()[-3000:]) from None
                    time.sleep(1)
            yield {"port": port, "home": home, "mlflow_port": mlflow_port}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)  # dagster dev and the MLflow UI stop side by side
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            # the MLflow UI (its own session) must not outlive `up`
            deadline = time.monotonic() + 30
            while _listening(mlflow_port) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not _listening(mlflow_port), "the MLflow UI outlived quant-genesis up"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_webserver_listens_on_localhost_only(ui):
    # /proc/net/tcp{,6}: "local_address" is hex IP:port; state 0A = LISTEN
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                ip, port = local.split(":")
                if state == "0A" and int(port, 16) == ui["port"]:
                    listening.append(ip)
    assert listening == ["0100007F"], listening  # 127.0.0.1 only, no IPv6/any-address socket


def test_ui_shows_the_asset_graph_with_trading_day_partitions(ui):
    data = _graphql(ui["port"], "{ assetNodes { assetKey { path } isPartitioned } }")
    nodes = {n["assetKey"]["path"][0]: n["isPartitioned"] for n in data["assetNodes"]}
    assert {"raw_stock_info", "raw_daily_prices", "cleaned_prices", "aligned_panel"} <= set(nodes)
    assert nodes["cleaned_prices"] and not nodes["raw_stock_info"]
    data = _graphql(
        ui["port"],
        '{ assetNodes(assetKeys: [{path: ["cleaned_prices"]}]) { partitionKeys } }',
    )
    keys = data["assetNodes"][0]["partitionKeys"]
    assert keys[0] == "2010-01-04"
    assert "2024-07-23" in keys and "2024-07-26" in keys
    assert "2024-07-24" not in keys and "2024-07-25" not in keys and "2024-07-27" not in keys


def test_backfill_launched_from_the_ui_runs_once_over_the_range(ui):
    launched = _graphql(
        ui["port"],
        """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
             __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
        {
            "p": {
                "selector": {
                    "partitionSetName": "daily_job_partition_set",
                    "repositorySelector": {
                        "repositoryLocationName": "quant_genesis_dagster",
                        "repositoryName": "__repository__",
                    },
                },
                "partitionNames": BACKFILL_SESSIONS,
                "fromFailure": False,
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + 300
    runs: list = []
    while time.monotonic() < deadline:
        runs = _graphql(ui["port"], "{ runsOrError { ... on Runs { results { runId status } } } }")[
            "runsOrError"
        ]["results"]
        if runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            break
        time.sleep(3)
    assert [r["status"] for r in runs] == ["SUCCESS"], (ui["home"] / "up.log").read_text()[-3000:]
    engine = open_warehouse(None, ui["home"])
    per_session = io.count_rows(engine, models.AlignedPanel, group_by="session")
    assert sorted(str(k) for k in per_session) == BACKFILL_SESSIONS


def test_the_mlflow_ui_answers_on_localhost_next_to_dagster(ui):
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{ui['mlflow_port']}/health", timeout=5
            ) as r:
                assert r.read().strip() == b"OK"
            break
        except OSError:
            assert time.monotonic() < deadline, (ui["home"] / "mlflow" / "server.log").read_text()[
                -2000:
            ]
            time.sleep(1)
