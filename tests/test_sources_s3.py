"""``s3://`` sources (CONTRACT "Sources and scenes", "Pipelines") against a real S3 server on loopback.

moto's S3 server holds the objects; between it and every client sits a small counting proxy (also on
loopback) that records each request's method, key, ``Range`` header and the bytes it served, so "read by
window" is checked on the wire rather than assumed. Sources are configured only through the standard AWS
environment (the contract's ``AWS_ENDPOINT_URL``, or GDAL's own ``AWS_S3_ENDPOINT`` + ``AWS_HTTPS=NO`` +
``AWS_VIRTUAL_HOSTING=FALSE``), and what is ingested from S3 must equal the same files ingested from disk.
"""

from __future__ import annotations

import http.client
import http.server
import io
import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from pixelquery_tiler import Warehouse
from scaleout_servers import MotoS3, s3_env
from scene_fixtures import LANDSAT_ID, cli, ingest, landsat_scene
from servers import http_server

BIG = "gw_LC08_224077_20200518_B2_30m.tif"  # 2006 x 1515 uint16, 256 x 256 tiles, 4.7 MB


@dataclass
class Wire:
    """What the proxy saw: one ``(method, path, range header, bytes served)`` per request."""

    requests: list[tuple[str, str, str | None, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gets(self, key: str) -> list[tuple[str | None, int]]:
        with self.lock:
            return [(rng, n) for m, p, rng, n in self.requests if m == "GET" and p.split("?")[0].endswith(key)]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


@contextmanager
def counting_proxy(upstream_port: int) -> Iterator[tuple[str, Wire]]:
    """An HTTP proxy on a free loopback port that forwards every request to ``upstream_port`` and counts it.

    Headers pass through unchanged (moto does not check signatures against the host), bodies are buffered
    (test objects are a few MB at most).
    """
    wire = Wire()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            with wire.lock:
                wire.requests.append((self.command, self.path, self.headers.get("Range"), len(data)))
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                    self.send_header(k, v)
            # HEAD answers carry the object's length without a body
            size = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
            self.send_header("Content-Length", size or "0")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

    with http_server(Handler) as url:
        yield url, wire


@dataclass
class S3:
    endpoint: str  # the proxy's URL: every client under test goes through it
    wire: Wire
    upload: str  # moto's own URL, for the test's uploads (not counted)
    folder: Path  # the local originals of what was uploaded
    landsat: list[Path]

    def put(self, local: Path, key: str) -> str:
        import pyarrow.fs as pafs

        from scaleout_servers import ACCESS_KEY, SECRET_KEY

        fs = pafs.S3FileSystem(
            endpoint_override=self.upload.split("://")[1],
            scheme="http",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region="us-east-1",
        )
        with fs.open_output_stream(f"bucket/{key}") as out:
            out.write(local.read_bytes())
        return f"s3://bucket/{key}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[S3]:
    root = tmp_path_factory.mktemp("s3")
    landsat = landsat_scene(root / "landsat", shared_data)
    shutil.copy(shared_data / BIG, root / BIG)
    with (
        MotoS3.running(root) as moto,
        counting_proxy(moto.port) as (endpoint, wire),
        pytest.MonkeyPatch.context() as mp,
    ):
        for k, v in s3_env(endpoint).items():
            mp.setenv(k, v)
        for name in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(name, raising=False)
        s3 = S3(endpoint, wire, moto.endpoint, root, landsat)
        s3.put(root / BIG, f"single/{BIG}")
        for p in landsat:
            s3.put(p, f"scenes/landsat/{p.name}")
        yield s3


def npy_tiles(warehouse: Path, collection: str, bands: str, n: int = 4) -> list[np.ndarray]:
    """``n`` native-zoom ``.npy`` tiles around the collection's centre (data and mask planes)."""
    import morecantile
    from fastapi.testclient import TestClient

    from pixelquery_tiler import create_app

    wh = Warehouse(str(warehouse))
    w, s, e, nn = wh.collection(collection).index().items[0].bbox
    tms = morecantile.tms.get("WebMercatorQuad")
    t = tms.tile((w + e) / 2, (s + nn) / 2, 13)
    out = []
    with TestClient(create_app(str(warehouse), refresh_interval=0.0)) as client:
        for dx, dy in [(0, 0), (1, 0), (0, 1), (-1, -1)][:n]:
            r = client.get(
                f"/collections/{collection}/tiles/WebMercatorQuad/13/{t.x + dx}/{t.y + dy}.npy?bands={bands}"
            )
            assert r.status_code == 200, r.text
            out.append(np.load(io.BytesIO(r.content)))
    return out


def test_s3_geotiff_equals_disk_and_is_read_by_window(
    tmp_path: Path, capsys: pytest.CaptureFixture, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixelquery_tiler.scenes import plan_items

    uri = f"s3://bucket/single/{BIG}"
    size = (s3.folder / BIG).stat().st_size
    s3.wire.clear()
    [plan] = plan_items([uri])  # probe + header: what a dry run or a duplicate check costs
    header_bytes = sum(n for _, n in s3.wire.gets(BIG))
    # the header and IFD of a tiled GeoTIFF are in its first few KB; GDAL's first read is 16 KB (a few more for
    # the tile index): anything near the file size would mean a download
    assert 0 < header_bytes < size / 20, (header_bytes, size)

    s3.wire.clear()
    [remote] = ingest(capsys, tmp_path / "s3", uri, "--collection", "c", "--bands", "blue")
    gets = s3.wire.gets(BIG)
    assert remote["sources"] == [uri] and plan.item_id
    # read by window: every GET of the object is a range request, none near the whole file, and the file is
    # read about once in total (strip windows across the full width; a little overlap at strip edges)
    assert gets and all(rng is not None and rng.startswith("bytes=") for rng, _ in gets), gets[:5]
    assert max(n for _, n in gets) < size / 2, max(n for _, n in gets)
    assert sum(n for _, n in gets) < 1.5 * size, (sum(n for _, n in gets), size)

    # a small window of the tiled file through the same GDAL configuration: a few tiles, not the file
    import rasterio
    from rasterio.windows import Window

    from pixelquery_tiler.sources import gdal_path, remote_env

    s3.put(s3.folder / BIG, f"window/{BIG}")  # a key GDAL has not cached yet
    s3.wire.clear()
    with remote_env(), rasterio.open(gdal_path(f"s3://bucket/window/{BIG}")) as src:
        assert src.read(1, window=Window(1024, 512, 200, 200)).shape == (200, 200)
    window_bytes = sum(n for _, n in s3.wire.gets(BIG))
    assert 0 < window_bytes < size / 10, (window_bytes, size)

    [disk] = ingest(capsys, tmp_path / "disk", s3.folder / BIG, "--collection", "c", "--bands", "blue")
    assert disk["bbox"] == remote["bbox"] and disk["datetime"] == remote["datetime"]
    theirs = npy_tiles(tmp_path / "disk", "c", "blue")
    assert (theirs[0][-1] > 0).mean() > 0.5
    for a, b in zip(theirs, npy_tiles(tmp_path / "s3", "c", "blue"), strict=True):
        assert np.array_equal(a, b)


def test_s3_landsat_scene_with_gdal_style_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAL's own names for the endpoint (host only, ``AWS_HTTPS=NO``) work for probes and reads alike."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_S3_ENDPOINT", s3.endpoint.split("://", 1)[1])
    monkeypatch.setenv("AWS_HTTPS", "NO")
    monkeypatch.setenv("AWS_VIRTUAL_HOSTING", "FALSE")
    uris = [f"s3://bucket/scenes/landsat/{p.name}" for p in s3.landsat]
    [remote] = ingest(capsys, tmp_path / "s3", *uris, "--collection", "landsat")
    assert remote["item_id"] == LANDSAT_ID and remote["bands"] == ["blue", "green", "red"]
    assert remote["sources"] == uris
    [disk] = ingest(capsys, tmp_path / "disk", *s3.landsat, "--collection", "landsat")
    assert disk["bbox"] == remote["bbox"]
    ours = npy_tiles(tmp_path / "s3", "landsat", "red,green,blue")
    theirs = npy_tiles(tmp_path / "disk", "landsat", "red,green,blue")
    assert (theirs[0][-1] > 0).mean() > 0.5  # the centre tile is inside the 10 km scene; the others cross its edge
    for a, b in zip(theirs, ours, strict=True):
        assert a.shape[0] == 4 and np.array_equal(a, b)


def test_s3_pipeline_job_is_incremental(tmp_path: Path, capsys: pytest.CaptureFixture, s3: S3) -> None:
    s3.put(s3.folder / BIG, f"mixed/other/{BIG}")
    for p in s3.landsat:
        s3.put(p, f"mixed/{p.name}")
    s3.put(s3.folder / "landsat" / s3.landsat[0].name, "mixed/notes.txt")  # not a raster name: not listed
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"warehouse": "wh", "jobs": [{"collection": "s3", "s3": "s3://bucket/mixed/"}]}))
    code, out, err = cli(capsys, "run", pipeline, "--json")
    assert code == 0, err
    first = json.loads(out)
    assert len(first["ingested"]) == 2 and LANDSAT_ID in first["ingested"] and first["failed"] == []
    code, out, err = cli(capsys, "run", pipeline, "--json")
    assert code == 0, err
    second = json.loads(out)
    assert second["ingested"] == [] and len(second["skipped"]) == 4  # three band files + the single file
    assert len(Warehouse(str(tmp_path / "wh")).collection("s3").snapshots()) == 2


def test_s3_missing_key_or_bucket_is_one_line_and_commits_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, s3: S3
) -> None:
    wh = tmp_path / "wh"
    for uri, reason in (
        ("s3://bucket/single/missing.tif", "no such object"),
        ("s3://no-such-bucket/x.tif", "no such bucket 'no-such-bucket'"),
    ):
        code, out, err = cli(capsys, "ingest", wh, uri, "--collection", "c")
        lines = err.strip().splitlines()
        assert code != 0 and out == "" and len(lines) == 1 and reason in lines[0] and uri in lines[0], err
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        yaml.safe_dump({"warehouse": "wh", "jobs": [{"collection": "c", "s3": "s3://no-such-bucket/x/"}]})
    )
    code, out, err = cli(capsys, "run", pipeline)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "jobs.0.s3" in lines[0], err
    assert not wh.exists() or Warehouse(str(wh)).collections() == []
    assert not (wh / "chunks").exists()
