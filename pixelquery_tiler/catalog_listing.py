"""What ``pixelquery-tiler collections`` prints, read without importing pyiceberg where the catalog allows it.

Part of the catalog boundary (``catalog.py`` is the rest); its own module because importing ``catalog.py``
alone costs about a second. Measured on the 2-core dev machine (``python -X importtime`` and a per-step
timer, 10:10 UTC, load ~0.3), listing three collections through pyiceberg's ``SqlCatalog``: imports of
SQLAlchemy 170 ms, pyarrow 120 ms, ``pyiceberg.table`` 280-360 ms, ``pyiceberg.catalog.sql`` 70 ms, then
265 ms in the first ``load_table`` (pyiceberg's ``PyArrowFileIO`` imports ``pyarrow.dataset`` and pandas),
while opening the catalog, listing and loading the tables take ~20 ms. The whole command took 1.45-1.58 s
against a goal of 0.8 s. A listing needs the table names, each table's current metadata file and the
snapshot chain in it: the stdlib reads those from the embedded SQLite catalog (pyiceberg's
``iceberg_tables`` rows) and the metadata JSON in a few milliseconds (numbers for the whole command in
``benchmarks/README.md``, Start-up).

Only the default setup takes that path: a local warehouse, its SQLite catalog file, no catalog properties,
local metadata files in a format this reader knows. Everything else (PostgreSQL and REST catalogs, object
stores, an older catalog schema, any error) goes through pyiceberg and ``Warehouse``, so those cases print
exactly what they printed before, error messages included. ``tests/test_catalog_listing.py`` checks that both
paths agree on the same warehouses (expired snapshots, deletes, compaction, empty catalogs).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .names import valid_name

log = logging.getLogger(__name__)

#: the same values as ``catalog.NAMESPACE``, ``catalog.ITEM_LOG_PROPERTY`` and ``catalog.ITEM_LOG_DIR`` (a test
#: checks it): importing them from there would import pyiceberg
NAMESPACE = "pixelquery"
ITEM_LOG_PROPERTY = "pixelquery.item-log"
ITEM_LOG_DIR = "pixelquery-items"


@dataclass(frozen=True)
class CollectionSummary:
    """One row of ``collections``: the snapshot count is ``catalog.snapshots(table)``'s length (item log
    included), the current snapshot is the table head."""

    id: str
    snapshots: int
    current_snapshot_id: int | None

    def to_json(self) -> dict[str, Any]:
        """The row as ``collections --json`` prints it."""
        return asdict(self)


def collection_summaries(
    warehouse: str, catalog_uri: str | None = None, catalog_props: Mapping[str, str] | None = None
) -> list[CollectionSummary]:
    """Every collection of a warehouse, sorted by name, never creating anything.

    Arguments as for ``Warehouse`` (``catalog_props=None``: ``$PIXELQUERY_CATALOG_PROPS``).
    """
    fast = _from_sqlite(warehouse, catalog_uri, catalog_props)
    if fast is not None:
        return fast
    from .warehouse import Warehouse

    props = dict(catalog_props) if catalog_props is not None else None
    wh = Warehouse(warehouse, catalog_uri=catalog_uri, catalog_props=props, create=False)
    rows = []
    for name in wh.collections():
        snaps = wh.collection(name).snapshots()
        rows.append(CollectionSummary(name, len(snaps), snaps[-1].snapshot_id if snaps else None))
    return rows


class _NotPlain(Exception):
    """This warehouse or catalog is not the plain local SQLite case: pyiceberg reads it."""


def _from_sqlite(
    warehouse: str, catalog_uri: str | None, catalog_props: Mapping[str, str] | None
) -> list[CollectionSummary] | None:
    """The summaries read with the stdlib, or ``None`` when pyiceberg must read this catalog."""
    try:
        db = _sqlite_file(warehouse, catalog_uri, catalog_props)
        with contextlib.closing(_connect(db)) as conn:
            # pyiceberg's SqlCatalog.list_tables / load_table query (schema v1: views excluded)
            tables = conn.execute(
                "SELECT table_name, metadata_location FROM iceberg_tables WHERE catalog_name = ? "
                "AND table_namespace = ? AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)",
                (NAMESPACE, NAMESPACE),
            ).fetchall()
        return [_summary(name, location) for name, location in sorted(tables)]
    except (_NotPlain, sqlite3.Error, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.debug("listing through pyiceberg: %s", exc)
        return None


def _sqlite_file(warehouse: str, catalog_uri: str | None, catalog_props: Mapping[str, str] | None) -> str:
    """The SQLite file ``catalog.open_catalog`` would open for this warehouse, if it is the plain local case."""
    if catalog_props is None:
        from .storage_config import parse_props

        catalog_props = parse_props()
    if catalog_props or "://" in warehouse or "?" in warehouse:
        raise _NotPlain("catalog properties or a URI")
    uri = catalog_uri or os.environ.get("PIXELQUERY_CATALOG_URI")  # catalog.CATALOG_URI_ENV
    if not uri:
        db = str(Path(warehouse).expanduser().resolve() / "catalog.db")
    elif uri.startswith("sqlite:///"):
        db = uri[len("sqlite:///") :].split("?", 1)[0]
    elif "://" not in uri:
        db = os.path.abspath(os.path.expanduser(uri))
    else:
        raise _NotPlain("not a SQLite catalog")
    if not os.path.isfile(db):
        raise _NotPlain("no catalog file (pyiceberg reports it)")
    return db


def _connect(db: str) -> sqlite3.Connection:
    """Read-only, waiting for a committing writer like ``open_catalog`` does (30 s)."""
    return sqlite3.connect(f"{Path(db).as_uri()}?mode=ro", uri=True, timeout=30)


def _local(location: str) -> str:
    if location.startswith("file://"):
        return location[len("file://") :]
    if "://" in location:
        raise _NotPlain(f"remote file {location}")
    return location


def _summary(name: str, metadata_location: str | None) -> CollectionSummary:
    """One table's row from its current metadata file: the rule of ``catalog.CollectionTable.history``."""
    if not valid_name(name) or not metadata_location:
        raise _NotPlain(f"table {name!r}: not a collection table")  # pyiceberg's path raises its own error
    path = _local(metadata_location)
    if path.endswith(".gz.metadata.json"):  # pyiceberg's only compressed metadata name
        with gzip.open(path) as f:
            meta = json.load(f)
    elif path.endswith(".metadata.json"):
        with open(path, "rb") as f:
            meta = json.load(f)
    else:
        raise _NotPlain(f"metadata file {path}")
    current = meta.get("current-snapshot-id")
    by_id = {s["snapshot-id"]: s for s in meta.get("snapshots") or []}
    chain: list[int] = []
    snap = by_id.get(current) if current is not None and current != -1 else None
    while snap is not None and snap["snapshot-id"] not in chain:
        chain.append(snap["snapshot-id"])
        parent = snap.get("parent-snapshot-id")
        snap = by_id.get(parent) if parent is not None else None
    if not chain:
        return CollectionSummary(name, 0, None)
    expired = _item_log_ids(meta) - set(chain)
    return CollectionSummary(name, len(expired) + len(chain), chain[0])


def _item_log_ids(meta: dict[str, Any]) -> set[int]:
    """Snapshot ids in the table's item log (snapshots expired from the metadata, see ``catalog.py``).

    Parquet needs pyarrow (~110 ms of imports, only for tables that have expired snapshots).
    """
    names = json.loads((meta.get("properties") or {}).get(ITEM_LOG_PROPERTY, "[]"))
    if not names:
        return set()
    import pyarrow.parquet as pq

    root = _local(meta["location"]).rstrip("/")
    ids: set[int] = set()
    for name in names:
        # ParquetFile, not read_table: read_table goes through pyarrow.dataset (and imports pandas)
        column = pq.ParquetFile(f"{root}/{ITEM_LOG_DIR}/{name}").read(columns=["snapshot_id"]).column(0)
        ids.update(int(i) for i in column.to_pylist() if i is not None)
    return ids
