"""CQL2 parsing details of the STAC filter (no server): exact 64-bit integers, errors, LIKE patterns."""

from __future__ import annotations

import numpy as np
import pytest

from pixelquery_tiler.stac_api.cql2_filter import Evaluator, FilterError, compile_like, parse_filter
from pixelquery_tiler.stac_api.records import Column

BIG = 6437419547234234123  # > 2^53: a double would round it to ...4234240


def test_cql2_text_keeps_big_integers_exact() -> None:
    tree = parse_filter(f"pixelquery:snapshot_id = {BIG}")
    assert tree == {"op": "=", "args": [{"property": "pixelquery:snapshot_id"}, BIG]}
    tree = parse_filter(f"\"pixelquery:snapshot_id\" IN ({BIG}, -{BIG}) AND pixelquery:source = 'x{BIG}'")
    in_args = tree["args"][0]["args"][1]
    assert in_args == [BIG, -BIG] and all(isinstance(v, int) for v in in_args)
    assert tree["args"][1]["args"][1] == f"x{BIG}"  # inside a string literal: untouched


def test_cql2_text_small_numbers_and_json_passthrough() -> None:
    assert parse_filter("gsd >= 30.5") == {"op": ">=", "args": [{"property": "gsd"}, 30.5]}
    as_json = {"op": "=", "args": [{"property": "pixelquery:snapshot_id"}, BIG]}
    assert parse_filter(as_json) is as_json
    assert parse_filter(f'{{"op": "=", "args": [{{"property": "id"}}, {BIG}]}}', "cql2-json")["args"][1] == BIG
    assert parse_filter(None) is None


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("gsd >>> 3", None),
        ("(gsd = 3", "cql2-text"),
        ("{oops", "cql2-json"),
        ("[1, 2]", "cql2-json"),
        ("gsd = 3", "cql2-xml"),
    ],
)
def test_invalid_filters_raise_filter_error(text: str, lang: str | None) -> None:
    with pytest.raises(FilterError):
        parse_filter(text, lang)


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("landsat%", ["landsat", "landsat-8"], ["xlandsat"]),
        ("l_ndsat", ["landsat", "lendsat"], ["laandsat"]),
        (r"100\%", ["100%"], ["1000"]),
        ("a.b*", ["a.b*"], ["aXbb"]),
    ],
)
def test_like_patterns(pattern: str, matches: list[str], misses: list[str]) -> None:
    like = compile_like(pattern)
    assert all(like(m) for m in matches)
    assert not any(like(m) for m in misses)


# -- bounds checked before parsing (issue: one 6 KB GET killed a worker with SIGSEGV inside the parser) --------
@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("(" * 3000 + "id='a'" + ")" * 3000, "cql2-text"),
        ("NOT " * 3000 + "id='a'", "cql2-text"),
        ("gsd = " + "-" * 3000 + "1", "cql2-text"),
        ("gsd = " + "f(" * 2000 + "1" + ")" * 2000, "cql2-text"),
        ("[" * 3000 + "]" * 3000, "cql2-json"),
        ('{"op": "not", "args": [' * 200 + "true" + "]}" * 200, "cql2-json"),
    ],
)
def test_deep_nesting_is_refused_before_parsing(text: str, lang: str) -> None:
    with pytest.raises(FilterError, match="nested more than 64 levels"):
        parse_filter(text, lang)


def test_nesting_and_length_limits() -> None:
    assert parse_filter("(" * 60 + "id='a'" + ")" * 60) == {"op": "=", "args": [{"property": "id"}, "a"]}
    assert parse_filter("NOT NOT gsd IN (-1, -2, -3)")["op"] == "not"
    with pytest.raises(FilterError, match="longer than 20000 characters"):
        parse_filter("id = '" + "a" * 20_000 + "'")
    deep: dict = {"op": "=", "args": [{"property": "id"}, "a"]}
    for _ in range(100):
        deep = {"op": "not", "args": [deep]}
    with pytest.raises(FilterError, match="nested more than"):
        parse_filter(deep)  # a POST body's filter is already a dict: its tree is measured too


def test_huge_numbers_do_not_overflow() -> None:
    assert parse_filter("gsd = 1" + "0" * 400)["args"][1] == float("inf")
    assert (
        parse_filter('{"op": "=", "args": [{"property": "gsd"}, 1' + "0" * 400 + "]}", "cql2-json")["args"][1]
        == 10**400
    )


def test_like_has_no_catastrophic_backtracking() -> None:
    like = compile_like("%_%_%_%_%_%_%_%_%_%_%_%_%_%_%_%_!")
    assert not like("a" * 60)  # a backtracking regex (.*..*. ...) takes hours on this
    assert like("a" * 59 + "!")
    assert compile_like("%%%a%%")("xxaxx") and not compile_like("a%%%")("ba")
    with pytest.raises(FilterError, match="longer than 256"):
        compile_like("%" * 257)


# -- evaluation over columns (three-valued logic, dates as whole UTC days) -------------------------------------
class Columns:
    """The two things the evaluator needs from ``ItemRecords``: a length and named columns."""

    def __init__(self, **columns: Column):
        self.columns = columns

    def __len__(self) -> int:
        return 3

    def column(self, name: str) -> Column | None:
        return self.columns.get(name)


DAY = 86_400_000_000
RECORDS = Columns(
    id=Column("string", np.array(["a-1", "b-2", "c-3"], dtype=object), np.zeros(3, bool)),
    datetime=Column(
        "timestamp", np.array([0, DAY - 1, DAY], np.int64), np.zeros(3, bool)
    ),  # 1970-01-01, its last us, 01-02
    gsd=Column("number", np.array([30.0, np.nan, 60.0]), np.array([False, True, False])),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("datetime = DATE('1970-01-01')", [True, True, False]),
        ("datetime > DATE('1970-01-01')", [False, False, True]),
        ("datetime = '1970-01-01'", [True, True, False]),
        ("datetime > DATE('9999-12-31')", [False, False, False]),
        ("T_INTERSECTS(datetime, INTERVAL('1970-01-01', '1970-01-01'))", [True, True, False]),
        ("datetime = TIMESTAMP('1970-01-01T00:00:00Z')", [True, False, False]),
        ("gsd > 40", [False, False, True]),
        ("NOT gsd > 40", [True, False, False]),  # unknown (null gsd) stays unselected under NOT
        ("gsd IS NULL", [False, True, False]),
        ("id LIKE '%-_'", [True, True, True]),
        ("id LIKE 'b%' OR gsd = 30", [True, True, False]),
        ("gsd = 1" + "0" * 400, [False, False, False]),
    ],
)
def test_evaluation(text: str, expected: list[bool]) -> None:
    active = np.ones(3, bool)
    assert Evaluator(RECORDS, active).matches(parse_filter(text)).tolist() == expected  # type: ignore[arg-type]


# -- one registry of item properties drives sortables, queryables, columns and documents -----------------------
def test_property_registry_is_the_one_vocabulary() -> None:
    from pixelquery_tiler.stac_api.properties import ITEM_PROPERTIES, SORTABLES, queryables

    names = [p.name for p in ITEM_PROPERTIES]
    assert len(names) == len(set(names))
    assert list(queryables()) == [p.name for p in ITEM_PROPERTIES if p.queryable]
    assert list(SORTABLES) == [p.name for p in ITEM_PROPERTIES if p.sortable]
    assert "geometry" in queryables() and "geometry" not in SORTABLES
    assert all(p.value is not None for p in ITEM_PROPERTIES if p.name.startswith("pixelquery:"))
