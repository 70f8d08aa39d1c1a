"""Commit overhead per ingest at 10, 100 and 1,000 snapshots in one collection.

Goal (issue 2): <= 100 ms per commit at 1,000 snapshots. Each ingest is a 16 x 16 px, one-chunk GeoTIFF
(one catalog row), so the time is the Iceberg commit, not pixels. ``commit`` is ``catalog.commit_append``
(the append plus, every ``expire-batch`` ingests, the snapshot-expiry commit that keeps metadata small,
and, every ``pixelquery.compact-min-files`` ingests, the automatic compaction; so the mean is the amortised
cost), as wall time and as CPU time of this process (all threads; less
sensitive to other load on a shared machine); ``ingest`` is the whole ``Warehouse.ingest`` call.

    python benchmarks/commit.py [--snapshots 1000] [--retain N --batch M]   # defaults: table properties
    python benchmarks/commit.py --snapshots 200 --retain 0                    # pyiceberg without expiry

At the end it builds the index from scratch (a server's start-up), runs ``compact`` and builds it again.
``benchmarks/index_build.py`` measures the same at 10,000 items (tables built in bulk).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

MILESTONES = (10, 100, 1000, 2000, 5000)


def tiny_geotiff(path: Path) -> Path:
    """A 16 x 16 px GeoTIFF: one chunk, one level, so one catalog row per ingest."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=16,
        height=16,
        count=1,
        dtype="uint16",
        crs="EPSG:32621",
        transform=Affine(30, 0, 7680 * 92, 0, -30, -7680 * 362),  # inside one storage-grid chunk
    ) as dst:
        dst.write(np.arange(256, dtype="uint16").reshape(1, 16, 16))
    return path


def summarize(values: list[float]) -> str:
    ms = np.array(values) * 1000
    return f"median {np.median(ms):6.1f}  mean {ms.mean():6.1f}  p95 {np.percentile(ms, 95):6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=1000)
    parser.add_argument("--retain", type=int, help="pixelquery.retain-snapshots (0 = never expire)")
    parser.add_argument("--batch", type=int, help="pixelquery.expire-batch")
    parser.add_argument("--keep", type=Path, help="build the warehouse here and keep it")
    args = parser.parse_args()

    from pixelquery_tiler import Warehouse
    from pixelquery_tiler import catalog as cat

    commit_times: list[float] = []
    commit_cpu: list[float] = []
    original = cat.commit_append

    def timed_commit(*a: object, **kw: object) -> object:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return original(*a, **kw)
        finally:
            commit_times.append(time.perf_counter() - t0)
            commit_cpu.append(time.process_time() - c0)  # less sensitive to other load on the machine

    cat.commit_append = timed_commit  # ingest calls it through the module attribute

    root = args.keep or Path(tempfile.mkdtemp(prefix="pq-bench-commit-"))
    try:
        tif = tiny_geotiff(root / "tiny.tif") if root.exists() else None
        if tif is None:
            root.mkdir(parents=True)
            tif = tiny_geotiff(root / "tiny.tif")
        wh = Warehouse(str(root / "wh"))
        start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        wh.ingest(str(tif), "bench", datetime=start)
        props = {}
        if args.retain is not None:
            props[cat.RETAIN_PROPERTY] = str(args.retain)
        if args.batch is not None:
            props[cat.EXPIRE_BATCH_PROPERTY] = str(args.batch)
        if props:
            with wh.collection("bench").table().transaction() as tx:
                tx.set_properties(props)
        ingest_times = []
        for n in range(2, args.snapshots + 1):
            t0 = time.perf_counter()
            wh.ingest(str(tif), "bench", datetime=start + dt.timedelta(days=n))  # one partition per month
            ingest_times.append(time.perf_counter() - t0)
            if n in MILESTONES or n == args.snapshots:
                window = max(10, n // 10)  # the last 10% of commits up to this count
                table = wh.collection("bench").table()
                print(
                    f"{n:5d} snapshots | commit {summarize(commit_times[-window:])} | commit CPU "
                    f"{summarize(commit_cpu[-window:])} | ingest "
                    f"{summarize(ingest_times[-window:])} ms | live Iceberg snapshots {len(table.metadata.snapshots)}",
                    flush=True,
                )
        t0 = time.perf_counter()
        history = wh.collection("bench").snapshots()
        print(f"history {len(history)} snapshots listed in {1000 * (time.perf_counter() - t0):.0f} ms")

        def build_index() -> None:
            cat._log_cache.clear()  # a new server process starts with no cached item log
            t0 = time.perf_counter()
            fresh = Warehouse(str(root / "wh")).collection("bench")
            index = fresh.index()
            files = len(list(fresh.table().scan().plan_files()))
            print(
                f"index of {len(index.items)} items ({files} data files) built from scratch in "
                f"{1000 * (time.perf_counter() - t0):.0f} ms"
            )

        build_index()
        t0 = time.perf_counter()
        report = wh.collection("bench").compact()
        print(f"compact {report.files_before} -> {report.files_after} data files in {time.perf_counter() - t0:.2f} s")
        build_index()
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
