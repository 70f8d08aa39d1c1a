"""The tile catalog: one Apache Iceberg table per collection, one row per stored chunk.

The catalog is pyiceberg's: ``SqlCatalog`` on a SQLite file inside the warehouse by default, any
SQLAlchemy URI (PostgreSQL) or an Iceberg REST endpoint when scaled out. Spark, Trino and DuckDB can read
the same tables as they are.

Every ingest is exactly one ``append`` whose snapshot summary carries the item's metadata, so one append
snapshot is one STAC item, and the item id is also stored on every row. All table writes and history reads
go through :class:`CollectionTable`.

Commit cost and snapshot expiry
-------------------------------
pyiceberg rewrites (and deep-copies, several times) the whole table metadata on every commit, and that
metadata lists every snapshot with its summary, so a one-row append costs O(snapshots): measured ~80 ms at
10 snapshots but ~540 ms at 300 on the dev machine (``benchmarks/commit.py``). To keep ingest flat at
thousands of items, an ingest that finds more than ``retain + batch`` live snapshots *expires* all but the
newest ``retain`` of them (table properties ``pixelquery.retain-snapshots``, default 4, and
``pixelquery.expire-batch``, default 8; ``retain <= 0`` disables expiry). Few live snapshots keep every
commit near pyiceberg's fixed cost (4..12 live: ~75 ms; 16..32 live: ~110 ms); the expiry commit itself
is amortised over ``batch`` ingests. Expiry only drops snapshot *metadata*; the files of expired snapshots
are removed later by ``Warehouse.gc``.

Items must survive that, so before expiring, the expired snapshots' id, parent, sequence number, timestamp
and ``pixelquery.*`` summary properties are written to an immutable Parquet *item log* file in the table
location (``pixelquery-items/``), and the expiring transaction (pyiceberg's ``ExpireSnapshots`` plus a
property update) sets the table property ``pixelquery.item-log`` to the list of log files. Log and expiry land
in the same atomic metadata commit, so a reader sees either the live snapshots or their log entries, never
neither. :meth:`CollectionTable.history` merges log and live chain, so time travel (``snapshot_id=`` of an
expired snapshot) and item lookup keep working. Only *Iceberg-native* time travel of other engines
(Spark/Trino ``VERSION AS OF``) is limited to the retained snapshots. Consumers must therefore list items with
:func:`snapshots` (or ``Collection.snapshots()`` / ``CollectionIndex.snapshots``), never with
``table.metadata.snapshots``.

Deletes and compaction
----------------------
Readers resolve "as of snapshot S" as "items added at or before S and not deleted at or before S". An item
delete is an Iceberg copy-on-write delete by ``item_id`` whose summary names the item and an immutable Parquet
copy of its rows in ``pixelquery-items/deleted-*.parquet``: once the pre-delete snapshots expire and ``gc``
removes their data files, time travel still reads the item from that copy (and its chunk files stay
referenced). Compaction rewrites small data files into one sorted file per partition in one ``overwrite``
snapshot that adds and removes no item; it runs inside an ingest once ``pixelquery.compact-min-files`` data
files were added since the last one (default 32), keeping the server's index build to a few files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

import pyarrow as pa
from cachetools import LRUCache, cached
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
    ValidationException,
)
from pyiceberg.expressions import EqualTo, Reference
from pyiceberg.expressions.literals import literal
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat, ManifestContent, ManifestEntryStatus
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.update import AssertRefSnapshotId, TableUpdate, UpdatesAndRequirements, update_table_metadata
from pyiceberg.table.update.snapshot import ExpireSnapshots
from pyiceberg.transforms import MonthTransform
from pyiceberg.types import DoubleType, IntegerType, ListType, NestedField, StringType, TimestamptzType

from .fileio import WarehouseFS

log = logging.getLogger(__name__)

NAMESPACE = "pixelquery"
SUMMARY_PREFIX = "pixelquery."


def _fields() -> list[NestedField]:
    spec: list[tuple[str, Any, bool]] = [
        ("item_id", StringType(), True),
        ("collection", StringType(), True),
        ("product", StringType(), True),
        ("datetime", TimestamptzType(), True),
        ("tile_id", StringType(), True),
        ("level", IntegerType(), True),
        ("crs", StringType(), True),
        ("minx", DoubleType(), True),
        ("miny", DoubleType(), True),
        ("maxx", DoubleType(), True),
        ("maxy", DoubleType(), True),
        ("west", DoubleType(), True),
        ("south", DoubleType(), True),
        ("east", DoubleType(), True),
        ("north", DoubleType(), True),
        ("res_x", DoubleType(), True),
        ("res_y", DoubleType(), True),
        ("height", IntegerType(), True),
        ("width", IntegerType(), True),
        ("transform", "list:double", True),
        ("chunk_file", StringType(), True),
        ("batch_index", IntegerType(), True),
        ("bands", "list:string", True),
        ("dtype", StringType(), True),
        ("nodata", DoubleType(), False),
        ("band_min", "list:double", True),
        ("band_max", "list:double", True),
        ("band_mean", "list:double", True),
        ("valid_percent", DoubleType(), True),
        ("cloud_cover", DoubleType(), False),
    ]
    fields, next_id = [], len(spec) + 1
    for i, (name, ftype, required) in enumerate(spec, start=1):
        if isinstance(ftype, str):
            elem = DoubleType() if ftype.endswith("double") else StringType()
            ftype = ListType(element_id=next_id, element_type=elem, element_required=True)
            next_id += 1
        fields.append(NestedField(field_id=i, name=name, field_type=ftype, required=required))
    return fields


SCHEMA = Schema(*_fields())
ARROW_SCHEMA: pa.Schema = SCHEMA.as_arrow()
PARTITION_SPEC = PartitionSpec(
    PartitionField(
        source_id=SCHEMA.find_field("datetime").field_id,
        field_id=1000,
        transform=MonthTransform(),
        name="datetime_month",
    )
)
#: Bound the metadata a commit rewrites: keep few old metadata.json files, and merge manifests so the
#: manifest list stays short however many snapshots exist.
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "50",
    "write.parquet.compression-codec": "zstd",
}
#: table properties steering snapshot expiry (see the module docstring)
RETAIN_PROPERTY = "pixelquery.retain-snapshots"
EXPIRE_BATCH_PROPERTY = "pixelquery.expire-batch"
ITEM_LOG_PROPERTY = "pixelquery.item-log"
DEFAULT_RETAIN = 4
DEFAULT_EXPIRE_BATCH = 8
#: table properties steering compaction: after this many data files were added since the last compaction an
#: ingest compacts (<= 0: never automatically); files at least this large are left as they are
COMPACT_MIN_FILES_PROPERTY = "pixelquery.compact-min-files"
COMPACT_TARGET_BYTES_PROPERTY = "pixelquery.compact-target-bytes"
COMPACTED_FILES_PROPERTY = "pixelquery.compacted-data-files"
DEFAULT_COMPACT_MIN_FILES = 32
DEFAULT_COMPACT_TARGET_BYTES = 64 * 1024 * 1024
#: log files referenced before an expiry compacts them into one (bounds the property and the reads)
ITEM_LOG_MAX_FILES = 8
ITEM_LOG_DIR = "pixelquery-items"
_ITEM_LOG_FIELDS: list[pa.Field] = [
    pa.field("snapshot_id", pa.int64(), nullable=False),
    pa.field("parent_id", pa.int64()),
    pa.field("sequence_number", pa.int64(), nullable=False),
    pa.field("timestamp_ms", pa.int64(), nullable=False),
    pa.field("operation", pa.string()),
    pa.field("properties", pa.string(), nullable=False),  # JSON of the pixelquery.* summary properties
]
ITEM_LOG_SCHEMA = pa.schema(_ITEM_LOG_FIELDS)


def _item_filter(item_id: str) -> EqualTo:
    """``item_id == item_id`` as a pyiceberg row filter: manifest column bounds prune the files to read.

    Keyword form: pyiceberg's predicates are pydantic models, and their fields (not the positional
    ``__init__``) are what the type checker sees.
    """
    return EqualTo(term=Reference("item_id"), value=literal(item_id))


class ChunkRow(TypedDict):
    """One catalog row (one stored chunk) as ingest builds it; ``CollectionTable.build_rows`` makes the table."""

    item_id: str
    collection: str
    product: str
    datetime: dt.datetime
    tile_id: str
    level: int
    crs: str
    minx: float
    miny: float
    maxx: float
    maxy: float
    west: float
    south: float
    east: float
    north: float
    res_x: float
    res_y: float
    height: int
    width: int
    transform: list[float]
    chunk_file: str
    batch_index: int
    bands: list[str]
    dtype: str
    nodata: float | None
    band_min: list[float]
    band_max: list[float]
    band_mean: list[float]
    valid_percent: float
    cloud_cover: float | None


class CatalogError(RuntimeError):
    """The catalog cannot be opened with the given settings."""


class CatalogUnavailable(CatalogError):
    """The catalog server cannot be reached now (PostgreSQL or REST catalog down): retry later; HTTP 503."""


#: errors of the catalog's client libraries that mean "server unreachable now", not "bad request"
def unavailable_errors() -> tuple[type[Exception], ...]:
    """Errors that mean the catalog server is down, not that the request is wrong: the app answers 503."""
    import requests
    import sqlalchemy.exc

    from .storage_config import StorageConfigError  # the warehouse's S3 endpoint unreachable at catalog open

    return (
        CatalogUnavailable,
        StorageConfigError,
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        requests.ConnectionError,
    )


def configured_catalog_uri() -> str | None:
    """``$PIXELQUERY_CATALOG_URI`` (through the settings): the catalog when a caller names none."""
    from .settings import Settings

    return Settings().catalog_uri


def open_catalog(fs: WarehouseFS, catalog_uri: str | None = None, *, create: bool = True) -> Catalog:
    """Open the Iceberg catalog of a warehouse.

    ``catalog_uri`` (or ``$PIXELQUERY_CATALOG_URI``): a SQLAlchemy URI (``postgresql+psycopg2://...``,
    ``sqlite:///...``), a plain path to a SQLite file, or an ``http(s)://`` Iceberg REST endpoint. Default:
    ``catalog.db`` in a local warehouse. ``fs.props`` (``--catalog-prop``) go to the catalog as they are
    (``credential``, ``token``, ``warehouse``...), together with the warehouse's S3 settings, so pyiceberg's
    FileIO writes metadata where the chunk files go.

    ``create=False`` (read-only commands) never creates anything: a warehouse without a catalog is an error.
    """
    if create:
        fs.check()  # unreachable storage or missing credentials: one line before anything is created or written
    uri = catalog_uri or configured_catalog_uri()
    props = {**fs.storage.iceberg_properties(), **fs.props}
    if not uri:
        local = fs.local_path()
        if local is None:
            raise CatalogError("a remote warehouse needs a catalog: pass --catalog-uri or set PIXELQUERY_CATALOG_URI")
        db = os.path.join(local, "catalog.db")
        if not os.path.exists(db):
            if not create:
                raise CatalogError(f"no warehouse at {local} (no catalog.db; the first ingest creates one)")
            if os.path.isdir(os.path.join(local, "chunks")):
                raise CatalogError(
                    f"{local} holds chunk files but no catalog.db: pass the --catalog-uri it was ingested with"
                )
            os.makedirs(local, exist_ok=True)
        # concurrent ingests wait up to 30 s for SQLite's write lock instead of failing after pysqlite's 5 s
        uri = f"sqlite:///{db}?timeout=30"
    elif "://" not in uri:  # a plain path to a SQLite file
        path = os.path.abspath(os.path.expanduser(uri))
        if not create and not os.path.exists(path):
            raise CatalogError(f"no catalog at {path}")
        uri = f"sqlite:///{path}?timeout=30"
    if uri.startswith(("http://", "https://")):
        from pyiceberg.catalog.rest import RestCatalog

        # the REST catalog chooses its warehouse and table locations unless the user sets them (props)
        try:
            return RestCatalog(NAMESPACE, **{**props, "uri": uri})
        except Exception as exc:
            import requests

            kind = CatalogUnavailable if isinstance(exc, requests.ConnectionError) else CatalogError
            raise kind(f"cannot open REST catalog {uri}: {_first_line(exc)}") from None
    from pyiceberg.catalog.sql import SqlCatalog

    settings = {"warehouse": fs.uri, **props, "uri": uri}
    if not create:
        settings["init_catalog_tables"] = "false"
    for attempt in range(40):  # several processes may create the SQLite catalog tables at once
        try:
            return SqlCatalog(NAMESPACE, **settings)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("psycopg"):
                raise CatalogError(
                    "a PostgreSQL catalog needs psycopg2: pip install 'pixelquery-tiler[postgres]'"
                ) from None
            raise
        except Exception as exc:  # sqlalchemy OperationalError: database is locked / table exists
            if attempt < 39 and _is_transient(exc):
                time.sleep(0.05 + random.random() * 0.1)
                continue
            if type(exc).__module__.startswith("sqlalchemy"):
                import sqlalchemy.exc

                kind = CatalogUnavailable if isinstance(exc, sqlalchemy.exc.OperationalError) else CatalogError
                raise kind(f"cannot open catalog {_redact(uri)}: {_first_line(exc)}") from None
            raise
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _redact(uri: str) -> str:
    """A catalog URI without its password, for error messages."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", uri)


def _is_transient(exc: BaseException) -> bool:
    """SQLite lock contention and create-table races: worth a retry, not an error."""
    text = str(exc)
    return "locked" in text or "already exists" in text or "UNIQUE constraint" in text


def identifier(collection: str) -> tuple[str, str]:
    """A collection's Iceberg table identifier: every collection is one table in the one namespace."""
    return (NAMESPACE, collection)


def load_table(catalog: Catalog, collection: str) -> Table | None:
    """A collection's table, or ``None`` if there is none (callers decide whether that is a 404)."""
    try:
        return catalog.load_table(identifier(collection))
    except NoSuchTableError:
        return None


#: catalog property: the prefix under which each collection's table is created (``PREFIX/COLLECTION``)
TABLE_LOCATION_PROP = "pixelquery.table-location"


def _table_location(catalog: Catalog, fs: WarehouseFS, collection: str) -> str | None:
    """Where a new collection table goes: the user's prefix if set; else a REST catalog decides (many only
    accept locations inside their own warehouse); else ``iceberg/COLLECTION`` in the warehouse."""
    from pyiceberg.catalog.rest import RestCatalog

    if prefix := catalog.properties.get(TABLE_LOCATION_PROP):
        return f"{prefix.rstrip('/')}/{collection}"
    if isinstance(catalog, RestCatalog):
        return None
    return fs.uri_of(f"iceberg/{collection}")


def create_table(catalog: Catalog, fs: WarehouseFS, collection: str) -> Table:
    """Create the collection table if missing (idempotent under concurrent creators)."""
    for attempt in range(40):
        try:
            with contextlib.suppress(NamespaceAlreadyExistsError):
                catalog.create_namespace(NAMESPACE)
            try:
                return catalog.create_table(
                    identifier(collection),
                    schema=SCHEMA,
                    partition_spec=PARTITION_SPEC,
                    location=_table_location(catalog, fs, collection),
                    properties=TABLE_PROPERTIES,
                )
            except TableAlreadyExistsError:
                return catalog.load_table(identifier(collection))
        except Exception as exc:  # SQLite lock / unique-constraint races between concurrent creators
            if attempt == 39 or not _is_transient(exc):
                raise
            time.sleep(0.05 + random.random() * 0.1)
    raise AssertionError("unreachable")


def list_collections(catalog: Catalog) -> list[str]:
    """Collection names, sorted; empty before the first ingest (the namespace does not exist yet)."""
    from pyiceberg.exceptions import NoSuchNamespaceError

    try:
        return sorted(ident[-1] for ident in catalog.list_tables(NAMESPACE))
    except NoSuchNamespaceError:  # before the first ingest (an unreachable catalog is an error, not "empty")
        return []


def _summary_property(snap: Snapshot, key: str) -> str | None:
    if snap.summary is None:
        return None
    return snap.summary.additional_properties.get(SUMMARY_PREFIX + key)


def _find_snapshot(table: Table, key: str, value: str) -> Snapshot | None:
    """The newest live snapshot whose ``pixelquery.<key>`` summary property is ``value``."""
    for snap in reversed(table.metadata.snapshots):
        if _summary_property(snap, key) == value:
            return snap
    return None


def as_table_schema(table: Table, rows: pa.Table) -> pa.Table:
    """``rows`` with the table's schema as the catalog returned it: field ids are the catalog's (a REST
    catalog may number fields differently from ``SCHEMA``), so appends work with any compliant catalog."""
    target = table.schema().as_arrow()
    return rows if rows.schema.equals(target, check_metadata=True) else rows.select(target.names).cast(target)


def _int_property(table: Table, key: str, default: int) -> int:
    try:
        return int(table.properties.get(key, default))
    except ValueError:
        log.warning("ignoring non-integer table property %s=%r", key, table.properties.get(key))
        return default


class ItemNotInCollection(CatalogError, LookupError):
    """``delete`` named an item that is not at the table head (never ingested, or already deleted)."""


@dataclass(frozen=True)
class CompactReport:
    """What one ``compact`` did: data files at the head before and after, and the snapshot it committed."""

    files_before: int
    files_after: int
    rewritten: int
    snapshot_id: int | None

    def to_json(self) -> dict[str, Any]:
        """The report as ``compact --json`` prints it."""
        return {
            "files_before": self.files_before,
            "files_after": self.files_after,
            "rewritten": self.rewritten,
            "snapshot_id": self.snapshot_id,
        }


class _Transaction(Transaction):
    """pyiceberg's ``Transaction`` computing ``table_metadata`` once per state instead of at every read.

    pyiceberg 0.12 replays the staged updates onto a *deep copy* of the table metadata each time
    ``Transaction.table_metadata`` is read, ~24 times per append (apache/iceberg-python#2673; the upstream fix,
    #3302/#3784, caches it the same way, keyed on the identity of the base metadata and of the immutable updates
    tuple, which every ``_stage`` rebinds). Measured on a 30-column table: ~450 us per copy; an append's CPU went
    from 36-46 to 22-27 ms (benchmarks/README.md, "Round 4 (issue 10)"). Drop this class once pyiceberg caches it.
    """

    _cache: tuple[TableMetadata, tuple[TableUpdate, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        cache = self._cache
        if cache is None or cache[0] is not base or cache[1] is not updates:
            cache = self._cache = (base, updates, update_table_metadata(base, updates))
        return cache[2]


class _ExpireAtHead(ExpireSnapshots):
    """pyiceberg's ``ExpireSnapshots``, guarded by the head snapshot it was planned against.

    The expiring commit also replaces the item-log property; without the guard, a concurrent expiry that
    committed first would have its log file dropped from the list (the catalog applies updates to the
    newest metadata), losing its entries.
    """

    def __init__(self, transaction: Transaction, head_id: int):
        super().__init__(transaction)
        self._head_id = head_id

    def _commit(self) -> UpdatesAndRequirements:
        updates, requirements = super()._commit()
        return updates, (*requirements, AssertRefSnapshotId(snapshot_id=self._head_id, ref="main"))


class CollectionTable:
    """One collection's Iceberg table: the only code that writes it or interprets its history.

    It owns the schema (``SCHEMA``/``ARROW_SCHEMA``), the row builder, appends with retry, snapshot expiry
    into the item log, deletes by ``item_id``, compaction, incremental reads, and the list of files the
    table references (for ``gc``). Writes take a *loader* so every retry starts from the catalog's newest
    metadata; reads take the ``Table`` they should be consistent with.
    """

    schema = SCHEMA
    arrow_schema = ARROW_SCHEMA

    def __init__(self, load: Callable[[], Table]):
        self._load = load

    @classmethod
    def of(cls, table: Table) -> CollectionTable:
        """A handle whose writes start from ``table`` refreshed from the catalog."""
        return cls(lambda: table.refresh())

    # -- rows -------------------------------------------------------------------------------------------------
    @staticmethod
    def build_rows(rows: list[ChunkRow]) -> pa.Table:
        """Chunk rows as an Arrow table of the catalog schema.

        Raises ``ValueError`` naming the missing columns instead of Arrow's null-in-required-field error.
        """
        required = {f.name for f in ARROW_SCHEMA if not f.nullable}
        for row in rows:
            if missing := required - {k for k, v in row.items() if v is not None}:
                raise ValueError(f"catalog row lacks {', '.join(sorted(missing))}")
        return pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)

    # -- writes -----------------------------------------------------------------------------------------------
    def _retry(self, attempt_once: Callable[[Table, int], Any], what: str, attempts: int = 30) -> Any:
        """Run ``attempt_once(table, attempt)`` until it returns, redoing it on commit conflicts.

        pyiceberg raises ``CommitFailedException`` when another writer committed first (``ValidationException``
        when that writer removed what this one started from; both guarantee nothing landed), and SQLite says
        "database is locked" while another writer holds its lock. Each retry starts from the refreshed table.
        """
        delay = 0.02
        for attempt in range(attempts):
            table = self._load()
            try:
                return attempt_once(table, attempt)
            except (CommitFailedException, ValidationException) as exc:
                log.debug("%s on %s: commit conflict, attempt %d: %s", what, table.name(), attempt + 1, exc)
            except CatalogError:
                raise
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                log.debug("%s: catalog locked, attempt %d", what, attempt + 1)
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)
        raise CatalogError(f"could not {what} after {attempts} attempts (too much concurrent writing)")

    def append(self, rows: pa.Table, properties: dict[str, str], item_id: str, attempts: int = 30) -> Snapshot:
        """Append ``rows`` as one snapshot (= one item), retrying on optimistic-concurrency conflicts.

        Before a retry the table is checked for the item, so an error raised *after* a successful commit never
        appends the item twice. After the commit, table maintenance runs (best effort): snapshot expiry keeps
        commit cost flat, automatic compaction keeps the data-file count (index build) bounded.
        """

        def once(table: Table, attempt: int) -> Snapshot:
            if attempt and (done := _find_snapshot(table, "item_id", item_id)) is not None:
                return done
            with _Transaction(table) as tx:
                tx.append(as_table_schema(table, rows), snapshot_properties=properties)
            snap = _find_snapshot(table, "item_id", item_id)
            if snap is None:
                raise CatalogError("committed snapshot not found in table metadata")
            self._maintain(table)
            return snap

        return self._retry(once, "commit", attempts)

    def _maintain(self, table: Table) -> None:
        try:
            self.expire(table)
        except Exception:  # maintenance is best effort: the ingest itself has landed
            log.warning("snapshot expiry on %s failed; will retry on a later ingest", table.name(), exc_info=True)
        try:
            if self.compaction_due(table):
                self.compact(attempts=3)  # under concurrent ingest a later ingest tries again
        except Exception:
            log.warning("automatic compaction of %s failed; will retry later", table.name(), exc_info=True)

    def delete_item(self, item_id: str, attempts: int = 30) -> SnapshotInfo:
        """Remove an item's rows from the head in a new snapshot (Iceberg delete by ``item_id``).

        Time travel to earlier snapshots must still show the item after its Iceberg data files are gone (once
        the pre-delete snapshots expire), so the rows are first copied to an immutable Parquet file next to the
        item log, and the delete snapshot's summary names it (``pixelquery.deleted_rows``); the item log keeps
        that summary when the snapshot expires. Unknown item: ``ItemNotInCollection``, nothing written.
        """
        written: list[str] = []

        def once(table: Table, attempt: int) -> SnapshotInfo:
            rows = self.item_rows(table, item_id)
            if rows.num_rows == 0:
                if written and (done := _find_snapshot(table, "deleted_rows", written[0])) is not None:
                    return snapshot_info(done)  # an earlier attempt landed after all
                raise ItemNotInCollection(f"item {item_id!r} not found in collection {table.name()[-1]!r}")
            if not written:
                written.append(self._write_log_file(table, rows, prefix="deleted-"))
            props = item_properties({"deleted_item": item_id, "deleted_rows": written[0]})
            with _Transaction(table) as tx:
                tx.delete(_item_filter(item_id), snapshot_properties=props)
            snap = _find_snapshot(table, "deleted_rows", written[0])
            if snap is None:
                raise CatalogError("committed delete snapshot not found in table metadata")
            return snapshot_info(snap)

        info = self._retry(once, "delete", attempts)
        log.info("deleted item %s (snapshot %s)", item_id, info.snapshot_id)
        return info

    def compaction_due(self, table: Table) -> bool:
        """More than ``pixelquery.compact-min-files`` data files were added since the last compaction.

        Read from the head snapshot's summary (no manifest reads), so the check costs nothing per ingest.
        """
        threshold = _int_property(table, COMPACT_MIN_FILES_PROPERTY, DEFAULT_COMPACT_MIN_FILES)
        head = table.current_snapshot()
        if threshold <= 0 or head is None or head.summary is None:
            return False
        total = int(head.summary.get("total-data-files") or 0)
        return total - _int_property(table, COMPACTED_FILES_PROPERTY, 0) >= threshold

    def compact(self, attempts: int = 30) -> CompactReport:
        """Rewrite small data files into one sorted file per partition, in one ``overwrite`` snapshot.

        Only partitions holding two or more files smaller than ``pixelquery.compact-target-bytes`` are
        rewritten, so a compaction costs the rows of the partitions touched since the last one, not the whole
        table. Rows are sorted by (item, level, batch), the index's own order. Items, rows and chunk files are
        unchanged, so time travel is too; readers pick the new files up at their next refresh.
        """

        def once(table: Table, attempt: int) -> CompactReport:
            head = table.current_snapshot()
            if head is None:
                return CompactReport(0, 0, 0, None)
            target = _int_property(table, COMPACT_TARGET_BYTES_PROPERTY, DEFAULT_COMPACT_TARGET_BYTES)
            tasks = list(table.scan().plan_files())
            if any(t.delete_files for t in tasks):
                raise CatalogError("table has delete files; compaction supports copy-on-write tables only")
            groups: dict[Any, list[DataFile]] = {}
            for task in tasks:
                if task.file.file_size_in_bytes < target:
                    partition: tuple[Any, ...] = tuple(task.file.partition)  # type: ignore[arg-type]  # by index
                    groups.setdefault((task.file.spec_id, partition), []).append(task.file)
            victims = [f for files in groups.values() if len(files) > 1 for f in files]
            if not victims:
                return CompactReport(len(tasks), len(tasks), 0, None)
            rows = _read_data_files(table, [f.file_path for f in victims])
            rows = rows.sort_by([("item_id", "ascending"), ("level", "ascending"), ("batch_index", "ascending")])
            marker = uuid.uuid4().hex
            props = item_properties({"operation": "compact", "compaction": marker})
            with _Transaction(table) as tx:
                with tx.update_snapshot(snapshot_properties=props).overwrite() as overwrite:
                    for data_file in victims:
                        overwrite.delete_data_file(data_file)
                    written = list(
                        _dataframe_to_data_files(
                            table_metadata=tx.table_metadata, df=rows, io=table.io, write_uuid=overwrite.commit_uuid
                        )
                    )
                    for data_file in written:
                        overwrite.append_data_file(data_file)
                after = len(tasks) - len(victims) + len(written)
                tx.set_properties({COMPACTED_FILES_PROPERTY: str(after)})
            snap = _find_snapshot(table, "compaction", marker)
            log.info("compacted %s: %d -> %d data files", table.name(), len(tasks), after)
            return CompactReport(len(tasks), after, len(victims), snap.snapshot_id if snap else None)

        return self._retry(once, "compact", attempts)

    def expire(self, table: Table, retain: int | None = None, batch: int | None = None) -> int:
        """Expire all but the newest ``retain`` snapshots once more than ``retain + batch`` are live.

        Returns how many snapshots were expired (0 when below the threshold or when a concurrent commit won;
        the next ingest tries again). Expiring in batches amortises the extra commit over ``batch`` ingests.
        The expired snapshots go to the item log in the same transaction (see the module docstring), which
        pyiceberg's ``ExpireSnapshots`` commits only if the head is still the one it was planned against.
        """
        retain = _int_property(table, RETAIN_PROPERTY, DEFAULT_RETAIN) if retain is None else retain
        batch = _int_property(table, EXPIRE_BATCH_PROPERTY, DEFAULT_EXPIRE_BATCH) if batch is None else batch
        current = table.current_snapshot()
        live = table.metadata.snapshots
        if retain <= 0 or current is None or len(live) <= retain + max(batch, 0):
            return 0
        protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
        ordered = sorted(live, key=lambda s: (s.sequence_number or 0, s.timestamp_ms))
        expired = [s for s in ordered[: len(ordered) - retain] if s.snapshot_id not in protected]
        if not expired:
            return 0
        log_files = self._append_item_log(table, [snapshot_info(s) for s in expired])
        try:
            with _Transaction(table) as tx:
                tx.set_properties({ITEM_LOG_PROPERTY: json.dumps(log_files)})
                _ExpireAtHead(tx, current.snapshot_id).by_ids([s.snapshot_id for s in expired]).commit()
        except CommitFailedException:
            log.debug("expiry on %s lost a race; skipped", table.name())
            return 0
        except Exception as exc:
            if not _is_transient(exc):
                raise
            log.debug("expiry on %s: catalog locked; skipped", table.name())
            return 0
        log.info("expired %d snapshot(s) of %s into the item log", len(expired), table.name())
        return len(expired)

    # -- item log -----------------------------------------------------------------------------------------------
    @staticmethod
    def _log_uri(table: Table, name: str) -> str:
        return f"{table.location().rstrip('/')}/{ITEM_LOG_DIR}/{name}"

    @classmethod
    def _write_log_file(cls, table: Table, rows: pa.Table, prefix: str = "") -> str:
        """Write an immutable Parquet file into the item-log folder; returns its name."""
        import pyarrow.parquet as pq

        name = f"{prefix}{uuid.uuid4().hex}.parquet"
        with table.io.new_output(cls._log_uri(table, name)).create(overwrite=False) as out:
            pq.write_table(rows, out, compression="zstd")  # type: ignore[arg-type]  # any writable file object
        return name

    @staticmethod
    def item_log_files(table: Table) -> list[str]:
        """Item-log files the table properties reference (the log survives snapshot expiry)."""
        return list(json.loads(table.properties.get(ITEM_LOG_PROPERTY, "[]")))

    def _append_item_log(self, table: Table, infos: list[SnapshotInfo]) -> list[str]:
        """Write a new log file; returns the log file list the expiring commit will reference.

        Once ``ITEM_LOG_MAX_FILES`` files exist, the new file also holds all older entries (compaction), so a
        reader opens at most that many small files however many snapshots were expired.
        """
        files = self.item_log_files(table)
        rows = pa.Table.from_pylist(
            [
                {
                    "snapshot_id": i.snapshot_id,
                    "parent_id": i.parent_id,
                    "sequence_number": i.sequence_number,
                    "timestamp_ms": round(i.timestamp.timestamp() * 1000),
                    "operation": i.operation,
                    "properties": json.dumps(i.properties),
                }
                for i in infos
            ],
            schema=ITEM_LOG_SCHEMA,
        )
        if len(files) >= ITEM_LOG_MAX_FILES:
            # the old files' rows as they are (Arrow, no JSON round trip): 10,000 entries cost a few ms
            old = [_read_log_table(table.io, self._log_uri(table, f)).cast(ITEM_LOG_SCHEMA) for f in files]
            rows, files = pa.concat_tables([*old, rows]), []
        return [*files, self._write_log_file(table, rows)]

    @classmethod
    def _read_log_entries(cls, table: Table, name: str) -> list[SnapshotInfo]:
        rows = _read_log_table(table.io, cls._log_uri(table, name))
        # column by column (not one dict per row): a server's start-up parses every entry (10,000+)
        stamps = [
            dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC) for ms in rows.column("timestamp_ms").to_numpy().tolist()
        ]
        out = []
        for snapshot_id, parent_id, sequence_number, timestamp, operation, text in zip(
            rows.column("snapshot_id").to_pylist(),
            rows.column("parent_id").to_pylist(),
            rows.column("sequence_number").to_pylist(),
            stamps,
            rows.column("operation").to_pylist(),
            rows.column("properties").to_pylist(),
            strict=True,
        ):
            props = json.loads(text)
            when = props.get("datetime")
            out.append(
                SnapshotInfo(
                    snapshot_id,
                    parent_id,
                    sequence_number,
                    timestamp,
                    props.get("item_id"),
                    dt.datetime.fromisoformat(when) if when else None,
                    props,
                    operation,
                )
            )
        return out

    def expired(self, table: Table) -> list[SnapshotInfo]:
        """Snapshots expired into the item log, oldest first."""
        seen: dict[int, SnapshotInfo] = {}
        for name in self.item_log_files(table):
            for info in self._read_log_entries(table, name):
                seen[info.snapshot_id] = info
        return sorted(seen.values(), key=lambda i: i.sequence_number)

    # -- reads --------------------------------------------------------------------------------------------------
    def history(self, table: Table) -> list[SnapshotInfo]:
        """The main branch's history, oldest first: expired snapshots from the item log, then live ones."""
        current = table.current_snapshot()
        if current is None:
            return []
        by_id = {s.snapshot_id: s for s in table.metadata.snapshots}
        chain = []
        snap: Snapshot | None = current
        while snap is not None:
            chain.append(snapshot_info(snap))
            snap = by_id.get(snap.parent_snapshot_id) if snap.parent_snapshot_id is not None else None
        live = {s.snapshot_id for s in chain}
        older = [s for s in self.expired(table) if s.snapshot_id not in live]
        history = older + chain[::-1]
        # pyiceberg sets parent_snapshot_id to None on the oldest snapshot it keeps when it expires the parent;
        # the main branch is a linear chain, so the parent is the entry before it
        return [
            replace(info, parent_id=history[i - 1].snapshot_id) if i and info.parent_id is None else info
            for i, info in enumerate(history)
        ]

    def rows(self, table: Table, columns: list[str] | None = None) -> pa.Table:
        """All rows at the table head, reading the data files directly with ``pyarrow.dataset``.

        pyiceberg's ``scan().to_arrow()`` pays ~10 ms of per-file overhead (1,000 uncompacted items: ~8 s on the
        dev machine, ~4x slower than this). Deletes are copy-on-write (no delete files) and every data file has
        the table schema, so reading the planned files as one dataset is the same result; anything else (delete
        files, non-Parquet files) falls back to pyiceberg's scan.
        """
        target = pa.schema([ARROW_SCHEMA.field(n) for n in columns]) if columns else ARROW_SCHEMA
        if table.current_snapshot() is None:
            return target.empty_table()
        paths = _live_data_files(table)
        if paths is None:
            return table.scan(selected_fields=tuple(columns) if columns else ("*",)).to_arrow()
        if not paths:
            return target.empty_table()
        return _read_data_files(table, paths, columns).select(target.names).cast(target)

    @staticmethod
    def item_rows(table: Table, item_id: str) -> pa.Table:
        """One item's rows at the head (manifest column bounds prune the data files to read)."""
        if table.current_snapshot() is None:
            return ARROW_SCHEMA.empty_table()
        return table.scan(row_filter=_item_filter(item_id)).to_arrow().cast(ARROW_SCHEMA)

    @staticmethod
    def added_rows(table: Table, snapshot_id: int) -> pa.Table:
        """Rows that one live append snapshot added, read from its new data files only."""
        snap = table.snapshot_by_id(snapshot_id)
        if snap is None:
            raise CatalogError(f"snapshot {snapshot_id} is not live")
        io = table.io
        paths = [
            entry.data_file.file_path
            for manifest in snap.manifests(io)
            if manifest.added_snapshot_id == snapshot_id
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True)
            if entry.status == ManifestEntryStatus.ADDED and entry.snapshot_id == snapshot_id
        ]
        return _read_data_files(table, paths).cast(ARROW_SCHEMA) if paths else ARROW_SCHEMA.empty_table()

    def deleted_rows(self, table: Table, history: list[SnapshotInfo]) -> list[tuple[int, pa.Table]]:
        """``(history position of the delete, rows it removed)`` for every item delete in ``history``."""
        out, seen = [], set()
        for pos, info in enumerate(history):
            name = info.properties.get("deleted_rows")
            if name and name not in seen:  # a delete that rewrote files committed two snapshots
                seen.add(name)
                out.append((pos, _read_log_table(table.io, self._log_uri(table, name)).cast(ARROW_SCHEMA)))
        return out

    def referenced_files(self, table: Table, live_since: dt.datetime) -> set[str]:
        """Every file (URI) the table still references: for ``gc``, everything else in its folder is garbage.

        That is: the current and logged metadata files; the manifest lists, manifests and data files of the
        live snapshots of the current metadata and of every logged metadata version newer than ``live_since``
        (a reader may still hold it); item-log files and deleted-rows files of the whole history.
        """
        from pyiceberg.serializers import FromInputFile

        refs = {table.metadata_location, *(e.metadata_file for e in table.metadata.metadata_log)}
        versions = [table.metadata]
        cutoff_ms = live_since.timestamp() * 1000
        for entry in table.metadata.metadata_log:
            if entry.timestamp_ms >= cutoff_ms:
                try:
                    versions.append(FromInputFile.table_metadata(table.io.new_input(entry.metadata_file)))
                except FileNotFoundError:
                    continue
        seen_manifests: set[str] = set()
        for metadata in versions:
            for name in json.loads(metadata.properties.get(ITEM_LOG_PROPERTY, "[]")):
                refs.add(self._log_uri(table, name))
            for snap in metadata.snapshots:
                refs.add(snap.manifest_list)
                for manifest in snap.manifests(table.io):
                    if manifest.manifest_path in seen_manifests:
                        continue
                    seen_manifests.add(manifest.manifest_path)
                    refs.add(manifest.manifest_path)
                    for manifest_entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                        refs.add(manifest_entry.data_file.file_path)
        for info in self.history(table):
            if name := info.properties.get("deleted_rows"):
                refs.add(self._log_uri(table, name))
        return refs


def _live_data_files(table: Table) -> list[str] | None:
    """The head's data files, or ``None`` when only pyiceberg's scan reads the head right (delete files, not Parquet).

    Reads the manifest list, then only the manifests that still hold live files. A compaction leaves a manifest
    of DELETED entries (one per small file it replaced: 10,000 after compacting 10,000 items) in every later
    snapshot, and pyiceberg's ``plan_files`` decodes all of it to discard every entry (~0.2 s of an index build).
    """
    snap = table.current_snapshot()
    if snap is None:
        return []
    paths = []
    for manifest in snap.manifests(table.io):
        if manifest.content != ManifestContent.DATA:
            return None
        if not (manifest.has_added_files() or manifest.has_existing_files()):
            continue  # only DELETED entries (the counts are None when unknown, and then it is read)
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.data_file.content != DataFileContent.DATA or entry.data_file.file_format != FileFormat.PARQUET:
                return None
            paths.append(entry.data_file.file_path)
    return paths


def _read_data_files(table: Table, paths: list[str], columns: list[str] | None = None) -> pa.Table:
    """Parquet data files of ``table`` as one Arrow table (one dataset read, not one pyiceberg task each)."""
    import pyarrow.dataset as ds

    if not paths:
        return (pa.schema([ARROW_SCHEMA.field(n) for n in columns]) if columns else ARROW_SCHEMA).empty_table()
    fs, local = _table_filesystem(table, paths)
    return ds.dataset(local, format="parquet", filesystem=fs).to_table(columns=columns)


_log_cache: LRUCache[str, pa.Table] = LRUCache(maxsize=256)


@cached(_log_cache, key=lambda io, uri: uri, lock=threading.Lock())
def _read_log_table(io: Any, uri: str) -> pa.Table:
    """One item-log or deleted-rows file; cached per URI (they are immutable)."""
    import pyarrow.parquet as pq

    with io.new_input(uri).open() as f:
        return pq.read_table(f)


# -- module-level names other modules import (thin aliases of ``CollectionTable``) ------------------------------
def commit_append(
    load: Callable[[], Table], rows: pa.Table, properties: dict[str, str], item_id: str, attempts: int = 30
) -> Snapshot:
    """Append ``rows`` as one snapshot with retry (see ``CollectionTable.append``)."""
    return CollectionTable(load).append(rows, properties, item_id, attempts)


def expire_snapshots(table: Table, retain: int | None = None, batch: int | None = None) -> int:
    """See ``CollectionTable.expire``."""
    return CollectionTable.of(table).expire(table, retain, batch)


def snapshots(table: Table) -> list[SnapshotInfo]:
    """See ``CollectionTable.history``."""
    return CollectionTable.of(table).history(table)


def scan_rows(table: Table, columns: list[str] | None = None) -> pa.Table:
    """See ``CollectionTable.rows``."""
    return CollectionTable.of(table).rows(table, columns)


@dataclass(frozen=True)
class SnapshotInfo:
    """One Iceberg snapshot of a collection: an item's append, or an item delete, or a compaction."""

    snapshot_id: int
    parent_id: int | None
    sequence_number: int
    timestamp: dt.datetime
    item_id: str | None
    datetime: dt.datetime | None
    properties: dict[str, str] = field(default_factory=dict)
    operation: str | None = None

    @property
    def kind(self) -> str:
        """``item`` (an ingest), ``delete`` (an item delete) or ``compact`` (a compaction)."""
        if self.properties.get("deleted_item"):
            return "delete"
        return "compact" if self.properties.get("operation") == "compact" else "item"

    def to_json(self) -> dict[str, Any]:
        """The snapshot as ``snapshots --json`` prints it."""
        return {
            "snapshot_id": self.snapshot_id,
            "parent_snapshot_id": self.parent_id,
            "timestamp": self.timestamp.isoformat(),
            "item_id": self.item_id or self.properties.get("deleted_item"),
            "datetime": self.datetime.isoformat() if self.datetime else None,
            "kind": self.kind,
        }


def snapshot_info(snap: Snapshot) -> SnapshotInfo:
    """A snapshot as the package sees it: ids, time, and the ``pixelquery.*`` summary properties."""
    props = {}
    if snap.summary is not None:
        props = {
            k[len(SUMMARY_PREFIX) :]: v
            for k, v in snap.summary.additional_properties.items()
            if k.startswith(SUMMARY_PREFIX)
        }
    when = props.get("datetime")
    return SnapshotInfo(
        snapshot_id=snap.snapshot_id,
        parent_id=snap.parent_snapshot_id,
        sequence_number=snap.sequence_number or 0,
        timestamp=dt.datetime.fromtimestamp(snap.timestamp_ms / 1000, tz=dt.UTC),
        item_id=props.get("item_id"),
        datetime=dt.datetime.fromisoformat(when) if when else None,
        properties=props,
        operation=snap.summary.operation.value if snap.summary is not None else None,
    )


def _table_filesystem(table: Table, locations: list[str]):
    """The table FileIO's own pyarrow filesystem and the paths in it: the S3 endpoint, credentials and region the
    catalog was opened with (``storage_config``), never a fresh default filesystem that would go to AWS."""
    import pyarrow.fs as pafs
    from pyiceberg.io.pyarrow import PyArrowFileIO

    if isinstance(table.io, PyArrowFileIO):
        scheme, netloc, _ = PyArrowFileIO.parse_location(locations[0])
        return table.io.fs_by_scheme(scheme, netloc), [PyArrowFileIO.parse_location(loc)[2] for loc in locations]
    fs, _ = pafs.FileSystem.from_uri(locations[0])
    return fs, [pafs.FileSystem.from_uri(loc)[1] for loc in locations]


def item_properties(props: dict[str, Any]) -> dict[str, str]:
    """Snapshot summary properties (strings only) for an item's metadata."""
    return {SUMMARY_PREFIX + k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()}
