"""Ingest: band groups become chunk files; one item (one or more groups) becomes one Iceberg snapshot.

API (stable, used by multi-file scenes):
- :class:`BandGroup` = files on one pixel grid; :func:`write_band_group` writes its chunk files (all levels)
  and returns its catalog rows (:class:`GroupWrite`), committing nothing;
- :func:`commit_item` appends the rows of all an item's groups plus its properties in ONE Iceberg commit;
- :func:`ingest_file` = one file = one group = one item, built on the two.

Protocol (DESIGN 2.3): write every chunk file under a unique name, then one Iceberg ``append`` of their rows.
Nothing is visible before the commit, and a crash before it leaves only unreferenced files for ``gc``.
Pixels are never resampled at level 0; overview levels are 2x decimations (average or nearest by product).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np
import pyarrow as pa
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from . import catalog as cat
from .chunks import Chunk, ChunkFileWriter, check_codec
from .crs import transformer
from .fileio import WarehouseFS
from .grid import GridError, StorageGrid, crs_id, grid_for, overview_count
from .profiles import (
    BandSpec,
    ProductProfile,
    ProfileError,
    detect_product,
    get_profile,
    resolve_bands,
)
from .temporal import parse_instant

log = logging.getLogger(__name__)

#: Chunk buffer codec when the collection does not set one (chosen by benchmarks/storage.py, see docs/storage.md)
DEFAULT_COMPRESSION: str | None = "zstd"
#: Iceberg table property that overrides the codec per collection (``none``, ``lz4`` or ``zstd``)
COMPRESSION_PROPERTY = "pixelquery.chunk-compression"
from .names import NAME_RE as _NAME_RE  # noqa: E402  (one home for the id rule)


class IngestError(ValueError):
    """The file cannot be ingested; nothing was committed."""


@dataclass(frozen=True)
class IngestResult:
    """What one ingest committed: the CLI prints it and scripts read it as JSON, so it names the snapshot."""

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
        """A JSON-ready dict (``Z`` datetime, list bbox) for ``ingest --json`` and job results."""
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
                return dt.datetime.strptime(value.strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=dt.UTC)
            except ValueError:
                try:
                    return parse_instant(value.strip())
                except ValueError:
                    log.warning("ignoring unparsable %s tag %r", key, value)
    name = PurePath(path).name
    if m := _SENTINEL_DATE.search(name):
        return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    if m := _LANDSAT_DATE.search(name):
        return dt.datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=dt.UTC)
    return None


def _check_georeferenced(src: rasterio.DatasetReader, path: str) -> None:
    """Pixels without a CRS and geotransform cannot be placed on a grid: refuse them before any work."""
    if src.crs is None:
        raise IngestError(f"{path}: not georeferenced (no CRS)")
    if src.transform == Affine.identity() and not src.gcps[0]:
        raise IngestError(f"{path}: not georeferenced (no geotransform)")


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
    sums: np.ndarray = values[:, 0::2, 0::2].astype(acc)
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
    lon, lat = transformer(crs.to_wkt(), "EPSG:4326").transform(xs, ys)
    lon, lat = np.asarray(lon), np.asarray(lat)
    out = np.stack([lon.min(axis=1), lat.min(axis=1), lon.max(axis=1), lat.max(axis=1)], axis=1)
    bad = ~np.isfinite(out).all(axis=1) | (out[:, 2] - out[:, 0] > 180)
    for k in np.flatnonzero(bad):
        out[k] = transform_bounds(crs, "EPSG:4326", *bounds[k], densify_pts=densify)
    return out


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
        return datetime if datetime.tzinfo else datetime.replace(tzinfo=dt.UTC)
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


@dataclass(frozen=True)
class BandFile:
    """One source file's contribution to a band group.

    ``path`` is a local path or any GDAL path/URL (``/vsicurl/https://...``, ``/vsis3/bucket/key``).
    ``bands`` names the bands read from it, in order; ``indexes`` are their 1-based band indexes in the file
    (``None``: every non-alpha band, which must then be ``len(bands)`` of them).
    """

    path: str
    bands: tuple[BandSpec, ...]
    indexes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class BandGroup:
    """Bands that share one pixel grid (same CRS, transform and shape), from one or more files.

    A Landsat scene is one group of seven single-band files; a Sentinel-2 scene is a 10 m group and a 20 m
    group. ``name`` keeps the group's chunk files apart inside the item's folder (unique within an item;
    ``""`` for a single-group item). ``nodata`` overrides the files' own nodata and the product's.
    """

    files: tuple[BandFile, ...]
    name: str = ""
    nodata: float | None = None


@dataclass
class GroupWrite:
    """What :func:`write_band_group` wrote: the group's catalog rows plus what the item properties need."""

    rows: list[dict[str, Any]]
    bands: list[str]
    crs: str
    gsd: float
    shape: tuple[int, int]  # (height, width) at level 0
    levels: int
    bbox: tuple[float, float, float, float]  # WGS84 of the level-0 chunks
    sources: list[str]


def new_item_id(path: str, when: dt.datetime) -> str:
    """A unique item id from a source name and acquisition date (``<stem>-<yyyymmdd>-<8 hex>``)."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", PurePath(path).stem)[:80].strip("-_") or "item"
    return f"{stem}-{when:%Y%m%d}-{uuid.uuid4().hex[:8]}"


#: GDAL block cache while ingesting (MB). Windows are read once each, so a cache only has to hold the blocks
#: of one strip; GDAL's default (5% of RAM) would otherwise grow with the file and defeat O(strip) memory.
INGEST_GDAL_CACHE_MB = 64
#: Source block heights up to this are read whole (see ``_OpenGroup.read``); taller strips are read as asked
MAX_READ_AHEAD_ROWS = 1024
#: Rows decimated at a time (even, so 2x2 blocks never straddle two slabs)
DECIMATE_SLAB_ROWS = 128


@dataclass
class _OpenGroup:
    """The open datasets of one band group, checked to share one pixel grid, and how validity is known.

    Validity per file: the file's nodata, else its internal mask / alpha band, else the product profile's
    nodata (e.g. Landsat C2 zeros), else every pixel is valid.
    """

    datasets: list[tuple[rasterio.DatasetReader, tuple[int, ...], float | None, bool]]  # ds, indexes, nodata, mask
    transform: Affine
    crs: rasterio.crs.CRS
    width: int
    height: int
    dtype: np.dtype
    nodata: float | None  # the group's stored nodata (None when files disagree or only masks apply)
    has_mask: bool  # chunks carry a validity column (masks, or nodata that differs between files)
    block_rows: int = 1  # the first file's block height: reads are extended to whole block rows
    _ahead: tuple[int, np.ndarray, np.ndarray] | None = None  # rows read past the last request: (first row, ...)

    def read(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[r0, r1)`` of every band: ``(data, valid)``, each ``(bands, r1 - r0, width)``.

        Storage chunk rows rarely line up with the source's tile rows, and GDAL decodes (over ``/vsis3/`` and
        ``/vsicurl/``: fetches) a tile row again for each strip that cuts it. So each read runs to the end of a
        block row and the rows past ``r1`` are kept for the next, sequential, call: every block is read once.
        """
        start, parts, ahead = r0, [], self._ahead
        self._ahead = None
        if ahead is not None and ahead[0] == r0:
            n = min(r1 - r0, ahead[1].shape[1])
            parts.append((ahead[1][:, :n], ahead[2][:, :n]))
            start = r0 + n
            if n < ahead[1].shape[1]:
                self._ahead = (r1, ahead[1][:, n:], ahead[2][:, n:])
        if start < r1:
            end = min(self.height, -(-r1 // self.block_rows) * self.block_rows)
            data, valid = self._read_rows(start, end)
            parts.append((data[:, : r1 - start], valid[:, : r1 - start]))
            if end > r1:
                self._ahead = (r1, data[:, r1 - start :].copy(), valid[:, r1 - start :].copy())
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([d for d, _ in parts], axis=1), np.concatenate([v for _, v in parts], axis=1)

    def _read_rows(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        window = Window(0, r0, self.width, r1 - r0)
        parts, valids = [], []
        for ds, indexes, nodata, masked in self.datasets:
            try:
                data = ds.read(list(indexes), window=window)
                if masked:
                    valid = np.broadcast_to(ds.dataset_mask(window=window) > 0, data.shape)
                elif nodata is None:
                    valid = np.ones(data.shape, bool)
                else:
                    valid = ~np.isnan(data) if np.isnan(nodata) else data != nodata
            except (RasterioError, OSError) as exc:
                reason = _root_cause(exc)
                raise IngestError(f"{ds.name}: cannot read raster, truncated or corrupt? ({reason})") from None
            parts.append(data.astype(self.dtype, copy=False))
            valids.append(valid)
        if len(parts) == 1:
            return parts[0], valids[0]
        return np.concatenate(parts), np.concatenate(valids)


def _open_group(group: BandGroup, profile: ProductProfile, stack: contextlib.ExitStack) -> _OpenGroup:
    datasets = []
    first = None
    for bf in group.files:
        if not os.path.exists(bf.path) and "://" not in bf.path and not bf.path.startswith("/vsi"):
            raise IngestError(f"{bf.path}: no such file")
        try:
            ds = stack.enter_context(rasterio.open(bf.path))
        except (RasterioError, OSError) as exc:
            raise IngestError(f"{bf.path}: cannot read raster ({_root_cause(exc)})") from None
        _check_georeferenced(ds, bf.path)
        alpha = [i for i, ci in enumerate(ds.colorinterp, 1) if ci == ColorInterp.alpha]
        indexes = bf.indexes or tuple(i for i in range(1, ds.count + 1) if i not in alpha)
        if not all(1 <= i <= ds.count for i in indexes):
            raise IngestError(f"{bf.path}: band index out of range 1..{ds.count}: {list(indexes)}")
        if len(indexes) != len(bf.bands):
            raise IngestError(f"{bf.path}: has {len(indexes)} band(s) but {len(bf.bands)} are named")
        if first is None:
            first = ds
        elif (ds.crs, ds.transform, ds.width, ds.height) != (first.crs, first.transform, first.width, first.height):
            raise IngestError(f"{bf.path}: not on the same pixel grid as {group.files[0].path}")
        masked = False
        nodata = group.nodata if group.nodata is not None else ds.nodata
        if nodata is None and (alpha or MaskFlags.all_valid not in ds.mask_flag_enums[indexes[0] - 1]):
            masked = True
        elif nodata is None:
            nodata = profile.nodata
        datasets.append((ds, tuple(indexes), nodata, masked))
    if first is None:
        raise IngestError("a band group needs at least one file")
    if first.width == 0 or first.height == 0:
        raise IngestError(f"{group.files[0].path}: raster is empty")
    dtype = np.result_type(*{np.dtype(d.dtypes[i - 1]) for d, idx, _, _ in datasets for i in idx})
    nodatas = {None if m else nd for _, _, nd, m in datasets}
    nodata = nodatas.pop() if len(nodatas) == 1 else None
    has_mask = any(m for *_, m in datasets) or (nodata is None and any(nd is not None for _, _, nd, _ in datasets))
    # a whole-file strip (untiled, one strip) must not turn the first read into the whole raster
    block_rows = first.block_shapes[0][0] if first.block_shapes else 1
    block_rows = block_rows if 1 <= block_rows <= MAX_READ_AHEAD_ROWS else 1
    return _OpenGroup(
        datasets, first.transform, first.crs, first.width, first.height, dtype, nodata, has_mask, block_rows
    )


@dataclass
class _GroupJob:
    """State shared by the level streams of one :func:`write_band_group` call."""

    fs: WarehouseFS
    stack: contextlib.ExitStack
    src: _OpenGroup
    grid: StorageGrid
    prefix: str
    band_names: list[str]
    crs: str
    levels: int
    resampling: str
    fill: float
    compression: str | None
    base: dict[str, Any]  # row fields common to every chunk of the group
    rows: list[dict[str, Any]]

    def row(
        self,
        chunk: Chunk,
        level: int,
        relpath: str,
        batch: int,
        native: np.ndarray,
        lonlat: np.ndarray,
        bstats: list[tuple[float, float, float]],
        valid_pct: float,
    ) -> dict[str, Any]:
        minx, miny, maxx, maxy = (float(v) for v in native)
        west, south, east, north = (float(v) for v in lonlat)
        return dict(
            self.base,
            tile_id=chunk.tile_id,
            level=level,
            minx=minx,
            miny=miny,
            maxx=maxx,
            maxy=maxy,
            west=west,
            south=south,
            east=east,
            north=north,
            res_x=chunk.transform.a,
            res_y=-chunk.transform.e,
            height=chunk.height,
            width=chunk.width,
            transform=list(chunk.transform)[:6],
            chunk_file=relpath,
            batch_index=batch,
            band_min=[s[0] for s in bstats],
            band_max=[s[1] for s in bstats],
            band_mean=[s[2] for s in bstats],
            valid_percent=valid_pct,
        )


class _LevelStream:
    """One level of a band group: buffers rows until a chunk row is complete, writes it, feeds the next level.

    Rows arrive top to bottom. A chunk row (the pixel rows whose centres fall in one tile row) is written as
    soon as it is complete; rows are handed to the next level in pairs (its 2x decimation), so the buffer
    never holds more than one chunk row plus one row.

    Validity: groups with masks store the ``valid`` column in every chunk. Groups with a nodata value store
    none, except where an averaged overview pixel that is valid happens to equal nodata: such a chunk goes to
    a second file of the level (``L<k>-valid.arrow``) with per-band validity columns, so the rare collision
    costs bytes only where it occurs (rows name their own file, so readers need no other hint).
    """

    def __init__(self, job: _GroupJob, level: int, width: int, height: int, transform: Affine):
        self.job, self.level, self.width, self.height, self.transform = job, level, width, height, transform
        self.row_runs = job.grid.row_runs(transform, height, level)
        self.col_runs = job.grid.col_runs(transform, width, level)
        self.next_run = 0
        self.start = 0  # level row index of buffer row 0
        self.decimated = 0  # rows already handed to the next level
        self.data: np.ndarray | None = None
        self.valid: np.ndarray | None = None
        self.writers: dict[str, ChunkFileWriter] = {}  # by relpath, opened on their first chunk
        self.relpath = f"{job.prefix}L{level}.arrow"
        self.band_valid_relpath = f"{job.prefix}L{level}-valid.arrow"  # chunks where valid pixels equal nodata
        self.with_valid = job.src.has_mask
        # level 0 pixels equal to nodata are invalid by definition; only averages can collide with it
        self.collisions = level > 0 and not job.src.has_mask and job.src.nodata is not None

    @property
    def end(self) -> int:
        return self.start + (0 if self.data is None else self.data.shape[1])

    def push(self, data: np.ndarray, valid: np.ndarray, final: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """Append rows; write complete chunk rows; return the decimated rows for the next level (if any)."""
        if self.data is None or self.valid is None or self.data.shape[1] == 0:
            self.data, self.valid = data, valid
        elif data.shape[1]:
            self.data = np.concatenate([self.data, data], axis=1)
            self.valid = np.concatenate([self.valid, valid], axis=1)
        while self.next_run < len(self.row_runs) and self.row_runs[self.next_run][1][1] <= self.end:
            self._write_row(*self.row_runs[self.next_run])
            self.next_run += 1
        out = None
        if self.job.levels > self.level + 1:
            stop = self.end if final else self.decimated + (self.end - self.decimated) // 2 * 2
            if stop > self.decimated:
                # in slabs of rows: decimation's temporaries (sums, counts, means) stay a fraction of a strip
                a, b = self.decimated - self.start, stop - self.start
                slabs = [slice(i, min(i + DECIMATE_SLAB_ROWS, b)) for i in range(a, b, DECIMATE_SLAB_ROWS)]
                parts = [
                    decimate(self.data[:, rows], self.valid[:, rows], self.job.resampling, self.job.fill)
                    for rows in slabs
                ]
                out = (
                    parts[0]
                    if len(parts) == 1
                    else (np.concatenate([d for d, _ in parts], axis=1), np.concatenate([v for _, v in parts], axis=1))
                )
                self.decimated = stop
        else:
            self.decimated = self.end
        pending = self.row_runs[self.next_run][1][0] if self.next_run < len(self.row_runs) else self.end
        keep = min(self.decimated, pending)
        if keep > self.start:
            cut = keep - self.start
            self.data, self.valid = self.data[:, cut:].copy(), self.valid[:, cut:].copy()
            self.start = keep
        return out

    def _write_row(self, tile_row: int, span: tuple[int, int]) -> None:
        r0, r1 = span
        a, b = r0 - self.start, r1 - self.start
        job = self.job
        assert self.data is not None and self.valid is not None  # push() buffers rows before it writes any
        chunks, stats = [], []
        for tile_col, (c0, c1) in self.col_runs:
            cvalid = self.valid[:, a:b, c0:c1]
            if not cvalid.any():
                continue  # all-nodata chunks are not stored
            any_valid = np.asarray(cvalid.any(axis=0))
            cdata = self.data[:, a:b, c0:c1]
            tile_id = job.grid.tile_id(self.level, tile_col, tile_row)
            transform = self.transform @ Affine.translation(c0, r0)
            valid: np.ndarray | None = any_valid if self.with_valid else None
            if self.collisions and (cvalid & (cdata == job.fill)).any():
                valid = cvalid.copy()  # per band: the value alone would mask these pixels
            chunks.append(Chunk(tile_id, transform, cdata, valid))
            stats.append(([_band_stats(x, v) for x, v in zip(cdata, cvalid, strict=True)], 100.0 * any_valid.mean()))
        if not chunks:
            return
        native = np.array(
            [
                (
                    c.transform.c,
                    c.transform.f + c.height * c.transform.e,
                    c.transform.c + c.width * c.transform.a,
                    c.transform.f,
                )
                for c in chunks
            ],
            float,
        )
        lonlat = chunk_wgs84_bounds(job.src.crs, native)
        for chunk, (bstats, valid_pct), nat, ll in zip(chunks, stats, native, lonlat, strict=True):
            relpath = self.band_valid_relpath if chunk.valid is not None and chunk.valid.ndim == 3 else self.relpath
            batch = self._writer(relpath).write(chunk)
            job.rows.append(job.row(chunk, self.level, relpath, batch, nat, ll, bstats, valid_pct))

    def _writer(self, relpath: str) -> ChunkFileWriter:
        """The level's file, or its per-band validity file; each opened on its first chunk."""
        writer = self.writers.get(relpath)
        if writer is None:
            job, band_valid = self.job, relpath == self.band_valid_relpath
            writer = ChunkFileWriter(
                job.fs,
                relpath,
                job.band_names,
                job.src.dtype,
                job.crs,
                job.src.nodata,
                self.with_valid and not band_valid,
                job.compression,
                band_valid=band_valid,
            )
            self.writers[relpath] = job.stack.enter_context(writer)
        return writer


def write_band_group(
    fs: WarehouseFS,
    collection: str,
    item_id: str,
    when: dt.datetime,
    group: BandGroup,
    profile: ProductProfile,
    progress: Callable[[str], None] | None = None,
    compression: str | None = DEFAULT_COMPRESSION,
) -> GroupWrite:
    """Write one band group's chunk files (level 0 and every overview) and return its catalog rows.

    Streams: the source is read one level-0 chunk row at a time (a window over the full width, so local,
    ``/vsicurl/`` and ``/vsis3/`` sources are read by range, never downloaded whole), each level writes its
    chunk rows as they complete into one Arrow IPC file per level, and overviews are decimated from the
    rows of the level below. Peak memory is about two level-0 chunk rows, whatever the file size.

    Nothing is visible until :func:`commit_item` appends the rows; a failure here leaves only
    unreferenced chunk files for ``gc``. Raises ``IngestError`` when the group has no valid pixel.
    """
    try:
        compression = check_codec(compression)
    except ValueError as exc:
        raise IngestError(str(exc)) from None
    band_names = [b.common_name for bf in group.files for b in bf.bands]
    sources = [PurePath(bf.path).name for bf in group.files]
    with rasterio.Env(GDAL_CACHEMAX=INGEST_GDAL_CACHE_MB), contextlib.ExitStack() as stack:
        src = _open_group(group, profile, stack)
        try:
            grid = grid_for(src.crs, src.transform.a)
            grid.partition(src.transform, 1, 1, 0)  # validates the transform before any write
        except GridError as exc:
            raise IngestError(f"{group.files[0].path}: {exc}") from None
        levels = min(1 + overview_count(src.width, src.height), grid.max_levels)
        crs = crs_id(src.crs)
        base = {
            "item_id": item_id,
            "collection": collection,
            "product": profile.id,
            "datetime": when,
            "crs": crs,
            "bands": band_names,
            "dtype": src.dtype.name,
            "nodata": src.nodata,
            "cloud_cover": None,
        }
        prefix = f"chunks/{collection}/{when:%Y/%m}/{item_id}/" + (f"{group.name}-" if group.name else "")
        fill = src.nodata if src.nodata is not None else 0
        job = _GroupJob(
            fs,
            stack,
            src,
            grid,
            prefix,
            band_names,
            crs,
            levels,
            profile.overview_resampling,
            fill,
            compression,
            base,
            [],
        )
        streams, width, height, transform = [], src.width, src.height, src.transform
        for level in range(levels):
            streams.append(_LevelStream(job, level, width, height, transform))
            width, height, transform = math.ceil(width / 2), math.ceil(height / 2), transform @ Affine.scale(2)
        strips = streams[0].row_runs
        for k, (_, (r0, r1)) in enumerate(strips):
            rows: tuple[np.ndarray, np.ndarray] | None = src.read(r0, r1)
            for stream in streams:
                if rows is None:
                    break
                rows = stream.push(*rows, final=k == len(strips) - 1)
            if progress:
                progress(f"rows {r1}/{src.height}: {len(job.rows)} chunks")
    out = job.rows
    if not out:
        raise IngestError(f"{', '.join(sources)}: raster has no valid pixels")
    level0 = [r for r in out if r["level"] == 0]
    bbox = (
        min(r["west"] for r in level0),
        min(r["south"] for r in level0),
        max(r["east"] for r in level0),
        max(r["north"] for r in level0),
    )
    out.sort(key=lambda r: (r["level"], r["batch_index"]))
    log.debug(
        "band group %s of %s: %d chunks, level 0 on zoom %d", group.name or "-", item_id, len(out), grid.base_zoom
    )
    return GroupWrite(out, band_names, crs, float(src.transform.a), (src.height, src.width), levels, bbox, sources)


def commit_item(
    fs: WarehouseFS,
    catalog: Any,
    collection: str,
    item_id: str,
    when: dt.datetime,
    profile: ProductProfile,
    groups: list[GroupWrite],
    source: str,
    extra_properties: dict[str, Any] | None = None,
) -> IngestResult:
    """Make one item visible: the rows of all its band groups and its properties in ONE Iceberg append.

    Item-level ``crs``/``gsd``/``shape`` describe the finest group (the STAC ``proj:`` fields); ``bands``
    lists every group's bands in order; ``band_groups`` keeps each group's own grid. The collection's table
    is created on first use. Concurrent commits are serialised by :func:`catalog.commit_append`.
    """
    if not groups:
        raise IngestError(f"item {item_id}: no band groups to commit")
    finest = min(groups, key=lambda g: g.gsd)
    rows = [r for g in groups for r in g.rows]
    bbox = (
        min(g.bbox[0] for g in groups),
        min(g.bbox[1] for g in groups),
        max(g.bbox[2] for g in groups),
        max(g.bbox[3] for g in groups),
    )
    props: dict[str, Any] = {
        "item_id": item_id,
        "datetime": when.isoformat(),
        "product": profile.id,
        "source": source,
        "crs": finest.crs,
        "gsd": finest.gsd,
        "bbox": list(bbox),
        "bands": [b for g in groups for b in g.bands],
        "levels": max(g.levels for g in groups),
        "chunk_count": len(rows),
        "shape": list(finest.shape),
    }
    if len(groups) > 1:
        props["band_groups"] = [
            {"bands": g.bands, "crs": g.crs, "gsd": g.gsd, "shape": list(g.shape), "sources": g.sources} for g in groups
        ]
    props.update(extra_properties or {})
    properties = cat.item_properties(props)
    table = pa.Table.from_pylist(rows, schema=cat.ARROW_SCHEMA)

    def load_or_create() -> Any:
        """The table to append to (one catalog read per attempt; the collection is created on first use)."""
        existing = cat.load_table(catalog, collection)
        return existing if existing is not None else cat.create_table(catalog, fs, collection)

    snap = cat.commit_append(load_or_create, table, properties, item_id)
    log.info("committed %s as %s (snapshot %s, %d chunks)", source, item_id, snap.snapshot_id, len(rows))
    return IngestResult(
        item_id, snap.snapshot_id, collection, when, bbox, profile.id, props["levels"], len(rows), source
    )


def collection_compression(catalog: Any, collection: str) -> str | None:
    """The chunk codec of a collection: its table property :data:`COMPRESSION_PROPERTY`, else the default.

    Set it with pyiceberg (``table.transaction().set_properties({COMPRESSION_PROPERTY: "zstd"})``); it
    applies to items ingested afterwards, and readers handle every codec, so a collection may mix them.
    """
    table = cat.load_table(catalog, collection)
    value = table.properties.get(COMPRESSION_PROPERTY) if table is not None else None
    if value is None:
        return DEFAULT_COMPRESSION
    try:
        return check_codec(value)
    except ValueError as exc:
        raise IngestError(f"collection {collection!r}: table property {COMPRESSION_PROPERTY}: {exc}") from None


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
    """Ingest one file as one snapshot (one file = one band group = one item).

    Raises ``IngestError`` (nothing committed) on bad input.
    """
    check_name("collection", collection)
    plan = inspect_source(path, product, datetime, bands)
    item_id = new_item_id(path, plan.when)
    group = BandGroup((BandFile(path, tuple(plan.bands)),))
    codec = collection_compression(catalog, collection)
    written = write_band_group(fs, collection, item_id, plan.when, group, plan.profile, progress, codec)
    return commit_item(fs, catalog, collection, item_id, plan.when, plan.profile, [written], PurePath(path).name)
