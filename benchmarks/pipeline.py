"""Benchmark: the whole daily graph through Dagster's own execution — a single-run backfill over
the range, then one incremental daily partition — on the sample market.

    python -m benchmarks.pipeline --symbols 1800 --sessions 2520 [--end 2024-12-31]

The backfill runs ``daily_job`` once over the first ``sessions − 1`` sessions (single-run
backfill policy: one vectorized run over the range), the incremental day is the last session as
its own partition run (what the daily schedule launches). Everything starts empty in a fresh
``QG_HOME`` under ``$QG_HOME/bench/pipeline_<symbols>x<sessions>/``: the embedded SQLite
warehouse and a SQLite Dagster instance, or the PostgreSQL warehouse of ``QG_DATABASE_URL`` when
it is set (its tables are emptied first: point it at a scratch database) and the PostgreSQL
Dagster storage of ``DAGSTER_PG_*`` when those are set. Steps run in this process, one at a
time (``execute_in_process``, as ``quant-genesis demo`` runs the job); ``--executor
multiprocess`` uses the job's default executor instead, as a backfill launched from the UI or
the daemon does: one process per step, independent steps side by side. Per-asset seconds come
from the run's step events. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import time
from pathlib import Path

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.settings import (
    DAGSTER_ENV_DEFAULTS,
    EMBEDDED_DAGSTER_YAML,
    Settings,
    apply_dagster_env_defaults,
)


def _instance(home: Path):
    import dagster as dg

    if os.environ.get("DAGSTER_PG_HOST"):
        yaml = (Path(__file__).resolve().parents[1] / "dagster.yaml").read_text()
        (home / "dagster.yaml").write_text(yaml)
        return dg.DagsterInstance.from_config(str(home)), "postgresql"
    # the embedded instance's own yaml: SQLite storage under home, telemetry off (no banner, no
    # network lookups), as `quant-genesis demo` / `up` use it
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(EMBEDDED_DAGSTER_YAML.format(base_dir=home / "storage"))
    return dg.DagsterInstance.from_config(str(home)), "sqlite"


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    import dagster as dg

    events = instance.all_logs(
        run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    )
    start, out = {}, {}
    for e in events:
        if e.dagster_event_type == dg.DagsterEventType.STEP_START:
            start[e.step_key] = e.timestamp
        elif e.step_key in start:
            out[e.step_key] = round(e.timestamp - start[e.step_key], 2)
    return out


def _rows(engine) -> dict[str, int]:
    from quant_genesis_dagster.domain.warehouse import io, models

    out = {"raw_stock_info": io.count_rows(engine, models.RawStockInfo)}
    for model in (*models.RAW_PARTITIONED_TABLES.values(), models.CleanedPrices,
                  models.AlignedPanel, models.Quarantine, *models.DERIVED_TABLES):  # fmt: skip
        out[model.__tablename__] = io.count_rows(engine, model)
    return out


def _max_rss(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def daily_job():
    """The job as a reconstructable target: the multiprocess executor's step processes load it."""
    from quant_genesis_dagster.definitions import defs

    return defs.resolve_job_def("daily_job")


def _run(executor, instance, config, tags) -> tuple[float, str]:
    import dagster as dg

    t = time.perf_counter()
    if executor == "multiprocess":
        # What a backfill launched from the UI or the daemon runs: the job's default executor,
        # one process per step, as many steps at once as there are cores.
        running = dg.execute_job(
            dg.reconstructable(daily_job), instance, run_config=config, tags=tags,
            raise_on_error=False,
        )  # fmt: skip
    else:
        running = contextlib.nullcontext(
            daily_job().execute_in_process(
                run_config=config, instance=instance, tags=tags, raise_on_error=False
            )
        )
    with running as result:
        ok, run_id = result.success, result.run_id
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
    seconds = time.perf_counter() - t
    if not ok:
        what = failed[0] if failed else "the run"
        raise SystemExit(f"benchmarks.pipeline: {what} failed (run {run_id})")
    return seconds, run_id


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1800)
    parser.add_argument("--sessions", type=int, default=2520)
    parser.add_argument("--end", default="2024-12-31")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's QG_HOME")
    parser.add_argument(
        "--executor", choices=["in_process", "multiprocess"], default="in_process",
        help="multiprocess: the job's default executor, as a UI/daemon backfill runs it; "
        "in_process: every step in this process, one at a time",
    )  # fmt: skip
    args = parser.parse_args(argv)

    days = calendar.last_sessions(args.sessions, args.end)
    base = Settings.from_env().home / "bench" / f"pipeline_{args.symbols}x{args.sessions}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    os.environ["QG_HOME"] = str(base)
    os.environ["DAGSTER_HOME"] = str(base / "dagster")
    apply_dagster_env_defaults()  # what `quant-genesis up` and the production env set
    (base / "dagster").mkdir()

    from quant_genesis_dagster.domain.warehouse import models
    from quant_genesis_dagster.domain.warehouse.db import open_warehouse

    settings = Settings.from_env()
    engine = open_warehouse(settings.database_url, settings.home)
    if settings.database_url:  # a scratch PostgreSQL database: start from empty tables
        with engine.begin() as conn:
            for table in reversed(models.Base.metadata.sorted_tables):
                conn.execute(table.delete())
    instance, instance_storage = _instance(base / "dagster")
    config = {
        "resources": {"data_source": {"config": {"n_symbols": args.symbols, "seed": args.seed}}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    backfill, last = days[:-1], days[-1]
    tags = {
        "dagster/asset_partition_range_start": backfill[0].isoformat(),
        "dagster/asset_partition_range_end": backfill[-1].isoformat(),
    }
    backfill_seconds, run_id = _run(args.executor, instance, config, tags)
    per_asset = _step_seconds(instance, run_id)
    rows_backfill = _rows(engine)
    incremental_seconds, inc_id = _run(
        args.executor, instance, config, {"dagster/partition": last.isoformat()}
    )
    per_asset_inc = _step_seconds(instance, inc_id)
    rows = _rows(engine)
    result = {
        "benchmark": "pipeline",
        "symbols": args.symbols,
        "sessions": len(days),
        "backfill_sessions": len(backfill),
        "start": days[0].isoformat(),
        "end": last.isoformat(),
        "database": engine.url.get_backend_name(),
        "dagster_storage": instance_storage,
        "executor": args.executor,
        "dagster_env": {k: os.environ[k] for k in DAGSTER_ENV_DEFAULTS},
        "backfill_seconds": round(backfill_seconds, 1),
        "incremental_seconds": round(incremental_seconds, 1),
        "per_asset_seconds": per_asset,
        "per_asset_seconds_incremental": per_asset_inc,
        "rows_written": sum(rows.values()),
        "rows_written_backfill": sum(rows_backfill.values()),
        "rows_by_table": rows,
        # the largest single process: this one, or (multiprocess) the largest step process
        "peak_rss_mb": round(
            max(_max_rss(resource.RUSAGE_SELF), _max_rss(resource.RUSAGE_CHILDREN)), 1
        ),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    instance.dispose()
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
