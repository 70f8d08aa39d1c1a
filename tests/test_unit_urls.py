"""``urls.py``, the one home of the tile URL patterns: what each builder returns, and that every URL the documents
link to is a route the app actually serves (matched by the app's own router, no request made)."""

from __future__ import annotations

import pytest
from starlette.routing import Match

from pixelquery_tiler import urls


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (urls.collection_path("landsat"), "collections/landsat"),
        (urls.collection_path("a b/c?d#e"), "collections/a%20b%2Fc%3Fd%23e"),  # ids are one quoted segment
        (urls.item_path("c", "LC08_x/1"), "collections/c/items/LC08_x%2F1"),
        (urls.source_path("c"), "collections/c"),
        (urls.source_path("c", "i"), "collections/c/items/i"),
        (urls.tile_path("collections/c"), "collections/c/tiles/WebMercatorQuad/{z}/{x}/{y}.png"),
        (urls.tile_path("/x", "WorldCRS84Quad", 3, 4, 5, "npy"), "/x/tiles/WorldCRS84Quad/3/4/5.npy"),
        (urls.tilejson_path("collections/c"), "collections/c/WebMercatorQuad/tilejson.json"),
        (urls.capabilities_path("collections/c"), "collections/c/WMTSCapabilities.xml"),
        (urls.kvp_path("collections/c"), "collections/c/wmts"),
        (urls.preview_path("collections/c"), "collections/c/preview.png"),
        (urls.preview_path("collections/c", "jpeg"), "collections/c/preview.jpeg"),
        (urls.wmts_layer("c"), "c_WebMercatorQuad_default"),
        (urls.wmts_layer("c", "i", "WorldCRS84Quad"), "c_i_WorldCRS84Quad_default"),
    ],
)
def test_builders(built: str, expected: str) -> None:
    assert built == expected


def test_prefixes_match_the_builders() -> None:
    assert "/" + urls.collection_path("C") == urls.COLLECTION_PREFIX.format(cid="C")
    assert "/" + urls.item_path("C", "I") == urls.ITEM_PREFIX.format(cid="C", iid="I")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    from pixelquery_tiler import create_app

    return create_app(str(tmp_path_factory.mktemp("urls-warehouse")), refresh_interval=0.0)


def routed(app, path: str) -> bool:
    """Whether a GET of ``path`` reaches a route (any route: matching is all that is checked)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": [], "query_string": b""}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def _documented(base: str) -> list[str]:
    return [
        urls.tile_path(base, z=1, x=2, y=3),
        urls.tile_path(base, "WorldCRS84Quad", 1, 2, 3, "npy"),
        urls.tile_path(base, z=1, x=2, y=3).replace(".png", "@2x.png"),
        urls.tilejson_path(base),
        urls.capabilities_path(base),
        urls.kvp_path(base),
        urls.preview_path(base),
    ]


@pytest.mark.parametrize("base", ["/" + urls.collection_path("landsat"), "/" + urls.item_path("landsat", "LC08.x")])
def test_every_built_url_is_served(app, base: str) -> None:
    unrouted = [p for p in _documented(base) if not routed(app, p)]
    assert unrouted == []
    # the check can fail: near misses of the same patterns are not routed
    for miss in (f"{base}/tile/WebMercatorQuad/1/2/3.png", f"{base}/WMTSCapabilities.json", f"{base}/wmts/x"):
        assert not routed(app, miss), miss


@pytest.mark.parametrize("prefix", [urls.COLLECTION_PREFIX, urls.ITEM_PREFIX])
@pytest.mark.parametrize("scaled", urls.SCALED_TILE_ROUTES)
def test_scaled_tile_routes_are_served_under_both_prefixes(app, prefix: str, scaled: str) -> None:
    template = (prefix + scaled).replace(":int}", "}")
    path = template.format(cid="c", iid="i", tileMatrixSetId="WebMercatorQuad", z=1, x=2, y=3, scale=2, format="png")
    assert routed(app, path), path
