"""Caches under the threadpool that serves requests: ChunkReader's cachetools LRUs behind one lock (byte bound
honoured, exact pixels from every thread), the shared coordinate-transformer cache and the STAC item cache."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import Transformer

from pixelquery_tiler.chunks import Chunk, ChunkReader, write_chunk_file
from pixelquery_tiler.crs import transformer
from pixelquery_tiler.fileio import WarehouseFS

SIDE = 64
BANDS = ["a", "b"]
#: bytes of one decoded chunk: two uint16 bands of SIDE x SIDE
CHUNK_BYTES = len(BANDS) * SIDE * SIDE * 2


def _chunks(n: int, seed: int) -> list[Chunk]:
    rng = np.random.default_rng(seed)
    return [
        Chunk(
            f"13/{i}/0", Affine(10, 0, i * 640, 0, -10, 0), rng.integers(0, 999, (2, SIDE, SIDE), dtype=np.uint16), None
        )
        for i in range(n)
    ]


def test_decoded_cache_is_bounded_by_bytes_and_skips_a_chunk_larger_than_the_budget(tmp_path: Path) -> None:
    fs = WarehouseFS(str(tmp_path))
    chunks = _chunks(12, seed=1)
    write_chunk_file(fs, "z.arrow", chunks, BANDS, "EPSG:32633", None, compression="zstd")
    budget = 3 * CHUNK_BYTES + CHUNK_BYTES // 2  # room for three decoded chunks, not four
    reader = ChunkReader(fs, decoded_bytes=budget)
    for i in [*range(12), 3, 7, 11, 0]:
        data, _ = reader.read("z.arrow", i, SIDE, SIDE, BANDS)
        np.testing.assert_array_equal(np.stack(data), chunks[i].data)
        assert reader._decoded.currsize <= budget
    assert len(reader._decoded) == 3 and set(reader._decoded) == {("z.arrow", 7), ("z.arrow", 11), ("z.arrow", 0)}

    tiny = ChunkReader(fs, decoded_bytes=CHUNK_BYTES // 2)  # every chunk is larger than the whole budget
    data, _ = tiny.read("z.arrow", 5, SIDE, SIDE, BANDS)
    np.testing.assert_array_equal(np.stack(data), chunks[5].data)
    assert len(tiny._decoded) == 0 and tiny._decoded.currsize == 0


def test_open_files_are_an_lru_of_max_open(tmp_path: Path) -> None:
    fs = WarehouseFS(str(tmp_path))
    chunks = _chunks(2, seed=2)
    for n in range(5):
        write_chunk_file(fs, f"f{n}.arrow", chunks, BANDS, "EPSG:32633", None, compression=None)
    reader = ChunkReader(fs, max_open=2)
    for n in (0, 1, 2, 1, 3):
        data, _ = reader.read(f"f{n}.arrow", 1, SIDE, SIDE, BANDS)
        np.testing.assert_array_equal(np.stack(data), chunks[1].data)
    assert set(reader._open) == {"f1.arrow", "f3.arrow"}  # f1 was used again, so f2 went first


def test_one_reader_shared_by_a_threadpool_returns_exact_chunks_within_its_bound(tmp_path: Path) -> None:
    """Eight threads hammer one reader over more chunks than fit, with hits, misses and evictions interleaved."""
    fs = WarehouseFS(str(tmp_path))
    files = {f"z{n}.arrow": _chunks(16, seed=10 + n) for n in range(3)}
    for name, chunks in files.items():
        write_chunk_file(fs, name, chunks, BANDS, "EPSG:32633", None, compression="zstd")
    budget = 10 * CHUNK_BYTES  # about a fifth of the 48 chunks
    reader = ChunkReader(fs, max_open=2, decoded_bytes=budget)  # both LRUs evict all the time

    def work(seed: int) -> int:
        rng = random.Random(seed)
        for _ in range(300):
            name = rng.choice(sorted(files))
            i = rng.randrange(16)
            data, valid = reader.read(name, i, SIDE, SIDE, BANDS)
            np.testing.assert_array_equal(np.stack(data), files[name][i].data)
            assert valid is None
            assert reader._decoded.currsize <= budget
        return 300

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(work, range(8))) == 2400
    assert reader._decoded.currsize <= budget and len(reader._open) <= 2
    assert reader._decoded.currsize == sum(batch.nbytes for batch in reader._decoded.values())


def test_transformers_are_shared_across_threads_and_exact_in_each() -> None:
    """One cached transformer per CRS pair for the whole process, giving every thread pyproj's own answer."""
    rng = np.random.default_rng(4)
    xs, ys = rng.uniform(300_000, 700_000, 1000), rng.uniform(9_000_000, 9_300_000, 1000)
    reference = Transformer.from_crs("EPSG:32724", "EPSG:4326", always_xy=True).transform(xs, ys)

    def work(_: int) -> Transformer:
        t = transformer("EPSG:32724", "EPSG:4326")
        for _ in range(20):
            np.testing.assert_allclose(t.transform(xs, ys), reference, rtol=0, atol=1e-9)  # degrees: same PROJ op
        return t

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(work, range(12)))  # first calls may race (both build one; the cache keeps one)
        cached = transformer("EPSG:32724", "EPSG:4326")
        assert all(t is cached for t in pool.map(work, range(12)))


def test_item_cache_computes_each_item_snapshot_once_across_records_objects() -> None:
    """STAC footprints/documents: keyed by (collection, item, snapshot), so an index rebuild reuses them."""
    from pixelquery_tiler.stac_api.records import item_cache

    class Records:  # the one method item_cache relies on
        def __init__(self, snapshot: int):
            self.snapshot = snapshot

        def item_key(self, i: int) -> tuple[str, str, int]:
            return "c", f"item-{i}", self.snapshot

    calls: list[tuple[int, int]] = []

    def compute(records: Records, i: int) -> tuple[int, int]:
        calls.append((records.snapshot, i))
        return records.snapshot, i

    cached = item_cache(maxsize=2)(compute)
    first, rebuilt = Records(1), Records(1)
    assert cached(first, 0) == (1, 0) and cached(rebuilt, 0) == (1, 0)  # same item and snapshot: one computation
    assert cached(Records(2), 0) == (2, 0)  # a new snapshot of the item is another entry
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(lambda i: cached(first, i % 2), range(40)))[:2] == [(1, 0), (1, 1)]
    assert calls.count((1, 0)) <= 2 and len(cached.cache) <= 2  # bounded LRU; (1, 0) evicted once at most
