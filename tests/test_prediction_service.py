"""PredictionService, the v2 inference protocol and health on a real Ray Serve over loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from radiogenomics.cohort import load_cohort
from radiogenomics.registry import load_model
from services.pb.inference import grpc_predict_v2_pb2 as v2
from services.pb.inference import grpc_predict_v2_pb2_grpc as v2_grpc
from services.pb.radiogenomics.v1 import common_pb2, prediction_pb2, prediction_pb2_grpc
from services.prediction import PredictionConfig, prediction_app
from tests.conftest import SMALL_MODEL

APP = "prediction"
META = (("application", APP),)
NAME = SMALL_MODEL


@pytest.fixture(scope="module")
def cohort_dir(small_cohort: Path) -> Path:
    return small_cohort


@pytest.fixture(scope="module")
def registry(small_registry: Path) -> Path:
    return small_registry


@pytest.fixture(scope="module")
def channel(serve_grpc: int, registry: Path):
    from ray import serve

    serve.run(prediction_app(PredictionConfig(registry=registry, model=NAME, versions=["1"], max_batch_profiles=64)),
              name=APP, route_prefix=f"/{APP}")
    with grpc.insecure_channel(f"127.0.0.1:{serve_grpc}") as ch:
        yield ch
    serve.delete(APP)


@pytest.fixture(scope="module")
def stub(channel) -> prediction_pb2_grpc.PredictionServiceStub:
    return prediction_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def test_x(cohort_dir: Path, registry: Path) -> np.ndarray:
    model = load_model(registry / NAME / "1")
    return model.align(load_cohort(cohort_dir / "test"))


def _dense(x: np.ndarray, ids=None) -> list[common_pb2.ExpressionProfile]:
    return [common_pb2.ExpressionProfile(profile_id=f"p{i}" if ids is None else ids[i], dense=common_pb2.DenseVector(values=row))
            for i, row in enumerate(x)]


def _probs(response) -> tuple[np.ndarray, np.ndarray]:
    hist = np.array([[p.histology.probabilities[c] for c in sorted(p.histology.probabilities)] for p in response.predictions])
    feats = np.array([[f.probability_high for f in p.features] for p in response.predictions])
    return hist, feats


def _status(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_batch_predictions_equal_the_in_process_model(stub, registry: Path, test_x: np.ndarray) -> None:
    model = load_model(registry / NAME / "1")
    expected = model.predict(test_x)
    response = stub.PredictBatch(prediction_pb2.PredictBatchRequest(model=common_pb2.ModelRef(name=NAME), profiles=_dense(test_x)),
                                 metadata=META)
    hist, feats = _probs(response)
    assert sorted(model.spec.histology_classes) == list(model.spec.histology_classes)
    np.testing.assert_allclose(hist, expected.histology, atol=1e-6)
    np.testing.assert_allclose(feats, expected.features, atol=1e-6)
    assert response.model.version == "1" and len(response.request_id) == 32
    first = response.predictions[0]
    assert first.profile_id == "p0" and [f.name for f in first.features] == list(model.spec.features)
    assert [f.cut_point for f in first.features] == pytest.approx(list(model.spec.cut_points))
    chosen = model.spec.histology_classes.index(first.histology.predicted_class)  # the argmax, up to float round-off
    assert expected.histology[0][chosen] >= expected.histology[0].max() - 1e-6
    assert all(f.predicted_high == (f.probability_high >= 0.5) for f in first.features)


def test_small_passes_run_on_the_loop_and_large_ones_in_a_thread(registry: Path, test_x: np.ndarray) -> None:
    """A pooled pass of up to INLINE_FORWARD_PROFILES runs on the replica's request loop (no hand-over), a larger
    one in a worker thread (the loop keeps reading streams); both give the model's own numbers, row for row."""
    import asyncio

    from services.prediction import INLINE_FORWARD_PROFILES, PredictionService

    model = load_model(registry / NAME / "1")
    ran_on: list[str] = []

    class Watched:  # the model, noting which thread each forward pass runs on
        name, version = model.name, model.version

        def predict(self, x: np.ndarray):
            ran_on.append(threading.current_thread().name)
            return model.predict(x)

    async def passes() -> list:
        one_pass = PredictionService._batched.__wrapped__  # what @serve.batch calls with the pooled requests
        return [(await one_pass(PredictionService(), [(Watched(), np.resize(test_x, (rows, test_x.shape[1])))]))[0]
                for rows in (1, INLINE_FORWARD_PROFILES, INLINE_FORWARD_PROFILES + 1)]

    loop_thread = threading.current_thread().name
    results = asyncio.run(passes())
    assert ran_on[:2] == [loop_thread, loop_thread] and ran_on[2] != loop_thread
    for preds, rows in zip(results, (1, INLINE_FORWARD_PROFILES, INLINE_FORWARD_PROFILES + 1)):
        expected = model.predict(np.resize(test_x, (rows, test_x.shape[1])))
        np.testing.assert_allclose(preds.features, expected.features, atol=1e-6)
        np.testing.assert_allclose(preds.histology, expected.histology, atol=1e-6)


def test_three_profile_forms_agree(stub, registry: Path, test_x: np.ndarray) -> None:
    model = load_model(registry / NAME / "1")
    row = test_x[3]
    forms = [
        common_pb2.ExpressionProfile(dense=common_pb2.DenseVector(values=row)),
        common_pb2.ExpressionProfile(raw_float32=row.astype("<f4").tobytes()),
        common_pb2.ExpressionProfile(by_gene=common_pb2.GeneValues(values=dict(zip(model.genes, row.tolist())))),
    ]
    answers = [stub.Predict(prediction_pb2.PredictRequest(model=common_pb2.ModelRef(name=NAME), profile=p), metadata=META)
               for p in forms]
    expected = model.predict(row[None])
    for a in answers:
        got = [a.prediction.histology.probabilities[c] for c in model.spec.histology_classes]
        np.testing.assert_allclose(got, expected.histology[0], atol=1e-6)
        np.testing.assert_allclose([f.probability_high for f in a.prediction.features], expected.features[0], atol=1e-6)
        assert a.prediction.imputed_genes == 0 and a.prediction.unknown_genes == 0


def test_missing_and_unknown_genes(stub, registry: Path, test_x: np.ndarray) -> None:
    model = load_model(registry / NAME / "1")
    values = dict(zip(model.genes, test_x[0].tolist()))
    for gene in model.genes[:7]:
        del values[gene]
    values.update({"NOT_A_GENE_1": 1.0, "NOT_A_GENE_2": 2.0})
    profile = common_pb2.ExpressionProfile(by_gene=common_pb2.GeneValues(values=values))
    code, details = _status(lambda: stub.Predict(prediction_pb2.PredictRequest(profile=profile), metadata=META))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "lacks 7 of the model's 1500 genes" in details and model.genes[0] in details and "IMPUTE_TRAINING_MEAN" in details
    answer = stub.Predict(prediction_pb2.PredictRequest(profile=profile, missing_genes=prediction_pb2.IMPUTE_TRAINING_MEAN),
                          metadata=META)
    assert answer.prediction.imputed_genes == 7 and answer.prediction.unknown_genes == 2
    filled = test_x[0].copy()
    filled[:7] = model.scaler.mean[:7]
    expected = model.predict(filled[None])
    np.testing.assert_allclose([f.probability_high for f in answer.prediction.features], expected.features[0], atol=1e-6)


@pytest.mark.parametrize("profile, fragment", [
    (common_pb2.ExpressionProfile(dense=common_pb2.DenseVector(values=[1.0, 2.0])), "has 2 values but the model has 1500 genes"),
    (common_pb2.ExpressionProfile(raw_float32=b"\0" * 10), "has 10 bytes but the model's 1500 genes need 6000"),
    (common_pb2.ExpressionProfile(dense=common_pb2.DenseVector(values=[float("nan")] + [0.0] * 1499)), "NaN or infinite"),
    (common_pb2.ExpressionProfile(raw_float32=np.full(1500, np.inf, dtype="<f4").tobytes()), "NaN or infinite"),
    (common_pb2.ExpressionProfile(profile_id="x"), "has no values"),
    (common_pb2.ExpressionProfile(by_gene=common_pb2.GeneValues(values={})), "is empty"),
    (common_pb2.ExpressionProfile(by_gene=common_pb2.GeneValues(values={"FOO": 1.0})), "none of its 1 genes are model genes"),
])
def test_bad_profiles_are_invalid_argument(stub, profile, fragment: str) -> None:
    code, details = _status(lambda: stub.Predict(prediction_pb2.PredictRequest(profile=profile), metadata=META))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fragment in details and details.startswith("profile")


def test_bad_requests_name_the_field(stub, test_x: np.ndarray) -> None:
    code, details = _status(lambda: stub.Predict(prediction_pb2.PredictRequest(), metadata=META))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "profile is required" in details
    code, details = _status(lambda: stub.PredictBatch(prediction_pb2.PredictBatchRequest(), metadata=META))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "profiles: is empty" in details
    bad = _dense(test_x[:3])
    bad[2].dense.values[5] = float("inf")
    code, details = _status(lambda: stub.PredictBatch(prediction_pb2.PredictBatchRequest(profiles=bad), metadata=META))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "profiles[2].dense" in details and "index 5" in details
    code, details = _status(lambda: stub.PredictBatch(prediction_pb2.PredictBatchRequest(profiles=_dense(np.repeat(test_x, 2, axis=0))),
                                                      metadata=META))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "80 profiles exceed the limit of 64" in details
    one = _dense(test_x[:1])[0]
    code, details = _status(lambda: stub.Predict(prediction_pb2.PredictRequest(model=common_pb2.ModelRef(name=NAME, version="9"),
                                                                               profile=one), metadata=META))
    assert code == grpc.StatusCode.NOT_FOUND and "'9'" in details and "served: 1" in details
    code, details = _status(lambda: stub.Predict(prediction_pb2.PredictRequest(model=common_pb2.ModelRef(name="other"), profile=one),
                                                 metadata=META))
    assert code == grpc.StatusCode.NOT_FOUND and "model.name" in details


def test_stream_answers_every_chunk_then_stops_at_a_bad_one(stub, registry: Path, test_x: np.ndarray) -> None:
    model = load_model(registry / NAME / "1")
    chunks = [prediction_pb2.PredictBatchRequest(profiles=_dense(test_x[i:i + 10])) for i in range(0, 40, 10)]
    answers = list(stub.PredictStream(iter(chunks), metadata=META))
    assert len(answers) == 4
    feats = np.concatenate([_probs(a)[1] for a in answers])
    np.testing.assert_allclose(feats, model.predict(test_x).features, atol=1e-6)
    bad = prediction_pb2.PredictBatchRequest(profiles=[common_pb2.ExpressionProfile(dense=common_pb2.DenseVector(values=[1.0]))])
    received = []
    with pytest.raises(grpc.RpcError) as info:
        for a in stub.PredictStream(iter([chunks[0], bad, chunks[1]]), metadata=META):
            received.append(a)
    assert len(received) == 1 and info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk 1: profiles" in info.value.details()


def test_stream_answers_a_client_that_waits_for_each_answer(stub, registry: Path, test_x: np.ndarray) -> None:
    """Chunks are read ahead of the answers, but a client that sends the next chunk only after the last
    answer (ping-pong) still gets every answer, in order."""
    import queue

    model = load_model(registry / NAME / "1")
    answered: queue.Queue = queue.Queue()

    def chunks():
        for i in range(3):
            yield prediction_pb2.PredictBatchRequest(profiles=_dense(test_x[4 * i:4 * i + 4], [f"c{i}-{j}" for j in range(4)]))
            answered.get(timeout=30)  # the answer to this chunk came back

    answers = []
    for answer in stub.PredictStream(chunks(), metadata=META, timeout=60):
        answers.append(answer)
        answered.put(True)
    assert [p.profile_id for a in answers for p in a.predictions] == [f"c{i}-{j}" for i in range(3) for j in range(4)]
    np.testing.assert_allclose(np.concatenate([_probs(a)[1] for a in answers]), model.predict(test_x[:12]).features, atol=1e-6)


def test_compact_output_is_the_named_output_as_packed_arrays(stub, registry: Path, test_x: np.ndarray) -> None:
    """COMPACT gives the same float32 probabilities as NAMED, in GetModelInfo's order, on every prediction RPC."""
    model = load_model(registry / NAME / "1")
    info = stub.GetModelInfo(prediction_pb2.GetModelInfoRequest(model=common_pb2.ModelRef(name=NAME)), metadata=META)
    expected = model.predict(test_x[:12])
    named = stub.PredictBatch(prediction_pb2.PredictBatchRequest(profiles=_dense(test_x[:12])), metadata=META)
    compact = stub.PredictBatch(prediction_pb2.PredictBatchRequest(profiles=_dense(test_x[:12]), output=prediction_pb2.COMPACT),
                                metadata=META)
    assert [p.profile_id for p in compact.predictions] == [f"p{i}" for i in range(12)]
    for n, c in zip(named.predictions, compact.predictions):
        assert not c.features and not c.HasField("histology") and not n.feature_probabilities
        assert list(c.histology_probabilities) == [n.histology.probabilities[k] for k in info.histology_classes]  # exact
        assert list(c.feature_probabilities) == [f.probability_high for f in n.features]
        assert list(info.features) == [f.name for f in n.features]
    hist = np.array([p.histology_probabilities for p in compact.predictions])
    np.testing.assert_allclose(hist, expected.histology, atol=1e-6)
    np.testing.assert_allclose(np.array([p.feature_probabilities for p in compact.predictions]), expected.features, atol=1e-6)
    one = stub.Predict(prediction_pb2.PredictRequest(profile=_dense(test_x[:1])[0], output=prediction_pb2.COMPACT), metadata=META)
    np.testing.assert_allclose(one.prediction.feature_probabilities, expected.features[0], atol=1e-6)  # batch round-off
    chunks = [prediction_pb2.PredictBatchRequest(profiles=_dense(test_x[i:i + 4], [f"p{j}" for j in range(i, i + 4)]),
                                             output=prediction_pb2.COMPACT) for i in (0, 4, 8)]
    streamed = [p for answer in stub.PredictStream(iter(chunks), metadata=META) for p in answer.predictions]
    assert [p.profile_id for p in streamed] == [f"p{i}" for i in range(12)]
    np.testing.assert_allclose(np.array([p.feature_probabilities for p in streamed]), expected.features, atol=1e-6)
    assert len(compact.SerializeToString()) * 5 < len(named.SerializeToString())
    code, details = _status(lambda: stub.Predict(prediction_pb2.PredictRequest(profile=_dense(test_x[:1])[0], output=7),
                                                 metadata=META))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("output 7") and "COMPACT" in details


def test_model_info(stub, registry: Path) -> None:
    model = load_model(registry / NAME / "1")
    info = stub.GetModelInfo(prediction_pb2.GetModelInfoRequest(model=common_pb2.ModelRef(name=NAME)), metadata=META)
    assert list(info.genes) == model.genes and info.model.version == "1" and list(info.versions) == ["1"]
    assert list(info.histology_classes) == list(model.spec.histology_classes)
    assert list(info.outputs) == model.spec.names and len(info.cut_points) == len(info.features) == 6
    assert info.training_data_hash == model.card.training["data_hash"] and info.max_batch_profiles == 64


def test_v2_protocol_and_errors(channel, registry: Path, test_x: np.ndarray) -> None:
    model = load_model(registry / NAME / "1")
    v2stub = v2_grpc.GRPCInferenceServiceStub(channel)
    assert v2stub.ServerLive(v2.ServerLiveRequest(), metadata=META).live
    assert v2stub.ModelReady(v2.ModelReadyRequest(name=NAME, version="1"), metadata=META).ready
    assert not v2stub.ModelReady(v2.ModelReadyRequest(name=NAME, version="2"), metadata=META).ready
    request = v2.ModelInferRequest(model_name=NAME, id="abc")
    request.inputs.add(name="expression", datatype="FP32", shape=list(test_x[:5].shape))
    request.inputs[0].contents.fp32_contents.extend(test_x[:5].ravel().tolist())
    response = v2stub.ModelInfer(request, metadata=META)
    assert response.id == "abc" and response.model_version == "1"
    feats = np.frombuffer(response.raw_output_contents[1], dtype="<f4").reshape(5, -1)
    np.testing.assert_allclose(feats, model.predict(test_x[:5]).features, atol=1e-6)
    request.inputs[0].datatype = "FP64"
    code, details = _status(lambda: v2stub.ModelInfer(request, metadata=META))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "send FP32" in details
    request.inputs[0].datatype = "FP32"
    request.inputs[0].shape[:] = [5, 7]
    code, details = _status(lambda: v2stub.ModelInfer(request, metadata=META))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "does not fit [N, 1500]" in details
    request.inputs[0].shape[:] = [5, 1500]
    request.outputs.add(name="nope")
    code, details = _status(lambda: v2stub.ModelInfer(request, metadata=META))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'nope' not produced" in details
    too_big = v2.ModelInferRequest(model_name=NAME, raw_input_contents=[np.zeros((65, 1500), dtype="<f4").tobytes()])
    too_big.inputs.add(name="expression", datatype="FP32", shape=[65, 1500])
    code, details = _status(lambda: v2stub.ModelInfer(too_big, metadata=META))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "65 rows exceed the limit of 64" in details
    code, details = _status(lambda: v2stub.ModelMetadata(v2.ModelMetadataRequest(name="other"), metadata=META))
    assert code == grpc.StatusCode.NOT_FOUND


TRITON_CLIENT = r"""
import json, sys
import numpy as np
import tritonclient.grpc as tc

url, name, data = sys.argv[1], sys.argv[2], sys.argv[3]
headers = {"application": "prediction"}
client = tc.InferenceServerClient(url=url)
x = np.load(data)
out = {"live": client.is_server_live(headers=headers), "ready": client.is_server_ready(headers=headers),
       "model_ready": client.is_model_ready(name, "1", headers=headers),
       "server": client.get_server_metadata(headers=headers, as_json=True),
       "metadata": client.get_model_metadata(name, headers=headers, as_json=True)}
inp = tc.InferInput("expression", list(x.shape), "FP32")
inp.set_data_from_numpy(x)
result = client.infer(name, [inp], model_version="1", headers=headers)
out["histology"] = result.as_numpy("histology_probabilities").tolist()
out["features"] = result.as_numpy("feature_probabilities").tolist()
print(json.dumps(out))
"""


def test_stock_tritonclient_in_its_own_process(channel, serve_grpc: int, registry: Path, test_x: np.ndarray, tmp_path: Path) -> None:
    data = tmp_path / "x.npy"
    np.save(data, test_x[:8])
    proc = subprocess.run([sys.executable, "-c", TRITON_CLIENT, f"127.0.0.1:{serve_grpc}", NAME, str(data)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["live"] and out["ready"] and out["model_ready"]
    assert out["server"]["name"] == "radiogenomics"
    meta = out["metadata"]
    assert meta["name"] == NAME and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "expression", "datatype": "FP32", "shape": ["-1", "1500"]}]
    assert [o["name"] for o in meta["outputs"]] == ["histology_probabilities", "feature_probabilities"]
    expected = load_model(registry / NAME / "1").predict(test_x[:8])
    np.testing.assert_allclose(out["histology"], expected.histology, atol=1e-6)
    np.testing.assert_allclose(out["features"], expected.features, atol=1e-6)


def test_health_and_reflection(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "radiogenomics.v1.PredictionService", "inference.GRPCInferenceService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service), metadata=META).status == health_pb2.HealthCheckResponse.SERVING
    code, _ = _status(lambda: health.Check(health_pb2.HealthCheckRequest(service="nope.Service"), metadata=META))
    assert code == grpc.StatusCode.NOT_FOUND
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"radiogenomics.v1.PredictionService", "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services


def test_not_ready_until_the_model_is_loaded(channel, serve_grpc: int, registry: Path) -> None:
    from ray import serve

    # With a single application Serve's proxy routes every request to it whatever `application`
    # says; a second one makes the routing strict, so the probe below reaches only the new app.
    serve.run(prediction_app(PredictionConfig(registry=registry, model=NAME, versions=["1"])), name="prediction-other",
              route_prefix="/prediction-other")
    app = "prediction-late"
    deploying = threading.Thread(target=serve.run, args=(prediction_app(PredictionConfig(registry=registry, model=NAME)),),
                                 kwargs={"name": app, "route_prefix": f"/{app}"})
    deploying.start()
    meta = (("application", app),)
    seen = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{serve_grpc}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), metadata=meta, timeout=2).status
                except grpc.RpcError as exc:
                    status = exc.code()
                seen.append(status)
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
                time.sleep(0.05)
    finally:
        deploying.join()
        serve.delete(app)
        serve.delete("prediction-other")
    assert seen[0] != health_pb2.HealthCheckResponse.SERVING and seen[-1] == health_pb2.HealthCheckResponse.SERVING


@contextmanager
def _steady_load(port: int, request, meta, clients: int, record: Callable) -> Iterator[list[str]]:
    """`clients` threads sending `request` as PredictBatch without pause until the block ends; each answer
    goes to `record`, each failure ("CODE: details") to the yielded list."""
    stop = threading.Event()
    failures: list[str] = []

    def client() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            s = prediction_pb2_grpc.PredictionServiceStub(ch)
            while not stop.is_set():
                try:
                    record(s.PredictBatch(request, metadata=meta, timeout=30))
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        yield failures
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_new_version_swapped_in_under_load_without_failures(serve_grpc: int, registry: Path, test_x: np.ndarray) -> None:
    from ray import serve

    app = "prediction-swap"
    meta = (("application", app),)
    serve.run(prediction_app(PredictionConfig(registry=registry, model=NAME, versions=["1"])), name=app, route_prefix=f"/{app}")
    request = prediction_pb2.PredictBatchRequest(profiles=_dense(test_x[:4]))
    versions_seen: list[str] = []
    try:
        with _steady_load(serve_grpc, request, meta, 4, lambda answer: versions_seen.append(answer.model.version)) as failures:
            time.sleep(2)
            before = len(versions_seen)
            serve.run(prediction_app(PredictionConfig(registry=registry, model=NAME, versions=["1", "2"])), name=app,
                      route_prefix=f"/{app}")
            deadline = time.monotonic() + 60
            while "2" not in versions_seen[before:] and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)
        with grpc.insecure_channel(f"127.0.0.1:{serve_grpc}") as ch:
            s = prediction_pb2_grpc.PredictionServiceStub(ch)
            old = s.PredictBatch(prediction_pb2.PredictBatchRequest(model=common_pb2.ModelRef(version="1"), profiles=request.profiles),
                                 metadata=meta)
    finally:
        serve.delete(app)
    assert not failures, failures[:3]
    assert before > 10 and versions_seen[:before].count("1") == before
    assert versions_seen[-1] == "2" and old.model.version == "1"


def _running_replicas(app: str, deployment: str = "PredictionServer") -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0))


@pytest.mark.slow
def test_autoscaling_adds_and_removes_replicas_under_load_without_failures(serve_grpc: int, registry: Path,
                                                                           test_x: np.ndarray) -> None:
    """Through the session's ingress (HAProxy by default): load scales the replicas up, quiet scales them
    down, and no call fails while HAProxy learns of replicas that come and go."""
    from ray import serve

    from services.prediction import DeploymentOptions

    app = "prediction-scale"
    meta = (("application", app),)
    scaling = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "upscale_delay_s": 1,
               "downscale_delay_s": 3, "metrics_interval_s": 0.5, "look_back_period_s": 2}
    serve.run(prediction_app(PredictionConfig(registry=registry, model=NAME, versions=["1"]),
                             DeploymentOptions(autoscaling=scaling, num_cpus=0.25, max_ongoing_requests=32)),
              name=app, route_prefix=f"/{app}")
    request = prediction_pb2.PredictBatchRequest(profiles=_dense(test_x[:16]))
    answered: list[int] = []
    try:
        assert _running_replicas(app) == 1
        with _steady_load(serve_grpc, request, meta, 6, lambda answer: answered.append(len(answer.predictions))) as failures:
            deadline = time.monotonic() + 90
            while _running_replicas(app) < 2 and time.monotonic() < deadline:
                time.sleep(0.25)
            scaled_up = _running_replicas(app)
            served_before = len(answered)
            time.sleep(3)  # both replicas behind the ingress
            served_on_two = len(answered) - served_before
        deadline = time.monotonic() + 90
        while _running_replicas(app) > 1 and time.monotonic() < deadline:
            time.sleep(0.25)
        scaled_down = _running_replicas(app)
        with grpc.insecure_channel(f"127.0.0.1:{serve_grpc}") as ch:
            after = prediction_pb2_grpc.PredictionServiceStub(ch).PredictBatch(request, metadata=meta, timeout=30)
    finally:
        serve.delete(app)
    assert not failures, failures[:3]
    assert scaled_up == 2 and served_on_two > 0 and scaled_down == 1
    assert set(answered) == {16} and len(after.predictions) == 16
