"""Synthetic rasters at archive sizes and resolutions (shared by tests and benchmarks).

Content is smooth and band-limited like real elevation or reflectance (random Fourier components with a
1/f amplitude spectrum, quantised to integers), so codecs see realistic entropy, not noise or constants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window


def _field(rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, components: int = 24) -> np.ndarray:
    """Sum of random plane waves over normalised coordinates; amplitude 1/f; roughly in [-1, 1]."""
    out = np.zeros((ys.size, xs.size), np.float32)
    total = 0.0
    for _ in range(components):
        f = rng.uniform(1, 120)
        angle = rng.uniform(0, np.pi)
        amp = 1.0 / f
        phase = rng.uniform(0, 2 * np.pi)
        out += amp * np.sin(2 * np.pi * f * (np.cos(angle) * xs[None, :] + np.sin(angle) * ys[:, None]) + phase)
        total += amp
    return out / total


def write_global_grid(path: Path, width: int = 4320, height: int = 2160, seed: int = 5) -> Path:
    """A global 5-arcminute int16 EPSG:4326 grid (elevation-like metres), deflate-compressed GeoTIFF."""
    rng = np.random.default_rng(seed)
    ys, xs = np.linspace(0, 1, height, dtype=np.float32), np.linspace(0, 2, width, dtype=np.float32)
    data = (_field(rng, ys, xs) * 4000 + rng.normal(0, 1, (height, width))).astype(np.int16)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "int16",
        "crs": "EPSG:4326",
        "transform": Affine(360 / width, 0, -180, 0, -180 / height, 90),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 2,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.update_tags(TIFFTAG_DATETIME="2020:01:01 00:00:00")
    return path


def write_scene(path: Path, size: int = 10980, bands: int = 4, seed: int = 7, compress: str | None = "deflate") -> Path:
    """A Sentinel-2-sized multi-band uint16 10 m UTM scene, written strip by strip (never whole in memory).

    Separable waves (``f(y) * g(x)``) keep generation to a few seconds at 10980 x 10980 x 4.
    """
    rng = np.random.default_rng(seed)
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=bands,
        dtype="uint16",
        crs="EPSG:32633",
        transform=Affine(10, 0, 300000, 0, -10, 5000040),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        nodata=0,
        **({"compress": compress, "predictor": 2} if compress else {}),
    )
    t = np.linspace(0, 1, size, dtype=np.float32)
    waves = [
        [
            (np.sin(2 * np.pi * rng.uniform(1, 60) * t + rng.uniform(0, 6)), np.sin(2 * np.pi * rng.uniform(1, 60) * t))
            for _ in range(3)
        ]
        for _ in range(bands)
    ]
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, 512):
            h = min(512, size - r0)
            block = np.empty((bands, h, size), np.uint16)
            for b in range(bands):
                acc = np.full((h, size), 2000 + 300 * b, np.float32)
                for fy, gx in waves[b]:
                    acc += 500 * fy[r0 : r0 + h, None] * gx[None, :]
                acc += rng.integers(0, 16, (h, size), dtype=np.uint16)
                block[b] = acc.astype(np.uint16)
            dst.write(block, window=Window(0, r0, size, h))
        dst.update_tags(TIFFTAG_DATETIME="2021:06:01 10:00:00")
    return path
