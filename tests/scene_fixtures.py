"""Scenes made of real pixels: per-band files split from the shared Landsat 7 raster, named like real products.

Nothing ships a multi-file Landsat C2 or Sentinel-2 scene small enough for tests, so the bands of
``stars_L7_ETMs_olinda_28m.tif`` (real ETM+ pixels) are written one per file under the product naming
conventions; the "20 m" Sentinel-2 band is that file's band 5 averaged 2x2 (a true coarser grid over the same
area). ``serve_folder`` (from ``servers.py``) serves such files over HTTP with Range support.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from pixelquery_tiler.cli import main
from servers import free_port, serve_folder  # noqa: F401  (test_scenes imports serve_folder from here)

STARS = "stars_L7_ETMs_olinda_28m.tif"
LANDSAT_ID = "LC08_L2SP_214066_20200518_20200526_02_T1"
#: Landsat C2 band suffix -> band index in the stars file (ETM+ 1, 2, 3 = blue, green, red)
LANDSAT_BANDS = {"B2": 1, "B3": 2, "B4": 3}
S2_SCENE = "T25MGP_20200523T133239"


def _write(path: Path, data: np.ndarray, profile: dict, transform: Affine) -> Path:
    out = dict(
        profile,
        driver="GTiff",
        count=1,
        width=data.shape[1],
        height=data.shape[0],
        transform=transform,
        nodata=0,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    with rasterio.open(path, "w", **out) as dst:
        dst.write(data, 1)
    return path


def landsat_scene(folder: Path, data_dir: Path, bands: dict[str, int] = LANDSAT_BANDS) -> list[Path]:
    """Per-band Landsat C2 L2 files (``<id>_SR_B2.TIF``...), one per band of the stars raster."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(data_dir / STARS) as src:
        profile, transform = src.profile, src.transform
        return [
            _write(folder / f"{LANDSAT_ID}_SR_{suffix}.TIF", src.read(i), profile, transform)
            for suffix, i in bands.items()
        ]


def sentinel2_scene(folder: Path, data_dir: Path) -> dict[str, Path]:
    """A Sentinel-2-named scene: B04, B08 on the native grid ("10m") and B11 on a 2x coarser grid ("20m")."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(data_dir / STARS) as src:
        profile, transform = src.profile, src.transform
        red, nir, swir = src.read(3), src.read(4), src.read(5)
    h, w = swir.shape[0] // 2 * 2, swir.shape[1] // 2 * 2
    coarse = swir[:h, :w].reshape(h // 2, 2, w // 2, 2).astype(np.float64).mean(axis=(1, 3))
    coarse = np.clip(np.rint(coarse), 1, 255).astype(np.uint8)  # keep 0 as nodata only
    return {
        "red": _write(folder / f"{S2_SCENE}_B04_10m.tif", red, profile, transform),
        "nir": _write(folder / f"{S2_SCENE}_B08_10m.tif", nir, profile, transform),
        "swir16": _write(folder / f"{S2_SCENE}_B11_20m.tif", coarse, profile, transform @ Affine.scale(2)),
    }


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    return free_port()


def cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """The CLI in-process (same ``main`` as the console script): exit code, stdout, stderr."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def ingest(capsys: pytest.CaptureFixture, warehouse: Path, *args: object) -> list[dict]:
    """``ingest WAREHOUSE ARGS --json`` in-process; fails the test unless it succeeds; the JSON summary."""
    code, out, err = cli(capsys, "ingest", warehouse, *args, "--json")
    assert code == 0, err
    return json.loads(out)
