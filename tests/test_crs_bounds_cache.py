"""``crs.transform_bounds`` remembers its answers (bounded LRU): the per-item mosaic asks for the same request
bounds once per item; the answer must be pyproj's, for tuples, lists and arrays alike."""

from __future__ import annotations

import numpy as np
from pyproj import Transformer

from pixelquery_tiler import crs

BOUNDS = (-5_009_377.085697311, -3_757_032.814272983, -4_383_204.9499851465, -3_130_860.6785608195)


def test_repeated_bounds_are_answered_from_the_cache() -> None:
    expected = Transformer.from_crs("EPSG:3857", "EPSG:32721", always_xy=True).transform_bounds(*BOUNDS, densify_pts=21)
    first = crs.transform_bounds("EPSG:3857", "EPSG:32721", BOUNDS)
    hits = crs._transform_bounds.cache_info().hits
    assert crs.transform_bounds("EPSG:3857", "EPSG:32721", list(BOUNDS)) == first
    assert crs.transform_bounds("EPSG:3857", "EPSG:32721", np.array(BOUNDS)) == first
    assert crs._transform_bounds.cache_info().hits == hits + 2
    assert first == expected  # exactly pyproj's answer


def test_same_crs_passes_through() -> None:
    assert crs.transform_bounds("EPSG:3857", "EPSG:3857", BOUNDS) is BOUNDS
