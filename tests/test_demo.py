"""``pixelquery-tiler demo``: what a new user runs first (issue 5).

The demo is started exactly as the README says (console script, no shared/ data: only what the package
ships), from an empty warehouse folder. The 60 s is the issue's start-up budget for a fresh install on a
2-core machine, a functional deadline for the first answer, not a performance measurement.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
import harness

import servers
from pixelquery_tiler.demo import DEMO_FILES, build_demo

STARTUP_BUDGET_S = 60.0


def demo_command(warehouse: Path) -> list[str]:
    return [*servers.cli(), "demo", "--port", "{port}", "--warehouse", str(warehouse)]


def test_demo_serves_stac_and_a_tile_within_budget(tmp_path: Path) -> None:
    warehouse = tmp_path / "demo"
    started = time.monotonic()
    with harness.live_server(
        warehouse, tmp_path / "demo.log", startup_timeout=STARTUP_BUDGET_S, command=demo_command(warehouse)
    ) as base:
        status, body, _ = harness.http_get(base + "stac/collections")
        assert status == 200
        assert {c["id"] for c in json.loads(body)["collections"]} == {"landsat", "olinda", "rgb", "s2"}
        # the Landsat scene centre at z10, the native-ish zoom of the 30 m scene
        status, png, headers = harness.http_get(
            base + "collections/landsat/tiles/WebMercatorQuad/10/356/586.png?bands=blue&rescale=7000,14000"
        )
        elapsed = time.monotonic() - started
        assert status == 200 and headers["content-type"] == "image/png"
        assert elapsed < STARTUP_BUDGET_S, f"demo answered a tile after {elapsed:.1f} s"
        with MemoryFile(png) as mem, mem.open() as img:
            rgb = img.read()
        assert rgb[:3].std() > 5, "tile is flat: no imagery rendered"
        status, body, _ = harness.http_get(base)
        assert status == 200 and b"<html" in body.lower()
    # the second start reuses the cached warehouse instead of ingesting again
    marker = json.loads((warehouse / "demo.json").read_text())
    assert len(marker["items"]) == len(DEMO_FILES)


def test_demo_time_series_shows_a_change(tmp_path: Path) -> None:
    """The derived acquisitions differ from the real one, so the time slider has something to show."""
    warehouse = build_demo(tmp_path / "demo", progress=False)
    from pixelquery_tiler import Warehouse

    landsat = Warehouse(str(warehouse), refresh_interval=0).collection("landsat")
    with rasterio.open(Path(harness.REPO) / "pixelquery_tiler" / "data" / "gw_LC08_224077_20200518_B2_30m.tif") as src:
        bounds, crs, shape = tuple(src.bounds), src.crs.to_string(), src.shape
    reads = {
        day: landsat.read(bounds, crs, shape[1] // 4, shape[0] // 4, datetime=day).data.astype(float)
        for day in ("2020-05-18", "2020-07-21", "2020-09-23")
    }
    assert np.abs(reads["2020-07-21"] - reads["2020-05-18"]).mean() > 50
    assert np.abs(reads["2020-09-23"] - reads["2020-05-18"]).mean() > 500
    # landsat is a true-colour scene; s2 one item holding a "10 m" and a "20 m" band group
    wh = Warehouse(str(warehouse), refresh_interval=0)
    rgb = landsat.read(bounds, crs, shape[1] // 4, shape[0] // 4, bands=["red", "green", "blue"], datetime="2020-05-18")
    assert rgb.data.shape[0] == 3 and np.abs(rgb.data[0].astype(float) - rgb.data[2]).mean() > 100
    s2 = wh.collection("s2").index()
    assert sorted((it.bands, round(it.resolutions[0])) for it in s2.items) == [
        (("blue", "green", "red", "nir"), 28),
        (("swir16", "swir22"), 57),
    ]
    assert len({it.item_id for it in s2.items}) == 1
    # a rebuild is skipped when the marker says the demo is complete
    mtime = (warehouse / "demo.json").stat().st_mtime
    build_demo(warehouse, progress=False)
    assert (warehouse / "demo.json").stat().st_mtime == mtime


@pytest.mark.parametrize("name", sorted({f.source for f in DEMO_FILES if not f.source.startswith(("derived:", "s2:"))}))
def test_demo_data_ships_with_the_package(name: str) -> None:
    from pixelquery_tiler.demo import bundled

    path = bundled(name)
    assert path.exists()
    assert name in (path.parent / "SOURCES.md").read_text()
