"""WMTS: capabilities parsed by OWSLib and read by GDAL's WMTS driver, over real HTTP (uvicorn)."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from owslib.wmts import WebMapTileService

from conftest import TileWarehouse

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
    r = httpx.get(f"{live_server}/collections/pair/WMTSCapabilities.xml?rescale=0,10000&datetime=2020-05-01/..", timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert "&amp;rescale=" in r.text and "&rescale" not in r.text
    root = ET.fromstring(r.content)
    sets = {s.find("ows:Identifier", NS).text: s for s in root.iterfind("wmts:Contents/wmts:TileMatrixSet", NS)}
    assert sets["WebMercatorQuad"].find("wmts:WellKnownScaleSet", NS).text == "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible"
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
    one = ET.fromstring(httpx.get(f"{live_server}/collections/pair/items/{item}/WMTSCapabilities.xml", timeout=60).content)
    values = {v.text for v in one.iterfind("wmts:Contents/wmts:Layer/wmts:Dimension/wmts:Value", NS)}
    assert values == {"2020-05-18"}


def test_owslib_gettile_kvp_and_rest(capabilities: str):
    wmts = WebMapTileService(capabilities)
    tile = wmts.gettile(layer=LAYER, tilematrixset="WebMercatorQuad", tilematrix="10", row=586, column=356, format="image/png", Time="2020-05-18")
    body = tile.read()
    assert body.startswith(b"\x89PNG")
    rest = wmts.buildTileResource(layer=LAYER, tilematrixset="WebMercatorQuad", tilematrix="10", row=586, column=356, Time="2020-06-03")
    r = httpx.get(rest, timeout=60)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


def gdal_wmts_name(capabilities: str, layer: str = LAYER, tms: str = "WebMercatorQuad") -> str:
    # GDAL splits the connection string on commas: encode them inside the URL
    return f"WMTS:{capabilities.replace(',', '%2C')},layer={layer},tilematrixset={tms}"


def test_gdal_wmts_driver_reads_an_image(capabilities: str):
    """rasterio's bundled GDAL opens the service (no system GDAL needed) and reads real pixels."""
    with rasterio.Env(GDAL_HTTP_TIMEOUT="60"):
        with rasterio.open(gdal_wmts_name(capabilities + "?rescale=0,16000")) as ds:
            assert ds.crs.to_epsg() == 3857 and ds.count >= 1
            out = ds.read(1, out_shape=(256, 256))
    assert out.max() > 0 and (out > 0).mean() > 0.2


@pytest.mark.skipif(shutil.which("gdal_translate") is None, reason="gdal_translate (Debian gdal-bin) not installed")
def test_gdal_translate_cli(capabilities: str, tmp_path: Path):
    out = tmp_path / "wmts.tif"
    proc = subprocess.run(
        ["gdal_translate", "-outsize", "256", "0", gdal_wmts_name(capabilities + "?rescale=0,16000"), str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out) as ds:
        data = ds.read(1)
    assert np.count_nonzero(data) > 0.2 * data.size
