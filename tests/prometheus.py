"""A real Prometheus server (Debian's `prometheus`) on loopback, for tests; stopped on exit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "deploy" / "prometheus.yml"


def prometheus_binary() -> str:
    """The server binary; CI installs it (.ci/run), a workstation without it skips."""
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed; .ci/run installs Debian's `prometheus` package")
        pytest.skip("Debian's `prometheus` is not installed (apt-get install prometheus)")
    return path


@contextmanager
def prometheus_server(targets: list[str] | Path, folder: Path, port: int, scrape_interval: str = "1s") -> Iterator[str]:
    """Prometheus with deploy/prometheus.yml, its service-discovery file pointing at `targets`.

    `targets` is either a list of host:port or the service-discovery file a Ray head writes itself.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(targets, Path):
        discovery = targets
    else:
        discovery = folder / "prom_metrics_service_discovery.json"
        discovery.write_text(json.dumps([{"labels": {"job": "ray"}, "targets": targets}]))  # the shape Ray writes
    config = yaml.safe_load(CONFIG.read_text())
    config["global"]["scrape_interval"] = scrape_interval
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(discovery)]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([prometheus_binary(), f"--config.file={folder / 'prometheus.yml'}",
                             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("w"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("prometheus did not start: " + (folder / "prometheus.log").read_text()[-2000:])
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def query(url: str, promql: str) -> list[dict]:
    """Instant query through Prometheus' HTTP API; the result vector."""
    answer = json.load(urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}", timeout=10))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def wait_for(url: str, promql: str, timeout_s: float = 120) -> list[dict]:
    """Query until the result is non-empty (scrapes and Ray's export run every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = query(url, promql)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)
