"""XTAI calendar, session mapping and Taiwan market facts."""

import datetime as dt

import exchange_calendars as xc
import numpy as np
import pytest

from quant_genesis_dagster.domain import calendar, market
from quant_genesis_dagster.errors import QGError


def test_2024_sessions_are_exactly_exchange_calendars_xtai():
    expected = [
        d.date() for d in xc.get_calendar("XTAI").sessions_in_range("2024-01-01", "2024-12-31")
    ]
    assert calendar.sessions(dt.date(2024, 1, 1), dt.date(2024, 12, 31)) == expected
    assert len(expected) == 243


@pytest.mark.parametrize(
    "day, why",
    [
        ("2024-07-24", "typhoon"),
        ("2024-07-25", "typhoon"),
        ("2024-02-09", "lunar new year"),
        ("2024-10-10", "national day"),
        ("2024-07-27", "saturday"),
    ],
)
def test_non_sessions_are_rejected_with_a_one_line_error(day, why):
    with pytest.raises(QGError) as err:
        calendar.parse_session(day)
    assert "not an XTAI trading session" in str(err.value)
    assert "\n" not in str(err.value)


def test_malformed_and_out_of_range_keys():
    with pytest.raises(QGError, match="not a date"):
        calendar.parse_session("2024-13-01")
    with pytest.raises(QGError, match="outside the XTAI calendar"):
        calendar.parse_session("2001-01-02")


def test_dates_map_forward_to_sessions():
    # Saturday 2024-07-27 → Monday 07-29; typhoon Wed 07-24 → Fri 07-26 (07-25 closed too)
    out = calendar.session_on_or_after(["2024-07-27", "2024-07-24", "2024-07-26"])
    assert [str(x) for x in out] == ["2024-07-29", "2024-07-26", "2024-07-26"]
    # NY Friday 2024-07-26 closes before Taipei's Monday open → TW session Monday 07-29
    assert str(calendar.session_after(["2024-07-26"])[0]) == "2024-07-29"
    # NY Tuesday 07-23 → TW 07-26 (07-24/25 typhoon closures)
    assert str(calendar.session_after(["2024-07-23"])[0]) == "2024-07-26"


def test_shift_and_index():
    assert calendar.shift_session(dt.date(2024, 7, 23), 1) == dt.date(2024, 7, 26)
    assert calendar.shift_session(dt.date(2024, 7, 26), -1) == dt.date(2024, 7, 23)
    idx = calendar.session_index(["2024-07-23", "2024-07-24"])
    assert idx[0] >= 0 and idx[1] == -1


@pytest.mark.parametrize(
    "price, tick",
    [
        (9.99, 0.01),
        (10.0, 0.05),
        (49.95, 0.05),
        (50.0, 0.1),
        (99.9, 0.1),
        (100.0, 0.5),
        (499.5, 0.5),
        (500.0, 1.0),
        (999.0, 1.0),
        (1000.0, 5.0),
        (2330.0, 5.0),
    ],
)
def test_tick_sizes(price, tick):
    assert market.tick_size(price) == pytest.approx(tick)


def test_limit_prices_round_inward_to_the_tick():
    up, down = market.limit_prices([100.0, 9.5, 47.3], [0.10, 0.10, 0.10])
    # 47.3 * 1.1 = 52.03 → tick 0.1 → 52.0 ; 47.3 * 0.9 = 42.57 → tick 0.05 → 42.6 (up-rounded)
    assert up.tolist() == pytest.approx([110.0, 10.45, 52.0])
    assert down.tolist() == pytest.approx([90.0, 8.55, 42.6])


def test_limit_pct_changed_on_2015_06_01():
    pct = market.limit_pct(np.array(["2015-05-29", "2015-06-01"], dtype="datetime64[D]"))
    assert pct.tolist() == [0.07, 0.10]
