"""The whole app as an operator runs it: `radiogenomics serve` in its own process, one gRPC port,
every service reached through the gateway, metrics scraped by a real Prometheus."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from radiogenomics.cohort import load_cohort
from radiogenomics.extraction.extract import extract_files
from radiogenomics.extraction.params import ExtractionParams
from radiogenomics.masking import MaskingOptions, library_from_gmt, prepare, run_masking
from radiogenomics.registry import load_model
from services.client import RadiogenomicsClient
from services.security import TOKENS_ENV, UNAUTHENTICATED_MESSAGE
from services.pb.radiogenomics.v1 import masking_pb2, radiomics_pb2
from tests.conftest import SMALL_MODEL, cut_library, free_port
from tests.processes import alive, listeners, process_tree, ready_line
from tests.prometheus import prometheus_server, query, wait_for

PYRAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyradiomics"
SERVICES = ["radiogenomics.v1.RadiomicsService", "radiogenomics.v1.PredictionService", "inference.GRPCInferenceService",
            "radiogenomics.v1.MaskingService"]
NULLS = 200
MAX_MESSAGE = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def gmt(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut_library(small_cohort, 4, tmp_path_factory.mktemp("app-gmt") / "eight.gmt")


TOKENS = {"pacs-gateway": secrets.token_hex(32), "research-lab": secrets.token_hex(32)}


@pytest.fixture(scope="module")
def app(small_registry: Path, small_cohort: Path, gmt: Path, tmp_path_factory: pytest.TempPathFactory):
    """`radiogenomics serve` with its own local Ray, access control and an audit folder; SIGTERM at the end
    must stop it cleanly. The token file comes through the environment variable."""
    port, metrics = free_port(), free_port()
    folder = tmp_path_factory.mktemp("app")
    tokens = folder / "tokens.txt"
    tokens.write_text("# name:token\n" + "".join(f"{name}:{token}\n" for name, token in TOKENS.items()))
    cli = str(Path(sys.executable).parent / "radiogenomics")
    proc = subprocess.Popen([cli, "serve", str(small_registry / SMALL_MODEL), "--grpc-port", str(port),
                             "--metrics-port", str(metrics), "--jobs-dir", str(folder / "jobs"),
                             "--data-root", str(small_cohort), "--gene-sets", f"small={gmt}",
                             "--audit-dir", str(folder / "audit"), "--max-message-bytes", str(MAX_MESSAGE)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", TOKENS_ENV: str(tokens)})
    try:
        line = ready_line(proc)
        ready = json.loads(line)
        with RadiogenomicsClient(f"127.0.0.1:{port}", token=TOKENS["pacs-gateway"]) as client:
            yield {"ready": ready, "port": port, "metrics": metrics, "client": client, "audit": folder / "audit",
                   "jobs": folder / "jobs"}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]


def test_one_port_serves_every_service_with_health_and_reflection(app: dict) -> None:
    ready = app["ready"]
    assert ready["ready"] and ready["application"] == "radiogenomics" and ready["versions"] == ["1", "2"]
    assert ready["auth"] is True
    client = app["client"]
    assert client.serving("") and all(client.serving(name) for name in SERVICES)
    with pytest.raises(grpc.RpcError) as err:
        client.serving("radiogenomics.v1.NoSuchService")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    listed = set(ProtoReflectionDescriptorDatabase(client.channel).get_services())
    assert set(SERVICES) | {"grpc.health.v1.Health"} <= listed


def test_extraction_through_the_gateway_equals_the_core(app: dict) -> None:
    answer = app["client"].extract_upload(PYRAD / "brain1_image.nrrd", PYRAD / "brain1_label.nrrd")
    local = extract_files(str(PYRAD / "brain1_image.nrrd"), str(PYRAD / "brain1_label.nrrd"), ExtractionParams({}))
    assert set(answer.features) == set(local.features)
    assert all(answer.features[k] == pytest.approx(v, rel=1e-12, abs=1e-12) for k, v in local.features.items())
    assert answer.provenance.voxel_count == local.provenance.voxel_count


def test_prediction_of_a_cohort_equals_the_model(app: dict, small_registry: Path, small_cohort: Path) -> None:
    test = load_cohort(small_cohort / "test")
    frame = pd.DataFrame(test.expression, index=list(test.sample_ids), columns=list(test.genes))
    served = app["client"].predict(frame.iloc[:, ::-1], batch=16)  # columns in any order; several requests
    model = load_model(small_registry / SMALL_MODEL / "2")
    preds = model.predict(test.expression)
    assert list(served.index) == list(test.sample_ids)
    classes = list(model.spec.histology_classes)
    np.testing.assert_allclose(served[[f"histology:{c}" for c in classes]].to_numpy(), preds.histology, atol=1e-6)
    np.testing.assert_allclose(served[list(model.spec.features)].to_numpy(), preds.features, atol=1e-6)


def test_masking_job_through_the_gateway_equals_the_core(app: dict, small_registry: Path, small_cohort: Path,
                                                         gmt: Path) -> None:
    client = app["client"]
    seen = []
    job = client.submit_masking(cohort_path="test", library="small", null_sets=NULLS, seed=5, label="app test")
    final = client.wait(job, on_status=seen.append, timeout_s=300)
    assert final.state == masking_pb2.SUCCEEDED, final.error
    assert final.model.name == SMALL_MODEL and final.model.version == "2"  # the served model by default
    served = client.results(job).sort_values(["output", "gene_set"]).reset_index(drop=True)
    model = load_model(small_registry / SMALL_MODEL / "2")
    reference = run_masking(model, prepare(model, load_cohort(small_cohort / "test")), library_from_gmt(gmt),
                            MaskingOptions(n_nulls=NULLS, seed=5), use_ray=False).table
    reference = reference.sort_values(["output", "gene_set"]).reset_index(drop=True)
    assert len(served) == len(reference) > 0
    for column in ("auc", "p_value", "q_value"):
        np.testing.assert_allclose(served[column], reference[column], atol=1e-12)


def test_forwarded_errors_keep_their_status_and_message(app: dict) -> None:
    client = app["client"]
    auth = client.metadata
    cases = [
        (lambda: client.radiomics.ExtractFromPath(radiomics_pb2.ExtractPathRequest(
            image_path="../../etc/passwd", mask_path="x.nrrd"), timeout=30, metadata=auth),
         grpc.StatusCode.INVALID_ARGUMENT, "outside the server's data root"),
        (lambda: client.radiomics.ExtractUpload(iter([radiomics_pb2.ExtractChunk(image_chunk=b"xx")]), timeout=30, metadata=auth),
         grpc.StatusCode.INVALID_ARGUMENT, "the first message must be `header`"),
        (lambda: client.masking.GetResults(masking_pb2.GetResultsRequest(job_id="nope"), timeout=30, metadata=auth),
         grpc.StatusCode.NOT_FOUND, "job_id 'nope'"),
        (lambda: list(client.masking.WatchJob(masking_pb2.JobRef(job_id="nope"), timeout=30, metadata=auth)),
         grpc.StatusCode.NOT_FOUND, "job_id 'nope'"),
        (lambda: client.masking.SubmitJob(masking_pb2.SubmitJobRequest(cohort_path="test", library="nope"), timeout=30, metadata=auth),
         grpc.StatusCode.INVALID_ARGUMENT, "library"),
    ]
    for call, code, fragment in cases:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == code, (fragment, err.value.details())
        assert fragment in err.value.details()
    assert client.serving("")  # nothing above hurt a replica


def test_prometheus_scrapes_our_metrics_and_rays(app: dict, small_cohort: Path, tmp_path: Path) -> None:
    """A real Prometheus with deploy/prometheus.yml scrapes the app; our names come back through its API."""
    # Make sure every kind of metric has something to report (the other tests may run alone).
    client = app["client"]
    test = load_cohort(small_cohort / "test")
    client.predict(pd.DataFrame(test.expression[:3], index=list(test.sample_ids[:3]), columns=list(test.genes)))
    with pytest.raises(grpc.RpcError):
        client.masking.GetResults(masking_pb2.GetResultsRequest(job_id="nope"), timeout=30, metadata=client.metadata)
    client.extract_upload(PYRAD / "brain1_image.nrrd", PYRAD / "brain1_label.nrrd")
    job = client.submit_masking(cohort_path="test", library="small", null_sets=50)
    assert client.wait(job, timeout_s=300).state == masking_pb2.SUCCEEDED

    with prometheus_server([f"127.0.0.1:{app['metrics']}"], tmp_path / "prometheus", free_port()) as url:
        predict = wait_for(url, 'radiogenomics_requests_total{method="PredictBatch",code="OK"}')
        assert predict and predict[0]["metric"]["service"] == "radiogenomics.v1.PredictionService"
        assert wait_for(url, 'radiogenomics_requests_total{method="GetResults",code="NOT_FOUND"}')
        for promql in ['radiogenomics_request_seconds_bucket{method="ExtractUpload"}',
                       "radiogenomics_prediction_batch_profiles_count",
                       "radiogenomics_extraction_seconds_count", "radiogenomics_extraction_roi_voxels_count",
                       'radiogenomics_masking_evaluations_total{mode="keep"} > 0',
                       'radiogenomics_masking_jobs{state="succeeded"} > 0',
                       "radiogenomics_masking_chunks_pending",
                       f'radiogenomics_model_info{{model="{SMALL_MODEL}",version="2"}} == 1',
                       '{__name__=~"ray_serve_.+"}',
                       'ray_serve_num_grpc_requests_total']:  # Serve's own request count stays, whichever ingress
            assert wait_for(url, promql), promql
        assert not query(url, '{__name__=~"ray_radiogenomics_.+"}')  # renamed on scrape
        # No patient, case, job or request ids in any label of our metrics.
        labels = {key for series in query(url, '{__name__=~"radiogenomics_.+"}') for key in series["metric"]}
        assert labels <= {"__name__", "service", "method", "code", "model", "version", "mode", "state", "le", "job",
                          "instance", "Component", "NodeAddress", "SessionName", "Version", "WorkerId"}, labels
        values = {v for series in query(url, '{__name__=~"radiogenomics_.+"}') for v in series["metric"].values()}
        assert not any(sample in value for value in values for sample in test.sample_ids)
        assert not any(job in value for value in values)


def _every_rpc() -> list[tuple[str, object, object]]:
    """(path, request class, descriptor) for every RPC the app serves except health."""
    from google.protobuf.message_factory import GetMessageClass

    from services.pb.inference import grpc_predict_v2_pb2
    from services.pb.radiogenomics.v1 import prediction_pb2

    out = []
    for module, name in ((radiomics_pb2, "RadiomicsService"), (prediction_pb2, "PredictionService"),
                         (grpc_predict_v2_pb2, "GRPCInferenceService"), (masking_pb2, "MaskingService")):
        service = module.DESCRIPTOR.services_by_name[name]
        for method in service.methods:
            out.append((f"/{service.full_name}/{method.name}", GetMessageClass(method.input_type), method))
    return out


def _call(channel: grpc.Channel, path: str, request_class, method, metadata) -> None:
    """Send one empty request to `path` with the method's streaming shape; raises grpc.RpcError."""
    request = request_class()
    kinds = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
             (True, False): channel.stream_unary, (True, True): channel.stream_stream}
    stub = kinds[(method.client_streaming, method.server_streaming)](
        path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=lambda b: b)
    argument = iter([request]) if method.client_streaming else request
    answer = stub(argument, metadata=metadata, timeout=30)
    if method.server_streaming:
        list(answer)


def test_every_rpc_needs_a_valid_token_and_health_stays_open(app: dict) -> None:
    channel = app["client"].channel
    rpcs = _every_rpc()
    assert len(rpcs) == 19
    for metadata in ((), (("authorization", "Bearer " + "0" * 64),), (("authorization", TOKENS["pacs-gateway"]),),
                     (("authorization", "Basic " + TOKENS["pacs-gateway"]),)):
        for path, request_class, method in rpcs:
            with pytest.raises(grpc.RpcError) as err:
                _call(channel, path, request_class, method, metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (path, metadata, err.value.details())
            assert err.value.details() == UNAUTHENTICATED_MESSAGE  # the same answer whatever was wrong
    no_token = health_pb2_grpc.HealthStub(channel)
    assert no_token.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    # Both configured tokens work, with either spelling of the scheme.
    for name, token in TOKENS.items():
        with RadiogenomicsClient(f"127.0.0.1:{app['port']}", token=token) as other:
            assert other.model_info().model.name == SMALL_MODEL
    info = app["client"].prediction.GetModelInfo(__import__("services.pb.radiogenomics.v1.prediction_pb2", fromlist=["x"])
                                                 .GetModelInfoRequest(), metadata=(("authorization", f"bearer {TOKENS['research-lab']}"),))
    assert info.model.name == SMALL_MODEL


def _audit_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("audit-*.jsonl")) for line in path.read_text().splitlines()]


def _new_lines(before: list[dict], after: list[dict]) -> list[dict]:
    """The lines of `after` that `before` did not have (a multiset difference; files interleave)."""
    old = [json.dumps(line, sort_keys=True) for line in before]
    new = []
    for line in after:
        key = json.dumps(line, sort_keys=True)
        if key in old:
            old.remove(key)
        else:
            new.append(line)
    return new


def test_audit_log_has_one_line_per_request_without_patient_data(app: dict, small_cohort: Path) -> None:
    client = app["client"]
    before = _audit_lines(app["audit"])
    test = load_cohort(small_cohort / "test")
    frame = pd.DataFrame(test.expression[:5], index=list(test.sample_ids[:5]), columns=list(test.genes))
    client.predict(frame)                                         # GetModelInfo + 1 PredictBatch
    with pytest.raises(grpc.RpcError):                            # 1 refused call
        client.masking.ListJobs(masking_pb2.ListJobsRequest(), timeout=30)
    client.extract_upload(PYRAD / "brain1_image.nrrd", PYRAD / "brain1_label.nrrd")  # 1 client stream
    lines = _new_lines(before, _audit_lines(app["audit"]))  # one file per gateway replica: matched by method
    by_method = {line["method"].rsplit("/", 1)[1]: line for line in lines}
    assert sorted(line["method"].rsplit("/", 1)[1] for line in lines) == ["ExtractUpload", "GetModelInfo", "ListJobs", "PredictBatch"]
    batch, refused, upload = by_method["PredictBatch"], by_method["ListJobs"], by_method["ExtractUpload"]
    assert {"time", "token", "method", "model_version", "status", "duration_ms", "request_bytes", "response_bytes",
            "input_sha256"} == set(batch)
    assert batch["token"] == "pacs-gateway" and batch["status"] == "OK" and batch["model_version"] == "2"
    assert batch["request_bytes"] > 5 * 4 * len(test.genes) and batch["response_bytes"] > 0 and len(batch["input_sha256"]) == 64
    assert refused["token"] == "-" and refused["status"] == "UNAUTHENTICATED"
    image_and_mask = (PYRAD / "brain1_image.nrrd").stat().st_size + (PYRAD / "brain1_label.nrrd").stat().st_size
    assert upload["status"] == "OK" and upload["request_bytes"] > image_and_mask
    text = "".join(path.read_text() for path in app["audit"].glob("audit-*.jsonl"))
    assert not any(sample in text for sample in test.sample_ids)


IDENTIFIERS = {"PatientName": "LEAKCHECK^JANE^Q", "PatientID": "LEAK-PID-77310", "PatientBirthDate": "19450117",
               "OtherPatientIDs": "LEAK-OTHER-4242", "InstitutionName": "LEAK MEMORIAL HOSPITAL",
               "ReferringPhysicianName": "LEAKDOC^ALAN", "AccessionNumber": "LEAKACC99812",
               "PatientAddress": "12 LEAK STREET"}


def test_dicom_identifiers_reach_no_log_metric_or_result(app: dict, tmp_path: Path) -> None:
    """A DICOM series + RTSTRUCT full of identifying tags goes through the app; no tag value comes out anywhere."""
    import io
    import time
    import urllib.request
    import zipfile

    import pydicom

    sts = PYRAD.parent / "ibsi" / "validation_STS_019" / "dicom" / "CT"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((sts / "image").iterdir()):
            ds = pydicom.dcmread(path)
            for tag, value in IDENTIFIERS.items():
                setattr(ds, tag, value)
            buffer = io.BytesIO()
            ds.save_as(buffer)
            zf.writestr(path.name, buffer.getvalue())
    rs = pydicom.dcmread(sts / "mask" / "RS.dcm")
    for tag, value in IDENTIFIERS.items():
        setattr(rs, tag, value)
    (tmp_path / "images.zip").write_bytes(archive.getvalue())
    rs.save_as(tmp_path / "RS.dcm")
    assert b"LEAK-PID-77310" in (tmp_path / "RS.dcm").read_bytes()

    started = time.time()
    client = app["client"]
    answer = client.extract_upload(tmp_path / "images.zip", tmp_path / "RS.dcm", image_format="dicom",
                                   mask_format="rtstruct", roi_name="GTV_Mass_CT")
    assert answer.provenance.voxel_count > 0
    with pytest.raises(grpc.RpcError) as err:  # a refused one too: its message must not echo tags either
        client.extract_upload(tmp_path / "images.zip", tmp_path / "RS.dcm", image_format="dicom", mask_format="rtstruct",
                              roi_name="NO_SUCH_ROI")
    needles = [v.encode() for v in IDENTIFIERS.values()] + [v.split("^")[0].encode() for v in IDENTIFIERS.values()]
    assert not any(n in answer.SerializeToString() for n in needles)
    assert not any(n in err.value.details().encode() for n in needles)
    time.sleep(12)  # Ray flushes metrics and logs every few seconds
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{app['metrics']}/metrics", timeout=10).read()
    assert not any(n in scraped for n in needles)
    searched = 0
    for root in [app["audit"], app["jobs"], *Path("/tmp/ray").glob("session_*/logs")]:
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_mtime >= started - 600 and path.stat().st_size < 200 << 20:
                data = path.read_bytes()
                searched += 1
                assert not any(n in data for n in needles), path
    assert searched > 10


def test_tls_proxy_carries_every_kind_of_call(app: dict, small_cohort: Path, tmp_path: Path) -> None:
    """Debian's nginx with deploy/nginx/grpc-tls.conf terminates TLS in front of the app (throw-away cert)."""
    from tests.tls_proxy import tls_proxy

    port = free_port()
    with tls_proxy(app["port"], port, tmp_path / "nginx") as certificate:
        credentials = grpc.ssl_channel_credentials(root_certificates=certificate)
        with RadiogenomicsClient(f"localhost:{port}", token=TOKENS["research-lab"], credentials=credentials) as client:
            assert client.serving("")                                        # unary, no token (health)
            answer = client.extract_upload(PYRAD / "brain1_image.nrrd", PYRAD / "brain1_label.nrrd")  # client stream
            assert answer.provenance.voxel_count > 0
            test = load_cohort(small_cohort / "test")
            served = client.predict(pd.DataFrame(test.expression[:4], index=list(test.sample_ids[:4]),
                                                 columns=list(test.genes)))
            assert len(served) == 4
            job = client.submit_masking(cohort_path="test", library="small", null_sets=20)
            assert client.wait(job, timeout_s=300).state == masking_pb2.SUCCEEDED  # server stream
            with pytest.raises(grpc.RpcError) as err:                        # auth still applies behind TLS
                client.prediction.GetModelInfo(__import__("services.pb.radiogenomics.v1.prediction_pb2", fromlist=["x"])
                                               .GetModelInfoRequest(), timeout=30)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Plaintext to the TLS port fails; so does TLS with a certificate the client does not trust.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:
            with pytest.raises(grpc.RpcError) as err:
                health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials()) as untrusted:
            with pytest.raises(grpc.RpcError) as err:
                health_pb2_grpc.HealthStub(untrusted).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    access = (tmp_path / "nginx" / "access.log").read_text()
    assert "/radiogenomics.v1.RadiomicsService/ExtractUpload" in access


def test_messages_over_the_configured_size_are_refused_with_the_limit(app: dict) -> None:
    client = app["client"]
    big = radiomics_pb2.ExtractChunk(image_chunk=b"\0" * (MAX_MESSAGE + 1024))
    header = radiomics_pb2.ExtractChunk(header=radiomics_pb2.UploadHeader(
        image_format=radiomics_pb2.IMAGE_NRRD, mask_format=radiomics_pb2.MASK_NRRD))
    with pytest.raises(grpc.RpcError) as err:
        client.radiomics.ExtractUpload(iter([header, big]), metadata=client.metadata, timeout=60)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(MAX_MESSAGE) in err.value.details()  # grpc's own message names the limit
    assert client.serving("")


@pytest.mark.slow
@pytest.mark.parametrize("ingress", ["haproxy", "proxy"])
def test_serve_stops_promptly_and_leaves_nothing_behind(ingress: str, small_registry: Path, small_cohort: Path,
                                                        tmp_path: Path) -> None:
    """SIGTERM stops `serve` in seconds: every process it started (Ray's, HAProxy's) gone, the port free."""
    import socket
    import time

    port = free_port()
    cli = str(Path(sys.executable).parent / "radiogenomics")
    proc = subprocess.Popen([cli, "serve", str(small_registry / SMALL_MODEL), "--grpc-port", str(port),
                             "--metrics-port", str(free_port()), "--jobs-dir", str(tmp_path / "jobs"),
                             "--ingress", ingress],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    try:
        line = ready_line(proc)
        ready = json.loads(line)
        assert ready["ingress"] == ingress and ready["host"] == "127.0.0.1"
        assert ready["gateway_replicas"] == len(os.sched_getaffinity(0))
        test = load_cohort(small_cohort / "test")
        with RadiogenomicsClient(f"127.0.0.1:{port}") as client:
            served = client.predict(pd.DataFrame(test.expression[:4], index=list(test.sample_ids[:4]), columns=list(test.genes)))
        assert list(served.index) == list(test.sample_ids[:4])
        tree = process_tree(proc.pid)
        haproxies = [pid for pid, cmd in tree.items() if cmd.split(b"\0")[0].endswith(b"haproxy")]
        # A graceful reload (Serve's config changes as replicas come up) starts a new HAProxy while
        # the old one drains, so the HAProxy ingress may briefly have two; the proxy ingress has none.
        assert bool(haproxies) == (ingress == "haproxy"), tree
        # No port of this app is shared with a process outside it (the module's other app runs now,
        # with access control on: a shared replica port would hand our calls to it).
        shared = {port: pids for port, pids in listeners().items() if pids & set(tree) and pids - set(tree)}
        assert not shared, shared
    finally:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 0, err[-3000:]
    assert took < 20, f"serve took {took:.1f} s to stop"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid, cmd) for pid, cmd in tree.items()):
        time.sleep(0.2)
    left = {pid: cmd.replace(b"\0", b" ")[:120] for pid, cmd in tree.items() if alive(pid, cmd)}
    assert not left, f"left behind after serve stopped: {left}"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # the gRPC port is free again
