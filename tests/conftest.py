"""Shared pytest fixtures. Each block below belongs to one area; add yours in its own block."""

# --- warehouse engine (ingest, CLI, concurrency, crash/gc): fixtures live in tests/warehouse_fixtures.py ---
from warehouse_fixtures import ingested_warehouse, landsat_pair, shared_data  # noqa: F401

# --- end warehouse engine ---
# isort: split

# --- STAC API: fixtures live in tests/stac_fixtures.py ---
from stac_fixtures import offline_stac_validation, stac_data_dir, stac_server, stac_warehouse  # noqa: F401

# --- end STAC API ---
# isort: split

# --- tile serving (reader, tile HTTP, WMTS): fixtures below ---
from dataclasses import dataclass as _dataclass
from pathlib import Path as _Path

import pytest as _pytest

from servers import ServerThread as _ServerThread
from testdata import ACQUIRED as _ACQUIRED
from testdata import DATA_DIR as TILE_DATA_DIR

#: the multi-resolution pair on different dates: 30 m first (snapshot 1), 60 m later (snapshot 2, newest)
PAIR = (("gw_LC08_224077_20200518_B2_30m.tif", "2020-05-18"), ("gw_LC08_224077_20200518_B2_60m.tif", "2020-06-03"))


@_dataclass(frozen=True)
class TileWarehouse:
    """A warehouse for the tile tests, ingested in-process once per session.

    ``single``: shared file name -> collection holding only that file; ``pair``: ingest results of the
    30 m / 60 m Landsat pair in collection ``pair``; ``rgbn``: a 4-band red/green/blue/nir GeoTIFF made from
    the Landsat 7 Olinda file, in collection ``rgbn``.
    """

    uri: str
    single: dict[str, str]
    pair: list
    rgbn: _Path


@_pytest.fixture(scope="session")
def tile_warehouse(tmp_path_factory: _pytest.TempPathFactory) -> TileWarehouse:
    import rasterio

    from pixelquery_tiler import Warehouse

    sources = sorted(TILE_DATA_DIR.glob("*.tif"))
    if not sources:
        _pytest.skip(f"no shared rasters in {TILE_DATA_DIR}")
    root = tmp_path_factory.mktemp("tile-warehouse")
    wh = Warehouse(str(root / "wh"))
    single = {}
    for src in sources:
        collection = "single-" + src.stem.lower().replace("_", "-")[:50]
        wh.ingest(str(src), collection, datetime=_ACQUIRED.get(src.name))  # the Landsat names carry their date
        single[src.name] = collection
    pair = [wh.ingest(str(TILE_DATA_DIR / name), "pair", datetime=when) for name, when in PAIR]
    rgbn = root / "olinda_rgbn.tif"
    rgbn_source = TILE_DATA_DIR / "stars_L7_ETMs_olinda_28m.tif"
    with rasterio.open(rgbn_source) as ds:  # bands: blue green red nir swir16 swir22
        profile = ds.profile | {"count": 4, "driver": "GTiff", "photometric": "MINISBLACK"}  # no alpha band
        with rasterio.open(rgbn, "w", **profile) as out:
            out.write(ds.read([3, 2, 1, 4]))
    wh.ingest(str(rgbn), "rgbn", datetime=_ACQUIRED[rgbn_source.name], bands=["red", "green", "blue", "nir"])
    return TileWarehouse(str(root / "wh"), single, pair, rgbn)


@_pytest.fixture(scope="session")
def tile_client(tile_warehouse: TileWarehouse):
    """In-process client on the full app (``create_app``)."""
    from fastapi.testclient import TestClient

    from pixelquery_tiler import create_app

    with TestClient(create_app(tile_warehouse.uri, refresh_interval=0.0)) as client:
        yield client


@_pytest.fixture(scope="session")
def live_server(tile_warehouse: TileWarehouse):
    """The full app served by uvicorn on a free loopback port (real HTTP); yields its base URL."""
    from pixelquery_tiler import create_app

    with _ServerThread(create_app(tile_warehouse.uri, refresh_interval=0.0)) as server:
        yield server.url


# --- end tile serving ---
