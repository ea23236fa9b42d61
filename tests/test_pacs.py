"""The hospital's PACS: the session's real Orthanc with DICOMweb on 127.0.0.1 (conftest), loaded with
the shared DICOM data (`orthanc.reference_cases`). Cases retrieved through the PACS must give exactly
the features of the same files read locally or uploaded; the SR stored back must be found by QIDO-RS
and read back equal; every error is a clear status and no patient identifier leaks.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import grpc
import pandas as pd
import pydicom
import pytest
import yaml
from dicomweb_client import DICOMwebClient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orthanc import CANARY, SEG_DIR, SEG_PATIENT, STS
from radiogenomics.extraction.extract import extract_files
from radiogenomics.extraction.params import ExtractionParams
from radiogenomics.pacs.config import PacsConfig
from radiogenomics.pacs.extract import extract_from_pacs
from radiogenomics.pacs.report import IBSI_SCHEME, PRIVATE_SCHEME, read_features_report
from services.client import RadiogenomicsClient
from services.pb.radiogenomics.v1 import radiomics_pb2, radiomics_pb2_grpc
from tests.conftest import SMALL_MODEL

PROJECT = Path(__file__).resolve().parents[1]
ROI = "GTV_Mass_CT"
SEG_PARAMS = {"setting": {"minimumROIDimensions": 1}}


def _sts_local() -> dict[str, float]:
    return extract_files(str(STS / "image"), str(STS / "mask" / "RS.dcm"), ExtractionParams({}), roi=ROI).features


# ---------------------------------------------------------------------------------------------
# The core: retrieval, extraction, the SR


def test_retrieved_case_equals_the_files_and_finds_its_segmentation(orthanc, pacs_data: dict, tmp_path: Path) -> None:
    found = extract_from_pacs(PacsConfig(url=orthanc.dicomweb), pacs_data["sts_study"], pacs_data["sts_ct"], None,
                              ExtractionParams({}), folder=tmp_path, roi=ROI)
    assert found.mask_series_uid == pacs_data["sts_rtstruct"]  # the stray SEG in the study does not reference this CT
    assert found.extraction.features == _sts_local()
    assert found.report is None


def test_seg_segment_equals_the_files(orthanc, pacs_data: dict, tmp_path: Path) -> None:
    params = ExtractionParams(SEG_PARAMS)
    found = extract_from_pacs(PacsConfig(url=orthanc.dicomweb), pacs_data["seg_study"], pacs_data["seg_ct"],
                              pacs_data["segs"]["binary_overlap"], params, folder=tmp_path / "scratch", segment=2)
    local = extract_files(str(pacs_data["root"] / "seg" / "image"), str(SEG_DIR / "seg_image_ct_binary_overlap.dcm"), params,
                          segment=2)
    assert found.extraction.features == local.features and found.extraction.provenance.voxel_count == 16


def test_report_round_trip_exact_and_coded(orthanc, pacs_data: dict, tmp_path: Path) -> None:
    found = extract_from_pacs(PacsConfig(url=orthanc.dicomweb), pacs_data["sts_study"], pacs_data["sts_ct"], None,
                              ExtractionParams({}), folder=tmp_path, roi=ROI, store_report=True)
    report = found.report
    assert report is not None and report.study_uid == pacs_data["sts_study"] and report.omitted == ()
    client = DICOMwebClient(orthanc.dicomweb)
    listed = [pydicom.Dataset.from_json(s).SeriesInstanceUID
              for s in client.search_for_series(pacs_data["sts_study"], search_filters={"Modality": "SR"})]
    assert report.series_uid in listed
    sr = client.retrieve_instance(report.study_uid, report.series_uid, report.sop_instance_uid)
    (group,) = read_features_report(sr)
    assert group.features == found.extraction.features == _sts_local()
    assert group.pyradiomics_version == found.extraction.provenance.pyradiomics_version
    assert f"params_hash={ExtractionParams({}).hash}" in group.parameters and group.roi == f"ROI {ROI}"
    # The SR belongs to the patient and study of the CT, and lists the CT series and the RTSTRUCT as evidence.
    assert sr.PatientID == CANARY["PatientID"] and sr.Modality == "SR"
    evidence = {s.SeriesInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for s in study.ReferencedSeriesSequence}
    assert evidence == {pacs_data["sts_ct"], pacs_data["sts_rtstruct"]}
    names = {}
    for item in _numeric_items(sr):
        concept, unit = item.ConceptNameCodeSequence[0], item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0]
        names[concept.get("CodeValue") or concept.get("LongCodeValue")] = (concept.CodingSchemeDesignator, unit.CodeValue)
    assert names["RNU0"] == (IBSI_SCHEME, "mm3")            # shape MeshVolume is IBSI "Volume (mesh)"
    assert names["original_firstorder_Kurtosis"][0] == PRIVATE_SCHEME  # pyradiomics' kurtosis is not IBSI's (+3)
    assert sum(1 for scheme, _ in names.values() if scheme == IBSI_SCHEME) >= 80


def _numeric_items(ds: pydicom.Dataset):
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "NUM":
            yield item
        yield from _numeric_items(item)


def test_seg_report_references_the_segment(orthanc, pacs_data: dict, tmp_path: Path) -> None:
    found = extract_from_pacs(PacsConfig(url=orthanc.dicomweb), pacs_data["seg_study"], pacs_data["seg_ct"],
                              pacs_data["segs"]["binary_overlap"], ExtractionParams(SEG_PARAMS), folder=tmp_path,
                              segment="second segment", store_report=True)
    sr = DICOMwebClient(orthanc.dicomweb).retrieve_instance(found.report.study_uid, found.report.series_uid,
                                                            found.report.sop_instance_uid)
    (group,) = read_features_report(sr)
    assert group.features == found.extraction.features and group.roi == "segment 2: second segment"
    segment_refs = [item for item in _walk(sr) if "ReferencedSegmentNumber" in item]
    seg = pydicom.dcmread(SEG_DIR / "seg_image_ct_binary_overlap.dcm", stop_before_pixels=True)
    assert {(r.ReferencedSOPInstanceUID, int(r.ReferencedSegmentNumber)) for r in segment_refs} == {(seg.SOPInstanceUID, 2)}


def _walk(ds: pydicom.Dataset):
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                yield item
                yield from _walk(item)


def test_feature_codes_module_is_current() -> None:
    result = subprocess.run([sys.executable, str(PROJECT / "docs" / "generate_feature_codes.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_https_pacs_with_its_ca_and_auth_header(orthanc, pacs_data: dict, tmp_path: Path, monkeypatch) -> None:
    """nginx in front of Orthanc: TLS with a throw-away CA and a required bearer header, as a hospital runs it.

    $REQUESTS_CA_BUNDLE is set (as on many hosts): it must not replace the configured CA file.
    """
    import certifi

    from radiogenomics.errors import Precondition
    from services.ingress import free_loopback_port
    from tls_proxy import run_nginx, throwaway_certificate

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    folder = tmp_path / "nginx"
    folder.mkdir()
    cert, key = throwaway_certificate(folder)
    port, upstream = free_loopback_port(), orthanc.url.rsplit(":", 1)[1]
    temp = "".join(f"  {kind}_temp_path {folder}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = (f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log warn;\nevents {{}}\nhttp {{\n{temp}  access_log off;\n"
              f"  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n"
              f"    client_max_body_size 64m;\n    location / {{\n"
              f"      if ($http_authorization != \"Bearer pacs-secret-0123456789\") {{ return 401; }}\n"
              f"      proxy_pass http://127.0.0.1:{upstream};\n    }}\n  }}\n}}\n")
    header, wrong = tmp_path / "header", tmp_path / "wrong"
    header.write_text("Authorization: Bearer pacs-secret-0123456789\n")
    wrong.write_text("Authorization: Bearer not-the-secret\n")
    url = f"https://127.0.0.1:{port}/dicom-web"
    case = (pacs_data["seg_study"], pacs_data["seg_ct"], pacs_data["segs"]["binary"], ExtractionParams(SEG_PARAMS))
    with run_nginx(config, port, folder):
        found = extract_from_pacs(PacsConfig(url=url, ca_file=cert, auth_header_file=header), *case, folder=tmp_path / "a")
        plain = extract_from_pacs(PacsConfig(url=orthanc.dicomweb), *case, folder=tmp_path / "b")
        assert found.extraction.features == plain.extraction.features
        with pytest.raises(Precondition, match="TLS certificate this server does not trust"):
            extract_from_pacs(PacsConfig(url=url, auth_header_file=header), *case, folder=tmp_path / "c")
        with pytest.raises(Precondition, match=r"refused this server's credentials \(HTTP 401\)"):
            extract_from_pacs(PacsConfig(url=url, ca_file=cert, auth_header_file=wrong), *case, folder=tmp_path / "d")


# ---------------------------------------------------------------------------------------------
# Through gRPC: the whole app (gateway in front), and a radiomics deployment whose PACS is down


class BlackHole:
    """A TCP server on loopback that accepts and never answers (a hung PACS); `close` refuses from then on."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            while True:
                self.accepted.append(self.sock.accept()[0])
        except OSError:
            return

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


META = (("application", "pacs-app"),)
DOWN_META = (("application", "pacs-down"),)
TIGHT_META = (("application", "pacs-tight"),)
TIGHT_VOXELS = 500_000  # the STS CT (134 x 136 x 47 voxels) is over it, the SEG study's CT (16 x 16 x 4) is not
TIGHT_BYTES = 10_000      # the SEG study's case (4 slices + SEG, ~22 kB) is over it


@pytest.fixture(scope="module")
def app(serve_grpc: int, orthanc, small_registry: Path, tmp_path_factory: pytest.TempPathFactory):
    """The app with the PACS configured, and a lone radiomics deployment whose PACS hangs."""
    from ray import serve

    from services.app import default_config, radiogenomics_app
    from services.radiomics import RadiomicsDeployment, radiomics_app
    from services.security import SecurityConfig

    audit = tmp_path_factory.mktemp("pacs-audit")
    config = default_config(small_registry, SMALL_MODEL, None, tmp_path_factory.mktemp("pacs-jobs"))
    config.radiomics.pacs = PacsConfig(url=orthanc.dicomweb)
    config.radiomics.max_voxels = 13_000_000
    config.security = SecurityConfig(audit_dir=audit)
    for deployment in (config.gateway_deployment, config.radiomics_deployment):
        deployment.num_cpus = 0.25
    hole = BlackHole()
    serve.run(radiogenomics_app(config), name="pacs-app", route_prefix="/pacs-app")
    serve.run(radiomics_app({"pacs": {"url": f"http://127.0.0.1:{hole.port}/dicom-web", "timeout_s": 1.0}},
                            RadiomicsDeployment(num_cpus=0.25)), name="pacs-down", route_prefix="/pacs-down")
    serve.run(radiomics_app({"pacs": {"url": orthanc.dicomweb}, "max_voxels": TIGHT_VOXELS, "max_upload_bytes": TIGHT_BYTES},
                            RadiomicsDeployment(num_cpus=0.25)), name="pacs-tight", route_prefix="/pacs-tight")
    channel = grpc.insecure_channel(f"127.0.0.1:{serve_grpc}")
    yield {"stub": radiomics_pb2_grpc.RadiomicsServiceStub(channel), "channel": channel, "audit": audit, "hole": hole,
           "details": [], "pacs": orthanc.dicomweb, "port": serve_grpc}
    channel.close()
    hole.close()
    serve.delete("pacs-tight")
    serve.delete("pacs-down")
    serve.delete("pacs-app")


def _pacs(stub, meta=META, **fields) -> radiomics_pb2.ExtractResponse:
    options = fields.pop("options", {})
    return stub.ExtractFromPacs(radiomics_pb2.ExtractPacsRequest(options=radiomics_pb2.ExtractionOptions(**options), **fields),
                                metadata=meta, timeout=120)


def _upload(stub, image_dir: Path, mask: Path, mask_format: int, **options) -> radiomics_pb2.ExtractResponse:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(image_dir.iterdir()):
            archive.write(path, path.name)
    header = radiomics_pb2.ExtractChunk(header=radiomics_pb2.UploadHeader(
        image_format=radiomics_pb2.IMAGE_DICOM_SERIES, mask_format=mask_format,
        options=radiomics_pb2.ExtractionOptions(**options)))
    chunks = [header, radiomics_pb2.ExtractChunk(image_chunk=buffer.getvalue()),
              radiomics_pb2.ExtractChunk(mask_chunk=mask.read_bytes())]
    return stub.ExtractUpload(iter(chunks), metadata=META, timeout=120)


def test_grpc_pacs_equals_upload_and_stores_the_report(app, pacs_data: dict) -> None:
    stub = app["stub"]
    by_pacs = _pacs(stub, study_uid=pacs_data["sts_study"], image_series_uid=pacs_data["sts_ct"], store_report=True,
                    options={"roi_name": ROI, "case_id": "case-9"})
    by_upload = _upload(stub, pacs_data["root"] / "sts" / "image", pacs_data["root"] / "sts" / "RS.dcm",
                        radiomics_pb2.MASK_RTSTRUCT, roi_name=ROI)
    assert dict(by_pacs.features) == dict(by_upload.features) == _sts_local()
    assert by_pacs.mask_series_uid == pacs_data["sts_rtstruct"] and by_pacs.case_id == "case-9"
    assert by_pacs.provenance.image_hash == by_upload.provenance.image_hash
    report = by_pacs.report
    assert report.study_uid == pacs_data["sts_study"] and report.sop_instance_uid and not report.omitted_features
    sr = DICOMwebClient(app["pacs"]).retrieve_instance(report.study_uid, report.series_uid, report.sop_instance_uid)
    assert read_features_report(sr)[0].features == dict(by_pacs.features)
    with RadiogenomicsClient(f"127.0.0.1:{app['port']}") as client:  # the Python client's call
        client.metadata = META
        seg = client.extract_from_pacs(pacs_data["seg_study"], pacs_data["seg_ct"], pacs_data["segs"]["binary_overlap"],
                                       segment="1", params_yaml=yaml.safe_dump(SEG_PARAMS))
    assert seg.provenance.voxel_count == 64 and not seg.HasField("report")
    info = stub.GetExtractorInfo(radiomics_pb2.GetExtractorInfoRequest(), metadata=META, timeout=30)
    assert info.pacs_access


INVALID, NOT_FOUND, LIMIT, UNAVAILABLE = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                          grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)

ERRORS = [
    ("unknown study", NOT_FOUND, "study_uid 1.2.3.999 not found",
     lambda d: {"study_uid": "1.2.3.999", "image_series_uid": d["sts_ct"]}),
    ("unknown series", NOT_FOUND, "image_series_uid 1.2.3.998 not found in study",
     lambda d: {"study_uid": d["sts_study"], "image_series_uid": "1.2.3.998"}),
    ("unknown mask series", NOT_FOUND, "mask_series_uid 1.2.3.997 not found in study",
     lambda d: {"study_uid": d["sts_study"], "image_series_uid": d["sts_ct"], "mask_series_uid": "1.2.3.997"}),
    ("not a UID", INVALID, "is not a DICOM UID",
     lambda d: {"study_uid": "../../studies", "image_series_uid": d["sts_ct"]}),
    ("empty study", INVALID, "study_uid is empty", lambda d: {"image_series_uid": d["sts_ct"]}),
    ("not a CT", INVALID, "is a RTSTRUCT series, not a CT",
     lambda d: {"study_uid": d["sts_study"], "image_series_uid": d["sts_rtstruct"]}),
    ("mask is a CT", INVALID, "is a CT series; give the series of a DICOM-SEG or RTSTRUCT",
     lambda d: {"study_uid": d["sts_study"], "image_series_uid": d["sts_ct"], "mask_series_uid": d["sts_ct"]}),
    ("segmentation of another CT", INVALID, "does not reference the CT series",
     lambda d: {"study_uid": d["sts_study"], "image_series_uid": d["sts_ct"], "mask_series_uid": d["stray"]}),
    ("several segmentations", INVALID, "3 segmentations in study",
     lambda d: {"study_uid": d["seg_study"], "image_series_uid": d["seg_ct"]}),
    ("no segmentation", NOT_FOUND, "no SEG or RTSTRUCT in study",
     lambda d: {"study_uid": d["lone_study"], "image_series_uid": d["lone_ct"]}),
    ("an MR", INVALID, "is a MR series, not a CT", lambda d: {"study_uid": d["mr_study"], "image_series_uid": d["mr"]}),
    ("RTSTRUCT without ROI", INVALID, "needs the ROI name",
     lambda d: {"study_uid": d["sts_study"], "image_series_uid": d["sts_ct"]}),
    ("unknown segment", INVALID, "no segment number 7",
     lambda d: {"study_uid": d["seg_study"], "image_series_uid": d["seg_ct"], "mask_series_uid": d["segs"]["binary_overlap"],
                "options": {"segment": "7"}}),
]


@pytest.mark.parametrize("case", ERRORS, ids=lambda e: e[0])
def test_grpc_errors_name_the_field(app, pacs_data: dict, case) -> None:
    _, code, pattern, request = case
    with pytest.raises(grpc.RpcError) as info:
        _pacs(app["stub"], **request(pacs_data))
    assert info.value.code() == code, info.value.details()
    assert pattern in info.value.details(), info.value.details()
    app["details"].append(info.value.details())


def test_grpc_limits_are_those_of_uploads(app, pacs_data: dict) -> None:
    for request, pattern in (
        ({"study_uid": pacs_data["sts_study"], "image_series_uid": pacs_data["sts_ct"], "options": {"roi_name": ROI}},
         f"856,528 voxels, over the limit of {TIGHT_VOXELS:,}"),
        ({"study_uid": pacs_data["seg_study"], "image_series_uid": pacs_data["seg_ct"], "mask_series_uid": pacs_data["segs"]["binary"]},
         f"exceeds the retrieval limit of {TIGHT_BYTES:,} bytes"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            _pacs(app["stub"], meta=TIGHT_META, **request)
        assert info.value.code() == LIMIT and pattern in info.value.details(), info.value.details()
        app["details"].append(info.value.details())


def test_limits_are_checked_before_and_during_retrieval(orthanc, pacs_data: dict, tmp_path: Path) -> None:
    # The voxel limit comes from metadata, before any pixel moves; the byte limit while the series streams.
    from radiogenomics.errors import LimitExceeded

    with pytest.raises(LimitExceeded, match="over the limit of 1,000"):
        extract_from_pacs(PacsConfig(url=orthanc.dicomweb), pacs_data["sts_study"], pacs_data["sts_ct"], None,
                          ExtractionParams({}), folder=tmp_path / "a", roi=ROI, max_voxels=1000)
    assert not (tmp_path / "a" / "image").exists()
    with pytest.raises(LimitExceeded, match="retrieval limit of 1,000,000 bytes"):
        extract_from_pacs(PacsConfig(url=orthanc.dicomweb), pacs_data["sts_study"], pacs_data["sts_ct"], None,
                          ExtractionParams({}), folder=tmp_path / "b", roi=ROI, max_bytes=1_000_000)
    assert len(list((tmp_path / "b" / "image").iterdir())) < 47


def test_grpc_pacs_down_is_unavailable_and_the_replica_lives(app, pacs_data: dict) -> None:
    request = {"study_uid": pacs_data["sts_study"], "image_series_uid": pacs_data["sts_ct"], "options": {"roi_name": ROI}}
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as hung:
        _pacs(app["stub"], meta=DOWN_META, **request)
    assert hung.value.code() == UNAVAILABLE and "did not answer within 1 s" in hung.value.details()
    assert time.monotonic() - started < 30
    app["hole"].close()  # now nothing listens: connection refused
    with pytest.raises(grpc.RpcError) as refused:
        _pacs(app["stub"], meta=DOWN_META, **request)
    assert refused.value.code() == UNAVAILABLE and "could not be reached" in refused.value.details()
    app["details"] += [hung.value.details(), refused.value.details()]
    info = app["stub"].GetExtractorInfo(radiomics_pb2.GetExtractorInfoRequest(), metadata=DOWN_META, timeout=30)
    assert info.pacs_access


def test_grpc_after_errors_the_app_is_healthy_and_nothing_leaked(app, pacs_data: dict, ray_local) -> None:
    health = health_pb2_grpc.HealthStub(app["channel"])
    status = health.Check(health_pb2.HealthCheckRequest(service="radiogenomics.v1.RadiomicsService"), metadata=META,
                          timeout=30)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    again = _pacs(app["stub"], study_uid=pacs_data["sts_study"], image_series_uid=pacs_data["sts_ct"], options={"roi_name": ROI})
    assert dict(again.features) == _sts_local()
    for meta in (DOWN_META, TIGHT_META):  # the other deployments answer too
        assert app["stub"].GetExtractorInfo(radiomics_pb2.GetExtractorInfoRequest(), metadata=meta, timeout=30).pacs_access
    time.sleep(3)  # Ray flushes worker logs every few seconds
    audit_lines = [line for path in app["audit"].iterdir() for line in path.read_text().splitlines()]
    calls = [json.loads(line) for line in audit_lines if "ExtractFromPacs" in line]
    assert len(calls) >= len(ERRORS) and {c["status"] for c in calls} >= {"OK", "NOT_FOUND", "INVALID_ARGUMENT"}
    secrets = [*CANARY.values(), *SEG_PATIENT, "Canaryperson"]
    texts = {"error details": "\n".join(app["details"]), "audit": "\n".join(audit_lines)}
    session = Path(ray_local._private.worker._global_node.get_session_dir_path()) / "logs"
    for path in session.rglob("*"):
        if path.is_file() and path.stat().st_size < 50 << 20:
            texts[str(path)] = path.read_text(errors="replace")
    assert sum(1 for where in texts if "worker" in where or "replica" in where) >= 3  # the replicas' logs were read
    leaks = [(where, s) for where, text in texts.items() for s in secrets if s in text]
    assert leaks == []


# ---------------------------------------------------------------------------------------------
# The batch command


def test_cli_batch_from_pacs_equals_files_records_failures_and_resumes(orthanc, pacs_data: dict, tmp_path: Path) -> None:
    studies = tmp_path / "studies.csv"
    pd.DataFrame([
        {"sample_id": "sts", "study_uid": pacs_data["sts_study"], "image_series_uid": pacs_data["sts_ct"], "mask_series_uid": "",
         "roi": ROI, "segment": ""},
        {"sample_id": "seg2", "study_uid": pacs_data["seg_study"], "image_series_uid": pacs_data["seg_ct"],
         "mask_series_uid": pacs_data["segs"]["binary_overlap"], "roi": "", "segment": "2"},
        {"sample_id": "gone", "study_uid": "1.2.3.999", "image_series_uid": pacs_data["sts_ct"], "mask_series_uid": "",
         "roi": ROI, "segment": ""},
    ]).to_csv(studies, index=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(SEG_PARAMS))
    out = tmp_path / "features.csv"
    cli = str(Path(sys.executable).with_name("radiogenomics"))
    command = [cli, "extract", "--pacs", orthanc.dicomweb, "--studies", str(studies), "--out", str(out),
               "--params", str(params), "--workers", "2", "--store-report", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 1, first.stderr[-2000:]
    assert json.loads(first.stdout.splitlines()[-1])["extracted"] == 2
    rows = pd.read_csv(out, dtype={"sample_id": str}).set_index("sample_id")
    failures = pd.read_csv(out.with_name("features.failures.csv"))
    assert list(failures["sample_id"]) == ["gone"] and "study_uid 1.2.3.999 not found" in failures["error"][0]
    params_obj = ExtractionParams(SEG_PARAMS)
    sts = extract_files(str(STS / "image"), str(STS / "mask" / "RS.dcm"), params_obj, roi=ROI).features
    seg = extract_files(str(pacs_data["root"] / "seg" / "image"), str(SEG_DIR / "seg_image_ct_binary_overlap.dcm"), params_obj,
                        segment=2).features
    for sample, local in (("sts", sts), ("seg2", seg)):
        assert {k: rows.loc[sample, k] for k in local} == local
    assert rows.loc["sts", "mask_series_uid"] == pacs_data["sts_rtstruct"]
    client = DICOMwebClient(orthanc.dicomweb)
    sr = client.retrieve_instance(pacs_data["sts_study"], rows.loc["sts", "report_series_uid"], rows.loc["sts", "report_sop_instance_uid"])
    assert read_features_report(sr)[0].features == sts
    # Resumable: a rerun retries only the failed case (and fails it again); nothing is extracted twice.
    second = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    summary = json.loads(second.stdout.splitlines()[-1])
    assert (summary["skipped"], summary["extracted"], summary["failed"]) == (2, 0, 1)
    assert len(pd.read_csv(out)) == 2
    leaks = [s for s in [*CANARY.values(), *SEG_PATIENT] if s in first.stderr + first.stdout + second.stderr]
    assert leaks == []

