"""One case from the PACS, end to end: retrieve, extract as an upload would, optionally store the SR."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom

from radiogenomics.extraction.dicom import seg_segment
from radiogenomics.extraction.extract import Extraction, extract_files
from radiogenomics.extraction.params import ExtractionParams
from radiogenomics.pacs.client import PacsSession, quiet_dicom
from radiogenomics.pacs.config import PacsConfig
from radiogenomics.pacs.report import features_report
from radiogenomics.pacs.retrieve import retrieve_case


@dataclass(frozen=True)
class StoredReport:
    """Where the SR went in the PACS, and the features it could not hold (non-finite values)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    omitted: tuple[str, ...]


@dataclass(frozen=True)
class PacsExtraction:
    extraction: Extraction
    mask_series_uid: str  # the one given, or the one found in the study
    report: StoredReport | None


def extract_from_pacs(config: PacsConfig, study_uid: str, image_series_uid: str, mask_series_uid: str | None,
                      params: ExtractionParams, *, folder: Path, label: int | None = None, roi: str | None = None,
                      segment: int | str | None = None, max_bytes: int | None = None, max_voxels: int | None = None,
                      store_report: bool = False) -> PacsExtraction:
    """Retrieve the case into `folder` (a per-request scratch folder the caller removes) and extract it."""
    with quiet_dicom():
        session = PacsSession(config)
        case = retrieve_case(session, study_uid, image_series_uid, mask_series_uid, Path(folder),
                             max_bytes=max_bytes, max_voxels=max_voxels)
        extraction = extract_files(str(case.image_dir), str(case.mask_path), params, image_format="dicom",
                                   mask_format=case.mask_format, label=label, roi=roi, segment=segment,
                                   max_voxels=max_voxels)
        report = None
        if store_report:
            mask = pydicom.dcmread(case.mask_path, stop_before_pixels=True)
            chosen = seg_segment(case.mask_path, segment) if case.mask_format == "dicom-seg" else None
            sr, omitted = features_report(extraction, case.image_metadata, mask, segment=chosen, roi=roi)
            session.store([sr])
            report = StoredReport(str(sr.StudyInstanceUID), str(sr.SeriesInstanceUID), str(sr.SOPInstanceUID),
                                  tuple(omitted))
    return PacsExtraction(extraction, case.mask_series_uid, report)
