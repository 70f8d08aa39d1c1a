"""Scenes: ingest of a multi-file Landsat-sized scene vs rio-cogeo, and an RGB tile of a 3-file scene vs TiTiler.

    python benchmarks/scenes.py [--width 7800 --height 7900] [--tiles 30] [--skip-ingest] [--skip-tiles]
                                [--s2-size 10980 (0: skip)]

1. Ingest: seven single-band uint16 files (smooth synthetic surface-reflectance-like content, deflate GeoTIFF,
   named as one Landsat C2 scene) -> ``Warehouse.ingest_sources`` (one item, one band group, one commit) vs
   ``cog_translate`` of each file with the ``rio cogeo create`` defaults, summed. Both in-process, one run each
   (the files are large; the ratio, not the absolute time, is what the goal states).
2. Tile: the first three bands as a 3-file scene; the p50 over ``--tiles`` native-zoom tiles of our
   ``/collections/{c}/tiles/...npy?bands=red,green,blue`` vs titiler's ``MultiBaseTilerFactory(reader=STACReader)``
   ``/tiles/...npy?assets=red&assets=green&assets=blue`` over a STAC Item of the three COGs, both through an
   in-process ``TestClient``, after one untimed warm-up each.
3. Sentinel-2 expression tile: a 10 m nir (B08) and a 20 m swir16 (B11) file of one Sentinel-2-named scene (one
   item, two band groups); the p50 over z14 tiles of our ``...npy?expression=(nir-swir16)/(nir+swir16)`` vs
   STACReader's ``assets=nir&assets=swir16&expression=(b1-b2)/(b1+b2)`` over COGs of the two files.
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
S2_SCENE = "T21JYN_20200523T133239"


def _band_file(path: Path, width: int, height: int, res: float, b: int, rng: np.random.Generator) -> Path:
    """One smooth uint16 band (sums of low-frequency sines plus mild noise) over the same UTM area, by strips."""
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint16",
        crs="EPSG:32621",
        transform=Affine(res, 0, 600000, 0, -res, -2700000),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        nodata=0,
    )
    x = np.linspace(0, 6 * np.pi, width, dtype=np.float32)[None, :]
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, height, 512):
            rows = min(512, height - r0)
            y = np.linspace(r0, r0 + rows, rows, dtype=np.float32)[:, None] * (6 * np.pi / height)
            base = 9000 + 2500 * np.sin(x * (1 + 0.1 * b) + y) + 1500 * np.cos(0.7 * y - 0.3 * x)
            data = base + rng.normal(0, 150, (rows, width)).astype(np.float32)
            dst.write(np.clip(data, 1, 65535).astype(np.uint16)[None], window=((r0, r0 + rows), (0, width)))
    return path


def synth(folder: Path, width: int, height: int) -> list[Path]:
    """Seven 30 m bands of one Landsat C2-named scene, one file each."""
    rng = np.random.default_rng(7)
    return [_band_file(folder / f"{SCENE}_SR_{name}.TIF", width, height, 30, b, rng) for b, name in enumerate(BANDS)]


def synth_s2(folder: Path, size: int) -> dict[str, Path]:
    """A Sentinel-2-named scene: nir (B08) at 10 m, ``size`` px square, and swir16 (B11) at 20 m over the same area."""
    rng = np.random.default_rng(11)
    return {
        "nir": _band_file(folder / f"{S2_SCENE}_B08_10m.tif", size, size, 10, 3, rng),
        "swir16": _band_file(folder / f"{S2_SCENE}_B11_20m.tif", size // 2, size // 2, 20, 4, rng),
    }


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


def _cogs(folder: Path, files: dict[str, Path]) -> dict[str, Path]:
    """``rio cogeo create`` (deflate profile) of each file: what TiTiler reads."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    out = {}
    for name, f in files.items():
        out[name] = folder / f"{f.stem}.cog.tif"
        if not out[name].exists():
            cog_translate(str(f), str(out[name]), cog_profiles.get("deflate"), quiet=True)
    return out


def _stac_item(path: Path, item_id: str, cogs: dict[str, Path]) -> tuple[float, float, float, float]:
    """A STAC Item of the COGs (projection extension from the finest one) at ``path``; its WGS84 bbox."""
    from rasterio.warp import transform_bounds

    with rasterio.open(next(iter(cogs.values()))) as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        proj = {"proj:epsg": 32621, "proj:shape": [src.height, src.width], "proj:transform": list(src.transform)[:6]}
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "bbox": [w, s, e, n],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": {"datetime": "2020-05-18T13:00:00Z", **proj},
        "links": [],
        "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
        "assets": {
            k: {"href": str(v), "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"]}
            for k, v in cogs.items()
        },
    }
    path.write_text(json.dumps(item))
    return w, s, e, n


def _compare(label: str, warehouse: Path, ours_url: str, theirs_url: str, bbox: tuple, z: int, n: int) -> None:
    """p50 of ``n`` tiles around the bbox centre at zoom ``z``: ours vs titiler's STACReader, interleaved."""
    import morecantile
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from rio_tiler.io import STACReader
    from titiler.core.factory import MultiBaseTilerFactory

    from pixelquery_tiler import create_app

    titiler = FastAPI()
    titiler.include_router(MultiBaseTilerFactory(reader=STACReader).router)
    w, s, e, nn = bbox
    t0 = morecantile.tms.get("WebMercatorQuad").tile((w + e) / 2, (s + nn) / 2, z)
    ring = sorted(((dx, dy) for dx in range(-3, 4) for dy in range(-3, 4)), key=lambda d: max(abs(d[0]), abs(d[1])))
    tiles = [(t0.x + dx, t0.y + dy) for dx, dy in ring][:n]  # centre outwards: all inside a full-size scene
    with TestClient(create_app(str(warehouse))) as ours, TestClient(titiler) as theirs:
        times: dict[str, list[float]] = {"ours": [], "titiler": []}
        sides = (("ours", ours, ours_url), ("titiler", theirs, theirs_url))
        for side, client, url in sides:
            warm = client.get(url.format(z=z, x=tiles[0][0], y=tiles[0][1]))  # warm-up
            assert warm.status_code == 200, (side, warm.text[:300])
        for x, y in tiles:  # interleaved, so load changes hit both sides alike
            for side, client, url in sides:
                t = time.perf_counter()
                r = client.get(url.format(z=z, x=x, y=y))
                times[side].append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
    p50 = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(
        f"{label} p50 over {len(tiles)} tiles (z{z}): ours {p50['ours']:.1f} ms, titiler STACReader "
        f"{p50['titiler']:.1f} ms; ratio {p50['ours'] / p50['titiler']:.2f}"
    )


def bench_tiles(folder: Path, files: list[Path], n: int) -> None:
    """RGB tile of the 3-file scene (B4, B3, B2) vs STACReader over the three COGs."""
    from pixelquery_tiler import Warehouse

    rgb = {"red": files[3], "green": files[2], "blue": files[1]}  # Landsat 8 B4, B3, B2
    cogs = _cogs(folder, rgb)
    Warehouse(str(folder / "wh3")).ingest_sources([str(f) for f in rgb.values()], "rgb")
    bbox = _stac_item(folder / "item.json", SCENE, cogs)
    _compare(
        "RGB tile",
        folder / "wh3",
        "/collections/rgb/tiles/WebMercatorQuad/{z}/{x}/{y}.npy?bands=red,green,blue",
        f"/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.npy?url={folder / 'item.json'}&assets=red&assets=green&assets=blue",
        bbox,
        12,  # ~38 m pixels at this latitude: the native zoom of 30 m data
        n,
    )


def bench_s2(folder: Path, size: int, n: int) -> None:
    """NDMI ``(nir-swir16)/(nir+swir16)`` over a 10 m + 20 m scene vs STACReader's expression over both COGs."""
    from pixelquery_tiler import Warehouse

    t = time.perf_counter()
    files = synth_s2(folder, size)
    cogs = _cogs(folder, files)
    Warehouse(str(folder / "wh-s2")).ingest_sources([str(f) for f in files.values()], "s2")
    print(
        f"S2 scene {size} px (10 m) + {size // 2} px (20 m): synthesis, COGs and ingest {time.perf_counter() - t:.1f} s"
    )
    bbox = _stac_item(folder / "s2-item.json", S2_SCENE, cogs)
    expr = "(nir-swir16)/(nir%2Bswir16)"
    _compare(
        "S2 10 m + 20 m expression tile",
        folder / "wh-s2",
        f"/collections/s2/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.npy?expression={expr}",
        f"/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.npy?url={folder / 's2-item.json'}"
        "&assets=nir&assets=swir16&expression=(b1-b2)/(b1%2Bb2)",  # rio-tiler 9 names stacked assets b1, b2
        bbox,
        14,  # ~8.7 m pixels at this latitude: the native zoom of the 10 m band
        n,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=7800)
    parser.add_argument("--height", type=int, default=7900)
    parser.add_argument("--tiles", type=int, default=30)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-tiles", action="store_true")
    parser.add_argument("--s2-size", type=int, default=10980, help="10 m band size in px (0: skip the S2 case)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files: list[Path] = []
        if not (args.skip_ingest and args.skip_tiles):
            t = time.perf_counter()
            files = synth(folder, args.width, args.height)
            print(f"synthesised {len(files)} x {args.height} x {args.width} uint16 in {time.perf_counter() - t:.1f} s")
        if not args.skip_ingest:
            bench_ingest(folder, files)
        if not args.skip_tiles:
            bench_tiles(folder, files, args.tiles)
        if args.s2_size:
            bench_s2(folder, args.s2_size, args.tiles)


if __name__ == "__main__":
    main()
