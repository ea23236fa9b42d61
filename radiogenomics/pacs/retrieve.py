"""Find and fetch a case from the PACS: a CT series and the segmentation drawn on it.

Everything that can be checked from metadata is checked before any pixel data moves: the study
and series exist, the image series is a CT within the voxel limit, the segmentation is one SEG or
RTSTRUCT object that references that CT. Then the instances stream (WADO-RS) into a scratch folder,
counted against the byte limit as they arrive, to be read by the same DICOM readers as uploads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from radiogenomics.errors import InputError, LimitExceeded, NotFound
from radiogenomics.pacs.client import PacsSession, check_uid

MASK_MODALITIES = {"SEG": "dicom-seg", "RTSTRUCT": "rtstruct"}
_SHOW = 5


@dataclass(frozen=True)
class Retrieved:
    """A case on local disk, with the metadata the SR report references."""

    image_dir: Path
    mask_path: Path
    mask_format: str  # "dicom-seg" or "rtstruct"
    mask_series_uid: str
    image_metadata: list[Dataset]
    mask_metadata: Dataset


def _metadata(session: PacsSession, study: str, series: str, field: str) -> list[Dataset]:
    try:
        found = session.series_metadata(study, series)
    except NotFound:
        found = []
    if not found:
        if not session.study_exists(study):
            raise NotFound(f"study_uid {study} not found on the PACS; check the StudyInstanceUID")
        raise NotFound(f"{field} {series} not found in study {study} on the PACS; check the SeriesInstanceUID")
    return found


def referenced_series(ds: Dataset) -> set[str]:
    """Series a SEG (ReferencedSeriesSequence) or an RTSTRUCT (its frame-of-reference tree) was drawn on."""
    uids = {str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence", []) or []}
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        for study in frame.get("RTReferencedStudySequence", []) or []:
            for series in study.get("RTReferencedSeriesSequence", []) or []:
                uids.add(str(series.get("SeriesInstanceUID", "")))
    return uids - {""}


def _check_image(metadata: list[Dataset], series: str, max_voxels: int | None) -> None:
    modalities = sorted({str(ds.get("Modality", "") or "?") for ds in metadata})
    if modalities != ["CT"]:
        raise InputError(f"image_series_uid {series} is a {'/'.join(modalities)} series, not a CT; give the CT "
                         "series (modality CT) as image_series_uid")
    voxels = sum(int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0) * int(ds.get("NumberOfFrames", 1) or 1)
                 for ds in metadata)
    if max_voxels is not None and voxels > max_voxels:
        raise LimitExceeded(f"image_series_uid {series} has {voxels:,} voxels, over the limit of {max_voxels:,}; "
                            "crop the volume around the tumour or ask for a higher limit")


def _check_mask(metadata: list[Dataset], series: str, image_series: str) -> Dataset:
    modalities = sorted({str(ds.get("Modality", "") or "?") for ds in metadata})
    if len(modalities) != 1 or modalities[0] not in MASK_MODALITIES:
        raise InputError(f"mask_series_uid {series} is a {'/'.join(modalities)} series; give the series of a "
                         "DICOM-SEG or RTSTRUCT drawn on the CT")
    if len(metadata) != 1:
        raise InputError(f"mask_series_uid {series} holds {len(metadata)} {modalities[0]} objects; give a series "
                         "with one segmentation object")
    if image_series not in referenced_series(metadata[0]):
        raise InputError(f"mask_series_uid {series} ({modalities[0]}) does not reference the CT series "
                         f"{image_series}; give a segmentation drawn on that CT")
    return metadata[0]


def find_segmentation(session: PacsSession, study: str, image_series: str) -> str:
    """The one SEG or RTSTRUCT series in the study that references the CT series."""
    matches = []
    for modality in MASK_MODALITIES:
        for series in session.series_in_study(study, modality):
            metadata = session.series_metadata(study, series)
            if any(image_series in referenced_series(ds) for ds in metadata):
                matches.append(series)
    if not matches:
        raise NotFound(f"no SEG or RTSTRUCT in study {study} references the CT series {image_series}; store one "
                       "in the PACS or give mask_series_uid")
    if len(matches) > 1:
        shown = ", ".join(sorted(matches)[:_SHOW]) + (" ..." if len(matches) > _SHOW else "")
        raise InputError(f"{len(matches)} segmentations in study {study} reference the CT series {image_series} "
                         f"({shown}); choose one with mask_series_uid")
    return matches[0]


class _ByteBudget:
    def __init__(self, limit: int | None) -> None:
        self.limit, self.used = limit, 0

    def write(self, ds: Dataset, path: Path) -> None:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        self.used += path.stat().st_size
        if self.limit is not None and self.used > self.limit:
            raise LimitExceeded(f"the case exceeds the retrieval limit of {self.limit:,} bytes; crop the volume "
                                "around the tumour or ask for a higher limit")


def _stream(instances: Iterable[Dataset], series: str, expected: int, folder: Path, budget: _ByteBudget,
            field: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, ds in enumerate(instances):
        if str(ds.get("SeriesInstanceUID", "")) != series:
            raise InputError(f"the PACS returned an instance of another series for {field} {series}")
        path = folder / f"{k:06d}.dcm"
        budget.write(ds, path)
        paths.append(path)
    if len(paths) != expected:
        raise InputError(f"the PACS returned {len(paths)} instances of {field} {series}, its metadata lists "
                         f"{expected}; retry when the series is complete")
    return paths


def retrieve_case(session: PacsSession, study: str, image_series: str, mask_series: str | None, folder: Path, *,
                  max_bytes: int | None, max_voxels: int | None) -> Retrieved:
    """Check the case from metadata, then stream it into `folder` (`image/` slices and `mask/` object)."""
    check_uid(study, "study_uid")
    check_uid(image_series, "image_series_uid")
    if mask_series:
        check_uid(mask_series, "mask_series_uid")
    image_metadata = _metadata(session, study, image_series, "image_series_uid")
    _check_image(image_metadata, image_series, max_voxels)
    if not mask_series:
        mask_series = find_segmentation(session, study, image_series)
    mask_metadata = _check_mask(_metadata(session, study, mask_series, "mask_series_uid"), mask_series, image_series)
    budget = _ByteBudget(max_bytes)
    _stream(session.iter_series(study, image_series), image_series, len(image_metadata), folder / "image", budget,
            "image_series_uid")
    (mask_path,) = _stream(session.iter_series(study, mask_series), mask_series, 1, folder / "mask", budget,
                           "mask_series_uid")
    return Retrieved(folder / "image", mask_path, MASK_MODALITIES[str(mask_metadata.Modality)], mask_series,
                     image_metadata, mask_metadata)
