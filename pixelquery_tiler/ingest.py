"""Ingest: one GeoTIFF/COG becomes one Iceberg snapshot (one STAC item).

Protocol (DESIGN 2.3): write every chunk file under a unique name, then one Iceberg ``append`` of their rows.
Nothing is visible before the commit, and a crash before it leaves only unreferenced files for ``gc``.
Pixels are never resampled at level 0; overview levels are 2x decimations (average or nearest by product).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath
from typing import Any

import numpy as np
import pyarrow as pa
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds

from . import catalog as cat
from .chunks import Chunk, write_chunk_file
from .fileio import WarehouseFS
from .grid import GridError, crs_id, grid_for, overview_count
from .profiles import BandSpec, ProductProfile, ProfileError, detect_product, get_profile, resolve_bands
from .temporal import parse_instant

log = logging.getLogger(__name__)

#: test hook: seconds to sleep after all chunk files are written and before the commit (crash tests)
PAUSE_BEFORE_COMMIT_ENV = "PIXELQUERY_PAUSE_BEFORE_COMMIT"
from .names import NAME_RE as _NAME_RE  # noqa: E402  (one home for the id rule)


class IngestError(ValueError):
    """The file cannot be ingested; nothing was committed."""


@dataclass(frozen=True)
class IngestResult:
    item_id: str
    snapshot_id: int
    collection: str
    datetime: dt.datetime
    bbox: tuple[float, float, float, float]
    product: str
    levels: int
    chunks: int
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "snapshot_id": self.snapshot_id,
            "collection": self.collection,
            "datetime": self.datetime.isoformat().replace("+00:00", "Z"),
            "bbox": list(self.bbox),
            "product": self.product,
            "levels": self.levels,
            "chunks": self.chunks,
            "source": self.source,
        }


def check_name(kind: str, name: str) -> str:
    """Collection and item ids become URL path segments and file names: keep them plain."""
    if not _NAME_RE.match(name or ""):
        raise IngestError(f"invalid {kind} {name!r}: use letters, digits, '-' and '_' (max 128)")
    return name


_LANDSAT_DATE = re.compile(r"L[COTEM]0\d_(?:[A-Z0-9]{4}_)?\d{6}_(\d{8})")
_SENTINEL_DATE = re.compile(r"(?:^|_)(\d{8}T\d{6})(?:_|\.|$)")


def detect_datetime(path: str, tags: dict[str, str]) -> dt.datetime | None:
    """Acquisition time from TIFF tags, then from Landsat / Sentinel-2 file-name conventions."""
    for key in ("TIFFTAG_DATETIME", "ACQUISITIONDATETIME", "DATETIME"):
        value = tags.get(key)
        if value:
            try:
                return dt.datetime.strptime(value.strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
            except ValueError:
                try:
                    return parse_instant(value.strip())
                except ValueError:
                    log.warning("ignoring unparsable %s tag %r", key, value)
    name = PurePath(path).name
    if m := _SENTINEL_DATE.search(name):
        return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
    if m := _LANDSAT_DATE.search(name):
        return dt.datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=dt.timezone.utc)
    return None


@dataclass
class SourceRaster:
    """A source file read into memory: pixels, per-band validity and georeferencing."""

    data: np.ndarray  # (bands, h, w)
    valid: np.ndarray  # (bands, h, w) bool
    transform: Affine
    crs: rasterio.crs.CRS
    nodata: float | None
    has_mask: bool  # validity that a nodata value cannot express (internal mask / alpha)
    tags: dict[str, str]


def _check_georeferenced(src: rasterio.DatasetReader, path: str) -> None:
    """Pixels without a CRS and geotransform cannot be placed on a grid: refuse them before any work."""
    if src.crs is None:
        raise IngestError(f"{path}: not georeferenced (no CRS)")
    if src.transform == Affine.identity() and not src.gcps[0]:
        raise IngestError(f"{path}: not georeferenced (no geotransform)")


def read_source(path: str) -> SourceRaster:
    """Read and validate a raster; every problem becomes an ``IngestError`` with one clear line."""
    try:
        with rasterio.open(path) as src:
            _check_georeferenced(src, path)
            alpha = [i for i, ci in enumerate(src.colorinterp, 1) if ci == ColorInterp.alpha]
            indexes = [i for i in range(1, src.count + 1) if i not in alpha]
            data = src.read(indexes)
            nodata = src.nodata
            if nodata is not None:
                valid = ~np.isnan(data) if np.isnan(nodata) else data != nodata
                has_mask = False
            else:
                flags = src.mask_flag_enums[0]
                if alpha or MaskFlags.all_valid not in flags:
                    mask = src.dataset_mask() > 0
                    valid = np.broadcast_to(mask, data.shape).copy()
                    has_mask = not mask.all()
                else:
                    valid = np.ones(data.shape, bool)
                    has_mask = False
            tags = src.tags()
            transform, crs = src.transform, src.crs
    except IngestError:
        raise
    except (RasterioError, OSError) as exc:
        raise IngestError(f"{path}: cannot read raster, truncated or corrupt? ({_root_cause(exc)})") from None
    if data.size == 0:
        raise IngestError(f"{path}: raster is empty")
    return SourceRaster(data, valid, transform, crs, nodata, has_mask, tags)


def _root_cause(exc: BaseException) -> str:
    """GDAL's own message (rasterio's says only "Read failed. See previous exception"), on one line."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def decimate(data: np.ndarray, valid: np.ndarray, method: str, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """One 2x overview step. Averages only valid pixels; odd edges are kept (partial blocks), not cut.

    This is the hot loop of ingest, so the average adds the four strided 2x2 phases in a narrow integer
    accumulator (uint8 sums fit uint16) instead of reducing a reshaped float copy, and never pads: at an
    odd edge the missing phase simply does not contribute to the sum or the count.
    """
    b, h, w = data.shape
    h2, w2 = math.ceil(h / 2), math.ceil(w / 2)
    if method == "nearest":
        out, vout = data[:, ::2, ::2].copy(), valid[:, ::2, ::2].copy()
        out[~vout] = fill
        return out, vout
    all_valid = bool(valid.all())
    values = data if all_valid else np.where(valid, data, np.zeros((), data.dtype))
    acc = _accumulator(data.dtype)
    sums = values[:, 0::2, 0::2].astype(acc)
    phases = ((0, 1), (1, 0), (1, 1))
    for r, c in phases:
        part = values[:, r::2, c::2]
        sums[:, : part.shape[1], : part.shape[2]] += part
    if all_valid:
        counts = np.full((1, h2, w2), 4, np.uint8)
        if h % 2:
            counts[:, -1, :] //= 2
        if w % 2:
            counts[:, :, -1] //= 2
        vout = np.ones((b, h2, w2), bool)
    else:
        counts = valid[:, 0::2, 0::2].astype(np.uint8)
        for r, c in phases:
            part = valid[:, r::2, c::2]
            counts[:, : part.shape[1], : part.shape[2]] += part
        vout = counts > 0
    mean = sums / np.maximum(counts, 1).astype(np.float32 if acc != np.float64 else np.float64)
    if data.dtype.kind in "iu":
        mean = np.rint(mean)
    out = mean.astype(data.dtype)
    if not all_valid:
        out[~vout] = fill
    return out, vout


def _accumulator(dtype: np.dtype) -> type:
    """Narrowest dtype that holds the sum of four values exactly."""
    if dtype.kind in "ub" and dtype.itemsize == 1:
        return np.uint16
    if dtype.kind == "i" and dtype.itemsize == 1:
        return np.int16
    if dtype.kind in "iu" and dtype.itemsize == 2:
        return np.int32
    if dtype.kind in "iu" and dtype.itemsize == 4:
        return np.int64
    return np.float64


def chunk_wgs84_bounds(crs: rasterio.crs.CRS, bounds: np.ndarray, densify: int = 21) -> np.ndarray:
    """WGS84 (west, south, east, north) of many native boxes ``(n, 4)`` in one vectorised transform.

    Like ``rasterio.warp.transform_bounds(..., densify_pts=densify)`` per box (edges densified so curved
    projected edges are bounded), but one PROJ call for all chunks instead of one per chunk. Boxes that
    come out wider than 180 degrees (crossing the antimeridian) or non-finite fall back to rasterio's
    per-box version, which handles those cases.
    """
    n = bounds.shape[0]
    if n == 0:
        return np.zeros((0, 4))
    if crs_id(crs) == "EPSG:4326":
        return bounds.astype(float).copy()
    t = np.linspace(0.0, 1.0, densify + 2)
    minx, miny, maxx, maxy = (bounds[:, k : k + 1] for k in range(4))
    xs = np.concatenate([minx + (maxx - minx) * t, maxx + 0 * t, maxx - (maxx - minx) * t, minx + 0 * t], axis=1)
    ys = np.concatenate([miny + 0 * t, miny + (maxy - miny) * t, maxy + 0 * t, maxy - (maxy - miny) * t], axis=1)
    lon, lat = _to_wgs84(crs.to_wkt()).transform(xs, ys)
    lon, lat = np.asarray(lon), np.asarray(lat)
    out = np.stack([lon.min(axis=1), lat.min(axis=1), lon.max(axis=1), lat.max(axis=1)], axis=1)
    bad = ~np.isfinite(out).all(axis=1) | (out[:, 2] - out[:, 0] > 180)
    for k in np.flatnonzero(bad):
        out[k] = transform_bounds(crs, "EPSG:4326", *bounds[k], densify_pts=densify)
    return out


@lru_cache(maxsize=32)
def _to_wgs84(crs_wkt: str) -> Transformer:
    return Transformer.from_crs(crs_wkt, "EPSG:4326", always_xy=True)


def _band_stats(band: np.ndarray, valid: np.ndarray) -> tuple[float, float, float]:
    """Per-band min/max/mean of the valid pixels (the boolean-index copy is skipped when all are valid)."""
    values = band if valid.all() else band[valid]
    if values.size == 0:
        return (math.nan, math.nan, math.nan)
    return (float(values.min()), float(values.max()), float(values.mean(dtype=np.float64)))


@dataclass(frozen=True)
class SourcePlan:
    """Everything about a file that can be checked from its header, before any pixel is read."""

    path: str
    profile: ProductProfile
    bands: list[BandSpec]
    when: dt.datetime


def _ingest_datetime(path: str, datetime: str | dt.datetime | None, tags: dict[str, str]) -> dt.datetime:
    if isinstance(datetime, dt.datetime):
        return datetime if datetime.tzinfo else datetime.replace(tzinfo=dt.timezone.utc)
    if datetime:
        try:
            return parse_instant(datetime)
        except ValueError as exc:
            raise IngestError(f"bad --datetime {datetime!r}: {exc}") from None
    when = detect_datetime(path, tags)
    if when is None:
        raise IngestError(f"{path}: no acquisition datetime in TIFF tags or file name; pass --datetime")
    return when


def inspect_source(
    path: str, product: str | None = None, datetime: str | dt.datetime | None = None, bands: list[str] | None = None
) -> SourcePlan:
    """Validate a file from its header only: georeferencing, product, bands, datetime.

    The CLI runs this on every FILE before ingesting the first one, so a typo in the last of many files
    fails the whole command up front instead of after the others were committed.
    """
    if not os.path.exists(path) and "://" not in path:
        raise IngestError(f"{path}: no such file")
    try:
        with rasterio.open(path) as src:
            _check_georeferenced(src, path)
            count = sum(1 for ci in src.colorinterp if ci != ColorInterp.alpha)
            tags, crs, transform = src.tags(), src.crs, src.transform
    except IngestError:
        raise
    except (RasterioError, OSError) as exc:
        raise IngestError(f"{path}: cannot read raster ({_root_cause(exc)})") from None
    try:
        profile = get_profile(product) if product else detect_product(path, count)
        band_specs = resolve_bands(profile, count, path, bands)
    except ProfileError as exc:
        raise IngestError(f"{path}: {exc}") from None
    when = _ingest_datetime(path, datetime, tags)
    try:
        grid_for(crs).partition(transform, 1, 1, 0)  # validates the transform before any write
    except GridError as exc:
        raise IngestError(f"{path}: {exc}") from None
    return SourcePlan(path, profile, band_specs, when)


def ingest_file(
    fs: WarehouseFS,
    catalog: Any,
    collection: str,
    path: str,
    product: str | None = None,
    datetime: str | dt.datetime | None = None,
    bands: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> IngestResult:
    """Ingest one file as one snapshot. Raises ``IngestError`` (nothing committed) on bad input."""
    check_name("collection", collection)
    plan = inspect_source(path, product, datetime, bands)
    src = read_source(path)
    profile, band_specs, when = plan.profile, plan.bands, plan.when
    grid = grid_for(src.crs)

    stem = re.sub(r"[^A-Za-z0-9_-]", "-", PurePath(path).stem)[:80].strip("-_") or "item"
    item_id = f"{stem}-{when:%Y%m%d}-{uuid.uuid4().hex[:8]}"
    band_names = [b.common_name for b in band_specs]
    crs = crs_id(src.crs)
    fill = src.nodata if src.nodata is not None else 0
    n_levels = 1 + overview_count(src.data.shape[2], src.data.shape[1])
    rows: list[dict[str, Any]] = []
    data, valid, transform = src.data, src.valid, src.transform
    for level in range(n_levels):
        if level:
            data, valid = decimate(data, valid, profile.overview_resampling, fill)
            transform = transform @ Affine.scale(2)
        chunks, stats = [], []
        for tile_id, win in grid.partition(transform, data.shape[2], data.shape[1], level):
            sl = (slice(None), slice(win.row_off, win.row_off + win.height), slice(win.col_off, win.col_off + win.width))
            cvalid = valid[sl]
            if not cvalid.any():
                continue  # all-nodata chunks are not stored
            any_valid = cvalid.any(axis=0)
            chunks.append(
                Chunk(tile_id, transform @ Affine.translation(win.col_off, win.row_off), data[sl], any_valid if src.has_mask else None)
            )
            stats.append(([_band_stats(b, v) for b, v in zip(data[sl], cvalid)], 100.0 * any_valid.mean()))
        if not chunks:
            continue
        relpath = f"chunks/{collection}/{when:%Y/%m}/{item_id}/L{level}.arrow"
        write_chunk_file(fs, relpath, chunks, band_names, crs, src.nodata)
        native = np.array(
            [
                (c.transform.c, c.transform.f + c.height * c.transform.e, c.transform.c + c.width * c.transform.a, c.transform.f)
                for c in chunks
            ],
            float,
        )
        lonlat = chunk_wgs84_bounds(src.crs, native)
        for batch, (chunk, (bstats, valid_pct)) in enumerate(zip(chunks, stats)):
            minx, miny, maxx, maxy = (float(v) for v in native[batch])
            west, south, east, north = (float(v) for v in lonlat[batch])
            rows.append(
                dict(
                    item_id=item_id, collection=collection, product=profile.id, datetime=when,
                    tile_id=chunk.tile_id, level=level, crs=crs,
                    minx=minx, miny=miny, maxx=maxx, maxy=maxy, west=west, south=south, east=east, north=north,
                    res_x=chunk.transform.a, res_y=-chunk.transform.e, height=chunk.height, width=chunk.width,
                    transform=list(chunk.transform)[:6], chunk_file=relpath, batch_index=batch,
                    bands=band_names, dtype=str(chunk.data.dtype), nodata=src.nodata,
                    band_min=[s[0] for s in bstats], band_max=[s[1] for s in bstats], band_mean=[s[2] for s in bstats],
                    valid_percent=valid_pct, cloud_cover=None,
                )
            )
        if progress:
            progress(f"level {level}: {len(chunks)} chunks")
    if not rows:
        raise IngestError(f"{path}: raster has no valid pixels")

    level0 = [r for r in rows if r["level"] == 0]
    bbox = (
        min(r["west"] for r in level0), min(r["south"] for r in level0),
        max(r["east"] for r in level0), max(r["north"] for r in level0),
    )
    properties = cat.item_properties(
        {
            "item_id": item_id, "datetime": when.isoformat(), "product": profile.id,
            "source": PurePath(path).name, "crs": crs, "gsd": src.transform.a,
            "bbox": list(bbox), "bands": band_names, "levels": n_levels, "chunk_count": len(rows),
            "shape": [int(src.data.shape[1]), int(src.data.shape[2])],
        }
    )
    table = pa.Table.from_pylist(rows, schema=cat.ARROW_SCHEMA)
    if pause := float(os.environ.get(PAUSE_BEFORE_COMMIT_ENV, "0") or 0):
        import time

        time.sleep(pause)

    def load_or_create() -> Any:
        """The table to append to (one catalog read per attempt; the collection is created on first use)."""
        existing = cat.load_table(catalog, collection)
        return existing if existing is not None else cat.create_table(catalog, fs, collection)

    snap = cat.commit_append(load_or_create, table, properties, item_id)
    log.info("ingested %s as %s (snapshot %s, %d chunks)", path, item_id, snap.snapshot_id, len(rows))
    return IngestResult(item_id, snap.snapshot_id, collection, when, bbox, profile.id, n_levels, len(rows), PurePath(path).name)
