"""Storage grid: how an observation's pixels are partitioned into chunks.

The grid never resamples. It only decides which source pixels go into which chunk: a pixel belongs to
the grid tile that contains its *centre*. Every pixel therefore lands in exactly one chunk (no truncated
edges, no duplicated rows), and each chunk keeps its own affine transform, which is simply the source
transform shifted by the chunk's pixel offset.

Ground size per chunk is fixed per level and per CRS, so a 10 m, a 30 m and a 3 m observation of the same
place share tile ids at level 0 (the *multi-resolution chunk*). Overview level ``k`` stores pixels
decimated by ``2**k`` in tiles of ``2**k`` times the ground size, so a chunk holds about the same number of
pixels at every level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import morecantile
import numpy as np
from affine import Affine
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS
from rasterio.windows import Window

#: Ground size of a level-0 chunk in projected CRS units (metres for UTM/WebMercator).
#: 7680 m = 768 px at 10 m, 256 px at 30 m, 2560 px at 3 m.
PROJECTED_CHUNK_SIZE = 7680.0
#: Ground size of a level-0 chunk for geographic CRS (degrees).
GEOGRAPHIC_CHUNK_SIZE = 0.125
#: Zoom of the grid TileMatrixSet that level 0 maps to; level k maps to zoom ``BASE_ZOOM - k``.
BASE_ZOOM = 13


class GridError(ValueError):
    """The raster cannot be placed on a storage grid (rotated or south-up transform)."""


def crs_id(crs: CRS) -> str:
    """A short, stable id for a CRS: ``EPSG:32621`` when it has an EPSG code, else its WKT."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


@dataclass(frozen=True)
class StorageGrid:
    """The chunk grid for one CRS, defined as a morecantile TileMatrixSet.

    The TMS is a square centred on the CRS origin, so chunk edges fall on round multiples of the
    chunk size (e.g. every 7680 m), including at negative northings.
    """

    crs: CRS
    chunk_size: float

    @property
    def id(self) -> str:
        return crs_id(self.crs)

    @property
    def extent(self) -> float:
        return self.chunk_size * 2**BASE_ZOOM

    @property
    def tms(self) -> morecantile.TileMatrixSet:
        return _grid_tms(self.crs.to_wkt(), self.chunk_size)

    def tile_size(self, level: int) -> float:
        """Ground size of one chunk tile at an overview level."""
        return self.chunk_size * 2**level

    def zoom(self, level: int) -> int:
        return BASE_ZOOM - level

    def tile_id(self, level: int, col: int, row: int) -> str:
        return f"{self.zoom(level)}/{col}/{row}"

    def tile_bounds(self, level: int, col: int, row: int) -> tuple[float, float, float, float]:
        size = self.tile_size(level)
        half = self.extent / 2
        minx = -half + col * size
        maxy = half - row * size
        return (minx, maxy - size, minx + size, maxy)

    def partition(
        self, transform: Affine, width: int, height: int, level: int
    ) -> list[tuple[str, Window]]:
        """Split a level raster into chunk windows, one per grid tile its pixel centres fall in.

        Returns ``(tile_id, window)`` pairs covering every pixel exactly once.
        """
        if transform.b != 0 or transform.d != 0:
            raise GridError("rotated or sheared geotransforms are not supported")
        if transform.a <= 0 or transform.e >= 0:
            raise GridError("only north-up rasters (positive x and negative y pixel size) are supported")
        size = self.tile_size(level)
        half = self.extent / 2
        centres_x = transform.c + (np.arange(width) + 0.5) * transform.a
        centres_y = transform.f + (np.arange(height) + 0.5) * transform.e
        cols = np.floor((centres_x + half) / size).astype(np.int64)
        rows = np.floor((half - centres_y) / size).astype(np.int64)
        chunks = []
        for row, (r0, r1) in _runs(rows):
            for col, (c0, c1) in _runs(cols):
                chunks.append((self.tile_id(level, int(col), int(row)), Window(c0, r0, c1 - c0, r1 - r0)))
        return chunks


def _runs(indices: np.ndarray) -> list[tuple[int, tuple[int, int]]]:
    """Consecutive runs of equal tile indices: ``[(index, (start, stop)), ...]``."""
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices)) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [indices.size]])
    return [(int(indices[s]), (int(s), int(e))) for s, e in zip(starts, stops)]


@lru_cache(maxsize=64)
def _grid_tms(crs_wkt: str, chunk_size: float) -> morecantile.TileMatrixSet:
    crs = ProjCRS.from_wkt(crs_wkt)
    half = chunk_size * 2**BASE_ZOOM / 2
    return morecantile.TileMatrixSet.custom(
        [-half, -half, half, half],
        crs,
        minzoom=0,
        maxzoom=BASE_ZOOM,
        id=f"pixelquery-{crs_id(CRS.from_wkt(crs_wkt)).replace(':', '')}",
        title="PixelQuery storage grid",
    )


def grid_for(crs: CRS) -> StorageGrid:
    """The storage grid of a CRS: one metric grid per projected CRS (e.g. per UTM zone)."""
    size = GEOGRAPHIC_CHUNK_SIZE if crs.is_geographic else PROJECTED_CHUNK_SIZE
    if not crs.is_geographic:
        factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
        size = PROJECTED_CHUNK_SIZE / factor
    return StorageGrid(crs=crs, chunk_size=size)


def overview_count(width: int, height: int, target: int = 256) -> int:
    """How many 2x overview levels until the whole raster fits in ``target`` pixels on its long side."""
    longest = max(width, height)
    return max(0, math.ceil(math.log2(longest / target))) if longest > target else 0
