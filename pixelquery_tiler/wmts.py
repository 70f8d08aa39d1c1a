"""OGC WMTS 1.0.0 for collections and items: titiler's ``wmtsExtension`` with our own capabilities template.

titiler builds the layers (one per TileMatrixSet) and the TileMatrixSet descriptions; our template
(``templates/wmts.xml``) adds what desktop GIS and time sliders need:

- a ``Time`` ``<Dimension>`` whose values are the acquisition dates (``YYYY-MM-DD``) of the observations
  visible in the view, ``Default`` = the latest, and whose ``ResourceURL`` passes ``{Time}`` as ``datetime=``
  (a date means that whole UTC day, see ``temporal.parse_interval``);
- ``WellKnownScaleSet`` GoogleMapsCompatible on WebMercatorQuad (QGIS/ArcGIS then treat it as the web grid);
- URN CRS identifiers (``urn:ogc:def:crs:EPSG::3857``), which older WMTS clients require;
- elements in schema order and ``&`` escaped as ``&amp;`` in URL templates;
- a KVP binding (``.../wmts?SERVICE=WMTS&REQUEST=GetTile...``) next to REST: ``kvp_to_rest`` maps it onto
  the REST routes, so both encodings share one implementation, one cache policy and one error mapping.

The extra template context comes from a Jinja2 context processor (the extension's template context is
fixed), computed from the ``View`` the endpoint read (and its pinned collection index), which the route class
hands the endpoint with its request (``routing.ViewRequest``), so the ``Time`` values of ``?snapshot_id=S``
are the dates visible as of S and match the response's ETag.

Tile URLs (ResourceURL and KVP) carry the request's query parameters; a request without rendering parameters
gets the view's default rendering added first (by the route class, ``routing.ViewRoute``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
import morecantile
from starlette.requests import Request
from starlette.templating import Jinja2Templates
from titiler.core.resources.enums import ImageType
from titiler.extensions import wmtsExtension

from .errors import InvalidParameter
from .routing import ViewRequest
from .urls import capabilities_path, kvp_path, tile_path
from .view import View

log = logging.getLogger(__name__)

#: query parameter that receives the WMTS ``Time`` dimension value
TIME_PARAM = "datetime"
WELL_KNOWN_SCALE_SETS = {"WebMercatorQuad": "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible"}
#: WMTS 1.0 cannot describe matrices with variable widths (CDB1GlobalGrid, GNOSISGlobalGrid): leave those out
WMTS_TILE_MATRIX_SETS = frozenset(
    t for t in morecantile.tms.list() if not any(m.variableMatrixWidths for m in morecantile.tms.get(t).tileMatrices)
)

#: OGC request keys (case-insensitive) that never travel on to tile URLs
_OGC_KEYS = {
    "service",
    "request",
    "version",
    "acceptversions",
    "sections",
    "updatesequence",
    "acceptformats",
    "layer",
    "style",
    "format",
    "tilematrixset",
    "tilematrix",
    "tilerow",
    "tilecol",
    "time",
}
#: capabilities-only keys of titiler's WMTS endpoint
_CAPABILITIES_KEYS = {"tile_format", "use_epsg", "tilesize", "minzoom", "maxzoom"}
_CRS_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/(?P<auth>[^/]+)/(?P<version>[^/]+)/(?P<code>[^/]+)$")


def crs_urn(value: str) -> str:
    """``http://www.opengis.net/def/crs/EPSG/0/3857`` -> ``urn:ogc:def:crs:EPSG::3857`` (others unchanged)."""
    m = _CRS_URI.match(value.strip())
    if not m:
        return value
    version = "" if m["version"] == "0" else m["version"]
    return f"urn:ogc:def:crs:{m['auth']}:{version}:{m['code']}"


def without_params(query: str | None, *names: str) -> str:
    """``query`` with the named parameters (case-insensitive) removed."""
    drop = {n.lower() for n in names}
    return urlencode([(k, v) for k, v in parse_qsl(query or "", keep_blank_values=True) if k.lower() not in drop])


def acquisition_dates(view: View) -> list[str]:
    """Distinct UTC acquisition dates (``YYYY-MM-DD``) of the observations in a view, oldest first."""
    return view.acquisition_dates()


def layer_identifier(source: Any) -> str:
    """WMTS layer title/identifier prefix: the collection id, or ``collection_item`` for an item."""
    return getattr(source, "name", "pixelquery")


def wmts_templates() -> Jinja2Templates:
    """Our template plus a context processor that adds the Time dimension and the KVP URL.

    The dates come from the request's ``View`` (the one the endpoint read), so ``?snapshot_id=S`` lists the
    dates visible as of S, matching the response's ETag.
    """
    env = jinja2.Environment(
        autoescape=jinja2.select_autoescape(["xml"]),
        loader=jinja2.PackageLoader(__package__, "templates"),
    )
    env.filters["crs_urn"] = crs_urn
    env.filters["without_params"] = without_params

    def context(request: Request) -> dict[str, Any]:
        view = request.view if isinstance(request, ViewRequest) else None
        dates = view.acquisition_dates() if view is not None else []
        kvp_query = without_params(str(request.url.query), TIME_PARAM, *_OGC_KEYS, *_CAPABILITIES_KEYS)
        kvp = kvp_path(request.url.path.rsplit("/", 1)[0])
        return {
            "service_title": f"pixelquery-tiler: {layer_identifier(view)}",
            "time_values": dates,
            "time_default": dates[-1] if dates else None,
            "time_param": TIME_PARAM,
            "kvp_url": str(request.url.replace(path=kvp, query=kvp_query)) + ("&" if kvp_query else ""),
            "well_known_scale_sets": WELL_KNOWN_SCALE_SETS,
            "wmts_tms": WMTS_TILE_MATRIX_SETS,
        }

    return Jinja2Templates(env=env, context_processors=[context])


def wmts_extension(tile_dependencies: list[Callable] | None = None) -> wmtsExtension:
    """titiler's WMTS extension with our template; ``tile_dependencies`` validate layer query strings."""
    return wmtsExtension(
        templates=wmts_templates(),
        layer_identifier_provider=layer_identifier,
        tile_dependencies=tile_dependencies,
    )


def _format_for(media_type: str | None) -> str:
    if not media_type:
        return ImageType.png.value
    for image_type in ImageType:
        if image_type.mediatype == media_type.strip() and image_type is not ImageType.pngraw:
            return image_type.value
    raise InvalidParameter(f"unsupported WMTS FORMAT {media_type!r}")


def kvp_to_rest(base: str, query: Sequence[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """Map a KVP WMTS request on ``{base}/wmts`` to the REST path and query that serve it.

    ``GetCapabilities`` -> ``{base}/WMTSCapabilities.xml``; ``GetTile`` -> ``{base}/tiles/{TMS}/{z}/{x}/{y}.{fmt}``
    with ``TIME`` passed as ``datetime``. Non-OGC parameters (rescale, bands...) are kept.
    Raises ``InvalidParameter`` for a request that is not a valid WMTS KVP request.
    """
    ogc = {k.lower(): v for k, v in query if k.lower() in _OGC_KEYS}
    rest = [(k, v) for k, v in query if k.lower() not in _OGC_KEYS]
    if ogc.get("service", "WMTS").upper() != "WMTS":
        raise InvalidParameter("SERVICE must be WMTS")
    request = ogc.get("request", "").lower()
    if request == "getcapabilities":
        return capabilities_path(base), rest
    if request != "gettile":
        raise InvalidParameter("REQUEST must be GetCapabilities or GetTile")
    missing = [k.upper() for k in ("tilematrixset", "tilematrix", "tilerow", "tilecol") if not ogc.get(k)]
    if missing:
        raise InvalidParameter(f"GetTile needs {', '.join(missing)}")
    for key in ("tilematrix", "tilerow", "tilecol"):
        if not re.fullmatch(r"-?\d+", ogc[key]):
            raise InvalidParameter(f"{key.upper()} must be an integer")
    if "/" in ogc["tilematrixset"]:
        raise InvalidParameter("invalid TILEMATRIXSET")
    fmt = _format_for(ogc.get("format"))
    path = tile_path(base, ogc["tilematrixset"], ogc["tilematrix"], ogc["tilecol"], ogc["tilerow"], fmt)
    if ogc.get("time"):
        rest = [(k, v) for k, v in rest if k.lower() != TIME_PARAM] + [(TIME_PARAM, ogc["time"])]
    return path, rest
