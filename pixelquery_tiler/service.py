"""Ingest as a service: the job and upload endpoints, API keys, rate limits and operations on one app.

``add_jobs_api(app, warehouse, settings)`` is the single registration call ``create_app`` makes; its knobs
(API keys, import roots, job workers, rate limit...) are fields of the app's one :class:`~.settings.Settings`.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from .auth import KeyRing, ReadAuthMiddleware, install_log_redaction, write_guard
from .catalog import CatalogError
from .jobs import (
    STATUSES,
    JobStore,
    SourceError,
    WorkerOptions,
    WorkerPool,
    check_source,
)
from .ops import (
    Metrics,
    MetricsMiddleware,
    RateLimitMiddleware,
    RouteLabels,
    add_operations,
    parse_rate,
)
from .pipeline import IngestOptions
from .profiles import ProfileError, get_profile
from .settings import Settings
from .temporal import parse_instant
from .uploads import receive_upload
from .warehouse import Warehouse

log = logging.getLogger(__name__)


class JobRequest(IngestOptions):
    """``POST /jobs`` body (CONTRACT "Jobs, writes and operations"); unknown fields are refused (422)."""

    sources: list[str | dict[str, Any]] = Field(min_length=1, max_length=1000)


def validate_job(request: JobRequest, warehouse: Warehouse, settings: Settings) -> dict[str, Any]:
    """400 for a request that is well-formed but unusable (forbidden path, unknown upload/product, bad datetime)."""
    try:
        if request.product:
            get_profile(request.product)
        if request.datetime:
            parse_instant(request.datetime)
        for source in request.sources:
            check_source(warehouse, source, settings.import_roots)
    except (SourceError, ProfileError, ValueError) as exc:
        raise HTTPException(400, str(exc)) from None
    return request.model_dump(exclude_none=True)


@dataclass
class JobsService:
    """What the routes share: the store, the in-process workers and the settings."""

    warehouse: Warehouse
    settings: Settings
    store: JobStore | None
    metrics: Metrics
    pool: WorkerPool | None = None

    def submit(self, body: dict[str, Any]) -> JSONResponse:
        """Queue a validated request and answer 202 with its ``Location``; wakes this process's workers."""
        assert self.store is not None  # the routes that submit depend on require_jobs (a 503 without a store)
        job = self.store.submit(body, max_attempts=self.settings.job_attempts)
        if self.pool:
            self.pool.wake()
        return JSONResponse(job.to_json(), status_code=202, headers={"Location": f"/jobs/{job.id}"})


def add_jobs_api(app: FastAPI, warehouse: Warehouse, settings: Settings) -> JobsService:
    """Register jobs, uploads, STAC transactions, auth, rate limits and operations on ``app``."""
    from .stac_api.transactions import add_transactions

    keys = KeyRing(settings.api_keys)
    metrics = Metrics()
    try:  # a database down at start-up is waited out by the store itself (JobStore._ensure_table)
        store: JobStore | None = JobStore.for_warehouse(warehouse)
    except CatalogError as exc:  # a remote warehouse on a REST catalog: no SQL database for a job table
        log.warning("jobs disabled: %s", exc)
        store = None
    if store is not None:
        metrics.add_jobs_gauge(store.counts)
    warehouse.on_index_refresh = lambda _name, _seconds: metrics.index_refreshes.inc()
    service = JobsService(warehouse, settings, store, metrics)
    app.state.jobs = service
    guard = write_guard(keys)

    def require_jobs(request: Request) -> JobStore:
        if store is None:
            raise HTTPException(503, "jobs need a SQL catalog database (serve --catalog-uri postgresql+psycopg2://...)")
        return store

    def require_write_jobs(request: Request) -> None:
        guard(request)
        require_jobs(request)

    require_write = Depends(require_write_jobs)
    max_bytes = settings.max_upload_mb << 20

    @app.post("/jobs", status_code=202, dependencies=[require_write], tags=["Jobs"])
    def submit_job(request: JobRequest) -> JSONResponse:
        """Queue an ingest job; poll ``Location`` for its status."""
        return service.submit(validate_job(request, warehouse, settings))

    @app.get("/jobs", tags=["Jobs"])
    def list_jobs(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        status: Annotated[str | None, Query(pattern="^(" + "|".join(STATUSES) + ")$")] = None,
    ) -> dict:
        """Jobs, newest first; ``writes`` tells clients (the viewer's "Add imagery" panel) whether keys exist."""
        jobs = require_jobs(request)
        return {"jobs": [j.to_json() for j in jobs.list(limit, status)], "writes": bool(keys)}

    @app.get("/jobs/{job_id}", tags=["Jobs"])
    def get_job(job_id: str, request: Request) -> dict:
        job = require_jobs(request).get(job_id)
        if job is None:
            raise HTTPException(404, f"job {job_id!r} not found")
        return job.to_json()

    @app.post("/uploads", status_code=201, dependencies=[require_write], tags=["Jobs"])
    async def upload(request: Request) -> JSONResponse:
        """Multipart field ``file``, streamed into the warehouse's upload area; answers an ``upload://`` source."""
        return JSONResponse(await receive_upload(request, warehouse, max_bytes), status_code=201)

    add_transactions(app, service, require_write)

    def ready() -> None:
        warehouse.collections()
        if store is not None:
            store.ping()

    add_operations(app, metrics, ready)
    # outermost first: metrics see every answer (429s and 401s too), then the limiter, then auth
    app.add_middleware(ReadAuthMiddleware, keys=keys, read_auth=settings.read_auth)
    if settings.rate_limit:
        app.add_middleware(RateLimitMiddleware, limit=parse_rate(settings.rate_limit), keys=keys, metrics=metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics, labels=RouteLabels(app), json_log=settings.access_log_json)
    install_log_redaction()
    if settings.access_log_json:
        _json_access_log()
    app.router.lifespan_context = _with_workers(app.router.lifespan_context, service)
    return service


def _json_access_log() -> None:
    """Access lines as bare JSON on stderr (the middleware formats them; no query strings, so no keys)."""
    import sys

    from .ops import access_log

    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def _with_workers(inner, service: JobsService):
    """Run ``settings.job_workers`` worker threads for the app's lifetime (0 = this server runs no jobs)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with inner(app) as state:
            store = service.store
            count = service.settings.job_workers if store is not None else 0
            if store is not None and count > 0:
                service.pool = WorkerPool(
                    service.warehouse, store, count, WorkerOptions(lease=service.settings.job_lease)
                )
                service.pool.start()
                log.info("%d job worker(s) started", count)
            try:
                yield state
            finally:
                if service.pool:
                    service.pool.stop()
                    service.pool = None

    return lifespan
