"""The map viewer: one static page (Leaflet) over the public HTTP API.

The page talks only to the endpoints any client sees (``stac/...`` for collections, items, search and
snapshots; ``collections/{cid}/tiles/...`` for pixels), always through *relative* URLs, so it works behind a
path prefix or a reverse proxy unchanged.

Leaflet is a declared runtime dependency (PyPI ``django-js-lib-leaflet``: Leaflet 1.9.4 as plain static files,
no Django requirement, nothing imported from it): it is never copied into this repository and never loaded
from a CDN, so the viewer works offline.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

from .warehouse import Warehouse

STATIC_DIR = Path(__file__).parent / "static"
VIEWER_HTML = STATIC_DIR / "viewer" / "index.html"
LEAFLET_PACKAGE = "js_lib_leaflet"


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
        raise RuntimeError("the viewer needs Leaflet from the 'django-js-lib-leaflet' package: pip install django-js-lib-leaflet")

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
