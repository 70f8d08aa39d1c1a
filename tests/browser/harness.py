"""Shared plumbing for the browser tests: a live ``pixelquery-tiler serve`` subprocess (``tests/servers.py``), small
real warehouses, Node/Playwright scripts against Debian's chromium, and PNG analysis.

The browser side runs as Node scripts (``tests/browser/*.mjs``, playwright-core from ``node_modules`` driving
``/usr/bin/chromium`` via ``executablePath``); each prints one JSON object on its last stdout line, which the pytest
side asserts on. ``tests/browser/setup.sh`` installs all of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
if str(TESTS) not in sys.path:  # the shared test modules below (pytest puts tests/ first when conftest loads)
    sys.path.insert(0, str(TESTS))

import servers  # noqa: E402
from servers import free_port, http_get  # noqa: E402,F401  (the browser tests' names for them)
from testdata import data_file  # noqa: E402

ARTIFACTS = TESTS / "artifacts"
CHROMIUM = os.environ.get("PIXELQUERY_CHROMIUM", "/usr/bin/chromium")
NODE_MODULES = HERE / "node_modules"


def require_browser() -> None:
    """Skip (fail under CI) when the tools from tests/browser/setup.sh are missing."""
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(CHROMIUM)
    if not shutil.which("node"):
        missing.append("node")
    for pkg in ("playwright-core", "ol", "esbuild"):
        if not (NODE_MODULES / pkg / "package.json").is_file():
            missing.append(f"tests/browser/node_modules/{pkg}")
    if missing:
        msg = f"browser tools missing ({', '.join(missing)}): run bash tests/browser/setup.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def serve_command(warehouse: Path | str, port: int | str = "{port}") -> list[str]:
    """The same command line as docker/Dockerfile's CMD, on loopback (``"{port}"``: the server's free port)."""
    return servers.serve_command(warehouse, port=port)


@contextlib.contextmanager
def live_server(warehouse: Path | str, log_path: Path, startup_timeout: float = 90.0, command: list[str] | None = None):
    """``pixelquery-tiler serve WAREHOUSE`` (or ``command``) via :func:`servers.serve`; yields its base URL with a
    trailing slash, the form the browser scripts join relative paths to."""
    with servers.serve([warehouse], log_path, command=command, timeout=startup_timeout, cwd=log_path.parent) as server:
        yield server.base


def run_node(script: str, config: dict, timeout: float = 240.0) -> dict:
    """Run ``tests/browser/<script>`` with ``config`` (JSON in argv); return the JSON of its last stdout line.

    Fails (``AssertionError``) when the script exits non-zero, prints nothing, or reports an ``error``.
    """
    cfg = {"chromium": CHROMIUM, "artifacts": str(ARTIFACTS), **config}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["node", str(HERE / script), json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(HERE),
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        raise AssertionError(
            f"{script} failed ({proc.returncode}):\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
        )
    result = json.loads(lines[-1])
    if "error" in result:  # the script caught an exception (its ``out.error``): what it saw until then helps
        raise AssertionError(f"{script} failed: {result['error']}\nproblems: {result.get('problems')}")
    return result


def read_png(path: str | Path) -> np.ndarray:
    """RGB(A) pixels of a PNG as a (bands, rows, cols) uint8 array (GDAL's PNG driver via rasterio)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read()


def changed_fraction(a: str | Path, b: str | Path, threshold: int = 24) -> float:
    """Share of pixels whose RGB differs by more than ``threshold`` (max over channels) between two screenshots."""
    x, y = read_png(a)[:3].astype(np.int16), read_png(b)[:3].astype(np.int16)
    assert x.shape == y.shape, (x.shape, y.shape)
    return float((np.abs(x - y).max(axis=0) > threshold).mean())


def background_fraction(path: str | Path, background=(0xDD, 0xE3, 0xEA), tol: int = 6) -> float:
    """Share of pixels equal to the viewer's empty-map background colour (i.e. where no tile painted)."""
    img = read_png(path)[:3].astype(np.int16)
    bg = np.array(background, dtype=np.int16)[:, None, None]
    return float((np.abs(img - bg).max(axis=0) <= tol).mean())


@contextlib.contextmanager
def prefix_proxy(backend: str, prefix: str = "/pq"):
    """A minimal reverse proxy on a free loopback port serving ``backend`` under ``prefix`` (GET/HEAD only), which
    does not tell the backend about the prefix: the set-up that breaks absolute URLs. Yields the proxied base URL."""
    import http.server

    hop = {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _forward(self, head: bool) -> None:
            if not (self.path == prefix or self.path.startswith(prefix + "/")):
                self.send_error(404)
                return
            target = backend.rstrip("/") + "/" + self.path[len(prefix) :].lstrip("/")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in hop | {"host"}}
            req = urllib.request.Request(target, headers=headers, method="HEAD" if head else "GET")
            try:
                resp = urllib.request.urlopen(req, timeout=60)
            except urllib.error.HTTPError as e:
                resp = e
            body = resp.read()
            self.send_response(resp.status if hasattr(resp, "status") else resp.code)
            for k, v in resp.headers.items():
                if k.lower() not in hop | {"content-length"}:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def do_GET(self):
            self._forward(False)

        def do_HEAD(self):
            self._forward(True)

    with servers.http_server(Handler) as url:
        yield f"{url}{prefix}/"


DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"


def publish_docs(src: str | Path, name: str) -> Path | None:
    """With PIXELQUERY_UPDATE_DOCS=1, store a test screenshot as docs/screenshots/<name>.jpg (README's tour)."""
    if os.environ.get("PIXELQUERY_UPDATE_DOCS") != "1":
        return None
    from rasterio.errors import NotGeoreferencedWarning

    img = read_png(src)[:3]
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    out = DOCS_SCREENSHOTS / f"{name}.jpg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        _write_jpeg(out, img)
    for aux in out.parent.glob(f"{name}.jpg.aux.xml"):
        aux.unlink()
    return out


def _write_jpeg(out: Path, img: np.ndarray) -> None:
    import rasterio

    with rasterio.open(
        out, "w", driver="JPEG", width=img.shape[2], height=img.shape[1], count=3, dtype="uint8", quality=85
    ) as dst:
        dst.write(img)


@contextlib.contextmanager
def two_date_landsat_server(root: Path, early: str, late: str):
    """A live server over collection ``landsat``: the real 30 m scene on ``early`` and, on ``late``, a copy with
    a visible change (a bright central block), so WMTS clients can prove the Time dimension changes pixels."""
    import rasterio

    from pixelquery_tiler import Warehouse

    src = data_file("gw_LC08_224077_20200518_B2_30m.tif")
    with rasterio.open(src) as ds:
        data, profile = ds.read(1), ds.profile
    h, w = data.shape
    data[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 15000
    profile.update(driver="GTiff", compress="deflate")
    changed = root / "changed.tif"
    with rasterio.open(changed, "w", **profile) as dst:
        dst.write(data, 1)
    wh = Warehouse(str(root / "warehouse"))
    wh.ingest(str(src), "landsat", datetime=f"{early}T13:30:00Z")
    wh.ingest(str(changed), "landsat", product="landsat-c2-l2", bands=["blue"], datetime=f"{late}T13:30:00Z")
    with live_server(root / "warehouse", root / "server.log") as base:
        yield base
