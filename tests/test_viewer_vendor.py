"""The chart library the viewer ships (static/viewer/uplot) is the npm build pinned by vendor/package-lock.json.

The built files are committed (the server needs no Node.js and no CDN); ``vendor/sync.sh`` copies them from
``vendor/node_modules`` after ``npm ci``. These checks keep the copy and the lockfile from drifting apart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO / "vendor"
SHIPPED = REPO / "pixelquery_tiler" / "static" / "viewer" / "uplot"
FILES = ("uPlot.iife.min.js", "uPlot.min.css")


def _locked_version() -> str:
    lock = json.loads((VENDOR / "package-lock.json").read_text())
    return lock["packages"]["node_modules/uplot"]["version"]


def test_shipped_uplot_is_the_locked_version():
    version = _locked_version()
    assert json.loads((VENDOR / "package.json").read_text())["dependencies"]["uplot"] == version  # pinned exactly
    header = (SHIPPED / "uPlot.iife.min.js").read_text(encoding="utf-8")[:200]
    assert re.search(r"uPlot \(v([\d.]+)\)", header).group(1) == version
    assert (SHIPPED / "LICENSE").read_text().startswith("The MIT License")


def test_shipped_files_equal_the_npm_build():
    installed = VENDOR / "node_modules" / "uplot"
    if not (installed / "package.json").is_file():
        pytest.skip("vendor/node_modules not installed (cd vendor && npm ci)")
    assert json.loads((installed / "package.json").read_text())["version"] == _locked_version()
    for name in FILES:
        assert (SHIPPED / name).read_bytes() == (installed / "dist" / name).read_bytes(), name


def test_viewer_page_loads_the_local_copy_only():
    html = (REPO / "pixelquery_tiler" / "static" / "viewer" / "index.html").read_text()
    assert 'src="static/viewer/uplot/uPlot.iife.min.js"' in html and 'src="static/viewer/chart.js"' in html
    assert "//" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', html))  # no CDN or absolute URL
