"""Durability (SPEC §7.5): a sidecar process killed with SIGKILL at random points and restarted
reaches exactly the final state of an uninterrupted run — the same end-of-day rows, the same
signals, the same accepted and rejected counts — and the journal survives a torn last record.

The stream is a recorded session: the sample market's ticks with bad ticks of every kind mixed
in, so the gate's counters and carried ordering state must survive the restarts too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.domain.warehouse.db import open_warehouse
from realtime_sidecar import journal as jr
from realtime_sidecar.feeds.replay import sample_session

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sidecar_recovery")]

SESSION = dt.date(2024, 5, 2)
SPEED = 3000.0  # the 4.5-hour session in about 5.4 s


def _bad_ticks(ticks: pl.DataFrame) -> pl.DataFrame:
    """Copies of real ticks spoiled in every way the gate rejects, spread through the day."""
    rows = ticks.gather_every(97).head(60).with_row_index("k")
    k = pl.col("k") % 9
    return rows.with_columns(
        price=pl.when(k == 0).then(-1.0).when(k == 1).then(float("nan")).otherwise("price"),
        volume=pl.when(k == 2).then(0).otherwise("volume"),
        symbol=pl.when(k == 3).then(pl.lit("9999")).otherwise("symbol"),
        simtrade=k == 4,
        ts=pl.when(k == 5)
        .then(pl.col("ts") - dt.timedelta(hours=2))  # before 09:00 for early ticks, else ...
        .when(k == 6)
        .then(pl.col("ts") - dt.timedelta(seconds=30))  # ... out of order
        .otherwise("ts"),
    ).drop("k")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, list[str]]:
    ticks = sample_session(SESSION, seed=3, n_symbols=40)
    bad = _bad_ticks(ticks)
    # the spoiled copies arrive right after their originals (duplicates for the k=7, 8 rows)
    both = pl.concat([ticks.with_row_index("i"), bad.with_row_index("i").with_columns(
        pl.col("i") * 97)], how="vertical").sort("i", maintain_order=True).drop("i")  # fmt: skip
    path = tmp_path_factory.mktemp("recorded") / "session.parquet"
    both.write_parquet(path)
    return path, sorted(ticks["symbol"].unique().to_list())


def _cmd(path: Path, symbols: list[str], home: Path, speed: float | None) -> list[str]:
    return [
        sys.executable, "-m", "realtime_sidecar", "--session", SESSION.isoformat(),
        "--file", str(path), "--symbol-list", ",".join(symbols), "--status-port", "-1",
        "--no-report", "--quiet", "--speed", "max" if speed is None else str(speed),
        "--summary-json", str(home / "summary.json"),
    ]  # fmt: skip


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QG_DATABASE_URL", "DAGSTER_HOME")}
    return {**env, "QG_HOME": str(home)}


def _final_state(home: Path) -> dict:
    engine = open_warehouse(None, home)
    try:
        eod = io.read_slice(engine, models.IntradayEod, SESSION, SESSION)
        signals = io.read_slice(engine, models.IntradaySignals, SESSION, SESSION)
    finally:
        engine.dispose()
    summary = json.loads((home / "summary.json").read_text())
    keep = ("accepted", "rejected", "signals", "eod_rows", "complete")
    return {"eod": eod, "signal_rows": signals, **{k: summary[k] for k in keep}}


def _journal_cursor(home: Path) -> tuple[int, int]:
    """(records, last cursor) of the session's journal as the killed process left it."""
    path = home / "sidecar" / "journal" / f"{SESSION}-replay.qgj"
    records = list(jr.Journal(path).records())
    cursors = [r.cursor for r in records if r.kind == jr.TICKS and r.cursor is not None]
    assert all(r.kind != jr.CLOSE for r in records), "the process reached the close"
    return len(records), cursors[-1] if cursors else 0


def test_sigkill_at_random_points_then_restart_reaches_the_uninterrupted_state(recorded, tmp_path):
    path, symbols = recorded
    straight = tmp_path / "straight"
    run = subprocess.run(_cmd(path, symbols, straight, None), env=_env(straight),
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    expected = _final_state(straight)
    assert expected["complete"] and expected["eod_rows"] > 30
    assert set(expected["rejected"]) >= {"non_positive_price", "missing_value", "unknown_symbol",
                                         "trial_match", "non_positive_volume", "out_of_order",
                                         "duplicate"}  # fmt: skip
    assert expected["signals"] and expected["signal_rows"].height == sum(
        expected["signals"].values()
    )

    crashed = tmp_path / "crashed"
    rng = random.Random(int(os.environ.get("QG_TEST_SEED", "20240502")))
    kills = []
    journal = crashed / "sidecar" / "journal" / f"{SESSION}-replay.qgj"
    for _ in range(2):  # kill, restart, kill the restarted process, restart
        before = journal.stat().st_size if journal.exists() else 0
        proc = subprocess.Popen(_cmd(path, symbols, crashed, SPEED), env=_env(crashed),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while not (journal.exists() and journal.stat().st_size > before + 4096):  # new ticks
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the sidecar never started journaling"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        kills.append(_journal_cursor(crashed))
    print(
        f"kill points (journal records, ticks consumed): {kills}; rejected: {expected['rejected']}"
    )
    assert kills[0][1] < kills[1][1] < pl.read_parquet(path).height  # both mid-session
    run = subprocess.run(_cmd(path, symbols, crashed, None), env=_env(crashed),
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = _final_state(crashed)
    assert got["eod"].equals(expected["eod"])
    assert got["signal_rows"].equals(expected["signal_rows"])
    for key in ("accepted", "rejected", "signals", "eod_rows", "complete"):
        assert got[key] == expected[key], key
    assert json.loads((crashed / "summary.json").read_text())["recovered_batches"] > 0


def test_a_torn_last_record_is_cut_and_the_rest_replays(tmp_path):
    path = tmp_path / "j.qgj"
    j = jr.Journal(path)
    j.open()
    j.header({"symbols": ["2330"], "session": "2024-05-02"})
    frame = (
        sample_session(SESSION, seed=3, n_symbols=12).head(5).with_columns(symbol=pl.lit("2330"))
    )
    j.ticks(frame, None, 5)
    j.ticks(frame, None, 10)
    j.close()
    whole = path.stat().st_size
    with open(path, "r+b") as f:  # a crash in the middle of the last write
        f.truncate(whole - 17)
    again = jr.Journal(path)
    records = again.open()
    assert [r.cursor for r in records if r.kind == jr.TICKS] == [5]
    assert records[1].frame.equals(frame)
    again.ticks(frame, None, 10)  # appends after the cut, not after the torn bytes
    again.close()
    assert [r.cursor for r in jr.Journal(path).records() if r.kind == jr.TICKS] == [5, 10]
    with open(path, "r+b") as f:  # a flipped bit: the CRC stops the replay there
        f.seek(whole - 40)
        byte = f.read(1)
        f.seek(whole - 40)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert [r.cursor for r in jr.Journal(path).records() if r.kind == jr.TICKS] == [5]
