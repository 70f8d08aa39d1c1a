"""One place that maps exceptions to HTTP status codes for the tile endpoints.

Bad input must never surface as a 500: every exception a request can provoke with its path or query is
listed here with its 4xx code, and bodies are titiler's ``{"detail": ...}``. titiler's own defaults are not
installed wholesale because they map the catch-all ``Exception`` (and ``RasterioError``) to 500 for the whole
app, and they leave ``PointOutsideBounds`` unmapped (a 500 for a click outside the data).

Handlers are app-wide (Starlette has no per-router handlers); the STAC API registers its own exception types
after us, so its error format is unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI
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
from starlette.requests import Request
from starlette.responses import JSONResponse

from .index import SnapshotNotFound
from .mosaic import BandError, NoData
from .warehouse import CollectionNotFound

log = logging.getLogger(__name__)


class ItemNotFound(LookupError):
    """No such item (snapshot) in the collection."""


class InvalidParameter(ValueError):
    """A query parameter has a value the reader cannot use (datetime, resampling, band list...)."""


class TileOutsideTMS(ValueError):
    """z/x/y do not name a tile of the TileMatrixSet (as opposed to a valid tile without data)."""


class OutputTooLarge(ValueError):
    """The requested output image exceeds the pixel budget of one response."""


#: exception class -> HTTP status; subclasses inherit their base's entry (Starlette walks the MRO)
STATUS_CODES: dict[type[Exception], int] = {
    CollectionNotFound: 404,
    ItemNotFound: 404,
    SnapshotNotFound: 404,
    NoData: 404,
    EmptyMosaicError: 404,
    TileOutsideBounds: 404,
    PointOutsideBounds: 404,
    InvalidParameter: 400,
    TileOutsideTMS: 400,
    OutputTooLarge: 400,
    BandError: 400,
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


def _handler(status_code: int) -> Callable[[Request, Exception], JSONResponse]:
    def handle(request: Request, exc: Exception) -> JSONResponse:
        log.debug("%s %s -> %d: %s", request.method, request.url.path, status_code, exc)
        return JSONResponse({"detail": str(exc)}, status_code=status_code)

    return handle


def add_error_handlers(app: FastAPI) -> None:
    """Register the mapping on ``app``."""
    for exc_class, code in STATUS_CODES.items():
        app.add_exception_handler(exc_class, _handler(code))
