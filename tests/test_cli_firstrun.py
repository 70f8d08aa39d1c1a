"""First-run friction of the CLI (issue: first run and robustness): each case as a user meets it."""

from __future__ import annotations

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
