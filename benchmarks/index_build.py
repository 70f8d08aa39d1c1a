"""Server start-up (index build) and commit cost at 1,000 and 10,000 items, before and after ``compact``.

Goal (issue 10): < 1 s index build and <= 100 ms per commit at 10,000 items.

10,000 real ingests take ~15-20 min of commits alone, too long for a shared 2-core machine, so the table is
*built* in bulk and then measured for real:

- each synthetic item is its own Parquet data file (what one ingest writes: ``--rows`` catalog rows copied
  from a real tiny ingest, with its own ``item_id``, ``chunk_file`` and a datetime 6 hours after the previous
  one), written with pyarrow and added with pyiceberg's ``add_files`` in one Iceberg commit; and its snapshot
  entry is in the item log (what expiry leaves), so
  the history has one entry per item, as after N real ingests with expiry;
- then measured for real: the index build of a fresh ``Warehouse`` (a server's start-up: history + item log +
  manifests + data files + ``CollectionIndex``; the item-log cache cleared), and ``--commits`` real ingests of
  a one-chunk GeoTIFF timed around ``catalog.commit_append`` (append + expiry + automatic compaction when due,
  i.e. the amortised cost), then ``compact``, then both again.

    python benchmarks/index_build.py --items 1000 10000 [--rows 8] [--commits 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from commit import summarize, tiny_geotiff


def build_table(root: Path, tif: Path, items: int, rows_per_item: int):
    """A collection with ``items`` items laid out as ``items`` ingests (+ expiry) would leave it."""
    from pixelquery_tiler import Warehouse
    from pixelquery_tiler import catalog as cat

    wh = Warehouse(str(root / "wh"))
    start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    wh.ingest(str(tif), "bench", datetime=start)
    table = wh.collection("bench").table()
    with table.transaction() as tx:
        tx.set_properties({cat.COMPACT_MIN_FILES_PROPERTY: "0"})  # "before": nothing compacted yet
    template = cat.scan_rows(table).slice(0, 1).to_pylist()[0]
    infos, paths = [], []
    table = wh.collection("bench").table()
    plain = _without_field_ids(cat.ARROW_SCHEMA)  # add_files maps columns by name
    folder = root / "wh" / "iceberg" / "bench" / "data" / "synthetic"
    folder.mkdir(parents=True)
    for i in range(1, items):
        item_id = f"synthetic-{i:06d}"
        when = start + dt.timedelta(hours=6 * i)
        rows = [
            {
                **template,
                "item_id": item_id,
                "datetime": when,
                "batch_index": b,
                "level": 0,
                "chunk_file": f"chunks/bench/{item_id}/L0.arrow",
            }
            for b in range(rows_per_item)
        ]
        pq.write_table(pa.Table.from_pylist(rows, schema=plain), folder / f"{item_id}.parquet", compression="zstd")
        paths.append(str(folder / f"{item_id}.parquet"))
        props = {"item_id": item_id, "datetime": when.isoformat(), "product": template["product"]}
        infos.append(
            cat.SnapshotInfo(
                snapshot_id=10**12 + i,
                parent_id=10**12 + i - 1 if i > 1 else None,
                sequence_number=i,
                timestamp=when,
                item_id=item_id,
                datetime=when,
                properties=props,
                operation="append",
            )
        )
    store = cat.CollectionTable.of(table)
    log_files = store._append_item_log(table, infos)
    with table.transaction() as tx:
        tx.add_files(paths)
        tx.set_properties({cat.ITEM_LOG_PROPERTY: json.dumps(log_files)})
    return wh


def _without_field_ids(schema: pa.Schema) -> pa.Schema:
    def plain(t: pa.DataType) -> pa.DataType:
        return pa.list_(pa.field("element", plain(t.value_type), nullable=False)) if pa.types.is_list(t) else t

    return pa.schema([pa.field(f.name, plain(f.type), f.nullable) for f in schema])


def index_build(uri: str, repeat: int) -> tuple[list[float], int, int]:
    """Wall seconds of ``repeat`` index builds, after one *cold* build that is printed but not counted.

    The first build in a process also pays the lazy imports and set-up of the catalog and Parquet stack
    (SQLAlchemy dialect, pyiceberg catalog, ``pyarrow.dataset``: ~0.3-0.5 s CPU), which a server pays once at
    start-up whatever the table size; the repeats are the index build itself (fresh ``Warehouse``, catalog,
    item-log cache cleared).
    """
    from pixelquery_tiler import Warehouse
    from pixelquery_tiler import catalog as cat

    times, n = [], 0
    for k in range(repeat + 1):
        cat._log_cache.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        index = Warehouse(uri).collection("bench").index()
        wall = time.perf_counter() - t0
        label = "cold, first in process" if k == 0 else "index build"
        print(f"    {label}: wall {wall:.2f} s, CPU {time.process_time() - c0:.2f} s", flush=True)
        if k:
            times.append(wall)
        n = len(index.items)
    files = len(list(Warehouse(uri).collection("bench").table().scan().plan_files()))
    return times, n, files


def commits(wh, tif: Path, count: int, day0: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``count`` real commits (CPU: this process, all threads; robust to machine load)."""
    from pixelquery_tiler import catalog as cat

    times: list[float] = []
    cpu: list[float] = []
    original = cat.commit_append

    def timed(*a: object, **kw: object) -> object:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return original(*a, **kw)
        finally:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)

    cat.commit_append = timed
    try:
        start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        for k in range(count):
            wh.ingest(str(tif), "bench", datetime=start + dt.timedelta(days=day0 + k))
    finally:
        cat.commit_append = original
    return times, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rows", type=int, default=8, help="catalog rows per synthetic item")
    parser.add_argument("--commits", type=int, default=20, help="real ingests timed before and after compact")
    parser.add_argument("--repeat", type=int, default=3, help="index builds per state (median reported)")
    args = parser.parse_args()

    from pixelquery_tiler import catalog as cat

    for items in args.items:
        root = Path(tempfile.mkdtemp(prefix="pq-bench-index-"))
        try:
            tif = tiny_geotiff(root / "tiny.tif")
            t0 = time.perf_counter()
            wh = build_table(root, tif, items, args.rows)
            print(f"{items} items x {args.rows} rows: table built in {time.perf_counter() - t0:.1f} s", flush=True)
            uri = str(root / "wh")
            for state in ("before compact", "after compact"):
                if state == "after compact":
                    t0 = time.perf_counter()
                    report = wh.collection("bench").compact()
                    print(
                        f"  compact: {report.files_before} -> {report.files_after} data files in "
                        f"{time.perf_counter() - t0:.2f} s",
                        flush=True,
                    )
                    with wh.collection("bench").table().transaction() as tx:  # back to the default threshold
                        tx.set_properties({cat.COMPACT_MIN_FILES_PROPERTY: str(cat.DEFAULT_COMPACT_MIN_FILES)})
                times, n, files = index_build(uri, args.repeat)
                print(
                    f"  {state}: index build {statistics.median(times):.2f} s median of {args.repeat} "
                    f"({', '.join(f'{t:.2f}' for t in times)}) | {n} items | {files} data files",
                    flush=True,
                )
                wall, cpu = commits(wh, tif, args.commits, day0=5000 if state == "before compact" else 6000)
                print(
                    f"  {state}: commit ms {summarize(wall)} | CPU ms {summarize(cpu)} | {len(wall)} real ingests",
                    flush=True,
                )
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
