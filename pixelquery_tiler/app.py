"""The FastAPI application: tiles (titiler.core), STAC API (stac-fastapi) and viewer on one app.

Each concern registers its routes from its own module; this module composes them and owns what is
app-wide: the settings, the middleware (CORS, request-body cap) and the map from exceptions to HTTP status
codes (titiler's ``add_exception_handlers`` style). Handlers are registered last, so they also replace
stac-fastapi's validation handler (which echoes the whole request body back).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from rio_tiler.errors import (
    EmptyMosaicError,
    InvalidBandName,
    InvalidBounds,
    InvalidBufferSize,
    InvalidColorFormat,
    InvalidColorMapName,
    InvalidExpression,
    InvalidFormat,
    InvalidGeographicBounds,
    InvalidMosaicMethod,
    MaxArraySizeError,
    MissingBands,
    PointOutsideBounds,
    TileOutsideBounds,
)
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse

from .caching import NO_STORE, NotModified, not_modified_handler
from .errors import BadRequest, NotFound
from .limits import BodySizeLimit
from .settings import Settings, env_name
from .warehouse import Warehouse

log = logging.getLogger(__name__)

#: exception class -> HTTP status; subclasses inherit their base's entry (Starlette walks the MRO). Bad input
#: must never surface as a 500: every exception a request can provoke is listed with its 4xx code. titiler's
#: defaults are not installed wholesale: they map ``Exception`` and ``RasterioError`` to 500 app-wide and leave
#: ``PointOutsideBounds`` unmapped.
STATUS_CODES: dict[type[Exception], int] = {
    NotFound: 404,  # CollectionNotFound, ItemNotFound, SnapshotNotFound, NoData
    BadRequest: 400,  # InvalidParameter, BandError, TileOutsideTMS, OutputTooLarge
    EmptyMosaicError: 404,
    TileOutsideBounds: 404,
    PointOutsideBounds: 404,
    MissingBands: 400,
    InvalidBandName: 400,
    InvalidExpression: 400,
    InvalidFormat: 400,
    InvalidColorFormat: 400,
    InvalidColorMapName: 400,
    InvalidBufferSize: 400,
    InvalidBounds: 400,
    InvalidGeographicBounds: 400,
    InvalidMosaicMethod: 400,
    MaxArraySizeError: 400,
}
#: longest excerpt of a client's input quoted back in a validation error
ERROR_EXCERPT = 80


def create_app(
    warehouse: str | Warehouse,
    *,
    catalog_uri: str | None = None,
    refresh_interval: float = 1.0,
    settings: Settings | None = None,
) -> FastAPI:
    """Serve ``warehouse`` (a URI or an open ``Warehouse``); ``settings`` default to the environment's."""
    from .stac_api import add_stac_api
    from .tiles import add_tiles, nullable_statistics_schema
    from .timeseries import add_timeseries
    from .viewer import add_api_docs, add_viewer

    settings = settings or Settings()
    pin_gdal_data_dirs()
    wh = (
        warehouse
        if isinstance(warehouse, Warehouse)
        else Warehouse(warehouse, catalog_uri=catalog_uri, refresh_interval=refresh_interval)
    )
    app = FastAPI(
        title="pixelquery-tiler",
        description="XYZ/WMTS tiles and a STAC API over a PixelQuery warehouse",
        docs_url=None,
        openapi_url="/api",
    )
    app.state.warehouse = wh
    app.state.settings = settings
    _add_catalog_unavailable(app)
    add_tiles(app, wh, settings)
    add_stac_api(app, wh)
    add_timeseries(app, wh, settings)
    add_viewer(app, wh)
    from .service import add_jobs_api

    add_jobs_api(app, wh, settings)  # auth, rate limits, metrics: inside the app-wide middleware below
    add_api_docs(app)
    add_middleware(app, settings)
    add_exception_handlers(app, STATUS_CODES)
    _patch_openapi(app, nullable_statistics_schema)
    return app


def pin_gdal_data_dirs() -> None:
    """Put the GDAL and PROJ data directories rasterio found at import into the environment when they are unset.

    titiler opens a ``rasterio.Env`` per request, and without ``GDAL_DATA``/``PROJ_DATA`` in the environment each
    one searches the file system for them again (about half of its cost: 30 vs 15 us per request, measured).
    Only rasterio's own (wheel) directories are pinned, the ones it uses anyway; a system GDAL or PROJ with
    built-in paths, or a directory the operator set, is left alone.
    """
    import os

    from rasterio.env import GDALDataFinder, PROJDataFinder

    if "GDAL_DATA" not in os.environ and (gdal_data := GDALDataFinder().search_wheel()):
        os.environ["GDAL_DATA"] = gdal_data
    if not {"PROJ_DATA", "PROJ_LIB"} & os.environ.keys() and (proj_data := PROJDataFinder().search_wheel()):
        os.environ["PROJ_DATA"] = proj_data


def _add_catalog_unavailable(app: FastAPI) -> None:
    """A catalog server that is down (PostgreSQL, REST) makes every request that needs it a 503 with
    ``Retry-After``, so a proxy tries another replica and the replica recovers by itself when it is back."""
    from starlette.responses import JSONResponse

    from .catalog import unavailable_errors

    def unavailable(request: Request, exc: Exception) -> JSONResponse:
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return JSONResponse(
            {"detail": f"catalog unavailable: {text}"},
            status_code=503,
            headers={"Retry-After": "1", "Cache-Control": "no-store"},
        )

    for exc_type in unavailable_errors():
        app.add_exception_handler(exc_type, unavailable)


def add_middleware(app: FastAPI, settings: Settings) -> None:
    """App-wide middleware, outermost last: request-body cap, then CORS (so its errors carry CORS headers too).

    CORS: any origin by default (tiles and STAC reads are public) and never with credentials: the API's
    bearer keys travel in ``Authorization``, not in cookies.
    """
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_credentials=False,
        # writes (jobs, uploads, STAC Transactions) send a bearer key and may DELETE
        allow_methods=["OPTIONS", "POST", "GET", "DELETE"],
        allow_headers=["Content-Type", "Authorization"],
        max_age=600,
    )


def _json_error(status_code: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers={"Cache-Control": NO_STORE})


def add_exception_handlers(app: FastAPI, status_codes: dict[type[Exception], int]) -> None:
    """titiler's ``add_exception_handlers``, with error responses that are never cacheable."""

    def handler_for(status_code: int):
        def handle(request: Request, exc: Exception) -> JSONResponse:
            log.debug("%s %s -> %d: %s", request.method, request.url.path, status_code, exc)
            return _json_error(status_code, str(exc))

        return handle

    for exc_class, code in status_codes.items():
        app.add_exception_handler(exc_class, handler_for(code))
    app.add_exception_handler(NotModified, not_modified_handler)
    app.add_exception_handler(RequestValidationError, validation_error)


def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """400 naming each invalid field, quoting at most a short excerpt of the input (never the whole body)."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors()[:20]:
        out = {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", ""))[:200], "type": error.get("type")}
        if "input" in error:
            text = repr(error["input"])
            out["input"] = text if len(text) <= ERROR_EXCERPT else text[:ERROR_EXCERPT] + "..."
        errors.append(out)
    return _json_error(400, errors)


def _patch_openapi(app: FastAPI, patch: Any) -> None:
    """Apply ``patch`` to the generated OpenAPI document once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if not getattr(openapi, "patched", False):
            app.openapi_schema = patch(generate())
            openapi.patched = True  # type: ignore[attr-defined]  # a flag on the function itself
        return app.openapi_schema  # type: ignore[return-value]  # set on the first call

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend OpenAPI


def app_from_env() -> FastAPI:
    """uvicorn factory for ``pixelquery-tiler serve`` (workers re-create the app from the environment)."""
    settings = Settings()
    if not settings.warehouse:
        raise RuntimeError(f"{env_name('warehouse')} is not set")
    return create_app(
        settings.warehouse,
        catalog_uri=settings.catalog_uri,
        refresh_interval=settings.refresh_interval,
        settings=settings,
    )
