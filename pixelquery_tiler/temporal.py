"""The one date grammar of the server: ingest, tile requests, STAC search (GET and POST) and CQL2 literals.

Accepted forms follow STAC API / OGC API, with one documented extension:

- an RFC 3339 instant (``2020-05-18T13:30:00Z``; a missing offset means UTC, seconds and fraction optional);
- a calendar date ``YYYY-MM-DD``, meaning that whole UTC day (``2020-05-18`` = 00:00:00 to 23:59:59.999999);
- an interval ``start/end`` of either, where one side may be open (``..`` or empty); a date as the end of an
  interval includes that whole day, so ``2020-05-01/2020-12-31`` ends on December 31st at midnight UTC.

Everything else (week dates, ordinal dates, ``20200518``, hour-only times, ``+0100`` offsets) is rejected
with a reason, so a value means the same on every endpoint. Times are compared as integer microseconds since
the epoch (``us``).

The STAC API (``/stac/search``, ``/stac/collections/{id}/items``) parses with ``rfc3339=True``, the one
difference its conformance tests (stac-api-validator) require: a *lone* value must be an RFC 3339 instant with
an offset, so ``datetime=2020-05-18`` and ``datetime=2020-05-18T13:30:00`` are refused there (400 naming the
``2020-05-18/2020-05-18`` form), while date bounds of an interval keep meaning whole UTC days, so the README's
``datetime=2020-05-01/2020-12-31`` means the same on tiles and on STAC search.
"""

from __future__ import annotations

import datetime as dt
import re

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?")
_OPEN = ("", "..")
#: longest accepted value: an interval of two instants with 9-digit fractions and offsets is ~70 characters
MAX_LENGTH = 100


def _excerpt(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def parse_date(value: str) -> dt.date:
    """A calendar date ``YYYY-MM-DD``. Raises ``ValueError``."""
    text = value.strip()
    if not _DATE.fullmatch(text):
        raise ValueError(f"invalid date {_excerpt(value)}: expected YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"invalid date {_excerpt(value)}: {exc}") from None


def parse_instant(value: str) -> dt.datetime:
    """An RFC 3339 instant (no offset means UTC); a bare date is its midnight UTC. Raises ``ValueError``."""
    text = value.strip()
    if not text:
        raise ValueError("empty datetime")
    if len(text) > MAX_LENGTH or not (_INSTANT.fullmatch(text) or _DATE.fullmatch(text)):
        raise ValueError(f"invalid datetime {_excerpt(value)}: expected RFC 3339 (2020-05-18T13:30:00Z) or YYYY-MM-DD")
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    if "." in text:  # Python keeps microseconds: drop digits beyond the sixth (truncation, as RFC 3339 allows)
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = head + "." + tail[: min(digits, 6)] + tail[digits:]
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"invalid datetime {_excerpt(value)}: {exc}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """First and last microsecond of ``day`` in UTC (no arithmetic: 9999-12-31 must not overflow)."""
    return dt.datetime.combine(day, dt.time.min, UTC), dt.datetime.combine(day, dt.time.max, UTC)


def parse_bound(value: str, rfc3339: bool = False) -> tuple[dt.datetime, dt.datetime]:
    """One instant or date as inclusive ``(first, last)`` instants: an instant is one point, a date its UTC day.

    ``rfc3339``: an instant must carry its offset (``Z`` or ``+hh:mm``), as RFC 3339 requires.
    """
    text = value.strip()
    if _DATE.fullmatch(text):
        return day_bounds(parse_date(text))
    instant = parse_instant(text)
    match = _INSTANT.fullmatch(text)  # parse_instant accepted it, so it matches
    if rfc3339 and (match is None or not match.group("offset")):
        raise ValueError(f"invalid datetime {_excerpt(value)}: RFC 3339 needs an offset (Z or +hh:mm)")
    return instant, instant


def parse_interval(value: str, rfc3339: bool = False) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``(start, end)`` inclusive bounds, ``None`` for an open end. Raises ``ValueError`` with a reason.

    ``rfc3339`` (the STAC API): a lone value must be an instant with an offset; see the module docstring.
    """
    if not isinstance(value, str):
        raise ValueError("datetime must be a string")
    text = value.strip()
    if len(text) > MAX_LENGTH:
        raise ValueError(f"datetime is longer than {MAX_LENGTH} characters")
    if "/" not in text:
        if text in _OPEN:
            raise ValueError("empty datetime")
        if rfc3339 and _DATE.fullmatch(text):
            raise ValueError(
                f"a lone date {_excerpt(text)} is not an RFC 3339 instant; for that whole UTC day write {text}/{text}"
            )
        return parse_bound(text, rfc3339)
    parts = text.split("/")
    if len(parts) != 2:
        raise ValueError(f"invalid datetime interval {_excerpt(value)}: expected start/end")
    start_s, end_s = (p.strip() for p in parts)
    start = None if start_s in _OPEN else parse_bound(start_s, rfc3339)[0]
    end = None if end_s in _OPEN else parse_bound(end_s, rfc3339)[1]
    if start is None and end is None:
        raise ValueError("a datetime interval needs at least one closed end")
    if start is not None and end is not None and start > end:
        raise ValueError(f"datetime interval {_excerpt(value)} ends before it starts")
    return start, end


def us(value: dt.datetime) -> int:
    """Microseconds since the epoch: the one integer time scale of every column, search and filter."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def interval_us(value: str | None, rfc3339: bool = False) -> tuple[int | None, int | None]:
    """``parse_interval`` in microseconds since the epoch; ``None`` (no parameter) is unbounded."""
    if value is None:
        return None, None
    start, end = parse_interval(value, rfc3339)
    return (us(start) if start else None), (us(end) if end else None)


def format_instant(value: dt.datetime) -> str:
    """An instant as RFC 3339 UTC with ``Z``, the form STAC documents use."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
