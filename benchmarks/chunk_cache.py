"""Chunk-cache hot path: ``ChunkReader.read`` per chunk, cache hits and misses, on one zstd chunk file.

The decoded-chunk LRU is hit once per chunk of every tile, so its bookkeeping must cost nothing next to the
tile. Prints microseconds per read (process CPU time, median of 5 rounds) for:

- hit: 32 chunks (3 bands, 256 x 256 uint16) that all fit the default budget, read round-robin;
- miss: the same cycle with room for 4 chunks, so every read decodes (zstd) and evicts.

Compare two checkouts by running it with each on ``PYTHONPATH``, alternating, in one sitting:

    PYTHONPATH=<checkout> python benchmarks/chunk_cache.py
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
from affine import Affine

from pixelquery_tiler.chunks import Chunk, ChunkReader, write_chunk_file
from pixelquery_tiler.fileio import WarehouseFS

SIDE, BANDS, COUNT = 256, ["r", "g", "b"], 32


def per_read(reader: ChunkReader, keys: list[int]) -> float:
    """Microseconds of process CPU per ``read`` over ``keys``."""
    start = time.process_time()
    for i in keys:
        reader.read("z.arrow", i, SIDE, SIDE, BANDS)
    return (time.process_time() - start) / len(keys) * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fs = WarehouseFS(tmp)
        rng = np.random.default_rng(0)
        chunks = [
            Chunk(
                f"13/{i}/0", Affine(10, 0, i * 2560, 0, -10, 0), rng.integers(0, 4000, (3, SIDE, SIDE), np.uint16), None
            )
            for i in range(COUNT)
        ]
        write_chunk_file(fs, "z.arrow", chunks, BANDS, "EPSG:32633", None, compression="zstd")
        warm = ChunkReader(fs)
        per_read(warm, list(range(COUNT)))
        hits = [per_read(warm, [i % COUNT for i in range(20_000)]) for _ in range(5)]
        four = len(BANDS) * SIDE * SIDE * 2 * 4
        misses = [
            per_read(ChunkReader(fs, decoded_bytes=four), [i % COUNT for i in range(20 * COUNT)]) for _ in range(5)
        ]
        print(f"hit {statistics.median(hits):.2f} us/read, miss {statistics.median(misses):.1f} us/read")


if __name__ == "__main__":
    main()
