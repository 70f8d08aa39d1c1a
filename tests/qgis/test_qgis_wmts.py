"""QGIS as a WMTS client (opt-in: ``PIXELQUERY_QGIS=1``; install with ``bash tests/qgis/setup.sh``).

Runs tests/qgis/render_wmts.py under Debian's ``/usr/bin/python3`` with PyQGIS (QT_QPA_PLATFORM=offscreen) against
a live ``pixelquery-tiler serve``: adds the WMTS layer from the url-encoded capabilities URL, renders it to a PNG
(tests/artifacts/qgis-*.png) and checks it has painted pixels and that the Time dimension changes them.
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
EARLY, LATE = "2020-05-18", "2020-07-21"

pytestmark = [
    pytest.mark.qgis,
    pytest.mark.skipif(
        os.environ.get("PIXELQUERY_QGIS") != "1",
        reason="QGIS test is opt-in: PIXELQUERY_QGIS=1 (install: bash tests/qgis/setup.sh)",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import qgis.core"],
        capture_output=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    if probe.returncode != 0:
        pytest.fail("PyQGIS not importable by /usr/bin/python3: run bash tests/qgis/setup.sh")
    with harness.two_date_landsat_server(tmp_path_factory.mktemp("qgis"), EARLY, LATE) as base:
        yield base


def render(server: str, time: str | None) -> dict:
    harness.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = harness.ARTIFACTS / f"qgis-{time or 'default'}.png"
    out.unlink(missing_ok=True)
    cmd = [
        SYSTEM_PYTHON,
        str(HERE / "render_wmts.py"),
        f"{server}collections/landsat/WMTSCapabilities.xml?bands=blue&rescale=7000,14000",
        "--layer",
        "landsat",
        "--out",
        str(out),
    ]
    if time:
        cmd += ["--time", time]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(out.parent))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert proc.returncode == 0, (result, proc.stderr[-3000:])
    assert out.is_file() and out.stat().st_size > 1000
    return result


@pytest.fixture(scope="module")
def renders(server) -> dict:
    results = {t: render(server, t) for t in (None, EARLY, LATE)}
    harness.publish_docs(results[LATE]["out"], "qgis-wmts")
    return results


@pytest.mark.parametrize("time", [None, EARLY, LATE])
def test_qgis_renders_wmts_layer(renders, time):
    result = renders[time]
    assert result["valid"] and result["layer_crs"] == "EPSG:3857"
    assert result["layer"].startswith("landsat")
    assert result["painted_fraction"] > 0.05 and not result["render_errors"]
    if time:
        assert f"tileDimensions=Time%3D{time}" in result["uri"]


def test_qgis_time_dimension_changes_pixels(renders):
    assert harness.changed_fraction(renders[EARLY]["out"], renders[LATE]["out"], threshold=8) > 0.05
    # without a Time value QGIS uses the capabilities' Default: the latest date
    assert harness.changed_fraction(renders[None]["out"], renders[LATE]["out"], threshold=8) < 0.002
