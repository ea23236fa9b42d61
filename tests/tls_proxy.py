"""Debian's nginx as the TLS-terminating gRPC proxy of deploy/nginx/grpc-tls.conf, on loopback, for tests."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "deploy" / "nginx" / "grpc-tls.conf"


def nginx_binary() -> str:
    path = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed; .ci/run installs Debian's `nginx` package")
        pytest.skip("Debian's `nginx` is not installed (apt-get install nginx)")
    return path


def throwaway_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `localhost` (openssl), valid for a day."""
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def render(upstream_port: int, listen_port: int, cert: Path, key: Path, folder: Path) -> str:
    """The shipped config with loopback addresses, these files, and a private prefix for nginx's own files."""
    text = CONFIG.read_text()
    text = text.replace("server ray-head:9000;", f"server 127.0.0.1:{upstream_port};")
    text = re.sub(r"listen 8443 ssl http2;", f"listen 127.0.0.1:{listen_port} ssl http2;", text)
    text = text.replace("/etc/nginx/tls/tls.crt", str(cert)).replace("/etc/nginx/tls/tls.key", str(key))
    text = text.replace("access_log /dev/stdout grpc;", f"access_log {folder}/access.log grpc;")
    text = text.replace("error_log /dev/stderr warn;", f"error_log {folder}/error.log warn;")
    temp = "".join(f"    {kind}_temp_path {folder}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = text.replace("http {\n", "http {\n" + temp, 1)
    return f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log warn;\n" + text


@contextmanager
def tls_proxy(upstream_port: int, listen_port: int, folder: Path) -> Iterator[bytes]:
    """nginx terminating TLS on `listen_port`; yields the certificate clients must trust."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = throwaway_certificate(folder)
    with run_nginx(render(upstream_port, listen_port, cert, key, folder), listen_port, folder):
        yield cert.read_bytes()


@contextmanager
def run_nginx(config_text: str, listen_port: int, folder: Path) -> Iterator[None]:
    """nginx with this configuration (checked with -t first) until it accepts on `listen_port`; stopped by pid."""
    os.chmod(folder, 0o777)  # nginx's workers run as an unprivileged user when started by root
    for key in folder.glob("*.key"):
        os.chmod(key, 0o644)
    config = folder / "nginx.conf"
    config.write_text(config_text)
    binary = nginx_binary()
    subprocess.run([binary, "-t", "-c", str(config), "-p", str(folder)], check=True, capture_output=True)
    proc = subprocess.Popen([binary, "-c", str(config), "-p", str(folder), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen_port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)
