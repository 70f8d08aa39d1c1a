"""CRS keys and coordinate transforms: the package's one home for ``pyproj`` transformers.

Thread-safety rule: one process-wide cache of ``pyproj.Transformer`` objects, shared by every thread. Since
pyproj 3.1 a ``Transformer`` keeps its PROJ object in a ``threading.local`` and builds one per thread on first
use, so sharing the Python object between the threadpool workers that run tile, STAC and ingest-job code is
safe (pyproj's own "multithreading" guarantee); callers must not hold the PROJ object itself.
"""

from __future__ import annotations

from functools import lru_cache

from pyproj import Transformer
from rasterio.crs import CRS

BBox = tuple[float, float, float, float]


def crs_id(crs: CRS | str) -> str:
    """A short hashable CRS key (``EPSG:n`` when there is one, else WKT); strings pass through."""
    if isinstance(crs, str):
        return crs
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


@lru_cache(maxsize=256)
def _wkt(crs: str) -> str:
    return CRS.from_user_input(crs).to_wkt()


@lru_cache(maxsize=256)
def transformer(src: str, dst: str) -> Transformer:
    """An ``always_xy`` transformer from ``src`` to ``dst`` (CRS keys or WKT), shared by all threads (see above)."""
    return Transformer.from_crs(_wkt(src), _wkt(dst), always_xy=True)


def transform_bounds(src: str, dst: str, bounds: BBox) -> BBox:
    """``bounds`` from ``src`` to ``dst`` (densified edges, as GDAL does).

    Remembered (a bounded LRU): a read asks for the same request bounds in an item's CRS once per item in the
    per-item mosaic and again for its level choice, ~15-25 us of PROJ work each time."""
    if src == dst:
        return bounds
    return _transform_bounds(src, dst, tuple(bounds))  # (a list or array of four numbers: hashable now)


@lru_cache(maxsize=4096)
def _transform_bounds(src: str, dst: str, bounds: BBox) -> BBox:
    return transformer(src, dst).transform_bounds(*bounds, densify_pts=21)
