"""Tile-serving benchmark: pixelquery-tiler vs TiTiler over the same rasters and the same seeded tiles.

Run from the repository root::

    python benchmarks/tiles.py                 # full run (>= 200 tiles, uvicorn, 1M-row index, 10,000-tile RSS)
    python benchmarks/tiles.py --quick         # smoke run: few tiles, short HTTP load, small RSS loop
    python benchmarks/tiles.py --http-only --soak-seconds 600 --workdir DIR   # uvicorn comparison + 10 min soak

It prints numbers and ratios (ours / TiTiler; < 1 means we are faster) and asserts nothing:

1. per-tile latency in-process (reader + PNG render, the work an endpoint does) p50/p95 for both;
2. through uvicorn (2 workers each, concurrency 8, loopback only, bounded duration): p50/p95, throughput and
   server CPU per request; the load comes from ``wrk`` (a C client, so it barely competes with the servers
   for the CPU) when installed, else from an asyncio/httpx loader in this process (printed which);
3. a 10-observation mosaic tile (default pixel selection) vs a single-observation tile;
4. a zoomed-out tile covering the whole collection vs a native-zoom tile;
5. the PNG-encode floor for the same tiles (GDAL's encoder as TiTiler uses it, and ours);
6. index lookup time at 1,000,000 synthetic catalog rows;
7. resident memory (RSS) after N in-process tiles;
8. the whole app in-process (ASGI through Starlette's TestClient, no sockets): tile and WMTS-capabilities
   requests through every middleware, dependency and route class, the HTTP layer's own cost included;
9. with ``--soak-seconds``: our server alone (2 workers) under one wrk run at ``--soak-concurrency`` (32):
   errors, p50/p95/p99 and the RSS of every process sampled 20 times, anonymous and file-backed apart.

TiTiler reads each source converted to a COG with rio-cogeo (deflate, averaged overviews), which is how one
would deploy it; both sides render PNG with nearest resampling.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import morecantile
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PIXELQUERY_TEST_DATA", REPO.parent / "shared" / "data"))
WEB = morecantile.tms.get("WebMercatorQuad")
MOSAIC_SOURCE = "gw_LC08_224077_20200518_B2_30m.tif"


# -- setup -------------------------------------------------------------------------------------------------------------
def build(workdir: Path, quiet: bool = False) -> tuple[str, dict[str, str], dict[str, Path]]:
    """Warehouse (one collection per raster + a 10-observation mosaic) and the rasters as COGs."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    from pixelquery_tiler import Warehouse

    uri = str(workdir / "warehouse")
    reuse = (workdir / "warehouse" / "catalog.db").exists() and (workdir / "built").exists()  # --workdir reused
    wh = Warehouse(uri)
    collections, cogs = {}, {}
    for src in sorted(DATA.glob("*.tif")):
        cid = src.stem.lower().replace("_", "-")[:50]
        collections[src.name] = cid
        cogs[src.name] = workdir / f"{src.stem}.cog.tif"
        if reuse:
            continue
        wh.ingest(str(src), cid, datetime="2020-01-01")
        profile = cog_profiles.get("deflate") | {"blockxsize": 256, "blockysize": 256}
        cog_translate(str(src), str(cogs[src.name]), profile, overview_resampling="average", quiet=True)
    for i in range(0 if reuse else 10):
        wh.ingest(
            str(DATA / MOSAIC_SOURCE), "mosaic10", datetime=(dt.datetime(2020, 1, 1) + dt.timedelta(days=i)).isoformat()
        )
    (workdir / "built").touch()
    if not quiet:
        print(f"warehouse: {uri} ({len(collections)} collections + mosaic10{', reused' if reuse else ''})")
    return uri, collections, cogs


def build_anchor(workdir: Path) -> tuple[str, dict[str, str]]:
    """Warehouse with only the anchor scene of the many-items case (``--only-many-items``)."""
    from pixelquery_tiler import Warehouse

    uri = str(workdir / "warehouse")
    cid = Path(MOSAIC_SOURCE).stem.lower().replace("_", "-")[:50]
    Warehouse(uri).ingest(str(DATA / MOSAIC_SOURCE), cid, datetime="2020-01-01")
    return uri, {MOSAIC_SOURCE: cid}


def render_indexes(name: str) -> tuple[int, ...] | None:
    """PNG holds at most 4 bands: both servers are asked for the first three of wider rasters."""
    import rasterio

    with rasterio.open(DATA / name) as ds:
        return (1, 2, 3) if ds.count > 4 else None


def seeded_tiles(cogs: dict[str, Path], count: int, seed: int) -> list[tuple[str, morecantile.Tile]]:
    """``count`` WebMercatorQuad tiles with data, spread over the rasters and zooms maxzoom-2..maxzoom+1.

    "With data" means at least one valid pixel in TiTiler's tile: a tile inside a raster's bounds but over
    nodata only (SF Bay's corners) is an empty image there and a 404 here, not a comparable request.
    """
    from rio_tiler.io import Reader

    rng = random.Random(seed)
    candidates = []
    for name, cog in cogs.items():
        with Reader(str(cog)) as src:
            w, s, e, n = src.get_geographic_bounds(WEB.rasterio_geographic_crs)
            for z in range(src.maxzoom - 2, src.maxzoom + 2):
                tiles = [t for t in WEB.tiles(w, s, e, n, [z]) if src.tile_exists(t.x, t.y, t.z)]
                candidates.extend((name, t) for t in tiles)
    rng.shuffle(candidates)
    picked: list[tuple[str, morecantile.Tile]] = []
    readers = {name: Reader(str(cog)) for name, cog in cogs.items()}
    try:
        for name, t in candidates:
            if len(picked) == count:
                break
            if readers[name].tile(t.x, t.y, t.z).mask.any():  # rio-tiler mask: 255 = valid
                picked.append((name, t))
    finally:
        for reader in readers.values():
            reader.close()
    while len(picked) < count:  # few candidates: repeat (each request is still served in full)
        picked.append(rng.choice(picked))
    return picked


# -- measurement helpers -----------------------------------------------------------------------------------------------
def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values) * 1000
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 95))


def row(label: str, ours: float, theirs: float, unit: str = "ms") -> None:
    ratio = ours / theirs if theirs else float("nan")
    print(f"  {label:<38} ours {ours:9.2f} {unit:<6} titiler {theirs:9.2f} {unit:<6} ratio {ratio:6.2f}")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- in-process --------------------------------------------------------------------------------------------------------
def ours_tile(uri: str) -> Callable[[str, morecantile.Tile], bytes]:
    from rio_tiler.errors import TileOutsideBounds
    from titiler.core.resources.enums import ImageType

    from pixelquery_tiler import Warehouse
    from pixelquery_tiler.reader import PixelQueryReader
    from pixelquery_tiler.tiles import render_tile

    wh = Warehouse(uri, refresh_interval=3600)

    def run(cid: str, t: morecantile.Tile, indexes: tuple[int, ...] | None = None) -> bytes:
        with PixelQueryReader(wh.collection(cid)) as src:
            try:
                img = src.tile(t.x, t.y, t.z, indexes=indexes)
            except TileOutsideBounds:
                # the one seeded tile over Landsat's zero corner: valid in the COG (the file has no nodata), all
                # product nodata here; the server answers it 404 "no data in this view", so it counts as served
                return b""
        return render_tile(img, output_format=ImageType.png)[0]

    return run


def titiler_tile() -> Callable[[Path, morecantile.Tile], bytes]:
    from rio_tiler.io import Reader
    from titiler.core.resources.enums import ImageType
    from titiler.core.utils import render_image

    def run(cog: Path, t: morecantile.Tile, indexes: tuple[int, ...] | None = None) -> bytes:
        with Reader(str(cog)) as src:
            img = src.tile(t.x, t.y, t.z, indexes=indexes)
        return render_image(img, output_format=ImageType.png)[0]

    return run


def bench_in_process(uri: str, collections: dict[str, str], cogs: dict[str, Path], tiles: list) -> None:
    ours, theirs = ours_tile(uri), titiler_tile()
    bidx = {name: render_indexes(name) for name in collections}
    for name, t in tiles[:5]:  # warm caches (PROJ, file handles, index) on both sides
        ours(collections[name], t, bidx[name])
        theirs(cogs[name], t, bidx[name])
    ours_t = [timed(lambda: ours(collections[n], t, bidx[n])) for n, t in tiles]
    their_t = [timed(lambda: theirs(cogs[n], t, bidx[n])) for n, t in tiles]
    (o50, o95), (t50, t95) = percentiles(ours_t), percentiles(their_t)
    print(f"in-process, {len(tiles)} tiles (read + PNG render):")
    row("p50", o50, t50)
    row("p95", o95, t95)

    import zlib

    from rio_tiler.io import Reader
    from rio_tiler.utils import render

    import pixelquery_tiler.encoders as encoders
    from pixelquery_tiler.tiles import encode_png

    def zlib2_png(data: np.ndarray, mask: np.ndarray) -> bytes:
        """The encoder before libdeflate: the same PNG framing, stdlib zlib at level 2."""
        fast = encoders.zlib_compress
        encoders.zlib_compress = lambda raw, level: zlib.compress(raw, 2)
        try:
            return encode_png(data, mask)
        finally:
            encoders.zlib_compress = fast

    gdal_png, our_png, zlib_png, sizes = [], [], [], [0, 0]
    for name, t in tiles:
        with Reader(str(cogs[name])) as src:
            img = src.tile(t.x, t.y, t.z, indexes=bidx[name])
        if img.array.dtype != np.uint8:
            img.rescale(((0, 16000),))
        data, mask = img.data, img.mask
        gdal_png.append(timed(lambda: render(data, mask, img_format="PNG", zlevel=6)))
        our_png.append(timed(lambda: encode_png(data, mask), 3))
        zlib_png.append(timed(lambda: zlib2_png(data, mask), 3))
        sizes[0] += len(encode_png(data, mask))
        sizes[1] += len(zlib2_png(data, mask))
    print("PNG-encode floor (same tiles, 8-bit + alpha):")
    print(
        f"  GDAL PNG zlevel 6 (TiTiler) p50 {percentiles(gdal_png)[0]:.2f} ms; ours (libdeflate level "
        f"{encoders.PNG_ZLEVEL}) p50 {percentiles(our_png)[0]:.2f} ms, {sizes[0] / 1e6:.2f} MB; previous (zlib "
        f"level 2) p50 {percentiles(zlib_png)[0]:.2f} ms, {sizes[1] / 1e6:.2f} MB"
    )
    print(f"  ours: p50 tile {o50:.2f} ms of which encode floor {percentiles(our_png)[0]:.2f} ms")

    pixel_agreement(uri, collections, cogs, tiles, bidx)

    # 10-observation mosaic vs single observation: the same tiles of the Landsat scene
    landsat = [t for n, t in tiles if n == MOSAIC_SOURCE] or [WEB.tile(-54.78, -25.2, 12)]
    for t in landsat:  # warm: the first read of a collection builds its index
        ours(collections[MOSAIC_SOURCE], t)
        ours("mosaic10", t)
    single = [timed(lambda: ours(collections[MOSAIC_SOURCE], t)) for t in landsat for _ in range(5)]
    mosaic = [timed(lambda: ours("mosaic10", t)) for t in landsat for _ in range(5)]
    print(
        f"10-observation mosaic vs single ({len(landsat)} tiles): p50 {percentiles(mosaic)[0]:.2f} ms vs "
        f"{percentiles(single)[0]:.2f} ms, ratio {percentiles(mosaic)[0] / percentiles(single)[0]:.2f} (goal <= 1.5)"
    )

    # zoomed-out tile covering the whole collection vs a native-zoom tile
    from pixelquery_tiler import Warehouse
    from pixelquery_tiler.reader import PixelQueryReader

    view = PixelQueryReader(Warehouse(uri).collection(collections[MOSAIC_SOURCE]))
    w, s, e, n = view.get_geographic_bounds(WEB.rasterio_geographic_crs)
    zoom_out = next(z for z in range(view.maxzoom, -1, -1) if len(list(WEB.tiles(w, s, e, n, [z]))) == 1)
    whole = WEB.tiles(w, s, e, n, [zoom_out]).__next__()
    native = WEB.tile((w + e) / 2, (s + n) / 2, view.maxzoom)
    ours(collections[MOSAIC_SOURCE], whole)
    out_t = [timed(lambda: ours(collections[MOSAIC_SOURCE], whole)) for _ in range(20)]
    nat_t = [timed(lambda: ours(collections[MOSAIC_SOURCE], native)) for _ in range(20)]
    print(
        f"zoomed-out (z{zoom_out}, whole collection) vs native (z{view.maxzoom}): "
        f"p50 {percentiles(out_t)[0]:.2f} ms vs "
        f"{percentiles(nat_t)[0]:.2f} ms, ratio {percentiles(out_t)[0] / percentiles(nat_t)[0]:.2f} (goal <= 2)"
    )


def pixel_agreement(uri: str, collections: dict[str, str], cogs: dict[str, Path], tiles: list, bidx: dict) -> None:
    """Share of pixels identical to TiTiler's (valid on both sides), at native zooms and below, for our nearest
    read with its sampling fast path (``pixelquery_tiler.sampling``) and with GDAL's warp for every read."""
    from rio_tiler.errors import TileOutsideBounds
    from rio_tiler.io import Reader

    import pixelquery_tiler.mosaic as mosaic
    from pixelquery_tiler import Warehouse, sampling
    from pixelquery_tiler.reader import PixelQueryReader

    wh = Warehouse(uri, refresh_interval=3600)
    maxzoom = {}
    for name, cog in cogs.items():
        with Reader(str(cog)) as src:
            maxzoom[name] = src.maxzoom
    fast = mosaic._sample_nearest
    counts: dict[tuple[str, bool], list[int]] = {}
    cpu = {"sampling": 0.0, "GDAL warp": 0.0}
    for name, t in tiles:
        with Reader(str(cogs[name])) as src:
            ref = src.tile(t.x, t.y, t.z, indexes=bidx[name]).array
        with PixelQueryReader(wh.collection(collections[name])) as reader:  # warm files and index, no map cached
            mosaic._sample_nearest = lambda *a, **k: None
            try:
                reader.tile(t.x, t.y, t.z, indexes=bidx[name])
            except TileOutsideBounds:  # all product nodata here (see ours_tile): no pixel to compare
                continue
            finally:
                mosaic._sample_nearest = fast
        for label, sampler in (("GDAL warp", lambda *a, **k: None), ("sampling", fast)):
            mosaic._sample_nearest = sampler
            sampling._cache.clear()  # each tile's coordinate map is built in the timed read
            try:
                with PixelQueryReader(wh.collection(collections[name])) as reader:
                    c0 = time.process_time()
                    img = reader.tile(t.x, t.y, t.z, indexes=bidx[name]).array
                    cpu[label] += time.process_time() - c0
            finally:
                mosaic._sample_nearest = fast
            valid = ~np.ma.getmaskarray(img).any(axis=0) & ~np.ma.getmaskarray(ref).any(axis=0)
            same = (img.data == ref.data).all(axis=0) & valid
            c = counts.setdefault((label, t.z >= maxzoom[name]), [0, 0])
            c[0] += int(same.sum())
            c[1] += int(valid.sum())
    print(
        f"read CPU per tile (reader.tile, no encode, no cached map; alternating per tile): sampling "
        f"{cpu['sampling'] / len(tiles) * 1000:.2f} ms, GDAL warp {cpu['GDAL warp'] / len(tiles) * 1000:.2f} ms, "
        f"ratio {cpu['sampling'] / max(cpu['GDAL warp'], 1e-9):.2f}"
    )
    print("pixels identical to TiTiler's (valid on both sides), nearest:")
    for label in ("sampling", "GDAL warp"):
        native, below = counts.get((label, True), [0, 0]), counts.get((label, False), [0, 0])
        print(
            f"  ours with {label:<10} native zooms {native[0] / max(1, native[1]):.2%}; "
            f"below native {below[0] / max(1, below[1]):.2%}"
        )


def bench_asgi(uri: str, collections: dict[str, str], tiles: list, rounds: int) -> None:
    """Tile and capabilities requests through the full app in-process (see module docstring, 8)."""
    from fastapi.testclient import TestClient

    from pixelquery_tiler import create_app

    bidx = {name: render_indexes(name) for name in collections}
    urls = [
        f"/collections/{collections[n]}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
        + ("?" + "&".join(f"bidx={i}" for i in bidx[n]) if bidx[n] else "")
        for n, t in tiles
    ]
    with TestClient(create_app(uri, refresh_interval=3600)) as client:
        for url in urls[:5]:
            client.get(url)
        cpu = time.process_time()
        tile_t = [timed(lambda: client.get(url)) for url in urls for _ in range(rounds)]
        tile_cpu = (time.process_time() - cpu) / len(tile_t) * 1000
        caps = [f"/collections/{cid}/WMTSCapabilities.xml" for cid in sorted(set(collections.values()))]
        for url in caps:
            client.get(url)
        cpu = time.process_time()
        caps_t = [timed(lambda: client.get(url)) for url in caps for _ in range(rounds)]
        caps_cpu = (time.process_time() - cpu) / len(caps_t) * 1000
    (t50, t95), (c50, c95) = percentiles(tile_t), percentiles(caps_t)
    # process CPU per request (all threads) is steadier than wall time on a shared machine
    print(
        f"app in-process (ASGI), {len(urls)} tiles x {rounds}: p50 {t50:.2f} ms, p95 {t95:.2f} ms, "
        f"CPU {tile_cpu:.2f} ms/request; WMTS capabilities p50 {c50:.2f} ms, p95 {c95:.2f} ms, "
        f"CPU {caps_cpu:.2f} ms/request"
    )


# -- index lookup at 1M rows -------------------------------------------------------------------------------------------
def bench_index(rows: int, seed: int) -> None:
    """Build a synthetic 1M-row catalog (1,000 items x 1,000 chunks) and time the per-tile lookups."""
    import pyarrow as pa

    from pixelquery_tiler.catalog import ARROW_SCHEMA
    from pixelquery_tiler.index import CollectionIndex

    rng = np.random.default_rng(seed)
    items = max(1, rows // 1000)
    per_item = rows // items
    side = int(np.ceil(np.sqrt(per_item)))
    size = 7680.0
    item_idx = np.repeat(np.arange(items), per_item)
    k = np.tile(np.arange(per_item), items)
    ox = rng.uniform(300_000, 700_000, items)[item_idx]
    oy = rng.uniform(-3_000_000, -2_000_000, items)[item_idx]
    minx = ox + (k % side) * size
    maxy = oy - (k // side) * size
    lon0, lat0 = -57 + (minx - 300_000) / 111_000, -18 + maxy / 111_000
    base = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    n = items * per_item
    table = pa.table(
        {
            "item_id": pa.array([f"item-{i:05d}" for i in item_idx]),
            "collection": pa.array(["synthetic"] * n),
            "product": pa.array(["landsat-c2-l2"] * n),
            "datetime": pa.array(
                [base + dt.timedelta(days=int(i)) for i in range(items)], pa.timestamp("us", "UTC")
            ).take(pa.array(item_idx)),
            "tile_id": pa.array(k.astype(str)),
            "level": pa.array(np.zeros(n, np.int32)),
            "crs": pa.array(["EPSG:32721"] * n),
            "minx": minx,
            "miny": maxy - size,
            "maxx": minx + size,
            "maxy": maxy,
            "west": lon0,
            "south": lat0 - 0.07,
            "east": lon0 + 0.07,
            "north": lat0,
            "res_x": np.full(n, 30.0),
            "res_y": np.full(n, 30.0),
            "height": np.full(n, 256, np.int32),
            "width": np.full(n, 256, np.int32),
            "transform": pa.array([[30.0, 0.0, 0.0, 0.0, -30.0, 0.0]] * n, pa.list_(pa.float64())),
            "chunk_file": pa.array(["chunks/x.arrow"] * n),
            "batch_index": pa.array(k.astype(np.int32)),
            "bands": pa.array([["blue"]] * n, pa.list_(pa.string())),
            "dtype": pa.array(["uint16"] * n),
            "nodata": pa.array([None] * n, pa.float64()),
            "band_min": pa.array([[0.0]] * n, pa.list_(pa.float64())),
            "band_max": pa.array([[1.0]] * n, pa.list_(pa.float64())),
            "band_mean": pa.array([[0.5]] * n, pa.list_(pa.float64())),
            "valid_percent": np.full(n, 100.0),
            "cloud_cover": pa.array([None] * n, pa.float64()),
        }
    )
    table = table.select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA)
    start = time.perf_counter()
    index = CollectionIndex(table, [])
    built = time.perf_counter() - start
    lookups = []
    for _ in range(500):
        pos = int(rng.integers(len(index.items)))
        b = index.item_bbox[pos]
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        bbox = (cx - 0.05, cy - 0.05, cx + 0.05, cy + 0.05)
        native = (
            minx[pos * per_item] + 1000,
            maxy[pos * per_item] - 9000,
            minx[pos * per_item] + 9000,
            maxy[pos * per_item] - 1000,
        )
        t0 = time.perf_counter()
        positions = index.select_items(bbox)
        for p in positions[:3]:
            index.chunk_rows(int(p), 0, native)
        lookups.append(time.perf_counter() - t0)
    p50, p95 = percentiles(lookups)
    print(
        f"index lookup at {len(index):,} rows ({len(index.items):,} items): p50 {p50:.3f} ms, p95 {p95:.3f} ms "
        f"(goal < 1 ms); index build {built:.1f} s"
    )


# -- through uvicorn ---------------------------------------------------------------------------------------------------
def titiler_app():
    """uvicorn factory for the TiTiler side: titiler.core's TilerFactory over local COGs (``?url=``)."""
    from fastapi import FastAPI
    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
    from titiler.core.factory import TilerFactory

    app = FastAPI()
    app.include_router(TilerFactory().router, prefix="/cog")
    add_exception_handlers(app, DEFAULT_STATUS_CODES)
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(uri: str, port: int) -> list[str]:
    """Our server as measured: ``pixelquery-tiler serve`` with 2 workers (one ``SO_REUSEPORT`` socket each on
    Linux), access logs off."""
    cmd = [sys.executable, "-m", "pixelquery_tiler", "serve", uri, "--host", "127.0.0.1", "--port", str(port)]
    return [*cmd, "--workers", "2", "--log-level", "warning"]


def start(cmd: list[str], port: int, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    import httpx

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server did not start: {cmd}")


async def load(urls: list[str], concurrency: int) -> tuple[list[float], float, int]:
    """Fallback load generator (httpx on asyncio, in this process): shares the CPU with the servers."""
    import httpx

    latencies: list[float] = []
    errors = 0
    queue = list(urls)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            nonlocal errors
            while queue:
                url = queue.pop()
                t0 = time.perf_counter()
                r = await client.get(url)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        start_t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start_t
    return latencies, elapsed, errors


#: wrk script: every connection walks the URL list from its own offset; done() prints one parseable line. 404s
#: are counted apart: a tile whose pixels are all nodata is a 404 "no data in this view" on our side by design
WRK_LUA = """
local paths = {}
local n = 0
local counter = 0
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  for line in io.lines(args[1]) do n = n + 1; paths[n] = line end
  not_found = 0
end
function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter - 1) % n + 1])
end
function response(status, headers, body)
  if status == 404 then not_found = not_found + 1 end
end
function done(summary, latency, requests)
  local e = summary.errors
  local nf = 0
  for _, t in ipairs(threads) do nf = nf + t:get("not_found") end
  io.write(string.format("PQRESULT %d %d %d %d %.3f %.3f %.3f %d\\n", summary.requests, summary.duration,
    e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, nf))
end
"""


def run_wrk(base: str, paths: list[str], concurrency: int, seconds: float, workdir: Path) -> dict[str, float]:
    """Load ``base`` with wrk (one thread, ``concurrency`` connections, ``seconds`` long) over ``paths`` in turn."""
    script, url_file = workdir / "rotate.lua", workdir / f"urls-{abs(hash(base))}.txt"
    script.write_text(WRK_LUA)
    url_file.write_text("\n".join(paths) + "\n")
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "60s",
            "-s",
            str(script),
            base,
            "--",
            str(url_file),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("PQRESULT"))
    reqs, micros, status_err, sock_err, p50, p95, p99, not_found = line.split()[1:]
    return {
        "requests": int(reqs),
        "elapsed": int(micros) / 1e6,
        "errors": int(status_err) + int(sock_err) - int(not_found),
        "not_found": int(not_found),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
    }


def process_tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``pid`` and each live descendant (uvicorn's master and its workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids, cpu = [pid], {}
    while pids:
        p = pids.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu[p] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                pids.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return cpu


def bench_http(
    uri: str,
    collections: dict[str, str],
    cogs: dict[str, Path],
    tiles: list,
    requests: int,
    concurrency: int,
    seconds: float,
    workdir: Path,
    loader: str = "auto",
    server_env: dict[str, str] | None = None,
) -> None:
    """Both servers under load, one after the other (2 workers each, access logs off on both).

    TiTiler runs as its users run it, ``uvicorn --workers 2``: one listening socket shared by the workers, so
    keep-alive connections may all land on one; ours is ``serve --workers 2``, one socket per worker. The CPU
    seconds per process show the balance each got."""
    import shutil

    use_wrk = loader == "wrk" or (loader == "auto" and shutil.which("wrk") is not None)
    ours_port, their_port = free_port(), free_port()
    ours = start(serve_command(uri, ours_port), ours_port, server_env)
    theirs = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tiles:titiler_app",
            "--factory",
            "--app-dir",
            str(Path(__file__).parent),
            "--host",
            "127.0.0.1",
            "--port",
            str(their_port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        their_port,
    )
    try:
        picks = [tiles[i % len(tiles)] for i in range(requests)]
        bidx = {name: "".join(f"&bidx={i}" for i in render_indexes(name) or ()) for name in collections}
        our_paths = [
            f"/collections/{collections[n]}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?{bidx[n]}" for n, t in picks
        ]
        their_paths = [f"/cog/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?url={cogs[n]}{bidx[n]}" for n, t in picks]
        results = {}
        for label, proc, port, paths in (
            ("ours", ours, ours_port, our_paths),
            ("titiler", theirs, their_port, their_paths),
        ):
            base = f"http://127.0.0.1:{port}"
            # warm the workers: every distinct tile twice (PROJ, open files, per-collection index)
            asyncio.run(load([base + p for p in dict.fromkeys(paths)] * 2, concurrency))
            cpu0 = process_tree_cpu(proc.pid)
            if use_wrk:
                r = run_wrk(base, paths, concurrency, seconds, workdir)
            else:
                lat, elapsed, errors = asyncio.run(load([base + p for p in paths], concurrency))
                p50, p95 = percentiles(lat)
                r = {"requests": len(lat), "elapsed": elapsed, "errors": errors, "p50": p50, "p95": p95}
            cpu1 = process_tree_cpu(proc.pid)
            used = {p: cpu1[p] - cpu0.get(p, 0.0) for p in cpu1}
            r["cpu_ms"] = sum(used.values()) / max(1, r["requests"]) * 1000
            # TiTiler's uvicorn workers share one listening socket: wrk's keep-alive connections may all land on one
            r["split"] = "/".join(f"{v:.1f}" for v in sorted(used.values(), reverse=True) if v >= 0.05)
            results[label] = r
    finally:
        for proc in (ours, theirs):
            proc.terminate()
            proc.wait(timeout=30)
    o, t = results["ours"], results["titiler"]
    how = (
        f"wrk -t1 -c{concurrency} -d{max(1, round(seconds))}s over {len(set(our_paths))} distinct tiles"
        if use_wrk
        else f"asyncio/httpx loader in the benchmark process (wrk not found), {requests} requests"
    )
    print(
        f"through uvicorn (2 workers each: ours one socket per worker, TiTiler `uvicorn --workers 2` with its shared "
        f"socket; concurrency {concurrency}; load: {how}; "
        f"requests ours {o['requests']}, titiler {t['requests']}; errors ours {o['errors']}, titiler {t['errors']}; "
        f"404 no data ours {o.get('not_found', 0)}, titiler {t.get('not_found', 0)}):"
    )
    row("p50", o["p50"], t["p50"])
    row("p95", o["p95"], t["p95"])
    o_tps, t_tps = o["requests"] / o["elapsed"], t["requests"] / t["elapsed"]
    print(
        f"  {'throughput':<38} ours {o_tps:9.1f} tile/s titiler {t_tps:9.1f} tile/s "
        f"ratio {o_tps / t_tps:6.2f} (goal >= 3)"
    )
    row("server CPU per request (all workers)", o["cpu_ms"], t["cpu_ms"])
    print(f"  CPU seconds per server process (busiest first): ours {o['split']}; titiler {t['split']}")


def bench_many_items(uri: str, collections: dict[str, str], workdir: Path, count: int) -> None:
    """A z6 tile over ``count`` overlapping items vs a native-zoom tile of one item (issue goal: <= 2x).

    The items are synthetic 1024 x 1024 px, 30 m UTM 21S rasters (random uint16 reflectance) scattered over
    ~1 degree, every one inside the same z6 WebMercatorQuad tile, one snapshot each, acquired on ``count``
    distinct days; the anchor is a native-zoom tile of the shared Landsat scene (its own collection).
    """
    import rasterio
    from pyproj import Transformer

    from pixelquery_tiler import Warehouse

    rng = np.random.default_rng(7)
    files = []
    for i in range(count):
        path = workdir / f"many-{i:03d}.tif"
        x0, y0 = 700005 + rng.uniform(-40_000, 40_000), -2780025 + rng.uniform(-40_000, 40_000)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=1024,
            height=1024,
            count=1,
            dtype="uint16",
            crs="EPSG:32721",
            transform=rasterio.transform.from_origin(x0, y0, 30, 30),
            nodata=0,
            tiled=True,
        ) as dst:
            dst.write(rng.integers(1, 20000, (1, 1024, 1024), dtype=np.uint16))
        files.append(path)
    wh = Warehouse(uri, refresh_interval=3600)
    start = time.perf_counter()
    for i, path in enumerate(files):
        wh.ingest(str(path), "many", datetime=(dt.datetime(2020, 1, 1) + dt.timedelta(days=i)).isoformat())
    ingest_s = time.perf_counter() - start
    to_wgs84 = Transformer.from_crs("EPSG:32721", "EPSG:4326", always_xy=True)
    lon, lat = to_wgs84.transform(700005 + 15_360, -2780025 - 15_360)
    z6 = WEB.tile(lon, lat, 6)
    ours = ours_tile(uri)
    single_cid = collections[MOSAIC_SOURCE]
    from pixelquery_tiler.reader import PixelQueryReader

    with PixelQueryReader(wh.collection(single_cid)) as view:
        w, s_, e, n = view.get_geographic_bounds(WEB.rasterio_geographic_crs)
        native = WEB.tile((w + e) / 2, (s_ + n) / 2, view.maxzoom)
    for _ in range(2):
        ours("many", z6), ours(single_cid, native)
    many_t, one_t = [], []
    for _ in range(30):  # interleaved: both see the same machine load (30: p50 steadier than of 10)
        many_t.append(timed(lambda: ours("many", z6)))
        one_t.append(timed(lambda: ours(single_cid, native)))
    m, o = percentiles(many_t)[0], percentiles(one_t)[0]
    with PixelQueryReader(wh.collection("many")) as reader:
        used = len(reader.tile(z6.x, z6.y, z6.z).metadata["items"])
    print(
        f"z{z6.z} tile over {count} overlapping items ({used} contributing; ingest {ingest_s:.1f} s) vs native "
        f"z{native.z} single item: p50 {m:.2f} ms vs {o:.2f} ms, ratio {m / o:.2f} (goal <= 2)"
    )


def bench_soak(
    uri: str,
    collections: dict[str, str],
    tiles: list,
    seconds: float,
    concurrency: int,
    workdir: Path,
    server_env: dict[str, str] | None = None,
) -> None:
    """Our server alone under one wrk run at ``concurrency`` for ``seconds``: errors, p50/p99, and the RSS of the
    master and each worker sampled every ``seconds / 20`` (anonymous memory and file-backed pages apart: mapped
    chunk files count as RSS but are page cache the kernel can drop, a leak shows as growing anonymous memory)."""
    import threading

    port = free_port()
    proc = start(serve_command(uri, port), port, server_env)
    samples: list[tuple[float, list[tuple[int, int]]]] = []
    try:
        bidx = {name: "".join(f"&bidx={i}" for i in render_indexes(name) or ()) for name in collections}
        paths = [
            f"/collections/{collections[n]}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?{bidx[n]}" for n, t in tiles
        ]
        base = f"http://127.0.0.1:{port}"
        asyncio.run(load([base + p for p in paths] * 2, 8))
        done = threading.Event()
        result: dict[str, float] = {}

        def run() -> None:
            try:
                result.update(run_wrk(base, paths, concurrency, seconds, workdir))
            finally:
                done.set()

        started = time.monotonic()
        cpu0 = process_tree_cpu(proc.pid)
        samples.append((0.0, process_tree_rss(proc.pid)))
        threading.Thread(target=run, daemon=True).start()
        while not done.wait(seconds / 20):
            samples.append((time.monotonic() - started, process_tree_rss(proc.pid)))
        samples.append((time.monotonic() - started, process_tree_rss(proc.pid)))
        cpu1 = process_tree_cpu(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if not result:
        raise RuntimeError("wrk failed")
    print(
        f"soak: wrk -t1 -c{concurrency} -d{round(seconds)}s over {len(set(paths))} tiles, 2 workers"
        f"{''.join(f', {k}={v}' for k, v in (server_env or {}).items())}: "
        f"{result['requests']} requests, {result['requests'] / result['elapsed']:.1f}/s, errors {result['errors']} "
        f"(404 no data: {result['not_found']}), "
        f"p50 {result['p50']:.1f} ms, p95 {result['p95']:.1f} ms, p99 {result['p99']:.1f} ms"
    )
    used = sorted((cpu1[p] - cpu0.get(p, 0.0) for p in cpu1), reverse=True)
    print("soak CPU seconds per server process (busiest first): " + "/".join(f"{v:.1f}" for v in used if v >= 0.05))
    print("soak RSS MB per process, anonymous+file-backed (master, workers...):")
    for t, rss in samples:
        total = sum(a + f for a, f in rss[1:])
        print(f"  {t / 60:5.1f} min  " + "  ".join(f"{a}+{f}" for a, f in rss) + f"   workers total {total}")


def process_tree_rss(pid: int) -> list[tuple[int, int]]:
    """Resident MB of ``pid`` and its children (uvicorn master first): (anonymous, file-backed + shared)."""
    out, pids = [], [pid]
    while pids:
        p = pids.pop(0)
        try:
            status = dict(
                line.split(":", 1) for line in Path(f"/proc/{p}/status").read_text().splitlines() if ":" in line
            )
            kb = {k: int(status[k].split()[0]) for k in ("RssAnon", "RssFile", "RssShmem")}
            out.append((kb["RssAnon"] // 1024, (kb["RssFile"] + kb["RssShmem"]) // 1024))
            for task in Path(f"/proc/{p}/task").iterdir():
                pids.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, KeyError):
            continue
    return out


def bench_rss(uri: str, collections: dict[str, str], tiles: list, count: int) -> None:
    ours = ours_tile(uri)
    bidx = {name: render_indexes(name) for name in collections}
    gc.collect()
    before = rss_mb()
    for i in range(count):
        name, t = tiles[i % len(tiles)]
        ours(collections[name], t, bidx[name])
    gc.collect()
    print(f"RSS after {count:,} in-process tiles: {rss_mb():.0f} MB (before the loop {before:.0f} MB)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few tiles, short load, small loops")
    parser.add_argument("--tiles", type=int, default=200, help="seeded WebMercatorQuad tiles (default 200)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--requests",
        type=int,
        default=800,
        help="URL list length per server through uvicorn (the asyncio loader sends exactly these)",
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--http-seconds", type=float, default=30, help="wrk load duration per server (default 30)")
    parser.add_argument(
        "--loader",
        choices=("auto", "wrk", "asyncio"),
        default="auto",
        help="HTTP load generator: wrk if installed (auto), else the in-process asyncio/httpx loader",
    )
    parser.add_argument("--index-rows", type=int, default=1_000_000)
    parser.add_argument("--rss-tiles", type=int, default=10_000)
    parser.add_argument("--no-http", action="store_true", help="skip the uvicorn comparison")
    parser.add_argument("--many-items", type=int, default=100, help="items under the low-zoom tile (0: skip)")
    parser.add_argument("--soak-seconds", type=float, default=0, help="also load our server alone this long (wrk)")
    parser.add_argument("--soak-concurrency", type=int, default=32)
    parser.add_argument("--workdir", type=Path, help="keep the warehouse and COGs here (default: a temp dir)")
    parser.add_argument(
        "--only-many-items",
        action="store_true",
        help="run only the low-zoom many-items case (ingests the anchor scene and the synthetic items, nothing else)",
    )
    parser.add_argument("--http-only", action="store_true", help="only the uvicorn comparison and the soak")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of our server (comparison and soak), e.g. MALLOC_ARENA_MAX=2 (repeatable)",
    )
    args = parser.parse_args(argv)
    server_env = dict(item.split("=", 1) for item in args.server_env)
    if args.quick:
        args.tiles, args.requests, args.index_rows, args.rss_tiles, args.http_seconds = 24, 64, 100_000, 200, 5
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.only_many_items:
            print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
            uri, collections = build_anchor(workdir)
            bench_many_items(uri, collections, workdir, 10 if args.quick else args.many_items or 100)
            print(f"load average {os.getloadavg()[0]:.2f}")
            return
        uri, collections, cogs = build(workdir)
        tiles = seeded_tiles(cogs, args.tiles, args.seed)
        print(f"{len(tiles)} seeded tiles (seed {args.seed}) over {len(cogs)} rasters\n")
        if not args.http_only:
            bench_in_process(uri, collections, cogs, tiles)
            print()
            bench_asgi(uri, collections, tiles, 2 if args.quick else 5)
            print()
            bench_index(args.index_rows, args.seed)
            print()
        if args.many_items and not args.http_only:
            bench_many_items(uri, collections, workdir, 10 if args.quick else args.many_items)
            print()
        if not args.no_http:
            bench_http(
                uri,
                collections,
                cogs,
                tiles,
                args.requests,
                args.concurrency,
                args.http_seconds,
                workdir,
                args.loader,
                server_env,
            )
            print()
        if args.soak_seconds:
            bench_soak(uri, collections, tiles, args.soak_seconds, args.soak_concurrency, workdir, server_env)
            print()
        if not args.http_only:
            bench_rss(uri, collections, tiles, args.rss_tiles)


if __name__ == "__main__":
    main()
