"""RadiomicsService on Ray Serve: a thin gRPC adapter over `radiogenomics.extraction` and `radiogenomics.pacs`.

Uploads arrive as a client stream (header, image chunks, mask chunks) and are spooled to a
temporary folder that is removed after the request; path requests read files under a configured
data root and nothing outside it; PACS requests are retrieved through DICOMweb from the PACS
configured on the server into a per-request scratch folder. Reading and extraction run in a child
process (a file that crashes a native reader takes the child, not the replica), so the replica
keeps answering health checks while it computes. Replicas are CPU-bound: `num_cpus` each (default 1).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from ray import serve
from ray.serve.grpc_util import gRPCInputStream

from radiogenomics.errors import InputError, LimitExceeded
from radiogenomics.extraction.extract import Extraction, extract_files
from radiogenomics.extraction.params import parse_params
from radiogenomics.pacs.config import PacsConfig
from services import metrics
from services.edge import edge
from services.errors import Precondition, answer, inside_root
from services.forwarding import Forwardable
from services.pb.radiogenomics.v1 import common_pb2, radiomics_pb2

SERVICER = "services.pb.radiogenomics.v1.radiomics_pb2_grpc.add_RadiomicsServiceServicer_to_server"
GZIP_MAGIC = b"\x1f\x8b"

_IMAGE_FORMATS = {
    radiomics_pb2.IMAGE_NRRD: "nrrd", radiomics_pb2.IMAGE_NIFTI: "nifti", radiomics_pb2.IMAGE_DICOM_SERIES: "dicom",
}
_MASK_FORMATS = {
    radiomics_pb2.MASK_NRRD: "nrrd", radiomics_pb2.MASK_NIFTI: "nifti",
    radiomics_pb2.MASK_DICOM_SEG: "dicom-seg", radiomics_pb2.MASK_RTSTRUCT: "rtstruct",
}


class RadiomicsConfig(BaseModel):
    """Settings of the radiomics deployment (from `deploy/serve_config.yaml` or the CLI)."""

    data_root: Path | None = Field(None, description="ExtractFromPath reads only under this folder; None disables it")
    max_voxels: int = Field(64 * 1024 * 1024, ge=1, description="largest image accepted, in voxels")
    max_upload_bytes: int = Field(1024 * 1024 * 1024, ge=1, description="largest upload (image + mask), in bytes")
    pacs: PacsConfig | None = Field(None, description="the hospital's DICOMweb PACS for ExtractFromPacs; None disables it")
    extraction_processes: int = Field(1, ge=1, description="child processes per replica that read and extract "
                                                           "(a file that crashes a native reader kills only its child)")


class RadiomicsDeployment(BaseModel):
    """Replica resources and scaling of the radiomics deployment (Serve options, not its config)."""

    num_replicas: int | None = Field(1, ge=1)
    autoscaling: dict[str, Any] | None = Field(None, description="Serve autoscaling_config; replaces num_replicas")
    num_cpus: float = Field(1.0, ge=0, description="CPUs per replica (pyradiomics is CPU-bound)")
    max_ongoing_requests: int = Field(4, ge=1, description="extractions in progress per replica")
    max_replicas_per_node: int | None = Field(None, ge=1, description="at most this many replicas on one Ray node "
                                              "(1 spreads them over the nodes; None: Serve may pack them on one)")

    def options(self) -> dict[str, Any]:
        scaling = {"autoscaling_config": self.autoscaling} if self.autoscaling else {"num_replicas": self.num_replicas}
        placement = {"max_replicas_per_node": self.max_replicas_per_node} if self.max_replicas_per_node else {}
        return {"ray_actor_options": {"num_cpus": self.num_cpus}, "max_ongoing_requests": self.max_ongoing_requests,
                **scaling, **placement}


def _suffix(fmt: str, first_bytes: bytes) -> str:
    if fmt == "nrrd":
        return ".nrrd"
    if fmt == "nifti":
        return ".nii.gz" if first_bytes.startswith(GZIP_MAGIC) else ".nii"
    if fmt == "dicom":
        return ".zip"
    return ".dcm"


def _options(options: radiomics_pb2.ExtractionOptions) -> dict:
    segment: int | str | None = options.segment or None
    if isinstance(segment, str) and segment.isascii() and segment.isdigit() and len(segment) <= 9:
        segment = int(segment)
    return {
        "label": options.label or None,
        "roi": options.roi_name or None,
        "segment": segment,
    }


def _response(result: Extraction, case_id: str, request_id: str, started: float) -> radiomics_pb2.ExtractResponse:
    prov = result.provenance
    return radiomics_pb2.ExtractResponse(
        case_id=case_id,
        features=result.features,
        provenance=radiomics_pb2.ExtractionProvenance(
            pyradiomics_version=prov.pyradiomics_version, params_hash=prov.params_hash,
            image_hash=prov.image_hash, mask_hash=prov.mask_hash, label=prov.label,
            voxel_count=prov.voxel_count, image_size=list(prov.image_size),
            image_spacing=list(prov.image_spacing), extraction_seconds=prov.seconds,
        ),
        timing=common_pb2.Timing(seconds=time.perf_counter() - started),
        request_id=request_id,
    )


SERVICE = radiomics_pb2.DESCRIPTOR.services_by_name["RadiomicsService"]


def _warm_child() -> None:
    import logging

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    parse_params(None).extractor()  # import pyradiomics once per child


def _extraction_pool(processes: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_warm_child)


def _extract_in_child(image: str, mask: str, params, image_fmt: str | None, mask_fmt: str | None, options: dict,
                      max_voxels: int) -> Extraction:
    return extract_files(image, mask, params, image_format=image_fmt, mask_format=mask_fmt, max_voxels=max_voxels,
                         **options)


def _pacs_in_child(config: PacsConfig, request: bytes, params, options: dict, max_bytes: int, max_voxels: int):
    """Retrieve and extract one PACS case in a child process, in a scratch folder removed afterwards."""
    from radiogenomics.pacs.extract import extract_from_pacs

    message = radiomics_pb2.ExtractPacsRequest.FromString(request)
    with tempfile.TemporaryDirectory(prefix="radiomics-pacs-") as tmp:
        return extract_from_pacs(config, message.study_uid, message.image_series_uid, message.mask_series_uid or None,
                                 params, folder=Path(tmp), max_bytes=max_bytes, max_voxels=max_voxels,
                                 store_report=message.store_report, **options)


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=4)
@edge(SERVICE)
class RadiomicsServer(Forwardable):
    """Deployment whose method names are the RPC names of `radiogenomics.v1.RadiomicsService`."""

    def __init__(self, config: dict) -> None:
        import logging

        logging.getLogger("radiomics").setLevel(logging.ERROR)
        self.config = RadiomicsConfig.model_validate(config)
        parse_params(None).extractor()  # import pyradiomics now, not on the first request
        self._pool = _extraction_pool(self.config.extraction_processes)

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def _in_child(self, function, *args):
        """Run `function` in the extraction pool: a file that crashes a native reader takes the child, not the replica."""
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, function, *args)
        except BrokenProcessPool:
            if self._pool is pool:  # the first request to notice replaces the pool
                self._pool = _extraction_pool(self.config.extraction_processes)
            raise InputError("the image or mask crashed the image reader; check that the files are valid "
                             "NRRD, NIfTI or DICOM and match the formats in the header") from None

    def _observe(self, result: Extraction) -> Extraction:
        metrics.extraction_seconds().observe(result.provenance.seconds)
        metrics.extraction_voxels().observe(result.provenance.voxel_count)
        return result

    async def _extract(self, image: Path, mask: Path, image_fmt: str | None, mask_fmt: str | None,
                       options: radiomics_pb2.ExtractionOptions) -> Extraction:
        """Extract in a child process: a file that crashes a native reader takes the child, not the replica."""
        params = parse_params(options.params_yaml, "options.params_yaml")
        return self._observe(await self._in_child(_extract_in_child, str(image), str(mask), params, image_fmt,
                                                  mask_fmt, _options(options), self.config.max_voxels))

    async def ExtractUpload(self, request_stream: gRPCInputStream, grpc_context=None) -> radiomics_pb2.ExtractResponse:
        async def work(request_id: str) -> radiomics_pb2.ExtractResponse:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="radiomics-upload-") as tmp:
                header, image, mask = await self._receive(request_stream, Path(tmp))
                result = await self._extract(image, mask, _IMAGE_FORMATS[header.image_format],
                                             _MASK_FORMATS[header.mask_format], header.options)
            return _response(result, header.options.case_id, request_id, started)

        return await answer(grpc_context, "ExtractUpload", work, radiomics_pb2.ExtractResponse())

    async def _receive(self, stream: gRPCInputStream, folder: Path) -> tuple[radiomics_pb2.UploadHeader, Path, Path]:
        """Spool the upload to files; checks the message order, the formats and the size limit."""
        header: radiomics_pb2.UploadHeader | None = None
        files: dict[str, Path] = {}
        handles: dict = {}
        total = 0
        try:
            async for chunk in stream:
                part = chunk.WhichOneof("part")
                if header is None:
                    if part != "header":
                        raise InputError("the first message must be `header` (formats and options), then image_chunk "
                                         "messages, then mask_chunk messages")
                    header = chunk.header
                    if header.image_format not in _IMAGE_FORMATS:
                        raise InputError("header.image_format is required: IMAGE_NRRD, IMAGE_NIFTI or IMAGE_DICOM_SERIES (a zip of slices)")
                    if header.mask_format not in _MASK_FORMATS:
                        raise InputError("header.mask_format is required: MASK_NRRD, MASK_NIFTI, MASK_DICOM_SEG or MASK_RTSTRUCT")
                    continue
                if part == "header":
                    raise InputError("header sent twice; send one header, then the image, then the mask")
                if part is None:
                    raise InputError("empty message in the upload; every message after the header carries image_chunk or mask_chunk")
                role = "image" if part == "image_chunk" else "mask"
                data = getattr(chunk, part)
                if role == "image" and "mask" in handles:
                    raise InputError("image_chunk after mask_chunk; send the whole image first, then the mask")
                total += len(data)
                if total > self.config.max_upload_bytes:
                    raise LimitExceeded(f"upload exceeds the limit of {self.config.max_upload_bytes:,} bytes; "
                                        "crop the volume around the tumour or ask for a higher limit")
                if role not in handles:
                    fmt = _IMAGE_FORMATS[header.image_format] if role == "image" else _MASK_FORMATS[header.mask_format]
                    files[role] = folder / f"{role}{_suffix(fmt, data)}"
                    handles[role] = files[role].open("wb")
                handles[role].write(data)
        finally:
            for handle in handles.values():
                handle.close()
        if header is None:
            raise InputError("empty upload; send a header, then image_chunk messages, then mask_chunk messages")
        for role in ("image", "mask"):
            if role not in files:
                raise InputError(f"no {role}_chunk received; the upload needs the {role} bytes after the header")
        return header, files["image"], files["mask"]

    def _inside_root(self, relative: str, field: str) -> Path:
        path = inside_root(self.config.data_root, relative, field, "ExtractFromPath is disabled: this server has no "
                           "data root; upload with ExtractUpload instead")
        if not path.exists():
            raise InputError(f"{field} {relative!r} not found under the data root")
        return path

    async def ExtractFromPath(self, request: radiomics_pb2.ExtractPathRequest, grpc_context=None) -> radiomics_pb2.ExtractResponse:
        async def work(request_id: str) -> radiomics_pb2.ExtractResponse:
            started = time.perf_counter()
            image = self._inside_root(request.image_path, "image_path")
            mask = self._inside_root(request.mask_path, "mask_path")
            result = await self._extract(image, mask, _IMAGE_FORMATS.get(request.image_format),
                                         _MASK_FORMATS.get(request.mask_format), request.options)
            return _response(result, request.options.case_id, request_id, started)

        return await answer(grpc_context, "ExtractFromPath", work, radiomics_pb2.ExtractResponse())

    async def ExtractFromPacs(self, request: radiomics_pb2.ExtractPacsRequest, grpc_context=None) -> radiomics_pb2.ExtractResponse:
        async def work(request_id: str) -> radiomics_pb2.ExtractResponse:
            started = time.perf_counter()
            if self.config.pacs is None:
                raise Precondition("ExtractFromPacs is disabled: this server has no PACS configured (--pacs / "
                                   "radiomics.pacs); upload with ExtractUpload instead")
            params = parse_params(request.options.params_yaml, "options.params_yaml")
            found = await self._in_child(_pacs_in_child, self.config.pacs, request.SerializeToString(), params,
                                         _options(request.options), self.config.max_upload_bytes,
                                         self.config.max_voxels)
            response = _response(self._observe(found.extraction), request.options.case_id, request_id, started)
            response.mask_series_uid = found.mask_series_uid
            if found.report is not None:
                report = found.report
                response.report.CopyFrom(radiomics_pb2.PacsReport(
                    study_uid=report.study_uid, series_uid=report.series_uid,
                    sop_instance_uid=report.sop_instance_uid, omitted_features=list(report.omitted)))
            return response

        return await answer(grpc_context, "ExtractFromPacs", work, radiomics_pb2.ExtractResponse())

    async def GetExtractorInfo(self, request: radiomics_pb2.GetExtractorInfoRequest, grpc_context=None) -> radiomics_pb2.ExtractorInfo:
        async def work(request_id: str) -> radiomics_pb2.ExtractorInfo:
            import radiomics

            extractor = parse_params(None).extractor()
            names = [f"original_{cls}_{name}" for cls, feats in extractor.enabledFeatures.items()
                     if cls != "shape2D" or extractor.settings.get("force2D")  # pyradiomics skips it otherwise
                     for name in (feats or _all_features(cls))]
            return radiomics_pb2.ExtractorInfo(
                pyradiomics_version=str(radiomics.__version__), default_features=names,
                max_voxels=self.config.max_voxels, max_upload_bytes=self.config.max_upload_bytes,
                path_access=self.config.data_root is not None, pacs_access=self.config.pacs is not None,
            )

        return await answer(grpc_context, "GetExtractorInfo", work, radiomics_pb2.ExtractorInfo())


def _all_features(cls: str) -> list[str]:
    from radiomics import getFeatureClasses

    return sorted(n for n, deprecated in getFeatureClasses()[cls].getFeatureNames().items() if not deprecated)


def radiomics_app(config: RadiomicsConfig | dict | None = None,
                  deployment: RadiomicsDeployment | None = None) -> serve.Application:
    """The radiomics deployment alone as a Serve application (`serve.run(..., route_prefix=...)`)."""
    cfg = RadiomicsConfig.model_validate(config or {}) if not isinstance(config, RadiomicsConfig) else config
    return RadiomicsServer.options(**(deployment or RadiomicsDeployment()).options()).bind(cfg.model_dump(mode="json"))
