"""stac-fastapi clients (core, filter queryables, sortables) over the warehouse backend.

The clients only translate HTTP requests to ``SearchQuery`` and results to responses; matching, ordering
and documents live in ``search`` and ``documents``. Responses are returned as ready ``Response`` objects, so
FastAPI does not re-encode large item collections through ``jsonable_encoder``.
"""

from __future__ import annotations

import logging
from typing import Any

import attr
import orjson
from fastapi import Request
from stac_fastapi.extensions.filter.client import BaseFiltersClient
from stac_fastapi.extensions.sort.client import BaseSortablesClient
from stac_fastapi.types.core import BaseCoreClient
from stac_fastapi.types.errors import NotFoundError
from stac_fastapi.types.requests import get_base_url
from starlette.responses import JSONResponse as StarletteJSONResponse

from .cql2_filter import FilterError, parse_filter
from .documents import resolve_collection, resolve_item
from .extension import GEOJSON_GEOMETRY_PATH
from .limits import excerpt
from .links import collections_links, item_collection_links, search_links
from .properties import SORTABLES, queryables
from .search import (
    FieldsSpec,
    SearchQuery,
    SearchResult,
    StacBackend,
    apply_fields,
    bad_request,
    parse_bbox,
    parse_datetime,
    parse_fields_get,
    parse_intersects,
    parse_sortby,
)

log = logging.getLogger(__name__)


class JSONResponse(StarletteJSONResponse):
    """JSON via orjson: item collections are mostly coordinates, which the stdlib encoder formats ~10x slower."""

    def render(self, content: Any) -> bytes:
        """The body as orjson bytes (see the class docstring for why orjson)."""
        return orjson.dumps(content)


class GeoJSONResponse(JSONResponse):
    """Items and item collections are GeoJSON: STAC clients check the media type."""

    media_type = "application/geo+json"


class JSONSchemaResponse(JSONResponse):
    """Queryables and sortables are JSON Schema documents (OGC API - Features part 3)."""

    media_type = "application/schema+json"


CRS84 = ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", "https://www.opengis.net/def/crs/OGC/1.3/CRS84", "EPSG:4326")


def _bases(request: Request) -> tuple[str, str]:
    """(STAC API base ``.../stac/``, app base ``.../``): STAC links use the first, tile links the second."""
    return get_base_url(request), str(request.base_url)


def _filter(expr: Any, lang: str | None, crs: str | None) -> Any:
    if crs and crs not in CRS84:
        raise bad_request(f"filter-crs {excerpt(crs)} is not supported; use {CRS84[0]}")
    try:
        return parse_filter(expr, lang)
    except FilterError as exc:
        raise bad_request(str(exc)) from None


def _split(values: list[str] | None) -> list[str] | None:
    return [v.strip() for v in values if v.strip()] if values is not None else None


def _get_query(
    collections: list[str] | None,
    ids: list[str] | None,
    bbox: list[float] | None,
    intersects: str | None,
    datetime: str | None,
    limit: int | None,
    token: str | None,
    filter_expr: str | None,
    filter_lang: str | None,
    filter_crs: str | None,
    sortby: list[str] | None,
    fields: str | None,
) -> SearchQuery:
    """A ``SearchQuery`` from GET parameters (``/search`` and ``/collections/{id}/items`` alike)."""
    start, end = parse_datetime(datetime)
    return SearchQuery(
        collections=collections,
        ids=ids,
        bbox=parse_bbox(bbox),
        intersects=parse_intersects(intersects),
        start=start,
        end=end,
        limit=limit or 10,
        token=token,
        filter=_filter(filter_expr, filter_lang, filter_crs),
        sortby=parse_sortby(sortby),
        fields=parse_fields_get(fields),
    )


@attr.s
class PixelQueryCoreClient(BaseCoreClient):
    """Collections = Iceberg tables, items = snapshots, searched in memory."""

    backend: StacBackend = attr.ib(default=None)

    # -- collections ----------------------------------------------------------------------------------------
    def landing_page(self, **kwargs: Any):
        """The landing page, after checking the catalog answers (down: 503 via app.py, so a proxy skips us)."""
        self.backend.collection_names()
        return super().landing_page(**kwargs)

    def all_collections(self, request: Request, **kwargs: Any) -> JSONResponse:
        stac_base, app_base = _bases(request)
        docs = [self.backend.collection_document(name) for name in self.backend.collection_names()]
        collections = [resolve_collection(d, stac_base, app_base) for d in docs if d is not None]
        return JSONResponse(
            {
                "collections": collections,
                "links": collections_links(stac_base),
                "numberMatched": len(collections),
                "numberReturned": len(collections),
            }
        )

    def get_collection(self, collection_id: str, request: Request, **kwargs: Any) -> JSONResponse:
        doc = self.backend.collection_document(collection_id)
        if doc is None:
            raise NotFoundError(f"collection {excerpt(collection_id)} not found")
        return JSONResponse(resolve_collection(doc, *_bases(request)))

    # -- items ----------------------------------------------------------------------------------------------
    def get_item(self, item_id: str, collection_id: str, request: Request, **kwargs: Any) -> GeoJSONResponse:
        records = self.backend.records(collection_id)
        if records is None:
            raise NotFoundError(f"collection {excerpt(collection_id)} not found")
        i = records.pos_by_id.get(item_id)
        if i is None:
            raise NotFoundError(f"item {excerpt(item_id)} not found in collection {excerpt(collection_id)}")
        return GeoJSONResponse(resolve_item(self.backend.item_document(records, i), *_bases(request)))

    def item_collection(
        self,
        collection_id: str,
        request: Request,
        bbox: list[float] | None = None,
        datetime: str | None = None,
        limit: int | None = 10,
        token: str | None = None,
        filter_expr: str | None = None,
        filter_lang: str | None = None,
        filter_crs: str | None = None,
        sortby: list[str] | None = None,
        fields: str | None = None,
        **kwargs: Any,
    ) -> GeoJSONResponse:
        if self.backend.records(collection_id) is None:
            raise NotFoundError(f"collection {excerpt(collection_id)} not found")
        query = _get_query(
            [collection_id],
            None,
            bbox,
            None,
            datetime,
            limit,
            token,
            filter_expr,
            filter_lang,
            filter_crs,
            sortby,
            fields,
        )
        links = item_collection_links(_bases(request)[0], collection_id)
        return self._respond(request, query, self.backend.search(query), links)

    # -- search ---------------------------------------------------------------------------------------------
    def get_search(
        self,
        request: Request,
        collections: list[str] | None = None,
        ids: list[str] | None = None,
        bbox: list[float] | None = None,
        intersects: str | None = None,
        datetime: str | None = None,
        limit: int | None = 10,
        token: str | None = None,
        filter_expr: str | None = None,
        filter_lang: str | None = None,
        filter_crs: str | None = None,
        sortby: list[str] | None = None,
        fields: str | None = None,
        **kwargs: Any,
    ) -> GeoJSONResponse:
        if bbox is not None and intersects:
            raise bad_request("bbox and intersects are mutually exclusive")
        query = _get_query(
            _split(collections),
            _split(ids),
            bbox,
            intersects,
            datetime,
            limit,
            token,
            filter_expr,
            filter_lang,
            filter_crs,
            sortby,
            fields,
        )
        return self._respond(request, query, self.backend.search(query))

    def post_search(self, search_request: Any, request: Request, **kwargs: Any) -> GeoJSONResponse:
        fields = None
        if "fields" in search_request.model_fields_set and search_request.fields is not None:
            requested = search_request.fields
            include = frozenset(requested.include or ()) if "include" in requested.model_fields_set else None
            fields = FieldsSpec(include, frozenset(requested.exclude or ()))
        start, end = parse_datetime(search_request.datetime)
        query = SearchQuery(
            collections=search_request.collections,
            ids=search_request.ids,
            bbox=parse_bbox(search_request.bbox),
            intersects=parse_intersects(search_request.intersects),
            start=start,
            end=end,
            limit=search_request.limit or 10,
            token=getattr(search_request, "token", None),
            filter=_filter(
                getattr(search_request, "filter_expr", None),
                getattr(search_request, "filter_lang", None),
                getattr(search_request, "filter_crs", None),
            ),
            sortby=parse_sortby(getattr(search_request, "sortby", None)),
            fields=fields,
        )
        result = self.backend.search(query)
        next_body = None
        if result.next_token:
            next_body = search_request.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
            next_body["token"] = result.next_token
        return self._respond(request, query, result, post_body=next_body)

    def _respond(
        self,
        request: Request,
        query: SearchQuery,
        result: SearchResult,
        extra_links: list[dict[str, Any]] | None = None,
        post_body: dict[str, Any] | None = None,
    ) -> GeoJSONResponse:
        stac_base, app_base = _bases(request)
        features = [
            apply_fields(resolve_item(self.backend.item_document(records, i), stac_base, app_base), query.fields)
            for records, i in result.page
        ]
        next_get = next_post = None
        if result.next_token:
            if request.method == "POST":
                next_post = post_body
            else:
                next_get = str(request.url.include_query_params(token=result.next_token))
        links = search_links(stac_base, str(request.url), extra_links, next_get, next_post)
        return GeoJSONResponse(
            {
                "type": "FeatureCollection",
                "features": features,
                "links": links,
                "numberMatched": result.matched,
                "numberReturned": len(features),
            }
        )


# -- queryables and sortables -----------------------------------------------------------------------------------
@attr.s
class PixelQueryFiltersClient(BaseFiltersClient):
    """Queryables of the whole catalog and of each collection (JSON Schema, ``$id`` = the URL served)."""

    backend: StacBackend = attr.ib(default=None)

    def get_queryables(
        self, collection_id: str | None = None, request: Request | None = None, **kwargs: Any
    ) -> JSONSchemaResponse:
        assert request is not None
        records = None
        if collection_id is not None:
            records = self.backend.records(collection_id)
            if records is None:
                raise NotFoundError(f"collection {excerpt(collection_id)} not found")
        return JSONSchemaResponse(
            {
                "$schema": "https://json-schema.org/draft/2019-09/schema",
                "$id": str(request.url.replace(query="")),
                "type": "object",
                "title": f"Queryables of {collection_id}" if collection_id else "Queryables of pixelquery-tiler",
                "description": "Properties usable in CQL2 filters (cql2-text and cql2-json); "
                "other names are accepted and evaluate as missing (null).",
                "properties": queryables(records, _bases(request)[0] + GEOJSON_GEOMETRY_PATH),
                "additionalProperties": True,
            }
        )


@attr.s
class PixelQuerySortablesClient(BaseSortablesClient):
    """Sortables for /search and /collections/{id}/items."""

    backend: StacBackend = attr.ib(default=None)

    @staticmethod
    def _schema(request: Request | None, title: str) -> dict[str, Any]:
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": str(request.url.replace(query="")) if request is not None else "sortables",
            "type": "object",
            "title": title,
            "properties": {name: {"description": description} for name, description in SORTABLES.items()},
            "additionalProperties": False,
        }

    def get_sortables(self, request: Request | None = None, **kwargs: Any) -> dict[str, Any]:
        return self._schema(request, "Sortables of item search")

    def get_collection_sortables(
        self, collection_id: str, request: Request | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        if self.backend.records(collection_id) is None:
            raise NotFoundError(f"collection {excerpt(collection_id)} not found")
        return self._schema(request, f"Sortables of {collection_id}")

    def get_collections_sortables(self, request: Request | None = None, **kwargs: Any) -> dict[str, Any]:
        return self._schema(request, "Sortables")
