"""Column contracts of the warehouse tables as polars schemas, derived from the ORM models.

Every source adapter returns, and every domain function consumes, polars DataFrames with exactly
these columns and dtypes (surrogate ``id`` columns excluded). ``conform`` enforces that.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import BigInteger, Boolean, Date, DateTime, Float, Integer, String, Text

from quant_genesis_dagster.domain.warehouse import models
from quant_genesis_dagster.errors import QGError

_SQL_TO_POLARS: list[tuple[type, pl.DataType]] = [
    (Boolean, pl.Boolean()),
    (BigInteger, pl.Int64()),
    (Integer, pl.Int32()),
    (Float, pl.Float64()),
    (DateTime, pl.Datetime("us", "UTC")),
    (Date, pl.Date()),
    (Text, pl.String()),
    (String, pl.String()),
]


def _polars_type(sql_type: object) -> pl.DataType:
    for sql_cls, pl_type in _SQL_TO_POLARS:
        if isinstance(sql_type, sql_cls):
            return pl_type
    raise TypeError(f"no polars type for SQL type {sql_type!r}")


def polars_schema(model: type[models.Base]) -> pl.Schema:
    """The polars schema of a model's data columns (surrogate ``id`` excluded)."""
    table = model.__table__
    return pl.Schema({c.name: _polars_type(c.type) for c in table.columns if c.name != "id"})


def conform(df: pl.DataFrame, model: type[models.Base], *, what: str | None = None) -> pl.DataFrame:
    """Select and cast ``df`` to the model's columns; one-line error naming missing columns."""
    schema = polars_schema(model)
    missing = [c for c in schema if c not in df.columns]
    if missing:
        name = what or model.__tablename__
        raise QGError(
            f"{name}: missing column(s) {', '.join(missing)}; expected {', '.join(schema)}"
        )
    return df.select([pl.col(c).cast(t, strict=False) for c, t in schema.items()])


RAW_SCHEMAS: dict[str, pl.Schema] = {
    name: polars_schema(model) for name, model in models.RAW_TABLES.items()
}
