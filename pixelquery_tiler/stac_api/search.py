"""Item search over the warehouse: request normalisation, vectorised matching, sorting, pagination, fields.

Everything is answered from the tiler's in-memory collection indexes (``Collection.index()``), which refresh
themselves when a snapshot lands, so a new ingest is searchable within the refresh interval, no restart.

Pagination tokens are *cursors* (the last item returned, plus its offset as a fallback): the next page
starts right after that item in the current ordering, so an ingest between two page requests never makes
an item appear twice or be skipped among the items that existed when paging started.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from stac_fastapi.types.errors import InvalidQueryParameter

from ..temporal import interval_us
from ..warehouse import CollectionNotFound, Warehouse
from .cql2_filter import Evaluator, FilterError
from .documents import collection_document, item_document
from .limits import MAX_FIELDS, MAX_LIST_ITEMS, MAX_SORT_KEYS, MAX_VERTICES, excerpt, vertex_count
from .properties import SORTABLES
from .records import ItemRecords, item_cache

log = logging.getLogger(__name__)

#: fields kept when the fields extension is asked for nothing in particular
DEFAULT_FIELDS = (
    "type",
    "stac_version",
    "id",
    "collection",
    "geometry",
    "bbox",
    "links",
    "assets",
    "properties.datetime",
)
#: fields every item keeps whatever ``include`` says, so a partial item still says what it is
ALWAYS_FIELDS = ("type", "stac_version", "id", "collection")


def bad_request(message: str) -> InvalidQueryParameter:
    """A 400 answer (stac-fastapi maps InvalidQueryParameter to 400): bad search input is never a 500."""
    return InvalidQueryParameter(message)


# -- request normalisation ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldsSpec:
    """A fields-extension request. ``include=None``: no include list was given (an empty one was, if ``()``)."""

    include: frozenset[str] | None
    exclude: frozenset[str]


@dataclass
class SearchQuery:
    """A search request in one normalised form, whatever endpoint/verb it came from."""

    collections: list[str] | None = None
    ids: list[str] | None = None
    bbox: tuple[float, float, float, float] | None = None
    intersects: BaseGeometry | None = None
    start: int | None = None  # inclusive, microseconds since the epoch
    end: int | None = None
    limit: int = 10
    token: str | None = None
    filter: Any = None
    sortby: list[tuple[str, bool]] = field(default_factory=list)  # (property, descending)
    fields: FieldsSpec | None = None

    def __post_init__(self) -> None:
        check_list("collections", self.collections)
        check_list("ids", self.ids)
        if self.fields is not None:
            check_list("fields", [*(self.fields.include or ()), *self.fields.exclude], MAX_FIELDS)

    @property
    def geometry(self) -> BaseGeometry | None:
        """The spatial constraint as a geometry (a bbox crossing the antimeridian becomes two boxes)."""
        if self.intersects is not None:
            return self.intersects
        if self.bbox is None:
            return None
        w, s, e, n = self.bbox
        if w > e:
            return shapely.MultiPolygon([shapely.box(w, s, 180.0, n), shapely.box(-180.0, s, e, n)])
        return shapely.box(w, s, e, n)


def parse_bbox(values: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    """A 2D or 3D bbox as (west, south, east, north); heights are dropped, the index is 2D."""
    if values is None:
        return None
    values = list(values)
    if len(values) not in (4, 6):
        raise bad_request(f"bbox must have 4 or 6 numbers, not {len(values)}")
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError, OverflowError):
        raise bad_request(f"bbox must be numbers: {excerpt(values)}") from None
    if not all(math.isfinite(v) for v in numbers):
        raise bad_request("bbox values must be finite numbers")
    w, s, e, n = numbers if len(numbers) == 4 else (numbers[0], numbers[1], numbers[3], numbers[4])
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise bad_request(f"bbox {excerpt(values)} is outside (-180, -90, 180, 90)")
    if s > n:
        raise bad_request(f"bbox {excerpt(values)}: the southern edge is north of the northern edge")
    return w, s, e, n


def parse_intersects(value: Any) -> BaseGeometry | None:
    """A GeoJSON geometry (dict or JSON text) as shapely, or None; invalid input is a 400."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str):
            value = json.loads(value)
        elif hasattr(value, "model_dump"):
            value = value.model_dump(mode="python", exclude_none=True)
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"intersects is not JSON: {excerpt(str(exc), 120)}") from None
    if vertex_count(value) > MAX_VERTICES:
        raise bad_request(f"intersects has more than {MAX_VERTICES} vertices")
    try:
        if isinstance(value, dict) and value.get("type") == "Feature":
            value = value.get("geometry")
        geom = shape(value)
        finite = bool(np.isfinite(shapely.get_coordinates(geom)).all())
    except Exception as exc:  # shapely and GeoJSON-structure errors alike
        raise bad_request(f"intersects is not a GeoJSON geometry: {excerpt(str(exc), 120)}") from None
    if geom.is_empty:
        raise bad_request("intersects is an empty geometry")
    if not finite:
        raise bad_request("intersects coordinates must be finite numbers")
    return geom


def check_list(name: str, values: Sequence[Any] | None, limit: int = MAX_LIST_ITEMS) -> None:
    """Bound a list parameter (the error names the limit, not the values)."""
    if values is not None and len(values) > limit:
        raise bad_request(f"{name} has {len(values)} entries; at most {limit} are accepted")


def parse_datetime(value: str | None) -> tuple[int | None, int | None]:
    """STAC ``datetime`` in the server's one date grammar (``temporal``, RFC 3339 profile): date bounds of an
    interval are whole UTC days; a lone value must be an instant with an offset (STAC API conformance)."""
    try:
        return interval_us(value, rfc3339=True)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def parse_sortby(values: Iterable[Any] | None) -> list[tuple[str, bool]]:
    """``sortby`` from GET (``-datetime,+id``) or POST (``[{"field", "direction"}]``)."""
    values = list(values or [])
    check_list("sortby", values, MAX_SORT_KEYS)
    out: list[tuple[str, bool]] = []
    for value in values:
        if isinstance(value, str):
            text = value.strip()
            descending = text.startswith("-")
            name = text.lstrip("+-").strip()
        else:
            name = str(value.field)
            direction = getattr(value.direction, "value", value.direction)
            descending = str(direction).lower() == "desc"
        name = name[len("properties.") :] if name.startswith("properties.") else name
        if not name:
            continue
        if name not in SORTABLES:
            raise bad_request(f"cannot sort by {excerpt(name)}; sortable: {', '.join(SORTABLES)}")
        out.append((name, descending))
    return out


def parse_fields_get(value: str | None) -> FieldsSpec | None:
    """GET ``fields=a,+b,-c``; an empty value asks for the default fields, no parameter for everything."""
    if value is None:
        return None
    include, exclude = set(), set()
    parts = value.split(",")
    check_list("fields", parts, MAX_FIELDS)
    for part in (p.strip() for p in parts):
        if part.startswith("-"):
            exclude.add(part[1:])
        elif part:
            include.add(part.lstrip("+"))
    return FieldsSpec(frozenset(include) or None, frozenset(exclude))


def parse_token(token: str | None) -> tuple[str, str, int] | None:
    """Decode a ``next`` token: (collection, item id, offset); anything else is a 400, never a 500."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        collection, item_id, offset = data["c"], data["i"], data["n"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise bad_request("invalid pagination token") from None
    if not (isinstance(collection, str) and isinstance(item_id, str) and type(offset) is int and offset >= 0):
        raise bad_request("invalid pagination token")
    return collection, item_id, offset


def make_token(collection: str, item_id: str, offset: int) -> str:
    """An opaque ``next`` token: the page resumes after the last item served, else (item gone) at ``offset``."""
    raw = json.dumps({"c": collection, "i": item_id, "n": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# -- fields extension -----------------------------------------------------------------------------------------
def _get_path(doc: dict[str, Any], path: list[str]) -> tuple[bool, Any]:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _put_path(out: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        out = out.setdefault(key, {})
    out[path[-1]] = value


def _drop_path(doc: dict[str, Any], path: list[str]) -> None:
    node = doc
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            return
        node[key] = child = dict(child)  # copy on write: cached documents are shared
        node = child
    node.pop(path[-1], None)


def apply_fields(doc: dict[str, Any], spec: FieldsSpec | None) -> dict[str, Any]:
    """The fields extension (v1.0.0 recommendations, as stac-api-validator checks them).

    - ``include`` given and non-empty: only those fields (plus ``ALWAYS_FIELDS``);
    - ``include`` given but empty, or neither list given: the default fields;
    - only ``exclude`` given: the whole item;
    then ``exclude`` is removed, except where it names an included field or an ancestor of one (the more
    specific request wins: ``-properties,+properties.gsd`` keeps ``properties.gsd``).
    """
    if spec is None:
        return doc
    if spec.include:
        include: frozenset[str] = spec.include | frozenset(ALWAYS_FIELDS)
    elif spec.include is None and spec.exclude:
        include = frozenset()
    else:
        include = frozenset(DEFAULT_FIELDS)
    if include:
        out: dict[str, Any] = {}
        for name in sorted(include):
            path = name.split(".")
            found, value = _get_path(doc, path)
            if found:
                _put_path(out, path, copy.copy(value) if isinstance(value, dict) else value)
    else:
        out = dict(doc)
    requested = spec.include or frozenset()
    for name in spec.exclude:
        if any(kept == name or kept.startswith(name + ".") for kept in requested):
            continue
        _drop_path(out, name.split("."))
    return out


# -- the backend ----------------------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """One page of a search: (records, row) pairs in order, the total matched and the next page's token."""

    page: list[tuple[ItemRecords, int]]
    matched: int
    next_token: str | None


class StacBackend:
    """STAC views of a warehouse: per-collection item records, cached documents, search."""

    def __init__(self, warehouse: Warehouse, cache_size: int = 100_000):
        self.warehouse = warehouse
        self._records: dict[str, ItemRecords] = {}
        self._collection_docs: dict[str, tuple[ItemRecords, dict[str, Any]]] = {}
        self._footprint = item_cache(cache_size)(ItemRecords.compute_footprint)
        self._item_document = item_cache(cache_size)(item_document)
        self._names: tuple[float, list[str]] = (-math.inf, [])
        self._lock = threading.Lock()

    # -- collections ----------------------------------------------------------------------------------------
    def collection_names(self) -> list[str]:
        """Collection ids, re-listed from the catalog at most every refresh interval."""
        checked, names = self._names
        if time.monotonic() - checked >= self.warehouse.refresh_interval:
            names = self.warehouse.collections()
            self._names = (time.monotonic(), names)
        return names

    def records(self, collection: str) -> ItemRecords | None:
        """The item records of ``collection`` at its current index, ``None`` if there is no such collection."""
        try:
            index = self.warehouse.collection(collection).index()
        except CollectionNotFound:
            return None
        current = self._records.get(collection)
        if current is not None and current.index is index:
            return current
        built = ItemRecords(collection, index, self._footprint)
        with self._lock:
            current = self._records.get(collection)
            if current is None or current.index is not index:
                self._records[collection] = current = built
        return current

    def collection_document(self, collection: str) -> dict[str, Any] | None:
        """The collection document, rebuilt only when the collection's records change."""
        records = self.records(collection)
        if records is None:
            return None
        cached = self._collection_docs.get(collection)
        if cached is not None and cached[0] is records:
            return cached[1]
        doc = collection_document(records)
        self._collection_docs[collection] = (records, doc)
        return doc

    def item_document(self, records: ItemRecords, i: int) -> dict[str, Any]:
        """An item document, cached by (collection, item, snapshot): a snapshot's item never changes."""
        return self._item_document(records, i)

    # -- search -----------------------------------------------------------------------------------------------
    def search(self, query: SearchQuery) -> SearchResult:
        """Filter every requested collection's records, order them and cut one page (items, count, token)."""
        names = query.collections if query.collections is not None else self.collection_names()
        parts: list[tuple[ItemRecords, np.ndarray]] = []
        for name in dict.fromkeys(names):
            records = self.records(name)
            if records is None or not len(records):
                continue
            rows = np.flatnonzero(self._match(records, query))
            if len(rows):
                parts.append((records, rows))
        if not parts:
            return SearchResult([], 0, None)
        part_of, rows = self._order(parts, query.sortby)
        total = len(rows)
        start = self._cursor_start(parts, part_of, rows, parse_token(query.token))
        stop = min(start + query.limit, total)
        page = [(parts[int(p)][0], int(r)) for p, r in zip(part_of[start:stop], rows[start:stop], strict=True)]
        token = None
        if stop < total and page:
            last_records, last_row = page[-1]
            token = make_token(last_records.collection, last_records.items[last_row].item_id, stop)
        return SearchResult(page, total, token)

    def _match(self, records: ItemRecords, query: SearchQuery) -> np.ndarray:
        mask = np.ones(len(records), bool)
        if query.ids is not None:
            only = np.zeros_like(mask)
            only[[records.pos_by_id[i] for i in query.ids if i in records.pos_by_id]] = True
            mask &= only
        if query.start is not None:
            mask &= records.datetime >= query.start
        if query.end is not None:
            mask &= records.datetime <= query.end
        geometry = query.geometry
        if geometry is not None and mask.any():
            mask &= self._intersecting(records, mask, geometry)
        if query.filter is not None and mask.any():
            try:
                mask &= Evaluator(records, mask).matches(query.filter)
            except FilterError as exc:
                raise bad_request(str(exc)) from None
        return mask

    @staticmethod
    def _intersecting(records: ItemRecords, mask: np.ndarray, geometry: BaseGeometry) -> np.ndarray:
        """Items whose footprint intersects ``geometry``; bbox tests first, exact tests only where they can differ."""
        out = np.zeros(len(records), bool)
        rows = np.flatnonzero(mask)
        box = records.bbox[rows]
        parts = list(getattr(geometry, "geoms", [geometry])) if geometry.geom_type == "MultiPolygon" else [geometry]
        for part in parts:
            w, s, e, n = part.bounds
            near = (box[:, 0] <= e) & (box[:, 2] >= w) & (box[:, 1] <= n) & (box[:, 3] >= s)
            if part.equals(shapely.box(w, s, e, n)):  # a query box contains any item bbox inside it
                inside = (box[:, 0] >= w) & (box[:, 2] <= e) & (box[:, 1] >= s) & (box[:, 3] <= n)
                out[rows[inside]] = True
                near &= ~inside
            candidates = rows[near & ~out[rows]]
            if len(candidates):
                out[candidates] |= shapely.intersects(records.footprints(candidates), part)
        return out

    @staticmethod
    def _order(
        parts: list[tuple[ItemRecords, np.ndarray]], sortby: list[tuple[str, bool]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(part index, row) of every match in result order: ``sortby``, else newest acquisition first.

        Ties end in (collection, newest snapshot): a snapshot's sequence number is unique in its table, so
        the order is total and pages are stable. Numbers and times sort as they are; only strings are
        ranked (``np.unique``), and missing values sort last in either direction.
        """
        part_of = np.repeat(np.arange(len(parts)), [len(r) for _, r in parts])
        rows = np.concatenate([r for _, r in parts])
        keys: list[np.ndarray] = []
        for name, descending in sortby or [("datetime", True)]:
            columns = [(rec.column(name), r) for rec, r in parts]
            values = np.concatenate([c.values[r] for c, r in columns if c is not None])
            null = np.concatenate([c.null[r] for c, r in columns if c is not None])
            if values.dtype == object:
                values = np.unique(values, return_inverse=True)[1].reshape(-1)
            keys += [null, -values if descending else values]
        collection_rank = np.argsort(np.argsort([rec.collection for rec, _ in parts]))
        keys += [collection_rank[part_of], -np.concatenate([rec.sequence[r] for rec, r in parts])]
        order = np.lexsort(keys[::-1])
        return part_of[order], rows[order]

    @staticmethod
    def _cursor_start(
        parts: list[tuple[ItemRecords, np.ndarray]],
        part_of: np.ndarray,
        rows: np.ndarray,
        cursor: tuple[str, str, int] | None,
    ) -> int:
        if cursor is None:
            return 0
        collection, item_id, offset = cursor
        for p, (records, _) in enumerate(parts):
            if records.collection == collection and item_id in records.pos_by_id:
                hit = np.flatnonzero((part_of == p) & (rows == records.pos_by_id[item_id]))
                if len(hit):
                    return int(hit[0]) + 1
        # the cursor item no longer matches (e.g. its snapshot expired): fall back to the offset
        return max(0, min(offset, len(rows)))
