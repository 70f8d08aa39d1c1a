"""The one date grammar (``temporal``) shared by tiles, STAC search and CQL2: a table of cases."""

from __future__ import annotations

import datetime as dt

import pytest

from pixelquery_tiler.temporal import interval_us, parse_instant, parse_interval, us

UTC = dt.UTC
DAY_END = dt.time(23, 59, 59, 999999)


def t(*args: int, **kw: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC, **kw)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "start", "end"),
    [
        ("2020-05-18", t(2020, 5, 18), dt.datetime.combine(dt.date(2020, 5, 18), DAY_END, UTC)),
        ("2020-05-01/2020-12-31", t(2020, 5, 1), dt.datetime.combine(dt.date(2020, 12, 31), DAY_END, UTC)),
        ("2020-05-18T13:30:00Z", t(2020, 5, 18, 13, 30), t(2020, 5, 18, 13, 30)),
        ("2020-05-18T13:30:00", t(2020, 5, 18, 13, 30), t(2020, 5, 18, 13, 30)),  # no offset = UTC
        ("2020-05-18t13:30:00.5z", t(2020, 5, 18, 13, 30, 0, 500000), t(2020, 5, 18, 13, 30, 0, 500000)),
        ("2020-05-18T13:30:00.123456789Z", t(2020, 5, 18, 13, 30, 0, 123456), t(2020, 5, 18, 13, 30, 0, 123456)),
        ("2020-05-18T15:30:00+02:00", t(2020, 5, 18, 13, 30), t(2020, 5, 18, 13, 30)),
        ("2020-05-18T13:30Z", t(2020, 5, 18, 13, 30), t(2020, 5, 18, 13, 30)),
        ("../2020-05-18", None, dt.datetime.combine(dt.date(2020, 5, 18), DAY_END, UTC)),
        ("/2020-05-18", None, dt.datetime.combine(dt.date(2020, 5, 18), DAY_END, UTC)),
        ("2020-05-18T00:00:00Z/..", t(2020, 5, 18), None),
        ("2020-05-18/", t(2020, 5, 18), None),
        ("2020-05-18/2020-05-18", t(2020, 5, 18), dt.datetime.combine(dt.date(2020, 5, 18), DAY_END, UTC)),
        ("9999-12-31", t(9999, 12, 31), dt.datetime.combine(dt.date(9999, 12, 31), DAY_END, UTC)),  # no overflow
        ("0001-01-01/..", t(1, 1, 1), None),
    ],
)
def test_accepted_values(value: str, start: dt.datetime | None, end: dt.datetime | None) -> None:
    assert parse_interval(value) == (start, end)
    assert interval_us(value) == (us(start) if start else None, us(end) if end else None)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "..",
        "../..",
        "/",
        "not a date",
        "2020-02-30",
        "2020-13-01",
        "20200518",
        "2020-W21",
        "2020-139",
        "2020-05-18T13",
        "2021-01-01/2020-01-01",
        "2020-05-18T13:30:00Z/2020-05-18T13:00:00Z",
        "a/b/c",
        "2020-05-18/2020-05-19/2020-05-20",
        "2020-05-18T25:00:00Z",
        "x" * 500,
    ],
)
def test_rejected_values(value: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_interval(value)
    assert len(str(info.value)) < 200  # the reason quotes the input briefly


def test_instant_is_midnight_for_a_date_and_none_is_unbounded() -> None:
    assert parse_instant("2020-05-18") == t(2020, 5, 18)
    assert interval_us(None) == (None, None)
    assert us(t(1970, 1, 1, 0, 0, 1)) == 1_000_000


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2020-05-01/2020-12-31", True),  # date bounds of an interval: whole UTC days, on STAC search too
        ("2020-05-18T13:30:00Z", True),
        ("2020-05-18T13:30:00.52+01:00/..", True),
        ("../2020-05-18", True),
        ("2020-05-18", False),  # a lone date: STAC API conformance (stac-api-validator) wants a 400
        ("2020-05-18T13:30:00", False),  # no offset
        ("2020-05-18T13:30:00Z/2020-05-19T00:00:00", False),
        ("1937-01-01T12:00:27.87+0100", False),  # no colon in the offset (refused everywhere)
    ],
)
def test_rfc3339_profile_of_the_stac_api(value: str, ok: bool) -> None:
    if ok:
        assert parse_interval(value, rfc3339=True) == parse_interval(value)
    else:
        with pytest.raises(ValueError):
            parse_interval(value, rfc3339=True)
