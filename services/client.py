"""A Python client for the radiogenomics gRPC services, as a hospital's integration would use it.

    with RadiogenomicsClient("127.0.0.1:9000") as client:
        features = client.extract_upload("ct.nrrd", "tumour.nrrd")        # 1 case -> {feature: value}
        table = client.predict(expression)                                 # patients x genes -> probabilities
        job = client.submit_masking(cohort_path="cohorts/test", library="hallmark")
        status = client.wait(job)
        results = client.results(job)                                      # one row per (gene set, output)

Every call raises `grpc.RpcError` with the server's status and a message naming the field at
fault; `retryable(error, idempotent)` says whether trying the same request again can help. The stubs are public for anything this wrapper does not cover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.pb.radiogenomics.v1 import (
    common_pb2, masking_pb2, masking_pb2_grpc, prediction_pb2, prediction_pb2_grpc, radiomics_pb2, radiomics_pb2_grpc,
)

CHUNK_BYTES = 1 << 20
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_IMAGE = {"nrrd": radiomics_pb2.IMAGE_NRRD, "nifti": radiomics_pb2.IMAGE_NIFTI, "dicom": radiomics_pb2.IMAGE_DICOM_SERIES}
_MASK = {"nrrd": radiomics_pb2.MASK_NRRD, "nifti": radiomics_pb2.MASK_NIFTI, "dicom-seg": radiomics_pb2.MASK_DICOM_SEG,
         "rtstruct": radiomics_pb2.MASK_RTSTRUCT}
_MODES = {"keep": masking_pb2.KEEP, "drop": masking_pb2.DROP}
_DONE = (masking_pb2.SUCCEEDED, masking_pb2.FAILED, masking_pb2.CANCELLED)
RESULT_COLUMNS = ["gene_set", "size", "covered", "output", "auc", "delta_auc", "null_mean", "p_value", "q_value"]


def retryable(error: grpc.RpcError, idempotent: bool = True) -> bool:
    """Whether the same request may succeed later (the others need a changed request).

    UNAVAILABLE and DEADLINE_EXCEEDED: yes. RESOURCE_EXHAUSTED: only the concurrent-jobs limit
    (size limits need a smaller request). INTERNAL: Ray Serve's proxy answers it for a request
    that was inside a replica when the replica died, so an idempotent call may be retried; our own
    INTERNAL (which quotes a request id) is a bug report, not a transient failure.
    """
    code, details = error.code(), error.details() or ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return True
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "already queued or running" in details
    if code == grpc.StatusCode.INTERNAL:
        return idempotent and "quote request id" not in details
    return False


class RadiogenomicsClient:
    """One channel to the app's gRPC port; `token` adds `authorization: Bearer <token>` to every call."""

    def __init__(self, target: str, token: str | None = None, credentials: grpc.ChannelCredentials | None = None,
                 timeout_s: float = 300.0) -> None:
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        self.channel = (grpc.secure_channel(target, credentials, options) if credentials
                        else grpc.insecure_channel(target, options))
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout_s = timeout_s
        self.radiomics = radiomics_pb2_grpc.RadiomicsServiceStub(self.channel)
        self.prediction = prediction_pb2_grpc.PredictionServiceStub(self.channel)
        self.masking = masking_pb2_grpc.MaskingServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> "RadiogenomicsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def serving(self, service: str = "") -> bool:
        """grpc.health.v1: is `service` ("" = all of them) SERVING?"""
        answer = self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        return answer.status == health_pb2.HealthCheckResponse.SERVING

    # -- radiomics -------------------------------------------------------------------------------

    def extract_upload(self, image: Path | str, mask: Path | str, image_format: str = "nrrd", mask_format: str = "nrrd",
                       label: int = 0, params_yaml: str = "", roi_name: str = "", segment: str = "",
                       case_id: str = "") -> radiomics_pb2.ExtractResponse:
        """Upload one image and its mask; the response carries features and provenance.

        `roi_name` picks the RTSTRUCT contour, `segment` the DICOM-SEG segment, `label` the mask value.
        """
        options = radiomics_pb2.ExtractionOptions(label=label, params_yaml=params_yaml, roi_name=roi_name,
                                                  segment=segment, case_id=case_id)
        header = radiomics_pb2.UploadHeader(image_format=_IMAGE[image_format], mask_format=_MASK[mask_format],
                                            options=options)

        def messages() -> Iterator[radiomics_pb2.ExtractChunk]:
            yield radiomics_pb2.ExtractChunk(header=header)
            for field, path in (("image_chunk", image), ("mask_chunk", mask)):
                with open(path, "rb") as handle:
                    while block := handle.read(CHUNK_BYTES):
                        yield radiomics_pb2.ExtractChunk(**{field: block})

        return self.radiomics.ExtractUpload(messages(), metadata=self.metadata, timeout=self.timeout_s)

    def extract_from_pacs(self, study_uid: str, image_series_uid: str, mask_series_uid: str = "", *,
                          store_report: bool = False, label: int = 0, params_yaml: str = "", roi_name: str = "",
                          segment: str = "", case_id: str = "") -> radiomics_pb2.ExtractResponse:
        """Extract a case the server retrieves from its PACS; `store_report` also stores a DICOM SR there.

        An empty `mask_series_uid` takes the study's one SEG/RTSTRUCT drawn on the CT.
        """
        options = radiomics_pb2.ExtractionOptions(label=label, params_yaml=params_yaml, roi_name=roi_name,
                                                  segment=segment, case_id=case_id)
        request = radiomics_pb2.ExtractPacsRequest(study_uid=study_uid, image_series_uid=image_series_uid,
                                                   mask_series_uid=mask_series_uid, options=options,
                                                   store_report=store_report)
        return self.radiomics.ExtractFromPacs(request, metadata=self.metadata, timeout=self.timeout_s)

    # -- prediction ------------------------------------------------------------------------------

    def model_info(self, model: str = "", version: str = "") -> prediction_pb2.ModelInfo:
        return self.prediction.GetModelInfo(prediction_pb2.GetModelInfoRequest(
            model=common_pb2.ModelRef(name=model, version=version)), metadata=self.metadata, timeout=self.timeout_s)

    def predict(self, expression: pd.DataFrame, model: str = "", version: str = "", batch: int = 256,
                impute_missing: bool = False) -> pd.DataFrame:
        """Probabilities for each patient (rows of `expression`, genes as columns, any order).

        Columns: `histology:<class>` per class, then `<feature>` = P(feature above its cut point).
        """
        info = self.model_info(model, version)
        genes = list(info.genes)
        missing = [g for g in genes if g not in expression.columns]
        policy = prediction_pb2.IMPUTE_TRAINING_MEAN if impute_missing else prediction_pb2.REJECT
        ids: list[str] = []
        histology: list = []
        features: list = []
        for start in range(0, len(expression), batch):
            part = expression.iloc[start:start + batch]
            if missing:  # send by gene name and let the server impute or refuse
                profiles = [common_pb2.ExpressionProfile(profile_id=str(pid), by_gene=common_pb2.GeneValues(
                    values={g: float(v) for g, v in row.items() if g in set(genes)})) for pid, row in part.iterrows()]
            else:
                values = np.ascontiguousarray(part[genes].to_numpy(np.float32))
                profiles = [common_pb2.ExpressionProfile(profile_id=str(pid), raw_float32=values[i].astype("<f4").tobytes())
                            for i, pid in enumerate(part.index)]
            answer = self.prediction.PredictBatch(prediction_pb2.PredictBatchRequest(
                model=common_pb2.ModelRef(name=model, version=version), profiles=profiles, missing_genes=policy,
                output=prediction_pb2.COMPACT), metadata=self.metadata, timeout=self.timeout_s)
            for p in answer.predictions:  # packed arrays in ModelInfo's order
                ids.append(p.profile_id)
                histology.append(p.histology_probabilities)
                features.append(p.feature_probabilities)
        classes, names = list(info.histology_classes), list(info.features)
        table = np.hstack([np.asarray(histology, dtype=np.float32).reshape(len(ids), len(classes)),
                           np.asarray(features, dtype=np.float32).reshape(len(ids), len(names))])
        return pd.DataFrame(table, index=pd.Index(ids, name="profile_id"),
                            columns=[f"histology:{c}" for c in classes] + names)

    # -- masking ---------------------------------------------------------------------------------

    def submit_masking(self, *, cohort_path: str = "", gmt_text: str = "", library: str = "", single_genes: bool = False,
                       model: str = "", version: str = "", mode: str = "keep", null_sets: int = 0, seed: int = 0,
                       label: str = "") -> str:
        """Queue a masking job on a cohort under the server's data root; returns the job id."""
        request = masking_pb2.SubmitJobRequest(model=common_pb2.ModelRef(name=model, version=version),
                                               mode=_MODES[mode], null_sets=null_sets, seed=seed, label=label)
        if cohort_path:
            request.cohort_path = cohort_path
        if gmt_text:
            request.gmt_text = gmt_text
        elif library:
            request.library = library
        elif single_genes:
            request.single_genes = True
        return self.masking.SubmitJob(request, metadata=self.metadata, timeout=self.timeout_s).job_id

    def wait(self, job_id: str, on_status: Callable[[masking_pb2.JobStatus], None] | None = None,
             timeout_s: float = 3600) -> masking_pb2.JobStatus:
        """Follow the job's progress stream until it ends; returns the final status."""
        last = None
        for status in self.masking.WatchJob(masking_pb2.JobRef(job_id=job_id), metadata=self.metadata, timeout=timeout_s):
            last = status
            if on_status:
                on_status(status)
            if status.state in _DONE:
                break
        return last

    def results(self, job_id: str, page_size: int = 1000, max_q_value: float = 0.0) -> pd.DataFrame:
        """Every result row of a finished job, page by page."""
        rows, token = [], ""
        while True:
            page = self.masking.GetResults(masking_pb2.GetResultsRequest(
                job_id=job_id, page_size=page_size, page_token=token, max_q_value=max_q_value),
                metadata=self.metadata, timeout=self.timeout_s)
            rows += [{c: getattr(r, c) for c in RESULT_COLUMNS} for r in page.results]
            token = page.next_page_token
            if not token:
                return pd.DataFrame(rows, columns=RESULT_COLUMNS)
