"""Pure cores of a read's inputs: band selection and band math (``bands``), output windows (``window``)."""

from __future__ import annotations

import morecantile
import pytest
from rasterio.crs import CRS
from rio_tiler.errors import InvalidBufferSize, InvalidExpression

from pixelquery_tiler.bands import MAX_EXPRESSION_BANDS, expression_bands, select_bands, split_bands
from pixelquery_tiler.errors import InvalidParameter, OutputTooLarge, TileOutsideTMS
from pixelquery_tiler.limits import check_output_size, feature_geometry
from pixelquery_tiler.window import buffered, checked_bbox, tile_window

BANDS = ["red", "green", "blue", "nir"]


def test_band_lists_bidx_and_expressions_resolve_onto_stored_names():
    assert split_bands(" red, nir ,") == ["red", "nir"] and split_bands(None) is None
    assert select_bands(BANDS, BANDS, None, None) == (BANDS, None)
    assert select_bands(BANDS, BANDS, (4, 1), None) == (["nir", "red"], None)
    used, rewritten = select_bands(["nir", "red"], BANDS, None, "(NIR-b2)/(nir+b2)")
    assert used == ["nir", "red"] and rewritten == "(nir - red) / (nir + red)"  # b2 = the reader's second band
    with pytest.raises(InvalidParameter):
        select_bands(BANDS, BANDS, 5, None)
    with pytest.raises(InvalidParameter):
        split_bands(" , ")


def test_expressions_over_the_limits_or_unknown_bands_are_refused():
    for bad in ("swir+red", "b9*2", "1+1", ";".join(["red"] * (MAX_EXPRESSION_BANDS + 1)), "+".join(["red"] * 600)):
        with pytest.raises(InvalidExpression):
            expression_bands(bad, BANDS, BANDS)


def test_output_windows():
    web = morecantile.tms.get("WebMercatorQuad")
    bbox, width, height = tile_window(web, 1, 0, 1, tilesize=512)
    assert (width, height) == (512, 512) and bbox[0] == pytest.approx(0) and bbox[1] == pytest.approx(0)
    with pytest.raises(TileOutsideTMS):
        tile_window(web, 2, 0, 1)
    assert buffered((0, 0, 256, 256), 256, 256, 1) == ((-1, -1, 257, 257), 258, 258)
    with pytest.raises(InvalidBufferSize):
        buffered((0, 0, 256, 256), 256, 256, 0.3)
    wgs84 = CRS.from_epsg(4326)
    assert checked_bbox([0, 0, 1, 1], wgs84, wgs84) == (0, 0, 1, 1)
    with pytest.raises(InvalidParameter):
        checked_bbox((1, 0, 0, 1), wgs84, wgs84)


def test_request_limits():
    check_output_size(4096, 4096)
    for width, height in ((0, 10), (4097, 4096)):
        with pytest.raises(OutputTooLarge):
            check_output_size(width, height)
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    assert feature_geometry({"type": "Feature", "geometry": square}) == square
    with pytest.raises(OutputTooLarge):
        feature_geometry(square, max_vertices=3)
    with pytest.raises(InvalidParameter):
        feature_geometry({"type": "GeometryCollection", "geometries": []})
