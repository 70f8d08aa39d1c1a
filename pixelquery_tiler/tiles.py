"""Tile endpoints: titiler.core factories over ``PixelQueryReader``, WMTS, caching and error mapping.

Routes (all of titiler's ``TilerFactory`` endpoints, for every morecantile TileMatrixSet):

- ``/collections/{cid}/...``: the collection mosaic (newest observation first by default);
- ``/collections/{cid}/items/{iid}/...``: one item (one Iceberg snapshot's observation) only.

The path dependency takes ids, never a path or URL, so clients reach only what the catalog holds. Extra query
parameters ``datetime``, ``snapshot_id``, ``pixel_selection`` and ``bands`` go to the reader through the
factory's ``reader_dependency``.

``TileHTTPMiddleware`` adds what the factory cannot: ``@{scale}x`` tile URLs, the WMTS KVP binding, HTTP
caching (``ETag``/``If-None-Match``; immutable for pinned snapshots, short-lived for the collection head),
``X-PixelQuery-*`` headers saying which snapshot answered and which overview levels were read, and the
view's default rendering (``rendering.default_rendering``) in the tile URLs of WMTS capabilities and TileJSON
requested without rendering parameters.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

import anyio
import morecantile
import numpy as np
from fastapi import FastAPI, Path, Query
from rio_tiler.models import ImageData
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from titiler.core.dependencies import DefaultDependency
from titiler.core.factory import TilerFactory, TMSFactory
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image

from . import __version__
from .errors import InvalidParameter, add_error_handlers
from .index import CollectionIndex
from .mosaic import WindowRead
from .reader import PIXEL_SELECTION, READ_LOG, CollectionRef, PixelQueryReader, resolve_source
from .rendering import default_rendering, has_rendering_params
from .warehouse import CollectionNotFound, Warehouse
from .wmts import KVP_SEGMENT, kvp_to_rest, wmts_extension

log = logging.getLogger(__name__)

COLLECTION_PREFIX = "/collections/{cid}"
ITEM_PREFIX = "/collections/{cid}/items/{iid}"
#: every TileMatrixSet morecantile ships (WebMercatorQuad, WorldCRS84Quad, UTM, polar, ...)
TILE_MATRIX_SETS = morecantile.tms

IMMUTABLE = "public, max-age=31536000, immutable"
#: collection-head responses may change with the next ingest: cache briefly, revalidate with the ETag
HEAD_MAX_AGE = int(os.environ.get("PIXELQUERY_HEAD_MAX_AGE", "10"))
#: 4xx answers (no data here, bad parameter) may change with the next ingest or deploy
ERROR_MAX_AGE = 10
#: at most one forced index re-read per collection in this many seconds (unknown item/snapshot ids)
FORCED_REFRESH_INTERVAL = 0.5
#: zlib level of the PNG fast path: level 2 measured ~4x faster than GDAL's default (6) for ~10% more bytes
PNG_ZLEVEL = int(os.environ.get("PIXELQUERY_PNG_ZLEVEL", "2"))

_VIEW_PATH = re.compile(r"^/collections/(?P<cid>[^/]+)(?:/items/(?P<iid>[^/]+))?(?P<rest>/.*)$")
_ENDPOINT = re.compile(
    r"^/(?:tiles(?:/.*)?|info(?:\.geojson)?|point/.+|preview.*|bbox/.+|feature.*|statistics"
    r"|WMTSCapabilities\.xml|" + KVP_SEGMENT + r"|[^/]+/(?:tilejson\.json|map\.html))$"
)
#: documents whose tile URLs clients use as they are (WMTS capabilities, REST or KVP, and TileJSON)
_TILE_URL_DOCUMENT = re.compile(r"^/(?:WMTSCapabilities\.xml|[^/]+/tilejson\.json)$")
_SCALED_TILE = re.compile(r"^/tiles/(?P<tms>[^/]+)/(?P<z>\d+)/(?P<x>\d+)/(?P<y>\d+)@(?P<scale>[1-4])x(?P<fmt>\.\w+)?$")
_INDEX_SCOPE_KEY = "pixelquery.index"


@dataclass
class ViewParams(DefaultDependency):
    """Query parameters that choose the view of the collection (passed to ``PixelQueryReader``)."""

    datetime: Annotated[
        str | None,
        Query(description="RFC 3339 instant, date (a whole UTC day) or interval `a/b`, `../b`, `a/..`: only observations acquired inside it."),
    ] = None
    snapshot_id: Annotated[int | None, Query(description="Read the collection as of this Iceberg snapshot (time travel).")] = None
    pixel_selection: Annotated[
        Literal[PIXEL_SELECTION] | None,  # type: ignore[valid-type]
        Query(description="How overlapping observations combine; `first` = newest observation first (default)."),
    ] = None
    bands: Annotated[str | None, Query(description="Comma-separated band common names, e.g. `red,green,blue`.")] = None


# -- rendering ----------------------------------------------------------------------------------------------------
def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(tag)))


def encode_png(data: np.ndarray, alpha: np.ndarray | None, level: int = PNG_ZLEVEL) -> bytes:
    """8- or 16-bit PNG (gray, gray+alpha, RGB or RGBA) with numpy + zlib, filter type 0 (none).

    GDAL's PNG driver (what titiler uses) spends most of a tile's time in adaptive filtering at zlib level 6;
    for 256 px tiles this encoder is 4-10x faster and decodes to identical pixels. ``alpha`` must have
    ``data``'s dtype (255 or 65535 = valid).
    """
    planes = np.concatenate([data, alpha[None]]) if alpha is not None else data
    count, height, width = planes.shape
    depth = planes.dtype.itemsize * 8
    pixels = planes.transpose(1, 2, 0).astype(">u2" if depth == 16 else np.uint8, copy=False)
    raw = np.zeros((height, width * count * (depth // 8) + 1), np.uint8)  # column 0: filter type per row
    raw[:, 1:] = pixels.reshape(height, -1).view(np.uint8)
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[count]
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"".join((
        b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header), _png_chunk(b"IDAT", zlib.compress(raw.data, level)),
        _png_chunk(b"IEND", b""),
    ))


def render_tile(
    image: ImageData,
    output_format: ImageType | None = None,
    colormap: Any = None,
    add_mask: bool = True,
    rescale: Any = None,
    color_formula: str | None = None,
    **kwargs: Any,
) -> tuple[bytes, str]:
    """titiler's ``render_image`` with a fast path for explicit 8/16-bit PNG output (the common map tile).

    Everything else (colormaps, JPEG/WebP/TIFF/NPY, float data, auto format) goes to titiler unchanged. An empty
    colormap is no colormap (rio-tiler ignores it too): titiler's tile endpoint passes ``colormap or
    reader.colormap``, which is ``{}`` for every request without ``colormap``/``colormap_name``.
    """
    if output_format is ImageType.png and not colormap and not kwargs:
        if rescale:
            image.rescale(rescale)
        if color_formula:
            image.apply_color_formula(color_formula)
        count = image.count + (1 if add_mask else 0)
        if image.array.dtype in (np.uint8, np.uint16) and count in (1, 2, 3, 4) and not (add_mask and image.count == 2):
            alpha = None
            if add_mask:  # rio-tiler's mask is 0/255 whatever the dtype; PNG alpha spans the full range
                alpha = image.mask if image.array.dtype == np.uint8 else (image.mask > 0).astype(np.uint16) * 65535
            return encode_png(image.data, alpha), output_format.mediatype
        rescale = color_formula = None  # already applied
    return render_image(
        image, output_format=output_format, colormap=colormap, add_mask=add_mask, rescale=rescale,
        color_formula=color_formula, **kwargs,
    )


# -- HTTP middleware ----------------------------------------------------------------------------------------------
def _levels_header(reads: list[WindowRead]) -> str:
    levels: dict[str, int] = {}
    for read in reads:
        levels.update(read.levels)
    return ",".join(f"{item}:{level}" for item, level in levels.items())


def _etag(*parts: object) -> str:
    return '"' + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32] + '"'


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    return "*" in candidates or etag in candidates


class TileHTTPMiddleware:
    """Pure ASGI middleware for the tile routes (see module docstring); other paths pass through untouched."""

    def __init__(self, app: ASGIApp, warehouse: Warehouse) -> None:
        self.app = app
        self.warehouse = warehouse
        self._forced: dict[str, float] = {}  # collection -> last forced index re-read (monotonic)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _VIEW_PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or not _ENDPOINT.match(match["rest"]) or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        base = scope["path"][: len(scope["path"]) - len(match["rest"])]
        try:
            path, query = self._rewrite(base, match["rest"], query)
        except InvalidParameter as exc:
            await JSONResponse({"detail": str(exc)}, status_code=400, headers={"Cache-Control": f"public, max-age={ERROR_MAX_AGE}"})(scope, receive, send)
            return
        scope = dict(scope, path=path, raw_path=path.encode(), query_string=urlencode(query).encode())
        document = _TILE_URL_DOCUMENT.match(path[len(base):]) is not None
        await self._serve_cached(scope, receive, send, match["cid"], match["iid"], query, document)

    def _index_for(self, cid: str, iid: str | None, snapshot_id: str | None) -> CollectionIndex:
        """The collection's index; re-read at once if it lacks the requested item or snapshot.

        A client that just ingested (maybe through another process) may ask for its new item before the
        periodic refresh; forced re-reads are rate-limited per collection so unknown ids cannot hammer
        the catalog.
        """
        collection = self.warehouse.collection(cid)
        index = collection.index()
        if self._knows(index, iid, snapshot_id):
            return index
        now = time.monotonic()
        if now - self._forced.get(cid, float("-inf")) < FORCED_REFRESH_INTERVAL:
            return index
        self._forced[cid] = now
        collection.invalidate()
        return collection.index()

    @staticmethod
    def _knows(index: CollectionIndex, iid: str | None, snapshot_id: str | None) -> bool:
        if iid is not None and index.item(iid) is None:
            return False
        if snapshot_id is not None:
            try:
                index.snapshot(int(snapshot_id))
            except (ValueError, LookupError):
                return False
        return True

    def _default_rendering(
        self, cid: str, iid: str | None, index: CollectionIndex, query: list[tuple[str, str]]
    ) -> dict[str, str]:
        """Default rendering of the view a document request names (item, ``snapshot_id``, ``datetime``).

        Computed from the view, not the collection head, so a pinned snapshot or an item gets the bands its own
        newest observation has. ``{}`` when the request does not name a valid view: the endpoint then answers
        with the proper error instead of this helper guessing.
        """
        params = dict(query)
        try:
            view = PixelQueryReader(
                CollectionRef(self.warehouse.collection(cid), iid, index),
                snapshot_id=int(params["snapshot_id"]) if "snapshot_id" in params else None,
                datetime=params.get("datetime"),
            )
        except (LookupError, ValueError) as exc:
            log.debug("no default rendering for %s/%s: %s", cid, iid, exc)
            return {}
        return default_rendering(index, view.positions)

    @staticmethod
    def _rewrite(base: str, rest: str, query: list[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
        """KVP WMTS -> REST; ``.../{y}@2x.png`` -> ``.../{y}.png?tilesize=512``."""
        if rest == "/" + KVP_SEGMENT:
            return kvp_to_rest(base, query)
        if m := _SCALED_TILE.match(rest):
            if not any(k == "tilesize" for k, _ in query) and m["tms"] in TILE_MATRIX_SETS.list():
                tms = TILE_MATRIX_SETS.get(m["tms"])
                z = min(max(int(m["z"]), tms.minzoom), tms.maxzoom)
                query = [*query, ("tilesize", str(tms.matrix(z).tileWidth * int(m["scale"])))]
            return f"{base}/tiles/{m['tms']}/{m['z']}/{m['x']}/{m['y']}{m['fmt'] or ''}", query
        return base + rest, query

    async def _serve_cached(
        self, scope: Scope, receive: Receive, send: Send, cid: str, iid: str | None, query: list[tuple[str, str]],
        document: bool = False,
    ) -> None:
        """Serve with caching headers; ``document``: a tile-URL document that gets the default rendering."""
        pinned = dict(query).get("snapshot_id")
        try:
            # catalog look-ups (first use of a collection, index refresh) must not block the event loop
            index: CollectionIndex = await anyio.to_thread.run_sync(self._index_for, cid, iid, pinned)
        except CollectionNotFound:
            await self.app(scope, receive, send)  # the route answers the 404
            return
        if document and not has_rendering_params(key for key, _ in query):
            # raw 16-bit or 6-band data is black or not encodable as PNG in a map client: hand out the profile's
            # rendering instead (before the ETag, which must describe the body)
            defaults = await anyio.to_thread.run_sync(self._default_rendering, cid, iid, index, query)
            if defaults:
                scope = dict(scope, query_string=urlencode([*query, *defaults.items()]).encode())
        immutable = iid is not None or pinned is not None
        snapshot = pinned if pinned is not None else index.snapshot_id
        if iid is not None:  # an item is its own snapshot
            item = index.item(iid)
            snapshot = item.snapshot.snapshot_id if item is not None and item.snapshot is not None else None
        headers = Headers(scope=scope)
        etag = _etag(__version__, headers.get("host"), scope["path"], scope["query_string"].decode(), "pinned" if immutable else snapshot)
        cache_control = IMMUTABLE if immutable else f"public, max-age={HEAD_MAX_AGE}"
        if _etag_matches(headers.get("if-none-match"), etag):
            await Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache_control})(scope, receive, send)
            return
        scope = dict(scope)
        scope.setdefault("state", {})
        scope["state"] = dict(scope["state"], **{_INDEX_SCOPE_KEY: index})
        reads: list[WindowRead] = []
        token = READ_LOG.set(reads)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                status = message["status"]
                if 200 <= status < 300:
                    out["Cache-Control"] = cache_control
                    out["ETag"] = etag
                else:
                    out["Cache-Control"] = "no-store" if status >= 500 else f"public, max-age={ERROR_MAX_AGE}"
                if snapshot is not None:
                    out["X-PixelQuery-Snapshot"] = str(snapshot)
                if reads:
                    out["X-PixelQuery-Levels"] = _levels_header(reads)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            READ_LOG.reset(token)


# -- app wiring ---------------------------------------------------------------------------------------------------
def _pinned_index(request: Request) -> CollectionIndex | None:
    return request.scope.get("state", {}).get(_INDEX_SCOPE_KEY)


def inline(dependency: Callable[..., Any]) -> Callable[..., Any]:
    """The same dependency as an ``async def``, so FastAPI calls it on the event loop.

    FastAPI runs every sync dependency in the threadpool; a titiler tile route has about a dozen, and under
    load those thread hops cost more than reading the tile. Only for cheap, non-blocking dependencies
    (query-parameter parsing); the endpoint itself still runs in the threadpool.
    """
    signature = inspect.signature(dependency, eval_str=True)

    async def call(**kwargs: Any) -> Any:
        return dependency(**kwargs)

    call.__signature__ = signature  # type: ignore[attr-defined]
    call.__name__ = getattr(dependency, "__name__", "dependency")
    call.__doc__ = dependency.__doc__
    return call


#: factory dependency attributes that only parse query parameters
_INLINE_DEPENDENCIES = (
    "reader_dependency", "layer_dependency", "dataset_dependency", "tile_dependency", "stats_dependency",
    "histogram_dependency", "img_preview_dependency", "img_part_dependency", "process_dependency",
    "colormap_dependency", "render_dependency", "environment_dependency",
)


def add_tiles(app: FastAPI, warehouse: Warehouse) -> None:
    """Register collection and item tile routes, WMTS, TileMatrixSets, error mapping and HTTP caching."""

    async def collection_source(
        request: Request, cid: Annotated[str, Path(description="Collection id.")]
    ) -> CollectionRef:
        return resolve_source(warehouse, cid, index=_pinned_index(request))

    async def item_source(
        request: Request,
        cid: Annotated[str, Path(description="Collection id.")],
        iid: Annotated[str, Path(description="Item id (one snapshot's observation).")],
    ) -> CollectionRef:
        return resolve_source(warehouse, cid, iid, index=_pinned_index(request))

    defaults = TilerFactory.__attrs_attrs__
    sync_deps = {name: getattr(defaults, name).default for name in _INLINE_DEPENDENCIES}
    sync_deps["reader_dependency"] = ViewParams
    # the WMTS extension calls these itself to validate query strings: give it the plain callables
    wmts_checks = [sync_deps[n] for n in (
        "reader_dependency", "tile_dependency", "layer_dependency", "dataset_dependency", "process_dependency",
        "colormap_dependency", "render_dependency",
    )]
    for prefix, source, name, tag in (
        (COLLECTION_PREFIX, collection_source, "collection", "Collection tiles"),
        (ITEM_PREFIX, item_source, "item", "Item tiles"),
    ):
        factory = TilerFactory(
            reader=PixelQueryReader,
            path_dependency=source,
            router_prefix=prefix,
            name=name,
            supported_tms=TILE_MATRIX_SETS,
            render_func=render_tile,
            extensions=[wmts_extension(warehouse, wmts_checks, _pinned_index)],
            **{attr: inline(dep) for attr, dep in sync_deps.items()},
        )
        app.include_router(factory.router, prefix=prefix, tags=[tag])
    app.include_router(TMSFactory(supported_tms=TILE_MATRIX_SETS).router, tags=["TileMatrixSets"])
    add_error_handlers(app)
    app.add_middleware(TileHTTPMiddleware, warehouse=warehouse)
