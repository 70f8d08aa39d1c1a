"""The STAC property registry (``stac_api/properties.py``) is consistent with what it drives: every property's
column has the kind its published schema promises, document values validate against that schema, enumerated
queryables list exactly the column's values, and sortables are comparable columns.

Real items: a Landsat 8 band (a product profile with a platform) and a small synthetic GeoTIFF (none), so both
present and missing values are checked. ``test_stac_cql2.py`` checks the registry's lists among themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from pixelquery_tiler.stac_api.properties import BY_NAME, ITEM_PROPERTIES, SORTABLES, document_properties, queryables
from testdata import data_file
from warehouse_fixtures import write_geotiff

#: column kind -> what the property's JSON Schema must say about its values
KIND_SCHEMA = {
    "string": lambda s: "string" in np.atleast_1d(s.get("type", [])),
    "number": lambda s: s.get("type") == "number",
    "integer": lambda s: s.get("type") == "integer" or any(o.get("type") == "integer" for o in s.get("oneOf", [])),
    "timestamp": lambda s: s.get("type") == "string" and s.get("format") == "date-time",
    "geometry": lambda s: s.get("$ref", "").endswith("Geometry.json"),
}


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory):
    from pixelquery_tiler import Warehouse
    from pixelquery_tiler.stac_api.search import StacBackend

    root: Path = tmp_path_factory.mktemp("registry")
    wh = Warehouse(str(root / "wh"))
    wh.ingest(str(data_file("gw_LC08_224077_20200518_B2_60m.tif")), "c", datetime="2020-05-18T13:30:00Z")
    wh.ingest(str(write_geotiff(root / "small.tif")), "c", datetime="2021-01-02T03:04:05Z")
    backend = StacBackend(wh)
    found = backend.records("c")
    assert found is not None and len(found) == 2
    return backend, found


@pytest.mark.parametrize("prop", ITEM_PROPERTIES, ids=lambda p: p.name)
def test_column_kind_matches_the_published_schema(records: Any, prop: Any) -> None:
    _, recs = records
    column = recs.column(prop.name)
    assert column is not None
    assert len(column.values) == len(column.null) == len(recs)
    assert column.null.dtype == bool
    assert column.kind in KIND_SCHEMA, column.kind
    assert KIND_SCHEMA[column.kind](prop.schema), (prop.name, column.kind, prop.schema)


def test_document_values_validate_against_their_schemas(records: Any) -> None:
    backend, recs = records
    for i in range(len(recs)):
        document = backend.item_document(recs, i)
        written = document_properties(recs, i)
        for name, value in written.items():
            assert document["properties"][name] == value, name
            jsonschema.validate(value, BY_NAME[name].schema)
        # a property the registry writes is left out only when it has no value, and then its column says null
        for prop in ITEM_PROPERTIES:
            if prop.value is not None and prop.name not in written:
                assert recs.column(prop.name).null[i], (prop.name, i)


def test_missing_values_are_null_in_the_column(records: Any) -> None:
    """The synthetic file has no product profile: no platform, which the column marks as null."""
    _, recs = records
    assert recs.column("no-such-property") is None
    platform = recs.column("platform")
    assert sorted(platform.null.tolist()) == [False, True]


def test_enumerated_queryables_list_the_column_values(records: Any) -> None:
    _, recs = records
    published = queryables(recs)
    assert list(published) == [p.name for p in ITEM_PROPERTIES if p.queryable]
    for prop in ITEM_PROPERTIES:
        if not (prop.queryable and prop.enumerated):
            assert "enum" not in published.get(prop.name, {}), prop.name
            continue
        column = recs.column(prop.name)
        assert published[prop.name]["enum"] == sorted({str(v) for v in column.values[~column.null]})
    assert published["collection"]["enum"] == ["c"]


def test_sortables_are_comparable_columns(records: Any) -> None:
    _, recs = records
    for name in SORTABLES:
        column = recs.column(name)
        assert column.kind != "geometry", name
        np.argsort(column.values, kind="stable")  # orderable as stored
