"""First-run friction of the CLI (issue: first run and robustness): each case as a user meets it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from warehouse_fixtures import ingest_json, run_cli, write_geotiff


@pytest.fixture(scope="module")
def one_item_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("firstrun")
    ingest_json(root / "wh", [write_geotiff(root / "a.tif", seed=1, datetime_tag="2021:05:01 10:00:00")], "landsat")
    return root / "wh"


@pytest.fixture()
def busy_port() -> int:
    """A port some other process (here: this test) is listening on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_snapshots_typo_lists_existing_collections(one_item_warehouse: Path) -> None:
    line = _one_line_error(run_cli("snapshots", one_item_warehouse, "--collection", "landsta"))
    assert "'landsta' not found" in line and "landsat" in line.split("not found", 1)[1]


def test_serve_on_busy_port_is_one_line_before_any_url(one_item_warehouse: Path, busy_port: int) -> None:
    proc = run_cli("serve", one_item_warehouse, "--port", str(busy_port), timeout=60)
    line = _one_line_error(proc)
    assert f"127.0.0.1:{busy_port}" in line and "--port" in line
    assert "http://" not in proc.stdout + proc.stderr


def test_demo_on_busy_port_is_one_line_before_any_url(tmp_path: Path, busy_port: int) -> None:
    proc = run_cli("demo", "--port", str(busy_port), "--warehouse", tmp_path / "demo", timeout=60)
    line = _one_line_error(proc)
    assert "--port" in line and "http://" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("verbose", [False, True])
def test_unexpected_errors_traceback_only_with_verbose(tmp_path: Path, verbose: bool) -> None:
    """``-v`` promises details: an unexpected error then prints its traceback; without it, one line."""
    script = (
        "import sys, pixelquery_tiler.cli as c\n"
        "def boom(args): raise RuntimeError('kaboom')\n"
        "c.cmd_collections = boom\n"
        f"sys.exit(c.main({['-v'] if verbose else []!r} + ['collections', {str(tmp_path)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "RuntimeError: kaboom" in proc.stderr
    assert ("Traceback" in proc.stderr) is verbose


def test_ingest_into_a_new_collection_says_so(one_item_warehouse: Path, tmp_path: Path) -> None:
    """A typo in ``--collection`` still creates a collection (scripts rely on it), but never silently."""
    src = write_geotiff(tmp_path / "b.tif", seed=3, datetime_tag="2021:05:02 10:00:00")
    proc = run_cli("ingest", one_item_warehouse, src, "--collection", "landsta", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "created new collection 'landsta'" in proc.stderr and "existing: landsat" in proc.stderr
    json.loads(proc.stdout)  # --json output stays clean
    again = write_geotiff(tmp_path / "c.tif", seed=4, datetime_tag="2021:05:03 10:00:00")
    proc = run_cli("ingest", one_item_warehouse, again, "--collection", "landsta")
    assert proc.returncode == 0 and "created new collection" not in proc.stderr


def test_a_directory_source_is_named_as_such(tmp_path: Path) -> None:
    line = _one_line_error(run_cli("ingest", tmp_path / "wh", tmp_path, "--collection", "c"))
    assert "is a directory" in line
    assert not (tmp_path / "wh").exists()


def test_help_explains_warehouse_and_shows_defaults() -> None:
    top = run_cli("--help")
    assert top.returncode == 0 and "CONTRACT" not in top.stdout and "examples:" in top.stdout
    serve = run_cli("serve", "--help").stdout
    assert "WAREHOUSE" in serve and "first ingest creates it" in serve
    for option, default in (("--host", "127.0.0.1"), ("--port", "8000"), ("--workers", "1")):
        block = serve.split(option, 2)[-1][:400]
        assert f"(default: {default})" in " ".join(block.split()), (option, block)
    assert run_cli("--version").stdout.startswith("pixelquery-tiler ")


def test_snapshots_print_a_header_on_a_terminal_only(one_item_warehouse: Path) -> None:
    import os
    import pty

    plain = run_cli("snapshots", one_item_warehouse, "--collection", "landsat").stdout.splitlines()
    assert len(plain) == 1 and plain[0].split("\t")[0].isdigit()  # pipes and scripts: rows only
    leader, follower = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "pixelquery_tiler", "snapshots", str(one_item_warehouse), "--collection", "landsat"],
        stdout=follower,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    os.close(follower)
    out = os.read(leader, 65536).decode()
    os.close(leader)
    assert proc.returncode == 0
    lines = out.replace("\r", "").splitlines()
    assert lines[0].split("\t") == ["snapshot_id", "committed", "item_id", "acquired"] and len(lines) == 2


def test_a_product_that_contradicts_the_file_is_warned_about(tmp_path: Path) -> None:
    """``--product planetscope-4band`` on an 8-bit RGB+NIR file: accepted, but the user hears it renders black."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "rgbn_uint8.tif"
    profile = {
        "driver": "GTiff",
        "width": 64,
        "height": 64,
        "count": 4,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(300000, 5000000, 3, 3),
        "photometric": "MINISBLACK",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.random.default_rng(1).integers(1, 255, (4, 64, 64), dtype=np.uint8))
    args = ("ingest", tmp_path / "wh", path, "--collection", "c", "--datetime", "2021-01-01")
    proc = run_cli(*args, "--product", "planetscope-4band")
    assert proc.returncode == 0, proc.stderr
    assert "renders values up to 3000 but the file is uint8" in proc.stderr
    fitting = run_cli(*args[:3], "--collection", "d", "--datetime", "2021-01-01", "--product", "generic-rgbn")
    assert fitting.returncode == 0 and "WARNING" not in fitting.stderr, fitting.stderr
