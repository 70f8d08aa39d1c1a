"""STAC item footprints never cut stored pixels: an AOI in a scene's corner finds the scene.

A rotated scene (valid pixels in a diamond, nodata corners) at 600 m in UTM, 600 km wide, as a coarse global
product looks: only chunks with valid pixels are stored, and the footprint must contain every one of them
exactly (densely sampled chunk edges reprojected with PROJ), with straight lon/lat chords and simplification
erring outward only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from pixelquery_tiler import Warehouse
from pixelquery_tiler.stac_api.search import SearchQuery, StacBackend


def write_diamond(path: Path, size: int = 1000, pixel: float = 600.0) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    rows, cols = np.mgrid[0:size, 0:size]
    half = size / 2
    valid = (np.abs(rows - half) + np.abs(cols - half)) <= half  # a diamond touching the four edges
    data = np.where(valid, 1 + (rows + cols) % 200, 0).astype("uint8")[None]
    transform = from_origin(200_000.0, 3_000_000.0, pixel, pixel)  # UTM 17N, ~21-27 N (Bahamas latitudes)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="uint8",
        crs="EPSG:32617",
        transform=transform,
        nodata=0,
        tiled=True,
        blockxsize=256,
        blockysize=256,
    ) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def diamond(tmp_path_factory: pytest.TempPathFactory) -> tuple[StacBackend, str]:
    root = tmp_path_factory.mktemp("footprint-wh")
    source = write_diamond(tmp_path_factory.mktemp("footprint-data") / "diamond_600m.tif")
    wh = Warehouse(str(root))
    wh.ingest(str(source), "diamond", datetime="2020-05-18T15:00:00Z")
    return StacBackend(wh), "diamond"


def test_footprint_contains_every_stored_chunk(diamond: tuple[StacBackend, str]) -> None:
    backend, collection = diamond
    records = backend.records(collection)
    assert records is not None and len(records) == 1
    footprint = records.footprint(0)
    start, stop = records.level0_range(0)
    ix = records.index
    to_wgs84 = Transformer.from_crs("EPSG:32617", "EPSG:4326", always_xy=True)
    t = np.linspace(0.0, 1.0, 41)[None, :]
    minx, miny, maxx, maxy = (a[start:stop, None] for a in (ix.minx, ix.miny, ix.maxx, ix.maxy))
    xs = np.concatenate([minx + (maxx - minx) * t, maxx + 0 * t, maxx - (maxx - minx) * t, minx + 0 * t], axis=1)
    ys = np.concatenate([miny + 0 * t, miny + (maxy - miny) * t, maxy + 0 * t, maxy - (maxy - miny) * t], axis=1)
    xy = np.column_stack(to_wgs84.transform(xs.ravel(), ys.ravel()))
    shapely.prepare(footprint)
    outside = ~shapely.covers(footprint, shapely.points(xy))
    assert not outside.any(), f"{outside.sum()} chunk-edge points outside the footprint: {xy[outside][:3].tolist()}"
    # outward, but not by much: the footprint is the chunk union grown by at most ~2 native pixels
    chunks = shapely.convex_hull(shapely.multipoints(xy))
    assert footprint.area < chunks.area * 1.05


def test_a_corner_aoi_finds_the_scene(diamond: tuple[StacBackend, str]) -> None:
    backend, collection = diamond
    records = backend.records(collection)
    doc_bbox = records.footprint(0).bounds
    ix = records.index
    start, stop = records.level0_range(0)
    # the northernmost stored chunk's top edge: a tiny AOI just inside it, at the diamond's north corner
    k = start + int(np.argmax(ix.maxy[start:stop]))
    to_wgs84 = Transformer.from_crs("EPSG:32617", "EPSG:4326", always_xy=True)
    cx = (ix.minx[k] + ix.maxx[k]) / 2
    lon, lat = to_wgs84.transform(cx, ix.maxy[k] - 100.0)  # 100 m inside the top of the stored chunk
    aoi = shapely.box(lon - 1e-4, lat - 1e-4, lon + 1e-4, lat + 1e-4)
    found = backend.search(SearchQuery(collections=[collection], intersects=aoi))
    assert found.matched == 1
    assert doc_bbox[3] >= lat  # the item's bbox reaches the valid pixels


def test_item_bbox_and_collection_extent_hold_the_footprint(diamond: tuple[StacBackend, str]) -> None:
    backend, collection = diamond
    records = backend.records(collection)
    w, s, e, n = records.footprint(0).bounds
    bw, bs, be, bn = records.bbox[0]  # what search prefilters on
    assert bw <= w and bs <= s and be >= e and bn >= n
    ((cw, cs, ce, cn),) = backend.collection_document(collection)["extent"]["spatial"]["bbox"]
    assert cw <= w and cs <= s and ce >= e and cn >= n
