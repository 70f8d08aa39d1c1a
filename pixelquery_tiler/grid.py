"""Storage grid: how an observation's pixels are partitioned into chunks.

The grid never resamples. It only decides which source pixels go into which chunk: a pixel belongs to
the grid tile that contains its *centre*. Every pixel therefore lands in exactly one chunk (no truncated
edges, no duplicated rows), and each chunk keeps its own affine transform, which is simply the source
transform shifted by the chunk's pixel offset.

Resolution-adaptive level 0 (see ``docs/storage.md``). Each CRS has one quadtree (a morecantile TMS centred
on the CRS origin); zoom ``z`` tiles are ``extent / 2**z`` wide. A band group's level 0 sits on the zoom
:func:`level0_zoom` picks from its pixel size:

- the *anchor* zoom :data:`BASE_ZOOM` (7680 m, or 0.125 degree, tiles) whenever a chunk there holds
  :data:`MIN_CHUNK_PX` to :data:`MAX_CHUNK_PX` pixels a side, i.e. ~3 m to 120 m data. The common sensors
  (PlanetScope 3 m, Sentinel-2 10/20/60 m, Landsat 30 m) therefore share level-0 tile ids: the
  *multi-resolution chunk*;
- otherwise the zoom where a chunk is closest to :data:`TARGET_CHUNK_PX` a side (362-724 px), so a 0.1 m
  aerial mosaic and a 10 km global grid get chunks of a few hundred pixels, not 76,800 or 1.

Chunk sides thus stay within 64-2,560 px at every resolution and catalog rows per megapixel are bounded
(< ~250 plus edge chunks). Zooms nest, so chunks of groups on different zooms still meet in the index by
bounds. Overview level ``k`` stores pixels decimated by ``2**k`` on zoom ``z0 - k`` (tiles twice as wide
per level), so a chunk holds about the same number of pixels at every level.
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
#: Anchor zoom: the zoom whose tiles are ``PROJECTED_CHUNK_SIZE`` / ``GEOGRAPHIC_CHUNK_SIZE`` wide.
BASE_ZOOM = 13
#: Deepest zoom of a grid (7680 m / 2**17 = 0.06 m tiles): bounds the quadtree, far below any real pixel.
MAX_ZOOM = 30
#: Level 0 stays on the anchor zoom while a chunk there holds this many pixels a side (3 m .. 120 m)...
MIN_CHUNK_PX = 64
MAX_CHUNK_PX = 2560
#: ...otherwise it moves to the zoom whose chunk side is closest to this (in ``[TARGET/sqrt2, TARGET*sqrt2]``).
TARGET_CHUNK_PX = 512


def level0_zoom(chunk_size: float, res: float) -> int:
    """The zoom of level 0 for pixels of size ``res`` on a grid whose anchor tile is ``chunk_size`` wide."""
    px = chunk_size / res
    if MIN_CHUNK_PX <= px <= MAX_CHUNK_PX:
        return BASE_ZOOM
    return int(min(MAX_ZOOM, max(0, BASE_ZOOM + round(math.log2(px / TARGET_CHUNK_PX)))))


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
    chunk_size: float  # ground size of an anchor-zoom (BASE_ZOOM) tile
    base_zoom: int = BASE_ZOOM  # zoom of level 0

    @property
    def id(self) -> str:
        """The grid is identified by its CRS alone: one grid per CRS keeps chunks of all items aligned."""
        return crs_id(self.crs)

    @property
    def extent(self) -> float:
        """Side of the square the TMS covers: one zoom-0 tile, ``2**BASE_ZOOM`` anchor chunks wide."""
        return self.chunk_size * 2**BASE_ZOOM

    @property
    def tms(self) -> morecantile.TileMatrixSet:
        """The grid as a morecantile TileMatrixSet (cached per CRS and chunk size, building one is slow)."""
        return _grid_tms(self.crs.to_wkt(), self.chunk_size)

    @property
    def max_levels(self) -> int:
        """Levels 0..base_zoom exist (zoom 0 is one tile over the whole extent)."""
        return self.base_zoom + 1

    def tile_size(self, level: int) -> float:
        """Ground size of one chunk tile at an overview level."""
        return self.extent / 2 ** self.zoom(level)

    def zoom(self, level: int) -> int:
        """TMS zoom of an overview level: level 0 is the finest (``base_zoom``), each level halves it."""
        return self.base_zoom - level

    def tile_id(self, level: int, col: int, row: int) -> str:
        """``zoom/col/row``: the level is in the id, so one tile id names one chunk footprint at any level."""
        return f"{self.zoom(level)}/{col}/{row}"

    def tile_bounds(self, level: int, col: int, row: int) -> tuple[float, float, float, float]:
        """Native-CRS bounds of a chunk tile, computed from the grid origin so edges are exact multiples."""
        size = self.tile_size(level)
        half = self.extent / 2
        minx = -half + col * size
        maxy = half - row * size
        return (minx, maxy - size, minx + size, maxy)

    def partition(self, transform: Affine, width: int, height: int, level: int) -> list[tuple[str, Window]]:
        """Split a level raster into chunk windows, one per grid tile its pixel centres fall in.

        Returns ``(tile_id, window)`` pairs covering every pixel exactly once.
        """
        cols = self.col_runs(transform, width, level)
        return [
            (self.tile_id(level, col, row), Window(c0, r0, c1 - c0, r1 - r0))
            for row, (r0, r1) in self.row_runs(transform, height, level)
            for col, (c0, c1) in cols
        ]

    def row_runs(self, transform: Affine, height: int, level: int) -> list[tuple[int, tuple[int, int]]]:
        """``[(tile_row, (first_pixel_row, stop)), ...]``: the chunk rows a level raster splits into."""
        _check_north_up(transform)
        centres_y = transform.f + (np.arange(height) + 0.5) * transform.e
        return _runs(np.floor((self.extent / 2 - centres_y) / self.tile_size(level)).astype(np.int64))

    def col_runs(self, transform: Affine, width: int, level: int) -> list[tuple[int, tuple[int, int]]]:
        """``[(tile_col, (first_pixel_col, stop)), ...]``: the chunk columns a level raster splits into."""
        _check_north_up(transform)
        centres_x = transform.c + (np.arange(width) + 0.5) * transform.a
        return _runs(np.floor((centres_x + self.extent / 2) / self.tile_size(level)).astype(np.int64))


def _check_north_up(transform: Affine) -> None:
    if transform.b != 0 or transform.d != 0:
        raise GridError("rotated or sheared geotransforms are not supported")
    if transform.a <= 0 or transform.e >= 0:
        raise GridError("only north-up rasters (positive x and negative y pixel size) are supported")


def _runs(indices: np.ndarray) -> list[tuple[int, tuple[int, int]]]:
    """Consecutive runs of equal tile indices: ``[(index, (start, stop)), ...]``."""
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices)) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [indices.size]])
    return [(int(indices[s]), (int(s), int(e))) for s, e in zip(starts, stops, strict=True)]


@lru_cache(maxsize=64)
def _grid_tms(crs_wkt: str, chunk_size: float) -> morecantile.TileMatrixSet:
    crs = ProjCRS.from_wkt(crs_wkt)
    half = chunk_size * 2**BASE_ZOOM / 2
    return morecantile.TileMatrixSet.custom(
        [-half, -half, half, half],
        crs,
        minzoom=0,
        maxzoom=MAX_ZOOM,
        id=f"pixelquery-{crs_id(CRS.from_wkt(crs_wkt)).replace(':', '')}",
        title="PixelQuery storage grid",
    )


def grid_for(crs: CRS, res: float | None = None) -> StorageGrid:
    """The storage grid of a CRS (one per projected CRS, e.g. per UTM zone), level 0 fitted to ``res``.

    ``res`` is the pixel size in CRS units (``None``: the anchor zoom, whatever the resolution).
    """
    size = GEOGRAPHIC_CHUNK_SIZE if crs.is_geographic else PROJECTED_CHUNK_SIZE
    if not crs.is_geographic:
        factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
        size = PROJECTED_CHUNK_SIZE / factor
    zoom = BASE_ZOOM if res is None or not res > 0 else level0_zoom(size, res)
    return StorageGrid(crs=crs, chunk_size=size, base_zoom=zoom)


def overview_count(width: int, height: int, target: int = 256, one_block: int = 512) -> int:
    """How many 2x overview levels: none for a raster that fits in ``one_block`` px on its long side, else as
    many as it takes to fit in ``target`` px.

    Two measured costs decide it (benchmarks/README.md, "Round 4 (issue 10)"). A raster of at most 512 px, one
    rio-cogeo block (its COG has no overview either), is cheap to read whole for a zoomed-out tile, while a 256 px
    level was a quarter of its bytes (a 485 x 373 RGB: 0.63 MB of chunks vs its 0.48 MB COG; 0.50 MB without).
    Larger rasters keep levels down to 256 px: a z6 tile over 100 items of 1024 px read their 120 m level in
    1.87-1.97x a native tile, their 60 m one (levels stopped at 512 px) in 2.03-2.09x.
    """
    longest = max(width, height)
    return math.ceil(math.log2(longest / target)) if longest > one_block else 0
