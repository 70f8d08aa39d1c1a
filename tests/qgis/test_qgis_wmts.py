"""QGIS as a WMTS client (opt-in: ``PIXELQUERY_QGIS=1``; install with ``bash tests/qgis/setup.sh``).

Runs tests/qgis/render_wmts.py under Debian's ``/usr/bin/python3`` with PyQGIS (QT_QPA_PLATFORM=offscreen) against
a live ``pixelquery-tiler serve`` and checks the rendered PNG (tests/artifacts/qgis-*.png) has painted pixels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "browser"))
import harness  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = [
    pytest.mark.qgis,
    pytest.mark.skipif(os.environ.get("PIXELQUERY_QGIS") != "1", reason="QGIS test is opt-in: PIXELQUERY_QGIS=1 (install: bash tests/qgis/setup.sh)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    if probe.returncode != 0:
        pytest.fail("PyQGIS not importable by /usr/bin/python3: run bash tests/qgis/setup.sh")
    from pixelquery_tiler import Warehouse

    root = tmp_path_factory.mktemp("qgis")
    wh = Warehouse(str(root / "warehouse"))
    wh.ingest(str(harness.data_file("gw_LC08_224077_20200518_B2_60m.tif")), "landsat", datetime="2020-04-16T13:30:00Z")
    wh.ingest(str(harness.data_file("gw_LC08_224077_20200518_B2_30m.tif")), "landsat", datetime="2020-05-18T13:30:00Z")
    with harness.live_server(root / "warehouse", root / "server.log") as base:
        yield base


@pytest.mark.parametrize("time", [None, "2020-04-16"])
def test_qgis_renders_wmts_layer(server, time):
    harness.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = harness.ARTIFACTS / f"qgis-{time or 'default'}.png"
    out.unlink(missing_ok=True)
    cmd = [SYSTEM_PYTHON, str(HERE / "render_wmts.py"), f"{server}collections/landsat/WMTSCapabilities.xml", "--layer", "landsat", "--out", str(out)]
    if time:
        cmd += ["--time", time]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(out.parent))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert proc.returncode == 0, (result, proc.stderr[-3000:])
    assert result["valid"] and result["layer_crs"] == "EPSG:3857"
    assert result["painted_fraction"] > 0.05 and not result["render_errors"]
    if time:
        assert "tileDimensions=Time%253D" + time in result["uri"] or "tileDimensions=Time%3D" + time in result["uri"]
    assert out.is_file() and out.stat().st_size > 1000
