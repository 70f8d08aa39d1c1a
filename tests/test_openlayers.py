"""OpenLayers as a WMTS client of ``/collections/{cid}/WMTSCapabilities.xml``.

A test page (tests/browser/ol_page, bundled from the npm ``ol`` package by esbuild at test time and served by the
test itself) parses our capabilities with ``ol/format/WMTSCapabilities``, builds the layer with
``optionsFromCapabilities``, sets the ``Time`` dimension through ``dimensions``, and reads the rendered canvas back.
Both request encodings are exercised: whatever OpenLayers picks from the capabilities by itself, and REST
(ResourceURL template, ``{Time}`` -> ``datetime=``).
Runs headless Debian chromium via playwright-core against a live ``pixelquery-tiler serve``.
Screenshots: tests/artifacts/openlayers-*.png. Needs ``bash tests/browser/setup.sh``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
import harness

pytestmark = pytest.mark.browser

EARLY, LATE = "2020-05-18", "2020-07-21"
RUNS = [
    {"name": "default-time"},
    {"name": "auto-early", "time": EARLY},
    {"name": "auto-late", "time": LATE},
    {"name": "rest-early", "time": EARLY, "requestEncoding": "REST"},
    {"name": "rest-late", "time": LATE, "requestEncoding": "REST"},
    {"name": "plain-late", "time": LATE, "requestEncoding": "REST", "plain": True},
]
#: rendering passed through the capabilities URL into every tile URL (what the items' STAC "wmts" links carry)
RENDER = "bands=blue&rescale=7000,14000"


def time_in_url(url: str, date: str) -> bool:
    """REST tiles carry the Time dimension as ``datetime=`` (ResourceURL), KVP GetTile as ``Time=``."""
    return f"datetime={date}" in url or f"Time={date}" in url


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    harness.require_browser()
    with harness.two_date_landsat_server(tmp_path_factory.mktemp("openlayers"), EARLY, LATE) as base:
        yield base


@pytest.fixture(scope="module")
def result(server) -> dict:
    res = harness.run_node("ol_check.mjs", {"base": server, "collection": "landsat", "runs": RUNS, "capsQuery": RENDER})
    harness.publish_docs(res["runs"]["rest-late"]["screenshot"], "openlayers-wmts")
    return res


def test_capabilities_give_layer_options(result):
    run = result["runs"]["rest-early"]
    assert run["layer"].startswith("landsat") and run["matrixSet"] == "WebMercatorQuad"
    assert run["projection"] == "EPSG:3857"
    assert run["requestEncoding"] == "REST"
    assert run["urls"] and all(u.startswith("http://127.0.0.1:") for u in run["urls"])
    assert "{Time}" in run["urls"][0] and "datetime={Time}" in run["urls"][0]
    assert run["format"] in ("image/png", "image/jpeg", "image/webp")
    assert {EARLY, LATE} <= set(run["timeValues"])
    assert result["runs"]["auto-early"]["requestEncoding"] in ("REST", "KVP")


def test_time_dimension_default_is_latest(result):
    run = result["runs"]["default-time"]
    assert run["defaultDimensions"]["Time"] == LATE
    assert run["tiles"]["loaded"] > 0 and run["tiles"]["failed"] == 0
    assert all(time_in_url(u, LATE) for u in run["tiles"]["urls"])


@pytest.mark.parametrize("name,date", [(r["name"], r["time"]) for r in RUNS if "time" in r])
def test_tiles_load_with_time_dimension(result, name, date):
    run = result["runs"][name]
    assert run["dimensions"]["Time"] == date
    tiles = run["tiles"]
    assert tiles["loaded"] > 0 and tiles["failed"] == 0, tiles
    assert all(time_in_url(u, date) for u in tiles["urls"]), tiles["urls"][:3]
    if run["requestEncoding"] == "REST":
        assert all(f"datetime={date}" in u for u in tiles["urls"])
    # non-empty pixels in the canvas readback: the view is fitted to the layer's WGS84BoundingBox
    assert run["canvas"]["opaqueFraction"] > 0.3, run["canvas"]
    assert run["canvas"]["meanRgb"] > 5


@pytest.mark.parametrize("encoding", ["auto", "rest"])
def test_time_dimension_changes_pixels(result, encoding):
    early, late = result["runs"][f"{encoding}-early"], result["runs"][f"{encoding}-late"]
    assert late["canvas"]["meanRgb"] > early["canvas"]["meanRgb"] + 2  # the bright block exists only later
    assert harness.changed_fraction(early["screenshot"], late["screenshot"]) > 0.05
    default = result["runs"]["default-time"]
    assert harness.changed_fraction(default["screenshot"], late["screenshot"]) < 0.002


def test_rendering_passes_from_capabilities_url_to_tiles(result):
    styled, plain = result["runs"]["rest-late"], result["runs"]["plain-late"]
    assert all("bands=blue" in u and "rescale=7000%2C14000" in u for u in styled["tiles"]["urls"])
    # capabilities without rendering parameters carry the collection's default (landsat-c2-l2 profile on the one
    # stored band), so the plain document renders like the STAC link's instead of raw, near-black 16-bit data
    assert all("bands=blue" in u and "rescale=7000%2C14000" in u for u in plain["tiles"]["urls"])
    assert plain["tiles"]["loaded"] > 0 and plain["tiles"]["failed"] == 0 and plain["canvas"]["opaqueFraction"] > 0.3
    assert plain["canvas"]["meanRgb"] > 30
    assert harness.changed_fraction(plain["screenshot"], styled["screenshot"]) < 0.002


def test_rest_and_kvp_render_the_same(result):
    for date in ("early", "late"):
        assert (
            harness.changed_fraction(
                result["runs"][f"auto-{date}"]["screenshot"], result["runs"][f"rest-{date}"]["screenshot"]
            )
            < 0.002
        )


def test_no_console_errors(result):
    assert result["problems"] == []
