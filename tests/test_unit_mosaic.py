"""The pure helpers of the read path (``mosaic.py``), table-driven: which level a read uses, when a source grid
coincides with the output grid (a slice instead of a warp), and the bounds of a set of output pixels."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from affine import Affine

from pixelquery_tiler.index import ItemView
from pixelquery_tiler.mosaic import _aligned_offset, _pixel_bounds, choose_level


def item(resolutions: tuple[float, ...], levels: tuple[int, ...] | None = None) -> ItemView:
    return ItemView(
        item_id="i",
        snapshot=None,
        product="generic",
        datetime=dt.datetime(2020, 5, 18, tzinfo=dt.UTC),
        crs="EPSG:32621",
        bbox=(0.0, 0.0, 1.0, 1.0),
        bands=("b1",),
        dtype="uint16",
        nodata=None,
        levels=levels if levels is not None else tuple(range(len(resolutions))),
        resolutions=resolutions,
    )


LANDSAT = item((30.0, 60.0, 120.0, 240.0))


@pytest.mark.parametrize(
    ("target", "level"),
    [
        (10.0, 0),  # finer than anything stored: the native level (upsampled)
        (30.0, 0),
        (45.0, 0),  # between levels: the coarsest still at least as fine (GDAL's overview rule)
        (59.99, 0),
        (60.0, 1),
        (60.0 * (1 + 1e-7), 1),  # within the relative tolerance of a level's resolution
        (60.0 * (1 - 1e-7), 1),
        (119.0, 1),
        (240.0, 3),
        (10_000.0, 3),  # coarser than every level: the coarsest one
    ],
)
def test_choose_level(target: float, level: int) -> None:
    assert choose_level(LANDSAT, target) == level


def test_choose_level_returns_stored_level_numbers() -> None:
    """Levels are the item's own numbers (an item may lack some), not positions in its list."""
    sparse = item((30.0, 120.0), levels=(0, 2))
    assert [choose_level(sparse, t) for t in (20.0, 100.0, 130.0)] == [0, 0, 2]


SRC = Affine(30.0, 0.0, 600_000.0, 0.0, -30.0, 7_000_000.0)


@pytest.mark.parametrize(
    ("dst", "offset"),
    [
        (SRC, (0, 0)),
        (SRC @ Affine.translation(5, 7), (5, 7)),
        (SRC @ Affine.translation(-3, -4), (-3, -4)),  # the output starts before the source
        (SRC @ Affine.translation(5 + 1e-8, 7), (5, 7)),  # float noise from transform arithmetic is tolerated
        (SRC @ Affine.translation(5.5, 7), None),  # half a pixel off: needs resampling
        (SRC @ Affine.translation(5, 7.001), None),
        (SRC @ Affine.scale(2), None),  # coarser output grid
        (Affine(30.0, 0.0, 600_000.0, 0.0, 30.0, 7_000_000.0), None),  # south-up: a different grid
        (Affine(30.0 * (1 + 1e-12), 0.0, 600_030.0, 0.0, -30.0, 7_000_000.0), (1, 0)),  # same size within 1e-9
    ],
)
def test_aligned_offset(dst: Affine, offset: tuple[int, int] | None) -> None:
    assert _aligned_offset(SRC, dst) == offset


def _mask(shape: tuple[int, int], *cells: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, bool)
    for r, c in cells:
        out[r, c] = True
    return out


@pytest.mark.parametrize(
    ("pixels", "transform", "bounds"),
    [
        (_mask((4, 4)), Affine(1, 0, 0, 0, -1, 4), None),
        (_mask((4, 4), (0, 0)), Affine(1, 0, 0, 0, -1, 4), (0.0, 3.0, 1.0, 4.0)),
        (_mask((4, 4), (1, 2), (3, 1)), Affine(1, 0, 0, 0, -1, 4), (1.0, 0.0, 3.0, 3.0)),
        (np.ones((4, 4), bool), Affine(10, 0, 100, 0, -10, 50), (100.0, 10.0, 140.0, 50.0)),
        (_mask((2, 3), (1, 2)), Affine(10, 0, 100, 0, 10, 50), (120.0, 60.0, 130.0, 70.0)),  # south-up
    ],
)
def test_pixel_bounds(pixels: np.ndarray, transform: Affine, bounds: tuple[float, ...] | None) -> None:
    assert _pixel_bounds(pixels, transform) == bounds
