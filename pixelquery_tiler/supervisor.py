"""``serve --workers N``: uvicorn's own supervisor, with one ``SO_REUSEPORT`` listening socket per worker.

Why: uvicorn's workers share the one socket its master binds. Whichever worker wakes first accepts every
connection waiting in the backlog, and a keep-alive client (a load balancer, a browser, a load generator) then
stays with that worker. Measured on a 2-core machine (``benchmarks/README.md``, "Through uvicorn"): under
``wrk -c8`` one worker used 22.2 CPU seconds and the other 0.1, and a 10-minute soak at 32 connections ran on
one worker; two processes with a socket each gave +28% throughput from balance alone. On Linux, sockets bound
to the same address with ``SO_REUSEPORT`` form a group and the kernel spreads new connections over the group
by a hash of the connection's addresses, so every worker gets its share.

How: :class:`ReusePortMultiprocess` is uvicorn's ``Multiprocess`` (worker start, health pings, restart of a
dead or hung worker, SIGHUP/SIGTTIN/SIGTTOU, SIGINT/SIGTERM shutdown) unchanged except where each worker's
socket comes from: a fresh one per worker instead of the shared one. The worker calls ``listen`` on it only
once its app has started, so a starting or restarting worker receives no connections; the master closes its
copy once the worker has its own, so a dead worker's socket leaves the group with it. The master keeps one
socket bound (never listening: it takes no connections) for its whole life, so the port stays reserved while
workers come and go. The price: connections queued on a worker's socket at the instant the worker is killed
are reset with it (a shared socket would leave them to another worker). Elsewhere (one worker, or a platform
whose ``SO_REUSEPORT`` does not balance) ``uvicorn.run`` as usual.

Workers also start with ``MALLOC_ARENA_MAX`` (:data:`WORKER_MALLOC_ARENA_MAX`) unless the environment sets it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from typing import Any

from uvicorn.config import Config
from uvicorn.supervisors.multiprocess import Multiprocess

log = logging.getLogger("uvicorn.error")  # where uvicorn's master logs, so the lines read as one log

#: the app every worker builds from the environment (the one ``Settings`` travels through ``Settings.to_env``)
APP = "pixelquery_tiler.app:app_from_env"
#: closes connections whose request headers arrive too slowly (``server.py``)
HTTP_PROTOCOL = "pixelquery_tiler.server:HeaderTimeoutProtocol"
#: glibc malloc arenas per worker process, unless ``MALLOC_ARENA_MAX`` is already in the environment (which
#: overrides it; 0 leaves glibc's default, 8 per core). Each thread of a worker's threadpool (20-40 at 32
#: connections) may get an arena of its own and memory freed in an arena stays with it, so a worker's RSS kept
#: growing slowly under load (472 -> 521 MB anonymous over a 10-minute soak). With 2 arenas, in alternating 3-minute
#: soaks at 32 connections: ~80 MB less anonymous memory per worker, growth from minute 0.5 to 3 of +6 to +19 MB
#: instead of +16 to +53, no throughput cost above the run-to-run noise; a 10-minute soak stayed flat at 349-375 MB
#: (``benchmarks/README.md``, "Soak").
WORKER_MALLOC_ARENA_MAX = "2"


def reuse_port_balances() -> bool:
    """Whether the kernel spreads connections over ``SO_REUSEPORT`` sockets (Linux; macOS gives them to one)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``, not listening yet (its worker listens)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ReusePortMultiprocess(Multiprocess):
    """uvicorn's ``Multiprocess`` handing each worker a socket of its own (see the module docstring).

    ``Multiprocess`` passes ``self.sockets`` to every worker it creates (at start, on restart, on SIGHUP and
    SIGTTIN), reading it once per worker; here reading it binds a new socket for that worker.
    """

    def __init__(self, config: Config) -> None:
        # bound first: a taken port fails here, before any worker starts; port 0 becomes a real one for all
        self.reservation = bind_reuse_port(config.host, config.port)
        config.port = self.reservation.getsockname()[1]
        self._handed_over: list[socket.socket] = []
        super().__init__(config, sockets=[])

    @property  # an attribute in Multiprocess; one new socket per read here
    def sockets(self) -> list[socket.socket]:
        """A new socket for the worker being created (the previous ones already went to started workers)."""
        self._close_handed_over()
        sock = bind_reuse_port(self.config.host, self.config.port)
        self._handed_over.append(sock)
        return [sock]

    @sockets.setter
    def sockets(self, value: list[socket.socket]) -> None:
        """``Multiprocess.__init__`` stores the shared socket list; there is none here."""

    def _close_handed_over(self) -> None:
        """Close the master's copies of sockets now held by started workers (each worker has its own)."""
        for sock in self._handed_over:
            sock.close()
        self._handed_over.clear()

    # every path that starts workers ends in one of these three; close the master's copies right after
    def init_processes(self) -> None:
        super().init_processes()
        self._close_handed_over()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._close_handed_over()

    def handle_signals(self) -> None:
        super().handle_signals()
        self._close_handed_over()

    def run(self) -> None:
        protocol = "https" if self.config.is_ssl else "http"
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        log.info(
            "Uvicorn running on %s://%s:%d (Press CTRL+C to quit); one SO_REUSEPORT socket per worker",
            protocol,
            host,
            self.config.port,
        )
        try:
            super().run()
        finally:
            self._close_handed_over()
            self.reservation.close()


def run(*, host: str, port: int, workers: int, log_level: str, healthcheck_timeout: int) -> None:
    """Serve :data:`APP` on ``host:port`` with ``workers`` processes until SIGINT/SIGTERM."""
    import uvicorn

    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": log_level,
        # uvicorn restarts a worker that misses a 5 s health ping; app start-up (imports, first index) and
        # CPU-bound tiles on a small machine can exceed that, so allow more before declaring it dead
        "timeout_worker_healthcheck": healthcheck_timeout,
        "http": HTTP_PROTOCOL,
    }
    if workers > 1:  # read by glibc when each worker process starts; the running master keeps its own
        os.environ.setdefault("MALLOC_ARENA_MAX", WORKER_MALLOC_ARENA_MAX)
    if workers <= 1 or not reuse_port_balances():
        uvicorn.run(APP, **options)
        return
    config = Config(APP, **options)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C during start-up
        ReusePortMultiprocess(config).run()
