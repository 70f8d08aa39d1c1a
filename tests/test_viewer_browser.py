"""The viewer in a real browser (headless Debian chromium via playwright-core) against a live
``pixelquery-tiler serve``.

One scripted session (tests/browser/viewer_check.mjs) opens the viewer, waits for tiles, moves the time slider,
time-travels, searches the map extent and switches to NDVI; the tests below assert on what it recorded.
Screenshots land in tests/artifacts/viewer-*.png.

Needs ``bash tests/browser/setup.sh`` (skipped without it, failed under CI).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
import harness

pytestmark = pytest.mark.browser

DATES = ["2020-04-16", "2020-05-18", "2020-07-21"]


def _derived_clearing(src: Path, out: Path) -> Path:
    """A later acquisition of the 30 m scene with a visible change (a bright cleared block)."""
    import rasterio

    with rasterio.open(src) as ds:
        data = ds.read(1)
        profile = ds.profile
    h, w = data.shape
    data[h // 4 : h // 2, w // 4 : w // 2] = 14000
    profile.update(driver="GTiff", compress="deflate")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data, 1)
    return out


@pytest.fixture(scope="module")
def viewer_warehouse(tmp_path_factory) -> Path:
    from pixelquery_tiler import Warehouse

    root = tmp_path_factory.mktemp("viewer")
    wh_path = root / "warehouse"
    wh = Warehouse(str(wh_path))
    b2_30 = harness.data_file("gw_LC08_224077_20200518_B2_30m.tif")
    wh.ingest(str(harness.data_file("gw_LC08_224077_20200518_B2_60m.tif")), "landsat", datetime=f"{DATES[0]}T13:30:00Z")
    wh.ingest(str(b2_30), "landsat", datetime=f"{DATES[1]}T13:30:00Z")
    wh.ingest(
        str(_derived_clearing(b2_30, root / "clearing.tif")),
        "landsat",
        product="landsat-c2-l2",
        bands=["blue"],
        datetime=f"{DATES[2]}T13:30:00Z",
    )
    # a real 6-band Landsat 7 ETM+ scene (blue, green, red, nir, swir16, swir22): NDVI from real red/nir
    wh.ingest(str(harness.data_file("stars_L7_ETMs_olinda_28m.tif")), "olinda", datetime="2002-07-04T12:00:00Z")
    # a Sentinel-2-named scene: red and nir on the 28.5 m grid, swir16 on a 2x coarser one (real ETM+ pixels)
    from scene_fixtures import sentinel2_scene

    files = sentinel2_scene(root / "s2", harness.data_file("stars_L7_ETMs_olinda_28m.tif").parent)
    wh.ingest_sources([str(p) for p in files.values()], "s2")
    return wh_path


@pytest.fixture(scope="module")
def server(viewer_warehouse, tmp_path_factory):
    harness.require_browser()
    log = tmp_path_factory.mktemp("viewer-server") / "server.log"
    with harness.live_server(viewer_warehouse, log) as base:
        yield base


@pytest.fixture(scope="module")
def run(server) -> dict:
    result = harness.run_node(
        "viewer_check.mjs",
        {"base": server, "timeCollection": "landsat", "ndviCollection": "olinda", "ratioCollection": "s2"},
    )
    for shot, name in (("page", "viewer"), ("search-page", "viewer-search"), ("ndvi-page", "viewer-ndvi")):
        harness.publish_docs(harness.ARTIFACTS / f"viewer-{shot}.png", name)
    return result


def test_viewer_page_served(server):
    status, body, headers = harness.http_get(server)
    assert status == 200 and b"<title>pixelquery-tiler viewer</title>" in body
    assert headers.get("content-type", "").startswith("text/html")
    status, body, _ = harness.http_get(server + "viewer")
    assert status == 200 and b"static/viewer/viewer.js" in body
    status, body, headers = harness.http_get(server + "static/leaflet/leaflet.js")
    assert status == 200 and b"Leaflet" in body[:2000] and b"1.9.4" in body[:2000]
    for name in ("viewer.js", "viewer.css"):
        status, _, _ = harness.http_get(server + "static/viewer/" + name)
        assert status == 200
    # no absolute or CDN URLs in the page: works behind a prefix and offline
    assert b'src="/' not in body and b'href="/' not in body and b"//unpkg" not in body and b"cdn" not in body.lower()


def test_loads_collection_and_tiles(run):
    step = run["steps"]["time-latest"]
    assert run["collections"] == ["landsat", "olinda", "s2"]
    assert run["dates"] == DATES
    assert step["label"] == DATES[-1]
    assert f"datetime={DATES[-1]}" in step["tileUrl"]
    assert step["tilesLoaded"] > 0 and step["tileErrors"] == 0
    # tiles painted most of the map (the view is fitted to the collection extent)
    assert harness.background_fraction(step["screenshot"]) < 0.5


def test_time_slider_switches_dates(run):
    latest, previous, first = (run["steps"][k] for k in ("time-latest", "time-previous", "time-first"))
    assert previous["label"] == DATES[1] and f"datetime={DATES[1]}" in previous["tileUrl"]
    assert first["label"] == DATES[0] and f"datetime={DATES[0]}" in first["tileUrl"]
    # the cleared block exists only on the latest date: the image must change
    assert harness.changed_fraction(latest["screenshot"], previous["screenshot"]) > 0.01
    # the first date is the 60 m acquisition of the same scene: at this zoom both read equivalent overviews, so the
    # image may look the same, but it must be painted
    assert first["tilesLoaded"] > previous["tilesLoaded"] and first["tileErrors"] == 0
    assert harness.background_fraction(first["screenshot"]) < 0.5


def test_snapshot_time_travel(run):
    head, oldest, again = (run["steps"][k] for k in ("mosaic-head", "mosaic-oldest-snapshot", "mosaic-head-again"))
    assert "datetime=" not in head["tileUrl"] and "snapshot_id=" not in head["tileUrl"]
    assert len(run["snapshots"]) == 1 + 3  # "latest" + one per ingest
    assert f"snapshot_id={run['snapshots'][-1]}" in oldest["tileUrl"]
    # as of the first snapshot the later acquisition (with the cleared block) did not exist yet
    assert harness.changed_fraction(head["screenshot"], oldest["screenshot"]) > 0.01
    assert harness.changed_fraction(head["screenshot"], again["screenshot"]) < 0.002


def test_search_lists_items_in_map_extent(run):
    search = run["search"]
    assert search["state"] == "done", search
    ids = {i["id"] for i in search["items"]}
    assert len(ids) == 3 and {i["collection"] for i in search["items"]} == {"landsat"}
    # the item's own layer loaded (item tile endpoint, all 200)
    assert "/items/" in search["itemTileUrl"]
    assert search["itemTileRequests"] and set(search["itemTileRequests"]) == {200}
    assert harness.background_fraction(search["itemScreenshot"]) < 0.5


def test_ndvi_control_changes_image(run):
    default, ndvi, nir = (run["steps"][k] for k in ("ndvi-default", "ndvi", "ndvi-band-nir"))
    assert {m["value"] for m in run["ndviModes"] if not m["disabled"]} >= {"default", "rgb", "band", "ndvi"}
    assert "expression=%28nir-red%29%2F%28nir%2Bred%29" in ndvi["tileUrl"]
    assert "rescale=-1%2C1" in ndvi["tileUrl"] and "colormap_name=rdylgn" in ndvi["tileUrl"]
    assert (run["ndviRescale"], run["ndviColormap"]) == ("-1,1", "rdylgn")
    assert harness.changed_fraction(default["screenshot"], ndvi["screenshot"]) > 0.2
    assert harness.changed_fraction(ndvi["screenshot"], nir["screenshot"]) > 0.2
    for step in (default, ndvi, nir):
        # the square scene fills less of the wide map than the landsat one: a looser bound on empty map
        assert step["tileErrors"] == 0 and harness.background_fraction(step["screenshot"]) < 0.6


def test_band_ratio_preset_mixes_resolutions(run):
    """NDMI on the s2 scene: nir (28.5 m) and swir16 (57 m) from their own grids, every tile 200, not blank."""
    default, ndmi = run["steps"]["ratio-default"], run["steps"]["ndmi"]
    modes = {m["value"]: m["disabled"] for m in run["ratioModes"]}
    assert modes["ndmi"] is False and modes["ndvi"] is False and modes["rgb"] is True  # s2 has no green/blue
    assert "expression=%28nir-swir16%29%2F%28nir%2Bswir16%29" in ndmi["tileUrl"]
    assert "rescale=-1%2C1" in ndmi["tileUrl"] and "colormap_name=rdbu" in ndmi["tileUrl"]
    assert run["ndmiTileRequests"] and set(run["ndmiTileRequests"]) == {200}
    assert ndmi["tileErrors"] == 0 and ndmi["tilesLoaded"] > 0
    assert harness.background_fraction(ndmi["screenshot"]) < 0.6
    assert harness.changed_fraction(default["screenshot"], ndmi["screenshot"]) > 0.2
    assert "swir16" in run["ndmiHint"]


def test_share_links_for_other_clients(run, server):
    xyz, wmts = run["share"]["xyz"], run["share"]["wmts"]
    assert xyz.startswith(server + "collections/olinda/tiles/WebMercatorQuad/{z}/{x}/{y}.png?")
    assert "expression=" in xyz and "colormap_name=rdylgn" in xyz
    assert wmts.startswith(server + "collections/olinda/WMTSCapabilities.xml?") and "expression=" in wmts
    status, body, _ = harness.http_get(wmts)
    assert status == 200 and b"colormap_name=rdylgn" in body
    status, _, _headers = harness.http_get(xyz.replace("{z}/{x}/{y}", "0/0/0"))
    assert status in (200, 204, 404)


def test_landsat_single_band_has_no_ndvi(run):
    modes = {m["value"]: m["disabled"] for m in run["modes"]}
    assert modes["ndvi"] is True and modes["ndmi"] is True and modes["default"] is False


def test_no_console_errors(run):
    assert run["problems"] == []
    assert "error" not in (run.get("statusClass") or "")


def test_viewer_works_behind_a_path_prefix(server):
    """All URLs are relative (server links are rebased), so a reverse proxy under /pq/ needs no configuration."""
    with harness.prefix_proxy(server, "/pq") as proxied:
        res = harness.run_node("viewer_prefix.mjs", {"base": proxied, "collection": "landsat"})
    assert res["problems"] == []
    assert res["tilesLoaded"] > 0 and len(res["items"]) == 3
    assert res["itemTileUrl"].startswith(proxied + "collections/landsat/items/")
    urls = [r["url"] for r in res["requests"]]
    assert any("/tiles/" in u for u in urls) and any("/stac/search" in u for u in urls)
    assert all(u.startswith(proxied) or u.startswith("data:") for u in urls), [
        u for u in urls if not u.startswith(proxied)
    ][:5]
