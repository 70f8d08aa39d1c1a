"""Request limits: how much one request may ask for, so no single request can take unbounded memory or CPU.

- Output pixels of one read (``MAX_OUTPUT_PIXELS``, ``check_output_size``) and vertices of a feature geometry
  (``MAX_GEOMETRY_VERTICES``, ``feature_geometry``): larger requests get a 400 that says what to shrink.
- The request-body cap (``BodySizeLimit``): the app reads at most ``max_bytes`` of a request body (JSON,
  GeoJSON) before parsing. Without it one POST can make a worker parse (and a validation error echo) hundreds
  of megabytes. Bodies announced larger (``Content-Length``) get 413 before a byte is read; chunked bodies are
  read up to the cap and then refused the same way. Multipart uploads are streamed by their own endpoint
  under their own cap (``serve --max-upload-mb``), so they are not limited here.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .caching import NO_STORE
from .errors import InvalidParameter, OutputTooLarge

#: Output pixel budget of one read (4096 x 4096): bounds memory and CPU per request. Larger part/preview/
#: feature/tile requests get a 400 telling the client to pass a smaller size or ``max_size``.
MAX_OUTPUT_PIXELS = 4096 * 4096

#: Most vertices a feature's geometry may have: rasterizing and reprojecting it is linear in them, and the
#: request-body cap alone still lets ~50,000 through.
MAX_GEOMETRY_VERTICES = 20_000

#: GeoJSON geometry types a feature read accepts (rio-tiler's)
GEOMETRY_TYPES = frozenset({"Polygon", "MultiPolygon", "Point", "MultiPoint", "LineString", "MultiLineString"})


def check_output_size(width: int, height: int, max_pixels: int = MAX_OUTPUT_PIXELS) -> None:
    """``OutputTooLarge`` unless a ``width`` x ``height`` output is non-empty and within ``max_pixels``."""
    if width < 1 or height < 1 or width * height > max_pixels:
        raise OutputTooLarge(
            f"output of {width}x{height} pixels exceeds the limit of {max_pixels} pixels; "
            "ask for a smaller width/height/max_size or tilesize"
        )


def check_vertices(count: int, max_vertices: int = MAX_GEOMETRY_VERTICES) -> None:
    """``OutputTooLarge`` for a geometry of more than ``max_vertices`` vertices."""
    if count > max_vertices:
        raise OutputTooLarge(f"geometry has {count} vertices; at most {max_vertices} vertices are accepted")


def feature_geometry(shape: Any, max_vertices: int = MAX_GEOMETRY_VERTICES) -> dict:
    """The GeoJSON geometry of a Feature or geometry (rio-tiler's rule), checked enough to rasterize."""
    if not isinstance(shape, dict):
        raise InvalidParameter("a feature must be a GeoJSON Feature or geometry object")
    geometry = shape.get("geometry", shape) if shape.get("type") == "Feature" else shape
    if not isinstance(geometry, dict) or geometry.get("type") not in GEOMETRY_TYPES:
        raise InvalidParameter("invalid GeoJSON geometry")
    check_vertices(vertex_count(geometry.get("coordinates")), max_vertices)
    return geometry


def vertex_count(coordinates: Any) -> int:
    """Positions in a GeoJSON coordinates array (any nesting), without recursion."""
    count, stack = 0, [coordinates]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            if node and isinstance(node[0], (int, float)):
                count += 1
            else:
                stack.extend(node)
    return count


# -- request bodies -------------------------------------------------------------------------------------------------
#: content types this cap leaves to their endpoints (streamed uploads)
STREAMED_TYPES = ("multipart/form-data", "application/octet-stream")


class BodySizeLimit:
    """Pure ASGI middleware (see module docstring)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if headers.get("content-type", "").split(";")[0].strip().lower() in STREAMED_TYPES:
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # chunked: buffer up to the cap (bounded memory), then replay
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body larger than {self.max_bytes} bytes"},
            status_code=413,
            headers={"Cache-Control": NO_STORE, "Connection": "close"},
        )
        await response(scope, receive, send)
