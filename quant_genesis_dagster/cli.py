"""``quant-genesis`` — the command-line entry point.

    quant-genesis demo     [--symbols N] [--sessions N] [--end DATE] [--seed S]
    quant-genesis up       [--port P] [--mlflow-port P]
    quant-genesis versions [--status STATUS]
    quant-genesis approve  VERSION --why TEXT [--by NAME]
    quant-genesis reject   VERSION --why TEXT [--by NAME]

``demo`` runs the main Dagster job on the embedded sample market over a window of sessions, in
the persistent embedded Dagster instance under ``QG_HOME`` (so ``up`` shows the runs), with a
progress display, then prints a summary. ``up`` starts the Dagster UI and, for the embedded
MLflow store, the MLflow UI beside it (both on 127.0.0.1). ``versions`` lists the parameter
versions; ``approve`` / ``reject`` decide on one pending approval (SPEC §9 human filter; VERSION
is ``3``, ``v3`` or ``quant_genesis_params/v3``; ``--by`` defaults to ``QG_USER``, else the login
name). User errors print one line (no traceback) and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit
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
#: The demo's closing calibration: a small training budget (the weekly default is larger).
DEMO_CALIBRATION_STEPS = 768
DEFAULT_MLFLOW_PORT = 5000
#: Seconds the MLflow server gets to exit after SIGTERM (its workers take ~10 s) before SIGKILL.
MLFLOW_STOP_TIMEOUT_S = 20.0

if TYPE_CHECKING:  # pragma: no cover - typing only; the CLI starts without mlflow / dagster
    from quant_genesis_dagster.domain.registry import ParamStore


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
    demo.add_argument(
        "--calibration-steps",
        type=int,
        default=DEMO_CALIBRATION_STEPS,
        help="PPO training steps of the closing calibration (0: skip it)",
    )
    up = sub.add_parser("up", help="Dagster UI (webserver + daemon) and the MLflow UI on 127.0.0.1")
    up.add_argument("--port", type=int, default=3000)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument(
        "--mlflow-port",
        type=int,
        default=DEFAULT_MLFLOW_PORT,
        help="port of the MLflow UI (embedded store only; it always binds 127.0.0.1)",
    )
    sub.add_parser(
        "sidecar",
        add_help=False,
        help="the intraday engine for one session (same options as python -m realtime_sidecar)",
    )
    versions = sub.add_parser("versions", help="list the parameter versions and their decisions")
    versions.add_argument("--status", default=None, help="only versions with this status")
    for name, what in (("approve", "make it the champion"), ("reject", "never deploy it")):
        cmd = sub.add_parser(name, help=f"{name} a parameter version pending approval ({what})")
        cmd.add_argument("version", help="3, v3 or quant_genesis_params/v3")
        cmd.add_argument("--why", required=True, help="the reason, recorded with the decision")
        cmd.add_argument("--by", default=None, help="who decides (default: $QG_USER, else login)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sidecar"]:  # its own parser: every option of python -m realtime_sidecar
        from realtime_sidecar.__main__ import main as sidecar_main

        return sidecar_main(argv[1:], prog="quant-genesis sidecar")
    args = _parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "up":
            return _up(args)
        if args.command == "versions":
            return _versions(args)
        if args.command in ("approve", "reject"):
            return _decide(args)
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
    if args.calibration_steps < 0:
        raise QGError(f"--calibration-steps must be >= 0 (got {args.calibration_steps})")
    settings = Settings.from_env()
    _embedded_instance_env(settings)
    window = demo_window(args.sessions, args.end)
    from quant_genesis_dagster.demo import run_demo  # heavy imports only now
    from quant_genesis_dagster.domain.warehouse.db import open_warehouse

    open_warehouse(settings.database_url, settings.home)  # fail fast on a bad QG_DATABASE_URL

    return run_demo(settings, window, n_symbols=args.symbols, seed=args.seed,
                    calibration_steps=args.calibration_steps)  # fmt: skip


# ----------------------------------------------------------------------- versions / decisions
def parse_version(text: str, name: str) -> int:
    """``3``, ``v3`` or ``<name>/v3`` → 3; ``QGError`` naming the accepted forms otherwise."""
    from quant_genesis_dagster.domain.registry import parse_version_id

    raw = str(text).strip()
    if "/" in raw:
        given, number = parse_version_id(raw)
        if given != name:
            raise QGError(
                f"version {raw!r} belongs to registered model {given!r}, not {name!r}; "
                f"give the number (e.g. {number})"
            )
        return number
    digits = raw[1:] if raw[:1] in ("v", "V") else raw
    if not digits.isdigit() or int(digits) < 1:
        raise QGError(
            f"version {raw!r} is not a parameter version; give 3, v3 or {name}/v3 "
            "(`quant-genesis versions` lists them)"
        )
    return int(digits)


def _who(given: str | None) -> str:
    who = (given or os.environ.get("QG_USER") or "").strip()
    if who:
        return who
    import getpass

    try:
        who = getpass.getuser().strip()
    except Exception:  # no login name (a container without a passwd entry)
        who = ""
    if not who:
        raise QGError("cannot tell who decides; pass --by NAME or set QG_USER")
    return who


def _store() -> ParamStore:
    """The parameter store of the Dagster resource (same settings: MLFLOW_TRACKING_URI, else the
    SQLite store under QG_HOME); it must exist already."""
    from quant_genesis_dagster.defs.resources import ParamStoreResource

    store = ParamStoreResource().store()
    store.check_exists()
    return store


def _decide(args: argparse.Namespace) -> int:
    if not args.why.strip():
        raise QGError(f"{args.command}: --why must say why (it is recorded with the decision)")
    who = _who(args.by)
    from quant_genesis_dagster.domain.registry import REGISTERED_NAME

    version = parse_version(args.version, REGISTERED_NAME)
    store = _store()
    from quant_genesis_dagster.domain.calibration import governance

    decide = governance.approve if args.command == "approve" else governance.reject
    pv = decide(store, version, who=who, why=args.why, via="quant-genesis CLI")
    champion = store.champion()
    if args.command == "approve":
        print(f"approved {pv.id} by {who}: it is the champion now (predictions use it)")
    else:
        print(f"rejected {pv.id} by {who}; the champion stays {champion.id}")
    return 0


def _versions(args: argparse.Namespace) -> int:
    store = _store()
    from quant_genesis_dagster.domain.calibration import governance

    found = store.versions(status=args.status)
    if not found:
        which = f" with status {args.status!r}" if args.status else ""
        print(f"no parameter versions{which} in MLflow at {store.where}")
        return 0
    rows = [("version", "status", "aliases", "last decision", "why")]
    for pv in found:
        d = governance.last_decision(pv)
        decided = "-" if d is None else f"{d.action} by {d.by} at {d.at}"
        why = "" if d is None else d.why if len(d.why) <= 80 else d.why[:77] + "..."
        rows.append((f"v{pv.version}", pv.status, ",".join(pv.aliases) or "-", decided, why))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"{store.name} in MLflow at {store.where}")
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)), row[4])
    return 0


# ---------------------------------------------------------------------------------------- up
def dagster_ui_command(host: str, port: int) -> list[str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        os.path.join(root, "workspace.yaml"),
        "-h",
        host,
        "-p",
        str(port),
    ]


def mlflow_ui_command(settings: Settings, port: int) -> list[str] | None:
    """``mlflow server`` on 127.0.0.1 over the embedded SQLite tracking store (the one the
    parameter store uses), or None when tracking is elsewhere (a server has its own UI; a
    database URL may carry a password, which must not go on a command line)."""
    uri = settings.mlflow_tracking_uri
    if not uri.startswith("sqlite:///"):
        return None
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        settings.mlflow_artifacts.as_uri(),
        "--workers",
        "1",
    ]


def mlflow_ui_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The MLflow server's environment: no job runner (one process fewer, starts in seconds),
    no telemetry (a trading machine sends no usage data; a deliberate user setting wins)."""
    env = dict(os.environ if base is None else base)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return env


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_mlflow_ui(settings: Settings, port: int) -> subprocess.Popen[bytes] | None:
    from quant_genesis_dagster.domain.registry import safe_uri

    cmd = mlflow_ui_command(settings, port)
    uri = settings.mlflow_tracking_uri
    if cmd is None:
        if uri.startswith(("http://", "https://")):
            parts = urlsplit(uri)  # a link to click: without the credentials
            link = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
            print(f"MLflow UI on {link} (MLFLOW_TRACKING_URI)")
        else:
            print(f"MLflow tracking store {safe_uri(uri)} (MLFLOW_TRACKING_URI): not served here")
        return None
    if not _port_free(port):
        raise QGError(
            f"port {port} on 127.0.0.1 is in use (an MLflow UI still running?); stop it or pass "
            "--mlflow-port"
        )
    folder = settings.mlflow_artifacts.parent
    settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    log_path = folder / "server.log"
    with open(log_path, "ab") as log_file:
        # own session: Ctrl-C in the terminal reaches dagster, we stop this one ourselves
        proc = subprocess.Popen(
            cmd,
            cwd=folder,
            env=mlflow_ui_env(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    print(f"MLflow UI on http://127.0.0.1:{port} (starting; log {log_path})")
    threading.Thread(target=_report_early_exit, args=(proc, log_path), daemon=True).start()
    return proc


def _die_with_parent() -> None:
    """In the MLflow child before exec (Linux): SIGTERM when ``quant-genesis up`` dies, even by
    SIGKILL, so the UI never outlives it (it runs in its own session, out of reach of a signal
    to our process group)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: _stop still runs on a normal exit
        pass


def _report_early_exit(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    code = proc.wait()
    if code not in (0, -signal.SIGTERM, -signal.SIGKILL):
        print(f"MLflow UI stopped (exit code {code}); see {log_path}", file=sys.stderr)


def _stop(proc: subprocess.Popen[Any], timeout: float = MLFLOW_STOP_TIMEOUT_S) -> None:
    """SIGTERM to the process group of ``proc`` (started in its own session), SIGKILL after
    ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class _Terminated(Exception):
    """SIGTERM to ``quant-genesis up``."""


def _run_foreground(cmd: list[str], cwd: str, grace: float = 30.0, on_stop: Any = None) -> int:
    """Run ``cmd`` until it exits. Ctrl-C reaches it from the terminal (same process group) and
    SIGTERM to this process is passed on: either way it gets ``grace`` seconds to stop its
    webserver and daemon before it is killed. ``on_stop()`` is called as soon as a stop is
    asked for (to stop companions at the same time)."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise _Terminated

    proc = subprocess.Popen(cmd, cwd=cwd)
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        try:
            return proc.wait()
        except (KeyboardInterrupt, _Terminated) as stop:
            if on_stop is not None:
                on_stop()
            if isinstance(stop, _Terminated):
                proc.send_signal(signal.SIGTERM)  # dagster dev treats it as Ctrl-C
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                print("the Dagster UI did not stop in time; killing it", file=sys.stderr)
            return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _signal(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM) -> None:
    """``sig`` to ``proc``'s process group, if it still runs (``_stop`` then waits for it)."""
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


def _up(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    _embedded_instance_env(settings)
    dagster_home = os.environ["DAGSTER_HOME"]
    cmd = dagster_ui_command(args.host, args.port)
    mlflow_proc = _start_mlflow_ui(settings, args.mlflow_port)
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={dagster_home})")
    try:
        # run from DAGSTER_HOME: the repository's production dagster.yaml is not for this instance
        return _run_foreground(cmd, cwd=dagster_home, on_stop=lambda: _signal(mlflow_proc))
    finally:
        if mlflow_proc is not None:
            print("stopping the MLflow UI ...")
            _stop(mlflow_proc)


if __name__ == "__main__":
    raise SystemExit(main())
