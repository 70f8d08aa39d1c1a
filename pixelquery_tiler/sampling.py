"""Nearest-neighbour warping by array indexing, through a cached map of output pixel centres.

A nearest-neighbour warp is "for each output pixel, the source pixel under its centre". GDAL
(``rasterio.warp.reproject``) computes that with an approximate transformer (exact PROJ transforms of
sample points, linear interpolation between them, at most 0.125 source pixel of error) and then runs a
general warp kernel; for a 256 px map tile its set-up and kernel are about half the time of a whole tile.

Here the same approximation is done once per (output grid, source CRS): the output pixel centres' source-CRS
coordinates are computed exactly on a coarse lattice (``LATTICE`` x ``LATTICE`` points) and interpolated
bilinearly, and the interpolation error is measured at the lattice cells' centres. That map depends on
the tile, not on the observation, so every observation and every chunk grid a request reads (a 10-deep
stack of the same scene, several band groups) reuses it, and repeated tiles find it in a small LRU cache.
Each observation then costs two affine maps and one ``take`` per band.

``sample_nearest`` returns ``None`` (the caller falls back to GDAL) when the map cannot honour GDAL's
tolerance for the source's pixel size, or a lattice point has no image in the source CRS (outside the
projection's domain).
"""

from __future__ import annotations

import threading

import cachetools
import numpy as np
from affine import Affine

from .crs import transformer

#: lattice points per side of the exact transform (corners and centre included)
LATTICE = 17
#: GDAL warp's default approximation error, in source pixels
MAX_ERROR_PX = 0.125
#: bytes of coordinate maps kept per process (a 256 px tile's map is 1 MB)
CACHE_BYTES = 48 * 2**20
#: largest output served here (a 1024 px tile, 16 MB of map); larger previews and parts go to GDAL, which warps
#: in bounded chunks instead of holding two float64 coordinates per output pixel
MAX_PIXELS = 1024 * 1024


class CoordinateMap:
    """Source-CRS coordinates of an output grid's pixel centres, the lattice they were interpolated from
    and the largest interpolation error."""

    __slots__ = ("cell_x", "cell_y", "error", "xs", "ys")

    def __init__(self, xs: np.ndarray, ys: np.ndarray, error: float, gx: np.ndarray, gy: np.ndarray):
        xs.flags.writeable = ys.flags.writeable = False  # shared by every thread that reads this tile
        self.xs, self.ys, self.error = xs, ys, error
        # per lattice cell, (min, max) of its four corners: a bilinear value inside the cell lies between them
        self.cell_x, self.cell_y = _cell_ranges(gx), _cell_ranges(gy)

    @property
    def nbytes(self) -> int:
        return self.xs.nbytes + self.ys.nbytes

    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice] | None:
        """Output rows and columns (slices) holding every pixel centre inside [x0, x1] x [y0, y1], or ``None``.

        A source much smaller than the output (many small items under a low-zoom tile) then costs its own
        few pixels, not the whole tile.
        """
        hit = (self.cell_x[0] <= x1) & (self.cell_x[1] >= x0) & (self.cell_y[0] <= y1) & (self.cell_y[1] >= y0)
        rows, cols = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
        if rows.size == 0:
            return None
        height, width = self.xs.shape
        return _pixel_span(rows[0], rows[-1], height), _pixel_span(cols[0], cols[-1], width)

    def windows(self, extents: np.ndarray) -> np.ndarray:
        """``window`` for many extents at once: (n, 4) rows ``[row0, row1, col0, col1)``, empty where ``None``.

        Many small items under one low-zoom tile are located in one pass instead of one call each.
        """
        x0, y0, x1, y1 = (extents[:, i, None, None] for i in range(4))
        hit = (self.cell_x[0] <= x1) & (self.cell_x[1] >= x0) & (self.cell_y[0] <= y1) & (self.cell_y[1] >= y0)
        rows, cols = np.any(hit, axis=2), np.any(hit, axis=1)  # (n, cells) each
        cells = LATTICE - 1
        first_r, last_r = rows.argmax(axis=1), cells - 1 - rows[:, ::-1].argmax(axis=1)
        first_c, last_c = cols.argmax(axis=1), cells - 1 - cols[:, ::-1].argmax(axis=1)
        height, width = self.xs.shape
        out = np.stack([*_pixel_spans(first_r, last_r, height), *_pixel_spans(first_c, last_c, width)], axis=1)
        out[~np.any(rows, axis=1)] = 0
        return out

    def locate(
        self, windows: np.ndarray, transforms: np.ndarray, sizes: np.ndarray, pixels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For n source grids, which of the output ``pixels`` (sorted flat positions) have their centre in the
        grid, as ``sample_nearest`` samples them: (grid number, flat output pixel, source column, source row) per
        hit, by grid, rows first within a grid.

        ``transforms``: (n, 4) ``a, c, e, f`` of north-up source transforms; ``sizes``: (n, 2) width, height;
        ``windows``: (n, 4) output rows ``[row0, row1)``, columns ``[col0, col1)`` holding every pixel centre in
        the grid (``windows``). The ``pixels`` inside each window are found per window row by two binary searches,
        so the cost follows the pixels still wanted, not the windows' area: many small items under one low-zoom
        tile are located together, each only where earlier ones left pixels empty.
        """
        width = self.xs.shape[1]
        r0, r1, c0, c1 = windows.T
        tall = np.where(c1 > c0, np.maximum(r1 - r0, 0), 0)
        g = np.repeat(np.arange(len(windows)), tall)  # one entry per (window, row)
        line = (np.repeat(r0 - (np.cumsum(tall) - tall), tall) + np.arange(g.size)) * width
        lo, hi = np.searchsorted(pixels, np.concatenate([line + c0[g], line + c1[g]])).reshape(2, -1)
        n = hi - lo
        k = np.repeat(g, n)
        flat = pixels[np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(k.size)]
        xs, ys = self.xs.reshape(-1).take(flat), self.ys.reshape(-1).take(flat)
        # a coarse test first, on the grids' extents widened by 1e-6 px (more than the nudge and rounding below):
        # what it rejects is outside, so the exact arithmetic runs on about the hits only
        a, c, e, f = transforms.T
        w, h = sizes.T
        x1, y1 = c + w * a, f + h * e
        tol = 1e-6 * np.minimum(np.abs(a), np.abs(e))
        box = np.stack(
            [np.minimum(c, x1) - tol, np.maximum(c, x1) + tol, np.minimum(f, y1) - tol, np.maximum(f, y1) + tol]
        )
        lx, hx, ly, hy = np.repeat(box[:, g], n, axis=1)
        near = np.flatnonzero((xs >= lx) & (xs <= hx) & (ys >= ly) & (ys <= hy))
        k, flat, xs, ys = k[near], flat[near], xs[near], ys[near]
        a, c, e, f, w, h = np.vstack([transforms.T, sizes.T])[:, k]
        # the arithmetic of ``sample_nearest``, term by term (+ 1e-10: GDAL's nudge); floor(v) >= 0 iff v >= 0 and
        # floor(v) < n iff v < n for a whole n, so the test needs no floor
        col = (xs - c) / a + 1e-10
        row = (ys - f) / e + 1e-10
        hit = np.flatnonzero((col >= 0) & (col < w) & (row >= 0) & (row < h))
        return k[hit], flat[hit], np.floor(col[hit]).astype(np.int64), np.floor(row[hit]).astype(np.int64)

    def fits(self, src_transform: Affine) -> bool:
        """Whether the interpolation error is within GDAL's tolerance for this source pixel size."""
        return self.error <= MAX_ERROR_PX * min(abs(src_transform.a), abs(src_transform.e))


def _cell_ranges(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    corners = np.stack([grid[:-1, :-1], grid[1:, :-1], grid[:-1, 1:], grid[1:, 1:]])
    return corners.min(axis=0), corners.max(axis=0)


def _pixel_span(first_cell: int, last_cell: int, n: int) -> slice:
    """Pixel centres from lattice cell ``first_cell`` to ``last_cell`` (node k is on centre k (n-1)/(L-1))."""
    step = (n - 1) / (LATTICE - 1)
    return slice(max(int(np.floor(first_cell * step)), 0), min(int(np.ceil((last_cell + 1) * step)) + 1, n))


def _pixel_spans(first: np.ndarray, last: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``_pixel_span`` for arrays of cells: (starts, stops)."""
    step = (n - 1) / (LATTICE - 1)
    start = np.maximum(np.floor(first * step).astype(np.int64), 0)
    return start, np.minimum(np.ceil((last + 1) * step).astype(np.int64) + 1, n)


_cache: cachetools.LRUCache = cachetools.LRUCache(maxsize=CACHE_BYTES, getsizeof=lambda m: m.nbytes)
_lock = threading.Lock()


def _nodes(n: int, points: int) -> tuple[np.ndarray, np.ndarray]:
    """For pixel centres 0..n-1: the lattice node before each and the fraction of the way to the next.

    Node k sits on pixel centre k * (n - 1) / (points - 1), so the first and last centres are exact.
    """
    pos = np.arange(n) * ((points - 1) / max(n - 1, 1))
    lo = np.minimum(np.floor(pos).astype(np.intp), points - 2)
    return lo, pos - lo


Nodes = tuple[np.ndarray, np.ndarray]


def _interpolate(grid: np.ndarray, rows: Nodes, cols: Nodes) -> np.ndarray:
    """Bilinear interpolation of a lattice to pixel centres, separably (elementwise: no BLAS threads)."""
    (r, fr), (c, fc) = rows, cols
    along = grid[:, c] + (grid[:, c + 1] - grid[:, c]) * fc  # (points, width)
    out = np.diff(along, axis=0).take(r, axis=0)  # in place from here: the (height, width) passes dominate
    out *= fr[:, None]
    out += along.take(r, axis=0)
    return out


def _build(src_crs: str, dst_crs: str, dst_transform: Affine, width: int, height: int) -> CoordinateMap | None:
    to_src = transformer(dst_crs, src_crs)
    # lattice in output pixel coordinates: node k sits at the k/(L-1) fraction of the span of pixel centres
    cols = 0.5 + np.linspace(0, width - 1, LATTICE)
    rows = 0.5 + np.linspace(0, height - 1, LATTICE)
    cc, rr = np.meshgrid(cols, rows)
    gx, gy = to_src.transform(*(dst_transform @ (cc, rr)))  # type: ignore[operator]  # affine maps arrays too
    # cell centres, to measure the bilinear interpolation's error against the exact transform
    mid_c, mid_r = (cols[:-1] + cols[1:]) / 2, (rows[:-1] + rows[1:]) / 2
    mc, mr = np.meshgrid(mid_c, mid_r)
    ex, ey = to_src.transform(*(dst_transform @ (mc, mr)))  # type: ignore[operator]  # affine maps arrays too
    if not all(np.isfinite(a).all() for a in (gx, gy, ex, ey)):
        return None
    gx, gy = np.asarray(gx), np.asarray(gy)
    ix = (gx[:-1, :-1] + gx[1:, :-1] + gx[:-1, 1:] + gx[1:, 1:]) / 4
    iy = (gy[:-1, :-1] + gy[1:, :-1] + gy[:-1, 1:] + gy[1:, 1:]) / 4
    error = float(max(np.abs(ix - ex).max(), np.abs(iy - ey).max()))
    rows_at, cols_at = _nodes(height, LATTICE), _nodes(width, LATTICE)
    return CoordinateMap(_interpolate(gx, rows_at, cols_at), _interpolate(gy, rows_at, cols_at), error, gx, gy)


def coordinate_map(src_crs: str, dst_crs: str, dst_transform: Affine, width: int, height: int) -> CoordinateMap | None:
    """The cached map of an output grid into ``src_crs`` (``None``, not cached, where there is none)."""
    if width * height > MAX_PIXELS:
        return None
    key = (src_crs, dst_crs, tuple(dst_transform)[:6], width, height)
    with _lock:
        found = _cache.get(key)
    if found is None:
        found = _build(src_crs, dst_crs, dst_transform, width, height)
        if found is not None:
            with _lock:
                _cache[key] = found
    return found


def sample_nearest(
    src: np.ndarray,
    src_transform: Affine,
    src_crs: str,
    dst_transform: Affine,
    dst_crs: str,
    width: int,
    height: int,
    fill: float = 0,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``src`` (bands, rows, cols) sampled at the output pixel centres: (data, inside) or ``None``.

    ``data`` is (bands, height, width) with ``fill`` where the centre falls outside ``src``; ``inside`` says
    where it falls inside. Like GDAL's nearest kernel, the source pixel is ``floor`` of the centre's source pixel
    coordinate.
    """
    if src_transform.b != 0 or src_transform.d != 0:
        return None  # rotated source grids: leave them to GDAL
    cmap = coordinate_map(src_crs, dst_crs, dst_transform, width, height)
    if cmap is None or not cmap.fits(src_transform):
        return None
    nb, sh, sw = src.shape
    data = np.full((nb, height, width), fill, src.dtype)
    inside = np.zeros((height, width), bool)
    xa, ya = src_transform @ (0, 0)
    xb, yb = src_transform @ (sw, sh)
    pad = 1e-6 * min(abs(src_transform.a), abs(src_transform.e))  # covers the 1e-10 px nudge below
    win = cmap.window(min(xa, xb) - pad, min(ya, yb) - pad, max(xa, xb) + pad, max(ya, yb) + pad)
    if win is None:
        return data, inside
    # + 1e-10: GDAL's nearest kernel nudges coordinates the same way before truncating
    col = np.floor((cmap.xs[win] - src_transform.c) / src_transform.a + 1e-10)
    row = np.floor((cmap.ys[win] - src_transform.f) / src_transform.e + 1e-10)
    hit = (col >= 0) & (col < sw) & (row >= 0) & (row < sh)
    flat = np.where(hit, row * sw + col, 0).astype(np.intp)
    part = src.reshape(nb, sh * sw).take(flat.ravel(), axis=1).reshape(nb, *hit.shape)
    if not hit.all():
        part[:, ~hit] = fill
    data[(slice(None), *win)] = part
    inside[win] = hit
    return data, inside


def inside_extent(
    src_crs: str,
    dst_crs: str,
    dst_transform: Affine,
    width: int,
    height: int,
    extent: tuple[float, float, float, float],
    tolerance: float,
) -> np.ndarray | None:
    """Output pixels whose centre lies inside ``extent`` (minx, miny, maxx, maxy in ``src_crs``), from the same
    cached map; ``None`` when the map's interpolation error exceeds ``tolerance`` (``src_crs`` units) or there
    is no map. Exact along curved edges, and only the window over the extent is computed."""
    cmap = coordinate_map(src_crs, dst_crs, dst_transform, width, height)
    if cmap is None or cmap.error > tolerance:
        return None
    inside = np.zeros((height, width), bool)
    x0, y0, x1, y1 = extent
    win = cmap.window(x0, y0, x1, y1)
    if win is not None:
        xs, ys = cmap.xs[win], cmap.ys[win]
        inside[win] = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return inside
