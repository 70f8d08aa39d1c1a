"""The tile catalog: one Apache Iceberg table per collection, one row per stored chunk.

The catalog is pyiceberg's: ``SqlCatalog`` on a SQLite file inside the warehouse by default, any
SQLAlchemy URI (PostgreSQL) or an Iceberg REST endpoint when scaled out. Spark, Trino and DuckDB can read
the same tables as they are.

Every ingest is exactly one ``append`` whose snapshot summary carries the item's metadata, so one snapshot
is one STAC item, and the item id is also stored on every row.

Commit cost and snapshot expiry
-------------------------------
pyiceberg rewrites (and deep-copies, several times) the whole table metadata on every commit, and that
metadata lists every snapshot with its summary, so a one-row append costs O(snapshots): measured ~80 ms at
10 snapshots but ~540 ms at 300 on the dev machine (``benchmarks/commit.py``). To keep ingest flat at
thousands of items, an ingest that finds more than ``retain + batch`` live snapshots *expires* all but the
newest ``retain`` of them (table properties ``pixelquery.retain-snapshots``, default 4, and
``pixelquery.expire-batch``, default 8; ``retain <= 0`` disables expiry). Few live snapshots keep every
commit near pyiceberg's fixed cost (4..12 live: ~75 ms; 16..32 live: ~110 ms); the expiry commit itself
is amortised over ``batch`` ingests. Expiry only drops snapshot
*metadata*: appends never remove rows, so the head snapshot still references every chunk and data file.

Items must survive that, so before expiring, the expired snapshots' id, parent, sequence number, timestamp
and ``pixelquery.*`` summary properties are written to an immutable Parquet *item log* file in the table
location (``pixelquery-items/``), and the expiring commit itself sets the table property
``pixelquery.item-log`` to the list of log files. Log and expiry land in the same atomic metadata commit, so
a reader sees either the live snapshots or their log entries, never neither. :func:`snapshots` merges log
and live chain, so time travel (``snapshot_id=`` of an expired snapshot) and item lookup keep working:
readers resolve "as of snapshot S" as "rows of items committed at or before S" from that history, which is
exact because every commit is an append. Only *Iceberg-native* time travel of other engines (Spark/Trino
``VERSION AS OF``) is limited to the retained snapshots. Consumers must therefore list items with
:func:`snapshots` (or ``Collection.snapshots()`` / ``CollectionIndex.snapshots``), never with
``table.metadata.snapshots``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
    ValidationException,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.update import AssertRefSnapshotId, RemoveSnapshotsUpdate, SetPropertiesUpdate
from pyiceberg.transforms import MonthTransform
from pyiceberg.types import DoubleType, IntegerType, ListType, NestedField, StringType, TimestamptzType

from .fileio import WarehouseFS

log = logging.getLogger(__name__)

NAMESPACE = "pixelquery"
CATALOG_URI_ENV = "PIXELQUERY_CATALOG_URI"
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
    PartitionField(source_id=SCHEMA.find_field("datetime").field_id, field_id=1000, transform=MonthTransform(), name="datetime_month")
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
#: log files referenced before an expiry compacts them into one (bounds the property and the reads)
ITEM_LOG_MAX_FILES = 8
ITEM_LOG_DIR = "pixelquery-items"
ITEM_LOG_SCHEMA = pa.schema(
    [
        pa.field("snapshot_id", pa.int64(), nullable=False),
        pa.field("parent_id", pa.int64()),
        pa.field("sequence_number", pa.int64(), nullable=False),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
        pa.field("operation", pa.string()),
        pa.field("properties", pa.string(), nullable=False),  # JSON of the pixelquery.* summary properties
    ]
)


class CatalogError(RuntimeError):
    """The catalog cannot be opened with the given settings."""


class CatalogUnavailable(CatalogError):
    """The catalog server cannot be reached now (PostgreSQL or REST catalog down): retry later; HTTP 503."""


#: errors of the catalog's client libraries that mean "server unreachable now", not "bad request"
def unavailable_errors() -> tuple[type[BaseException], ...]:
    import requests
    import sqlalchemy.exc

    from .storage_config import StorageConfigError  # the warehouse's S3 endpoint unreachable at catalog open

    return (CatalogUnavailable, StorageConfigError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
            requests.ConnectionError)


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
    uri = catalog_uri or os.environ.get(CATALOG_URI_ENV)
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
    return (NAMESPACE, collection)


def load_table(catalog: Catalog, collection: str) -> Table | None:
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
            try:
                catalog.create_namespace(NAMESPACE)
            except NamespaceAlreadyExistsError:
                pass
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
    from pyiceberg.exceptions import NoSuchNamespaceError

    try:
        return sorted(ident[-1] for ident in catalog.list_tables(NAMESPACE))
    except NoSuchNamespaceError:  # before the first ingest (an unreachable catalog is an error, not "empty")
        return []


def _summary_item_id(snap: Snapshot) -> str | None:
    if snap.summary is None:
        return None
    return snap.summary.additional_properties.get(SUMMARY_PREFIX + "item_id")


def _find_item_snapshot(table: Table, item_id: str) -> Snapshot | None:
    for snap in reversed(table.metadata.snapshots):
        if _summary_item_id(snap) == item_id:
            return snap
    return None


def as_table_schema(table: Table, rows: pa.Table) -> pa.Table:
    """``rows`` with the table's schema as the catalog returned it: field ids are the catalog's (a REST
    catalog may number fields differently from ``SCHEMA``), so appends work with any compliant catalog."""
    target = table.schema().as_arrow()
    return rows if rows.schema.equals(target, check_metadata=True) else rows.select(target.names).cast(target)


def commit_append(
    load: Callable[[], Table], rows: pa.Table, properties: dict[str, str], item_id: str, attempts: int = 30
) -> Snapshot:
    """Append ``rows`` as one snapshot, retrying on optimistic-concurrency conflicts.

    pyiceberg raises ``CommitFailedException`` when another writer committed first, and SQLite says
    "database is locked" when another writer holds its lock; the append is then redone on the refreshed
    table, so concurrent ingests are serialised, never lost. Before a retry the table is checked for the
    item, so an error raised *after* a successful commit never appends the item twice. After the commit,
    old snapshots may be expired (:func:`expire_snapshots`) so commit cost stays flat.
    """
    delay = 0.02
    for attempt in range(attempts):
        table = load()
        if attempt and (done := _find_item_snapshot(table, item_id)) is not None:
            return done
        try:
            table.append(as_table_schema(table, rows), snapshot_properties=properties)
        except (CommitFailedException, ValidationException) as exc:
            # ValidationException: a concurrent expiry removed the snapshot this append started from;
            # pyiceberg guarantees the append did not land, so it is redone on the refreshed table
            log.debug("commit conflict on %s, attempt %d: %s", table.name(), attempt + 1, exc)
        except Exception as exc:
            if not _is_transient(exc):
                raise
            log.debug("catalog locked, attempt %d", attempt + 1)
        else:
            snap = _find_item_snapshot(table, item_id)
            if snap is None:
                raise CatalogError("committed snapshot not found in table metadata")
            try:
                expire_snapshots(table)
            except Exception:  # maintenance is best effort: the ingest itself has landed
                log.warning("snapshot expiry on %s failed; will retry on a later ingest", table.name(), exc_info=True)
            return snap
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 1.0)
    raise CatalogError(f"could not commit after {attempts} attempts (too much concurrent ingest)")


def _int_property(table: Table, key: str, default: int) -> int:
    try:
        return int(table.properties.get(key, default))
    except ValueError:
        log.warning("ignoring non-integer table property %s=%r", key, table.properties.get(key))
        return default


def expire_snapshots(table: Table, retain: int | None = None, batch: int | None = None) -> int:
    """Expire all but the newest ``retain`` snapshots once more than ``retain + batch`` are live.

    Returns how many snapshots were expired (0 when below the threshold or when a concurrent commit won;
    the next ingest tries again). Expiring in batches amortises the extra commit over ``batch`` ingests.
    The expired snapshots go to the item log in the same commit (see the module docstring), guarded by
    the head snapshot id so a concurrent append or expiry makes this commit fail instead of losing log
    entries.
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
    log_files = _write_item_log(table, [snapshot_info(s) for s in expired])
    try:
        table.catalog.commit_table(
            table,
            requirements=(AssertRefSnapshotId(snapshot_id=current.snapshot_id, ref="main"),),
            updates=(
                SetPropertiesUpdate(updates={ITEM_LOG_PROPERTY: json.dumps(log_files)}),
                RemoveSnapshotsUpdate(snapshot_ids=[s.snapshot_id for s in expired]),
            ),
        )
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


def _item_log_files(table: Table) -> list[str]:
    return list(json.loads(table.properties.get(ITEM_LOG_PROPERTY, "[]")))


def _item_log_uri(table: Table, name: str) -> str:
    return f"{table.location().rstrip('/')}/{ITEM_LOG_DIR}/{name}"


def _write_item_log(table: Table, infos: list["SnapshotInfo"]) -> list[str]:
    """Write a new immutable log file; returns the log file list the expiring commit will reference.

    Once ``ITEM_LOG_MAX_FILES`` files exist, the new file also holds all older entries (compaction), so a
    reader opens at most that many small files however many snapshots were expired.
    """
    files = _item_log_files(table)
    if len(files) >= ITEM_LOG_MAX_FILES:
        infos = [*(e for f in files for e in _read_item_log_file(table, f)), *infos]
        files = []
    name = f"{uuid.uuid4().hex}.parquet"
    rows = pa.Table.from_pylist(
        [
            {
                "snapshot_id": i.snapshot_id, "parent_id": i.parent_id, "sequence_number": i.sequence_number,
                "timestamp_ms": round(i.timestamp.timestamp() * 1000), "operation": i.operation,
                "properties": json.dumps(i.properties),
            }
            for i in infos
        ],
        schema=ITEM_LOG_SCHEMA,
    )
    import pyarrow.parquet as pq

    with table.io.new_output(_item_log_uri(table, name)).create(overwrite=False) as out:
        pq.write_table(rows, out, compression="zstd")
    return [*files, name]


_log_cache: OrderedDict[str, list["SnapshotInfo"]] = OrderedDict()
_log_cache_lock = threading.Lock()


def _read_item_log_file(table: Table, name: str) -> list["SnapshotInfo"]:
    """Entries of one log file; cached per file (log files are immutable)."""
    uri = _item_log_uri(table, name)
    with _log_cache_lock:
        if uri in _log_cache:
            _log_cache.move_to_end(uri)
            return _log_cache[uri]
    import pyarrow.parquet as pq

    with table.io.new_input(uri).open() as f:
        rows = pq.read_table(f).to_pylist()
    infos = [
        SnapshotInfo(
            snapshot_id=r["snapshot_id"],
            parent_id=r["parent_id"],
            sequence_number=r["sequence_number"],
            timestamp=dt.datetime.fromtimestamp(r["timestamp_ms"] / 1000, tz=dt.timezone.utc),
            item_id=(props := json.loads(r["properties"])).get("item_id"),
            datetime=dt.datetime.fromisoformat(props["datetime"]) if props.get("datetime") else None,
            properties=props,
            operation=r["operation"],
        )
        for r in rows
    ]
    with _log_cache_lock:
        _log_cache[uri] = infos
        while len(_log_cache) > 256:
            _log_cache.popitem(last=False)
    return infos


def expired_snapshots(table: Table) -> list["SnapshotInfo"]:
    """Snapshots expired into the item log, oldest first."""
    seen: dict[int, SnapshotInfo] = {}
    for name in _item_log_files(table):
        for info in _read_item_log_file(table, name):
            seen[info.snapshot_id] = info
    return sorted(seen.values(), key=lambda i: i.sequence_number)


@dataclass(frozen=True)
class SnapshotInfo:
    """One Iceberg snapshot of a collection, i.e. one STAC item."""

    snapshot_id: int
    parent_id: int | None
    sequence_number: int
    timestamp: dt.datetime
    item_id: str | None
    datetime: dt.datetime | None
    properties: dict[str, str] = field(default_factory=dict)
    operation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "parent_snapshot_id": self.parent_id,
            "timestamp": self.timestamp.isoformat(),
            "item_id": self.item_id,
            "datetime": self.datetime.isoformat() if self.datetime else None,
        }


def snapshot_info(snap: Snapshot) -> SnapshotInfo:
    props = {}
    if snap.summary is not None:
        props = {k[len(SUMMARY_PREFIX) :]: v for k, v in snap.summary.additional_properties.items() if k.startswith(SUMMARY_PREFIX)}
    when = props.get("datetime")
    return SnapshotInfo(
        snapshot_id=snap.snapshot_id,
        parent_id=snap.parent_snapshot_id,
        sequence_number=snap.sequence_number or 0,
        timestamp=dt.datetime.fromtimestamp(snap.timestamp_ms / 1000, tz=dt.timezone.utc),
        item_id=props.get("item_id"),
        datetime=dt.datetime.fromisoformat(when) if when else None,
        properties=props,
        operation=snap.summary.operation.value if snap.summary is not None else None,
    )


def snapshots(table: Table) -> list[SnapshotInfo]:
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
    older = [s for s in expired_snapshots(table) if s.snapshot_id not in live]
    history = older + chain[::-1]
    # pyiceberg sets parent_snapshot_id to None on the oldest snapshot it keeps when it expires the parent;
    # the main branch is a linear chain of appends, so the parent is the entry before it
    return [
        replace(info, parent_id=history[i - 1].snapshot_id) if i and info.parent_id is None else info
        for i, info in enumerate(history)
    ]


def scan_rows(table: Table, columns: list[str] | None = None) -> pa.Table:
    """All rows at the table head, reading the data files directly with ``pyarrow.dataset``.

    Every ingest adds one small Parquet data file, and pyiceberg's ``scan().to_arrow()`` pays ~10 ms of
    per-file overhead (1,000 items: ~8 s on the dev machine, ~4x slower than this). Appends never write
    delete files and every data file has the table schema, so reading the planned files as one dataset is
    the same result; anything else (delete files, non-Parquet files) falls back to pyiceberg's scan.
    """
    import pyarrow.dataset as ds
    from pyiceberg.manifest import FileFormat

    target = pa.schema([ARROW_SCHEMA.field(n) for n in columns]) if columns else ARROW_SCHEMA
    if table.current_snapshot() is None:
        return target.empty_table()
    tasks = list(table.scan().plan_files())
    if any(t.delete_files or t.file.file_format != FileFormat.PARQUET for t in tasks):
        return table.scan(selected_fields=tuple(columns) if columns else ("*",)).to_arrow()
    if not tasks:
        return target.empty_table()
    fs, paths = _table_filesystem(table, [t.file.file_path for t in tasks])
    rows = ds.dataset(paths, format="parquet", filesystem=fs).to_table(columns=columns)
    return rows.select(target.names).cast(target)


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
