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

import grpc
import numpy as np
import pandas as pd
import pytest

from radiogenomics.synth import SynthConfig, generate
from services.client import RadiogenomicsClient
from services.ingress import haproxy_environment, haproxy_folder, reap_haproxy
from tests.conftest import SMALL_MODEL, cut_library, free_port
from services.pb.radiogenomics.v1 import masking_pb2
from tests.processes import process_tree, ready_line
from tests.prometheus import prometheus_server, query, wait_for
from tests.raynodes import LocalCluster

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "radiogenomics")
SERVE = str(Path(sys.executable).parent / "serve")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A head (1 CPU, resource `rg_head`) and a worker node (1 CPU, `rg_worker`) on 127.0.0.1.

    The worker cannot see one folder (`hidden`: an empty tmpfs in its own mount namespace), as a
    node without the shared storage would not.
    """
    hidden = tmp_path_factory.mktemp("only-on-the-head")
    folder = haproxy_folder()
    nodes = LocalCluster(head_cpus=1, env=haproxy_environment(folder))  # Serve's HAProxy ingress, as compose sets it
    try:
        head = set(nodes.alive())
        worker = nodes.add_worker(cpus=1, hide=hidden)
        alive = nodes.alive()
        assert len(alive) == 2
        (head_id,), (worker_id,) = head, set(alive) - head
        yield {"address": nodes.address, "dashboard": nodes.dashboard, "env": nodes.env, "nodes": alive, "cluster": nodes,
               "workers": {worker_id: worker}, "hidden": hidden, "head": head_id,
               "metrics": {head_id: nodes.metrics_ports[nodes.procs[0].pid], worker_id: nodes.metrics_ports[worker.pid]}}
    finally:
        left = nodes.stop()
        reap_haproxy(folder)
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
# Serving across the nodes (HAProxy ingress on the head: both nodes share this machine's ports)

PYRAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyradiomics"
DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "serve_config.yaml"
TOKEN = "cluster-test-token"


def _replica_nodes(cluster: dict, deployment: str) -> list[str]:
    """The nodes of the live replicas of one deployment of the app (Ray's state API)."""
    return sorted(a["node_id"] for a in cluster["cluster"].state("actors")
                  if a.get("state") == "ALIVE" and a.get("class_name") == f"ServeReplica:radiogenomics:{deployment}")


def _predicts_like_the_model(client: RadiogenomicsClient, registry: Path, cohort: Path) -> None:
    """Predictions through the cluster's app equal the model's own forward pass."""
    from radiogenomics.cohort import load_cohort
    from radiogenomics.registry import load_model, resolve

    test = load_cohort(cohort / "test")
    served = client.predict(pd.DataFrame(test.expression, index=list(test.sample_ids), columns=list(test.genes)), batch=8)
    model = load_model(resolve(registry, SMALL_MODEL))  # the newest version answers an empty request version
    preds = model.predict(model.align(test))
    assert list(served.index) == list(test.sample_ids)
    # Batches of other sizes than the local pass: equal to float32 rounding, not bit for bit.
    np.testing.assert_allclose(served[[f"histology:{c}" for c in model.spec.histology_classes]].to_numpy(),
                               preds.histology, atol=1e-6)
    np.testing.assert_allclose(served[list(model.spec.features)].to_numpy(), preds.features, atol=1e-6)


def _extracts_like_the_core(client: RadiogenomicsClient) -> None:
    from radiogenomics.extraction.extract import extract_files
    from radiogenomics.extraction.params import ExtractionParams

    answer = client.extract_upload(PYRAD / "brain1_image.nrrd", PYRAD / "brain1_label.nrrd")
    local = extract_files(str(PYRAD / "brain1_image.nrrd"), str(PYRAD / "brain1_label.nrrd"), ExtractionParams({}))
    assert set(answer.features) == set(local.features)
    assert all(answer.features[k] == pytest.approx(v, rel=1e-12, abs=1e-12) for k, v in local.features.items())


def test_serve_with_address_spreads_replicas_and_stops_without_touching_the_cluster(
        cluster: dict, small_registry: Path, small_cohort: Path, tmp_path: Path) -> None:
    """`radiogenomics serve --address --max-replicas-per-node 1`: gateway and radiomics replicas on both
    nodes, answers equal to the model's; SIGTERM removes Serve from the cluster and leaves both nodes up."""
    port = free_port()
    command = [CLI, "serve", str(small_registry / SMALL_MODEL), "--address", cluster["address"], "--grpc-port", str(port),
               "--metrics-port", str(free_port()), "--jobs-dir", str(tmp_path / "jobs"), "--proxy-location", "HeadOnly",
               "--gateway-replicas", "2", "--radiomics-cpus", "0.5", "--max-replicas-per-node", "1"]
    # More replicas than the nodes can hold: one line saying what could not be placed, not a wait without end.
    refused = subprocess.run([*command, "--radiomics-replicas", "3"], env=cluster["env"], capture_output=True, text=True,
                             timeout=300)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and "no room for 1 Radiomics replica(s)" in lines[-1], refused.stderr[-3000:]
    assert not _replica_nodes(cluster, "Gateway")  # and Serve is gone again
    proc = subprocess.Popen([*command, "--radiomics-replicas", "2"], env=cluster["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = ready_line(proc)
        ready = json.loads(line)
        assert ready["ingress"] == "cluster" and (ready["gateway_replicas"], ready["radiomics_replicas"]) == (2, 2)
        assert set(_replica_nodes(cluster, "Gateway")) == set(cluster["nodes"])
        assert set(_replica_nodes(cluster, "Radiomics")) == set(cluster["nodes"])
        with RadiogenomicsClient(f"127.0.0.1:{port}") as client:
            _predicts_like_the_model(client, small_registry, small_cohort)
            _extracts_like_the_core(client)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert not [a for a in cluster["cluster"].state("actors")
                if a.get("state") == "ALIVE" and a.get("class_name", "").startswith(("ServeReplica", "ServeController"))]
    assert set(cluster["cluster"].alive()) == set(cluster["nodes"])


def _serve_config(cluster: dict, registry: Path, cohort: Path, folder: Path, grpc_port: int) -> Path:
    """deploy/serve_config.yaml for this cluster: its paths, loopback ports, and resources for 1-CPU nodes.

    Two replicas of the gateway and of radiomics at 0.25 CPU each, at most one per node (Serve's own
    placement may put both on one node: seen here); the ingress on the head only (both nodes share
    this machine's ports).
    """
    import yaml

    config = yaml.safe_load(DEPLOY.read_text())
    config["proxy_location"] = "HeadOnly"
    config["http_options"] = {"host": "127.0.0.1", "port": free_port()}
    config["grpc_options"]["port"] = grpc_port
    args = config["applications"][0]["args"]
    args["prediction"]["registry"] = args["masking"]["registry"] = str(registry)
    args["prediction"]["model"] = args["masking"]["default_model"] = SMALL_MODEL
    args["radiomics"]["data_root"] = args["masking"]["data_root"] = str(cohort)
    args["masking"]["data_dir"] = str(folder / "jobs")
    args["masking"]["libraries"] = {"small": str(cohort / "gene_sets.gmt")}
    args["masking"]["task_cpus"] = 0.25
    (folder / "tokens").write_text(f"tester:{TOKEN}\n")
    args["security"] = {"auth_tokens_file": str(folder / "tokens"), "audit_dir": str(folder / "audit"),
                        "request_timeout_s": 600}
    for deployment in ("gateway_deployment", "radiomics_deployment"):  # one replica on each node
        args[deployment].update(num_replicas=2, autoscaling=None, num_cpus=0.25, max_replicas_per_node=1)
    path = folder / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _serve_cli(cluster: dict, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Ray's own `serve` CLI against the head's dashboard, with the cluster's token."""
    result = subprocess.run([SERVE, *args, "--address", cluster["dashboard"]], env=cluster["env"], capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def deployed(cluster: dict, small_registry: Path, small_cohort: Path, tmp_path_factory: pytest.TempPathFactory):
    """The app from deploy/serve_config.yaml (`serve deploy`) on the cluster, until the node-loss test ends it."""
    folder = tmp_path_factory.mktemp("deployed")
    port = free_port()
    _serve_cli(cluster, "deploy", str(_serve_config(cluster, small_registry, small_cohort, folder, port)))
    try:
        deadline = time.monotonic() + 300
        with RadiogenomicsClient(f"127.0.0.1:{port}", token=TOKEN) as client:
            while not (_is_serving(client) and len(_replica_nodes(cluster, "Gateway")) == 2
                       and len(_replica_nodes(cluster, "Radiomics")) == 2):
                assert time.monotonic() < deadline, _serve_cli(cluster, "status").stdout
                time.sleep(1)
            yield {"port": port, "client": client, "folder": folder}
    finally:
        _serve_cli(cluster, "shutdown", "-y")


def _is_serving(client: RadiogenomicsClient) -> bool:
    try:
        return client.serving("")
    except grpc.RpcError:
        return False


def test_serve_deploy_puts_replicas_on_both_nodes_and_answers_like_one_node(cluster: dict, deployed: dict,
                                                                           small_registry: Path, small_cohort: Path) -> None:
    assert set(_replica_nodes(cluster, "Gateway")) == set(cluster["nodes"])
    assert set(_replica_nodes(cluster, "Radiomics")) == set(cluster["nodes"])
    client = deployed["client"]
    _predicts_like_the_model(client, small_registry, small_cohort)
    _extracts_like_the_core(client)
    with pytest.raises(grpc.RpcError) as err:  # access control holds on every node's replica
        RadiogenomicsClient(f"127.0.0.1:{deployed['port']}", token="wrong").model_info()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    job = client.submit_masking(cohort_path="test", library="small", null_sets=100, seed=2)
    assert client.wait(job, timeout_s=600).state == masking_pb2.SUCCEEDED
    assert len(client.results(job)) > 0


def test_prometheus_scrapes_every_node_from_rays_discovery_file(cluster: dict, deployed: dict, small_cohort: Path,
                                                                 tmp_path: Path) -> None:
    """A real Prometheus with deploy/prometheus.yml, pointed at the head's own service-discovery file:
    every radiogenomics_* metric arrives, the gateways' from both nodes (told apart by `instance`)."""
    from concurrent.futures import ThreadPoolExecutor

    from radiogenomics.cohort import load_cohort

    client = deployed["client"]
    test = load_cohort(small_cohort / "test")
    frame = pd.DataFrame(test.expression, index=list(test.sample_ids), columns=list(test.genes))
    with ThreadPoolExecutor(8) as pool:  # concurrent calls: HAProxy balances them over both gateways
        list(pool.map(lambda k: client.predict(frame.iloc[k % 40: k % 40 + 1]), range(160)))
    _extracts_like_the_core(client)
    job = client.submit_masking(cohort_path="test", library="small", null_sets=50, seed=4)
    assert client.wait(job, timeout_s=600).state == masking_pb2.SUCCEEDED
    discovery = cluster["cluster"].discovery_file
    listed = {target for group in json.loads(discovery.read_text()) for target in group["targets"]}
    ports = {node: port for node, port in cluster["metrics"].items()}
    assert {int(t.rsplit(":", 1)[1]) for t in listed} >= set(ports.values()), listed  # Ray lists both nodes
    with prometheus_server(discovery, tmp_path / "prometheus", free_port()) as url:
        for promql in ["radiogenomics_requests_total", "radiogenomics_request_seconds_bucket",
                       "radiogenomics_prediction_batch_profiles_count", "radiogenomics_extraction_seconds_count",
                       "radiogenomics_extraction_roi_voxels_count", 'radiogenomics_masking_evaluations_total > 0',
                       'radiogenomics_masking_jobs{state="succeeded"} > 0', "radiogenomics_masking_chunks_pending",
                       f'radiogenomics_model_info{{model="{SMALL_MODEL}"}} == 1', "ray_serve_num_grpc_requests_total"]:
            assert wait_for(url, promql), promql
        predict = 'radiogenomics_requests_total{method="PredictBatch",code="OK"}'
        deadline = time.monotonic() + 120
        while True:
            instances = {int(s["metric"]["instance"].rsplit(":", 1)[1]) for s in query(url, predict)}
            if instances >= set(ports.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert instances >= set(ports.values()), (instances, ports)  # both nodes' gateways answered and reported
        assert not query(url, '{__name__=~"ray_radiogenomics_.+"}')  # renamed on scrape


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


def _worker(cluster: dict) -> str:
    """A live worker node (a new one joins when every earlier worker was killed)."""
    alive = set(cluster["cluster"].alive())
    live = [node for node in cluster["workers"] if node in alive]
    if live:
        return live[0]
    proc = cluster["cluster"].add_worker(cpus=1, resource=f"rg_worker{len(cluster['workers'])}")
    (new,) = set(cluster["cluster"].alive()) - alive
    cluster["workers"][new] = proc
    return new


@pytest.fixture
def last_use_of_deployed(cluster: dict, deployed: dict):
    """The deployed app for one more test, then removed: the head's CPU back for the tests below."""
    yield deployed
    _serve_cli(cluster, "shutdown", "-y")


def test_a_node_lost_under_predict_load_fails_few_calls_and_serve_recovers(
        cluster: dict, last_use_of_deployed: dict, small_registry: Path, small_cohort: Path) -> None:
    """Clients send Predict without pause; the worker node (one gateway and one radiomics replica) is
    killed. The failed fraction is measured (clients do not retry); the head's replicas keep answering,
    and when a new node joins Serve puts the lost replicas on it; answers stay equal to the model's."""
    from concurrent.futures import ThreadPoolExecutor

    from radiogenomics.cohort import load_cohort

    (worker,) = [node for node in cluster["workers"] if node in cluster["nodes"]]
    client = last_use_of_deployed["client"]
    test = load_cohort(small_cohort / "test")
    frame = pd.DataFrame(test.expression, index=list(test.sample_ids), columns=list(test.genes))
    codes: dict[str, int] = {}
    after_kill: dict[str, int] = {}
    stop, killed = time.monotonic() + 3600, None
    started = time.monotonic()

    def caller(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            try:
                client.predict(frame.iloc[i % 40: i % 40 + 1])
                code = "OK"
            except grpc.RpcError as err:
                code = err.code().name
            codes[code] = codes.get(code, 0) + 1
            if killed is not None and time.monotonic() - killed > 15:  # the node is long gone
                after_kill[code] = after_kill.get(code, 0) + 1
            i += 4

    with ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(caller, k) for k in range(4)]
        time.sleep(3)
        _kill_raylet(cluster["workers"][worker])
        killed = time.monotonic()
        _gone(cluster, worker)
        assert _replica_nodes(cluster, "Gateway") == [cluster["head"]]  # the head's replica carries the load
        time.sleep(max(0.0, killed + 25 - time.monotonic()))
        joined = _worker(cluster)  # capacity returns: Serve places the lost replicas on the new node
        deadline = time.monotonic() + 180
        while not (set(_replica_nodes(cluster, "Gateway")) == set(_replica_nodes(cluster, "Radiomics")) == {cluster["head"], joined}):
            assert time.monotonic() < deadline, (_replica_nodes(cluster, "Gateway"), _replica_nodes(cluster, "Radiomics"))
            time.sleep(1)
        back = time.monotonic() - killed
        stop = time.monotonic() + 3  # a little more load on the whole app again
        for call in calls:
            call.result()
    sent, failed = sum(codes.values()), sum(n for code, n in codes.items() if code != "OK")
    print(f"node lost under Predict load: {sent} calls in {time.monotonic() - started:.0f} s, {failed} failed "
          f"({100 * failed / sent:.2f} %), codes {codes}; from 15 s after the kill {after_kill}; both deployments "
          f"at 2 replicas again {back:.0f} s after the kill (a node joined 25 s after it)")
    assert sent > 50 and set(codes) <= {"OK", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"}, codes
    assert failed / sent < 0.05, codes
    assert set(after_kill) == {"OK"}, after_kill  # once the node is declared dead, nothing fails
    assert client.serving("")
    _predicts_like_the_model(client, small_registry, small_cohort)
    _extracts_like_the_core(client)


def test_a_node_lost_mid_search_still_gives_a_model(cluster: dict, small_cohort: Path, tmp_path: Path) -> None:
    """The worker node is killed while a Tune trial runs on it: Tune restarts that trial on the head and the
    search ends with an exported model, no --resume needed."""
    from radiogenomics.cohort import load_cohort
    from radiogenomics.registry import load_model

    worker = _worker(cluster)
    job = subprocess.Popen([CLI, "train", str(small_cohort / "train"), "--registry", str(tmp_path / "registry"),
                            "--name", "lost", "--address", cluster["address"], "--trials", "4", "--folds", "2",
                            "--max-epochs", "8", "--no-baselines", "--cpus-per-trial", "1", "--quiet"],
                           env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Kill while a trial is inside its training call on the worker: Ray titles that process
    # "ray::ImplicitFunc.train" only then. Read from /proc every 50 ms, not from the state API, whose
    # answer can be seconds old (a CI run killed the node after its only trial there had ended).
    node = cluster["workers"][worker]
    deadline = time.monotonic() + 600
    while not any(cmd.startswith(b"ray::ImplicitFunc.train") for cmd in process_tree(node.pid).values()):
        assert job.poll() is None, job.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no trial ever ran on the worker node"
        time.sleep(0.05)
    _kill_raylet(node)
    out, err = job.communicate(timeout=1200)
    assert job.returncode == 0, err[-3000:]
    _gone(cluster, worker)
    folder = Path(out.strip().splitlines()[-1])
    (state,) = (folder / "tune").glob("experiment_state-*.json")  # the finished search, kept with its model
    runs = [json.loads(runtime) for _, runtime in json.loads(state.read_text())["trial_data"]]
    assert len(runs) == 4 and sum(run["num_failures"] for run in runs) >= 1, runs  # the kill hit a trial; Tune reran it
    model = load_model(folder)
    preds = model.predict(model.align(load_cohort(small_cohort / "test")))
    assert preds.features.shape == (40, 6) and np.isfinite(preds.features).all()


def test_a_node_lost_mid_mask_changes_no_result(cluster: dict, small_registry: Path, small_cohort: Path,
                                               tmp_path: Path) -> None:
    gmt = cut_library(small_cohort, 40, tmp_path / "sets.gmt")
    common = [str(small_registry / SMALL_MODEL / "1"), str(small_cohort / "test"), "--gene-sets", str(gmt),
              "--nulls", "1500", "--seed", "5", "--quiet"]
    _run(["mask", *common, "--out", str(tmp_path / "single.csv")], {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    worker = _worker(cluster)
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
