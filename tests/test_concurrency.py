"""Concurrent ingest: several processes committing to one collection lose nothing (optimistic concurrency)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pixelquery_tiler import Warehouse
from pixelquery_tiler import catalog as cat
from warehouse_fixtures import ingest_json, write_geotiff

PROCESSES, FILES_EACH = 4, 5


def make_files(root: Path) -> list[list[Path]]:
    """Per process, small GeoTIFFs with distinct datetimes (TIFF tags) and distinct pixels."""
    batches = []
    for p in range(PROCESSES):
        batch = []
        for f in range(FILES_EACH):
            n = p * FILES_EACH + f
            batch.append(
                write_geotiff(
                    root / f"p{p}_f{f}.tif", width=40, height=30, seed=n, datetime_tag=f"2022:01:{n + 1:02d} 12:00:00"
                )
            )
        batches.append(batch)
    return batches


def race(warehouse: Path, batches: list[list[Path]]) -> list[dict]:
    """Start one ``ingest`` process per batch at once; all must succeed."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pixelquery_tiler",
                "ingest",
                str(warehouse),
                *map(str, batch),
                "--collection",
                "c",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for batch in batches
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        results += json.loads(out)
    return results


def assert_all_readable(warehouse: Path, results: list[dict], root: Path) -> None:
    collection = Warehouse(str(warehouse)).collection("c")
    by_source = {r["source"]: r for r in results}
    for source, result in by_source.items():
        with rasterio.open(root / source) as src:
            out = collection.read(
                tuple(src.bounds), src.crs.to_string(), src.width, src.height, item_id=result["item_id"]
            )
            np.testing.assert_array_equal(out.data.filled(0), src.read())


def test_four_processes_five_files_each(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh"
    results = race(warehouse, make_files(tmp_path))  # the processes also race to create the collection
    assert len(results) == PROCESSES * FILES_EACH
    snaps = Warehouse(str(warehouse)).collection("c").snapshots()
    assert len(snaps) == PROCESSES * FILES_EACH
    assert {s.snapshot_id for s in snaps} == {r["snapshot_id"] for r in results}
    assert {s.item_id for s in snaps} == {r["item_id"] for r in results}
    # one linear history: every snapshot's parent is the one before it
    assert [s.parent_id for s in snaps[1:]] == [s.snapshot_id for s in snaps[:-1]]
    assert len(Warehouse(str(warehouse)).collection("c").index().items) == PROCESSES * FILES_EACH
    assert_all_readable(warehouse, results, tmp_path)


def test_concurrent_ingest_with_snapshot_expiry(tmp_path: Path) -> None:
    """Expiry commits racing with appends lose neither snapshots nor item-log entries."""
    warehouse = tmp_path / "wh"
    seed = ingest_json(warehouse, [write_geotiff(tmp_path / "seed.tif", datetime_tag="2021:12:31 00:00:00")], "c")
    table = Warehouse(str(warehouse)).collection("c").table()
    with table.transaction() as tx:
        tx.set_properties({cat.RETAIN_PROPERTY: "3", cat.EXPIRE_BATCH_PROPERTY: "2"})
    results = seed + race(warehouse, make_files(tmp_path))
    collection = Warehouse(str(warehouse)).collection("c")
    live = collection.table().metadata.snapshots
    assert len(live) < len(results), "expiry never ran"
    snaps = collection.snapshots()
    assert [s.snapshot_id for s in snaps] == sorted(
        {s.snapshot_id for s in snaps}, key=[s.snapshot_id for s in snaps].index
    )
    assert {s.item_id for s in snaps} == {r["item_id"] for r in results}
    assert len(collection.index().items) == len(results)
    assert_all_readable(warehouse, results[1:], tmp_path)


@pytest.fixture(autouse=True)
def _quiet_numpy() -> None:
    np.seterr(all="ignore")


def test_ingest_jobs_runs_files_in_worker_processes(tmp_path: Path) -> None:
    """``ingest --jobs 2``: parallel workers, one snapshot per file, JSON in input order, stderr clean."""
    files = [
        write_geotiff(
            tmp_path / f"j{i}.tif", width=40, height=30, seed=50 + i, datetime_tag=f"2023:02:{i + 1:02d} 08:00:00"
        )
        for i in range(4)
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pixelquery_tiler",
            "ingest",
            str(tmp_path / "wh"),
            *map(str, files),
            "--collection",
            "c",
            "--json",
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "pixelquery-tiler: created new collection 'c'\n"  # the only line: no worker noise
    results = json.loads(proc.stdout)
    assert [r["source"] for r in results] == [f.name for f in files]
    snaps = Warehouse(str(tmp_path / "wh")).collection("c").snapshots()
    assert {s.item_id for s in snaps} == {r["item_id"] for r in results} and len(snaps) == 4
    assert_all_readable(tmp_path / "wh", results, tmp_path)


def test_concurrent_ingest_with_delete_and_compaction(tmp_path: Path) -> None:
    """Deletes and compactions (manual and automatic) racing with appends lose no item and resurrect none."""
    warehouse = tmp_path / "wh"
    seeds = [
        write_geotiff(tmp_path / f"seed{i}.tif", seed=90 + i, datetime_tag=f"2021:12:{i + 1:02d} 00:00:00")
        for i in range(3)
    ]
    seeded = ingest_json(warehouse, seeds, "c")
    table = Warehouse(str(warehouse)).collection("c").table()
    with table.transaction() as tx:
        tx.set_properties({cat.COMPACT_MIN_FILES_PROPERTY: "3"})
    maintenance = [
        subprocess.Popen(
            [sys.executable, "-m", "pixelquery_tiler", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for args in (
            ["delete", str(warehouse), "--collection", "c", "--item", seeded[1]["item_id"]],
            ["compact", str(warehouse), "--collection", "c"],
        )
    ]
    results = race(warehouse, make_files(tmp_path))
    for proc in maintenance:
        _out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    collection = Warehouse(str(warehouse)).collection("c")
    kept = [seeded[0], seeded[2], *results]
    assert sorted(it.item_id for it in collection.index().items) == sorted(r["item_id"] for r in kept)
    assert {s.item_id for s in collection.snapshots() if s.item_id} == {r["item_id"] for r in [*seeded, *results]}
    assert len(list(collection.table().scan().plan_files())) < len(kept)  # compaction ran
    assert_all_readable(warehouse, kept, tmp_path)
