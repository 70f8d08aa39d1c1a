"""Scenes: ingest of a multi-file Landsat-sized scene vs rio-cogeo, and an RGB tile of a 3-file scene vs TiTiler.

    python benchmarks/scenes.py [--width 7800 --height 7900] [--tiles 30] [--skip-ingest] [--skip-tiles]

1. Ingest: seven single-band uint16 files (smooth synthetic surface-reflectance-like content, deflate GeoTIFF,
   named as one Landsat C2 scene) -> ``Warehouse.ingest_sources`` (one item, one band group, one commit) vs
   ``cog_translate`` of each file with the ``rio cogeo create`` defaults, summed. Both in-process, one run each
   (the files are large; the ratio, not the absolute time, is what the goal states).
2. Tile: the first three bands as a 3-file scene; the p50 over ``--tiles`` native-zoom tiles of our
   ``/collections/{c}/tiles/...npy?bands=red,green,blue`` vs titiler's ``MultiBaseTilerFactory(reader=STACReader)``
   ``/tiles/...npy?assets=red&assets=green&assets=blue`` over a STAC Item of the three COGs, both through an
   in-process ``TestClient``, after one untimed warm-up each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

SCENE = "LC08_L2SP_224077_20200518_20200526_02_T1"
BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]


def synth(folder: Path, width: int, height: int) -> list[Path]:
    """Seven smooth uint16 bands (sums of low-frequency sines plus mild noise), one file each, written by strips."""
    rng = np.random.default_rng(7)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint16",
        crs="EPSG:32621",
        transform=Affine(30, 0, 600000, 0, -30, -2700000),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        nodata=0,
    )
    x = np.linspace(0, 6 * np.pi, width, dtype=np.float32)[None, :]
    paths = []
    for b, name in enumerate(BANDS):
        path = folder / f"{SCENE}_SR_{name}.TIF"
        with rasterio.open(path, "w", **profile) as dst:
            for r0 in range(0, height, 512):
                rows = min(512, height - r0)
                y = np.linspace(r0, r0 + rows, rows, dtype=np.float32)[:, None] * (6 * np.pi / height)
                base = 9000 + 2500 * np.sin(x * (1 + 0.1 * b) + y) + 1500 * np.cos(0.7 * y - 0.3 * x)
                data = base + rng.normal(0, 150, (rows, width)).astype(np.float32)
                dst.write(np.clip(data, 1, 65535).astype(np.uint16)[None], window=((r0, r0 + rows), (0, width)))
        paths.append(path)
    return paths


def bench_ingest(folder: Path, files: list[Path]) -> None:
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    from pixelquery_tiler import Warehouse

    t0, c0 = time.perf_counter(), time.process_time()
    for f in files:
        cog_translate(str(f), str(folder / f"{f.stem}.cog.tif"), cog_profiles.get("deflate"), quiet=True)
    cog, cog_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    [result] = Warehouse(str(folder / "wh")).ingest_sources([str(f) for f in files], "bench")
    ours, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"ingest of {len(files)} band files ({result.result.chunks} chunks): {ours:.2f} s "
        f"({ours / len(files):.2f} s per band file, CPU {ours_cpu:.1f} s); rio cogeo create: {cog:.2f} s "
        f"(CPU {cog_cpu:.1f} s); ratio {ours / cog:.2f} (CPU ratio {ours_cpu / cog_cpu:.2f})"
    )


def bench_tiles(folder: Path, files: list[Path], n: int) -> None:
    import morecantile
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles
    from rio_tiler.io import STACReader
    from titiler.core.factory import MultiBaseTilerFactory

    from pixelquery_tiler import Warehouse, create_app

    rgb = {"red": files[3], "green": files[2], "blue": files[1]}  # Landsat 8 B4, B3, B2
    cogs = {}
    for name, f in rgb.items():
        cogs[name] = folder / f"{f.stem}.cog.tif"
        if not cogs[name].exists():
            cog_translate(str(f), str(cogs[name]), cog_profiles.get("deflate"), quiet=True)
    Warehouse(str(folder / "wh3")).ingest_sources([str(f) for f in rgb.values()], "rgb")
    with rasterio.open(files[0]) as src:
        from rasterio.warp import transform_bounds

        w, s, e, nn = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        proj = {"proj:epsg": 32621, "proj:shape": [src.height, src.width], "proj:transform": list(src.transform)[:6]}
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": SCENE,
        "bbox": [w, s, e, nn],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, nn], [w, nn], [w, s]]]},
        "properties": {"datetime": "2020-05-18T13:00:00Z", **proj},
        "links": [],
        "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
        "assets": {
            k: {"href": str(v), "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"]}
            for k, v in cogs.items()
        },
    }
    (folder / "item.json").write_text(json.dumps(item))
    titiler = FastAPI()
    titiler.include_router(MultiBaseTilerFactory(reader=STACReader).router)
    tms = morecantile.tms.get("WebMercatorQuad")
    z = 12  # ~38 m pixels at this latitude: the native zoom of 30 m data
    centre = ((w + e) / 2, (s + nn) / 2)
    t0 = tms.tile(*centre, z)
    ring = sorted(((dx, dy) for dx in range(-3, 4) for dy in range(-3, 4)), key=lambda d: max(abs(d[0]), abs(d[1])))
    tiles = [(t0.x + dx, t0.y + dy) for dx, dy in ring][:n]  # centre outwards: all inside a full-size scene
    ours_url = "/collections/rgb/tiles/WebMercatorQuad/{z}/{x}/{y}.npy?bands=red,green,blue"
    theirs_url = (
        "/tiles/WebMercatorQuad/{z}/{x}/{y}.npy?url="
        + str(folder / "item.json")
        + "&assets=red&assets=green&assets=blue"
    )
    with TestClient(create_app(str(folder / "wh3"))) as ours, TestClient(titiler) as theirs:
        times: dict[str, list[float]] = {"ours": [], "titiler": []}
        for label, client, url in (("ours", ours, ours_url), ("titiler", theirs, theirs_url)):
            warm = client.get(url.format(z=z, x=tiles[0][0], y=tiles[0][1]))  # warm-up
            assert warm.status_code == 200, (label, warm.text[:300])
        for x, y in tiles:  # interleaved, so load changes hit both sides alike
            for label, client, url in (("ours", ours, ours_url), ("titiler", theirs, theirs_url)):
                t = time.perf_counter()
                r = client.get(url.format(z=z, x=x, y=y))
                times[label].append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
    p50 = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(
        f"RGB tile p50 over {len(tiles)} tiles (z{z}): ours {p50['ours']:.1f} ms, titiler STACReader "
        f"{p50['titiler']:.1f} ms; ratio {p50['ours'] / p50['titiler']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=7800)
    parser.add_argument("--height", type=int, default=7900)
    parser.add_argument("--tiles", type=int, default=30)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-tiles", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        files = synth(folder, args.width, args.height)
        print(f"synthesised {len(files)} x {args.height} x {args.width} uint16 in {time.perf_counter() - t:.1f} s")
        if not args.skip_ingest:
            bench_ingest(folder, files)
        if not args.skip_tiles:
            bench_tiles(folder, files, args.tiles)


if __name__ == "__main__":
    main()
