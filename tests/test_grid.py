"""Storage grid: partitions pixels without resampling, shares tile ids across resolutions."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from pixelquery_tiler.grid import PROJECTED_CHUNK_SIZE, GridError, grid_for

UTM21S = CRS.from_epsg(32621)


def coverage(grid, transform: Affine, width: int, height: int, level: int = 0) -> np.ndarray:
    """How many windows claim each pixel, checking each window against its tile's bounds."""
    hits = np.zeros((height, width), np.int32)
    for tile_id, win in grid.partition(transform, width, height, level):
        r0, c0 = int(win.row_off), int(win.col_off)
        hits[r0 : r0 + int(win.height), c0 : c0 + int(win.width)] += 1
        zoom, col, row = (int(v) for v in tile_id.split("/"))
        assert zoom == grid.zoom(level)
        minx, miny, maxx, maxy = grid.tile_bounds(level, col, row)
        # every pixel centre of the window lies inside the window's tile
        cx0, cy0 = transform @ (c0 + 0.5, r0 + 0.5)
        cx1, cy1 = transform @ (c0 + win.width - 0.5, r0 + win.height - 0.5)
        assert minx <= cx0 < maxx and minx <= cx1 < maxx
        assert miny < cy1 <= maxy and miny < cy0 <= maxy
    return hits


@pytest.mark.parametrize(
    "transform, width, height",
    [
        (Affine(30, 0, 694005, 0, -30, -2766615), 2006, 1515),  # the real Landsat scene, negative northings
        (Affine(60, 0, 694005, 0, -60, -2766615), 1003, 758),
        (Affine(28.5, 0, 288776.25, 0, -28.5, 9120760.75), 349, 352),  # odd size, non-dividing resolution
        (Affine(10, 0, -3, 0, -10, 7), 1537, 769),  # straddles both axes of the CRS origin
        (Affine(3, 0, 1234.5, 0, -3, -5678.5), 1, 1),
        (Affine(7, 0, 7679, 0, -7, 7681), 3, 5),  # pixel edges just off the chunk boundary
    ],
)
@pytest.mark.parametrize("level", [0, 1, 3])
def test_partition_covers_every_pixel_exactly_once(transform: Affine, width: int, height: int, level: int) -> None:
    grid = grid_for(UTM21S)
    hits = coverage(grid, transform, width, height, level)
    assert hits.shape == (height, width)
    assert (hits == 1).all(), "a pixel is missing or claimed twice"


def test_no_truncation_at_odd_edges() -> None:
    """A raster that ends mid-chunk keeps its last row and column in a partial edge chunk."""
    grid = grid_for(UTM21S)
    transform = Affine(30, 0, 0, 0, -30, 0)
    windows = [w for _, w in grid.partition(transform, 257, 300, 0)]
    assert max(int(w.col_off + w.width) for w in windows) == 257
    assert max(int(w.row_off + w.height) for w in windows) == 300
    assert sum(int(w.width * w.height) for w in windows) == 257 * 300
    # 7680 m / 30 m = 256: one full chunk plus a 1-pixel-wide edge chunk
    assert sorted({int(w.width) for w in windows}) == [1, 256]


def test_negative_northings_align_on_round_chunk_edges() -> None:
    """UTM south zones have negative northings: chunk edges still fall on multiples of the chunk size."""
    grid = grid_for(UTM21S)
    transform = Affine(30, 0, 694005, 0, -30, -2766615)
    for tile_id, _window in grid.partition(transform, 2006, 1515, 0):
        _, col, row = (int(v) for v in tile_id.split("/"))
        minx, miny, maxx, maxy = grid.tile_bounds(0, col, row)
        for edge in (minx, miny, maxx, maxy):
            assert edge % PROJECTED_CHUNK_SIZE == 0
        assert maxy <= 0 or miny < 0  # the scene is south of the equator


def test_tile_ids_shared_across_resolutions() -> None:
    """10 m, 30 m and 3 m rasters of the same place land in the same level-0 tiles (multi-resolution chunk)."""
    grid = grid_for(UTM21S)
    x0, y0 = 7680 * 90, -7680 * 360  # two chunks wide, one chunk high, on chunk edges
    extent_x, extent_y = 2 * 7680, 7680
    ids, shapes = {}, {}
    for res in (10, 30, 3):
        transform = Affine(res, 0, x0, 0, -res, y0)
        parts = grid.partition(transform, extent_x // res, extent_y // res, 0)
        ids[res] = {tile for tile, _ in parts}
        shapes[res] = {(int(w.height), int(w.width)) for _, w in parts}
    assert ids[10] == ids[30] == ids[3] and len(ids[10]) == 2
    assert shapes == {10: {(768, 768)}, 30: {(256, 256)}, 3: {(2560, 2560)}}


def test_overview_levels_keep_ground_size_per_pixel_count() -> None:
    """Level k tiles are 2**k times larger on the ground, so a decimated level keeps ~the same chunk shape."""
    grid = grid_for(UTM21S)
    assert grid.tile_size(2) == 4 * grid.tile_size(0)
    base = Affine(30, 0, 0, 0, -30, 0)
    level2 = base @ Affine.scale(4)
    [(_, win)] = grid.partition(level2, 256, 256, 2)
    assert (int(win.width), int(win.height)) == (256, 256)


def test_geographic_grid_and_bad_transforms() -> None:
    geo = grid_for(CRS.from_epsg(4326))
    hits = coverage(geo, Affine(0.0015, 0, -106.0566, 0, -0.0015, 40.6197), 485, 373)
    assert (hits == 1).all()
    with pytest.raises(GridError):
        grid_for(UTM21S).partition(Affine(30, 1, 0, 0, -30, 0), 10, 10, 0)
    with pytest.raises(GridError):
        grid_for(UTM21S).partition(Affine(30, 0, 0, 0, 30, 0), 10, 10, 0)  # south-up
