"""The pixelquery STAC extension's JSON Schema, served by the server that names it.

The schema's identifier used to be a URL nobody published, so pystac and stac-api-validator failed on every
item and collection. The server now answers ``/stac/extensions/pixelquery/v1.0.0/schema.json`` itself, and
documents declare exactly that URL (under whatever root the client reached, proxies included), so anything
that can read the catalog can validate it. The file ships with the package; ``$id`` is set to the URL served.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse

from .documents import PIXELQUERY_EXTENSION_PATH

__all__ = ["add_extension_schema", "load_schema"]


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The extension's JSON Schema as shipped (its ``$id`` names the default local server)."""
    path = resources.files(__package__) / "schemas" / "pixelquery" / "v1.0.0" / "schema.json"
    return json.loads(path.read_text(encoding="utf-8"))


class SchemaResponse(JSONResponse):
    """JSON served as ``application/schema+json``, the media type JSON Schema validators expect."""

    media_type = "application/schema+json"


def add_extension_schema(app: FastAPI, prefix: str) -> None:
    """``GET {prefix}/extensions/pixelquery/v1.0.0/schema.json``: the schema, ``$id`` = the URL requested."""

    def extension_schema(request: Request) -> SchemaResponse:
        return SchemaResponse(
            {**load_schema(), "$id": str(request.url.replace(query=""))},
            headers={"Cache-Control": "public, max-age=3600"},
        )

    app.add_api_route(
        f"{prefix}/{PIXELQUERY_EXTENSION_PATH}",
        extension_schema,
        methods=["GET"],
        tags=["STAC"],
        summary="JSON Schema of the pixelquery STAC extension",
        response_class=SchemaResponse,
        responses={200: {"content": {"application/schema+json": {"schema": {"type": "object"}}}}},
    )
