"""The check both schemathesis runs apply (STAC routes and tile routes): no 5xx, and error bodies stay bounded."""

from __future__ import annotations

from typing import Any

#: largest error body a client's input may provoke (errors quote input only as a short excerpt)
MAX_ERROR_BODY = 20_000


def failure(case: Any, response: Any) -> str | None:
    """One line describing why ``response`` to ``case`` is a server fault, or ``None`` when it is acceptable."""
    if response.status_code >= 500 or (response.status_code >= 400 and len(response.content) > MAX_ERROR_BODY):
        return (
            f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r:.300} "
            f"-> {response.status_code} {response.text[:300]}"
        )
    return None
