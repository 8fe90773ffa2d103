"""Warehouse I/O throughput: write, rewrite (replace an existing slice) and read rows/s for a
raw_broker_flows-shaped frame (default 1M rows), on SQLite and optionally PostgreSQL — through
``raw_broker_flows`` (stored packed, one row per session) and, for comparison, through a scratch
table of the same columns stored row by row (``bench_broker_rows``, what raw_broker_flows was
before migration 0005, and how every other table is stored).

    python -m benchmarks.warehouse_io [--rows 1000000] [--url postgresql+psycopg2://.../scratch]

``--url`` should be a scratch database: the benchmark writes sessions in 1990 (before any real
history) into raw_broker_flows and deletes them again at the end, and creates and drops
bench_broker_rows. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, Table
from sqlalchemy.orm import DeclarativeBase

from quant_genesis_dagster.domain.warehouse import db, io, models


class _Scratch(DeclarativeBase):
    metadata = MetaData()


class BenchBrokerRows(_Scratch):
    """raw_broker_flows' columns, one database row per branch row (surrogate id + index)."""

    __tablename__ = "bench_broker_rows"
    __table__ = Table(
        __tablename__,
        _Scratch.metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        *(c._copy() for c in models.RawBrokerFlows.__table__.columns if c.name != "id"),
        Index("ix_bench_broker_rows_session_symbol", "session", "symbol"),
    )


_START = dt.date(1990, 1, 1)


def make_frame(rows: int, seed: int = 0) -> pl.DataFrame:
    """``rows`` broker-branch rows over 250 sessions, 40 branches per symbol, some nulls."""
    rng = np.random.default_rng(seed)
    idx = np.arange(rows)
    buy = rng.integers(0, 500, rows) * 1000
    price = np.round(rng.uniform(10, 1000, rows), 2)
    frame = pl.DataFrame(
        {
            "day": idx // max(1, rows // 250),
            "symbol": (1000 + (idx // 40) % 2000).astype(str),
            "broker_id": np.char.add("B", (idx % 40).astype(str)),
            "buy_shares": buy,
            "sell_shares": rng.integers(0, 500, rows) * 1000,
            "avg_buy_price": np.where(buy > 0, price, np.nan),  # NaN is stored as null
            "avg_sell_price": price + 0.5,
        }
    )
    session = pl.lit(_START) + pl.duration(days=pl.col("day"))
    return frame.select(session.alias("session"), pl.exclude("day"))


def measure(url: str, frame: pl.DataFrame, home: Path) -> list[dict[str, object]]:
    engine = db.open_warehouse(url, home)
    start, end = frame["session"].min(), frame["session"].max()
    out = []
    expected = frame.sort(["session", "symbol"], maintain_order=True).with_columns(
        pl.col(pl.Float64).fill_nan(None)  # NaN is stored as null
    )
    try:
        _Scratch.metadata.create_all(engine)
        for model, storage in ((models.RawBrokerFlows, "packed"), (BenchBrokerRows, "rows")):
            t0 = time.perf_counter()
            io.replace_slice(engine, model, frame, start, end)
            t1 = time.perf_counter()
            io.replace_slice(engine, model, frame, start, end)
            t2 = time.perf_counter()
            back = io.read_slice(engine, model, start, end)
            t3 = time.perf_counter()
            assert back.equals(expected), f"{model.__tablename__}: rows read back differ"
            io.replace_slice(engine, model, frame.clear(), start, end)
            n = frame.height
            out.append(
                {
                    "backend": engine.dialect.name,
                    "table": model.__tablename__,
                    "storage": storage,
                    "rows": n,
                    "write_rows_per_s": round(n / (t1 - t0)),
                    "rewrite_rows_per_s": round(n / (t2 - t1)),
                    "read_rows_per_s": round(n / (t3 - t2)),
                    "write_s": round(t1 - t0, 3),
                    "rewrite_s": round(t2 - t1, 3),
                    "read_s": round(t3 - t2, 3),
                }
            )
        return out
    finally:
        _Scratch.metadata.drop_all(engine)
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", action="append", default=[], help="also measure this database")
    args = parser.parse_args(argv)
    frame = make_frame(args.rows)
    results = []
    with tempfile.TemporaryDirectory(prefix="qg-bench-") as tmp:
        for url in [None, *args.url]:
            results.extend(measure(db.database_url(url, Path(tmp)), frame, Path(tmp)))
    print(json.dumps({"benchmark": "warehouse_io", "results": results}, indent=2))


if __name__ == "__main__":
    main()
