"""The batched read paths equal the per-item ones they replace.

- A ``first`` + nearest mosaic tile over HTTP (``.npy``; ``mosaic._mosaic_first_nearest``: items sampled on their
  own output windows, chunks gathered) against the per-item path it replaces: every item read whole and warped
  into the tile (``mosaic._read_item``, the path other pixel selections and resamplings still take) and fed to
  rio-tiler's ``FirstMethod`` newest first. Compared **exactly** (nearest picks stored pixels, so any difference
  is a different pixel, not rounding). The items are synthetic: two CRSs, sub-pixel grid offsets, nodata holes
  and one item with a mask instead of nodata, so windows, chunk edges, both validity kinds and the fill order
  all matter.
- Runs of small items under low-zoom tiles resolved together (``mosaic._fill_small_items``: each pixel's first item
  located for many items at once, one gather) against the same references, exactly: partial overlaps, holes
  filled by older items, a band missing alone, a mask item, two nodata values, two CRSs, and overview pixels
  valid although equal to nodata; and its chunk lookup against testing every chunk.
- The point sampler behind the time series (``mosaic.sample_pixels``) against a 1 x 1 ``Collection.read`` of the
  native pixel under the point, per item: the same values and masks, exactly.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from pyproj import Transformer
from rasterio.transform import from_bounds, from_origin
from rio_tiler.mosaic.methods import PixelSelectionMethod

from pixelquery_tiler import Warehouse, create_app
from pixelquery_tiler import mosaic as read_path
from pixelquery_tiler.crs import transform_bounds
from pixelquery_tiler.errors import NoData
from pixelquery_tiler.mosaic import sample_pixels
from pixelquery_tiler.view import View
from warehouse_fixtures import nodata_collision_pair

WEB = morecantile.tms.get("WebMercatorQuad")
#: (EPSG, x0, y0, nodata or None for a mask, date) of each item; all overlap around 15.2 E, 45.1 N
ITEMS = [
    (32633, 400_003.7, 5_000_011.2, 0, "2020-01-01"),
    (32633, 404_517.1, 4_997_023.9, 0, "2020-01-02"),
    (32633, 398_001.0, 4_995_000.0, None, "2020-01-03"),
    (32632, 873_210.4, 5_004_077.3, 0, "2020-01-04"),
    (32633, 402_222.2, 5_003_333.3, 0, "2020-01-05"),
    (32632, 877_777.7, 4_999_999.9, 0, "2020-01-06"),
]
SIZE = 400  # px, 30 m


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    root = tmp_path_factory.mktemp("batched")
    rng = np.random.default_rng(11)
    wh = Warehouse(str(root / "wh"))
    ids = []
    for i, (epsg, x0, y0, nodata, date) in enumerate(ITEMS):
        data = rng.integers(1, 20_000, (3, SIZE, SIZE), dtype=np.uint16)
        hole = rng.integers(0, SIZE - 120, 2)
        valid = np.ones((SIZE, SIZE), bool)
        valid[hole[0] : hole[0] + 120, hole[1] : hole[1] + 90] = False  # every band: one mask per pixel
        path = root / f"item{i}.tif"
        profile = {"driver": "GTiff", "width": SIZE, "height": SIZE, "count": 3, "dtype": "uint16"}
        profile |= {"crs": f"EPSG:{epsg}", "transform": from_origin(x0, y0, 30, 30), "tiled": True}
        with rasterio.open(path, "w", **profile, nodata=nodata) as dst:
            if nodata is not None:
                dst.write(np.where(valid, data, nodata))
            else:
                dst.write(data)
                dst.write_mask(valid)
        ids.append(wh.ingest(str(path), "many", datetime=date, bands=["red", "green", "blue"]).item_id)
    return str(root / "wh"), ids


def npy(response) -> tuple[np.ndarray, np.ndarray]:
    """(bands, valid) of titiler's ``.npy`` (its last band is the dataset mask)."""
    assert response.status_code == 200, response.text
    arr = np.load(io.BytesIO(response.content))
    return arr[:-1], arr[-1] > 0


def per_item_reference(
    uri: str, t: morecantile.Tile, size: int = 256, collection: str = "many"
) -> np.ma.MaskedArray | None:
    """``FirstMethod`` fed with every item's whole nearest warp into tile ``t``, newest first (no batching)."""
    collection = Warehouse(uri).collection(collection)
    view = View.create(collection)
    bounds = tuple(WEB.xy_bounds(t))
    dst = from_bounds(*bounds, size, size)
    method = PixelSelectionMethod["first"].value()
    for pos in view.intersecting(transform_bounds("EPSG:3857", "EPSG:4326", bounds)):
        item = view.index.items[pos]
        native, _, level = read_path._item_level(item, bounds, "EPSG:3857", size, size)
        chunks = collection.warehouse.chunk_reader
        bands = ["red", "green", "blue"]
        dtype = np.dtype("uint16")
        warped = read_path._read_item(
            view.index, chunks, pos, level, native, bands, dst, "EPSG:3857", size, size, dtype, "nearest"
        )
        if warped is not None:
            method.feed(warped)
    return method.data


def test_first_mosaic_equals_feeding_each_items_warp(mosaic: tuple[str, list[str]]):
    uri, _ = mosaic
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(403_000, 4_999_000)
    compared = 0
    with TestClient(create_app(uri)) as client:
        for z in (8, 10, 12, 13):
            for dx, dy in ((0, 0), (1, 0), (0, 1), (-1, -1)):
                centre = WEB.tile(lon, lat, z)
                t = morecantile.Tile(centre.x + dx, centre.y + dy, z)
                got = client.get(f"/collections/many/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.npy")
                want = per_item_reference(uri, t)
                if got.status_code == 404:
                    assert want is None or np.ma.getmaskarray(want).all()
                    continue
                data, valid = npy(got)
                assert want is not None
                want_valid = ~np.ma.getmaskarray(want).all(axis=0)  # the .npy mask: valid where any band is
                np.testing.assert_array_equal(valid, want_valid, err_msg=f"mask of tile {t}")
                np.testing.assert_array_equal(data[:, valid], np.ma.getdata(want)[:, valid], err_msg=f"tile {t}")
                compared += int(valid.sum())
    assert compared > 100_000  # the tiles hold data: the comparison is not vacuous


def test_first_mosaic_without_coordinate_map(mosaic: tuple[str, list[str]]):
    """Outputs over ``sampling.MAX_PIXELS`` have no coordinate map: every item is warped by GDAL, later ones only
    under the still-empty pixels (as before batching). GDAL's approximate transformer depends slightly on the
    source window it is given, so a pixel centre within its 0.125 px error of a source pixel edge may pick the
    neighbour: >= 99.9 % of the valid pixels are identical (measured 99.995 % at this z11 tile; 100 % at z10,
    99.3 % at z12 where 1100 px oversample the 30 m source 3x and more centres sit near edges), masks likewise
    (measured: all agree)."""
    uri, _ = mosaic
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(403_000, 4_999_000)
    t = WEB.tile(lon, lat, 11)
    size = 1100  # > 1024 x 1024
    got = Warehouse(uri).collection("many").read(tuple(WEB.xy_bounds(t)), "EPSG:3857", size, size).data
    want = per_item_reference(uri, t, size)
    assert want is not None
    mask, want_mask = np.ma.getmaskarray(got), np.ma.getmaskarray(want)
    assert (mask == want_mask).mean() >= 0.999
    both = ~mask & ~want_mask
    assert both.sum() > 100_000
    assert (got.data[both] == want.data[both]).mean() >= 0.999


def test_point_sampler_equals_one_pixel_reads(mosaic: tuple[str, list[str]]):
    uri, ids = mosaic
    collection = Warehouse(uri).collection("many")
    index = collection.index()
    rng = np.random.default_rng(3)
    checked = masked = 0
    for _ in range(40):
        x, y = 403_000 + rng.uniform(-9_000, 9_000), 4_999_000 + rng.uniform(-9_000, 9_000)
        lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(x, y)
        for iid in ids:
            pos = index.item_position(iid)
            assert pos is not None
            item = index.items[pos]
            px, py = Transformer.from_crs("EPSG:4326", item.crs, always_xy=True).transform(lon, lat)
            (got,) = sample_pixels(index, collection.warehouse.chunk_reader, [(pos, px, py, ["blue", "red"])])
            first, _ = index.item_row_range(pos, item.levels[0])
            ox, oy, res = index.transform[first, 2], index.transform[first, 5], item.resolutions[0]
            left, top = ox + math.floor((px - ox) / res) * res, oy - math.floor((oy - py) / res) * res
            try:
                want = collection.read(
                    (left, top - res, left + res, top), item.crs, 1, 1, bands=["blue", "red"], item_id=iid
                )
            except NoData:  # no chunk holds the pixel
                assert got is None
                continue
            assert got is not None
            np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(want.data)[:, 0, 0])
            np.testing.assert_array_equal(np.ma.filled(got, 0), np.ma.filled(want.data[:, 0, 0], 0))
            checked += 1
            masked += int(np.ma.getmaskarray(got).all())
    assert checked > 50 and masked > 0  # valid and masked pixels both compared


def test_pixel_bounds_uses_affine_matmul():
    """``_pixel_bounds`` maps pixel corners with ``@``: affine's ``*`` on tuples raises a PendingDeprecationWarning."""
    import warnings

    pixels = np.zeros((4, 5), bool)
    pixels[1:3, 2:4] = True
    transform = from_origin(100.0, 200.0, 10.0, 10.0)  # (rasterio's own from_origin still uses ``*``)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bounds = read_path._pixel_bounds(pixels, transform)
    assert bounds == (120.0, 170.0, 140.0, 190.0)


#: many small items (64 px at 30 m) under low-zoom tiles: the batched path that resolves runs of small items
#: together (``mosaic._fill_small_items``); a few are in EPSG:32632, one has a mask, one another nodata value
SMALL_COUNT, SMALL_SIZE = 16, 64


@pytest.fixture(scope="module")
def small_items(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(5)
    wh = Warehouse(str(root / "wh"))
    to_32632 = Transformer.from_crs("EPSG:32633", "EPSG:32632", always_xy=True)
    for i in range(SMALL_COUNT):
        # centres within +-2.5 km (items are 1.9 km wide: they overlap each other partially), sub-pixel origins
        x0, y0 = 403_000 + rng.uniform(-2_500, 2_500), 4_999_000 + rng.uniform(-2_500, 2_500)
        epsg = 32632 if i % 5 == 3 else 32633
        if epsg == 32632:
            x0, y0 = to_32632.transform(x0, y0)
        nodata = None if i == 6 else 65535 if i == 9 else 0
        data = rng.integers(1, 20_000, (3, SMALL_SIZE, SMALL_SIZE), dtype=np.uint16)
        valid = np.ones((3, SMALL_SIZE, SMALL_SIZE), bool)
        if i < 8:  # the newest items (first in the mosaic) have holes: later items fill them
            r, c = rng.integers(4, SMALL_SIZE - 28, 2)
            valid[:, r : r + 24, c : c + 24] = False
        if i in (1, 4):  # one band missing where the others are valid: the pixel takes it from a later item
            r, c = rng.integers(4, SMALL_SIZE - 24, 2)
            valid[1, r : r + 20, c : c + 20] = False
        path = root / f"small{i}.tif"
        profile = {"driver": "GTiff", "width": SMALL_SIZE, "height": SMALL_SIZE, "count": 3, "dtype": "uint16"}
        profile |= {"crs": f"EPSG:{epsg}", "transform": from_origin(x0, y0, 30, 30)}
        with rasterio.open(path, "w", **profile, nodata=nodata) as dst:
            if nodata is not None:
                dst.write(np.where(valid, data, nodata))
            else:
                dst.write(data)
                dst.write_mask(valid.all(axis=0))
        wh.ingest(str(path), "small", datetime=f"2020-02-{28 - i:02d}", bands=["red", "green", "blue"])
    return str(root / "wh")


def count_small_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of items in each run ``mosaic._fill_small_items`` resolves together, in call order."""
    batches: list[int] = []
    fill_small = read_path._fill_small_items

    def counting(*args, **kwargs):
        batches.append(args[4] - args[3])  # items in the run
        return fill_small(*args, **kwargs)

    monkeypatch.setattr(read_path, "_fill_small_items", counting)
    return batches


def test_small_items_resolved_together_equal_each_items_warp(small_items: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of small items are resolved together: candidate pixels located for many items at once, the first
    valid owner per pixel (and per band) in mosaic order, one read per chunk. Exactly ``FirstMethod`` over every
    item's own whole warp (per band, masks included), and the same pixels and items as the one-by-one path
    (``_still_needed`` + ``_sample_window``/dense warps, taken when no item counts as small)."""
    collection = Warehouse(small_items).collection("small")
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(403_000, 4_999_000)
    batches = count_small_runs(monkeypatch)
    compared = partial = most_items = 0
    for z in (9, 10, 11):
        for dx, dy in ((0, 0), (1, 0), (0, 1), (-1, -1)):
            centre = WEB.tile(lon, lat, z)
            t = morecantile.Tile(centre.x + dx, centre.y + dy, z)
            bounds = tuple(WEB.xy_bounds(t))
            want = per_item_reference(small_items, t, collection="small")
            try:
                got = collection.read(bounds, "EPSG:3857", 256, 256)
            except NoData:
                assert want is None or np.ma.getmaskarray(want).all()
                continue
            assert want is not None
            mask = np.ma.getmaskarray(got.data)
            np.testing.assert_array_equal(mask, np.ma.getmaskarray(want), err_msg=f"mask of tile {t}")
            np.testing.assert_array_equal(got.data.data[~mask], np.ma.getdata(want)[~mask], err_msg=f"tile {t}")
            with monkeypatch.context() as one_by_one:
                one_by_one.setattr(read_path, "DENSE_FRACTION", 10**9)  # no item is small
                ref = collection.read(bounds, "EPSG:3857", 256, 256)
            np.testing.assert_array_equal(np.ma.getmaskarray(ref.data), mask)
            np.testing.assert_array_equal(ref.data.data[~mask], got.data.data[~mask])
            assert ref.items == got.items and ref.levels == got.levels, f"tile {t}"
            compared += int((~mask).sum())
            partial += int((mask.any(axis=0) != mask.all(axis=0)).sum())  # pixels with some bands only
            most_items = max(most_items, len(got.items))
    assert batches and max(batches) >= 8, "the small items were not resolved together"
    # not vacuous: data compared, pixels where bands come from different items or none, many items read
    assert compared > 20_000 and partial > 0 and most_items >= 8


@pytest.mark.parametrize(
    "chunks",
    [
        [(0, 0, 4, 4), (0, 4, 4, 3), (4, 0, 3, 4), (4, 4, 3, 3)],  # a grid (as ingest writes them)
        [(0, 0, 4, 4), (0, 4, 2, 4), (2, 4, 2, 4), (4, 0, 3, 8)],  # rows split differently per column
        [(0, 0, 4, 4), (0, 6, 4, 2), (5, 0, 2, 8)],  # gaps between chunks
        [(-3, -2, 3, 5), (0, -2, 4, 5), (0, 3, 4, 2)],  # offsets before the grid's origin chunk
    ],
)
def test_chunk_lookup_equals_testing_every_chunk(chunks: list[tuple[int, int, int, int]]) -> None:
    """``mosaic._holders`` (keys: the last chunk row, then the last chunk in it, starting at or before a pixel;
    every chunk of the item where that one does not hold it) finds for every pixel of two items the chunk that
    holds it, or none, as testing every chunk does. Chunks: (row start, column start, height, width)."""
    layout = np.array(chunks * 2, np.int64)  # two items with the same layout
    item = np.repeat([0, 1], len(chunks))
    row_off, col_off, heights, widths = layout.T
    count = np.array([len(chunks)] * 2)
    grids = read_path._SmallGrids(
        item, np.arange(item.size), col_off, row_off, heights, widths, np.array([0, len(chunks)]), count,
        np.zeros((2, 4)), np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64),
        *read_path._chunk_keys(item, col_off, row_off, 2),
    )  # fmt: skip
    assert grids.row_keys is not None
    rows, cols = np.mgrid[-4:9, -3:10]
    k = np.repeat([0, 1], rows.size)
    row, col = np.tile(rows.ravel(), 2), np.tile(cols.ravel(), 2)
    inside = (
        (item[None] == k[:, None])
        & (row_off[None] <= row[:, None]) & (row[:, None] < (row_off + heights)[None])
        & (col_off[None] <= col[:, None]) & (col[:, None] < (col_off + widths)[None])
    )  # fmt: skip
    want = np.where(inside.any(axis=1), inside.argmax(axis=1), -1)
    np.testing.assert_array_equal(read_path._holders(grids, k, col, row), want)


def test_small_items_keep_overview_pixels_equal_to_nodata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small items resolved together keep a valid overview pixel whose value equals nodata (per-band validity,
    ``keep``), exactly as the per-item warp does (``pixel_selection=highest``; both selections agree here, the newer
    item's 700 being above everything of the older one). int16, nodata -1, 600 x 100 px items in EPSG:4326 read at
    level 1 into a 1024 px EPSG:3857 output, where each is a small part of it: the older item's band 0 is a -2/0
    checkerboard (every level-1 average a valid -1), its band 1 nodata on the left half; the newer item is 700
    except a 40 px nodata hole."""
    from rasterio.crs import CRS

    from pixelquery_tiler.reader import PixelQueryReader

    col, bbox = nodata_collision_pair(tmp_path, 100, 600, (slice(30, 70), slice(280, 320)))
    merc = CRS.from_epsg(3857)
    batches = count_small_runs(monkeypatch)
    batched = PixelQueryReader(col, pixel_selection="first").part(bbox, dst_crs=merc, width=1024, height=1024)
    assert batches == [2], "the two small items were not resolved together"
    per_item = PixelQueryReader(col, pixel_selection="highest").part(bbox, dst_crs=merc, width=1024, height=1024)
    assert set(batched.metadata["levels"].values()) == {1} and len(batched.metadata["items"]) == 2
    mine, ref = batched.array, per_item.array
    np.testing.assert_array_equal(np.ma.getmaskarray(mine), np.ma.getmaskarray(ref))
    np.testing.assert_array_equal(mine.data[~mine.mask], ref.data[~ref.mask])
    band0 = np.ma.compressed(mine[0])
    assert (band0 == -1).sum() > 50 and set(np.unique(band0)) == {-1, 700}  # the hole: collisions, all valid
    assert set(np.unique(np.ma.compressed(mine[1]))) == {500, 700}
