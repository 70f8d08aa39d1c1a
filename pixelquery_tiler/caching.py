"""HTTP caching and diagnostics for the tile routes: ETag, Cache-Control, 304, ``X-PixelQuery-*`` headers.

- A view pinned to a snapshot (item endpoints, ``snapshot_id=``) can never change: ``immutable``, and its ETag
  does not depend on the table head. A collection-head view may change with the next ingest: a short
  ``max-age`` and an ETag that includes the head snapshot.
- The ETag depends only on the package version, the path, the query and the view's snapshot: never on the
  ``Host`` header, so replicas behind different names agree on validators for the same bytes.
- ``routing.cache_policy_dependency`` (a dependency of every tile route) computes the policy from the
  request's ``View`` and answers ``If-None-Match`` with 304 before anything is read; the route class
  (``routing.ViewRoute``) receives that policy and the ``View`` as arguments and adds ``response_headers``
  to the endpoint's response, the diagnostics from the metadata of the images read (``levels_header``).
- Error responses are never publicly cacheable (``no-store``, set by the app's exception handlers).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from . import __version__
from .view import View

IMMUTABLE = "public, max-age=31536000, immutable"
#: Cache-Control of every error response
NO_STORE = "no-store"


@dataclass(frozen=True)
class CachePolicy:
    """Validators and freshness of one response."""

    etag: str
    cache_control: str
    snapshot: int | None

    @property
    def headers(self) -> dict[str, str]:
        """Response headers: ETag, Cache-Control and the snapshot answered from (for clients and tests)."""
        out = {"ETag": self.etag, "Cache-Control": self.cache_control}
        if self.snapshot is not None:
            out["X-PixelQuery-Snapshot"] = str(self.snapshot)
        return out


class NotModified(Exception):
    """The client's ``If-None-Match`` matches: answer 304 (see ``not_modified_handler``)."""

    def __init__(self, policy: CachePolicy) -> None:
        super().__init__("not modified")
        self.policy = policy


def not_modified_handler(request: Request, exc: Exception) -> Response:
    """Answer ``NotModified`` with a 304 carrying the same validators as the 200 would."""
    assert isinstance(exc, NotModified)
    return Response(status_code=304, headers=exc.policy.headers)


def etag(*parts: object) -> str:
    """A strong ETag from everything the response depends on (hashed: the parts may be long)."""
    return '"' + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32] + '"'


def etag_matches(header: str | None, value: str) -> bool:
    """Whether ``If-None-Match`` names ``value`` (or ``*``); weak comparison, as RFC 9110 specifies for it."""
    if not header:
        return False
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    return "*" in candidates or value in candidates


def cache_policy(view: View, request: Request, head_max_age: int) -> CachePolicy:
    """The caching headers of ``request`` answered from ``view`` (see module docstring)."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    tag = etag(__version__, request.scope["path"], query, "pinned" if view.pinned else view.snapshot)
    return CachePolicy(tag, IMMUTABLE if view.pinned else f"public, max-age={head_max_age}", view.snapshot)


def levels_header(reads: list[dict]) -> str:
    """``item:level,...`` over every image read (``ImageData.metadata["levels"]``)."""
    levels: dict[str, int] = {}
    for meta in reads:
        levels.update(meta.get("levels", {}))
    return ",".join(f"{item}:{level}" for item, level in levels.items())


def response_headers(policy: CachePolicy, view: View) -> dict[str, str]:
    """Headers of a successful response answered from ``view``: caching, plus ``X-PixelQuery-Levels`` (the
    levels read, from the metadata of the images read through the view) when it read pixels."""
    headers = policy.headers
    if view.reads:
        headers["X-PixelQuery-Levels"] = levels_header(view.reads)
    return headers
