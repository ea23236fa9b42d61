"""The ports the app picks ahead of binding them: free, and out of the way of everything that binds port 0."""

from __future__ import annotations

import socket

from services.ingress import QUIET_PORTS, _ephemeral_ports, free_loopback_port, haproxy_folder, haproxy_environment, reap_haproxy


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
        assert all(port in QUIET_PORTS for port in ports)
        assert a["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(first))
        assert b["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(second))
    finally:
        assert reap_haproxy(first, timeout_s=1) == [] and reap_haproxy(second, timeout_s=1) == []
        assert not first.exists() and not second.exists()
