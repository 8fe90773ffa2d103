"""Alembic migrations: an empty database upgraded to head has exactly the models' schema, on
SQLite and PostgreSQL; upgrading again (or from two processes at once) changes nothing."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from quant_genesis_dagster.domain.warehouse import db, models


def _diffs(engine: Engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, models.Base.metadata)


def _current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _head() -> str | None:
    return ScriptDirectory.from_config(db.alembic_config()).get_current_head()


def test_upgrade_of_empty_database_yields_exactly_the_models(warehouse_url, tmp_path):
    engine = db.open_warehouse(warehouse_url, tmp_path)
    try:
        assert _diffs(engine) == []
        assert set(inspect(engine).get_table_names()) == {
            *models.Base.metadata.tables,
            "alembic_version",
        }
        assert _current(engine) == _head() is not None
    finally:
        engine.dispose()


def test_upgrade_again_keeps_data_and_revision(warehouse_url, tmp_path):
    engine = db.open_warehouse(warehouse_url, tmp_path)
    try:
        with engine.begin() as conn:
            conn.execute(
                models.RawStockInfo.__table__.insert(),
                {"symbol": "2330", "name": "台積電", "market": "TWSE", "industry": "半導體業",
                 "listed_date": dt.date(1994, 9, 5)},
            )  # fmt: skip
        db.upgrade(engine)
        db.upgrade(engine)
        with engine.connect() as conn:
            names = conn.execute(models.RawStockInfo.__table__.select()).all()
        assert [row.name for row in names] == ["台積電"]
        assert _current(engine) == _head()
        assert _diffs(engine) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_every_model_table(warehouse_url, tmp_path):
    engine = db.open_warehouse(warehouse_url, tmp_path)
    try:
        with engine.begin() as conn:
            command.downgrade(db.alembic_config(conn), "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        db.upgrade(engine)
        assert _diffs(engine) == []
    finally:
        engine.dispose()


def test_0005_moves_broker_rows_into_the_packed_table_and_back(warehouse_url, tmp_path):
    """Rows written row by row before 0005 read back the same (values and order) after it,
    and a downgrade restores the row table."""
    import polars as pl
    from sqlalchemy import column, select, table

    from quant_genesis_dagster.domain.warehouse import io

    engine = db.open_warehouse(warehouse_url, tmp_path)
    rows = [
        {"session": dt.date(2024, 8, 26 + i // 3), "symbol": s, "broker_id": b, "buy_shares": i,
         "sell_shares": 7, "avg_buy_price": None if i == 4 else 100.0 + i, "avg_sell_price": 9.5}
        for i, (s, b) in enumerate([("2330", "9A00"), ("2317", "1160"), ("2330", "1160")] * 2)
    ]  # fmt: skip
    names = ["session", "symbol", "broker_id", "buy_shares", "sell_shares", "avg_buy_price",
             "avg_sell_price"]  # fmt: skip
    old = table("raw_broker_flows", *(column(c) for c in ["id", *names]))
    try:
        with engine.begin() as conn:
            command.downgrade(db.alembic_config(conn), "0004")
        with engine.begin() as conn:
            conn.execute(old.insert(), rows)
        db.upgrade(engine)
        assert "raw_broker_flows" not in inspect(engine).get_table_names()
        back = io.read_slice(engine, models.RawBrokerFlows, None, None)
        expected = pl.DataFrame(rows).pipe(io.tables.conform, models.RawBrokerFlows)
        assert back.equals(expected.sort(["session", "symbol"], maintain_order=True))
        assert io.count_rows(engine, models.RawBrokerFlows, group_by="session") == {
            dt.date(2024, 8, 26): 3, dt.date(2024, 8, 27): 3}  # fmt: skip
        with engine.begin() as conn:
            command.downgrade(db.alembic_config(conn), "0004")
        with engine.connect() as conn:
            restored = conn.execute(select(*(old.c[c] for c in names)).order_by(old.c.id)).all()
        assert [tuple(r) for r in restored] == [
            (str(r["session"]) if warehouse_url.startswith("sqlite") else r["session"],
             *(r[c] for c in names[1:])) for r in rows
        ]  # fmt: skip
        db.upgrade(engine)
        assert _diffs(engine) == []
    finally:
        engine.dispose()


_UPGRADER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from quant_genesis_dagster.domain.warehouse import db
    url, home, start_at = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    time.sleep(max(0.0, start_at - time.time()))  # all processes begin at the same instant
    db.open_warehouse(url, home).dispose()
    """
)


def test_concurrent_upgrades_from_separate_processes_all_succeed(warehouse_url, tmp_path):
    # Without the lock both processes see an empty database and one fails creating a table
    # that the other has just created.
    start_at = time.time() + 1.2
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _UPGRADER, warehouse_url, str(tmp_path), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()
    assert [code for code, _ in results] == [0, 0, 0], [err[-1500:] for _, err in results]
    engine = db.make_engine(warehouse_url)
    try:
        assert _diffs(engine) == []
        assert _current(engine) == _head()
    finally:
        engine.dispose()


def test_new_revision_writes_nothing_when_models_match(tmp_path, monkeypatch):
    # The autogenerate helper must see no difference between the migrations and models.py.
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    src = db.MIGRATIONS_DIR
    for f in [src / "env.py", src / "script.py.mako"]:
        (tmp_path / "migrations" / f.name).write_text(f.read_text())
    for f in (src / "versions").glob("*.py"):
        (versions / f.name).write_text(f.read_text())
    monkeypatch.setattr(db, "MIGRATIONS_DIR", tmp_path / "migrations")
    engine = db.make_engine(f"sqlite:///{tmp_path}/scratch.sqlite")
    try:
        path = db.new_revision(engine, "nothing changed")
    finally:
        engine.dispose()
    body = Path(path).read_text()
    assert path.name.startswith(f"{len(list((src / 'versions').glob('[0-9]*.py'))) + 1:04d}_")
    assert "op.create_table" not in body and "op.add_column" not in body


@pytest.mark.parametrize("rev", ["0001", "head"])
def test_alembic_config_points_into_the_package(rev):
    # Sanity for packaging: the script location is inside the installed package, and the
    # initial revision exists under its fixed id.
    script = ScriptDirectory.from_config(db.alembic_config())
    assert Path(script.dir) == db.MIGRATIONS_DIR
    assert script.get_revision(rev) is not None
