"""Small helpers shared by the asset modules: partition ranges and table metadata."""

import datetime as dt
import json

import dagster as dg
import polars as pl

from quant_genesis_dagster.defs.partitions import trading_days_partitions_def
from quant_genesis_dagster.domain import tables
from quant_genesis_dagster.domain.warehouse import models
from quant_genesis_dagster.errors import QGError

# Rows one asset writes per partition range; what a materialization reports.
ROW_COUNT = "dagster/row_count"
COLUMN_SCHEMA = "dagster/column_schema"

_DTYPE_NAMES = {
    pl.Date: "date",
    pl.Boolean: "bool",
    pl.Int64: "int64",
    pl.Int32: "int32",
    pl.Float64: "float64",
    pl.String: "string",
}


def session_range(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The first and last session of the run's partition range (a single run may cover years)."""
    rng = context.partition_key_range
    return dt.date.fromisoformat(rng.start), dt.date.fromisoformat(rng.end)


def column_schema(model: type[models.Base]) -> dg.TableSchema:
    cols = []
    for name, dtype in tables.polars_schema(model).items():
        col = model.__table__.columns[name]
        cols.append(
            dg.TableColumn(
                name=name,
                type=_DTYPE_NAMES.get(type(dtype), str(dtype)),
                description=col.comment,
                constraints=dg.TableColumnConstraints(nullable=bool(col.nullable)),
            )
        )
    return dg.TableSchema(columns=cols)


def definition_metadata(model: type[models.Base]) -> dict:
    """Static metadata of an asset backed by one table: its column schema and table name.

    Kept on the definition, not on every materialization: a range run records one
    materialization per partition, and repeating the schema in each would bloat the event log.
    """
    return {COLUMN_SCHEMA: column_schema(model), "table": model.__tablename__}


def session_asset(model: type[models.Base], *, group: str, kinds=("sql", "polars"), **kwargs):
    """``@dg.asset`` for a table-backed asset partitioned by session with a single-run backfill
    policy (a range is one vectorized run): the shape every warehouse asset shares."""
    return dg.asset(
        partitions_def=trading_days_partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=group,
        kinds=set(kinds),
        metadata=definition_metadata(model),
        **kwargs,
    )


def table_metadata(rows: int, **extra) -> dict:
    """Per-materialization metadata: rows written for the run's range, plus extras."""
    return {ROW_COUNT: rows, **extra}


def counts_markdown(counts: dict[str, int], key: str = "reason") -> dg.MetadataValue:
    if not counts:
        return dg.MetadataValue.md("none")
    lines = [f"| {key} | rows |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]
    return dg.MetadataValue.md("\n".join(lines))


def value_counts(df: pl.DataFrame, column: str) -> dict[str, int]:
    if df.is_empty():
        return {}
    vc = df.group_by(column).len()
    return {str(k): int(v) for k, v in vc.iter_rows()}


def as_failure(err: QGError) -> dg.Failure:
    """A user error as a Dagster failure whose description is the one-line message."""
    return dg.Failure(description=str(err), allow_retries=False)


def json_dumps(obj) -> str:
    return json.dumps(obj, default=str, ensure_ascii=False)
