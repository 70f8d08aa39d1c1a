"""Ingest as a service over real HTTP: ``pixelquery-tiler serve`` processes (uvicorn) on loopback ports.

Jobs, uploads, STAC transactions, API keys, rate limits and metrics (CONTRACT "Jobs, writes and operations").
Servers run as subprocesses so that a test can SIGKILL one mid-job; every server is stopped by its fixture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import rasterio
import requests
from prometheus_client.parser import text_string_to_metric_families

from pixelquery_tiler import Warehouse
from servers import ServerProcess, free_port, serve_command
from servers import start as start_server
from test_postgres_catalog import postgres_uri  # noqa: F401  (the throwaway PostgreSQL server fixture)
from testdata import DATA_DIR as DATA

REPO = Path(__file__).resolve().parents[1]
L8_60 = "gw_LC08_224077_20200518_B2_60m.tif"
OLINDA = "stars_L7_ETMs_olinda_28m.tif"
KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Server(ServerProcess):
    """``pixelquery-tiler serve WAREHOUSE ARGS`` on a free loopback port (started by :meth:`start`)."""

    @classmethod
    def start(cls, warehouse: Path, *args: str, env: dict[str, str] | None = None, pause_commits: float = 0) -> Server:
        warehouse.mkdir(parents=True, exist_ok=True)  # serve needs the folder; an empty warehouse is fine
        port = free_port()
        create = () if "--catalog-uri" in args else ("--create",)
        # pause_commits: every catalog commit waits that long, so a test can kill a job mid-way (paused_commit.py)
        program = (
            [sys.executable, str(REPO / "tests" / "paused_commit.py"), str(pause_commits)] if pause_commits else None
        )
        started = start_server(
            serve_command(warehouse, "--log-level", "warning", *create, *args, port=port, program=program),
            warehouse.parent / f"serve-{port}.log",
            port=port,
            env={"PIXELQUERY_API_KEYS": None, **(env or {})},
            ready="/healthz",
        )
        return cls(started.url, started.port, started.proc, started.log)

    def post_job(self, body: dict, headers: dict | None = None) -> requests.Response:
        return requests.post(self.url + "/jobs", json=body, headers=AUTH if headers is None else headers, timeout=30)

    def wait_job(self, job_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = requests.get(f"{self.url}/jobs/{job_id}", timeout=60).json()
            if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
                return job
            time.sleep(0.2)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    started: list[Server] = []

    def start(warehouse: Path, *args: str, env: dict[str, str] | None = None, pause_commits: float = 0) -> Server:
        started.append(Server.start(warehouse, *args, env=env, pause_commits=pause_commits))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def imports(tmp_path: Path) -> Path:
    """An import root holding copies of two shared rasters."""
    root = tmp_path / "imports"
    root.mkdir()
    for name in (L8_60, OLINDA):
        shutil.copy(DATA / name, root / name)
    return root


def _center_tile_url(tilejson: dict, zoom_in: int) -> str:
    import morecantile

    west, south, east, north = tilejson["bounds"]
    t = morecantile.tms.get("WebMercatorQuad").tile(
        (west + east) / 2, (south + north) / 2, tilejson["minzoom"] + zoom_in
    )
    return tilejson["tiles"][0].replace("{z}", str(t.z)).replace("{x}", str(t.x)).replace("{y}", str(t.y))


def _routes_with_status(metrics: dict, status: str) -> set[str]:
    return {
        dict(lab)["route"]
        for (n, lab), _ in metrics.items()
        if n == "pixelquery_http_requests_total" and dict(lab)["status"] == status
    }


def _metrics(url: str) -> dict[tuple[str, tuple], float]:
    text = requests.get(url + "/metrics", timeout=60).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_auth_matrix(tmp_path: Path, serve, imports: Path) -> None:
    body = {"collection": "l8", "sources": [str(imports / L8_60)]}
    open_server = serve(tmp_path / "wh1", "--import-root", str(imports), "--job-workers", "0")
    assert open_server.post_job(body, headers={}).status_code == 403  # writes disabled: no keys configured
    assert open_server.post_job(body).status_code == 403
    assert requests.post(open_server.url + "/uploads", files={"file": b"x"}, timeout=60).status_code == 403

    Warehouse(str(tmp_path / "wh2")).ingest(str(imports / L8_60), "l8", datetime="2020-05-18T13:30:00Z")
    keyed = serve(
        tmp_path / "wh2",
        "--api-key",
        KEY,
        "--api-key",
        "other-key",
        "--import-root",
        str(imports),
        "--read-auth",
        "--job-workers",
        "0",
    )
    no_key = keyed.post_job(body, headers={})
    assert no_key.status_code == 401 and no_key.headers["WWW-Authenticate"] == "Bearer"
    assert keyed.post_job(body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert keyed.post_job(body, headers={"Authorization": f"Bearer {KEY}x"}).status_code == 401
    # a read key in the query string is not a write credential
    assert requests.post(keyed.url + f"/jobs?token={KEY}", json=body, timeout=60).status_code == 401
    accepted = keyed.post_job(body)
    assert accepted.status_code == 202
    assert accepted.headers["Location"] == f"/jobs/{accepted.json()['id']}"
    assert keyed.post_job(body, headers={"Authorization": "Bearer other-key"}).status_code == 202

    # read-auth: reads need the key as bearer or ?token=; probes and the viewer shell stay open
    assert requests.get(keyed.url + "/stac/collections", timeout=60).status_code == 401
    assert requests.get(keyed.url + "/stac/collections?token=nope", timeout=60).status_code == 401
    assert requests.get(keyed.url + "/stac/collections", headers=AUTH, timeout=60).status_code == 200
    assert requests.get(keyed.url + f"/stac/collections?token={KEY}", timeout=60).status_code == 200
    assert requests.get(keyed.url + "/jobs", timeout=60).status_code == 401
    for open_path in ("/healthz", "/readyz", "/"):
        assert requests.get(keyed.url + open_path, timeout=60).status_code == 200
    # links in documents fetched with ?token= carry it (browsers cannot send headers on tile requests)
    landing = requests.get(keyed.url + f"/stac/?token={KEY}", timeout=60).json()
    self_links = [link["href"] for link in landing["links"] if link["href"].startswith(keyed.url)]
    assert self_links and all(f"token={KEY}" in href for href in self_links)
    tilejson = requests.get(keyed.url + f"/collections/l8/WebMercatorQuad/tilejson.json?token={KEY}", timeout=60).json()
    assert f"token={KEY}" in tilejson["tiles"][0]
    tile = requests.get(_center_tile_url(tilejson, 1), timeout=30)  # the link works as handed out, no header
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    wmts = requests.get(keyed.url + f"/collections/l8/WMTSCapabilities.xml?token={KEY}", timeout=60)
    assert wmts.status_code == 200
    templates = re.findall(r'template="([^"]+)"', wmts.text)
    assert templates and all(f"token={KEY}" in t for t in templates if t.startswith(keyed.url))
    # keys never reach the server's log
    keyed.stop()
    assert KEY not in Path(keyed.log.name).read_text()


def test_job_from_local_source_serves_tiles(tmp_path: Path, serve, imports: Path) -> None:
    server = serve(tmp_path / "wh", "--api-key", KEY, "--import-root", str(imports))
    accepted = server.post_job(
        {"collection": "l8", "sources": [str(imports / L8_60)], "datetime": "2020-05-18T13:30:00Z"}
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "queued"
    job = server.wait_job(accepted.json()["id"])
    assert job["status"] == "succeeded", job.get("error")
    assert job["progress"] == 1.0 and job["error"] is None and job["attempts"] == 1 and len(job["items"]) == 1
    item_id = job["items"][0]

    # the item is in STAC at once (the in-process worker writes through the server's warehouse)
    item = requests.get(f"{server.url}/stac/collections/l8/items/{item_id}", timeout=60)
    assert item.status_code == 200 and item.json()["properties"]["datetime"].startswith("2020-05-18T13:30:00")
    listed = requests.get(server.url + "/jobs", timeout=60).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]

    # its pixels serve: a native-resolution window equals the source (same grid, no resampling: exact)
    with rasterio.open(imports / L8_60) as src:
        expected = src.read(1)
        bounds, crs = src.bounds, src.crs
    read = (
        Warehouse(str(tmp_path / "wh"))
        .collection("l8")
        .read(tuple(bounds), crs.to_string(), expected.shape[1], expected.shape[0], item_id=item_id)
    )
    np.testing.assert_array_equal(np.asarray(read.data[0]), expected)
    tilejson = requests.get(f"{server.url}/collections/l8/WebMercatorQuad/tilejson.json", timeout=60).json()
    tile = requests.get(_center_tile_url(tilejson, 2), timeout=30)
    assert tile.status_code == 200 and tile.headers["content-type"].startswith("image/")


def test_scene_job_is_one_item_with_every_band(tmp_path: Path, serve, imports: Path) -> None:
    """``scene: true``: two band files on one grid become one item (one snapshot) holding both bands."""
    with rasterio.open(imports / L8_60) as src:
        profile, data = src.profile, src.read(1)
    for name, values in (("a.tif", data), ("b.tif", (data // 2).astype(data.dtype))):
        with rasterio.open(imports / name, "w", **profile) as dst:
            dst.write(values, 1)
    server = serve(tmp_path / "wh", "--api-key", KEY, "--import-root", str(imports))
    accepted = server.post_job(
        {
            "collection": "scene",
            "sources": [str(imports / "a.tif"), str(imports / "b.tif")],
            "scene": True,
            "bands": ["red", "nir"],
            "datetime": "2020-05-18T13:30:00Z",
        }
    )
    assert accepted.status_code == 202, accepted.text
    job = server.wait_job(accepted.json()["id"])
    assert job["status"] == "succeeded", job.get("error")
    assert len(job["items"]) == 1
    item = requests.get(f"{server.url}/stac/collections/scene/items/{job['items'][0]}", timeout=60).json()
    assert [b["name"] for b in item["properties"]["bands"]] == ["red", "nir"]
    assert len(Warehouse(str(tmp_path / "wh")).collection("scene").snapshots()) == 1


def test_bad_source_fails_cleanly_and_bad_bodies_are_refused(tmp_path: Path, serve, imports: Path) -> None:
    server = serve(tmp_path / "wh", "--api-key", KEY, "--import-root", str(imports))
    # a non-raster upload: the job fails at once with a one-line reason and commits nothing
    up = requests.post(
        server.url + "/uploads", headers=AUTH, files={"file": ("notes.tif", b"not a tiff" * 100)}, timeout=30
    )
    assert up.status_code == 201 and up.json()["size"] == 1000 and up.json()["source"].startswith("upload://")
    job = server.wait_job(server.post_job({"collection": "bad", "sources": [up.json()["source"]]}).json()["id"])
    assert job["status"] == "failed" and job["attempts"] == 1 and job["items"] == []
    assert "cannot read raster" in job["error"] and "\n" not in job["error"]
    assert requests.get(server.url + "/stac/collections/bad", timeout=60).status_code == 404
    # one good and one bad file in one job: checked up front, so the good one is not committed either
    job = server.wait_job(
        server.post_job({"collection": "mixed", "sources": [str(imports / L8_60), up.json()["source"]]}).json()["id"]
    )
    assert job["status"] == "failed" and job["items"] == []
    assert requests.get(server.url + "/stac/collections/mixed", timeout=60).status_code == 404

    good = str(imports / L8_60)
    bad_bodies = {
        422: [
            {},
            {"collection": "c"},
            {"collection": "c", "sources": []},
            {"sources": [good]},
            {"collection": "c", "sources": [good], "unknown": 1},
            {"collection": "bad name!", "sources": [good]},
            {"collection": "c", "sources": [good], "bands": "red"},
        ],
        400: [
            {"collection": "c", "sources": ["/etc/hostname"]},
            {"collection": "c", "sources": [str(imports / ".." / ".." / "x.tif")]},
            {"collection": "c", "sources": [str(imports / "missing.tif")]},
            {"collection": "c", "sources": ["upload://0123456789abcdef0123456789abcdef"]},
            {"collection": "c", "sources": ["upload://../../etc"]},
            {"collection": "c", "sources": ["ftp://example.invalid/x.tif"]},
            {"collection": "c", "sources": [good], "product": "no-such-product"},
            {"collection": "c", "sources": [good], "datetime": "yesterday"},
            {"collection": "c", "sources": [{"type": "Feature", "assets": {}}]},
        ],
    }
    # schema errors: the app's request-validation handler (stac-fastapi's, app-wide) answers 400 rather than
    # FastAPI's 422; the contract allows either
    for status, bodies in bad_bodies.items():
        for body in bodies:
            r = server.post_job(body)
            assert r.status_code in ((400, 422) if status == 422 else (400,)), (body, r.status_code, r.text)
    not_json = requests.post(
        server.url + "/jobs", data=b"{nope", headers={**AUTH, "Content-Type": "application/json"}, timeout=60
    )
    assert not_json.status_code in (400, 422)
    assert requests.post(server.url + "/uploads", headers=AUTH, data=b"x", timeout=60).status_code == 415
    assert requests.post(server.url + "/uploads", headers=AUTH, files={"other": b"x"}, timeout=60).status_code == 400
    assert requests.get(server.url + "/jobs/nope", timeout=60).status_code == 404
    # none of that created a job
    assert len(requests.get(server.url + "/jobs", timeout=60).json()["jobs"]) == 2


def test_durable_queue_survives_sigkill(tmp_path: Path, serve, imports: Path) -> None:
    """SIGKILL mid-job: queued jobs run after restart, the running one after its lease; nothing runs twice."""
    wh = tmp_path / "wh"
    # every commit is held back (tests/paused_commit.py) between writing chunks and committing: the kill lands mid-job
    first = serve(
        wh,
        "--api-key",
        KEY,
        "--import-root",
        str(imports),
        "--job-lease",
        "3",
        pause_commits=30,
    )
    ids = [
        first.post_job(
            {"collection": "l8", "sources": [str(imports / L8_60)], "datetime": f"2020-05-{18 + i}T13:30:00Z"}
        ).json()["id"]
        for i in range(3)
    ]
    deadline = time.monotonic() + 60
    while requests.get(f"{first.url}/jobs/{ids[0]}", timeout=60).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    first.stop(signal.SIGKILL)

    # restart: a server that runs no jobs itself plus a separate worker process
    second = serve(wh, "--api-key", KEY, "--job-workers", "0")
    before = {j["id"]: j for j in requests.get(second.url + "/jobs", timeout=60).json()["jobs"]}
    assert before[ids[0]]["status"] == "running" and before[ids[0]]["attempts"] == 1
    assert before[ids[1]]["status"] == before[ids[2]]["status"] == "queued"
    worker = subprocess.Popen(
        [sys.executable, "-m", "pixelquery_tiler", "worker", str(wh), "--job-lease", "3"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=subprocess.DEVNULL,
    )
    try:
        jobs = [second.wait_job(i) for i in ids]
    finally:
        worker.terminate()
        worker.wait(20)
    assert [j["status"] for j in jobs] == ["succeeded"] * 3, jobs
    assert [j["attempts"] for j in jobs] == [2, 1, 1]  # the killed one was retried once its lease expired
    snaps = Warehouse(str(wh)).collection("l8").snapshots()
    assert sorted(s.item_id for s in snaps) == sorted(j["items"][0] for j in jobs)  # one item each, no duplicate


def test_two_servers_share_one_postgres_queue(tmp_path: Path, serve, imports: Path, postgres_uri: str) -> None:  # noqa: F811
    wh = tmp_path / "wh"
    common = ("--api-key", KEY, "--import-root", str(imports), "--catalog-uri", postgres_uri, "--job-workers", "2")
    servers = [serve(wh, *common), serve(wh, *common)]
    ids = []
    for i in range(10):
        r = servers[i % 2].post_job(
            {"collection": "l8", "sources": [str(imports / L8_60)], "datetime": f"2020-06-{i + 1:02d}T13:30:00Z"}
        )
        assert r.status_code == 202
        ids.append(r.json()["id"])
    jobs = [servers[(i + 1) % 2].wait_job(job_id, timeout=300) for i, job_id in enumerate(ids)]
    assert [j["status"] for j in jobs] == ["succeeded"] * 10, jobs
    assert all(j["attempts"] == 1 for j in jobs)
    snaps = Warehouse(str(wh), catalog_uri=postgres_uri).collection("l8").snapshots()
    assert len(snaps) == 10 and sorted(s.item_id for s in snaps) == sorted(j["items"][0] for j in jobs)
    # both replicas see the same queue
    assert {j["id"] for j in requests.get(servers[0].url + "/jobs", timeout=60).json()["jobs"]} == set(ids)
    assert {j["id"] for j in requests.get(servers[1].url + "/jobs", timeout=60).json()["jobs"]} == set(ids)


def _multipart_stream(path: Path, boundary: str, chunk: int = 1 << 20) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def test_upload_streams_with_bounded_memory_and_size_cap(tmp_path: Path, serve) -> None:
    big = tmp_path / "big.bin"
    size = 200 << 20
    with open(big, "wb") as f:  # incompressible content: nothing along the way can shortcut it
        rng = np.random.default_rng(0)
        f.writelines(rng.bytes(4 << 20) for _ in range(size >> 22))
    server = serve(tmp_path / "wh", "--api-key", KEY, "--max-upload-mb", "300", "--job-workers", "0")
    proc = psutil.Process(server.proc.pid)
    rss_before = proc.memory_info().rss
    boundary = "pixelquery-test-boundary"
    r = requests.post(
        server.url + "/uploads",
        data=_multipart_stream(big, boundary),
        timeout=300,
        headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["size"] == size
    growth = proc.memory_info().rss - rss_before
    # streaming holds a network chunk plus a 1 MiB write batch; 40 MB leaves room for allocator slack while
    # staying far below the 200 MB a buffered upload would need
    assert growth < 40 << 20, f"server RSS grew by {growth >> 20} MiB"
    upload_id = r.json()["source"].removeprefix("upload://")
    stored = tmp_path / "wh" / "uploads" / upload_id / "big.bin"
    assert stored.stat().st_size == size and not list(stored.parent.glob("*.partial"))

    small = serve(tmp_path / "wh2", "--api-key", KEY, "--max-upload-mb", "1", "--job-workers", "0")
    over = requests.post(small.url + "/uploads", headers=AUTH, files={"file": ("x.tif", b"\0" * (2 << 20))}, timeout=30)
    assert over.status_code == 413
    # without Content-Length (chunked), the cap is enforced while streaming; the partial file is removed
    chunked = requests.post(
        small.url + "/uploads",
        data=_multipart_stream(big, boundary, 256 << 10),
        timeout=60,
        headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert chunked.status_code == 413
    assert not any(p.is_file() for p in (tmp_path / "wh2" / "uploads").rglob("*"))


def test_stac_transactions(tmp_path: Path, serve, imports: Path) -> None:
    wh = tmp_path / "wh"
    Warehouse(str(wh)).ingest(str(imports / OLINDA), "landsat", datetime="1999-08-03T12:00:00Z")
    server = serve(wh, "--api-key", KEY, "--import-root", str(imports))
    conformance = requests.get(server.url + "/stac/conformance", timeout=60).json()["conformsTo"]
    assert "https://api.stacspec.org/v1.0.0/ogcapi-features/extensions/transaction" in conformance
    assert "https://api.stacspec.org/v1.0.0/collections/extensions/transaction" not in conformance

    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "l8-new",
        "collection": "landsat",
        "geometry": None,
        "properties": {"datetime": "2020-05-18T13:30:00Z"},
        "links": [],
        "assets": {
            "B2": {"href": str(imports / L8_60), "type": "image/tiff; application=geotiff", "roles": ["data"]},
            "thumb": {"href": str(imports / "thumb.png"), "type": "image/png", "roles": ["thumbnail"]},
        },
    }
    url = server.url + "/stac/collections/landsat/items"
    assert requests.post(url, json=item, timeout=60).status_code == 401
    assert (
        requests.post(server.url + "/stac/collections/nope/items", json=item, headers=AUTH, timeout=60).status_code
        == 404
    )
    assert requests.post(url, json={"type": "Feature"}, headers=AUTH, timeout=60).status_code == 400
    outside = {**item, "assets": {"B2": {**item["assets"]["B2"], "href": "/etc/hostname"}}}
    assert requests.post(url, json=outside, headers=AUTH, timeout=60).status_code == 400
    r = requests.post(url, json=item, headers=AUTH, timeout=60)
    assert r.status_code == 202 and r.headers["Location"].startswith("/jobs/")
    job = server.wait_job(r.json()["id"])
    assert job["status"] == "succeeded", job.get("error")
    new_id = job["items"][0]
    got = requests.get(f"{url}/{new_id}", timeout=60).json()
    assert got["properties"]["datetime"].startswith("2020-05-18T13:30:00")

    assert requests.delete(f"{url}/{new_id}", timeout=60).status_code == 401
    assert requests.delete(f"{url}/no-such-item", headers=AUTH, timeout=60).status_code == 404
    deleted = requests.delete(f"{url}/{new_id}", headers=AUTH, timeout=60)
    assert deleted.status_code in (200, 204)
    assert requests.get(f"{url}/{new_id}", timeout=60).status_code == 404
    assert len(requests.get(url, timeout=60).json()["features"]) == 1


def test_rate_limit_and_metrics(tmp_path: Path, serve, imports: Path) -> None:
    wh = tmp_path / "wh"
    Warehouse(str(wh)).ingest(str(imports / L8_60), "l8", datetime="2020-05-18T13:30:00Z")
    server = serve(wh, "--api-key", KEY, "--rate-limit", "5/s", "--job-workers", "0", "--access-log-json")
    before = _metrics(server.url)
    codes = []
    for _ in range(20):
        r = requests.get(server.url + "/stac/collections", timeout=60)
        codes.append(r.status_code)
        if r.status_code == 429:
            retry_after = r.headers["Retry-After"]
    assert codes[:5] == [200] * 5 and 429 in codes
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 1
    # a key has its own bucket, independent of the address's
    assert requests.get(server.url + "/stac/collections", headers=AUTH, timeout=60).status_code == 200
    # probes are never limited
    assert all(requests.get(server.url + "/healthz", timeout=60).status_code == 200 for _ in range(10))
    time.sleep(1.1)

    tilejson = requests.get(f"{server.url}/collections/l8/WebMercatorQuad/tilejson.json", timeout=60).json()
    tile_url = _center_tile_url(tilejson, 1)
    first = requests.get(tile_url, timeout=30)
    assert first.status_code == 200
    if "ETag" in first.headers:
        assert requests.get(tile_url, headers={"If-None-Match": first.headers["ETag"]}, timeout=30).status_code == 304
    after = _metrics(server.url)

    def value(metrics: dict, name: str, **labels: str) -> float:
        return sum(v for (n, lab), v in metrics.items() if n == name and set(labels.items()) <= set(lab))

    route = "/stac/collections"
    assert (
        value(after, "pixelquery_http_requests_total", route=route, status="200")
        - value(before, "pixelquery_http_requests_total", route=route, status="200")
        == codes.count(200) + 1
    )
    assert value(after, "pixelquery_http_requests_total", route=route, status="429") == codes.count(429)
    assert value(after, "pixelquery_rate_limited_total") == codes.count(429)
    assert value(after, "pixelquery_http_request_duration_seconds_count", route=route) == len(codes) + 1
    assert value(after, "pixelquery_tiles_served_total") - value(before, "pixelquery_tiles_served_total") == 1
    assert all("{" in r or r[-1:] == "/" or r.count("/") <= 3 for r in _routes_with_status(after, "200"))
    if "ETag" in first.headers:
        assert value(after, "pixelquery_http_not_modified_total") == 1
        # labelled by the tile route's template, not the raw path (bounded label cardinality)
        (route_304,) = _routes_with_status(after, "304")
        assert "/tiles/" in route_304 and "{" in route_304, route_304
    assert value(after, "pixelquery_index_refreshes_total") >= 1
    assert value(after, "pixelquery_jobs", status="queued") == 0
    server.post_job({"collection": "l8", "sources": ["https://example.invalid/x.tif"]})  # no worker runs it
    assert value(_metrics(server.url), "pixelquery_jobs", status="queued") == 1
    # /healthz, /readyz and /metrics are not traffic
    assert not any(lab and dict(lab).get("route") in ("/healthz", "/metrics") for (_, lab) in after)
    # JSON access log: one object per request, paths without query strings (they may hold ?token=)
    requests.get(server.url + f"/stac/collections?token={KEY}", timeout=60)
    server.stop()
    lines = [json.loads(ln) for ln in Path(server.log.name).read_text().splitlines() if ln.startswith("{")]
    assert any(e["route"] == route and e["status"] == 429 for e in lines)
    assert {"method", "path", "route", "status", "ms", "client"} <= set(lines[0])
    assert KEY not in Path(server.log.name).read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--read-auth"], "--read-auth needs at least one --api-key"),
        (["--api-key", "k", "--rate-limit", "lots"], "invalid rate limit"),
        (["--import-root", "/no/such/dir"], "is not a directory"),
        (["--job-workers", "-1"], "--job-workers >= 0"),
    ],
)
def test_serve_rejects_bad_service_options(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "wh").mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "pixelquery_tiler", "serve", str(tmp_path / "wh"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_readyz_reports_an_unreachable_catalog(tmp_path: Path, serve) -> None:
    ok = serve(tmp_path / "wh", "--job-workers", "0")
    assert requests.get(ok.url + "/readyz", timeout=60).json() == {"status": "ready"}
    # an Iceberg REST catalog on a loopback port nobody listens on: the process lives, the catalog does not
    down = serve(tmp_path / "wh2", "--job-workers", "0", "--catalog-uri", f"http://127.0.0.1:{free_port()}")
    r = requests.get(down.url + "/readyz", timeout=30)
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert requests.get(down.url + "/healthz", timeout=60).status_code == 200
