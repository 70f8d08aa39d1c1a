"""Chunk files: immutable Arrow IPC files holding pixels.

One file per ingested band group and level, one record batch per chunk, written as chunks fill
(:class:`ChunkFileWriter`) so ingest never holds a whole level in memory. A batch has one column per band
(named by common name, native dtype, ``height*width`` rows in row-major order) and, where the source had a
mask that is not a nodata value, a ``valid`` uint8 column (255 valid, 0 not). Primitive columns without
nulls map to numpy without copying, and a memory-mapped file makes reading a chunk a pointer cast.

Where validity is a nodata value, the value alone says which pixels are valid, except where an averaged
overview pixel happens to equal nodata: such chunks (rare, so kept apart in their own file to leave the
others small) carry one ``valid:<band>`` uint8 column per band, the mask kept separate from the value.
One pixel-level column could not say it: the other bands of that pixel may really be nodata.

Files are written once under a unique name and never modified: a crash leaves at most an unreferenced file
for ``gc``; there is no rename step that an object store could not do atomically.

Buffers may be compressed (Arrow IPC LZ4_FRAME / ZSTD, per buffer): a chunk is still one record batch at a
known offset in the file footer, so a single chunk stays one ranged read on object storage. Each batch
carries its tile id and transform as batch metadata, so a file describes itself without the catalog.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

import cachetools
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
from affine import Affine

from .fileio import WarehouseFS

VALID_COLUMN = "valid"
#: prefix of the per-band validity columns (``valid:<band>``)
BAND_VALID_PREFIX = VALID_COLUMN + ":"
FORMAT_VERSION = "2"
#: An Arrow IPC buffer codec (the names ``pyarrow.ipc.IpcWriteOptions`` accepts).
Codec = Literal["lz4", "zstd"]
#: Arrow IPC buffer codecs a chunk file may use (``None``: uncompressed).
CODECS: tuple[Codec | None, ...] = (None, "lz4", "zstd")
_CODEC_NAMES: dict[str, Codec | None] = {"": None, "none": None, "lz4": "lz4", "zstd": "zstd"}


def check_codec(codec: str | None) -> Codec | None:
    """Normalise a codec name (``none``/``""`` mean uncompressed); unknown names raise ``ValueError``.

    Settings, CLI flags and table properties are free text; this is the one place they become a codec.
    """
    name = (codec or "").strip().lower()
    if name not in _CODEC_NAMES:
        raise ValueError(f"unknown chunk compression {name!r}: use none, lz4 or zstd")
    return _CODEC_NAMES[name]


@dataclass
class Chunk:
    """Pixels of one grid tile of one observation at one level, with their own georeferencing."""

    tile_id: str
    transform: Affine
    data: np.ndarray  # (bands, height, width)
    #: (height, width) bool, or (bands, height, width) for per-band validity; None when validity comes from nodata
    valid: np.ndarray | None

    @property
    def height(self) -> int:
        """Rows of the chunk (its data may be smaller than a grid tile at the raster's edge)."""
        return int(self.data.shape[1])

    @property
    def width(self) -> int:
        """Columns of the chunk (its data may be smaller than a grid tile at the raster's edge)."""
        return int(self.data.shape[2])


class ChunkFileWriter:
    """Streams chunks of one band group and level into one IPC file; ``write`` returns the batch index.

    The schema is fixed when the file opens: band columns of ``dtype`` plus, when ``with_valid``, the
    ``valid`` column (a chunk without its own mask then stores all-valid), or with ``band_valid`` one
    ``valid:<band>`` column per band (chunks then carry ``(bands, h, w)`` validity). The file is complete
    (footer written) only on ``close``; a crash before leaves an unreadable, unreferenced file for ``gc``.
    """

    def __init__(
        self,
        fs: WarehouseFS,
        relpath: str,
        band_names: Sequence[str],
        dtype: np.dtype,
        crs: str,
        nodata: float | None,
        with_valid: bool,
        compression: str | None = None,
        band_valid: bool = False,
    ):
        fields = [pa.field(name, pa.from_numpy_dtype(dtype), nullable=False) for name in band_names]
        if with_valid:
            fields.append(pa.field(VALID_COLUMN, pa.uint8(), nullable=False))
        if band_valid:
            fields.extend(pa.field(BAND_VALID_PREFIX + name, pa.uint8(), nullable=False) for name in band_names)
        codec = check_codec(compression)
        meta = {
            "format_version": FORMAT_VERSION,
            "crs": crs,
            "nodata": nodata,
            "bands": list(band_names),
            "compression": codec,
        }
        self.schema = pa.schema(fields, metadata={"pixelquery": json.dumps(meta)})
        self.with_valid = with_valid
        self.band_valid = band_valid
        self.count = 0
        self._sink = fs.open_output(relpath)
        # one thread: chunk-sized batches compress ~2x faster without the thread pool hand-off (measured)
        options = ipc.IpcWriteOptions(compression=codec, use_threads=False)
        self._writer = ipc.new_file(self._sink, self.schema, options=options)

    def write(self, chunk: Chunk) -> int:
        """Append one chunk as one record batch; returns its batch index, which the catalog row stores."""
        columns = [pa.array(np.ascontiguousarray(band).ravel()) for band in chunk.data]
        if self.with_valid:
            valid = chunk.valid if chunk.valid is not None else np.ones((chunk.height, chunk.width), bool)
            columns.append(pa.array(valid.ravel().view(np.uint8) * np.uint8(255)))
        if self.band_valid:
            assert chunk.valid is not None and chunk.valid.ndim == 3  # per-band files hold per-band validity
            columns.extend(
                pa.array(np.ascontiguousarray(v).ravel().view(np.uint8) * np.uint8(255)) for v in chunk.valid
            )
        meta = {
            b"tile_id": chunk.tile_id.encode(),
            b"height": str(chunk.height).encode(),
            b"width": str(chunk.width).encode(),
            b"transform": json.dumps(list(chunk.transform)[:6]).encode(),
        }
        self._writer.write_batch(pa.record_batch(columns, schema=self.schema), custom_metadata=meta)
        self.count += 1
        return self.count - 1

    def close(self) -> None:
        """Write the IPC footer (the batch offsets readers seek by) and close the sink, even if that fails."""
        try:
            self._writer.close()
        finally:
            self._sink.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def write_chunk_file(
    fs: WarehouseFS,
    relpath: str,
    chunks: Sequence[Chunk],
    band_names: Sequence[str],
    crs: str,
    nodata: float | None,
    compression: str | None = None,
) -> None:
    """Write all chunks of one level as one IPC file, batch ``i`` = ``chunks[i]`` (non-streaming callers)."""
    with_valid = any(c.valid is not None for c in chunks)
    with ChunkFileWriter(fs, relpath, band_names, chunks[0].data.dtype, crs, nodata, with_valid, compression) as w:
        for chunk in chunks:
            w.write(chunk)


class ChunkReader:
    """Reads chunks by (file, batch), keeping recently used files open and compressed chunks decoded.

    Files are immutable, so neither cache ever goes stale. Uncompressed chunks are zero-copy views of the
    memory-mapped file and need no cache; a compressed chunk is decoded whole on every ``get_batch``, and
    neighbouring tiles read the same chunks, so decoded chunks are kept in an LRU bounded by
    ``decoded_bytes`` (measured: without it zstd doubled tile p50, see docs/storage.md). A single chunk larger
    than the whole budget is decoded on every read rather than evicting everything else.

    Both caches are ``cachetools.LRUCache`` objects behind one lock, since the threadpool that runs tile
    requests shares one reader; opening or decoding happens outside the lock, so a slow read never blocks
    hits (two threads missing the same key may both decode it; the first stored copy wins). The lookups are
    written out rather than wrapped in ``cachetools.cached``: this runs once per chunk of every tile, and the
    wrapper's key objects and indirection cost ~0.5 us per lookup (benchmarks/README.md "Settings and caches").
    """

    def __init__(self, fs: WarehouseFS, max_open: int = 256, decoded_bytes: int = 128 << 20):
        self.fs = fs
        self.max_open = max_open
        self.decoded_bytes = decoded_bytes
        self._lock = threading.Lock()
        self._open: cachetools.LRUCache[str, tuple[ipc.RecordBatchFileReader, bool]] = cachetools.LRUCache(max_open)
        self._decoded: cachetools.LRUCache[tuple[str, int], pa.RecordBatch] = cachetools.LRUCache(
            decoded_bytes, getsizeof=lambda batch: batch.nbytes
        )

    def _reader(self, relpath: str) -> tuple[ipc.RecordBatchFileReader, bool]:
        """The open file and whether its buffers are compressed."""
        with self._lock:
            try:
                return self._open[relpath]
            except KeyError:
                pass
        reader = ipc.open_file(self.fs.open_input(relpath))
        meta = json.loads((reader.schema.metadata or {}).get(b"pixelquery", b"{}"))
        with self._lock:
            return self._open.setdefault(relpath, (reader, meta.get("compression") is not None))

    def _batch(self, relpath: str, batch_index: int) -> pa.RecordBatch:
        reader, compressed = self._reader(relpath)
        if not compressed:
            return reader.get_batch(batch_index)
        key = (relpath, batch_index)
        with self._lock:
            try:
                return self._decoded[key]
            except KeyError:
                pass
        batch = reader.get_batch(batch_index)
        with self._lock:
            try:
                return self._decoded.setdefault(key, batch)
            except ValueError:  # larger than the whole budget: not cached
                return batch

    def read(
        self, relpath: str, batch_index: int, height: int, width: int, bands: Sequence[str]
    ) -> tuple[list[np.ndarray], np.ndarray | None]:
        """``([band (h, w), ...], valid)``: read-only views, zero-copy where possible.

        ``valid`` is ``None`` (validity from the nodata value), a ``(h, w)`` bool pixel mask, or, for chunks
        with per-band validity, ``(len(bands), h, w)`` bool in the order of ``bands``.
        """
        batch = self._batch(relpath, batch_index)
        data = [_column(batch, b).reshape(height, width) for b in bands]
        valid = None
        if bands and batch.schema.get_field_index(BAND_VALID_PREFIX + bands[0]) >= 0:
            valid = np.stack([_column(batch, BAND_VALID_PREFIX + b).reshape(height, width) > 0 for b in bands])
        elif batch.schema.get_field_index(VALID_COLUMN) >= 0:
            valid = _column(batch, VALID_COLUMN).reshape(height, width) > 0
        return data, valid


def _column(batch: pa.RecordBatch, name: str) -> np.ndarray:
    column = batch.column(name)
    try:
        return column.to_numpy(zero_copy_only=True)
    except pa.ArrowInvalid:  # compressed buffers or nulls: one copy
        return column.to_numpy(zero_copy_only=False)
