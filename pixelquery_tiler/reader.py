"""``PixelQueryReader``: rio-tiler's ``BaseReader`` interface over a ``View`` of a warehouse collection.

A thin adapter in the style of rio-tiler's ``io/rasterio.py``: it turns tile/part/preview/point/feature
requests into an output window (bounds, CRS, size), checks the limits, resolves band names and expressions,
and calls ``mosaic.read_window``. What the view contains (items, bands, extent, zoom range) is the
``View``'s; what was read (items, levels, datetimes) comes back in ``ImageData.metadata``.

Band names are STAC common names (``red``, ``nir``...), so titiler's ``expression`` accepts
``(nir-red)/(nir+red)``; rio-tiler's positional ``b1``, ``b2``... still work and index the reader's band list.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import attr
import numpy as np
from morecantile import Tile, TileMatrixSet
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import bounds as feature_bounds
from rasterio.features import rasterize
from rasterio.warp import transform_geom
from rio_tiler.constants import WEB_MERCATOR_TMS, WGS84_CRS
from rio_tiler.errors import InvalidBufferSize, InvalidExpression, PointOutsideBounds, TileOutsideBounds
from rio_tiler.expression import get_expression_blocks, validate_expression
from rio_tiler.io.base import BaseReader
from rio_tiler.models import BandStatistics, ImageData, Info, PointData
from rio_tiler.types import BBox, Indexes
from rio_tiler.utils import CRS_to_uri

from .crs import crs_id, transform_bounds
from .errors import InvalidParameter, NoData, OutputTooLarge, TileOutsideTMS
from .index import CollectionIndex
from .mosaic import read_window
from .profiles import ProfileError, get_profile
from .view import View
from .warehouse import Collection

#: Output pixel budget of one read (4096 x 4096): bounds memory and CPU per request. Larger part/preview/
#: feature/tile requests get a 400 telling the client to pass a smaller size or ``max_size``.
MAX_OUTPUT_PIXELS = 4096 * 4096

#: Most vertices a feature's geometry may have: rasterizing and reprojecting it is linear in them, and the
#: request-body cap alone still lets ~50,000 through.
MAX_GEOMETRY_VERTICES = 20_000

#: pixel-selection methods offered to clients (rio-tiler's, minus the last-band ones that need a QA band)
PIXEL_SELECTION = ("first", "highest", "lowest", "mean", "median", "stdev", "count")

#: resampling kernels ``rasterio.warp.reproject`` accepts (GDAL warp); ``gauss`` is read-only in GDAL
RESAMPLING = (
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "average",
    "mode",
    "max",
    "min",
    "med",
    "q1",
    "q3",
    "sum",
    "rms",
)

_POSITIONAL_BAND = re.compile(r"^b(\d+)$")
#: band-math size limits: rewriting and evaluating an expression recurse over its syntax tree, so a long chain
#: (``b1+b1+...``) or deep nesting must be refused before it exhausts the stack (real indices have < 50 nodes)
MAX_EXPRESSION_NODES = 512
MAX_EXPRESSION_DEPTH = 48
#: most ``;``-separated expressions (output bands) in one request
MAX_EXPRESSION_BANDS = 64
_GEOMETRY_TYPES = {"Polygon", "MultiPolygon", "Point", "MultiPoint", "LineString", "MultiLineString"}


def split_bands(value: str | Sequence[str] | None) -> list[str] | None:
    """``"red, nir"`` or ``["red", "nir"]`` -> ``["red", "nir"]``; ``None`` stays ``None``."""
    if value is None:
        return None
    names = [b.strip() for b in value.split(",")] if isinstance(value, str) else [str(b).strip() for b in value]
    names = [b for b in names if b]
    if not names:
        raise InvalidParameter("bands must name at least one band")
    return names


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

    # -- what the view holds (delegated) ----------------------------------------------------------------------
    @property
    def positions(self) -> np.ndarray:
        """Index positions of the visible items, newest acquisition first."""
        return self.view.positions

    @property
    def available_bands(self) -> list[str]:
        """Band names of the visible items (the view's; rio-tiler's ``info`` reports them)."""
        return self.view.available_bands

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
        """Bounds of the visible items in ``crs`` (the view's), as rio-tiler's ``info`` and TileJSON report them."""
        return self.view.bounds

    @property
    def minzoom(self) -> int:
        """Lowest zoom worth serving (rio-tiler's rule for COGs): the whole visible extent fits in about one tile."""
        return self.view.zoom_range(self.tms)[0]

    @property
    def maxzoom(self) -> int:
        """TMS zoom whose resolution matches the finest visible observation."""
        return self.view.zoom_range(self.tms)[1]

    @property
    def dtype(self) -> str:
        """Common dtype of the visible items' bands (rio-tiler's ``info`` reports it)."""
        return self.view.dtype

    def _resolution_in(self, dst_crs: CRS) -> float:
        return self.view.resolution_in(dst_crs)

    # -- rio-tiler API ------------------------------------------------------------------------------------------
    def info(self) -> Info:
        """Extent, bands and dtype of the view, plus what it contains (items, dates, levels)."""
        view = self.view
        items = [view.index.items[p] for p in view.require_items()]
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
            "snapshot_id": view.snapshot,
            "items": len({it.item_id for it in items}),  # a multi-resolution scene has one entry per band group
            "datetimes": sorted({it.datetime.isoformat() for it in items}),
            "products": sorted({it.product for it in items}),
            "resolution": min(it.resolutions[0] for it in items),
        }
        if nodata is not None:
            meta["nodata_value"] = nodata
        return Info.model_validate(meta)

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
        return image.statistics(
            categorical=categorical, categories=categories, percentiles=percentiles, hist_options=hist_options
        )

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
        xy = self.tms.xy_bounds(Tile(x=tile_x, y=tile_y, z=tile_z))
        bbox = (xy.left, xy.bottom, xy.right, xy.top)
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
        box: BBox = (bbox[0], bbox[1], bbox[2], bbox[3])  # a tuple whatever sequence the caller passed
        if not all(map(math.isfinite, box)) or not (box[0] < box[2] and box[1] < box[3]):
            raise InvalidParameter(f"invalid bbox {box}: need minx < maxx and miny < maxy")
        if bounds_crs != dst_crs:
            box = transform_bounds(crs_id(bounds_crs), crs_id(dst_crs), box)
        if not all(map(math.isfinite, box)) or not all(map(math.isfinite, (box[2] - box[0], box[3] - box[1]))):
            raise InvalidParameter(f"bbox {box} is not representable in the output CRS")
        out_w, out_h = self._output_size(box, dst_crs, width, height, max_size)
        return self._read(box, dst_crs, out_w, out_h, indexes, expression, buffer=buffer, **kwargs)

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
            self.bounds,
            dst_crs=dst_crs or self.crs,
            bounds_crs=self.crs,
            indexes=indexes,
            expression=expression,
            max_size=max_size,
            height=height,
            width=width,
            **kwargs,
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
            values,
            band_names=img.band_names,
            band_descriptions=img.band_descriptions,
            coordinates=(lon, lat),
            crs=coord_crs,
            assets=img.assets,
            metadata=img.metadata,
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
        shape = _geometry(shape, self.max_vertices)
        dst_crs = dst_crs or shape_crs
        try:
            bbox = feature_bounds(shape)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise InvalidParameter(f"invalid geometry: {exc}") from None
        img = self.part(
            bbox,
            dst_crs=dst_crs,
            bounds_crs=shape_crs,
            indexes=indexes,
            expression=expression,
            max_size=max_size,
            height=height,
            width=width,
            buffer=buffer,
            **kwargs,
        )
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
        self,
        bbox: tuple[float, float, float, float],
        dst_crs: CRS,
        width: int | None,
        height: int | None,
        max_size: int | None,
    ) -> tuple[int, int]:
        """Output size: as asked, else the finest native resolution, shrunk to ``max_size`` (rio-tiler rules)."""
        span_x, span_y = bbox[2] - bbox[0], bbox[3] - bbox[1]
        if width and height:
            return int(width), int(height)
        if width:
            return int(width), max(1, round(width * span_y / span_x))
        if height:
            return max(1, round(height * span_x / span_y)), int(height)
        res = self.view.resolution_in(dst_crs)
        cols, rows = span_x / res - 1e-6, span_y / res - 1e-6
        if not (math.isfinite(cols) and math.isfinite(rows)) or max(cols, rows) > 2**40:
            raise OutputTooLarge(f"bbox {bbox} spans too many native pixels; ask for a width/height or max_size")
        out_w, out_h = max(1, math.ceil(cols)), max(1, math.ceil(rows))
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
        img = read_window(
            self.view,
            bbox,
            crs,
            width,
            height,
            bands=bands,
            resampling=resampling,
            pixel_selection=self.pixel_selection,  # type: ignore[arg-type]  # never None after __attrs_post_init__
        )
        meta = img.metadata or {}  # read_window always fills it: items, levels, datetimes
        self.view.reads.append(meta)
        if nodata is not None:
            data = img.array
            hit = np.isnan(data.data) if np.isnan(nodata) else data.data == nodata
            img.array = np.ma.MaskedArray(data.data, mask=np.ma.getmaskarray(data) | hit)
        if unscale:
            img.array = self._unscale(img.array, meta["items"][0])
        return self._apply_expression(img, expression) if expression else img

    def _unscale(self, data: np.ma.MaskedArray, item_id: str) -> np.ma.MaskedArray:
        """Apply the newest contributing item's product scale/offset (profiles hold them per product)."""
        item = self.view.index.item(item_id)
        if item is None:
            return data
        try:
            profile = get_profile(item.product)
        except ProfileError:
            return data
        if profile.scale is None and profile.offset is None:
            return data
        out = data.astype("float32") * (profile.scale if profile.scale is not None else 1.0)
        return np.ma.asarray(out + (profile.offset or 0.0))

    @staticmethod
    def _apply_expression(img: ImageData, expression: str) -> ImageData:
        # rio-tiler lower-cases expressions; present the band names the same way
        img.band_names = [b.lower() for b in img.band_names]
        return img.apply_expression(expression)


def _geometry(shape: dict, max_vertices: int) -> dict:
    """The GeoJSON geometry of a Feature or geometry (rio-tiler's rule), checked enough to rasterize."""
    if not isinstance(shape, dict):
        raise InvalidParameter("a feature must be a GeoJSON Feature or geometry object")
    geometry = shape.get("geometry", shape) if shape.get("type") == "Feature" else shape
    if not isinstance(geometry, dict) or geometry.get("type") not in _GEOMETRY_TYPES:
        raise InvalidParameter("invalid GeoJSON geometry")
    if (count := _vertex_count(geometry.get("coordinates"))) > max_vertices:
        raise OutputTooLarge(f"geometry has {count} vertices; at most {max_vertices} vertices are accepted")
    return geometry


def _vertex_count(coordinates: Any) -> int:
    """Positions in a GeoJSON coordinates array (any nesting), without recursion."""
    count, stack = 0, [coordinates]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            if node and isinstance(node[0], (int, float)):
                count += 1
            else:
                stack.extend(node)
    return count


def _check_size(tree: ast.AST) -> None:
    """``InvalidExpression`` for a syntax tree over the size limits (walked without recursion)."""
    nodes, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_EXPRESSION_NODES or depth > MAX_EXPRESSION_DEPTH:
            raise InvalidExpression(
                f"expression too large: at most {MAX_EXPRESSION_NODES} terms "
                f"and {MAX_EXPRESSION_DEPTH} levels of nesting"
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


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
    if len(parts := get_expression_blocks(expression)) > MAX_EXPRESSION_BANDS:
        raise InvalidExpression(f"at most {MAX_EXPRESSION_BANDS} expressions (output bands) in one request")
    for block in parts:
        try:
            tree = ast.parse(block, mode="eval")
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            raise InvalidExpression(f"invalid expression block {block[:80]!r}") from None
        _check_size(tree)
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in calls:
                node.id = resolve(node.id).lower()
                used.setdefault(by_lower.get(node.id, node.id), None)
        blocks.append(ast.unparse(tree))
    if not used:
        raise InvalidExpression(f"expression {expression!r} uses no band")
    return list(used), ";".join(blocks)
