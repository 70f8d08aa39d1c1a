"""Service overhead benchmark: tiles with API keys + metrics + rate limiting on vs off, and job latency.

Run from the repository root::

    python benchmarks/service.py              # 5 alternating rounds of 120 tiles per server, 5 jobs
    python benchmarks/service.py --quick      # 2 rounds of 40 tiles, 2 jobs

Prints numbers and ratios and asserts nothing:

1. the same seeded tiles from two uvicorn servers (1 worker process each, loopback) over one warehouse:
   "off" = the app with the service middlewares removed (no read auth, no metrics, no rate limiting), "on" =
   ``--read-auth`` (every request carries a bearer key, checked), metrics and ``--rate-limit`` (set high so
   it counts but never refuses). Rounds alternate off/on so machine-load drift hits both alike. Reported:
   p50 latency at concurrency 1 and throughput at concurrency 4 (requests in this process via httpx);
2. the same off/on apps in-process (httpx ASGI transport), in CPU time of this process, on a cheap request (a
   404 job lookup) and on tiles: the middlewares' own cost, free of HTTP and machine-load noise;
3. job latency: ``POST /jobs`` for a small file until its item answers in STAC (polled every 20 ms), vs the
   bare in-process ``Warehouse.ingest`` of the same file (warm; median of the repeats).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from tiles import DATA, WEB, free_port, load  # noqa: E402  (found through the sys.path entries above)

KEY = "bench-key"
SOURCE = "gw_LC08_224077_20200518_B2_60m.tif"


def serve_main(mode: str, warehouse: str, port: int, imports: str) -> None:
    """Child process: one uvicorn server; ``off`` strips the service middlewares from the same app."""
    import uvicorn

    from pixelquery_tiler.app import create_app
    from pixelquery_tiler.auth import ReadAuthMiddleware
    from pixelquery_tiler.ops import MetricsMiddleware, RateLimitMiddleware
    from pixelquery_tiler.settings import Settings

    settings = Settings(
        api_keys=[KEY],
        read_auth=mode == "on",
        rate_limit="100000/s" if mode == "on" else None,
        import_roots=[imports],
        job_workers=1,
    )
    app = create_app(warehouse, settings=settings)
    if mode == "off":
        stripped = (MetricsMiddleware, RateLimitMiddleware, ReadAuthMiddleware)
        app.user_middleware = [m for m in app.user_middleware if m.cls not in stripped]
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def wait_up(port: int) -> None:
    import httpx

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not start")


def tile_paths(cid: str, bounds: tuple[float, float, float, float], count: int) -> list[str]:
    tiles = []
    for z in range(8, 13):
        tiles.extend(WEB.tiles(*bounds, [z]))
    tiles = tiles[:: max(1, len(tiles) // count)][:count]
    return [f"/collections/{cid}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?rescale=0,20000" for t in tiles]


async def sequential(base: str, paths: list[str], headers: dict) -> list[float]:
    import httpx

    out = []
    async with httpx.AsyncClient(timeout=60, headers=headers) as client:
        for p in paths:
            t0 = time.perf_counter()
            r = await client.get(base + p)
            out.append(time.perf_counter() - t0)
            assert r.status_code in (200, 404), (r.status_code, r.text[:200])
    return out


def bench_tiles(warehouse: str, imports: str, rounds: int, count: int) -> None:
    import httpx

    from pixelquery_tiler import Warehouse

    coll = Warehouse(warehouse).collection("l8")
    idx = coll.index()
    rows = idx.rows
    bounds = (
        min(rows.column("west").to_pylist()),
        min(rows.column("south").to_pylist()),
        max(rows.column("east").to_pylist()),
        max(rows.column("north").to_pylist()),
    )
    paths = tile_paths("l8", bounds, count)
    procs, bases = {}, {}
    for mode in ("off", "on"):
        port = free_port()
        procs[mode] = subprocess.Popen([sys.executable, __file__, "--serve", mode, warehouse, str(port), imports])
        bases[mode] = f"http://127.0.0.1:{port}"
    try:
        for mode in procs:
            wait_up(int(bases[mode].rsplit(":", 1)[1]))
        headers = {"off": {}, "on": {"Authorization": f"Bearer {KEY}"}}
        for mode in procs:  # warm-up: imports, index, GDAL caches
            asyncio.run(sequential(bases[mode], paths[:10], headers[mode]))
        lat: dict[str, list[float]] = {"off": [], "on": []}
        thr: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(rounds):
            for mode in ("off", "on"):
                lat[mode].extend(asyncio.run(sequential(bases[mode], paths, headers[mode])))
                urls = [bases[mode] + p for p in paths]
                if mode == "on":
                    urls = [u + f"&token={KEY}" for u in urls]  # the concurrent loader sends no headers
                _, elapsed, _ = asyncio.run(load(urls, 4))
                thr[mode].append(len(urls) / elapsed)
        metrics = httpx.get(bases["on"] + "/metrics", headers=headers["on"]).text
        served = [ln for ln in metrics.splitlines() if ln.startswith("pixelquery_tiles_served_total ")]
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(20)
    p50 = {m: statistics.median(v) * 1000 for m, v in lat.items()}
    rps = {m: statistics.median(v) for m, v in thr.items()}
    print(f"tiles: {len(paths)} per round, {rounds} rounds, alternating off/on; 'on' server counted {served}")
    print(
        f"  p50 latency (concurrency 1):  off {p50['off']:.2f} ms   on {p50['on']:.2f} ms   "
        f"overhead {100 * (p50['on'] / p50['off'] - 1):+.1f}%"
    )
    print(
        f"  throughput (concurrency 4):   off {rps['off']:.1f} /s   on {rps['on']:.1f} /s   "
        f"overhead {100 * (rps['off'] / rps['on'] - 1):+.1f}%"
    )


def bench_jobs(warehouse: str, imports: str, repeats: int) -> None:
    import httpx

    from pixelquery_tiler import Warehouse

    wh = Warehouse(warehouse)
    src = str(Path(imports) / SOURCE)
    wh.ingest(src, "bare", datetime="2020-01-01")  # warm-up
    bare = []
    for i in range(repeats):
        t0 = time.perf_counter()
        wh.ingest(src, "bare", datetime=f"2020-01-{i + 2:02d}")
        bare.append(time.perf_counter() - t0)
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "off", warehouse, str(port), imports])
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        wait_up(port)
        job_times = []
        with httpx.Client(timeout=60) as client:
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                r = client.post(
                    base + "/jobs",
                    headers=auth,
                    json={"collection": "jobs", "sources": [src], "datetime": f"2020-02-{i + 1:02d}"},
                )
                job_id = r.json()["id"]
                while True:
                    job = client.get(f"{base}/jobs/{job_id}").json()
                    if job["status"] == "failed":
                        raise RuntimeError(job["error"])
                    if (
                        job["status"] == "succeeded"
                        and client.get(f"{base}/stac/collections/jobs/items/{job['items'][0]}").status_code == 200
                    ):
                        break
                    time.sleep(0.02)
                if i:  # the first job pays the first-use costs (collection creation): not counted
                    job_times.append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(20)
    b, j = statistics.median(bare), statistics.median(job_times)
    print(
        f"job latency ({SOURCE}, {repeats} runs, medians): bare ingest {b * 1000:.0f} ms, "
        f"POST /jobs -> item in STAC {j * 1000:.0f} ms, over bare {(j - b) * 1000:+.0f} ms"
    )


def bench_middleware(warehouse: str, imports: str, n: int) -> None:
    """Per-request cost of the three middlewares, in-process on a cheap request (a 404 job lookup)."""
    import httpx

    from pixelquery_tiler import Warehouse
    from pixelquery_tiler.app import create_app
    from pixelquery_tiler.auth import ReadAuthMiddleware
    from pixelquery_tiler.ops import MetricsMiddleware, RateLimitMiddleware
    from pixelquery_tiler.settings import Settings

    apps = {}
    for mode in ("off", "on"):
        settings = Settings(
            api_keys=[KEY], read_auth=mode == "on", job_workers=0, rate_limit="100000/s" if mode == "on" else None
        )
        apps[mode] = create_app(warehouse, settings=settings)
        if mode == "off":
            stripped = (MetricsMiddleware, RateLimitMiddleware, ReadAuthMiddleware)
            apps[mode].user_middleware = [m for m in apps[mode].user_middleware if m.cls not in stripped]

    coll_rows = Warehouse(warehouse).collection("l8").index().rows
    bounds = (
        min(coll_rows.column("west").to_pylist()),
        min(coll_rows.column("south").to_pylist()),
        max(coll_rows.column("east").to_pylist()),
        max(coll_rows.column("north").to_pylist()),
    )
    requests_by_kind = {"404 job lookup": ["/jobs/none"] * n, "tile": tile_paths("l8", bounds, 40)}

    async def run(mode: str, paths: list[str]) -> float:
        transport = httpx.ASGITransport(app=apps[mode])
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"Authorization": f"Bearer {KEY}"}
        ) as client:
            await client.get(paths[0])
            t0 = time.process_time()  # CPU time: on a shared machine wall time is mostly other processes' load
            for path in paths:
                await client.get(path)
            return (time.process_time() - t0) / len(paths)

    for kind, paths in requests_by_kind.items():
        times: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(4):
            for mode in ("off", "on"):
                times[mode].append(asyncio.run(run(mode, paths)))
        off, on = (statistics.median(times[m]) * 1e6 for m in ("off", "on"))
        print(
            f"in-process CPU per request, {kind} ({len(paths)} x 4, median): off {off:.0f} us, on {on:.0f} us, "
            f"{on - off:+.0f} us ({100 * (on / off - 1):+.1f}%)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", nargs=4, metavar=("MODE", "WAREHOUSE", "PORT", "IMPORTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        mode, warehouse, port, imports = args.serve
        serve_main(mode, warehouse, int(port), imports)
        return
    from pixelquery_tiler import Warehouse

    with tempfile.TemporaryDirectory() as tmp:
        warehouse = str(Path(tmp) / "warehouse")
        Warehouse(warehouse).ingest(str(DATA / "gw_LC08_224077_20200518_B2_30m.tif"), "l8", datetime="2020-05-18")
        bench_middleware(warehouse, str(DATA), 200 if args.quick else 1000)
        bench_tiles(warehouse, str(DATA), 2 if args.quick else 5, 40 if args.quick else 120)
        bench_jobs(warehouse, str(DATA), 2 if args.quick else 5)


if __name__ == "__main__":
    main()
