"""Scenes made of real pixels: per-band files split from the shared Landsat 7 raster, named like real products.

Nothing ships a multi-file Landsat C2 or Sentinel-2 scene small enough for tests, so the bands of
``stars_L7_ETMs_olinda_28m.tif`` (real ETM+ pixels) are written one per file under the product naming
conventions; the "20 m" Sentinel-2 band is that file's band 5 averaged 2x2 (a true coarser grid over the same
area). Also: a tiny threaded HTTP server with Range support, serving a folder on loopback (GDAL's /vsicurl/
needs ranges).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from servers import free_port, http_server

STARS = "stars_L7_ETMs_olinda_28m.tif"
LANDSAT_ID = "LC08_L2SP_214066_20200518_20200526_02_T1"
#: Landsat C2 band suffix -> band index in the stars file (ETM+ 1, 2, 3 = blue, green, red)
LANDSAT_BANDS = {"B2": 1, "B3": 2, "B4": 3}
S2_SCENE = "T25MGP_20200523T133239"


def _write(path: Path, data: np.ndarray, profile: dict, transform: Affine) -> Path:
    out = dict(
        profile,
        driver="GTiff",
        count=1,
        width=data.shape[1],
        height=data.shape[0],
        transform=transform,
        nodata=0,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    with rasterio.open(path, "w", **out) as dst:
        dst.write(data, 1)
    return path


def landsat_scene(folder: Path, data_dir: Path, bands: dict[str, int] = LANDSAT_BANDS) -> list[Path]:
    """Per-band Landsat C2 L2 files (``<id>_SR_B2.TIF``...), one per band of the stars raster."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(data_dir / STARS) as src:
        profile, transform = src.profile, src.transform
        return [
            _write(folder / f"{LANDSAT_ID}_SR_{suffix}.TIF", src.read(i), profile, transform)
            for suffix, i in bands.items()
        ]


def sentinel2_scene(folder: Path, data_dir: Path) -> dict[str, Path]:
    """A Sentinel-2-named scene: B04, B08 on the native grid ("10m") and B11 on a 2x coarser grid ("20m")."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(data_dir / STARS) as src:
        profile, transform = src.profile, src.transform
        red, nir, swir = src.read(3), src.read(4), src.read(5)
    h, w = swir.shape[0] // 2 * 2, swir.shape[1] // 2 * 2
    coarse = swir[:h, :w].reshape(h // 2, 2, w // 2, 2).astype(np.float64).mean(axis=(1, 3))
    coarse = np.clip(np.rint(coarse), 1, 255).astype(np.uint8)  # keep 0 as nodata only
    return {
        "red": _write(folder / f"{S2_SCENE}_B04_10m.tif", red, profile, transform),
        "nir": _write(folder / f"{S2_SCENE}_B08_10m.tif", nir, profile, transform),
        "swir16": _write(folder / f"{S2_SCENE}_B11_20m.tif", coarse, profile, transform @ Affine.scale(2)),
    }


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=a-b`` support (206), as object stores and CDNs answer."""

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def send_head(self):  # type: ignore[override]
        path = self.translate_path(self.path)
        rng = self.headers.get("Range")
        if not rng or not os.path.isfile(path):
            return super().send_head()
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        size = os.path.getsize(path)
        if not m:
            self.send_error(416)
            return None
        start = int(m.group(1)) if m.group(1) else max(0, size - int(m.group(2)))
        end = min(int(m.group(2)), size - 1) if m.group(1) and m.group(2) else size - 1
        if start >= size:
            self.send_error(416)
            return None
        f = open(path, "rb")  # noqa: SIM115  (returned to http.server, which closes it after copyfile)
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile) -> None:  # type: ignore[override]
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        while remaining > 0:
            buf = source.read(min(65536, remaining))
            if not buf:
                break
            outputfile.write(buf)
            remaining -= len(buf)
        self._remaining = None


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on a free loopback port; yields the base URL, stops the server after."""
    with http_server(functools.partial(RangeHandler, directory=str(folder))) as url:
        yield url


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    return free_port()
