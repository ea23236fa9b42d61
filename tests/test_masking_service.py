"""MaskingService on a real Ray Serve over loopback: jobs, results, cancellation, limits, restarts."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from radiogenomics.cohort import load_cohort
from radiogenomics.masking import MaskingOptions, library_from_gmt, prepare, run_masking
from radiogenomics.registry import load_model
from services.masking import MaskingConfig, masking_app
from services.pb.radiogenomics.v1 import common_pb2, masking_pb2, masking_pb2_grpc
from tests.conftest import SMALL_MODEL, cut_library

APP = "masking"
META = (("application", APP),)
COLUMNS = ["gene_set", "size", "covered", "output", "auc", "null_mean", "p_value", "q_value"]


@pytest.fixture(scope="module")
def gmt(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generator's library cut to 12 sets (planted, decoys and some Hallmark sets)."""
    return cut_library(small_cohort, 6, tmp_path_factory.mktemp("gmt") / "small.gmt")


def _deploy(registry: Path, data_dir: Path, data_root: Path, libraries: dict, **limits) -> None:
    from ray import serve

    config = MaskingConfig(registry=registry, data_dir=data_dir, data_root=data_root, libraries=libraries,
                           chunk_sets=64, task_cpus=0.5, **limits)
    serve.run(masking_app(config), name=APP, route_prefix=f"/{APP}")


@pytest.fixture(scope="module")
def service(serve_grpc: int, small_registry: Path, small_cohort: Path, gmt: Path, tmp_path_factory: pytest.TempPathFactory):
    from ray import serve

    data_dir = tmp_path_factory.mktemp("masking-store")
    settings = dict(registry=small_registry, data_dir=data_dir, data_root=small_cohort, libraries={"small": gmt},
                    max_sets_per_job=2000, max_active_jobs=2)
    _deploy(**settings)
    with grpc.insecure_channel(f"127.0.0.1:{serve_grpc}") as channel:
        yield masking_pb2_grpc.MaskingServiceStub(channel), settings
    serve.delete(APP)


def _wait(stub, job_id: str, timeout: float = 240) -> list[masking_pb2.JobStatus]:
    seen = list(stub.WatchJob(masking_pb2.JobRef(job_id=job_id), metadata=META, timeout=timeout))
    assert seen and seen[-1].state in (masking_pb2.SUCCEEDED, masking_pb2.FAILED, masking_pb2.CANCELLED)
    return seen


def _all_results(stub, job_id: str, page_size: int = 37, **filters) -> pd.DataFrame:
    rows, token, total = [], "", None
    while True:
        page = stub.GetResults(masking_pb2.GetResultsRequest(job_id=job_id, page_size=page_size, page_token=token, **filters),
                               metadata=META)
        total = page.total_rows
        rows += [{c: getattr(r, c) for c in [*COLUMNS, "delta_auc"]} for r in page.results]
        token = page.next_page_token
        if not token:
            break
    assert len(rows) == total
    return pd.DataFrame(rows)


def _reference(registry: Path, cohort_dir: Path, gmt: Path, options: MaskingOptions) -> pd.DataFrame:
    model = load_model(registry / SMALL_MODEL / "2")
    data = prepare(model, load_cohort(cohort_dir))
    return run_masking(model, data, library_from_gmt(gmt), options, use_ray=False).table


def _same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    key = ["gene_set", "output"]
    got = got.sort_values(key).reset_index(drop=True)
    expected = expected.sort_values(key).reset_index(drop=True)
    assert list(got["gene_set"]) == list(expected["gene_set"]) and list(got["output"]) == list(expected["output"])
    for column in ("size", "covered"):
        assert (got[column].to_numpy() == expected[column].to_numpy()).all()
    for column in ("auc", "null_mean", "p_value", "q_value"):
        np.testing.assert_allclose(got[column].to_numpy(float), expected[column].fillna(0).to_numpy(float), atol=1e-12)


def test_library_job_on_a_cohort_path_equals_the_core_engine(service, small_registry: Path, small_cohort: Path, gmt: Path) -> None:
    stub, _ = service
    status = stub.SubmitJob(masking_pb2.SubmitJobRequest(
        model=common_pb2.ModelRef(name=SMALL_MODEL), cohort_path="test", library="small", null_sets=200, seed=7,
        label="first"), metadata=META)
    assert status.state == masking_pb2.QUEUED and len(status.job_id) == 32 and status.model.version == "2"
    seen = _wait(stub, status.job_id)
    final = seen[-1]
    assert final.state == masking_pb2.SUCCEEDED, final.error
    assert final.chunks_done == final.chunks_total > 1 and final.attempts == 1 and final.label == "first"
    assert [s.chunks_done for s in seen] == sorted(s.chunks_done for s in seen)
    results = _all_results(stub, status.job_id)
    expected = _reference(small_registry, small_cohort / "test", gmt, MaskingOptions(n_nulls=200, seed=7))
    _same(results, expected)
    assert final.result_rows == len(expected) and final.evaluations > 0
    output = results["output"].iloc[0]
    only = _all_results(stub, status.job_id, outputs=[output], max_q_value=0.5)
    assert set(only["output"]) <= {output} and (only["q_value"] <= 0.5).all()
    listed = stub.ListJobs(masking_pb2.ListJobsRequest(states=[masking_pb2.SUCCEEDED]), metadata=META).jobs
    assert status.job_id in [j.job_id for j in listed]


def test_inline_drop_job_with_explicit_sets(service, small_registry: Path, small_cohort: Path) -> None:
    stub, _ = service
    model = load_model(small_registry / SMALL_MODEL / "1")
    cohort = load_cohort(small_cohort / "test")
    x = model.align(cohort)
    patients = [masking_pb2.LabelledProfile(
        profile=common_pb2.ExpressionProfile(profile_id=sid, raw_float32=x[i].astype("<f4").tobytes()),
        histology=str(cohort.clinical.loc[sid, "histology"]),
        radiomics={f: float(cohort.radiomics.loc[sid, f]) for f in model.spec.features},
    ) for i, sid in enumerate(cohort.sample_ids)]
    sets = masking_pb2.GeneSetList(sets=[masking_pb2.GeneSet(name="first50", genes=model.genes[:50]),
                                         masking_pb2.GeneSet(name="next200", genes=model.genes[50:250]),
                                         masking_pb2.GeneSet(name="unknown", genes=["NOT_A_GENE"])])
    status = stub.SubmitJob(masking_pb2.SubmitJobRequest(model=common_pb2.ModelRef(name=SMALL_MODEL, version="1"),
                                                         inline=masking_pb2.InlineCohort(patients=patients), sets=sets,
                                                         mode=masking_pb2.DROP, null_sets=50), metadata=META)
    final = _wait(stub, status.job_id)[-1]
    assert final.state == masking_pb2.SUCCEEDED, final.error
    assert [(s.gene_set, "is a model gene" in s.reason) for s in final.skipped] == [("unknown", True)]
    results = _all_results(stub, status.job_id)
    assert set(results["gene_set"]) == {"first50", "next200"} and len(results) == 2 * len(model.spec.names)
    assert results["delta_auc"].abs().max() > 0


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_bad_submissions_are_refused_and_store_nothing(service, small_registry: Path, small_cohort: Path, tmp_path: Path) -> None:
    stub, settings = service
    before = len(stub.ListJobs(masking_pb2.ListJobsRequest(), metadata=META).jobs)
    model = common_pb2.ModelRef(name=SMALL_MODEL)
    genes = load_model(small_registry / SMALL_MODEL / "2").genes
    other = small_cohort / "other"  # a cohort under the data root whose genes do not match the model
    cohort = load_cohort(small_cohort / "test")
    other.mkdir(exist_ok=True)
    from radiogenomics.cohort import write_expression, write_table

    write_expression(other / "expression.parquet", cohort.sample_ids, [f"G{i}" for i in range(50)], cohort.expression[:, :50])
    write_table(other / "clinical.csv", cohort.clinical)
    write_table(other / "radiomics.csv", cohort.radiomics)
    good = dict(model=model, cohort_path="test", library="small", null_sets=10)
    cases = [
        (dict(good, library="", gmt_text="SET_A\tna\tA1\tA2\n\nSET_B\tna\n"), grpc.StatusCode.INVALID_ARGUMENT, "line 3"),
        (dict(good, library="", gmt_text=f"S\tna\t{genes[0]}\nS\tna\t{genes[1]}\n"), grpc.StatusCode.INVALID_ARGUMENT, "'S'"),
        (dict(good, library="", sets=masking_pb2.GeneSetList(sets=[masking_pb2.GeneSet(name="x", genes=["NOPE1", "NOPE2"])])),
         grpc.StatusCode.INVALID_ARGUMENT, "gene"),
        (dict(good, library="nope"), grpc.StatusCode.INVALID_ARGUMENT, "library 'nope' is not configured"),
        (dict(good, library=""), grpc.StatusCode.INVALID_ARGUMENT, "gene_sets is required"),
        (dict(good, cohort_path="../"), grpc.StatusCode.INVALID_ARGUMENT, "outside the server's data root"),
        (dict(good, cohort_path="other"), grpc.StatusCode.INVALID_ARGUMENT, "genes"),
        (dict(good, cohort_path=""), grpc.StatusCode.INVALID_ARGUMENT, "cohort"),
        (dict(good, model=common_pb2.ModelRef(name=SMALL_MODEL, version="9")), grpc.StatusCode.NOT_FOUND, "no version '9'"),
        (dict(good, model=common_pb2.ModelRef()), grpc.StatusCode.INVALID_ARGUMENT, "model.name is required"),
        (dict(good, null_sets=10**6), grpc.StatusCode.RESOURCE_EXHAUSTED, "null_sets"),
        (dict(good, cohort_path=None, inline=masking_pb2.InlineCohort(patients=[masking_pb2.LabelledProfile(
            profile=common_pb2.ExpressionProfile(dense=common_pb2.DenseVector(values=[0.0] * len(genes))))])),
         grpc.StatusCode.INVALID_ARGUMENT, "lack histology"),
    ]
    for fields, code, fragment in cases:
        fields = {k: v for k, v in fields.items() if v not in ("", None)}
        request = masking_pb2.SubmitJobRequest(**fields)
        got, details = _code(lambda: stub.SubmitJob(request, metadata=META))
        assert got == code and fragment in details, (fields, got, details)
    assert len(stub.ListJobs(masking_pb2.ListJobsRequest(), metadata=META).jobs) == before
    leftovers = [p for p in settings["data_dir"].glob("submit-*")]
    assert not leftovers
    code, details = _code(lambda: stub.GetResults(masking_pb2.GetResultsRequest(job_id="nope"), metadata=META))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _code(lambda: list(stub.WatchJob(masking_pb2.JobRef(job_id="nope"), metadata=META)))
    assert code == grpc.StatusCode.NOT_FOUND


def test_limits_cancellation_and_results_before_the_end(service) -> None:
    """Jobs run one at a time, so the second job waits queued behind the first, whatever the machine's
    speed, and a queued job is cancelled at once. The first may still be queued (being prepared) when
    its cancel arrives; running, a cancel stops it at its next chunk, or, past its last chunk, lets
    it finish; and it may finish before the cancel arrives (on one fast CI run it took under a
    second), which a cancel leaves as it was."""
    stub, settings = service
    big = masking_pb2.SubmitJobRequest(model=common_pb2.ModelRef(name=SMALL_MODEL), cohort_path="test",
                                       single_genes=True, null_sets=10_000)
    first = stub.SubmitJob(big, metadata=META)
    second = stub.SubmitJob(big, metadata=META)
    code, details = _code(lambda: stub.SubmitJob(big, metadata=META))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "2 jobs are already queued or running" in details
    code, details = _code(lambda: stub.GetResults(masking_pb2.GetResultsRequest(job_id=second.job_id), metadata=META))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "wait with WatchJob" in details
    answer = stub.CancelJob(masking_pb2.JobRef(job_id=second.job_id), metadata=META)
    assert answer.state in (masking_pb2.CANCELLED, masking_pb2.RUNNING)  # queued: cancelled at once; running: at its next chunk
    answer = stub.CancelJob(masking_pb2.JobRef(job_id=first.job_id), metadata=META)
    ends = {masking_pb2.CANCELLED: (masking_pb2.CANCELLED,),  # still queued (being prepared): cancelled at once
            masking_pb2.RUNNING: (masking_pb2.CANCELLED, masking_pb2.SUCCEEDED),
            masking_pb2.SUCCEEDED: (masking_pb2.SUCCEEDED,)}
    assert answer.state in ends
    assert _wait(stub, first.job_id)[-1].state in ends[answer.state]
    assert _wait(stub, second.job_id)[-1].state == masking_pb2.CANCELLED
    too_many = masking_pb2.SubmitJobRequest(model=common_pb2.ModelRef(name=SMALL_MODEL), cohort_path="test", null_sets=10,
                                            sets=masking_pb2.GeneSetList(sets=[masking_pb2.GeneSet(name=f"s{i}", genes=["A"])
                                                                               for i in range(2001)]))
    code, details = _code(lambda: stub.SubmitJob(too_many, metadata=META))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "2001 sets exceed the limit of 2000" in details


def test_jobs_survive_a_restart_and_an_interrupted_job_resumes(service, small_registry: Path, small_cohort: Path, gmt: Path) -> None:
    from ray import serve

    stub, settings = service
    request = masking_pb2.SubmitJobRequest(model=common_pb2.ModelRef(name=SMALL_MODEL), cohort_path="test", library="small",
                                           null_sets=10_000, seed=3)  # ~150,000 evaluations: still running at the cut
    job = stub.SubmitJob(request, metadata=META)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = stub.ListJobs(masking_pb2.ListJobsRequest(), metadata=META).jobs
        now = next(j for j in status if j.job_id == job.job_id)
        if now.chunks_done >= 1 or now.state == masking_pb2.SUCCEEDED:
            break
        time.sleep(0.2)
    serve.delete(APP)  # the replica dies mid-job
    from radiogenomics.jobs import JobState, JobStore

    cut = JobStore(settings["data_dir"]).get(job.job_id)  # what the store holds with no service running
    assert cut.state == JobState.RUNNING and 1 <= cut.chunks_done < cut.chunks_total, cut
    _deploy(**settings)
    final = _wait(stub, job.job_id)[-1]
    assert final.state == masking_pb2.SUCCEEDED, final.error
    assert final.attempts == 2
    expected = _reference(small_registry, small_cohort / "test", gmt, MaskingOptions(n_nulls=10_000, seed=3))
    _same(_all_results(stub, job.job_id, page_size=500), expected)
    listed = [j.job_id for j in stub.ListJobs(masking_pb2.ListJobsRequest(), metadata=META).jobs]
    stored = [r.id for r in JobStore(settings["data_dir"]).list(limit=10_000)]
    assert listed == stored and job.job_id in listed  # every job stored before the restart is still listed


def _chunk_workers() -> list:
    """Ray worker processes running a masking chunk right now (Ray titles them `ray::_chunk_task`)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith("ray::_chunk_task"):
            found.append(proc)
    return found


@pytest.mark.slow
def test_a_killed_chunk_worker_is_retried_and_the_results_are_identical(service, small_registry: Path,
                                                                       small_cohort: Path, gmt: Path) -> None:
    """SIGKILL the Ray worker process evaluating a chunk mid-job: Ray reruns the chunk, the job finishes
    with exactly the results of an undisturbed run."""
    import signal

    stub, _ = service
    request = masking_pb2.SubmitJobRequest(model=common_pb2.ModelRef(name=SMALL_MODEL), cohort_path="test", library="small",
                                           null_sets=10_000, seed=11)
    job = stub.SubmitJob(request, metadata=META)
    killed: list[int] = []
    deadline = time.monotonic() + 240
    while not killed and time.monotonic() < deadline:
        now = next(j for j in stub.ListJobs(masking_pb2.ListJobsRequest(), metadata=META).jobs if j.job_id == job.job_id)
        assert now.state in (masking_pb2.QUEUED, masking_pb2.RUNNING), "the job ended before a worker could be killed"
        if now.state == masking_pb2.RUNNING and now.chunks_done >= 1:
            for proc in _chunk_workers():
                proc.send_signal(signal.SIGKILL)
                killed.append(proc.pid)
        time.sleep(0.05)
    assert killed, "no chunk worker found to kill"
    final = _wait(stub, job.job_id)[-1]
    assert final.state == masking_pb2.SUCCEEDED, final.error
    assert final.chunks_done == final.chunks_total
    expected = _reference(small_registry, small_cohort / "test", gmt, MaskingOptions(n_nulls=10_000, seed=11))
    _same(_all_results(stub, job.job_id, page_size=500), expected)
