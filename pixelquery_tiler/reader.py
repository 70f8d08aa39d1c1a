"""``PixelQueryReader``: a rio-tiler reader over one warehouse collection.

rio-tiler readers wrap one file; this one wraps a collection *view*: the collection's in-memory index taken
once when the reader is created (so one request sees one consistent snapshot), optionally pinned to an
Iceberg snapshot (time travel), filtered by acquisition datetime, product or item, and mosaicked with a
pixel-selection method. Every read goes through ``mosaic.read_window``, which warps each observation once
from its own chunks into the requested grid, so the same code serves tiles, parts, previews and points.

Band names are STAC common names (``red``, ``nir``...), so titiler's ``expression`` accepts
``(nir-red)/(nir+red)``; rio-tiler's positional ``b1``, ``b2``... still work and index the reader's band list.
"""

from __future__ import annotations

import ast
import contextvars
import logging
import math
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import attr
import numpy as np
from morecantile import Tile, TileMatrixSet
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import bounds as feature_bounds
from rasterio.features import rasterize
from rasterio.rio.overview import get_maximum_overview_level
from rasterio.warp import calculate_default_transform, transform_geom
from rio_tiler.constants import WEB_MERCATOR_TMS, WGS84_CRS
from rio_tiler.errors import (
    InvalidBufferSize,
    InvalidExpression,
    PointOutsideBounds,
    RioTilerError,
    TileOutsideBounds,
)
from rio_tiler.expression import get_expression_blocks, validate_expression
from rio_tiler.io.base import BaseReader
from rio_tiler.models import BandStatistics, ImageData, Info, PointData
from rio_tiler.types import BBox, Indexes
from rio_tiler.utils import CRS_to_uri, _validate_shape_input

from .errors import InvalidParameter, ItemNotFound, OutputTooLarge, TileOutsideTMS
from .index import CollectionIndex
from .mosaic import NoData, WindowRead, read_window, transform_bounds
from .mosaic import _crs_key
from .profiles import ProfileError, get_profile
from .temporal import parse_interval
from .warehouse import Collection, Warehouse

log = logging.getLogger(__name__)

#: Output pixel budget of one read (4096 x 4096): bounds memory and CPU per request. Larger part/preview/
#: feature/tile requests get a 400 telling the client to pass a smaller size or ``max_size``.
MAX_OUTPUT_PIXELS = 4096 * 4096

#: pixel-selection methods offered to clients (rio-tiler's, minus the last-band ones that need a QA band)
PIXEL_SELECTION = ("first", "highest", "lowest", "mean", "median", "stdev", "count")

#: resampling kernels ``rasterio.warp.reproject`` accepts (GDAL warp); ``gauss`` is read-only in GDAL
RESAMPLING = (
    "nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode",
    "max", "min", "med", "q1", "q3", "sum", "rms",
)

#: Observer for what each read touched (items, levels). The HTTP layer sets a list here per request so it
#: can report ``X-PixelQuery-Levels`` without the reader knowing about HTTP; ``None`` disables recording.
READ_LOG: contextvars.ContextVar[list[WindowRead] | None] = contextvars.ContextVar("pixelquery_read_log", default=None)

_POSITIONAL_BAND = re.compile(r"^b(\d+)$")
_ZOOM_CACHE: OrderedDict[tuple, tuple[int, int]] = OrderedDict()
_ZOOM_LOCK = threading.Lock()


@dataclass(frozen=True)
class CollectionRef:
    """Reader input naming what a URL path resolved to: a collection, optionally one item of it.

    ``index`` pins the collection index the request started with (the HTTP layer computes the ETag from it),
    so the response body and its ETag describe the same snapshot.
    """

    collection: Collection
    item_id: str | None = None
    index: CollectionIndex | None = None

    @property
    def name(self) -> str:
        return f"{self.collection.name}_{self.item_id}" if self.item_id else self.collection.name


def resolve_source(
    warehouse: Warehouse, collection_id: str, item_id: str | None = None, index: CollectionIndex | None = None
) -> CollectionRef:
    """What a ``/collections/{cid}[/items/{iid}]`` path names; ``CollectionNotFound`` for unknown ids.

    Ids are looked up in the catalog, never used as file paths, so ``..`` and friends only ever 404.
    """
    return CollectionRef(warehouse.collection(collection_id), item_id, index)


def _split_bands(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    names = [b.strip() for b in value.split(",")] if isinstance(value, str) else [str(b).strip() for b in value]
    names = [b for b in names if b]
    if not names:
        raise InvalidParameter("bands must name at least one band")
    return names


@attr.s
class PixelQueryReader(BaseReader):
    """rio-tiler reader over a warehouse collection (``input``: a ``Collection`` or a ``CollectionRef``).

    Attributes:
        snapshot_id: read the collection as of this Iceberg snapshot (time travel).
        datetime: RFC 3339 instant, date or interval; only observations acquired inside it.
        item_id: only this item's (snapshot's) observation.
        product: only observations of this product profile.
        pixel_selection: how overlapping observations combine (``first`` = newest first).
        bands: the reader's band list by common name (default: the newest observation's bands).
        max_pixels: output pixel budget per read.
        index: use this index instead of the collection's current one (tests, benchmarks).
    """

    input: Collection | CollectionRef = attr.ib()
    tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS)
    snapshot_id: int | None = attr.ib(default=None)
    datetime: str | None = attr.ib(default=None)
    item_id: str | None = attr.ib(default=None)
    product: str | None = attr.ib(default=None)
    pixel_selection: str = attr.ib(default="first")
    bands: str | Sequence[str] | None = attr.ib(default=None)
    max_pixels: int = attr.ib(default=MAX_OUTPUT_PIXELS)
    index: CollectionIndex | None = attr.ib(default=None)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.input, CollectionRef):
            self.collection = self.input.collection
            self.item_id = self.input.item_id or self.item_id
            self.index = self.index or self.input.index
        else:
            self.collection = self.input
        # one index for the whole request: a refresh mid-request must not mix snapshots
        if self.index is None:
            self.index = self.collection.index()
        if self.snapshot_id is not None:  # SnapshotNotFound -> 404; includes items deleted after the snapshot
            self.index = self.index.as_of(self.snapshot_id)
        if self.item_id is not None and self.index.item(self.item_id) is None:
            raise ItemNotFound(f"item {self.item_id!r} not found in collection {self.collection.name!r}")
        try:
            self._start, self._end = parse_interval(self.datetime) if self.datetime else (None, None)
        except ValueError as exc:
            raise InvalidParameter(f"invalid datetime {self.datetime!r}: {exc}") from None
        if self.pixel_selection not in PIXEL_SELECTION:
            raise InvalidParameter(f"pixel_selection must be one of {', '.join(PIXEL_SELECTION)}")
        self.bands = _split_bands(self.bands)
        self._positions = self.index.select_items(None, self._start, self._end, self.snapshot_id, self.item_id, self.product)
        self.colormap: dict = {}

    # -- what the view holds ---------------------------------------------------------------------------------
    @property
    def positions(self) -> np.ndarray:
        """Index positions of the visible items, newest acquisition first."""
        return self._positions

    def _require_items(self) -> np.ndarray:
        if self._positions.size == 0:
            raise NoData(f"no observation in collection {self.collection.name!r} matches the request")
        return self._positions

    @cached_property
    def available_bands(self) -> list[str]:
        """Every band of the visible items, in order of first appearance (newest item first)."""
        seen: dict[str, None] = {}
        for pos in self._positions:
            for band in self.index.items[pos].bands:
                seen.setdefault(band, None)
        return list(seen)

    @cached_property
    def band_names(self) -> list[str]:
        """The reader's band list: ``bands`` if given, else the newest visible observation's bands."""
        if self.bands:
            available = self.available_bands
            lower = {b.lower(): b for b in available}
            missing = [b for b in self.bands if b.lower() not in lower]
            if missing:
                raise InvalidParameter(f"unknown band(s) {missing}; available: {available}")
            return [lower[b.lower()] for b in self.bands]
        return list(self.index.items[self._require_items()[0]].bands)

    @cached_property
    def _native_extents(self) -> list[tuple[str, tuple[float, float, float, float], float]]:
        """Per visible item: (CRS, level-0 bounds in that CRS, level-0 resolution)."""
        out = []
        for pos in self._require_items():
            item = self.index.items[pos]
            start, stop = self.index.item_row_range(int(pos), item.levels[0])
            sl = slice(start, stop)
            bounds = (
                float(self.index.minx[sl].min()), float(self.index.miny[sl].min()),
                float(self.index.maxx[sl].max()), float(self.index.maxy[sl].max()),
            )
            out.append((item.crs, bounds, item.resolutions[0]))
        return out

    @cached_property
    def crs(self) -> CRS:  # type: ignore[override]
        """The items' CRS when they share one, else WGS84 (the union is then expressed in lon/lat)."""
        crs_ids = {c for c, _, _ in self._native_extents}
        return CRS.from_user_input(crs_ids.pop()) if len(crs_ids) == 1 else WGS84_CRS

    @cached_property
    def bounds(self) -> BBox:  # type: ignore[override]
        """Union of the visible items' extents in ``crs``."""
        extents = self._native_extents
        if self.crs == WGS84_CRS and any(CRS.from_user_input(c) != WGS84_CRS for c, _, _ in extents):
            boxes = self.index.item_bbox[self._positions]
        else:
            boxes = np.array([b for _, b, _ in extents])
        return (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))

    def _resolution_in(self, dst_crs: CRS) -> float:
        """Finest native resolution of the visible items, expressed in ``dst_crs`` units."""
        key = dst_crs.to_wkt()
        cache = self.__dict__.setdefault("_res_cache", {})
        if key not in cache:
            cache[key] = min(_resolution_in(c, b, r, dst_crs) for c, b, r in set(self._native_extents))
        return cache[key]

    def _zoom_range(self) -> tuple[int, int]:
        """(minzoom, maxzoom) for ``tms``, cached per view: WMTS/TileJSON ask for every TMS on each request."""
        key = (
            self.collection.name, self.index.snapshot_id, len(self.index), self.snapshot_id, self.datetime,
            self.item_id, self.product, self.tms.id,
        )
        with _ZOOM_LOCK:
            if key in _ZOOM_CACHE:
                _ZOOM_CACHE.move_to_end(key)
                return _ZOOM_CACHE[key]
        tms_crs = self.tms.rasterio_crs
        res = self._resolution_in(tms_crs)
        maxzoom = self.tms.zoom_for_res(res)
        # minzoom: rio-tiler's rule for COGs, the zoom at which the whole view fits in about one tile
        minx, miny, maxx, maxy = transform_bounds(_crs_key(self.crs), _crs_key(tms_crs), self.bounds)
        width, height = max(1, round((maxx - minx) / res)), max(1, round((maxy - miny) / res))
        level = get_maximum_overview_level(width, height, minsize=self.tms.matrix(self.tms.minzoom).tileWidth)
        minzoom = max(self.tms.minzoom, min(self.tms.zoom_for_res(res * 2**level), maxzoom))
        with _ZOOM_LOCK:
            _ZOOM_CACHE[key] = (minzoom, maxzoom)
            while len(_ZOOM_CACHE) > 4096:
                _ZOOM_CACHE.popitem(last=False)
        return minzoom, maxzoom

    @property
    def minzoom(self) -> int:  # type: ignore[override]
        return self._zoom_range()[0]

    @property
    def maxzoom(self) -> int:  # type: ignore[override]
        """TMS zoom whose resolution matches the finest visible observation."""
        return self._zoom_range()[1]

    @cached_property
    def dtype(self) -> str:
        return str(np.result_type(*{np.dtype(self.index.items[p].dtype) for p in self._require_items()}))

    # -- rio-tiler API ------------------------------------------------------------------------------------------
    def info(self) -> Info:
        """Extent, bands and dtype of the view, plus what it contains (items, dates, levels)."""
        positions = self._require_items()
        items = [self.index.items[p] for p in positions]
        nodata = items[0].nodata
        names = self.band_names
        meta: dict[str, Any] = {
            "bounds": self.bounds,
            "crs": CRS_to_uri(self.crs) or self.crs.to_wkt(),
            "band_metadata": [(f"b{i}", {"common_name": b}) for i, b in enumerate(names, 1)],
            "band_descriptions": [(f"b{i}", b) for i, b in enumerate(names, 1)],
            "dtype": self.dtype,
            "nodata_type": "Nodata" if nodata is not None else "Mask",
            "count": len(names),
            "minzoom": self.minzoom,
            "maxzoom": self.maxzoom,
            "snapshot_id": self._view_snapshot_id(),
            "items": len(items),
            "datetimes": sorted({it.datetime.isoformat() for it in items}),
            "products": sorted({it.product for it in items}),
            "resolution": min(it.resolutions[0] for it in items),
        }
        if nodata is not None:
            meta["nodata_value"] = nodata
        return Info.model_validate(meta)

    def _view_snapshot_id(self) -> int | None:
        """The snapshot this view is pinned to: the item's own, ``snapshot_id``, or the table head."""
        if self.item_id is not None:
            snap = self.index.item(self.item_id).snapshot
            return snap.snapshot_id if snap else None
        return self.snapshot_id if self.snapshot_id is not None else self.index.snapshot_id

    def statistics(
        self,
        categorical: bool = False,
        categories: list[float] | None = None,
        percentiles: list[int] | None = None,
        hist_options: dict | None = None,
        max_size: int = 1024,
        indexes: Indexes | None = None,
        expression: str | None = None,
        **kwargs: Any,
    ) -> dict[str, BandStatistics]:
        """Statistics of a preview (at most ``max_size`` pixels on the long side), like rio-tiler's Reader."""
        image = self.preview(indexes=indexes, expression=expression, max_size=max_size, **kwargs)
        return image.statistics(categorical=categorical, categories=categories, percentiles=percentiles, hist_options=hist_options)

    def tile(
        self,
        tile_x: int,
        tile_y: int,
        tile_z: int,
        tilesize: int | None = None,
        indexes: Indexes | None = None,
        expression: str | None = None,
        buffer: float | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """One tile of ``tms``; ``TileOutsideTMS`` for indices the TMS lacks, ``TileOutsideBounds`` without data."""
        self._check_tile(tile_x, tile_y, tile_z)
        matrix = self.tms.matrix(tile_z)
        bbox = tuple(self.tms.xy_bounds(Tile(x=tile_x, y=tile_y, z=tile_z)))
        width, height = tilesize or matrix.tileWidth, tilesize or matrix.tileHeight
        try:
            return self._read(bbox, self.tms.rasterio_crs, width, height, indexes, expression, buffer=buffer, **kwargs)
        except NoData:
            raise TileOutsideBounds(f"Tile(x={tile_x}, y={tile_y}, z={tile_z}) has no data in this view") from None

    def part(
        self,
        bbox: BBox,
        dst_crs: CRS | None = None,
        bounds_crs: CRS = WGS84_CRS,
        indexes: Indexes | None = None,
        expression: str | None = None,
        max_size: int | None = None,
        height: int | None = None,
        width: int | None = None,
        buffer: float | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """A bbox (in ``bounds_crs``) read into ``dst_crs``; size from width/height, else native, capped by max_size."""
        dst_crs = dst_crs or bounds_crs
        if not (bbox[0] < bbox[2] and bbox[1] < bbox[3]) or not all(map(math.isfinite, bbox)):
            raise InvalidParameter(f"invalid bbox {tuple(bbox)}: need minx < maxx and miny < maxy")
        if bounds_crs != dst_crs:
            bbox = transform_bounds(_crs_key(bounds_crs), _crs_key(dst_crs), tuple(bbox))
        out_w, out_h = self._output_size(tuple(bbox), dst_crs, width, height, max_size)
        return self._read(tuple(bbox), dst_crs, out_w, out_h, indexes, expression, buffer=buffer, **kwargs)

    def preview(
        self,
        indexes: Indexes | None = None,
        expression: str | None = None,
        max_size: int | None = 1024,
        height: int | None = None,
        width: int | None = None,
        dst_crs: CRS | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """The whole view, at most ``max_size`` pixels on its long side (native CRS unless ``dst_crs``)."""
        return self.part(
            self.bounds, dst_crs=dst_crs or self.crs, bounds_crs=self.crs, indexes=indexes, expression=expression,
            max_size=max_size, height=height, width=width, **kwargs,
        )

    def point(
        self,
        lon: float,
        lat: float,
        coord_crs: CRS = WGS84_CRS,
        indexes: Indexes | None = None,
        expression: str | None = None,
        **kwargs: Any,
    ) -> PointData:
        """Values at a point: the native pixel containing it, mosaicked like tiles are."""
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise InvalidParameter("point coordinates must be finite numbers")
        # a 1x1 window centred on the point: nearest resampling then returns the native pixel containing it
        half = 1e-7 if coord_crs.is_geographic else 1e-3
        window = (lon - half, lat - half, lon + half, lat + half)
        kwargs.pop("resampling_method", None)
        kwargs.pop("reproject_method", None)
        try:
            img = self._read(window, coord_crs, 1, 1, indexes, expression, **kwargs)
        except NoData:
            raise PointOutsideBounds(f"point ({lon}, {lat}) has no data in this view") from None
        values = np.ma.MaskedArray(img.array.data[:, 0, 0], mask=np.ma.getmaskarray(img.array)[:, 0, 0])
        return PointData(
            values, band_names=img.band_names, band_descriptions=img.band_descriptions, coordinates=(lon, lat),
            crs=coord_crs, assets=img.assets, metadata=img.metadata,
        )

    def feature(
        self,
        shape: dict,
        dst_crs: CRS | None = None,
        shape_crs: CRS = WGS84_CRS,
        indexes: Indexes | None = None,
        expression: str | None = None,
        max_size: int | None = None,
        height: int | None = None,
        width: int | None = None,
        buffer: float | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """The feature's bbox read like ``part``, pixels outside the geometry masked (rio-tiler semantics)."""
        try:
            shape = _validate_shape_input(shape)
        except RioTilerError as exc:
            raise InvalidParameter(str(exc)) from None
        dst_crs = dst_crs or shape_crs
        img = self.part(
            feature_bounds(shape), dst_crs=dst_crs, bounds_crs=shape_crs, indexes=indexes, expression=expression,
            max_size=max_size, height=height, width=width, buffer=buffer, **kwargs,
        )
        if dst_crs != shape_crs:
            shape = transform_geom(shape_crs, dst_crs, shape)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
            outside = rasterize(
                [shape], out_shape=(img.height, img.width), transform=img.transform, all_touched=True,
                default_value=0, fill=1, dtype="uint8",
            ).astype(bool)
        img.cutline_mask = outside
        img.array.mask = np.where(~outside, img.array.mask, True)
        return img

    # -- internals ----------------------------------------------------------------------------------------------
    def _check_tile(self, x: int, y: int, z: int) -> None:
        if not self.tms.minzoom <= z <= self.tms.maxzoom:
            raise TileOutsideTMS(f"zoom {z} is outside {self.tms.id} ({self.tms.minzoom}-{self.tms.maxzoom})")
        matrix = self.tms.matrix(z)
        if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
            raise TileOutsideTMS(
                f"tile {z}/{x}/{y} is outside {self.tms.id} (x < {matrix.matrixWidth}, y < {matrix.matrixHeight})"
            )

    def _output_size(
        self, bbox: tuple[float, float, float, float], dst_crs: CRS, width: int | None, height: int | None, max_size: int | None
    ) -> tuple[int, int]:
        """Output size: as asked, else the finest native resolution, shrunk to ``max_size`` (rio-tiler rules)."""
        span_x, span_y = bbox[2] - bbox[0], bbox[3] - bbox[1]
        if width and height:
            return int(width), int(height)
        if width or height:
            if width:
                return int(width), max(1, round(width * span_y / span_x))
            return max(1, round(height * span_x / span_y)), int(height)
        res = self._resolution_in(dst_crs)
        out_w, out_h = max(1, math.ceil(span_x / res - 1e-6)), max(1, math.ceil(span_y / res - 1e-6))
        if max_size and max(out_w, out_h) > max_size:
            ratio = max_size / max(out_w, out_h)
            out_w, out_h = max(1, round(out_w * ratio)), max(1, round(out_h * ratio))
        return out_w, out_h

    def _resolve_bands(self, indexes: Indexes | None, expression: str | None) -> tuple[list[str], str | None]:
        """Band names to read and the expression rewritten onto them (``b1`` -> the reader's first band)."""
        if expression:
            return _expression_bands(expression, self.band_names, self.available_bands)
        if indexes is not None:
            idx = [indexes] if isinstance(indexes, int) else list(indexes)
            names = self.band_names
            bad = [i for i in idx if not 1 <= i <= len(names)]
            if bad:
                raise InvalidParameter(f"bidx {bad} out of range: this view has {len(names)} band(s) {names}")
            return [names[i - 1] for i in idx], None
        return self.band_names, None

    def _read(
        self,
        bbox: tuple[float, float, float, float],
        crs: CRS,
        width: int,
        height: int,
        indexes: Indexes | None,
        expression: str | None,
        buffer: float | None = None,
        nodata: float | None = None,
        unscale: bool | None = None,
        resampling_method: str | None = None,
        reproject_method: str | None = None,
        **_: Any,  # titiler's padding, align_bounds_with_dataset...: not needed by a single-warp reader
    ) -> ImageData:
        if buffer:
            if buffer % 0.5:
                raise InvalidBufferSize("buffer must be a multiple of 0.5")
            dx, dy = (bbox[2] - bbox[0]) / width * buffer, (bbox[3] - bbox[1]) / height * buffer
            bbox = (bbox[0] - dx, bbox[1] - dy, bbox[2] + dx, bbox[3] + dy)
            width, height = int(width + 2 * buffer), int(height + 2 * buffer)
        if width < 1 or height < 1 or width * height > self.max_pixels:
            raise OutputTooLarge(
                f"output of {width}x{height} pixels exceeds the limit of {self.max_pixels} pixels; "
                "ask for a smaller width/height/max_size or tilesize"
            )
        resampling = reproject_method or resampling_method or "nearest"
        if resampling not in RESAMPLING:
            raise InvalidParameter(f"resampling {resampling!r} is not supported; use one of {', '.join(RESAMPLING)}")
        bands, expression = self._resolve_bands(indexes, expression)
        self._require_items()
        window = read_window(
            self.index, self.collection.warehouse.chunk_reader, bbox, crs, width, height,
            bands=bands, start=self._start, end=self._end, snapshot_id=self.snapshot_id, item_id=self.item_id,
            product=self.product, resampling=resampling, pixel_selection=self.pixel_selection,
        )
        if (recorder := READ_LOG.get()) is not None:
            recorder.append(window)
        data = window.data
        if nodata is not None:
            hit = np.isnan(data.data) if np.isnan(nodata) else data.data == nodata
            data = np.ma.MaskedArray(data.data, mask=np.ma.getmaskarray(data) | hit)
        if unscale:
            data = self._unscale(data, window)
        img = ImageData(
            data, bounds=bbox, crs=crs, band_names=list(window.band_names), band_descriptions=list(window.band_names),
            assets=list(window.items),
            metadata={"levels": dict(window.levels), "datetimes": [d.isoformat() for d in window.datetimes]},
        )
        return self._apply_expression(img, expression) if expression else img

    def _unscale(self, data: np.ma.MaskedArray, window: WindowRead) -> np.ma.MaskedArray:
        """Apply the newest contributing item's product scale/offset (profiles hold them per product)."""
        try:
            profile = get_profile(self.index.item(window.items[0]).product)
        except (ProfileError, AttributeError):
            return data
        if profile.scale is None and profile.offset is None:
            return data
        out = data.astype("float32") * (profile.scale if profile.scale is not None else 1.0)
        return out + (profile.offset or 0.0)

    @staticmethod
    def _apply_expression(img: ImageData, expression: str) -> ImageData:
        # rio-tiler lower-cases expressions; present the band names the same way
        img.band_names = [b.lower() for b in img.band_names]
        return img.apply_expression(expression)


def _resolution_in(crs_id: str, bounds: tuple[float, float, float, float], res: float, dst_crs: CRS) -> float:
    """Resolution of a ``res``-pixel grid over ``bounds`` (in ``crs_id``) once warped to ``dst_crs`` (GDAL's rule).

    GDAL's suggested output resolution is the warped diagonal over the diagonal pixel count, so a coarse
    grid over the same bounds gives the same answer, scaled; that is ~20x cheaper than the full grid.
    """
    src = CRS.from_user_input(crs_id)
    if src == dst_crs:
        return res
    minx, miny, maxx, maxy = bounds
    width, height = max(1.0, (maxx - minx) / res), max(1.0, (maxy - miny) / res)
    shrink = max(1.0, max(width, height) / 32)
    small_w, small_h = max(1, round(width / shrink)), max(1, round(height / shrink))
    transform, _, _ = calculate_default_transform(src, dst_crs, small_w, small_h, minx, miny, maxx, maxy)
    return min(abs(transform.a), abs(transform.e)) * math.hypot(small_w, small_h) / math.hypot(width, height)


def _expression_bands(expression: str, band_names: Sequence[str], available: Sequence[str]) -> tuple[list[str], str]:
    """Bands an expression uses, and the expression with positional ``bN`` replaced by names.

    Names are matched case-insensitively (rio-tiler lower-cases expressions before evaluating them).
    """
    validate_expression(expression)
    by_lower = {b.lower(): b for b in available}
    used: dict[str, None] = {}

    def resolve(name: str) -> str:
        key = name.lower()
        if key in by_lower:
            return by_lower[key]
        if m := _POSITIONAL_BAND.match(key):
            i = int(m.group(1))
            if 1 <= i <= len(band_names):
                return band_names[i - 1]
        raise InvalidExpression(f"unknown band {name!r} in expression; available: {list(available)}")

    blocks = []
    for block in get_expression_blocks(expression):
        tree = ast.parse(block, mode="eval")
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in calls:
                node.id = resolve(node.id).lower()
                used.setdefault(by_lower.get(node.id, node.id), None)
        blocks.append(ast.unparse(tree))
    if not used:
        raise InvalidExpression(f"expression {expression!r} uses no band")
    return list(used), ";".join(blocks)
