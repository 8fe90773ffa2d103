"""A throwaway PostgreSQL cluster for the test suite: initdb in a fresh temp dir, start on a free
loopback port with durability switched off (tests need speed, not crash safety), stop and delete.

The server refuses to run as root, so as root every server command runs as the ``postgres``
system user (``runuser``); as any other user it runs directly.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HOW_TO = (
    "no PostgreSQL for the tests: set QG_TEST_DATABASE_URL=postgresql+psycopg2://user@host:port/db "
    "(a role allowed to CREATE DATABASE) or install the Debian package postgresql "
    "(scripts/ensure_postgres.sh does it)"
)

# Durability off: a test cluster is deleted at the end anyway.
_SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def find_bindir() -> Path | None:
    """The bin folder of the newest installed PostgreSQL server, or None."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: _version_key(p.parent.name),
    )
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """An initdb'ed cluster: ``start()`` returns the superuser URL, ``stop()`` cleans up."""

    def __init__(self, bindir: Path, *, label: str = "") -> None:
        self.bindir = bindir
        self.label = label
        self.datadir: Path | None = None
        self.port: int | None = None
        self._as_user: list[str] = []
        self._owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")  # KeyError → no postgres user: caller reports
            self._as_user = ["runuser", "-u", "postgres", "--"]
            self._owner = (entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [*self._as_user, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            log = ""
            if self.datadir is not None and (self.datadir / "server.log").exists():
                log = (self.datadir / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}"
            )

    def start(self, attempts: int = 3) -> str:
        # mkdtemp gives every xdist worker its own folder; short path for the socket (<108 chars).
        self.datadir = Path(tempfile.mkdtemp(prefix=f"qgpg{self.label}-", dir="/tmp"))
        if self._owner is not None:
            os.chown(self.datadir, *self._owner)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions",
        )  # fmt: skip
        last_error: Exception | None = None
        # Another process may grab the free port between probing and binding: retry on a new one.
        for _ in range(attempts):
            self.port = _free_port()
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 "
                f"-c unix_socket_directories={self.datadir} {_SERVER_OPTIONS}"
            )
            try:
                self._run(
                    str(self.bindir / "pg_ctl"), "start", "-D", str(self.datadir), "-w",
                    "-t", "60", "-l", str(self.datadir / "server.log"), "-o", options,
                )  # fmt: skip
                return self.url
            except RuntimeError as err:
                last_error = err
                time.sleep(0.2)
        raise RuntimeError(f"could not start PostgreSQL: {last_error}")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Stop immediately (no checkpoint: the data is thrown away) and delete the folder."""
        if self.datadir is None:
            return
        if (self.datadir / "postmaster.pid").exists():
            # Even if stopping fails, remove the folder: a postmaster whose lock file vanished
            # shuts itself down within a minute.
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir),
                          "-m", "immediate", "-w")  # fmt: skip
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.datadir = None
