"""The FastAPI application: tiles (titiler.core), STAC API (stac-fastapi) and viewer on one app.

Each concern registers itself from its own module; this module only composes them, so the routers stay
thin and the error mapping lives in one place (``errors``).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from .warehouse import Warehouse

WAREHOUSE_ENV = "PIXELQUERY_WAREHOUSE"


def create_app(warehouse: str | Warehouse, *, catalog_uri: str | None = None, refresh_interval: float = 1.0) -> FastAPI:
    """Serve ``warehouse`` (a URI or an open ``Warehouse``)."""
    from .stac_api import add_stac_api
    from .tiles import add_tiles
    from .viewer import add_viewer

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse, catalog_uri=catalog_uri, refresh_interval=refresh_interval)
    app = FastAPI(title="pixelquery-tiler", description="XYZ/WMTS tiles and a STAC API over a PixelQuery warehouse", docs_url="/api.html", openapi_url="/api")
    app.state.warehouse = wh
    add_tiles(app, wh)
    add_stac_api(app, wh)
    add_viewer(app, wh)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for ``pixelquery-tiler serve`` (workers re-create the app from the environment)."""
    return create_app(
        os.environ[WAREHOUSE_ENV], catalog_uri=os.environ.get("PIXELQUERY_CATALOG_URI"),
        refresh_interval=float(os.environ.get("PIXELQUERY_REFRESH_INTERVAL", "1")),
    )
