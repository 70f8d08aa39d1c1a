"""The viewer's time-series chart in a real browser (headless Debian chromium via playwright-core).

tests/browser/chart_check.mjs opens the viewer on a three-date collection, clicks the map (point series), drags a
rectangle (mean per date) and switches to NDVI on a 6-band scene; the tests assert on what it recorded. The page
screenshot becomes docs/screenshots/viewer-chart.jpg with PIXELQUERY_UPDATE_DOCS=1 (README "Analysis").

Needs ``bash tests/browser/setup.sh`` (skipped without it, failed under CI).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
import harness

pytestmark = pytest.mark.browser

DATES = ["2020-04-16", "2020-05-18", "2020-07-21"]


@pytest.fixture(scope="module")
def chart_warehouse(tmp_path_factory) -> Path:
    from pixelquery_tiler import Warehouse

    root = tmp_path_factory.mktemp("chart")
    wh = Warehouse(str(root / "warehouse"))
    b2_30 = harness.data_file("gw_LC08_224077_20200518_B2_30m.tif")
    wh.ingest(str(harness.data_file("gw_LC08_224077_20200518_B2_60m.tif")), "landsat", datetime=f"{DATES[0]}T13:30:00Z")
    wh.ingest(str(b2_30), "landsat", datetime=f"{DATES[1]}T13:30:00Z")
    wh.ingest(str(b2_30), "landsat", datetime=f"{DATES[2]}T13:30:00Z")
    wh.ingest(str(harness.data_file("stars_L7_ETMs_olinda_28m.tif")), "olinda", datetime="2002-07-04T12:00:00Z")
    return root / "warehouse"


@pytest.fixture(scope="module")
def run(chart_warehouse, tmp_path_factory) -> dict:
    harness.require_browser()
    log = tmp_path_factory.mktemp("chart-server") / "server.log"
    with harness.live_server(chart_warehouse, log) as base:
        config = {"base": base, "collection": "landsat", "ndviCollection": "olinda"}
        result = harness.run_node("chart_check.mjs", config)
    harness.publish_docs(result["charts"]["point"]["screenshot"], "viewer-chart")
    return result


def test_click_opens_chart_with_one_point_per_date(run):
    point = run["charts"]["point"]
    assert point["state"] == "ready" and point["kind"] == "point" and point["canvas"]
    assert [e["datetime"][:10] for e in point["series"]] == DATES == run["dates"]
    assert point["names"] == ["blue"]  # the default rendering of the collection
    assert all(isinstance(e["values"]["blue"], (int, float)) for e in point["series"])
    # the second and third observations are the same file: the same pixel value
    assert point["series"][1]["values"] == point["series"][2]["values"]
    assert point["selectedDate"] == DATES[-1]  # highlighted: the slider's date
    assert run["highlightAfterSlider"] == DATES[1]


def test_rectangle_gives_mean_per_date(run):
    rect = run["charts"]["rectangle"]
    assert rect["state"] == "ready" and rect["kind"] == "rectangle" and rect["canvas"]
    assert [e["datetime"][:10] for e in rect["series"]] == DATES
    assert all(math.isfinite(e["values"]["blue"]) for e in rect["series"])
    assert run["rectangleRequests"] == [200]


def test_chart_follows_ndvi_rendering(run):
    ndvi = run["charts"]["ndvi"]
    assert ndvi["state"] == "ready" and ndvi["names"] == ["(nir-red)/(nir+red)"]
    [entry] = ndvi["series"]
    assert -1 <= entry["values"]["(nir-red)/(nir+red)"] <= 1


def test_no_console_errors(run):
    assert run["problems"] == []
