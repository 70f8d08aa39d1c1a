"""Ingest of the real shared rasters: lossless round trip, multi-resolution pair, overviews, ingest helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.ipc as ipc
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.warp import transform_bounds

from pixelquery_tiler import Warehouse
from pixelquery_tiler.ingest import chunk_wgs84_bounds, decimate
from pixelquery_tiler.profiles import detect_product
from testdata import shared_rasters
from warehouse_fixtures import collection_for


@pytest.mark.parametrize("raster", shared_rasters(), ids=lambda p: p.name)
def test_round_trip_on_source_grid_is_lossless(ingested_warehouse: tuple[Path, dict], raster: Path) -> None:
    """Reading a file's own grid back returns identical pixels and an identical per-band mask.

    The mask is the file's own, or where the file has none, the product profile's nodata (Landsat C2: 0).
    """
    warehouse, _ = ingested_warehouse
    collection = Warehouse(str(warehouse)).collection(collection_for(raster))
    with rasterio.open(raster) as src:
        expected = src.read(masked=True)
        product_nodata = detect_product(str(raster), src.count).nodata
        if src.nodata is None and src.mask_flag_enums[0] == [MaskFlags.all_valid] and product_nodata is not None:
            expected = np.ma.masked_equal(expected.data, product_nodata)
        out = collection.read(tuple(src.bounds), src.crs.to_string(), src.width, src.height)
    assert out.data.shape == expected.shape
    assert out.data.dtype == expected.dtype
    assert set(out.levels.values()) == {0}, "a source-grid read must use the native level"
    np.testing.assert_array_equal(np.ma.getmaskarray(out.data), np.ma.getmaskarray(expected))
    np.testing.assert_array_equal(out.data.filled(0), expected.filled(0))


def test_landsat7_per_band_masks_differ(ingested_warehouse: tuple[Path, dict], shared_data: Path) -> None:
    """The SF Bay file has nodata=0 per band and the bands' masks differ: the read keeps them per band."""
    warehouse, _ = ingested_warehouse
    raster = shared_data / "lts_landsat7_sfbay_3857.tif"
    with rasterio.open(raster) as src:
        out = (
            Warehouse(str(warehouse))
            .collection(collection_for(raster))
            .read(tuple(src.bounds), src.crs.to_string(), src.width, src.height)
        )
    mask = np.ma.getmaskarray(out.data)
    assert not np.array_equal(mask[0], mask[1]) and not np.array_equal(mask[1], mask[2])
    assert (mask == (out.data.data == 0)).all()


def test_ingest_json_describes_each_file(ingested_warehouse: tuple[Path, dict], shared_data: Path) -> None:
    _, results = ingested_warehouse
    for name, result in results.items():
        with rasterio.open(shared_data / name) as src:
            expected = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
        if name.startswith("gw_LC08"):
            # product nodata 0: chunks holding only the zero-filled corner are not stored, the bbox shrinks
            assert expected[0] <= result["bbox"][0] < result["bbox"][2] <= expected[2], name
            assert expected[1] <= result["bbox"][1] < result["bbox"][3] <= expected[3], name
        else:
            assert np.allclose(result["bbox"], expected, atol=1e-6), name
        assert isinstance(result["snapshot_id"], int) and result["item_id"]


def test_chunk_files_are_arrow_ipc_with_their_own_georeferencing(ingested_warehouse: tuple[Path, dict]) -> None:
    warehouse, _results = ingested_warehouse
    rows = Warehouse(str(warehouse)).collection("gw_lc08_224077_20200518_b2_30m").index().rows.to_pylist()
    row = next(r for r in rows if r["level"] == 0)
    reader = ipc.open_file(str(warehouse / row["chunk_file"]))
    batch = reader.get_batch(row["batch_index"])
    assert batch.num_rows == row["height"] * row["width"]
    assert batch.schema.names == ["blue"]
    assert row["transform"][0] == 30.0 and row["crs"] == "EPSG:32621"


# -- the 30 m + 60 m Landsat 8 pair -------------------------------------------------------------------------------


def _level0(rows: list[dict], source: str, item_ids: dict[str, str]) -> list[dict]:
    return [r for r in rows if r["item_id"] == item_ids[source] and r["level"] == 0]


def test_pair_is_two_observations_of_the_same_tiles(landsat_pair: tuple[Path, list[dict]]) -> None:
    warehouse, results = landsat_pair
    item_ids = {r["source"]: r["item_id"] for r in results}
    rows = Warehouse(str(warehouse)).collection("pair").index().rows.to_pylist()
    fine = _level0(rows, "gw_LC08_224077_20200518_B2_30m.tif", item_ids)
    coarse = _level0(rows, "gw_LC08_224077_20200518_B2_60m.tif", item_ids)
    assert {r["tile_id"] for r in fine} == {r["tile_id"] for r in coarse}
    assert {r["res_x"] for r in fine} == {30.0} and {r["res_x"] for r in coarse} == {60.0}
    # full interior chunks: 7680 m = 256 px at 30 m, 128 px at 60 m
    assert max(r["width"] for r in fine) == 256 and max(r["width"] for r in coarse) == 128


@pytest.mark.parametrize("source", ["gw_LC08_224077_20200518_B2_30m.tif", "gw_LC08_224077_20200518_B2_60m.tif"])
def test_pair_read_picks_the_matching_resolution(
    landsat_pair: tuple[Path, list[dict]], shared_data: Path, source: str
) -> None:
    """Same acquisition time: a 30 m read is served by the 30 m scene, a 60 m read by the 60 m scene (native)."""
    warehouse, results = landsat_pair
    item_ids = {r["source"]: r["item_id"] for r in results}
    with rasterio.open(shared_data / source) as src:
        out = (
            Warehouse(str(warehouse))
            .collection("pair")
            .read(tuple(src.bounds), src.crs.to_string(), src.width, src.height)
        )
        expected = src.read()
    assert out.items[0] == item_ids[source]
    assert out.levels[item_ids[source]] == 0
    # Landsat C2 zeros are nodata (product profile): there the mosaic may fill from the other scene
    valid = expected != 0
    np.testing.assert_array_equal(out.data.filled(0)[valid], expected[valid])


def test_coarse_read_uses_overviews(landsat_pair: tuple[Path, list[dict]], shared_data: Path) -> None:
    warehouse, _results = landsat_pair
    with rasterio.open(shared_data / "gw_LC08_224077_20200518_B2_30m.tif") as src:
        bounds, crs = tuple(src.bounds), src.crs.to_string()
    width, height = 240, 180  # ~251 m output pixels
    target = min((bounds[2] - bounds[0]) / width, (bounds[3] - bounds[1]) / height)
    collection = Warehouse(str(warehouse)).collection("pair")
    out = collection.read(bounds, crs, width, height)
    assert out.items and all(level > 0 for level in out.levels.values())
    index = collection.index()
    for item_id, level in out.levels.items():
        item = index.item(item_id)
        res = item.resolutions[item.levels.index(level)]
        # GDAL's rule: the coarsest level still at least as fine as the output
        assert res <= target < 2 * res and res == 240.0


# -- ingest helpers ---------------------------------------------------------------------------------------------


def test_decimate_averages_valid_pixels_and_keeps_odd_edges() -> None:
    data = np.array([[[1, 3, 5], [5, 7, 9], [2, 0, 4]]], np.uint8)
    valid = data != 0
    out, vout = decimate(data, valid, "average", 0)
    assert out.shape == (1, 2, 2)
    np.testing.assert_array_equal(out[0], [[4, 7], [2, 4]])  # (1+3+5+7)/4, (5+9)/2, (2)/1, (4)/1
    assert vout.all()
    nearest, _ = decimate(data, valid, "nearest", 0)
    np.testing.assert_array_equal(nearest[0], [[1, 5], [2, 4]])


def test_decimate_all_invalid_block_stays_nodata() -> None:
    data = np.full((2, 4, 4), 255, np.uint8)
    data[:, :2, :2] = 10
    out, vout = decimate(data, data != 255, "average", 255)
    assert vout[:, 0, 0].all() and not vout[:, 1, 1].any()
    assert (out[:, 1, 1] == 255).all() and (out[:, 0, 0] == 10).all()


@pytest.mark.parametrize(
    "epsg, box",
    [
        (32621, (694005, -2812065, 754185, -2766615)),
        (3857, (-13651650, 4518780, -13586220, 4576290)),
        (32601, (166000, 0, 834000, 1000000)),
    ],
)
def test_vectorised_wgs84_bounds_match_rasterio(epsg: int, box: tuple[float, ...]) -> None:
    crs = CRS.from_epsg(epsg)
    got = chunk_wgs84_bounds(crs, np.array([box], float))[0]
    np.testing.assert_allclose(got, transform_bounds(crs, "EPSG:4326", *box, densify_pts=21), atol=1e-9)
