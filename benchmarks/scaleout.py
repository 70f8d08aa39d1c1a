"""Scale-out costs on loopback servers (the same ones tests/test_scaleout.py starts):

1. tile latency p50 and throughput through nginx (docker/nginx.conf) with 1 vs 3 ``serve`` replicas on one
   PostgreSQL catalog + S3 (SeaweedFS) warehouse;
2. tile p50 from the S3 warehouse vs the same file in a local warehouse (one replica, direct);
3. what limits one PostgreSQL catalog: commits/s with 4 concurrent writers (``ingest`` processes), and the
   index refresh a replica pays per new item (``Collection.index()`` after one commit).

    python benchmarks/scaleout.py [--requests 300] [--concurrency 8] [--writers 4] [--per-writer 5]

Tiles are distinct (a grid around the scene centre at z 9-11, each URL once per round) so the tile cache does
not answer them; one untimed warm-up round per setup.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

import morecantile  # noqa: E402

from scaleout_servers import DATA, Postgres, SeaweedFS, cli, http_get, nginx, s3_env, serve  # noqa: E402

SCENE, WHEN = "gw_LC08_224077_20200518_B2_30m.tif", "2020-05-18"


def tile_urls(n: int) -> list[str]:
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(DATA / SCENE) as src:
        w, s, e, nth = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    tms = morecantile.tms.get("WebMercatorQuad")
    urls = []
    for z in (9, 10, 11):
        urls += [
            f"/collections/bench/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?rescale=0,3000"
            for t in tms.tiles(w, s, e, nth, [z])
        ]
    return [urls[i % len(urls)] for i in range(n)]


def load(base: str, urls: list[str], concurrency: int) -> tuple[float, float, int]:
    """(p50 ms, requests/s, errors) for ``urls`` at ``concurrency``."""

    def one(url: str) -> tuple[float, int]:
        t0 = time.perf_counter()
        status = http_get(base + url, timeout=120)[0]
        return (time.perf_counter() - t0) * 1000, status

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, urls))
    wall = time.perf_counter() - t0
    return statistics.median(r[0] for r in results), len(urls) / wall, sum(r[1] >= 500 for r in results)


def ingest(warehouse: str, collection: str, catalog: list[str], env: dict, when: str = WHEN) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        [*cli(), "ingest", warehouse, str(DATA / SCENE), "--collection", collection, "--datetime", when, *catalog],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    if done.returncode:
        raise SystemExit(f"ingest failed: {done.stderr.strip()}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--per-writer", type=int, default=5)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    urls = tile_urls(args.requests)
    root = Path(tempfile.mkdtemp(prefix="pq-scaleout-bench-"))
    with SeaweedFS.running(root / "sw") as sw, Postgres.running() as pg:
        env = s3_env(sw.s3_endpoint)
        catalog = ["--catalog-uri", pg.uri]
        ingest("s3://bucket/bench", "bench", catalog, env)
        local = str(root / "local")
        ingest(local, "bench", [], {})

        # 1 + 2: tiles through nginx, 1 vs 3 replicas; S3 vs local direct
        rows = []
        for n in (1, 3):
            with contextlib.ExitStack() as stack:
                bases = [
                    stack.enter_context(serve(["s3://bucket/bench", *catalog], env, root / f"r{n}-{i}.log"))[0]
                    for i in range(n)
                ]
                proxy = stack.enter_context(nginx([b.split("://", 1)[1] for b in bases], root / f"nginx{n}"))
                load(proxy, urls[: len(urls) // 3], args.concurrency)  # warm-up
                rows.append((f"nginx + {n} replica(s), S3 + PostgreSQL", *load(proxy, urls, args.concurrency)))
                if n == 1:
                    rows.append(("1 replica direct, S3 + PostgreSQL", *load(bases[0], urls, 1)))
        with serve([local], {}, root / "local.log") as (base, _):
            load(base, urls[: len(urls) // 3], 1)
            rows.append(("1 replica direct, local warehouse", *load(base, urls, 1)))
        print(
            f"\n{args.requests} distinct-ish tile requests (z 9-11, PNG), concurrency {args.concurrency} "
            "through nginx, 1 for direct"
        )
        print("| setup | p50 ms | req/s | 5xx |\n|---|---:|---:|---:|")
        for name, p50, rps, errors in rows:
            print(f"| {name} | {p50:.1f} | {rps:.1f} | {errors} |")

        # 3a: commit rate with concurrent writers on PostgreSQL
        def writer(i: int) -> list[float]:
            return [
                ingest("s3://bucket/bench", "writers", catalog, env, f"2021-{i + 1:02d}-{k + 1:02d}")
                for k in range(args.per_writer)
            ]

        ingest("s3://bucket/bench", "writers", catalog, env, "2020-12-31")  # table exists before the race
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.writers) as pool:
            times = [t for ts in pool.map(writer, range(args.writers)) for t in ts]
        wall = time.perf_counter() - t0
        total = args.writers * args.per_writer
        print(
            f"\n{args.writers} concurrent ingest processes x {args.per_writer}: {total} items in {wall:.1f} s = "
            f"{total / wall:.2f} items/s; per ingest p50 {statistics.median(times):.2f} s (CLI start-up included)"
        )

        # 3b: index refresh cost per replica after one new item
        from pixelquery_tiler import Warehouse

        os.environ.update(env)
        wh = Warehouse("s3://bucket/bench", catalog_uri=pg.uri, refresh_interval=0, create=False)
        col = wh.collection("writers")
        col.index()
        samples = []
        for k in range(5):
            ingest("s3://bucket/bench", "writers", catalog, env, f"2022-01-{k + 1:02d}")
            t0 = time.perf_counter()
            col.index()
            samples.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        col.index()
        unchanged = (time.perf_counter() - t0) * 1000
        print(
            f"index refresh after one new item (S3 + PostgreSQL, {len(col.snapshots())} items): "
            f"p50 {statistics.median(samples):.0f} ms; head check without change {unchanged:.0f} ms "
            "(paid once per refresh interval per replica per collection)"
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
