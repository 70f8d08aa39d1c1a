"""The ``pixelquery-tiler`` CLI as a user runs it (subprocesses): output formats and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pixelquery_tiler import Warehouse
from warehouse_fixtures import cli_ok, ingest_json, run_cli, snapshot_ids, write_geotiff

STARS = "stars_L7_ETMs_olinda_28m.tif"


@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Two synthetic observations in collection ``c`` (datetimes from TIFF tags)."""
    root = tmp_path_factory.mktemp("cli")
    files = [
        write_geotiff(root / "a.tif", seed=1, datetime_tag="2021:05:01 10:00:00"),
        write_geotiff(root / "b.tif", seed=2, datetime_tag="2021:05:02 10:00:00"),
    ]
    return root / "wh", ingest_json(root / "wh", files, "c")


def test_ingest_json_fields(small_warehouse: tuple[Path, list[dict]]) -> None:
    _, results = small_warehouse
    assert len(results) == 2
    for r, day in zip(results, ("01", "02"), strict=True):
        assert {"item_id", "snapshot_id", "collection", "datetime", "bbox"} <= r.keys()
        assert r["collection"] == "c" and r["datetime"] == f"2021-05-{day}T10:00:00Z"
        west, south, east, north = r["bbox"]
        assert -180 <= west < east <= 180 and -90 <= south < north <= 90
        assert -55.1 < west < -54.9 and -25.2 < south < -25.0  # UTM 21S synthetic place, in WGS84
    assert results[0]["snapshot_id"] != results[1]["snapshot_id"]


def test_snapshots_json_and_text(small_warehouse: tuple[Path, list[dict]]) -> None:
    warehouse, results = small_warehouse
    snaps = json.loads(cli_ok("snapshots", warehouse, "--collection", "c", "--json").stdout)
    assert [s["snapshot_id"] for s in snaps] == [r["snapshot_id"] for r in results]
    assert [s["item_id"] for s in snaps] == [r["item_id"] for r in results]
    assert all({"snapshot_id", "timestamp", "item_id", "datetime"} <= s.keys() for s in snaps)
    lines = cli_ok("snapshots", warehouse, "--collection", "c").stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].split("\t")[0] == str(results[0]["snapshot_id"]) and results[0]["item_id"] in lines[0]


def test_collections_json_and_text(small_warehouse: tuple[Path, list[dict]]) -> None:
    warehouse, results = small_warehouse
    cols = json.loads(cli_ok("collections", warehouse, "--json").stdout)
    assert cols == [{"id": "c", "snapshots": 2, "current_snapshot_id": results[-1]["snapshot_id"]}]
    assert cli_ok("collections", warehouse).stdout.startswith("c\t2 snapshots")


def test_console_script_and_module_agree(small_warehouse: tuple[Path, list[dict]]) -> None:
    warehouse, _ = small_warehouse
    script = Path(sys.executable).parent / "pixelquery-tiler"
    assert script.exists(), "console script not installed next to the interpreter"
    via_script = subprocess.run([str(script), "collections", str(warehouse), "--json"], capture_output=True, text=True)
    assert via_script.returncode == 0
    assert json.loads(via_script.stdout) == json.loads(cli_ok("collections", warehouse, "--json").stdout)
    assert run_cli("--help").returncode == 0


def test_text_ingest_output_and_collection_created(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "x.tif", datetime_tag="2020:02:02 02:02:02")
    proc = cli_ok("ingest", tmp_path / "wh", path, "--collection", "new")
    assert "snapshot" in proc.stdout and proc.stdout.count("\n") == 1
    assert Warehouse(str(tmp_path / "wh")).collections() == ["new"]


# -- bad input: non-zero exit, one line on stderr, nothing committed -----------------------------------------------


def _bad_inputs(tmp: Path, data: Path) -> dict[str, tuple[list[str], str]]:
    """Case -> (ingest arguments, a piece of the expected message: each case fails for its own reason)."""
    # a Landsat band file cut after 300 kB: header fine, tiles missing (name keeps product and band detection)
    truncated = tmp / "LC08_L1TP_224077_20200518_20200518_01_RT_B2.TIF"
    truncated.write_bytes((data / "gw_LC08_224077_20200518_B2_30m.tif").read_bytes()[:300_000])
    nogeo = write_geotiff(tmp / "nogeo.tif", crs=None, transform=None, datetime_tag="2020:01:01 00:00:00")
    good = str(data / STARS)
    day = ["--datetime", "2020-01-01"]
    return {
        "truncated": ([str(truncated)], "truncated or corrupt"),
        "no-georeferencing": ([str(nogeo)], "not georeferenced"),
        "unknown-product": ([good, "--product", "no-such-product", *day], "unknown product"),
        "missing-datetime": ([good], "pass --datetime"),
        "unreadable-path": ([str(tmp / "does-not-exist.tif"), *day], "no such file"),
        "directory": ([str(tmp), *day], "is a directory"),  # first-run issue: named as such
        "not-a-raster": ([str(_text_file(tmp)), *day], "cannot read raster"),
        "bad-datetime": ([good, "--datetime", "yesterday-ish"], "bad --datetime"),
        "wrong-band-count": ([good, *day, "--bands", "red,green"], "--bands names 2"),
        "bad-collection": ([good, *day, "--collection", "../x"], "invalid collection"),
        "second-file-bad": ([good, str(nogeo), *day], "nogeo.tif: not georeferenced"),
    }


def _text_file(tmp: Path) -> Path:
    path = tmp / "notes.tif"
    path.write_text("not a tiff\n")
    return path


BAD_CASES = [
    "truncated",
    "no-georeferencing",
    "unknown-product",
    "missing-datetime",
    "unreadable-path",
    "directory",
    "not-a-raster",
    "bad-datetime",
    "wrong-band-count",
    "bad-collection",
    "second-file-bad",
]


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> tuple[Path, dict[str, tuple[list[str], str]]]:
    """A warehouse with one committed item in ``c``, and the bad inputs to throw at it."""
    root = tmp_path_factory.mktemp("bad")
    ingest_json(root / "wh", [write_geotiff(root / "seed.tif", datetime_tag="2019:01:01 00:00:00")], "c")
    return root / "wh", _bad_inputs(root, shared_data)


def _state(warehouse: Path) -> tuple[list[int], int, set[Path]]:
    """Snapshot ids and visible rows of collection ``c`` (read fresh from the catalog), and chunk files."""
    collection = Warehouse(str(warehouse)).collection("c")
    files = set((warehouse / "chunks").rglob("*.arrow"))
    return [s.snapshot_id for s in collection.snapshots()], len(collection.index()), files


def _assert_one_line_error(proc: subprocess.CompletedProcess, reason: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pixelquery-tiler: error:") and "Traceback" not in proc.stderr
    assert reason in lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_commits_nothing(seeded: tuple[Path, dict[str, tuple[list[str], str]]], case: str) -> None:
    warehouse, cases = seeded
    before = _state(warehouse)
    args, reason = cases[case]
    collection = [] if "--collection" in args else ["--collection", "c"]
    _assert_one_line_error(run_cli("ingest", warehouse, *args, *collection), reason)
    assert _state(warehouse) == before, "a failed ingest changed snapshots, rows or chunk files"


@pytest.mark.parametrize("case", ["truncated", "missing-datetime"])
def test_bad_input_into_new_warehouse_creates_no_collection(tmp_path: Path, shared_data: Path, case: str) -> None:
    warehouse = tmp_path / "wh"
    args, reason = _bad_inputs(tmp_path, shared_data)[case]
    _assert_one_line_error(run_cli("ingest", warehouse, *args, "--collection", "c"), reason)
    assert snapshot_ids(warehouse, "c") == []
    assert Warehouse(str(warehouse)).collections() == []
    assert not (warehouse / "chunks").exists() or not any((warehouse / "chunks").rglob("*.arrow"))


def test_unknown_collection_and_bad_duration(tmp_path: Path) -> None:
    for args in (["snapshots", tmp_path, "--collection", "nope"], ["gc", tmp_path, "--older-than", "soon"]):
        proc = run_cli(*args)
        assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_verbose_flag_is_accepted(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "v.tif", datetime_tag="2020:02:02 02:02:02")
    proc = run_cli("-v", "ingest", tmp_path / "wh", path, "--collection", "v", env={"PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(tmp_path / "wh" / "catalog.db")
