"""Operations: health probes, Prometheus metrics, rate limiting and JSON access logs.

Metrics use ``prometheus-client`` (its own registry per app, so two apps in one process do not collide) and
one pure-ASGI middleware that labels requests by *route template* (``/collections/{collection_id}/tiles/...``),
never by raw path, so label cardinality stays bounded. With several uvicorn worker processes each process
exposes its own counters (Prometheus sums them per instance label only if scraped per process); run one
process per container when exact totals matter.

Rate limiting uses ``limits`` (sliding window counter, in-memory per process) keyed by the API key (hashed) or
the client address; over the limit answers 429 with ``Retry-After`` seconds until the window frees a slot. The
asyncio flavour of ``limits`` is used: its threaded memory storage starts a ``threading.Timer`` thread for
expiry whenever the previous one has finished, i.e. on most requests of a lightly loaded server (milliseconds
each, measured in benchmarks/README.md "Service"); the sliding counter is O(1) per request, where the exact
moving window keeps one timestamp per request in the window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import KeyRing, request_key

log = logging.getLogger(__name__)
access_log = logging.getLogger("pixelquery_tiler.access")

#: probes and the scrape itself are neither rate limited nor counted as traffic
UNMETERED = ("/healthz", "/readyz", "/metrics")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNITS = {"s": "second", "sec": "second", "m": "minute", "min": "minute", "h": "hour"}


def parse_rate(text: str) -> RateLimitItem:
    """``N/s`` (also ``N/second``, ``N/m``, ``N/h``) as a ``limits`` item; ``ValueError`` otherwise."""
    m = _RATE.match(text or "")
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"invalid rate limit {text!r} (use e.g. 50/s)")
    return parse(f"{m.group(1)}/{_UNITS.get(m.group(2), m.group(2))}")


class Metrics:
    """The app's Prometheus registry and instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pixelquery_http_requests_total",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pixelquery_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.tiles = Counter("pixelquery_tiles_served_total", "Tile images answered with 200", registry=self.registry)
        self.not_modified = Counter(
            "pixelquery_http_not_modified_total", "Conditional requests answered 304", ["route"], registry=self.registry
        )
        self.rate_limited = Counter(
            "pixelquery_rate_limited_total", "Requests refused with 429", registry=self.registry
        )
        self.index_refreshes = Counter(
            "pixelquery_index_refreshes_total",
            "Collection index rebuilds after a new table head",
            registry=self.registry,
        )

    def add_jobs_gauge(self, counts: Callable[[], dict[str, int]]) -> None:
        """``pixelquery_jobs{status}`` read from the job table at scrape time (shared by every replica)."""
        registry = self.registry

        class JobsCollector:
            def collect(self):
                family = GaugeMetricFamily("pixelquery_jobs", "Jobs in the queue by status", labels=["status"])
                try:
                    for status, n in counts().items():
                        family.add_metric([status], n)
                except Exception:
                    log.warning("jobs gauge: job table unavailable", exc_info=True)
                yield family

        registry.register(JobsCollector())


class RouteLabels:
    """Route template of a request, for metric labels.

    Normally the router has put the matched route in the scope. Requests answered before routing (429, 401,
    the tile cache's 304s) or routed on a copy of the scope (the tile middleware) are matched here against the
    app's public route templates (its OpenAPI paths plus its top-level routes), built once on first need.
    """

    def __init__(self, app: FastAPI):
        self.app = app
        self._patterns: list[tuple[re.Pattern, str]] | None = None

    def _build(self) -> list[tuple[re.Pattern, str]]:
        templates = [getattr(r, "path", None) for r in self.app.router.routes]
        try:
            templates += list(self.app.openapi().get("paths", {}))
        except Exception:  # a broken schema must not break metrics
            log.warning("metrics: no OpenAPI paths for route labels", exc_info=True)
        patterns = []
        for template in dict.fromkeys(t for t in templates if t):
            regex = compile_path(template)[0]
            patterns.append((regex, template))
        return patterns

    def __call__(self, scope: Scope) -> str:
        path = getattr(scope.get("route"), "path", None)
        if path:
            return path
        if self._patterns is None:
            self._patterns = self._build()
        request_path = scope.get("path", "")
        for regex, template in self._patterns:
            if regex.match(request_path):
                return template
        return "/static" if request_path.startswith("/static/") else "(unmatched)"


class MetricsMiddleware:
    """Counts and times every request by route template; also the optional JSON access log."""

    def __init__(self, app: ASGIApp, metrics: Metrics, labels: RouteLabels, json_log: bool = False):
        self.app = app
        self.metrics = metrics
        self.labels = labels
        self.json_log = json_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNMETERED:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            route, method = self.labels(scope), scope["method"]
            m = self.metrics
            m.requests.labels(method, route, str(status)).inc()
            m.latency.labels(method, route).observe(elapsed)
            if status == 304:
                m.not_modified.labels(route).inc()
            elif status == 200 and "/tiles/" in route and "{z}" in route:
                m.tiles.inc()
            if self.json_log:
                client = scope.get("client")
                # the path only: query strings may hold ?token=KEY
                access_log.info(
                    json.dumps(
                        {
                            "ts": time.time(),
                            "method": method,
                            "path": scope["path"],
                            "route": route,
                            "status": status,
                            "ms": round(elapsed * 1000, 2),
                            "client": client[0] if client else None,
                        }
                    )
                )


class RateLimitMiddleware:
    """``limit`` requests per client key (or address) in a sliding window; 429 + ``Retry-After`` beyond."""

    def __init__(self, app: ASGIApp, limit: RateLimitItem, keys: KeyRing, metrics: Metrics | None = None):
        self.app = app
        self.limit = limit
        self.keys = keys
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.metrics = metrics

    def client_id(self, scope: Scope) -> str:
        """The rate-limit bucket: per valid API key (hashed) wherever it calls from, else per client IP."""
        request = Request(scope)
        key = request_key(request)
        if key and self.keys.check(key):  # one bucket per valid key wherever its clients are; hashed, never kept
            return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
        client = scope.get("client")
        return "ip:" + (client[0] if client else "unknown")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNMETERED:
            await self.app(scope, receive, send)
            return
        who = self.client_id(scope)
        if await self.limiter.hit(self.limit, who):
            await self.app(scope, receive, send)
            return
        reset = (await self.limiter.get_window_stats(self.limit, who)).reset_time
        retry = max(1, math.ceil(reset - time.time()))
        if self.metrics:
            self.metrics.rate_limited.inc()
        response = JSONResponse(
            {"detail": f"rate limit exceeded ({self.limit}); retry in {retry} s"},
            status_code=429,
            headers={"Retry-After": str(retry)},
        )
        await response(scope, receive, send)


def add_operations(app: FastAPI, metrics: Metrics, ready: Callable[[], None]) -> None:
    """``/healthz`` (process alive), ``/readyz`` (``ready()`` raises when the catalog is unreachable), ``/metrics``."""

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        try:
            ready()
        except Exception as exc:
            log.warning("not ready: %s", exc)
            return JSONResponse(
                {"status": "unavailable", "detail": str(exc).splitlines()[0] if str(exc) else type(exc).__name__},
                status_code=503,
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
