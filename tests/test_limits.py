"""Every configurable limit of the app, breached through gRPC: the right status and a message giving the limit.

The app runs with tight limits on the session's Serve proxy (auth off here; test_app.py covers
auth and the gRPC message-size limit of the `serve` command).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from radiogenomics.cohort import load_cohort
from services.app import APP_NAME, default_config, radiogenomics_app
from services.client import RadiogenomicsClient
from services.pb.radiogenomics.v1 import common_pb2, masking_pb2, prediction_pb2
from tests.conftest import SMALL_MODEL

PYRAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyradiomics"
META = (("application", APP_NAME),)


def _config(small_registry: Path, small_cohort: Path, jobs: Path):
    config = default_config(small_registry, SMALL_MODEL, None, jobs, small_cohort)
    config.prediction.max_batch_profiles = 8
    config.radiomics.max_voxels = 2_000_000                      # brain1 (1.6 M) fits, lung1 (12.6 M) does not
    config.radiomics.max_upload_bytes = 3 * 1024 * 1024          # brain1 fits
    config.masking.max_sets_per_job = 5
    config.masking.max_nulls = 100
    config.masking.default_nulls = 50
    config.masking.max_active_jobs = 1
    config.masking.task_cpus = 0.5
    for deployment in (config.gateway_deployment, config.radiomics_deployment):
        deployment.num_cpus = 0.25
    return config


@pytest.fixture(scope="module")
def client(serve_grpc: int, small_registry: Path, small_cohort: Path, tmp_path_factory: pytest.TempPathFactory):
    from ray import serve

    config = _config(small_registry, small_cohort, tmp_path_factory.mktemp("limits-jobs"))
    serve.run(radiogenomics_app(config), name=APP_NAME, route_prefix=f"/{APP_NAME}")
    with RadiogenomicsClient(f"127.0.0.1:{serve_grpc}") as c:
        c.metadata = META
        yield c
    serve.delete(APP_NAME)


def _status(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def test_profiles_per_request(client, small_cohort: Path) -> None:
    test = load_cohort(small_cohort / "test")
    profiles = [common_pb2.ExpressionProfile(raw_float32=np.asarray(row, "<f4").tobytes()) for row in test.expression[:9]]
    code, details = _status(lambda: client.prediction.PredictBatch(
        prediction_pb2.PredictBatchRequest(profiles=profiles), metadata=META, timeout=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "9 profiles exceed the limit of 8" in details


def test_upload_bytes_voxels_and_settings_that_would_exhaust_memory(client, tmp_path: Path) -> None:
    code, details = _status(lambda: client.extract_upload(PYRAD / "lung1_image.nrrd", PYRAD / "lung1_label.nrrd"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 3,145,728 bytes" in details
    # lung1-sized (12.6 M voxels) but compressed small enough to upload: the voxel limit stops it.
    import SimpleITK as sitk

    image = sitk.ReadImage(str(PYRAD / "lung1_image.nrrd"))
    mask = sitk.ReadImage(str(PYRAD / "lung1_label.nrrd"))
    big = sitk.Image(image.GetSize(), sitk.sitkUInt8)                      # 12.6 M voxels of zeros: tiny when gzipped
    big.CopyInformation(image)
    sitk.WriteImage(big, str(tmp_path / "big.nrrd"), useCompression=True)
    sitk.WriteImage(mask, str(tmp_path / "mask.nrrd"), useCompression=True)
    code, details = _status(lambda: client.extract_upload(tmp_path / "big.nrrd", tmp_path / "mask.nrrd"))
    assert code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
    assert "over the limit of 2,000,000" in details, details
    # Settings that would size pyradiomics' work far beyond the upload are refused before it runs.
    for params, fragment in (("setting: {binWidth: 0.001}", "over the limit of 4,096"),
                             ("setting: {resampledPixelSpacing: [0.01, 0.01, 0.01]}", "over the limit of 2,000,000"),
                             ("a: &x [1, 2]\nb: *x", "aliases")):
        code, details = _status(lambda: client.extract_upload(PYRAD / "brain1_image.nrrd", PYRAD / "brain1_label.nrrd",
                                                              params_yaml=params))
        assert code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT) and fragment in details
    assert client.serving("")


def test_masking_sets_nulls_and_concurrent_jobs(client, small_cohort: Path) -> None:
    lines = (small_cohort / "gene_sets.gmt").read_text().splitlines()[:2]
    gmt = "\n".join(lines) + "\n"
    sets = masking_pb2.GeneSetList(sets=[masking_pb2.GeneSet(name=f"s{i}", genes=["A"]) for i in range(6)])
    code, details = _status(lambda: client.masking.SubmitJob(masking_pb2.SubmitJobRequest(
        cohort_path="test", sets=sets), metadata=META, timeout=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "6 sets exceed the limit of 5" in details
    code, details = _status(lambda: client.masking.SubmitJob(masking_pb2.SubmitJobRequest(
        cohort_path="test", gmt_text=gmt, null_sets=101), metadata=META, timeout=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 100" in details
    first = client.masking.SubmitJob(masking_pb2.SubmitJobRequest(cohort_path="test", gmt_text=gmt, null_sets=100),
                                     metadata=META, timeout=30)
    try:
        code, details = _status(lambda: client.masking.SubmitJob(masking_pb2.SubmitJobRequest(
            cohort_path="test", gmt_text=gmt, null_sets=100), metadata=META, timeout=30))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "1 jobs are already queued or running (the limit)" in details
    finally:
        client.masking.CancelJob(masking_pb2.JobRef(job_id=first.job_id), metadata=META, timeout=30)


def test_request_time_limit(client, serve_grpc: int, small_registry: Path, small_cohort: Path, tmp_path: Path) -> None:
    """Redeployed with a 0.25 s limit per unary request, a full brain1 extraction (about 0.4 s idle) is cut off."""
    from ray import serve

    config = _config(small_registry, small_cohort, tmp_path / "jobs")
    config.security.request_timeout_s = 0.25
    serve.run(radiogenomics_app(config), name=APP_NAME, route_prefix=f"/{APP_NAME}")
    code, details = _status(lambda: client.extract_upload(PYRAD / "brain1_image.nrrd", PYRAD / "brain1_label.nrrd"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 0.25 s per request" in details
    assert client.serving("")
