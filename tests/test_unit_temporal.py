"""The date grammar's building blocks (``temporal.py``) beyond ``test_temporal.py``'s table of whole values:
bounds mixing dates and instants, whitespace, offsets, the microsecond scale, formatting, and the length limit."""

from __future__ import annotations

import datetime as dt

import pytest

from pixelquery_tiler.temporal import (
    MAX_LENGTH,
    day_bounds,
    format_instant,
    parse_bound,
    parse_date,
    parse_instant,
    parse_interval,
    us,
)

UTC = dt.UTC


def t(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def last_us(y: int, m: int, d: int) -> dt.datetime:
    return dt.datetime.combine(dt.date(y, m, d), dt.time.max, UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # a date bound is its whole UTC day on either side, an instant is one point
        ("2020-05-18/2020-05-18T12:00:00Z", (t(2020, 5, 18), t(2020, 5, 18, 12))),
        ("2020-05-18T12:00:00Z/2020-05-18", (t(2020, 5, 18, 12), last_us(2020, 5, 18))),
        ("2020-05-18T12:00:00Z/2020-05-18T12:00:00Z", (t(2020, 5, 18, 12), t(2020, 5, 18, 12))),  # empty is fine
        ("2020-02-29", (t(2020, 2, 29), last_us(2020, 2, 29))),  # a leap day
        ("  2020-05-18  ", (t(2020, 5, 18), last_us(2020, 5, 18))),  # surrounding blanks are ignored
        (" 2020-05-01 / 2020-05-02 ", (t(2020, 5, 1), last_us(2020, 5, 2))),
        ("2020-05-18T10:30:00-03:00", (t(2020, 5, 18, 13, 30), t(2020, 5, 18, 13, 30))),  # offsets become UTC
        ("2020-05-18 13:30:00Z", (t(2020, 5, 18, 13, 30), t(2020, 5, 18, 13, 30))),  # RFC 3339's space separator
        ("2020-05-18T23:30:00-01:00/..", (t(2020, 5, 19, 0, 30), None)),  # the offset can change the UTC date
    ],
)
def test_interval_bounds(value: str, expected: tuple[dt.datetime | None, dt.datetime | None]) -> None:
    assert parse_interval(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2021-02-29", "invalid date"),  # not a leap year
        ("2020-05-18T13:30:00+0100", "expected RFC 3339"),  # an offset without its colon
        ("2020-05-18T13:30:00 Z", "expected RFC 3339"),
        ("2020-5-18", "expected RFC 3339"),  # fields are zero-padded
        ("x" * (MAX_LENGTH + 1), f"longer than {MAX_LENGTH}"),
    ],
)
def test_interval_errors_give_the_reason(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_interval(value)


def test_length_limit_boundary() -> None:
    """Blanks around the ``/`` count (the limit bounds the work), blanks around the whole value do not."""
    instant = "2020-05-18T13:30:00.123456789+00:00"
    at_limit = instant + " " * (MAX_LENGTH - 2 * len(instant) - 1) + "/" + instant
    assert len(at_limit) == MAX_LENGTH
    assert parse_interval("  " + at_limit + "  ") == (t(2020, 5, 18, 13, 30, 0, 123456),) * 2
    with pytest.raises(ValueError, match=f"longer than {MAX_LENGTH}"):
        parse_interval(at_limit.replace("/", " /"))


@pytest.mark.parametrize("value", [None, 20200518, ["2020-05-18"]])
def test_only_strings_are_parsed(value: object) -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_interval(value)  # type: ignore[arg-type]


def test_parse_date_and_day_bounds() -> None:
    assert parse_date(" 2020-05-18 ") == dt.date(2020, 5, 18)
    for bad in ("2020-05-18T00:00:00Z", "18.05.2020", ""):
        with pytest.raises(ValueError, match="invalid date"):
            parse_date(bad)
    first, last = day_bounds(dt.date(2020, 5, 18))
    assert (first, last) == (t(2020, 5, 18), last_us(2020, 5, 18))
    assert us(last) - us(first) == 86_400_000_000 - 1  # a day, inclusive, in microseconds
    assert day_bounds(dt.date.max)[1].year == 9999 and day_bounds(dt.date.min)[0].year == 1


def test_parse_bound_rfc3339_profile() -> None:
    assert parse_bound("2020-05-18") == (t(2020, 5, 18), last_us(2020, 5, 18))
    assert parse_bound("2020-05-18T13:30:00Z", rfc3339=True) == (t(2020, 5, 18, 13, 30), t(2020, 5, 18, 13, 30))
    assert parse_bound("2020-05-18", rfc3339=True) == parse_bound("2020-05-18")  # a date bound needs no offset
    with pytest.raises(ValueError, match="needs an offset"):
        parse_bound("2020-05-18T13:30:00", rfc3339=True)
    with pytest.raises(ValueError, match="empty datetime"):
        parse_instant("   ")


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        (t(1970, 1, 1), 0),
        (t(1970, 1, 1, 0, 0, 1), 1_000_000),
        (t(1969, 12, 31, 23, 59, 59), -1_000_000),  # before the epoch: negative, not wrapped
        (dt.datetime(1970, 1, 2), 86_400_000_000),  # naive means UTC
        (dt.datetime(1970, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))), 0),
        (last_us(9999, 12, 31), 253_402_300_799_999_999),  # exact at the far end (no float rounding)
    ],
)
def test_us_is_exact_integer_microseconds(value: dt.datetime, micros: int) -> None:
    assert us(value) == micros


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (t(2020, 5, 18, 13, 30), "2020-05-18T13:30:00Z"),
        (dt.datetime(2020, 5, 18, 15, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2020-05-18T13:30:00Z"),
        (t(2020, 5, 18, 13, 30, 0) + dt.timedelta(microseconds=5), "2020-05-18T13:30:00.000005Z"),
    ],
)
def test_format_instant_round_trips(value: dt.datetime, text: str) -> None:
    assert format_instant(value) == text
    assert parse_instant(text) == value
