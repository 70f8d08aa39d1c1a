"""Adversarial and edge inputs to the STAC API over real HTTP: each is a 4xx with a short body, never a 500.

Also the one date grammar as a client sees it: the README's ``datetime=2020-05-01/2020-12-31`` written as
raw HTTP (the ``/`` unescaped, as curl sends it) on ``/stac/search`` means the same as on tiles.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from stac_fixtures import StacServer


def _landsat_dates(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text[:500]
    return sorted(f["properties"]["datetime"] for f in r.json()["features"] if f["collection"] == "landsat")


def test_date_only_intervals_are_whole_utc_days_on_search(stac_server: StacServer) -> None:
    raw = f"{stac_server.stac}/search?collections=landsat&datetime=2020-05-01/2020-06-03&limit=100"
    assert _landsat_dates(httpx.get(raw)) == ["2020-05-18T13:30:00Z", "2020-06-03T13:30:00Z"]  # 06-03 13:30 is in
    one_day = {"collections": "landsat", "datetime": "2020-06-03/2020-06-03"}
    day = httpx.get(f"{stac_server.stac}/search", params=one_day)
    assert _landsat_dates(day) == ["2020-06-03T13:30:00Z"]
    items = httpx.get(f"{stac_server.stac}/collections/landsat/items?datetime=2020-07-21/..")
    assert _landsat_dates(items) == ["2020-07-21T13:30:00Z"]
    lone = httpx.get(f"{stac_server.stac}/search?datetime=2020-06-03")  # RFC 3339 only: STAC API conformance
    assert lone.status_code == 400 and "2020-06-03/2020-06-03" in lone.text
    body = {"collections": ["landsat"], "datetime": "2020-05-01/2020-06-03"}
    post = httpx.post(f"{stac_server.stac}/search", json=body)
    assert _landsat_dates(post) == ["2020-05-18T13:30:00Z", "2020-06-03T13:30:00Z"]
    by_date = {"collections": "landsat", "filter": "datetime = DATE('2020-06-03')"}
    cql2 = httpx.get(f"{stac_server.stac}/search", params=by_date)
    assert _landsat_dates(cql2) == ["2020-06-03T13:30:00Z"]
    bad = httpx.get(f"{stac_server.stac}/search?datetime=2020-02-30")
    assert bad.status_code == 400 and "2020-02-30" in bad.text


def _token(n: str) -> str:
    return base64.urlsafe_b64encode(('{"c":"landsat","i":"x","n":' + n + "}").encode()).decode().rstrip("=")


GETS = [
    {"filter": "(" * 3000 + "id='a'" + ")" * 3000},
    {"filter": "datetime > DATE('9999-12-31') AND datetime < DATE('0001-01-01')"},
    {"filter": '{"op": "=", "args": [{"property": "gsd"}, 1' + "0" * 400 + "]}", "filter-lang": "cql2-json"},
    {"filter": "[" * 3000 + "]" * 3000, "filter-lang": "cql2-json"},
    {"filter": "id LIKE '" + "%_" * 200 + "'"},
    {"token": _token("1e400")},
    {"token": _token("-5")},
    {"token": _token('"x"')},
    {"limit": "1e400"},
    {"limit": "NaN"},
    {"limit": "-1"},
    {"bbox": "-inf,0,1,1"},
    {"bbox": "0,0,1,1e400"},
    {"ids": ",".join(["a"] * 1001)},
    {"collections": ",".join(["a"] * 1001)},
    {"sortby": ",".join(["id"] * 17)},
    {"fields": ",".join(["id"] * 101)},
    {"intersects": '{"type": "Point", "coordinates": [Infinity, 0]}'},
    {"datetime": "2020-01-01/" * 20},
]


@pytest.mark.parametrize("params", GETS, ids=range(len(GETS)))
def test_bad_get_inputs_are_4xx_with_a_short_body(stac_server: StacServer, params: dict[str, str]) -> None:
    r = httpx.get(f"{stac_server.stac}/search", params=params)
    if r.status_code == 200:  # valid but matching nothing is fine for some (the far-future filter)
        assert r.json()["features"] == []
        return
    assert 400 <= r.status_code < 500, (params, r.status_code, r.text[:300])
    assert len(r.content) < 2_000, r.text[:300]


POSTS = [
    b"null",
    b"[]",
    b"3",
    b'"search"',
    b'{"bbox": [-Infinity, 0, 1, 1]}',
    b'{"bbox": [0, 0, 1, NaN]}',
    b'{"limit": 1e400}',
    b'{"limit": -3}',
    b'{"limit": 0}',
    b'{"filter": {"op": "=", "args": [{"property": "gsd"}, 1' + b"0" * 400 + b"]}}",
    b'{"filter": ' + b'{"op": "not", "args": [' * 300 + b"true" + b"]}" * 300 + b"}",
    b'{"intersects": {"type": "Point", "coordinates": [1e400, 0]}}',
    b'{"datetime": "2020-02-30"}',
    json.dumps({"intersects": {"type": "LineString", "coordinates": [[0, i / 1e4] for i in range(10_001)]}}).encode(),
    b'{"ids": "' + b"x" * 10_000 + b'", "sortby": [{"field": "nope", "direction": "asc"}]}',
]


@pytest.mark.parametrize("body", POSTS, ids=range(len(POSTS)))
def test_bad_post_bodies_are_4xx_with_a_short_body(stac_server: StacServer, body: bytes) -> None:
    r = httpx.post(f"{stac_server.stac}/search", content=body, headers={"content-type": "application/json"})
    if r.status_code == 200:
        assert r.json()["features"] == []
        return
    assert 400 <= r.status_code < 500, (body[:100], r.status_code, r.text[:300])
    assert len(r.content) < 2_000, r.text[:300]


def test_large_bodies_are_refused_before_parsing(stac_server: StacServer) -> None:
    ring = [[i / 1e6, 0.0] for i in range(200_000)]
    body = json.dumps({"intersects": {"type": "LineString", "coordinates": ring}}).encode()
    assert len(body) > 1_000_000
    r = httpx.post(f"{stac_server.stac}/search", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and len(r.content) < 300, r.text[:300]

    def chunks():  # no Content-Length: counted as it arrives
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    r = httpx.post(f"{stac_server.stac}/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text[:300]


def test_partial_items_match_the_declared_response_schema(stac_server: StacServer) -> None:
    """The fields extension returns items without ``geometry``; the OpenAPI document must allow that."""
    import jsonschema

    api = httpx.get(f"{stac_server.url}/api").raise_for_status().json()
    for path, method, request in [
        (
            "/stac/search",
            "get",
            lambda: httpx.get(f"{stac_server.stac}/search", params={"fields": "id,properties.gsd"}),
        ),
        (
            "/stac/search",
            "post",
            lambda: httpx.post(f"{stac_server.stac}/search", json={"fields": {"include": ["id"]}}),
        ),
        (
            "/stac/collections/{collection_id}/items",
            "get",
            lambda: httpx.get(f"{stac_server.stac}/collections/landsat/items", params={"fields": "-geometry"}),
        ),
        ("/stac/search", "get", lambda: httpx.get(f"{stac_server.stac}/search")),  # whole items fit too
    ]:
        declared = api["paths"][path][method]["responses"]["200"]["content"]["application/geo+json"]["schema"]
        body = request().raise_for_status().json()
        assert body["features"]
        jsonschema.validate(body, {**declared, "components": api["components"]})
