"""Datetime parsing shared by ingest, tile requests and STAC search.

Accepted forms follow STAC API / OGC API: an RFC 3339 instant, a calendar date (meaning that whole UTC day),
or an interval ``start/end`` where either side may be open (``..`` or empty).
"""

from __future__ import annotations

import datetime as dt

UTC = dt.timezone.utc


def parse_instant(value: str) -> dt.datetime:
    """An RFC 3339 / ISO 8601 instant (naive means UTC). Raises ``ValueError``."""
    text = value.strip()
    if not text:
        raise ValueError("empty datetime")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _is_date(text: str) -> bool:
    return len(text) == 10 and text[4] == "-" and text[7] == "-"


def parse_interval(value: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``(start, end)`` inclusive bounds, ``None`` for an open end. Raises ``ValueError`` with a reason."""
    text = value.strip()
    if "/" in text:
        parts = text.split("/")
        if len(parts) != 2:
            raise ValueError(f"invalid datetime interval {value!r}")
        start_s, end_s = (p.strip() for p in parts)
        start = None if start_s in ("", "..") else _bound(start_s, end=False)
        end = None if end_s in ("", "..") else _bound(end_s, end=True)
        if start is None and end is None:
            raise ValueError("a datetime interval needs at least one closed end")
        if start and end and start > end:
            raise ValueError(f"datetime interval {value!r} ends before it starts")
        return start, end
    if _is_date(text):
        return _bound(text, end=False), _bound(text, end=True)
    instant = parse_instant(text)
    return instant, instant


def _bound(text: str, end: bool) -> dt.datetime:
    if _is_date(text):
        day = dt.datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day + dt.timedelta(days=1, microseconds=-1) if end else day
    return parse_instant(text)


def format_instant(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
