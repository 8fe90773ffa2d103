"""``python -m realtime_sidecar`` — the sidecar's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from quant_genesis_dagster.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m realtime_sidecar",
        description="Quant Genesis intraday engine (asyncio sidecar, SPEC §7).",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("paths", help="print where the sidecar keeps its state under QG_HOME")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "paths":
        print(f"journal: {settings.home / 'sidecar' / 'journal'}")
        return 0
    print(
        "error: the intraday engine (feeds, RCNC, signals, journal) is not built yet — it is the "
        "'Realtime sidecar' issue; run `python -m realtime_sidecar paths` to see its QG_HOME folder",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
