"""A real two-node Ray cluster on 127.0.0.1, started with Ray's own CLI as the compose file does:
jobs given `--address` spread over both nodes (checked with Ray's state API) and give exactly the
single-node results; a worker node killed mid-way (its raylet, by pid) changes no result, and a node
that joins later gets work. Every node is stopped by its process ids at the end (tests/raynodes.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from radiogenomics.synth import SynthConfig, generate
from tests.conftest import SMALL_MODEL, cut_library
from tests.processes import process_tree
from tests.raynodes import LocalCluster

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "radiogenomics")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A head (1 CPU, resource `rg_head`) and a worker node (1 CPU, `rg_worker`) on 127.0.0.1.

    The worker cannot see one folder (`hidden`: an empty tmpfs in its own mount namespace), as a
    node without the shared storage would not.
    """
    hidden = tmp_path_factory.mktemp("only-on-the-head")
    nodes = LocalCluster(head_cpus=1)
    try:
        head = set(nodes.alive())
        worker = nodes.add_worker(cpus=1, hide=hidden)
        alive = nodes.alive()
        assert len(alive) == 2
        yield {"address": nodes.address, "dashboard": nodes.dashboard, "env": nodes.env, "nodes": alive, "cluster": nodes,
               "workers": {node: worker for node in set(alive) - head}, "hidden": hidden}
    finally:
        left = nodes.stop()
        assert not left, f"cluster processes left behind: {left}"


def _task_nodes(cluster: dict, name: str) -> dict[str, int]:
    return cluster["cluster"].task_nodes(name)


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


def test_files_a_node_cannot_see_are_refused_at_submission(cluster: dict, images: Path) -> None:
    """Inputs on the submitting machine's own disk: one line naming the node that cannot see them, no work done."""
    copy = cluster["hidden"] / "images"
    shutil.copytree(images.parent, copy)
    out = cluster["hidden"] / "features.csv"
    result = subprocess.run([CLI, "extract", str(copy / images.name), "--out", str(out), "--address", cluster["address"],
                             "--quiet"], env=cluster["env"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not visible on Ray node " in lines[0], result.stderr[-2000:]
    (worker,) = cluster["workers"]
    assert worker[:12] in lines[0] and str(copy) in lines[0]
    assert not out.exists()


def test_mask_spreads_over_both_nodes_and_equals_a_single_node_run(cluster: dict, small_registry: Path,
                                                                   small_cohort: Path, tmp_path: Path) -> None:
    gmt = cut_library(small_cohort, 24, tmp_path / "sets.gmt")
    common = [str(small_registry / SMALL_MODEL / "1"), str(small_cohort / "test"), "--gene-sets", str(gmt),
              "--nulls", "200", "--seed", "3", "--quiet"]
    _run(["mask", *common, "--out", str(tmp_path / "cluster.csv"), "--address", cluster["address"]], cluster["env"])
    _run(["mask", *common, "--out", str(tmp_path / "single.csv")], {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    ran = _task_nodes(cluster, "_chunk_task")
    assert set(ran) == set(cluster["nodes"]), ran
    _same_masking_table(tmp_path / "cluster.csv", tmp_path / "single.csv")


def _same_masking_table(cluster_csv: Path, single_csv: Path) -> None:
    """Every AUC, p and q of the cluster run equals the single-node run's, to the last bit."""
    key = ["output", "gene_set"]
    a = pd.read_csv(cluster_csv).sort_values(key).reset_index(drop=True)
    b = pd.read_csv(single_csv).sort_values(key).reset_index(drop=True)
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
    trials = [a for a in cluster["cluster"].state("actors")
              if "cv_trainable" in a.get("class_name", "") or "ImplicitFunc" in a.get("class_name", "")]
    assert {a["node_id"] for a in trials} == set(cluster["nodes"]), [(a["class_name"], a["node_id"]) for a in trials]
    model = load_model(folder)
    preds = model.predict(model.align(load_cohort(small_cohort / "test")))
    assert preds.features.shape == (40, 6)


# ---------------------------------------------------------------------------------------------
# A node lost mid-way (these run last: they kill the module's worker node and start others)


def _kill_raylet(node: subprocess.Popen) -> int:
    """SIGKILL the raylet of the node `ray start --block` process `node` (its workers die with it)."""
    raylets = [pid for pid, cmd in process_tree(node.pid).items() if cmd.split(b"\0")[0].endswith(b"/raylet")]
    assert len(raylets) == 1, process_tree(node.pid)
    os.kill(raylets[0], signal.SIGKILL)
    return raylets[0]


def _kill_when_working(cluster: dict, job: subprocess.Popen, task: str, node_id: str, before: int) -> None:
    """Wait until `node_id` has finished a task named `task` of this job, then kill that node's raylet."""
    deadline = time.monotonic() + 300
    while _task_nodes(cluster, task).get(node_id, 0) <= before:
        assert job.poll() is None, "the job ended before the node could be killed; give it more work"
        assert time.monotonic() < deadline, "no task ever ran on the node"
        time.sleep(0.5)
    _kill_raylet(cluster["workers"][node_id])


def _gone(cluster: dict, node_id: str, timeout: float = 120) -> None:
    """The head declares the killed node dead (it took part until then: the job's tasks ran on it)."""
    deadline = time.monotonic() + timeout
    while node_id in cluster["cluster"].alive():
        assert time.monotonic() < deadline, "the killed node is still listed alive"
        time.sleep(1)


def test_a_node_lost_mid_mask_changes_no_result(cluster: dict, small_registry: Path, small_cohort: Path,
                                               tmp_path: Path) -> None:
    gmt = cut_library(small_cohort, 40, tmp_path / "sets.gmt")
    common = [str(small_registry / SMALL_MODEL / "1"), str(small_cohort / "test"), "--gene-sets", str(gmt),
              "--nulls", "1500", "--seed", "5", "--quiet"]
    _run(["mask", *common, "--out", str(tmp_path / "single.csv")], {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    (worker,) = [n for n in cluster["nodes"] if n in cluster["workers"]]
    before = _task_nodes(cluster, "_chunk_task").get(worker, 0)
    job = subprocess.Popen([CLI, "mask", *common, "--out", str(tmp_path / "cluster.csv"), "--address", cluster["address"]],
                           env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when_working(cluster, job, "_chunk_task", worker, before)
    out, err = job.communicate(timeout=900)
    assert job.returncode == 0, err[-3000:]
    _gone(cluster, worker)
    _same_masking_table(tmp_path / "cluster.csv", tmp_path / "single.csv")


def test_a_node_that_joins_later_gets_work_and_losing_it_loses_no_case(cluster: dict, images: Path, tmp_path: Path) -> None:
    nodes: LocalCluster = cluster["cluster"]
    before = set(nodes.alive())
    proc = nodes.add_worker(cpus=1, resource="rg_late")
    (late,) = set(nodes.alive()) - before
    cluster["workers"][late] = proc
    first = tmp_path / "first.csv"
    _run(["extract", str(images), "--out", str(first), "--address", cluster["address"], "--quiet"], cluster["env"])
    assert _task_nodes(cluster, "extract_case").get(late, 0) > 0  # the new node took cases
    done_on_late = _task_nodes(cluster, "extract_case")[late]
    out = tmp_path / "again.csv"
    job = subprocess.Popen([CLI, "extract", str(images), "--out", str(out), "--address", cluster["address"], "--quiet",
                            "--workers", "2"], env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when_working(cluster, job, "extract_case", late, done_on_late)
    stdout, stderr = job.communicate(timeout=900)
    assert job.returncode == 0, stderr[-3000:]
    _gone(cluster, late)
    summary = json.loads(stdout.splitlines()[-1])
    assert (summary["extracted"], summary["failed"]) == (10, 0)
    rows = pd.read_csv(out)
    assert sorted(rows["sample_id"]) == sorted(pd.read_csv(first)["sample_id"]) and rows["sample_id"].is_unique
    features = [c for c in rows.columns if c.startswith("original_")]
    a = rows.sort_values("sample_id").reset_index(drop=True)[features]
    b = pd.read_csv(first).sort_values("sample_id").reset_index(drop=True)[features]
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # every case exactly once, with its exact features
