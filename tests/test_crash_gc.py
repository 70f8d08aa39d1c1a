"""Crash safety: an ingest killed with SIGKILL before its commit leaves the catalog unchanged and only
unreferenced chunk files, which ``gc`` lists and removes (after the grace period) without touching data."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pixelquery_tiler import Warehouse
from pixelquery_tiler.grid import overview_count
from warehouse_fixtures import cli_ok, ingest_json, write_geotiff

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

#: the command line with every catalog commit held back N seconds (see tests/paused_commit.py)
PAUSED_CLI = [sys.executable, str(Path(__file__).with_name("paused_commit.py"))]


def chunk_files(warehouse: Path) -> set[str]:
    root = warehouse / "chunks"
    return {str(p.relative_to(warehouse)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def gc_listing(warehouse: Path, *args: str) -> set[str]:
    """Paths ``gc`` prints (``would delete``/``deleted`` lines on stdout)."""
    out = cli_ok("gc", warehouse, *args).stdout
    return {line.split("\t")[1] for line in out.splitlines() if line.strip()}


def state(warehouse: Path) -> tuple[list[int], int]:
    collection = Warehouse(str(warehouse)).collection("c")
    return [s.snapshot_id for s in collection.snapshots()], len(collection.index())


def test_sigkill_before_commit_leaves_only_orphans_for_gc(tmp_path: Path, shared_data: Path) -> None:
    warehouse = tmp_path / "wh"
    kept = write_geotiff(tmp_path / "kept.tif", datetime_tag="2020:01:01 00:00:00")
    [committed] = ingest_json(warehouse, [kept], "c")
    referenced = chunk_files(warehouse)
    before = state(warehouse)

    victim = shared_data / "stars_L7_ETMs_olinda_28m.tif"
    with rasterio.open(victim) as src:
        expected_files = 1 + overview_count(src.width, src.height)  # one file per level
    proc = subprocess.Popen(
        [
            *PAUSED_CLI,
            "30",
            "ingest",
            str(warehouse),
            str(victim),
            "--collection",
            "c",
            "--datetime",
            "2021-01-01",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while len(chunk_files(warehouse) - referenced) < expected_files:
            assert proc.poll() is None, f"ingest ended early: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "chunk files never appeared"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    orphans = chunk_files(warehouse) - referenced
    assert len(orphans) == expected_files

    assert state(warehouse) == before, "the killed ingest changed the catalog"
    assert gc_listing(warehouse, "--dry-run") == set(), "fresh orphans must survive the default grace period"
    assert gc_listing(warehouse, "--dry-run", "--older-than", "0s") == orphans
    assert chunk_files(warehouse) == referenced | orphans, "dry run deleted something"
    assert gc_listing(warehouse) == set() and chunk_files(warehouse) == referenced | orphans  # default grace again
    assert gc_listing(warehouse, "--older-than", "0s") == orphans
    assert chunk_files(warehouse) == referenced, "gc removed a referenced file or left an orphan"

    # nothing referenced was touched: the committed item still reads back exactly
    with rasterio.open(kept) as src:
        out = (
            Warehouse(str(warehouse))
            .collection("c")
            .read(tuple(src.bounds), src.crs.to_string(), src.width, src.height)
        )
        np.testing.assert_array_equal(out.data.filled(0), src.read())
    assert out.items == [committed["item_id"]]
    assert gc_listing(warehouse, "--dry-run", "--older-than", "0s") == set()


def test_gc_keeps_files_of_an_ingest_in_flight(tmp_path: Path) -> None:
    """The grace period protects an ingest that has written its chunks and is about to commit."""
    warehouse = tmp_path / "wh"
    slow = write_geotiff(tmp_path / "slow.tif", datetime_tag="2020:01:01 00:00:00")
    proc = subprocess.Popen(
        [*PAUSED_CLI, "4", "ingest", str(warehouse), str(slow), "--collection", "c", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not chunk_files(warehouse):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    assert gc_listing(warehouse, "--older-than", "1h") == set()
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert gc_listing(warehouse, "--dry-run", "--older-than", "0s") == set()  # now referenced
    assert len(Warehouse(str(warehouse)).collection("c").snapshots()) == 1
