"""STAC Item and Collection documents for the warehouse: one Collection per Iceberg table, one Item per snapshot.

Documents are built once per (collection, item, snapshot) and cached with every href *relative to the app
root*; ``resolve_*`` turns them into a response for one request base URL (links must follow the host the
client used, including proxies), which is a cheap shallow copy.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from shapely.geometry import mapping

from ..catalog import NAMESPACE
from ..index import ItemView
from ..profiles import ProductProfile
from ..rendering import default_rendering, item_rendering
from ..temporal import format_instant
from ..urls import collection_path, item_path, preview_path, wmts_layer
from .links import absolute, absolute_links, collection_links, item_links, time_travel_link, web_map_links
from .properties import document_properties
from .records import ItemRecords, crs_facts, gsd_metres, profile_for

STAC_VERSION = "1.1.0"
#: where the server itself serves the pixelquery extension's JSON Schema, relative to the STAC root ``/stac/``:
#: documents name ``{stac root}extensions/pixelquery/v1.0.0/schema.json``, a URL that resolves for any client
#: that reaches the server (validators need nothing else besides the standard STAC schema hosts)
PIXELQUERY_EXTENSION_PATH = "extensions/pixelquery/v1.0.0/schema.json"
#: how cached documents hold that identifier until ``resolve_*`` knows the request's STAC root
_PIXELQUERY_EXTENSION_REF = "pixelquery-extension:"
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
EO_EXTENSION = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
WEB_MAP_LINKS_EXTENSION = "https://stac-extensions.github.io/web-map-links/v1.2.0/schema.json"
THUMBNAIL_SIZE = 256
GEOTIFF = "image/tiff; application=geotiff"

#: ``eo:common_name`` values the eo extension accepts; other band names (b1, class...) carry no common name
EO_COMMON_NAMES = frozenset(
    [
        "pan",
        "coastal",
        "blue",
        "green",
        "green05",
        "yellow",
        "red",
        "rededge",
        "rededge071",
        "rededge075",
        "rededge078",
        "nir",
        "nir08",
        "nir09",
        "cirrus",
        "swir16",
        "swir22",
        "lwir",
        "lwir11",
        "lwir12",
    ]
)
STAC_DATA_TYPES = frozenset(
    [
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "cint16",
        "cint32",
        "cfloat32",
        "cfloat64",
    ]
)


# -- items ----------------------------------------------------------------------------------------------------
def _nodata(value: float) -> float | str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def band_objects(
    item: ItemView, profile: ProductProfile | None, gsd: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """STAC 1.1 ``bands``: the stored bands by common name, with eo fields where the name is an eo common name.

    ``gsd``: each band's own ground sample distance, for a scene whose band groups have different resolutions.
    """
    out = []
    for name in item.scene_bands or item.bands:  # every band of the scene, over all its band groups
        band: dict[str, Any] = {"name": name}
        spec = profile.band(name) if profile else None
        if spec is not None and profile is not None and spec.name != name:
            band["description"] = f"{spec.name} of {profile.title}"
        if name in EO_COMMON_NAMES:
            band["eo:common_name"] = name
        if spec is not None and spec.center_wavelength:
            band["eo:center_wavelength"] = spec.center_wavelength
        if gsd and name in gsd:
            band["gsd"] = gsd[name]
        band["data_type"] = item.dtype if item.dtype in STAC_DATA_TYPES else "other"
        if item.nodata is not None:
            band["nodata"] = _nodata(item.nodata)
        out.append(band)
    return out


def _band_gsd(records: ItemRecords, item: ItemView) -> dict[str, float] | None:
    """Band -> gsd (metres) when the item has band groups at different resolutions, else ``None``."""
    entries = [records.index.items[p] for p in records.index.item_entries(item.item_id)]
    if len(entries) < 2:
        return None
    return {b: gsd_metres(e) for e in entries for b in e.bands}


def _source_properties(summary: dict[str, str]) -> dict[str, Any]:
    """Properties of the STAC Item an item was ingested from (``pixelquery.properties``: eo:cloud_cover, ...)."""
    try:
        value = json.loads(summary.get("properties") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _projection(records: ItemRecords, i: int) -> dict[str, Any]:
    """Projection fields of the stored native-level grid (what the chunks hold, not the source file)."""
    item = records.items[i]
    ix = records.index
    start, stop = records.level0_range(i)
    minx, miny = float(ix.minx[start:stop].min()), float(ix.miny[start:stop].min())
    maxx, maxy = float(ix.maxx[start:stop].max()), float(ix.maxy[start:stop].max())
    a, e = float(ix.transform[start, 0]), float(ix.transform[start, 4])
    facts = crs_facts(item.crs)
    out: dict[str, Any] = {"proj:code": facts.code}
    if facts.code is None:
        out["proj:wkt2"] = facts.wkt
    out["proj:bbox"] = [minx, miny, maxx, maxy]
    out["proj:shape"] = [round((maxy - miny) / abs(e)), round((maxx - minx) / abs(a))]
    out["proj:transform"] = [a, 0.0, minx, 0.0, e, maxy]
    return out


def item_document(records: ItemRecords, i: int) -> dict[str, Any]:
    """The Item of snapshot ``i`` of ``records`` with hrefs relative to the app root (see ``resolve_item``)."""
    item = records.items[i]
    snap = item.snapshot
    assert snap is not None  # ItemRecords serves only items with a snapshot
    cid, iid = records.collection, item.item_id
    profile = profile_for(item.product)
    footprint = records.footprint(i)
    bands = band_objects(item, profile, _band_gsd(records, item))
    source = snap.properties.get("source")
    properties: dict[str, Any] = {
        "title": f"{source or iid} ({item.product})",
        "description": f"Snapshot {snap.snapshot_id} of the Iceberg table {NAMESPACE}.{cid}: ingest of "
        f"{source or 'a raster'} as {item.product}, {len(item.bands)} band(s), {len(item.levels)} level(s).",
        **document_properties(records, i),
    }
    if profile is not None and profile.instruments:
        properties["instruments"] = list(profile.instruments)
    properties.update(_projection(records, i))
    properties["bands"] = bands
    for key, value in _source_properties(snap.properties).items():  # a STAC Item source's own properties
        properties.setdefault(key, value)

    render = item_rendering(records.index, int(records.positions[i]))
    base = item_path(cid, iid)
    links = [
        *web_map_links(base, urlencode(render, safe=","), wmts_layer(cid, iid), "this snapshot"),
        time_travel_link(cid, snap.snapshot_id, render),
    ]
    thumb_query = urlencode([*render.items(), ("max_size", str(THUMBNAIL_SIZE))], safe=",")
    extensions = [_PIXELQUERY_EXTENSION_REF, PROJECTION_EXTENSION, WEB_MAP_LINKS_EXTENSION]
    if any(k.startswith("eo:") for b in bands for k in b) or "eo:cloud_cover" in properties:
        extensions.insert(2, EO_EXTENSION)
    minx, miny, maxx, maxy = footprint.bounds
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": iid,
        "collection": cid,
        "bbox": [minx, miny, maxx, maxy],
        "geometry": mapping(footprint),
        "properties": properties,
        "links": links,
        "assets": {
            "thumbnail": {
                "href": f"{preview_path(base)}?{thumb_query}",
                "type": "image/png",
                "title": "Preview of this snapshot",
                "roles": ["thumbnail"],
            },
            # STAC 1.1 allows item-level ``bands`` only as a summary of assets' bands; the reduced-resolution
            # GeoTIFF of all stored bands is a real asset that has exactly these bands.
            "overview": {
                "href": preview_path(base, "tif"),
                "type": GEOTIFF,
                "title": "Reduced-resolution GeoTIFF of all bands",
                "roles": ["overview"],
                "bands": bands,
            },
        },
    }


def pixelquery_extension(stac_base: str) -> str:
    """The pixelquery extension's identifier for a STAC root URL (``.../stac/``): the schema served there."""
    return stac_base + PIXELQUERY_EXTENSION_PATH


def _extensions(doc: dict[str, Any], stac_base: str) -> list[str]:
    return [pixelquery_extension(stac_base) if e == _PIXELQUERY_EXTENSION_REF else e for e in doc["stac_extensions"]]


def resolve_item(doc: dict[str, Any], stac_base: str, app_base: str) -> dict[str, Any]:
    """A response copy of a cached item document for one request's base URLs (``.../stac/`` and ``.../``)."""
    links = [*item_links(stac_base, doc["collection"], doc["id"]), *absolute_links(app_base, doc["links"])]
    assets = {k: {**a, "href": absolute(app_base, a["href"])} for k, a in doc["assets"].items()}
    return {**doc, "stac_extensions": _extensions(doc, stac_base), "links": links, "assets": assets}


# -- collections ----------------------------------------------------------------------------------------------
def _distinct(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None))


def collection_document(records: ItemRecords) -> dict[str, Any]:
    """The Collection of one Iceberg table, hrefs relative to the app root (see ``resolve_collection``)."""
    cid = records.collection
    index = records.index
    items = records.items
    profiles = {p.id: p for p in (profile_for(it.product) for it in items) if p is not None}
    interval: list[str | None]
    if len(items):
        b = records.bbox
        bbox = [float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())]
        interval = [format_instant(min(it.datetime for it in items)), format_instant(max(it.datetime for it in items))]
    else:
        bbox, interval = [-180.0, -90.0, 180.0, 90.0], [None, None]
    bands: dict[str, dict[str, Any]] = {}
    for it in items:
        for band in band_objects(it, profiles.get(it.product)):
            bands.setdefault(
                band["name"], {k: v for k, v in band.items() if k in ("name", "description") or k.startswith("eo:")}
            )
    products = Counter(it.product for it in items)
    summaries: dict[str, Any] = {
        "platform": sorted({p.platform for p in profiles.values() if p.platform}),
        "instruments": sorted({i for p in profiles.values() for i in p.instruments}),
        "gsd": sorted({float(g) for g in records.gsd if math.isfinite(g)}),
        "bands": list(bands.values()),
        "pixelquery:product": [p for p, _ in products.most_common()],
        "pixelquery:grid": _distinct([it.crs for it in items]),
    }
    summaries = {k: v for k, v in summaries.items() if v}
    # the same defaults the collection's WMTS capabilities and TileJSON put into their tile URLs
    query = urlencode(default_rendering(index, records.positions), safe=",")
    links = web_map_links(collection_path(cid), query, wmts_layer(cid), "the current snapshot")
    providers = [{"name": p.provider, "roles": ["producer", "licensor"]} for p in profiles.values() if p.provider]
    providers = list({p["name"]: p for p in providers}.values())
    providers.append({"name": "pixelquery-tiler", "roles": ["processor", "host"]})
    extensions = [_PIXELQUERY_EXTENSION_REF, WEB_MAP_LINKS_EXTENSION]
    if any(k.startswith("eo:") for band in bands.values() for k in band):
        extensions.append(EO_EXTENSION)
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": cid,
        "title": f"{cid} ({NAMESPACE}.{cid})",
        "description": (
            f"Raster chunks of the Iceberg table `{NAMESPACE}.{cid}` in a PixelQuery warehouse. Each item is one "
            "snapshot of the table (one ingested raster); its tiles can be rendered as of any snapshot."
        ),
        "keywords": sorted({"pixelquery", "iceberg", *products}),
        "license": "other",
        "providers": providers,
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}},
        "summaries": summaries,
        "item_assets": {
            "thumbnail": {"type": "image/png", "title": "Preview of the snapshot", "roles": ["thumbnail"]},
            "overview": {"type": GEOTIFF, "title": "Reduced-resolution GeoTIFF of all bands", "roles": ["overview"]},
        },
        "pixelquery:table": f"{NAMESPACE}.{cid}",
        "pixelquery:current_snapshot_id": index.snapshot_id,
        "pixelquery:snapshot_count": len(index.snapshots),
        "links": links,
    }


def resolve_collection(doc: dict[str, Any], stac_base: str, app_base: str) -> dict[str, Any]:
    """A response copy of a cached collection document for one request's base URLs."""
    links = [*collection_links(stac_base, doc["id"], doc["title"]), *absolute_links(app_base, doc["links"])]
    return {**doc, "stac_extensions": _extensions(doc, stac_base), "links": links}
