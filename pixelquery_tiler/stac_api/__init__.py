"""STAC API (stac-fastapi) under ``/stac`` on the tiler's app: collections = Iceberg tables, items = snapshots.

Built with ``StacApi(app=app, router=APIRouter(prefix="/stac"))`` on the same FastAPI app as the tiles
(DESIGN.md section 4: a mounted sub-app breaks link prefixes), with item search (GET/POST), token
pagination, the filter (CQL2 text/JSON, queryables), sort (sortables) and fields extensions, each on both
``/search`` and ``/collections/{id}/items``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from . import _quiet_defaults  # noqa: F401  (first: stac-fastapi warns at import about settings we do set)

# isort: split
import attr
from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel, Field, field_validator, model_validator
from stac_fastapi.api.app import StacApi
from stac_fastapi.api.middleware import ProxyHeaderMiddleware
from stac_fastapi.api.models import (
    ItemCollectionUri,
    create_get_request_model,
    create_post_request_model,
    create_request_model,
)
from stac_fastapi.extensions.fields import FieldsExtension
from stac_fastapi.extensions.fields.fields import FieldsConformanceClasses
from stac_fastapi.extensions.fields.request import PostFieldsExtension
from stac_fastapi.extensions.filter import ItemCollectionFilterExtension, SearchFilterExtension
from stac_fastapi.extensions.filter.filter import FilterConformanceClasses
from stac_fastapi.extensions.pagination import TokenPaginationExtension
from stac_fastapi.extensions.sort import ItemCollectionSortExtension, SearchSortExtension
from stac_fastapi.extensions.sort.sort import SortConformanceClasses
from stac_fastapi.types.config import ApiSettings
from stac_fastapi.types.errors import InvalidQueryParameter
from stac_fastapi.types.search import APIRequest, BaseSearchGetRequest, BaseSearchPostRequest
from starlette.middleware import Middleware

from ..temporal import parse_interval
from ..warehouse import Warehouse
from .client import PixelQueryCoreClient, PixelQueryFiltersClient, PixelQuerySortablesClient
from .documents import STAC_VERSION
from .extension import add_extension_schema
from .limits import add_limits
from .openapi import declare_item_collection_responses
from .search import StacBackend

__all__ = ["StacBackend", "add_stac_api"]

log = logging.getLogger(__name__)

PREFIX = "/stac"

#: CQL2 conformance this server evaluates (see cql2_filter): basic CQL2 with advanced comparisons and all
#: spatial predicates; temporal functions are evaluated for instants but not advertised (not all 14 exist).
FILTER_CONFORMANCE = [
    FilterConformanceClasses.FILTER,
    FilterConformanceClasses.CQL2_TEXT,
    FilterConformanceClasses.CQL2_JSON,
    FilterConformanceClasses.BASIC_CQL2,
    FilterConformanceClasses.ADVANCED_COMPARISON_OPERATORS,
    FilterConformanceClasses.BASIC_SPATIAL_FUNCTIONS,
    FilterConformanceClasses.SPATIAL_FUNCTIONS,
]

#: sort v1.0.0 URIs next to stac-fastapi's v1.1.0 ones: pystac-client (0.9) recognises only ``v1.0.*#sort``
#: and would refuse ``sortby``; the v1.0.0 semantics (GET ``+/-field`` lists, POST field/direction) are served
SORT_V1_0 = {
    "search": "https://api.stacspec.org/v1.0.0/item-search#sort",
    "items": "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
}


@attr.s
class FieldsGetRequest(APIRequest):
    """``fields`` kept verbatim: an empty value (default fields) must differ from no parameter (whole items)."""

    fields: Annotated[
        str | None,
        Query(
            description="Comma-separated fields to include (`+name` or `name`) or exclude (`-name`); "
            "empty = default fields."
        ),
    ] = attr.ib(default=None)


class FieldsPostRequest(BaseModel):
    """``fields`` object; ``null`` is rejected (the fields extension gives it no meaning)."""

    fields: PostFieldsExtension = Field(
        default_factory=PostFieldsExtension, description="Fields to include or exclude."
    )


DATETIME_DESCRIPTION = (
    "Only items whose `datetime` is in this instant or interval: an RFC 3339 instant (with `Z` or an offset), or "
    "`start/end` of instants or dates `YYYY-MM-DD` (a date bound includes that whole UTC day) with `..` (or "
    "nothing) for an open end, e.g. `2020-05-01/2020-12-31`; one day is `2020-05-18/2020-05-18`."
)
DateTimeParam = Annotated[str | None, Query(description=DATETIME_DESCRIPTION, examples=["2020-05-01/2020-12-31"])]


def _check_datetime(instance: Any, attribute: Any, value: str | None) -> None:
    """GET ``datetime`` in the server's one date grammar (``temporal``), instead of stac-fastapi's RFC 3339 only."""
    if value is not None:
        try:
            parse_interval(value, rfc3339=True)
        except ValueError as exc:
            raise InvalidQueryParameter(str(exc)) from None


@attr.s
class SearchGetRequest(BaseSearchGetRequest):
    # the type object itself, not a string annotation: FastAPI resolves attrs' __init__ outside this module
    datetime = attr.ib(default=None, validator=_check_datetime, type=DateTimeParam)


@attr.s
class ItemsGetRequest(ItemCollectionUri):
    # the type object itself, not a string annotation: FastAPI resolves attrs' __init__ outside this module
    datetime = attr.ib(default=None, validator=_check_datetime, type=DateTimeParam)


class SearchPostRequest(BaseSearchPostRequest):
    """POST search body; ``collections``/``ids`` also accepted as a comma-separated string, as in GET."""

    datetime: str | None = Field(None, description=DATETIME_DESCRIPTION, examples=["2020-05-01/2020-12-31"])

    @model_validator(mode="before")
    @classmethod
    def _object_only(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            raise ValueError("the search body must be a JSON object")
        return values

    @field_validator("collections", "ids", mode="before")
    @classmethod
    def _split_string(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("datetime")
    @classmethod
    def _datetime(cls, value: str | None) -> str | None:
        if value is not None:
            parse_interval(value, rfc3339=True)  # ValueError -> 400 naming the reason
        return value


@attr.s
class PixelQueryFieldsExtension(FieldsExtension):
    GET = FieldsGetRequest
    POST = FieldsPostRequest


def add_stac_api(app: FastAPI, warehouse: Warehouse) -> StacApi:
    """Register the STAC API routes under ``/stac`` on ``app``, served from ``warehouse``'s indexes."""
    backend = StacBackend(warehouse)
    sortables = PixelQuerySortablesClient(backend=backend)
    filters = PixelQueryFiltersClient(backend=backend)
    search_extensions = [
        SearchFilterExtension(
            client=filters, conformance_classes=[*FILTER_CONFORMANCE, FilterConformanceClasses.SEARCH]
        ),
        SearchSortExtension(
            client=sortables,
            conformance_classes=[
                SortConformanceClasses.ITEM_SEARCH_SORT,
                SortConformanceClasses.ITEM_SEARCH_SORTABLES,
                SORT_V1_0["search"],
            ],
        ),
        PixelQueryFieldsExtension(conformance_classes=[FieldsConformanceClasses.SEARCH]),
        TokenPaginationExtension(),
    ]
    items_extensions = [
        ItemCollectionFilterExtension(
            client=filters, conformance_classes=[*FILTER_CONFORMANCE, FilterConformanceClasses.ITEMS]
        ),
        ItemCollectionSortExtension(
            client=sortables,
            conformance_classes=[
                SortConformanceClasses.FEATURES_SORT,
                SortConformanceClasses.FEATURES_SORTABLES,
                SORT_V1_0["items"],
            ],
        ),
        PixelQueryFieldsExtension(conformance_classes=[FieldsConformanceClasses.ITEMS]),
        TokenPaginationExtension(),
    ]
    settings = ApiSettings(
        stac_fastapi_title="pixelquery-tiler",
        stac_fastapi_description=(
            "STAC API of a PixelQuery warehouse: one collection per Iceberg table, one item per snapshot."
        ),
        stac_fastapi_version=_version(),
        stac_fastapi_landing_id="pixelquery-tiler",
        openapi_url=app.openapi_url or "/api",
        docs_url=app.docs_url or "/api.html",
    )
    api = StacApi(
        app=app,
        router=APIRouter(prefix=PREFIX),
        settings=settings,
        client=PixelQueryCoreClient(backend=backend, landing_page_id="pixelquery-tiler"),
        stac_version=STAC_VERSION,
        extensions=[*search_extensions, *items_extensions],
        search_get_request_model=create_get_request_model(search_extensions, base_model=SearchGetRequest),
        search_post_request_model=create_post_request_model(search_extensions, base_model=SearchPostRequest),
        items_get_request_model=create_request_model(
            "ItemCollectionUri", base_model=ItemsGetRequest, extensions=items_extensions, request_type="GET"
        ),  # type: ignore[arg-type]  # request_type="GET" builds an APIRequest (typed as either kind)
        # no compression middleware: it would re-compress PNG tiles of the same app for nothing
        middlewares=[
            Middleware(ProxyHeaderMiddleware),
        ],
    )
    add_limits(app, PREFIX)
    add_extension_schema(app, PREFIX)
    declare_item_collection_responses(app, {f"{PREFIX}/search", f"{PREFIX}/collections/{{collection_id}}/items"})
    app.state.stac_backend = backend
    app.state.stac_api = api  # stac_api.transactions adds its conformance class to api.client
    log.info("STAC API under %s for %s", PREFIX, warehouse.uri)
    return api


def _version() -> str:
    from .. import __version__

    return __version__
