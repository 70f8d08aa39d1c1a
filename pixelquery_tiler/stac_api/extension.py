"""The pixelquery STAC extension's JSON Schema, served by the server that names it.

The schema's identifier used to be a URL nobody published, so pystac and stac-api-validator failed on every
item and collection. The server now answers ``/stac/extensions/pixelquery/v1.0.0/schema.json`` itself, and
documents declare exactly that URL (under whatever root the client reached, proxies included), so anything
that can read the catalog can validate it. The file ships with the package; ``$id`` is set to the URL served.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse

from .documents import PIXELQUERY_EXTENSION_PATH

__all__ = ["GEOJSON_GEOMETRY_PATH", "add_extension_schema", "load_geometry_schema", "load_schema"]


#: where the server answers the GeoJSON Geometry schema (vendored, see ``schemas/geojson/NOTICE.md``), relative to
#: the STAC root: queryables reference it there instead of geojson.org, so they resolve offline and behind proxies
GEOJSON_GEOMETRY_PATH = "schemas/geojson/Geometry.json"


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The extension's JSON Schema as shipped (its ``$id`` names the default local server)."""
    path = resources.files(__package__) / "schemas" / "pixelquery" / "v1.0.0" / "schema.json"
    return json.loads(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def load_geometry_schema() -> dict[str, Any]:
    """The GeoJSON Geometry schema as published at geojson.org (a vendored copy)."""
    path = resources.files(__package__) / "schemas" / "geojson" / "Geometry.json"
    return json.loads(path.read_text(encoding="utf-8"))


class SchemaResponse(JSONResponse):
    """JSON served as ``application/schema+json``, the media type JSON Schema validators expect."""

    media_type = "application/schema+json"


def add_extension_schema(app: FastAPI, prefix: str) -> None:
    """The schemas this server's documents reference, each with ``$id`` = the URL requested.

    ``GET {prefix}/extensions/pixelquery/v1.0.0/schema.json`` (the extension) and
    ``GET {prefix}/schemas/geojson/Geometry.json`` (what the ``geometry`` queryable refers to).
    """

    def schema_endpoint(load: Callable[[], dict[str, Any]]) -> Callable[[Request], SchemaResponse]:
        def schema(request: Request) -> SchemaResponse:
            return SchemaResponse(
                {**load(), "$id": str(request.url.replace(query=""))},
                headers={"Cache-Control": "public, max-age=3600"},
            )

        return schema

    for path, load, summary in (
        (
            GEOJSON_GEOMETRY_PATH,
            load_geometry_schema,
            "JSON Schema of GeoJSON geometries (a copy of geojson.org's, for the queryables)",
        ),
        (PIXELQUERY_EXTENSION_PATH, load_schema, "JSON Schema of the pixelquery STAC extension"),
    ):
        app.add_api_route(
            f"{prefix}/{path}",
            schema_endpoint(load),
            methods=["GET"],
            tags=["STAC"],
            summary=summary,
            response_class=SchemaResponse,
            responses={200: {"content": {"application/schema+json": {"schema": {"type": "object"}}}}},
        )
