"""Output windows: the bounds and size a read produces, from a TMS tile or a client's bbox (rio-tiler's rules).

The geometric checks and conversions of a reader's inputs: a tile the TileMatrixSet does not have is a 404
(``TileOutsideTMS``), a degenerate or unrepresentable bbox a 400, a buffer that is not a multiple of half a
pixel a 400 (rio-tiler's rule). The native output size of a bbox depends on the data: it is the ``View``'s
(``View.output_size``).
"""

from __future__ import annotations

import math

from morecantile import Tile, TileMatrixSet
from rasterio.crs import CRS
from rio_tiler.errors import InvalidBufferSize

from .crs import BBox, crs_id, transform_bounds
from .errors import InvalidParameter, TileOutsideTMS


def tile_window(tms: TileMatrixSet, x: int, y: int, z: int, tilesize: int | None = None) -> tuple[BBox, int, int]:
    """Bounds (in the TMS CRS) and size of a tile; ``TileOutsideTMS`` for indices the TMS does not have."""
    if not tms.minzoom <= z <= tms.maxzoom:
        raise TileOutsideTMS(f"zoom {z} is outside {tms.id} ({tms.minzoom}-{tms.maxzoom})")
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        raise TileOutsideTMS(
            f"tile {z}/{x}/{y} is outside {tms.id} (x < {matrix.matrixWidth}, y < {matrix.matrixHeight})"
        )
    xy = tms.xy_bounds(Tile(x=x, y=y, z=z))
    return (xy.left, xy.bottom, xy.right, xy.top), tilesize or matrix.tileWidth, tilesize or matrix.tileHeight


def checked_bbox(bbox: BBox, bounds_crs: CRS, dst_crs: CRS) -> BBox:
    """``bbox`` (any sequence, in ``bounds_crs``) as a finite, ordered tuple in ``dst_crs``."""
    box: BBox = (bbox[0], bbox[1], bbox[2], bbox[3])
    if not all(map(math.isfinite, box)) or not (box[0] < box[2] and box[1] < box[3]):
        raise InvalidParameter(f"invalid bbox {box}: need minx < maxx and miny < maxy")
    if bounds_crs != dst_crs:
        box = transform_bounds(crs_id(bounds_crs), crs_id(dst_crs), box)
    if not all(map(math.isfinite, box)) or not all(map(math.isfinite, (box[2] - box[0], box[3] - box[1]))):
        raise InvalidParameter(f"bbox {box} is not representable in the output CRS")
    return box


def buffered(bbox: BBox, width: int, height: int, buffer: float) -> tuple[BBox, int, int]:
    """rio-tiler's tile buffer: ``buffer`` pixels more on each side, the bounds grown to match."""
    if buffer % 0.5:
        raise InvalidBufferSize("buffer must be a multiple of 0.5")
    dx, dy = (bbox[2] - bbox[0]) / width * buffer, (bbox[3] - bbox[1]) / height * buffer
    return (bbox[0] - dx, bbox[1] - dy, bbox[2] + dx, bbox[3] + dy), int(width + 2 * buffer), int(height + 2 * buffer)
