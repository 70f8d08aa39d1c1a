"""The package's exception hierarchy: every error a request or a Python caller can provoke derives from
``PixelQueryError``, and from ``LookupError`` (not found) or ``ValueError`` (bad input) so callers that
only know the standard library can still tell them apart.

This module imports nothing from the package, so any module can raise these without an import cycle. The
mapping to HTTP status codes is not here: it lives in the app layer (``app.STATUS_CODES``).
"""

from __future__ import annotations


class PixelQueryError(Exception):
    """Base of every error pixelquery-tiler raises on purpose."""


class NotFound(PixelQueryError, LookupError):
    """Something a request names does not exist (collection, item, snapshot, data in the window)."""


class BadRequest(PixelQueryError, ValueError):
    """A request asks for something the server cannot or will not do."""


class ItemNotFound(NotFound):
    """No such item (snapshot) in the collection."""


class NoData(NotFound):
    """No observation intersects the request (an empty view, or a window outside the data)."""


class InvalidParameter(BadRequest):
    """A query parameter has a value the reader cannot use (datetime, resampling, band list...)."""


class BandError(InvalidParameter):
    """Requested bands are not in the collection."""


class TileOutsideTMS(BadRequest):
    """z/x/y do not name a tile of the TileMatrixSet (as opposed to a valid tile without data)."""


class OutputTooLarge(BadRequest):
    """The requested output image (or histogram, expression, geometry) exceeds the budget of one response."""
