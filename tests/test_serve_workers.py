"""``serve --workers N`` (``supervisor.py``): real servers on loopback, processes inspected with psutil.

- concurrent keep-alive clients are served by more than one worker (each worker has its own ``SO_REUSEPORT``
  socket; with uvicorn's shared socket one worker took them all), and every worker runs the configured app;
- SIGTERM or SIGINT to the master stops it and every worker, and frees the port;
- a SIGKILLed worker is replaced, and the server answers throughout and afterwards on both workers;
- a second server on the same port is refused with one line (``SO_REUSEPORT`` must not let it join);
- workers start with ``MALLOC_ARENA_MAX=2`` unless the environment sets it;
- ``--workers 1`` is one process, as before.

A worker is identified from outside: the master's child process that listens on the server's port.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import servers
from warehouse_fixtures import ingest_json, run_cli, write_geotiff

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing is Linux's")

ORIGIN = "https://maps.example.org"
#: connections opened at once, as a load generator or proxy does (all on one worker: 2 * 2**-16 by chance)
CONNECTIONS = 16
#: long enough that no connection is closed for slow headers while the test inspects it on a busy machine; and
#: no MALLOC_ARENA_MAX from the test's own environment
ENV: dict[str, str | None] = {"PIXELQUERY_HEADER_TIMEOUT": "300", "MALLOC_ARENA_MAX": None}
#: the master's health ping (``--worker-healthcheck-timeout``, default 60 s): a worker killed while the master
#: waits for its pong is noticed only when that ping times out (uvicorn keeps the pipe's other end open, so no EOF
#: comes), so a killed worker is reaped within this plus the 0.5 s supervision loop
HEALTHCHECK_S = 10


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workers")
    ingest_json(root / "wh", [write_geotiff(root / "a.tif", seed=3, datetime_tag="2021:05:01 10:00:00")], "c")
    return root / "wh"


def serve(warehouse: Path, tmp_path: Path, workers: int, **env: str) -> servers.ServerProcess:
    args = [warehouse, "--workers", str(workers), "--log-level", "info", "--cors-origins", ORIGIN]
    args += ["--worker-healthcheck-timeout", str(HEALTHCHECK_S)]
    return servers.start(servers.serve_command(*args), tmp_path / "server.log", env={**ENV, **env}, ready="/healthz")


@pytest.fixture()
def two_workers(warehouse: Path, tmp_path: Path) -> Iterator[servers.ServerProcess]:
    server = serve(warehouse, tmp_path, 2)
    try:
        wait_for_workers(server, 2)
        yield server
    except BaseException:
        print(f"--- server log (tail) ---\n{servers.log_tail(server.log_path)}", file=sys.stderr)
        raise
    finally:
        server.stop()


def listeners(server: servers.ServerProcess) -> dict[int, psutil.Process]:
    """The master's child processes listening on the server's port (the workers), by pid."""
    found = {}
    for child in psutil.Process(server.proc.pid).children():
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == server.port for c in child.net_connections()):
                found[child.pid] = child
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def wait_for_workers(server: servers.ServerProcess, count: int, exclude: set[int] | None = None) -> set[int]:
    """Wait (up to 120 s: app start-up on a loaded machine) until ``count`` workers not in ``exclude`` listen."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, servers.log_tail(server.log_path)
        pids = set(listeners(server)) - (exclude or set())
        if len(pids) >= count:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"{count} workers not listening: {listeners(server)}\n{servers.log_tail(server.log_path)}")


def accepted(pid: int, port: int, clients: set[int]) -> int:
    """How many of the connections from the local ports ``clients`` to ``port`` process ``pid`` has accepted
    (others, e.g. a closing readiness check, do not count)."""
    conns = psutil.Process(pid).net_connections()
    return sum(bool(c.raddr) and c.laddr.port == port and c.raddr.port in clients for c in conns)


def spread(server: servers.ServerProcess, pids: set[int]) -> dict[int, int]:
    """Open CONNECTIONS keep-alive connections at once, then one request on each (all must answer 200 with the
    configured CORS origin: every worker runs the app the options describe); how many each process accepted."""
    socks = [socket.create_connection((servers.HOST, server.port), timeout=60) for _ in range(CONNECTIONS)]
    clients = {sock.getsockname()[1] for sock in socks}
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until the workers have accepted them all (a connection not accepted yet has no owner)
            per_pid = {pid: accepted(pid, server.port, clients) for pid in pids}
            if sum(per_pid.values()) >= CONNECTIONS or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for sock in socks:
            conn = http.client.HTTPConnection(servers.HOST, server.port, timeout=60)
            conn.sock = sock  # the already open connection
            conn.request("GET", "/healthz", headers={"Origin": ORIGIN})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("access-control-allow-origin") == ORIGIN
    finally:
        for sock in socks:
            sock.close()
    assert sum(per_pid.values()) == CONNECTIONS, per_pid
    return per_pid


def test_keep_alive_connections_are_spread_over_the_workers(two_workers: servers.ServerProcess) -> None:
    pids = set(listeners(two_workers))
    assert len(pids) == 2
    per_worker = spread(two_workers, pids)
    assert all(n > 0 for n in per_worker.values()), per_worker  # shared socket: {a: 16, b: 0}
    assert {psutil.Process(pid).environ().get("MALLOC_ARENA_MAX") for pid in pids} == {"2"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_master_stops_it_and_every_worker(two_workers: servers.ServerProcess, sig: int) -> None:
    processes = psutil.Process(two_workers.proc.pid).children(recursive=True)  # workers and the resource tracker
    assert len(listeners(two_workers)) == 2
    os.kill(two_workers.proc.pid, sig)  # the master only, as systemd or docker stop does
    assert two_workers.proc.wait(timeout=90) == 0, servers.log_tail(two_workers.log_path)
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert alive == [], alive
    with socket.socket() as sock:  # nothing listens on the port (closed connections may linger in TIME_WAIT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((servers.HOST, two_workers.port))


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(two_workers: servers.ServerProcess) -> None:
    first = set(listeners(two_workers))
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    # gone once the master has reaped it, which waits for all its threads: until then its socket may still
    # take (and, closing, reset) a connection, as a killed worker's own connections are lost. Killed during the
    # master's health ping of it, it is reaped only when that ping times out (HEALTHCHECK_S; seen in CI)
    deadline = time.monotonic() + HEALTHCHECK_S + 50
    while psutil.pid_exists(victim) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(victim)
    for _ in range(10):  # while it is being replaced: the survivor answers every new connection
        status, _, _ = servers.http_get(two_workers.url + "/healthz", timeout=60)
        assert status == 200
    [replacement] = wait_for_workers(two_workers, 1, exclude=first)
    now = set(listeners(two_workers))
    assert now == (first - {victim}) | {replacement}
    assert psutil.Process(replacement).environ().get("MALLOC_ARENA_MAX") == "2"
    per_worker = spread(two_workers, now)
    assert all(n > 0 for n in per_worker.values()), per_worker  # the replacement has a socket of its own


def test_a_second_server_on_the_same_port_is_refused(two_workers: servers.ServerProcess, warehouse: Path) -> None:
    proc = run_cli("serve", warehouse, "--port", str(two_workers.port), "--workers", "2", timeout=120)
    assert proc.returncode != 0
    [line] = proc.stderr.strip().splitlines()
    assert f"{servers.HOST}:{two_workers.port}" in line and "--port" in line


def test_the_environment_overrides_the_workers_malloc_arena_max(warehouse: Path, tmp_path: Path) -> None:
    server = serve(warehouse, tmp_path, 2, MALLOC_ARENA_MAX="4")
    try:
        pids = wait_for_workers(server, 2)
        assert {psutil.Process(pid).environ().get("MALLOC_ARENA_MAX") for pid in pids} == {"4"}
    finally:
        server.stop()


def test_one_worker_is_one_process(warehouse: Path, tmp_path: Path) -> None:
    server = serve(warehouse, tmp_path, 1)
    try:
        master = psutil.Process(server.proc.pid)
        assert listeners(server) == {}  # no child serves: the process itself does
        per_process = spread(server, {master.pid})
        assert per_process == {master.pid: CONNECTIONS}
    finally:
        server.stop()
