"""Assembling a sidecar run from the command line: the session, its universe and reference
prices, the feeds, the journal, the warehouse and the Dagster report; then running it with the
status endpoint and Ctrl-C handling, and printing what happened."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.errors import QGError
from quant_genesis_dagster.settings import (
    Settings,
    apply_dagster_env_defaults,
    prepare_dagster_home,
)
from realtime_sidecar.config import BIG_LOTS, IntradaySettings, parse_big_lots
from realtime_sidecar.engine import RunSummary, Sidecar
from realtime_sidecar.journal import Journal
from realtime_sidecar.status import StatusServer

log = logging.getLogger("realtime_sidecar")


def journal_path(settings: Settings, session: dt.date, feed: str, folder: str | None) -> Path:
    base = Path(folder) if folder else settings.home / "sidecar" / "journal"
    return base / f"{session.isoformat()}-{feed}.qgj"


def resolve_session(text: str | None, live: bool, today: dt.date | None = None) -> dt.date:
    today = today or dt.datetime.now(ZoneInfo(calendar.TIMEZONE)).date()
    if text:
        day = calendar.parse_session(text)
    elif live:
        day = today
    else:
        day = calendar.last_sessions(1, min(today - dt.timedelta(days=1),
                                            calendar.last_known_session()))[0]  # fmt: skip
    if not calendar.is_session(day):
        raise QGError(f"--session {day}: not an XTAI trading session; pick a trading day")
    return day


def universe_from_warehouse(engine, session: dt.date) -> tuple[list[str], dict[str, float]]:
    """The symbols listed on the last aligned session before ``session`` and their raw close
    (the reference price of the daily limits). Empty when the warehouse has none."""
    from quant_genesis_dagster.domain.warehouse import io, models

    prev = io.read_latest_before(
        engine, models.AlignedPanel, session, columns=["session", "symbol", "close"],
        since=session - dt.timedelta(days=14),
    )  # fmt: skip
    if prev.height == 0:
        return [], {}
    last = prev["session"].max()
    prev = prev.filter(pl.col("session") == last)
    refs = {s: c for s, c in prev.select("symbol", "close").iter_rows() if c is not None and c > 0}
    return sorted(prev["symbol"].to_list()), refs


def sample_references(session: dt.date, seed: int, n_symbols: int) -> dict[str, float]:
    """The sample market's raw closes of the session before ``session``."""
    from quant_genesis_dagster.domain.sample import SampleMarket, SampleMarketConfig

    prev = calendar.shift_session(session, -1)
    market = SampleMarket(SampleMarketConfig(seed=seed, n_symbols=n_symbols))
    bars = market.tables(prev, prev, ["daily_prices"])["daily_prices"]
    return {s: c for s, c in bars.select("symbol", "close").iter_rows() if c is not None and c > 0}


def _set_aside(path: Path) -> None:
    if path.exists():
        stamp = time.strftime("%Y%m%dT%H%M%S")
        moved = path.with_name(f"{path.name}.{stamp}.bak")
        path.rename(moved)
        log.warning("journal %s set aside as %s (--fresh)", path, moved.name)


def _embedded_dagster(settings: Settings) -> None:
    """Report into the embedded instance when no DAGSTER_HOME is set (as `quant-genesis demo`)."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(settings))
    apply_dagster_env_defaults()


def build(args: argparse.Namespace, settings: Settings) -> tuple[Sidecar, str]:
    """The configured ``Sidecar`` and a one-line description of the run."""
    live = args.feed != "replay"
    session = resolve_session(args.session, live)
    from quant_genesis_dagster.defs.intraday import validate_partition

    validate_partition(session)  # fail before the session, not at the close
    intraday = IntradaySettings(
        big_lots=args.default_big_lots or BIG_LOTS,
        big_lots_by_symbol=parse_big_lots(args.big_lots),
        net_mode=args.net_mode,
    )
    warehouse = None
    if not args.no_warehouse:
        from quant_genesis_dagster.domain.warehouse.db import open_warehouse

        warehouse = open_warehouse(settings.database_url, settings.home)
    listed, references = universe_from_warehouse(warehouse, session) if warehouse else ([], {})
    chosen = [s.strip() for s in (args.symbol_list or "").split(",") if s.strip()]
    if args.feed == "replay":
        from realtime_sidecar.feeds.replay import ReplayFeed, load_recorded, sample_session

        if args.file:
            ticks = load_recorded(args.file)
            source = Path(args.file).name
        else:
            ticks = sample_session(session, seed=args.seed, n_symbols=args.symbols)
            source = f"sample market (seed {args.seed}, {args.symbols} symbols)"
            if not references:
                references = sample_references(session, args.seed, args.symbols)
        symbols = chosen or sorted(ticks["symbol"].drop_nulls().unique().to_list())
        feed = ReplayFeed(ticks, speed=args.speed)
        speed = "as fast as possible" if args.speed is None else f"x{args.speed:g}"
        what = f"replay of {source}, {ticks.height:,} ticks, {speed}"
    else:
        from realtime_sidecar.feeds.shioaji import ShioajiFeed

        symbols = chosen or listed
        if not symbols:
            raise QGError(
                "--feed shioaji: no symbols; pass --symbol-list 2330,2317,... or fill the "
                "warehouse first (quant-genesis demo / the daily job)"
            )
        feed = ShioajiFeed(symbols)
        what = f"Shioaji live, {len(symbols)} symbols"
    proxy_feed = None
    if args.proxy_feed == "polygon":
        from realtime_sidecar.feeds.polygon import PolygonFeed

        proxy_feed = PolygonFeed([s for s in args.proxies.split(",") if s.strip()])
        what += f", Polygon proxies {args.proxies}"
    path = journal_path(settings, session, feed.name, args.journal_dir)
    if args.fresh:
        _set_aside(path)
    report = None
    if warehouse is not None and not args.no_report:
        from realtime_sidecar.report import report_eod

        if not args.dagster_url:
            _embedded_dagster(settings)
        report = functools.partial(
            report_eod, dagster_url=args.dagster_url,
            location=warehouse.url.render_as_string(hide_password=True),
        )  # fmt: skip
    sidecar = Sidecar(
        session,
        symbols,
        feed,
        proxy_feed=proxy_feed,
        settings=intraday,
        references={s: references[s] for s in symbols if s in references},
        journal=Journal(path, fsync=args.fsync == "on" or (args.fsync == "auto" and live)),
        live=live,
        warehouse=warehouse,
        report=report,
    )
    return sidecar, f"{session}: {what}; journal {path}"


async def run_with_status(sidecar: Sidecar, host: str, port: int) -> RunSummary:
    """Run ``sidecar`` with the status endpoint (port −1: none) and Ctrl-C → a clean stop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, sidecar.stop)
    server = None
    if port >= 0 and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "status endpoint on %s: it has no authentication and shows every symbol's RCNC; "
            "keep it on 127.0.0.1 unless a firewall or proxy guards it", host,
        )  # fmt: skip
    if port >= 0:
        server = StatusServer(sidecar.status, host, port)
        try:
            await server.start()
        except OSError as err:
            raise QGError(
                f"status endpoint: cannot listen on {host}:{port} ({err.strerror}); pass "
                "--status-port 0 for any free port or -1 for none"
            ) from err
        print(f"status: http://{host}:{server.port}/metrics", file=sys.stderr)
    try:
        return await sidecar.run()
    finally:
        if server is not None:
            await server.close()


def print_summary(summary: RunSummary, seconds: float) -> None:
    total = summary.accepted + sum(summary.rejected.values())
    rate = total / seconds if seconds > 0 else 0.0
    print(f"session {summary.session}: {total:,} ticks in {seconds:.1f} s ({rate:,.0f}/s), "
          f"{summary.accepted:,} accepted")  # fmt: skip
    if summary.recovered_batches:
        print(f"  recovered {summary.recovered_batches} journal records after a restart")
    if summary.rejected:
        shown = ", ".join(f"{r} {n:,}" for r, n in sorted(summary.rejected.items()))
        print(f"  rejected: {shown}")
    shown = ", ".join(f"{k} {n:,}" for k, n in sorted(summary.signals.items())) or "none"
    print(f"  signals: {shown}")
    for gap in summary.gaps:
        print(f"  gap {gap.feed} {gap.start:%H:%M:%S}–{gap.end:%H:%M:%S} UTC: {gap.cause}")
    if summary.dropped:
        print(f"  DROPPED {summary.dropped:,} ticks (the queue was full)")
    if not summary.complete:
        print("  stopped before the close: the journal is kept; run again to continue")
        return
    print(f"  end of day: {summary.eod_rows} intraday_eod rows")
    if summary.report is not None:
        state = "reported to Dagster" if summary.report.reported else "NOT reported"
        print(f"  {state} via {summary.report.via}: {summary.report.detail}")


def run_from_args(args: argparse.Namespace, settings: Settings) -> int:
    level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    logging.getLogger("realtime_sidecar").setLevel(level)
    signals = logging.getLogger("realtime_sidecar.signals")  # one plain line per signal
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("signal %(message)s"))
    signals.addHandler(handler)
    signals.propagate = False
    sidecar, what = build(args, settings)
    print(what, file=sys.stderr)
    t0 = time.perf_counter()
    summary = asyncio.run(run_with_status(sidecar, args.host, args.status_port))
    seconds = time.perf_counter() - t0
    print_summary(summary, seconds)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.as_dict(seconds), indent=1) + "\n")
    return 0 if summary.complete else 130
