"""stac-fastapi clients (core, filter queryables, sortables) over the warehouse backend.

The clients only translate HTTP requests to ``SearchQuery`` and results to responses; matching, ordering
and documents live in ``search`` and ``documents``. Responses are returned as ready ``Response`` objects, so
FastAPI does not re-encode large item collections through ``jsonable_encoder``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import attr
import orjson
from fastapi import Request
from starlette.responses import JSONResponse as StarletteJSONResponse
from stac_fastapi.extensions.filter.client import BaseFiltersClient
from stac_fastapi.extensions.sort.client import BaseSortablesClient
from stac_fastapi.types.core import BaseCoreClient
from stac_fastapi.types.errors import NotFoundError
from stac_fastapi.types.requests import get_base_url

from .cql2_filter import FilterError, parse_filter
from .documents import resolve_collection, resolve_item
from .search import (
    SORTABLES,
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
        return orjson.dumps(content)


class GeoJSONResponse(JSONResponse):
    media_type = "application/geo+json"


class JSONSchemaResponse(JSONResponse):
    media_type = "application/schema+json"


CRS84 = ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", "https://www.opengis.net/def/crs/OGC/1.3/CRS84", "EPSG:4326")


def _bases(request: Request) -> tuple[str, str]:
    """(STAC API base ``.../stac/``, app base ``.../``): STAC links use the first, tile links the second."""
    return get_base_url(request), str(request.base_url)


def _filter(expr: Any, lang: str | None, crs: str | None) -> Any:
    if crs and crs not in CRS84:
        raise bad_request(f"filter-crs {crs!r} is not supported; use {CRS84[0]}")
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
        collections=collections, ids=ids, bbox=parse_bbox(bbox), intersects=parse_intersects(intersects),
        start=start, end=end, limit=limit or 10, token=token, filter=_filter(filter_expr, filter_lang, filter_crs),
        sortby=parse_sortby(sortby), fields=parse_fields_get(fields),
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
                "links": [
                    {"rel": "self", "type": "application/json", "href": f"{stac_base}collections"},
                    {"rel": "root", "type": "application/json", "href": stac_base},
                    {"rel": "parent", "type": "application/json", "href": stac_base},
                ],
                "numberMatched": len(collections),
                "numberReturned": len(collections),
            }
        )

    def get_collection(self, collection_id: str, request: Request, **kwargs: Any) -> JSONResponse:
        doc = self.backend.collection_document(collection_id)
        if doc is None:
            raise NotFoundError(f"collection {collection_id!r} not found")
        return JSONResponse(resolve_collection(doc, *_bases(request)))

    # -- items ----------------------------------------------------------------------------------------------
    def get_item(self, item_id: str, collection_id: str, request: Request, **kwargs: Any) -> GeoJSONResponse:
        records = self.backend.records(collection_id)
        if records is None:
            raise NotFoundError(f"collection {collection_id!r} not found")
        i = records.pos_by_id.get(item_id)
        if i is None:
            raise NotFoundError(f"item {item_id!r} not found in collection {collection_id!r}")
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
            raise NotFoundError(f"collection {collection_id!r} not found")
        query = _get_query(
            [collection_id], None, bbox, None, datetime, limit, token, filter_expr, filter_lang, filter_crs, sortby, fields
        )
        stac_base, _ = _bases(request)
        collection_url = f"{stac_base}collections/{quote(collection_id, safe='')}"
        links = [
            {"rel": "collection", "type": "application/json", "href": collection_url},
            {"rel": "parent", "type": "application/json", "href": collection_url},
        ]
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
            _split(collections), _split(ids), bbox, intersects, datetime, limit, token, filter_expr, filter_lang, filter_crs,
            sortby, fields,
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
            collections=search_request.collections, ids=search_request.ids, bbox=parse_bbox(search_request.bbox),
            intersects=parse_intersects(search_request.intersects), start=start, end=end,
            limit=search_request.limit or 10, token=getattr(search_request, "token", None),
            filter=_filter(getattr(search_request, "filter_expr", None), getattr(search_request, "filter_lang", None),
                           getattr(search_request, "filter_crs", None)),
            sortby=parse_sortby(getattr(search_request, "sortby", None)), fields=fields,
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
        self_href = str(request.url)
        links: list[dict[str, Any]] = [
            {"rel": "self", "type": "application/geo+json", "href": self_href},
            {"rel": "root", "type": "application/json", "href": stac_base},
            *(extra_links or []),
        ]
        if result.next_token:
            if request.method == "POST":
                links.append({"rel": "next", "type": "application/geo+json", "href": self_href, "method": "POST",
                              "body": post_body, "merge": False})
            else:
                links.append({"rel": "next", "type": "application/geo+json", "method": "GET",
                              "href": str(request.url.include_query_params(token=result.next_token))})
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
def _queryable_properties(enums: dict[str, list[str]] | None = None) -> dict[str, Any]:
    enums = enums or {}
    snapshot_id = {"type": "integer", "minimum": 0, "maximum": 9223372036854775807}

    def text(description: str, key: str | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"description": description, "type": "string"}
        if key and enums.get(key):
            spec["enum"] = enums[key]
        return spec

    return {
        "id": text("Item id (one per Iceberg snapshot)"),
        "collection": text("Collection id (Iceberg table)", "collection"),
        "geometry": {"description": "Footprint of the chunks the snapshot added", "$ref": "https://geojson.org/schema/Geometry.json"},
        "datetime": {"description": "Acquisition time", "type": "string", "format": "date-time"},
        "created": {"description": "Commit time of the snapshot", "type": "string", "format": "date-time"},
        "gsd": {"description": "Ground sample distance (m)", "type": "number", "exclusiveMinimum": 0},
        "platform": text("Platform", "platform"),
        "proj:code": {"description": "CRS code of the stored pixels", "type": ["string", "null"]},
        "eo:cloud_cover": {"description": "Cloud cover (%), where known", "type": "number", "minimum": 0, "maximum": 100},
        "pixelquery:snapshot_id": {"description": "Iceberg snapshot id", **snapshot_id},
        "pixelquery:parent_snapshot_id": {"description": "Parent Iceberg snapshot id", "oneOf": [snapshot_id, {"type": "null"}]},
        "pixelquery:product": text("Product profile", "pixelquery:product"),
        "pixelquery:grid": text("Storage grid / CRS of the chunks", "pixelquery:grid"),
        "pixelquery:levels": {"description": "Resolution levels stored", "type": "integer", "minimum": 1},
        "pixelquery:chunk_count": {"description": "Chunks the snapshot added", "type": "integer", "minimum": 0},
        "pixelquery:source": text("File name of the ingested raster"),
    }


@attr.s
class PixelQueryFiltersClient(BaseFiltersClient):
    """Queryables of the whole catalog and of each collection (JSON Schema, ``$id`` = the URL served)."""

    backend: StacBackend = attr.ib(default=None)

    def get_queryables(self, collection_id: str | None = None, request: Request | None = None, **kwargs: Any) -> JSONSchemaResponse:
        assert request is not None
        enums: dict[str, list[str]] = {}
        if collection_id is not None:
            records = self.backend.records(collection_id)
            if records is None:
                raise NotFoundError(f"collection {collection_id!r} not found")
            enums = {
                "collection": [collection_id],
                "platform": sorted({p for p, null in zip(records.platform, records.platform_null) if not null}),
                "pixelquery:product": sorted(set(records.product)),
                "pixelquery:grid": sorted(set(records.grid)),
            }
        return JSONSchemaResponse(
            {
                "$schema": "https://json-schema.org/draft/2019-09/schema",
                "$id": str(request.url.replace(query="")),
                "type": "object",
                "title": f"Queryables of {collection_id}" if collection_id else "Queryables of pixelquery-tiler",
                "description": "Properties usable in CQL2 filters (cql2-text and cql2-json); "
                               "other names are accepted and evaluate as missing (null).",
                "properties": _queryable_properties(enums),
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

    def get_collection_sortables(self, collection_id: str, request: Request | None = None, **kwargs: Any) -> dict[str, Any]:
        if self.backend.records(collection_id) is None:
            raise NotFoundError(f"collection {collection_id!r} not found")
        return self._schema(request, f"Sortables of {collection_id}")

    def get_collections_sortables(self, request: Request | None = None, **kwargs: Any) -> dict[str, Any]:
        return self._schema(request, "Sortables")
