"""The tile catalog: one Apache Iceberg table per collection, one row per stored chunk.

The catalog is pyiceberg's: ``SqlCatalog`` on a SQLite file inside the warehouse by default, any
SQLAlchemy URI (PostgreSQL) or an Iceberg REST endpoint when scaled out. Spark, Trino and DuckDB can read
the same tables as they are.

Every ingest is exactly one ``append`` whose snapshot summary carries the item's metadata, so one snapshot
is one STAC item, and the item id is also stored on every row (items stay addressable even if old
snapshots are expired for commit speed).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
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


class CatalogError(RuntimeError):
    """The catalog cannot be opened with the given settings."""


def open_catalog(fs: WarehouseFS, catalog_uri: str | None = None) -> Catalog:
    """Open the Iceberg catalog of a warehouse.

    ``catalog_uri`` (or ``$PIXELQUERY_CATALOG_URI``): a SQLAlchemy URI (``postgresql+psycopg2://...``,
    ``sqlite:///...``) or an ``http(s)://`` Iceberg REST endpoint. Default: ``catalog.db`` in a local
    warehouse.
    """
    uri = catalog_uri or os.environ.get(CATALOG_URI_ENV)
    if not uri:
        local = fs.local_path()
        if local is None:
            raise CatalogError("a remote warehouse needs a catalog: pass --catalog-uri or set PIXELQUERY_CATALOG_URI")
        os.makedirs(local, exist_ok=True)
        uri = f"sqlite:///{os.path.join(local, 'catalog.db')}"
    if uri.startswith(("http://", "https://")):
        from pyiceberg.catalog.rest import RestCatalog

        return RestCatalog(NAMESPACE, uri=uri, warehouse=fs.uri)
    from pyiceberg.catalog.sql import SqlCatalog

    for attempt in range(20):  # several processes may create the SQLite catalog tables at once
        try:
            return SqlCatalog(NAMESPACE, uri=uri, warehouse=fs.uri)
        except Exception as exc:  # sqlalchemy OperationalError: database is locked / table exists
            if attempt == 19 or "locked" not in str(exc) and "already exists" not in str(exc):
                raise
            time.sleep(0.05 + random.random() * 0.1)
    raise AssertionError("unreachable")


def identifier(collection: str) -> tuple[str, str]:
    return (NAMESPACE, collection)


def load_table(catalog: Catalog, collection: str) -> Table | None:
    try:
        return catalog.load_table(identifier(collection))
    except NoSuchTableError:
        return None


def create_table(catalog: Catalog, fs: WarehouseFS, collection: str) -> Table:
    """Create the collection table if missing (idempotent under concurrent creators)."""
    try:
        catalog.create_namespace(NAMESPACE)
    except NamespaceAlreadyExistsError:
        pass
    try:
        return catalog.create_table(
            identifier(collection),
            schema=SCHEMA,
            partition_spec=PARTITION_SPEC,
            location=fs.uri_of(f"iceberg/{collection}"),
            properties=TABLE_PROPERTIES,
        )
    except TableAlreadyExistsError:
        return catalog.load_table(identifier(collection))


def list_collections(catalog: Catalog) -> list[str]:
    try:
        return sorted(ident[-1] for ident in catalog.list_tables(NAMESPACE))
    except Exception:  # NoSuchNamespaceError before the first ingest
        return []


def commit_append(
    load: Callable[[], Table], rows: pa.Table, properties: dict[str, str], item_id: str, attempts: int = 30
) -> Snapshot:
    """Append ``rows`` as one snapshot, retrying on optimistic-concurrency conflicts.

    pyiceberg raises ``CommitFailedException`` when another writer committed first; the append is then
    redone on the refreshed table, so concurrent ingests are serialised, never lost.
    """
    delay = 0.02
    for attempt in range(attempts):
        table = load()
        try:
            table.append(rows, snapshot_properties=properties)
        except CommitFailedException:
            log.debug("commit conflict on %s, attempt %d", table.name(), attempt + 1)
        except Exception as exc:  # SQLite "database is locked" under concurrent writers
            if "locked" not in str(exc):
                raise
            log.debug("catalog locked, attempt %d", attempt + 1)
        else:
            for snap in reversed(table.metadata.snapshots):
                if snap.summary is not None and snap.summary[SUMMARY_PREFIX + "item_id"] == item_id:
                    return snap
            raise CatalogError("committed snapshot not found in table metadata")
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 1.0)
    raise CatalogError(f"could not commit after {attempts} attempts (too much concurrent ingest)")


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
    )


def snapshots(table: Table) -> list[SnapshotInfo]:
    """Snapshots on the main branch's history, oldest first."""
    current = table.current_snapshot()
    if current is None:
        return []
    by_id = {s.snapshot_id: s for s in table.metadata.snapshots}
    chain = []
    snap: Snapshot | None = current
    while snap is not None:
        chain.append(snapshot_info(snap))
        snap = by_id.get(snap.parent_snapshot_id) if snap.parent_snapshot_id is not None else None
    return chain[::-1]


def item_properties(props: dict[str, Any]) -> dict[str, str]:
    """Snapshot summary properties (strings only) for an item's metadata."""
    return {SUMMARY_PREFIX + k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()}
