"""The resolution-adaptive level 0 of the storage grid (``grid.level0_zoom`` / ``grid_for``), table-driven.

``test_grid.py`` checks how pixels are partitioned; this file checks which zoom level 0 sits on: the anchor zoom
for ~3 m to 120 m pixels (shared tile ids), otherwise a zoom whose chunks are a few hundred pixels a side, so the
catalog's rows per megapixel stay bounded from 0.1 m aerial imagery to a 10 km global grid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from rasterio.crs import CRS

from pixelquery_tiler.grid import (
    BASE_ZOOM,
    GEOGRAPHIC_CHUNK_SIZE,
    MAX_CHUNK_PX,
    MIN_CHUNK_PX,
    PROJECTED_CHUNK_SIZE,
    TARGET_CHUNK_PX,
    crs_id,
    grid_for,
    level0_zoom,
    overview_count,
)

UTM21S = CRS.from_epsg(32621)
WGS84 = CRS.from_epsg(4326)
#: California zone 3 in US survey feet: projected, but not in metres
FEET = CRS.from_epsg(2227)


@pytest.mark.parametrize(
    ("res", "zoom"),
    [
        (3.0, BASE_ZOOM),  # 2560 px: the finest pixel still on the anchor zoom
        (10.0, BASE_ZOOM),  # Sentinel-2
        (30.0, BASE_ZOOM),  # Landsat
        (120.0, BASE_ZOOM),  # 64 px: the coarsest still on the anchor zoom
        (2.9, BASE_ZOOM + 2),  # 2648 px at the anchor: two zooms down gives 662 px
        (0.1, BASE_ZOOM + 7),  # 76,800 px at the anchor -> 600 px chunks
        (121.0, BASE_ZOOM - 3),  # 63.5 px at the anchor -> 508 px chunks
        (1000.0, BASE_ZOOM - 6),
        (10_000.0, BASE_ZOOM - 9),  # a 10 km global grid: 393 px chunks
    ],
)
def test_level0_zoom_table(res: float, zoom: int) -> None:
    assert level0_zoom(PROJECTED_CHUNK_SIZE, res) == zoom


def test_level0_zoom_is_clamped_to_the_quadtree() -> None:
    assert level0_zoom(PROJECTED_CHUNK_SIZE, 1e-9) == 30  # never deeper than the grid's deepest zoom
    assert level0_zoom(PROJECTED_CHUNK_SIZE, 1e12) == 0  # never above the whole-extent tile


@pytest.mark.parametrize(
    ("crs", "resolutions"),
    [
        (UTM21S, np.geomspace(0.1, 10_000.0, 241)),  # 0.1 m .. 10 km
        (WGS84, np.geomspace(1e-6, 0.1, 241)),  # ~0.1 m .. ~11 km at the equator
        (FEET, np.geomspace(0.33, 33_000.0, 241)),  # the same ground range in feet
    ],
    ids=["metres", "degrees", "feet"],
)
def test_chunk_side_and_rows_per_megapixel_are_bounded(crs: CRS, resolutions: np.ndarray) -> None:
    """Every resolution gets level-0 chunks of 64..2560 px a side (so at most 1e6 / 64**2 < 245 catalog rows per
    megapixel), and off the anchor zoom within a factor sqrt(2) of the 512 px target."""
    for res in resolutions:
        grid = grid_for(crs, float(res))
        side = grid.tile_size(0) / res
        assert MIN_CHUNK_PX <= side <= MAX_CHUNK_PX, (res, grid.base_zoom, side)
        assert 1e6 / side**2 < 245
        if grid.base_zoom != BASE_ZOOM:
            assert TARGET_CHUNK_PX / math.sqrt(2) <= side <= TARGET_CHUNK_PX * math.sqrt(2), (res, side)


@pytest.mark.parametrize("res", [None, 0.0, -30.0, float("nan")])
def test_no_usable_resolution_means_the_anchor_zoom(res: float | None) -> None:
    assert grid_for(UTM21S, res).base_zoom == BASE_ZOOM


def test_chunk_size_per_crs_unit() -> None:
    assert grid_for(UTM21S).chunk_size == PROJECTED_CHUNK_SIZE
    assert grid_for(WGS84).chunk_size == GEOGRAPHIC_CHUNK_SIZE
    feet = grid_for(FEET).chunk_size
    assert feet == pytest.approx(PROJECTED_CHUNK_SIZE / 0.3048006096, rel=1e-9)  # 7680 m, in US survey feet
    # a 30 m raster in feet lands on the anchor zoom, exactly like a 30 m raster in metres
    assert grid_for(FEET, 30 / 0.3048006096).base_zoom == grid_for(UTM21S, 30.0).base_zoom == BASE_ZOOM


def test_levels_nest_across_zooms() -> None:
    """A grid off the anchor zoom still nests: its level-k tile is exactly 2**k level-0 tiles wide, and the
    anchor-zoom tile is a power-of-two multiple of it (chunks of different groups meet by bounds)."""
    fine = grid_for(UTM21S, 0.1)
    assert fine.tile_size(3) == 8 * fine.tile_size(0)
    assert fine.tile_size(0) * 2 ** (fine.base_zoom - BASE_ZOOM) == PROJECTED_CHUNK_SIZE
    assert fine.id == grid_for(UTM21S, 30.0).id == "EPSG:32621"  # one grid id per CRS, whatever the zoom


def test_crs_id() -> None:
    assert crs_id(UTM21S) == "EPSG:32621"
    custom = CRS.from_proj4("+proj=aeqd +lat_0=10 +lon_0=20 +x_0=0 +y_0=0 +datum=WGS84 +units=m")
    assert crs_id(custom) == custom.to_wkt() and CRS.from_wkt(crs_id(custom)) == custom


@pytest.mark.parametrize(
    ("width", "height", "count"),
    [(1, 1, 0), (512, 512, 0), (513, 10, 2), (1024, 1024, 2), (1025, 1024, 3), (2006, 1515, 3), (10, 100_000, 9)],
)
def test_overview_count(width: int, height: int, count: int) -> None:
    assert overview_count(width, height) == count
