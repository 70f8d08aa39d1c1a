"""The nearest-neighbour sampler that replaces GDAL's warp for nearest reads (``pixelquery_tiler.sampling``).

Truth is the exact answer: every output pixel centre transformed with PROJ (no approximation) and floored
into the source grid. GDAL's warp approximates the transform to 0.125 source pixel, so it is not the
reference here; the read path's agreement with rio-tiler/GDAL is checked in test_reader.py.
"""

from __future__ import annotations

import morecantile
import numpy as np
from affine import Affine
from pyproj import Transformer

from pixelquery_tiler import sampling

WEB = morecantile.tms.get("WebMercatorQuad")
UTM21S = "EPSG:32721"


def exact_nearest(src: np.ndarray, src_transform: Affine, src_crs: str, tile: morecantile.Tile, size: int = 256):
    b = WEB.xy_bounds(tile)
    dst_transform = Affine((b.right - b.left) / size, 0, b.left, 0, -(b.top - b.bottom) / size, b.top)
    cols, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    x, y = Transformer.from_crs("EPSG:3857", src_crs, always_xy=True).transform(*(dst_transform @ (cols, rows)))
    fc = (x - src_transform.c) / src_transform.a
    fr = (y - src_transform.f) / src_transform.e
    c, r = np.floor(fc + 1e-10).astype(int), np.floor(fr + 1e-10).astype(int)
    inside = (c >= 0) & (c < src.shape[2]) & (r >= 0) & (r < src.shape[1])
    out = np.zeros((src.shape[0], size, size), src.dtype)
    out[:, inside] = src[:, r[inside], c[inside]]
    # distance (source pixels) of each centre to the nearest pixel boundary, in either direction
    edge = np.minimum(np.abs(fc - np.rint(fc)), np.abs(fr - np.rint(fr)))
    return out, inside, dst_transform, edge


def utm_source(res: float = 30.0) -> tuple[np.ndarray, Affine]:
    rng = np.random.default_rng(0)
    src = rng.integers(1, 60000, (2, 900, 800), dtype=np.uint16)
    return src, Affine(res, 0, 700005, 0, -res, -2780025)


def test_matches_the_exact_transform_on_a_reprojected_tile() -> None:
    src, st = utm_source()
    lon, lat = Transformer.from_crs(UTM21S, "EPSG:4326", always_xy=True).transform(700005 + 12000, -2780025 - 13500)
    for z in (10, 12, 14):  # overview-like, native and upsampled output
        tile = WEB.tile(lon, lat, z)
        want, want_inside, dt, edge = exact_nearest(src, st, UTM21S, tile)
        got = sampling.sample_nearest(src, st, UTM21S, dt, "EPSG:3857", 256, 256)
        assert got is not None
        data, inside = got
        # the interpolated centres are off by at most MAX_ERROR_PX source pixels (GDAL's own tolerance), so
        # only centres that close to a pixel boundary may pick the neighbour, and those are few
        differ = (data != want).any(axis=0) | (inside != want_inside)
        assert (edge[differ] <= sampling.MAX_ERROR_PX).all(), (z, edge[differ].max())
        assert differ.mean() <= 0.01, (z, differ.mean())
        assert (data[:, ~inside] == 0).all()


def test_same_crs_scaled_grid_is_exact() -> None:
    src, st = utm_source()
    dst = Affine(45.0, 0, 700005 + 1000, 0, -45.0, -2780025 - 2000)  # 1.5 source pixels per output pixel
    data, inside = sampling.sample_nearest(src, st, UTM21S, dst, UTM21S, 300, 200)
    cols, rows = np.meshgrid(np.arange(300) + 0.5, np.arange(200) + 0.5)
    c = np.floor((1000 + cols * 45.0) / 30.0).astype(int)
    r = np.floor((2000 + rows * 45.0) / 30.0).astype(int)
    assert inside.all()
    np.testing.assert_array_equal(data, src[:, r, c])


def test_leaves_to_gdal_what_the_lattice_cannot_approximate() -> None:
    """A whole-world tile from a UTM zone: points outside the projection's domain, or error > 0.125 px."""
    src, st = utm_source()
    b = WEB.xy_bounds(morecantile.Tile(0, 0, 0))
    world = Affine((b.right - b.left) / 256, 0, b.left, 0, -(b.top - b.bottom) / 256, b.top)
    assert sampling.sample_nearest(src, st, UTM21S, world, "EPSG:3857", 256, 256) is None
    rotated = Affine(30.0, 1.0, 700005, 0, -30.0, -2780025)
    assert sampling.sample_nearest(src, rotated, UTM21S, world, "EPSG:3857", 256, 256) is None
    # outputs beyond a 1024 px tile (large previews and parts) are warped by GDAL in bounded chunks
    part = Affine(30.0, 0, 700005, 0, -30.0, -2780025)
    assert sampling.sample_nearest(src, st, UTM21S, part, UTM21S, 1100, 1000) is None
    assert sampling.sample_nearest(src, st, UTM21S, part, UTM21S, 1024, 1024) is not None


def test_inside_extent_matches_exact_centres() -> None:
    """Footprints for the 'first' mosaic: output pixels whose centre lies inside an item's extent."""
    extent = (700005.0, -2780025.0 - 27000, 700005.0 + 24000, -2780025.0)
    lon, lat = Transformer.from_crs(UTM21S, "EPSG:4326", always_xy=True).transform(700005 + 12000, -2780025 - 13500)
    tile = WEB.tile(lon, lat, 10)  # the extent covers part of the tile
    b = WEB.xy_bounds(tile)
    dst = Affine((b.right - b.left) / 256, 0, b.left, 0, -(b.top - b.bottom) / 256, b.top)
    cols, rows = np.meshgrid(np.arange(256) + 0.5, np.arange(256) + 0.5)
    x, y = Transformer.from_crs("EPSG:3857", UTM21S, always_xy=True).transform(*(dst @ (cols, rows)))
    want = (x >= extent[0]) & (x <= extent[2]) & (y >= extent[1]) & (y <= extent[3])
    tolerance = 7.5  # metres: a quarter of a 30 m pixel's half, as the mosaic asks
    got = sampling.inside_extent(UTM21S, "EPSG:3857", dst, 256, 256, extent, tolerance)
    assert got is not None and 0 < got.mean() < 1
    # only centres within the tolerance of an edge may differ
    near_edge = np.minimum.reduce(
        [np.abs(x - extent[0]), np.abs(x - extent[2]), np.abs(y - extent[1]), np.abs(y - extent[3])]
    )
    assert (near_edge[got != want] <= tolerance).all()
