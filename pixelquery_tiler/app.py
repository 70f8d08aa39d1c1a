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
    _add_catalog_unavailable(app)
    add_tiles(app, wh)
    add_stac_api(app, wh)
    add_viewer(app, wh)
    return app


def _add_catalog_unavailable(app: FastAPI) -> None:
    """A catalog server that is down (PostgreSQL, REST) makes every request that needs it a 503 with
    ``Retry-After``, so a proxy tries another replica and the replica recovers by itself when it is back."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from .catalog import unavailable_errors

    def unavailable(request: Request, exc: Exception) -> JSONResponse:
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return JSONResponse({"detail": f"catalog unavailable: {text}"}, status_code=503,
                            headers={"Retry-After": "1", "Cache-Control": "no-store"})

    for exc_type in unavailable_errors():
        app.add_exception_handler(exc_type, unavailable)


def app_from_env() -> FastAPI:
    """uvicorn factory for ``pixelquery-tiler serve`` (workers re-create the app from the environment)."""
    return create_app(
        os.environ[WAREHOUSE_ENV], catalog_uri=os.environ.get("PIXELQUERY_CATALOG_URI"),
        refresh_interval=float(os.environ.get("PIXELQUERY_REFRESH_INTERVAL", "1")),
    )
