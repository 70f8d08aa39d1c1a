"""The STAC item properties the server serves, in one registry.

Each property is described once: its name, JSON Schema, description, whether it can be sorted on or used in
CQL2 filters, how its column over a collection's items is computed (``ItemRecords`` holds the arrays), and how
its value is written into an item document. The column (search), ``/sortables``, ``/queryables`` and the item
documents are all derived from ``ITEM_PROPERTIES``, so adding a property is one entry here.

Properties written by ``documents`` together with related fields (``proj:code`` beside ``proj:wkt2``) have no
``value`` here; a document-only field (``title``, ``bands``...) is not a property of this registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..temporal import format_instant

if TYPE_CHECKING:
    from .records import ItemRecords


@dataclass(frozen=True)
class Column:
    """One queryable/sortable property over all items of a view; ``null`` marks missing values."""

    kind: str  # "string" | "number" | "integer" | "timestamp" | "geometry"
    values: np.ndarray
    null: np.ndarray


@dataclass(frozen=True)
class ItemProperty:
    """One item property: what it means, its JSON Schema, and how it is computed."""

    name: str
    description: str
    schema: dict[str, Any]  # JSON Schema of the value, as published in the queryables
    column: Callable[[ItemRecords], Column]
    #: its value in item ``properties`` (``None``: not written there by the registry)
    value: Callable[[ItemRecords, int], Any] | None = None
    sortable: bool = True
    queryable: bool = True
    #: a collection's queryables list its distinct values (``enum``)
    enumerated: bool = False
    #: a ``None`` value is written as ``null`` (otherwise the property is left out of the document)
    keep_null: bool = False

    def queryable_schema(self, enum: list[Any] | None = None) -> dict[str, Any]:
        """The property's queryables entry, with the distinct values of enumerated properties."""
        spec: dict[str, Any] = {"description": self.description, **self.schema}
        if enum:
            spec["enum"] = enum
        return spec


def _none(n: int) -> np.ndarray:
    return np.zeros(n, bool)


def _plain(kind: str, attr: str, null_attr: str | None = None) -> Callable[[ItemRecords], Column]:
    """A column read from an ``ItemRecords`` array (and its null mask, if the property can be missing)."""

    def column(records: ItemRecords) -> Column:
        values = getattr(records, attr)
        return Column(kind, values, getattr(records, null_attr) if null_attr else _none(len(values)))

    return column


def _finite(attr: str) -> Callable[[ItemRecords], Column]:
    """A float column where NaN means missing."""

    def column(records: ItemRecords) -> Column:
        values = getattr(records, attr)
        return Column("number", values, ~np.isfinite(values))

    return column


def _string_or_none(attr: str, null_attr: str) -> Callable[[ItemRecords, int], str | None]:
    return lambda r, i: None if getattr(r, null_attr)[i] else (str(getattr(r, attr)[i]) or None)


def _positive(attr: str) -> Callable[[ItemRecords, int], float | None]:
    def value(records: ItemRecords, i: int) -> float | None:
        v = float(getattr(records, attr)[i])
        return v if math.isfinite(v) and v > 0 else None

    return value


def _finite_value(attr: str) -> Callable[[ItemRecords, int], float | None]:
    def value(records: ItemRecords, i: int) -> float | None:
        v = float(getattr(records, attr)[i])
        return v if math.isfinite(v) else None

    return value


SNAPSHOT_ID = {"type": "integer", "minimum": 0, "maximum": 9223372036854775807}
STRING = {"type": "string"}
NULL = {"type": "null"}
TIMESTAMP = {"type": "string", "format": "date-time"}
PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
GEOMETRY = {"$ref": "https://geojson.org/schema/Geometry.json"}

ITEM_PROPERTIES: tuple[ItemProperty, ...] = (
    ItemProperty("id", "Item id (one per Iceberg snapshot)", STRING, _plain("string", "ids")),
    ItemProperty(
        "collection",
        "Collection id (Iceberg table)",
        STRING,
        lambda r: Column("string", np.full(len(r), r.collection, dtype=object), _none(len(r))),
        enumerated=True,
    ),
    # rows, not shapes: footprints are resolved lazily (ItemRecords.footprints)
    ItemProperty(
        "geometry",
        "Footprint of the chunks the snapshot added",
        GEOMETRY,
        lambda r: Column("geometry", np.arange(len(r)), _none(len(r))),
        sortable=False,
    ),
    ItemProperty(
        "datetime",
        "Acquisition time",
        TIMESTAMP,
        _plain("timestamp", "datetime"),
        value=lambda r, i: format_instant(r.items[i].datetime),
    ),
    ItemProperty(
        "created",
        "Commit time of the snapshot",
        TIMESTAMP,
        _plain("timestamp", "created"),
        value=lambda r, i: format_instant(r.snapshots[i].timestamp),
    ),
    ItemProperty(
        "platform",
        "Platform",
        STRING,
        _plain("string", "platform", "platform_null"),
        value=_string_or_none("platform", "platform_null"),
        enumerated=True,
    ),
    ItemProperty(
        "gsd",
        "Ground sample distance (m)",
        {"type": "number", "exclusiveMinimum": 0},
        _finite("gsd"),
        value=_positive("gsd"),
    ),
    ItemProperty(
        "proj:code",
        "CRS code of the stored pixels",
        {"type": ["string", "null"]},
        _plain("string", "proj_code", "proj_code_null"),
    ),  # written by documents, beside proj:wkt2
    ItemProperty(
        "eo:cloud_cover",
        "Cloud cover (%), where known",
        PERCENT,
        _finite("cloud_cover"),
        value=_finite_value("cloud_cover"),
    ),
    ItemProperty(
        "pixelquery:snapshot_id",
        "Iceberg snapshot id",
        SNAPSHOT_ID,
        _plain("integer", "snapshot_id"),
        value=lambda r, i: int(r.snapshot_id[i]),
    ),
    ItemProperty(
        "pixelquery:parent_snapshot_id",
        "Parent Iceberg snapshot id",
        {"oneOf": [SNAPSHOT_ID, NULL]},
        _plain("integer", "parent_id", "parent_null"),
        value=lambda r, i: r.parent_snapshot_id(i),
        sortable=False,
        keep_null=True,
    ),
    ItemProperty(
        "pixelquery:product",
        "Product profile",
        STRING,
        _plain("string", "product"),
        value=lambda r, i: str(r.product[i]),
        enumerated=True,
    ),
    ItemProperty(
        "pixelquery:grid",
        "Storage grid / CRS of the chunks",
        STRING,
        _plain("string", "grid"),
        value=lambda r, i: str(r.grid[i]),
        enumerated=True,
    ),
    ItemProperty(
        "pixelquery:levels",
        "Resolution levels stored",
        {"type": "integer", "minimum": 1},
        _plain("integer", "levels"),
        value=lambda r, i: int(r.levels[i]),
    ),
    ItemProperty(
        "pixelquery:chunk_count",
        "Chunks the snapshot added",
        {"type": "integer", "minimum": 0},
        _plain("integer", "chunk_count"),
        value=lambda r, i: int(r.chunk_count[i]),
    ),
    ItemProperty(
        "pixelquery:source",
        "File name of the ingested raster",
        STRING,
        _plain("string", "source", "source_null"),
        value=_string_or_none("source", "source_null"),
    ),
)

BY_NAME: dict[str, ItemProperty] = {p.name: p for p in ITEM_PROPERTIES}
#: sortable property names and their descriptions (``properties.`` prefixes are accepted too)
SORTABLES: dict[str, str] = {p.name: p.description for p in ITEM_PROPERTIES if p.sortable}


def document_properties(records: ItemRecords, i: int) -> dict[str, Any]:
    """The registry's properties of item ``i``, as written in its document (in registry order)."""
    out: dict[str, Any] = {}
    for prop in ITEM_PROPERTIES:
        if prop.value is None:
            continue
        value = prop.value(records, i)
        if value is not None or prop.keep_null:
            out[prop.name] = value
    return out


def queryables(records: ItemRecords | None = None, geometry_ref: str | None = None) -> dict[str, Any]:
    """JSON Schema ``properties`` of the queryables; with ``records``, enumerated properties list their values.

    ``geometry_ref``: where the server itself serves the GeoJSON Geometry schema (else geojson.org's URL).
    """
    out: dict[str, Any] = {}
    for prop in ITEM_PROPERTIES:
        if not prop.queryable:
            continue
        enum = None
        if records is not None and prop.enumerated:
            column = prop.column(records)
            enum = sorted({str(v) for v, null in zip(column.values, column.null, strict=True) if not null})
        out[prop.name] = prop.queryable_schema(enum)
        if geometry_ref and prop.schema is GEOMETRY:
            out[prop.name]["$ref"] = geometry_ref
    return out
