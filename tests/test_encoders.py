"""The PNG fast path's encoder: every layout it writes decodes (with GDAL's PNG driver) to the exact input."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.io import MemoryFile

from pixelquery_tiler.encoders import PNG_ZLEVEL, encode_png


def decode(png: bytes) -> np.ndarray:
    with MemoryFile(png) as mem, mem.open() as ds:
        assert ds.driver == "PNG"
        return ds.read()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("bands,with_alpha", [(1, False), (1, True), (3, False), (3, True), (4, False)])
@pytest.mark.parametrize("level", [0, PNG_ZLEVEL, 12])
def test_png_decodes_to_the_input(dtype, bands: int, with_alpha: bool, level: int) -> None:
    rng = np.random.default_rng(bands * 10 + level)
    top = np.iinfo(dtype).max
    data = rng.integers(0, top, (bands, 37, 53), dtype=dtype, endpoint=True)
    data[:, :10] = 7  # a compressible run next to noise, as in real tiles
    alpha = np.where(rng.random((37, 53)) < 0.2, 0, top).astype(dtype) if with_alpha else None
    png = encode_png(data, alpha, level)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    expected = np.concatenate([data, alpha[None]]) if with_alpha else data
    np.testing.assert_array_equal(decode(png), expected)  # lossless: no tolerance
