"""raw_broker_flows stored packed: one row per session (raw_broker_flows_packed) holding the
session's branch rows as a Parquet payload; existing rows are moved, in their order.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 07:00:00
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import polars as pl
import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The payload format of warehouse.io._pack at this revision (kept here: a migration must not
# change meaning when the application code changes later).
_COLUMNS = {
    "symbol": pl.String(),
    "broker_id": pl.String(),
    "buy_shares": pl.Int64(),
    "sell_shares": pl.Int64(),
    "avg_buy_price": pl.Float64(),
    "avg_sell_price": pl.Float64(),
}
_ROWS = sa.table(
    "raw_broker_flows",
    sa.column("id", sa.Integer),
    sa.column("session", sa.Date),
    *(sa.column(c, sa.Float if t == pl.Float64() else sa.String if t == pl.String() else sa.BigInteger)
      for c, t in _COLUMNS.items()),
)  # fmt: skip
_PACKED = sa.table(
    "raw_broker_flows_packed",
    sa.column("session", sa.Date),
    sa.column("n_rows", sa.Integer),
    sa.column("payload", sa.LargeBinary),
)


def _create_rows_table() -> None:
    op.create_table(
        "raw_broker_flows",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("session", sa.Date(), nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("broker_id", sa.String(length=16), nullable=False),
        sa.Column("buy_shares", sa.BigInteger(), nullable=False),
        sa.Column("sell_shares", sa.BigInteger(), nullable=False),
        sa.Column("avg_buy_price", sa.Float(), nullable=True),
        sa.Column("avg_sell_price", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_broker_flows")),
    )
    op.create_index(
        op.f("ix_raw_broker_flows_session_symbol"),
        "raw_broker_flows",
        ["session", "symbol"],
        unique=False,
    )


def upgrade() -> None:
    op.create_table(
        "raw_broker_flows_packed",
        sa.Column("session", sa.Date(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("session", name=op.f("pk_raw_broker_flows_packed")),
    )
    conn = op.get_bind()
    sessions = conn.execute(sa.select(_ROWS.c.session).distinct().order_by(_ROWS.c.session))
    for (session,) in sessions.all():
        cols = [_ROWS.c[c] for c in _COLUMNS]
        rows = conn.execute(
            sa.select(*cols).where(_ROWS.c.session == session).order_by(_ROWS.c.id)
        ).all()
        part = pl.DataFrame(rows, schema=pl.Schema(_COLUMNS), orient="row")
        buf = io.BytesIO()
        part.write_parquet(buf, compression="lz4", statistics=False)
        conn.execute(
            _PACKED.insert().values(session=session, n_rows=part.height, payload=buf.getvalue())
        )
    op.drop_index(op.f("ix_raw_broker_flows_session_symbol"), table_name="raw_broker_flows")
    op.drop_table("raw_broker_flows")


def downgrade() -> None:
    _create_rows_table()
    conn = op.get_bind()
    packed = conn.execute(sa.select(_PACKED).order_by(_PACKED.c.session)).all()
    for session, _, payload in packed:
        part = pl.read_parquet(io.BytesIO(bytes(payload)))
        if part.height:
            conn.execute(_ROWS.insert(), [dict(r, session=session) for r in part.to_dicts()])
    op.drop_table("raw_broker_flows_packed")
