"""DICOM input: CT series (folder and zip), DICOM-SEG and RTSTRUCT masks, on real files only.

Ground truth: the IBSI validation case STS_019 (47-slice CT + RTSTRUCT, converted to NIfTI by the
IBSI with MIRP), highdicom's SEG test objects on 4 pydicom CT slices, rt-utils' mock RTSTRUCT,
and pydicom's test files for bad input.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from radiogenomics.errors import InputError
from radiogenomics.extraction.dicom import (
    FRAME_OF_REFERENCE_KEY,
    SERIES_UID_KEY,
    SOP_UIDS_KEY,
    dicom_kind,
    read_dicom_series,
    read_rtstruct_mask,
    read_seg_mask,
)

IBSI = Path("ibsi") / "validation_STS_019"
SEG_DIR = Path("dicom") / "highdicom_seg"
RT_MOCK = Path("dicom") / "rt_utils_mock"
PYDICOM = Path("dicom") / "pydicom_test_files"
CT2_SOP = "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0."  # + 93..96, the 4 highdicom source slices


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)  # z, y, x


def _per_slice(mask: sitk.Image) -> list[int]:
    return _array(mask).sum(axis=(1, 2)).tolist()


def _assert_same_grid(a: sitk.Image, b: sitk.Image, atol: float = 1e-6) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=atol)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-9)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _link_folder(folder: Path, files: list[Path]) -> Path:
    """A folder of symbolic links to real files (no copies of the reference data)."""
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder


def _one_line(exc: pytest.ExceptionInfo[InputError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def ibsi_ct(shared: Path) -> sitk.Image:
    return read_dicom_series(shared / IBSI / "dicom" / "CT" / "image")


@pytest.fixture(scope="module")
def ct2(shared: Path) -> sitk.Image:
    """The 4 CT slices the highdicom SEGs were made on: 1 slice at z=-99.48, then 3 at 1.25 mm steps."""
    return read_dicom_series(shared / SEG_DIR / "source_ct_CT2", allow_nonuniform=True)


@pytest.fixture(scope="module")
def mock_ct(shared: Path) -> sitk.Image:
    return read_dicom_series(shared / RT_MOCK)


# ----------------------------------------------------------------------------------------------
# CT series


def test_series_matches_ibsi_nifti_exactly(shared: Path, ibsi_ct: sitk.Image) -> None:
    nifti = sitk.ReadImage(str(shared / IBSI / "nifti" / "CT_image.nii.gz"))
    assert ibsi_ct.GetSize() == (136, 134, 47)
    assert ibsi_ct.GetPixelID() == sitk.sitkInt16
    _assert_same_grid(ibsi_ct, nifti, atol=1e-4)
    ours, theirs = _array(ibsi_ct), _array(nifti)
    assert np.array_equal(ours.astype(np.float32), theirs)  # HU, voxel for voxel
    assert int(ours.min()) == int(theirs.min()) and int(ours.max()) == int(theirs.max())


def test_series_records_uids_in_slice_order(shared: Path, ibsi_ct: sitk.Image) -> None:
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in (shared / IBSI / "dicom" / "CT" / "image").glob("*.dcm")]
    by_z = sorted(headers, key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert ibsi_ct.GetMetaData(SOP_UIDS_KEY).split("\\") == [str(ds.SOPInstanceUID) for ds in by_z]
    assert ibsi_ct.GetMetaData(SERIES_UID_KEY) == str(by_z[0].SeriesInstanceUID)
    assert ibsi_ct.GetMetaData(FRAME_OF_REFERENCE_KEY) == str(by_z[0].FrameOfReferenceUID)
    np.testing.assert_allclose(ibsi_ct.GetOrigin(), [float(v) for v in by_z[0].ImagePositionPatient], atol=1e-6)


def test_series_from_zip_equals_folder(shared: Path, tmp_path: Path, ibsi_ct: sitk.Image) -> None:
    archive = tmp_path / "sts_019.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted((shared / IBSI / "dicom" / "CT" / "image").glob("*.dcm")):
            zf.write(f, f"STS_019/CT/{f.name}")  # slices in a sub-folder, as exports do
        zf.writestr("STS_019/README.txt", "exported slices")  # a non-DICOM side file is skipped
    image = read_dicom_series(archive)
    _assert_same_grid(image, ibsi_ct)
    assert np.array_equal(_array(image), _array(ibsi_ct))
    assert image.GetMetaData(SOP_UIDS_KEY) == ibsi_ct.GetMetaData(SOP_UIDS_KEY)


def test_series_skips_rtstruct_and_licence_beside_slices(mock_ct: sitk.Image) -> None:
    # rt_utils_mock holds ct_1.dcm, ct_2.dcm, rt.dcm (RTSTRUCT) and a licence text file.
    assert mock_ct.GetSize() == (512, 512, 2)
    np.testing.assert_allclose(mock_ct.GetSpacing(), (0.488281, 0.488281, 5.0), atol=1e-6)
    np.testing.assert_allclose(mock_ct.GetOrigin(), (-125.0, -125.0, 60.0), atol=1e-6)


def test_several_series_need_a_uid(shared: Path, tmp_path: Path) -> None:
    folder = _link_folder(tmp_path / "mixed", [shared / RT_MOCK / "ct_1.dcm", shared / RT_MOCK / "ct_2.dcm", shared / PYDICOM / "CT_small.dcm"])
    mock_uid = str(pydicom.dcmread(shared / RT_MOCK / "ct_1.dcm", stop_before_pixels=True).SeriesInstanceUID)
    small_uid = str(pydicom.dcmread(shared / PYDICOM / "CT_small.dcm", stop_before_pixels=True).SeriesInstanceUID)
    with pytest.raises(InputError, match="2 series found") as exc:
        read_dicom_series(folder)
    assert mock_uid in _one_line(exc) and small_uid in _one_line(exc) and "series_uid" in _one_line(exc)
    assert read_dicom_series(folder, series_uid=mock_uid).GetSize() == (512, 512, 2)
    small = read_dicom_series(folder, series_uid=small_uid)
    assert small.GetSize() == (128, 128, 1)
    ds = pydicom.dcmread(shared / PYDICOM / "CT_small.dcm")
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    assert np.array_equal(_array(small)[0], ds.pixel_array.astype(np.int32) - 1024)  # stored values -> HU
    with pytest.raises(InputError, match=r"no series '1\.2\.3'.*found:"):
        read_dicom_series(folder, series_uid="1.2.3")


def test_uneven_slices_are_refused_unless_allowed(shared: Path, ct2: sitk.Image) -> None:
    with pytest.raises(InputError, match=r"not evenly spaced: gap of 202\.500 mm between 17106 and 17136.*allow_nonuniform"):
        read_dicom_series(shared / SEG_DIR / "source_ct_CT2")
    assert ct2.GetSize() == (16, 16, 4)
    assert ct2.GetMetaData(SOP_UIDS_KEY).split("\\") == [f"{CT2_SOP}{n}" for n in (93, 94, 95, 96)]


def test_truncated_and_corrupt_slices_are_named(shared: Path, tmp_path: Path) -> None:
    data = (shared / PYDICOM / "CT_small.dcm").read_bytes()
    for name, content, message in [
        ("half.dcm", data[: len(data) // 2], r"half\.dcm: truncated: pixel data has \d+ of 32768 bytes"),
        ("head.dcm", data[:300], r"head\.dcm: image slice without pixel data \(file truncated\?\)"),
        ("garbage.dcm", b"this is not a DICOM file\n" * 20, r"garbage\.dcm: not a DICOM file"),
    ]:
        folder = _link_folder(tmp_path / name.split(".")[0], [shared / RT_MOCK / "ct_1.dcm", shared / RT_MOCK / "ct_2.dcm"])
        (folder / name).write_bytes(content)
        with pytest.raises(InputError, match=message) as exc:
            read_dicom_series(folder)
        _one_line(exc)


def test_duplicate_slices_are_refused(shared: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dup"
    folder.mkdir()
    (folder / "a.dcm").symlink_to(shared / RT_MOCK / "ct_1.dcm")
    (folder / "b.dcm").symlink_to(shared / RT_MOCK / "ct_1.dcm")  # the same slice twice, as a re-sent export
    with pytest.raises(InputError, match=r"b\.dcm: same position as .*a\.dcm \(60\.000 mm along the slice normal\)"):
        read_dicom_series(folder)


def test_bad_series_inputs(shared: Path, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("no images here\n")
    cases = [
        (tmp_path / "missing", r"missing: no such file or folder"),
        (tmp_path / "notes", r"notes: no DICOM image slices"),
        (shared / PYDICOM / "CT_small.dcm", r"a single CT slice; pass the folder"),
        (shared / PYDICOM / "rtstruct.dcm", r"is a RTSTRUCT \(a mask\), not an image series"),
        (shared / PYDICOM / "README.txt", r"neither a folder nor a \.zip"),
    ]
    for path, message in cases:
        with pytest.raises(InputError, match=message) as exc:
            read_dicom_series(path)
        _one_line(exc)


def test_bad_zips(shared: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    text_only = tmp_path / "text.zip"
    with zipfile.ZipFile(text_only, "w") as zf:
        zf.writestr("README.txt", "no DICOM here")
    slip = tmp_path / "slip.zip"
    with zipfile.ZipFile(slip, "w") as zf:
        zf.write(shared / RT_MOCK / "ct_1.dcm", "ct_1.dcm")
        zf.write(shared / RT_MOCK / "ct_2.dcm", "../../outside.dcm")
    absolute = tmp_path / "absolute.zip"
    with zipfile.ZipFile(absolute, "w") as zf:
        zf.writestr(zipfile.ZipInfo("/tmp/evil.dcm"), b"x")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("series/ct_1.dcm")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 but not really a zip")
    for archive, message in [
        (empty, r"empty\.zip: the zip archive is empty"),
        (text_only, r"text\.zip: no DICOM image slices"),
        (slip, r"slip\.zip: member '\.\./\.\./outside\.dcm' points outside .*zip-slip"),
        (absolute, r"absolute\.zip: member '/tmp/evil\.dcm' points outside .*zip-slip"),
        (broken, r"broken\.zip: not a readable zip archive"),
        (link, r"link\.zip: member 'series/ct_1\.dcm' is a symbolic link"),
    ]:
        with pytest.raises(InputError, match=message) as exc:
            read_dicom_series(archive)
        _one_line(exc)
    assert not (tmp_path.parent / "outside.dcm").exists()


def test_corrupt_slice_inside_zip_is_named_by_member(shared: Path, tmp_path: Path) -> None:
    archive = tmp_path / "series.zip"
    data = (shared / PYDICOM / "CT_small.dcm").read_bytes()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(shared / RT_MOCK / "ct_1.dcm", "series/ct_1.dcm")
        zf.writestr("series/cut.dcm", data[:20000])
    with pytest.raises(InputError, match=r"series\.zip \(member series/cut\.dcm\): truncated"):
        read_dicom_series(archive)


def test_dicom_kind(shared: Path) -> None:
    assert dicom_kind(shared / PYDICOM / "CT_small.dcm") == "CT"
    assert dicom_kind(shared / PYDICOM / "MR_small.dcm") == "MR"
    assert dicom_kind(shared / PYDICOM / "liver_1frame.dcm") == "SEG"
    assert dicom_kind(shared / PYDICOM / "rtstruct.dcm") == "RTSTRUCT"  # no preamble, implicit VR
    assert dicom_kind(shared / RT_MOCK / "rt.dcm") == "RTSTRUCT"
    with pytest.raises(InputError, match=r"README\.txt: not a DICOM file"):
        dicom_kind(shared / PYDICOM / "README.txt")


# ----------------------------------------------------------------------------------------------
# DICOM-SEG


def _frames_by_slice(path: Path, segment: int) -> dict[str, int]:
    """Independent truth from pydicom: voxels per referenced source slice for one BINARY segment."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    out = {}
    for frame, fg in zip(pixels, ds.PerFrameFunctionalGroupsSequence):
        if int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber) == segment:
            uid = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            out[str(uid)] = int(frame.sum())
    return out


def test_binary_seg_lands_on_referenced_slices(shared: Path, ct2: sitk.Image) -> None:
    path = shared / SEG_DIR / "seg_image_ct_binary.dcm"
    mask = read_seg_mask(path, ct2)  # the only segment
    assert mask.GetPixelID() == sitk.sitkUInt8 and set(np.unique(_array(mask))) == {0, 1}
    _assert_same_grid(mask, ct2)
    # Frames reference slices .94-.96; the image's averaged z-spacing (68.3 mm) would put them all
    # on slice 3 by position, so this checks the SOPInstanceUID mapping.
    assert _per_slice(mask) == [0, 127, 256, 255]
    truth = _frames_by_slice(path, 1)
    assert [truth.get(f"{CT2_SOP}{n}", 0) for n in (93, 94, 95, 96)] == _per_slice(mask)


def test_overlapping_segments_by_number_and_label(shared: Path, ct2: sitk.Image) -> None:
    path = shared / SEG_DIR / "seg_image_ct_binary_overlap.dcm"
    first = _array(read_seg_mask(path, ct2, 1))
    second = _array(read_seg_mask(path, ct2, 2))
    assert first.sum(axis=(1, 2)).tolist() == [16, 16, 16, 16]
    assert second.sum(axis=(1, 2)).tolist() == [4, 4, 4, 4]
    assert not np.array_equal(first, second)
    assert int((first & second).sum()) > 0  # they overlap, as the file's name says
    assert np.array_equal(_array(read_seg_mask(path, ct2, "second segment")), second)
    assert np.array_equal(_array(read_seg_mask(path, ct2, "First Segment")), first)  # unique case-insensitive match
    assert np.array_equal(_array(read_seg_mask(path, ct2, "2")), second)  # a number given as text (e.g. from a form)
    truth = _frames_by_slice(path, 2)
    assert [truth[f"{CT2_SOP}{n}"] for n in (93, 94, 95, 96)] == [4, 4, 4, 4]


def test_fractional_seg_is_thresholded_at_half(shared: Path, ct2: sitk.Image) -> None:
    path = shared / SEG_DIR / "seg_image_ct_true_fractional.dcm"
    ds = pydicom.dcmread(path)
    assert ds.SegmentationType == "FRACTIONAL" and int(ds.MaximumFractionalValue) == 255
    values = ds.pixel_array
    assert sorted(np.unique(values).tolist()) == [0, 64, 128]  # 0, 0.25 and 0.50 probability
    mask = read_seg_mask(path, ct2)
    # 128/255 >= 0.5 is inside, 64/255 is not: the result equals the binary SEG of the same slices.
    assert _per_slice(mask) == [0, int((values[0] == 128).sum()), int((values[1] == 128).sum()), int((values[2] == 128).sum())]
    binary = read_seg_mask(shared / SEG_DIR / "seg_image_ct_binary.dcm", ct2)
    assert np.array_equal(_array(mask), _array(binary))


def test_seg_placed_by_position_without_uids(shared: Path, tmp_path: Path) -> None:
    """A reference without slice UIDs (e.g. from NIfTI): frames go by ImagePositionPatient."""
    folder = _link_folder(tmp_path / "ct3", [shared / SEG_DIR / "source_ct_CT2" / n for n in ("17136", "17166", "17196")])
    ct3 = read_dicom_series(folder)  # the 3 evenly spaced slices
    plain = sitk.GetImageFromArray(_array(ct3))
    plain.CopyInformation(ct3)
    assert not plain.HasMetaDataKey(SOP_UIDS_KEY)
    by_position = read_seg_mask(shared / SEG_DIR / "seg_image_ct_binary.dcm", plain)
    assert _per_slice(by_position) == [127, 256, 255]
    assert np.array_equal(_array(by_position), _array(read_seg_mask(shared / SEG_DIR / "seg_image_ct_binary.dcm", ct3)))
    # The overlap SEG also covers slice .93 (z=-99.48), which this image does not hold.
    with pytest.raises(InputError, match=r"frame 1 \(segment 1\): lies at slice position -162\.00, not on a slice of the image \(0\.\.2\)"):
        read_seg_mask(shared / SEG_DIR / "seg_image_ct_binary_overlap.dcm", ct3, 1)


def test_uneven_image_stripped_of_uids_is_caught(ct2: sitk.Image, shared: Path) -> None:
    plain = sitk.GetImageFromArray(_array(ct2))
    plain.CopyInformation(ct2)  # averaged 68.3 mm spacing, no slice UIDs: positions mislead
    with pytest.raises(InputError, match=r"frame 2 \(segment 1\): lands on slice 3 like frame 1"):
        read_seg_mask(shared / SEG_DIR / "seg_image_ct_binary.dcm", plain)


def test_seg_segment_errors(shared: Path, ct2: sitk.Image) -> None:
    path = shared / SEG_DIR / "seg_image_ct_binary_overlap.dcm"
    listing = r"1: 'first segment', 2: 'second segment'"
    for segment, message in [
        (None, rf"2 segments \({listing}\); choose one"),
        (3, rf"no segment number 3; segments: {listing}"),
        ("third segment", rf"no segment labelled 'third segment'; segments: {listing}"),
        (True, r"segment must be a number or a label"),
    ]:
        with pytest.raises(InputError, match=message) as exc:
            read_seg_mask(path, ct2, segment)
        _one_line(exc)


def test_seg_wrong_inputs(shared: Path, ct2: sitk.Image, mock_ct: sitk.Image) -> None:
    cases = [
        (shared / PYDICOM / "rtstruct.dcm", ct2, r"expected a DICOM-SEG, got RTSTRUCT; pass it as an RTSTRUCT mask with its ROI name \(read_rtstruct_mask\)"),
        (shared / PYDICOM / "MR_small.dcm", ct2, r"expected a DICOM-SEG, got MR"),
        (shared / PYDICOM / "README.txt", ct2, r"README\.txt: not a DICOM file"),
        (shared / PYDICOM / "liver_1frame.dcm", ct2, r"frame of reference .* pass the CT series the mask was drawn on"),
        (shared / SEG_DIR / "seg_image_ct_binary.dcm", mock_ct, r"frame of reference"),
        (shared / SEG_DIR / "source_ct_CT2", ct2, r"is a folder; pass the DICOM-SEG file itself"),
    ]
    for path, reference, message in cases:
        with pytest.raises(InputError, match=message) as exc:
            read_seg_mask(path, reference)
        _one_line(exc)
    with pytest.raises(InputError, match="reference must be a 3-D SimpleITK image"):
        read_seg_mask(shared / SEG_DIR / "seg_image_ct_binary.dcm", _array(ct2))  # type: ignore[arg-type]


def test_truncated_seg(shared: Path, tmp_path: Path, ct2: sitk.Image) -> None:
    data = (shared / SEG_DIR / "seg_image_ct_binary.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 60])  # the end of the bit-packed pixel data is missing
    with pytest.raises(InputError, match=r"cut\.dcm: cannot decode the SEG pixel data") as exc:
        read_seg_mask(cut, ct2)
    _one_line(exc)


def test_malformed_seg_is_an_input_error(shared: Path, tmp_path: Path, ct2: sitk.Image) -> None:
    ds = pydicom.dcmread(shared / SEG_DIR / "seg_image_ct_binary_overlap.dcm")
    del ds.PerFrameFunctionalGroupsSequence[5].SegmentIdentificationSequence[0].ReferencedSegmentNumber
    broken = tmp_path / "no_segment_number.dcm"
    ds.save_as(broken)
    with pytest.raises(InputError, match=r"no_segment_number\.dcm: malformed DICOM-SEG \(AttributeError: .*ReferencedSegmentNumber.*\); re-export it") as exc:
        read_seg_mask(broken, ct2, 2)
    _one_line(exc)


# ----------------------------------------------------------------------------------------------
# RTSTRUCT


def test_rtstruct_matches_ibsi_nifti_mask(shared: Path, ibsi_ct: sitk.Image) -> None:
    mask = read_rtstruct_mask(shared / IBSI / "dicom" / "CT" / "mask" / "RS.dcm", ibsi_ct, "GTV_Mass_CT")
    nifti = sitk.ReadImage(str(shared / IBSI / "nifti" / "CT_mask.nii.gz"))
    assert mask.GetPixelID() == sitk.sitkUInt8
    _assert_same_grid(mask, ibsi_ct)
    _assert_same_grid(mask, nifti, atol=1e-4)
    ours, theirs = _array(mask), _array(nifti)
    dice = _dice(ours, theirs)
    assert dice >= 0.95, dice
    assert int(theirs.sum()) == 5564 and abs(int(ours.sum()) - 5564) <= 0.05 * 5564
    assert np.flatnonzero(ours.any(axis=(1, 2))).tolist() == np.flatnonzero(theirs.any(axis=(1, 2))).tolist() == list(range(16, 31))
    assert np.array_equal(_array(read_rtstruct_mask(shared / IBSI / "dicom" / "CT" / "mask" / "RS.dcm", ibsi_ct, "gtv_mass_ct")), ours)


def test_rtstruct_inner_contour_is_a_hole(shared: Path, mock_ct: sitk.Image) -> None:
    """rt-utils' mock ROI: a 24 mm square with an inner 15 mm square (one corner cut) on z=60 mm.

    In voxel indices (origin -125 mm, 0.488281 mm pixels) the outer square spans 151.55..200.70,
    i.e. pixel centres 152..200 (49 x 49 = 2401); the inner one 159.74..190.46 (31 x 31 = 961)
    minus 3 centres cut off by its corner edge (i + j < 321.5): 958. Even-odd fill: 2401 - 958.
    """
    mask = _array(read_rtstruct_mask(shared / RT_MOCK / "rt.dcm", mock_ct, "ROI-1"))
    assert mask.sum(axis=(1, 2)).tolist() == [2401 - 958, 0]

    def at(x_mm: float, y_mm: float) -> int:
        i, j, k = mock_ct.TransformPhysicalPointToIndex((x_mm, y_mm, 60.0))
        return int(mask[k, j, i])

    assert at(-49, -49) == 1 and at(-29, -40) == 1  # in the ring
    assert at(-40, -40) == 0  # in the hole
    assert at(-60, -40) == 0 and at(0, 0) == 0  # outside


def test_rtstruct_errors(shared: Path, mock_ct: sitk.Image, ct2: sitk.Image) -> None:
    toy = shared / PYDICOM / "rtstruct.dcm"  # ROIs 'patient' (closed contours), 'Isocenter 1/2' (points)
    cases = [
        (shared / RT_MOCK / "rt.dcm", mock_ct, "GTV", r"rt\.dcm: no ROI named 'GTV'; ROIs: 'ROI-1'"),
        (toy, mock_ct, "Bladder", r"no ROI named 'Bladder'; ROIs: 'Isocenter 1', 'Isocenter 2', 'patient'"),
        (toy, mock_ct, "Isocenter 1", r"ROI 'Isocenter 1' has only POINT contours"),
        (toy, mock_ct, "patient", r"ROI 'patient' is on frame of reference .* pass the CT series the mask was drawn on"),
        (shared / SEG_DIR / "seg_image_ct_binary.dcm", ct2, "x", r"expected an RTSTRUCT, got SEG; pass it as a DICOM-SEG mask \(read_seg_mask\)"),
        (shared / PYDICOM / "MR_small.dcm", mock_ct, "x", r"expected an RTSTRUCT, got MR"),
        (shared / PYDICOM / "README.txt", mock_ct, "x", r"not a DICOM file"),
        (shared / RT_MOCK / "nope.dcm", mock_ct, "x", r"nope\.dcm: no such file"),
    ]
    for path, reference, roi, message in cases:
        with pytest.raises(InputError, match=message) as exc:
            read_rtstruct_mask(path, reference, roi)
        _one_line(exc)


def test_rtstruct_off_the_image_slices(shared: Path, tmp_path: Path, ibsi_ct: sitk.Image) -> None:
    """An image cropped in z (no slice UIDs to go by) cannot hold the whole ROI: refuse, don't clip."""
    cropped = ibsi_ct[:, :, 20:40]
    plain = sitk.GetImageFromArray(_array(cropped))
    plain.CopyInformation(cropped)
    with pytest.raises(InputError, match=r"4 of 15 contours of ROI 'GTV_Mass_CT' lie outside the image's slices"):
        read_rtstruct_mask(shared / IBSI / "dicom" / "CT" / "mask" / "RS.dcm", plain, "GTV_Mass_CT")


def test_malformed_contour_data(shared: Path, tmp_path: Path, mock_ct: sitk.Image) -> None:
    ds = pydicom.dcmread(shared / RT_MOCK / "rt.dcm")
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    contour.ContourData = list(contour.ContourData)[:-2]  # 10 coordinates: not x, y, z triples
    broken = tmp_path / "rt_bad.dcm"
    ds.save_as(broken)
    with pytest.raises(InputError, match=r"rt_bad\.dcm: ROI 'ROI-1' has a contour with 10 coordinates \(not x,y,z triples\)"):
        read_rtstruct_mask(broken, mock_ct, "ROI-1")
