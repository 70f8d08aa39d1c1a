"""STAC API benchmark: search and item GET latency over a 10,000-item collection, through uvicorn.

Run from the repository root::

    python benchmarks/stac.py                # 10,000 items, 200 searches, 500 item GETs
    python benchmarks/stac.py --quick        # 2,000 items, fewer requests (smoke run)

How the 10,000 items are made: the STAC API serves from the in-memory ``CollectionIndex`` and never reads
Iceberg per request, so the benchmark builds that index directly from synthetic catalog rows (4 native-level
chunks + 1 overview chunk per item, UTM 21S, two years of acquisitions) and one ``SnapshotInfo`` per item,
exactly what ``Collection.index()`` would hold after 10,000 ingests. Committing 10,000 real snapshots first
would take many minutes of Iceberg commits and measure ingest, not search. The synthetic index is installed
on a real collection (one real ingest creates the table) of a real warehouse served by ``create_app``, so
requests go through uvicorn, FastAPI, stac-fastapi and the same code as production.

Prints p50/p95 per request type and asserts nothing. Goals (issue 4): search with bbox+datetime, limit=100,
p50 < 50 ms; single item GET p50 < 5 ms. Not compared with stac-fastapi-pgstac (not stood up here).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
from pyproj import Transformer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from pixelquery_tiler import Warehouse, create_app  # noqa: E402
from pixelquery_tiler.catalog import ARROW_SCHEMA, SnapshotInfo  # noqa: E402
from pixelquery_tiler.index import CollectionIndex  # noqa: E402
from stac_fixtures import DATA_DIR, ServerThread  # noqa: E402

CRS = "EPSG:32621"
CHUNK = 7680.0  # metres per chunk side at level 0 (30 m x 256 px)
RES = 30.0
T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
SPAN_DAYS = 730
REGION = (300_000.0, -3_000_000.0, 900_000.0, -2_400_000.0)  # 600 km x 600 km of UTM 21S


def synthetic_index(n_items: int, seed: int = 1) -> CollectionIndex:
    """``n_items`` items of 2x2 native chunks (+1 overview chunk) scattered over ``REGION``."""
    rng = np.random.default_rng(seed)
    x0 = np.floor(rng.uniform(REGION[0], REGION[2] - 2 * CHUNK, n_items) / CHUNK) * CHUNK
    y0 = np.floor(rng.uniform(REGION[1], REGION[3] - 2 * CHUNK, n_items) / CHUNK) * CHUNK
    when = [T0 + dt.timedelta(seconds=int(s)) for s in rng.uniform(0, SPAN_DAYS * 86400, n_items)]
    ids = [f"synthetic-{k:06d}" for k in range(n_items)]
    # per chunk: item, level, box (4 level-0 quadrants, then the level-1 chunk covering all of them)
    item = np.repeat(np.arange(n_items), 5)
    level = np.tile([0, 0, 0, 0, 1], n_items)
    dx = np.tile([0, 1, 0, 1, 0], n_items) * CHUNK
    dy = np.tile([0, 0, 1, 1, 0], n_items) * CHUNK
    size = np.where(level == 0, CHUNK, 2 * CHUNK)
    minx, miny = x0[item] + dx, y0[item] + dy
    maxx, maxy = minx + size, miny + size
    to_wgs84 = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    xs = np.stack([minx, maxx, minx, maxx])
    ys = np.stack([miny, miny, maxy, maxy])
    lon, lat = to_wgs84.transform(xs, ys)
    res = np.where(level == 0, RES, 2 * RES)
    pixels = (size / res).astype(np.int32)
    rows = pa.table(
        {
            "item_id": pa.array([ids[i] for i in item], pa.large_string()),
            "collection": pa.array(["bench"] * len(item), pa.large_string()),
            "product": pa.array(["landsat-c2-l2"] * len(item), pa.large_string()),
            "datetime": pa.array([when[i] for i in item], pa.timestamp("us", tz="UTC")),
            "tile_id": pa.array(
                [f"{lv}/{int(a)}/{int(b)}" for lv, a, b in zip(level, minx, miny, strict=True)], pa.large_string()
            ),
            "level": pa.array(level, pa.int32()),
            "crs": pa.array([CRS] * len(item), pa.large_string()),
            "minx": minx,
            "miny": miny,
            "maxx": maxx,
            "maxy": maxy,
            "west": lon.min(axis=0),
            "south": lat.min(axis=0),
            "east": lon.max(axis=0),
            "north": lat.max(axis=0),
            "res_x": res,
            "res_y": res,
            "height": pa.array(pixels, pa.int32()),
            "width": pa.array(pixels, pa.int32()),
            "transform": pa.array(
                [[r, 0.0, a, 0.0, -r, b] for r, a, b in zip(res, minx, maxy, strict=True)], pa.large_list(pa.float64())
            ),
            "chunk_file": pa.array(
                [f"chunks/bench/{ids[i]}/L{lv}.arrow" for i, lv in zip(item, level, strict=True)], pa.large_string()
            ),
            "batch_index": pa.array(np.tile([0, 1, 2, 3, 0], n_items), pa.int32()),
            "bands": pa.array([["blue"]] * len(item), pa.large_list(pa.large_string())),
            "dtype": pa.array(["uint16"] * len(item), pa.large_string()),
            "nodata": pa.array([None] * len(item), pa.float64()),
            "band_min": pa.array([[7000.0]] * len(item), pa.large_list(pa.float64())),
            "band_max": pa.array([[14000.0]] * len(item), pa.large_list(pa.float64())),
            "band_mean": pa.array([[9000.0]] * len(item), pa.large_list(pa.float64())),
            "valid_percent": np.full(len(item), 100.0),
            "cloud_cover": rng.uniform(0, 100, len(item)),
        }
    ).cast(ARROW_SCHEMA)
    snapshots, parent = [], None
    for k, (iid, t) in enumerate(zip(ids, when, strict=True)):
        snapshot_id = int(rng.integers(2**62, 2**63 - 1))
        props = {
            "item_id": iid,
            "datetime": t.isoformat(),
            "product": "landsat-c2-l2",
            "source": f"{iid}.tif",
            "crs": CRS,
            "gsd": "30.0",
            "bands": '["blue"]',
            "levels": "2",
            "chunk_count": "5",
            "shape": "[512, 512]",
        }
        commit = T0 + dt.timedelta(days=SPAN_DAYS, seconds=k)
        snapshots.append(SnapshotInfo(snapshot_id, parent, k + 1, commit, iid, t, props, "append"))
        parent = snapshot_id
    return CollectionIndex(rows, snapshots)


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    return f"p50 {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   (n={len(ms)})"


def timed(
    client: httpx.Client, requests: list[Callable[[httpx.Client], httpx.Response]]
) -> tuple[list[float], list[int]]:
    samples, sizes = [], []
    for request in requests:
        start = time.perf_counter()
        response = request(client)
        samples.append(time.perf_counter() - start)
        response.raise_for_status()
        sizes.append(len(response.json().get("features", [1])))
    return samples, sizes


def search_queries(count: int, seed: int = 2) -> list[dict]:
    """bbox (about a quarter of the region) + a six-month datetime interval: thousands match, 100 returned."""
    rng = random.Random(seed)
    to_wgs84 = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    west, south = to_wgs84.transform(REGION[0], REGION[1])
    east, north = to_wgs84.transform(REGION[2], REGION[3])
    out = []
    for _ in range(count):
        w = rng.uniform(west, (west + east) / 2)
        s = rng.uniform(south, (south + north) / 2)
        start = T0 + dt.timedelta(days=rng.uniform(0, SPAN_DAYS - 183))
        out.append(
            {
                "bbox": f"{w:.4f},{s:.4f},{w + (east - west) / 2:.4f},{s + (north - south) / 2:.4f}",
                "datetime": f"{start:%Y-%m-%dT%H:%M:%SZ}/{start + dt.timedelta(days=183):%Y-%m-%dT%H:%M:%SZ}",
                "limit": 100,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--gets", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="2,000 items, 40 searches, 100 GETs")
    args = parser.parse_args()
    if args.quick:
        args.items, args.searches, args.gets = 2_000, 40, 100

    with tempfile.TemporaryDirectory(prefix="pixelquery-stac-bench-") as tmp:
        wh = Warehouse(tmp)
        wh.ingest(
            str(DATA_DIR / "stars_L7_ETMs_olinda_28m.tif"), "bench", datetime="2020-01-01T00:00:00Z"
        )  # creates the table
        start = time.perf_counter()
        index = synthetic_index(args.items)
        print(f"synthetic index: {args.items} items, {len(index)} rows, built in {time.perf_counter() - start:.1f} s")
        wh.collection("bench").index = lambda: index  # type: ignore[method-assign]  # serve the synthetic index

        app = create_app(wh)
        backend = app.state.stac_backend
        start = time.perf_counter()
        backend.records("bench")
        print(f"STAC item columns built in {time.perf_counter() - start:.2f} s (once per index version)")

        with ServerThread(app) as server, httpx.Client(base_url=f"{server.url}/stac", timeout=120) as client:
            queries = search_queries(args.searches)
            warm = time.perf_counter()
            for q in queries:  # first pass computes the footprints of items on query edges (cached afterwards)
                client.get("/search", params=q).raise_for_status()
            print(f"warm-up pass over {len(queries)} searches: {time.perf_counter() - warm:.1f} s")

            samples, sizes = timed(client, [lambda c, q=q: c.get("/search", params=q) for q in queries])
            print(
                f"GET  /search bbox+datetime limit=100   {percentiles(samples)}   "
                f"items/page p50 {statistics.median(sizes):.0f}"
            )
            samples, _ = timed(
                client,
                [
                    lambda c, q=q: c.post(
                        "/search",
                        json={
                            "bbox": [float(v) for v in q["bbox"].split(",")],
                            "datetime": q["datetime"],
                            "limit": 100,
                        },
                    )
                    for q in queries
                ],
            )
            print(f"POST /search bbox+datetime limit=100   {percentiles(samples)}")
            cql = {"filter": "gsd = 30 AND eo:cloud_cover < 50 AND pixelquery:levels >= 2", "limit": 100}
            samples, _ = timed(client, [lambda c, q=q: c.get("/search", params={**q, **cql}) for q in queries])
            print(f"GET  /search bbox+datetime+CQL2 filter {percentiles(samples)}")
            samples, _ = timed(
                client,
                [
                    lambda c, q=q: c.get("/search", params={**q, "limit": 10, "fields": "id,properties.datetime"})
                    for q in queries
                ],
            )
            print(f"GET  /search limit=10 fields=id,...    {percentiles(samples)}")

            rng = random.Random(3)
            ids = [f"synthetic-{rng.randrange(args.items):06d}" for _ in range(args.gets)]
            for iid in ids[:50]:
                client.get(f"/collections/bench/items/{iid}")
            samples, _ = timed(client, [lambda c, i=i: c.get(f"/collections/bench/items/{i}") for i in ids])
            print(f"GET  /collections/bench/items/{{id}}     {percentiles(samples)}")

            in_process = []
            from pixelquery_tiler.stac_api.search import SearchQuery, parse_bbox, parse_datetime

            for q in queries:
                t0 = time.perf_counter()
                start_us, end_us = parse_datetime(q["datetime"])
                backend.search(
                    SearchQuery(
                        collections=["bench"],
                        bbox=parse_bbox(q["bbox"].split(",")),
                        start=start_us,
                        end=end_us,
                        limit=100,
                    )
                )
                in_process.append(time.perf_counter() - t0)
            print(f"in-process match+sort+page (no documents, no HTTP) {percentiles(in_process)}")
        print(json.dumps({"items": args.items, "searches": args.searches, "gets": args.gets}))


if __name__ == "__main__":
    main()
