"""Read DICOM inputs into SimpleITK images for pyradiomics: CT series, DICOM-SEG and RTSTRUCT masks.

- `read_dicom_series`: a folder (or .zip) of single-frame slices -> one 3-D image. Files are
  validated one by one with pydicom (so a corrupt or truncated slice is named), grouped by
  SeriesInstanceUID, ordered along the slice normal (the rule GDCM's IPPSorter uses) and read by
  SimpleITK's ImageSeriesReader (GDCM), which applies the rescale slope/intercept and computes
  the geometry. Unevenly spaced slices (a missing slice) and sheared stacks (gantry tilt) are
  refused by default: they would give every texture feature a wrong z-spacing without notice.
- `read_seg_mask` / `read_rtstruct_mask`: a DICOM-SEG segment or an RTSTRUCT ROI -> a uint8 mask
  (1 inside) on the reference image's exact grid, as pyradiomics needs.

The image returned by `read_dicom_series` carries, in its metadata dictionary, the series and
frame-of-reference UIDs and the SOPInstanceUID of every slice (key `SOP_UIDS_KEY`, slice order).
The mask readers use them to place SEG frames and RTSTRUCT contours by the slice they reference,
which is exact even when positions alone are ambiguous; without them (e.g. a NIfTI reference)
frames and contours are placed by their patient position (mm).

Every problem with the input raises `InputError` with one line naming the file and the fix; no
pydicom or SimpleITK exception escapes for bad input.
"""

from __future__ import annotations

import stat
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pydicom
import SimpleITK as sitk
from matplotlib.path import Path as PolygonPath
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from radiogenomics.errors import InputError

# Metadata keys set on the image returned by read_dicom_series (DICOM tag style, as SimpleITK uses).
SERIES_UID_KEY = "0020|000e"
FRAME_OF_REFERENCE_KEY = "0020|0052"
MODALITY_KEY = "0008|0060"
SOP_UIDS_KEY = "radiogenomics|SOPInstanceUIDs"  # backslash-separated, one per slice, slice order

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_KNOWN_SOP_CLASSES = {
    SEG_SOP_CLASS: "SEG",
    RTSTRUCT_SOP_CLASS: "RTSTRUCT",
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.2.1": "CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.4.1": "MR",
    "1.2.840.10008.5.1.4.1.1.128": "PT",
    "1.2.840.10008.5.1.4.1.1.481.2": "RTDOSE",
    "1.2.840.10008.5.1.4.1.1.481.5": "RTPLAN",
}
# Objects that may sit beside the slices of a series (exports often mix them) but are not slices.
_NON_IMAGE_MODALITIES = frozenset(
    {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "RTIMAGE", "SR", "PR", "KO", "REG", "DOC", "PLAN", "FID", "RWV"}
)

SPACING_TOLERANCE = 0.01  # relative deviation of one slice gap from the median gap still called uniform
SHEAR_TOLERANCE = 0.05  # in-plane drift of slice positions, in pixels, still called "not tilted"
SEG_SLICE_TOLERANCE = 0.1  # a SEG frame placed by position must lie this close (in slices) to a slice
FRACTIONAL_THRESHOLD = 0.5  # FRACTIONAL SEG: inside where value >= this fraction of MaximumFractionalValue
MAX_ZIP_BYTES = 8 * 2**30  # refuse archives that would unpack to more than this (zip bombs)
_SHOW = 5
# Side files often found beside exported slices; never parsed as DICOM when scanning a folder.
_NOT_DICOM_SUFFIXES = frozenset(
    {".txt", ".md", ".json", ".xml", ".csv", ".tsv", ".pdf", ".html", ".htm", ".log", ".yaml", ".yml", ".py",
     ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".nii", ".gz", ".nrrd", ".mha", ".mhd", ".raw", ".zip", ".exe", ".ini"}
)


def _first(items: list[str], n: int = _SHOW) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _short(exc: BaseException) -> str:
    """One line of an exception message: ITK's many-line messages keep their `ERROR:` line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = next((ln for ln in reversed(lines) if "ERROR" in ln.upper()), lines[0] if lines else type(exc).__name__)
    return text[:200]


# ----------------------------------------------------------------------------------------------
# Reading single files


# What pydicom raises when a required element is missing or a value cannot be parsed (lazily, on access).
_MALFORMED = (AttributeError, KeyError, IndexError, TypeError, ValueError, OverflowError, struct.error)


@contextmanager
def _malformed(shown: str, what: str) -> Iterator[None]:
    """Turn pydicom's errors for a missing or unparsable element into a one-line InputError."""
    try:
        yield
    except InputError:
        raise
    except _MALFORMED as exc:
        raise InputError(f"{shown}: malformed {what} ({type(exc).__name__}: {_short(exc)}); re-export it") from None


def _has_dicom_magic(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def _force_read(path: Path, stop_before_pixels: bool) -> Dataset | None:
    """Read a file without the 128-byte preamble (older exports); None if it is not DICOM at all."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
            sop = str(ds.get("SOPClassUID", "") or "")
    except Exception:  # noqa: BLE001 - whatever pydicom makes of random bytes, it is not DICOM
        return None
    # Random bytes parse as some dataset under force=True; a real object names its SOP class.
    if not sop or not all(part.isdigit() for part in sop.split(".")):
        return None
    return ds


def _read(path: Path, shown: str, *, stop_before_pixels: bool = False, skip_non_dicom: bool = False) -> Dataset | None:
    """Parse one file as DICOM. Corrupt DICOM raises; a non-DICOM file raises or, with skip_non_dicom
    (scanning a folder), returns None unless it claims to be DICOM (preamble or a .dcm name)."""
    try:
        claims_dicom = _has_dicom_magic(path) or path.suffix.lower() in (".dcm", ".dicom")
    except OSError as exc:
        raise InputError(f"{shown}: cannot open the file ({exc.strerror or exc}); check its permissions") from None
    if skip_non_dicom and not claims_dicom and path.suffix.lower() in _NOT_DICOM_SUFFIXES:
        return None
    if claims_dicom:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            pass  # a .dcm name without the preamble: try the raw dataset below
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for corrupt data
            raise InputError(f"{shown}: not a readable DICOM file ({_short(exc)}); re-export it or remove it") from None
    ds = _force_read(path, stop_before_pixels)
    if ds is None:
        if skip_non_dicom and not claims_dicom:
            return None
        raise InputError(f"{shown}: not a DICOM file; pass a DICOM file (or re-export it from the PACS)")
    return ds


def _kind(ds: Dataset) -> str:
    sop = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if sop == SEG_SOP_CLASS or modality == "SEG":
        return "SEG"
    if sop == RTSTRUCT_SOP_CLASS or modality == "RTSTRUCT":
        return "RTSTRUCT"
    if sop == _DICOMDIR_SOP_CLASS:
        return "DICOMDIR"
    return modality or _KNOWN_SOP_CLASSES.get(sop, "UNKNOWN")


def _existing_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path to the {what}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass the {what} file itself")


def dicom_kind(path: Path | str) -> str:
    """What a DICOM file holds: 'SEG', 'RTSTRUCT', or the image modality ('CT', 'MR', ...).

    From Modality, or from the SOP Class when Modality is missing ('UNKNOWN' if neither says).
    A file that is not DICOM raises InputError.
    """
    path = Path(path)
    _existing_file(path, "DICOM")
    ds = _read(path, str(path), stop_before_pixels=True)
    assert ds is not None
    return _kind(ds)


def _read_object(path: Path, expected: str, what: str) -> Dataset:
    """Read a whole SEG or RTSTRUCT file and check it is one (`what` is for messages: 'a DICOM-SEG')."""
    _existing_file(path, what.split(" ", 1)[-1])
    ds = _read(path, str(path))
    assert ds is not None
    kind = _kind(ds)
    if kind != expected:
        hint = {
            "SEG": "pass it as a DICOM-SEG mask (read_seg_mask)",
            "RTSTRUCT": "pass it as an RTSTRUCT mask with its ROI name (read_rtstruct_mask)",
        }.get(kind, "an image slice belongs in the image series, not in the mask")
        raise InputError(f"{path}: expected {what}, got {kind}; {hint}")
    return ds


# ----------------------------------------------------------------------------------------------
# CT series


@dataclass(frozen=True)
class _Slice:
    """The header facts of one image slice that ordering and the geometry checks need."""

    path: Path
    shown: str
    series_uid: str
    sop_uid: str
    frame_of_reference: str
    modality: str
    position: np.ndarray  # ImagePositionPatient (mm)
    orientation: np.ndarray  # ImageOrientationPatient (row and column direction cosines)
    shape: tuple[int, int]  # rows, columns
    spacing: tuple[float, float]  # PixelSpacing (row spacing, column spacing)


def _expected_pixel_bytes(ds: Dataset) -> int:
    bits = int(ds.get("BitsAllocated", 16) or 16)
    n = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.get("NumberOfFrames", 1) or 1)
    return (n * bits + 7) // 8


def _image_slice(ds: Dataset, path: Path, shown: str) -> _Slice:
    """Validate one image slice (pixel data complete, position and orientation present)."""
    if "PixelData" not in ds:
        raise InputError(f"{shown}: image slice without pixel data (file truncated?); re-export the series or remove this file")
    for keyword in ("Rows", "Columns", "SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient"):
        if keyword not in ds or ds[keyword].value in (None, ""):
            raise InputError(f"{shown}: image slice without {keyword}; it cannot be placed in 3-D; re-export the series from the PACS")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InputError(
            f"{shown}: multi-frame image ({frames} frames); export the series as single-frame slices, or convert it to NIfTI/NRRD"
        )
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        have, need = len(ds.PixelData), _expected_pixel_bytes(ds)
        if have < need:
            raise InputError(f"{shown}: truncated: pixel data has {have} of {need} bytes; copy the file again from the source")
    try:
        position = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=float)
        orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
        spacing = [float(v) for v in ds.get("PixelSpacing", [1.0, 1.0])]
    except (TypeError, ValueError):
        raise InputError(f"{shown}: unreadable ImagePositionPatient/ImageOrientationPatient/PixelSpacing; re-export the series") from None
    if position.shape != (3,) or orientation.shape != (6,) or len(spacing) != 2:
        raise InputError(f"{shown}: malformed ImagePositionPatient/ImageOrientationPatient/PixelSpacing; re-export the series")
    return _Slice(
        path=path, shown=shown, series_uid=str(ds.SeriesInstanceUID), sop_uid=str(ds.get("SOPInstanceUID", "")),
        frame_of_reference=str(ds.get("FrameOfReferenceUID", "") or ""), modality=_kind(ds),
        position=position, orientation=orientation, shape=(int(ds.Rows), int(ds.Columns)), spacing=(spacing[0], spacing[1]),
    )


def _skip_name(rel: PurePosixPath) -> bool:
    """Hidden files, macOS resource forks and DICOMDIR index files are never slices."""
    return any(part.startswith(".") or part == "__MACOSX" for part in rel.parts) or rel.name.upper() == "DICOMDIR"


def _scan(root: Path, shown_root: str, archive: bool) -> tuple[dict[str, list[_Slice]], list[str]]:
    """All image slices under root grouped by series, and the kinds of the other DICOM objects found.

    Files are named in messages as the user knows them: `archive.zip (member a/b.dcm)` for a zip.
    """
    series: dict[str, list[_Slice]] = {}
    others: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if _skip_name(rel):
            continue
        shown = f"{shown_root} (member {rel})" if archive else str(path)
        ds = _read(path, shown, skip_non_dicom=True)
        if ds is None:
            continue
        with _malformed(shown, "DICOM file"):
            kind = _kind(ds)
            if kind in _NON_IMAGE_MODALITIES or kind == "DICOMDIR":
                others.append(kind)
                continue
            item = _image_slice(ds, path, shown)
        series.setdefault(item.series_uid, []).append(item)
    return series, others


def _ordered(slices: list[_Slice], shown_root: str, allow_nonuniform: bool) -> list[_Slice]:
    """Slices sorted along the slice normal, after checking they form one regular stack."""
    first = slices[0]
    for s in slices[1:]:
        if s.shape != first.shape:
            raise InputError(f"{s.shown}: {s.shape[0]}x{s.shape[1]} pixels but {first.shown} has {first.shape[0]}x{first.shape[1]}; a series needs one slice size")
        if not np.allclose(s.orientation, first.orientation, atol=1e-4):
            raise InputError(f"{s.shown}: ImageOrientationPatient differs from {first.shown}; the series mixes orientations, split it")
        if not np.allclose(s.spacing, first.spacing, rtol=1e-4):
            raise InputError(f"{s.shown}: PixelSpacing {s.spacing} differs from {first.shown} {first.spacing}; a series needs one pixel spacing")
    normal = np.cross(first.orientation[:3], first.orientation[3:])
    along = np.array([s.position @ normal for s in slices])
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    along = along[order]
    if len(slices) < 2:
        return slices
    gaps = np.diff(along)
    if np.min(gaps) < 1e-3:
        i = int(np.argmin(gaps))
        raise InputError(
            f"{slices[i + 1].shown}: same position as {slices[i].shown} ({along[i]:.3f} mm along the slice normal); "
            "the series holds duplicate or repeated slices, keep one acquisition"
        )
    drift = [s.position - first.position - ((s.position - first.position) @ normal) * normal for s in slices]
    worst = max(float(np.linalg.norm(d)) for d in drift)
    if worst > SHEAR_TOLERANCE * min(first.spacing):
        raise InputError(
            f"{shown_root}: slice positions drift {worst:.2f} mm in-plane (gantry tilt or a sheared stack); "
            "resample the series to an orthogonal grid (e.g. with dcm2niix) and pass that image"
        )
    median = float(np.median(gaps))
    deviation = np.abs(gaps - median)
    if not allow_nonuniform and float(deviation.max()) > SPACING_TOLERANCE * median:
        i = int(np.argmax(deviation))
        raise InputError(
            f"{shown_root}: slices are not evenly spaced: gap of {gaps[i]:.3f} mm between {slices[i].path.name} and "
            f"{slices[i + 1].path.name}, median gap {median:.3f} mm (missing slices?); add the missing slices, "
            "or pass allow_nonuniform=True to accept an averaged z-spacing"
        )
    return slices


def _execute(paths: list[Path], shown: dict[Path, str], shown_root: str) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])
    try:
        return reader.Execute()
    except RuntimeError as exc:
        # Name the slice GDCM cannot decode: retry one at a time (only on this failure path).
        for path in paths:
            try:
                sitk.ReadImage(str(path))
            except RuntimeError as one:
                raise InputError(f"{shown[path]}: SimpleITK/GDCM cannot read the pixel data ({_short(one)}); re-export the slice uncompressed") from None
        raise InputError(f"{shown_root}: SimpleITK/GDCM cannot read the series ({_short(exc)}); re-export it uncompressed") from None


def _check_zip_member(archive: Path, info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    rel = PurePosixPath(name)
    if name.startswith("/") or not rel.parts or ".." in rel.parts or ":" in rel.parts[0]:
        raise InputError(
            f"{archive}: member {info.filename!r} points outside the archive folder (zip-slip); rebuild the zip with relative paths only"
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InputError(f"{archive}: member {info.filename!r} is a symbolic link; rebuild the zip with the files themselves")
    if info.flag_bits & 0x1:
        raise InputError(f"{archive}: member {info.filename!r} is encrypted; rebuild the zip without a password")
    return rel


def _extract_zip(archive: Path, dest: Path) -> None:
    """Unpack archive into dest after checking every member path (no zip-slip, no links, no bombs)."""
    try:
        handle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{archive}: not a readable zip archive ({_short(exc)}); rebuild it (e.g. `zip -r series.zip series/`)") from None
    with handle:
        members = [(info, _check_zip_member(archive, info)) for info in handle.infolist() if not info.is_dir()]
        if not members:
            raise InputError(f"{archive}: the zip archive is empty; zip the folder of DICOM slices")
        total = sum(info.file_size for info, _ in members)
        if total > MAX_ZIP_BYTES:
            raise InputError(f"{archive}: would unpack to {total / 2**30:.1f} GiB (limit {MAX_ZIP_BYTES / 2**30:.0f} GiB); send one series per archive")
        root = dest.resolve()
        for info, rel in members:
            if _skip_name(rel):
                continue
            target = dest.joinpath(*rel.parts)
            if not target.resolve().is_relative_to(root):  # belt and braces after the name check
                raise InputError(f"{archive}: member {info.filename!r} points outside the archive folder (zip-slip); rebuild the zip with relative paths only")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with handle.open(info) as src, target.open("wb") as dst:
                    written = 0
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > info.file_size:  # more than the archive declared: a forged header
                            raise InputError(f"{archive}: member {info.filename!r} unpacks to more than its declared {info.file_size} bytes; rebuild the zip")
                        dst.write(chunk)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
                raise InputError(f"{archive}: cannot unpack member {info.filename!r} ({_short(exc)}); rebuild the zip (deflate or store)") from None


@contextmanager
def _series_folder(path: Path) -> Iterator[tuple[Path, bool]]:
    """(folder to scan, is it an unpacked archive): the path itself, or a temporary folder holding the unpacked zip."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; pass a folder of DICOM slices or a .zip of them")
    if path.is_dir():
        yield path, False
        return
    if zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="radiogenomics-dicom-") as tmp:
            _extract_zip(path, Path(tmp))
            yield Path(tmp), True
        return
    try:
        kind = dicom_kind(path)
    except InputError:
        raise InputError(f"{path}: neither a folder nor a .zip of DICOM slices; pass the series folder or a zip of it") from None
    if kind in ("SEG", "RTSTRUCT"):
        raise InputError(f"{path}: is a {kind} (a mask), not an image series; pass the CT folder as the image and this file as the mask")
    raise InputError(f"{path}: a single {kind} slice; pass the folder that holds the whole series (or a .zip of it)")


def read_dicom_series(path: Path | str, series_uid: str | None = None, *, allow_nonuniform: bool = False) -> sitk.Image:
    """Read a DICOM image series (a folder of single-frame slices, or a .zip of one) into a 3-D image.

    Sub-folders are searched too. Non-DICOM files (README, hidden files, DICOMDIR) and non-image
    DICOM objects (SEG, RTSTRUCT, ...) beside the slices are skipped; a file that claims to be
    DICOM but is corrupt or truncated is an error naming it. With several series present,
    `series_uid` picks one (else the error lists them). Voxel values are the stored values after
    rescale slope/intercept (HU for CT), as SimpleITK/GDCM returns them.

    Slices must be evenly spaced (within SPACING_TOLERANCE) and stacked along their normal: a gap
    means a missing slice and would silently give radiomic features a wrong z-spacing. With
    `allow_nonuniform=True` an uneven stack is read with SimpleITK's averaged spacing; masks then
    still land on the right slices through the SOPInstanceUIDs recorded under SOP_UIDS_KEY.
    """
    path = Path(path)
    shown_root = str(path)
    with _series_folder(path) as (folder, archive):
        series, others = _scan(folder, shown_root, archive)
        if not series:
            found = f" (found only {', '.join(sorted(set(others)))})" if others else ""
            raise InputError(f"{shown_root}: no DICOM image slices{found}; pass the folder (or zip) that holds the CT slices")
        if series_uid is None:
            if len(series) > 1:
                listed = [f"{uid} ({len(s)} {s[0].modality} slice{'s' if len(s) > 1 else ''})" for uid, s in sorted(series.items())]
                raise InputError(f"{shown_root}: {len(series)} series found: {_first(listed)}; choose one with series_uid")
            series_uid = next(iter(series))
        elif series_uid not in series:
            raise InputError(f"{shown_root}: no series {series_uid!r}; found: {_first(sorted(series))}; pass one of these as series_uid")
        slices = _ordered(series[series_uid], shown_root, allow_nonuniform)
        image = _execute([s.path for s in slices], {s.path: s.shown for s in slices}, shown_root)
    if image.GetDimension() != 3 or image.GetSize()[2] != len(slices):
        raise InputError(f"{shown_root}: SimpleITK read {image.GetSize()} voxels from {len(slices)} slices; re-export the series as single-frame slices")
    image.SetMetaData(SERIES_UID_KEY, series_uid)
    image.SetMetaData(MODALITY_KEY, slices[0].modality)
    if slices[0].frame_of_reference:
        image.SetMetaData(FRAME_OF_REFERENCE_KEY, slices[0].frame_of_reference)
    if all(s.sop_uid for s in slices):
        image.SetMetaData(SOP_UIDS_KEY, "\\".join(s.sop_uid for s in slices))
    return image


# ----------------------------------------------------------------------------------------------
# Masks: shared helpers


def _check_reference(reference: sitk.Image, path: Path) -> None:
    if not isinstance(reference, sitk.Image) or reference.GetDimension() != 3:
        raise InputError(f"{path}: the reference must be a 3-D SimpleITK image (the CT from read_dicom_series); got {type(reference).__name__}")


def _slice_index_by_uid(reference: sitk.Image) -> dict[str, int]:
    """SOPInstanceUID -> slice index, from read_dicom_series' metadata ({} when absent or stale)."""
    if not reference.HasMetaDataKey(SOP_UIDS_KEY):
        return {}
    uids = reference.GetMetaData(SOP_UIDS_KEY).split("\\")
    if len(uids) != reference.GetSize()[2]:  # the image was cropped or resampled since: don't trust it
        return {}
    return {uid: k for k, uid in enumerate(uids)}


def _check_association(path: Path, reference: sitk.Image, own_for: str, referenced_uids: set[str], what: str) -> None:
    """Refuse a mask drawn on another patient/scan: a different frame of reference and no shared slice."""
    if not reference.HasMetaDataKey(FRAME_OF_REFERENCE_KEY) or not own_for:
        return
    ref_for = reference.GetMetaData(FRAME_OF_REFERENCE_KEY)
    if own_for != ref_for and not referenced_uids & set(_slice_index_by_uid(reference)):
        raise InputError(
            f"{path}: {what} is on frame of reference {own_for} but the image is on {ref_for} and no referenced slice is in it; "
            "pass the CT series the mask was drawn on"
        )


def _mask_image(mask: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(reference)
    return image


def _uids(items: Iterable[Dataset] | None) -> set[str]:
    return {str(item.ReferencedSOPInstanceUID) for item in (items or []) if "ReferencedSOPInstanceUID" in item}


# ----------------------------------------------------------------------------------------------
# DICOM-SEG


def _choose_segment(path: Path, segments: dict[int, str], segment: int | str | None) -> int:
    listed = [f"{n}: {label!r}" for n, label in sorted(segments.items())]
    if segment is None:
        if len(segments) == 1:
            return next(iter(segments))
        raise InputError(f"{path}: {len(segments)} segments ({_first(listed, 10)}); choose one by number or label")
    if isinstance(segment, bool) or not isinstance(segment, (int, str)):
        raise InputError(f"{path}: segment must be a number or a label, got {segment!r}; segments: {_first(listed, 10)}")
    if isinstance(segment, int):
        if segment in segments:
            return segment
        raise InputError(f"{path}: no segment number {segment}; segments: {_first(listed, 10)}")
    exact = [n for n, label in segments.items() if label == segment]
    if not exact and segment.strip().isdigit() and int(segment) in segments:
        return int(segment)
    loose = exact or [n for n, label in segments.items() if label.strip().lower() == segment.strip().lower()]
    if len(loose) == 1:
        return loose[0]
    if len(loose) > 1:
        raise InputError(f"{path}: several segments are labelled {segment!r} ({', '.join(map(str, sorted(loose)))}); choose one by number")
    raise InputError(f"{path}: no segment labelled {segment!r}; segments: {_first(listed, 10)}")


def _frame_item(ds: Dataset, frame: Dataset, sequence: str) -> Dataset | None:
    """A functional-group item: the frame's own, else the shared one."""
    if sequence in frame and len(frame[sequence].value):
        return frame[sequence].value[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0] and len(shared[0][sequence].value):
        return shared[0][sequence].value[0]
    return None


def _frame_source_uids(frame: Dataset) -> set[str]:
    return {uid for item in frame.get("DerivationImageSequence", []) or [] for uid in _uids(item.get("SourceImageSequence"))}


def read_seg_mask(path: Path | str, reference: sitk.Image, segment: int | str | None = None) -> sitk.Image:
    """One segment of a DICOM-SEG object as a uint8 mask (1 inside) on the reference image's grid.

    `segment` is a SegmentNumber or a SegmentLabel (exact, else case-insensitive if unique); None
    takes the only segment. Each frame of the segment goes to the reference slice whose
    SOPInstanceUID it references (its DerivationImageSequence), else to the slice at its
    ImagePositionPatient; its pixels must lie on the reference's in-plane grid (same rows,
    columns, pixel spacing, orientation and origin), since a SEG is drawn on its source slices.

    BINARY frames are 0/1. FRACTIONAL frames (PROBABILITY or OCCUPANCY) are thresholded: a voxel is
    inside where its value >= FRACTIONAL_THRESHOLD (0.5) x MaximumFractionalValue, i.e. at least
    half probable / half occupied. An empty result is an error (pyradiomics cannot use it).
    """
    path = Path(path)
    _check_reference(reference, path)
    ds = _read_object(path, "SEG", "a DICOM-SEG")
    with _malformed(str(path), "DICOM-SEG"):
        return _seg_mask(path, ds, reference, segment)


def seg_segment(path: Path | str, segment: int | str | None = None) -> tuple[int, str]:
    """The (number, label) of the segment `read_seg_mask` would take for `segment` (same rules, same errors)."""
    path = Path(path)
    ds = _read_object(path, "SEG", "a DICOM-SEG")
    with _malformed(str(path), "DICOM-SEG"):
        segments = {int(item.SegmentNumber): str(item.get("SegmentLabel", "") or "") for item in ds.get("SegmentSequence", []) or []}
        if not segments:
            raise InputError(f"{path}: the SEG lists no segments (empty SegmentSequence); re-export it")
        number = _choose_segment(path, segments, segment)
    return number, segments[number]


def _seg_mask(path: Path, ds: Dataset, reference: sitk.Image, segment: int | str | None) -> sitk.Image:
    seg_type = str(ds.get("SegmentationType", "") or "").upper()
    if seg_type not in ("BINARY", "FRACTIONAL"):
        raise InputError(f"{path}: SegmentationType {seg_type or 'missing'} is not supported; export the SEG as BINARY or FRACTIONAL")
    segments = {int(item.SegmentNumber): str(item.get("SegmentLabel", "") or "") for item in ds.get("SegmentSequence", []) or []}
    if not segments:
        raise InputError(f"{path}: the SEG lists no segments (empty SegmentSequence); re-export it")
    number = _choose_segment(path, segments, segment)
    label = segments[number]

    frames = list(ds.get("PerFrameFunctionalGroupsSequence", []) or [])
    mine = []
    for i, frame in enumerate(frames):
        ident = _frame_item(ds, frame, "SegmentIdentificationSequence")
        if ident is None:
            raise InputError(f"{path}: frame {i + 1} does not say which segment it belongs to; the SEG is malformed, re-export it")
        if int(ident.ReferencedSegmentNumber) == number:
            mine.append(i)
    if not mine:
        raise InputError(f"{path}: segment {number} ({label!r}) has no frames (it is empty); choose another segment")
    _check_association(path, reference, str(ds.get("FrameOfReferenceUID", "") or ""),
                       {u for i in mine for u in _frame_source_uids(frames[i])}, "the SEG")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if len(frames) != n_frames:
        raise InputError(
            f"{path}: PerFrameFunctionalGroupsSequence has {len(frames)} items but NumberOfFrames is {n_frames}; the SEG is malformed, re-export it"
        )

    nx, ny, nz = reference.GetSize()
    rows, cols = int(ds.Rows), int(ds.Columns)
    if (cols, rows) != (nx, ny):
        raise InputError(f"{path}: SEG frames are {rows}x{cols} pixels but the image slices are {ny}x{nx}; pass the CT series the SEG was drawn on")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = np.asarray(ds.pixel_array).reshape(n_frames, rows, cols)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad or undecodable pixel data
        raise InputError(f"{path}: cannot decode the SEG pixel data ({_short(exc)}); re-export it uncompressed") from None
    if seg_type == "FRACTIONAL":
        maximum = float(ds.get("MaximumFractionalValue", 0) or 0)
        if maximum <= 0:
            raise InputError(f"{path}: FRACTIONAL SEG without a positive MaximumFractionalValue; re-export it")
        inside = pixels[mine] >= FRACTIONAL_THRESHOLD * maximum
    else:
        inside = pixels[mine] > 0

    by_uid = _slice_index_by_uid(reference)
    direction = np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
    spacing = reference.GetSpacing()
    mask = np.zeros((nz, ny, nx), dtype=bool)
    placed: dict[int, int] = {}  # slice -> frame: a CT segment has at most one frame per slice
    for frame_mask, i in zip(inside, mine):
        frame = frames[i]
        where = f"{path}: frame {i + 1} (segment {number})"
        measures = _frame_item(ds, frame, "PixelMeasuresSequence")
        if measures is not None and "PixelSpacing" in measures:
            row_mm, col_mm = (float(v) for v in measures.PixelSpacing)
            if not np.allclose((col_mm, row_mm), spacing[:2], rtol=1e-3):
                raise InputError(f"{where}: pixel spacing {row_mm}x{col_mm} mm differs from the image's {spacing[1]}x{spacing[0]} mm; pass the CT series the SEG was drawn on")
        plane = _frame_item(ds, frame, "PlaneOrientationSequence")
        if plane is not None and "ImageOrientationPatient" in plane:
            cosines = np.asarray([float(v) for v in plane.ImageOrientationPatient])
            if not (np.allclose(cosines[:3], direction[:, 0], atol=1e-3) and np.allclose(cosines[3:], direction[:, 1], atol=1e-3)):
                raise InputError(f"{where}: orientation {cosines.round(4).tolist()} differs from the image's; pass the CT series the SEG was drawn on")
        position_item = _frame_item(ds, frame, "PlanePositionSequence")
        index = None
        if position_item is not None and "ImagePositionPatient" in position_item:
            point = tuple(float(v) for v in position_item.ImagePositionPatient)
            index = reference.TransformPhysicalPointToContinuousIndex(point)
            if max(abs(index[0]), abs(index[1])) > SEG_SLICE_TOLERANCE:
                raise InputError(f"{where}: frame origin is {index[0]:.2f}, {index[1]:.2f} pixels off the image's; pass the CT series the SEG was drawn on")
        k = next((by_uid[u] for u in sorted(_frame_source_uids(frame)) if u in by_uid), None)
        if k is None:
            if index is None:
                raise InputError(f"{where}: neither a referenced slice of the image nor a position; pass the CT series the SEG was drawn on")
            k = int(round(index[2]))
            if abs(index[2] - k) > SEG_SLICE_TOLERANCE or not 0 <= k < nz:
                raise InputError(
                    f"{where}: lies at slice position {index[2]:.2f}, not on a slice of the image (0..{nz - 1}); "
                    "pass the CT series the SEG was drawn on"
                )
        if k in placed:
            raise InputError(
                f"{where}: lands on slice {k} like frame {placed[k] + 1}; the image's slice positions do not match the SEG's "
                "(an unevenly spaced image without its slice UIDs?); pass the image as read by read_dicom_series"
            )
        placed[k] = i
        mask[k] |= frame_mask
    if not mask.any():
        raise InputError(f"{path}: segment {number} ({label!r}) has no voxel inside; choose another segment")
    return _mask_image(mask, reference)


# ----------------------------------------------------------------------------------------------
# RTSTRUCT


def _choose_roi(path: Path, rois: dict[int, str], roi_name: str) -> int:
    exact = [n for n, name in rois.items() if name == roi_name]
    loose = exact or [n for n, name in rois.items() if name.strip().lower() == str(roi_name).strip().lower()]
    if len(loose) == 1:
        return loose[0]
    names = sorted({repr(name) for name in rois.values()})
    if len(loose) > 1:
        raise InputError(f"{path}: {len(loose)} ROIs are named {roi_name!r} (numbers {', '.join(map(str, sorted(loose)))}); rename one in the planning system")
    raise InputError(f"{path}: no ROI named {roi_name!r}; ROIs: {_first(names, 20)}")


def _contour_points(path: Path, contour: Dataset, roi_name: str) -> np.ndarray:
    try:
        points = np.asarray([float(v) for v in contour.ContourData], dtype=float)
    except (AttributeError, TypeError, ValueError, KeyError):
        raise InputError(f"{path}: ROI {roi_name!r} has a contour without readable ContourData; re-export the RTSTRUCT") from None
    if points.size % 3:
        raise InputError(f"{path}: ROI {roi_name!r} has a contour with {points.size} coordinates (not x,y,z triples); re-export the RTSTRUCT")
    return points.reshape(-1, 3)


def _fill(polygon: np.ndarray, nx: int, ny: int) -> tuple[slice, slice, np.ndarray] | None:
    """Pixels whose centres lie inside the polygon (continuous indices i, j), within its bounding box."""
    lo = np.maximum(np.ceil(polygon.min(axis=0)), 0).astype(int)
    hi = np.minimum(np.floor(polygon.max(axis=0)), [nx - 1, ny - 1]).astype(int)
    if np.any(hi < lo):
        return None
    jj, ii = np.mgrid[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1]
    inside = PolygonPath(polygon).contains_points(np.column_stack([ii.ravel(), jj.ravel()]))
    return slice(lo[1], hi[1] + 1), slice(lo[0], hi[0] + 1), inside.reshape(ii.shape)


def read_rtstruct_mask(path: Path | str, reference: sitk.Image, roi_name: str) -> sitk.Image:
    """One ROI of an RTSTRUCT rasterised as a uint8 mask (1 inside) on the reference image's grid.

    `roi_name` is matched exactly, else case-insensitively if that is unique. Each CLOSED_PLANAR
    contour is converted from patient coordinates (mm) to continuous voxel indices with
    TransformPhysicalPointToContinuousIndex and filled on its slice: the slice whose SOPInstanceUID
    it references (ContourImageSequence), else the nearest slice to its position. A pixel is inside
    when its centre is inside the polygon; contours on one slice combine by the even-odd rule
    (XOR), so holes drawn as inner contours are cut out. POINT and OPEN contours have no area and
    are ignored. Contours off the image's slice range are an error (the mask would be clipped);
    in-plane, polygons are clipped to the image.
    """
    path = Path(path)
    _check_reference(reference, path)
    ds = _read_object(path, "RTSTRUCT", "an RTSTRUCT")
    with _malformed(str(path), "RTSTRUCT"):
        return _rtstruct_mask(path, ds, reference, roi_name)


def _rtstruct_mask(path: Path, ds: Dataset, reference: sitk.Image, roi_name: str) -> sitk.Image:
    roi_items = list(ds.get("StructureSetROISequence", []) or [])
    rois = {int(item.ROINumber): str(item.get("ROIName", "") or "") for item in roi_items}
    if not rois:
        raise InputError(f"{path}: the RTSTRUCT defines no ROIs (empty StructureSetROISequence); export it with its structures")
    number = _choose_roi(path, rois, roi_name)
    name = rois[number]
    contours = [
        contour
        for item in ds.get("ROIContourSequence", []) or []
        if int(item.get("ReferencedROINumber", -1)) == number
        for contour in (item.get("ContourSequence", []) or [])
    ]
    if not contours:
        raise InputError(f"{path}: ROI {name!r} has no contours; draw it, or choose another ROI")
    closed = [c for c in contours if str(c.get("ContourGeometricType", "")).upper() == "CLOSED_PLANAR"]
    if not closed:
        kinds = sorted({str(c.get("ContourGeometricType", "?")) for c in contours})
        raise InputError(f"{path}: ROI {name!r} has only {', '.join(kinds)} contours, no closed outline to fill; choose a ROI drawn as a closed contour")
    roi_for = next((str(item.get("ReferencedFrameOfReferenceUID", "") or "") for item in roi_items if int(item.ROINumber) == number), "")
    referenced = {u for c in closed for u in _uids(c.get("ContourImageSequence"))}
    _check_association(path, reference, roi_for, referenced, f"ROI {name!r}")

    nx, ny, nz = reference.GetSize()
    by_uid = _slice_index_by_uid(reference)
    mask = np.zeros((nz, ny, nx), dtype=bool)
    outside = 0
    for contour in closed:
        points = _contour_points(path, contour, name)
        if len(points) < 3:
            continue  # fewer than 3 points enclose no area
        index = np.array([reference.TransformPhysicalPointToContinuousIndex(p) for p in points.tolist()])
        k = next((by_uid[u] for u in sorted(_uids(contour.get("ContourImageSequence"))) if u in by_uid), None)
        if k is None:
            k = int(round(float(index[:, 2].mean())))
            if np.ptp(index[:, 2]) > 0.5:
                raise InputError(f"{path}: ROI {name!r} has a contour that is not in the image's slice plane (oblique?); resample the image to the contours' plane")
            if not 0 <= k < nz:
                outside += 1
                continue
        filled = _fill(index[:, :2], nx, ny)
        if filled is not None:
            rows, cols, inside = filled
            mask[k, rows, cols] ^= inside
    if outside:
        origin_z = reference.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, 0.0))[2]
        last_z = reference.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, float(nz - 1)))[2]
        raise InputError(
            f"{path}: {outside} of {len(closed)} contours of ROI {name!r} lie outside the image's slices "
            f"(z {min(origin_z, last_z):.2f} to {max(origin_z, last_z):.2f} mm); pass the whole CT series the RTSTRUCT was drawn on"
        )
    if not mask.any():
        raise InputError(f"{path}: ROI {name!r} covers no voxel centre of the image (outside it or smaller than a voxel); pass the CT series it was drawn on")
    return _mask_image(mask, reference)
