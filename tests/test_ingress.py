"""The HAProxy ingress around Serve: ports picked ahead of binding (free, and out of the way of every bind(0)),
its own files, and a clear error when HAProxy cannot start."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.ingress import (QUIET_PORTS, _ephemeral_ports, free_loopback_port, haproxy_environment, haproxy_failure_hint,
                              haproxy_folder, haproxy_pids, haproxy_startup_failure, reap_haproxy)
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


def test_no_port_left_to_hand_out_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """When every port the kernel offers was handed out already (an exhausted process), the picker says so
    instead of handing one out twice."""
    import services.ingress as ingress

    class Everything(set):
        def __contains__(self, port: object) -> bool:
            return True

    monkeypatch.setattr(ingress, "QUIET_PORTS", range(0))
    monkeypatch.setattr(ingress, "_HANDED_OUT", Everything())
    with pytest.raises(OSError, match="no free loopback port that was not handed out already"):
        ingress.free_loopback_port()


def test_a_taken_port_is_never_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A quiet range of 12 ports with all but two held: the picker hands out only free ports (those two, or, when
    another process took them meanwhile, one from the kernel), never a held one and never one twice."""
    import services.ingress as ingress

    ephemeral = _ephemeral_ports()
    bases = [port for port in range(20000, 29988, 12) if port + 11 < ephemeral.start or port > ephemeral.stop - 1]
    if not bases:
        pytest.skip("the kernel's ephemeral range covers the whole quiet range here")
    base = bases[secrets.randbelow(len(bases))]
    monkeypatch.setattr(ingress, "QUIET_PORTS", range(base, base + 12))
    monkeypatch.setattr(ingress, "_ephemeral_ports", lambda: range(0))
    monkeypatch.setattr(ingress, "_HANDED_OUT", set())
    held = []
    try:
        for port in range(base, base + 12):
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # someone else's already: just as taken
                sock.close()
                continue
            held.append(sock)
        freed = [held.pop(secrets.randbelow(len(held))) for _ in range(min(2, len(held)))]
        spare = [sock.getsockname()[1] for sock in freed]
        for sock in freed:
            sock.close()
        picked = [ingress.free_loopback_port() for _ in range(4)]
        in_range = [port for port in picked if port in range(base, base + 12)]
        assert set(in_range) <= set(spare)  # inside the range, only the two freed ports
        assert len(set(picked)) == len(picked) and not set(picked) & {sock.getsockname()[1] for sock in held}
        for port in picked:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))  # each one is free
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
import os, socket, sys
import services.ingress as ingress
choose = ingress.haproxy_environment
held = []

def taken_by_someone_else(folder):
    env = choose(folder)
    with open(os.environ["RG_TEST_HAPROXY_FOLDER_FILE"], "w") as out:
        out.write(str(folder))
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
                            env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                                 "RG_TEST_HAPROXY_FOLDER_FILE": str(tmp_path / "folder.txt")})
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
    # the reason is HAProxy's own ALERT, so HAProxy ran; none of its processes outlives `serve`, nor its folder
    folder = Path((tmp_path / "folder.txt").read_text())
    assert haproxy_pids(folder) == [] and not folder.exists()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid, cmd) for pid, cmd in tree.items()):
        time.sleep(0.2)
    assert not {pid for pid, cmd in tree.items() if alive(pid, cmd)}


#: What Serve raises when HAProxy exits during startup: HAProxy's whole log inside a remote-task error
#: (shape copied from a real run with the stats port held; two ALERTs for one cause, and a traceback after).
SERVE_ERROR = ("ray::HAProxyManager.start() (pid=4242, ip=127.0.0.1, actor_id=abc)\n  File \"x.py\", line 1\n"
               "RuntimeError: HAProxy crashed during startup: [NOTICE]   (4250) : haproxy version is 2.8.5\\n"
               "[ALERT]    (4250) : Binding [/tmp/rg-hap-x/haproxy.cfg:31] for proxy stats: cannot bind socket "
               "(Address already in use) for [0.0.0.0:20759]\\n[ALERT]    (4250) : Binding [/tmp/rg-hap-x/haproxy.cfg:31] "
               "for proxy stats: cannot bind socket (Address already in use) for [0.0.0.0:20759]\\n"
               "[ALERT]    (4250) : [haproxy.main()] Some protocols failed to start their listeners! Exiting.\n"
               "Traceback (most recent call last):\n  File \"y.py\", line 2, in start\n")


def test_haproxy_failure_is_one_reason_once_with_the_right_way_out() -> None:
    reason = haproxy_startup_failure(RuntimeError(SERVE_ERROR))
    assert reason == "for proxy stats: cannot bind socket (Address already in use) for [0.0.0.0:20759]"
    assert haproxy_failure_hint(reason, local=True) == "free that port, or start with --ingress proxy"
    assert haproxy_failure_hint(reason, local=False) == "free that port"  # a cluster's ingress is the cluster's
    other = haproxy_startup_failure(RuntimeError(SERVE_ERROR.replace("for proxy stats: cannot bind socket "
                                                                     "(Address already in use) for [0.0.0.0:20759]",
                                                                     "parsing: unknown keyword 'h2'")))
    assert other == "parsing: unknown keyword 'h2'"
    assert haproxy_failure_hint(other, local=True) == "start with --ingress proxy"  # no port to free
    assert haproxy_failure_hint(other, local=False) == ""
    unix = "cannot bind UNIX socket (Address already in use) [/tmp/rg-hap-x/admin.sock]"
    assert haproxy_failure_hint(unix, local=True) == "start with --ingress proxy"  # a socket path, not a port
    assert haproxy_startup_failure(RuntimeError("a replica failed its health check")) is None
