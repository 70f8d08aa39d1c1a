"""The map viewer: one static page (Leaflet) over the public HTTP API.

The page talks only to the endpoints any client sees (``stac/...`` for collections, items, search and
snapshots; ``collections/{cid}/tiles/...`` for pixels), always through *relative* URLs, so it works behind a
path prefix or a reverse proxy unchanged.

The API documentation (``/api.html``, Swagger UI) is served the same way: its scripts come from the declared
dependency ``swagger-ui-py`` (Swagger UI 5 as static files), never from a CDN.

Leaflet is a declared runtime dependency (PyPI ``django-js-lib-leaflet``: Leaflet 1.9.4 as plain static files,
no Django requirement, nothing imported from it): it is never copied into this repository and never loaded
from a CDN, so the viewer works offline.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

from .warehouse import Warehouse

STATIC_DIR = Path(__file__).parent / "static"
VIEWER_HTML = STATIC_DIR / "viewer" / "index.html"
LEAFLET_PACKAGE = "js_lib_leaflet"
SWAGGER_UI_PACKAGE = "swagger_ui"


def leaflet_dir() -> Path | None:
    """Folder with ``leaflet.js``/``leaflet.css`` from the ``django-js-lib-leaflet`` wheel (located, not imported)."""
    spec = importlib.util.find_spec(LEAFLET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "static" / LEAFLET_PACKAGE
        if (candidate / "leaflet.js").is_file():
            return candidate
    return None


def add_viewer(app: FastAPI, warehouse: Warehouse) -> None:
    """Serve the viewer at ``/`` (and ``/viewer``) plus its static files under ``/static/``."""
    leaflet = leaflet_dir()
    if leaflet is None:  # a broken install: say so instead of serving a page that cannot work
        raise RuntimeError(
            "the viewer needs Leaflet from the 'django-js-lib-leaflet' package: pip install django-js-lib-leaflet"
        )

    headers = {"Cache-Control": "no-cache"}

    @app.get("/", include_in_schema=False)
    def viewer_root() -> FileResponse:
        return FileResponse(VIEWER_HTML, media_type="text/html", headers=headers)

    @app.get("/viewer", include_in_schema=False)
    def viewer_page() -> FileResponse:
        return FileResponse(VIEWER_HTML, media_type="text/html", headers=headers)

    @app.get("/viewer/", include_in_schema=False)
    def viewer_slash() -> RedirectResponse:
        # relative, so it stays correct behind a path prefix
        return RedirectResponse("../viewer", status_code=307)

    app.mount("/static/viewer", StaticFiles(directory=STATIC_DIR / "viewer"), name="viewer-static")
    app.mount("/static/leaflet", StaticFiles(directory=leaflet), name="leaflet-static")


def swagger_ui_dir() -> Path | None:
    """Folder with ``swagger-ui-bundle.js``/``swagger-ui.css`` from the ``swagger-ui-py`` wheel.

    Located, not imported: the wheel's Python side is not needed, only its static assets.
    """
    spec = importlib.util.find_spec(SWAGGER_UI_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "static"
        if (candidate / "swagger-ui-bundle.js").is_file():
            return candidate
    return None


def add_api_docs(app: FastAPI) -> None:
    """Swagger UI for the OpenAPI document at ``/api.html``, its assets under ``/static/swagger-ui/``.

    URLs are relative (``api``, ``static/...``), so the page works behind a path prefix; the route keeps
    FastAPI's name ``swagger_ui_html`` (the STAC landing page links it as ``service-doc``).
    """
    assets = swagger_ui_dir()
    if assets is None:
        raise RuntimeError("/api.html needs Swagger UI from the 'swagger-ui-py' package: pip install swagger-ui-py")
    openapi = (app.openapi_url or "/api").lstrip("/")

    @app.get("/api.html", include_in_schema=False, name="swagger_ui_html")
    def swagger_ui_html() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi,
            title=f"{app.title} - API",
            swagger_js_url="static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="static/swagger-ui/favicon-32x32.png",
        )

    app.mount("/static/swagger-ui", StaticFiles(directory=assets), name="swagger-ui-static")
