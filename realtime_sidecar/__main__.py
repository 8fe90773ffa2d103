"""``python -m realtime_sidecar`` (also ``quant-genesis sidecar``) — run the intraday engine for
one session.

    python -m realtime_sidecar --feed replay --session 2024-05-02 --speed 60
    python -m realtime_sidecar --feed shioaji --symbol-list 2330,2317,2454 --proxy-feed polygon
    python -m realtime_sidecar paths

The replay feed needs no keys: it plays a recorded session (``--file``) or the sample market's
ticks for the session. Live feeds read their keys from the environment (SJ_API_KEY / SJ_SEC_KEY,
POLYGON_API_KEY). Nothing here ever sends an order.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from quant_genesis_dagster.errors import QGError
from quant_genesis_dagster.settings import Settings


def _speed(text: str) -> float | None:
    if text.lower() in ("max", "0", "inf"):
        return None
    try:
        value = float(text)
    except ValueError:
        msg = f"--speed {text!r}: a factor (1 = real time) or max"
        raise argparse.ArgumentTypeError(msg) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--speed {text!r}: use a positive factor or max")
    return value


def parser(prog: str = "python -m realtime_sidecar") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Quant Genesis intraday engine: RCNC, intraday signals and end-of-day "
        "aggregates for one session (SPEC §7).",
    )
    sub = p.add_subparsers(dest="command")
    sub.add_parser("paths", help="print where the sidecar keeps its state under QG_HOME")
    p.add_argument("--feed", choices=("replay", "shioaji"), default="replay",
                   help="tick source (default: replay, no keys needed)")  # fmt: skip
    p.add_argument("--session", default=None,
                   help="YYYY-MM-DD (default: today in Taipei for a live feed, the last session "
                   "before today for a replay)")  # fmt: skip
    p.add_argument("--speed", type=_speed, default=None,
                   help="replay speed: 1 = real time, 60 = a minute per second, max = as fast as "
                   "possible (default)")  # fmt: skip
    p.add_argument("--file", default=None,
                   help="replay a recorded session (.parquet/.arrow/.csv in TICK_SCHEMA columns) "
                   "instead of the sample market")  # fmt: skip
    p.add_argument(
        "--symbols",
        type=int,
        default=300,
        help="sample market universe size (as the daily job's data_source; default 300)",
    )
    p.add_argument("--seed", type=int, default=7, help="sample market seed (default 7)")
    p.add_argument(
        "--symbol-list",
        default=None,
        help="comma-separated symbols (live feeds; default: the warehouse's universe)",
    )
    p.add_argument("--proxy-feed", choices=("none", "polygon"), default="none",
                   help="cross-market proxies for the risk-off signal (live)")  # fmt: skip
    p.add_argument("--proxies", default="TSM,SOXX,QQQ", help="US proxy symbols (Polygon)")
    p.add_argument(
        "--big-lots",
        action="append",
        default=[],
        metavar="SYMBOL=LOTS",
        help="big-order size for one symbol (repeatable; default 50 lots for all)",
    )
    p.add_argument("--default-big-lots", type=int, default=None, metavar="LOTS",
                   help="big-order size for every other symbol")  # fmt: skip
    p.add_argument(
        "--net-mode",
        choices=("big", "all"),
        default="big",
        help="RCNC net flow from big orders only (default) or every signed tick",
    )
    p.add_argument("--status-port", type=int, default=9108,
                   help="Prometheus /metrics and /health port on --host (0: any free port, "
                   "-1: off; default 9108)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="status endpoint address (default local)")
    p.add_argument("--journal-dir", default=None, help="default: QG_HOME/sidecar/journal")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="set an existing journal of the session aside and start over",
    )
    p.add_argument(
        "--fsync",
        action="store_true",
        help="fsync the journal after every batch (survives a power cut, slower)",
    )
    p.add_argument("--dagster-url", default=None,
                   help="Dagster webserver to report the close to (e.g. http://127.0.0.1:3000; "
                   "default: the Dagster instance of DAGSTER_HOME / QG_HOME)")  # fmt: skip
    p.add_argument(
        "--no-report",
        action="store_true",
        help="write the aggregates but do not report them to Dagster",
    )
    p.add_argument(
        "--no-warehouse",
        action="store_true",
        help="keep signals and aggregates out of the warehouse (a dry run)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print each signal")
    p.add_argument(
        "--summary-json",
        default=None,
        metavar="PATH",
        help="also write what the run did as JSON (counts, gaps, the report)",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m realtime_sidecar") -> int:
    args = parser(prog).parse_args(argv)
    settings = Settings.from_env()
    if args.command == "paths":
        print(f"journal: {settings.home / 'sidecar' / 'journal'}")
        return 0
    from realtime_sidecar.app import run_from_args

    try:
        return run_from_args(args, settings)
    except QGError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
