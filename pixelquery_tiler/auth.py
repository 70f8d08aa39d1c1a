"""API keys: writes behind ``Authorization: Bearer KEY``, reads optionally too (``--read-auth``).

Keys are kept only as SHA-256 digests and compared with ``hmac.compare_digest`` against every configured key
(no early exit), so neither the comparison time nor a memory dump gives a key away. Keys never reach a log:
the access log filter below removes ``token=`` values from uvicorn's request lines.

Browsers cannot send headers with ``<img>`` tile requests, so reads also accept ``?token=KEY``; a JSON or XML
document fetched with a token (TileJSON, WMTS capabilities, STAC) gets the token appended to every link back
to this server, so clients that follow links keep working.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote

from fastapi import HTTPException, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

#: paths open even under ``--read-auth``: probes, and the viewer shell (it holds no data; it asks for the key)
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/static/", "/favicon.ico")
PUBLIC_PATHS = ("/", "/viewer", "/viewer/")
TOKEN_PARAM = "token"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    """The server's API keys (digests only)."""

    def __init__(self, keys: Iterable[str] = ()):
        self._digests = [_digest(k) for k in dict.fromkeys(k.strip() for k in keys) if k]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def check(self, key: str | None) -> bool:
        """Whether ``key`` is one of the keys, comparing digests in constant time and checking every key."""
        if not key:
            return False
        candidate = _digest(key)
        ok = False
        for digest in self._digests:
            ok |= hmac.compare_digest(candidate, digest)
        return ok


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (scheme case-insensitive), else ``None``."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def request_key(request: Request) -> str | None:
    """The request's API key: the bearer header, else the ``token`` query parameter (for map clients)."""
    return bearer(request.headers.get("authorization")) or request.query_params.get(TOKEN_PARAM)


def write_guard(keys: KeyRing):
    """FastAPI dependency for write endpoints: 403 when writes are disabled, 401 without a valid key."""

    def require_write_key(request: Request) -> None:
        if not keys:
            raise HTTPException(403, "writes are disabled on this server (start it with --api-key)")
        key = bearer(request.headers.get("authorization"))
        if not keys.check(key):
            raise HTTPException(
                401,
                "missing or invalid API key" if key else "an API key is required: Authorization: Bearer KEY",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_write_key


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


_LINKED_TYPES = (
    b"application/json",
    b"application/geo+json",
    b"application/xml",
    b"text/xml",
    b"application/vnd.oai",
    b"application/schema+json",
)


class ReadAuthMiddleware:
    """Pure ASGI: reads need a key when ``read_auth``; links in documents fetched with ``?token=`` carry it."""

    def __init__(self, app: ASGIApp, keys: KeyRing, read_auth: bool):
        self.app = app
        self.keys = keys
        self.read_auth = read_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.read_auth and request.method != "OPTIONS" and not _is_public(scope["path"]):
            key = request_key(request)
            if not self.keys.check(key):
                await _unauthorized(send, bool(key))
                return
        token = request.query_params.get(TOKEN_PARAM)
        if not token or not self.keys.check(token):
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _LinkTokenSender(send, str(request.base_url).rstrip("/"), token).send)


async def _unauthorized(send: Send, had_key: bool) -> None:
    body = b'{"detail":"' + (b"invalid API key" if had_key else b"an API key is required (Bearer or ?token=)") + b'"}'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _LinkTokenSender:
    """Buffers a JSON/XML response and appends ``token=`` to every absolute link to this server."""

    def __init__(self, send: Send, base_url: str, token: str):
        self._send = send
        self._start: Message | None = None
        self._chunks: list[bytes] = []
        self._rewrite = False
        self._pattern = re.compile(re.escape(base_url).encode() + rb"[^\"'<>\s]*")
        self._token = quote(token, safe="").encode()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            ctype = dict(message.get("headers", [])).get(b"content-type", b"")
            self._rewrite = ctype.startswith(_LINKED_TYPES)
            if not self._rewrite:
                await self._send(message)
            else:
                self._start = message
            return
        if message["type"] != "http.response.body" or not self._rewrite:
            await self._send(message)
            return
        self._chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        start = self._start or {}
        body = b"".join(self._chunks)
        is_xml = b"xml" in dict(start.get("headers", [])).get(b"content-type", b"")
        body = self._pattern.sub(lambda m: self._with_token(m.group(0), is_xml), body)
        headers = MutableHeaders(raw=list(start.get("headers", [])))
        headers["content-length"] = str(len(body))
        await self._send({**start, "headers": headers.raw})
        await self._send({"type": "http.response.body", "body": body})

    def _with_token(self, url: bytes, is_xml: bool) -> bytes:
        if b"token=" in url:
            return url
        amp = b"&amp;" if is_xml else b"&"
        return url + (amp if b"?" in url else b"?") + b"token=" + self._token


class RedactTokens(logging.Filter):
    """Removes ``token=`` values from log records (uvicorn's access log prints request paths with queries)."""

    _pattern = re.compile(r"(token=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the token values in place; always keeps the record."""
        if isinstance(record.args, tuple):
            record.args = tuple(self._pattern.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = self._pattern.sub(r"\1***", record.msg)
        return True


def install_log_redaction() -> None:
    """Add ``RedactTokens`` to uvicorn's loggers once (idempotent: app factories may run twice)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
