"""A real PACS for the tests: Debian's Orthanc with its DICOMweb plugin, on 127.0.0.1, stopped by pid.

`reference_cases` prepares what the session's PACS holds: the IBSI STS_019 CT + RTSTRUCT (patient
identity replaced by canary values, so a leak is searchable), the highdicom SEG study (its 4-slice
CT, slice spacing mended as in test_radiomics_service, and its three SEGs, all drawn on that CT), a
SEG placed in the STS study that references the other CT, and pydicom's lone CT and MR slices.

Orthanc gets a throw-away configuration (free HTTP port, DICOM protocol off, remote access off,
storage and index in the test's folder) and the DICOMweb plugin at `/dicom-web/`.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STS = SHARED / "ibsi" / "validation_STS_019" / "dicom" / "CT"
SEG_DIR = SHARED / "dicom" / "highdicom_seg"
PYDICOM = SHARED / "dicom" / "pydicom_test_files"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@dataclass(frozen=True)
class Orthanc:
    url: str  # the server's root, e.g. http://127.0.0.1:8042
    pid: int

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def store(self, datasets: Iterable[pydicom.Dataset | Path]) -> int:
        """POST each instance to Orthanc's REST API; returns how many it holds afterwards."""
        for item in datasets:
            if isinstance(item, Path):
                body = item.read_bytes()
            else:
                from io import BytesIO

                buffer = BytesIO()
                item.save_as(buffer, enforce_file_format=True)
                body = buffer.getvalue()
            request = urllib.request.Request(f"{self.url}/instances", data=body, method="POST",
                                             headers={"Content-Type": "application/dicom"})
            with urllib.request.urlopen(request, timeout=30) as response:
                status = json.loads(response.read())["Status"]
            assert status in ("Success", "AlreadyStored"), status
        return len(self.get("/instances"))

    def get(self, path: str) -> object:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as response:
            return json.loads(response.read())


@contextmanager
def orthanc_server(folder: Path, port: int) -> Iterator[Orthanc]:
    """Start Orthanc on 127.0.0.1:`port` with its storage under `folder`; stop it by pid at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "radiogenomics-test", "HttpPort": port, "DicomServerEnabled": False,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "HttpsCACertificates": "",
        "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "Plugins": [str(PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 1, "SaveJobs": False,
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen(["Orthanc", str(path)], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    server = Orthanc(f"http://127.0.0.1:{port}", process.pid)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.get("/system")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not start; see {folder / 'orthanc.log'}") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# Patient identity written into the STS copies; none of it may reach a log, an error or the audit.
CANARY = {"PatientName": "Canaryperson^Philippa", "PatientID": "PHI-CANARY-5501", "PatientBirthDate": "19010203",
          "InstitutionName": "Canary Memorial Hospital", "AccessionNumber": "ACC-CANARY-77"}
# The highdicom test data's own patient: also must never show.
SEG_PATIENT = ("Archibald", "77654033")


def _canary(ds: pydicom.Dataset) -> pydicom.Dataset:
    for key, value in CANARY.items():
        setattr(ds, key, value)
    return ds


def reference_cases(root: Path) -> dict:
    """The shared DICOM data as the tests load it into the PACS: files written under `root`, and their UIDs."""
    from test_radiomics_service import evenly_spaced_seg_slices

    (root / "sts" / "image").mkdir(parents=True)
    for path in sorted((STS / "image").iterdir()):
        _canary(pydicom.dcmread(path)).save_as(root / "sts" / "image" / path.name)
    rtstruct = _canary(pydicom.dcmread(STS / "mask" / "RS.dcm"))
    rtstruct.save_as(root / "sts" / "RS.dcm")
    ct = pydicom.dcmread(root / "sts" / "image" / "000000.dcm", stop_before_pixels=True)
    (root / "seg" / "image").mkdir(parents=True)
    for k, ds in enumerate(evenly_spaced_seg_slices()):
        ds.save_as(root / "seg" / "image" / f"slice{k}.dcm")
    segs = {name: pydicom.dcmread(SEG_DIR / f"seg_image_ct_{name}.dcm") for name in ("binary", "binary_overlap", "true_fractional")}
    stray = _canary(pydicom.dcmread(SEG_DIR / "seg_image_ct_binary.dcm"))  # in the STS study, drawn on the other CT
    stray.StudyInstanceUID, stray.SeriesInstanceUID, stray.SOPInstanceUID = ct.StudyInstanceUID, generate_uid(), generate_uid()
    stray.file_meta.MediaStorageSOPInstanceUID = stray.SOPInstanceUID
    seg_ct = pydicom.dcmread(root / "seg" / "image" / "slice0.dcm", stop_before_pixels=True)
    lone_ct = pydicom.dcmread(PYDICOM / "CT_small.dcm", stop_before_pixels=True)  # a study with no segmentation
    mr = pydicom.dcmread(PYDICOM / "MR_small.dcm", stop_before_pixels=True)
    return {
        "root": root, "sts_study": ct.StudyInstanceUID, "sts_ct": ct.SeriesInstanceUID, "sts_rtstruct": rtstruct.SeriesInstanceUID,
        "seg_study": seg_ct.StudyInstanceUID, "seg_ct": seg_ct.SeriesInstanceUID,
        "segs": {name: ds.SeriesInstanceUID for name, ds in segs.items()}, "stray": stray.SeriesInstanceUID,
        "lone_study": lone_ct.StudyInstanceUID, "lone_ct": lone_ct.SeriesInstanceUID,
        "mr_study": mr.StudyInstanceUID, "mr": mr.SeriesInstanceUID,
        "instances": [*sorted((root / "sts" / "image").iterdir()), root / "sts" / "RS.dcm",
                      *sorted((root / "seg" / "image").iterdir()), *(SEG_DIR / f"seg_image_ct_{n}.dcm" for n in segs), stray,
                      PYDICOM / "CT_small.dcm", PYDICOM / "MR_small.dcm"],
    }
