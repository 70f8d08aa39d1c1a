"""pixelquery-tiler: XYZ/WMTS tiles and a STAC API over a PixelQuery warehouse."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .warehouse import Collection, CollectionNotFound, Warehouse

__version__ = "0.1.0"
__all__ = ["Collection", "CollectionNotFound", "Warehouse", "__version__", "create_app"]

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app(warehouse: str, **kwargs) -> FastAPI:
    """The FastAPI app serving tiles and the STAC API for ``warehouse`` (imported lazily: heavy)."""
    from .app import create_app as _create_app

    return _create_app(warehouse, **kwargs)
