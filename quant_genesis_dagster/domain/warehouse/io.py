"""Bulk, transactional reads and writes between polars frames and warehouse tables.

Writes replace a whole slice — every row whose ``session`` lies in ``[start, end]`` (optionally
narrowed by ``where``) — in one transaction: delete, then bulk insert. Writing the same slice
twice leaves the same rows; a failure half-way leaves the previous rows. PostgreSQL inserts go
through ``COPY ... FROM STDIN`` (CSV written by polars), SQLite through chunked ``executemany``.

Reads return frames conforming to ``tables.polars_schema(model)``: ``pl.Date`` dates,
``pl.Datetime("us", "UTC")`` timestamps and ``pl.Boolean`` flags on both backends, sorted by
``(session, symbol)`` where the table has them (ties in insertion order). PostgreSQL reads use
``COPY (SELECT ...) TO STDOUT`` with dates/timestamps/booleans sent as integers, SQLite reads a
DBAPI cursor; neither builds a Python object per value except SQLite's driver itself.

Float NaN is stored as null on both backends (SQLite cannot store NaN): missing is missing.

Packed tables (``models.PACKED_TABLES``, e.g. ``raw_broker_flows``) are read and written with
their row-shape model like any other table, with the same slice semantics; underneath, each
session's rows are one row of the packed table holding them as a Parquet payload (LZ4). Moving
a session of ~30k branch rows is then one value, not 250k, through the driver: on SQLite 1.8M
rows/s written and 1.4M read instead of 0.38M / 0.32M row by row, on PostgreSQL 0.94M / 1.4M
instead of 0.25M / 0.51M (``benchmarks/warehouse_io.py``, 1M rows).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence

import polars as pl
from sqlalchemy import (
    BigInteger,
    Engine,
    Integer,
    Select,
    Table,
    and_,
    cast,
    extract,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from quant_genesis_dagster.domain import tables
from quant_genesis_dagster.domain.warehouse import models
from quant_genesis_dagster.domain.warehouse.db import SQLITE_BEGIN
from quant_genesis_dagster.errors import QGError

Model = type[models.Base] | type[models.RowShapes]
Where = Mapping[str, Sequence[object]]

# Rows per COPY / executemany batch: bounds the CSV buffer / tuple list held in memory.
_CHUNK_ROWS = 250_000
# Rows per fetch on SQLite reads.
_FETCH_ROWS = 250_000
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S%.6f"  # SQLAlchemy's SQLite DATETIME storage format
_CSV_DATETIME = "%Y-%m-%d %H:%M:%S%.6f%:z"
_PACKED_COMPRESSION = "lz4"  # decodes ~3x faster than zstd for ~20% more bytes
_PACKED_SESSIONS_PER_INSERT = 100  # bounds the payload bytes held at once (~0.1 GB at 30k rows)


# --------------------------------------------------------------------------------------------
# writes
# --------------------------------------------------------------------------------------------


def replace_slice(
    engine: Engine,
    model: Model,
    df: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    *,
    where: Where | None = None,
) -> int:
    """Replace the rows of ``model`` with ``session`` in ``[start, end]`` (and ``where``) by ``df``.

    ``where`` maps column → allowed values and narrows both the delete and what ``df`` may hold
    (e.g. ``{"table_name": ["raw_daily_prices"]}`` for the quarantine rows of one table). Every
    row of ``df`` must lie inside the slice, else ``QGError`` and nothing is written.
    Returns the number of rows inserted.
    """
    return replace_slices(engine, start, end, [(model, df, where)])[0]


def replace_slices(
    engine: Engine,
    start: dt.date,
    end: dt.date,
    writes: Sequence[tuple[Model, pl.DataFrame, Where | None]],
) -> list[int]:
    """``replace_slice`` for several tables at once, all in ONE transaction.

    For outputs that must change together (cleaned rows and their quarantine rows): either every
    table shows the new slice or none does. Every frame is validated before anything is written.
    Returns the rows inserted per entry of ``writes``.
    """
    planned = []
    for model, df, where in writes:
        table = _table(model)
        if "session" not in table.c:
            raise QGError(f"{table.name}: table has no session column; write it with replace_all")
        if start > end:
            raise QGError(f"{table.name}: slice start {start} is after its end {end}")
        checked = _check_where(table, where)
        frame = _prepare(df, model)
        _check_in_slice(frame, table.name, start, end, checked)
        rows = frame.height
        parts: Iterable[pl.DataFrame] = [frame]
        if (packed := _packed_table(model)) is not None:
            if checked:
                raise QGError(
                    f"{table.name}: a packed table is replaced by whole sessions (no where=)"
                )
            table, parts = packed, _pack(frame)
        condition = and_(table.c.session.between(start, end), *_in_conditions(table, checked))
        planned.append((table, parts, condition, rows))
    with _write_transaction(engine) as conn:
        for table, parts, condition, _ in planned:
            conn.execute(table.delete().where(condition))
            for part in parts:
                _insert(conn, table, part)
    return [rows for *_, rows in planned]


def append_rows(engine: Engine, model: Model, df: pl.DataFrame) -> int:
    """Insert ``df``'s rows in one transaction (no delete): for rows that arrive during a
    session, such as the sidecar's signals. A row whose key is already stored is an error and
    nothing is written. Returns the number of rows inserted."""
    table = _table(model)
    _not_packed(model, "append_rows")
    frame = _prepare(df, model)
    with _write_transaction(engine) as conn:
        _insert(conn, table, frame)
    return frame.height


def replace_all(engine: Engine, model: Model, df: pl.DataFrame) -> int:
    """Replace the whole table by ``df`` (for unpartitioned tables such as raw_stock_info)."""
    table = _table(model)
    _not_packed(model, "replace_all")
    frame = _prepare(df, model)
    with _write_transaction(engine) as conn:
        conn.execute(table.delete())
        _insert(conn, table, frame)
    return frame.height


@contextlib.contextmanager
def _write_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        # SQLite: take the write lock at BEGIN so concurrent writers queue instead of failing.
        conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with conn.begin():
            yield conn


def _prepare(df: pl.DataFrame, model: Model) -> pl.DataFrame:
    frame = tables.conform(df, model)
    floats = [c for c, t in frame.schema.items() if t == pl.Float64]
    if floats:
        frame = frame.with_columns(pl.col(floats).fill_nan(None))
    table = _table(model)
    required = [c.name for c in table.columns if not c.nullable and c.name in frame.columns]
    nulls = frame.select(pl.col(required).null_count()).row(0) if required else ()
    for col, count in zip(required, nulls, strict=True):
        if count:
            row = frame.with_row_index("_row").filter(pl.col(col).is_null())["_row"][0]
            raise QGError(
                f"{table.name}: row {row} has no value in required column {col!r}; "
                "nothing written — fix or drop that row"
            )
    return frame


def _check_where(table: Table, where: Where | None) -> dict[str, list[object]]:
    checked: dict[str, list[object]] = {}
    for col, values in (where or {}).items():
        if col not in table.c or col == "id":
            raise QGError(f"{table.name}: where= names unknown column {col!r}")
        if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
            raise QGError(f"{table.name}: where={{{col!r}: ...}} must be a list of values")
        checked[col] = list(values)
    return checked


def _check_in_slice(
    frame: pl.DataFrame, name: str, start: dt.date, end: dt.date, where: dict[str, list[object]]
) -> None:
    inside = pl.col("session").is_between(start, end)
    for col, values in where.items():
        inside = inside & pl.col(col).is_in(pl.Series(values, dtype=frame.schema[col]))
    bad = frame.with_row_index("_row").filter(~inside.fill_null(False)).head(1)
    if bad.height:
        row = bad.row(0, named=True)
        keys = [
            "session",
            *(c for c in ("symbol", *where) if c in frame.columns and c != "session"),
        ]
        shown = ", ".join(f"{k}={row[k]}" for k in dict.fromkeys(keys))
        scope = "".join(f", {c} in {_brief(v)}" for c, v in where.items())
        msg = (
            f"{name}: row {row['_row']} ({shown}) is outside the slice session "
            f"{start}..{end}{scope}; nothing written — pass only that slice's rows"
        )
        raise QGError(" ".join(msg.splitlines()))


def _brief(values: list[object], limit: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def _insert(conn: Connection, table: Table, frame: pl.DataFrame) -> None:
    if frame.height == 0:
        return
    prep = conn.dialect.identifier_preparer
    cols = ", ".join(prep.quote(c) for c in frame.columns)
    target = prep.format_table(table)
    dbapi = conn.dialect.loaded_dbapi
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        if conn.dialect.name == "postgresql" and pl.Binary in frame.schema.dtypes():
            # packed rows: few and large; CSV has no binary type, the driver sends bytea as is
            conn.execute(table.insert(), frame.to_dicts())
        elif conn.dialect.name == "postgresql":
            sql = f"COPY {target} ({cols}) FROM STDIN WITH (FORMAT csv)"
            for chunk in frame.iter_slices(_CHUNK_ROWS):
                buf = io.BytesIO()
                # Strings always quoted: NULL is the unquoted empty field, "" an empty string,
                # and no text value can be read as the \. end-of-data marker.
                chunk.write_csv(
                    buf, include_header=False, quote_style="non_numeric",
                    datetime_format=_CSV_DATETIME,
                )  # fmt: skip
                buf.seek(0)
                cursor.copy_expert(sql, buf)
        else:
            sql = f"INSERT INTO {target} ({cols}) VALUES ({', '.join('?' * frame.width)})"
            sqlite_frame = frame.with_columns(_to_sqlite(frame.schema))
            for chunk in sqlite_frame.iter_slices(_CHUNK_ROWS):
                cursor.executemany(sql, chunk.iter_rows())
    except (dbapi.IntegrityError, dbapi.DataError) as err:
        lines = str(err).strip().splitlines()
        reason = lines[0] if lines else type(err).__name__
        # psycopg2 names the offending key in the DETAIL part, e.g. "Key (session, symbol)=...".
        detail = getattr(getattr(err, "diag", None), "message_detail", None)
        if detail:
            reason = f"{reason}: {' '.join(detail.splitlines())}"
        raise QGError(
            f"{table.name}: the database rejected the rows ({reason}); nothing written"
        ) from err
    finally:
        cursor.close()


def _to_sqlite(schema: pl.Schema) -> list[pl.Expr]:
    """Store values exactly as SQLAlchemy's SQLite types do, so ORM readers see the same data."""
    exprs = []
    for col, dtype in schema.items():
        if dtype == pl.Date:
            exprs.append(pl.col(col).dt.strftime("%Y-%m-%d"))
        elif isinstance(dtype, pl.Datetime):
            exprs.append(pl.col(col).dt.convert_time_zone("UTC").dt.strftime(_SQLITE_DATETIME))
        elif dtype == pl.Boolean:
            exprs.append(pl.col(col).cast(pl.Int64))
    return exprs


# --------------------------------------------------------------------------------------------
# reads
# --------------------------------------------------------------------------------------------


def read_slice(
    engine: Engine,
    model: Model,
    start: dt.date | None,
    end: dt.date | None,
    *,
    columns: Sequence[str] | None = None,
    where: Where | None = None,
    symbols: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Rows with ``session`` in ``[start, end]`` (None = unbounded), optionally only ``columns``,
    rows matching ``where`` (column → values) and ``symbols``."""
    table = _table(model)
    schema = _select_schema(model, columns)
    conditions = _conditions(table, start, end, where, symbols)
    if (packed := _packed_table(model)) is not None:
        filters = _check_where(table, where)
        if symbols is not None:
            filters["symbol"] = list(symbols)
        return _read_packed(engine, model, packed, start, end, schema, filters)
    stmt = select(*(table.c[c] for c in schema)).where(*conditions).order_by(*_order(table))
    return _fetch(engine, stmt, schema)


def read_all(engine: Engine, model: Model, *, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """The whole table."""
    return read_slice(engine, model, None, None, columns=columns)


def read_latest_before(
    engine: Engine,
    model: Model,
    before: dt.date,
    *,
    columns: Sequence[str] | None = None,
    since: dt.date | None = None,
    symbols: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Per symbol, its rows at the greatest ``session < before`` (``since``: ignore older rows).

    All rows of that session are returned (a raw table can hold several per symbol and
    session). Tables without a symbol column return the rows of their latest session.
    """
    table = _table(model)
    _not_packed(model, "read_latest_before")
    schema = _select_schema(model, columns)
    if "session" not in table.c:
        raise QGError(f"{table.name}: table has no session column")
    conditions = _conditions(table, since, None, None, symbols)
    conditions.append(table.c.session < before)
    # Each symbol's latest session first (a GROUP BY over the (session, symbol) index), then
    # its rows by key: the cost follows the index and the rows returned, not the table's
    # history (a window rank over every row took 25 s on ten years of cleaned prices).
    group = [table.c.symbol] if "symbol" in table.c else []
    latest = (
        select(*group, func.max(table.c.session).label("qg_latest"))
        .where(*conditions)
        .group_by(*group)
        .subquery("latest")
    )
    on = [
        table.c.session == latest.c.qg_latest,
        *(table.c[c.name] == latest.c[c.name] for c in group),
    ]
    stmt = (
        select(*(table.c[c] for c in schema))
        .select_from(table.join(latest, and_(*on)))
        .where(*conditions)
        .order_by(*_order(table))
    )
    return _fetch(engine, stmt, schema)


def read_market_columns(
    engine: Engine, model: Model, start: dt.date | None, end: dt.date | None, columns: Sequence[str]
) -> pl.DataFrame:
    """One row per session with ``columns`` — for market-wide values a panel table repeats on
    every symbol's row (TAIEX close, VIXTWN): the smallest non-null value of the session's rows
    (they are all equal), computed by the database instead of shipping every row."""
    table = _table(model)
    _not_packed(model, "read_market_columns")
    schema = _select_schema(model, ["session", *columns])
    conditions = _conditions(table, start, end, None, None)
    stmt = (
        select(table.c.session, *(func.min(table.c[c]).label(c) for c in schema if c != "session"))
        .where(*conditions)
        .group_by(table.c.session)
        .order_by(table.c.session)
    )
    return _fetch(engine, stmt, schema)


def count_rows(
    engine: Engine,
    model: Model,
    start: dt.date | None = None,
    end: dt.date | None = None,
    *,
    group_by: str | None = None,
) -> int | dict[object, int]:
    """Number of rows in ``[start, end]``; with ``group_by``, a dict value → count."""
    table = _table(model)
    conditions = _conditions(table, start, end, None, None)
    if (packed := _packed_table(model)) is not None:
        if group_by not in (None, "session"):
            counts = read_slice(engine, model, start, end)[group_by].value_counts(sort=False)
            return dict(sorted(counts.iter_rows(), key=lambda kv: (kv[0] is None, kv[0])))
        table, conditions = packed, _conditions(packed, start, end, None, None)
        with engine.connect() as conn:
            if group_by is None:
                stmt = select(func.coalesce(func.sum(table.c.n_rows), 0)).where(*conditions)
                return int(conn.execute(stmt).scalar_one())
            stmt = select(table.c.session, table.c.n_rows).where(*conditions)
            return {key: int(n) for key, n in conn.execute(stmt.order_by(table.c.session))}
    with engine.connect() as conn:
        if group_by is None:
            return int(
                conn.execute(
                    select(func.count()).select_from(table).where(*conditions)
                ).scalar_one()
            )
        if group_by not in table.c:
            raise QGError(f"{table.name}: group_by names unknown column {group_by!r}")
        col = table.c[group_by]
        stmt = select(col, func.count()).where(*conditions).group_by(col).order_by(col)
        return {key: int(n) for key, n in conn.execute(stmt)}


def slice_hash(
    engine: Engine, model: Model, start: dt.date | None = None, end: dt.date | None = None
) -> str:
    """SHA-256 of the slice's data (surrogate ``id`` excluded), independent of row order.

    Equal on both backends for equal data: for idempotency checks and asset metadata.
    """
    frame = read_slice(engine, model, start, end)
    frame = frame.sort(frame.columns, nulls_last=True)
    digest = hashlib.sha256(_table(model).name.encode())
    digest.update(frame.write_csv(datetime_format=_CSV_DATETIME).encode())
    return digest.hexdigest()


def _select_schema(model: Model, columns: Sequence[str] | None) -> pl.Schema:
    schema = tables.polars_schema(model)
    if columns is None:
        return schema
    unknown = [c for c in columns if c not in schema]
    if unknown:
        raise QGError(
            f"{model.__tablename__}: unknown column(s) {', '.join(unknown)}; "
            f"known: {', '.join(schema)}"
        )
    return pl.Schema({c: schema[c] for c in dict.fromkeys(columns)})


def _conditions(
    table: Table,
    start: dt.date | None,
    end: dt.date | None,
    where: Where | None,
    symbols: Sequence[str] | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if start is not None or end is not None:
        if "session" not in table.c:
            raise QGError(f"{table.name}: table has no session column; read it with read_all")
        if start is not None:
            conditions.append(table.c.session >= start)
        if end is not None:
            conditions.append(table.c.session <= end)
    checked = _check_where(table, where)
    if symbols is not None:
        if "symbol" not in table.c:
            raise QGError(f"{table.name}: table has no symbol column")
        checked["symbol"] = list(symbols)
    conditions.extend(_in_conditions(table, checked))
    return conditions


def _in_conditions(table: Table, where: Mapping[str, list[object]]) -> list[ColumnElement[bool]]:
    out = []
    for col, values in where.items():
        # SQLite stores timestamps as naive UTC text: compare in UTC.
        vals = [
            v.astimezone(dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo else v for v in values
        ]
        out.append(table.c[col].in_(vals))
    return out


def _order(table: Table) -> list:
    """Sort key: session, symbol, then the primary key (insertion order for surrogate ids)."""
    names = [c for c in ("session", "symbol") if c in table.c]
    names += [c.name for c in table.primary_key.columns if c.name not in names]
    return [table.c[c] for c in names]


def _fetch(engine: Engine, stmt: Select, schema: pl.Schema) -> pl.DataFrame:
    """Run ``stmt`` (selecting exactly ``schema``'s columns) and build the frame column-wise."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            frame = _fetch_postgres(conn, stmt, schema)
        else:
            frame = _fetch_sqlite(conn, stmt, schema)
    sort_by = [c for c in ("session", "symbol") if c in frame.columns]
    if sort_by:
        # Byte order for text, identical on both backends whatever the database collation;
        # stable, so the SQL order (by id) survives within ties.
        frame = frame.sort(sort_by, nulls_last=True, maintain_order=True)
    return frame


def _fetch_postgres(conn: Connection, stmt: Select, schema: pl.Schema) -> pl.DataFrame:
    wire: dict[str, pl.DataType] = {}
    exprs = []
    for col, (name, dtype) in zip(stmt.selected_columns, schema.items(), strict=True):
        # Send dates, timestamps and booleans as integers: exact, and no text parsing.
        if dtype == pl.Date:
            days = type_coerce(col, Integer) - literal_column("DATE '1970-01-01'", Integer)
            expr, wire[name] = days, pl.Int32()
        elif isinstance(dtype, pl.Datetime):
            micros = func.round(extract("epoch", col) * literal_column("1000000"))
            expr, wire[name] = cast(micros, BigInteger), pl.Int64()
        elif dtype == pl.Boolean:
            expr, wire[name] = cast(col, Integer), pl.Int8()
        else:
            expr, wire[name] = col, dtype
        exprs.append(expr.label(name))
    converted = stmt.with_only_columns(*exprs)
    sql = str(converted.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw = conn.connection.dbapi_connection
    assert raw is not None
    buf = io.BytesIO()
    cursor = raw.cursor()
    try:
        cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", buf)
    finally:
        cursor.close()
    if buf.tell() == 0:
        return pl.DataFrame(schema=schema)
    buf.seek(0)
    frame = pl.read_csv(buf, has_header=False, schema=pl.Schema(wire), quote_char='"')
    return frame.with_columns(_from_wire(schema))


def _fetch_sqlite(conn: Connection, stmt: Select, schema: pl.Schema) -> pl.DataFrame:
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    wire = pl.Schema(
        {
            c: pl.String() if t == pl.Date or isinstance(t, pl.Datetime)
            else pl.Int8() if t == pl.Boolean else t
            for c, t in schema.items()
        }
    )  # fmt: skip
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    parts = []
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(_FETCH_ROWS):
            parts.append(pl.DataFrame(rows, schema=wire, orient="row"))
    finally:
        cursor.close()
    frame = pl.concat(parts) if parts else pl.DataFrame(schema=wire)
    return frame.with_columns(_from_wire(schema, sqlite=True))


def _from_wire(schema: pl.Schema, *, sqlite: bool = False) -> list[pl.Expr]:
    exprs = []
    for col, dtype in schema.items():
        if dtype == pl.Date:
            exprs.append(
                pl.col(col).str.to_date("%Y-%m-%d") if sqlite else pl.col(col).cast(pl.Date)
            )
        elif isinstance(dtype, pl.Datetime):
            if sqlite:
                parsed = pl.col(col).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")
                exprs.append(parsed.dt.replace_time_zone("UTC"))
            else:
                exprs.append(pl.col(col).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
        elif dtype == pl.Boolean:
            exprs.append(pl.col(col).cast(pl.Boolean))
    return exprs


# --------------------------------------------------------------------------------------------
# packed tables
# --------------------------------------------------------------------------------------------


def _packed_table(model: Model) -> Table | None:
    packed = models.PACKED_TABLES.get(model)  # type: ignore[call-overload]
    return None if packed is None else _table(packed)


def _not_packed(model: Model, what: str) -> None:
    if model in models.PACKED_TABLES:
        raise QGError(f"{model.__tablename__}: {what} is not available for a packed table")


def _pack(frame: pl.DataFrame) -> Iterator[pl.DataFrame]:
    """Packed rows, a few sessions per frame: per session its row count and its rows (all
    columns but session, in order) as a Parquet file. Sessions are zero-copy slices of the
    (stably) session-sorted frame, and only one frame of payloads exists at a time."""
    if not frame["session"].is_sorted():
        frame = frame.sort("session", maintain_order=True)  # stable: row order kept per session
    runs = frame.group_by("session", maintain_order=True).len()
    schema = {"session": pl.Date(), "n_rows": pl.Int32(), "payload": pl.Binary()}
    offset = 0
    for chunk in runs.iter_slices(_PACKED_SESSIONS_PER_INSERT):
        payloads = []
        for n in chunk["len"]:
            buf = io.BytesIO()
            part = frame.slice(offset, n).drop("session")
            part.write_parquet(buf, compression=_PACKED_COMPRESSION, statistics=False)
            payloads.append(buf.getvalue())
            offset += n
        yield pl.DataFrame(
            {"session": chunk["session"], "n_rows": chunk["len"], "payload": payloads},
            schema=schema,
        )


def _read_packed(
    engine: Engine,
    model: Model,
    packed: Table,
    start: dt.date | None,
    end: dt.date | None,
    schema: pl.Schema,
    filters: Mapping[str, list[object]],
) -> pl.DataFrame:
    """Unpack the sessions of ``[start, end]``, then keep the rows whose ``filters`` columns
    hold one of the listed values and pick ``schema``'s columns."""
    full = tables.polars_schema(model)
    stmt = (
        select(packed.c.session, packed.c.payload)
        .where(*_conditions(packed, start, end, None, None))
        .order_by(packed.c.session)
    )
    parts = []
    with engine.connect() as conn:
        for session, payload in conn.execution_options(yield_per=64).execute(stmt):
            part = pl.read_parquet(io.BytesIO(bytes(payload)))
            parts.append(part.with_columns(session=pl.lit(session, pl.Date())))
    frame = pl.concat(parts).select(list(full)) if parts else pl.DataFrame(schema=full)
    keep = pl.lit(True)
    for col, values in filters.items():
        keep = keep & pl.col(col).is_in(pl.Series(values, dtype=full[col]))
    frame = frame.filter(keep).select(list(schema))
    sort_by = [c for c in ("session", "symbol") if c in frame.columns]
    return frame.sort(sort_by, nulls_last=True, maintain_order=True) if sort_by else frame


def _table(model: Model) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table
