"""Benchmark: the intraday engine through its full path (feed → journal → gate → RCNC → signals),
and the design notes' approach for comparison, in the same run.

    python -m benchmarks.sidecar [--symbols 1800] [--ticks 2000000] [--rate 20000]
                                 [--latency-ticks 400000] [--seed 1] [--fsync]

Input (untimed): a synthetic full session of ``--ticks`` ticks over ``--symbols`` symbols —
activity skewed across symbols (Zipf: a few names trade most), random-walk prices on the TWSE
tick grid, heavy-tailed lot sizes (about 2% big orders of 50+ lots), the tick rule for the side,
one-tick quotes, timestamps over 09:00–13:30. The sample market is not used: it caps a symbol
at 400 ticks a day, far below a real session.

Phases, each in a fresh subprocess (so each peak RSS is its own; the replay source — the whole
session in memory, ~150 MB at 2M ticks — is included, as in a real replay):

* ``throughput`` — the replay feed as fast as possible through ``Sidecar`` with its journal on
  disk: ``ticks_per_s`` = ticks / wall time of ``Sidecar.run`` (the close's aggregates included),
  ``lost`` = ticks offered − (accepted + rejected) + dropped (must be 0), ``peak_rss_mb`` (the
  process's peak; ``input_rss_mb`` is that peak before the run starts — generating the input).
* ``latency`` — the first ``--latency-ticks`` ticks offered at ``--rate`` ticks/s: per tick, the
  time from when it was due (the feed's schedule) until the batch holding it has been journaled,
  gated and folded into RCNC and the signals: ``p50_ms``, ``p99_ms``, ``max_ms`` (tick-weighted).
* ``thread`` — the same ticks and load handed over one at a time from a foreign thread, as a
  vendor callback does (``put_threadsafe``): ``thread_p50_ms``, ``thread_p99_ms``,
  ``thread_max_ms``.
* ``baseline`` — the design notes' sketch at the same offered load: ticks collected for 5 s,
  then per batch pandas ``groupby().cumsum()`` with the sums restarted in every batch, and the
  same "price above RCNC" test; ``baseline_p99_ms`` (same definition), ``baseline_ticks_per_s``
  (as fast as possible: whatever arrives within 5 s is one batch), and
  ``baseline_rcnc_wrong_share`` — at the offered load, the share of ticks whose RCNC differs (by
  more than 1e-6 relative) from the correct session-long RCNC.

Prints one JSON line with those keys plus the inputs, batches, journal bytes per tick and the
targets (ticks/s >= 200k, p99 <= 20 ms at 20k ticks/s, peak RSS <= 1 GB).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from quant_genesis_dagster.domain import market
from realtime_sidecar.engine import Sidecar
from realtime_sidecar.feeds.base import FeedQueue, SystemClock, Ticks
from realtime_sidecar.feeds.replay import ReplayFeed
from realtime_sidecar.journal import Journal
from realtime_sidecar.session import reference_rcnc, session_open
from realtime_sidecar.ticks import TICK_SCHEMA

SESSION = dt.date(2024, 5, 2)
BASELINE_BATCH_S = 5.0


def synthetic_session(n_symbols: int, n_ticks: int, seed: int) -> pl.DataFrame:
    """A full session of ticks (``TICK_SCHEMA``), sorted by time (see the module docstring)."""
    rng = np.random.default_rng(seed)
    weight = 1.0 / np.arange(1, n_symbols + 1) ** 0.8
    sym = rng.choice(n_symbols, size=n_ticks, p=weight / weight.sum())
    span_us = (4 * 3600 + 30 * 60) * 1_000_000
    t = np.sort(rng.integers(0, span_us, n_ticks))
    order = np.argsort(sym, kind="stable")  # per symbol in time order
    start = rng.uniform(10, 900, n_symbols)
    steps = rng.choice([-1, 0, 0, 1], size=n_ticks)
    walk = np.empty(n_ticks)
    s_sorted = sym[order]
    first = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
    seg = np.cumsum(first) - 1
    cum = np.cumsum(steps[order])
    cum = cum - np.r_[0, cum][np.flatnonzero(first)][seg]
    base = start[s_sorted]
    walk[order] = base + cum * market.tick_size(base)
    price = market.round_to_tick(np.clip(walk, 1.0, None))
    lots = np.minimum(np.ceil(rng.pareto(1.6, n_ticks) * 2).astype(np.int64), 2000)
    lots = np.maximum(lots, 1)
    dp = np.zeros(n_ticks)
    dp_sorted = np.diff(price[order], prepend=np.nan)
    dp_sorted[first] = 0.0
    dp[order] = dp_sorted
    side = np.where(dp > 0, 1, np.where(dp < 0, -1, rng.choice([-1, 1], n_ticks))).astype(np.int8)
    tick = market.tick_size(price - 1e-6)
    bid = np.where(side > 0, price - tick, price)
    ask = np.where(side > 0, price, price + market.tick_size(price))
    open_us = int(session_open(SESSION).timestamp() * 1_000_000)
    symbols = np.array([f"{1101 + i}" for i in range(n_symbols)])
    return pl.DataFrame(
        {
            "ts": pl.Series(open_us + t).cast(pl.Datetime("us", "UTC")),
            "symbol": symbols[sym],
            "price": price,
            "volume": lots * market.LOT_SIZE,
            "side": side,
            "bid": np.round(bid, 2),
            "ask": np.round(ask, 2),
            "simtrade": np.zeros(n_ticks, bool),
        }
    ).cast(dict(TICK_SCHEMA))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------ phases


def phase_engine(ticks: pl.DataFrame, rate: float | None, fsync: bool) -> dict:
    symbols = sorted(ticks["symbol"].unique().to_list())
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "bench.qgj", fsync=fsync)
        sidecar = Sidecar(SESSION, symbols, ReplayFeed(ticks, rate=rate), journal=journal)
        t0 = time.perf_counter()
        summary = asyncio.run(sidecar.run())
        seconds = time.perf_counter() - t0
        journal_bytes = journal.bytes_written
    processed = summary.accepted + sum(summary.rejected.values())
    return {
        "ticks": ticks.height,
        "seconds": seconds,
        "ticks_per_s": ticks.height / seconds,
        "lost": ticks.height - processed + summary.dropped,
        "batches": sidecar.batches,
        "signals": sum(summary.signals.values()),
        "eod_rows": summary.eod_rows,
        "journal_bytes_per_tick": journal_bytes / ticks.height,
        **summary.latency_percentiles(),
        "peak_rss_mb": _peak_rss_mb(),
    }


class ThreadFeed:
    """A vendor-like live feed: a foreign thread hands over one tick at a time on a fixed
    schedule (``rate`` ticks/s), through ``FeedQueue.put_threadsafe`` as the Shioaji adapter
    does; latency counts from each tick's due time."""

    name = "thread"

    def __init__(self, ticks: pl.DataFrame, rate: float):
        self.rows, self.rate = ticks.rows(), rate
        # a vendor does not hold the session as Python objects: keep these 0.4M tuples out of
        # the garbage collector's full passes (which would otherwise scan them all)
        gc.freeze()

    async def run(self, out: FeedQueue) -> None:
        out.bind_loop()
        loop, done = asyncio.get_running_loop(), asyncio.Event()

        def pump() -> None:
            t0 = time.monotonic()
            for i, row in enumerate(self.rows):
                due = t0 + i / self.rate
                while time.monotonic() < due:
                    time.sleep(0.0002)
                out.put_threadsafe(Ticks([row], received=due))
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=pump, daemon=True).start()
        await done.wait()


def phase_thread(ticks: pl.DataFrame, rate: float, fsync: bool) -> dict:
    symbols = sorted(ticks["symbol"].unique().to_list())
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "bench.qgj", fsync=fsync)
        sidecar = Sidecar(SESSION, symbols, ThreadFeed(ticks, rate), journal=journal)
        summary = asyncio.run(sidecar.run())
    processed = summary.accepted + sum(summary.rejected.values())
    return {"ticks": ticks.height, "lost": ticks.height - processed + summary.dropped,
            "batches": sidecar.batches, **summary.latency_percentiles(),
            "peak_rss_mb": _peak_rss_mb()}  # fmt: skip


def _baseline_rcnc(batch: pd.DataFrame, big_shares: int) -> pd.Series:
    """The notes' RCNC: cumulative sums restarted in every batch (the bug SPEC §7.2 fixes)."""
    signed = batch["side"].astype("int64") * batch["volume"]
    net = signed.where(batch["volume"] >= big_shares, 0)
    cum_net = net.groupby(batch["symbol"]).cumsum()
    cum_cost = (batch["price"] * net).groupby(batch["symbol"]).cumsum()
    rcnc = cum_cost / cum_net.replace(0, np.nan)
    return rcnc.groupby(batch["symbol"]).ffill()


async def _baseline(ticks: pl.DataFrame, rate: float | None) -> dict:
    clock = SystemClock()
    queue = FeedQueue(max_ticks=10_000_000, clock=clock)
    feed = ReplayFeed(ticks, rate=rate, clock=clock)
    big = 50 * market.LOT_SIZE
    task = asyncio.create_task(feed.run(queue))
    lat, weights, rcnc_parts, n = [], [], [], 0
    t0 = time.perf_counter()
    while not (task.done() and queue.empty()):
        deadline = clock.monotonic() + BASELINE_BATCH_S
        items = []
        while clock.monotonic() < deadline and not (task.done() and queue.empty()):
            try:
                items.append(await asyncio.wait_for(queue.get(), deadline - clock.monotonic()))
            except TimeoutError:
                break
        if not items:
            continue
        batch = pl.concat([i.frame for i in items]).to_pandas()
        rcnc = _baseline_rcnc(batch, big)
        _signal = batch["price"] > rcnc  # the notes' "accumulation" test
        done = clock.monotonic()
        lat += [done - i.received for i in items]
        weights += [len(i) for i in items]
        rcnc_parts.append(rcnc.to_numpy())
        n += len(batch)
    seconds = time.perf_counter() - t0
    await task
    lat_a, w = np.asarray(lat), np.asarray(weights)
    o = np.argsort(lat_a)
    cw = np.cumsum(w[o])
    p99 = float(lat_a[o][np.searchsorted(cw, 0.99 * cw[-1])]) * 1000
    return {"ticks": n, "seconds": seconds, "p99_ms": p99, "rcnc": np.concatenate(rcnc_parts)}


def phase_baseline(ticks: pl.DataFrame, rate: float | None) -> dict:
    out = asyncio.run(_baseline(ticks, rate))
    got, want = out.pop("rcnc"), reference_rcnc(ticks)
    both = np.isfinite(want)
    wrong = both & ~(np.abs(got - want) <= 1e-6 * np.abs(want))
    return {
        **out,
        "ticks_per_s": out["ticks"] / out["seconds"],
        "rcnc_wrong_share": float(wrong.sum() / max(both.sum(), 1)),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _run_phase(args: argparse.Namespace) -> dict:
    ticks = synthetic_session(args.symbols, args.ticks, args.seed)
    if args.phase == "throughput":
        # peak RSS of the process before the run: the generator's temporaries and the source
        return {"input_rss_mb": _peak_rss_mb(), **phase_engine(ticks, None, args.fsync)}
    if args.phase == "latency":
        return phase_engine(ticks.head(args.latency_ticks), args.rate, args.fsync)
    if args.phase == "thread":
        return phase_thread(ticks.head(args.latency_ticks), args.rate, args.fsync)
    if args.phase == "baseline":
        return phase_baseline(ticks.head(args.latency_ticks), args.rate)
    if args.phase == "baseline_throughput":
        return phase_baseline(ticks, None)
    raise SystemExit(f"unknown phase {args.phase}")


def _child(args: argparse.Namespace, phase: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.sidecar", "--phase", phase,
           "--symbols", str(args.symbols), "--ticks", str(args.ticks), "--seed", str(args.seed),
           "--rate", str(args.rate), "--latency-ticks", str(args.latency_ticks)]  # fmt: skip
    if args.fsync:
        cmd.append("--fsync")
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sidecar", description=__doc__)
    p.add_argument("--symbols", type=int, default=1800)
    p.add_argument("--ticks", type=int, default=2_000_000)
    p.add_argument("--rate", type=float, default=20_000.0, help="offered load, ticks/s")
    p.add_argument("--latency-ticks", type=int, default=400_000,
                   help="ticks offered at --rate (latency phases)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fsync", action="store_true", help="fsync the journal after every batch")
    p.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        print(json.dumps(_run_phase(args)))
        return
    t0 = time.perf_counter()
    thr = _child(args, "throughput")
    lat = _child(args, "latency")
    thread = _child(args, "thread")
    base = _child(args, "baseline")
    base_thr = _child(args, "baseline_throughput")
    out = {
        "benchmark": "sidecar",
        "symbols": args.symbols,
        "ticks": args.ticks,
        "fsync": args.fsync,
        "ticks_per_s": round(thr["ticks_per_s"]),
        "lost": thr["lost"] + lat["lost"] + thread["lost"],
        "peak_rss_mb": round(max(thr["peak_rss_mb"], lat["peak_rss_mb"], thread["peak_rss_mb"]), 1),
        "input_rss_mb": round(thr["input_rss_mb"], 1),
        "offered_ticks_per_s": args.rate,
        "latency_ticks": lat["ticks"],
        "p50_ms": round(lat["p50_ms"], 3),
        "p99_ms": round(lat["p99_ms"], 3),
        "max_ms": round(lat["max_ms"], 3),
        "thread_p50_ms": round(thread["p50_ms"], 3),
        "thread_p99_ms": round(thread["p99_ms"], 3),
        "thread_max_ms": round(thread["max_ms"], 3),
        "batches_full_speed": thr["batches"],
        "batches_at_rate": lat["batches"],
        "signals_full_session": thr["signals"],
        "journal_bytes_per_tick": round(thr["journal_bytes_per_tick"], 1),
        "baseline_p99_ms": round(base["p99_ms"], 1),
        "baseline_ticks_per_s": round(base_thr["ticks_per_s"]),
        "baseline_rcnc_wrong_share": round(base["rcnc_wrong_share"], 4),
        "targets": {"ticks_per_s": 200_000, "p99_ms": 20, "peak_rss_mb": 1024, "lost": 0},
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
