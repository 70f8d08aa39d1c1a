"""Request-body cap: the app reads at most ``max_bytes`` of a request body (JSON, GeoJSON) before parsing.

Without it one POST can make a worker parse (and a validation error echo) hundreds of megabytes. Bodies
announced larger (``Content-Length``) get 413 before a byte is read; chunked bodies are read up to the cap
and then refused the same way. Multipart uploads are streamed by their own endpoint under their own cap
(``serve --max-upload-mb``), so they are not limited here.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .caching import NO_STORE

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
