"""The whole app as an operator runs it: `radiogenomics serve` in its own process, one gRPC port,
every service reached through the gateway, metrics scraped by a real Prometheus."""

from __future__ import annotations

import json
import os
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
from services.pb.radiogenomics.v1 import masking_pb2, radiomics_pb2
from tests.conftest import SMALL_MODEL, free_port
from tests.prometheus import prometheus_server, query, wait_for

PYRAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyradiomics"
SERVICES = ["radiogenomics.v1.RadiomicsService", "radiogenomics.v1.PredictionService", "inference.GRPCInferenceService",
            "radiogenomics.v1.MaskingService"]
NULLS = 200


@pytest.fixture(scope="module")
def gmt(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from radiogenomics.gene_sets import read_gmt

    sets = read_gmt(small_cohort / "gene_sets.gmt")
    keep = [n for n in sets if n.startswith("SYNTH_")][:4] + [n for n in sets if n.startswith("HALLMARK_")][:4]
    path = tmp_path_factory.mktemp("app-gmt") / "eight.gmt"
    path.write_text("".join(f"{n}\tna\t" + "\t".join(sets[n].genes) + "\n" for n in keep))
    return path


@pytest.fixture(scope="module")
def app(small_registry: Path, small_cohort: Path, gmt: Path, tmp_path_factory: pytest.TempPathFactory):
    """`radiogenomics serve` with its own local Ray; SIGTERM at the end must stop it cleanly."""
    port, metrics = free_port(), free_port()
    jobs = tmp_path_factory.mktemp("app-jobs")
    cli = str(Path(sys.executable).parent / "radiogenomics")
    proc = subprocess.Popen([cli, "serve", str(small_registry / SMALL_MODEL), "--grpc-port", str(port),
                             "--metrics-port", str(metrics), "--jobs-dir", str(jobs), "--data-root", str(small_cohort),
                             "--gene-sets", f"small={gmt}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-3000:] if proc.poll() is not None else "no ready line"
        ready = json.loads(line)
        with RadiogenomicsClient(f"127.0.0.1:{port}") as client:
            yield {"ready": ready, "port": port, "metrics": metrics, "client": client}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]


def test_one_port_serves_every_service_with_health_and_reflection(app: dict) -> None:
    ready = app["ready"]
    assert ready["ready"] and ready["application"] == "radiogenomics" and ready["versions"] == ["1", "2"]
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
    cases = [
        (lambda: client.radiomics.ExtractFromPath(radiomics_pb2.ExtractPathRequest(
            image_path="../../etc/passwd", mask_path="x.nrrd"), timeout=30),
         grpc.StatusCode.INVALID_ARGUMENT, "outside the server's data root"),
        (lambda: client.radiomics.ExtractUpload(iter([radiomics_pb2.ExtractChunk(image_chunk=b"xx")]), timeout=30),
         grpc.StatusCode.INVALID_ARGUMENT, "the first message must be `header`"),
        (lambda: client.masking.GetResults(masking_pb2.GetResultsRequest(job_id="nope"), timeout=30),
         grpc.StatusCode.NOT_FOUND, "job_id 'nope'"),
        (lambda: list(client.masking.WatchJob(masking_pb2.JobRef(job_id="nope"), timeout=30)),
         grpc.StatusCode.NOT_FOUND, "job_id 'nope'"),
        (lambda: client.masking.SubmitJob(masking_pb2.SubmitJobRequest(cohort_path="test", library="nope"), timeout=30),
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
        client.masking.GetResults(masking_pb2.GetResultsRequest(job_id="nope"), timeout=30)
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
                       '{__name__=~"ray_serve_.+"}']:
            assert wait_for(url, promql), promql
        assert not query(url, '{__name__=~"ray_radiogenomics_.+"}')  # renamed on scrape
        # No patient, case, job or request ids in any label of our metrics.
        labels = {key for series in query(url, '{__name__=~"radiogenomics_.+"}') for key in series["metric"]}
        assert labels <= {"__name__", "service", "method", "code", "model", "version", "mode", "state", "le", "job",
                          "instance", "Component", "NodeAddress", "SessionName", "Version", "WorkerId"}, labels
        values = {v for series in query(url, '{__name__=~"radiogenomics_.+"}') for v in series["metric"].values()}
        assert not any(sample in value for value in values for sample in test.sample_ids)
        assert not any(job in value for value in values)
