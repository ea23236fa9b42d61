"""A real two-node Ray cluster on 127.0.0.1, started with Ray's own CLI as the compose file does:
jobs given `--address` spread over both nodes (checked with Ray's state API) and give exactly the
single-node results. Every node is stopped by its process ids at the end."""

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

import pandas as pd
import pytest

from radiogenomics.synth import SynthConfig, generate
from tests.conftest import SMALL_MODEL, cut_library, free_port
from tests.processes import stop_tree

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")
CLI = str(Path(sys.executable).parent / "radiogenomics")
TOKEN = secrets.token_hex(32)


def _cluster_env() -> dict[str, str]:
    """This environment without what would keep Ray single-node or point it at another Ray or Serve."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS") and not k.startswith("RAY_SERVE_")}
    # Token auth, with this cluster's own token: nothing read from or written to ~/.ray on the machine.
    return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "RAY_USAGE_STATS_ENABLED": "0"}


def _node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                             f"--dashboard-agent-listen-port={free_port()}", *args],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


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


def _state(env: dict[str, str], dashboard: str, kind: str, name: str = "") -> list[dict]:
    """Ray's state API, asked from a process that holds the cluster's token (RAY_AUTH_MODE=token)."""
    result = subprocess.run([sys.executable, "-c", STATE, kind, dashboard, name], env=env, capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-1500:])
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cluster():
    """A head (1 CPU, resource `rg_head`) and a worker node (1 CPU, `rg_worker`) on 127.0.0.1."""
    temp = Path(tempfile.mkdtemp(prefix="rgc", dir="/tmp"))  # short: Ray's socket paths live under it
    port, dashboard_port = free_port(), free_port()
    env = _cluster_env()
    head = _node(["--head", f"--port={port}", "--num-cpus=1", '--resources={"rg_head": 1}', f"--temp-dir={temp}",
                  "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                  f"--ray-client-server-port={free_port()}"], env, temp / "head.log")
    procs = [head]
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline, error = time.monotonic() + 120, ""
        while time.monotonic() < deadline:
            try:
                if _state(env, dashboard, "nodes"):
                    break
            except RuntimeError as exc:  # the dashboard is still starting
                error = str(exc)
                time.sleep(1)
        else:
            raise AssertionError(f"the head's state API never answered: {error}")
        worker = _node([f"--address=127.0.0.1:{port}", "--num-cpus=1", '--resources={"rg_worker": 1}'],
                       env, temp / "worker.log")
        procs.append(worker)
        while time.monotonic() < deadline:
            alive = [n for n in _state(env, dashboard, "nodes") if n["state"] == "ALIVE"]
            if len(alive) == 2:
                break
            time.sleep(1)
        nodes = {n["node_id"]: n for n in _state(env, dashboard, "nodes") if n["state"] == "ALIVE"}
        assert len(nodes) == 2, (temp / "head.log").read_text()[-2000:] + (temp / "worker.log").read_text()[-2000:]
        yield {"address": f"127.0.0.1:{port}", "dashboard": dashboard, "env": env, "nodes": nodes}
    finally:
        left = {}
        for proc in reversed(procs):
            left.update(stop_tree(proc.pid))
            proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"cluster processes left behind: {left}"


def _task_nodes(cluster: dict, name: str) -> dict[str, int]:
    """How many finished tasks named `name` ran on each node (Ray's state API)."""
    counts: dict[str, int] = {}
    for task in _state(cluster["env"], cluster["dashboard"], "tasks", name):
        if task.get("state") == "FINISHED":
            counts[task["node_id"]] = counts.get(task["node_id"], 0) + 1
    return counts


def _run(args: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, hallmark_gmt: Path) -> Path:
    out = tmp_path_factory.mktemp("cluster-images") / "synth"
    generate(SynthConfig(out=out, hallmark_gmt=hallmark_gmt, n_train=10, n_test=10, n_genes=2000, n_features=6, images=True),
             progress=False)
    return out / "train" / "images" / "manifest.csv"


def test_extract_spreads_over_both_nodes_and_equals_a_single_node_run(cluster: dict, images: Path, tmp_path: Path) -> None:
    on_cluster, single = tmp_path / "cluster.csv", tmp_path / "single.csv"
    summary = json.loads(_run(["extract", str(images), "--out", str(on_cluster), "--address", cluster["address"],
                               "--quiet"], cluster["env"]).stdout)
    _run(["extract", str(images), "--out", str(single), "--quiet"], {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert summary["extracted"] == 10 and summary["failed"] == 0
    ran = _task_nodes(cluster, "extract_case")
    assert set(ran) == set(cluster["nodes"]) and sum(ran.values()) == 10, ran  # both nodes did cases
    a = pd.read_csv(on_cluster).sort_values("sample_id").reset_index(drop=True)
    b = pd.read_csv(single).sort_values("sample_id").reset_index(drop=True)
    features = [c for c in a.columns if c.startswith("original_")]
    assert len(features) > 100 and list(a["sample_id"]) == list(b["sample_id"])
    pd.testing.assert_frame_equal(a[features], b[features], check_exact=True)  # the same numbers, to the last bit


def test_mask_spreads_over_both_nodes_and_equals_a_single_node_run(cluster: dict, small_registry: Path,
                                                                   small_cohort: Path, tmp_path: Path) -> None:
    gmt = cut_library(small_cohort, 24, tmp_path / "sets.gmt")
    common = [str(small_registry / SMALL_MODEL / "1"), str(small_cohort / "test"), "--gene-sets", str(gmt),
              "--nulls", "200", "--seed", "3", "--quiet"]
    _run(["mask", *common, "--out", str(tmp_path / "cluster.csv"), "--address", cluster["address"]], cluster["env"])
    _run(["mask", *common, "--out", str(tmp_path / "single.csv")], {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    ran = _task_nodes(cluster, "_chunk_task")
    assert set(ran) == set(cluster["nodes"]), ran
    key = ["output", "gene_set"]
    a = pd.read_csv(tmp_path / "cluster.csv").sort_values(key).reset_index(drop=True)
    b = pd.read_csv(tmp_path / "single.csv").sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_train_runs_trials_on_both_nodes_and_exports_a_model(cluster: dict, small_cohort: Path, tmp_path: Path) -> None:
    """The Tune search spreads its trials over both nodes (the cohort reaches them through the object
    store) and exports a model that loads and predicts."""
    from radiogenomics.cohort import load_cohort
    from radiogenomics.registry import load_model

    result = _run(["train", str(small_cohort / "train"), "--registry", str(tmp_path / "registry"), "--name", "cluster",
                   "--address", cluster["address"], "--trials", "4", "--folds", "2", "--max-epochs", "8",
                   "--no-baselines", "--cpus-per-trial", "1", "--quiet"], cluster["env"], timeout=1200)
    folder = Path(result.stdout.strip().splitlines()[-1])  # the artifact path is the last line
    trials = [a for a in _state(cluster["env"], cluster["dashboard"], "actors")
              if "cv_trainable" in a.get("class_name", "") or "ImplicitFunc" in a.get("class_name", "")]
    assert {a["node_id"] for a in trials} == set(cluster["nodes"]), [(a["class_name"], a["node_id"]) for a in trials]
    model = load_model(folder)
    preds = model.predict(model.align(load_cohort(small_cohort / "test")))
    assert preds.features.shape == (40, 6)
