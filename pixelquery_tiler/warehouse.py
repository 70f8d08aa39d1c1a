"""The warehouse: a URI holding an Iceberg catalog and immutable chunk files.

``Warehouse`` is the Python entry point (ingest, collections, delete, compact, gc); ``Collection`` is one Iceberg
table with its in-memory index and window reads. Both are cheap to construct and hold no global state; a server keeps
one ``Warehouse`` and asks it for collections per request.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table

from . import catalog as cat
from .chunks import ChunkReader
from .errors import NotFound
from .fileio import FileEntry, WarehouseFS
from .names import valid_name

if TYPE_CHECKING:  # imported where used: listing commands need neither rasterio (ingest) nor rio-tiler (mosaic)
    from pyiceberg.catalog import Catalog

    from .analysis import QueryResult
    from .index import CollectionIndex
    from .ingest import IngestResult
    from .mosaic import WindowRead
    from .scenes import ItemPlan, ItemResult

log = logging.getLogger(__name__)


class CollectionNotFound(NotFound):
    """No such collection in the warehouse."""


class Collection:
    """One collection (Iceberg table): snapshots, an auto-refreshing index and window reads."""

    def __init__(self, warehouse: Warehouse, name: str, refresh_interval: float):
        self.warehouse = warehouse
        self.name = name
        self.refresh_interval = refresh_interval
        self._index: CollectionIndex | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    # -- catalog ------------------------------------------------------------------------------------------
    def table(self) -> Table:
        """The collection's Iceberg table, loaded fresh: ``CollectionNotFound`` once it is gone."""
        table = cat.load_table(self.warehouse.catalog, self.name)
        if table is None:
            raise CollectionNotFound(f"collection {self.name!r} not found")
        return table

    def snapshots(self) -> list[cat.SnapshotInfo]:
        """The table history, oldest first, with each snapshot's item (one item per snapshot)."""
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
                started = time.perf_counter()
                self._index = self._build(table, self._index)
                if self.warehouse.on_index_refresh is not None:
                    self.warehouse.on_index_refresh(self.name, time.perf_counter() - started)
            self._checked = time.monotonic()
            return self._index

    def _build(self, table: Table, previous: CollectionIndex | None) -> CollectionIndex:
        store = cat.CollectionTable.of(table)
        snaps = store.history(table)
        deleted = store.deleted_rows(table, snaps)
        rows = self._refreshed_rows(table, store, snaps, previous)
        if rows is None:
            rows = store.rows(table) if snaps else cat.ARROW_SCHEMA.empty_table()
        rows = rows.cast(cat.ARROW_SCHEMA) if rows.schema != cat.ARROW_SCHEMA else rows
        log.info("indexed %s: %d rows, %d snapshots, %d deletes", self.name, rows.num_rows, len(snaps), len(deleted))
        from .index import CollectionIndex

        return CollectionIndex(rows, snaps, deleted)

    @staticmethod
    def _refreshed_rows(
        table: Table, store: cat.CollectionTable, snaps: list[cat.SnapshotInfo], previous: CollectionIndex | None
    ) -> pa.Table | None:
        """The head rows derived from ``previous`` and the snapshots since, or ``None`` when a rescan is needed.

        Appends add their new data files, item deletes drop that item's rows, compactions change no rows. A new
        snapshot of another kind, or one already expired between two refreshes (no manifest left to read its
        rows from), forces a rescan.
        """
        if previous is None:
            return None
        known = {s.snapshot_id for s in previous.snapshots}
        if not known <= {s.snapshot_id for s in snaps}:
            return None
        rows = previous.rows
        for info in (s for s in snaps if s.snapshot_id not in known):
            if info.kind == "delete":
                rows = rows.filter(pc.field("item_id") != info.properties["deleted_item"])
            elif info.kind == "compact":
                continue
            elif info.operation == "append" and table.snapshot_by_id(info.snapshot_id) is not None:
                rows = pa.concat_tables([rows, store.added_rows(table, info.snapshot_id)])
            else:
                return None
        return rows

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
        """Ingest one file into this collection (see ``Warehouse.ingest``)."""
        return self.warehouse.ingest(path, self.name, **kwargs)

    # -- table maintenance ----------------------------------------------------------------------------------
    def delete(self, item_id: str) -> cat.SnapshotInfo:
        """Remove one item from the head in a new snapshot; earlier snapshots still show it (time travel).

        Raises ``cat.ItemNotInCollection`` (nothing committed) when the head has no such item.
        """
        info = cat.CollectionTable(self.table).delete_item(item_id)
        self.invalidate()
        return info

    def compact(self) -> cat.CompactReport:
        """Rewrite the collection's small catalog data files into few sorted ones, in one snapshot."""
        report = cat.CollectionTable(self.table).compact()
        self.invalidate()
        return report

    # -- analysis -------------------------------------------------------------------------------------------
    def query_by_bounds(
        self,
        bounds: tuple[float, float, float, float],
        date_range: tuple[str | dt.datetime | None, str | dt.datetime | None] | None,
        bands: str | list[str] | None,
        target_resolution: float,
        as_of_snapshot_id: int | None = None,
        crs: str = "EPSG:4326",
        **kwargs: Any,
    ) -> QueryResult:
        """A datacube of every observation over ``bounds`` (see ``analysis.query_by_bounds``; ``expression=``,
        ``groupby="day"`` and ``resampling=`` go there)."""
        from .analysis import query_by_bounds

        return query_by_bounds(self, bounds, date_range, bands, target_resolution, as_of_snapshot_id, crs, **kwargs)


@dataclass(frozen=True)
class GcReport:
    """What ``gc`` found (files no snapshot references) and whether it deleted them."""

    orphans: list[FileEntry]
    deleted: bool

    @property
    def bytes(self) -> int:
        """Total size of the orphans: what ``gc`` frees."""
        return sum(f.size for f in self.orphans)


class Warehouse:
    """A PixelQuery warehouse at ``uri`` (local folder or any pyarrow filesystem URI)."""

    def __init__(
        self,
        uri: str,
        catalog_uri: str | None = None,
        refresh_interval: float = 1.0,
        catalog_props: dict[str, str] | None = None,
        create: bool = True,
    ):
        # catalog_props: pyiceberg catalog + S3 properties (default $PIXELQUERY_CATALOG_PROPS); create=False:
        # read-only use, a missing warehouse/catalog is an error instead of being created
        self.fs = WarehouseFS(uri, catalog_props)
        self._create = create
        self.uri = self.fs.uri
        self._catalog_uri = catalog_uri
        self._catalog: Catalog | None = None
        self.refresh_interval = refresh_interval
        self.chunk_reader = ChunkReader(self.fs)
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()
        #: called with (collection, seconds) after each index rebuild (the server's metrics count them)
        self.on_index_refresh: Callable[[str, float], None] | None = None

    @property
    def catalog(self):
        """The Iceberg catalog, opened on first use so commands that never need it do not pay for it."""
        if self._catalog is None:
            self._catalog = cat.open_catalog(self.fs, self._catalog_uri, create=self._create)
        return self._catalog

    def collections(self) -> list[str]:
        """Collection names (Iceberg tables), sorted."""
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

    @overload
    def ingest(
        self,
        path: str,
        collection: str,
        product: str | None = None,
        datetime: str | dt.datetime | None = None,
        bands: list[str] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> IngestResult: ...

    @overload
    def ingest(
        self,
        path: ItemPlan,
        collection: str,
        product: str | None = None,
        datetime: str | dt.datetime | None = None,
        bands: list[str] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> ItemResult: ...

    def ingest(
        self,
        path: str | ItemPlan,
        collection: str,
        product: str | None = None,
        datetime: str | dt.datetime | None = None,
        bands: list[str] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> IngestResult | ItemResult:
        """Ingest one file as one snapshot (= one STAC item); creates the collection if missing.

        Reads through this ``Warehouse`` see the new item right away (read-your-writes), not only after
        the index refresh interval.
        """
        if not isinstance(path, str):  # a planned scene/STAC item (``scenes.plan_items``): one snapshot
            from .scenes import ingest_plan

            item = ingest_plan(self.fs, self.catalog, collection, path, progress)
            self._invalidate(collection)
            return item
        from .ingest import ingest_file

        result = ingest_file(self.fs, self.catalog, collection, path, product, datetime, bands, progress)
        self._invalidate(collection)
        return result

    def ingest_sources(
        self,
        sources: list[str],
        collection: str,
        *,
        scene: bool = False,
        assets: list[str] | None = None,
        product: str | None = None,
        datetime: str | dt.datetime | None = None,
        bands: list[str] | None = None,
        allow_duplicate: bool = False,
        jobs: int = 1,
        on_result: Callable[[Any], None] | None = None,
    ) -> list[Any]:
        """Ingest sources (paths, URLs, ``s3://`` URIs, STAC Items) grouped into items (``scenes.plan_items``).

        Every header is checked and duplicates refused before the first commit, so bad input anywhere commits
        nothing. Returns one ``scenes.ItemResult`` per item.
        """
        from .ingest import check_name
        from .scenes import check_duplicates, plan_items

        check_name("collection", collection)
        plans = plan_items(sources, scene=scene, assets=assets, product=product, datetime=datetime, bands=bands)
        table = cat.load_table(self.catalog, collection)
        check_duplicates(plans, cat.snapshots(table) if table is not None else [], allow_duplicate)
        return self.ingest_many(plans, collection, jobs=jobs, on_result=on_result)

    def ingest_many(
        self,
        paths: Iterable[str | ItemPlan],
        collection: str,
        jobs: int = 1,
        on_result: Callable[[Any], None] | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Ingest files, each as its own snapshot; results in input order.

        ``jobs > 1`` ingests in a pool of worker processes: pixel work and chunk writing run in parallel
        and the commits race through Iceberg's optimistic concurrency (none is lost, see
        ``catalog.commit_append``). It pays for many or large files on a multi-core machine; each worker
        first pays ~1-2 s of interpreter start-up ("spawn", because forking a process that holds SQLite
        connections is unsafe). On the first error the files not started yet are cancelled; files
        already in flight still land. ``on_result`` is called in input order as results arrive.
        """
        paths = list(paths)
        results: list[Any] = []  # IngestResult per file, scenes.ItemResult per planned item
        if jobs <= 1 or len(paths) < 2:
            for path in paths:
                results.append(self.ingest(path, collection, **kwargs))
                if on_result:
                    on_result(results[-1])
            return results
        kwargs.pop("progress", None)  # a callback cannot cross the process boundary
        levels = {name: logging.getLogger(name).level for name in _WORKER_LOGGERS}
        pool = ProcessPoolExecutor(
            max_workers=min(jobs, len(paths)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(levels, list(warnings.filters)),
        )
        try:
            futures = [
                pool.submit(_ingest_worker, self.uri, self._catalog_uri, p, collection, kwargs, self.fs.props)
                for p in paths
            ]
            for future in futures:
                results.append(future.result())
                if on_result:
                    on_result(results[-1])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._invalidate(collection)
        return results

    def delete(self, collection: str, item_id: str) -> cat.SnapshotInfo:
        """Remove one item from the head of ``collection`` (see ``Collection.delete``)."""
        return self.collection(collection).delete(item_id)

    def compact(self, collection: str) -> cat.CompactReport:
        """Compact ``collection``'s catalog data files (see ``Collection.compact``)."""
        return self.collection(collection).compact()

    def _invalidate(self, collection: str) -> None:
        """Read-your-writes: an open handle re-checks the table head on its next read."""
        with self._lock:
            handle = self._collections.get(collection)
        if handle is not None:
            handle.invalidate()

    def referenced_files(self, live_since: dt.datetime | None = None) -> set[str]:
        """Files (warehouse-relative) any collection still references: chunk files and Iceberg files.

        Chunk files: the head rows plus the rows of deleted items, which time travel still reads (older
        snapshots hold a subset of these). Iceberg files: see ``CollectionTable.referenced_files``; metadata
        versions committed after ``live_since`` count as live (default: all logged versions).
        """
        since = live_since or dt.datetime.min.replace(tzinfo=dt.UTC)
        refs: set[str] = set()
        for name in self.collections():
            table = cat.load_table(self.catalog, name)
            if table is None:
                continue
            store = cat.CollectionTable.of(table)
            refs.update(self._relative(uri) for uri in store.referenced_files(table, since))
            if table.current_snapshot() is None:
                continue
            refs.update(_files(store.rows(table, ["chunk_file"])))
            for _, rows in store.deleted_rows(table, store.history(table)):
                refs.update(_files(rows))
        return refs

    def _relative(self, uri: str) -> str:
        """A warehouse-relative path for an Iceberg file URI (pyiceberg stores absolute ones)."""
        for prefix in (self.uri, f"file://{self.fs.root}", self.fs.root):
            if uri.startswith(prefix + "/"):
                return uri[len(prefix) + 1 :]
        return uri

    def gc(self, older_than: dt.timedelta = dt.timedelta(hours=1), dry_run: bool = False) -> GcReport:
        """Delete files no collection references, if older than the grace period.

        Looks at chunk files and at each collection's Iceberg folder: metadata files, manifest lists and
        manifests no live snapshot references (left by expiry) and data files of failed commits or of expired
        snapshots' removed rows, item-log files an item-log compaction replaced. The grace period protects
        writes still in flight (written, not yet committed) and readers holding recent table metadata.
        """
        cutoff = dt.datetime.now(dt.UTC) - older_than
        refs = self.referenced_files(live_since=cutoff)
        candidates = self.fs.list_files("chunks")
        for name in self.collections():
            table = cat.load_table(self.catalog, name)
            if table is not None:
                candidates += self.fs.list_files(self._relative(table.location().rstrip("/")))
        orphans = [f for f in candidates if f.path not in refs and (f.mtime is None or f.mtime <= cutoff)]
        if not dry_run:
            for f in orphans:
                self.fs.delete(f.path)
                log.info("gc: deleted %s", f.path)
        return GcReport(orphans, not dry_run)


#: loggers whose level the CLI sets (quiet GDAL chatter, pyiceberg retry warnings); workers inherit them
_WORKER_LOGGERS = ("rasterio", "pyiceberg", "pixelquery_tiler")
_worker_warehouses: dict[tuple, Warehouse] = {}


def _init_worker(levels: dict[str, int], warning_filters: list) -> None:
    """Workers log and warn like the parent (the CLI keeps stderr to one line per error)."""
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    warnings.filters[:] = warning_filters  # type: ignore[index]  # a list at run time (typeshed: Sequence)


def _files(rows: pa.Table) -> set[str]:
    """The distinct chunk files of catalog rows (the column is never null)."""
    return {f for f in rows.column("chunk_file").unique().to_pylist() if f is not None}


def _ingest_worker(
    uri: str,
    catalog_uri: str | None,
    path: str | ItemPlan,
    collection: str,
    kwargs: dict[str, Any],
    catalog_props: dict[str, str] | None = None,
) -> IngestResult | ItemResult:
    """One file in a worker process; the worker keeps one ``Warehouse`` (and catalog connection) per URI."""
    key = (uri, catalog_uri, tuple(sorted((catalog_props or {}).items())))
    if key not in _worker_warehouses:
        _worker_warehouses[key] = Warehouse(uri, catalog_uri=catalog_uri, catalog_props=catalog_props)
    return _worker_warehouses[key].ingest(path, collection, **kwargs)
