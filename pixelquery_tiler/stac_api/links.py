"""Every link the STAC API writes, built in one place.

Two families: STAC navigation links (``self``, ``root``, ``parent``, ``collection``, ``items``, queryables,
paging), absolute under the request's STAC root ``.../stac/``; and tile links (STAC web-map-links extension:
``xyz``, ``wmts``, ``tilejson``) to the tile endpoints of CONTRACT.md, which cached documents hold relative to
the app root until ``absolute_links`` resolves them for one request (links follow the host the client used).
The tile URL patterns come from ``urls.py``, where the tile routes take theirs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from ..urls import capabilities_path, collection_path, tile_path, tilejson_path

QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
JSON, GEOJSON, SCHEMA_JSON, PNG = "application/json", "application/geo+json", "application/schema+json", "image/png"
CATALOG_TITLE = "pixelquery-tiler"


def _with_query(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


def web_map_links(base: str, query: str, layer: str, what: str) -> list[dict[str, Any]]:
    """``xyz``/``wmts``/``tilejson`` links (STAC web-map-links extension) of one tile endpoint family."""
    return [
        {
            "rel": "xyz",
            "type": "image/png",
            "title": f"XYZ tiles of {what}",
            "href": _with_query(tile_path(base), query),
        },
        {
            "rel": "wmts",
            "type": "image/png",
            "title": f"WMTS of {what}",
            "href": _with_query(capabilities_path(base), query),
            "wmts:layer": layer,
            "wmts:encoding": "rest",
        },
        {
            "rel": "tilejson",
            "type": "application/json",
            "title": f"TileJSON of {what}",
            "href": _with_query(tilejson_path(base), query),
        },
    ]


def time_travel_link(cid: str, snapshot_id: int, render: dict[str, str]) -> dict[str, Any]:
    """``xyz`` tiles of the whole collection as of one snapshot (the ``snapshot_id`` parameter)."""
    query = urlencode([("snapshot_id", str(snapshot_id)), *render.items()], safe=",")
    return {
        "rel": "xyz",
        "type": PNG,
        "title": "XYZ tiles of the collection as of this snapshot (time travel)",
        "href": f"{tile_path(collection_path(cid))}?{query}",
    }


def absolute(app_base: str, href: str) -> str:
    """``href`` under the request's app root, unless it is already absolute."""
    return href if href.startswith(("http://", "https://")) else app_base + href


def absolute_links(app_base: str, links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of cached tile links with hrefs made absolute for one request's app root."""
    return [{**link, "href": absolute(app_base, link["href"])} for link in links]


# -- STAC navigation, absolute under the request's STAC root ---------------------------------------------------
def collection_url(stac_base: str, cid: str) -> str:
    """A collection's STAC URL under the request's STAC root (ids quoted: they are path segments)."""
    return f"{stac_base}collections/{quote(cid, safe='')}"


def item_links(stac_base: str, cid: str, iid: str) -> list[dict[str, Any]]:
    """Navigation links of an item document: self, parent and collection, root."""
    url = collection_url(stac_base, cid)
    return [
        {"rel": "self", "type": GEOJSON, "href": f"{url}/items/{quote(iid, safe='')}"},
        {"rel": "parent", "type": JSON, "href": url},
        {"rel": "collection", "type": JSON, "href": url},
        {"rel": "root", "type": JSON, "href": stac_base},
    ]


def collection_links(stac_base: str, cid: str, title: str) -> list[dict[str, Any]]:
    """Navigation links of a collection document: self, parent, root, items and queryables."""
    url = collection_url(stac_base, cid)
    return [
        {"rel": "self", "type": JSON, "title": title, "href": url},
        {"rel": "parent", "type": JSON, "title": CATALOG_TITLE, "href": stac_base},
        {"rel": "root", "type": JSON, "title": CATALOG_TITLE, "href": stac_base},
        {"rel": "items", "type": GEOJSON, "title": "Items (one per snapshot)", "href": f"{url}/items"},
        {"rel": QUERYABLES_REL, "type": SCHEMA_JSON, "title": "Queryables", "href": f"{url}/queryables"},
    ]


def collections_links(stac_base: str) -> list[dict[str, Any]]:
    """Navigation links of ``/collections``."""
    return [
        {"rel": "self", "type": JSON, "href": f"{stac_base}collections"},
        {"rel": "root", "type": JSON, "href": stac_base},
        {"rel": "parent", "type": JSON, "href": stac_base},
    ]


def item_collection_links(stac_base: str, cid: str) -> list[dict[str, Any]]:
    """Extra links of ``/collections/{cid}/items`` pages."""
    url = collection_url(stac_base, cid)
    return [{"rel": "collection", "type": JSON, "href": url}, {"rel": "parent", "type": JSON, "href": url}]


def search_links(
    stac_base: str,
    self_href: str,
    extra: list[dict[str, Any]] | None = None,
    next_get: str | None = None,
    next_post: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """``self``/``root`` of a page of items, ``extra`` links, and its ``next`` page: a GET URL, or the POST body
    to send again."""
    links: list[dict[str, Any]] = [
        {"rel": "self", "type": GEOJSON, "href": self_href},
        {"rel": "root", "type": JSON, "href": stac_base},
        *(extra or []),
    ]
    if next_post is not None:
        links.append(
            {"rel": "next", "type": GEOJSON, "href": self_href, "method": "POST", "body": next_post, "merge": False}
        )
    elif next_get is not None:
        links.append({"rel": "next", "type": GEOJSON, "method": "GET", "href": next_get})
    return links
