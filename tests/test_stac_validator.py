"""Validators against the live STAC API (real HTTP), with no network beyond loopback.

The shared shim (../shared/tools/offline-stac-schemas) answers the standard STAC schema hosts from local files,
strictly (``STAC_SCHEMA_STRICT=1``: no permissive fallbacks). Our own extension schema is NOT given to the
validators: documents name it at the server (``/stac/extensions/pixelquery/v1.0.0/schema.json``), which serves
it, so validation works for any client that reaches the server, and really applies our schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from stac_fixtures import EXTENSION_SCHEMA, SHIM_DIR, StacServer


def _shim_env() -> dict[str, str]:
    if not (SHIM_DIR / "offline_schemas.py").exists():
        pytest.skip(f"offline STAC schema shim not found in {SHIM_DIR}")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SHIM_DIR), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "STAC_SCHEMA_DIR": str(SHIM_DIR / "schemas"),
        "STAC_SCHEMA_STRICT": "1",
    }


def test_extension_schema_is_served_where_documents_name_it(stac_server: StacServer) -> None:
    item = httpx.get(f"{stac_server.stac}/collections/landsat/items?limit=1").raise_for_status().json()["features"][0]
    collection = httpx.get(f"{stac_server.stac}/collections/landsat").raise_for_status().json()
    ours = f"{stac_server.stac}/extensions/pixelquery/v1.0.0/schema.json"
    assert ours in item["stac_extensions"] and ours in collection["stac_extensions"]
    r = httpx.get(ours)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/schema+json")
    schema = r.json()
    assert schema["$id"] == ours  # the identifier is the URL it was fetched from
    assert {k: v for k, v in schema.items() if k != "$id"} == {
        k: v for k, v in json.loads(EXTENSION_SCHEMA.read_text()).items() if k != "$id"
    }


def test_queryables_geometry_schema_is_served_by_the_server(stac_server: StacServer) -> None:
    """The ``geometry`` queryable refers to a GeoJSON schema this server serves (offline, behind proxies)."""
    import jsonschema

    for url in (f"{stac_server.stac}/queryables", f"{stac_server.stac}/collections/landsat/queryables"):
        ref = httpx.get(url).raise_for_status().json()["properties"]["geometry"]["$ref"]
        assert ref == f"{stac_server.stac}/schemas/geojson/Geometry.json"
    r = httpx.get(ref)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/schema+json")
    schema = r.json()
    assert schema["$id"] == ref and schema["title"] == "GeoJSON Geometry"
    polygon = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    jsonschema.validate(polygon, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "Polygon", "coordinates": [1, 2]}, schema)


# pystac in a fresh process: its validator knows only the shim, so our schema must come from the server
PYSTAC_CHECK = r"""
import copy, json, sys, urllib.request
import offline_schemas  # noqa: F401  (standard schema hosts answered locally, strictly)
import pystac, pystac.validation
item = json.load(urllib.request.urlopen(sys.argv[1]))["features"][0]
used = pystac.validation.validate_dict(item)
print(json.dumps(used))
broken = copy.deepcopy(item)
broken["properties"]["pixelquery:snapshot_id"] = "not a number"
try:
    pystac.validation.validate_dict(broken)
except pystac.errors.STACValidationError:
    print("rejected")
"""


def test_pystac_validates_items_fetching_our_schema_from_the_server(stac_server: StacServer) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PYSTAC_CHECK, f"{stac_server.stac}/collections/landsat/items?limit=1"],
        capture_output=True,
        text=True,
        env=_shim_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    used, verdict = proc.stdout.strip().splitlines()
    assert f"{stac_server.stac}/extensions/pixelquery/v1.0.0/schema.json" in json.loads(used)
    assert verdict == "rejected"  # the served schema is really applied


@pytest.mark.slow
def test_stac_api_validator_passes(stac_server: StacServer, tmp_path: Path) -> None:
    env = _shim_env()
    pytest.importorskip("stac_api_validator")
    w, s, e, n = stac_server.ingests["landsat"][0]["bbox"]
    ring = [[w + 0.1, s + 0.1], [e - 0.1, s + 0.1], [e - 0.1, n - 0.1], [w + 0.1, n - 0.1], [w + 0.1, s + 0.1]]
    geometry = {"type": "Polygon", "coordinates": [ring]}
    conformance = ["core", "collections", "features", "item-search", "filter", "item-search#fields", "item-search#sort"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stac_api_validator",
            "--root-url",
            f"{stac_server.stac}/",
            *(arg for c in conformance for arg in ("--conformance", c)),
            "--collection",
            "landsat",
            "--geometry",
            json.dumps(geometry),
            "--fields-nested-property",
            "properties.gsd",
            "--validate-pagination",
            "--log-level",
            "WARNING",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Errors: none" in proc.stdout, report[-6000:]
    assert "permissive" not in report  # every schema was really applied (strict mode would fail otherwise)
