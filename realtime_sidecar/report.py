"""The sidecar's end-of-day hand-off (SPEC §7.5): write the session's ``intraday_eod`` rows to the
warehouse, then report a materialization of that partition to Dagster.

The rows are what the daily chip factor reads; the report is what puts them in the asset graph
(lineage, the UI's partition status, metadata). So the order is fixed — the write must commit
before anything is reported, and a report must never claim rows that are not there — and the two
fail differently: a failed write raises (the day's aggregates are not kept), an unreachable
Dagster does not (the rows are kept; ``intraday_eod_reconcile_sensor`` reports them on one of
its next ticks). A session that is not a trading-day partition is refused before either.

Dagster is imported inside the functions: the sidecar's tick path never pays for it, and only
the close does.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl
from sqlalchemy import Engine

from quant_genesis_dagster.domain.warehouse import io, models
from quant_genesis_dagster.errors import QGError

if TYPE_CHECKING:
    import dagster as dg

log = logging.getLogger("realtime_sidecar.report")

#: The webserver's endpoint for runless materializations (``dagster_webserver``), for this asset.
REPORT_PATH = "/report_asset_materialization/intraday_eod"
#: Characters of an error kept in the outcome and the warning (a server may return a page).
_REASON_CHARS = 300


@dataclass(frozen=True)
class ReportOutcome:
    """What became of a report: ``reported`` (Dagster recorded it), ``via`` (``"http"`` — the
    webserver, or ``"instance"`` — the Dagster instance directly) and ``detail`` (what was
    done, or why it failed)."""

    reported: bool
    via: str
    detail: str


def _session_key(session: dt.date) -> str:
    from quant_genesis_dagster.defs.intraday import validate_partition

    return validate_partition(session)


def _with_session(session: dt.date, frame: pl.DataFrame) -> pl.DataFrame:
    return frame if "session" in frame.columns else frame.with_columns(session=pl.lit(session))


def write_eod(engine: Engine, session: dt.date, frame: pl.DataFrame) -> int:
    """Replace ``session``'s ``intraday_eod`` rows by ``frame`` in one transaction; returns the
    rows written.

    Idempotent: writing the same frame twice leaves the same rows (a restarted sidecar re-writes
    its close). ``frame`` has the ``models.IntradayEod`` columns (``session`` optional: it is
    filled in); a row of another session, or a session that is not a trading day, is refused
    with ``QGError`` and nothing is written.
    """
    key = _session_key(session)
    day = dt.date.fromisoformat(key)
    return io.replace_slice(engine, models.IntradayEod, _with_session(day, frame), day, day)


def _check_url(dagster_url: str) -> str:
    """The report endpoint's URL; only http(s) (``urlopen`` would also open ``file:`` URLs)."""
    parts = urllib.parse.urlsplit(dagster_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise QGError(
            f"dagster_url {dagster_url!r} is not an http(s) URL of the Dagster webserver; use "
            "e.g. http://127.0.0.1:3000"
        )
    return dagster_url.strip().rstrip("/") + REPORT_PATH


def _one_line(err: BaseException | str) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:_REASON_CHARS]


def _post(url: str, body: dict, timeout: float) -> str:
    """POST ``body`` as JSON; the status line on 2xx, else an exception (``urlopen`` raises
    ``HTTPError`` on non-2xx, ``URLError`` on refused connections, ``TimeoutError`` on timeouts)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body, allow_nan=False).encode(),
        # exactly this: the webserver compares the content type with "application/json"
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return f"POST {url} → {response.status}"


def _http_reason(err: Exception, timeout: float) -> str:
    if isinstance(err, urllib.error.HTTPError):
        try:
            body = err.read().decode(errors="replace")
        except Exception:  # the body is a courtesy; the status says enough
            body = ""
        return _one_line(f"HTTP {err.code} {err.reason}: {body}".rstrip(": "))
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(err, urllib.error.URLError):
        reason = err.reason
        if isinstance(reason, TimeoutError):
            return f"no answer within {timeout:g} s"
        return _one_line(reason if isinstance(reason, BaseException | str) else err)
    return _one_line(f"{type(err).__name__}: {err}")


def report_eod(
    session: dt.date,
    frame: pl.DataFrame,
    *,
    dagster_url: str | None = None,
    instance: dg.DagsterInstance | None = None,
    timeout: float = 5.0,
    location: str | None = None,
) -> ReportOutcome:
    """Report the materialization of ``intraday_eod``'s partition ``session`` for its rows.

    With ``dagster_url`` (the webserver, e.g. ``http://127.0.0.1:3000``): ``POST
    {dagster_url}/report_asset_materialization/intraday_eod`` with the partition, the metadata
    and a description as JSON, waiting at most ``timeout`` seconds. Without it: through the
    Dagster instance, ``instance`` or ``DagsterInstance.get()`` (``DAGSTER_HOME``); ``timeout``
    does not apply there. ``location``: where the rows live (password hidden), for the metadata.

    Raises ``QGError`` for a session that is not a trading-day partition or a URL that is not
    http(s) — nothing is reported. Never raises because Dagster is unreachable (connection
    refused, timeout, a non-2xx answer, an instance error): logs one warning and returns
    ``reported=False`` with the reason.
    """
    from quant_genesis_dagster.defs.intraday import eod_materialization

    url = _check_url(dagster_url) if dagster_url is not None else None
    mat = eod_materialization(session, frame, source="sidecar", location=location)
    key = mat.partition
    rows = frame.height
    if url is not None:
        via = "http"
        body = {
            "partition": key,
            "metadata": {k: v.value for k, v in mat.metadata.items()},
            "description": mat.description,
        }
        try:
            detail = _post(url, body, timeout)
        except Exception as err:  # any failure to reach or convince the webserver
            return _not_reported(via, key, rows, _http_reason(err, timeout))
        return ReportOutcome(reported=True, via=via, detail=detail)
    via = "instance"
    try:
        import dagster as dg

        owned = instance is None
        inst = dg.DagsterInstance.get() if owned else instance
        try:
            inst.report_runless_asset_event(mat)
        finally:
            if owned:
                inst.dispose()
    except Exception as err:  # DAGSTER_HOME unset, storage down or locked, ...
        return _not_reported(via, key, rows, _one_line(f"{type(err).__name__}: {err}"))
    return ReportOutcome(reported=True, via=via, detail=f"reported partition {key}")


def _not_reported(via: str, key: str | None, rows: int, reason: str) -> ReportOutcome:
    from quant_genesis_dagster.defs.intraday import RECONCILE_SENSOR_NAME

    log.warning(
        "intraday_eod %s: not reported to Dagster via %s (%s); the %d rows are kept in the "
        "warehouse and %s will report them",
        key,
        via,
        reason,
        rows,
        RECONCILE_SENSOR_NAME,
    )
    return ReportOutcome(reported=False, via=via, detail=reason)


def publish_eod(
    engine: Engine,
    session: dt.date,
    frame: pl.DataFrame,
    *,
    dagster_url: str | None = None,
    instance: dg.DagsterInstance | None = None,
    timeout: float = 5.0,
) -> ReportOutcome:
    """The close: ``write_eod`` then ``report_eod`` (with the warehouse's location, password
    hidden). A bad session or URL is refused before anything is written."""
    if dagster_url is not None:
        _check_url(dagster_url)
    write_eod(engine, session, frame)
    return report_eod(
        session,
        frame,
        dagster_url=dagster_url,
        instance=instance,
        timeout=timeout,
        location=engine.url.render_as_string(hide_password=True),
    )
