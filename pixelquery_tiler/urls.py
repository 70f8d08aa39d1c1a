"""The URL patterns of the tile endpoints, in one place: routes (tiles, WMTS) and links (STAC, documents).

Route patterns are FastAPI/Starlette path templates; the ``*_path`` functions build the matching relative
URLs (ids quoted) for documents that point at tile endpoints.
"""

from __future__ import annotations

from urllib.parse import quote

COLLECTION_PREFIX = "/collections/{cid}"
ITEM_PREFIX = "/collections/{cid}/items/{iid}"
#: last path segment of the WMTS KVP endpoint, next to ``WMTSCapabilities.xml``
KVP_SEGMENT = "wmts"
CAPABILITIES_SEGMENT = "WMTSCapabilities.xml"
#: ``@{scale}x`` tile routes (scaled tiles = larger tilesize), relative to a prefix
SCALED_TILE_ROUTES = (
    "/tiles/{tileMatrixSetId}/{z:int}/{x:int}/{y:int}@{scale:int}x",
    "/tiles/{tileMatrixSetId}/{z:int}/{x:int}/{y:int}@{scale:int}x.{format}",
)
#: the TileMatrixSet that links and thumbnails use
DEFAULT_TMS = "WebMercatorQuad"


def collection_path(cid: str) -> str:
    """``collections/{cid}`` (relative to the app root)."""
    return f"collections/{quote(cid, safe='')}"


def item_path(cid: str, iid: str) -> str:
    """``collections/{cid}/items/{iid}`` (relative to the app root)."""
    return f"{collection_path(cid)}/items/{quote(iid, safe='')}"


def source_path(cid: str, iid: str | None = None) -> str:
    """The endpoint family of a collection, or of one of its items."""
    return collection_path(cid) if iid is None else item_path(cid, iid)


def tile_path(
    base: str,
    tms: str = DEFAULT_TMS,
    z: int | str = "{z}",
    x: int | str = "{x}",
    y: int | str = "{y}",
    fmt: str | None = "png",
) -> str:
    """``{base}/tiles/{tms}/{z}/{x}/{y}.{fmt}`` (placeholders by default: an XYZ template; no extension without
    ``fmt``, titiler then picks the format)."""
    return f"{base}/tiles/{tms}/{z}/{x}/{y}" + (f".{fmt}" if fmt else "")


def tilejson_path(base: str, tms: str = DEFAULT_TMS) -> str:
    """``{base}/{tms}/tilejson.json`` (the TileJSON route of titiler's factory)."""
    return f"{base}/{tms}/tilejson.json"


def capabilities_path(base: str) -> str:
    """``{base}/WMTSCapabilities.xml`` (the REST capabilities route)."""
    return f"{base}/{CAPABILITIES_SEGMENT}"


def kvp_path(base: str) -> str:
    """The WMTS KVP endpoint (``SERVICE=WMTS&REQUEST=...``) under ``base``."""
    return f"{base}/{KVP_SEGMENT}"


def preview_path(base: str, fmt: str = "png") -> str:
    """``{base}/preview.{fmt}``, titiler's whole-extent image."""
    return f"{base}/preview.{fmt}"


def wmts_layer(cid: str, iid: str | None = None, tms: str = DEFAULT_TMS) -> str:
    """Identifier of a layer in WMTS capabilities: titiler names layers ``{source}_{tms}_{render}``, the source
    is ``View.name`` (collection id or ``{collection}_{item}``) and the layer built from the query is ``default``."""
    source = cid if iid is None else f"{cid}_{iid}"
    return f"{source}_{tms}_default"
