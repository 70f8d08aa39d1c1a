"""``pin_gdal_data_dirs``: rasterio's own data directories go into the environment once, at app creation, so
titiler's per-request ``rasterio.Env`` does not search the file system for them; values already set stay."""

from __future__ import annotations

import os

import pytest
import rasterio
from rasterio.env import GDALDataFinder, PROJDataFinder

from pixelquery_tiler.app import pin_gdal_data_dirs


@pytest.fixture
def unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GDAL_DATA", "PROJ_DATA", "PROJ_LIB"):
        monkeypatch.delenv(name, raising=False)


def test_unset_dirs_are_pinned_to_rasterios_own(unset: None) -> None:
    gdal_data, proj_data = GDALDataFinder().search_wheel(), PROJDataFinder().search_wheel()
    if not (gdal_data and proj_data):
        pytest.skip("rasterio without bundled GDAL/PROJ data: nothing to pin")
    pin_gdal_data_dirs()
    assert os.environ["GDAL_DATA"] == gdal_data
    assert os.environ["PROJ_DATA"] == proj_data
    with rasterio.Env():  # GDAL and PROJ still find their data: a reprojection needs proj.db
        assert rasterio.crs.CRS.from_epsg(32721).to_epsg() == 32721


def test_values_already_set_are_kept(unset: None, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("GDAL_DATA", str(tmp_path))
    monkeypatch.setenv("PROJ_LIB", str(tmp_path))
    pin_gdal_data_dirs()
    assert os.environ["GDAL_DATA"] == str(tmp_path)
    assert "PROJ_DATA" not in os.environ
