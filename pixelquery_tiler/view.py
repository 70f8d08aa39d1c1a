"""``View``: what one request looks at in a collection, computed once.

A view is the collection's in-memory index taken once (so a refresh mid-request cannot mix snapshots),
optionally pinned to an Iceberg snapshot (time travel), one item, one product, and an acquisition-time
interval. It owns everything derived from those choices alone: the visible items (filtered once, newest
first), their bands, extent, native resolution and zoom range per TileMatrixSet. Reads
(``mosaic.read_window``) then only intersect the visible items with the window they are asked for.

A ``View``'s choices are immutable; derived facts are computed lazily and remembered on the instance. Zoom
ranges are also remembered on the index (``CollectionIndex.remembered``: dropped with it), because WMTS
capabilities and TileJSON ask for every TileMatrixSet on each request.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from morecantile import TileMatrixSet
from rasterio.crs import CRS
from rasterio.rio.overview import get_maximum_overview_level
from rasterio.warp import calculate_default_transform

from .crs import BBox, crs_id, transform_bounds
from .errors import InvalidParameter, ItemNotFound, NoData, OutputTooLarge
from .index import CollectionIndex
from .profiles import ProductProfile, ProfileError, get_profile
from .temporal import parse_interval

if TYPE_CHECKING:
    from .warehouse import Collection

WGS84 = CRS.from_epsg(4326)


@dataclass(frozen=True, eq=False)
class View:
    """One request's view of a collection (see module docstring). Build it with ``View.create``."""

    collection: Collection
    index: CollectionIndex
    snapshot_id: int | None = None
    datetime: str | None = None
    item_id: str | None = None
    product: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    #: metadata of each image read through this view (``ImageData.metadata``: items, levels), appended by the
    #: reader; the route class, handed this view, reports it in ``X-PixelQuery-Levels``
    reads: list[dict] = field(default_factory=list, repr=False)

    @classmethod
    def create(
        cls,
        collection: Collection,
        *,
        index: CollectionIndex | None = None,
        snapshot_id: int | None = None,
        datetime: str | None = None,
        item_id: str | None = None,
        product: str | None = None,
    ) -> View:
        """Validate the choices against ``index`` (default: the collection's current one).

        ``SnapshotNotFound``/``ItemNotFound`` for unknown ids, ``InvalidParameter`` for a bad datetime.
        """
        index = collection.index() if index is None else index
        if snapshot_id is not None:  # SnapshotNotFound; the index then also holds items deleted after it
            index = index.as_of(snapshot_id)
        if item_id is not None and index.item(item_id) is None:
            raise ItemNotFound(f"item {item_id!r} not found in collection {collection.name!r}")
        try:
            start, end = parse_interval(datetime) if datetime else (None, None)
        except (ValueError, OverflowError) as exc:
            raise InvalidParameter(f"invalid datetime {datetime!r}: {exc}") from None
        return cls(collection, index, snapshot_id, datetime, item_id, product, start, end)

    # -- identity ---------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """``collection`` or ``collection_item``: titiler's layer/source name."""
        return f"{self.collection.name}_{self.item_id}" if self.item_id else self.collection.name

    @property
    def pinned(self) -> bool:
        """Whether the view can never change (an item, or an explicit snapshot)."""
        return self.item_id is not None or self.snapshot_id is not None

    @cached_property
    def snapshot(self) -> int | None:
        """The snapshot this view answers from: the item's own, ``snapshot_id``, or the table head."""
        if self.item_id is not None:
            snap = self.index.item(self.item_id).snapshot  # type: ignore[union-attr]  # create() checked it exists
            return snap.snapshot_id if snap else None
        return self.snapshot_id if self.snapshot_id is not None else self.index.snapshot_id

    @property
    def key(self) -> tuple:
        """Hashable identity of the view's choices (for caches keyed per index)."""
        return (self.snapshot_id, self.datetime, self.item_id, self.product)

    # -- visible items ----------------------------------------------------------------------------------------
    @cached_property
    def positions(self) -> np.ndarray:
        """Index positions of the visible items, newest acquisition first (the one item filter)."""
        return self.index.select_items(None, self.start, self.end, self.snapshot_id, self.item_id, self.product)

    def require_items(self) -> np.ndarray:
        """``positions``, or ``NoData`` for an empty view (no item matches: a 404, not a bad request)."""
        if self.positions.size == 0:
            raise NoData(f"no observation in collection {self.collection.name!r} matches the request")
        return self.positions

    def intersecting(self, wgs84: BBox) -> np.ndarray:
        """Visible items whose WGS84 bbox intersects ``wgs84``, in view order."""
        pos = self.positions
        if pos.size == 0:
            return pos
        w, s, e, n = wgs84
        b = self.index.item_bbox[pos]
        return pos[(b[:, 0] <= e) & (b[:, 2] >= w) & (b[:, 1] <= n) & (b[:, 3] >= s)]

    @cached_property
    def available_bands(self) -> list[str]:
        """Every band of the visible items, in order of first appearance (newest item first)."""
        seen: dict[str, None] = {}
        for pos in self.positions:
            for band in self.index.items[pos].bands:
                seen.setdefault(band, None)
        return list(seen)

    def resolve_bands(self, names: list[str] | None) -> list[str]:
        """Requested band names as stored (case-insensitive), default: the newest visible item's bands."""
        positions = self.require_items()
        if not names:  # every band of the newest item, over all its band groups
            newest = self.index.items[positions[0]]
            return list(newest.scene_bands or newest.bands)
        lower = {b.lower(): b for b in self.available_bands}
        missing = [b for b in names if b.lower() not in lower]
        if missing:
            raise InvalidParameter(f"unknown band(s) {missing}; available: {self.available_bands}")
        return [lower[b.lower()] for b in names]

    @cached_property
    def dtype(self) -> str:
        """One dtype that holds every visible item's bands (numpy's promotion), for mosaics of mixed items."""
        return str(np.result_type(*{np.dtype(self.index.items[p].dtype) for p in self.require_items()}))

    def product_profile(self, item_id: str) -> ProductProfile | None:
        """The product profile of one of the view's items (scale/offset, rendering), ``None`` if unknown."""
        item = self.index.item(item_id)
        try:
            return get_profile(item.product) if item is not None else None
        except ProfileError:
            return None

    def contents(self) -> dict:
        """What the view holds, as ``info`` reports it: snapshot, items, datetimes, products, finest resolution."""
        items = [self.index.items[p] for p in self.require_items()]
        out = {
            "snapshot_id": self.snapshot,
            "items": len({it.item_id for it in items}),  # a multi-resolution scene has one entry per band group
            "datetimes": sorted({it.datetime.isoformat() for it in items}),
            "products": sorted({it.product for it in items}),
            "resolution": min(it.resolutions[0] for it in items),
        }
        return out | ({"nodata_value": items[0].nodata} if items[0].nodata is not None else {})

    def acquisition_dates(self) -> list[str]:
        """Distinct UTC acquisition dates (``YYYY-MM-DD``) of the visible items, oldest first."""
        items = self.index.items
        return sorted({items[p].datetime.astimezone(dt.UTC).strftime("%Y-%m-%d") for p in self.positions})

    # -- extent and resolution --------------------------------------------------------------------------------
    @cached_property
    def extents(self) -> list[tuple[str, BBox, float]]:
        """Per visible item: (CRS, level-0 bounds in that CRS, level-0 resolution)."""
        out = []
        ix = self.index
        for pos in self.require_items():
            item = ix.items[pos]
            start, stop = ix.item_row_range(int(pos), item.levels[0])
            sl = slice(start, stop)
            bounds = (
                float(ix.minx[sl].min()),
                float(ix.miny[sl].min()),
                float(ix.maxx[sl].max()),
                float(ix.maxy[sl].max()),
            )
            out.append((item.crs, bounds, item.resolutions[0]))
        return out

    @cached_property
    def crs(self) -> CRS:
        """The items' CRS when they share one, else WGS84 (the union is then expressed in lon/lat)."""
        crs_ids = {c for c, _, _ in self.extents}
        return CRS.from_user_input(crs_ids.pop()) if len(crs_ids) == 1 else WGS84

    @cached_property
    def bounds(self) -> BBox:
        """Union of the visible items' extents in ``crs``."""
        extents = self.extents
        if self.crs == WGS84 and any(CRS.from_user_input(c) != WGS84 for c, _, _ in extents):
            boxes = self.index.item_bbox[self.positions]
        else:
            boxes = np.array([b for _, b, _ in extents])
        return (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))

    @cached_property
    def _resolutions(self) -> dict[str, float]:
        return {}

    def resolution_in(self, dst_crs: CRS) -> float:
        """Finest native resolution of the visible items, expressed in ``dst_crs`` units."""
        key = dst_crs.to_wkt()
        cache = self._resolutions
        if key not in cache:
            cache[key] = min(_resolution_in(c, b, r, dst_crs) for c, b, r in set(self.extents))
        return cache[key]

    def output_size(
        self, bbox: BBox, dst_crs: CRS, width: int | None, height: int | None, max_size: int | None
    ) -> tuple[int, int]:
        """Output size of a read of ``bbox`` (in ``dst_crs``): as asked, else the finest native resolution,
        shrunk to ``max_size`` on the long side (rio-tiler's rules)."""
        span_x, span_y = bbox[2] - bbox[0], bbox[3] - bbox[1]
        if width and height:
            return int(width), int(height)
        if width:
            return int(width), max(1, round(width * span_y / span_x))
        if height:
            return max(1, round(height * span_x / span_y)), int(height)
        res = self.resolution_in(dst_crs)
        cols, rows = span_x / res - 1e-6, span_y / res - 1e-6
        if not (math.isfinite(cols) and math.isfinite(rows)) or max(cols, rows) > 2**40:
            raise OutputTooLarge(f"bbox {bbox} spans too many native pixels; ask for a width/height or max_size")
        out_w, out_h = max(1, math.ceil(cols)), max(1, math.ceil(rows))
        if max_size and max(out_w, out_h) > max_size:
            ratio = max_size / max(out_w, out_h)
            out_w, out_h = max(1, round(out_w * ratio)), max(1, round(out_h * ratio))
        return out_w, out_h

    def zoom_range(self, tms: TileMatrixSet) -> tuple[int, int]:
        """(minzoom, maxzoom) of the view in ``tms``, remembered on the index."""
        return self.index.remembered(("zoom_range", self.key, tms.id), lambda: self._compute_zoom_range(tms))

    def _compute_zoom_range(self, tms: TileMatrixSet) -> tuple[int, int]:
        tms_crs = tms.rasterio_crs
        res = self.resolution_in(tms_crs)
        maxzoom = tms.zoom_for_res(res)
        # minzoom: rio-tiler's rule for COGs, the zoom at which the whole view fits in about one tile
        minx, miny, maxx, maxy = transform_bounds(crs_id(self.crs), crs_id(tms_crs), self.bounds)
        width, height = max(1, round((maxx - minx) / res)), max(1, round((maxy - miny) / res))
        level = get_maximum_overview_level(width, height, minsize=tms.matrix(tms.minzoom).tileWidth)
        minzoom = max(tms.minzoom, min(tms.zoom_for_res(res * 2**level), maxzoom))
        return minzoom, maxzoom


def _resolution_in(crs: str, bounds: BBox, res: float, dst_crs: CRS) -> float:
    """Resolution of a ``res``-pixel grid over ``bounds`` (in ``crs``) once warped to ``dst_crs`` (GDAL's rule).

    GDAL's suggested output resolution is the warped diagonal over the diagonal pixel count, so a coarse
    grid over the same bounds gives the same answer, scaled; that is ~20x cheaper than the full grid.
    """
    src = CRS.from_user_input(crs)
    if src == dst_crs:
        return res
    minx, miny, maxx, maxy = bounds
    width, height = max(1.0, (maxx - minx) / res), max(1.0, (maxy - miny) / res)
    shrink = max(1.0, max(width, height) / 32)
    small_w, small_h = max(1, round(width / shrink)), max(1, round(height / shrink))
    transform, _, _ = calculate_default_transform(src, dst_crs, small_w, small_h, minx, miny, maxx, maxy)
    return min(abs(transform.a), abs(transform.e)) * math.hypot(small_w, small_h) / math.hypot(width, height)
