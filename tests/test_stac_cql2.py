"""CQL2 parsing details of the STAC filter (no server): exact 64-bit integers, errors, LIKE patterns."""

from __future__ import annotations

import pytest

from pixelquery_tiler.stac_api.cql2_filter import FilterError, compile_like, parse_filter

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
    [("gsd >>> 3", None), ("(gsd = 3", "cql2-text"), ("{oops", "cql2-json"), ("[1, 2]", "cql2-json"), ("gsd = 3", "cql2-xml")],
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
