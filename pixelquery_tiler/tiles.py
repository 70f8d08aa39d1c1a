"""Tile endpoints: titiler.core factories over ``PixelQueryReader``, one for collections, one for items.

Routes (all of titiler's ``TilerFactory`` endpoints, for every morecantile TileMatrixSet):

- ``/collections/{cid}/...``: the collection mosaic (newest observation first by default);
- ``/collections/{cid}/items/{iid}/...``: one item (one Iceberg snapshot's observation) only.

A request's route, read as code: the path dependency (``dependencies.ViewResolver``) yields the ``View``;
``caching.cache_policy_dependency`` answers ``If-None-Match`` from it; the endpoint builds
``PixelQueryReader(view)``, which reads through ``mosaic.read_window``; ``render_tile`` encodes; the route
class (``routing.ViewRoute``), handed the same ``View`` and policy as arguments, adds the caching and
``X-PixelQuery-*`` headers. The WMTS KVP binding and ``@{scale}x`` tile URLs are routes of their own that
forward to the REST tile/capabilities routes, so both share one implementation, cache policy and error map.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode

import morecantile
import numpy as np
from fastapi import APIRouter, FastAPI
from rio_tiler.models import ImageData
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from titiler.core.factory import TilerFactory, TMSFactory
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image

from .caching import NO_STORE
from .dependencies import ViewParams, ViewResolver, limited_dependencies
from .encoders import PNG_ZLEVEL, encode_png
from .errors import InvalidParameter, OutputTooLarge
from .reader import PixelQueryReader
from .routing import view_route_class
from .settings import Settings
from .urls import COLLECTION_PREFIX, ITEM_PREFIX, SCALED_TILE_ROUTES, kvp_path, tile_path
from .warehouse import Warehouse
from .wmts import kvp_to_rest, wmts_extension

__all__ = ["COLLECTION_PREFIX", "ITEM_PREFIX", "TILE_MATRIX_SETS", "add_tiles", "encode_png", "render_tile"]

log = logging.getLogger(__name__)

#: every TileMatrixSet morecantile ships (WebMercatorQuad, WorldCRS84Quad, UTM, polar, ...)
TILE_MATRIX_SETS = morecantile.tms
#: ``@{scale}x`` factors served (4 x 256 px = 1024 px tiles, within the pixel budget)
SCALES = range(1, 5)


def render_tile(
    image: ImageData,
    output_format: ImageType | None = None,
    colormap: Any = None,
    add_mask: bool = True,
    rescale: Any = None,
    color_formula: str | None = None,
    png_zlevel: int = PNG_ZLEVEL,
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
            return encode_png(image.data, alpha, png_zlevel), output_format.mediatype
        rescale = color_formula = None  # already applied
    try:
        return render_image(
            image,
            output_format=output_format,
            colormap=colormap,
            add_mask=add_mask,
            rescale=rescale,
            color_formula=color_formula,
            **kwargs,
        )
    except IndexError:
        # titiler rescales non-8/16-bit data band by band with the 2-D mask indexed per band: an image with more
        # bands than rows cannot be encoded (e.g. many expressions on a small tile); that is the request's shape
        raise OutputTooLarge(
            f"cannot encode {image.count} bands of {image.array.dtype} at {image.width}x{image.height} pixels; "
            "ask for fewer bands or a larger size"
        ) from None


# -- routes that forward to the REST routes ------------------------------------------------------------------------
class Forward:
    """ASGI endpoint that answers by re-dispatching to another route of the same app (path and query rewritten).

    ``rewrite(prefix, path_params, query) -> (path, query)`` may raise ``InvalidParameter`` (400).
    """

    def __init__(
        self, rewrite: Callable[[str, dict[str, Any], list[tuple[str, str]]], tuple[str, list[tuple[str, str]]]]
    ):
        self.rewrite = rewrite

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope.get("path_params", {})
        prefix = _prefix(scope)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        try:
            path, query = self.rewrite(prefix, params, query)
        except InvalidParameter as exc:
            response = JSONResponse({"detail": str(exc)}, status_code=400, headers={"Cache-Control": NO_STORE})
            await response(scope, receive, send)
            return
        forwarded = dict(scope, path=path, raw_path=path.encode(), query_string=urlencode(query).encode())
        await scope["app"].router(forwarded, receive, send)


def _prefix(scope: Scope) -> str:
    """The request path up to and including ``/collections/{cid}[/items/{iid}]`` (raw, as the client sent it)."""
    path = scope["path"]
    marker = path.find("/collections/")
    rest = path[marker + len("/collections/") :].split("/")
    depth = 3 if len(rest) > 2 and rest[1] == "items" else 1
    return path[:marker] + "/collections/" + "/".join(rest[:depth])


def _kvp(prefix: str, params: dict[str, Any], query: list[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    return kvp_to_rest(prefix, query)


def _scaled(prefix: str, params: dict[str, Any], query: list[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """``.../{y}@2x.png`` -> ``.../{y}.png?tilesize=512`` (the TMS's tile size times the scale)."""
    tms_id, z, scale = params["tileMatrixSetId"], params["z"], params["scale"]
    if scale not in SCALES:
        raise InvalidParameter(f"tile scale must be one of @1x..@{SCALES[-1]}x")
    if not any(k == "tilesize" for k, _ in query) and tms_id in TILE_MATRIX_SETS.list():
        tms = TILE_MATRIX_SETS.get(tms_id)
        tilesize = tms.matrix(min(max(z, tms.minzoom), tms.maxzoom)).tileWidth * scale
        query = [*query, ("tilesize", str(tilesize))]
    return tile_path(prefix, tms_id, z, params["x"], params["y"], params.get("format")), query


def _forward_routes(prefix: str) -> list[Route]:
    routes = [Route(kvp_path(prefix), Forward(_kvp), methods=["GET", "HEAD"])]
    routes += [Route(prefix + path, Forward(_scaled), methods=["GET", "HEAD"]) for path in SCALED_TILE_ROUTES]
    return routes


# -- app wiring ---------------------------------------------------------------------------------------------------
def inline(dependency: Callable[..., Any]) -> Callable[..., Any]:
    """The same dependency as an ``async def``, so FastAPI calls it on the event loop.

    FastAPI runs every sync dependency in the threadpool; a titiler tile route has about a dozen, and under
    load those thread hops cost more than reading the tile. Only for cheap, non-blocking dependencies
    (query-parameter parsing); the endpoint itself still runs in the threadpool.
    """
    signature = inspect.signature(dependency, eval_str=True)

    async def call(**kwargs: Any) -> Any:
        return dependency(**kwargs)

    call.__signature__ = signature  # type: ignore[attr-defined]  # read by FastAPI via inspect.signature
    call.__name__ = getattr(dependency, "__name__", "dependency")
    call.__doc__ = dependency.__doc__
    return call


#: factory dependency attributes that only parse query parameters
_INLINE_DEPENDENCIES = (
    "reader_dependency",
    "layer_dependency",
    "dataset_dependency",
    "tile_dependency",
    "stats_dependency",
    "histogram_dependency",
    "img_preview_dependency",
    "img_part_dependency",
    "process_dependency",
    "colormap_dependency",
    "render_dependency",
    "environment_dependency",
)
#: the WMTS extension calls these itself to validate the layers' query strings
_WMTS_CHECKS = (
    "reader_dependency",
    "tile_dependency",
    "layer_dependency",
    "dataset_dependency",
    "process_dependency",
    "colormap_dependency",
    "render_dependency",
)
#: routes whose documents carry tile URLs that clients use as they are
_DOCUMENT_ROUTES = ("/{tileMatrixSetId}/tilejson.json", "/WMTSCapabilities.xml")


def _factory_defaults() -> dict[str, Callable[..., Any]]:
    defaults = TilerFactory(router=APIRouter())  # the class's own defaults, without reaching into attrs internals
    return {name: getattr(defaults, name) for name in _INLINE_DEPENDENCIES}


def add_tiles(app: FastAPI, warehouse: Warehouse, settings: Settings | None = None) -> None:
    """Register collection and item tile routes, WMTS (REST and KVP), ``@{scale}x`` tiles and TileMatrixSets."""
    settings = settings or Settings()
    resolver = ViewResolver(warehouse)
    deps = _factory_defaults() | {"reader_dependency": ViewParams} | limited_dependencies(settings)
    wmts_checks = [deps[n] for n in _WMTS_CHECKS]
    for prefix, path_dependency, name, tag in (
        (COLLECTION_PREFIX, resolver.collection_dependency(), "collection", "Collection tiles"),
        (ITEM_PREFIX, resolver.item_dependency(), "item", "Item tiles"),
    ):
        for route in _forward_routes(prefix):
            app.router.routes.append(route)
        inlined: dict[str, Any] = {attr: inline(dep) for attr, dep in deps.items()}
        factory = TilerFactory(
            reader=PixelQueryReader,
            router=APIRouter(route_class=view_route_class(path_dependency, settings.head_max_age, _DOCUMENT_ROUTES)),
            path_dependency=path_dependency,
            router_prefix=prefix,
            name=name,
            supported_tms=TILE_MATRIX_SETS,
            render_func=partial(render_tile, png_zlevel=settings.png_zlevel),
            extensions=[wmts_extension(wmts_checks)],
            **inlined,
        )
        app.include_router(factory.router, prefix=prefix, tags=[tag])
    app.include_router(TMSFactory(supported_tms=TILE_MATRIX_SETS).router, tags=["TileMatrixSets"])


def nullable_statistics_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI says what statistics return: a band without valid pixels has ``null`` (NaN) statistics."""
    schema = copy.deepcopy(schema)
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        if name != "BandStatistics":
            continue
        for prop in component.get("properties", {}).values():
            if prop.get("type") == "number":
                prop.pop("type")
                prop["anyOf"] = [{"type": "number"}, {"type": "null"}]
    return schema
