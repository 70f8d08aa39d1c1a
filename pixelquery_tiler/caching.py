"""HTTP caching and diagnostics for the tile routes: ETag, Cache-Control, 304, ``X-PixelQuery-*`` headers.

- A view pinned to a snapshot (item endpoints, ``snapshot_id=``) can never change: ``immutable``, and its ETag
  does not depend on the table head. A collection-head view may change with the next ingest: a short
  ``max-age`` and an ETag that includes the head snapshot.
- The ETag depends only on the package version, the path, the query and the view's snapshot: never on the
  ``Host`` header, so replicas behind different names agree on validators for the same bytes.
- ``conditional_get`` (a route dependency) answers ``If-None-Match`` with 304 before anything is read;
  ``ViewRoute`` (the routes' class) adds the headers to the endpoint's response, from the request's ``View``
  and the metadata of the images read through it.
- Error responses are never publicly cacheable (``no-store``, set by the app's exception handlers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from . import __version__
from .view import View

IMMUTABLE = "public, max-age=31536000, immutable"
#: Cache-Control of every error response
NO_STORE = "no-store"
#: where the path dependency leaves the request's view for ``ViewRoute`` and the WMTS template context
VIEW_STATE = "pixelquery_view"


@dataclass(frozen=True)
class CachePolicy:
    """Validators and freshness of one response."""

    etag: str
    cache_control: str
    snapshot: int | None

    @property
    def headers(self) -> dict[str, str]:
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
    assert isinstance(exc, NotModified)
    return Response(status_code=304, headers=exc.policy.headers)


def etag(*parts: object) -> str:
    return '"' + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32] + '"'


def etag_matches(header: str | None, value: str) -> bool:
    if not header:
        return False
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    return "*" in candidates or value in candidates


def cache_policy(view: View, request: Request, head_max_age: int) -> CachePolicy:
    """The caching headers of ``request`` answered from ``view`` (see module docstring)."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    tag = etag(__version__, request.scope["path"], query, "pinned" if view.pinned else view.snapshot)
    return CachePolicy(tag, IMMUTABLE if view.pinned else f"public, max-age={head_max_age}", view.snapshot)


def request_view(request: Request) -> View | None:
    """The view the path dependency resolved for this request (``None`` before it ran or on other routes)."""
    return getattr(request.state, VIEW_STATE, None)


def levels_header(reads: list[dict]) -> str:
    """``item:level,...`` over every image read (``ImageData.metadata["levels"]``)."""
    levels: dict[str, int] = {}
    for meta in reads:
        levels.update(meta.get("levels", {}))
    return ",".join(f"{item}:{level}" for item, level in levels.items())


def view_route_class(head_max_age: int) -> type[APIRoute]:
    """An ``APIRoute`` class whose successful responses carry the view's caching and diagnostics headers."""

    class ViewRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                response = await handler(request)
                view = request_view(request)
                if view is not None and 200 <= response.status_code < 300:
                    response.headers.update(cache_policy(view, request, head_max_age).headers)
                    if view.reads:
                        response.headers["X-PixelQuery-Levels"] = levels_header(view.reads)
                return response

            return handle

    return ViewRoute
