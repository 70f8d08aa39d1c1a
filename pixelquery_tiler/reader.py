"""``PixelQueryReader``: rio-tiler's ``BaseReader`` interface over a ``View`` of a warehouse collection.

A thin adapter in the style of rio-tiler's ``io/rasterio.py``: each method validates its inputs, turns the
request into an output window and reads it with ``mosaic.read_window``. The concepts live in their own
modules: what the view contains (items, bands, extent, zoom range, native output size) in ``view``, output
windows (tile bounds, bbox checks, buffers) in ``window``, request limits in ``limits``, band lists and band
math in ``bands``. What was read (items, levels, datetimes) comes back in ``ImageData.metadata``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import attr
import numpy as np
from morecantile import TileMatrixSet
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import bounds as feature_bounds
from rasterio.features import rasterize
from rasterio.warp import transform_geom
from rio_tiler.constants import WEB_MERCATOR_TMS, WGS84_CRS
from rio_tiler.errors import PointOutsideBounds, TileOutsideBounds
from rio_tiler.io.base import BaseReader
from rio_tiler.models import BandStatistics, ImageData, Info, PointData
from rio_tiler.types import BBox, Indexes
from rio_tiler.utils import CRS_to_uri

from .bands import apply_expression, select_bands, split_bands
from .errors import InvalidParameter, NoData
from .index import CollectionIndex
from .limits import MAX_GEOMETRY_VERTICES, MAX_OUTPUT_PIXELS, check_output_size, feature_geometry
from .mosaic import read_window
from .view import View
from .warehouse import Collection
from .window import buffered, checked_bbox, tile_window

#: pixel-selection methods offered to clients (rio-tiler's, minus the last-band ones that need a QA band)
PIXEL_SELECTION = ("first", "highest", "lowest", "mean", "median", "stdev", "count")
#: resampling kernels ``rasterio.warp.reproject`` accepts (GDAL warp); ``gauss`` is read-only in GDAL
RESAMPLING = tuple(r.name for r in Resampling if r is not Resampling.gauss)


@attr.s
class PixelQueryReader(BaseReader):
    """rio-tiler reader over a ``View`` (``input``), or over a ``Collection`` with the view's choices.

    Attributes:
        snapshot_id, datetime, item_id, product, index: the view's choices when ``input`` is a Collection
            (see ``View.create``); ignored when ``input`` is already a ``View``.
        pixel_selection: how overlapping observations combine (``first`` = newest first).
        bands: the reader's band list by common name (default: the newest observation's bands).
        max_pixels: output pixel budget per read.
        max_vertices: most vertices of a ``feature`` geometry.
    """

    input: View | Collection = attr.ib()
    tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS)
    snapshot_id: int | None = attr.ib(default=None)
    datetime: str | None = attr.ib(default=None)
    item_id: str | None = attr.ib(default=None)
    product: str | None = attr.ib(default=None)
    pixel_selection: str | None = attr.ib(default="first")
    bands: str | Sequence[str] | None = attr.ib(default=None)
    max_pixels: int = attr.ib(default=MAX_OUTPUT_PIXELS)
    index: CollectionIndex | None = attr.ib(default=None)
    max_vertices: int = attr.ib(default=MAX_GEOMETRY_VERTICES)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.input, View):
            self.view = self.input
        else:
            self.view = View.create(
                self.input,
                index=self.index,
                snapshot_id=self.snapshot_id,
                datetime=self.datetime,
                item_id=self.item_id,
                product=self.product,
            )
        self.pixel_selection = self.pixel_selection or "first"
        if self.pixel_selection not in PIXEL_SELECTION:
            raise InvalidParameter(f"pixel_selection must be one of {', '.join(PIXEL_SELECTION)}")
        self.bands = split_bands(self.bands)
        self.colormap: dict = {}

    # -- what the view holds ----------------------------------------------------------------------------------
    @cached_property
    def band_names(self) -> list[str]:
        """The reader's band list: ``bands`` if given, else the newest visible observation's bands."""
        return self.view.resolve_bands(self.bands)  # type: ignore[arg-type]  # a list since __attrs_post_init__

    @property
    def crs(self) -> CRS:
        """CRS of the visible items (the view's): rio-tiler sizes and reprojects reads with it."""
        return self.view.crs

    @property
    def bounds(self) -> BBox:  # type: ignore[override]  # an attrs field in rio-tiler, the view's here
        """Bounds of the visible items in ``crs`` (the view's), as ``info`` and TileJSON report them."""
        return self.view.bounds

    @property
    def minzoom(self) -> int:
        """Lowest zoom worth serving: the whole visible extent fits in about one tile (the view's)."""
        return self.view.zoom_range(self.tms)[0]

    @property
    def maxzoom(self) -> int:
        """TMS zoom whose resolution matches the finest visible observation (the view's)."""
        return self.view.zoom_range(self.tms)[1]

    def _resolution_in(self, dst_crs: CRS) -> float:
        return self.view.resolution_in(dst_crs)

    # -- rio-tiler API ------------------------------------------------------------------------------------------
    def info(self) -> Info:
        """Extent, bands and dtype of the view, plus what it contains (items, dates, levels)."""
        names, crs, contents = self.band_names, self.crs, self.view.contents()
        meta: dict[str, Any] = {
            "bounds": self.bounds,
            "crs": CRS_to_uri(crs) or crs.to_wkt(),
            "band_metadata": [(f"b{i}", {"common_name": b}) for i, b in enumerate(names, 1)],
            "band_descriptions": [(f"b{i}", b) for i, b in enumerate(names, 1)],
            "dtype": self.view.dtype,
            "nodata_type": "Nodata" if "nodata_value" in contents else "Mask",
            "count": len(names),
            "minzoom": self.minzoom,
            "maxzoom": self.maxzoom,
        }
        return Info.model_validate(meta | contents)

    def statistics(
        self,
        categorical: bool = False,
        categories: list[float] | None = None,
        percentiles: list[int] | None = None,
        hist_options: dict | None = None,
        max_size: int = 1024,
        **kwargs: Any,
    ) -> dict[str, BandStatistics]:
        """Statistics of a preview (at most ``max_size`` pixels on the long side), like rio-tiler's Reader."""
        image = self.preview(max_size=max_size, **kwargs)
        return image.statistics(
            categorical=categorical, categories=categories, percentiles=percentiles, hist_options=hist_options
        )

    def tile(self, tile_x: int, tile_y: int, tile_z: int, tilesize: int | None = None, **kwargs: Any) -> ImageData:
        """One tile of ``tms``; ``TileOutsideTMS`` for indices the TMS lacks, ``TileOutsideBounds`` without data."""
        bbox, width, height = tile_window(self.tms, tile_x, tile_y, tile_z, tilesize)
        try:
            return self._read(bbox, self.tms.rasterio_crs, width, height, **kwargs)
        except NoData:
            raise TileOutsideBounds(f"Tile(x={tile_x}, y={tile_y}, z={tile_z}) has no data in this view") from None

    def part(
        self,
        bbox: BBox,
        dst_crs: CRS | None = None,
        bounds_crs: CRS = WGS84_CRS,
        max_size: int | None = None,
        height: int | None = None,
        width: int | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """A bbox (in ``bounds_crs``) read into ``dst_crs``; size from width/height, else native, capped by max_size."""
        dst_crs = dst_crs or bounds_crs
        box = checked_bbox(bbox, bounds_crs, dst_crs)
        out_w, out_h = self.view.output_size(box, dst_crs, width, height, max_size)
        return self._read(box, dst_crs, out_w, out_h, **kwargs)

    def preview(self, max_size: int | None = 1024, dst_crs: CRS | None = None, **kwargs: Any) -> ImageData:
        """The whole view, at most ``max_size`` pixels on its long side (native CRS unless ``dst_crs``)."""
        return self.part(self.bounds, dst_crs=dst_crs or self.crs, bounds_crs=self.crs, max_size=max_size, **kwargs)

    def point(self, lon: float, lat: float, coord_crs: CRS = WGS84_CRS, **kwargs: Any) -> PointData:
        """Values at a point: the native pixel containing it, mosaicked like tiles are."""
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise InvalidParameter("point coordinates must be finite numbers")
        # a 1x1 window centred on the point: nearest resampling then returns the native pixel containing it
        half = 1e-7 if coord_crs.is_geographic else 1e-3
        kwargs = {k: v for k, v in kwargs.items() if k not in ("resampling_method", "reproject_method")}
        try:
            img = self._read((lon - half, lat - half, lon + half, lat + half), coord_crs, 1, 1, **kwargs)
        except NoData:
            raise PointOutsideBounds(f"point ({lon}, {lat}) has no data in this view") from None
        values = np.ma.MaskedArray(img.array.data[:, 0, 0], mask=np.ma.getmaskarray(img.array)[:, 0, 0])
        return PointData(
            values,
            band_names=img.band_names,
            band_descriptions=img.band_descriptions,
            coordinates=(lon, lat),
            crs=coord_crs,
            assets=img.assets,
            metadata=img.metadata,
        )

    def feature(self, shape: dict, dst_crs: CRS | None = None, shape_crs: CRS = WGS84_CRS, **kwargs: Any) -> ImageData:
        """The feature's bbox read like ``part``, pixels outside the geometry masked (rio-tiler semantics)."""
        shape = feature_geometry(shape, self.max_vertices)
        dst_crs = dst_crs or shape_crs
        try:
            bbox = feature_bounds(shape)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise InvalidParameter(f"invalid geometry: {exc}") from None
        img = self.part(bbox, dst_crs=dst_crs, bounds_crs=shape_crs, **kwargs)
        if dst_crs != shape_crs:
            shape = transform_geom(shape_crs, dst_crs, shape)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
            outside = rasterize(
                [shape],
                out_shape=(img.height, img.width),
                transform=img.transform,
                all_touched=True,
                default_value=0,
                fill=1,
                dtype="uint8",
            ).astype(bool)
        img.cutline_mask = outside
        img.array.mask = np.where(~outside, img.array.mask, True)
        return img

    # -- the one read -----------------------------------------------------------------------------------------
    def _read(
        self,
        bbox: BBox,
        crs: CRS,
        width: int,
        height: int,
        indexes: Indexes | None = None,
        expression: str | None = None,
        buffer: float | None = None,
        nodata: float | None = None,
        unscale: bool | None = None,
        resampling_method: str | None = None,
        reproject_method: str | None = None,
        **_: Any,  # titiler's padding, align_bounds_with_dataset...: not needed by a single-warp reader
    ) -> ImageData:
        """Validate -> ``read_window`` -> nodata/unscale/expression on the image (rio-tiler's order)."""
        if buffer:
            bbox, width, height = buffered(bbox, width, height, buffer)
        check_output_size(width, height, self.max_pixels)
        resampling = reproject_method or resampling_method or "nearest"
        if resampling not in RESAMPLING:
            raise InvalidParameter(f"resampling {resampling!r} is not supported; use one of {', '.join(RESAMPLING)}")
        bands, expression = select_bands(self.band_names, self.view.available_bands, indexes, expression)
        pixel_selection = self.pixel_selection or "first"  # never None after __attrs_post_init__
        img = read_window(
            self.view, bbox, crs, width, height, bands=bands, resampling=resampling, pixel_selection=pixel_selection
        )
        meta = img.metadata or {}  # read_window always fills it: items, levels, datetimes
        self.view.reads.append(meta)  # the request's record of what it read (diagnostics headers)
        if nodata is not None:
            hit = np.isnan(img.array.data) if np.isnan(nodata) else img.array.data == nodata
            img.array = np.ma.MaskedArray(img.array.data, mask=np.ma.getmaskarray(img.array) | hit)
        if unscale and (profile := self.view.product_profile(meta["items"][0])):
            img.array = profile.unscale(img.array)
        return apply_expression(img, expression) if expression else img
