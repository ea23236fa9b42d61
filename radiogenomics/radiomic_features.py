"""The radiomic feature panel: 101 CT features named as pyradiomics names them.

The paper used 101 CT radiomic features without listing them. Our panel is pyradiomics' 107
default features on the original image (shape, first order, GLCM, GLRLM, GLSZM, GLDM, NGTDM)
minus six that are exact or near-exact duplicates of another feature or numerically unstable:
  firstorder TotalEnergy      = Energy x voxel volume
  glcm SumAverage             = 2 x JointAverage
  glcm MCC                    complex eigenvalues on small ROIs (unstable)
  shape Maximum2DDiameterRow, Maximum2DDiameterColumn   in-plane repeats of Maximum2DDiameterSlice
  gldm GrayLevelVariance      identical to glrlm/glszm GrayLevelVariance on the same discretisation
"""

from __future__ import annotations

import numpy as np

from radiogenomics.errors import InputError

_CLASSES: dict[str, tuple[str, ...]] = {
    "shape": (
        "Elongation", "Flatness", "LeastAxisLength", "MajorAxisLength", "Maximum2DDiameterSlice",
        "Maximum3DDiameter", "MeshVolume", "MinorAxisLength", "Sphericity", "SurfaceArea",
        "SurfaceVolumeRatio", "VoxelVolume",
    ),
    "firstorder": (
        "10Percentile", "90Percentile", "Energy", "Entropy", "InterquartileRange", "Kurtosis", "Maximum",
        "Mean", "MeanAbsoluteDeviation", "Median", "Minimum", "Range", "RobustMeanAbsoluteDeviation",
        "RootMeanSquared", "Skewness", "Uniformity", "Variance",
    ),
    "glcm": (
        "Autocorrelation", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast", "Correlation",
        "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "Id", "Idm", "Idmn", "Idn", "Imc1",
        "Imc2", "InverseVariance", "JointAverage", "JointEnergy", "JointEntropy", "MaximumProbability",
        "SumEntropy", "SumSquares",
    ),
    "glrlm": (
        "GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
        "HighGrayLevelRunEmphasis", "LongRunEmphasis", "LongRunHighGrayLevelEmphasis",
        "LongRunLowGrayLevelEmphasis", "LowGrayLevelRunEmphasis", "RunEntropy", "RunLengthNonUniformity",
        "RunLengthNonUniformityNormalized", "RunPercentage", "RunVariance", "ShortRunEmphasis",
        "ShortRunHighGrayLevelEmphasis", "ShortRunLowGrayLevelEmphasis",
    ),
    "glszm": (
        "GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
        "HighGrayLevelZoneEmphasis", "LargeAreaEmphasis", "LargeAreaHighGrayLevelEmphasis",
        "LargeAreaLowGrayLevelEmphasis", "LowGrayLevelZoneEmphasis", "SizeZoneNonUniformity",
        "SizeZoneNonUniformityNormalized", "SmallAreaEmphasis", "SmallAreaHighGrayLevelEmphasis",
        "SmallAreaLowGrayLevelEmphasis", "ZoneEntropy", "ZonePercentage", "ZoneVariance",
    ),
    "gldm": (
        "DependenceEntropy", "DependenceNonUniformity", "DependenceNonUniformityNormalized",
        "DependenceVariance", "GrayLevelNonUniformity", "HighGrayLevelEmphasis", "LargeDependenceEmphasis",
        "LargeDependenceHighGrayLevelEmphasis", "LargeDependenceLowGrayLevelEmphasis", "LowGrayLevelEmphasis",
        "SmallDependenceEmphasis", "SmallDependenceHighGrayLevelEmphasis", "SmallDependenceLowGrayLevelEmphasis",
    ),
    "ngtdm": ("Busyness", "Coarseness", "Complexity", "Contrast", "Strength"),
}

#: The 101 features, pyradiomics names (`original_<class>_<feature>`), in class order.
FEATURE_PANEL: tuple[str, ...] = tuple(
    f"original_{cls}_{name}" for cls, names in _CLASSES.items() for name in names
)


def feature_class(name: str) -> str:
    """The pyradiomics feature class of a feature name (`original_glcm_Contrast` -> `glcm`)."""
    parts = name.split("_")
    return parts[1] if len(parts) >= 3 else ""


def select_panel(n_features: int) -> list[str]:
    """`n_features` features of the panel, spread evenly over it so that every class stays represented."""
    if not 1 <= n_features <= len(FEATURE_PANEL):
        raise InputError(f"--features must be between 1 and {len(FEATURE_PANEL)}, got {n_features}")
    if n_features == len(FEATURE_PANEL):
        return list(FEATURE_PANEL)
    picks = np.unique(np.linspace(0, len(FEATURE_PANEL) - 1, n_features).round().astype(int))
    return [FEATURE_PANEL[i] for i in picks]
