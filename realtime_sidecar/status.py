"""The sidecar's status endpoint: ``GET /metrics`` in the Prometheus text format and
``GET /health`` (JSON), on 127.0.0.1 by default.

A small asyncio HTTP server (no framework: two read-only routes). Metrics: up, feed lag
(seconds since the last accepted tick's exchange time), processing latency of the last batch,
ticks/s, accepted ticks, rejected ticks by reason, signals by kind, gaps, queued and dropped
ticks, journal bytes, and the RCNC per symbol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable

log = logging.getLogger("realtime_sidecar.status")

_PREFIX = "qg_sidecar"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    return repr(float(value)) if isinstance(value, float) else str(value)


def prometheus_text(status: dict) -> str:
    """``Sidecar.status()`` in the Prometheus exposition format (version 0.0.4)."""
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict, float | None]]):
        full = f"{_PREFIX}_{name}"
        out.append(f"# HELP {full} {help_}")
        out.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            tag = ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items())
            out.append(f"{full}{{{tag}}} {_num(value)}" if tag else f"{full} {_num(value)}")

    base = {"session": status["session"], "feed": status["feed"]}
    metric("up", "gauge", "1 while the sidecar runs", [(base, 1)])
    metric("lag_seconds", "gauge", "wall clock minus the last accepted tick's exchange time",
           [({}, status["lag_s"])])  # fmt: skip
    metric("latency_seconds", "gauge", "tick-to-signal latency of the last batch",
           [({}, status["latency_s"])])  # fmt: skip
    metric("ticks_per_second", "gauge", "ticks processed per second (recent batches)",
           [({}, status["ticks_per_s"])])  # fmt: skip
    metric("ticks_accepted_total", "counter", "ticks accepted", [({}, status["accepted"])])
    metric("ticks_rejected_total", "counter", "ticks rejected, by reason",
           [({"reason": r}, n) for r, n in status["rejected"].items()])  # fmt: skip
    metric("signals_total", "counter", "intraday signals raised, by kind",
           [({"kind": k}, n) for k, n in status["signals"].items()])  # fmt: skip
    metric("gaps_total", "counter", "feed gaps recorded", [({}, status["gaps"])])
    metric("gap_seconds_total", "counter", "seconds without data in recorded gaps",
           [({}, float(status["gap_seconds"]))])  # fmt: skip
    metric("queue_ticks", "gauge", "ticks waiting in the feed queue", [({}, status["queue_ticks"])])
    metric("dropped_ticks_total", "counter", "ticks dropped because the queue was full",
           [({}, status["dropped"])])  # fmt: skip
    metric("journal_bytes_total", "counter", "bytes appended to the journal",
           [({}, status["journal_bytes"])])  # fmt: skip
    metric("rcnc", "gauge", "real-time cumulative net cost line per symbol (TWD/share)",
           [({"symbol": s}, v) for s, v in sorted(status["rcnc"].items())])  # fmt: skip
    return "\n".join(out) + "\n"


def health(status: dict, max_lag_s: float = 60.0) -> dict:
    """``ok`` unless ticks stopped arriving for ``max_lag_s`` during a live session or ticks
    were dropped (``degraded``)."""
    lag = status["lag_s"]
    degraded = status["dropped"] > 0 or (lag is not None and lag > max_lag_s)
    keys = ("session", "feed", "accepted", "gaps", "dropped", "ticks_per_s", "lag_s", "uptime_s")
    return {"status": "degraded" if degraded else "ok", **{k: status[k] for k in keys}}


class StatusServer:
    """Serves ``status()`` (a callable returning ``Sidecar.status()``) over HTTP."""

    def __init__(self, status: Callable[[], dict], host: str = "127.0.0.1", port: int = 0):
        self.status, self.host, self.port = status, host, port
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        """Start listening; returns the port (useful with port 0)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("status endpoint on http://%s:%d/metrics", self.host, self.port)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            while await asyncio.wait_for(reader.readline(), 5.0) not in (b"\r\n", b""):
                pass  # headers are not needed
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if len(parts) < 2 or parts[0] != "GET":
                code, ctype, body = "405 Method Not Allowed", "text/plain", "GET only\n"
            elif path == "/metrics":
                code, ctype = "200 OK", "text/plain; version=0.0.4; charset=utf-8"
                body = prometheus_text(self.status())
            elif path in ("/health", "/"):
                code, ctype = "200 OK", "application/json"
                body = json.dumps(health(self.status())) + "\n"
            else:
                code, ctype, body = "404 Not Found", "text/plain", "try /metrics or /health\n"
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
