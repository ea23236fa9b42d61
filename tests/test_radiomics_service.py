"""RadiomicsService on a real local Ray Serve, called over gRPC on 127.0.0.1."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import yaml
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from pyradiomics_baseline import group_inputs, group_params, load_groups, mask_hash_matches
from radiogenomics.extraction.extract import extract_files
from radiogenomics.extraction.params import ExtractionParams
from services.pb.radiogenomics.v1 import radiomics_pb2, radiomics_pb2_grpc
from test_extraction import check_parity

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PYRAD = SHARED / "pyradiomics"
STS = SHARED / "ibsi" / "validation_STS_019"
CHUNK = 1 << 20
MAX_VOXELS = 13_000_000  # lung1 (12.6 M voxels) fits
MAX_UPLOAD = 48 << 20


@pytest.fixture(scope="module")
def stub(serve_grpc: int) -> Iterator[radiomics_pb2_grpc.RadiomicsServiceStub]:
    from ray import serve

    from services.radiomics import radiomics_app

    serve.run(radiomics_app({"data_root": str(SHARED), "max_voxels": MAX_VOXELS, "max_upload_bytes": MAX_UPLOAD}),
              name="radiomics", route_prefix="/radiomics")
    channel = grpc.insecure_channel(f"127.0.0.1:{serve_grpc}", options=[("grpc.max_send_message_length", 64 << 20)])
    yield radiomics_pb2_grpc.RadiomicsServiceStub(channel)
    channel.close()
    serve.delete("radiomics")


META = (("application", "radiomics"),)


def chunks(image: bytes, mask: bytes, image_format: int, mask_format: int, **options: object) -> Iterator[radiomics_pb2.ExtractChunk]:
    yield radiomics_pb2.ExtractChunk(header=radiomics_pb2.UploadHeader(
        image_format=image_format, mask_format=mask_format, options=radiomics_pb2.ExtractionOptions(**options)))
    for start in range(0, len(image), CHUNK):
        yield radiomics_pb2.ExtractChunk(image_chunk=image[start: start + CHUNK])
    for start in range(0, len(mask), CHUNK):
        yield radiomics_pb2.ExtractChunk(mask_chunk=mask[start: start + CHUNK])


def upload(stub, image: Path | bytes, mask: Path | bytes, image_format=radiomics_pb2.IMAGE_NRRD,
           mask_format=radiomics_pb2.MASK_NRRD, **options: object) -> radiomics_pb2.ExtractResponse:
    data = lambda x: x if isinstance(x, bytes) else Path(x).read_bytes()  # noqa: E731
    return stub.ExtractUpload(chunks(data(image), data(mask), image_format, mask_format, **options), metadata=META, timeout=300)


def expect_error(code: grpc.StatusCode, pattern: str, call, *args, **kwargs) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    assert info.value.code() == code, info.value.details()
    details = info.value.details()
    assert pattern in details, details
    assert "Traceback" not in details and "ray" not in details.lower()
    return details


GROUPS = load_groups(PYRAD)


@pytest.mark.parametrize("group", GROUPS, ids=[g.key for g in GROUPS])
def test_parity_through_grpc_upload(stub, group, tmp_path: Path) -> None:
    image, mask = group_inputs(group, PYRAD, tmp_path)
    assert mask_hash_matches(group, mask)
    response = upload(stub, image, mask, params_yaml=yaml.safe_dump(group_params(group)), case_id="case-7")
    assert check_parity(group, dict(response.features)) == []
    assert response.case_id == "case-7" and len(response.request_id) == 32
    assert response.provenance.params_hash == ExtractionParams(group_params(group)).hash
    assert response.timing.seconds >= response.provenance.extraction_seconds > 0


def test_upload_equals_in_process_extraction_and_path_access(stub) -> None:
    local = extract_files(str(PYRAD / "lung1_image.nrrd"), str(PYRAD / "lung1_label.nrrd"), ExtractionParams({}))
    by_upload = upload(stub, PYRAD / "lung1_image.nrrd", PYRAD / "lung1_label.nrrd")
    by_path = stub.ExtractFromPath(radiomics_pb2.ExtractPathRequest(
        image_path="pyradiomics/lung1_image.nrrd", mask_path="pyradiomics/lung1_label.nrrd"), metadata=META, timeout=120)
    assert dict(by_upload.features) == dict(by_path.features) == local.features
    assert by_upload.provenance.image_hash == local.provenance.image_hash
    assert by_upload.provenance.voxel_count == 837 and list(by_upload.provenance.image_size) == [512, 512, 48]


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
    return buffer.getvalue()


def test_dicom_series_with_rtstruct_matches_the_nifti_pair(stub) -> None:
    nifti = extract_files(str(STS / "nifti" / "CT_image.nii.gz"), str(STS / "nifti" / "CT_mask.nii.gz"), ExtractionParams({}))
    response = upload(stub, _zip_folder(STS / "dicom" / "CT" / "image"), STS / "dicom" / "CT" / "mask" / "RS.dcm",
                      image_format=radiomics_pb2.IMAGE_DICOM_SERIES, mask_format=radiomics_pb2.MASK_RTSTRUCT,
                      roi_name="GTV_Mass_CT")
    features = dict(response.features)
    assert response.provenance.voxel_count == nifti.provenance.voxel_count
    intensity = [f for f in features if "_shape_" not in f]
    for name in intensity:
        assert features[name] == pytest.approx(nifti.features[name], rel=1e-6, abs=1e-9), name
    by_path = stub.ExtractFromPath(radiomics_pb2.ExtractPathRequest(
        image_path="ibsi/validation_STS_019/dicom/CT/image", mask_path="ibsi/validation_STS_019/dicom/CT/mask/RS.dcm",
        mask_format=radiomics_pb2.MASK_RTSTRUCT, options=radiomics_pb2.ExtractionOptions(roi_name="GTV_Mass_CT")),
        metadata=META, timeout=120)
    assert dict(by_path.features) == features


def evenly_spaced_seg_slices() -> list[pydicom.Dataset]:
    """The 4 CT slices the highdicom SEGs reference, with the one stray slice moved into line (UIDs kept)."""
    slices = [pydicom.dcmread(p) for p in sorted((SHARED / "dicom" / "highdicom_seg" / "source_ct_CT2").iterdir())]
    z = sorted(float(ds.ImagePositionPatient[2]) for ds in slices)
    step = float(np.median(np.diff(z)[np.abs(np.diff(z)) < 50]))
    order = sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))
    order[0].ImagePositionPatient[2] = order[1].ImagePositionPatient[2] - step
    return order


def _evenly_spaced_seg_source(tmp_path: Path) -> bytes:
    """`evenly_spaced_seg_slices` as a zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for k, ds in enumerate(evenly_spaced_seg_slices()):
            out = io.BytesIO()
            ds.save_as(out)
            archive.writestr(f"slice{k}.dcm", out.getvalue())
    return buffer.getvalue()


def test_dicom_seg_segments(stub, tmp_path: Path) -> None:
    series = _evenly_spaced_seg_source(tmp_path)
    seg = SHARED / "dicom" / "highdicom_seg" / "seg_image_ct_binary_overlap.dcm"
    params = yaml.safe_dump({"setting": {"minimumROIDimensions": 1}})
    first = upload(stub, series, seg, radiomics_pb2.IMAGE_DICOM_SERIES, radiomics_pb2.MASK_DICOM_SEG, segment="1", params_yaml=params)
    second = upload(stub, series, seg, radiomics_pb2.IMAGE_DICOM_SERIES, radiomics_pb2.MASK_DICOM_SEG, segment="second segment", params_yaml=params)
    assert first.provenance.voxel_count == 64 and second.provenance.voxel_count == 16
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, "1: 'first segment', 2: 'second segment'", upload, stub, series, seg,
                 radiomics_pb2.IMAGE_DICOM_SERIES, radiomics_pb2.MASK_DICOM_SEG, segment="7")


def test_extractor_info(stub) -> None:
    info = stub.GetExtractorInfo(radiomics_pb2.GetExtractorInfoRequest(), metadata=META, timeout=30)
    assert info.pyradiomics_version.startswith("v3.1") and len(info.default_features) == 107
    assert info.max_voxels == MAX_VOXELS and info.path_access and not info.pacs_access


def test_extract_from_pacs_without_a_pacs_is_a_failed_precondition(stub) -> None:
    expect_error(grpc.StatusCode.FAILED_PRECONDITION, "no PACS configured (--pacs / radiomics.pacs)", stub.ExtractFromPacs,
                 radiomics_pb2.ExtractPacsRequest(study_uid="1.2.3", image_series_uid="1.2.3.4"), metadata=META, timeout=30)


def test_reflection_lists_the_service(serve_grpc: int, stub) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{serve_grpc}") as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "radiogenomics.v1.RadiomicsService" in services


# ----------------------------------------------------------------------------------------------
# Bad input: a clear status naming the problem, and the replica keeps serving


def _breast() -> tuple[bytes, bytes]:
    return (PYRAD / "breast1_image.nrrd").read_bytes(), (PYRAD / "breast1_label.nrrd").read_bytes()


def _nrrd(image: sitk.Image) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "x.nrrd"
        sitk.WriteImage(image, str(target), useCompression=True)
        return target.read_bytes()


def _bad_cases() -> list[tuple[str, grpc.StatusCode, str, object]]:
    image, mask = _breast()
    mask_img = sitk.ReadImage(str(PYRAD / "breast1_label.nrrd"))
    shifted = sitk.Image(mask_img)
    shifted.SetOrigin(tuple(np.add(mask_img.GetOrigin(), (0.0, 0.0, 4.2))))
    fractional = sitk.Cast(mask_img, sitk.sitkFloat32) * 0.5
    big = sitk.Image(240, 240, 240, sitk.sitkInt16)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    return [
        ("truncated image", invalid, "cannot be read as NRRD", lambda s: upload(s, (PYRAD / "lung1_image.nrrd").read_bytes()[:100_000], mask)),
        ("not an image", invalid, "cannot be read as NIFTI", lambda s: upload(s, b"hello" * 100, mask, radiomics_pb2.IMAGE_NIFTI)),
        ("no format", invalid, "header.image_format is required", lambda s: upload(s, image, mask, radiomics_pb2.IMAGE_FORMAT_UNSPECIFIED)),
        ("size mismatch", invalid, "size differs (image (45, 120, 21), mask (512, 512, 48))", lambda s: upload(s, image, (PYRAD / "lung1_label.nrrd").read_bytes())),
        ("origin mismatch", invalid, "origin differs by up to 4.2 mm", lambda s: upload(s, image, _nrrd(shifted))),
        ("empty mask", invalid, "mask is empty", lambda s: upload(s, image, _nrrd(mask_img * 0))),
        ("label not in mask", invalid, "label 3 is not in the mask (labels present: 1)", lambda s: upload(s, image, mask, label=3)),
        ("fractional mask", invalid, "mask is not a label map", lambda s: upload(s, image, _nrrd(fractional))),
        ("unknown ROI", invalid, "GTV_Mass_CT", lambda s: upload(s, _zip_folder(STS / "dicom" / "CT" / "image"),
                                                             STS / "dicom" / "CT" / "mask" / "RS.dcm", radiomics_pb2.IMAGE_DICOM_SERIES,
                                                             radiomics_pb2.MASK_RTSTRUCT, roi_name="LIVER")),
        ("unknown parameter key", invalid, "unknown key 'binWidht'", lambda s: upload(s, image, mask, params_yaml="setting:\n  binWidht: 5\n")),
        ("too many voxels", grpc.StatusCode.RESOURCE_EXHAUSTED, "over the limit of 13,000,000", lambda s: upload(s, _nrrd(big), _nrrd(big))),
        ("upload too large", grpc.StatusCode.RESOURCE_EXHAUSTED, "upload exceeds the limit of 50,331,648 bytes",
         lambda s: upload(s, bytes(MAX_UPLOAD + 1), mask)),
        ("path outside root", invalid, "image_path '../../../etc/passwd' is outside the server's data root",
         lambda s: s.ExtractFromPath(radiomics_pb2.ExtractPathRequest(image_path="../../../etc/passwd", mask_path="x"), metadata=META)),
        ("absolute path outside root", invalid, "is outside the server's data root",
         lambda s: s.ExtractFromPath(radiomics_pb2.ExtractPathRequest(image_path="/etc/hostname", mask_path="x"), metadata=META)),
        ("missing path", invalid, "mask_path 'pyradiomics/nope.nrrd' not found",
         lambda s: s.ExtractFromPath(radiomics_pb2.ExtractPathRequest(image_path="pyradiomics/lung1_image.nrrd",
                                                                      mask_path="pyradiomics/nope.nrrd"), metadata=META)),
        ("no header", invalid, "the first message must be `header`",
         lambda s: s.ExtractUpload(iter([radiomics_pb2.ExtractChunk(image_chunk=image)]), metadata=META)),
        ("image after mask", invalid, "image_chunk after mask_chunk",
         lambda s: s.ExtractUpload(iter([*chunks(image, mask, 1, 1), radiomics_pb2.ExtractChunk(image_chunk=b"x")]), metadata=META)),
        ("no mask", invalid, "no mask_chunk received", lambda s: upload(s, image, b"")),
    ]


BAD = _bad_cases()


@pytest.mark.parametrize(("name", "code", "pattern", "call"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_clear_status_and_the_replica_keeps_serving(stub, name, code, pattern, call) -> None:
    expect_error(code, pattern, call, stub)
    image, mask = _breast()
    assert upload(stub, image, mask).provenance.voxel_count == 143  # the next request succeeds


def _extraction_children() -> list:
    """The radiomics replica's extraction child processes (spawned by its process pool)."""
    import psutil

    children = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "multiprocessing.spawn" in cmdline or "multiprocessing.resource_tracker" in cmdline:
            parent = proc.parent()
            if parent is not None and "RadiomicsServer" in " ".join(parent.cmdline()):
                children.append(proc)
    return [p for p in children if "spawn_main" in " ".join(p.cmdline())]


def test_a_crash_while_reading_or_extracting_costs_one_request_not_the_replica(stub) -> None:
    """SIGKILL the child process in the middle of an extraction (as a native reader crash would end it):
    that request gets INVALID_ARGUMENT, the replica lives on, and the next extraction works."""
    import signal
    import threading
    import time

    import ray

    before = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "radiomics#" in a["name"])
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["answer"] = upload(stub, PYRAD / "lung1_image.nrrd", PYRAD / "lung1_label.nrrd")
        except grpc.RpcError as err:
            outcome["error"] = err

    worker = threading.Thread(target=call)
    worker.start()
    deadline, killed = time.monotonic() + 30, []
    while not killed and time.monotonic() < deadline:
        time.sleep(0.3)  # let the upload arrive and the child start reading
        for proc in _extraction_children():
            if proc.cpu_percent(interval=0.1) > 5:
                proc.send_signal(signal.SIGKILL)
                killed.append(proc.pid)
    worker.join(120)
    assert killed, "no busy extraction child found"
    assert "error" in outcome, "the killed extraction answered anyway"
    assert outcome["error"].code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "crashed the image reader" in outcome["error"].details()
    again = upload(stub, PYRAD / "brain1_image.nrrd", PYRAD / "brain1_label.nrrd")
    assert len(again.features) > 100
    after = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "radiomics#" in a["name"])
    assert after == before  # the same replica
