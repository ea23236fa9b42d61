"""The HAProxy ingress around Serve: ports picked ahead of binding (free, and out of the way of every bind(0)),
its own files, and a clear error when HAProxy cannot start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.ingress import QUIET_PORTS, _ephemeral_ports, free_loopback_port, haproxy_folder, haproxy_environment, reap_haproxy
from tests.conftest import SMALL_MODEL
from tests.processes import alive, process_tree


def test_picked_ports_are_free_and_outside_the_ephemeral_range() -> None:
    ephemeral = _ephemeral_ports()
    ports = [free_loopback_port() for _ in range(50)]
    for port in ports:
        assert port in QUIET_PORTS and port not in ephemeral, port
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # still free: nothing kept it
    assert len(set(ports)) > 1  # random, so two runs of the app rarely pick the same


def test_a_taken_port_is_never_picked() -> None:
    """Bind most of the quiet range's first ports: whatever is returned must still be bindable."""
    held = []
    try:
        for port in QUIET_PORTS[:300]:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        taken = {sock.getsockname()[1] for sock in held}
        for _ in range(100):
            assert free_loopback_port() not in taken
    finally:
        for sock in held:
            sock.close()


def test_each_haproxy_run_gets_its_own_ports_and_folder() -> None:
    first, second = haproxy_folder(), haproxy_folder()
    try:
        a, b = haproxy_environment(first), haproxy_environment(second)
        port_keys = [key for key in a if key.endswith("_PORT")]
        assert len(port_keys) == 4
        ports = [int(a[key]) for key in port_keys] + [int(b[key]) for key in port_keys]
        assert all(port in QUIET_PORTS for port in ports) and len(set(ports)) == len(ports)  # no port twice
        assert a["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(first))
        assert b["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(second))
    finally:
        assert reap_haproxy(first, timeout_s=1) == [] and reap_haproxy(second, timeout_s=1) == []
        assert not first.exists() and not second.exists()


HOLD_A_PORT = """
import socket, sys
import services.ingress as ingress
choose = ingress.haproxy_environment
held = []

def taken_by_someone_else(folder):
    env = choose(folder)
    sock = socket.socket()
    sock.bind(("0.0.0.0", int(env["RAY_SERVE_HAPROXY_STATS_PORT"])))
    sock.listen()
    held.append(sock)
    return env

ingress.haproxy_environment = taken_by_someone_else
from radiogenomics.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_haproxy_that_cannot_bind_its_port_fails_serve_in_one_line(small_registry: Path, tmp_path: Path) -> None:
    """Another process holds HAProxy's stats port when Serve starts it: `serve` exits 2 with HAProxy's
    reason and the way out in one line, no traceback, and leaves no HAProxy or Ray process behind."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_A_PORT, "serve", str(small_registry / SMALL_MODEL),
                             "--grpc-port", str(free_loopback_port()), "--jobs-dir", str(tmp_path / "jobs")],
                            stdout=subprocess.PIPE, stderr=(tmp_path / "stderr.txt").open("w"), text=True,
                            env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    tree: dict[int, bytes] = {}
    deadline = time.monotonic() + 300  # stderr goes to a file: a full pipe cannot stall the server
    while proc.poll() is None and time.monotonic() < deadline:
        tree.update(process_tree(proc.pid))
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=60)
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 2 and out == "", err[-3000:]
    (line,) = [line for line in err.splitlines() if line.startswith("radiogenomics serve: error:")]
    assert "the HAProxy ingress could not start: for proxy stats: cannot bind socket (Address already in use)" in line
    assert line.endswith("free that port, or start with --ingress proxy") and "Traceback" not in err
    assert any(cmd.startswith(b"ray::HAProxyManager") for cmd in tree.values()), "HAProxy was never started"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid, cmd) for pid, cmd in tree.items()):
        time.sleep(0.2)
    assert not {pid for pid, cmd in tree.items() if alive(pid, cmd)}
