"""Warehouse semantics: time travel, read-your-writes, snapshot expiry into the item log, gc after expiry."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from pixelquery_tiler import Warehouse
from pixelquery_tiler import catalog as cat
from pixelquery_tiler.index import SnapshotNotFound
from warehouse_fixtures import write_geotiff

BOUNDS = (700005.0, -2781945.0, 701925.0, -2780025.0)  # the 64 x 64 px, 30 m default of write_geotiff


def ingest_series(warehouse: Warehouse, tmp_path: Path, n: int, collection: str = "series", start: int = 0) -> list:
    """``n`` observations of the same place on consecutive days, distinct pixels each."""
    results = []
    for i in range(start, start + n):
        path = write_geotiff(tmp_path / f"obs{i}.tif", seed=i, datetime_tag=f"2021:03:{i + 1:02d} 10:00:00")
        results.append(warehouse.ingest(str(path), collection))
    return results


def read_all(warehouse: Warehouse, collection: str = "series", **kwargs):
    return warehouse.collection(collection).read(BOUNDS, "EPSG:32621", 64, 64, **kwargs)


def test_time_travel_sees_only_what_existed(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path / "wh"))
    first, second, third = ingest_series(wh, tmp_path, 3)
    fresh = Warehouse(str(tmp_path / "wh"))  # a new process's view, nothing cached
    assert read_all(fresh, snapshot_id=first.snapshot_id).items == [first.item_id]
    assert read_all(fresh, snapshot_id=second.snapshot_id, pixel_selection="count").items == [
        second.item_id,
        first.item_id,
    ]
    assert read_all(fresh).items == [third.item_id]  # head, newest first, output full after one
    with pytest.raises(SnapshotNotFound):
        read_all(fresh, snapshot_id=12345)
    # the pixels of snapshot 1 are those of the first file
    with rasterio.open(tmp_path / "obs0.tif") as src:
        np.testing.assert_array_equal(read_all(fresh, snapshot_id=first.snapshot_id).data.filled(0), src.read())


def test_read_your_writes_in_one_process(tmp_path: Path) -> None:
    """A Warehouse that just ingested reads the new item at once, not after the index refresh interval."""
    wh = Warehouse(str(tmp_path / "wh"), refresh_interval=3600)
    first = ingest_series(wh, tmp_path, 1)[0]
    assert read_all(wh).items == [first.item_id]
    second = wh.ingest(str(write_geotiff(tmp_path / "later.tif", seed=9, datetime_tag="2022:01:01 00:00:00")), "series")
    assert read_all(wh).items == [second.item_id]


def test_snapshot_expiry_keeps_items_and_time_travel(tmp_path: Path) -> None:
    """Old snapshots expire (flat commit cost) but every item, its metadata and time travel to it survive."""
    wh = Warehouse(str(tmp_path / "wh"))
    results = ingest_series(wh, tmp_path, 3)
    table = wh.collection("series").table()
    with table.transaction() as tx:
        tx.set_properties({cat.RETAIN_PROPERTY: "2", cat.EXPIRE_BATCH_PROPERTY: "1"})
    # the next ingests cross retain + batch and expire the oldest snapshots into the item log
    results += ingest_series(wh, tmp_path, 3, start=3)
    table = wh.collection("series").table()
    assert len(table.metadata.snapshots) <= 3, "old snapshots were not expired"
    assert cat.ITEM_LOG_PROPERTY in table.properties

    history = Warehouse(str(tmp_path / "wh")).collection("series").snapshots()
    assert [s.snapshot_id for s in history] == [r.snapshot_id for r in results]
    assert [s.item_id for s in history] == [r.item_id for r in results]
    assert [s.parent_id for s in history] == [None] + [s.snapshot_id for s in history[:-1]]  # linear, across expiry
    assert history[0].properties["source"] == "obs0.tif" and history[0].datetime == results[0].datetime
    fresh = Warehouse(str(tmp_path / "wh"))
    expired_first = results[0]
    assert fresh.collection("series").table().snapshot_by_id(expired_first.snapshot_id) is None
    assert read_all(fresh, snapshot_id=expired_first.snapshot_id).items == [expired_first.item_id]
    assert len(fresh.collection("series").index().items) == 6
    # expiry removed no data: every chunk and data file is still referenced; gc only finds the manifest lists
    # (and manifests) of the expired snapshots, and removing them changes no read
    orphans = [f.path for f in fresh.gc(older_than=dt.timedelta(0), dry_run=True).orphans]
    assert orphans and all(p.startswith("iceberg/series/metadata/") and p.endswith(".avro") for p in orphans)
    fresh.gc(older_than=dt.timedelta(0))
    after = Warehouse(str(tmp_path / "wh"))
    assert read_all(after, snapshot_id=expired_first.snapshot_id).items == [expired_first.item_id]
    assert sorted(it.item_id for it in after.collection("series").index().items) == sorted(r.item_id for r in results)
    assert after.gc(older_than=dt.timedelta(0), dry_run=True).orphans == []


def test_item_log_compacts(tmp_path: Path) -> None:
    """However many expiries ran, the item log stays a handful of files and lists every expired snapshot once."""
    wh = Warehouse(str(tmp_path / "wh"))
    results = ingest_series(wh, tmp_path, 1)
    table = wh.collection("series").table()
    with table.transaction() as tx:
        tx.set_properties({cat.RETAIN_PROPERTY: "1", cat.EXPIRE_BATCH_PROPERTY: "0"})
    for i in range(cat.ITEM_LOG_MAX_FILES + 3):
        path = write_geotiff(tmp_path / f"x{i}.tif", seed=100 + i, datetime_tag=f"2021:04:{i + 1:02d} 10:00:00")
        results.append(wh.ingest(str(path), "series"))
    table = wh.collection("series").table()
    assert len(json.loads(table.properties[cat.ITEM_LOG_PROPERTY])) <= cat.ITEM_LOG_MAX_FILES
    assert [s.item_id for s in cat.snapshots(table)] == [r.item_id for r in results]


def test_collection_names_are_checked(tmp_path: Path) -> None:
    from pixelquery_tiler import CollectionNotFound
    from pixelquery_tiler.ingest import IngestError

    wh = Warehouse(str(tmp_path / "wh"))
    with pytest.raises(IngestError):
        wh.ingest(str(write_geotiff(tmp_path / "a.tif", datetime_tag="2021:01:01 00:00:00")), "../evil")
    with pytest.raises(CollectionNotFound):
        wh.collection("missing")
    assert wh.collections() == []


def test_geographic_and_nodata_synthetic_round_trip(tmp_path: Path) -> None:
    """Float data with a NaN-free nodata and a geographic CRS round-trips exactly too."""
    path = write_geotiff(
        tmp_path / "dem.tif",
        width=37,
        height=23,
        crs="EPSG:4326",
        transform=Affine(0.01, 0, 10.005, 0, -0.01, 45.0),
        dtype="float32",
        nodata=-9999.0,
        datetime_tag="2020:01:01 00:00:00",
    )
    wh = Warehouse(str(tmp_path / "wh"))
    wh.ingest(str(path), "dem")
    with rasterio.open(path) as src:
        out = wh.collection("dem").read(tuple(src.bounds), "EPSG:4326", src.width, src.height)
        expected = src.read(masked=True)
    np.testing.assert_array_equal(np.ma.getmaskarray(out.data), np.ma.getmaskarray(expected))
    np.testing.assert_array_equal(out.data.filled(0), expected.filled(0))


def test_long_lived_index_follows_appends_across_expiry(tmp_path: Path) -> None:
    """A server's index refreshes incrementally; snapshots expired before it saw them force a rescan, not a crash."""
    writer = Warehouse(str(tmp_path / "wh"))
    results = ingest_series(writer, tmp_path, 2)
    server = Warehouse(str(tmp_path / "wh"), refresh_interval=0)
    assert len(server.collection("series").index().items) == 2
    with writer.collection("series").table().transaction() as tx:
        tx.set_properties({cat.RETAIN_PROPERTY: "1", cat.EXPIRE_BATCH_PROPERTY: "0"})
    results += ingest_series(writer, tmp_path, 1, start=2)  # seen live by the server
    assert [it.item_id for it in server.collection("series").index().items] == sorted(r.item_id for r in results)
    results += ingest_series(writer, tmp_path, 3, start=3)  # two of them expired before the server looks
    index = server.collection("series").index()
    assert sorted(it.item_id for it in index.items) == sorted(r.item_id for r in results)
    assert [s.snapshot_id for s in index.snapshots] == [r.snapshot_id for r in results]
    assert read_all(server, snapshot_id=results[3].snapshot_id).items == [results[3].item_id]


def test_chunk_row_type_matches_the_catalog_schema() -> None:
    """The typed row builder and the Iceberg schema name the same columns; a missing one is a clear error."""
    assert list(cat.ChunkRow.__annotations__) == cat.ARROW_SCHEMA.names
    with pytest.raises(ValueError, match="item_id"):
        cat.CollectionTable.build_rows([{"collection": "c"}])  # type: ignore[typeddict-item]
