"""The sidecar's end-of-day hand-off (SPEC §7.5) against a real Dagster instance and real
warehouses: the report through the instance and through the webserver's endpoint (a local HTTP
server standing in for it), non-session dates refused before anything happens, idempotent
writes on both backends, an unreachable Dagster leaving the rows for the reconcile sensor (which
reports them once), and the rows reaching the chip factor."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg
import polars as pl
import pytest

from quant_genesis_dagster.definitions import defs
from quant_genesis_dagster.defs.clean import aligned_panel, cleaned_prices
from quant_genesis_dagster.defs.factors import chip_factors, main_force_flows
from quant_genesis_dagster.defs.intraday import (
    INTRADAY_EOD,
    RECONCILE_SENSOR_NAME,
    eod_materialization,
    intraday_eod,
    intraday_eod_reconcile_sensor,
    validate_partition,
)
from quant_genesis_dagster.defs.raw import raw_stock_info, raw_tables
from quant_genesis_dagster.defs.resources import (
    DataSourceResource,
    FactorSettingsResource,
    WarehouseResource,
)
from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.domain.warehouse.db import open_warehouse
from quant_genesis_dagster.errors import QGError
from realtime_sidecar.report import REPORT_PATH, publish_eod, report_eod, write_eod

pytestmark = pytest.mark.xdist_group("sidecar_report")  # one worker builds the chip world

D = dt.date(2024, 5, 2)  # a Thursday session, the day after Labour Day (no session)
KEY = D.isoformat()


def make_eod(session: dt.date = D, symbols: tuple[str, ...] = ("2330", "2317", "2454"), **cols):
    """End-of-day rows with plausible defaults; ``cols`` overrides a column (a list per symbol)."""
    n = len(symbols)
    data = {
        "session": [session] * n,
        "symbol": list(symbols),
        "rcnc_close": [100.0 + i for i in range(n)],
        "close": [101.0 + i for i in range(n)],
        "rcnc_vol": [0.01 * (i + 1) for i in range(n)],
        "sweep_ratio": [0.1 * (i + 1) for i in range(n)],
        "liquidity_pressure": [0.001 * (i + 1) for i in range(n)],
        "big_buy_volume": [1000 * (i + 1) for i in range(n)],
        "big_sell_volume": [500 * (i + 1) for i in range(n)],
        "tick_count": [100 * (i + 1) for i in range(n)],
    }
    data.update(cols)
    return pl.DataFrame(data)


def _materializations(instance) -> list:
    return instance.fetch_materializations(INTRADAY_EOD, limit=100).records


def _meta(record) -> dict:
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


# ------------------------------------------------------------------ a stand-in webserver


@dataclass
class Recorder:
    """A local HTTP server that records each POST (path, content type, JSON body) and answers
    ``status``."""

    url: str
    status: int = 200
    posts: list[dict] = field(default_factory=list)


@pytest.fixture
def webserver() -> Iterator[Recorder]:
    recorder = Recorder(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the stdlib's name)
            length = int(self.headers.get("Content-Length", 0))
            recorder.posts.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "body": json.loads(self.rfile.read(length)),
                }
            )
            payload = b"{}" if recorder.status < 300 else b'{"error": "boom"}'
            self.send_response(recorder.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _closed_port_url() -> str:
    """A local URL nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def sqlite_engine(sqlite_url, tmp_path):
    engine = open_warehouse(sqlite_url, tmp_path)
    try:
        yield engine
    finally:
        engine.dispose()


# ---------------------------------------------------------------------- the instance path


def test_a_report_through_the_instance_records_exactly_that_partition_with_its_metadata():
    frame = make_eod(rcnc_close=[100.0, None, 102.0], sweep_ratio=[0.1, 0.2, float("nan")])
    with dg.instance_for_test() as instance:
        out = report_eod(D, frame, instance=instance, location="sqlite:///x/warehouse.sqlite")
        assert out.reported and out.via == "instance" and KEY in out.detail
        assert instance.get_materialized_partitions(INTRADAY_EOD) == {KEY}
        (record,) = _materializations(instance)
        assert record.partition_key == KEY
        meta = _meta(record)
    assert meta == {
        "dagster/row_count": 3,
        "symbols": 3,
        "ticks": 600,
        "symbols_with_rcnc_close": 2,
        "sweep_ratio_mean": pytest.approx(0.15),  # NaN is missing, not a value
        "sweep_ratio_median": pytest.approx(0.15),
        "liquidity_pressure_median": pytest.approx(0.002),
        "big_buy_volume": 6000,
        "big_sell_volume": 3000,
        "source": "sidecar",
        "warehouse": "sqlite:///x/warehouse.sqlite",
    }
    assert "3 symbols" in record.asset_materialization.description


def test_a_session_without_rows_is_reported_with_zero_rows_and_no_statistics():
    """A day the feed never delivered still closes: the partition says so instead of guessing."""
    with dg.instance_for_test() as instance:
        assert report_eod(D, make_eod(symbols=()), instance=instance).reported
        meta = _meta(_materializations(instance)[0])
    assert meta["dagster/row_count"] == 0 and meta["ticks"] == 0
    assert meta["sweep_ratio_median"] is None and meta["liquidity_pressure_median"] is None


def test_without_a_dagster_home_the_report_is_not_made_and_nothing_raises(monkeypatch, caplog):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with caplog.at_level(logging.WARNING, logger="realtime_sidecar.report"):
        out = report_eod(D, make_eod())
    assert not out.reported and out.via == "instance"
    assert "DAGSTER_HOME" in out.detail
    (line,) = [r.getMessage() for r in caplog.records]
    assert "rows are kept" in line and RECONCILE_SENSOR_NAME in line and "\n" not in line


# ------------------------------------------------------------------------ partition keys


@pytest.mark.parametrize(
    ("session", "why"),
    [
        (dt.date(2024, 5, 4), "not an XTAI trading session"),  # Saturday
        (dt.date(2024, 5, 1), "not an XTAI trading session"),  # Labour Day
        (dt.date(2024, 7, 24), "not an XTAI trading session"),  # typhoon Gaemi
        (dt.date(2009, 12, 31), "outside the trading-day partitions"),
        (dt.date(2031, 1, 2), "outside the trading-day partitions"),
    ],
    ids=["saturday", "holiday", "typhoon", "before-history", "beyond-calendar"],
)
def test_a_non_session_date_is_refused_before_anything_is_reported_or_written(
    session, why, webserver, sqlite_engine
):
    frame = make_eod(session)
    with dg.instance_for_test() as instance:
        with pytest.raises(QGError, match=why) as err:
            report_eod(session, frame, instance=instance)
        assert session.isoformat() in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(QGError, match=why):
            report_eod(session, frame, dagster_url=webserver.url)
        with pytest.raises(QGError, match=why):
            publish_eod(sqlite_engine, session, frame, instance=instance)
        assert _materializations(instance) == []
    assert webserver.posts == []
    assert io.count_rows(sqlite_engine, models.IntradayEod) == 0


def test_the_next_session_is_named_and_the_sessions_own_day_is_accepted():
    with pytest.raises(QGError, match="the next session is 2024-05-02"):
        validate_partition(dt.date(2024, 5, 1))
    # session D is reported at its close, before D is the definition's latest partition
    assert validate_partition(D, today=D) == KEY
    assert validate_partition(KEY) == KEY
    with pytest.raises(QGError, match="after today"):
        validate_partition(dt.date(2024, 5, 3), today=D)
    with pytest.raises(QGError, match="not a date"):
        validate_partition("2024-13-01")


def test_rows_of_another_session_are_refused():
    with pytest.raises(QGError, match="include session 2024-05-03"):
        eod_materialization(D, make_eod(dt.date(2024, 5, 3)), source="sidecar")
    with pytest.raises(QGError, match="source"):
        eod_materialization(D, make_eod(), source="someone")


# ------------------------------------------------------------------------------- writes


def test_writing_a_session_twice_leaves_one_row_per_symbol(warehouse):
    """Both backends: a restarted sidecar re-writes its close; other sessions are untouched."""
    before = make_eod(dt.date(2024, 4, 30), ("1101",))
    write_eod(warehouse, dt.date(2024, 4, 30), before)
    frame = make_eod().drop("session")  # the session column is optional
    assert write_eod(warehouse, D, frame) == 3
    first = io.read_slice(warehouse, models.IntradayEod, D, D)
    assert write_eod(warehouse, D, frame) == 3
    again = io.read_slice(warehouse, models.IntradayEod, D, D)
    assert again.equals(first) and again.height == 3
    assert again["symbol"].to_list() == sorted(frame["symbol"])
    changed = make_eod(symbols=("2330", "2317"), tick_count=[7, 8])
    write_eod(warehouse, D, changed)
    now = io.read_slice(warehouse, models.IntradayEod, D, D)
    assert now.height == 2 and now["tick_count"].to_list() == [8, 7]  # 2317, 2330
    assert io.count_rows(warehouse, models.IntradayEod, group_by="session") == {
        dt.date(2024, 4, 30): 1,
        D: 2,
    }
    with pytest.raises(QGError, match="outside the slice"):
        write_eod(warehouse, D, make_eod(dt.date(2024, 5, 3)))
    assert io.count_rows(warehouse, models.IntradayEod, D, D) == 2


def test_publishing_writes_then_reports_with_the_warehouse_location(warehouse):
    with dg.instance_for_test() as instance:
        out = publish_eod(warehouse, D, make_eod(), instance=instance)
        assert out.reported
        (record,) = _materializations(instance)
        meta = _meta(record)
    assert io.count_rows(warehouse, models.IntradayEod, D, D) == 3
    assert meta["warehouse"] == warehouse.url.render_as_string(hide_password=True)
    assert meta["dagster/row_count"] == 3


# -------------------------------------------------------------------------------- HTTP


def test_the_http_report_posts_the_partition_metadata_and_description(webserver):
    frame = make_eod()
    out = report_eod(D, frame, dagster_url=webserver.url + "/", location="sqlite:///w.sqlite")
    assert out.reported and out.via == "http" and "200" in out.detail
    (post,) = webserver.posts
    assert post["path"] == REPORT_PATH == "/report_asset_materialization/intraday_eod"
    assert post["content_type"] == "application/json"  # the webserver compares it exactly
    body = post["body"]
    assert set(body) == {"partition", "metadata", "description"}
    assert body["partition"] == KEY
    assert body["metadata"]["dagster/row_count"] == 3
    assert body["metadata"]["source"] == "sidecar"
    assert body["metadata"]["ticks"] == 600
    # what the webserver records from this body equals what the instance path records
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                INTRADAY_EOD, partition=body["partition"], metadata=body["metadata"],
                description=body["description"],
            )
        )  # fmt: skip
        report_eod(D, frame, instance=instance, location="sqlite:///w.sqlite")
        by_http, by_instance = _materializations(instance)
        assert _meta(by_http) == _meta(by_instance)
        assert by_http.asset_materialization.description == (
            by_instance.asset_materialization.description
        )


@pytest.mark.parametrize("failure", ["refused", "http_500", "timeout"])
def test_an_unreachable_webserver_does_not_raise_and_says_why(
    failure, webserver, silent_server, caplog
):
    if failure == "refused":
        url, reason = _closed_port_url(), "refused"
    elif failure == "http_500":
        webserver.status = 500
        url, reason = webserver.url, "HTTP 500"
    else:
        url, reason = silent_server, "no answer within 0.3 s"
    with caplog.at_level(logging.WARNING, logger="realtime_sidecar.report"):
        out = report_eod(D, make_eod(), dagster_url=url, timeout=0.3)
    assert not out.reported and out.via == "http" and reason in out.detail
    (line,) = [r.getMessage() for r in caplog.records]
    assert reason in line and "3 rows are kept" in line and "\n" not in line


def test_a_url_that_is_not_http_is_a_setting_error(sqlite_engine):
    with pytest.raises(QGError, match="not an http"):
        publish_eod(sqlite_engine, D, make_eod(), dagster_url="file:///etc/passwd")
    assert io.count_rows(sqlite_engine, models.IntradayEod) == 0


# ------------------------------------------------------------------- the reconcile sensor


def _tick(instance, url, home, cursor=None):
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs,
        resources={"warehouse": WarehouseResource(url=url, home=str(home))},
    )  # fmt: skip
    return intraday_eod_reconcile_sensor.evaluate_tick(ctx)


def _store(instance, data) -> None:
    """What the sensor daemon does with a tick's asset events."""
    for event in data.asset_events:
        instance.report_runless_asset_event(event)


def test_unreported_rows_are_kept_and_the_sensor_reports_them_once(
    sqlite_url, tmp_path, sqlite_engine
):
    earlier = dt.date(2024, 4, 30)
    with dg.instance_for_test() as instance:
        assert publish_eod(sqlite_engine, earlier, make_eod(earlier), instance=instance).reported
        out = publish_eod(sqlite_engine, D, make_eod(), dagster_url=_closed_port_url())
        assert not out.reported
        assert io.count_rows(sqlite_engine, models.IntradayEod, D, D) == 3  # kept
        assert instance.get_materialized_partitions(INTRADAY_EOD) == {earlier.isoformat()}

        first = _tick(instance, sqlite_url, tmp_path)
        (event,) = first.asset_events  # only the missing partition
        assert event.partition == KEY
        meta = {k: v.value for k, v in event.metadata.items()}
        assert meta["source"] == "reconcile" and meta["dagster/row_count"] == 3
        assert meta["warehouse"] == sqlite_url
        # before the daemon stored the events, the cursor already prevents a second report
        assert not _tick(instance, sqlite_url, tmp_path, first.cursor).asset_events
        _store(instance, first)
        second = _tick(instance, sqlite_url, tmp_path, first.cursor)
        assert not second.asset_events and "every intraday_eod session" in second.skip_message
        assert json.loads(second.cursor)["pending"] == []  # pruned once the instance shows it
        # and the instance alone (a lost cursor) is enough
        assert not _tick(instance, sqlite_url, tmp_path, None).asset_events
        assert instance.get_materialized_partitions(INTRADAY_EOD) == {earlier.isoformat(), KEY}
        # the reconciled metadata equals the sidecar's but for the source
        by_sidecar = report_eod(
            D, io.read_slice(sqlite_engine, models.IntradayEod, D, D), instance=instance,
            location=sqlite_url,
        )  # fmt: skip
        assert by_sidecar.reported
        latest = _meta(_materializations(instance)[0])
        assert {**meta, "source": "sidecar"} == latest


def test_the_sensor_skips_rows_of_a_non_session_with_one_warning(
    sqlite_url, tmp_path, sqlite_engine, capfd
):
    """The sensor context logs through Dagster's own handler to stderr."""
    saturday = dt.date(2024, 5, 4)
    io.replace_slice(sqlite_engine, models.IntradayEod, make_eod(saturday), saturday, saturday)
    write_eod(sqlite_engine, D, make_eod())
    with dg.instance_for_test() as instance:
        first = _tick(instance, sqlite_url, tmp_path)
        assert [e.partition for e in first.asset_events] == [KEY]
        warned = [line for line in capfd.readouterr().err.splitlines() if "2024-05-04" in line]
        assert len(warned) == 1 and "WARNING" in warned[0]
        assert "not an XTAI trading session" in warned[0] and "3 warehouse rows" in warned[0]
        _store(instance, first)
        second = _tick(instance, sqlite_url, tmp_path, first.cursor)
        assert not second.asset_events and "1 non-session date(s) skipped" in second.skip_message
        assert "2024-05-04" not in capfd.readouterr().err  # warned once, not every minute
        assert json.loads(second.cursor)["skipped"] == ["2024-05-04"]


def test_the_reconcile_sensor_is_registered_and_runs_by_default():
    sensor = defs.resolve_sensor_def(RECONCILE_SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 60
    assert sensor.required_resource_keys == {"warehouse"}


# ---------------------------------------------------------------- the rows feed F_C

CHIP_SESSIONS = calendar.last_sessions(3, D)
EOD_SYMBOLS = 4  # of the session's listed symbols, the first few get eod rows


@pytest.fixture(scope="module")
def chip_world(tmp_path_factory):
    """A small warehouse with the chip factor's upstream rows for three sessions ending at D
    (the existing assets on the sample market, 12 symbols), eod rows for some of D's symbols,
    reported, and ``chip_factors`` materialized for D."""
    home = tmp_path_factory.mktemp("sidecar_chip")
    url = f"sqlite:///{home}/warehouse.sqlite"
    resources = {
        "warehouse": WarehouseResource(url=url, home=str(home)),
        "data_source": DataSourceResource(n_symbols=12, seed=3),
        "factor_settings": FactorSettingsResource(lac_window=20),
    }
    everything = [raw_stock_info, raw_tables, cleaned_prices, aligned_panel, main_force_flows,
                  chip_factors, intraday_eod]  # fmt: skip
    engine = open_warehouse(url, home)
    with dg.instance_for_test() as instance:
        upstream = dg.materialize(
            everything, resources=resources, instance=instance,
            selection=dg.AssetSelection.assets(
                raw_stock_info, raw_tables, cleaned_prices, aligned_panel, main_force_flows
            ),
            tags={
                "dagster/asset_partition_range_start": CHIP_SESSIONS[0].isoformat(),
                "dagster/asset_partition_range_end": D.isoformat(),
            },
        )  # fmt: skip
        assert upstream.success
        panel = io.read_slice(engine, models.AlignedPanel, D, D, columns=["symbol", "close"])
        chosen = panel.head(EOD_SYMBOLS)
        n = chosen.height
        eod = make_eod(
            symbols=tuple(chosen["symbol"]),
            close=chosen["close"].to_list(),
            rcnc_close=[c * (1 + 0.01 * (i + 1)) for i, c in enumerate(chosen["close"])],
            rcnc_vol=[0.02 * (i + 1) for i in range(n)],
            sweep_ratio=[0.1 * (i + 1) for i in range(n)],
            liquidity_pressure=[0.003 * (i + 1) for i in range(n)],
            big_buy_volume=[10] * n, big_sell_volume=[5] * n, tick_count=[50] * n,
        )  # fmt: skip
        assert publish_eod(engine, D, eod, instance=instance).reported
        result = dg.materialize(
            everything, resources=resources, instance=instance, partition_key=D.isoformat(),
            selection=[chip_factors],
        )  # fmt: skip
        assert result.success
        mat = instance.fetch_materializations(dg.AssetKey("chip_factors"), limit=1).records[0]
        yield {
            "engine": engine,
            "panel": panel,
            "eod": eod,
            "chip_meta": _meta(mat),
            "chip": io.read_slice(engine, models.ChipFactors, D, D),
        }
    engine.dispose()


def test_eod_rows_feed_the_chip_factor_for_exactly_their_symbols(chip_world):
    chip, eod = chip_world["chip"], chip_world["eod"]
    assert chip.height == chip_world["panel"].height > EOD_SYMBOLS  # some symbols without rows
    assert chip_world["chip_meta"]["intraday_eod_rows"] == EOD_SYMBOLS
    columns = ["rcnc_close_dev", "rcnc_vol", "sweep_ratio", "liquidity_pressure"]
    with_values = chip.filter(pl.all_horizontal(pl.col(columns).is_not_null()))
    without = chip.filter(pl.any_horizontal(pl.col(columns).is_not_null()).not_())
    assert sorted(with_values["symbol"]) == sorted(eod["symbol"])
    assert with_values.height + without.height == chip.height  # all four or none
    got = with_values.join(eod, on="symbol", suffix="_eod").sort("symbol")
    expected_dev = (got["rcnc_close"] / got["close"] - 1).to_list()
    assert got["rcnc_close_dev"].to_list() == pytest.approx(expected_dev, rel=1e-12)
    # the planted deviations, +1% .. +4% over the close
    assert sorted(got["rcnc_close_dev"]) == pytest.approx([0.01, 0.02, 0.03, 0.04], rel=1e-9)
    for col in ("rcnc_vol", "sweep_ratio", "liquidity_pressure"):
        assert got[col].to_list() == got[f"{col}_eod"].to_list(), col
