"""``quant-genesis`` — the command-line entry point.

    quant-genesis demo [--symbols N] [--sessions N] [--end DATE] [--seed S]
    quant-genesis up   [--port P]

``demo`` runs the main Dagster job on the embedded sample market over a window of sessions, in
the persistent embedded Dagster instance under ``QG_HOME`` (so ``up`` shows the runs), with a
progress display, then prints a summary. User errors print one line (no traceback) and exit 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from quant_genesis_dagster.errors import QGError
from quant_genesis_dagster.settings import (
    Settings,
    apply_dagster_env_defaults,
    prepare_dagster_home,
)

DEFAULT_SYMBOLS = 300
# Two years: fundamentals need four published quarters before TTM values exist, so the second
# year of the window shows a complete panel.
DEFAULT_SESSIONS = 500
DEFAULT_SEED = 7


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quant-genesis", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job on the embedded sample market")
    demo.add_argument("--symbols", type=int, default=DEFAULT_SYMBOLS, help="universe size")
    demo.add_argument("--sessions", type=int, default=DEFAULT_SESSIONS, help="window length")
    demo.add_argument(
        "--end",
        default=None,
        help="last session of the window (YYYY-MM-DD; default: the last session before today "
        "in Asia/Taipei)",
    )
    demo.add_argument("--seed", type=int, default=DEFAULT_SEED, help="sample market seed")
    up = sub.add_parser("up", help="Dagster UI (webserver + daemon) on 127.0.0.1")
    up.add_argument("--port", type=int, default=3000)
    up.add_argument("--host", default="127.0.0.1")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "up":
            return _up(args)
    except QGError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


def _embedded_instance_env(settings: Settings) -> None:
    os.environ["QG_HOME"] = str(settings.home)
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(settings))
    apply_dagster_env_defaults()


def demo_window(sessions: int, end: str | None, today: dt.date | None = None) -> list[dt.date]:
    """The ``sessions`` XTAI sessions ending at ``end`` (default: before today, Taipei)."""
    from quant_genesis_dagster.domain import calendar

    if sessions < 1:
        raise QGError(f"--sessions must be >= 1 (got {sessions})")
    if end is None:
        today = today or dt.datetime.now(ZoneInfo(calendar.TIMEZONE)).date()
        last = min(today - dt.timedelta(days=1), calendar.last_known_session())
    else:
        last = calendar.parse_session(end)
    return calendar.last_sessions(sessions, last)


def _demo(args: argparse.Namespace) -> int:
    if args.symbols < 10:
        raise QGError(f"--symbols must be >= 10 (got {args.symbols})")
    settings = Settings.from_env()
    _embedded_instance_env(settings)
    window = demo_window(args.sessions, args.end)
    from quant_genesis_dagster.demo import run_demo  # heavy imports only now
    from quant_genesis_dagster.domain.warehouse.db import open_warehouse

    open_warehouse(settings.database_url, settings.home)  # fail fast on a bad QG_DATABASE_URL

    return run_demo(settings, window, n_symbols=args.symbols, seed=args.seed)


def _up(args: argparse.Namespace) -> int:
    import subprocess

    settings = Settings.from_env()
    _embedded_instance_env(settings)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        os.path.join(root, "workspace.yaml"),
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    print(
        f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})"
    )
    try:
        # run from DAGSTER_HOME: the repository's production dagster.yaml is not for this instance
        return subprocess.call(cmd, cwd=os.environ["DAGSTER_HOME"])
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
