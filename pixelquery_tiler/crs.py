"""CRS keys and coordinate transforms shared by the read path (one transformer cache, thread-safe).

``pyproj.Transformer`` objects are not safe to share between threads; rio-tiler and titiler call readers from
a threadpool, so the cache below hands each thread its own transformers.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from pyproj import Transformer
from rasterio.crs import CRS

BBox = tuple[float, float, float, float]

_local = threading.local()


def crs_id(crs: CRS | str) -> str:
    """A short hashable CRS key (``EPSG:n`` when there is one, else WKT); strings pass through."""
    if isinstance(crs, str):
        return crs
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


@lru_cache(maxsize=256)
def _wkt(crs: str) -> str:
    return CRS.from_user_input(crs).to_wkt()


def transformer(src: str, dst: str) -> Transformer:
    """An ``always_xy`` transformer from ``src`` to ``dst`` (CRS keys), cached per thread."""
    cache: dict[tuple[str, str], Transformer] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    key = (src, dst)
    if key not in cache:
        if len(cache) >= 256:
            cache.clear()
        cache[key] = Transformer.from_crs(_wkt(src), _wkt(dst), always_xy=True)
    return cache[key]


def transform_bounds(src: str, dst: str, bounds: BBox) -> BBox:
    """``bounds`` from ``src`` to ``dst`` (densified edges, as GDAL does)."""
    if src == dst:
        return bounds
    return transformer(src, dst).transform_bounds(*bounds, densify_pts=21)
