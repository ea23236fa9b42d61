"""A real multi-node Ray cluster on 127.0.0.1, started with Ray's own CLI as the compose file does.

Every node is a `ray start --block` process with its own CPUs, a custom resource (so placement can
be forced and checked), token auth with this cluster's own token, loopback addresses and free
ports; the state API is asked from a subprocess that holds the token. Nodes are stopped by the
process ids of their trees, never by name. Used by tests/test_cluster.py and bench/cluster.py.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from services.ingress import free_loopback_port
from tests.processes import stop_tree

RAY = str(Path(sys.executable).parent / "ray")

STATE = """
import json, sys
from ray.util.state import list_actors, list_nodes, list_tasks
kind, address, name = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "nodes":
    rows = list_nodes(address=address, raise_on_missing_output=False)
elif kind == "actors":
    rows = list_actors(address=address, limit=10000, raise_on_missing_output=False)
else:
    rows = list_tasks(address=address, filters=[("name", "=", name)], limit=10000, raise_on_missing_output=False)
print(json.dumps([{k: str(v) for k, v in r.__dict__.items()} if hasattr(r, "__dict__") else {k: str(v) for k, v in dict(r).items()}
                  for r in rows]))
"""


def cluster_env(token: str) -> dict[str, str]:
    """This environment without what would keep Ray single-node or point it at another Ray or Serve."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS") and not k.startswith("RAY_SERVE_")}
    # Token auth, with this cluster's own token: nothing read from or written to ~/.ray on the machine.
    return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}


class LocalCluster:
    """A head node, then worker nodes added one by one; `stop` ends every node by pid."""

    def __init__(self, head_cpus: int = 1, env: dict[str, str] | None = None) -> None:
        """`env`: more variables for every node (e.g. Serve's HAProxy ingress, as the compose file sets them)."""
        self.temp = Path(tempfile.mkdtemp(prefix="rgc", dir="/tmp"))  # short: Ray's socket paths live under it
        self.port, dashboard_port = free_loopback_port(), free_loopback_port()
        self.env = {**cluster_env(secrets.token_hex(32)), **(env or {})}
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{dashboard_port}"
        self.procs: list[subprocess.Popen] = []
        self.metrics_ports: dict[int, int] = {}  # pid of a node's `ray start` -> its metrics export port
        self._start(["--head", f"--port={self.port}", f"--num-cpus={head_cpus}", '--resources={"rg_head": 1}',
                     f"--temp-dir={self.temp}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={dashboard_port}", f"--ray-client-server-port={free_loopback_port()}"], "head")
        deadline, error = time.monotonic() + 120, ""
        while time.monotonic() < deadline:
            try:
                if self.state("nodes"):
                    return
            except RuntimeError as exc:  # the dashboard is still starting
                error = str(exc)
                time.sleep(1)
        self.stop()
        raise RuntimeError(f"the head's state API never answered: {error}")

    def _start(self, args: list[str], name: str, hide: Path | None = None) -> subprocess.Popen:
        log = (self.temp / f"{name}.log").open("w")
        metrics_port = free_loopback_port()
        command = [RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                   f"--dashboard-agent-listen-port={free_loopback_port()}", f"--metrics-export-port={metrics_port}", *args]
        if hide is not None:
            command = ["unshare", "--map-root-user", "--mount", "sh", "-c",
                       'mount -t tmpfs none "$0" && exec "$@"', str(hide), *command]
        proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.metrics_ports[proc.pid] = metrics_port
        return proc

    def add_worker(self, cpus: int = 1, resource: str = "rg_worker", timeout: float = 120,
                   hide: Path | None = None) -> subprocess.Popen:
        """Start a worker node and wait until the head lists it alive.

        `hide`: the node runs in its own mount namespace (unshare, unprivileged) where that folder is
        an empty tmpfs, as a node without the shared storage would see it.
        """
        before = len(self.alive())
        proc = self._start([f"--address={self.address}", f"--num-cpus={cpus}", f'--resources={{"{resource}": 1}}'],
                           f"worker{len(self.procs)}", hide)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.alive()) > before:
                return proc
            time.sleep(1)
        raise RuntimeError(f"worker node never joined: {(self.temp / f'worker{len(self.procs) - 1}.log').read_text()[-2000:]}")

    def state(self, kind: str, name: str = "") -> list[dict]:
        """Ray's state API, asked from a process that holds the cluster's token (RAY_AUTH_MODE=token)."""
        result = subprocess.run([sys.executable, "-c", STATE, kind, self.dashboard, name], env=self.env,
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-1500:])
        return json.loads(result.stdout.strip().splitlines()[-1])

    @property
    def discovery_file(self) -> Path:
        """The head's Prometheus service-discovery file: every node's metrics endpoint, kept current by Ray."""
        return self.temp / "session_latest" / "prom_metrics_service_discovery.json"

    def alive(self) -> dict[str, dict]:
        return {n["node_id"]: n for n in self.state("nodes") if n["state"] == "ALIVE"}

    def task_nodes(self, name: str) -> dict[str, int]:
        """How many finished tasks named `name` ran on each node."""
        counts: dict[str, int] = {}
        for task in self.state("tasks", name):
            if task.get("state") == "FINISHED":
                counts[task["node_id"]] = counts.get(task["node_id"], 0) + 1
        return counts

    def stop(self) -> dict[int, bytes]:
        """Stop every node by the pids of its process tree; returns what was still alive afterwards."""
        left: dict[int, bytes] = {}
        for proc in reversed(self.procs):
            left.update(stop_tree(proc.pid))
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
        shutil.rmtree(self.temp, ignore_errors=True)
        return left
