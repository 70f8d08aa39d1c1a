"""CQL2 evaluation over item columns, table-driven (no server): comparisons, three-valued logic, LIKE, spatial and
temporal operators, the errors that become a 400, and the size/nesting limits at their exact boundaries.

``test_stac_cql2.py`` holds the parser details (big integers, LIKE backtracking); this file covers the evaluator
operator by operator on four items whose expected answers can be checked by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from pixelquery_tiler.stac_api.cql2_filter import (
    MAX_FILTER_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_FILTER_NODES,
    MAX_LIKE_PATTERN,
    Evaluator,
    FilterError,
    compile_like,
    parse_filter,
)
from pixelquery_tiler.stac_api.limits import MAX_VERTICES
from pixelquery_tiler.stac_api.properties import Column

DAY = 86_400_000_000  # microseconds
BIG = 6437419547234234123  # > 2**53: exact only as an integer


class Records:
    """What the evaluator reads from ``ItemRecords``: a length, named columns, bboxes and footprints."""

    def __init__(self, footprints: list[shapely.Geometry], **columns: Column):
        self.columns = columns
        self._footprints = np.array(footprints, dtype=object)
        self.bbox = np.array([g.bounds for g in footprints], float)

    def __len__(self) -> int:
        return len(self._footprints)

    def column(self, name: str) -> Column | None:
        if name == "geometry":
            return Column("geometry", np.arange(len(self)), np.zeros(len(self), bool))
        return self.columns.get(name)

    def footprints(self, rows: np.ndarray) -> np.ndarray:
        return self._footprints[rows]


def _strings(*values: str | None) -> Column:
    return Column("string", np.array([v or "" for v in values], dtype=object), np.array([v is None for v in values]))


#: row 0: 1970-01-01T00:00, gsd 30, landsat-8, unit square at the origin
#: row 1: the last microsecond of 1970-01-01, no gsd, sentinel-2a, unit square at x 2..3
#: row 2: 1970-01-02T00:00, gsd 60, no platform, unit square at y 2..3
#: row 3: 1970-01-03T00:00, gsd 10, landsat-9, the 10 x 10 square holding all others
RECORDS = Records(
    [shapely.box(0, 0, 1, 1), shapely.box(2, 0, 3, 1), shapely.box(0, 2, 1, 3), shapely.box(0, 0, 10, 10)],
    id=_strings("a-1", "b-2", "c-3", "d-4"),
    datetime=Column("timestamp", np.array([0, DAY - 1, DAY, 2 * DAY], np.int64), np.zeros(4, bool)),
    gsd=Column("number", np.array([30.0, np.nan, 60.0, 10.0]), np.array([False, True, False, False])),
    platform=_strings("landsat-8", "sentinel-2a", None, "landsat-9"),
    **{"pixelquery:snapshot_id": Column("integer", np.array([BIG, BIG + 1, 1, 2], np.int64), np.zeros(4, bool))},
)
ALL = np.ones(4, bool)


def matches(filter_: str | dict, active: np.ndarray = ALL) -> list[bool]:
    lang = "cql2-json" if isinstance(filter_, str) and filter_.startswith("{") else None
    return Evaluator(RECORDS, active).matches(parse_filter(filter_, lang)).tolist()  # type: ignore[arg-type]


T, F = True, False
GEOMETRY = {"property": "geometry"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # comparisons; a missing value (row 1's gsd, row 2's platform) is unknown and never selected
        ("gsd = 30", [T, F, F, F]),
        ("30 = gsd", [T, F, F, F]),  # literal first: the operator is flipped, not the meaning
        ("gsd <> 30", [F, F, T, T]),
        ("gsd < 60", [T, F, F, T]),
        ("60 > gsd", [T, F, F, T]),
        ("gsd <= 30", [T, F, F, T]),
        ("gsd >= 30", [T, F, T, F]),
        ("properties.gsd = 30", [T, F, F, F]),  # the properties. prefix names the same property
        ("gsd BETWEEN 10 AND 30", [T, F, F, T]),
        ("gsd IN (10, 60)", [F, F, T, T]),
        ("id IN ('a-1', 'zzz')", [T, F, F, F]),
        ("gsd = gsd", [T, F, T, T]),  # property against property: unknown where either is missing
        (f"pixelquery:snapshot_id = {BIG}", [T, F, F, F]),  # its neighbour BIG + 1 is not a match
        ("platform = 'landsat-8'", [T, F, F, F]),
        ("platform <> 'landsat-8'", [F, T, F, T]),
        ("platform IS NULL", [F, F, T, F]),
        ("NOT platform IS NULL", [T, T, F, T]),
        ("platform LIKE 'landsat%'", [T, F, F, T]),
        ("NOT platform LIKE 'landsat%'", [F, T, F, F]),
        # three-valued AND / OR / NOT (row 1: gsd unknown; row 2: platform unknown)
        ("gsd > 40 OR platform = 'sentinel-2a'", [F, T, T, F]),
        ("gsd > 40 AND platform = 'sentinel-2a'", [F, F, F, F]),
        ("NOT (gsd > 40 AND platform = 'sentinel-2a')", [T, F, F, T]),
        ("NOT (gsd > 40 OR platform = 'sentinel-2a')", [T, F, F, T]),
        # a property no item has: every comparison is unknown, and IS NULL is true
        ("cloudiness = 1", [F, F, F, F]),
        ("NOT cloudiness = 1", [F, F, F, F]),
        ("cloudiness IS NULL", [T, T, T, T]),
        # constants
        ("1 = 1", [T, T, T, T]),
        ("1 = 2", [F, F, F, F]),
        ("'a' < 'b'", [T, T, T, T]),
        # time: a date is its whole UTC day, an instant one microsecond
        ("datetime < TIMESTAMP('1970-01-01T00:00:00.000001Z')", [T, F, F, F]),
        ("datetime <= DATE('1970-01-01')", [T, T, F, F]),
        ("datetime >= DATE('1970-01-02')", [F, F, T, T]),
        ("datetime <> DATE('1970-01-01')", [F, F, T, T]),
        ("T_BEFORE(datetime, DATE('1970-01-02'))", [T, T, F, F]),
        ("T_AFTER(datetime, DATE('1970-01-01'))", [F, F, T, T]),
        ("T_DURING(datetime, INTERVAL('1970-01-01T00:00:00Z', '1970-01-03T00:00:00Z'))", [F, T, T, F]),
        ("T_DISJOINT(datetime, DATE('1970-01-02'))", [T, T, F, T]),
        ("T_INTERSECTS(datetime, INTERVAL('1970-01-02', '..'))", [F, F, T, T]),
        ("T_INTERSECTS(datetime, INTERVAL('..', '1970-01-01'))", [T, T, F, F]),
        ("T_EQUALS(datetime, TIMESTAMP('1970-01-02T00:00:00Z'))", [F, F, T, F]),
        ("T_EQUALS(datetime, DATE('1970-01-02'))", [F, F, F, F]),  # a day is not an instant
        ("T_BEFORE(datetime, INTERVAL('..', '1970-01-02'))", [F, F, F, F]),  # nothing is before an open start
        # space: footprints, after the bbox prefilter
        ("S_INTERSECTS(geometry, POINT(0.5 0.5))", [T, F, F, T]),
        ("S_DISJOINT(geometry, POINT(0.5 0.5))", [F, T, T, F]),
        ("S_WITHIN(geometry, POLYGON((-1 -1, 4 -1, 4 2, -1 2, -1 -1)))", [T, T, F, F]),
        ("S_CONTAINS(geometry, POINT(5 5))", [F, F, F, T]),
        ("S_INTERSECTS(geometry, BBOX(2.5, 0.5, 2.6, 0.6))", [F, T, F, T]),
        ("S_TOUCHES(geometry, LINESTRING(1 0, 1 1))", [T, F, F, F]),
    ],
)
def test_evaluation_table(text: str, expected: list[bool]) -> None:
    assert matches(text) == expected


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        # literal first: spatial and temporal predicates are mirrored (within <-> contains, before <-> after)
        (
            {"op": "s_within", "args": [{"type": "Point", "coordinates": [5, 5]}, GEOMETRY]},
            [F, F, F, T],
        ),
        ({"op": "t_after", "args": [{"date": "1970-01-02"}, {"property": "datetime"}]}, [T, T, F, F]),
        ({"op": "between", "args": [{"property": "gsd"}, [10, 30]]}, [T, F, F, T]),  # bounds as one list
        ({"op": "in", "args": [{"property": "gsd"}, []]}, [F, F, F, F]),
        ({"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [2.5, -1, 0, 2.6, 0.6, 5]}]}, [F, T, F, T]),
        (True, [T, T, T, T]),
        (False, [F, F, F, F]),
    ],
)
def test_evaluation_of_json_trees(tree: dict | bool, expected: list[bool]) -> None:
    assert matches(tree) == expected  # type: ignore[arg-type]


def test_only_active_rows_match() -> None:
    active = np.array([True, True, False, False])
    assert matches("S_INTERSECTS(geometry, POINT(0.5 0.5))", active) == [T, F, F, F]
    assert matches("gsd > 0 OR gsd IS NULL", active) == [T, T, F, F]


@pytest.mark.parametrize(
    ("filter_", "reason"),
    [
        ("gsd = 'thirty'", "cannot compare a number property with string"),
        ("platform = 3", "cannot compare a string property with number"),
        ("datetime = 3", "cannot compare a timestamp with number"),
        ("gsd = platform", "cannot compare number with string properties"),
        ("TRUE = 1", "cannot compare boolean"),
        ("gsd LIKE '3%'", "LIKE applies to string properties"),
        ("S_INTERSECTS(gsd, POINT(0 0))", "spatial functions compare the 'geometry' property"),
        ("T_INTERSECTS(gsd, DATE('1970-01-01'))", "temporal functions compare a timestamp property"),
        ("datetime = INTERVAL('1970-01-01', '..')", "not an open interval"),
        ("T_INTERSECTS(datetime, INTERVAL('1970-01-02', '1970-01-01'))", "INTERVAL ends before it starts"),
        ("datetime = DATE('1970-02-30')", "invalid DATE literal"),
        ("datetime = TIMESTAMP('1970-01-01T25:00:00Z')", "invalid datetime"),
        ({"op": "=", "args": [{"property": "gsd"}]}, "needs 2 argument(s)"),
        ({"op": "frobnicate", "args": []}, "unsupported CQL2 operator"),
        ({"op": "and", "args": []}, "needs arguments"),
        ({"op": "in", "args": [{"property": "gsd"}, 3]}, "'in' needs a list"),
        ({"op": "between", "args": [{"property": "gsd"}, 1]}, "'between' needs"),
        ({"op": "like", "args": [{"property": "id"}, 3]}, "LIKE needs a string pattern"),
        ({"op": "=", "args": [{"property": "gsd"}, float("nan")]}, "NaN is not a CQL2 number"),
        ({"op": "=", "args": [{"property": 3}, 1]}, "property name must be a string"),
        ({"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [0, 0, 1]}]}, "BBOX needs 4 or 6"),
        (
            {"op": "s_intersects", "args": [GEOMETRY, {"type": "MultiPoint", "coordinates": []}]},
            "empty",
        ),
        ({"property": "gsd"}, "not a boolean CQL2 expression"),
        ({"op": "t_intersects", "args": [{"property": "datetime"}, {"interval": ["1970-01-01"]}]}, "start and an end"),
    ],
)
def test_errors_name_the_problem(filter_: str | dict, reason: str) -> None:
    with pytest.raises(FilterError) as info:
        matches(filter_)
    assert reason in str(info.value), str(info.value)


def test_huge_geometry_literal_is_refused_twice() -> None:
    """Each vertex is three tree terms, so the term limit refuses a huge literal first; the evaluator's own vertex
    limit still holds for a tree that skipped ``parse_filter``."""
    line = [[float(i % 7), float(i // 7)] for i in range(MAX_VERTICES + 1)]
    tree = {"op": "s_intersects", "args": [{"property": "geometry"}, {"type": "LineString", "coordinates": line}]}
    with pytest.raises(FilterError, match="terms"):
        parse_filter(tree)
    with pytest.raises(FilterError, match=f"more than {MAX_VERTICES} vertices"):
        Evaluator(RECORDS, ALL).matches(tree)  # type: ignore[arg-type]
    tree["args"][1]["coordinates"] = line[:MAX_VERTICES]  # type: ignore[index]
    # the zigzag (x 0..6, y 0..1428) crosses every footprint
    assert Evaluator(RECORDS, ALL).matches(tree).tolist() == [T, T, T, T]  # type: ignore[arg-type]


# -- limits, at their exact boundaries ------------------------------------------------------------------------------
def test_text_nesting_boundary() -> None:
    inner = "id = 'a-1'"
    assert matches("(" * MAX_FILTER_DEPTH + inner + ")" * MAX_FILTER_DEPTH) == [T, F, F, F]
    with pytest.raises(FilterError, match=f"nested more than {MAX_FILTER_DEPTH} levels"):
        parse_filter("(" * (MAX_FILTER_DEPTH + 1) + inner + ")" * (MAX_FILTER_DEPTH + 1))


def test_json_nesting_boundary() -> None:
    # at the limit the text is scanned and parsed (and refused for not being an object); one more level is not
    with pytest.raises(FilterError, match="must be an object"):
        parse_filter("[" * MAX_FILTER_DEPTH + "]" * MAX_FILTER_DEPTH, "cql2-json")
    with pytest.raises(FilterError, match="nested more than"):
        parse_filter("[" * (MAX_FILTER_DEPTH + 1) + "]" * (MAX_FILTER_DEPTH + 1), "cql2-json")


def test_parsed_tree_depth_and_size_limits() -> None:
    tree: dict = {"op": "=", "args": [{"property": "id"}, "a-1"]}
    depth = 3  # the comparison, its argument list, the property object
    while depth + 2 <= MAX_FILTER_DEPTH:  # each NOT adds its own object and argument list
        tree, depth = {"op": "not", "args": [tree]}, depth + 2
    assert parse_filter(tree) is tree
    with pytest.raises(FilterError, match="nested more than"):
        parse_filter({"op": "not", "args": [tree]})
    terms = {"op": "in", "args": [{"property": "gsd"}, list(range(MAX_FILTER_NODES))]}
    with pytest.raises(FilterError, match=f"more than {MAX_FILTER_NODES} terms"):
        parse_filter(terms)
    terms["args"][1] = list(range(MAX_FILTER_NODES - 10))  # type: ignore[index]
    assert parse_filter(terms) is terms


def test_length_boundaries() -> None:
    prefix, suffix = "id = '", "'"
    longest = prefix + "a" * (MAX_FILTER_LENGTH - len(prefix) - len(suffix)) + suffix
    assert len(longest) == MAX_FILTER_LENGTH and matches(longest) == [F, F, F, F]
    with pytest.raises(FilterError, match=f"longer than {MAX_FILTER_LENGTH} characters"):
        parse_filter(longest + " ")
    assert compile_like("%" * MAX_LIKE_PATTERN)("anything")
    with pytest.raises(FilterError, match=f"longer than {MAX_LIKE_PATTERN}"):
        compile_like("_" * (MAX_LIKE_PATTERN + 1))


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("%", "", True),
        ("_", "", False),
        ("_", "x", True),
        ("a\\", "a\\", True),  # a trailing backslash stands for itself
        ("a\\_c", "a_c", True),
        ("a\\_c", "abc", False),
        ("%a%b%", "xxaxxbxx", True),
        ("%a%b%", "xxbxxaxx", False),
        ("A%", "a", False),  # case-sensitive, as CQL2 LIKE without CASEI
    ],
)
def test_like_table(pattern: str, value: str, expected: bool) -> None:
    assert compile_like(pattern)(value) is expected
