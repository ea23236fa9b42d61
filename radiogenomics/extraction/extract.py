"""Radiomic feature extraction with pyradiomics, with input checks and provenance.

The features are exactly pyradiomics' (we call its extractor; nothing is recomputed). Before
calling it we check what pyradiomics would reject less clearly: the voxel limit, a mask that is
not a label map, an empty mask or a label that is not in it, and an image/mask geometry mismatch
(which property and by how much). Any remaining pyradiomics ValueError is passed on as a
one-line InputError.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from radiogenomics.errors import InputError, LimitExceeded
from radiogenomics.extraction.params import ExtractionParams

DEFAULT_GEOMETRY_TOLERANCE = 1e-5  # mm (origin, spacing) and unitless (direction cosines)


class VolumeTooLarge(LimitExceeded):
    """The image exceeds the configured voxel limit (a resource limit, not malformed input)."""


@dataclass(frozen=True)
class Provenance:
    """Where a feature vector came from: enough to reproduce it."""

    pyradiomics_version: str
    params_hash: str
    params_source: str
    image_hash: str  # SHA-1 of the image voxels, as pyradiomics' diagnostics report it
    mask_hash: str
    label: int
    voxel_count: int  # voxels in the ROI
    image_size: tuple[int, ...]
    image_spacing: tuple[float, ...]
    seconds: float


@dataclass(frozen=True)
class Extraction:
    """Features by pyradiomics name, provenance, and pyradiomics' own diagnostics (as text)."""

    features: dict[str, float]
    provenance: Provenance
    diagnostics: dict[str, str] = field(default_factory=dict)

    def row(self) -> dict[str, object]:
        """A flat record for CSV output: features, then provenance columns prefixed `provenance_`."""
        prov = {f"provenance_{k}": (str(v) if isinstance(v, tuple) else v) for k, v in asdict(self.provenance).items()}
        return {**self.features, **prov}


def _check_geometry(image: sitk.Image, mask: sitk.Image, tolerance: float) -> None:
    if image.GetDimension() != mask.GetDimension():
        raise InputError(f"image/mask geometry mismatch: image is {image.GetDimension()}-D, mask is {mask.GetDimension()}-D")
    if image.GetSize() != mask.GetSize():
        raise InputError(f"image/mask geometry mismatch: size differs (image {image.GetSize()}, mask {mask.GetSize()}); "
                         "resample the mask onto the image grid or set correctMask: true")
    for name, a, b in (
        ("spacing", image.GetSpacing(), mask.GetSpacing()),
        ("origin", image.GetOrigin(), mask.GetOrigin()),
        ("direction", image.GetDirection(), mask.GetDirection()),
    ):
        diff = float(np.max(np.abs(np.subtract(a, b))))
        if diff > tolerance:
            fmt = (lambda v: "(" + ", ".join(f"{x:.6g}" for x in v) + ")")
            raise InputError(
                f"image/mask geometry mismatch: {name} differs by up to {diff:.6g}{' mm' if name != 'direction' else ''} "
                f"(image {fmt(a)}, mask {fmt(b)}; tolerance {tolerance:g}); resample the mask onto the image grid or set correctMask: true"
            )


def _mask_labels(mask: sitk.Image) -> np.ndarray:
    values = sitk.GetArrayViewFromImage(mask)
    if np.issubdtype(values.dtype, np.floating):
        fractional = values[(values != np.round(values)) & np.isfinite(values)]
        if fractional.size:
            raise InputError(
                f"mask is not a label map: {fractional.size} voxels have non-integer values (e.g. {float(fractional[0]):.3g}); "
                "threshold a probability/fractional mask into a binary label image first"
            )
    return np.unique(values[values != 0]).astype(np.int64)  # unique over the ROI only: masks are mostly 0


def choose_label(mask: sitk.Image, label: int | None, default: int | None = None) -> int:
    """The ROI label: the requested one (must be present), else the only one in the mask."""
    labels = _mask_labels(mask)
    if labels.size == 0:
        raise InputError("mask is empty: no voxel is labelled; send the tumour segmentation")
    wanted = label if label is not None else default
    if wanted is not None:
        if wanted not in labels:
            raise InputError(f"label {wanted} is not in the mask (labels present: {', '.join(map(str, labels[:20]))}); choose one of them")
        return int(wanted)
    if labels.size > 1:
        raise InputError(f"mask has several labels ({', '.join(map(str, labels[:20]))}); choose one with label")
    return int(labels[0])


MAX_GRAY_LEVELS = 4096  # texture matrices grow with the square of the gray levels


def _check_cost(image: sitk.Image, mask: sitk.Image, label: int, settings: dict, max_voxels: int | None) -> None:
    """Refuse settings whose work pyradiomics would size from the settings, not the upload.

    Resampling to a fine `resampledPixelSpacing` multiplies the voxels of the region (the voxel
    limit must hold after resampling), and a tiny `binWidth` (or a huge `binCount`) makes texture
    matrices with billions of cells; both would exhaust a replica's memory.
    """
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.Execute(sitk.Cast(mask, sitk.sitkUInt32) == label)
    if not shape.HasLabel(1):
        return
    box = shape.GetBoundingBox(1)
    dims = len(box) // 2
    spacing = mask.GetSpacing()
    resampled = settings.get("resampledPixelSpacing")
    if max_voxels is not None and resampled and any(float(v or 0) > 0 for v in resampled):
        pad = int(settings.get("padDistance", 5) or 0)
        new = [float(v) if float(v or 0) > 0 else spacing[i] for i, v in enumerate(list(resampled)[:dims])]
        voxels = float(np.prod([box[dims + i] * spacing[i] / new[i] + 2 * pad + 1 for i in range(dims)]))
        if voxels > max_voxels:
            raise VolumeTooLarge(f"setting.resampledPixelSpacing {list(resampled)} resamples the region to about "
                                 f"{voxels:,.0f} voxels, over the limit of {max_voxels:,}; use a coarser spacing")
    pixels, roi = sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(mask)
    if pixels.shape != roi.shape:  # pyradiomics will resample the mask (correctMask); judge on the whole image
        values = pixels.ravel()
    else:
        values = pixels[roi == label]
    if settings.get("binCount") is not None:
        levels = float(settings["binCount"])
    else:
        width = float(settings.get("binWidth", 25) or 25)
        levels = (float(values.max()) - float(values.min())) / width if values.size and width > 0 else 0.0
    if levels > MAX_GRAY_LEVELS:
        raise LimitExceeded(f"the settings give {levels:,.0f} gray levels in the region, over the limit of "
                            f"{MAX_GRAY_LEVELS:,}; use a larger setting.binWidth or a smaller binCount")


def extract_features(
    image: sitk.Image,
    mask: sitk.Image,
    params: ExtractionParams,
    *,
    label: int | None = None,
    max_voxels: int | None = None,
) -> Extraction:
    """Extract pyradiomics features for one ROI, after checking the inputs."""
    import radiomics

    start = time.perf_counter()
    if max_voxels is not None and image.GetNumberOfPixels() > max_voxels:
        raise VolumeTooLarge(
            f"image has {image.GetNumberOfPixels():,} voxels, over the limit of {max_voxels:,}; crop the volume around the tumour"
        )
    settings = params.settings
    chosen = choose_label(mask, label, settings.get("label"))
    if not settings.get("correctMask", False):
        _check_geometry(image, mask, float(settings.get("geometryTolerance") or DEFAULT_GEOMETRY_TOLERANCE))
    _check_cost(image, mask, chosen, settings, max_voxels)
    extractor = params.extractor()
    try:
        result = extractor.execute(image, mask, label=chosen)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"pyradiomics refused the input: {' '.join(str(exc).split())}") from None
    features = {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}
    diagnostics = {k: str(v) for k, v in result.items() if k.startswith("diagnostics_")}
    provenance = Provenance(
        pyradiomics_version=str(radiomics.__version__),
        params_hash=params.hash,
        params_source=params.source,
        image_hash=diagnostics.get("diagnostics_Image-original_Hash") or sitk.Hash(image),
        mask_hash=diagnostics.get("diagnostics_Mask-original_Hash") or sitk.Hash(mask),
        label=chosen,
        voxel_count=int(float(diagnostics.get("diagnostics_Mask-original_VoxelNum", 0))),
        image_size=tuple(int(s) for s in image.GetSize()),
        image_spacing=tuple(float(s) for s in image.GetSpacing()),
        seconds=round(time.perf_counter() - start, 6),
    )
    return Extraction(features=features, provenance=provenance, diagnostics=diagnostics)


def extract_files(
    image_path: str,
    mask_path: str,
    params: ExtractionParams,
    *,
    image_format: str | None = None,
    mask_format: str | None = None,
    label: int | None = None,
    roi: str | None = None,
    segment: int | str | None = None,
    max_voxels: int | None = None,
) -> Extraction:
    """Read an image and a mask from files and extract their features."""
    from radiogenomics.extraction.volumes import read_image, read_mask

    image = read_image(image_path, image_format)
    mask = read_mask(mask_path, image, mask_format, roi=roi, segment=segment)
    return extract_features(image, mask, params, label=label, max_voxels=max_voxels)
