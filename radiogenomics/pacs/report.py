"""Radiomic features as a DICOM SR measurement report (TID 1500, Comprehensive 3D SR), and back.

One measurement group per ROI:
- a DICOM-SEG segment: TID 1411 (volumetric ROI), referencing the segment and its source CT images;
- an RTSTRUCT ROI: TID 1501 (measurement group) naming the ROI, referencing the CT images; the
  RTSTRUCT itself is referenced as evidence (TID 1411 cannot point at an RTSTRUCT ROI).
Each feature is one numeric measurement, coded with its IBSI concept code (scheme `IBSI`) where the
pyradiomics feature is that IBSI feature (`feature_codes.py`), otherwise with its pyradiomics name in
the private scheme `99RGPYRAD`; units are UCUM. The value is stored as FloatingPointValue (a double,
exact) beside the decimal-string NumericValue. The algorithm (pyradiomics, its version, the parameter
hash and the label) is identified on every measurement (TID 4019). Non-finite values (NaN, which
pyradiomics gives for some features of tiny ROIs) have no DICOM number; they are left out and named
in the report's `omitted` list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radiogenomics.extraction.extract import Extraction
from radiogenomics.pacs.feature_codes import IBSI_CONCEPTS

IBSI_SCHEME = "IBSI"
PRIVATE_SCHEME = "99RGPYRAD"
ALGORITHM = "pyradiomics"
MANUFACTURER = "radiogenomics"
SERIES_DESCRIPTION = "Radiomic features (pyradiomics)"
_BY_IBSI_CODE = {code: name for name, (code, _) in IBSI_CONCEPTS.items()}

_UNITS = {
    "1": "no units", "mm": "millimeter", "mm2": "square millimeter", "mm3": "cubic millimeter", "/mm": "per millimeter",
    "[hnsf'U]": "Hounsfield unit", "[hnsf'U]2": "Hounsfield unit squared",
    "[hnsf'U]2.mm3": "Hounsfield unit squared cubic millimeter", "[arb'U]": "arbitrary unit",
}
_SHAPE_UNITS = {"MeshVolume": "mm3", "VoxelVolume": "mm3", "SurfaceArea": "mm2", "SurfaceVolumeRatio": "/mm",
                "Maximum3DDiameter": "mm", "Maximum2DDiameterSlice": "mm", "Maximum2DDiameterColumn": "mm",
                "Maximum2DDiameterRow": "mm", "MajorAxisLength": "mm", "MinorAxisLength": "mm", "LeastAxisLength": "mm",
                "Perimeter": "mm", "PixelSurface": "mm2", "PerimeterSurfaceRatio": "/mm", "MaximumDiameter": "mm"}
_INTENSITY_UNITS = {"10Percentile": "[hnsf'U]", "90Percentile": "[hnsf'U]", "Maximum": "[hnsf'U]", "Mean": "[hnsf'U]",
                    "Median": "[hnsf'U]", "Minimum": "[hnsf'U]", "Range": "[hnsf'U]", "InterquartileRange": "[hnsf'U]",
                    "MeanAbsoluteDeviation": "[hnsf'U]", "RobustMeanAbsoluteDeviation": "[hnsf'U]",
                    "RootMeanSquared": "[hnsf'U]", "Energy": "[hnsf'U]2", "Variance": "[hnsf'U]2",
                    "TotalEnergy": "[hnsf'U]2.mm3"}


def feature_concept(name: str) -> hd.sr.CodedConcept:
    """The coded name of a pyradiomics feature: its IBSI concept, else the private scheme."""
    if name in IBSI_CONCEPTS:
        code, meaning = IBSI_CONCEPTS[name]
        return hd.sr.CodedConcept(code, IBSI_SCHEME, meaning)
    return hd.sr.CodedConcept(name, PRIVATE_SCHEME, name[:64])


def feature_name(concept: hd.sr.CodedConcept) -> str:
    """The pyradiomics feature name back from a coded measurement name."""
    if concept.scheme_designator == IBSI_SCHEME and concept.value in _BY_IBSI_CODE:
        return _BY_IBSI_CODE[concept.value]
    if concept.scheme_designator == PRIVATE_SCHEME:
        return concept.value
    raise ValueError(f"measurement {concept.value!r} ({concept.scheme_designator}) is not a radiomic feature of ours")


def feature_unit(name: str) -> hd.sr.CodedConcept:
    """UCUM unit of a feature. Intensities are in HU on the original CT; on a filtered image they are arbitrary."""
    image, _, rest = name.partition("_")
    cls, _, feature = rest.partition("_")
    if cls == "shape" or cls == "shape2D":
        unit = _SHAPE_UNITS.get(feature, "1")
    elif cls == "firstorder" and feature in _INTENSITY_UNITS:
        unit = _INTENSITY_UNITS[feature] if image == "original" else "[arb'U]"
    else:
        unit = "1"
    return hd.sr.CodedConcept(unit, "UCUM", _UNITS[unit])


@dataclass(frozen=True)
class FeatureReport:
    """What a report holds: the features and how they were computed."""

    features: dict[str, float]
    pyradiomics_version: str
    parameters: tuple[str, ...]
    roi: str  # the tracking identifier: "segment N: label" or "ROI name"


def _algorithm(extraction: Extraction) -> hd.sr.AlgorithmIdentification:
    prov = extraction.provenance
    return hd.sr.AlgorithmIdentification(name=ALGORITHM, version=prov.pyradiomics_version,
                                         parameters=[f"params_hash={prov.params_hash}", f"label={prov.label}"])


def features_report(extraction: Extraction, image_metadata: list[Dataset], mask: Dataset, *,
                    segment: tuple[int, str] | None = None, roi: str | None = None,
                    series_number: int = 990) -> tuple[hd.sr.Comprehensive3DSR, list[str]]:
    """The SR for one ROI's features, and the names of features left out as non-finite.

    `mask` is the SEG (with its frame references) or RTSTRUCT; `segment` (number, label) for a SEG,
    `roi` (the ROI name) for an RTSTRUCT.
    """
    algorithm = _algorithm(extraction)
    omitted = sorted(n for n, v in extraction.features.items() if not math.isfinite(v))
    measurements = [hd.sr.Measurement(name=feature_concept(n), value=float(v), unit=feature_unit(n),
                                      algorithm_id=algorithm)
                    for n, v in extraction.features.items() if math.isfinite(v)]
    if segment is not None:
        tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"segment {segment[0]}: {segment[1]}"[:64])
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, measurements=measurements, algorithm_id=algorithm,
            referenced_segment=hd.sr.ReferencedSegment.from_segmentation(mask, segment_number=segment[0]))
    else:
        tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"ROI {roi}"[:64])
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, measurements=measurements, algorithm_id=algorithm,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in image_metadata])
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=generate_uid(), name=MANUFACTURER))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=[group])
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*image_metadata, mask], content=report[0], series_instance_uid=generate_uid(),
        series_number=series_number, sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        series_description=SERIES_DESCRIPTION, is_complete=True)
    return sr, omitted


def _algorithm_items(measurement: hd.sr.Measurement) -> tuple[str, tuple[str, ...]]:
    """Algorithm version and parameters (TID 4019 items) under a measurement."""
    version, parameters = "", []
    for item in measurement[0].get("ContentSequence", []):
        concept = item.ConceptNameCodeSequence[0].CodeValue
        if concept == codes.DCM.AlgorithmVersion.value:
            version = str(item.TextValue)
        elif concept == codes.DCM.AlgorithmParameters.value:
            parameters.append(str(item.TextValue))
    return version, tuple(parameters)


def read_features_report(dataset: Dataset | Path | str) -> list[FeatureReport]:
    """Every measurement group of a report written by `features_report`, as features by pyradiomics name."""
    ds = dataset if isinstance(dataset, Dataset) else pydicom.dcmread(dataset)
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    groups = [*sr.content.get_volumetric_roi_measurement_groups(), *sr.content.get_image_measurement_groups()]
    out = []
    for group in groups:
        measurements = group.get_measurements()
        features = {feature_name(m.name): m.value for m in measurements}
        version, parameters = _algorithm_items(measurements[0]) if measurements else ("", ())
        out.append(FeatureReport(features=features, pyradiomics_version=version, parameters=parameters,
                                 roi=str(group.tracking_identifier or "")))
    return out

