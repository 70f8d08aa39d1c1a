"""stac-api-validator against the live STAC API (real HTTP), offline.

The validator downloads JSON schemas; the shared shim (../shared/tools/offline-stac-schemas) answers them
from ``$STAC_SCHEMA_DIR/<host>/<path>``. That folder is a merge made here: the shim's extension schemas plus
our own extension schema under its ``$id`` (pixelquery.github.io/...), so our items and collections are
validated against it too, strictly (``STAC_SCHEMA_STRICT=1``: no permissive fallbacks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from pixelquery_tiler.stac_api.documents import PIXELQUERY_EXTENSION
from stac_fixtures import EXTENSION_SCHEMA, SHIM_DIR, StacServer


def merged_schema_dir(target: Path) -> Path:
    for entry in (SHIM_DIR / "schemas").iterdir():
        (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    ours = urlparse(PIXELQUERY_EXTENSION)
    dest = target / ours.netloc / ours.path.lstrip("/")
    dest.parent.mkdir(parents=True)
    dest.symlink_to(EXTENSION_SCHEMA)
    return target


@pytest.mark.slow
def test_stac_api_validator_passes(stac_server: StacServer, tmp_path: Path) -> None:
    if not (SHIM_DIR / "offline_schemas.py").exists():
        pytest.skip(f"offline STAC schema shim not found in {SHIM_DIR}")
    pytest.importorskip("stac_api_validator")
    w, s, e, n = stac_server.ingests["landsat"][0]["bbox"]
    geometry = {"type": "Polygon", "coordinates": [[[w + 0.1, s + 0.1], [e - 0.1, s + 0.1], [e - 0.1, n - 0.1], [w + 0.1, n - 0.1], [w + 0.1, s + 0.1]]]}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SHIM_DIR), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "STAC_SCHEMA_DIR": str(merged_schema_dir(tmp_path)),
        "STAC_SCHEMA_STRICT": "1",
    }
    conformance = ["core", "collections", "features", "item-search", "filter", "item-search#fields", "item-search#sort"]
    proc = subprocess.run(
        [
            sys.executable, "-m", "stac_api_validator",
            "--root-url", f"{stac_server.stac}/",
            *(arg for c in conformance for arg in ("--conformance", c)),
            "--collection", "landsat",
            "--geometry", json.dumps(geometry),
            "--fields-nested-property", "properties.gsd",
            "--validate-pagination",
            "--log-level", "WARNING",
        ],
        capture_output=True, text=True, env=env, timeout=900,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Errors: none" in proc.stdout, report[-6000:]
    assert "permissive" not in report  # every schema was really applied (strict mode would fail otherwise)
