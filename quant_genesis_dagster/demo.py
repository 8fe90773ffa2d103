"""``quant-genesis demo``: run ``daily_job`` over a window in the embedded Dagster instance with a
live progress display, print what was built and where it lives, then end with one calibration
(``calibration_job`` for the window's last session, a small training budget): the walk-forward
table, the new parameter version's status, and how to look at it in the MLflow UI."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from quant_genesis_dagster.settings import Settings

console = Console()


def run_demo(
    settings: Settings,
    window: list[dt.date],
    *,
    n_symbols: int,
    seed: int,
    calibration_steps: int = 0,
) -> int:
    import dagster as dg

    from quant_genesis_dagster.definitions import defs
    from quant_genesis_dagster.defs.jobs import DAILY_JOB_NAME

    start, end = window[0], window[-1]
    console.print(
        f"[bold]Quant Genesis demo[/] — sample market, {n_symbols} symbols, "
        f"{len(window)} sessions {start}..{end} (seed {seed})"
    )
    instance = dg.DagsterInstance.get()
    run_intraday(settings, end, n_symbols=n_symbols, seed=seed, instance=instance)
    job = defs.resolve_job_def(DAILY_JOB_NAME)
    run_id = str(uuid.uuid4())
    steps = [node.name for node in job.graph.nodes]
    run_config = {
        "resources": {"data_source": {"config": {"n_symbols": n_symbols, "seed": seed}}},
        # the progress bar replaces Dagster's per-event console log; the UI keeps every event
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    tags = {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
        "quant_genesis/origin": "demo",
    }
    t0 = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("planning the run", total=len(steps))
        stop = threading.Event()
        watcher = threading.Thread(
            target=_watch, args=(instance, run_id, progress, task, stop), daemon=True
        )
        watcher.start()
        result = job.execute_in_process(
            run_config=run_config,
            instance=instance,
            run_id=run_id,
            tags=tags,
            raise_on_error=False,
        )
        stop.set()
        watcher.join()
        _update(instance, run_id, progress, task)
    seconds = time.perf_counter() - t0
    if not result.success:
        console.print(f"[red]run {run_id} failed[/]: {_failure_message(result)}")
        return 1
    _summary(settings, window, run_id, seconds)
    _print_intraday_in_chip(settings, end)
    if calibration_steps > 0:
        return run_calibration(settings, window, calibration_steps, run_config["resources"])
    return 0


def run_intraday(settings: Settings, session: dt.date, *, n_symbols: int, seed: int,
                 instance) -> None:  # fmt: skip
    """The intraday engine on the window's last session: the sample market's ticks replayed as
    fast as possible through the sidecar (journal, RCNC, signals), its end-of-day aggregates
    written to ``intraday_eod`` and reported to the Dagster instance — where the daily job's
    chip factor picks them up for that session."""
    from quant_genesis_dagster.domain.warehouse.db import open_warehouse
    from realtime_sidecar.app import journal_path, sample_references
    from realtime_sidecar.engine import Sidecar
    from realtime_sidecar.feeds.replay import ReplayFeed, sample_session
    from realtime_sidecar.journal import Journal
    from realtime_sidecar.report import report_eod

    ticks = sample_session(session, seed=seed, n_symbols=n_symbols)
    symbols = sorted(ticks["symbol"].unique().to_list())
    engine = open_warehouse(settings.database_url, settings.home)
    path = journal_path(settings, session, "replay-demo", None)
    path.unlink(missing_ok=True)  # the demo replays its session from the start every time
    location = engine.url.render_as_string(hide_password=True)
    sidecar = Sidecar(
        session, symbols, ReplayFeed(ticks), journal=Journal(path), warehouse=engine,
        references=sample_references(session, seed, n_symbols),
        report=lambda day, eod: report_eod(day, eod, instance=instance, location=location),
    )  # fmt: skip
    t0 = time.perf_counter()
    summary = asyncio.run(sidecar.run())
    seconds = time.perf_counter() - t0
    signals = ", ".join(f"{k} {n}" for k, n in sorted(summary.signals.items())) or "none"
    outcome = summary.report
    reported = "reported to Dagster" if outcome and outcome.reported else "NOT reported"
    console.print(
        f"Intraday engine (sidecar replay of {session}): {ticks.height:,} ticks in "
        f"{seconds:.1f} s; signals: {signals}; {summary.eod_rows} intraday_eod rows "
        f"{reported} ({outcome.detail if outcome else 'no report'})"
    )


def _print_intraday_in_chip(settings: Settings, session: dt.date, top: int = 5) -> None:
    """The sidecar's aggregates as the chip factor of ``session`` holds them."""
    import polars as pl

    from quant_genesis_dagster.domain.warehouse import io, models
    from quant_genesis_dagster.domain.warehouse.db import open_warehouse

    engine = open_warehouse(settings.database_url, settings.home)
    cols = ["session", "symbol", "rcnc_close_dev", "rcnc_vol", "sweep_ratio", "liquidity_pressure"]
    chip = io.read_slice(engine, models.ChipFactors, session, session, columns=cols)
    chip = chip.filter(pl.col("sweep_ratio").is_not_null())
    t = Table(title=f"Intraday aggregates in the chip factor F_C of {session} "
                    f"({chip.height} symbols; top {top} by sweep ratio)")  # fmt: skip
    for col in ("symbol", "RCNC/close − 1", "RCNC vol", "sweep ratio", "spread/mid"):
        t.add_column(col, justify="left" if col == "symbol" else "right")
    for r in chip.sort("sweep_ratio", descending=True).head(top).iter_rows(named=True):
        t.add_row(r["symbol"], _num(r["rcnc_close_dev"], "+.2%"), _num(r["rcnc_vol"], ".2%"),
                  _num(r["sweep_ratio"], ".1%"), _num(r["liquidity_pressure"], ".3%"))  # fmt: skip
    console.print(t)


def calibration_config(window: list[dt.date], steps: int) -> dict | None:
    """The demo calibration's resource config: the default walk-forward window (60 sessions)
    and as much training history as the window holds up to 250 sessions; None when the window
    is too short for a calibration (it needs the warm-up + one period of training)."""
    from quant_genesis_dagster.domain.calibration.calibrate import CalibrationSettings

    s = CalibrationSettings()
    train = min(s.train_sessions, len(window) - s.eval_sessions - 1)
    if train < s.env.warmup + 2 * s.env.period:
        return None
    return {"total_steps": steps, "train_sessions": train, "eval_sessions": s.eval_sessions}


def run_calibration(settings: Settings, window: list[dt.date], steps: int, resources: dict) -> int:
    """``calibration_job`` for the window's last session; prints the walk-forward table and the
    new version's status."""
    import dagster as dg

    from quant_genesis_dagster.definitions import defs
    from quant_genesis_dagster.defs.calibration import CALIBRATION_JOB_NAME

    config = calibration_config(window, steps)
    if config is None:
        console.print(
            f"No calibration: {len(window)} sessions are too few for a walk-forward window "
            "and training history (use --sessions 150 or more)."
        )
        return 0
    end = window[-1]
    console.print(
        f"[bold]Calibration[/] for {end}: PPO agents ({steps} steps), walk-forward over the "
        f"last {config['eval_sessions']} sessions …"
    )
    instance = dg.DagsterInstance.get()
    t0 = time.perf_counter()
    result = defs.resolve_job_def(CALIBRATION_JOB_NAME).execute_in_process(
        run_config={"resources": resources | {"calibration": {"config": config}},
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        instance=instance, partition_key=end.isoformat(), raise_on_error=False,
        tags={"quant_genesis/origin": "demo"},
    )  # fmt: skip
    if not result.success:
        console.print(f"[red]calibration failed[/]: {_failure_message(result)}")
        return 1
    mat = instance.fetch_materializations(dg.AssetKey("rl_betas"), limit=1).records[0]
    _print_calibration(mat.asset_materialization.metadata, time.perf_counter() - t0)
    return 0


def _print_calibration(meta: dict, seconds: float) -> None:
    def value(key):
        v = meta.get(key)
        return getattr(v, "value", v)

    rows = (value("walk_forward_table") or {}).get("rows", [])
    t = Table(title="Walk-forward comparison (the next unseen window, same Taiwan costs)")
    for col in ("candidate", "Sharpe", "ann. return", "MDD", "Sharpe qlib", "turnover/d",
                "cost/d", "β C/S/D"):  # fmt: skip
        t.add_column(col, justify="left" if col == "candidate" else "right")
    for r in rows:
        t.add_row(
            r["candidate"], _num(r["sharpe"], "+.2f"), _num(r["annual_return"], "+.1%"),
            _num(r["max_drawdown"], ".1%"), _num(r["sharpe_qlib"], "+.2f"),
            _num(r["turnover"], ".1%"), _num(r["cost_drag"], ".3%"),
            f"{r['beta_c']:.2f}/{r['beta_s']:.2f}/{r['beta_d']:.2f}",
        )  # fmt: skip
    console.print(t)
    console.print(
        f"New parameter version {value('version')}: [bold]{value('status')}[/] — {value('why')}"
    )
    reasons = value("gate_reasons")
    if reasons and reasons != "none":
        console.print(f"Needs a person because:\n{reasons}")
        console.print(
            f"  approve: .venv/bin/quant-genesis approve {value('version')} --why '...'\n"
            f"  reject:  .venv/bin/quant-genesis reject {value('version')} --why '...'"
        )
    console.print(
        f"Calibration took {seconds:.1f} s. Compare the versions in the MLflow UI: `make up`, "
        "then http://127.0.0.1:5000 → Models → quant_genesis_params (versions, aliases, "
        "status tags) or Experiments → quant_genesis/params (runs side by side)."
    )


def _num(v, fmt: str) -> str:
    return "n/a" if v is None or v != v else format(v, fmt)  # None or NaN


def _watch(instance, run_id, progress, task, stop: threading.Event) -> None:
    while not stop.wait(0.25):
        try:
            _update(instance, run_id, progress, task)
        except Exception:  # the event log may be busy for a moment; try again next tick
            continue


def _update(instance, run_id, progress, task) -> None:
    import dagster as dg

    events = instance.all_logs(
        run_id,
        of_type={
            dg.DagsterEventType.STEP_START,
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.STEP_FAILURE,
        },
    )
    done = [e.step_key for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS]
    started = [e.step_key for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_START]
    running = [s for s in started if s not in done]
    desc = f"running {running[-1]}" if running else ("done" if done else "planning the run")
    progress.update(task, completed=len(done), description=desc)


def _failure_message(result) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err = event.step_failure_data.error
            user = getattr(event.step_failure_data, "user_failure_data", None)
            if user is not None and user.description:
                return f"{event.step_key}: {user.description}"
            return f"{event.step_key}: {err.message.strip().splitlines()[-1]}"
    return "see the run in the Dagster UI (make up)"


def _print_top_signals(engine, last, n: int = 10) -> None:
    """The last session's signals (entries first, then risk actions) with their reasons, and
    the names with the highest expected 5-session return."""
    import json

    import polars as pl

    from quant_genesis_dagster.domain.warehouse import io, models

    sig = io.read_slice(engine, models.Signals, last, last)
    pred = io.read_slice(engine, models.Predictions, last, last)
    version = pred["param_version"][0] if pred.height else "none"
    # entries first, then exits, exposure cuts and warnings; the strongest first within each
    priority = {"buy": 0, "exit": 1, "reduce": 2, "warn": 3}
    ranked = sig.with_columns(
        _rank=pl.col("action").replace_strict(priority, default=9),
        _size=pl.col("strength").abs(),
    ).sort(["_rank", "_size"], descending=[False, True])
    t = Table(title=f"Top signals on {last} (parameter version {version})")
    for col in ("symbol", "signal", "action", "strength", "reasons"):
        t.add_column(col, justify="right" if col == "strength" else "left")
    for r in ranked.head(n).iter_rows(named=True):
        t.add_row(r["symbol"] or "(market)", r["signal"], r["action"], f"{r['strength']:.2f}",
                  "; ".join(json.loads(r["reasons"])))  # fmt: skip
    if ranked.is_empty():
        t.add_row("-", "none", "", "", "no rule fired today")
    console.print(t)
    kinds = (
        sig.filter(pl.col("symbol").is_not_null())
        .group_by("symbol")
        .agg(pl.col("signal").sort().str.join(", ").alias("signals"))
    )
    best = pred.join(kinds, on="symbol", how="left").sort("r_pred_5d", descending=True).head(n)
    b = Table(title=f"Highest expected 5-session returns on {last}")
    for col in ("symbol", "F_C", "F_S", "F_D", "R_pred 1d", "R_pred 5d", "R_pred 10d", "signals"):
        b.add_column(col, justify="left" if col in ("symbol", "signals") else "right")

    def num(x, fmt):
        return "" if x is None else format(x, fmt)

    for r in best.iter_rows(named=True):
        b.add_row(r["symbol"], num(r["f_c"], "+.2f"), num(r["f_s"], "+.2f"), num(r["f_d"], "+.2f"),
                  num(r["r_pred_1d"], "+.2%"), num(r["r_pred_5d"], "+.2%"),
                  num(r["r_pred_10d"], "+.2%"), r["signals"] or "")  # fmt: skip
    console.print(b)


def _print_headline(engine, end, settings: Settings) -> None:
    """The backtest's headline table in both conventions, the rolling figures of the last
    session, and where the report is."""
    import polars as pl

    from quant_genesis_dagster.defs.attribution import REPORT_NAME, headline_table
    from quant_genesis_dagster.domain.warehouse import io, models

    returns = io.read_slice(
        engine, models.StrategyReturns, None, end,
        columns=["session", "strategy", "net_return", "gross_return", "turnover", "cost_drag"],
    )  # fmt: skip
    if returns.is_empty():
        console.print("No strategy returns yet (the book starts after the first decision).")
        return
    factors = io.read_slice(
        engine, models.AttributionFactors, None, end,
        columns=["session", "factor", "horizon", "ic", "rank_ic"],
    )  # fmt: skip
    table = headline_table(returns, factors)
    first = returns["session"].min()
    h = Table(title=f"Backtest headline, macro strategy, {first}..{end} (after Taiwan costs)")
    h.add_column("metric")
    for conv in table["convention"]:
        h.add_column(f"{conv} ({'compounded, 252' if conv == 'standard' else 'summed, 238'})",
                     justify="right")  # fmt: skip
    pct = {"annual_return", "annual_volatility", "max_drawdown", "mean_daily_turnover",
           "cost_drag"}  # fmt: skip
    for col in table.columns:
        if col in ("convention", "sessions"):
            continue
        cells = []
        for v in table[col]:
            if v is None:
                cells.append("")
            elif col in pct:
                cells.append(f"{v:+.2%}" if col != "mean_daily_turnover" else f"{v:.2%}")
            else:
                cells.append(f"{v:+.3f}")
        if col.startswith("rank_ic_"):
            label = f"rank IC {col.removeprefix('rank_ic_')} (1 session)"
        elif col.startswith("ic_"):
            label = f"IC {col.removeprefix('ic_')} (1 session)"
        else:
            label = col.replace("_", " ")
        h.add_row(label, *cells)
    console.print(h)
    perf = io.read_slice(engine, models.StrategyPerformance, end, end).filter(
        (pl.col("strategy") == "macro") & (pl.col("convention") == "standard")
    )
    if perf.height:
        p = perf.row(0, named=True)

        def f(v, fmt):
            return "n/a" if v is None else format(v, fmt)

        console.print(
            f"On {end}: Sharpe 7D {f(p['sharpe_7d'], '+.2f')}, 30D {f(p['sharpe_30d'], '+.2f')}, "
            f"MDD 30D {f(p['mdd_30d'], '.2%')}, regime {p['regime'] or 'unknown'}"
        )
    report = settings.home / "reports" / REPORT_NAME
    if report.exists():
        console.print(f"Report (equity curve, rolling IC, regimes): {report}")


def _summary(settings: Settings, window: list[dt.date], run_id: str, seconds: float) -> None:
    from quant_genesis_dagster.domain.warehouse import io, models
    from quant_genesis_dagster.domain.warehouse.db import open_warehouse

    engine = open_warehouse(settings.database_url, settings.home)
    start, end = window[0], window[-1]
    rows = Table(title=f"Rows per asset, {start}..{end}")
    rows.add_column("asset")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    rows.add_row(
        "raw_stock_info", "raw_stock_info", f"{io.count_rows(engine, models.RawStockInfo):,}"
    )
    for name, model in models.RAW_PARTITIONED_TABLES.items():
        rows.add_row(
            f"raw_{name}", model.__tablename__, f"{io.count_rows(engine, model, start, end):,}"
        )
    for model in (models.CleanedPrices, models.AlignedPanel, *models.DERIVED_TABLES):
        n = io.count_rows(engine, model, start, end)
        rows.add_row(model.__tablename__, model.__tablename__, f"{n:,}")
    console.print(rows)
    panel = io.read_slice(
        engine, models.AlignedPanel, start, end, columns=["session", "has_bar", "revenue_ttm"]
    )
    if panel.height:
        last = panel.filter(panel["session"] == panel["session"].max())
        console.print(
            f"aligned_panel: {panel['has_bar'].mean():.1%} of rows with a fresh bar; "
            f"TTM fundamentals on {panel['revenue_ttm'].is_not_null().mean():.1%} of rows "
            f"({last['revenue_ttm'].is_not_null().mean():.1%} on {end}; TTM needs four quarters "
            f"published inside the window)"
        )

    q = io.read_slice(
        engine, models.Quarantine, start, end, columns=["table_name", "reason", "action"]
    )
    qt = Table(title="Quarantined rows by reason")
    for col in ("table", "reason", "action", "rows"):
        qt.add_column(col, justify="right" if col == "rows" else "left")
    if q.height:
        agg = q.group_by(["table_name", "reason", "action"]).len().sort("len", descending=True)
        for table, reason, action, n in agg.iter_rows():
            qt.add_row(table, reason, action, f"{n:,}")
    else:
        qt.add_row("-", "none", "-", "0")
    console.print(qt)
    by_kind = io.count_rows(engine, models.Signals, start, end, group_by="signal")
    console.print(
        "Signals over the window: "
        + (", ".join(f"{k} {n:,}" for k, n in by_kind.items()) or "none")
    )
    _print_top_signals(engine, end)
    _print_headline(engine, end, settings)
    console.print(f"Run {run_id} succeeded in {seconds:.1f} s.")
    console.print(f"Warehouse:     {engine.url.render_as_string(hide_password=True)}")
    console.print(f"Dagster home:  {settings.dagster_home}")
    console.print(
        "Open the UI:   [bold]make up[/]  →  http://127.0.0.1:3000 (asset graph, runs, checks)"
    )
