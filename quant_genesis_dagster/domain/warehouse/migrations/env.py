"""Alembic environment for the warehouse: migrations run on the connection ``db.upgrade`` passes in
``config.attributes["connection"]`` (already inside its locked transaction). Offline mode
(``--sql``) renders the DDL for a DBA from ``sqlalchemy.url``."""

from __future__ import annotations

from alembic import context

from quant_genesis_dagster.domain.warehouse import models

config = context.config
target_metadata = models.Base.metadata


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        **kwargs,
    )


if context.is_offline_mode():
    url = config.get_main_option("sqlalchemy.url")
    _configure(
        url=url,
        literal_binds=True,
        render_as_batch=str(url).startswith("sqlite"),
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run warehouse migrations through quant_genesis_dagster.domain.warehouse.db.upgrade"
        )
    # SQLite cannot ALTER most things in place: batch mode rebuilds the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
