"""The one way tests run a server: on a free loopback port, ready before use, logs shown on failure, always stopped.

Two launchers share the same pieces (free port, readiness poll, stop):

- :func:`serve`: ``pixelquery-tiler serve ARGS`` (or any command line, e.g. ``demo`` or the Docker image's) as a
  subprocess in its own process group, so ``--workers`` children and wrappers such as ``strace`` stop with it. Its
  output goes to a log file; if the server dies, never gets ready, or the test body fails, the log's tail is put
  in the error (or on stderr, which pytest shows with the failure).
- :class:`ServerThread`: the app object (``create_app(...)``) under uvicorn in a daemon thread, for tests that
  share in-process state with the server.
- :func:`http_server`: a standard-library HTTP handler in a thread (static sites, a test proxy), and
  :func:`serve_folder`: a folder over HTTP with Range requests (:class:`RangeHandler`), as GDAL's /vsicurl/ reads.

Third-party servers (PostgreSQL, SeaweedFS, moto, nginx in ``scaleout_servers.py``) keep their own starters but use
:func:`free_port`, :func:`wait_port` and :func:`stop_process` from here.
"""

from __future__ import annotations

import contextlib
import email.message
import functools
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
#: how much of a server log goes into an error message
LOG_TAIL = 3000


def free_port() -> int:
    """A loopback port that nothing listens on right now (bound by the OS, then released)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10.0, headers: dict | None = None) -> tuple[int, bytes, email.message.Message]:
    """GET with the standard library: (status, body, headers); error statuses are returned, not raised.

    The headers are the response's own mapping, whose lookups ignore case (``headers["content-type"]``).
    """
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def log_tail(log: Path, chars: int = LOG_TAIL) -> str:
    """The end of a server log (empty when there is none yet)."""
    try:
        return log.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


def wait_port(port: int, proc: subprocess.Popen | None, log: Path, timeout: float = 60.0) -> None:
    """Wait until ``port`` accepts connections; fail with the log's tail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_tail(log)}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not open after {timeout} s:\n{log_tail(log)}")


def wait_http_ok(url: str, proc: subprocess.Popen | None, log: Path, timeout: float = 90.0) -> None:
    """Wait until GET ``url`` answers 200. A slow answer on a loaded machine is waited for, not counted as down."""
    deadline = time.monotonic() + timeout
    status: int | str = "no answer"
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_tail(log)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"{url} not 200 after {timeout} s (last: {status}):\n{log_tail(log)}")
        try:
            status = http_get(url, timeout=max(1.0, min(30.0, remaining)))[0]
            if status == 200:
                return
        except OSError as exc:  # not listening yet, or the answer timed out
            status = repr(exc)
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Stop a process started in its own session: ``sig`` to its whole group, SIGKILL if it outlives ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    # children of a leader that died first (uvicorn workers of a SIGKILLed server) must not outlive the test
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def cli() -> list[str]:
    """How a user runs the CLI: the console script beside this interpreter (or on PATH), else ``python -m``."""
    exe = shutil.which("pixelquery-tiler", path=str(Path(sys.executable).parent)) or shutil.which("pixelquery-tiler")
    return [exe] if exe else [sys.executable, "-m", "pixelquery_tiler"]


def serve_command(
    *args: str | os.PathLike, port: int | str = "{port}", host: str = HOST, program: Sequence[str] | None = None
) -> list[str]:
    """``pixelquery-tiler serve ARGS --host HOST --port PORT`` (docker/Dockerfile's CMD with a test address).

    ``port="{port}"`` (the default) leaves a placeholder that :func:`serve` fills with the free port it picks.
    ``program`` replaces :func:`cli` (e.g. a wrapper script that runs the CLI).
    """
    return [*(program or cli()), "serve", *map(str, args), "--host", host, "--port", str(port)]


@dataclass
class ServerProcess:
    """A running server subprocess: ``url`` (no trailing slash), its port, process and open log file."""

    url: str
    port: int
    proc: subprocess.Popen
    log: IO[bytes]

    @property
    def base(self) -> str:
        """``url`` with a trailing slash, for joining relative paths."""
        return self.url + "/"

    @property
    def log_path(self) -> Path:
        return Path(self.log.name)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Send ``sig`` to the server's process group (SIGKILL after ``timeout``); idempotent; closes the log."""
        stop_process(self.proc, sig, timeout)
        self.log.close()


def start(
    command: Sequence[str | os.PathLike],
    log: Path,
    *,
    env: dict[str, str | None] | None = None,
    ready: str | None = "/stac/",
    timeout: float = 90.0,
    cwd: Path | None = None,
    port: int | None = None,
) -> ServerProcess:
    """Start ``command`` (``"{port}"`` in it becomes the port) and wait until ``ready`` answers 200.

    ``ready=None`` waits only for the port to accept connections (a server that is up but not yet healthy).
    ``env`` is added to this process's environment (a ``None`` value removes that variable); the repository goes
    first on ``PYTHONPATH`` so the server runs the code under test. On any start-up failure the server is stopped
    and the error carries its log.
    """
    port = port or free_port()
    argv = [str(c).replace("{port}", str(port)) for c in command]
    environ = {**os.environ, **{k: v for k, v in (env or {}).items() if v is not None}}
    for name in [k for k, v in (env or {}).items() if v is None]:
        environ.pop(name, None)
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), environ.get("PYTHONPATH", "")) if p)
    log_file = open(log, "wb")  # noqa: SIM115  (closed by ServerProcess.stop)
    proc = subprocess.Popen(
        argv, stdout=log_file, stderr=subprocess.STDOUT, env=environ, cwd=cwd, start_new_session=True
    )
    server = ServerProcess(f"http://{HOST}:{port}", port, proc, log_file)
    try:
        wait_port(port, proc, log, timeout)
        if ready is not None:
            wait_http_ok(server.url + ready, proc, log, timeout)
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


@contextlib.contextmanager
def serve(
    args: Sequence[str | os.PathLike],
    log: Path,
    *,
    command: Sequence[str | os.PathLike] | None = None,
    **options: Any,
) -> Iterator[ServerProcess]:
    """``pixelquery-tiler serve ARGS`` (or ``command``) on a free loopback port, stopped when the block ends.

    Options are those of :func:`start`. When the block raises, the server log's tail goes to stderr, which
    pytest shows beside the failure.
    """
    server = start(command if command is not None else serve_command(*args), log, **options)
    try:
        yield server
    except BaseException:
        if not server.log.closed:
            print(f"--- server log {server.log_path} (tail) ---\n{log_tail(server.log_path)}", file=sys.stderr)
        raise
    finally:
        server.stop()


class ServerThread:
    """The app object under uvicorn in a daemon thread on a free loopback port (real sockets, real HTTP).

    For tests that share in-process state with the server (a warehouse ingested while it runs). uvicorn logs
    go through ``logging``, which pytest captures and shows with a failure.
    """

    def __init__(
        self, app: Any, *, lifespan: str = "auto", log_level: str = "warning", timeout: float = 60.0, **config: Any
    ):
        """``config``: more ``uvicorn.Config`` options (e.g. ``http=`` a protocol class)."""
        import uvicorn

        self.port = free_port()
        self.timeout = timeout
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=HOST, port=self.port, log_level=log_level, lifespan=lifespan, **config)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.__exit__()
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextlib.contextmanager
def http_server(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded standard-library HTTP server for ``handler`` on a free loopback port; yields its URL (no slash)."""
    server = http.server.ThreadingHTTPServer((HOST, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=a-b`` support (206), as object stores and CDNs answer."""

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def send_head(self):  # type: ignore[override]
        path = self.translate_path(self.path)
        rng = self.headers.get("Range")
        if not rng or not os.path.isfile(path):
            return super().send_head()
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        size = os.path.getsize(path)
        if not m:
            self.send_error(416)
            return None
        start = int(m.group(1)) if m.group(1) else max(0, size - int(m.group(2)))
        end = min(int(m.group(2)), size - 1) if m.group(1) and m.group(2) else size - 1
        if start >= size:
            self.send_error(416)
            return None
        f = open(path, "rb")  # noqa: SIM115  (returned to http.server, which closes it after copyfile)
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile) -> None:  # type: ignore[override]
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        while remaining > 0:
            buf = source.read(min(65536, remaining))
            if not buf:
                break
            outputfile.write(buf)
            remaining -= len(buf)
        self._remaining = None


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on a free loopback port; yields the base URL, stops the server after."""
    with http_server(functools.partial(RangeHandler, directory=str(folder))) as url:
        yield url
