"""STAC Browser, the STAC ecosystem's reference web client, against a live ``pixelquery-tiler serve``.

STAC Browser 4.0.1 is built from its npm package by ``tests/stac_browser/setup.sh`` (``tests/run.sh`` runs it) and
served as static files on its own loopback port, as a deployment would host it: a cross-origin client of our
``/stac`` API. A headless Chromium session (``tests/browser/stac_browser_check.mjs``) opens the catalog, clicks
into an item, and submits a search by bbox and datetime through the form; the assertions below check what a user
would see and that every request to our server succeeded. Requests to hosts other than loopback (STAC Browser's
OpenStreetMap basemap) fail offline by design and are not our server's.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
import harness

import servers

pytestmark = pytest.mark.browser

DIST = Path(__file__).resolve().parent / "stac_browser" / "dist"
LANDSAT = "gw_LC08_224077_20200518_B2_30m.tif"


def require_stac_browser() -> None:
    harness.require_browser()
    if not (DIST / "index.html").is_file():
        msg = "STAC Browser not built: run bash tests/stac_browser/setup.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@contextlib.contextmanager
def stac_browser_site(catalog_url: str):
    """Serve the STAC Browser build with its runtime configuration pointing at ``catalog_url``.

    The build reads ``window.STAC_BROWSER_CONFIG`` from ``config.js``, which its ``index.html`` does not load by
    itself (deployments inject it); this static server injects the script tag and answers ``/config.js``.
    """
    config_js = f"window.STAC_BROWSER_CONFIG = {json.dumps({'catalogUrl': catalog_url})};\n".encode()
    index = (DIST / "index.html").read_bytes().replace(b"<title>", b'<script src="/config.js"></script><title>', 1)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            body = {"/config.js": config_js, "/": index, "/index.html": index}.get(path)
            if body is None:
                super().do_GET()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript" if path.endswith(".js") else "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with servers.http_server(functools.partial(Handler, directory=str(DIST))) as url:
        yield url + "/"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, str]:
    require_stac_browser()
    from pixelquery_tiler import Warehouse

    root = tmp_path_factory.mktemp("stac-browser")
    wh = Warehouse(str(root / "warehouse"))
    item = wh.ingest(str(harness.data_file(LANDSAT)), "landsat", datetime="2020-05-18T13:30:00Z")
    wh.ingest(str(harness.data_file("stars_L7_ETMs_olinda_28m.tif")), "olinda", datetime="2002-07-04T12:00:00Z")
    with harness.live_server(root / "warehouse", root / "server.log") as api, stac_browser_site(api + "stac/") as site:
        result = harness.run_node(
            "stac_browser_check.mjs",
            {
                "browser": site,
                "api": api,
                "collections": ["landsat", "olinda"],
                "collection": "landsat",
                "itemTitle": LANDSAT,
                "datetimeRange": "2020-05-01 00:00:00 ~ 2020-12-31 23:59:59",
                "searchPoint": [-54.8, -25.1],
            },
            timeout=400,
        )
    return result, api, item.item_id


def test_catalog_lists_every_collection(session: tuple[dict, str, str]) -> None:
    result, _, _ = session
    assert "landsat (pixelquery.landsat)" in result["steps"]["catalog"]
    assert "olinda (pixelquery.olinda)" in result["steps"]["catalog"]


def test_item_page_shows_thumbnail_bands_and_web_map_layer(session: tuple[dict, str, str]) -> None:
    result, _api, item_id = session
    assert f"/items/{item_id}" in result["itemUrl"]
    assert result["thumbnails"] and all(t["loaded"] for t in result["thumbnails"]), result["thumbnails"]
    page = result["steps"]["item"]
    assert "Bands" in page, page
    gsd = page.index("GSD")
    assert "blue" in page and re.search(r"GSD\s+30\s*m", page), repr(page[gsd : gsd + 40])
    # STAC Browser draws the item's `xyz` web-map link on its map: our tile endpoint answered those requests
    tiles = [r for r in result["requests"] if f"/collections/landsat/items/{item_id}/tiles/" in r["url"]]
    assert tiles and all(r["status"] == 200 for r in tiles), tiles


def test_search_by_bbox_and_datetime_lists_the_item(session: tuple[dict, str, str]) -> None:
    result, _, _ = session
    bodies = [json.loads(s["body"]) for s in result["searches"] if s["method"] == "POST" and s["body"]]
    submitted = [b for b in bodies if "bbox" in b and "datetime" in b]
    assert submitted, result["searches"]
    west, south, east, north = submitted[-1]["bbox"]
    assert west < -54.8 < east and south < -25.1 < north  # the box drawn around the clicked point
    assert submitted[-1]["datetime"].startswith("2020-05-01")
    assert LANDSAT in result["steps"]["search"]


def test_no_failed_request_to_our_server(session: tuple[dict, str, str]) -> None:
    result, _api, _ = session
    assert result["requests"], "STAC Browser made no request to the API"
    assert [r for r in result["requests"] if r["status"] >= 400] == []
    assert [p for p in result["problems"] if p["kind"] == "pageerror"] == []
