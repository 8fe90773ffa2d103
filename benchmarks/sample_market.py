"""Benchmark: generate every raw partitioned table of the sample market over a long range.

    python -m benchmarks.sample_market --symbols 1800 --sessions 2520

Generates the last ``--sessions`` XTAI sessions up to ``--end`` through ``iter_tables`` (blocks
of ``--block`` sessions), counts the rows without keeping them, and prints one JSON line: wall
seconds (world simulation included), rows in total and by table, peak RSS, symbols, sessions.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.sample import SampleMarket, SampleMarketConfig


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1800)
    parser.add_argument("--sessions", type=int, default=2520)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end", default="2025-12-31")
    parser.add_argument("--block", type=int, default=250)
    args = parser.parse_args(argv)

    days = calendar.last_sessions(args.sessions, args.end)
    market = SampleMarket(SampleMarketConfig(seed=args.seed, n_symbols=args.symbols))
    started = time.perf_counter()
    rows: dict[str, int] = {}
    for block in market.iter_tables(days[0], days[-1], block_sessions=args.block):
        for name, frame in block.items():
            rows[name] = rows.get(name, 0) + frame.height
    seconds = time.perf_counter() - started
    result = {
        "seconds": round(seconds, 2),
        "rows": sum(rows.values()),
        "rows_by_table": rows,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "symbols": args.symbols,
        "sessions": len(days),
        "start": days[0].isoformat(),
        "end": days[-1].isoformat(),
        "block_sessions": args.block,
        "seed": args.seed,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
