"""Warehouse I/O on SQLite and PostgreSQL: slice replacement is idempotent, exact and atomic;
every model round-trips with its dtypes; bad URLs give one-line errors without the password."""

from __future__ import annotations

import datetime as dt
import socket
import threading

import polars as pl
import pytest
from sqlalchemy import select, text

from quant_genesis_dagster.domain import tables
from quant_genesis_dagster.domain.warehouse import db, io, models
from quant_genesis_dagster.errors import QGError

D1, D2, D3, D4 = (
    dt.date(2024, 8, 26),
    dt.date(2024, 8, 27),
    dt.date(2024, 8, 28),
    dt.date(2024, 8, 29),
)
TEXT = '台積電, "漲停"\n第二行 \\. \\N'  # comma, quotes, newline, Chinese, COPY escapes


def broker_flows(sessions: list[dt.date], symbols: list[str], bump: int = 0) -> pl.DataFrame:
    """Two branches per (session, symbol); ``bump`` changes the values, not the keys."""
    keys = (
        pl.DataFrame({"session": sessions})
        .join(pl.DataFrame({"symbol": symbols}), how="cross")
        .join(pl.DataFrame({"broker_id": ["9A00", "1160"]}), how="cross")
    )
    n = keys.height
    return keys.with_columns(
        buy_shares=pl.int_range(n, eager=True) * 1000 + bump,
        sell_shares=pl.lit(500 + bump, pl.Int64),
        avg_buy_price=pl.int_range(n, eager=True) / 4 + 100.0,
        avg_sell_price=pl.Series([None, 101.5] * (n // 2), dtype=pl.Float64),
    )


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------------------------
# replace_slice
# --------------------------------------------------------------------------------------------


def test_writing_the_same_slice_twice_leaves_identical_rows(warehouse):
    df = broker_flows([D1, D2], ["2330", "2317"])
    assert io.replace_slice(warehouse, models.RawBrokerFlows, df, D1, D2) == 8
    first = io.slice_hash(warehouse, models.RawBrokerFlows, D1, D2)
    assert io.replace_slice(warehouse, models.RawBrokerFlows, df, D1, D2) == 8
    assert io.slice_hash(warehouse, models.RawBrokerFlows, D1, D2) == first
    assert io.count_rows(warehouse, models.RawBrokerFlows) == 8
    back = io.read_slice(warehouse, models.RawBrokerFlows, D1, D2)
    # Sorted by (session, symbol) in byte order; ties keep insertion order.
    assert back.equals(df.sort(["session", "symbol"], maintain_order=True))


def test_replace_slice_touches_only_its_sessions(warehouse):
    io.replace_slice(warehouse, models.RawBrokerFlows, broker_flows([D1, D2, D3], ["2330"]), D1, D3)
    before = io.read_slice(warehouse, models.RawBrokerFlows, D1, D3)
    new = broker_flows([D2], ["2330", "1101", "2603"], bump=7)
    assert io.replace_slice(warehouse, models.RawBrokerFlows, new, D2, D2) == 6
    after = io.read_slice(warehouse, models.RawBrokerFlows, D1, D3)
    assert after.filter(pl.col("session") != D2).equals(before.filter(pl.col("session") != D2))
    assert after.filter(pl.col("session") == D2).equals(new.sort("symbol", maintain_order=True))
    assert io.count_rows(warehouse, models.RawBrokerFlows, group_by="session") == {
        D1: 2,
        D2: 6,
        D3: 2,
    }


def test_an_empty_frame_clears_the_slice(warehouse):
    io.replace_slice(warehouse, models.RawBrokerFlows, broker_flows([D1, D2], ["2330"]), D1, D2)
    empty = pl.DataFrame(schema=tables.polars_schema(models.RawBrokerFlows))
    assert io.replace_slice(warehouse, models.RawBrokerFlows, empty, D2, D2) == 0
    assert io.count_rows(warehouse, models.RawBrokerFlows, group_by="session") == {D1: 2}


def _quarantine(table_name: str, reason: str, session: dt.date = D1) -> pl.DataFrame:
    return pl.DataFrame(
        {"session": [session], "table_name": [table_name], "symbol": ["2330"],
         "reason": [reason], "action": ["rejected"], "detail": ['{"close": -1}']}
    )  # fmt: skip


def test_where_limits_the_replacement_to_matching_rows(warehouse):
    both = pl.concat(
        [_quarantine("raw_daily_prices", "duplicate"), _quarantine("raw_margin", "duplicate")]
    )
    io.replace_slice(warehouse, models.Quarantine, both, D1, D1)
    new = _quarantine("raw_daily_prices", "ohlc_inconsistent")
    io.replace_slice(
        warehouse, models.Quarantine, new, D1, D1, where={"table_name": ["raw_daily_prices"]}
    )
    got = io.read_slice(warehouse, models.Quarantine, D1, D1, columns=["table_name", "reason"])
    assert sorted(got.rows()) == [
        ("raw_daily_prices", "ohlc_inconsistent"),
        ("raw_margin", "duplicate"),
    ]
    only_margin = io.read_slice(
        warehouse, models.Quarantine, None, None, where={"table_name": ["raw_margin"]}
    )
    assert only_margin["reason"].to_list() == ["duplicate"]


def test_a_row_outside_where_is_rejected_and_nothing_written(warehouse):
    io.replace_slice(warehouse, models.Quarantine, _quarantine("raw_margin", "duplicate"), D1, D1)
    with pytest.raises(QGError) as err:
        io.replace_slice(
            warehouse, models.Quarantine, _quarantine("raw_margin", "x"), D1, D1,
            where={"table_name": ["raw_daily_prices"]},
        )  # fmt: skip
    msg = _one_line(err)
    assert msg.startswith(
        "quarantine: row 0 (session=2024-08-26, symbol=2330, table_name=raw_margin)"
    )
    assert io.read_slice(warehouse, models.Quarantine, None, None)["reason"].to_list() == [
        "duplicate"
    ]


def test_rows_outside_the_session_slice_are_rejected_and_nothing_written(warehouse):
    io.replace_slice(warehouse, models.RawBrokerFlows, broker_flows([D1], ["2330"]), D1, D1)
    df = broker_flows([D2, D3], ["2330"])  # rows 0-1 in D2, rows 2-3 in D3
    with pytest.raises(QGError) as err:
        io.replace_slice(warehouse, models.RawBrokerFlows, df, D1, D2)
    msg = _one_line(err)
    assert "raw_broker_flows: row 2 (session=2024-08-28, symbol=2330)" in msg
    assert "2024-08-26..2024-08-27" in msg and "nothing written" in msg
    assert io.count_rows(warehouse, models.RawBrokerFlows, group_by="session") == {D1: 2}


def test_a_database_error_mid_insert_keeps_the_previous_rows(warehouse, monkeypatch):
    # 30 rows written in chunks of 10; row 25 repeats row 3's primary key, so the database
    # fails in the third chunk, after two chunks were already inserted.
    monkeypatch.setattr(io, "_CHUNK_ROWS", 10)
    old = _cleaned([D1], [f"{1000 + i}" for i in range(3)], close=10.0)
    io.replace_slice(warehouse, models.CleanedPrices, old, D1, D1)
    symbols = [f"{2000 + i}" for i in range(30)]
    symbols[25] = symbols[3]
    with pytest.raises(QGError) as err:
        io.replace_slice(
            warehouse, models.CleanedPrices, _cleaned([D1], symbols, close=20.0), D1, D1
        )
    assert "cleaned_prices: the database rejected the rows" in _one_line(err)
    assert io.read_slice(warehouse, models.CleanedPrices, D1, D1).equals(old)


def test_a_packed_table_written_in_several_inserts_reads_back_in_order(warehouse, monkeypatch):
    # raw_broker_flows is packed per session, two sessions per INSERT here; rows arrive with
    # sessions interleaved and duplicates (the raw layer keeps them), and come back sorted by
    # (session, symbol) with ties in the order written.
    monkeypatch.setattr(io, "_PACKED_SESSIONS_PER_INSERT", 2)
    days = [D1, D2, D3, D4]
    df = broker_flows(days, ["2330", "2317"])
    df = pl.concat([df, df.head(3)]).sample(fraction=1.0, shuffle=True, seed=5)
    assert io.replace_slice(warehouse, models.RawBrokerFlows, df, D1, D4) == df.height
    back = io.read_slice(warehouse, models.RawBrokerFlows, D1, D4)
    assert back.equals(df.sort(["session", "symbol"], maintain_order=True))
    assert io.count_rows(warehouse, models.RawBrokerFlows) == df.height
    assert io.count_rows(warehouse, models.RawBrokerFlows, group_by="broker_id") == {
        "1160": 9, "9A00": 10}  # fmt: skip
    with pytest.raises(QGError, match="raw_broker_flows: a packed table is replaced by whole"):
        only = df.filter(pl.col("symbol") == "2330")
        io.replace_slice(warehouse, models.RawBrokerFlows, only, D1, D4, where={"symbol": ["2330"]})
    with pytest.raises(QGError, match="raw_broker_flows: read_latest_before is not available"):
        io.read_latest_before(warehouse, models.RawBrokerFlows, D4)


def test_a_missing_required_value_names_row_and_column_and_writes_nothing(warehouse):
    io.replace_slice(warehouse, models.RawBrokerFlows, broker_flows([D1], ["2330"]), D1, D1)
    df = broker_flows([D1], ["2330", "2317", "1101"])
    df = df.with_columns(
        buy_shares=pl.when(pl.int_range(pl.len()) == 4).then(None).otherwise("buy_shares")
    )
    with pytest.raises(QGError) as err:
        io.replace_slice(warehouse, models.RawBrokerFlows, df, D1, D1)
    assert "raw_broker_flows: row 4 has no value in required column 'buy_shares'" in _one_line(err)
    assert io.count_rows(warehouse, models.RawBrokerFlows) == 2


def test_replace_slices_is_one_transaction_across_tables(warehouse):
    io.replace_slice(warehouse, models.CleanedPrices, _cleaned([D1], ["2330"], close=10.0), D1, D1)
    good = _cleaned([D1], ["2330", "2317"], close=11.0)
    bad_quarantine = _quarantine("raw_daily_prices", "duplicate", session=D2)  # outside D1..D1
    with pytest.raises(QGError):
        io.replace_slices(
            warehouse, D1, D1,
            [(models.CleanedPrices, good, None), (models.Quarantine, bad_quarantine, None)],
        )  # fmt: skip
    assert io.read_slice(warehouse, models.CleanedPrices, D1, D1)["close"].to_list() == [10.0]
    scope = {"table_name": ["raw_daily_prices"]}
    new_quarantine = _quarantine("raw_daily_prices", "duplicate")
    rows = io.replace_slices(
        warehouse, D1, D1,
        [(models.CleanedPrices, good, None), (models.Quarantine, new_quarantine, scope)],
    )  # fmt: skip
    assert rows == [2, 1]
    assert io.count_rows(warehouse, models.Quarantine) == 1


def test_replace_all_swaps_the_whole_table(warehouse):
    first = _stock_info(["2330", "2317", "1101"])
    assert io.replace_all(warehouse, models.RawStockInfo, first) == 3
    second = _stock_info(["2603", "2330"])
    io.replace_all(warehouse, models.RawStockInfo, second)
    assert io.read_all(warehouse, models.RawStockInfo)["symbol"].to_list() == ["2330", "2603"]


def test_concurrent_writers_of_different_slices_all_succeed(warehouse):
    sessions = [D1, D2, D3, D4]
    errors: list[BaseException] = []

    def write(day: dt.date) -> None:
        try:
            for bump in range(3):
                io.replace_slice(
                    warehouse,
                    models.RawBrokerFlows,
                    broker_flows([day], ["2330", "2317"], bump),
                    day,
                    day,
                )
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(d,)) for d in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert io.count_rows(warehouse, models.RawBrokerFlows, group_by="session") == dict.fromkeys(
        sessions, 4
    )


# --------------------------------------------------------------------------------------------
# round trips and reads
# --------------------------------------------------------------------------------------------


def _cleaned(sessions: list[dt.date], symbols: list[str], close: float) -> pl.DataFrame:
    frame = pl.DataFrame({"session": sessions}).join(pl.DataFrame({"symbol": symbols}), how="cross")
    values = {c: close for c in ("open", "high", "low", "close", "vwap", "open_adj", "high_adj",
                                 "low_adj", "close_adj", "vwap_adj")}  # fmt: skip
    return frame.with_columns(
        **{c: pl.lit(v) for c, v in values.items()},
        volume_shares=pl.lit(1000, pl.Int64), turnover_twd=pl.lit(None, pl.Float64),
        trades=pl.lit(3, pl.Int64), adj_factor=pl.lit(1.0), prev_close=pl.lit(None, pl.Float64),
        is_ex_date=pl.lit(False), limit_up=pl.lit(True), limit_down=pl.lit(False),
        sessions_since_listing=pl.lit(6, pl.Int32),
    ).select(list(tables.polars_schema(models.CleanedPrices)))  # fmt: skip


def _stock_info(symbols: list[str]) -> pl.DataFrame:
    n = len(symbols)
    return pl.DataFrame(
        {"symbol": symbols, "name": ["台積電"] * n, "market": ["TWSE"] * n, "industry": ["半導體業"] * n,
         "listed_date": [dt.date(1994, 9, 5)] * n, "delisted_date": [None] * n},
        schema=tables.polars_schema(models.RawStockInfo),
    )  # fmt: skip


# Three hand-picked values per polars dtype: typical, edge, and null (for nullable columns).
_VALUES: dict[object, list[object]] = {
    pl.Date: [dt.date(2024, 8, 26), dt.date(2010, 1, 4)],
    pl.Datetime("us", "UTC"): [
        dt.datetime(2024, 8, 26, 1, 2, 3, 456789, tzinfo=dt.UTC),
        dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    ],
    pl.Int64: [0, 2**62 + 1],
    pl.Int32: [-1, 2**31 - 1],
    pl.Float64: [0.1 + 0.2, float("inf")],
    pl.Boolean: [True, False],
}


def _every_value_frame(model: type[models.Base]) -> pl.DataFrame:
    table = model.__table__
    keyed = {c.name for c in table.primary_key.columns}
    data: dict[str, list[object]] = {}
    for name, dtype in tables.polars_schema(model).items():
        col = table.c[name]
        if dtype == pl.String:
            short = getattr(col.type, "length", None) is not None
            first, second = ('台積電,"a"\n', "") if short else (TEXT, "")
            if name in keyed:
                first, second = "2330", '台,"泥"'
            values = [first, second, "x3"]
        else:
            values = [*_VALUES[dtype], _VALUES[dtype][0]]
        if col.nullable:
            values[2] = None
        if name == "session":
            # a table keyed by the session alone (market_regimes) needs three sessions
            values = [D1, D2, D3] if keyed == {"session"} else [D1, D1, D2]
        data[name] = values
    return pl.DataFrame(data, schema=tables.polars_schema(model))


# Every model io reads and writes: the tables, with packed tables by their row shapes.
# Sorted: xdist workers must collect the same tests in the same order.
ALL_MODELS = sorted(
    (
        *(m.class_ for m in models.Base.registry.mappers),
        *(m.class_ for m in models.RowShapes.registry.mappers),
    ),
    key=lambda m: m.__tablename__,
)
ALL_MODELS = [m for m in ALL_MODELS if m not in models.PACKED_TABLES.values()]


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__tablename__)
def test_every_model_round_trips_with_its_dtypes(warehouse, model):
    df = _every_value_frame(model)
    if "session" in df.columns:
        last = df["session"].max()
        io.replace_slice(warehouse, model, df, D1, last)
        back = io.read_slice(warehouse, model, D1, last)
    else:
        io.replace_all(warehouse, model, df)
        back = io.read_all(warehouse, model)
    assert back.schema == tables.polars_schema(model)
    sort_by = [c for c in ("session", "symbol") if c in df.columns]
    expected = (
        df.sort(sort_by, nulls_last=True, maintain_order=True) if sort_by else df.sort("symbol")
    )
    assert back.equals(expected), (back, expected)


def test_news_timestamps_are_stored_as_utc_that_sqlalchemy_reads_back(warehouse):
    taipei = dt.timezone(dt.timedelta(hours=8))
    published = dt.datetime(2024, 8, 26, 8, 30, 0, 1, tzinfo=taipei)  # 00:30:00.000001 UTC
    df = pl.DataFrame(
        {"session": [D1], "published_at": [published], "symbol": [None], "source": ["cna"],
         "title": [TEXT], "body": [None]},
    ).with_columns(pl.col("published_at").dt.convert_time_zone("Asia/Taipei"))  # fmt: skip
    io.replace_slice(warehouse, models.RawNews, df, D1, D1)
    back = io.read_slice(warehouse, models.RawNews, D1, D1)
    assert back["published_at"].to_list() == [published.astimezone(dt.UTC)]
    assert back["title"].to_list() == [TEXT]
    # The ORM / Core path sees the same instant (naive UTC on SQLite, aware on PostgreSQL).
    with warehouse.connect() as conn:
        session, at = conn.execute(
            select(models.RawNews.session, models.RawNews.published_at)
        ).one()
    assert session == D1
    assert (at if at.tzinfo else at.replace(tzinfo=dt.UTC)) == published


def test_read_latest_before_returns_each_symbols_last_session_before_the_date(warehouse):
    flows = pl.DataFrame(
        {"session": [D1, D2, D2, D4, D1, D3],
         "symbol": ["2330", "2330", "2330", "2330", "2317", "1101"],
         "investor": ["Foreign_Investor", "Foreign_Investor", "Investment_Trust",
                      "Foreign_Investor", "Dealer_self", "Dealer_self"],
         "buy_shares": [1, 2, 3, 4, 5, 6], "sell_shares": [None, 0, 0, 0, 0, 0]},
    )  # fmt: skip
    io.replace_slice(warehouse, models.RawInstitutionalFlows, flows, D1, D4)
    got = io.read_latest_before(warehouse, models.RawInstitutionalFlows, D4)
    # 2330: both D2 rows (D4 is not before D4); 2317: D1; 1101: D3.
    assert got.select("session", "symbol", "buy_shares").rows() == [
        (D1, "2317", 5), (D2, "2330", 2), (D2, "2330", 3), (D3, "1101", 6)
    ]  # fmt: skip
    assert io.read_latest_before(warehouse, models.RawInstitutionalFlows, D1).height == 0
    recent = io.read_latest_before(
        warehouse, models.RawInstitutionalFlows, D4, since=D2, columns=["symbol"]
    )
    assert recent.columns == ["symbol"] and sorted(recent["symbol"]) == ["1101", "2330", "2330"]
    only = io.read_latest_before(
        warehouse, models.RawInstitutionalFlows, dt.date(2024, 9, 2), symbols=["2330"]
    )
    assert only["buy_shares"].to_list() == [4]


def test_read_slice_selects_columns_symbols_and_bounds(warehouse):
    io.replace_slice(
        warehouse, models.RawBrokerFlows, broker_flows([D1, D2, D3], ["2330", "2317"]), D1, D3
    )
    got = io.read_slice(
        warehouse, models.RawBrokerFlows, D2, None, columns=["symbol", "session"], symbols=["2330"]
    )
    assert got.columns == ["symbol", "session"]
    assert got.rows() == [("2330", D2), ("2330", D2), ("2330", D3), ("2330", D3)]
    assert io.count_rows(warehouse, models.RawBrokerFlows, None, D1) == 4
    with pytest.raises(QGError, match="unknown column"):
        io.read_slice(warehouse, models.RawBrokerFlows, D1, D1, columns=["nope"])


def test_slice_hash_ignores_row_order_and_surrogate_ids(warehouse):
    df = broker_flows([D1], ["2330", "2317"])
    io.replace_slice(warehouse, models.RawBrokerFlows, df, D1, D1)
    h = io.slice_hash(warehouse, models.RawBrokerFlows, D1, D1)
    io.replace_slice(warehouse, models.RawBrokerFlows, df.reverse(), D1, D1)  # new ids, new order
    assert io.slice_hash(warehouse, models.RawBrokerFlows, D1, D1) == h
    io.replace_slice(
        warehouse, models.RawBrokerFlows, broker_flows([D1], ["2330", "2317"], bump=1), D1, D1
    )
    assert io.slice_hash(warehouse, models.RawBrokerFlows, D1, D1) != h


def test_slice_hash_is_the_same_on_both_backends(sqlite_url, pg_url, tmp_path):
    df = _every_value_frame(models.RawNews)
    hashes = []
    for url in (sqlite_url, pg_url):
        engine = db.open_warehouse(url, tmp_path)
        try:
            io.replace_slice(engine, models.RawNews, df, D1, D2)
            hashes.append(io.slice_hash(engine, models.RawNews, D1, D2))
        finally:
            engine.dispose()
    assert hashes[0] == hashes[1]


# --------------------------------------------------------------------------------------------
# URLs and connections
# --------------------------------------------------------------------------------------------


def test_default_url_is_a_sqlite_file_under_home_created_with_wal(tmp_path):
    url = db.database_url(None, tmp_path / "home")
    assert url == f"sqlite:///{tmp_path}/home/warehouse.sqlite"
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == db.SQLITE_BUSY_TIMEOUT_MS
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()
    assert (tmp_path / "home" / "warehouse.sqlite").exists()
    assert db.database_url(" postgresql://u@h/db ", tmp_path) == "postgresql://u@h/db"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg2"])
def test_bare_postgres_schemes_use_psycopg2(scheme):
    url = db.parse_url(f"{scheme}://u:pw@db.example:5433/qg")
    assert url.drivername == "postgresql+psycopg2"
    assert db.safe_url(url) == "postgresql+psycopg2://u@db.example:5433/qg"


@pytest.mark.parametrize(
    "url, needle",
    [
        ("mysql://u:s3cret@127.0.0.1/qg", "unsupported database 'mysql'"),
        ("postgresql+asyncpg://u:s3cret@127.0.0.1/qg", "unsupported database 'postgresql+asyncpg'"),
        ("not a url at all", "cannot parse"),
        ("postgresql://u:s3cret@127.0.0.1:port/qg", "cannot parse"),
    ],
)
def test_bad_urls_give_one_line_errors_without_the_password(url, needle):
    with pytest.raises(QGError) as err:
        db.make_engine(url)
    msg = _one_line(err)
    assert msg.startswith("QG_DATABASE_URL: ") and needle in msg and "s3cret" not in msg


def test_unreachable_server_is_one_line_without_the_password():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(QGError) as err:
        db.make_engine(f"postgresql://qg:s3cret@127.0.0.1:{port}/qg")
    assert _one_line(err) == (
        f"QG_DATABASE_URL: cannot connect to postgresql+psycopg2://qg@127.0.0.1:{port}/qg "
        "(connection refused); is the server running?"
    )


def test_missing_database_on_a_live_server_says_so(pg_server_url):
    url = db.parse_url(pg_server_url).set(database="qg_no_such_db", password="s3cret")
    with pytest.raises(QGError) as err:
        db.make_engine(url.render_as_string(hide_password=False))
    msg = _one_line(err)
    assert 'database "qg_no_such_db" does not exist' in msg and "s3cret" not in msg


def test_sqlite_folder_that_cannot_be_created_names_the_setting(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(QGError) as err:
        db.open_warehouse(f"sqlite:///{tmp_path}/file/sub/w.sqlite", tmp_path)
    assert _one_line(err).startswith("QG_DATABASE_URL: cannot create the folder")
    with pytest.raises(QGError) as err:
        db.open_warehouse(None, tmp_path / "file")
    assert _one_line(err).startswith("QG_HOME: cannot create the folder")


# --------------------------------------------------------------------------------------------
# what the bulk paths store is what SQLAlchemy's types read; in-memory SQLite works too
# --------------------------------------------------------------------------------------------


def test_bulk_written_rows_read_the_same_through_sqlalchemy_core(warehouse):
    # Dates, booleans and floats written by the bulk path are what the ORM types read back.
    df = _every_value_frame(models.CleanedPrices)
    io.replace_slice(warehouse, models.CleanedPrices, df, D1, df["session"].max())
    table = models.CleanedPrices.__table__
    cols = ["session", "symbol", "is_ex_date", "limit_up", "close"]
    with warehouse.connect() as conn:
        rows = conn.execute(
            select(*(table.c[c] for c in cols)).order_by(table.c.session, table.c.symbol)
        ).all()
    expected = df.sort(["session", "symbol"]).select(cols).rows()
    assert [tuple(r) for r in rows] == expected
    assert all(isinstance(r[2], bool) and isinstance(r[0], dt.date) for r in rows)


def test_an_in_memory_sqlite_warehouse_writes_reads_and_rolls_back(tmp_path):
    engine = db.open_warehouse("sqlite://", tmp_path)
    try:
        df = broker_flows([D1, D2], ["2330", "2317"])
        assert io.replace_slice(engine, models.RawBrokerFlows, df, D1, D2) == 8
        back = io.read_slice(engine, models.RawBrokerFlows, D1, D2)
        assert back.equals(df.sort(["session", "symbol"], maintain_order=True))
        bad = _cleaned([D1], ["2330", "2330"], close=1.0)  # duplicate primary key
        io.replace_slice(engine, models.CleanedPrices, _cleaned([D1], ["1101"], 9.0), D1, D1)
        with pytest.raises(QGError, match="cleaned_prices: the database rejected the rows"):
            io.replace_slice(engine, models.CleanedPrices, bad, D1, D1)
        assert io.read_slice(engine, models.CleanedPrices, D1, D1)["symbol"].to_list() == ["1101"]
    finally:
        engine.dispose()


def test_read_market_columns_gives_one_row_per_session(warehouse):
    df = _every_value_frame(models.AlignedPanel).with_columns(
        taiex_close=pl.Series([None, 22000.5, 21950.25]), symbol=pl.Series(["2330", "2317", "2330"])
    )  # sessions D1, D1, D2: the null on D1's first row is skipped, not taken
    io.replace_slice(warehouse, models.AlignedPanel, df, D1, D2)
    got = io.read_market_columns(warehouse, models.AlignedPanel, None, D2, ["taiex_close"])
    assert got.schema == pl.Schema({"session": pl.Date(), "taiex_close": pl.Float64()})
    assert got.rows() == [(D1, 22000.5), (D2, 21950.25)]
    assert (
        io.read_market_columns(warehouse, models.AlignedPanel, D2, D2, ["taiex_close"]).height == 1
    )
