"""The warehouse: a URI holding an Iceberg catalog and immutable chunk files.

``Warehouse`` is the Python entry point (ingest, collections, gc); ``Collection`` is one Iceberg table with
its in-memory index and window reads. Both are cheap to construct and hold no global state; a server keeps
one ``Warehouse`` and asks it for collections per request.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyiceberg.manifest import ManifestEntryStatus
from pyiceberg.table import Table

from . import catalog as cat
from .chunks import ChunkReader
from .errors import NotFound
from .fileio import FileEntry, WarehouseFS
from .names import valid_name

if TYPE_CHECKING:  # imported where used: listing commands need neither rasterio (ingest) nor rio-tiler (mosaic)
    from .index import CollectionIndex
    from .ingest import IngestResult
    from .mosaic import WindowRead

log = logging.getLogger(__name__)


class CollectionNotFound(NotFound):
    """No such collection in the warehouse."""


class Collection:
    """One collection (Iceberg table): snapshots, an auto-refreshing index and window reads."""

    def __init__(self, warehouse: "Warehouse", name: str, refresh_interval: float):
        self.warehouse = warehouse
        self.name = name
        self.refresh_interval = refresh_interval
        self._index: CollectionIndex | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    # -- catalog ------------------------------------------------------------------------------------------
    def table(self) -> Table:
        table = cat.load_table(self.warehouse.catalog, self.name)
        if table is None:
            raise CollectionNotFound(f"collection {self.name!r} not found")
        return table

    def snapshots(self) -> list[cat.SnapshotInfo]:
        return cat.snapshots(self.table())

    def invalidate(self) -> None:
        """Make the next ``index()`` re-check the table head (after this process committed to it)."""
        self._checked = float("-inf")

    # -- index ----------------------------------------------------------------------------------------------
    def index(self) -> CollectionIndex:
        """The index at the table head, re-checked at most every ``refresh_interval`` seconds."""
        now = time.monotonic()
        current = self._index
        if current is not None and now - self._checked < self.refresh_interval:
            return current
        with self._lock:
            if self._index is not None and time.monotonic() - self._checked < self.refresh_interval:
                return self._index
            table = self.table()
            head = table.current_snapshot()
            head_id = head.snapshot_id if head else None
            if self._index is None or self._index.snapshot_id != head_id:
                self._index = self._build(table, self._index)
            self._checked = time.monotonic()
            return self._index

    def _build(self, table: Table, previous: CollectionIndex | None) -> CollectionIndex:
        snaps = cat.snapshots(table)
        known = {s.snapshot_id for s in previous.snapshots} if previous else set()
        new = [s for s in snaps if s.snapshot_id not in known]
        # incremental refresh only when every new snapshot is a live append (one expired between two
        # refreshes has no manifest left to read its rows from: rescan)
        appends_only = previous is not None and all(
            (live := table.snapshot_by_id(s.snapshot_id)) is not None
            and live.summary is not None
            and live.summary.operation.value == "append"
            for s in new
        ) and known <= {s.snapshot_id for s in snaps}
        if appends_only and previous is not None:
            added = [self._added_rows(table, s.snapshot_id) for s in new]
            rows = pa.concat_tables([previous.rows, *added]) if added else previous.rows
        else:
            rows = cat.scan_rows(table) if snaps else cat.ARROW_SCHEMA.empty_table()
        rows = rows.cast(cat.ARROW_SCHEMA) if rows.schema != cat.ARROW_SCHEMA else rows
        log.info("indexed %s: %d rows, %d snapshots", self.name, rows.num_rows, len(snaps))
        from .index import CollectionIndex

        return CollectionIndex(rows, snaps)

    @staticmethod
    def _added_rows(table: Table, snapshot_id: int) -> pa.Table:
        """Rows that one append snapshot added, read from its new data files only."""
        import pyarrow.parquet as pq

        snap = table.snapshot_by_id(snapshot_id)
        io = table.io
        tables = []
        for manifest in snap.manifests(io):
            if manifest.added_snapshot_id != snapshot_id:
                continue
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                if entry.status == ManifestEntryStatus.ADDED and entry.snapshot_id == snapshot_id:
                    with io.new_input(entry.data_file.file_path).open() as f:
                        tables.append(pq.read_table(f))
        if not tables:
            return cat.ARROW_SCHEMA.empty_table()
        return pa.concat_tables([t.cast(cat.ARROW_SCHEMA) for t in tables])

    # -- reads ----------------------------------------------------------------------------------------------
    def read(
        self,
        bounds: tuple[float, float, float, float],
        crs: str,
        width: int,
        height: int,
        *,
        bands: list[str] | None = None,
        datetime: str | None = None,
        snapshot_id: int | None = None,
        item_id: str | None = None,
        product: str | None = None,
        resampling: str = "nearest",
        pixel_selection: str = "first",
    ) -> WindowRead:
        """Read a window (bounds in ``crs``, output ``width`` x ``height``) as a masked array."""
        from .mosaic import WindowRead, read_window
        from .view import View

        view = View.create(self, snapshot_id=snapshot_id, datetime=datetime, item_id=item_id, product=product)
        image = read_window(
            view, bounds, crs, width, height, bands=bands, resampling=resampling, pixel_selection=pixel_selection
        )
        return WindowRead.from_image(image)

    def ingest(self, path: str, **kwargs) -> IngestResult:
        return self.warehouse.ingest(path, self.name, **kwargs)


@dataclass(frozen=True)
class GcReport:
    orphans: list[FileEntry]
    deleted: bool

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.orphans)


class Warehouse:
    """A PixelQuery warehouse at ``uri`` (local folder or any pyarrow filesystem URI)."""

    def __init__(self, uri: str, catalog_uri: str | None = None, refresh_interval: float = 1.0):
        self.fs = WarehouseFS(uri)
        self.uri = self.fs.uri
        self._catalog_uri = catalog_uri
        self._catalog = None
        self.refresh_interval = refresh_interval
        self.chunk_reader = ChunkReader(self.fs)
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()

    @property
    def catalog(self):
        if self._catalog is None:
            self._catalog = cat.open_catalog(self.fs, self._catalog_uri)
        return self._catalog

    def collections(self) -> list[str]:
        return cat.list_collections(self.catalog)

    def collection(self, name: str) -> Collection:
        """A collection handle; raises ``CollectionNotFound`` for unknown or malformed names."""
        with self._lock:
            if name in self._collections:
                return self._collections[name]
        if not valid_name(name):
            raise CollectionNotFound(f"collection {name!r} not found")
        if cat.load_table(self.catalog, name) is None:
            raise CollectionNotFound(f"collection {name!r} not found")
        with self._lock:
            return self._collections.setdefault(name, Collection(self, name, self.refresh_interval))

    def ingest(
        self,
        path: str,
        collection: str,
        product: str | None = None,
        datetime: str | dt.datetime | None = None,
        bands: list[str] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> IngestResult:
        """Ingest one file as one snapshot (= one STAC item); creates the collection if missing.

        Reads through this ``Warehouse`` see the new item right away (read-your-writes), not only after
        the index refresh interval.
        """
        from .ingest import ingest_file

        result = ingest_file(self.fs, self.catalog, collection, path, product, datetime, bands, progress)
        self._invalidate(collection)
        return result

    def ingest_many(
        self,
        paths: Iterable[str],
        collection: str,
        jobs: int = 1,
        on_result: Callable[[IngestResult], None] | None = None,
        **kwargs: Any,
    ) -> list[IngestResult]:
        """Ingest files, each as its own snapshot; results in input order.

        ``jobs > 1`` ingests in a pool of worker processes: pixel work and chunk writing run in parallel
        and the commits race through Iceberg's optimistic concurrency (none is lost, see
        ``catalog.commit_append``). It pays for many or large files on a multi-core machine; each worker
        first pays ~1-2 s of interpreter start-up ("spawn", because forking a process that holds SQLite
        connections is unsafe). On the first error the files not started yet are cancelled; files
        already in flight still land. ``on_result`` is called in input order as results arrive.
        """
        paths = list(paths)
        if jobs <= 1 or len(paths) < 2:
            results = []
            for path in paths:
                results.append(self.ingest(path, collection, **kwargs))
                if on_result:
                    on_result(results[-1])
            return results
        kwargs.pop("progress", None)  # a callback cannot cross the process boundary
        levels = {name: logging.getLogger(name).level for name in _WORKER_LOGGERS}
        pool = ProcessPoolExecutor(
            max_workers=min(jobs, len(paths)), mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(levels, list(warnings.filters)),
        )
        results: list[IngestResult] = []
        try:
            futures = [pool.submit(_ingest_worker, self.uri, self._catalog_uri, p, collection, kwargs) for p in paths]
            for future in futures:
                results.append(future.result())
                if on_result:
                    on_result(results[-1])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._invalidate(collection)
        return results

    def _invalidate(self, collection: str) -> None:
        """Read-your-writes: an open handle re-checks the table head on its next read."""
        with self._lock:
            handle = self._collections.get(collection)
        if handle is not None:
            handle.invalidate()

    def referenced_files(self) -> set[str]:
        """Chunk files referenced by any retained snapshot of any collection."""
        refs: set[str] = set()
        for name in self.collections():
            table = cat.load_table(self.catalog, name)
            if table is None or table.current_snapshot() is None:
                continue
            # appends only ever add rows, so the head holds every reference of every older snapshot
            for value in cat.scan_rows(table, ["chunk_file"]).column("chunk_file").unique().to_pylist():
                refs.add(value)
        return refs

    def gc(self, older_than: dt.timedelta = dt.timedelta(hours=1), dry_run: bool = False) -> GcReport:
        """Delete chunk files no snapshot references, if older than the grace period.

        The grace period protects files of ingests still in flight (written, not yet committed).
        """
        refs = self.referenced_files()
        cutoff = dt.datetime.now(dt.timezone.utc) - older_than
        orphans = [
            f for f in self.fs.list_files("chunks")
            if f.path not in refs and (f.mtime is None or f.mtime <= cutoff)
        ]
        if not dry_run:
            for f in orphans:
                self.fs.delete(f.path)
                log.info("gc: deleted %s", f.path)
        return GcReport(orphans, not dry_run)


#: loggers whose level the CLI sets (quiet GDAL chatter, pyiceberg retry warnings); workers inherit them
_WORKER_LOGGERS = ("rasterio", "pyiceberg", "pixelquery_tiler")
_worker_warehouses: dict[tuple[str, str | None], Warehouse] = {}


def _init_worker(levels: dict[str, int], warning_filters: list) -> None:
    """Workers log and warn like the parent (the CLI keeps stderr to one line per error)."""
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    warnings.filters[:] = warning_filters


def _ingest_worker(uri: str, catalog_uri: str | None, path: str, collection: str, kwargs: dict[str, Any]) -> IngestResult:
    """One file in a worker process; the worker keeps one ``Warehouse`` (and catalog connection) per URI."""
    key = (uri, catalog_uri)
    if key not in _worker_warehouses:
        _worker_warehouses[key] = Warehouse(uri, catalog_uri=catalog_uri)
    return _worker_warehouses[key].ingest(path, collection, **kwargs)
