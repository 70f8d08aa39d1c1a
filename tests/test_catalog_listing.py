"""``collections`` listing: the stdlib reader of the embedded SQLite catalog agrees with pyiceberg.

The truth is what the listing printed before the stdlib reader existed: ``Warehouse`` through pyiceberg,
``len(collection.snapshots())`` (expired snapshots from the item log included) and the last snapshot's id.
Each case checks that the stdlib reader took the case (not a silent fallback) and gave the same rows.
"""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import pytest

from pixelquery_tiler import Warehouse
from pixelquery_tiler import catalog as cat
from pixelquery_tiler import catalog_listing as listing
from pixelquery_tiler.catalog_listing import CollectionSummary, collection_summaries
from warehouse_fixtures import run_cli, write_geotiff


def truth(wh: Warehouse) -> list[CollectionSummary]:
    rows = []
    for name in wh.collections():
        snaps = wh.collection(name).snapshots()
        rows.append(CollectionSummary(name, len(snaps), snaps[-1].snapshot_id if snaps else None))
    return rows


def add_items(wh: Warehouse, tmp_path: Path, collection: str, days: list[str]) -> list:
    out = []
    for day in days:
        path = write_geotiff(tmp_path / f"{collection}-{day}.tif", seed=len(day), datetime_tag=f"{day} 10:00:00")
        out.append(wh.ingest(str(path), collection))
    return out


def set_props(wh: Warehouse, collection: str, **props: str) -> None:
    with wh.collection(collection).table().transaction() as tx:
        tx.set_properties(props)


def gzip_metadata(root: Path, collection: str) -> None:
    """Commit the table's metadata again as ``*.gz.metadata.json``, as Iceberg Java writes it with
    ``write.metadata.compression-codec=gzip`` (pyiceberg reads such files but never writes them)."""
    with sqlite3.connect(root / "catalog.db") as conn:
        (location,) = conn.execute(
            "SELECT metadata_location FROM iceberg_tables WHERE table_name = ?", (collection,)
        ).fetchone()
        packed = location.replace(".metadata.json", ".gz.metadata.json")
        Path(packed).write_bytes(gzip.compress(Path(location).read_bytes()))
        conn.execute(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? WHERE table_name = ?",
            (packed, location, collection),
        )


def assert_stdlib_agrees(root: Path, catalog_uri: str | None = None) -> list[CollectionSummary]:
    expected = truth(Warehouse(str(root), catalog_uri=catalog_uri, create=False))
    assert listing._from_sqlite(str(root), catalog_uri, {}) == expected  # the stdlib path, not a fallback
    assert collection_summaries(str(root), catalog_uri, {}) == expected
    return expected


def test_constants_are_the_catalogs() -> None:
    assert (listing.NAMESPACE, listing.ITEM_LOG_PROPERTY, listing.ITEM_LOG_DIR) == (
        cat.NAMESPACE,
        cat.ITEM_LOG_PROPERTY,
        cat.ITEM_LOG_DIR,
    )


def test_empty_catalog_lists_nothing(tmp_path: Path) -> None:
    assert Warehouse(str(tmp_path / "wh")).catalog is not None  # creates catalog.db, no namespace, no table
    assert assert_stdlib_agrees(tmp_path / "wh") == []


def test_expired_deleted_compacted_and_gzip_metadata(tmp_path: Path) -> None:
    """The count includes snapshots expired into the item log, deletes and compactions (one snapshot each)."""
    root = tmp_path / "wh"
    wh = Warehouse(str(root))
    first = add_items(wh, tmp_path, "a", ["2021:03:01", "2021:03:02"])
    set_props(wh, "a", **{cat.RETAIN_PROPERTY: "1", cat.EXPIRE_BATCH_PROPERTY: "0"})
    add_items(wh, tmp_path, "a", ["2021:03:03", "2021:03:04"])  # expires older snapshots into the item log
    wh.delete("a", first[0].item_id)
    wh.compact("a")
    add_items(wh, tmp_path, "b", ["2021:04:01", "2021:04:02"])
    gzip_metadata(root, "b")
    table = wh.collection("a").table()
    assert cat.CollectionTable.item_log_files(table), "the case needs an item log"
    assert len(table.metadata.snapshots) < len(cat.snapshots(table))
    assert wh.collection("b").table().metadata_location.endswith(".gz.metadata.json")
    rows = assert_stdlib_agrees(root)
    assert [(r.id, r.snapshots) for r in rows] == [("a", 6), ("b", 2)]


def test_catalog_file_elsewhere(tmp_path: Path) -> None:
    """``--catalog-uri`` as a plain path or a ``sqlite:///`` URI is still the embedded catalog."""
    db = tmp_path / "elsewhere.db"
    add_items(Warehouse(str(tmp_path / "wh"), catalog_uri=str(db)), tmp_path, "c", ["2021:05:01"])
    assert assert_stdlib_agrees(tmp_path / "wh", str(db))[0].snapshots == 1
    assert assert_stdlib_agrees(tmp_path / "wh", f"sqlite:///{db}?timeout=30")[0].snapshots == 1


def test_other_setups_go_through_pyiceberg(tmp_path: Path) -> None:
    """Catalog properties (or a non-SQLite catalog, see test_postgres_catalog.py) take pyiceberg's path."""
    root = tmp_path / "wh"
    add_items(Warehouse(str(root)), tmp_path, "c", ["2021:05:01"])
    props = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
    assert listing._from_sqlite(str(root), None, props) is None
    assert collection_summaries(str(root), None, props) == truth(Warehouse(str(root), create=False))


@pytest.mark.parametrize("make", ["nothing", "empty-dir", "chunks-only"])
def test_missing_catalog_errors_as_before(tmp_path: Path, make: str) -> None:
    """No catalog: pyiceberg's path reports it (one line, exit 2), nothing is created."""
    root = tmp_path / "wh"
    if make != "nothing":
        root.mkdir()
    if make == "chunks-only":
        (root / "chunks").mkdir()
    proc = run_cli("collections", root)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "catalog" in proc.stderr
    assert not (root / "catalog.db").exists()
