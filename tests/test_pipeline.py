"""Pipelines (CONTRACT "Pipelines"): init, run, incremental re-runs, dry runs, validation, and a STAC search job
against this project's own STAC API served by uvicorn on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pixelquery_tiler import Warehouse
from pixelquery_tiler.cli import main
from pixelquery_tiler.pipeline import load_pipeline
from scene_fixtures import LANDSAT_ID, cli, landsat_scene
from servers import ServerThread


def write_pipeline(folder: Path, jobs: list[dict], warehouse: str = "wh") -> Path:
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"warehouse": warehouse, "jobs": jobs}))
    return path


def snapshots(warehouse: Path, collection: str) -> list[int]:
    wh = Warehouse(str(warehouse))
    return [s.snapshot_id for s in wh.collection(collection).snapshots()] if collection in wh.collections() else []


@pytest.fixture()
def scene_dir(tmp_path: Path, shared_data: Path) -> Path:
    landsat_scene(tmp_path / "data" / "scene", shared_data)
    return tmp_path


def test_init_writes_a_valid_commented_template(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = cli(capsys, "init", tmp_path)
    assert code == 0 and out.strip() == str(tmp_path / "pipeline.yaml")
    text = (tmp_path / "pipeline.yaml").read_text()
    assert text.count("#") > 10
    pipeline, base = load_pipeline(tmp_path / "pipeline.yaml")
    assert pipeline.jobs[0].collection == "landsat" and base == tmp_path.resolve()
    assert cli(capsys, "init", tmp_path)[0] != 0  # never overwrites


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("pixelquery-tiler 0.")


def test_run_is_incremental_and_dry_run_changes_nothing(scene_dir: Path, capsys: pytest.CaptureFixture) -> None:
    pipeline = write_pipeline(scene_dir, [{"collection": "landsat", "files": "data/**/LC08_*_SR_B*.TIF"}])
    code, out, err = cli(capsys, "run", pipeline, "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out) == {"ingested": [LANDSAT_ID], "skipped": [], "failed": [], "dry_run": True}
    assert not (scene_dir / "wh").exists()

    code, out, err = cli(capsys, "run", pipeline, "--json")
    assert code == 0, err
    assert json.loads(out)["ingested"] == [LANDSAT_ID]
    before = snapshots(scene_dir / "wh", "landsat")
    assert len(before) == 1

    code, out, err = cli(capsys, "run", pipeline, "--json")
    report = json.loads(out)
    assert code == 0 and report["ingested"] == [] and len(report["skipped"]) == 3 and report["failed"] == []
    assert snapshots(scene_dir / "wh", "landsat") == before


@pytest.mark.parametrize(
    "jobs, reason",
    [
        ([{"collection": "c", "fles": "*.tif"}], "jobs.0.fles: unknown key"),
        ([{"files": "*.tif"}], "jobs.0.collection: required key missing"),
        ([{"collection": "c", "files": "*.tif", "s3": "s3://b/p/"}], "exactly one of files, s3, stac"),
        ([{"collection": "c", "files": "nothing/*.tif"}], "jobs.0.files: 'nothing/*.tif' matches no file"),
        ([{"collection": "landsat", "files": "data/**/*.TIF"}, {"collection": "c", "files": "notes.tif"}], "jobs.1: "),
    ],
)
def test_bad_pipeline_fails_before_any_commit(
    scene_dir: Path, capsys: pytest.CaptureFixture, jobs: list[dict], reason: str
) -> None:
    (scene_dir / "notes.tif").write_text("not a raster\n")
    code, out, err = cli(capsys, "run", write_pipeline(scene_dir, jobs))
    lines = err.strip().splitlines()
    assert code != 0 and out == "" and len(lines) == 1 and reason in lines[0], err
    assert snapshots(scene_dir / "wh", "landsat") == []


@pytest.fixture()
def stac_server(scene_dir: Path, capsys: pytest.CaptureFixture):
    """Warehouse ``served`` holding the Landsat scene, served by uvicorn on a free loopback port."""
    from pixelquery_tiler import create_app

    files = sorted((scene_dir / "data" / "scene").glob("*.TIF"))
    assert main(["ingest", str(scene_dir / "served"), *map(str, files), "--collection", "scenes"]) == 0
    capsys.readouterr()
    with ServerThread(create_app(str(scene_dir / "served"), refresh_interval=0.0)) as server:
        yield server.url


def test_stac_job_against_our_own_stac_api(scene_dir: Path, capsys: pytest.CaptureFixture, stac_server: str) -> None:
    """Search our /stac, ingest the found item's GeoTIFF asset into another warehouse; a re-run skips it."""
    job = {
        "collection": "copy",
        "stac": {"url": f"{stac_server}/stac", "collections": ["scenes"], "assets": ["overview"], "limit": 5},
    }
    pipeline = write_pipeline(scene_dir, [job], warehouse="copy-wh")
    code, out, err = cli(capsys, "run", pipeline, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ingested"] == [LANDSAT_ID] and report["failed"] == []
    wh = Warehouse(str(scene_dir / "copy-wh"))
    [snap] = wh.collection("copy").snapshots()
    assert snap.item_id == LANDSAT_ID and snap.datetime.isoformat().startswith("2020-05-18")
    assert wh.collection("copy").index().items[0].bands == ("blue", "green", "red")
    code, out, _ = cli(capsys, "run", pipeline, "--json")
    assert json.loads(out)["ingested"] == [] and len(json.loads(out)["skipped"]) == 1
