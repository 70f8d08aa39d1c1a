"""Reading a window: choose levels, gather chunks, warp, mosaic.

This is the primitive under every tile, part, preview and point: given output bounds, CRS and size, it
returns a masked array built from the warehouse. Per observation it picks the coarsest level still at least
as fine as the output (GDAL's overview rule), pastes that level's chunks into one array on the observation's
own pixel grid (they share it, so there are no seams between chunks), and warps that once into the output
grid with ``rasterio.warp.reproject``. Observations are mosaicked with rio-tiler's pixel-selection methods,
newest first, stopping early when the output is full.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize
from rasterio.transform import from_bounds
from rasterio.warp import reproject
from rio_tiler.mosaic.methods import PixelSelectionMethod

from .chunks import ChunkReader
from .index import CollectionIndex, ItemView

log = logging.getLogger(__name__)

#: extra source pixels around the request so resampling kernels see their neighbours
KERNEL_MARGIN = {"nearest": 1, "bilinear": 2, "cubic": 3, "cubic_spline": 3, "lanczos": 4}


class NoData(LookupError):
    """No observation intersects the request."""


class BandError(ValueError):
    """Requested bands are not in the collection."""


@dataclass
class WindowRead:
    data: np.ma.MaskedArray  # (bands, height, width); mask True = no data
    band_names: list[str]
    items: list[str] = field(default_factory=list)  # item ids that contributed, mosaic order
    levels: dict[str, int] = field(default_factory=dict)  # item id -> level read
    datetimes: list[dt.datetime] = field(default_factory=list)


@lru_cache(maxsize=256)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src).to_wkt(), CRS.from_user_input(dst).to_wkt(), always_xy=True)


def transform_bounds(src: str, dst: str, bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    if src == dst:
        return bounds
    return _transformer(src, dst).transform_bounds(*bounds, densify_pts=21)


def choose_level(item: ItemView, target_res: float) -> int:
    """Coarsest level whose resolution is still at least as fine as ``target_res`` (GDAL's overview rule)."""
    chosen = item.levels[0]
    for level, res in zip(item.levels, item.resolutions):
        if res <= target_res * (1 + 1e-6):
            chosen = level
    return chosen


def _item_level(
    item: ItemView, bounds: tuple[float, float, float, float], dst_crs: str, width: int, height: int
) -> tuple[tuple[float, float, float, float], float, int]:
    """The request in the item's CRS, the output resolution there, and the level to read it from."""
    native = transform_bounds(dst_crs, item.crs, bounds)
    target = min((native[2] - native[0]) / width, (native[3] - native[1]) / height)
    return native, target, choose_level(item, target)


def _crs_key(crs: CRS | str) -> str:
    if isinstance(crs, str):
        return crs
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def read_window(
    index: CollectionIndex,
    chunks: ChunkReader,
    bounds: tuple[float, float, float, float],
    crs: CRS | str,
    width: int,
    height: int,
    *,
    bands: list[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    snapshot_id: int | None = None,
    item_id: str | None = None,
    product: str | None = None,
    resampling: str = "nearest",
    pixel_selection: str = "first",
) -> WindowRead:
    dst_crs = _crs_key(crs)
    wgs84 = transform_bounds(dst_crs, "EPSG:4326", bounds)
    positions = index.select_items(wgs84, start, end, snapshot_id, item_id, product)
    if positions.size == 0:
        raise NoData("no observation intersects the requested area and time")
    positions = _prefer_fitting_resolution(index, positions, bounds, dst_crs, width, height)
    first = index.items[positions[0]]
    band_names = list(bands) if bands else list(first.bands)
    if bands:
        known = {b for p in positions for b in index.items[p].bands}
        missing = [b for b in bands if b not in known]
        if missing:
            raise BandError(f"unknown band(s) {missing}; available: {sorted(known)}")
    dst_transform = from_bounds(*bounds, width, height)
    dtype = np.result_type(*{np.dtype(index.items[p].dtype) for p in positions})
    method = PixelSelectionMethod[pixel_selection].value()
    out = WindowRead(np.ma.masked_all((len(band_names), height, width), dtype), band_names)
    region = bounds
    empty: np.ndarray | None = None  # output pixels some band still lacks (pixel_selection "first")
    footprints: dict[tuple, np.ndarray] = {}
    for pos in positions:
        item = index.items[pos]
        if not set(band_names) <= set(item.bands):
            continue
        native, _, level = _item_level(item, bounds, dst_crs, width, height)
        if pixel_selection == "first" and empty is not None:
            # later observations can only fill what is still empty and inside their footprint: read just
            # that part (often nothing, e.g. around a scene smaller than the tile), so deep stacks of the
            # same scene cost little more than one observation
            inside = _footprint(index, pos, level, dst_transform, dst_crs, empty.shape, footprints)
            region = _pixel_bounds(empty & inside, dst_transform)
            if region is None:
                continue
        window = native if region is bounds else transform_bounds(dst_crs, item.crs, region)
        warped = _read_item(index, chunks, pos, level, window, band_names, dst_transform, dst_crs, width, height, dtype, resampling)
        if warped is None:
            continue
        out.items.append(item.item_id)
        out.levels[item.item_id] = level
        out.datetimes.append(item.datetime)
        method.feed(warped)
        if method.is_done:
            break
        if pixel_selection == "first":
            empty = np.ma.getmaskarray(method.mosaic).any(axis=0)
    if not out.items:
        raise NoData("no observation with these bands intersects the requested area")
    out.data = method.data
    if out.data.dtype != dtype and pixel_selection in ("first", "highest", "lowest"):
        out.data = out.data.astype(dtype)
    return out


def _footprint(
    index: CollectionIndex,
    pos: int,
    level: int,
    transform: Affine,
    dst_crs: str,
    shape: tuple[int, int],
    cache: dict[tuple, np.ndarray],
) -> np.ndarray:
    """Output pixels whose centre lies inside the item-level's extent (cached per extent: stacks repeat it)."""
    start, stop = index.item_row_range(pos, level)
    # half a source pixel inside the extent: output pixels on its very edge were decided by the first warp
    half = abs(index.transform[start, 0]) / 2
    minx, miny = index.minx[start:stop].min() + half, index.miny[start:stop].min() + half
    maxx, maxy = index.maxx[start:stop].max() - half, index.maxy[start:stop].max() - half
    key = (index.items[pos].crs, float(minx), float(miny), float(maxx), float(maxy))
    if key in cache:
        return cache[key]
    edge = np.linspace(0.0, 1.0, 16)
    xs = np.concatenate([minx + (maxx - minx) * edge, np.full(16, maxx), maxx - (maxx - minx) * edge, np.full(16, minx)])
    ys = np.concatenate([np.full(16, maxy), maxy - (maxy - miny) * edge, np.full(16, miny), miny + (maxy - miny) * edge])
    px, py = _transformer(index.items[pos].crs, dst_crs).transform(xs, ys)
    if not (np.isfinite(px).all() and np.isfinite(py).all()):
        inside = np.ones(shape, bool)  # extent not expressible in the output CRS: be conservative
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            inside = rasterize(
                [{"type": "Polygon", "coordinates": [list(zip(px.tolist(), py.tolist()))]}],
                out_shape=shape, transform=transform, all_touched=False, fill=0, default_value=1, dtype="uint8",
            ).astype(bool)
    cache[key] = inside
    return inside


def _pixel_bounds(pixels: np.ndarray, transform: Affine) -> tuple[float, float, float, float] | None:
    """Bounds (output CRS) of the True pixels, ``None`` if there are none."""
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    if rows.size == 0:
        return None
    left, top = transform * (cols[0], rows[0])
    right, bottom = transform * (cols[-1] + 1, rows[-1] + 1)
    return (min(left, right), min(top, bottom), max(left, right), max(top, bottom))


def _prefer_fitting_resolution(
    index: CollectionIndex,
    positions: np.ndarray,
    bounds: tuple[float, float, float, float],
    dst_crs: str,
    width: int,
    height: int,
) -> np.ndarray:
    """Among observations acquired at the same instant, read the best-fitting resolution first.

    Newest-first alone leaves ties (e.g. the same Landsat scene stored at 30 m and at 60 m) to commit
    order, so a 30 m read could be served by upsampled 60 m pixels. Within a tie, prefer observations
    whose chosen level is at least as fine as the request, then the closest resolution, then native
    pixels (level 0) over an averaged overview; commit order (newest first) breaks what remains.
    """
    times = index.item_time[positions]
    if positions.size < 2 or not (times[1:] == times[:-1]).any():
        return positions
    keys = []
    for rank, pos in enumerate(positions):
        item = index.items[pos]
        _, target, level = _item_level(item, bounds, dst_crs, width, height)
        res = item.resolutions[item.levels.index(level)]
        coarser = res > target * (1 + 1e-6)
        keys.append((-int(index.item_time[pos]), coarser, abs(np.log2(res / target)), level, rank))
    order = sorted(range(positions.size), key=keys.__getitem__)
    return positions[order]


def _read_item(
    index: CollectionIndex,
    chunks: ChunkReader,
    pos: int,
    level: int,
    native: tuple[float, float, float, float],
    band_names: list[str],
    dst_transform: Affine,
    dst_crs: str,
    width: int,
    height: int,
    dtype: np.dtype,
    resampling: str,
) -> np.ma.MaskedArray | None:
    """One observation at one level, warped into the output grid (``None`` if it does not overlap)."""
    item = index.items[pos]
    rows = index.chunk_rows(pos, level, native)
    if rows.size == 0:
        return None
    t = index.transform[rows[0]]
    res_x, res_y = t[0], -t[4]
    # the level's pixel grid: origin of the first chunk; all chunks of an item-level share it
    ox, oy = t[2], t[5]
    col_off = np.rint((index.transform[rows, 2] - ox) / res_x).astype(np.int64)
    row_off = np.rint((oy - index.transform[rows, 5]) / res_y).astype(np.int64)
    margin = KERNEL_MARGIN.get(resampling, 4)
    # window of the request (plus kernel margin) on that grid, clipped to the chunks' union
    wc0 = max(int(np.floor((native[0] - ox) / res_x)) - margin, int(col_off.min()))
    wc1 = min(int(np.ceil((native[2] - ox) / res_x)) + margin, int((col_off + index.width[rows]).max()))
    wr0 = max(int(np.floor((oy - native[3]) / res_y)) - margin, int(row_off.min()))
    wr1 = min(int(np.ceil((oy - native[1]) / res_y)) + margin, int((row_off + index.height[rows]).max()))
    if wc1 <= wc0 or wr1 <= wr0:
        return None
    nodata = item.nodata
    nb = len(band_names)
    src = np.full((nb, wr1 - wr0, wc1 - wc0), nodata if nodata is not None else 0, dtype=np.dtype(item.dtype))
    alpha = None if nodata is not None else np.zeros((wr1 - wr0, wc1 - wc0), np.uint8)
    for r, c0, r0 in zip(rows, col_off, row_off):
        h, w = int(index.height[r]), int(index.width[r])
        # overlap of chunk [r0, r0+h) x [c0, c0+w) with window
        a0, a1 = max(r0, wr0), min(r0 + h, wr1)
        b0, b1 = max(c0, wc0), min(c0 + w, wc1)
        if a1 <= a0 or b1 <= b0:
            continue
        bands_data, valid = chunks.read(index.chunk_file[r], int(index.batch_index[r]), h, w, band_names)
        cs = (slice(a0 - r0, a1 - r0), slice(b0 - c0, b1 - c0))
        ws = (slice(a0 - wr0, a1 - wr0), slice(b0 - wc0, b1 - wc0))
        for i, band in enumerate(bands_data):
            src[i][ws] = band[cs]
        if alpha is not None:
            alpha[ws] = 255 if valid is None else np.where(valid[cs], 255, 0)
    src_transform = Affine(res_x, 0, ox + wc0 * res_x, 0, -res_y, oy - wr0 * res_y)
    return _warp(src, alpha, nodata, src_transform, item.crs, dst_transform, dst_crs, width, height, dtype, resampling)


def _warp(
    src: np.ndarray,
    alpha: np.ndarray | None,
    nodata: float | None,
    src_transform: Affine,
    src_crs: str,
    dst_transform: Affine,
    dst_crs: str,
    width: int,
    height: int,
    dtype: np.dtype,
    resampling: str,
) -> np.ma.MaskedArray:
    nb = src.shape[0]
    aligned = _aligned_offset(src_transform, dst_transform) if src_crs == dst_crs else None
    if aligned is not None:
        # same CRS and pixel grid: slicing is exact and much cheaper than a warp
        return _slice_aligned(src, alpha, nodata, aligned, width, height, dtype)
    fill = nodata if nodata is not None else 0
    if alpha is not None:
        stack = np.concatenate([src, alpha[None].astype(src.dtype)])
        dst = np.zeros((nb + 1, height, width), src.dtype)
        reproject(
            stack, dst, src_transform=src_transform, src_crs=src_crs, dst_transform=dst_transform, dst_crs=dst_crs,
            resampling=Resampling[resampling], src_alpha=nb + 1, dst_alpha=nb + 1, init_dest_nodata=False,
        )
        data, mask = dst[:nb], np.broadcast_to(dst[nb] == 0, (nb, height, width))
    else:
        dst = np.full((nb, height, width), fill, src.dtype)
        reproject(
            src, dst, src_transform=src_transform, src_crs=src_crs, src_nodata=nodata, dst_transform=dst_transform,
            dst_crs=dst_crs, dst_nodata=nodata, resampling=Resampling[resampling],
            # per-band nodata: by default GDAL unifies it across bands, so a kernel would average a band's
            # nodata value into valid pixels wherever another band is valid (dark fringes)
            UNIFIED_SRC_NODATA="NO",
        )
        data = dst
        mask = np.isnan(dst) if np.isnan(nodata) else dst == nodata
    return np.ma.MaskedArray(data.astype(dtype, copy=False), mask=mask.copy())


def _aligned_offset(src: Affine, dst: Affine) -> tuple[int, int] | None:
    """Integer (col, row) offset of ``dst``'s origin in ``src``'s grid when both grids coincide."""
    if not (np.isclose(src.a, dst.a, rtol=1e-9, atol=0) and np.isclose(src.e, dst.e, rtol=1e-9, atol=0)):
        return None
    col = (dst.c - src.c) / src.a
    row = (dst.f - src.f) / src.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(col)), int(round(row))


def _slice_aligned(
    src: np.ndarray, alpha: np.ndarray | None, nodata: float | None, offset: tuple[int, int], width: int, height: int, dtype: np.dtype
) -> np.ma.MaskedArray:
    nb, sh, sw = src.shape
    col, row = offset
    data = np.full((nb, height, width), nodata if nodata is not None else 0, src.dtype)
    valid = np.zeros((nb, height, width), bool)
    r0, r1 = max(row, 0), min(row + height, sh)
    c0, c1 = max(col, 0), min(col + width, sw)
    if r1 > r0 and c1 > c0:
        block = src[:, r0:r1, c0:c1]
        data[:, r0 - row : r1 - row, c0 - col : c1 - col] = block
        if alpha is not None:
            valid[:, r0 - row : r1 - row, c0 - col : c1 - col] = alpha[r0:r1, c0:c1] > 0
        elif np.isnan(nodata):
            valid[:, r0 - row : r1 - row, c0 - col : c1 - col] = ~np.isnan(block)
        else:
            valid[:, r0 - row : r1 - row, c0 - col : c1 - col] = block != nodata
    return np.ma.MaskedArray(data.astype(dtype, copy=False), mask=~valid)
