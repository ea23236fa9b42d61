"""IBSI-1 digital phantom: which pyradiomics features reproduce the IBSI reference values.

The Image Biomarker Standardisation Initiative (IBSI, chapter 1) publishes reference values for a
5 x 4 x 4 digital phantom (2 mm voxels, grey levels 1, 3, 4 and 6 inside the ROI). Running
pyradiomics on that phantom and comparing feature by feature tells us which of the radiomic
features our models consume are IBSI-standard, which deviate (and why), and which IBSI features
pyradiomics does not compute at all. `docs/generate_ibsi_report.py` renders the result as
`docs/ibsi_phantom.md`.

Where the numbers come from:
  shared/data/ibsi/reference_values/ibsi_1_reference_values_digital_phantom.csv   reference table
  shared/data/ibsi/digital_phantom_1/{phantom,mask}.nii.gz                          the phantom
  shared/data/pyradiomics/ibsi_concepts.csv                                         IBSI concept codes

The phantom configuration (IBSI1_reference_data_sets_and_configs_A-E.rst, "Digital phantom"):
no interpolation, no re-segmentation, no discretisation (a fixed bin size of 1 is equivalent),
symmetric GLCM at Chebyshev distance 1, NGTDM/NGLDM distance 1, NGLDM coarseness alpha = 0. The
pyradiomics settings that reproduce it are `PHANTOM_SETTINGS`; pyradiomics' own aggregation of the
3D texture matrices decides which IBSI variant each texture feature is compared with
(`PYRADIOMICS_AGGREGATION`).

Agreement rule: IBSI publishes phantom values to three significant figures with tolerance 0 (the
phantom's values are exact). A value agrees when |ours - reference| <= max(tolerance, half a unit in
the last significant figure of the reference, taking at least three significant figures), i.e.
when our value rounds to the published one; morphology keeps its larger published tolerances.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from radiogenomics.errors import InputError

if TYPE_CHECKING:
    import SimpleITK as sitk

SHARED_ENV = "RADIOGENOMICS_SHARED_DATA"
_SHARED_RELATIVE = Path("shared") / "data"
REFERENCE_FILE = Path("ibsi") / "reference_values" / "ibsi_1_reference_values_digital_phantom.csv"
PHANTOM_DIR = Path("ibsi") / "digital_phantom_1"
CONCEPTS_FILE = Path("pyradiomics") / "ibsi_concepts.csv"
_REFERENCE_COLUMNS = ("family", "feature", "consensus", "reference value", "tolerance", "tag")

#: pyradiomics settings matching the IBSI phantom configuration. Every value is spelled out even
#: where it is pyradiomics' default, so the report documents exactly what ran.
PHANTOM_SETTINGS: dict[str, object] = {
    "label": 1,
    # No interpolation: the phantom is computed on its own 2 mm grid.
    "resampledPixelSpacing": None,
    # No re-segmentation, no outlier filtering, no intensity normalisation.
    "resegmentRange": None,
    "removeOutliers": None,
    "normalize": False,
    # Fixed bin size 1. pyradiomics bins as X_b = floor(X / w) - floor(min_ROI / w) + 1
    # (radiomics.imageoperations.getBinEdges); with w = 1 and ROI minimum 1 that is X_b = X, so the
    # phantom's grey levels 1, 3, 4, 6 are kept (checked at run time by `check_discretisation`).
    "binWidth": 1,
    # IBSI energy has no intensity shift; pyradiomics' firstorder docstring says to set this to 0.
    "voxelArrayShift": 0,
    # Chebyshev distance 1 for GLCM, NGTDM and GLDM (IBSI NGLDM); 13 directions in 3D.
    "distances": [1],
    # Symmetric GLCM, as IBSI defines it.
    "symmetricalGLCM": True,
    # None = features per direction, then averaged (IBSI "3D, averaged"); summing the matrices
    # ("merged") would need weightingNorm="no_weighting".
    "weightingNorm": None,
    # IBSI NGLDM coarseness alpha = 0.
    "gldm_a": 0,
    # Volumetric (3D) texture, not slice by slice.
    "force2D": False,
}

#: Which IBSI aggregation each pyradiomics texture class produces with `PHANTOM_SETTINGS`, as the
#: suffix of the IBSI tags it is compared with, and the IBSI concept naming that aggregation.
PYRADIOMICS_AGGREGATION: dict[str, tuple[str, str]] = {
    "glcm": ("_3D_avg", "feature computed from 3D directional matrix and averaged over 3D directions"),
    "glrlm": ("_3D_avg", "feature computed from 3D directional matrix and averaged over 3D directions"),
    "glszm": ("_3D", "feature computed from 3D matrix"),
    "ngtdm": ("_3D", "feature computed from 3D matrix"),
    "gldm": ("_3D", "feature computed from 3D matrix"),
}

Status = Literal["agree", "deviate", "not computed"]
NOT_COMPUTED = "not computed by pyradiomics"


# ----------------------------------------------------------------------------------------------
# The mapping IBSI tag -> pyradiomics feature


@dataclass(frozen=True)
class FeatureMapping:
    """One IBSI feature and the pyradiomics feature compared with it.

    The compared value is `pyradiomics value + offset`: the offset carries a known convention
    difference (only kurtosis needs one). `basis` cites why the two are the same quantity where the
    names alone do not say so: a pyradiomics docstring naming the IBSI feature, or an identity
    pyradiomics documents when it deprecates a duplicate feature.
    """

    tag: str
    pyradiomics: str
    offset: float = 0.0
    basis: str = ""
    note: str = ""  # one short line for the report table; empty when the match is direct

    @property
    def expression(self) -> str:
        """How the compared value is formed, for the report (`original_firstorder_Kurtosis - 3`)."""
        if self.offset == 0:
            return self.pyradiomics
        return f"{self.pyradiomics} {'-' if self.offset < 0 else '+'} {abs(self.offset):g}"


# Bases cited in the mapping: the pyradiomics docstrings (rendered at
# https://pyradiomics.readthedocs.io/en/latest/features.html) in radiomics/<class>.py.
_KURTOSIS = (
    "firstorder.getKurtosisFeatureValue: 'The IBSI feature definition implements excess kurtosis ... "
    "The PyRadiomics kurtosis is not corrected, yielding a value 3 higher than the IBSI kurtosis.'"
)
_DISSIMILARITY = "glcm.getDissimilarityFeatureValue (deprecated): 'mathematically equal to Difference Average'"
_SUM_VARIANCE = "glcm.getSumVarianceFeatureValue (deprecated): 'mathematically equal to Cluster Tendency'"
_GLDM_GLNN = (
    "gldm.getGrayLevelNonUniformityNormalizedFeatureValue (deprecated): 'mathematically equal to "
    "First Order - Uniformity'"
)
_DEPRECATED_SHAPE = "shape: deprecated (correlated with Sphericity), enabled by name for this comparison"

_NOTES: dict[str, str] = {
    "stat_kurt": "IBSI uses excess kurtosis; pyradiomics does not subtract 3 (pyradiomics docs)",
    "cm_dissimilarity": "Dissimilarity is deprecated as equal to DifferenceAverage (pyradiomics docs)",
    "cm_sum_var": "SumVariance is deprecated as equal to ClusterTendency (pyradiomics docs)",
    "morph_comp_1": "deprecated in pyradiomics, enabled by name",
    "morph_comp_2": "deprecated in pyradiomics, enabled by name",
    "morph_sph_dispr": "deprecated in pyradiomics, enabled by name",
    "ih_entropy": "pyradiomics computes it on the discretised histogram",
    "ih_uniformity": "pyradiomics computes it on the discretised histogram",
}

_SHAPE: dict[str, tuple[str, str]] = {
    "morph_volume": ("MeshVolume", "shape.getMeshVolumeFeatureValue: 'see the IBSI document, where this feature is defined as Volume'"),
    "morph_vol_approx": ("VoxelVolume", "shape.getVoxelVolumeFeatureValue: 'Defined in IBSI as Approximate Volume'"),
    "morph_area_mesh": ("SurfaceArea", "shape.getSurfaceAreaFeatureValue: 'Defined in IBSI as Surface Area'"),
    "morph_av": ("SurfaceVolumeRatio", ""),
    "morph_comp_1": ("Compactness1", _DEPRECATED_SHAPE),
    "morph_comp_2": ("Compactness2", _DEPRECATED_SHAPE),
    "morph_sph_dispr": ("SphericalDisproportion", _DEPRECATED_SHAPE),
    "morph_sphericity": ("Sphericity", ""),
    "morph_diam": ("Maximum3DDiameter", ""),
    "morph_pca_maj_axis": ("MajorAxisLength", ""),
    "morph_pca_min_axis": ("MinorAxisLength", ""),
    "morph_pca_least_axis": ("LeastAxisLength", ""),
    "morph_pca_elongation": ("Elongation", ""),
    "morph_pca_flatness": ("Flatness", ""),
}
_FIRSTORDER: dict[str, tuple[str, str]] = {
    "stat_mean": ("Mean", ""),
    "stat_var": ("Variance", ""),
    "stat_skew": ("Skewness", ""),
    "stat_kurt": ("Kurtosis", _KURTOSIS),
    "stat_median": ("Median", ""),
    "stat_min": ("Minimum", ""),
    "stat_p10": ("10Percentile", ""),
    "stat_p90": ("90Percentile", ""),
    "stat_max": ("Maximum", ""),
    "stat_iqr": ("InterquartileRange", ""),
    "stat_range": ("Range", ""),
    "stat_mad": ("MeanAbsoluteDeviation", ""),
    "stat_rmad": ("RobustMeanAbsoluteDeviation", ""),
    "stat_energy": ("Energy", (
        "firstorder class docs: 'In the IBSI feature definitions, no correction for negative gray values is "
        "implemented. To achieve similar behaviour in PyRadiomics, set voxelArrayShift to 0.'"
    )),
    "stat_rms": ("RootMeanSquared", ""),
    # pyradiomics computes Entropy and Uniformity on the discretised histogram (its docstrings:
    # "Defined by IBSI as Intensity Histogram Entropy / Uniformity"); every other first-order
    # feature uses the raw intensities, i.e. is an IBSI intensity-based statistic (stat_*).
    "ih_entropy": ("Entropy", "firstorder.getEntropyFeatureValue: 'Defined by IBSI as Intensity Histogram Entropy'"),
    "ih_uniformity": ("Uniformity", "firstorder.getUniformityFeatureValue: 'Defined by IBSI as Intensity Histogram Uniformity'"),
}
_GLCM: dict[str, tuple[str, str]] = {
    "cm_joint_max": ("MaximumProbability", "glcm.getMaximumProbabilityFeatureValue: 'Defined by IBSI as Joint maximum'"),
    "cm_joint_avg": ("JointAverage", ""),
    "cm_joint_var": ("SumSquares", "glcm.getSumSquaresFeatureValue: 'Defined by IBSI as Joint Variance'"),
    "cm_joint_entr": ("JointEntropy", ""),
    "cm_diff_avg": ("DifferenceAverage", ""),
    "cm_diff_var": ("DifferenceVariance", ""),
    "cm_diff_entr": ("DifferenceEntropy", ""),
    "cm_sum_avg": ("SumAverage", ""),
    "cm_sum_var": ("ClusterTendency", _SUM_VARIANCE),
    "cm_sum_entr": ("SumEntropy", ""),
    "cm_energy": ("JointEnergy", "glcm.getJointEnergyFeatureValue: 'Defined by IBSI as Angular Second Moment'"),
    "cm_contrast": ("Contrast", ""),
    "cm_dissimilarity": ("DifferenceAverage", _DISSIMILARITY),
    "cm_inv_diff": ("Id", ""),
    "cm_inv_diff_norm": ("Idn", ""),
    "cm_inv_diff_mom": ("Idm", ""),
    "cm_inv_diff_mom_norm": ("Idmn", ""),
    "cm_inv_var": ("InverseVariance", ""),
    "cm_corr": ("Correlation", ""),
    "cm_auto_corr": ("Autocorrelation", ""),
    "cm_clust_tend": ("ClusterTendency", ""),
    "cm_clust_shade": ("ClusterShade", ""),
    "cm_clust_prom": ("ClusterProminence", ""),
    "cm_info_corr1": ("Imc1", ""),
    "cm_info_corr2": ("Imc2", ""),
}
_GLRLM: dict[str, tuple[str, str]] = {
    "rlm_sre": ("ShortRunEmphasis", ""),
    "rlm_lre": ("LongRunEmphasis", ""),
    "rlm_lgre": ("LowGrayLevelRunEmphasis", ""),
    "rlm_hgre": ("HighGrayLevelRunEmphasis", ""),
    "rlm_srlge": ("ShortRunLowGrayLevelEmphasis", ""),
    "rlm_srhge": ("ShortRunHighGrayLevelEmphasis", ""),
    "rlm_lrlge": ("LongRunLowGrayLevelEmphasis", ""),
    "rlm_lrhge": ("LongRunHighGrayLevelEmphasis", ""),
    "rlm_glnu": ("GrayLevelNonUniformity", ""),
    "rlm_glnu_norm": ("GrayLevelNonUniformityNormalized", ""),
    "rlm_rlnu": ("RunLengthNonUniformity", ""),
    "rlm_rlnu_norm": ("RunLengthNonUniformityNormalized", ""),
    "rlm_r_perc": ("RunPercentage", ""),
    "rlm_gl_var": ("GrayLevelVariance", ""),
    "rlm_rl_var": ("RunVariance", ""),
    "rlm_rl_entr": ("RunEntropy", ""),
}
_GLSZM: dict[str, tuple[str, str]] = {
    "szm_sze": ("SmallAreaEmphasis", ""),
    "szm_lze": ("LargeAreaEmphasis", ""),
    "szm_lgze": ("LowGrayLevelZoneEmphasis", ""),
    "szm_hgze": ("HighGrayLevelZoneEmphasis", ""),
    "szm_szlge": ("SmallAreaLowGrayLevelEmphasis", ""),
    "szm_szhge": ("SmallAreaHighGrayLevelEmphasis", ""),
    "szm_lzlge": ("LargeAreaLowGrayLevelEmphasis", ""),
    "szm_lzhge": ("LargeAreaHighGrayLevelEmphasis", ""),
    "szm_glnu": ("GrayLevelNonUniformity", ""),
    "szm_glnu_norm": ("GrayLevelNonUniformityNormalized", ""),
    "szm_zsnu": ("SizeZoneNonUniformity", ""),
    "szm_zsnu_norm": ("SizeZoneNonUniformityNormalized", ""),
    "szm_z_perc": ("ZonePercentage", ""),
    "szm_gl_var": ("GrayLevelVariance", ""),
    "szm_zs_var": ("ZoneVariance", ""),
    "szm_zs_entr": ("ZoneEntropy", ""),
}
_NGTDM: dict[str, tuple[str, str]] = {
    "ngt_coarseness": ("Coarseness", ""),
    "ngt_contrast": ("Contrast", ""),
    "ngt_busyness": ("Busyness", ""),
    "ngt_complexity": ("Complexity", ""),
    "ngt_strength": ("Strength", ""),
}
# pyradiomics' GLDM is IBSI's neighbouring grey level dependence matrix (NGLDM) with alpha = gldm_a.
_GLDM: dict[str, tuple[str, str]] = {
    "ngl_lde": ("SmallDependenceEmphasis", ""),
    "ngl_hde": ("LargeDependenceEmphasis", ""),
    "ngl_lgce": ("LowGrayLevelEmphasis", ""),
    "ngl_hgce": ("HighGrayLevelEmphasis", ""),
    "ngl_ldlge": ("SmallDependenceLowGrayLevelEmphasis", ""),
    "ngl_ldhge": ("SmallDependenceHighGrayLevelEmphasis", ""),
    "ngl_hdlge": ("LargeDependenceLowGrayLevelEmphasis", ""),
    "ngl_hdhge": ("LargeDependenceHighGrayLevelEmphasis", ""),
    "ngl_glnu": ("GrayLevelNonUniformity", ""),
    "ngl_dcnu": ("DependenceNonUniformity", ""),
    "ngl_dcnu_norm": ("DependenceNonUniformityNormalized", ""),
    "ngl_gl_var": ("GrayLevelVariance", ""),
    "ngl_dc_var": ("DependenceVariance", ""),
    "ngl_dc_entr": ("DependenceEntropy", ""),
}


def _build_mapping() -> dict[str, FeatureMapping]:
    out: dict[str, FeatureMapping] = {}

    def add(tags: Mapping[str, tuple[str, str]], cls: str, suffix: str = "") -> None:
        for base, (name, basis) in tags.items():
            offset = -3.0 if base == "stat_kurt" else 0.0
            out[base + suffix] = FeatureMapping(base + suffix, f"original_{cls}_{name}", offset, basis, _NOTES.get(base, ""))

    add(_SHAPE, "shape")
    add(_FIRSTORDER, "firstorder")
    add(_GLCM, "glcm", PYRADIOMICS_AGGREGATION["glcm"][0])
    add(_GLRLM, "glrlm", PYRADIOMICS_AGGREGATION["glrlm"][0])
    add(_GLSZM, "glszm", PYRADIOMICS_AGGREGATION["glszm"][0])
    add(_NGTDM, "ngtdm", PYRADIOMICS_AGGREGATION["ngtdm"][0])
    add(_GLDM, "gldm", PYRADIOMICS_AGGREGATION["gldm"][0])
    # IBSI NGLDM normalised grey level non-uniformity has no GLDM output (deprecated there), but
    # pyradiomics documents it as equal to first-order Uniformity.
    out["ngl_glnu_norm_3D"] = FeatureMapping(
        "ngl_glnu_norm_3D", "original_firstorder_Uniformity", 0.0, _GLDM_GLNN,
        "GLDM GLNN is deprecated as equal to first-order Uniformity (pyradiomics docs)",
    )
    return out


#: IBSI tag -> the pyradiomics feature compared with it. Tags absent here are not computed.
FEATURE_MAP: dict[str, FeatureMapping] = _build_mapping()

# Why an IBSI feature has no pyradiomics counterpart, by tag prefix (longest prefix wins).
_UNMAPPED_REASONS: dict[str, str] = {
    "loc_": "pyradiomics has no local intensity features",
    "ivh_": "pyradiomics has no intensity-volume histogram features",
    "dzm_": "pyradiomics has no grey level distance zone matrix",
    "morph_com": "no pyradiomics feature (centre of mass shift)",
    "morph_vol_dens_": "no pyradiomics feature (volume densities)",
    "morph_area_dens_": "no pyradiomics feature (area densities)",
    "morph_integ_int": "no pyradiomics feature (integrated intensity)",
    "morph_moran_i": "no pyradiomics feature (Moran's I)",
    "morph_geary_c": "no pyradiomics feature (Geary's C)",
    "morph_asphericity": "no pyradiomics feature (IBSI defines it as spherical disproportion - 1)",
    "stat_medad": "no pyradiomics feature",
    "stat_cov": "no pyradiomics feature",
    "stat_qcod": "no pyradiomics feature",
    "ih_": "no pyradiomics intensity-histogram feature",
    "ngl_dc_perc": "pyradiomics deprecated GLDM DependencePercentage ('would always compute 1'); no value",
    "ngl_dc_energy": "no pyradiomics feature",
}


def _base_tag(tag: str) -> str:
    """The tag without its aggregation suffix (`cm_joint_max_2D_avg` -> `cm_joint_max`)."""
    for suffix in ("_2_5D_avg", "_2_5D_comb", "_2D_avg", "_2D_comb", "_3D_avg", "_3D_comb", "_2_5D", "_2D", "_3D"):
        if tag.endswith(suffix):
            return tag[: -len(suffix)]
    return tag


def _suffix(tag: str) -> str:
    return tag[len(_base_tag(tag)):]


_MAPPED_BASES = {_base_tag(t): t for t in FEATURE_MAP}
_AGGREGATION_NAMES = {
    "_2D_avg": "2D, averaged", "_2D_comb": "2D, slice-merged", "_2_5D_avg": "2.5D, direction-merged",
    "_2_5D_comb": "2.5D, merged", "_3D_avg": "3D, averaged", "_3D_comb": "3D, merged",
    "_2D": "2D", "_2_5D": "2.5D", "_3D": "3D",
}


def is_other_aggregation(tag: str) -> bool:
    """True for an IBSI variant (2D, 2.5D, 3D merged) of a feature pyradiomics computes in another one."""
    return tag not in FEATURE_MAP and bool(_suffix(tag)) and _base_tag(tag) in _MAPPED_BASES


def unmapped_reason(tag: str) -> str:
    """Why an IBSI feature tag has no pyradiomics counterpart under `PHANTOM_SETTINGS`."""
    if tag in FEATURE_MAP:
        return ""
    base = _base_tag(tag)
    if is_other_aggregation(tag):
        other = _MAPPED_BASES[base]
        return (
            f"IBSI {_AGGREGATION_NAMES[_suffix(tag)]} aggregation; pyradiomics' 3D extraction gives the "
            f"{_AGGREGATION_NAMES[_suffix(other)]} variant ({other})"
        )
    if tag.startswith("ih_") and f"stat_{tag[3:]}" in FEATURE_MAP:
        return f"pyradiomics computes this on raw intensities only: compared as stat_{tag[3:]}"
    prefixes = [p for p in _UNMAPPED_REASONS if tag.startswith(p)]
    return _UNMAPPED_REASONS[max(prefixes, key=len)] if prefixes else "no pyradiomics feature"


# ----------------------------------------------------------------------------------------------
# Reference values and concept codes


@dataclass(frozen=True)
class ReferenceValue:
    """One row of the IBSI reference table (digital phantom)."""

    tag: str
    family: str
    feature: str
    consensus: str
    reference: float | None  # None where IBSI gives no value ("not standardized")
    reference_text: str  # as published, e.g. "0.0411": its precision sets the rounding allowance
    tolerance: float | None

    @property
    def allowance(self) -> float:
        """Half a unit in the reference's last significant figure (at least three figures).

        The published phantom values are rounded, so a tolerance of 0 cannot be met literally; this
        is the largest |difference| that still rounds to the published value. Trailing zeros of an
        integer ("1490") are taken as not significant, hence the three-figure floor.
        """
        if self.reference is None or self.reference == 0:
            return 0.0
        try:
            printed = Decimal(self.reference_text).normalize().as_tuple().exponent
        except InvalidOperation:
            printed = 0
        three_figures = math.floor(math.log10(abs(self.reference))) - 2
        exponent = min(int(printed), three_figures)
        return 0.5 * 10.0 ** exponent

    @property
    def effective_tolerance(self) -> float | None:
        """The tolerance the comparison uses: max(IBSI tolerance, rounding allowance)."""
        if self.reference is None:
            return None
        return max(self.tolerance or 0.0, self.allowance)


def _number(text: str) -> float | None:
    text = text.strip()
    return float(text) if text else None


def load_reference(path: Path | None = None) -> list[ReferenceValue]:
    """The IBSI-1 digital phantom reference table, in file order (the CSV starts with a UTF-8 BOM)."""
    path = Path(path) if path is not None else shared_data_dir() / REFERENCE_FILE
    if not path.is_file():
        raise InputError(f"{path}: IBSI reference table not found; set ${SHARED_ENV} to the shared data directory")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _REFERENCE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; expected the IBSI reference CSV layout")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append(ReferenceValue(
                    tag=row["tag"].strip(), family=row["family"].strip(), feature=row["feature"].strip(),
                    consensus=row["consensus"].strip(), reference=_number(row["reference value"]),
                    reference_text=row["reference value"].strip(), tolerance=_number(row["tolerance"]),
                ))
            except ValueError:
                raise InputError(
                    f"{path}: line {line} (tag {row.get('tag')!r}): reference value / tolerance must be numbers or empty"
                ) from None
    dupes = [t for t, n in Counter(r.tag for r in rows).items() if n > 1]
    if dupes:
        raise InputError(f"{path}: duplicate tag {dupes[0]!r}; every IBSI tag must appear once")
    return rows


# IBSI concept file: one "name<TAB>code" per line, each feature family introduced by its heading.
_CONCEPT_FAMILIES: dict[str, str] = {
    "morph": "Morphological features",
    "loc": "Local intensity features",
    "stat": "Intensity-based statistical features",
    "ih": "Intensity histogram features",
    "ivh": "Intensity-volume histogram features",
    "cm": "Grey level co-occurrence based features",
    "rlm": "Grey level run length based features",
    "szm": "Grey level size zone based features",
    "dzm": "Grey level distance zone based features",
    "ngt": "Neighbourhood grey tone difference based features",
    "ngl": "Neighbouring grey level dependence based features",
}
# Reference-table feature names that the concept list spells differently (per family prefix).
_CONCEPT_ALIASES: dict[tuple[str, str], str] = {
    ("morph", "Volume (mesh)"): "Volume",
    ("morph", "Volume (voxel counting)"): "Approximate volume",
    ("morph", "Surface area (mesh)"): "Surface area",
    ("morph", "Volume density (AABB)"): "Volume density - axis-aligned bounding box",
    ("morph", "Area density (AABB)"): "Area density - axis-aligned bounding box",
    ("morph", "Volume density (OMBB)"): "Volume density - oriented minimum bounding box",
    ("morph", "Area density (OMBB)"): "Area density - oriented minimum bounding box",
    ("morph", "Volume density (AEE)"): "Volume density - approximate enclosing ellipsoid",
    ("morph", "Area density (AEE)"): "Area density - approximate enclosing ellipsoid",
    ("morph", "Volume density (MVEE)"): "Volume density - minimum volume enclosing ellipsoid",
    ("morph", "Area density (MVEE)"): "Area density - minimum volume enclosing ellipsoid",
    ("morph", "Volume density (convex hull)"): "Volume density - convex hull",
    ("morph", "Area density (convex hull)"): "Area density - convex hull",
    ("stat", "(Excess) kurtosis"): "Kurtosis",
    ("stat", "Minimum"): "Minimum grey level",
    ("stat", "Maximum"): "Maximum grey level",
    ("ih", "(Excess) kurtosis"): "Intensity histogram kurtosis",
    ("ih", "Minimum"): "Intensity histogram minimum grey level",
    ("ih", "Maximum"): "Intensity histogram maximum grey level",
    ("ih", "Maximum histogram gradient intensity"): "Maximum histogram gradient grey level",
    ("ih", "Minimum histogram gradient intensity"): "Minimum histogram gradient grey level",
    ("ivh", "Volume fraction at 10% intensity"): "Volume at intensity fraction",
    ("ivh", "Volume fraction at 90% intensity"): "Volume at intensity fraction",
    ("ivh", "Intensity at 10% volume"): "Intensity at volume fraction",
    ("ivh", "Intensity at 90% volume"): "Intensity at volume fraction",
    ("ivh", "Volume fraction difference between 10% and 90% intensity"): "Volume fraction difference between intensity fractions",
    ("ivh", "Intensity difference between 10% and 90% volume"): "Intensity fraction difference between volume fractions",
    ("ivh", "Area under the IVH curve"): "Area under IVH curve",
    ("cm", "Information correlation 1"): "First measure of information correlation",
    ("cm", "Information correlation 2"): "Second measure of information correlation",
    ("szm", "Low grey level emphasis"): "Low grey level zone emphasis",
    ("szm", "High grey level emphasis"): "High grey level zone emphasis",
    ("dzm", "Low grey level emphasis"): "Low grey level zone emphasis",
    ("dzm", "High grey level emphasis"): "High grey level zone emphasis",
    ("dzm", "Normalised zone distance non-uniformity"): "Zone distance non-uniformity normalised",
    ("ngl", "Normalised dependence count non-uniformity"): "Dependence count non-uniformity normalised",
}


def load_concepts(path: Path | None = None) -> list[tuple[str, str]]:
    """The IBSI concept list as (name, code) pairs in file order (tab-separated, no header)."""
    path = Path(path) if path is not None else shared_data_dir() / CONCEPTS_FILE
    if not path.is_file():
        raise InputError(f"{path}: IBSI concept list not found; set ${SHARED_ENV} to the shared data directory")
    pairs = []
    with path.open(encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            parts = text.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[1].strip():
                raise InputError(f"{path}: line {line} is not 'name<TAB>code'")
            pairs.append((parts[0].strip(), parts[1].strip()))
    return pairs


def concept_codes(reference: Iterable[ReferenceValue], concepts: Sequence[tuple[str, str]]) -> dict[str, str]:
    """IBSI tag -> IBSI concept code of its feature (e.g. `morph_volume` -> `RNU0`).

    Feature names repeat across families ("Grey level variance"), so a name is looked up inside its
    family's section of the concept list. Tags whose name cannot be resolved are left out.
    """
    headings = {name: i for i, (name, _) in enumerate(concepts) if name in _CONCEPT_FAMILIES.values()}
    starts = sorted(headings.values())
    sections: dict[str, dict[str, str]] = {}
    for prefix, heading in _CONCEPT_FAMILIES.items():
        if heading not in headings:
            continue
        start = headings[heading]
        end = next((s for s in starts if s > start), len(concepts))
        sections[prefix] = {name.lower(): code for name, code in concepts[start + 1:end]}
    codes = {}
    for row in reference:
        prefix = row.tag.split("_", 1)[0]
        name = _CONCEPT_ALIASES.get((prefix, row.feature), row.feature)
        section = sections.get(prefix, {})
        code = section.get(name.lower())
        if code is None and prefix == "ih":
            code = section.get(f"intensity histogram {name.lower()}")
        if code is not None:
            codes[row.tag] = code
    return codes


def concept_code(name: str, concepts: Sequence[tuple[str, str]]) -> str | None:
    """The code of a concept by exact name (e.g. an aggregation method), or None."""
    return next((code for n, code in concepts if n == name), None)


# ----------------------------------------------------------------------------------------------
# Running pyradiomics on the phantom


def shared_data_dir() -> Path:
    """The shared reference data: $RADIOGENOMICS_SHARED_DATA, else ../shared/data next to the checkout."""
    if os.environ.get(SHARED_ENV):
        return Path(os.environ[SHARED_ENV])
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *Path.cwd().parents, *here.parents]:
        if (base / _SHARED_RELATIVE / REFERENCE_FILE).is_file():
            return base / _SHARED_RELATIVE
    raise InputError(f"IBSI reference data not found under ../shared/data; set ${SHARED_ENV} to the shared data directory")


def _phantom_images(phantom_dir: Path | None) -> tuple[sitk.Image, sitk.Image]:
    """(phantom, mask) read from `phantom_dir` (default: the shared IBSI phantom)."""
    import SimpleITK as sitk

    phantom_dir = Path(phantom_dir) if phantom_dir is not None else shared_data_dir() / PHANTOM_DIR
    paths = phantom_dir / "phantom.nii.gz", phantom_dir / "mask.nii.gz"
    for p in paths:
        if not p.is_file():
            raise InputError(f"{p}: IBSI digital phantom file not found; expected phantom.nii.gz and mask.nii.gz in {phantom_dir}")
    return sitk.ReadImage(str(paths[0])), sitk.ReadImage(str(paths[1]))


def check_discretisation(phantom_dir: Path | None = None) -> dict[int, int]:
    """Grey level -> voxel count inside the ROI, after pyradiomics' binning with `PHANTOM_SETTINGS`.

    Raises if binning changed any grey level: the IBSI phantom values assume the phantom's own grey
    levels (1..6, with 2 and 5 absent), and pyradiomics' fixed-bin-width rule only keeps them when the
    bin width is 1 and the ROI minimum is 1.
    """
    import SimpleITK as sitk
    from radiomics import imageoperations

    image, mask = _phantom_images(phantom_dir)
    values = sitk.GetArrayFromImage(image)
    roi = np.nonzero(sitk.GetArrayFromImage(mask) == PHANTOM_SETTINGS["label"])
    binned, _ = imageoperations.binImage(values, roi, binWidth=PHANTOM_SETTINGS["binWidth"])
    if not np.array_equal(binned[roi], values[roi]):
        raise InputError("pyradiomics binning with binWidth 1 changed the phantom's grey levels; the comparison would be invalid")
    levels, counts = np.unique(binned[roi], return_counts=True)
    return {int(g): int(n) for g, n in zip(levels, counts)}


def extract_phantom(phantom_dir: Path | None = None) -> dict[str, float]:
    """Run pyradiomics on the IBSI digital phantom with `PHANTOM_SETTINGS`; feature name -> value.

    All feature classes with pyradiomics' default features are enabled, plus the three shape
    features pyradiomics marks deprecated but still computes (Compactness1, Compactness2,
    SphericalDisproportion), because IBSI defines them. Diagnostics are dropped.
    """
    from radiomics import featureextractor
    from radiomics.shape import RadiomicsShape

    image, mask = _phantom_images(phantom_dir)
    extractor = featureextractor.RadiomicsFeatureExtractor(**PHANTOM_SETTINGS)
    extractor.disableAllImageTypes()
    extractor.enableImageTypeByName("Original")
    extractor.enableAllFeatures()
    extractor.enableFeaturesByName(shape=sorted(RadiomicsShape.getFeatureNames()))
    # Deprecated-feature warnings are expected here; keep pyradiomics quiet below ERROR.
    logger = logging.getLogger("radiomics")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        result = extractor.execute(image, mask)
    finally:
        logger.setLevel(level)
    return {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


# ----------------------------------------------------------------------------------------------
# Comparison


@dataclass(frozen=True)
class Comparison:
    """One IBSI feature against pyradiomics."""

    ref: ReferenceValue
    mapping: FeatureMapping | None
    value: float | None  # the compared value (offset applied); None when not computed
    status: Status
    reason: str = ""  # why not computed

    @property
    def difference(self) -> float | None:
        """|value - reference|, or None."""
        if self.value is None or self.ref.reference is None:
            return None
        return abs(self.value - self.ref.reference)


def compare(reference: Iterable[ReferenceValue], features: Mapping[str, float]) -> list[Comparison]:
    """Compare every IBSI reference row with the pyradiomics features (in reference order).

    A mapped feature missing from `features` is an error (the mapping claims a feature pyradiomics
    did not produce), not a silent "not computed".
    """
    out = []
    for ref in reference:
        mapping = FEATURE_MAP.get(ref.tag)
        if mapping is None:
            out.append(Comparison(ref, None, None, "not computed", unmapped_reason(ref.tag)))
            continue
        if ref.reference is None:
            raise InputError(f"IBSI tag {ref.tag} has no reference value but is mapped to {mapping.pyradiomics}; nothing to compare")
        if mapping.pyradiomics not in features:
            raise InputError(f"pyradiomics produced no {mapping.pyradiomics!r} (mapped to IBSI {ref.tag}); check the extraction settings")
        value = features[mapping.pyradiomics] + mapping.offset
        tol = ref.effective_tolerance
        agree = math.isfinite(value) and abs(value - ref.reference) <= tol
        out.append(Comparison(ref, mapping, value, "agree" if agree else "deviate"))
    return out


def summary(comparisons: Iterable[Comparison]) -> dict[Status, int]:
    """Counts per status, every status present."""
    counts = Counter(c.status for c in comparisons)
    return {s: counts.get(s, 0) for s in ("agree", "deviate", "not computed")}


def not_computed_breakdown(comparisons: Iterable[Comparison]) -> dict[str, int]:
    """The "not computed" count split into IBSI aggregation variants pyradiomics' 3D extraction does
    not produce (`other aggregation`) and IBSI features pyradiomics has no counterpart for at all."""
    missing = [c for c in comparisons if c.status == "not computed"]
    other = sum(is_other_aggregation(c.ref.tag) for c in missing)
    return {"other aggregation": other, "no counterpart": len(missing) - other}


@dataclass(frozen=True)
class PhantomComparison:
    """Everything the report shows: inputs, settings, pyradiomics output and the comparison."""

    comparisons: list[Comparison]
    features: dict[str, float]
    grey_levels: dict[int, int]
    codes: dict[str, str]
    concepts: list[tuple[str, str]]
    versions: dict[str, str]


def run_phantom_comparison(shared: Path | None = None) -> PhantomComparison:
    """Load the reference, run pyradiomics on the phantom, compare; `shared` defaults to `shared_data_dir()`."""
    import SimpleITK as sitk
    import radiomics

    shared = Path(shared) if shared is not None else shared_data_dir()
    reference = load_reference(shared / REFERENCE_FILE)
    concepts = load_concepts(shared / CONCEPTS_FILE)
    grey_levels = check_discretisation(shared / PHANTOM_DIR)
    features = extract_phantom(shared / PHANTOM_DIR)
    versions = {"pyradiomics": str(radiomics.__version__), "SimpleITK": sitk.Version_VersionString(), "numpy": np.__version__}
    return PhantomComparison(
        compare(reference, features), features, grey_levels, concept_codes(reference, concepts), concepts, versions,
    )


# ----------------------------------------------------------------------------------------------
# Known deviations


#: Deviation classes: id -> (title, explanation). Every deviating IBSI tag must be listed in
#: `KNOWN_DEVIATIONS`, so a new, unexplained deviation shows up in the report and the tests.
DEVIATION_CLASSES: dict[str, tuple[str, str]] = {
    "pca_population_covariance": (
        "PCA axis lengths use the population covariance",
        "pyradiomics computes the principal axes from the covariance of the ROI voxel positions "
        "divided by N (radiomics/shape.py: `physicalCoordinates /= numpy.sqrt(Np)`), while the IBSI "
        "reference values correspond to the sample covariance, divided by N - 1. Axis lengths "
        "(4 sqrt(lambda)) are therefore smaller by sqrt((N - 1) / N); for the phantom's N = 74 voxels "
        "that is 0.68 %, more than the minor and least axis tolerances. Elongation and flatness are "
        "ratios, so the factor cancels and they agree.",
    ),
}
KNOWN_DEVIATIONS: dict[str, str] = {
    "morph_pca_maj_axis": "pca_population_covariance",
    "morph_pca_min_axis": "pca_population_covariance",
    "morph_pca_least_axis": "pca_population_covariance",
}


def sample_covariance_axes(features: Mapping[str, float], n_voxels: int) -> dict[str, float]:
    """The three PCA axis lengths rescaled from population to sample covariance (x sqrt(N / (N - 1))).

    Evidence for `pca_population_covariance`: the rescaled values should match the IBSI references.
    """
    scale = math.sqrt(n_voxels / (n_voxels - 1))
    return {
        tag: features[FEATURE_MAP[tag].pyradiomics] * scale
        for tag in ("morph_pca_maj_axis", "morph_pca_min_axis", "morph_pca_least_axis")
    }


def feature_concepts(reference: Iterable[ReferenceValue] | None = None,
                     concepts: Sequence[tuple[str, str]] | None = None) -> dict[str, tuple[str, str]]:
    """pyradiomics feature (`original_...`) -> (IBSI concept code, IBSI feature name), for coding results.

    Only features that are the IBSI feature itself: a known convention offset (kurtosis) leaves a
    feature uncoded, and where pyradiomics documents a deprecated duplicate as equal to another
    feature, the feature keeps the IBSI concept of its own name (DifferenceAverage is Difference
    average, not Dissimilarity). `radiogenomics/pacs/feature_codes.py` is generated from this.
    """
    reference = list(reference if reference is not None else load_reference())
    codes = concept_codes(reference, concepts if concepts is not None else load_concepts())
    names = {row.tag: row.feature for row in reference}
    out: dict[str, tuple[str, str]] = {}
    for tag, mapping in FEATURE_MAP.items():
        if mapping.offset != 0 or tag not in codes or "deprecated as equal" in mapping.note:
            continue
        if mapping.pyradiomics in out:
            raise ValueError(f"{mapping.pyradiomics} maps to two IBSI concepts: {out[mapping.pyradiomics]} and {tag}")
        out[mapping.pyradiomics] = (codes[tag], names[tag])
    return dict(sorted(out.items()))
