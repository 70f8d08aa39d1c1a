"""Shared fixtures and helpers for the warehouse-engine tests (ingest, CLI, concurrency, crash/gc).

Imported by ``conftest.py``; everything here works on real files: the shared rasters (``testdata.py``), small
GeoTIFFs written with rasterio, a real SQLite Iceberg catalog, and the CLI run as a subprocess exactly as a user
runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from testdata import ACQUIRED, DATA_DIR, shared_rasters


def collection_for(path: Path) -> str:
    """One collection per shared raster, named after the file, so a read returns that file only."""
    return path.stem.lower().replace(".", "-")[:60]


def run_cli(
    *args: str | os.PathLike, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m pixelquery_tiler ARGS`` in a subprocess (text output captured)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pixelquery_tiler", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def cli_ok(*args: str | os.PathLike, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the CLI and fail the test with its stderr if it exits non-zero."""
    proc = run_cli(*args, env=env)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}: {proc.stderr}"
    return proc


def ingest_json(warehouse: Path, files: Sequence[Path], collection: str, *extra: str) -> list[dict]:
    proc = cli_ok("ingest", warehouse, *files, "--collection", collection, "--json", *extra)
    return json.loads(proc.stdout)


def snapshot_ids(warehouse: Path, collection: str) -> list[int]:
    """Snapshot ids via the CLI (``[]`` when the collection does not exist)."""
    proc = run_cli("snapshots", warehouse, "--collection", collection, "--json")
    if proc.returncode != 0:
        return []
    return [s["snapshot_id"] for s in json.loads(proc.stdout)]


def write_geotiff(
    path: Path,
    *,
    width: int = 64,
    height: int = 64,
    count: int = 1,
    crs: str | None = "EPSG:32621",
    transform: Affine | None = Affine(30, 0, 700005, 0, -30, -2780025),
    dtype: str = "uint16",
    nodata: float | None = None,
    datetime_tag: str | None = None,
    seed: int = 0,
) -> Path:
    """A small real GeoTIFF written with rasterio; ``crs=None, transform=None`` gives an ungeoreferenced one."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    high = min(info.max, 10000) if info else 1.0
    data = (rng.random((count, height, width)) * high).astype(dtype)
    if nodata is not None:
        data[:, : height // 4, : width // 4] = nodata
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=dtype)
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # ungeoreferenced on purpose
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            if datetime_tag:
                dst.update_tags(TIFFTAG_DATETIME=datetime_tag)
    return path


def nodata_collision_pair(root: Path, height: int, width: int, hole: tuple[slice, slice]):
    """Two int16 items (nodata -1, EPSG:4326 at 0.0001 deg) whose level-1 averages collide with nodata, and the bbox
    of a 1024 px output at level 1 (2 x 0.0001 deg) centred on them: ``(collection, bbox)``.

    The older item's band 0 is a -2/0 checkerboard, so every level-1 average is a valid -1; its band 1 is nodata
    on the left half and 500 on the right. The newer item is 700 except a nodata ``hole`` (rows, columns); a hole
    across the middle column shows older pixels of both kinds through it. Pick ``width`` > 512 px so the items
    have a level 1 (``grid.overview_count``).
    """
    from pixelquery_tiler import Warehouse

    res = 0.0001
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 2, "dtype": "int16", "nodata": -1}
    checker = (np.indices((height, width)).sum(axis=0) % 2) == 0
    older = np.where(checker, -2, 0).astype(np.int16)[None].repeat(2, axis=0)
    older[1, :, : width // 2], older[1, :, width // 2 :] = -1, 500
    newer = np.full((2, height, width), 700, np.int16)
    newer[:, hole[0], hole[1]] = -1
    wh = Warehouse(str(root / "wh"))
    for name, data, when in (("older", older, "2020-01-01"), ("newer", newer, "2020-02-01")):
        path = root / f"{name}.tif"
        with rasterio.open(path, "w", crs="EPSG:4326", transform=Affine(res, 0, 10, 0, -res, 1), **profile) as dst:
            dst.write(data)
        wh.ingest(str(path), "c", product="generic", datetime=f"{when}T00:00:00Z")
    half, cx, cy = 1024 * res, 10 + width * res / 2, 1 - height * res / 2
    return wh.collection("c"), (cx - half, cy - half, cx + half, cy + half)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not shared_rasters():
        pytest.skip(f"no shared rasters in {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def ingested_warehouse(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, dict[str, dict]]:
    """A warehouse holding every shared raster, ingested with the CLI: ``(path, {file name: ingest json})``."""
    warehouse = tmp_path_factory.mktemp("shared-warehouse")
    results = {}
    for raster in shared_rasters():
        extra = ["--datetime", ACQUIRED[raster.name]] if raster.name in ACQUIRED else []
        [result] = ingest_json(warehouse, [raster], collection_for(raster), *extra)
        results[raster.name] = result
    return warehouse, results


@pytest.fixture(scope="session")
def landsat_pair(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, list[dict]]:
    """The 30 m + 60 m Landsat 8 pair in one collection ``pair`` (datetimes from the file names)."""
    warehouse = tmp_path_factory.mktemp("pair-warehouse")
    files = [shared_data / "gw_LC08_224077_20200518_B2_30m.tif", shared_data / "gw_LC08_224077_20200518_B2_60m.tif"]
    return warehouse, ingest_json(warehouse, files, "pair")
