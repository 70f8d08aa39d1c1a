"""Analysis benchmark: ``query_by_bounds`` vs odc-stac on COGs, and HTTP point time series vs TiTiler ``/cog/point``.

Run from the repository root (needs the ``[bench]`` extra: odc-stac, rio-cogeo, xarray)::

    python benchmarks/analysis.py            # full run
    python benchmarks/analysis.py --quick    # fewer repeats and 20 instead of 100 dates

It prints numbers and ratios (ours / anchor; < 1 means we are faster) and asserts nothing:

1. the plan's "10-tile query": ``query_by_bounds`` over an area of exactly 10 level-0 storage chunks (5 x 2 chunks
   of 256 x 256 px), 3 bands (red, green, blue), native resolution (30 m, EPSG:3857), nearest, for 1 and for 5
   dates, vs ``odc.stac.load`` reading the same pixels from COGs (rio-cogeo, one COG per band and date, like
   STAC catalogues publish them) described by pystac items built here (proj extension, no network), on the same
   grid (``GeoBox`` with the same affine and shape), single-threaded like ours. Both return numpy data; the
   pixels are checked equal before timing.
2. a point time series over N dates (default 100, synthesised by ingesting the Olinda Landsat 7 scene under N
   acquisition dates) through HTTP (one ``GET /collections/{cid}/timeseries/point/{lon},{lat}``) vs the same
   N values fetched with N TiTiler ``/cog/point/{lon},{lat}?url=...`` requests (titiler.core ``TilerFactory``
   on N COGs), both in-process through Starlette's TestClient (same HTTP stack cost on both sides).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("PIXELQUERY_TEST_DATA", REPO.parent / "shared" / "data"))
CUBE_SOURCE = "lts_landsat7_sfbay_3857.tif"  # 3 bands red/green/blue, 30 m, 256 x 256 px level-0 chunks
POINT_SOURCE = "stars_L7_ETMs_olinda_28m.tif"
BANDS = ["red", "green", "blue"]


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up (imports, caches, GDAL dataset open)
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def cpu_ms(fn, repeat: int) -> float:
    """Median CPU time of the whole process per call, in ms (the in-process server threads included): on a shared,
    loaded machine it moves far less than wall time."""
    out = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return float(np.median(out)) * 1000


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def make_cog(src: Path, dst: Path, band: int | None = None) -> Path:
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cog_translate(
            str(src),
            str(dst),
            cog_profiles.get("deflate"),
            indexes=[band] if band else None,
            quiet=True,
            overview_resampling="average",
        )
    return dst


# -- 1. query_by_bounds vs odc-stac -----------------------------------------------------------------------------------
def ten_chunk_bounds(collection) -> tuple[tuple[float, float, float, float], str, float]:
    """Bounds of 5 x 2 full level-0 chunks in the middle of the first item (chunk edges, item CRS)."""
    index = collection.index()
    item = index.items[0]
    start, stop = index.item_row_range(0, item.levels[0])
    full = [r for r in range(start, stop) if index.width[r] == 256 and index.height[r] == 256]
    xs = sorted({float(index.minx[r]) for r in full})
    ys = sorted({float(index.maxy[r]) for r in full}, reverse=True)
    size = 256 * item.resolutions[0]
    x0, y0 = xs[len(xs) // 2 - 2], ys[len(ys) // 2 - 1]
    return (x0, y0 - 2 * size, x0 + 5 * size, y0), item.crs, item.resolutions[0]


def bench_cube(work: Path, repeat: int) -> None:
    import pystac
    import rasterio
    from odc.geo.geobox import GeoBox
    from odc.stac import load
    from rasterio.transform import from_origin

    from pixelquery_tiler import Warehouse

    src = DATA / CUBE_SOURCE
    wh = Warehouse(str(work / "cube-wh"))
    dates = [dt.datetime(2002, 6, 1 + 7 * i, 18, 40, tzinfo=dt.UTC) for i in range(5)]
    items = []
    with rasterio.open(src) as ds:
        epsg, shape, transform = ds.crs.to_epsg(), ds.shape, ds.transform
        bbox = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    w, s, e, n = bbox
    footprint = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    proj = {"proj:code": f"EPSG:{epsg}", "proj:shape": list(shape), "proj:transform": list(transform)[:6]}
    cogs = {b: make_cog(src, work / f"cube-{b}.tif", i + 1) for i, b in enumerate(BANDS)}
    for i, when in enumerate(dates):
        wh.ingest(str(src), "cube", datetime=when)
        item = pystac.Item(f"cube-{i}", footprint, list(bbox), when, dict(proj))
        for band, path in cogs.items():
            # every date points at the same COG bytes (the warehouse also stores the same file 5 times)
            asset = pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"], extra_fields={"nodata": 0})
            item.add_asset(band, asset)
        items.append(item)
    collection = wh.collection("cube")
    bounds, crs, res = ten_chunk_bounds(collection)
    width, height = round((bounds[2] - bounds[0]) / res), round((bounds[3] - bounds[1]) / res)
    print(f"\n1. 10-chunk query: {width} x {height} px x 3 bands at {res:g} m ({crs}), bounds {bounds}")
    geobox = GeoBox((height, width), from_origin(bounds[0], bounds[3], res, res), crs)

    for n in (1, 5):
        date_range = (dates[0], dates[n - 1])

        def ours():
            return collection.query_by_bounds(bounds, date_range, BANDS, res, crs=crs).to_numpy()

        def odc():
            ds = load(items[:n], bands=BANDS, geobox=geobox, resampling="nearest", pool=None, fail_on_error=True)
            return {b: ds[b].values for b in BANDS}

        a, b = ours(), odc()
        for band in BANDS:
            assert a[band].shape == b[band].shape, (a[band].shape, b[band].shape)
            np.testing.assert_array_equal(np.ma.filled(a[band], 0), b[band])
        t_ours, t_odc = timed(ours, repeat), timed(odc, repeat)
        print(
            f"   {n} date(s): query_by_bounds p50 {p(t_ours, 50):7.1f} ms (p95 {p(t_ours, 95):6.1f})  |  "
            f"odc-stac p50 {p(t_odc, 50):7.1f} ms (p95 {p(t_odc, 95):6.1f})  |  "
            f"ratio {p(t_ours, 50) / p(t_odc, 50):.2f}"
        )


# -- 2. point time series over HTTP vs TiTiler /cog/point ---------------------------------------------------------
def bench_point(work: Path, dates: int, repeat: int) -> None:
    import rasterio
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from pyproj import Transformer
    from titiler.core.factory import TilerFactory

    from pixelquery_tiler import Warehouse, create_app

    src = DATA / POINT_SOURCE
    wh = Warehouse(str(work / "point-wh"))
    t = time.perf_counter()
    base = dt.datetime(2000, 1, 1, 12, tzinfo=dt.UTC)
    for i in range(dates):
        wh.ingest(str(src), "series", datetime=base + dt.timedelta(days=16 * i))
    print(f"\n2. point series over {dates} dates (ingested in {time.perf_counter() - t:.1f} s)")
    cog = make_cog(src, work / "point-0.tif")
    cogs = [cog] + [Path(shutil.copy(cog, work / f"point-{i}.tif")) for i in range(1, dates)]
    with rasterio.open(src) as ds:
        x, y = ds.xy(ds.height // 2, ds.width // 2)
        lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)

    titiler = FastAPI()
    titiler.include_router(TilerFactory(router_prefix="/cog").router, prefix="/cog")
    # entered clients keep one event loop and worker threadpool for all requests, as a running server does; a
    # client used without ``with`` starts a new loop and worker thread per request, so every per-thread cache
    # (PROJ transformers) is cold on each request (printed too: the figures before the batched read used it)
    ours, anchor = TestClient(create_app(wh)).__enter__(), TestClient(titiler).__enter__()
    cold = TestClient(create_app(wh))
    url = f"/collections/series/timeseries/point/{lon},{lat}"

    def series():
        r = ours.get(url)
        assert r.status_code == 200, r.text
        return r.json()["properties"]["series"]

    def cog_points():
        values = []
        for path in cogs:
            r = anchor.get(f"/cog/point/{lon},{lat}", params={"url": str(path)})
            assert r.status_code == 200, r.text
            values.append(r.json()["values"])
        return values

    def cold_series():
        r = cold.get(url)
        assert r.status_code == 200, r.text
        return r.json()["properties"]["series"]

    # ours first, in a process where GDAL/PROJ have served nothing else (as our own server): TiTiler's requests
    # warm process-wide GDAL/PROJ caches that our read path then benefits from too (measured again after them)
    got = series()
    t_ours, cpu_first = timed(series, repeat), cpu_ms(series, repeat)
    want = cog_points()
    assert len(got) == dates and [list(e["values"].values()) for e in got] == want and cold_series() == got
    t_cog = timed(cog_points, max(3, repeat // 4))
    t_cold = timed(cold_series, repeat)
    per_request = p(t_cog, 50) / dates
    print(
        f"   ours: 1 request, p50 {p(t_ours, 50):.1f} ms (p95 {p(t_ours, 95):.1f})  |  "
        f"TiTiler: {dates} /cog/point requests "
        f"p50 {p(t_cog, 50):.1f} ms in total ({per_request:.2f} ms each)  |  ratio {p(t_ours, 50) / p(t_cog, 50):.2f}"
    )
    print(f"   ours with a new event loop and worker thread per request: p50 {p(t_cold, 50):.1f} ms")
    print(
        f"   CPU per series request (whole process, median): {cpu_first:.1f} ms before any TiTiler request, "
        f"{cpu_ms(series, repeat):.1f} ms after them"
    )
    ours.__exit__(None, None, None)
    anchor.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 20 dates")
    parser.add_argument("--only-point", action="store_true", help="run only the point time series (2.)")
    args = parser.parse_args()
    repeat = 5 if args.quick else 30
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="pq-bench-analysis-") as tmp:
        if not args.only_point:
            bench_cube(Path(tmp), repeat)
        bench_point(Path(tmp), 20 if args.quick else 100, repeat)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
