"""Columnar view of one collection's STAC items (= Iceberg snapshots), built from the tiler's index.

Search must stay fast at 10,000+ items, so every queryable/sortable property is a numpy column over the
collection's items and a search is a handful of vectorised comparisons. The view is derived from one
immutable ``CollectionIndex``; when the index is rebuilt (a snapshot landed) a new view is built, while the
expensive per-item results (footprints, documents) live in caches keyed by ``(collection, item, snapshot)``,
which never change once committed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from threading import Lock
from typing import Any, TypeVar

import cachetools
import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_geom
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from ..catalog import SnapshotInfo
from ..crs import transformer
from ..index import CollectionIndex, ItemView
from ..profiles import ProductProfile, load_profiles
from ..temporal import us
from .properties import BY_NAME, Column

log = logging.getLogger(__name__)

#: metres per degree along a meridian: turns a geographic pixel size into a ground sample distance
METRES_PER_DEGREE = 111_320.0
WORLD = shapely.box(-180.0, -90.0, 180.0, 90.0)

V = TypeVar("V")


def item_cache(maxsize: int) -> Callable[[Callable[[ItemRecords, int], V]], Callable[[ItemRecords, int], V]]:
    """Memoise ``f(records, i)`` by item ``i``'s ``(collection, item, snapshot)`` in a thread-safe LRU.

    A committed snapshot's item never changes, so results outlive the ``ItemRecords`` they were computed on
    (an index rebuild keeps them). Values are computed outside the lock: slow footprints do not block hits.
    """
    return cachetools.cached(cachetools.LRUCache(maxsize), key=lambda records, i: records.item_key(i), lock=Lock())


@dataclass(frozen=True)
class CrsFacts:
    """What STAC needs to know about a chunk CRS string."""

    code: str | None  # proj:code (``EPSG:32621``) or None when the CRS has no authority code
    wkt: str
    geographic: bool
    metres_per_unit: float


@lru_cache(maxsize=256)
def crs_facts(crs: str) -> CrsFacts:
    """EPSG code and metres per CRS unit of a CRS string, parsed once (every item of a grid shares them)."""
    parsed = CRS.from_user_input(crs)
    epsg = parsed.to_epsg()
    if parsed.is_geographic:
        factor = METRES_PER_DEGREE
    else:
        try:
            factor = float(parsed.linear_units_factor[1])
        except (CRSError, ValueError, IndexError):
            factor = 1.0
    return CrsFacts(f"EPSG:{epsg}" if epsg else None, parsed.to_wkt(), parsed.is_geographic, factor)


def profile_for(product: str) -> ProductProfile | None:
    """The product profile of an item, or ``None`` for a product no longer in the profiles."""
    return load_profiles().get(product)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def gsd_metres(item: ItemView) -> float:
    """Ground sample distance in metres of the native level (STAC ``gsd`` is metres, CRS units may not be)."""
    res = item.resolutions[0] if item.resolutions else float("nan")
    value = abs(res) * crs_facts(item.crs).metres_per_unit
    return float(f"{value:.4g}") if math.isfinite(value) else float("nan")


class ItemRecords:
    """The STAC items of one collection at one index: items whose adding snapshot is in the table history.

    The engine keeps expired snapshots in its item log, so every ingested item normally has one; rows without
    a known snapshot (history lost) are not served, since ``pixelquery:snapshot_id`` is required.
    """

    def __init__(self, collection: str, index: CollectionIndex, footprint: Callable[[ItemRecords, int], BaseGeometry]):
        self.collection: str = collection
        self.index = index
        #: ``footprint(records, i)``: :meth:`compute_footprint`, memoised by the owner across index rebuilds
        self._footprint = footprint
        # one record per item: its finest band group's entry (group 0) stands for the whole multi-resolution scene
        entries = [pos for pos, it in enumerate(index.items) if it.group == 0]
        served = [pos for pos in entries if index.items[pos].snapshot is not None]
        if len(served) != len(entries):
            log.warning(
                "%s: %d item(s) without a known snapshot are not served", collection, len(entries) - len(served)
            )
        self.positions = np.asarray(served, np.int64)
        self.items: list[ItemView] = [index.items[p] for p in served]
        n = len(self.items)
        self.pos_by_id = {it.item_id: i for i, it in enumerate(self.items)}
        snaps = [it.snapshot for it in self.items if it.snapshot is not None]  # all of them (served)
        self.snapshots: list[SnapshotInfo] = snaps
        props = [s.properties if s else {} for s in snaps]
        strings = lambda values: np.asarray(values, dtype=object) if n else np.zeros(0, object)  # noqa: E731

        self.ids = strings([it.item_id for it in self.items])
        self.datetime = np.asarray([us(it.datetime) for it in self.items], np.int64)
        self.created = np.asarray([us(s.timestamp) for s in snaps], np.int64)
        self.bbox = index.item_bbox[self.positions] if n else np.zeros((0, 4))
        self.sequence = index.item_snap_pos[self.positions] if n else np.zeros(0, np.int64)
        self.snapshot_id: np.ndarray = np.asarray([s.snapshot_id for s in snaps], np.int64)
        # catalog.snapshots() already restores the parent Iceberg drops on the oldest live snapshot at expiry
        parents = [s.parent_id for s in snaps]
        self.parent_id = np.asarray([p or 0 for p in parents], np.int64)
        self.parent_null = np.asarray([p is None for p in parents], bool)
        self.product: np.ndarray = strings([it.product for it in self.items])
        self.grid: np.ndarray = strings([it.crs for it in self.items])
        codes = [crs_facts(it.crs).code for it in self.items]
        self.proj_code = strings([c or "" for c in codes])
        self.proj_code_null = np.asarray([c is None for c in codes], bool)
        profiles = [profile_for(it.product) for it in self.items]
        platforms = [p.platform if p else None for p in profiles]
        self.platform = strings([p or "" for p in platforms])
        self.platform_null = np.asarray([p is None for p in platforms], bool)
        self.gsd = np.asarray([gsd_metres(it) for it in self.items], float)
        self.levels: np.ndarray = np.asarray(
            [_int(p.get("levels"), len(it.levels)) for p, it in zip(props, self.items, strict=True)], np.int64
        )
        self.chunk_count: np.ndarray = np.asarray([_int(p.get("chunk_count"), 0) for p in props], np.int64)
        self.source = strings([p.get("source") or "" for p in props])
        self.source_null = np.asarray([not p.get("source") for p in props], bool)
        self.cloud_cover = self._cloud_cover()
        self.bbox = self._footprint_bounds(self.bbox, self.gsd)
        self._footprint_array = np.full(n, None, dtype=object)

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def _footprint_bounds(bbox: np.ndarray, gsd: np.ndarray) -> np.ndarray:
        """Item bboxes grown by two native pixels, so they hold the footprints (which err outward by up to 1.5
        pixels, see ``compute_footprint``): search prefilters on them and collection extents contain items."""
        if not len(bbox):
            return bbox
        lat = np.minimum(np.maximum(np.abs(bbox[:, 1]), np.abs(bbox[:, 3])), 89.0)
        metres = np.where(np.isfinite(gsd), gsd, 0.0) * 2
        dlat = metres / METRES_PER_DEGREE
        dlon = dlat / np.cos(np.radians(lat))
        grown = bbox + np.column_stack([-dlon, -dlat, dlon, dlat])
        return np.clip(grown, [-180.0, -90.0, -180.0, -90.0], [180.0, 90.0, 180.0, 90.0])

    def parent_snapshot_id(self, i: int) -> int | None:
        """The parent snapshot of item ``i``'s snapshot, ``None`` for the table's first."""
        return None if self.parent_null[i] else int(self.parent_id[i])

    def _cloud_cover(self) -> np.ndarray:
        """Mean cloud cover of the native-level chunks where the catalog knows it, else NaN."""
        column = self.index.rows.column("cloud_cover") if self.index.rows.num_rows else None
        out = np.full(len(self.items), np.nan)
        if column is None or column.null_count == len(column):
            return out
        values = column.to_numpy(zero_copy_only=False).astype(float)
        for i in range(len(self.positions)):
            start, stop = self.level0_range(i)
            chunk = values[start:stop]
            if np.isfinite(chunk).any():
                out[i] = float(np.nanmean(chunk))
        return out

    def level0_range(self, i: int) -> tuple[int, int]:
        """Index row range of item ``i``'s native level."""
        return self.index.item_row_range(int(self.positions[i]), self.items[i].levels[0])

    # -- columns --------------------------------------------------------------------------------------------
    def column(self, name: str) -> Column | None:
        """A property of the registry (``properties.ITEM_PROPERTIES``) as a column; ``None`` for unknown names."""
        prop = BY_NAME.get(name)
        return prop.column(self) if prop is not None else None

    # -- geometry -------------------------------------------------------------------------------------------
    def item_key(self, i: int) -> tuple[str, str, int | None]:
        """``(collection, item, snapshot)`` of item ``i``: what its cached footprint and document are keyed by."""
        item = self.items[i]
        return self.collection, item.item_id, item.snapshot.snapshot_id if item.snapshot else None

    def footprint(self, i: int) -> BaseGeometry:
        """Item ``i``'s footprint in WGS84, cached by (collection, item, snapshot) across index rebuilds."""
        return self._footprint(self, i)

    def footprints(self, rows: np.ndarray) -> np.ndarray:
        """Footprints of items ``rows`` as a shapely geometry array (memoised on this view for vectorised tests)."""
        rows = np.asarray(rows, np.int64)
        missing = rows[[g is None for g in self._footprint_array[rows]]]
        for i in missing:
            self._footprint_array[i] = self.footprint(int(i))
        return self._footprint_array[rows]

    def compute_footprint(self, i: int) -> BaseGeometry:
        """Union of the native-level chunk boxes the snapshot added, in WGS84, never smaller than the data.

        The union is taken in the chunk CRS, where the boxes of one level partition the grid (no overlaps), so
        after snapping edges to a thousandth of a pixel (float noise) a coverage union is exact and ~30x faster
        than a general overlay; then densified and reprojected. The outline follows the data: all-nodata chunks
        are not stored, so the footprint has their holes.

        Every approximation after that errs *outward*: a search for an AOI in a scene's corner must find it,
        and a footprint that cuts valid pixels (straight lon/lat chords across curved projected edges, vertex
        simplification) loses such searches. So the reprojected outline is densified to a few pixels per
        vertex, grown by one native pixel (in degrees), and only then simplified by half of that: the result
        contains every stored pixel and exceeds the chunks by at most ~1.5 pixels.
        """
        item = self.items[i]
        start, stop = self.level0_range(i)
        ix = self.index
        try:
            pixel = abs(float(ix.transform[start, 0])) or 1e-9
            quantum = pixel / 1000
            snap = lambda v: np.round(v[start:stop] / quantum) * quantum  # noqa: E731
            boxes = shapely.box(snap(ix.minx), snap(ix.miny), snap(ix.maxx), snap(ix.maxy))
            native = shapely.coverage_union_all(boxes)
            expected = float(shapely.area(boxes).sum())
            if not native.is_valid or abs(native.area - expected) > 1e-6 * expected:
                native = shapely.union_all(boxes)  # overlapping boxes (not a partition): general overlay
            native = shapely.simplify(native, quantum)  # drops only collinear vertices (a thousandth of a pixel)
            facts = crs_facts(item.crs)
            minx, miny, maxx, maxy = native.bounds
            if facts.code == "EPSG:4326":
                geom = native
                degree_pixel = pixel
            else:
                # vertices every 16 pixels (at most 512 per edge of the outline): chords stay well inside a pixel
                dense = shapely.segmentize(native, max(16 * pixel, max(maxx - minx, maxy - miny) / 512))
                to_wgs84 = transformer(item.crs, "EPSG:4326")
                geom = shapely.transform(dense, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])))
                if geom.bounds[2] - geom.bounds[0] > 180:  # crosses the antimeridian: let GDAL cut it
                    geom = shape(
                        transform_geom(
                            item.crs, "EPSG:4326", shapely.geometry.mapping(dense), antimeridian_cutting=True
                        )
                    )
                gw, gs, ge, gn = geom.bounds
                degree_pixel = pixel * max((ge - gw) / max(maxx - minx, 1e-12), (gn - gs) / max(maxy - miny, 1e-12))
            # outward only: grow by a pixel, then simplify by half of it (Douglas-Peucker moves edges by at most
            # the tolerance), then round coordinates outward-safe (1e-7 degree ~ 1 cm, far below the growth)
            geom = shapely.buffer(geom, degree_pixel, join_style="mitre", mitre_limit=2.0)
            geom = shapely.simplify(geom, degree_pixel / 2, preserve_topology=True)
            geom = shapely.intersection(geom, WORLD)  # the growth must not leave lon/lat's domain
            geom = shapely.set_precision(geom, 1e-7, mode="pointwise")
            geom = shapely.orient_polygons(geom)
            if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
                raise ValueError(f"footprint is {geom.geom_type}")
            return geom
        except Exception as exc:  # never fail an item over its outline: fall back to its bounding box
            log.warning("footprint of %s/%s: %s; using its bbox", self.collection, item.item_id, exc)
            return shapely.box(*item.bbox)
