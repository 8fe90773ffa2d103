"""The XTAI trading calendar (exchange-calendars) and the mapping of dates to sessions.

Every partitioned row belongs to one XTAI session. Dates that are not sessions map forward:
a statement published on a Saturday, or a headline on a holiday, belongs to the next session; a
New York session closes (04:00/05:00 Taipei) before the next Taiwan open, so NY date N belongs to
the first Taiwan session strictly after N (SPEC §4).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
import pandas as pd

from quant_genesis_dagster.errors import QGError

#: First session of the project's history (and of the Dagster partitions).
HISTORY_START = dt.date(2010, 1, 4)
TIMEZONE = "Asia/Taipei"
SESSION_OPEN = dt.time(9, 0)
SESSION_CLOSE = dt.time(13, 30)


@lru_cache(maxsize=1)
def _calendar():
    import exchange_calendars as xc

    return xc.get_calendar("XTAI", start=HISTORY_START.isoformat())


@lru_cache(maxsize=1)
def session_array() -> np.ndarray:
    """All XTAI sessions the calendar knows, from HISTORY_START, as sorted datetime64[D]."""
    return _calendar().sessions.values.astype("datetime64[D]")


def last_known_session() -> dt.date:
    return _to_date(session_array()[-1])


def _to_date(x: np.datetime64) -> dt.date:
    return dt.date.fromisoformat(str(np.datetime64(x, "D")))


def _as_d64(dates) -> np.ndarray:
    return np.asarray(pd.to_datetime(np.asarray(dates)).values.astype("datetime64[D]"))


def sessions(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """Sessions in [start, end], inclusive."""
    arr = session_array()
    lo, hi = np.datetime64(str(start), "D"), np.datetime64(str(end), "D")
    return [_to_date(x) for x in arr[(arr >= lo) & (arr <= hi)]]


def last_sessions(n: int, end: dt.date | str) -> list[dt.date]:
    """The ``n`` sessions ending at the last session on or before ``end``."""
    arr = session_array()
    upto = arr[arr <= np.datetime64(str(end), "D")]
    if len(upto) < n:
        raise QGError(
            f"only {len(upto)} XTAI sessions between {HISTORY_START} and {end}; asked for {n}"
        )
    return [_to_date(x) for x in upto[-n:]]


def is_session(day: dt.date) -> bool:
    arr = session_array()
    d = np.datetime64(day.isoformat(), "D")
    i = np.searchsorted(arr, d)
    return bool(i < len(arr) and arr[i] == d)


def parse_session(key: str) -> dt.date:
    """Validate a partition key / CLI date; one-line error if it is not an XTAI session."""
    try:
        day = dt.date.fromisoformat(str(key).strip())
    except ValueError:
        raise QGError(f"partition key {key!r} is not a date; use YYYY-MM-DD") from None
    if day < HISTORY_START or day > last_known_session():
        raise QGError(
            f"partition key {key} is outside the XTAI calendar range "
            f"{HISTORY_START}..{last_known_session()}"
        )
    if not is_session(day):
        nxt = session_on_or_after([day])[0]
        raise QGError(
            f"partition key {key} is not an XTAI trading session (weekend, holiday or typhoon "
            f"closure); the next session is {_to_date(nxt)}"
        )
    return day


def session_on_or_after(dates) -> np.ndarray:
    """Vectorized: the first session >= each date (datetime64[D]). Beyond the calendar: NaT."""
    arr = session_array()
    d = _as_d64(dates)
    idx = np.searchsorted(arr, d, side="left")
    out = np.full(d.shape, np.datetime64("NaT"), dtype="datetime64[D]")
    ok = idx < len(arr)
    out[ok] = arr[idx[ok]]
    return out


def session_after(dates) -> np.ndarray:
    """Vectorized: the first session strictly after each date (datetime64[D])."""
    arr = session_array()
    d = _as_d64(dates)
    idx = np.searchsorted(arr, d, side="right")
    out = np.full(d.shape, np.datetime64("NaT"), dtype="datetime64[D]")
    ok = idx < len(arr)
    out[ok] = arr[idx[ok]]
    return out


def session_index(dates) -> np.ndarray:
    """Vectorized position of each session in ``session_array()`` (-1 when not a session)."""
    arr = session_array()
    d = _as_d64(dates)
    idx = np.searchsorted(arr, d)
    idx_c = np.minimum(idx, len(arr) - 1)
    return np.where(arr[idx_c] == d, idx_c, -1)


def shift_session(day: dt.date, k: int) -> dt.date:
    """The session ``k`` sessions after (k > 0) or before (k < 0) the session ``day``."""
    arr = session_array()
    i = int(session_index([day])[0])
    if i < 0:
        raise QGError(f"{day} is not an XTAI session")
    j = i + k
    if not 0 <= j < len(arr):
        raise QGError(f"{day} shifted by {k} sessions falls outside the calendar")
    return _to_date(arr[j])


def non_session_weekdays(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in [start, end] that are not sessions (holidays, typhoon closures)."""
    arr = session_array()
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    weekday = (days.astype("datetime64[D]").view("int64") - 4) % 7  # 0 = Monday
    wk = days[weekday < 5]
    return [_to_date(x) for x in np.setdiff1d(wk, arr)]
