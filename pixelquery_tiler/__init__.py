"""pixelquery-tiler: XYZ/WMTS tiles and a STAC API over a PixelQuery warehouse."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Collection", "CollectionNotFound", "Warehouse", "__version__", "create_app"]

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .warehouse import Collection, CollectionNotFound, Warehouse

#: names re-exported from ``.warehouse`` on first use (PEP 562): importing the package (and so the CLI's
#: ``--help``) must not pay for pyiceberg, pyarrow and rasterio (~1 s of imports)
_LAZY = {"Warehouse", "Collection", "CollectionNotFound"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import warehouse

        return getattr(warehouse, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_app(warehouse: str, **kwargs) -> FastAPI:
    """The FastAPI app serving tiles and the STAC API for ``warehouse`` (imported lazily: heavy)."""
    from .app import create_app as _create_app

    return _create_app(warehouse, **kwargs)
