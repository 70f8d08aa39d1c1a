"""Scenes: which sources become one item, and ingesting them as one snapshot.

Satellite products arrive as one file per band (Landsat Collection 2: ``<product id>_SR_B4.TIF``; Sentinel-2
L2A: ``T21JYN_20200523T133239_B04_10m.tif``) or as a STAC Item whose assets are those files. An item is the
scene, not the file: this module groups sources into :class:`ItemPlan` s (one per item), checks everything that
can be checked from headers before any pixel is read, splits each item's files into *band groups* (files that
share one pixel grid; a Sentinel-2 scene has a 10 m and a 20 m group) and ingests a plan as one Iceberg
append. Bands are never resampled at ingest: each group keeps its native grid.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds

from . import catalog as cat
from .grid import GridError, grid_for
from .ingest import (
    BandFile,
    BandGroup,
    IngestError,
    IngestResult,
    check_name,
    collection_compression,
    commit_item,
    detect_datetime,
    new_item_id,
    write_band_group,
)
from .profiles import (
    BandSpec,
    ProductProfile,
    ProfileError,
    detect_product,
    get_profile,
    profile_fit_warnings,
    resolve_bands,
)
from .sources import (
    Fingerprint,
    SourceError,
    StacItemSource,
    gdal_path,
    load_stac_item,
    looks_like_stac,
    parse_stac_item,
    probe,
    remote_env,
    resolve,
    stac_self_href,
)
from .temporal import parse_instant

log = logging.getLogger(__name__)

#: Landsat Collection 2 band file: product id, then ``_SR_``/``_ST_`` and the band (``B4``, ``B10``)
LANDSAT_C2 = re.compile(
    r"^(L[COTEM]0\d_L\d[A-Z]{2}_\d{6}_\d{8}_\d{8}_\d{2}_[A-Z0-9]{2})_(?:SR|ST)_(B\d{1,2})\.TIFF?$", re.IGNORECASE
)
#: Sentinel-2 L2A band file: tile and sensing time, the band (``B04``, ``B8A``), optionally its resolution
SENTINEL2_L2A = re.compile(r"^(T\d{2}[A-Z]{3}_\d{8}T\d{6})_(B\d{2}|B8A)(?:_\d{2}m)?\.(?:tif|tiff|jp2)$", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")


def scene_key(location: str) -> tuple[str, str, str] | None:
    """``(scene id, band name, product)`` of a file named by a known convention, else ``None``."""
    name = PurePosixPath(location.split("?", 1)[0]).name
    if m := LANDSAT_C2.match(name):
        return m.group(1).upper(), m.group(2).upper(), "landsat-c2-l2"
    if m := SENTINEL2_L2A.match(name):
        return m.group(1).upper(), m.group(2).upper(), "sentinel-2-l2a"
    return None


@dataclass
class FileHeader:
    """What one source file's header says (read once, through GDAL, remote or local)."""

    location: str
    fingerprint: Fingerprint
    count: int
    crs: Any
    transform: Any
    shape: tuple[int, int]
    wgs84: tuple[float, float, float, float]
    tags: dict[str, str]
    dtype: str = "uint16"

    @property
    def grid_key(self) -> tuple:
        """Files of one pixel grid (CRS, transform, shape) form one band group."""
        return (self.crs.to_wkt(), tuple(self.transform)[:6], self.shape)


def read_header(location: str) -> FileHeader:
    """Probe a source (reachability: one line on failure) and read its raster header."""
    fingerprint = probe(location)
    try:
        with remote_env(), rasterio.open(gdal_path(location, fingerprint.ranges)) as src:
            if src.crs is None:
                raise SourceError(f"{location}: not georeferenced (no CRS)")
            count = sum(1 for ci in src.colorinterp if ci != ColorInterp.alpha)
            wgs84 = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
            header = FileHeader(
                location,
                fingerprint,
                count,
                src.crs,
                src.transform,
                (src.height, src.width),
                wgs84,
                src.tags(),
                src.dtypes[0],
            )
    except SourceError:
        raise
    except (RasterioError, OSError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{location}: cannot read raster ({text})") from None
    try:
        grid_for(header.crs).partition(header.transform, 1, 1, 0)
    except GridError as exc:
        raise SourceError(f"{location}: {exc}") from None
    return header


@dataclass
class ItemPlan:
    """One item to ingest: its id, time, product, band groups and the sources it is made of."""

    item_id: str
    when: dt.datetime
    profile: ProductProfile
    groups: list[BandGroup]
    sources: list[Fingerprint]
    label: str  # what the progress line and the item's ``source`` property show
    properties: dict[str, Any] = field(default_factory=dict)  # a STAC item's other properties
    fixed_id: bool = False  # the id came from the source (a STAC item): never re-suffixed silently

    @property
    def bands(self) -> list[str]:
        """The item's band names in group and file order (what ``--bands`` and the STAC item list)."""
        return [b.common_name for g in self.groups for f in g.files for b in f.bands]

    @property
    def locations(self) -> list[str]:
        """The item's source locations, as the catalog records them."""
        return [s.uri for s in self.sources]


def _when(datetime: str | dt.datetime | None, headers: list[FileHeader]) -> dt.datetime:
    if isinstance(datetime, dt.datetime):
        return datetime if datetime.tzinfo else datetime.replace(tzinfo=dt.UTC)
    if datetime:
        try:
            return parse_instant(str(datetime))
        except ValueError as exc:
            raise IngestError(f"bad --datetime {datetime!r}: {exc}") from None
    for h in headers:
        if (when := detect_datetime(PurePosixPath(h.location).name, h.tags)) is not None:
            return when
    raise IngestError(f"{headers[0].location}: no acquisition datetime in TIFF tags or file name; pass --datetime")


def _band_spec(profile: ProductProfile, name: str) -> BandSpec:
    name = _IDENTIFIER.sub("_", name)
    if not re.match(r"[A-Za-z_]", name):
        name = f"b_{name}"
    spec = profile.band(name)
    return BandSpec(spec.name, spec.common_name, spec.center_wavelength, spec.gsd) if spec else BandSpec(name, name)


def _groups(label: str, files: list[tuple[FileHeader, tuple[BandSpec, ...]]]) -> list[BandGroup]:
    """Split an item's files into band groups by pixel grid, after checking bands are unique and files overlap."""
    seen: dict[str, str] = {}
    for header, specs in files:
        for spec in specs:
            if spec.common_name in seen:
                raise IngestError(
                    f"{label}: two files for band {spec.common_name!r}: {seen[spec.common_name]} and {header.location}"
                )
            seen[spec.common_name] = header.location
    first = files[0][0].wgs84
    for header, _ in files[1:]:
        w, s, e, n = header.wgs84
        if w >= first[2] or e <= first[0] or s >= first[3] or n <= first[1]:
            raise IngestError(f"{label}: {header.location} does not overlap {files[0][0].location}")
    by_grid: dict[tuple, list[BandFile]] = {}
    gsd: dict[tuple, float] = {}
    for header, specs in files:
        path = gdal_path(header.location, header.fingerprint.ranges)
        by_grid.setdefault(header.grid_key, []).append(BandFile(path, specs))
        gsd[header.grid_key] = abs(header.transform.a)
    if len(by_grid) == 1:
        return [BandGroup(tuple(next(iter(by_grid.values()))))]
    groups: list[BandGroup] = []
    names: set[str] = set()
    for key, bfiles in by_grid.items():
        name = f"{gsd[key]:g}m".replace(".", "p")
        name = name if name not in names else f"{name}-{len(names)}"
        names.add(name)
        groups.append(BandGroup(tuple(bfiles), name=name))
    return groups


def _file_bands(
    profile: ProductProfile, header: FileHeader, band: str | None, names: list[str] | None
) -> tuple[BandSpec, ...]:
    try:
        if names is not None:
            return tuple(resolve_bands(profile, header.count, header.location, names))
        if band is not None and (spec := profile.band(band)) is not None and header.count == 1:
            return (spec,)
        return tuple(resolve_bands(profile, header.count, header.location))
    except ProfileError as exc:
        raise IngestError(f"{header.location}: {exc}") from None


def _split_bands(bands: list[str] | None, headers: list[FileHeader]) -> list[list[str] | None]:
    """``--bands`` names every band of every file of a scene, in order: one slice per file."""
    if bands is None:
        return [None] * len(headers)
    total = sum(h.count for h in headers)
    if len(bands) != total:
        raise IngestError(f"--bands names {len(bands)} band(s) but the scene's files have {total}")
    out: list[list[str] | None] = []
    i = 0
    for h in headers:
        out.append(bands[i : i + h.count])
        i += h.count
    return out


def _raster_plan(
    locations: list[str],
    keyed: dict[str, tuple[str, str, str]],
    scene_id: str | None,
    product: str | None,
    datetime: Any,
    bands: list[str] | None,
) -> ItemPlan:
    headers = [read_header(loc) for loc in locations]
    first = keyed.get(locations[0])
    try:
        if product:
            profile = get_profile(product)
        elif first is not None:
            profile = get_profile(first[2])
        else:
            profile = detect_product(PurePosixPath(locations[0]).name, sum(h.count for h in headers))
    except ProfileError as exc:
        raise IngestError(str(exc)) from None
    if product:
        for warning in profile_fit_warnings(profile, sum(h.count for h in headers), headers[0].dtype, bands):
            log.warning("%s: %s", locations[0], warning)
    label = scene_id or PurePosixPath(locations[0]).name
    names = _split_bands(bands, headers)
    files = [
        (h, _file_bands(profile, h, keyed[h.location][1] if h.location in keyed else None, n))
        for h, n in zip(headers, names, strict=True)
    ]
    when = _when(datetime, headers)
    item_id = scene_id if scene_id else new_item_id(locations[0], when)
    return ItemPlan(item_id, when, profile, _groups(label, files), [h.fingerprint for h in headers], label)


def _stac_plan(item: StacItemSource, product: str | None, datetime: Any, bands: list[str] | None) -> ItemPlan:
    headers = [read_header(a.location) for a in item.assets]
    try:
        if product:
            profile = get_profile(product)
        else:
            profile = detect_product(PurePosixPath(item.assets[0].location).name, sum(h.count for h in headers))
    except ProfileError as exc:
        raise IngestError(str(exc)) from None
    names = _split_bands(bands, headers)
    files = []
    for asset, header, given in zip(item.assets, headers, names, strict=True):
        if given is not None:
            specs = tuple(_band_spec(profile, n) for n in given)
        elif asset.bands:
            if len(asset.bands) != header.count:
                raise IngestError(
                    f"{asset.location}: asset {asset.key!r} lists {len(asset.bands)} band(s) "
                    f"but the file has {header.count}"
                )
            specs = tuple(_band_spec(profile, n) for n in asset.bands)
        else:
            keys = [asset.key] if header.count == 1 else [f"{asset.key}_{i}" for i in range(1, header.count + 1)]
            specs = tuple(_band_spec(profile, k) for k in keys)
        files.append((header, specs))
    when = _when(datetime or item.datetime, headers)
    item_id = re.sub(r"[^A-Za-z0-9_-]", "-", item.id)[:128]
    try:
        check_name("item id", item_id)
    except IngestError:
        item_id = new_item_id(item.id, when)
    fingerprints = [Fingerprint(item.location), *(h.fingerprint for h in headers)]
    return ItemPlan(
        item_id, when, profile, _groups(item.id, files), fingerprints, item.id, dict(item.properties), fixed_id=True
    )


def plan_items(
    sources: list[str],
    *,
    scene: bool = False,
    assets: list[str] | None = None,
    product: str | None = None,
    datetime: str | dt.datetime | None = None,
    bands: list[str] | None = None,
    stac_docs: list[dict[str, Any]] | None = None,
) -> list[ItemPlan]:
    """Group ``sources`` into items and check every header; raises ``IngestError`` (one line) on bad input.

    STAC Items are one item each; files named by the Landsat C2 / Sentinel-2 L2A conventions are grouped by
    scene; ``scene=True`` makes all files one item; any other file is an item of its own. ``stac_docs`` are STAC
    Items already in hand (a search result), located by their ``self`` link.
    """
    docs = [parse_stac_item(d, stac_self_href(d) or f"stac:{d.get('id')}", assets) for d in stac_docs or []]
    if not sources and docs:
        return [_stac_plan(item, product, datetime, bands) for item in docs]
    if not sources:
        raise IngestError("no sources given")
    locations = [resolve(s) for s in sources]
    stac = [loc for loc in locations if looks_like_stac(loc)]
    rasters = [loc for loc in locations if not looks_like_stac(loc)]
    if len(set(locations)) != len(locations):
        dup = next(loc for loc in locations if locations.count(loc) > 1)
        raise IngestError(f"{dup}: given twice")
    if scene and stac:
        raise IngestError("--scene groups raster files; a STAC Item is already one item")
    if assets and not stac and not docs:
        raise IngestError("--assets picks assets of STAC Item sources; none given")
    items = [*docs, *(load_stac_item(loc, assets) for loc in stac)]
    plans = [_stac_plan(item, product, datetime, bands) for item in items]
    if scene:
        if rasters:
            plans.append(_raster_plan(rasters, {}, None, product, datetime, bands))
        return plans
    keyed = {loc: k for loc in rasters if (k := scene_key(loc)) is not None}
    scenes: dict[str, list[str]] = {}
    for loc in rasters:
        scenes.setdefault(keyed[loc][0] if loc in keyed else f"\0{loc}", []).append(loc)
    for key, locs in scenes.items():
        if bands is not None and len(locs) > 1:
            raise IngestError(f"--bands with a {len(locs)}-file scene {key}: use --scene to name every file's bands")
        plans.append(_raster_plan(locs, keyed, None if key.startswith("\0") else key, product, datetime, bands))
    return plans


# -- duplicates -----------------------------------------------------------------------------------------------
def ingested_sources(snapshots: list[cat.SnapshotInfo]) -> dict[str, str]:
    """Resolved source location -> item id, for every item at the head, from the snapshots' summary properties.

    Each item records its sources (``pixelquery.sources``) in its snapshot summary, so this reads table
    metadata only, never the chunk rows. A later non-append snapshot that names an item (a delete) frees its
    sources again.
    """
    out: dict[str, str] = {}
    for snap in snapshots:
        item = snap.item_id
        if not item:
            continue
        if snap.operation not in (None, "append"):
            for loc in [loc for loc, owner in out.items() if owner == item]:
                del out[loc]
            continue
        try:
            recorded = json.loads(snap.properties.get("sources", "[]"))
        except ValueError:
            recorded = []
        for entry in recorded:
            if isinstance(entry, dict) and entry.get("uri"):
                out[entry["uri"]] = item
    return out


def item_ids(snapshots: list[cat.SnapshotInfo]) -> set[str]:
    """Ids of the items ingested so far (appended, not deleted), for duplicate checks."""
    return {s.item_id for s in snapshots if s.item_id and s.operation in (None, "append")}


# -- ingest ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemResult:
    """An ingested item: the storage result plus the bands and sources it was made of."""

    result: IngestResult
    bands: list[str]
    sources: list[str]

    def to_json(self) -> dict[str, Any]:
        """The storage result's JSON plus the item's bands and sources (``ingest --json``, job results)."""
        return {**self.result.to_json(), "bands": self.bands, "sources": self.sources}


def ingest_plan(
    fs: Any, catalog: Any, collection: str, plan: ItemPlan, progress: Callable[[str], None] | None = None
) -> ItemResult:
    """Write every band group of ``plan`` and commit them as ONE snapshot (nothing visible on failure)."""
    check_name("collection", collection)
    codec = collection_compression(catalog, collection)
    with remote_env():
        written = [
            write_band_group(fs, collection, plan.item_id, plan.when, group, plan.profile, progress, codec)
            for group in plan.groups
        ]
    extra: dict[str, Any] = {"sources": [s.to_json() for s in plan.sources]}
    if plan.properties:
        extra["properties"] = plan.properties
    result = commit_item(fs, catalog, collection, plan.item_id, plan.when, plan.profile, written, plan.label, extra)
    return ItemResult(result, plan.bands, plan.locations)


def check_duplicates(
    plans: list[ItemPlan], snapshots: list[cat.SnapshotInfo], allow_duplicate: bool = False
) -> list[ItemPlan]:
    """Refuse plans whose sources are already items (one line naming the item); give taken ids a suffix.

    With ``allow_duplicate`` the plans are kept, and an id that is already taken gets a random suffix so the
    new item does not shadow the old one.
    """
    known = ingested_sources(snapshots)
    taken = item_ids(snapshots)
    for plan in plans:
        if not allow_duplicate:
            for loc in plan.locations:
                if loc in known:
                    raise IngestError(
                        f"{loc}: already ingested as item {known[loc]!r} (use --allow-duplicate to ingest it again)"
                    )
        if plan.item_id in taken:
            plan.item_id = f"{plan.item_id[:119]}-{uuid.uuid4().hex[:8]}"
        taken.add(plan.item_id)
    return plans
