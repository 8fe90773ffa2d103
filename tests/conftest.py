"""Shared test fixtures: warehouses on SQLite and on a real PostgreSQL server.

PostgreSQL is never skipped. ``QG_TEST_DATABASE_URL`` points the tests at an existing server
(a role allowed to CREATE DATABASE); otherwise each pytest(-xdist) process starts its own
throwaway cluster from the installed server binaries (``tests/pg.py``) and removes it at the end.
Without either, PostgreSQL tests fail with a one-line how-to.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pg
import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from quant_genesis_dagster.domain.warehouse import db

_PG_FIXTURES = {"pg_server_url", "pg_url", "pg_dagster_url"}


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test process defaults to a throwaway QG_HOME (warehouse, Dagster home, MLflow store)
    and ignores a developer's MLFLOW_TRACKING_URI; tests that need their own home set it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("QG_HOME", str(tmp_path_factory.mktemp("qg_home")))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("QG_DATABASE_URL", raising=False)
    mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield
    mp.undo()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that touches PostgreSQL (directly or via warehouse_url) ``postgres``."""
    for item in items:
        if _PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """Superuser URL of the PostgreSQL server for this test process."""
    given = os.environ.get("QG_TEST_DATABASE_URL", "").strip()
    if given:
        url = db.parse_url(given, setting="QG_TEST_DATABASE_URL")
        yield url.render_as_string(hide_password=False)
        return
    bindir = pg.find_bindir()
    if bindir is None:
        pytest.fail(pg.HOW_TO, pytrace=False)
    # One cluster per xdist worker: own temp dir, own free port.
    cluster = pg.PgCluster(bindir, label=os.environ.get("PYTEST_XDIST_WORKER", "main"))
    try:
        url = cluster.start()
    except Exception as err:  # any failure becomes the how-to message
        cluster.stop()
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        pytest.fail(f"{pg.HOW_TO}; starting a local cluster failed: {first}", pytrace=False)
    try:
        yield url
    finally:
        cluster.stop()


def _admin(server_url: str) -> Engine:
    # CREATE/DROP DATABASE cannot run inside a transaction.
    return create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def _create_database(server_url: str, prefix: str) -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = _admin(server_url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    url = db.parse_url(server_url).set(database=name).render_as_string(hide_password=False)
    return name, url


def _drop_database(server_url: str, name: str) -> None:
    admin = _admin(server_url)
    try:
        with admin.connect() as conn:
            # FORCE: an engine a test forgot to dispose must not keep the database alive.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database ``qg_test_<uuid8>`` for one test; dropped afterwards."""
    name, url = _create_database(pg_server_url, "qg_test")
    try:
        yield url
    finally:
        _drop_database(pg_server_url, name)


@pytest.fixture(scope="session")
def pg_dagster_url(pg_server_url: str) -> Iterator[str]:
    """A separate PostgreSQL database for a Dagster instance (``postgresql+psycopg2://``)."""
    name, url = _create_database(pg_server_url, "qg_dagster")
    try:
        yield url
    finally:
        _drop_database(pg_server_url, name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite warehouse file in the test's temp dir (not created yet)."""
    return f"sqlite:///{tmp_path}/warehouse.sqlite"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest) -> str:
    """An empty warehouse URL, once per backend: tests using it run on SQLite and PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def warehouse(warehouse_url: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a migrated, empty warehouse (both backends, via ``warehouse_url``)."""
    engine = db.open_warehouse(warehouse_url, tmp_path)
    try:
        yield engine
    finally:
        engine.dispose()
