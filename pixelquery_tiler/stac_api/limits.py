"""Size limits of STAC API requests, and validation errors that quote the input only briefly.

A search is cheap only while its inputs are small: a 32 MB ``intersects`` body grew a worker from 0.6 to
4.3 GB, and validation errors that echo the whole input turn a large request into a larger answer. Every
list and geometry a client sends is bounded here, and bodies are refused before they are parsed.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from stac_fastapi.types.errors import InvalidQueryParameter
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

#: largest request body of a STAC POST (a search with a detailed AOI is a few hundred KB)
MAX_BODY_BYTES = 1_000_000
#: most entries in ``ids`` / ``collections``
MAX_LIST_ITEMS = 1_000
#: most ``sortby`` keys and ``fields`` entries
MAX_SORT_KEYS = 16
MAX_FIELDS = 100
#: most vertices in an ``intersects`` geometry or a CQL2 geometry literal
MAX_VERTICES = 10_000

__all__ = ["MAX_BODY_BYTES", "MAX_FIELDS", "MAX_LIST_ITEMS", "MAX_SORT_KEYS", "MAX_VERTICES", "add_limits"]


def excerpt(value: Any, limit: int = 60) -> str:
    """A short quotation of client input for an error message (errors never echo whole inputs)."""
    text = value if isinstance(value, str) else repr(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


class BodyLimitMiddleware:
    """Refuse POST/PUT/PATCH bodies larger than ``max_bytes`` under ``prefix`` with 413, before parsing.

    A declared ``Content-Length`` is checked up front; a chunked body is counted as it arrives.
    """

    def __init__(self, app: ASGIApp, prefix: str, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.prefix = prefix
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("POST", "PUT", "PATCH")
            or not scope["path"].startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge(413, f"request body is larger than {self.max_bytes} bytes")
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"code": "RequestTooLarge", "description": f"request body is larger than {self.max_bytes} bytes"},
            status_code=413,
        )
        await response(scope, receive, send)


class _TooLarge(HTTPException):
    """Raised while FastAPI reads a chunked body; an ``HTTPException`` so FastAPI answers it as a 413."""


def _short_error(error: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error with its ``input`` and ``ctx`` quoted briefly (never the whole input)."""
    out: dict[str, Any] = {k: error[k] for k in ("type", "loc", "msg") if k in error}
    out["msg"] = excerpt(str(out.get("msg", "")), 200).strip("'\"")
    if "input" in error:
        value = error["input"]
        short = value is None or isinstance(value, bool) or (isinstance(value, int) and abs(value) < 10**15)
        out["input"] = value if short else excerpt(value)
    if "ctx" in error:
        out["ctx"] = {k: excerpt(v) if not isinstance(v, (int, str)) else v for k, v in error["ctx"].items()}
    return out


def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 with the validation errors, each quoting at most a short excerpt of the input.

    Replaces stac-fastapi's handler, which echoes the whole body (``"body": ...``): a 50 MB request got a
    200 MB answer, and a body holding ``-Infinity`` could not be encoded at all (a 500).
    """
    errors = [_short_error(e) for e in exc.errors()[:20]]
    return JSONResponse(jsonable_encoder({"detail": errors}), status_code=400)


def bad_request_handler(request: Request, exc: Exception) -> JSONResponse:
    """STAC's ``{"code", "description"}`` 400, logged at debug: stac-fastapi's handler logs every bad request at
    ERROR with a traceback, so a client sending garbage could flood the logs."""
    log.debug("%s %s -> 400: %s", request.method, request.url.path, exc)
    return JSONResponse({"code": type(exc).__name__, "description": str(exc)}, status_code=400)


def add_limits(app: FastAPI, prefix: str) -> None:
    """Register the body limit for ``prefix`` and the brief validation-error handlers (app-wide)."""
    app.add_middleware(BodyLimitMiddleware, prefix=prefix)
    # typed for the exception it is registered for (Starlette's signature says any Exception)
    app.add_exception_handler(RequestValidationError, validation_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(InvalidQueryParameter, bad_request_handler)


def vertex_count(geojson: Any) -> int:
    """Positions in a GeoJSON geometry (or Feature), counted iteratively before any library parses it."""
    count, stack = 0, [geojson]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item[k] for k in ("coordinates", "geometries", "geometry") if k in item)
        elif isinstance(item, list):
            if item and all(isinstance(v, (int, float)) for v in item):
                count += 1
            else:
                stack.extend(item)
    return count
