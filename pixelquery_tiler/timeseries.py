"""HTTP time series: per point and per polygon, one entry per observation, oldest first.

- ``GET /collections/{cid}/timeseries/point/{lon},{lat}``: a GeoJSON Feature whose ``properties.series`` holds
  the native pixel under the point for every item covering it (masked -> ``null``).
- ``POST /collections/{cid}/timeseries/statistics`` with a GeoJSON Feature or (Multi)Polygon body: statistics
  per observation over its native pixels whose centres fall inside the geometry.

Both take ``bands``, ``expression``, ``datetime`` and ``snapshot_id`` like the tile endpoints and cache like
them: immutable with an ETag when ``snapshot_id`` pins the view, a short max-age with an ETag that changes
with the table head otherwise, ``If-None-Match`` -> 304. Errors go through the app's exception handlers (one
status map for every route, never stored by shared caches). The pixel work lives in ``analysis``; this
module only parses, validates and caches, in one handler (``answer``) for both routes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Path, Query
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import __version__
from .analysis import point_series, polygon_statistics
from .caching import IMMUTABLE, etag, etag_matches
from .errors import InvalidParameter
from .limits import check_vertices
from .settings import Settings
from .temporal import parse_interval
from .warehouse import Collection, Warehouse

log = logging.getLogger(__name__)

PREFIX = "/collections/{cid}/timeseries"
GEOMETRY_TYPES = ("Polygon", "MultiPolygon")


def _interval(datetime: str | None) -> tuple[Any, Any]:
    if not datetime:
        return None, None
    try:
        return parse_interval(datetime)
    except ValueError as exc:
        raise InvalidParameter(f"invalid datetime {datetime!r}: {exc}") from None


def _cached(
    request: Request,
    warehouse: Warehouse,
    head_max_age: int,
    cid: str,
    snapshot_id: int | None,
    body: bytes,
    compute: Callable,
) -> Response:
    """Answer ``compute()`` as JSON with the read caching rules (see module docstring)."""
    collection = warehouse.collection(cid)
    pinned = snapshot_id is not None
    version = "pinned" if pinned else collection.index().snapshot_id
    tag = etag(__version__, request.url.path, request.url.query, version, hashlib.sha256(body).hexdigest())
    headers = {"ETag": tag, "Cache-Control": IMMUTABLE if pinned else f"public, max-age={head_max_age}"}
    if etag_matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    return JSONResponse(compute(collection), headers=headers)


def parse_geometry(body: bytes) -> dict:
    """A GeoJSON Polygon/MultiPolygon (WGS84) from a Feature or geometry body; ``InvalidParameter`` otherwise."""
    from shapely.geometry import shape

    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidParameter(f"body is not JSON: {exc}") from None
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        doc = doc.get("geometry")
    if not isinstance(doc, dict) or doc.get("type") not in GEOMETRY_TYPES:
        raise InvalidParameter(
            "body must be a GeoJSON Feature with a Polygon/MultiPolygon geometry, or such a geometry"
        )
    polygons = doc.get("coordinates")
    polygons = [polygons] if doc["type"] == "Polygon" else polygons
    vertices = 0
    if not isinstance(polygons, list) or not polygons:
        raise InvalidParameter("geometry has no coordinates")
    for rings in polygons:
        if not isinstance(rings, list) or not rings:
            raise InvalidParameter("a polygon needs at least one ring")
        for ring in rings:
            if not isinstance(ring, list) or len(ring) < 4:
                raise InvalidParameter("a polygon ring needs at least 4 positions")
            for pos in ring:
                if not isinstance(pos, list) or len(pos) not in (2, 3) or not all(map(_is_number, pos)):
                    raise InvalidParameter(f"invalid position {pos!r}: expected [lon, lat]")
                if not (-180 <= pos[0] <= 180 and -90 <= pos[1] <= 90):
                    raise InvalidParameter(f"position {pos!r} is outside longitude/latitude range")
            vertices += len(ring)
    check_vertices(vertices)
    try:
        geom = shape(doc)
    except Exception as exc:  # shapely raises several types for broken input
        raise InvalidParameter(f"invalid geometry: {exc}") from None
    if geom.is_empty or geom.area == 0:
        raise InvalidParameter("geometry is empty")
    return {"type": doc["type"], "coordinates": doc["coordinates"]}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


BandsQuery = Annotated[
    str | None, Query(description="Comma-separated band common names (default: the newest item's bands).")
]
ExpressionQuery = Annotated[str | None, Query(description="Band math over common names, e.g. `(nir-red)/(nir+red)`.")]
DatetimeQuery = Annotated[
    str | None, Query(description="RFC 3339 instant, date or interval: only observations acquired inside it.")
]
SnapshotQuery = Annotated[
    int | None, Query(description="Read the collection as of this Iceberg snapshot (time travel).")
]


@dataclass
class SeriesParams:
    """Query parameters of both time-series routes (what the series is of, and which view of the collection)."""

    bands: BandsQuery = None
    expression: ExpressionQuery = None
    datetime: DatetimeQuery = None
    snapshot_id: SnapshotQuery = None

    def __post_init__(self) -> None:
        self.start, self.end = _interval(self.datetime)  # a bad datetime is a 400 before anything else is read

    def options(self) -> dict[str, Any]:
        """Keyword arguments of the ``analysis`` series functions."""
        return dict(
            bands=self.bands, expression=self.expression, start=self.start, end=self.end, snapshot_id=self.snapshot_id
        )


def add_timeseries(app: FastAPI, warehouse: Warehouse, settings: Settings) -> None:
    """Register the time-series routes on ``app``."""
    head_max_age = settings.head_max_age

    async def answer(
        request: Request, cid: str, params: SeriesParams, body: bytes, document: Callable[..., dict]
    ) -> Response:
        """Both routes: ``document(collection, **params.options())`` as JSON, with the read caching rules."""

        def compute(collection: Collection) -> dict:
            return document(collection, **params.options())

        return await anyio.to_thread.run_sync(
            _cached, request, warehouse, head_max_age, cid, params.snapshot_id, body, compute
        )

    @app.get(PREFIX + "/point/{lon},{lat}", tags=["Time series"], response_class=JSONResponse)
    async def timeseries_point(
        request: Request,
        cid: Annotated[str, Path(description="Collection id.")],
        lon: Annotated[float, Path(description="Longitude (WGS84).")],
        lat: Annotated[float, Path(description="Latitude (WGS84).")],
        params: Annotated[SeriesParams, Depends()],
    ) -> Response:
        """The pixel under (lon, lat) in every observation covering it, oldest first (masked -> null)."""

        def feature(collection: Collection, **options: Any) -> dict:
            series = point_series(collection, lon, lat, **options)
            point = {"type": "Point", "coordinates": [lon, lat]}
            return {"type": "Feature", "geometry": point, "properties": {"series": series}}

        return await answer(request, cid, params, b"", feature)

    @app.post(PREFIX + "/statistics", tags=["Time series"], response_class=JSONResponse)
    async def timeseries_statistics(
        request: Request,
        cid: Annotated[str, Path(description="Collection id.")],
        params: Annotated[SeriesParams, Depends()],
    ) -> Response:
        """Per observation: min/max/mean/std/count/valid_percent over its native pixels inside the body's polygon."""
        body = await request.body()  # the app caps request bodies (limits.BodySizeLimit: 413)
        geometry = parse_geometry(body)

        def statistics(collection: Collection, **options: Any) -> dict:
            return {"series": polygon_statistics(collection, geometry, **options)}

        return await answer(request, cid, params, body, statistics)
