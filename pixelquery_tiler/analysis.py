"""Analysis on the lake: a datacube per area and date range, time series per point and per polygon.

Windows are read through ``Collection.read`` (the same read path as tiles: level choice, one warp per
observation, masks kept) in ``_read_observation``; a point's series samples the stored pixel of every observation
at once (``mosaic.sample_pixels``: no warp, each chunk read once); which observations exist comes from the
collection index (``_observations``). Point and polygon series share one loop (``_parts``/``_series``).

- ``query_by_bounds``: one time step per observation (item), or per UTC day with ``groupby="day"`` (same-day
  items mosaicked newest first), at a target resolution in the output CRS -> ``QueryResult`` with
  ``to_numpy()`` / ``to_xarray()`` / ``to_pandas()``.
- ``point_series``: the native pixel under a point, per item covering it, oldest first.
- ``polygon_statistics``: per item, statistics over its native-resolution pixels whose centres fall inside a
  polygon (each observation read on its own level-0 grid, so nothing is resampled).

Band names are common names; expressions use rio-tiler's machinery (``rio_tiler.expression``) evaluated in
float64 so differences of unsigned integers cannot wrap around.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize
from rasterio.transform import from_origin
from rasterio.warp import transform_geom
from rio_tiler.expression import apply_expression, get_expression_blocks

from .bands import expression_bands
from .crs import transform_bounds
from .errors import BandError, InvalidParameter, NoData, OutputTooLarge
from .index import CollectionIndex, ItemView
from .limits import MAX_OUTPUT_PIXELS
from .mosaic import sample_pixels
from .temporal import format_instant, parse_interval

if TYPE_CHECKING:  # pandas/xarray are the optional ``[analysis]`` extra
    import pandas
    import xarray

    from .warehouse import Collection

log = logging.getLogger(__name__)

#: a datacube may hold this many time steps of the per-read output budget (memory bound of one query)
MAX_CUBE_PIXELS = 64 * MAX_OUTPUT_PIXELS
GROUPBY = (None, "day")
UTC = dt.UTC


class MissingExtra(ImportError):
    """An optional dependency of the ``[analysis]`` extra is not installed."""


# -- the read path (the only place that touches Collection.read and the index) ------------------------------------
def _read_observation(
    collection: Collection,
    bounds: tuple[float, float, float, float],
    crs: str,
    width: int,
    height: int,
    bands: list[str],
    *,
    item_id: str | None = None,
    datetime: str | None = None,
    snapshot_id: int | None = None,
    resampling: str = "nearest",
) -> np.ma.MaskedArray | None:
    """(bands, height, width) of one observation (or one day's mosaic), ``None`` where it holds no pixels."""
    try:
        window = collection.read(
            bounds,
            crs,
            width,
            height,
            bands=bands,
            datetime=datetime,
            snapshot_id=snapshot_id,
            item_id=item_id,
            resampling=resampling,
        )
    except NoData:
        return None
    return window.data


@dataclass(frozen=True)
class Grid:
    """The level-0 pixel grid of one band group of an item (a multi-resolution scene has one per resolution)."""

    bands: tuple[str, ...]
    resolution: float  # item CRS units
    origin: tuple[float, float]  # x of a column edge, y of a row edge, item CRS
    entry: int = -1  # the band group's position in the collection index

    def cell(self, x: float, y: float) -> tuple[float, float, float, float]:
        """Bounds of the native pixel containing (x, y)."""
        (ox, oy), res = self.origin, self.resolution
        left, top = ox + math.floor((x - ox) / res) * res, oy - math.floor((oy - y) / res) * res
        return left, top - res, left + res, top

    def window(self, bounds: tuple[float, float, float, float]) -> tuple[tuple[float, float, float, float], int, int]:
        """``bounds`` snapped outwards to whole native pixels: (bounds, width, height)."""
        (ox, oy), res = self.origin, self.resolution
        c0, c1 = math.floor((bounds[0] - ox) / res), math.ceil((bounds[2] - ox) / res)
        r0, r1 = math.floor((oy - bounds[3]) / res), math.ceil((oy - bounds[1]) / res)
        width, height = max(1, c1 - c0), max(1, r1 - r0)
        return (ox + c0 * res, oy - (r0 + height) * res, ox + (c0 + width) * res, oy - r0 * res), width, height


@dataclass(frozen=True)
class Observation:
    """One item as the analysis sees it (from the index): what to read and how to label it."""

    item_id: str
    datetime: dt.datetime
    crs: str
    grids: tuple[Grid, ...]  # finest first

    @property
    def bands(self) -> tuple[str, ...]:
        """Every band of the item, across its band groups (finest grid first)."""
        return tuple(b for grid in self.grids for b in grid.bands)

    def grid_of(self, band: str) -> Grid:
        """The native grid a band is stored on: each band is read at its own resolution, never resampled."""
        return next(grid for grid in self.grids if band in grid.bands)


def _observations(
    collection: Collection,
    wgs84_bbox: tuple[float, float, float, float] | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    snapshot_id: int | None,
) -> tuple[CollectionIndex, list[Observation]]:
    """Visible items intersecting the bbox, oldest acquisition first (ties: the earlier snapshot first)."""
    index = collection.index()
    if snapshot_id is not None:
        index = index.as_of(snapshot_id)  # SnapshotNotFound -> 404; also holds items deleted after it
    positions = index.select_items(wgs84_bbox, start, end, snapshot_id)[::-1]
    # an index may list a multi-resolution item once per band group (same item id): one observation each
    entries: dict[str, list[ItemView]] = {}
    grids: dict[str, list[Grid]] = {}
    for pos in positions:
        item: ItemView = index.items[int(pos)]
        first, _ = index.item_row_range(int(pos), item.levels[0])
        t = index.transform[first]
        entries.setdefault(item.item_id, []).append(item)
        grid = Grid(item.bands, float(item.resolutions[0]), (float(t[2]), float(t[5])), int(pos))
        grids.setdefault(item.item_id, []).append(grid)
    out = [
        Observation(item_id, items[0].datetime, items[0].crs, tuple(sorted(grids[item_id], key=lambda g: g.resolution)))
        for item_id, items in entries.items()
    ]
    return index, out


# -- bands and expressions ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BandPlan:
    """Bands to read and the names of what comes out (the bands themselves, or one name per expression block)."""

    read: list[str]
    outputs: list[str]
    blocks: list[str] | None = None  # expression blocks over ``read`` (lower-case names), if any

    def apply(self, data: np.ma.MaskedArray) -> np.ma.MaskedArray:
        """(len(read), ...) -> (len(outputs), ...); expressions in float64, masked where any input is."""
        if self.blocks is None:
            return data
        mask = np.ma.getmaskarray(data).any(axis=0)
        values = np.ma.getdata(data).astype("float64")
        with np.errstate(divide="ignore", invalid="ignore"):
            out = apply_expression(self.blocks, [b.lower() for b in self.read], values)
        return np.ma.MaskedArray(np.ma.getdata(out), mask=np.broadcast_to(mask, out.shape).copy())


def plan_bands(
    available: Sequence[str], bands: str | Sequence[str] | None, expression: str | None, default: Sequence[str]
) -> BandPlan:
    """Resolve ``bands``/``expression`` against the bands the observations hold (case-insensitive)."""
    if expression:
        used, rewritten = expression_bands(expression, list(available), list(available))
        blocks = get_expression_blocks(rewritten)
        outputs = [b.strip() for b in expression.split(";") if b.strip()]
        return BandPlan(list(used), outputs, blocks)
    names = list(default) if bands is None else _asked_names(bands, None)
    if not names and bands is not None:
        raise InvalidParameter("bands must name at least one band")
    lower = {b.lower(): b for b in available}
    missing = [b for b in names if b.lower() not in lower]
    if missing:
        raise InvalidParameter(f"unknown band(s) {missing}; available: {list(available)}")
    resolved = [lower[b.lower()] for b in names]
    return BandPlan(resolved, resolved)


def _asked_names(bands: str | Sequence[str] | None, expression: str | None) -> list[str]:
    """Output names as the caller spelled them: expression blocks, else the comma-separated/listed bands."""
    if expression:
        return [b.strip() for b in expression.split(";") if b.strip()]
    if bands is None:
        return []
    return [b.strip() for b in (bands.split(",") if isinstance(bands, str) else bands) if str(b).strip()]


def _available(observations: Sequence[Observation]) -> list[str]:
    seen: dict[str, None] = {}
    for obs in reversed(observations):  # newest first, as the reader orders them
        for band in obs.bands:
            seen.setdefault(band, None)
    return list(seen)


# -- query_by_bounds ----------------------------------------------------------------------------------------------
def _as_utc(value: str | dt.datetime | dt.date | None, end: bool) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, dt.date):
        value = value.isoformat()
    if not isinstance(value, str):
        raise InvalidParameter(f"date_range values must be ISO 8601 strings or datetimes, not {type(value).__name__}")
    if "/" in value:
        raise InvalidParameter(f"date_range ends are single dates or instants, not an interval: {value!r}")
    try:
        # the tile endpoints' rules: a calendar date is that whole UTC day, naive instants are UTC
        start, stop = parse_interval(value)
        return stop if end else start
    except ValueError as exc:
        raise InvalidParameter(f"invalid date {value!r} in date_range: {exc}") from None


@dataclass
class QueryResult:
    """A datacube: per output band a masked (time, y, x) array on one grid (``transform`` in ``crs``).

    ``times`` are UTC acquisition datetimes, oldest first; ``item_ids[t]`` lists the items of time step ``t``
    (one unless grouped by day).
    """

    bands: list[str]
    data: dict[str, np.ma.MaskedArray]
    times: list[dt.datetime]
    item_ids: list[list[str]]
    crs: str
    transform: Affine
    width: int
    height: int
    snapshot_id: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates."""
        return self.transform.c + self.transform.a * (np.arange(self.width) + 0.5)

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates (north to south for a north-up grid)."""
        return self.transform.f + self.transform.e * (np.arange(self.height) + 0.5)

    def to_numpy(self) -> dict[str, np.ma.MaskedArray]:
        """``{band: masked array (time, y, x)}``; the mask is True where an observation has no pixel."""
        return dict(self.data)

    def statistics(self) -> list[dict[str, Any]]:
        """One record per time step and band: datetime, item_id, band, min, max, mean, std, count, valid_percent."""
        rows = []
        for t, when in enumerate(self.times):
            for band in self.bands:
                stats = band_statistics(self.data[band][t])
                rows.append({"datetime": when, "item_id": ",".join(self.item_ids[t]), "band": band, **stats})
        return rows

    def to_pandas(self) -> pandas.DataFrame:
        """One row per observation and band with its statistics (columns as ``statistics()``)."""
        try:
            import pandas as pd
        except ImportError:
            raise MissingExtra("to_pandas() needs pandas: pip install 'pixelquery-tiler[analysis]'") from None
        columns = ["datetime", "item_id", "band", "min", "max", "mean", "std", "count", "valid_percent"]
        frame = pd.DataFrame(self.statistics(), columns=columns)
        frame["datetime"] = pd.to_datetime(frame["datetime"], utc=True)
        return frame

    def to_xarray(self) -> xarray.Dataset:
        """``xarray.Dataset`` with dims ``time, y, x``, one variable per band, masked pixels as NaN.

        The CRS and transform follow the CF/GDAL convention ``rioxarray`` reads: a scalar ``spatial_ref``
        coordinate with ``crs_wkt``/``spatial_ref``/``GeoTransform`` and ``grid_mapping`` on each variable,
        so ``ds.rio.crs`` and ``ds.rio.transform()`` work without further setup.
        """
        try:
            import xarray as xr
        except ImportError:
            raise MissingExtra("to_xarray() needs xarray: pip install 'pixelquery-tiler[analysis]'") from None
        wkt = CRS.from_user_input(self.crs).to_wkt()
        t = self.transform
        geotransform = " ".join(map(repr, (t.c, t.a, t.b, t.f, t.d, t.e)))  # GDAL order
        spatial_ref = xr.DataArray(0, attrs={"crs_wkt": wkt, "spatial_ref": wkt, "GeoTransform": geotransform})
        times = np.array([w.astimezone(UTC).replace(tzinfo=None) for w in self.times], dtype="datetime64[ns]")
        variables = {}
        for band in self.bands:
            arr = self.data[band]
            # NaN marks masked pixels: integers become floats that hold them exactly
            dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype("float32" if arr.dtype.itemsize <= 2 else "f8")
            values = np.ma.filled(arr.astype(dtype), np.nan)
            variables[band] = xr.Variable(("time", "y", "x"), values, attrs={"grid_mapping": "spatial_ref"})
        ds = xr.Dataset(
            variables,
            coords={
                "time": times,
                "y": self.y,
                "x": self.x,
                "item_id": ("time", [",".join(ids) for ids in self.item_ids]),
                "spatial_ref": spatial_ref,
            },
            attrs={"crs": self.crs, **self.attrs},
        )
        return ds


def query_by_bounds(
    collection: Collection,
    bounds: Sequence[float],
    date_range: Sequence[str | dt.datetime | None] | None,
    bands: str | Sequence[str] | None,
    target_resolution: float,
    as_of_snapshot_id: int | None = None,
    crs: str = "EPSG:4326",
    *,
    expression: str | None = None,
    groupby: str | None = None,
    resampling: str = "nearest",
) -> QueryResult:
    """Read every observation over ``bounds`` (in ``crs``) at ``target_resolution`` (``crs`` units) into a cube.

    The grid starts at the top-left corner of ``bounds`` and extends to whole pixels. Each observation is
    read through the tile read path (level from the target resolution, one warp, masks kept).
    """
    try:
        minx, miny, maxx, maxy = (float(v) for v in bounds)
        res = float(target_resolution)
    except (TypeError, ValueError):
        raise InvalidParameter("bounds must be (minx, miny, maxx, maxy) and target_resolution a number") from None
    if not (minx < maxx and miny < maxy) or not all(map(math.isfinite, (minx, miny, maxx, maxy))):
        raise InvalidParameter(f"bounds {tuple(bounds)} are empty or not finite")
    if not (res > 0 and math.isfinite(res)):
        raise InvalidParameter(f"target_resolution must be > 0, not {target_resolution!r}")
    if groupby not in GROUPBY:
        raise InvalidParameter(f"groupby must be one of {GROUPBY}")
    try:
        crs_key = CRS.from_user_input(crs).to_string()
    except Exception as exc:  # rasterio raises CRSError for anything it cannot parse
        raise InvalidParameter(f"invalid crs {crs!r}: {exc}") from None
    start, end = (None, None) if date_range is None else (_as_utc(date_range[0], False), _as_utc(date_range[1], True))
    width, height = max(1, math.ceil((maxx - minx) / res - 1e-9)), max(1, math.ceil((maxy - miny) / res - 1e-9))
    if width * height > MAX_OUTPUT_PIXELS:
        raise OutputTooLarge(
            f"{width}x{height} pixels per time step exceed the limit of {MAX_OUTPUT_PIXELS} pixels (4096x4096): "
            "use a coarser target_resolution or smaller bounds"
        )
    transform = from_origin(minx, maxy, res, res)
    grid = (minx, maxy - height * res, minx + width * res, maxy)
    wgs84 = transform_bounds(crs_key, "EPSG:4326", grid)
    _, observations = _observations(collection, wgs84, start, end, as_of_snapshot_id)
    steps = _time_steps(observations, groupby, start, end)
    if len(steps) * width * height > MAX_CUBE_PIXELS:
        raise OutputTooLarge(
            f"{len(steps)} time steps of {width}x{height} pixels exceed the limit of {MAX_CUBE_PIXELS} pixels "
            "per query: "
            "narrow the date_range or use a coarser target_resolution"
        )
    available = _available(observations)
    if observations:
        plan = plan_bands(available, bands, expression, available)
    else:  # nothing there: an empty cube of what was asked (nothing to check the names against)
        plan = plan_bands(_asked_names(bands, expression), None, None, _asked_names(bands, expression))
    arrays, times, ids = [], [], []
    for when, members, datetime in steps:
        if datetime is None and not set(plan.read) <= set(members[0].bands):
            continue  # this observation lacks a requested band
        try:
            data = _read_observation(
                collection,
                grid,
                crs_key,
                width,
                height,
                plan.read,
                item_id=members[0].item_id if datetime is None else None,
                datetime=datetime,
                snapshot_id=as_of_snapshot_id,
                resampling=resampling,
            )
        except BandError:  # no observation of this day holds every requested band
            continue
        if data is None:
            continue
        arrays.append(plan.apply(data))
        times.append(when)
        ids.append([m.item_id for m in members])
    cube = {}
    for i, name in enumerate(plan.outputs):
        if arrays:
            cube[name] = np.ma.stack([a[i] for a in arrays])
        else:
            cube[name] = np.ma.masked_all((0, height, width), "float64" if plan.blocks else "float32")
    return QueryResult(
        plan.outputs,
        cube,
        times,
        ids,
        crs_key,
        transform,
        width,
        height,
        snapshot_id=as_of_snapshot_id,
        attrs={"resolution": res, "collection": collection.name},
    )


def _time_steps(
    observations: list[Observation], groupby: str | None, start: dt.datetime | None, end: dt.datetime | None
) -> list[tuple[dt.datetime, list[Observation], str | None]]:
    """(label time, members, datetime filter or None for a single item) per time step, oldest first."""
    if groupby is None:
        return [(o.datetime, [o], None) for o in observations]
    days: dict[dt.date, list[Observation]] = {}
    for obs in observations:
        days.setdefault(obs.datetime.astimezone(UTC).date(), []).append(obs)
    steps: list[tuple[dt.datetime, list[Observation], str | None]] = []
    for day, members in days.items():
        lo = dt.datetime.combine(day, dt.time(), UTC)
        hi = lo + dt.timedelta(days=1, microseconds=-1)
        lo, hi = max(lo, start) if start else lo, min(hi, end) if end else hi
        steps.append((lo, members, f"{format_instant(lo)}/{format_instant(hi)}"))
    return steps


# -- statistics ---------------------------------------------------------------------------------------------------
def band_statistics(values: np.ma.MaskedArray, total: int | None = None) -> dict[str, float | int | None]:
    """min/max/mean/std/count/valid_percent of the unmasked, finite values (``total``: pixels considered)."""
    data = np.ma.getdata(values)
    valid = ~np.ma.getmaskarray(values)
    if data.dtype.kind == "f":
        valid &= np.isfinite(data)
    picked = data[valid].astype("float64")
    total = valid.size if total is None else total
    count = int(picked.size)
    percent = 100.0 * count / total if total else 0.0
    if count == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "count": 0, "valid_percent": percent}
    return {
        "min": float(picked.min()),
        "max": float(picked.max()),
        "mean": float(picked.mean()),
        "std": float(picked.std()),
        "count": count,
        "valid_percent": percent,
    }


def _json_number(value: Any) -> float | None:
    if value is np.ma.masked or value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def point_series(
    collection: Collection,
    lon: float,
    lat: float,
    *,
    bands: str | Sequence[str] | None = None,
    expression: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    snapshot_id: int | None = None,
) -> list[dict[str, Any]]:
    """Per item covering (lon, lat): the native pixel under the point, oldest first; masked -> ``None``.

    Each observation is read as one output pixel that is exactly the native pixel containing the point (its
    edges on the item's level-0 grid, in the item's CRS): the read slices that pixel out, no warp involved.
    """
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidParameter(f"point ({lon}, {lat}) is outside longitude/latitude range")
    index, observations = _observations(collection, (lon, lat, lon, lat), start, end, snapshot_id)
    if not observations:
        return []
    newest = observations[-1]
    plan = plan_bands(_available(observations), bands, expression, newest.bands)
    in_crs = {crs: _to_item_crs(crs, lon, lat) for crs in {obs.crs for obs in observations}}  # one or two CRSs

    def read(parts: list[tuple[Observation, Part]]) -> list[np.ma.MaskedArray | None]:
        # every observation's pixel in one batched read: chunks and pixels located directly, no warp
        requests = [(grid.entry, *in_crs[obs.crs], wanted) for obs, (grid, wanted, _) in parts]
        return sample_pixels(index, collection.warehouse.chunk_reader, requests)

    def entry(obs: Observation, got: list[tuple[Part, Any]]) -> dict[str, Any] | None:
        pixel: dict[str, tuple[Any, bool]] = {}  # band -> (value, masked) of its native pixel (on its own grid)
        for (_, wanted, _), data in got:
            if data is not None:
                values_masks = zip(np.ma.getdata(data).tolist(), np.ma.getmaskarray(data).tolist(), strict=True)
                pixel.update(zip(wanted, values_masks, strict=True))
        if not any(data is not None for _, data in got) and any(b in obs.bands for b in plan.read):
            return None  # the item's bbox covers the point but none of its pixels does
        values: dict[str, float | None] = dict.fromkeys(plan.outputs)
        if len(pixel) == len(plan.read) and plan.blocks is not None:
            stack = np.ma.MaskedArray(
                np.array([pixel[b][0] for b in plan.read]).reshape(-1, 1, 1),
                mask=np.array([pixel[b][1] for b in plan.read]).reshape(-1, 1, 1),
            )
            out = plan.apply(stack)
            values = {name: _json_number(out[i, 0, 0]) for i, name in enumerate(plan.outputs)}
        elif plan.blocks is None:  # bands as stored; an observation lacking some: those stay null
            values.update((band, None if masked else _json_number(value)) for band, (value, masked) in pixel.items())
        return {"values": values}

    return _series(observations, plan, read, entry, one_grid=False)


def _to_item_crs(crs: str, lon: float, lat: float) -> tuple[float, float]:
    x0, y0, _, _ = transform_bounds("EPSG:4326", crs, (lon, lat, lon, lat))
    return x0, y0


def polygon_statistics(
    collection: Collection,
    geometry: dict,
    *,
    bands: str | Sequence[str] | None = None,
    expression: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    snapshot_id: int | None = None,
) -> list[dict[str, Any]]:
    """Per item intersecting ``geometry`` (GeoJSON, WGS84): statistics over its native pixels with centres inside.

    Each band is read on its own level-0 grid (the geometry's bbox snapped outwards to whole native pixels, read in
    the item's CRS at the native resolution), so values are the stored pixels, unresampled.
    """
    from shapely.geometry import shape

    wgs84 = shape(geometry).bounds
    _, observations = _observations(collection, wgs84, start, end, snapshot_id)
    if not observations:
        return []
    plan = plan_bands(_available(observations), bands, expression, observations[-1].bands)
    observations = [obs for obs in observations if set(plan.read) <= set(obs.bands)]
    # each observation's geometry in its CRS and the window of each part, checked against the budget before reading
    windows: dict[tuple[str, int], tuple[dict, tuple[float, float, float, float], int, int]] = {}
    for obs in observations:
        native_geom = transform_geom("EPSG:4326", obs.crs, geometry) if obs.crs != "EPSG:4326" else geometry
        for grid, _, _ in _parts(obs, plan, one_grid=True):
            bounds, width, height = grid.window(shape(native_geom).bounds)
            if width * height > MAX_OUTPUT_PIXELS:
                raise OutputTooLarge(
                    f"the geometry covers {width}x{height} native pixels of item {obs.item_id!r}, over the limit of "
                    f"{MAX_OUTPUT_PIXELS} pixels (4096x4096): use a smaller polygon"
                )
            windows[(obs.item_id, grid.entry)] = (native_geom, bounds, width, height)

    def read(parts: list[tuple[Observation, Part]]) -> Iterator[np.ma.MaskedArray | None]:
        for obs, (grid, wanted, _) in parts:  # one window at a time: memory stays one read
            _, bounds, width, height = windows[(obs.item_id, grid.entry)]
            yield _read_observation(
                collection, bounds, obs.crs, width, height, wanted, item_id=obs.item_id, snapshot_id=snapshot_id
            )

    def entry(obs: Observation, got: list[tuple[Part, Any]]) -> dict[str, Any] | None:
        stats: dict[str, dict] = {}
        for (grid, _, outputs), data in got:
            if data is None:
                continue
            native_geom, bounds, width, height = windows[(obs.item_id, grid.entry)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                inside = rasterize(
                    [native_geom],
                    out_shape=(height, width),
                    all_touched=False,
                    fill=0,
                    default_value=1,
                    dtype="uint8",
                    transform=from_origin(bounds[0], bounds[3], grid.resolution, grid.resolution),
                ).astype(bool)
            total = int(inside.sum())
            if total == 0:
                continue  # no pixel centre of this grid falls inside
            out = plan.apply(data) if plan.blocks is not None else data
            for i, name in enumerate(outputs):
                band = out[i]
                inside_only = np.ma.MaskedArray(np.ma.getdata(band), mask=np.ma.getmaskarray(band) | ~inside)
                stats[name] = band_statistics(inside_only, total)
        if len(stats) < len(plan.outputs):
            return None  # the observation holds no pixel (centre) inside the geometry
        return {"statistics": {name: stats[name] for name in plan.outputs}}

    return _series(observations, plan, read, entry, one_grid=True)


# -- the one loop behind both time series -------------------------------------------------------------------------
#: one grid of an observation, the bands read on it, and the outputs they give
Part = tuple[Grid, list[str], list[str]]


def _parts(obs: Observation, plan: BandPlan, *, one_grid: bool) -> list[Part]:
    """Where an observation's requested bands are read: each band group on its own native grid (never resampled);
    with ``one_grid`` an expression is evaluated on the finest grid holding any of its bands (coarser bands repeat
    their pixels there), as polygon statistics need one pixel grid per output."""
    if one_grid and plan.blocks is not None:
        return [(next(g for g in obs.grids if set(g.bands) & set(plan.read)), plan.read, plan.outputs)]
    return [(g, wanted, wanted) for g in obs.grids if (wanted := [b for b in plan.read if b in g.bands])]


def _series(
    observations: list[Observation],
    plan: BandPlan,
    read: Callable[[list[tuple[Observation, Part]]], Iterable[Any]],
    entry: Callable[[Observation, list[tuple[Part, Any]]], dict[str, Any] | None],
    *,
    one_grid: bool,
) -> list[dict[str, Any]]:
    """Per observation (oldest first): its parts (``_parts``), their data from ``read`` (given every part at once,
    so a point can be sampled in one batch; consumed in order, so windows can be read one at a time), turned into
    a series entry by ``entry`` (``None`` leaves the observation out)."""
    jobs = [(obs, _parts(obs, plan, one_grid=one_grid)) for obs in observations]
    data = iter(read([(obs, part) for obs, parts in jobs for part in parts]))
    series = []
    for obs, parts in jobs:
        summary = entry(obs, [(part, next(data)) for part in parts])
        if summary is not None:
            series.append({"datetime": format_instant(obs.datetime), "item_id": obs.item_id, **summary})
    return series
