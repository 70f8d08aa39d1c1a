"""Response schemas that say what the STAC item endpoints return.

stac-fastapi declares ``ItemCollection`` (whole items: ``geometry``, ``bbox``, ``properties``... required) for
``/search`` and ``/collections/{id}/items``, but with the fields extension an item holds only what was asked
for (always ``type``, ``stac_version``, ``id``, ``collection``), so a schema-checking client (schemathesis)
rejected valid answers. These routes are re-declared with a feature schema whose other members are optional.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.utils import create_model_field
from pydantic import BaseModel, ConfigDict, Field


class SearchItem(BaseModel):
    """A STAC Item as search returns it: whole, or only the fields the fields extension asked for."""

    model_config = ConfigDict(extra="allow")

    type: Literal["Feature"]
    stac_version: str
    id: str
    collection: str
    stac_extensions: list[str] | None = None
    geometry: dict[str, Any] | None = Field(None, description="GeoJSON geometry (left out when fields exclude it)")
    bbox: list[float] | None = None
    properties: dict[str, Any] | None = None
    links: list[dict[str, Any]] | None = None
    assets: dict[str, Any] | None = None


class SearchItemCollection(BaseModel):
    """A page of search results (GeoJSON FeatureCollection with STAC API paging links)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["FeatureCollection"]
    features: list[SearchItem]
    links: list[dict[str, Any]]
    numberMatched: int | None = None
    numberReturned: int | None = None


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every ``APIRoute``, also inside included routers (FastAPI keeps those as one lazy entry)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _api_routes(route.original_router.routes)


def declare_item_collection_responses(app: FastAPI, paths: set[str]) -> None:
    """Declare ``SearchItemCollection`` as the 200 answer of the routes at ``paths`` (all methods)."""
    for route in _api_routes(app.routes):
        if route.path not in paths:
            continue
        route.responses[200] = {
            "model": SearchItemCollection,
            "description": "Items; with the fields extension each holds only the requested fields",
            "content": {"application/geo+json": {}},
        }
        route.response_fields[200] = create_model_field(
            name=f"Response_200_{route.unique_id}", type_=SearchItemCollection, mode="serialization"
        )
    app.openapi_schema = None
