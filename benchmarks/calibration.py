"""Benchmark: one default weekly calibration end to end on the sample market at full universe.

    python -m benchmarks.calibration [--symbols 1800] [--end 2024-12-31] [--steps N] [--flat]

Inputs (untimed, cached by ``benchmarks.factors``' prepare under ``$QG_HOME/bench``): the sample
market for the calibration window plus the chip factor's warm-up, cleaned and aligned, the
main-force flows; then the factor stack (``factor_stack``, family tables built) and the
attribution tables (``attribution.attribution``) over all of it — what the warehouse holds when
``rl_betas`` runs.

Timed (``wall_seconds``), as the ``rl_betas`` asset does it after reading its window:
``CalibrationData.build`` over the last ``CalibrationSettings.sessions_needed()`` sessions →
``calibrate`` (PPO training with the default budget, every walk-forward candidate, the in-sample
rollouts) → ``write_artifacts`` (agent zips, tables, plots) → ``governance.record_calibration``
into a fresh MLflow SQLite store (run, metrics, artifacts, version, gate). The warehouse read
itself is not in it (it depends on the database; ``benchmarks.warehouse_io`` measures it).

Prints one JSON line: ``wall_seconds``, ``env_steps_per_s`` (training steps / training time,
PPO updates included), ``train_steps``, ``walk_forward_sharpe`` (per candidate), the gate's
status, and the per-step seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from benchmarks import factors as factor_bench
from quant_genesis_dagster.domain import attribution as attr
from quant_genesis_dagster.domain.calibration import agents, governance
from quant_genesis_dagster.domain.calibration.calibrate import (
    CalibrationSettings,
    calibrate,
    write_artifacts,
)
from quant_genesis_dagster.domain.calibration.data import PANEL_COLUMNS, CalibrationData
from quant_genesis_dagster.domain.factors import chip, stack
from quant_genesis_dagster.domain.params import DEFAULTS
from quant_genesis_dagster.domain.registry import ParamStore

#: Sessions before the calibration window: the LAC window (180) and the attribution's warm-up.
WARMUP_SESSIONS = 250


def _inputs(args) -> dict[str, pl.DataFrame]:
    settings = CalibrationSettings()
    sessions = settings.sessions_needed() + WARMUP_SESSIONS
    fargs = argparse.Namespace(symbols=args.symbols, sessions=sessions, seed=args.seed,
                               end=args.end, block=chip.BLOCK_SESSIONS)  # fmt: skip
    out = factor_bench.cache_dir(fargs)
    if not (out / "meta.json").exists():
        factor_bench.prepare(fargs, out)
    panel = pl.read_parquet(sorted((out / "panel").glob("*.parquet")))
    flows = pl.read_parquet(sorted((out / "flows").glob("*.parquet")),
                            columns=list(chip.FLOW_INPUT_COLUMNS))  # fmt: skip
    news = pl.read_parquet(out / "news.parquet")
    s = stack.factor_stack(flows, panel, news, DEFAULTS, "bench/v1", tables=True)
    a = attr.attribution(s.zscored, s.predictions, panel)
    days = panel["session"].unique().sort()
    first = days[-settings.sessions_needed()]

    def window(df: pl.DataFrame) -> pl.DataFrame:
        return df.filter(pl.col("session") >= first)

    return {
        "panel": window(panel.select(PANEL_COLUMNS)),
        "zscored": window(s.zscored),
        "chip": window(s.tables["chip"]),
        "sentiment": window(s.tables["sentiment"]),
        "value": window(s.tables["value"]),
        "factors": window(a.factors),
        "diagnosis": window(a.diagnosis),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--symbols", type=int, default=1800)
    p.add_argument("--end", default="2024-12-31")
    p.add_argument("--seed", type=int, default=7, help="sample market seed")
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=agents.TrainSettings.total_steps)
    p.add_argument("--flat", action="store_true", help="the flat single agent")
    args = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    t = time.perf_counter()
    inp = _inputs(args)
    prepare_seconds = time.perf_counter() - t
    settings = CalibrationSettings(
        train=agents.TrainSettings(
            total_steps=args.steps, hierarchical=not args.flat, seed=args.train_seed
        )  # fmt: skip
    )
    with tempfile.TemporaryDirectory(prefix="qg-bench-calibration-") as tmp:
        store = ParamStore(f"sqlite:///{tmp}/mlflow.db", artifact_location=Path(tmp) / "artifacts")
        champion = store.ensure_defaults()
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        t = time.perf_counter()
        data = CalibrationData.build(
            inp["panel"], inp["zscored"], inp["chip"], inp["sentiment"], inp["value"], DEFAULTS,
            factors=inp["factors"], diagnosis=inp["diagnosis"],
        )  # fmt: skip
        seconds["data"] = time.perf_counter() - t
        result = calibrate(data, champion.params, settings)
        seconds |= result.seconds
        t = time.perf_counter()
        artifacts = write_artifacts(result, Path(tmp) / "out")
        seconds["artifacts"] = time.perf_counter() - t
        t = time.perf_counter()
        decision = governance.record_calibration(
            store, result.proposal, champion=champion,
            walk_forward_sharpe=result.walk_forward_sharpe(), metrics=result.metrics(),
            artifacts=artifacts, tags={"qg/data_hash": result.data_hash},
            description="benchmarks.calibration",
        )  # fmt: skip
        seconds["mlflow"] = time.perf_counter() - t
        wall = time.perf_counter() - started
    out = {
        "wall_seconds": round(wall, 1),
        "env_steps_per_s": round(result.agents.train_steps / result.seconds["train"], 1),
        "train_steps": result.agents.train_steps,
        "walk_forward_sharpe": {k: round(v, 3) for k, v in result.walk_forward_sharpe().items()},
        "status": decision.status,
        "promoted": decision.promoted,
        "hierarchical": not args.flat,
        "symbols": int(data.symbols.size),
        "sessions": data.n_sessions,
        "ranges": result.ranges,
        "step_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "prepare_seconds_untimed": round(prepare_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
