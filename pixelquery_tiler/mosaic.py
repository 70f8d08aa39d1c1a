"""Reading a window: choose levels, gather chunks, warp, mosaic.

This is the primitive under every tile, part, preview and point: given a ``View`` and output bounds, CRS and
size, it returns rio-tiler's ``ImageData`` built from the warehouse, with what was read (items, levels,
datetimes) in its metadata. Per observation it picks the coarsest level still at least as fine as the output
(GDAL's overview rule), pastes that level's chunks into one array on the observation's own pixel grid (they
share it, so there are no seams between chunks), and warps that once into the output grid with
``rasterio.warp.reproject``. Observations are mosaicked with rio-tiler's pixel-selection methods, newest
first, stopping early when the output is full.

The default (pixel selection ``first``, nearest) is batched over observations (``_mosaic_first_nearest``): the
output grid's coordinate map is shared by all observations of a CRS, their windows are located at once, and an
observation covering a small part of the output is read only where output pixels are still empty, by gathering
those pixels from the chunks under them, instead of one tile-sized warp and mosaic pass per observation. Its
result equals ``FirstMethod`` over every observation's own warp (``tests/test_batched_reads.py``).
``sample_pixels`` is the point form: the stored pixel under a point for many observations at once (time series).

Bands are mosaicked per *band set*: the requested bands that the same observations carry. An observation
lacking a band is skipped for that band only, so observations holding different bands (and, later, items
made of several band groups on different grids) mosaic band by band; when every observation carries every
requested band (today's collections) there is one band set and one pass.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize
from rasterio.transform import from_bounds
from rasterio.warp import reproject
from rio_tiler.models import ImageData
from rio_tiler.mosaic.methods import PixelSelectionMethod

from .chunks import ChunkReader
from .crs import BBox, crs_id, transform_bounds, transformer
from .errors import BandError, NoData
from .index import CollectionIndex, ItemView
from .sampling import MAX_ERROR_PX, CoordinateMap, coordinate_map, inside_extent, sample_nearest
from .view import View

__all__ = ["BandError", "NoData", "WindowRead", "choose_level", "read_window", "sample_pixels", "transform_bounds"]

log = logging.getLogger(__name__)

#: a batched mosaic gathers an item's pixels one by one while they are fewer than this fraction of the tile, and
#: warps the source under them densely (``_read_item``) beyond: a gather costs per pixel, a dense warp per tile
DENSE_FRACTION = 16
#: items in the first wave of a batch of small items (``_fill_small_items``); each next wave is twice as large
WAVE = 8
#: extra source pixels around the request so resampling kernels see their neighbours
KERNEL_MARGIN = {"nearest": 1, "bilinear": 2, "cubic": 3, "cubic_spline": 3, "lanczos": 4}


@dataclass
class WindowRead:
    """``Collection.read``'s result: the pixels and what they came from (an ``ImageData``'s essentials)."""

    data: np.ma.MaskedArray  # (bands, height, width); mask True = no data
    band_names: list[str]
    items: list[str] = field(default_factory=list)  # item ids that contributed, mosaic order
    levels: dict[str, int] = field(default_factory=dict)  # item id -> level read
    datetimes: list[dt.datetime] = field(default_factory=list)

    @classmethod
    def from_image(cls, image: ImageData) -> WindowRead:
        """The essentials of an ``ImageData`` that ``read_window`` built (its metadata names what was read)."""
        meta = image.metadata or {}
        return cls(
            image.array,
            list(image.band_names),
            list(meta["items"]),
            dict(meta["levels"]),
            [dt.datetime.fromisoformat(d) for d in meta["datetimes"]],
        )


def choose_level(item: ItemView, target_res: float) -> int:
    """Coarsest level whose resolution is still at least as fine as ``target_res`` (GDAL's overview rule)."""
    chosen = item.levels[0]
    for level, res in zip(item.levels, item.resolutions, strict=True):
        if res <= target_res * (1 + 1e-6):
            chosen = level
    return chosen


def _item_level(item: ItemView, bounds: BBox, dst_crs: str, width: int, height: int) -> tuple[BBox, float, int]:
    """The request in the item's CRS, the output resolution there, and the level to read it from."""
    native = transform_bounds(dst_crs, item.crs, bounds)
    target = min((native[2] - native[0]) / width, (native[3] - native[1]) / height)
    return native, target, choose_level(item, target)


@dataclass
class _Contributions:
    """What a read used, in mosaic order (becomes the image metadata)."""

    items: list[str] = field(default_factory=list)
    levels: dict[str, int] = field(default_factory=dict)
    datetimes: list[dt.datetime] = field(default_factory=list)

    def add(self, item: ItemView, level: int) -> None:
        if item.item_id not in self.levels:
            self.items.append(item.item_id)
            self.datetimes.append(item.datetime)
        self.levels[item.item_id] = level


def read_window(
    view: View,
    bounds: BBox,
    crs: CRS | str,
    width: int,
    height: int,
    *,
    bands: list[str] | None = None,
    resampling: str = "nearest",
    pixel_selection: str = "first",
) -> ImageData:
    """Mosaic the view's observations over ``bounds`` (in ``crs``) into a ``width`` x ``height`` image.

    ``bands``: names as stored (default: the newest intersecting observation's bands). ``NoData`` when no
    observation with these bands has pixels there; ``BandError`` when no intersecting observation has a band.
    """
    index = view.index
    dst_crs = crs_id(crs)
    positions = view.intersecting(transform_bounds(dst_crs, "EPSG:4326", bounds))
    if positions.size == 0:
        raise NoData("no observation intersects the requested area and time")
    positions = _prefer_fitting_resolution(index, positions, bounds, dst_crs, width, height)
    band_names = list(bands) if bands else list(index.items[positions[0]].bands)
    observed = [index.items[p] for p in positions.tolist()]  # (the distinct facts below: few, however many items)
    known = {b for carried in {it.bands for it in observed} for b in carried}
    if missing := [b for b in band_names if b not in known]:
        raise BandError(f"unknown band(s) {missing}; available: {sorted(known)}")
    dtype = np.result_type(*{np.dtype(name) for name in {it.dtype for it in observed}})
    used = _Contributions()
    chunks = view.collection.warehouse.chunk_reader
    planes: list[tuple[list[int], np.ma.MaskedArray]] = []
    for band_idx, carriers in _band_sets(index, positions, band_names):
        subset = [band_names[i] for i in band_idx]
        data = _mosaic(
            index, chunks, carriers, subset, bounds, dst_crs, width, height, dtype, resampling, pixel_selection, used
        )
        if data is not None:
            planes.append((band_idx, data))
    if not planes:
        raise NoData("no observation with these bands intersects the requested area")
    if len(planes) == 1 and len(planes[0][0]) == len(band_names):
        data = planes[0][1]
    else:
        data = np.ma.masked_all((len(band_names), height, width), np.result_type(*(p.dtype for _, p in planes)))
        for band_idx, plane in planes:
            data[band_idx] = plane
    return ImageData(
        data,
        bounds=bounds,
        crs=CRS.from_user_input(crs) if isinstance(crs, str) else crs,
        band_names=list(band_names),
        band_descriptions=list(band_names),
        assets=list(used.items),
        metadata={
            "items": list(used.items),
            "levels": dict(used.levels),
            "datetimes": [d.isoformat() for d in used.datetimes],
        },
    )


def sample_pixels(
    index: CollectionIndex, chunks: ChunkReader, requests: list[tuple[int, float, float, list[str]]]
) -> list[np.ma.MaskedArray | None]:
    """The level-0 pixel under a point of each index entry, for many entries at once (a point's time series).

    ``requests``: (entry position, x, y in the entry's CRS, bands). Per request, the (bands,) values of the
    stored pixel containing the point, masked where invalid, or ``None`` when no chunk of the entry holds that
    pixel. What a 1 x 1 ``read_window`` of that native pixel returns, without a ``View``, a level choice or a warp
    per entry: each entry's chunk and pixel are located directly on its level-0 grid, each chunk is read once and
    validity is decided as the aligned read path decides it (``_slice_aligned``).
    """
    out: list[np.ma.MaskedArray | None] = []
    for pos, x, y, bands in requests:
        item = index.items[pos]
        start, stop = index.item_row_range(pos, item.levels[0])
        t = index.transform[start:stop]
        res_x, res_y, ox, oy = t[0, 0], -t[0, 4], t[0, 2], t[0, 5]
        col, row = math.floor((x - ox) / res_x), math.floor((oy - y) / res_y)
        col_off = np.rint((t[:, 2] - ox) / res_x).astype(np.int64)
        row_off = np.rint((oy - t[:, 5]) / res_y).astype(np.int64)
        height, width = index.height[start:stop], index.width[start:stop]
        hit = np.flatnonzero((col_off <= col) & (col < col_off + width) & (row_off <= row) & (row < row_off + height))
        if hit.size == 0:
            out.append(None)
            continue
        k = int(hit[0])
        r, c = row - int(row_off[k]), col - int(col_off[k])
        relpath = index.chunk_file[start + k]
        assert relpath is not None  # every catalog row names its chunk file
        data, valid = chunks.read(relpath, int(index.batch_index[start + k]), int(height[k]), int(width[k]), bands)
        values = np.array([band[r, c] for band in data], item.dtype).reshape(len(bands), 1, 1)
        alpha = None
        if item.nodata is None:
            alpha = np.full((1, 1), 255 if valid is None or valid[r, c] else 0, np.uint8)
        pixel = _slice_aligned(values, alpha, item.nodata, (0, 0), 1, 1, values.dtype)
        out.append(pixel[:, 0, 0])
    return out


def _band_sets(
    index: CollectionIndex, positions: np.ndarray, band_names: list[str]
) -> list[tuple[list[int], np.ndarray]]:
    """Requested bands grouped by the observations that carry them: [(band indices, positions)], in band order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    carried = [index.items[p].bands for p in positions.tolist()]
    distinct = set(carried)
    everyone = {b for b in band_names if all(b in c for c in distinct)}
    for i, band in enumerate(band_names):
        if band in everyone:  # (usual: every observation carries every requested band)
            carriers = tuple(positions.tolist())
        else:
            carriers = tuple(int(p) for p, c in zip(positions.tolist(), carried, strict=True) if band in c)
        groups.setdefault(carriers, []).append(i)
    return [(idx, np.asarray(carriers, dtype=np.int64)) for carriers, idx in groups.items() if carriers]


def _mosaic(
    index: CollectionIndex,
    chunks: ChunkReader,
    positions: np.ndarray,
    band_names: list[str],
    bounds: BBox,
    dst_crs: str,
    width: int,
    height: int,
    dtype: np.dtype,
    resampling: str,
    pixel_selection: str,
    used: _Contributions,
) -> np.ma.MaskedArray | None:
    """One band set: observations (all carrying ``band_names``) mosaicked newest first; ``None`` if none overlap."""
    if pixel_selection == "first" and resampling == "nearest":
        return _mosaic_first_nearest(index, chunks, positions, band_names, bounds, dst_crs, width, height, dtype, used)
    dst_transform = from_bounds(*bounds, width, height)
    method = PixelSelectionMethod[pixel_selection].value()
    region = bounds
    empty: np.ndarray | None = None  # output pixels some band still lacks (pixel_selection "first")
    footprints: dict[tuple, np.ndarray] = {}
    fed = False
    for pos in positions:
        item = index.items[pos]
        native, _, level = _item_level(item, bounds, dst_crs, width, height)
        if pixel_selection == "first" and empty is not None:
            # later observations can only fill what is still empty and inside their footprint: read just
            # that part (often nothing, e.g. around a scene smaller than the tile), so deep stacks of the
            # same scene cost little more than one observation
            inside = _footprint(index, pos, level, dst_transform, dst_crs, empty.shape, footprints)
            still_empty = _pixel_bounds(empty & inside, dst_transform)
            if still_empty is None:
                continue
            region = still_empty
        window = native if region is bounds else transform_bounds(dst_crs, item.crs, region)
        warped = _read_item(
            index, chunks, pos, level, window, band_names, dst_transform, dst_crs, width, height, dtype, resampling
        )
        if warped is None:
            continue
        used.add(item, level)
        fed = True
        method.feed(warped)
        if method.is_done:
            break
        if pixel_selection == "first":
            empty = np.asarray(np.ma.getmaskarray(method.mosaic).any(axis=0))
    if not fed:
        return None
    data = method.data
    if data.dtype != dtype and pixel_selection in ("first", "highest", "lowest"):
        data = data.astype(dtype)
    return data


class _ItemPlan(NamedTuple):
    """How one observation enters a batched mosaic: its level, the request in its CRS, and where it lands."""

    pos: int
    level: int
    native: BBox  # the request in the item's CRS
    extent: tuple[float, float, float, float]  # the item-level's chunks, item CRS
    cmap: CoordinateMap | None  # the output grid in the item's CRS; None: warp the item whole (``_read_item``)
    window: tuple[int, int, int, int]  # output rows [r0, r1), columns [c0, c1) that can hold its pixel centres


class _Plans(NamedTuple):
    """Every observation's ``_ItemPlan``, as arrays in mosaic order (``_plan_items``)."""

    positions: np.ndarray
    levels: list[int]
    starts: np.ndarray  # each item-level's index rows [start, stop)
    stops: np.ndarray
    extents: np.ndarray  # (n, 4)
    natives: np.ndarray  # (n, 4) the request in each item's CRS
    crs: list[str]
    cmaps: dict[str, CoordinateMap | None]  # per CRS
    mapped: np.ndarray  # the coordinate map serves the item
    #: mapped, a small part of the output (its window) and of the mosaic's dtype: resolved together with its
    #: small neighbours in the mosaic order (``_fill_small_items``)
    small: np.ndarray
    windows: np.ndarray  # (n, 4) output rows [r0, r1), columns [c0, c1) holding its pixel centres (mapped items)

    def plan(self, k: int) -> _ItemPlan:
        return _ItemPlan(
            int(self.positions[k]),
            self.levels[k],
            tuple(self.natives[k].tolist()),
            tuple(self.extents[k].tolist()),
            self.cmaps[self.crs[k]] if self.mapped[k] else None,
            tuple(self.windows[k].tolist()),
        )


def _plan_items(
    index: CollectionIndex,
    positions: np.ndarray,
    bounds: BBox,
    dst_crs: str,
    dst_transform: Affine,
    width: int,
    height: int,
    dtype: np.dtype,
) -> _Plans:
    """Level, extent and output window of every observation, computed per CRS and vectorised over items.

    The request in an item's CRS, the target resolution and the coordinate map depend on the CRS only; extents,
    tolerance checks and windows of all items sharing a CRS come from array passes (``CoordinateMap.windows``).
    """
    per_crs: dict[str, tuple[BBox, float]] = {}
    cmaps: dict[str, CoordinateMap | None] = {}
    chosen: dict[tuple, int] = {}  # (CRS, levels, resolutions) -> level: items of a collection share a few
    levels, starts, stops, crs_of, same_dtype = [], [], [], [], []
    for pos in positions.tolist():
        item = index.items[pos]
        crs = item.crs
        if crs not in per_crs:
            native = transform_bounds(dst_crs, crs, bounds)
            per_crs[crs] = (native, min((native[2] - native[0]) / width, (native[3] - native[1]) / height))
            cmaps[crs] = coordinate_map(crs, dst_crs, dst_transform, width, height)
        key = (crs, item.levels, item.resolutions)
        level = chosen.get(key)
        if level is None:
            level = chosen[key] = choose_level(item, per_crs[crs][1])
        start, stop = index.item_row_range(pos, level)
        levels.append(level)
        starts.append(start)
        stops.append(stop)
        crs_of.append(crs)
        same_dtype.append(item.dtype == dtype)
    n = len(starts)
    # extents of the item-levels' rows: one reduceat over their rows (every item-level has one at least)
    per = np.subtract(stops, starts)
    first = np.cumsum(per) - per
    rows = np.repeat(np.subtract(starts, first), per) + np.arange(int(per.sum()))
    extents = np.column_stack(
        [
            np.minimum.reduceat(index.minx[rows], first),
            np.minimum.reduceat(index.miny[rows], first),
            np.maximum.reduceat(index.maxx[rows], first),
            np.maximum.reduceat(index.maxy[rows], first),
        ]
    )
    t = index.transform[starts]  # (a, b, c, d, e, f) of each item-level's grid
    res = np.minimum(np.abs(t[:, 0]), np.abs(t[:, 4]))
    windows = np.zeros((n, 4), np.int64)
    windows[:, 1], windows[:, 3] = height, width
    mapped, small = np.zeros(n, bool), np.zeros(n, bool)
    natives = np.empty((n, 4))
    crs_arr = np.array(crs_of)
    for crs, cmap in cmaps.items():
        of_crs = crs_arr == crs if len(cmaps) > 1 else np.ones(n, bool)
        natives[of_crs] = per_crs[crs][0]
        if cmap is None:
            continue
        # rotated grids, maps beyond GDAL's tolerance for the grid, and aligned grids (sliced exactly): per item
        ok = of_crs & (t[:, 1] == 0) & (t[:, 3] == 0) & (cmap.error <= MAX_ERROR_PX * res)
        if crs == dst_crs:
            ok &= [_aligned_offset(Affine(*row[:6]), dst_transform) is None for row in t]
        if not ok.any():
            continue
        mapped |= ok
        at = np.flatnonzero(ok)
        windows[at] = cmap.windows(extents[at])
        area = (windows[at, 1] - windows[at, 0]) * (windows[at, 3] - windows[at, 2])
        small[at] = (area <= width * height // DENSE_FRACTION) & np.array(same_dtype)[at]
    return _Plans(positions, levels, np.asarray(starts), np.asarray(stops), extents, natives, crs_of, cmaps,
                  mapped, small, windows)  # fmt: skip


def _mosaic_first_nearest(
    index: CollectionIndex,
    chunks: ChunkReader,
    positions: np.ndarray,
    band_names: list[str],
    bounds: BBox,
    dst_crs: str,
    width: int,
    height: int,
    dtype: np.dtype,
    used: _Contributions,
) -> np.ma.MaskedArray | None:
    """``_mosaic`` for pixel selection "first" with nearest resampling, batched over observations.

    The result is what rio-tiler's ``FirstMethod`` makes of each observation's whole nearest warp, newest first
    (per band, the first valid value), but an observation costs only its own output pixels: the coordinate map
    of the output grid is shared by every item of a CRS (one "warp" geometry for all), and windows are located
    for all items at once. Consecutive items covering a small part of the output are resolved together
    (``_fill_small_items``: a z6 tile over 100 small items costs a few array passes per wave of items, not
    100 tile-sized warps nor ~15 numpy calls per item); a larger item is read only where output pixels inside
    its extent are still empty, from just the chunks under those pixels. Items the map cannot serve (aligned
    grids, rotated grids, beyond GDAL's tolerance) take the per-item warp and join the same mosaic.
    """
    dst_transform = from_bounds(*bounds, width, height)
    out = _FirstMosaic(len(band_names), height, width, dtype)
    plans = _plan_items(index, positions, bounds, dst_crs, dst_transform, width, height, dtype)
    k, n = 0, len(plans.positions)
    while k < n:
        if plans.small[k]:
            rest = np.flatnonzero(~plans.small[k:])
            end = k + int(rest[0]) if rest.size else n
            _fill_small_items(index, chunks, plans, k, end, band_names, out, used)
            k = end
            if out.done:
                break
            continue
        plan = plans.plan(k)
        k += 1
        item = index.items[plan.pos]
        native, found = plan.native, None
        r0, r1, c0, c1 = plan.window
        large = (r1 - r0) * (c1 - c0) > width * height // DENSE_FRACTION
        if plan.cmap is not None and not (large and out.data is None):  # (the first large one: a plain warp)
            found = _still_needed(plan, out.need)
            if found is None:
                continue
            rows, cols, area = found
            if area > width * height // DENSE_FRACTION:
                # a large part of the tile: one dense warp of just the source under those pixels beats gathering
                xs, ys = plan.cmap.xs[rows, cols], plan.cmap.ys[rows, cols]
                native, found = (xs.min(), ys.min(), xs.max(), ys.max()), None
        if plan.cmap is None and out.data is not None:
            # no coordinate map (aligned or rotated grids, large outputs): warp only the source under the
            # bounding box of the pixels still empty, as the per-item mosaic does
            region = _pixel_bounds(out.need, dst_transform)
            if region is None:
                break
            native = transform_bounds(dst_crs, item.crs, region)
        if found is None:  # the per-item warp (the whole read, or the source under the still-needed pixels)
            warped = _read_item(
                index, chunks, plan.pos, plan.level, native, band_names, dst_transform, dst_crs,
                width, height, dtype, "nearest",
            )  # fmt: skip
            if warped is None:
                continue
            part, part_mask = np.ma.getdata(warped), np.ma.getmaskarray(warped)
            if part_mask.shape != part.shape:
                part_mask = np.broadcast_to(part_mask, part.shape).copy()
            part, part_mask = part.reshape(len(band_names), -1), part_mask.reshape(len(band_names), -1)
            pixels = None
        else:
            sampled = _sample_window(index, chunks, plan, found, band_names, width, dtype)
            if sampled is None:
                continue
            part, part_mask, pixels = sampled
        if out.feed(item, part, part_mask, pixels):
            used.add(item, plan.level)
            if out.done:
                break
    return out.result()


class _FirstMosaic:
    """rio-tiler's ``FirstMethod`` over flat output pixels: per band, the first valid value fed wins.

    Fed a few pixels at a time (an item's window), so a small item costs its own pixels, not a tile-sized pass.
    Masked pixels hold the first observation's fill value, as ``FirstMethod``'s first array sets them.
    """

    def __init__(self, bands: int, height: int, width: int, dtype: np.dtype):
        self.shape = (bands, height, width)
        self.dtype = dtype
        self.data: np.ndarray | None = None
        self.mask = np.ones((1, 1, 1), bool)  # (bands, height, width) from the first feed
        self.need = np.ones((height, width), bool)  # output pixels some band still lacks

    @property
    def done(self) -> bool:
        """Whether every band of every pixel holds a value."""
        return not self.need.any()

    def start(self, fill: float) -> None:
        """The output before anything is filled: every pixel masked, holding ``fill`` (the first observation's
        nodata, or 0)."""
        self.data = np.full(self.shape, fill, self.dtype)
        self.mask = np.ones(self.shape, bool)

    def feed(self, item: ItemView, part: np.ndarray, part_mask: np.ndarray, pixels: np.ndarray | None) -> bool:
        """Fill still-masked pixels from ``part`` (bands, n) at flat output ``pixels`` (``None``: all); whether
        the observation counts as read (it filled something, or it is the first: ``FirstMethod`` keeps it)."""
        if self.data is None and pixels is None:  # FirstMethod's first array: taken as it is (it is ours)
            self.data = part.reshape(self.shape).astype(self.dtype, copy=False)
            self.mask = part_mask.reshape(self.shape)
            self.need = np.asarray(self.mask.any(axis=0))
            return True
        first = self.data is None
        if first:
            self.start(item.nodata if item.nodata is not None else 0)
        if pixels is None:
            assert self.data is not None
            data, mask = self.data.reshape(self.shape[0], -1), self.mask.reshape(self.shape[0], -1)
            fresh = mask & ~part_mask
            data[fresh] = part[fresh]
            mask[fresh] = False
            self.need = np.asarray(self.mask.any(axis=0))
            return first or bool(fresh.any())
        return self.fill(part, part_mask, pixels).size > 0 or first

    def fill(self, part: np.ndarray, part_mask: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """Fill still-masked bands of the distinct flat output ``pixels`` from ``part`` (bands, n) where
        ``part_mask`` is False; the positions in ``part`` that filled something (repeated per band)."""
        assert self.data is not None  # ``start`` or a first feed made it
        data, mask = self.data.reshape(self.shape[0], -1), self.mask.reshape(self.shape[0], -1)
        band, at = np.nonzero(mask[:, pixels] & ~part_mask)
        data[band, pixels[at]] = part[band, at]
        mask[band, pixels[at]] = False
        self.need.reshape(-1)[pixels] = mask[:, pixels].any(axis=0)
        return at

    def result(self) -> np.ma.MaskedArray | None:
        """The mosaic, ``None`` if nothing was fed."""
        return None if self.data is None else np.ma.MaskedArray(self.data, mask=self.mask)


class _SmallGrids(NamedTuple):
    """``_source_grid`` of many item-levels at once: their chunks under the request, and each one's window."""

    item: np.ndarray  # per chunk: which item (0..n-1), ascending
    rows: np.ndarray  # per chunk: its index row
    col_off: np.ndarray  # per chunk: its first column / row on its item-level's grid
    row_off: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    first: np.ndarray  # per item: its first chunk here, and how many it has
    chunks: np.ndarray
    transforms: np.ndarray  # per item: (a, c, e, f) of its window's top-left pixel (``_SourceGrid.transform``)
    sizes: np.ndarray  # per item: window width, height (0 x 0: no chunk under the request)
    origin: np.ndarray  # per item: the window's first column, first row on the grid
    #: sorted keys of (item, chunk row start) and of (item, chunk row start, chunk column start), with the chunk
    #: of each: where a pixel's chunk is looked up (``_holders``); ``None`` beyond the keys' range
    row_keys: np.ndarray | None
    chunk_keys: np.ndarray | None
    chunk_of_key: np.ndarray | None


#: bits of a lookup key per part (item, row start, column start; offsets shifted by half the range)
_KEY_BITS = 21


def _small_grids(index: CollectionIndex, starts: np.ndarray, stops: np.ndarray, natives: np.ndarray) -> _SmallGrids:
    """What ``_source_grid`` computes per item-level (rows ``[starts, stops)``, request ``natives`` in its CRS,
    nearest's kernel margin), in array passes over all of them, with the same floats term by term: the grid's
    origin is the first chunk under the request, its window the request on that grid clipped to those chunks."""
    n = starts.size
    per = stops - starts
    item = np.repeat(np.arange(n), per)
    rows = np.arange(item.size) - np.repeat(np.cumsum(per) - per, per) + np.repeat(starts, per)
    nat = natives[item]
    under = (index.minx[rows] < nat[:, 2]) & (index.maxx[rows] > nat[:, 0])
    under &= (index.miny[rows] < nat[:, 3]) & (index.maxy[rows] > nat[:, 1])
    item, rows = item[under], rows[under]
    count = np.bincount(item, minlength=n)
    first = np.cumsum(count) - count
    has = count > 0
    t0 = index.transform[rows[np.minimum(first, max(rows.size - 1, 0))]] if rows.size else np.ones((n, 6))
    res_x, res_y, ox, oy = t0[:, 0], -t0[:, 4], t0[:, 2], t0[:, 5]
    t = index.transform[rows]
    col_off = np.rint((t[:, 2] - ox[item]) / res_x[item]).astype(np.int64)
    row_off = np.rint((oy[item] - t[:, 5]) / res_y[item]).astype(np.int64)
    heights, widths = index.height[rows].astype(np.int64), index.width[rows].astype(np.int64)
    union = np.zeros((4, n), np.int64)
    if rows.size:
        at = first[has]
        union[:, has] = (
            np.minimum.reduceat(col_off, at),
            np.maximum.reduceat(col_off + widths, at),
            np.minimum.reduceat(row_off, at),
            np.maximum.reduceat(row_off + heights, at),
        )
    margin = KERNEL_MARGIN["nearest"]
    wc0 = np.maximum(np.floor((natives[:, 0] - ox) / res_x).astype(np.int64) - margin, union[0])
    wc1 = np.minimum(np.ceil((natives[:, 2] - ox) / res_x).astype(np.int64) + margin, union[1])
    wr0 = np.maximum(np.floor((oy - natives[:, 3]) / res_y).astype(np.int64) - margin, union[2])
    wr1 = np.minimum(np.ceil((oy - natives[:, 1]) / res_y).astype(np.int64) + margin, union[3])
    sizes = np.stack([wc1 - wc0, wr1 - wr0], axis=1)
    sizes[~has | (sizes <= 0).any(axis=1)] = 0
    transforms = np.stack([res_x, ox + wc0 * res_x, -res_y, oy - wr0 * res_y], axis=1)
    return _SmallGrids(
        item, rows, col_off, row_off, heights, widths, first, count, transforms, sizes, np.stack([wc0, wr0], axis=1),
        *_chunk_keys(item, col_off, row_off, n),
    )  # fmt: skip


def _chunk_keys(
    item: np.ndarray, col_off: np.ndarray, row_off: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | tuple[None, None, None]:
    """``_SmallGrids``' lookup keys of chunks (their item, row start, column start): (sorted keys of the rows,
    sorted keys of the chunks, the chunk of each), or ``None``s where a part does not fit its bits."""
    half = 1 << (_KEY_BITS - 1)
    if n >= 2 * half or item.size == 0 or max(np.abs(col_off).max(), np.abs(row_off).max()) >= half:
        return None, None, None
    band = (item << _KEY_BITS) + row_off + half
    keys = (band << _KEY_BITS) + col_off + half
    chunk_of_key = np.argsort(keys, kind="stable")
    return np.unique(band), keys[chunk_of_key], chunk_of_key


def _holders(grids: _SmallGrids, k: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """The chunk (position in ``grids``) holding each pixel (``col``, ``row``) of item ``k``, -1 for none.

    Looked up by keys: the last chunk row starting at or before the pixel, then the last chunk of that row
    starting at or before it, which holds it when the item's chunks tile a grid (as ingest writes them). A pixel
    that chunk does not hold is searched among all its item's chunks (gaps, or chunks not on a grid)."""
    found = np.full(k.size, -1, np.int64)
    todo = np.arange(k.size)
    if grids.row_keys is not None and grids.chunk_keys is not None and grids.chunk_of_key is not None:
        half = 1 << (_KEY_BITS - 1)
        base = k << _KEY_BITS
        j = np.maximum(np.searchsorted(grids.row_keys, base + row + half, "right") - 1, 0)
        band = grids.row_keys[j]
        i = np.maximum(np.searchsorted(grids.chunk_keys, (band << _KEY_BITS) + col + half, "right") - 1, 0)
        chunk = grids.chunk_of_key[i]
        c0, r0 = grids.col_off[chunk], grids.row_off[chunk]
        held = (grids.item[chunk] == k) & (c0 <= col) & (col < c0 + grids.widths[chunk])
        held &= (r0 <= row) & (row < r0 + grids.heights[chunk])
        found[held] = chunk[held]
        todo = np.flatnonzero(~held)
        if todo.size == 0:
            return found
    k, col, row = k[todo], col[todo], row[todo]
    per = grids.chunks[k]
    pixel = np.repeat(np.arange(todo.size), per)
    chunk = np.repeat(grids.first[k] - (np.cumsum(per) - per), per) + np.arange(pixel.size)
    c, r = col[pixel], row[pixel]
    c0, r0 = grids.col_off[chunk], grids.row_off[chunk]
    inside = (c0 <= c) & (c < c0 + grids.widths[chunk]) & (r0 <= r) & (r < r0 + grids.heights[chunk])
    found[todo[pixel[inside]]] = chunk[inside]
    return found


def _fill_small_items(
    index: CollectionIndex,
    chunks: ChunkReader,
    plans: _Plans,
    k0: int,
    k1: int,
    band_names: list[str],
    out: _FirstMosaic,
    used: _Contributions,
) -> None:
    """Feed the consecutive small items ``plans[k0:k1]`` into ``out`` together, with the result of feeding them
    one by one (``_still_needed`` + ``_sample_window`` each): per band, the first valid value in mosaic order.

    A pass finds every still-needed pixel's first item by geometry alone (``_first_owners``: waves of items,
    each located at once), gathers all those pixels, one read per chunk holding any, and judges them by the one
    validity rule (``_invalid``). Pixels still lacking a band (holes, a band's own nodata) take it from their
    next item in another pass. Usually one pass: the cost is a few array passes per wave and one gather, not ~15
    numpy calls per item.
    """
    grids = _small_grids(index, plans.starts[k0:k1], plans.stops[k0:k1], plans.natives[k0:k1])
    items = [index.items[p] for p in plans.positions[k0:k1].tolist()]
    names = dict.fromkeys(plans.crs[k0:k1])
    crs = np.array(plans.crs[k0:k1]) if len(names) > 1 else None
    need = out.need.reshape(-1)  # (a view: ``out.fill`` updates it)
    windows = plans.windows[k0:k1]
    windows = windows[(windows[:, 1] > windows[:, 0]) & (windows[:, 3] > windows[:, 2])]
    if windows.size == 0:
        return  # none of them has a pixel centre in the output
    r0, c0 = windows[:, 0].min(), windows[:, 2].min()
    rows, cols = np.nonzero(out.need[r0 : windows[:, 1].max(), c0 : windows[:, 3].max()])
    pixels = (rows + r0) * out.need.shape[1] + (cols + c0)  # the still-needed pixels under any window, sorted
    fills = np.array([0 if it.nodata is None else it.nodata for it in items], np.float64).astype(out.dtype)
    kinds: dict[object, int] = {}  # validity kinds: a nodata value (NaN as one), or a mask (None)
    kind = np.array([kinds.setdefault("nan" if v != v else v, len(kinds)) for v in (it.nodata for it in items)])
    validity = (kind, [items[int(np.argmax(kind == i))].nodata for i in range(len(kinds))])
    read = np.zeros(k1 - k0, bool)  # items that filled something
    tried = np.full(need.size, -1, np.int64)  # per output pixel: the last item read there
    while pixels.size:
        # each pixel's first item (after the last one read there): a pass of waves, then one gather for all
        k, flat, col, row = _first_owners(plans, k0, k1, grids, crs, names, pixels, tried, int(tried[pixels].min()) + 1)
        if k.size == 0:
            break
        if out.data is None:  # FirstMethod keeps the first observation fed, filled or not
            first = int(k.min())
            out.start(fills[first])
            read[first] = True
        order, values, invalid = _gather_small(index, chunks, grids, items, k, col, row, band_names, fills, validity)
        k, flat = k[order], flat[order]
        read[k[out.fill(values, invalid, flat)]] = True
        # pixels still lacking a band (holes, a band's own nodata) take it from their next item: another pass
        again = need.take(flat)
        tried[flat] = k
        pixels = np.sort(flat[again])
    for i in np.flatnonzero(read).tolist():
        used.add(items[i], plans.levels[k0 + i])


def _first_owners(
    plans: _Plans,
    k0: int,
    k1: int,
    grids: _SmallGrids,
    crs: np.ndarray | None,
    names: dict[str, None],
    pixels: np.ndarray,
    tried: np.ndarray,
    start: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``pixels`` (sorted flat output positions), the first of the small items ``plans[k0:k1]`` after
    ``tried`` (per pixel, the last item read there) whose source window holds its centre: (item, pixel, source
    column, source row on the item-level's grid). Items go in waves (``WAVE``, then twice as many each time),
    each located at once (``CoordinateMap.locate``) on the pixels no earlier wave owns: later items, often under
    pixels already owned, are not tested everywhere."""
    owners = []
    best = np.empty(tried.size, np.int64)  # scratch: per pixel, its first candidate in a wave
    owned = np.zeros(tried.size, bool)
    wave = WAVE
    while start < k1 - k0 and pixels.size:
        stop = min(start + wave, k1 - k0)
        found = []
        for name in names:
            cmap = plans.cmaps[name]
            assert cmap is not None  # small items are mapped
            sel: slice | np.ndarray = (  # (one CRS: views of the wave's items)
                slice(start, stop) if crs is None else start + np.flatnonzero(crs[start:stop] == name)
            )
            windows = plans.windows[k0:k1][sel]
            if windows.size:
                k, flat, col, row = cmap.locate(windows, grids.transforms[sel], grids.sizes[sel], pixels)
                found.append((k + start if crs is None else np.asarray(sel)[k], flat, col, row))
        start, wave = stop, 2 * wave
        if len(found) == 1:
            k, flat, col, row = found[0]
        elif found:  # back into the mosaic order (stable: each item's pixels came from one CRS)
            k, flat, col, row = (np.concatenate(parts) for parts in zip(*found, strict=True))
            order = np.argsort(k, kind="stable")
            k, flat, col, row = k[order], flat[order], col[order], row[order]
        else:
            continue
        later = np.flatnonzero(k > tried.take(flat))
        if later.size < k.size:
            k, flat, col, row = k[later], flat[later], col[later], row[later]
        if k.size == 0:
            continue
        # candidates are in mosaic order: a pixel's first is its smallest index
        index = np.arange(k.size)
        best[flat] = k.size
        np.minimum.at(best, flat, index)
        wins = np.flatnonzero(best.take(flat) == index)
        k, flat = k[wins], flat[wins]
        owners.append((k, flat, col[wins] + grids.origin[k, 0], row[wins] + grids.origin[k, 1]))
        owned[flat] = True
        pixels = pixels[~owned.take(pixels)]
    if not owners:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty
    if len(owners) == 1:
        return owners[0]
    k, flat, col, row = (np.concatenate(parts) for parts in zip(*owners, strict=True))
    return k, flat, col, row


def _gather_small(
    index: CollectionIndex,
    chunks: ChunkReader,
    grids: _SmallGrids,
    items: list[ItemView],
    k: np.ndarray,
    col: np.ndarray,
    row: np.ndarray,
    band_names: list[str],
    fills: np.ndarray,
    validity: tuple[np.ndarray, list[float | None]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored pixels at (``col``, ``row``) on the grids of items ``k`` (``_small_grids``) and their
    invalidity (``_invalid``), (bands, n) each, in the order ``order`` (returned first: by chunk): what ``_gather``
    and ``_invalid`` give item by item, with one read per chunk holding any of the pixels (each pixel's chunk is
    found among its item's chunks under the request).

    ``fills``: per item, what a pixel in no chunk holds (nodata, or 0); ``validity``: per item its kind, and
    per kind the nodata value (``None``: a mask)."""
    n = k.size
    holder = _holders(grids, k, col, row)  # -1: in no chunk (a gap between chunks): left as filled below
    key = (holder + 1).astype(np.uint16) if grids.rows.size < 65535 else holder  # (radix sort)
    order = np.argsort(key, kind="stable")
    holder, k = holder[order], k[order]
    held = np.maximum(holder, 0)
    flat = (row[order] - grids.row_off[held]) * grids.widths[held] + (col[order] - grids.col_off[held])
    values = np.empty((len(band_names), n), fills.dtype)
    values[:] = fills[k]
    kind, nodatas = validity
    alpha = np.zeros(n, np.uint8) if None in nodatas else None
    keep: np.ndarray | None = None
    cuts = (np.flatnonzero(holder[1:] != holder[:-1]) + 1).tolist()
    for s, e in zip([0, *cuts], [*cuts, n], strict=True):
        h = int(holder[s])
        if h >= 0:
            nodata = items[grids.item[h]].nodata
            at = slice(s, e)
            keep = _read_pixels(
                index, chunks, int(grids.rows[h]), flat[at], band_names, nodata, values, alpha, at, keep
            )
    if len(nodatas) == 1:  # one kind of validity (usual): one call
        return order, values, _invalid(values, alpha if nodatas[0] is None else None, nodatas[0], keep)
    invalid = np.empty(values.shape, bool)
    of_pixel = kind[k]
    for i, nodata in enumerate(nodatas):
        sel = np.flatnonzero(of_pixel == i)
        invalid[:, sel] = _invalid(
            values[:, sel],
            alpha[sel] if nodata is None and alpha is not None else None,
            nodata,
            None if keep is None else keep[:, sel],
        )
    return order, values, invalid


def _read_pixels(
    index: CollectionIndex,
    chunks: ChunkReader,
    row: int,
    flat: np.ndarray,
    band_names: list[str],
    nodata: float | None,
    values: np.ndarray,
    alpha: np.ndarray | None,
    at: np.ndarray | slice,
    keep: np.ndarray | None,
) -> np.ndarray | None:
    """Pixels ``flat`` (positions in the chunk at index row ``row``) into ``values[:, at]``, with what validity
    the chunk stores: ``alpha[at]`` (255/0) for mask items, ``keep[:, at]`` for a nodata item's pixels valid
    although equal to nodata (per-band validity; ``keep`` made on first need and returned). The one chunk read
    of ``_gather`` and ``_gather_small``; a pixel-level mask of a nodata item is ignored (the value says more)."""
    h, w = int(index.height[row]), int(index.width[row])
    relpath = index.chunk_file[row]
    assert relpath is not None  # every catalog row names its chunk file
    bands_data, valid = chunks.read(relpath, int(index.batch_index[row]), h, w, band_names)
    for i, band in enumerate(bands_data):
        values[i, at] = band.reshape(-1)[flat]
    if nodata is None:
        assert alpha is not None  # made for every read holding a mask item
        alpha[at] = 255 if valid is None else np.where(valid.reshape(-1)[flat], 255, 0)
    elif valid is not None and valid.ndim == 3:
        hit = valid.reshape(len(band_names), -1)[:, flat] & (values[:, at] == nodata)
        if hit.any():
            keep = np.zeros(values.shape, bool) if keep is None else keep
            keep[:, at] = hit
    return keep


def _still_needed(plan: _ItemPlan, need: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The output pixels an observation may still fill: those of its window that some band still lacks and whose
    centre lies in its extent, as (rows, columns) of the tile and the area of the smallest window holding them
    (``None``: there are none). Few numpy calls: an item's fixed cost is what a tile over many items pays."""
    assert plan.cmap is not None
    r0, r1, c0, c1 = plan.window
    wanted = need[r0:r1, c0:c1]
    if not wanted.any():
        return None  # nothing left to fill where this item may lie
    x0, y0, x1, y1 = plan.extent
    pad = 1e-6 * (x1 - x0)  # >= 1e-6 px: covers the sampler's 1e-10 px nudge
    rr, cc = np.nonzero(wanted)
    xs, ys = plan.cmap.xs[r0:r1, c0:c1][rr, cc], plan.cmap.ys[r0:r1, c0:c1][rr, cc]
    inside = (xs >= x0 - pad) & (xs <= x1 + pad) & (ys >= y0 - pad) & (ys <= y1 + pad)
    if not inside.all():
        rr, cc = rr[inside], cc[inside]
        if rr.size == 0:
            return None  # the window is whole lattice cells: its empty pixels may all lie outside the item
    area = int(rr[-1] - rr[0] + 1) * int(cc.max() - cc.min() + 1)  # (rows come sorted from ``nonzero``)
    return rr + r0, cc + c0, area


def _sample_window(
    index: CollectionIndex,
    chunks: ChunkReader,
    plan: _ItemPlan,
    found: tuple[np.ndarray, np.ndarray, int],
    band_names: list[str],
    width: int,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One observation's nearest samples at the still-needed output pixels ``found`` (``_still_needed``): (bands,
    n) values, their mask and their flat output positions; ``None`` when it has nothing there. The pixels are
    those the per-item warp would pick (``sample_nearest``'s arithmetic on the same source transform) and their
    validity is decided as that path decides it (``_slice_aligned``), but only those pixels are computed and only
    the chunks under them are read (no source array is pasted)."""
    assert plan.cmap is not None
    item = index.items[plan.pos]
    rr, cc, _ = found
    grid = _source_grid(index, plan.pos, plan.level, plan.native, KERNEL_MARGIN["nearest"])
    if grid is None:
        return None
    wr0, wr1, wc0, wc1 = grid.window
    # the per-item warp's source transform (``grid.transform``), term by term: the same floats
    tc, tf = grid.ox + wc0 * grid.res_x, grid.oy - wr0 * grid.res_y
    xs, ys = plan.cmap.xs[rr, cc], plan.cmap.ys[rr, cc]
    # + 1e-10: GDAL's nearest kernel nudges coordinates the same way before truncating (as ``sample_nearest``)
    col = np.floor((xs - tc) / grid.res_x + 1e-10)
    row = np.floor((ys - tf) / -grid.res_y + 1e-10)
    ok = (col >= 0) & (col < wc1 - wc0) & (row >= 0) & (row < wr1 - wr0)
    if not ok.all():
        rr, cc, col, row = rr[ok], cc[ok], col[ok], row[ok]
        if rr.size == 0:
            return None
    cols, rows = col.astype(np.int64) + wc0, row.astype(np.int64) + wr0
    values, alpha, keep = _gather(index, chunks, plan.pos, grid, cols, rows, band_names)
    return values.astype(dtype, copy=False), _invalid(values, alpha, item.nodata, keep), rr * width + cc


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
    # the read's coordinate map answers "centre inside the extent" per pixel without a rasterize call (whose
    # fixed cost dominates for many small items under a low-zoom tile); within a quarter of the half pixel
    inside = inside_extent(key[0], dst_crs, transform, shape[1], shape[0], key[1:], tolerance=half / 4)
    if inside is not None:
        cache[key] = inside
        return inside
    edge = np.linspace(0.0, 1.0, 16)
    xs = np.concatenate(
        [minx + (maxx - minx) * edge, np.full(16, maxx), maxx - (maxx - minx) * edge, np.full(16, minx)]
    )
    ys = np.concatenate(
        [np.full(16, maxy), maxy - (maxy - miny) * edge, np.full(16, miny), miny + (maxy - miny) * edge]
    )
    px, py = transformer(index.items[pos].crs, dst_crs).transform(xs, ys)
    if not (np.isfinite(px).all() and np.isfinite(py).all()):
        inside = np.ones(shape, bool)  # extent not expressible in the output CRS: be conservative
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            inside = rasterize(
                [{"type": "Polygon", "coordinates": [list(zip(px.tolist(), py.tolist(), strict=True))]}],
                out_shape=shape,
                transform=transform,
                all_touched=False,
                fill=0,
                default_value=1,
                dtype="uint8",
            ).astype(bool)
    cache[key] = inside
    return inside


def _pixel_bounds(pixels: np.ndarray, transform: Affine) -> BBox | None:
    """Bounds (output CRS) of the True pixels, ``None`` if there are none."""
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    if rows.size == 0:
        return None
    left, top = transform @ (cols[0], rows[0])
    right, bottom = transform @ (cols[-1] + 1, rows[-1] + 1)
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
    grid = _source_grid(index, pos, level, native, KERNEL_MARGIN.get(resampling, 4))
    if grid is None:
        return None
    rows, col_off, row_off = grid.rows, grid.col_off, grid.row_off
    wr0, wr1, wc0, wc1 = grid.window
    nodata = item.nodata
    nb = len(band_names)
    src = np.full((nb, wr1 - wr0, wc1 - wc0), nodata if nodata is not None else 0, dtype=np.dtype(item.dtype))
    alpha = None if nodata is not None else np.zeros((wr1 - wr0, wc1 - wc0), np.uint8)
    keep = None  # nodata items: (bands, h, w), valid pixels whose value equals nodata (overview averages)
    for r, c0, r0 in zip(rows, col_off, row_off, strict=True):
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
        elif valid is not None and valid.ndim == 3:  # per-band validity (a pixel-level mask is ignored here: the
            # value says more, per band); only chunks where a valid value equals nodata store it
            hit = valid[(slice(None), *cs)] & (src[(slice(None), *ws)] == nodata)
            if hit.any():
                keep = np.zeros(src.shape, bool) if keep is None else keep
                keep[(slice(None), *ws)] = hit
    return _warp(
        src, alpha, nodata, grid.transform, item.crs, dst_transform, dst_crs, width, height, dtype, resampling, keep
    )


class _SourceGrid(NamedTuple):
    """The chunks of one item-level under a request and the window they fill on the level's pixel grid."""

    rows: np.ndarray  # index rows (chunks)
    col_off: np.ndarray  # each chunk's first column / row on the grid (origin: the first chunk's corner)
    row_off: np.ndarray
    window: tuple[int, int, int, int]  # [wr0, wr1) x [wc0, wc1) on the grid, clipped to the chunks' union
    res_x: float
    res_y: float
    ox: float  # the grid's origin (the first chunk's top-left corner)
    oy: float
    heights: np.ndarray  # each chunk's size in pixels
    widths: np.ndarray
    lookup: _GridLookup | None = None  # the chunks tile a grid: which chunk holds a pixel, without a test each

    @property
    def transform(self) -> Affine:
        """The transform of the window's top-left pixel (the per-item path's source array)."""
        wr0, _, wc0, _ = self.window
        return Affine(self.res_x, 0, self.ox + wc0 * self.res_x, 0, -self.res_y, self.oy - wr0 * self.res_y)


class _ChunkLayout(NamedTuple):
    """Where some chunks of one item-level lie on the level's pixel grid (origin: the first chunk's corner)."""

    rows: np.ndarray
    col_off: np.ndarray
    row_off: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    res_x: float
    res_y: float
    ox: float
    oy: float
    union: tuple[int, int, int, int]  # the chunks' union on the grid: first column, end column, first row, end row
    lookup: _GridLookup | None


class _GridLookup(NamedTuple):
    """Chunks that tile their union as a grid of columns and rows: chunk ``table[i, j]`` starts at row
    ``row_starts[i]`` and column ``col_starts[j]`` and ends where the next one starts."""

    col_starts: np.ndarray
    row_starts: np.ndarray
    table: np.ndarray  # (rows, columns) -> position in the layout's chunk list


def _grid_lookup(
    col_off: np.ndarray, row_off: np.ndarray, heights: np.ndarray, widths: np.ndarray
) -> _GridLookup | None:
    """``_GridLookup`` of chunks when they tile a grid exactly (no gap, no overlap), else ``None``."""
    col_starts, row_starts = np.unique(col_off), np.unique(row_off)
    if col_starts.size * row_starts.size != col_off.size:
        return None
    j, i = np.searchsorted(col_starts, col_off), np.searchsorted(row_starts, row_off)
    table = np.full((row_starts.size, col_starts.size), -1, np.int64)
    table[i, j] = np.arange(col_off.size)
    col_ends, row_ends = np.append(col_starts[1:], -1), np.append(row_starts[1:], -1)
    last_col, last_row = j == col_starts.size - 1, i == row_starts.size - 1
    fits_x = (col_off + widths == col_ends[j]) | last_col
    fits_y = (row_off + heights == row_ends[i]) | last_row
    if (table < 0).any() or not (fits_x.all() and fits_y.all()):
        return None
    # the last column (row) of chunks must end together, or a pixel past a shorter one would be taken as its
    if np.unique((col_off + widths)[last_col]).size != 1 or np.unique((row_off + heights)[last_row]).size != 1:
        return None
    return _GridLookup(col_starts, row_starts, table)


def _chunk_layout(index: CollectionIndex, rows: np.ndarray, lookup: bool = False) -> _ChunkLayout:
    """Where chunks ``rows`` lie; ``lookup``: also a ``_GridLookup`` (worth it for a layout remembered on the index)."""
    t = index.transform[rows[0]]
    res_x, res_y = float(t[0]), float(-t[4])
    # the level's pixel grid: origin of the first chunk; all chunks of an item-level share it
    ox, oy = float(t[2]), float(t[5])
    col_off = np.rint((index.transform[rows, 2] - ox) / res_x).astype(np.int64)
    row_off = np.rint((oy - index.transform[rows, 5]) / res_y).astype(np.int64)
    heights, widths = index.height[rows], index.width[rows]
    union = (int(col_off.min()), int((col_off + widths).max()), int(row_off.min()), int((row_off + heights).max()))
    grid = _grid_lookup(col_off, row_off, heights, widths) if lookup and rows.size > 1 else None
    return _ChunkLayout(rows, col_off, row_off, heights, widths, res_x, res_y, ox, oy, union, grid)


def _source_grid(index: CollectionIndex, pos: int, level: int, native: BBox, margin: int) -> _SourceGrid | None:
    """Which chunks of one item-level lie under ``native`` (item CRS, plus ``margin`` pixels), and where."""
    rows = index.chunk_rows(pos, level, native)
    if rows.size == 0:
        return None
    start, stop = index.item_row_range(pos, level)
    if rows.size == stop - start:  # all of them (small items under a large request): remembered on the index
        grid = index.remembered(
            ("chunk_layout", pos, level), lambda: _chunk_layout(index, rows, lookup=True), per_item=True
        )
    else:
        grid = _chunk_layout(index, rows)
    res_x, res_y, ox, oy = grid.res_x, grid.res_y, grid.ox, grid.oy
    c_min, c_max, r_min, r_max = grid.union
    # window of the request (plus kernel margin) on that grid, clipped to the chunks' union
    wc0 = max(math.floor((native[0] - ox) / res_x) - margin, c_min)
    wc1 = min(math.ceil((native[2] - ox) / res_x) + margin, c_max)
    wr0 = max(math.floor((oy - native[3]) / res_y) - margin, r_min)
    wr1 = min(math.ceil((oy - native[1]) / res_y) + margin, r_max)
    if wc1 <= wc0 or wr1 <= wr0:
        return None
    return _SourceGrid(
        grid.rows,
        grid.col_off,
        grid.row_off,
        (wr0, wr1, wc0, wc1),
        res_x,
        res_y,
        ox,
        oy,
        grid.heights,
        grid.widths,
        grid.lookup,
    )


def _gather(
    index: CollectionIndex,
    chunks: ChunkReader,
    pos: int,
    grid: _SourceGrid,
    cols: np.ndarray,
    rows: np.ndarray,
    band_names: list[str],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The source pixels at grid (``cols``, ``rows``), read from just the chunks holding them, without pasting
    the chunks into one array: (bands, n), alpha (n,) or ``None``, and the (bands, n) pixels valid although equal
    to nodata (``keep``, as ``_read_item`` builds it) or ``None``, filled like ``_read_item``'s source array."""
    item = index.items[pos]
    nodata = item.nodata
    values = np.full((len(band_names), cols.size), nodata if nodata is not None else 0, item.dtype)
    alpha = None if nodata is not None else np.zeros(cols.size, np.uint8)
    keep: np.ndarray | None = None
    # (every pixel lies in the window, which lies in the chunks' union)
    if grid.rows.size == 1:
        parts: list[tuple[int, np.ndarray]] = [(0, np.arange(cols.size))]
    elif grid.lookup is not None:
        lookup = grid.lookup
        at_col = np.searchsorted(lookup.col_starts, cols, "right") - 1
        at_row = np.searchsorted(lookup.row_starts, rows, "right") - 1
        holder = lookup.table[at_row, at_col]
        parts = [(k, np.flatnonzero(holder == k)) for k in np.flatnonzero(np.bincount(holder)).tolist()]
    else:
        parts = []
        for k, (c0, r0, h, w) in enumerate(zip(grid.col_off, grid.row_off, grid.heights, grid.widths, strict=True)):
            inside = np.flatnonzero((cols >= c0) & (cols < c0 + w) & (rows >= r0) & (rows < r0 + h))
            if inside.size:
                parts.append((k, inside))
    for k, inside in parts:
        flat = (rows[inside] - grid.row_off[k]) * grid.widths[k] + (cols[inside] - grid.col_off[k])
        keep = _read_pixels(index, chunks, int(grid.rows[k]), flat, band_names, nodata, values, alpha, inside, keep)
    return values, alpha, keep


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
    keep: np.ndarray | None = None,
) -> np.ma.MaskedArray:
    """Warp one observation's pixels into the output grid; masked where invalid or outside the source.

    Validity is ``alpha`` (mask items), else the ``nodata`` value per band, except the ``keep`` pixels (valid
    although equal to nodata): slicing and nearest sampling keep their exact value; GDAL's kernels only know
    nodata by value, so there they enter as a neighbouring value (``nodata_replacement``: the next integer, as
    GDAL's overview builder stores them, or 1e-5 relative for floats).
    """
    nb = src.shape[0]
    aligned = _aligned_offset(src_transform, dst_transform) if src_crs == dst_crs else None
    if aligned is not None:
        # same CRS and pixel grid: slicing is exact and much cheaper than a warp
        return _slice_aligned(src, alpha, nodata, aligned, width, height, dtype, keep)
    fill = nodata if nodata is not None else 0
    if resampling == "nearest":
        sampled = _sample_nearest(
            src, alpha, nodata, src_transform, src_crs, dst_transform, dst_crs, width, height, keep
        )
        if sampled is not None:
            return np.ma.MaskedArray(sampled[0].astype(dtype, copy=False), mask=sampled[1])
    if keep is not None:
        assert nodata is not None  # keep is only built for nodata items
        src = np.where(keep, nodata_replacement(nodata, src.dtype), src)
    if alpha is not None:
        stack = np.concatenate([src, alpha[None].astype(src.dtype)])
        dst = np.zeros((nb + 1, height, width), src.dtype)
        reproject(
            stack,
            dst,
            src_transform=src_transform,
            src_crs=src_crs,
            dst_transform=dst_transform,
            dst_crs=dst_crs,
            resampling=Resampling[resampling],
            src_alpha=nb + 1,
            dst_alpha=nb + 1,
            init_dest_nodata=False,
        )
        data, mask = dst[:nb], np.broadcast_to(dst[nb] == 0, (nb, height, width))
    else:
        assert nodata is not None  # chunks without a valid column take their validity from nodata
        dst = np.full((nb, height, width), fill, src.dtype)
        reproject(
            src,
            dst,
            src_transform=src_transform,
            src_crs=src_crs,
            src_nodata=nodata,
            dst_transform=dst_transform,
            dst_crs=dst_crs,
            dst_nodata=nodata,
            resampling=Resampling[resampling],
            # per-band nodata: by default GDAL unifies it across bands, so a kernel would average a band's
            # nodata value into valid pixels wherever another band is valid (dark fringes)
            UNIFIED_SRC_NODATA="NO",
        )
        data = dst
        mask = _invalid(dst, None, nodata)  # kept pixels entered GDAL as a replacement value, not as nodata
    return np.ma.MaskedArray(data.astype(dtype, copy=False), mask=mask.copy())


def _sample_nearest(
    src: np.ndarray,
    alpha: np.ndarray | None,
    nodata: float | None,
    src_transform: Affine,
    src_crs: str,
    dst_transform: Affine,
    dst_crs: str,
    width: int,
    height: int,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``_warp``'s nearest-neighbour result without GDAL (``sampling``): (data, mask), or ``None`` to use GDAL.

    Same output as the GDAL path: outside the source or where it is invalid, data is 0 (alpha sources) or
    ``nodata``, and masked; ``keep`` pixels (valid although equal to nodata) are sampled as extra planes.
    """
    stack = src if alpha is None else np.concatenate([src, alpha[None].astype(src.dtype)])
    fill = 0 if nodata is None else nodata
    marker = 2 if fill == 1 else 1  # a kept pixel's mark in the extra planes: never the fill outside the source
    if keep is not None:
        stack = np.concatenate([stack, np.where(keep, marker, 0).astype(src.dtype)])
    sampled = sample_nearest(stack, src_transform, src_crs, dst_transform, dst_crs, width, height, fill)
    if sampled is None:
        return None
    data, _ = sampled
    nb = src.shape[0]
    if keep is not None:
        assert nodata is not None  # keep is only built for nodata items
        kept = data[nb:] == marker
        data = data[:nb]
        return data, (data == nodata) & ~kept
    if alpha is not None:
        invalid = data[nb] == 0  # outside the source too: alpha was filled with 0 there
        data = data[:nb]
        data[:, invalid] = 0
        return data, np.broadcast_to(invalid, data.shape).copy()
    return data, _invalid(data, None, nodata)


def _aligned_offset(src: Affine, dst: Affine) -> tuple[int, int] | None:
    """Integer (col, row) offset of ``dst``'s origin in ``src``'s grid when both grids coincide."""
    if not (np.isclose(src.a, dst.a, rtol=1e-9, atol=0) and np.isclose(src.e, dst.e, rtol=1e-9, atol=0)):
        return None
    col = (dst.c - src.c) / src.a
    row = (dst.f - src.f) / src.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(col), round(row)


def _slice_aligned(
    src: np.ndarray,
    alpha: np.ndarray | None,
    nodata: float | None,
    offset: tuple[int, int],
    width: int,
    height: int,
    dtype: np.dtype,
    keep: np.ndarray | None = None,
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
        valid[:, r0 - row : r1 - row, c0 - col : c1 - col] = ~_invalid(
            block,
            None if alpha is None else alpha[r0:r1, c0:c1],
            nodata,
            None if keep is None else keep[:, r0:r1, c0:c1],
        )
    return np.ma.MaskedArray(data.astype(dtype, copy=False), mask=~valid)


def _invalid(
    values: np.ndarray, alpha: np.ndarray | None, nodata: float | None, keep: np.ndarray | None = None
) -> np.ndarray:
    """The one validity rule of stored pixels ``values`` (bands, ...): invalid where ``alpha`` is 0 (items with a
    mask; ``alpha`` has the shape of one band), else where the value equals ``nodata`` (NaN-aware) except the
    ``keep`` pixels (valid although equal to nodata: overview averages)."""
    if alpha is not None:
        return np.broadcast_to(alpha == 0, values.shape)
    assert nodata is not None  # chunks without a valid column take their validity from nodata
    invalid = np.isnan(values) if np.isnan(nodata) else values == nodata
    return invalid & ~keep if keep is not None else invalid


def nodata_replacement(nodata: float, dtype: np.dtype) -> np.generic:
    """A value of ``dtype`` next to ``nodata`` that GDAL's warper takes for valid (``np.where`` keeps the type).

    Integers: the next one up (down at the type's maximum), as GDAL's overview builder stores an average equal
    to nodata (``GetReplacementValueIfNoData``). Floats: ``nodata`` moved by 1e-5 of its magnitude (at least
    1e-5), not GDAL's next float, which GDAL's own nodata test (a tolerance of a few float epsilons) still
    takes for nodata.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iub":
        return dtype.type(nodata - 1 if nodata == np.iinfo(dtype).max else nodata + 1)
    step = max(abs(nodata), 1.0) * 1e-5
    return dtype.type(nodata + step if nodata + step <= np.finfo(dtype).max else nodata - step)
