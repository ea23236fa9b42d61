"""Reading CT images and tumour masks from files into SimpleITK images.

Images: NRRD, NIfTI, or a DICOM CT series (a folder or a zip of slices). Masks: NRRD, NIfTI,
DICOM-SEG (one segment) or RTSTRUCT (one ROI, rasterised onto the CT grid). The format is taken
from the caller or from the file name; a file that is not what it claims to be, or is truncated,
is refused with a one-line InputError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import SimpleITK as sitk

from radiogenomics.errors import InputError

ImageFormat = Literal["nrrd", "nifti", "dicom"]
MaskFormat = Literal["nrrd", "nifti", "dicom-seg", "rtstruct"]
IMAGE_FORMATS: tuple[str, ...] = ("nrrd", "nifti", "dicom")
MASK_FORMATS: tuple[str, ...] = ("nrrd", "nifti", "dicom-seg", "rtstruct")

_ITK_IO = {"nrrd": "NrrdImageIO", "nifti": "NiftiImageIO"}
_SUFFIX = {".nrrd": "nrrd", ".nhdr": "nrrd", ".nii": "nifti", ".nii.gz": "nifti", ".zip": "dicom", ".dcm": "dicom"}


def guess_format(path: str | Path) -> str:
    """nrrd / nifti / dicom from the file name (a folder is a DICOM series)."""
    path = Path(path)
    if path.is_dir():
        return "dicom"
    name = path.name.lower()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if name.endswith(suffix):
            return _SUFFIX[suffix]
    raise InputError(f"{path}: unsupported file type; images must be .nrrd, .nii, .nii.gz, a DICOM folder or a .zip of DICOM slices")


def _read_itk(path: Path, fmt: str, what: str) -> sitk.Image:
    if not path.is_file():
        raise InputError(f"{what} {path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{what} {path}: file is empty")
    reader = sitk.ImageFileReader()
    reader.SetImageIO(_ITK_IO[fmt])
    reader.SetFileName(str(path))
    try:
        return reader.Execute()
    except RuntimeError:
        raise InputError(
            f"{what} {path}: cannot be read as {fmt.upper()} (corrupt, truncated or another format); send a valid {fmt.upper()} file"
        ) from None


def read_image(path: str | Path, fmt: str | None = None) -> sitk.Image:
    """Read a CT image (NRRD, NIfTI, or a DICOM series folder / zip)."""
    path = Path(path)
    fmt = fmt or guess_format(path)
    if fmt not in IMAGE_FORMATS:
        raise InputError(f"image format {fmt!r} is not supported; use one of {', '.join(IMAGE_FORMATS)}")
    if fmt == "dicom":
        from radiogenomics.extraction.dicom import read_dicom_series

        return read_dicom_series(path)
    return _read_itk(path, fmt, "image")


def read_mask(
    path: str | Path,
    reference: sitk.Image,
    fmt: str | None = None,
    *,
    roi: str | None = None,
    segment: int | str | None = None,
) -> sitk.Image:
    """Read a mask; DICOM-SEG and RTSTRUCT are resolved onto the reference image's grid."""
    path = Path(path)
    if fmt is None:
        fmt = guess_format(path)
        if fmt == "dicom":
            fmt = "rtstruct" if roi is not None else "dicom-seg"
    if fmt not in MASK_FORMATS:
        raise InputError(f"mask format {fmt!r} is not supported; use one of {', '.join(MASK_FORMATS)}")
    if fmt == "dicom-seg":
        from radiogenomics.extraction.dicom import read_seg_mask

        return read_seg_mask(path, reference, segment)
    if fmt == "rtstruct":
        if not roi:
            raise InputError("an RTSTRUCT mask needs the ROI name (roi / --roi); it names the contour set to rasterise")
        from radiogenomics.extraction.dicom import read_rtstruct_mask

        return read_rtstruct_mask(path, reference, roi)
    return _read_itk(path, fmt, "mask")
