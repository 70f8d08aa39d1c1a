"""Table maintenance: ``delete`` and ``compact`` (CONTRACT "Managing items and tables") and Iceberg-level ``gc``.

Everything runs on a real SQLite Iceberg catalog and real GeoTIFFs; tiles come from the full app (in-process
client) as ``.npy`` and are compared for exact equality before and after (a maintenance commit must not change
one pixel), and SIGKILL tests kill a real CLI process at a fixed point of its commit.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from pixelquery_tiler import Warehouse, create_app
from pixelquery_tiler import catalog as cat
from warehouse_fixtures import cli_ok, run_cli, write_geotiff

BOUNDS = (700005.0, -2781945.0, 701925.0, -2780025.0)  # the 64 x 64 px, 30 m default of write_geotiff
CRS = "EPSG:32621"


def series(wh: Warehouse, tmp_path: Path, days: list[str], collection: str = "c") -> list:
    """One small observation of the same place per ``YYYY-MM-DD`` day, distinct pixels each."""
    out = []
    for i, day in enumerate(days):
        tag = day.replace("-", ":") + " 10:00:00"
        path = write_geotiff(tmp_path / f"obs{collection}{i}.tif", seed=i, datetime_tag=tag)
        out.append(wh.ingest(str(path), collection))
    return out


def data_files(wh: Warehouse, collection: str = "c") -> int:
    return len(list(wh.collection(collection).table().scan().plan_files()))


def tile_path(collection: str, z: int = 13) -> str:
    """The WebMercator tile over the centre of ``BOUNDS``."""
    import morecantile

    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(
        (BOUNDS[0] + BOUNDS[2]) / 2, (BOUNDS[1] + BOUNDS[3]) / 2
    )
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, z)
    return f"/collections/{collection}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.npy"


def npy_tile(client, url: str) -> np.ndarray:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


def views(wh: Warehouse, collection: str = "c") -> dict:
    """Everything a reader can observe: history, head items, and the window read at every snapshot."""
    coll = wh.collection(collection)
    history = [s.snapshot_id for s in coll.snapshots() if s.item_id]
    reads = {}
    for snap in [None, *history]:
        out = coll.read(BOUNDS, CRS, 64, 64, snapshot_id=snap, pixel_selection="first")
        reads[snap] = (out.items, out.data.filled(0).copy(), np.ma.getmaskarray(out.data).copy())
    items = sorted((it.item_id, it.bbox, it.levels, it.snapshot.snapshot_id) for it in coll.index().items)
    return {"history": history, "items": items, "reads": reads}


def assert_same_views(a: dict, b: dict) -> None:
    assert a["history"] == b["history"] and a["items"] == b["items"]
    assert a["reads"].keys() == b["reads"].keys()
    for key, (items, data, mask) in a["reads"].items():
        items2, data2, mask2 = b["reads"][key]
        assert items == items2, key
        np.testing.assert_array_equal(data, data2)
        np.testing.assert_array_equal(mask, mask2)


def set_props(wh: Warehouse, collection: str = "c", **props: str) -> None:
    with wh.collection(collection).table().transaction() as tx:
        tx.set_properties(props)


# -- compact ----------------------------------------------------------------------------------------------------------
def test_compact_changes_no_item_tile_or_time_travel(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    wh = Warehouse(str(tmp_path / "wh"))
    series(wh, tmp_path, ["2021-03-01"])
    set_props(wh, **{cat.COMPACT_MIN_FILES_PROPERTY: "0", cat.RETAIN_PROPERTY: "2", cat.EXPIRE_BATCH_PROPERTY: "1"})
    # two partitions (months); the oldest snapshots expire into the item log
    series(wh, tmp_path, ["2021-03-02", "2021-03-03", "2021-03-04", "2021-04-01", "2021-04-02"])
    before_files = data_files(wh)
    assert before_files == 6
    before = views(Warehouse(str(tmp_path / "wh")))
    with TestClient(create_app(str(tmp_path / "wh"), refresh_interval=0.0)) as client:  # a running server
        pins = [None, *before["history"]]
        urls = [tile_path("c") + (f"?snapshot_id={s}" if s else "") for s in pins]
        tiles = [npy_tile(client, u) for u in urls]

        report = json.loads(cli_ok("compact", tmp_path / "wh", "--collection", "c", "--json").stdout)
        assert report["files_before"] == 6 and report["files_after"] == 2  # one sorted file per month
        assert report["snapshot_id"] is not None

        for url, tile in zip(
            urls, tiles, strict=True
        ):  # the server picked up the new files: the same tiles, byte for byte
            np.testing.assert_array_equal(npy_tile(client, url), tile)
    fresh = Warehouse(str(tmp_path / "wh"))
    assert data_files(fresh) == 2
    assert_same_views(before, views(fresh))
    # the index plans the head's files itself, skipping the compaction's manifest of only DELETED entries: the
    # same rows as pyiceberg's scan
    table = fresh.collection("c").table()
    head = table.current_snapshot()
    assert head is not None
    assert any(not (m.has_added_files() or m.has_existing_files()) for m in head.manifests(table.io))
    order = [("item_id", "ascending"), ("level", "ascending"), ("batch_index", "ascending")]
    rows = cat.CollectionTable.of(table).rows(table).sort_by(order)
    assert rows.num_rows and rows.equals(table.scan().to_arrow().cast(cat.ARROW_SCHEMA).sort_by(order))
    # compacting again has nothing to do and commits nothing
    snaps = len(fresh.collection("c").snapshots())
    assert fresh.collection("c").compact().snapshot_id is None
    assert len(fresh.collection("c").snapshots()) == snaps
    # once the pre-compaction snapshots expire, the replaced data files are garbage for gc; nothing it removes is
    # needed by any read
    assert cat.expire_snapshots(fresh.collection("c").table(), retain=1, batch=0) > 0
    orphans = [f.path for f in fresh.gc(older_than=dt.timedelta(0), dry_run=True).orphans]
    assert sum(p.startswith("iceberg/c/data/") for p in orphans) == 6
    fresh.gc(older_than=dt.timedelta(0))
    assert_same_views(before, views(Warehouse(str(tmp_path / "wh"))))


def test_compaction_runs_automatically_past_the_threshold(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path / "wh"))
    series(wh, tmp_path, ["2021-03-01"])
    set_props(wh, **{cat.COMPACT_MIN_FILES_PROPERTY: "4"})
    results = series(wh, tmp_path, ["2021-03-02", "2021-03-03", "2021-03-04"])
    assert data_files(wh) == 1  # the 4th file triggered a compaction inside that ingest
    assert sorted(it.item_id for it in Warehouse(str(tmp_path / "wh")).collection("c").index().items) == sorted(
        [wh.collection("c").snapshots()[0].item_id, *(r.item_id for r in results)]
    )
    series(wh, tmp_path, ["2021-03-05", "2021-03-06"], collection="c")
    assert data_files(wh) == 3  # counted from the last compaction, not from the table's creation


# -- delete -----------------------------------------------------------------------------------------------------------
def test_delete_hides_the_item_at_the_head_only(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    wh = Warehouse(str(tmp_path / "wh"))
    first, second, third = series(wh, tmp_path, ["2021-03-01", "2021-03-02", "2021-03-03"])
    with TestClient(create_app(str(tmp_path / "wh"), refresh_interval=0.0)) as client:
        pinned_url = tile_path("c") + f"?snapshot_id={third.snapshot_id}"
        pinned = npy_tile(client, pinned_url)
        assert client.get(f"/stac/collections/c/items/{third.item_id}").status_code == 200

        out = json.loads(
            cli_ok("delete", tmp_path / "wh", "--collection", "c", "--item", third.item_id, "--json").stdout
        )
        assert out["item_id"] == third.item_id

        assert client.get(f"/stac/collections/c/items/{third.item_id}").status_code == 404
        found = client.get("/stac/search", params={"collections": "c"}).json()["features"]
        assert sorted(f["id"] for f in found) == sorted([first.item_id, second.item_id])
        assert client.get(f"/collections/c/items/{third.item_id}/info").status_code == 404
        np.testing.assert_array_equal(npy_tile(client, pinned_url), pinned)  # the pin still shows it
    fresh = Warehouse(str(tmp_path / "wh"))
    coll = fresh.collection("c")
    assert coll.read(BOUNDS, CRS, 64, 64).items == [second.item_id]
    assert coll.read(BOUNDS, CRS, 64, 64, snapshot_id=third.snapshot_id).items == [third.item_id]
    with rasterio.open(tmp_path / "obsc2.tif") as src:
        np.testing.assert_array_equal(
            coll.read(BOUNDS, CRS, 64, 64, snapshot_id=third.snapshot_id).data.filled(0), src.read()
        )
    history = coll.snapshots()
    assert [s.item_id for s in history] == [first.item_id, second.item_id, third.item_id, None]
    assert history[-1].properties["deleted_item"] == third.item_id
    listed = json.loads(cli_ok("snapshots", tmp_path / "wh", "--collection", "c", "--json").stdout)
    assert [(s["kind"], s["item_id"]) for s in listed] == [
        ("item", first.item_id),
        ("item", second.item_id),
        ("item", third.item_id),
        ("delete", third.item_id),
    ]
    # its chunk files are still referenced (time travel reads them)
    assert not [f for f in fresh.gc(older_than=dt.timedelta(0), dry_run=True).orphans if f.path.startswith("chunks/")]


def test_deleted_item_survives_expiry_and_compaction(tmp_path: Path) -> None:
    """Time travel to before a delete still reads the item once the Iceberg files that held it are gone."""
    wh = Warehouse(str(tmp_path / "wh"))
    results = series(wh, tmp_path, ["2021-03-01", "2021-03-02"])
    set_props(wh, **{cat.COMPACT_MIN_FILES_PROPERTY: "0", cat.RETAIN_PROPERTY: "1", cat.EXPIRE_BATCH_PROPERTY: "0"})
    server = Warehouse(str(tmp_path / "wh"), refresh_interval=0)
    assert len(server.collection("c").index().items) == 2
    wh.delete("c", results[0].item_id)
    assert [it.item_id for it in server.collection("c").index().items] == [results[1].item_id]  # incremental refresh
    results += series(wh, tmp_path, ["2021-03-03", "2021-03-04"])  # expires the delete and what it deleted
    wh.compact("c")
    wh.gc(older_than=dt.timedelta(0))  # removes the expired snapshots' Iceberg files
    table = wh.collection("c").table()
    assert table.snapshot_by_id(results[0].snapshot_id) is None
    for reader in (server, Warehouse(str(tmp_path / "wh"))):
        coll = reader.collection("c")
        assert coll.read(BOUNDS, CRS, 64, 64, snapshot_id=results[1].snapshot_id, pixel_selection="count").items == [
            results[1].item_id,
            results[0].item_id,
        ]
        assert results[0].item_id not in [it.item_id for it in coll.index().items]
    with rasterio.open(tmp_path / "obsc0.tif") as src:
        out = (
            Warehouse(str(tmp_path / "wh"))
            .collection("c")
            .read(BOUNDS, CRS, 64, 64, snapshot_id=results[0].snapshot_id)
        )
        np.testing.assert_array_equal(out.data.filled(0), src.read())


def test_delete_of_unknown_item_or_collection_commits_nothing(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path / "wh"))
    series(wh, tmp_path, ["2021-03-01"])
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "wh").rglob("*") if p.is_file())
    snaps = [s.snapshot_id for s in wh.collection("c").snapshots()]
    for args in (
        ("--collection", "c", "--item", "nope"),
        ("--collection", "nope", "--item", "x"),
        ("--collection", "../evil", "--item", "x"),
    ):
        proc = run_cli("delete", tmp_path / "wh", *args)
        assert proc.returncode != 0 and proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "not found" in proc.stderr
    proc = run_cli("compact", tmp_path / "nowhere", "--collection", "c")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nowhere").exists()
    assert [s.snapshot_id for s in Warehouse(str(tmp_path / "wh")).collection("c").snapshots()] == snaps
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "wh").rglob("*") if p.is_file())
    assert after == before


# -- SIGKILL during a maintenance commit, then gc ----------------------------------------------------------------------
#: a CLI run that SIGKILLs itself right after the catalog wrote the new metadata file, before the catalog row
#: points at it: every file of the commit exists, nothing references it
KILL_AT_COMMIT = textwrap.dedent(
    """
    import os, signal, sys
    from pyiceberg.catalog import MetastoreCatalog
    original = MetastoreCatalog._write_metadata

    def write_then_die(*args, **kwargs):
        original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    MetastoreCatalog._write_metadata = staticmethod(write_then_die)
    from pixelquery_tiler.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "catalog.db"}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("command", ["compact", "delete"])
def test_sigkill_during_maintenance_leaves_table_unchanged_and_gc_cleans(tmp_path: Path, command: str) -> None:
    wh = Warehouse(str(tmp_path / "wh"))
    results = series(wh, tmp_path, ["2021-03-01", "2021-03-02", "2021-03-03"])
    set_props(wh, **{cat.COMPACT_MIN_FILES_PROPERTY: "0"})
    before = views(Warehouse(str(tmp_path / "wh")))
    files_before = files_under(tmp_path / "wh")
    extra = ["--item", results[1].item_id] if command == "delete" else []
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AT_COMMIT, command, str(tmp_path / "wh"), "--collection", "c", *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = files_under(tmp_path / "wh") - files_before
    assert any(p.endswith(".metadata.json") for p in left) and any(p.endswith(".avro") for p in left)
    if command == "compact":
        assert any(p.startswith("iceberg/c/data/") for p in left)  # the rewritten data file
    else:
        assert any(p.startswith(f"iceberg/c/{cat.ITEM_LOG_DIR}/deleted-") for p in left)

    assert_same_views(before, views(Warehouse(str(tmp_path / "wh"))))  # readable and unchanged
    assert not [f for f in wh.gc(dry_run=True).orphans]  # within the grace period: kept
    listed = run_cli("gc", tmp_path / "wh", "--dry-run", "--older-than", "0s").stdout
    assert {line.split("\t")[1] for line in listed.splitlines()} == left
    assert files_under(tmp_path / "wh") == files_before | left  # dry run deleted nothing
    cli_ok("gc", tmp_path / "wh", "--older-than", "0s")
    assert files_under(tmp_path / "wh") == files_before
    assert_same_views(before, views(Warehouse(str(tmp_path / "wh"))))
    # and the interrupted operation works when run again
    cli_ok(command, tmp_path / "wh", "--collection", "c", *extra)


def test_delete_after_compaction_rewrites_the_shared_file(tmp_path: Path) -> None:
    """Once items share a data file, a delete rewrites it without the item's rows (copy-on-write)."""
    wh = Warehouse(str(tmp_path / "wh"))
    results = series(wh, tmp_path, ["2021-03-01", "2021-03-02", "2021-03-03"])
    wh.collection("c").compact()
    assert data_files(wh) == 1
    before = views(Warehouse(str(tmp_path / "wh")))
    wh.collection("c").delete(results[1].item_id)
    assert data_files(wh) == 1
    after = views(Warehouse(str(tmp_path / "wh")))
    assert [i[0] for i in after["items"]] == sorted([results[0].item_id, results[2].item_id])
    for snap in before["history"]:  # every earlier snapshot reads exactly as before
        assert after["reads"][snap][0] == before["reads"][snap][0]
        np.testing.assert_array_equal(after["reads"][snap][1], before["reads"][snap][1])
    assert after["reads"][None][0] == [results[2].item_id]
