"""Scenes, STAC Items, remote sources and duplicates (CONTRACT "Sources and scenes").

Real pixels throughout: the per-band files are the shared Landsat 7 raster's bands written one per file under
the Landsat C2 / Sentinel-2 naming conventions (``scene_fixtures``); tiles are compared with rio-tiler reading
those same files; remote sources come from a real HTTP server on loopback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import morecantile
import numpy as np
import pytest
from rasterio.crs import CRS
from rio_tiler.io import Reader

from pixelquery_tiler import Warehouse
from scene_fixtures import (
    LANDSAT_ID,
    S2_SCENE,
    cli,
    closed_port,
    ingest,
    landsat_scene,
    sentinel2_scene,
    serve_folder,
)

WEB = morecantile.tms.get("WebMercatorQuad")


def fails(capsys: pytest.CaptureFixture, reason: str, *args: object) -> str:
    """Non-zero exit, one line on stderr containing ``reason``, nothing on stdout."""
    code, out, err = cli(capsys, *args)
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixelquery-tiler: error:") and reason in lines[0], err
    return lines[0]


def snapshot_ids(warehouse: Path, collection: str) -> list[int]:
    wh = Warehouse(str(warehouse))
    if collection not in wh.collections():
        return []
    return [s.snapshot_id for s in wh.collection(collection).snapshots()]


def npy_tile(client, url: str) -> np.ma.MaskedArray:
    import io

    r = client.get(url)
    assert r.status_code == 200, r.text
    arr = np.load(io.BytesIO(r.content))
    return np.ma.MaskedArray(arr[:-1], mask=np.broadcast_to(arr[-1] == 0, arr[:-1].shape))


def centre_tile(path: Path, z: int) -> morecantile.Tile:
    with Reader(str(path)) as src:
        w, s, e, n = src.get_geographic_bounds(CRS.from_epsg(4326))
    return WEB.tile((w + e) / 2, (s + n) / 2, z)


@pytest.fixture(scope="module")
def landsat_files(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> list[Path]:
    return landsat_scene(tmp_path_factory.mktemp("landsat"), shared_data)


# -- scenes -------------------------------------------------------------------------------------------------------
def test_three_file_landsat_scene_is_one_item_with_true_colour(
    tmp_path: Path, capsys: pytest.CaptureFixture, landsat_files: list[Path]
) -> None:
    from fastapi.testclient import TestClient

    from pixelquery_tiler import create_app

    [item] = ingest(capsys, tmp_path / "wh", *landsat_files, "--collection", "landsat")
    assert item["item_id"] == LANDSAT_ID and item["datetime"].startswith("2020-05-18")
    assert item["bands"] == ["blue", "green", "red"]
    assert item["sources"] == [str(p) for p in landsat_files]
    assert len(snapshot_ids(tmp_path / "wh", "landsat")) == 1

    blue, green, red = landsat_files
    with Reader(str(red)) as src:
        z = src.maxzoom + 1  # finer than native: both sides read native pixels (nearest)
    t = centre_tile(red, z)
    refs = []
    for path in (red, green, blue):
        with Reader(str(path)) as src:
            refs.append(src.tile(t.x, t.y, t.z, resampling_method="nearest"))
    ref = np.ma.concatenate([r.array for r in refs])
    ref_mask = np.logical_and.reduce([r.mask == 0 for r in refs])  # tile mask: invalid where no band is valid
    with TestClient(create_app(str(tmp_path / "wh"), refresh_interval=0.0)) as client:
        ours = npy_tile(
            client,
            f"/collections/landsat/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.npy?bands=red,green,blue&resampling=nearest",
        )
    assert ours.shape == ref.shape
    valid = ~np.ma.getmaskarray(ours) & ~np.ma.getmaskarray(ref)
    assert valid.mean() > 0.5
    # >= 99%: nearest sampling on both sides picks the same source pixel except where a pixel centre falls on an
    # output pixel edge (float rounding of the two warps); masks agree on the same share
    assert (ours.data[valid] == ref.data[valid]).mean() >= 0.99
    assert (np.ma.getmaskarray(ours)[0] == ref_mask).mean() >= 0.99


def test_sentinel2_scene_keeps_each_band_at_its_resolution(
    tmp_path: Path, capsys: pytest.CaptureFixture, shared_data: Path
) -> None:
    files = sentinel2_scene(tmp_path / "s2", shared_data)
    [item] = ingest(capsys, tmp_path / "wh", *files.values(), "--collection", "s2")
    assert item["item_id"] == S2_SCENE and item["datetime"] == "2020-05-23T13:32:39Z"
    assert item["bands"] == ["red", "nir", "swir16"]
    rows = Warehouse(str(tmp_path / "wh")).collection("s2").index().rows
    level0 = rows.filter(np.array(rows.column("level").to_pylist()) == 0).to_pylist()
    res = {tuple(r["bands"]): r["res_x"] for r in level0}
    assert res == {("red", "nir"): pytest.approx(28.5), ("swir16",): pytest.approx(57.0)}


def test_scene_flag_makes_one_item_and_bands_name_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, landsat_files: list[Path]
) -> None:
    plain = []
    for i, path in enumerate(landsat_files):
        plain.append(tmp_path / f"band{i}.tif")
        shutil.copy(path, plain[-1])
    [item] = ingest(
        capsys, tmp_path / "wh", *plain, "--collection", "c", "--scene", "--bands", "b,g,r", "--datetime", "2020-05-18"
    )
    assert item["bands"] == ["b", "g", "r"] and len(item["sources"]) == 3
    assert len(snapshot_ids(tmp_path / "wh", "c")) == 1


# -- STAC Items ------------------------------------------------------------------------------------------------------
def _stac_item(folder: Path, files: list[Path], **assets_extra) -> Path:
    """A STAC 1.0 Item next to ``files`` whose assets point at them by relative href."""
    names = ["blue", "green", "red"]
    doc = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "my-scene-1",
        "geometry": None,
        "bbox": None,
        "properties": {"datetime": "2020-05-18T13:10:00Z", "eo:cloud_cover": 12.5, "platform": "landsat-8"},
        "links": [],
        "assets": {
            **{
                f"B{i + 2}": {
                    "href": f"./{p.name}",
                    "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "roles": ["data"],
                    "eo:bands": [{"name": f"B{i + 2}", "common_name": names[i]}],
                }
                for i, p in enumerate(files)
            },
            "thumbnail": {"href": "./thumb.png", "type": "image/png", "roles": ["thumbnail"]},
            **assets_extra,
        },
    }
    path = folder / "item.json"
    path.write_text(json.dumps(doc))
    return path


def test_stac_item_with_relative_hrefs(
    tmp_path: Path, capsys: pytest.CaptureFixture, landsat_files: list[Path]
) -> None:
    item_path = _stac_item(landsat_files[0].parent, landsat_files)
    [item] = ingest(capsys, tmp_path / "wh", item_path, "--collection", "stac")
    assert item["item_id"] == "my-scene-1" and item["datetime"] == "2020-05-18T13:10:00Z"
    assert item["bands"] == ["blue", "green", "red"]
    assert item["sources"][0] == str(item_path) and item["sources"][1:] == [str(p) for p in landsat_files]
    [snap] = Warehouse(str(tmp_path / "wh")).collection("stac").snapshots()
    assert json.loads(snap.properties["properties"]) == {"eo:cloud_cover": 12.5, "platform": "landsat-8"}
    # --assets picks keys
    [one] = ingest(capsys, tmp_path / "wh", item_path, "--collection", "red", "--assets", "B4")
    assert one["bands"] == ["red"]
    # our STAC item shows the source item's properties
    from fastapi.testclient import TestClient

    from pixelquery_tiler import create_app

    with TestClient(create_app(str(tmp_path / "wh"), refresh_interval=0.0)) as client:
        props = client.get("/stac/collections/stac/items/my-scene-1").json()["properties"]
    assert props["eo:cloud_cover"] == 12.5 and props["platform"] == "landsat-8"


def test_http_source_equals_disk(tmp_path: Path, capsys: pytest.CaptureFixture, landsat_files: list[Path]) -> None:
    red = landsat_files[2]
    [disk] = ingest(capsys, tmp_path / "a", red, "--collection", "c")
    with serve_folder(red.parent) as base:
        [remote] = ingest(capsys, tmp_path / "b", f"{base}/{red.name}", "--collection", "c")
        assert remote["sources"] == [f"{base}/{red.name}"]
        # a STAC item served over HTTP resolves its relative hrefs against its URL
        _stac_item(red.parent, landsat_files)
        [stac] = ingest(capsys, tmp_path / "c", f"{base}/item.json", "--collection", "c")
        assert stac["sources"][1:] == [f"{base}/{p.name}" for p in landsat_files]
    bounds = Warehouse(str(tmp_path / "a")).collection("c").index().items[0].bbox
    reads = [Warehouse(str(tmp_path / w)).collection("c").read(bounds, "EPSG:4326", 300, 300) for w in "ab"]
    assert np.array_equal(reads[0].data.filled(0), reads[1].data.filled(0))
    assert np.array_equal(np.ma.getmaskarray(reads[0].data), np.ma.getmaskarray(reads[1].data))
    assert disk["bbox"] == remote["bbox"]


# -- duplicates ------------------------------------------------------------------------------------------------------
def test_duplicate_source_refused_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture, landsat_files: list[Path]
) -> None:
    wh = tmp_path / "wh"
    [first] = ingest(capsys, wh, landsat_files[0], "--collection", "c", "--datetime", "2020-05-18")
    before = snapshot_ids(wh, "c")
    line = fails(capsys, "already ingested", "ingest", wh, landsat_files[0], "--collection", "c")
    assert first["item_id"] in line
    assert snapshot_ids(wh, "c") == before
    # a copy under another name is another source
    copy = tmp_path / "copy.tif"
    shutil.copy(landsat_files[0], copy)
    ingest(capsys, wh, copy, "--collection", "c", "--datetime", "2020-05-18")
    [again] = ingest(capsys, wh, landsat_files[0], "--collection", "c", "--allow-duplicate")
    assert again["item_id"] != first["item_id"]
    assert len(snapshot_ids(wh, "c")) == 3


# -- bad input: one line, nothing committed ---------------------------------------------------------------------------
def test_bad_scene_inputs_commit_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, landsat_files: list[Path], shared_data: Path
) -> None:
    wh = tmp_path / "wh"
    other = shared_data / "gw_LC08_224077_20200518_B2_30m.tif"  # Brazil/Paraguay border, far from Recife
    fails(
        capsys,
        "does not overlap",
        "ingest",
        wh,
        landsat_files[2],
        other,
        "--collection",
        "c",
        "--scene",
        "--datetime",
        "2020-05-18",
    )
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(landsat_files[2], twin / landsat_files[2].name)
    fails(
        capsys,
        "two files for band 'red'",
        "ingest",
        wh,
        landsat_files[2],
        twin / landsat_files[2].name,
        "--collection",
        "c",
    )
    no_raster = tmp_path / "meta.json"
    meta = {"href": "./x.xml", "type": "application/xml", "roles": ["metadata"]}
    no_raster.write_text(
        json.dumps(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": "x",
                "properties": {"datetime": "2020-01-01T00:00:00Z"},
                "assets": {"meta": meta},
            }
        )
    )
    fails(capsys, "no raster assets", "ingest", wh, no_raster, "--collection", "c")
    fails(capsys, "unreachable", "ingest", wh, f"http://127.0.0.1:{closed_port()}/x.tif", "--collection", "c")
    with serve_folder(landsat_files[0].parent) as base:
        fails(capsys, "HTTP 404", "ingest", wh, f"{base}/missing.tif", "--collection", "c")
        item = _stac_item(tmp_path, landsat_files[:1])  # relative href ./<name> does not exist next to it
        fails(capsys, "no such file", "ingest", wh, item, "--collection", "c")
    assert Warehouse(str(wh)).collections() == []
    assert not (wh / "chunks").exists() or not any((wh / "chunks").rglob("*.arrow"))


def test_mixed_resolution_reads(tmp_path: Path, capsys: pytest.CaptureFixture, shared_data: Path) -> None:
    """Each band is served from its own group's chunks at its own resolution; band math mixes them."""
    from fastapi.testclient import TestClient

    from pixelquery_tiler import create_app

    files = sentinel2_scene(tmp_path / "s2", shared_data)
    [item] = ingest(capsys, tmp_path / "wh", *files.values(), "--collection", "s2")
    with Reader(str(files["red"])) as src:
        z = src.maxzoom + 1
    t = centre_tile(files["red"], z)
    base = f"/collections/s2/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.npy"
    with TestClient(create_app(str(tmp_path / "wh"), refresh_interval=0.0)) as client:
        for urlbase in (base, base.replace("/tiles/", f"/items/{item['item_id']}/tiles/")):
            ours = npy_tile(client, f"{urlbase}?bands=red,nir,swir16&resampling=nearest")
            for i, band in enumerate(("red", "nir", "swir16")):
                with Reader(str(files[band])) as src:
                    ref = src.tile(t.x, t.y, t.z, resampling_method="nearest").array[0]
                valid = ~np.ma.getmaskarray(ours[i]) & ~np.ma.getmaskarray(ref)
                assert valid.mean() > 0.5, band
                # >= 99%: nearest on both sides picks the same native pixel of that band's own file (20 m band:
                # its 57 m grid, not a resampled copy); the rest are pixel centres on output pixel edges
                assert (ours[i].data[valid] == ref.data[valid]).mean() >= 0.99, band
            expr = npy_tile(client, f"{urlbase}?expression=(nir-swir16)/(nir%2Bswir16)&resampling=nearest")
            both = ~np.ma.getmaskarray(ours[1]) & ~np.ma.getmaskarray(ours[2]) & ((ours[1].data + ours[2].data) > 0)
            assert np.isfinite(expr.data[0][both]).all() and both.mean() > 0.5
        stac = client.get(f"/stac/collections/s2/items/{item['item_id']}").json()
        assert [(b["name"], round(b["gsd"])) for b in stac["properties"]["bands"]] == [
            ("red", 28),
            ("nir", 28),
            ("swir16", 57),
        ]
        assert len(client.get("/stac/collections/s2/items").json()["features"]) == 1


def test_readme_ingest_real_imagery_commands_run(tmp_path: Path, shared_data: Path) -> None:
    """Every command of the README's "Ingest real imagery" bash block runs as written (a shell, the console script)."""
    import os
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Ingest real imagery", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line for line in block.splitlines() if line.startswith("pixelquery-tiler ")]
    assert len(commands) >= 8
    landsat = landsat_scene(tmp_path, shared_data)
    landsat_scene(tmp_path / "data" / "scene", shared_data)  # what the init template's files glob finds
    sentinel2_scene(tmp_path, shared_data)
    for name, path in zip(("b", "g", "r"), landsat, strict=True):
        shutil.copy(path, tmp_path / f"{name}.tif")
    _stac_item(tmp_path, landsat)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for command in commands:
        proc = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, f"{command}: {proc.stderr}"
    wh = Warehouse(str(tmp_path / "wh"))
    assert sorted(wh.collections()) == ["landsat", "rgb", "sentinel2", "stac"]
    assert {s.item_id for s in wh.collection("sentinel2").snapshots()} == {S2_SCENE}
    assert len(wh.collection("stac").snapshots()) == 2
    assert len(wh.collection("landsat").snapshots()) == 2  # the command line's scene and the pipeline's copy
