"""The planted biology of the synthetic cohort: which gene programs drive which outputs, and how.

Each program is a gene set whose *responsive* genes (a random 75 % of the set) load on one latent
activity per patient, a_k ~ N(0, 1). Outputs depend on the activities only:

  histology  multinomial logit, ADC the reference class:
             logit(SCC)   = b_SCC   + 2.2 * a[HALLMARK_HYPOXIA]                      (linear)
             logit(Other) = b_Other + 2.0 * a[SYNTH_NSCLC_OTHER_SIGNATURE]           (linear)
  size       u = 1.0 * a[HALLMARK_E2F_TARGETS] + noise                               (linear)
  shape irregularity
             u = 1.8 * [a[HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION] > 0.5] + noise   (threshold)
  intensity  u = 1.0 * a[HALLMARK_INTERFERON_GAMMA_RESPONSE] + noise                  (linear)
  heterogeneity
             u = 0.6 * a[TNFA] + 0.6 * a[PI3K_AKT] + 0.9 * a[TNFA] * a[PI3K_AKT] + noise (interaction)
  coarseness u = 1.0 * a[HALLMARK_ANGIOGENESIS] + noise                              (linear)
(noise ~ N(0, 0.4^2) for every feature group).

Each radiomic feature belongs to one group (or is pure noise) and correlates with its group's u.
Every gene outside the responsive genes is noise: it belongs to a background co-expression module
or to no module, unrelated to any output. A gene in several planted sets responds only to the
first program listed below that contains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from radiogenomics.radiomic_features import feature_class

Mechanism = Literal["linear", "threshold", "interaction", "and"]

#: Synthetic (non-MSigDB) program; its genes get generated names.
OTHER_SIGNATURE = "SYNTH_NSCLC_OTHER_SIGNATURE"
OTHER_SIGNATURE_SIZE = 60

HISTOLOGY_CLASSES = ("ADC", "SCC", "Other")
#: Target prevalence (ADC / SCC / Other), close to the NSCLC cohorts the paper used.
HISTOLOGY_PREVALENCE = {"ADC": 0.50, "SCC": 0.35, "Other": 0.15}


@dataclass(frozen=True)
class Effect:
    """One planted effect: program activities -> a histology logit or a feature group's latent."""

    output: str  # "histology:<CLASS>" or a feature group name
    programs: tuple[str, ...]
    mechanism: Mechanism
    coefficients: tuple[float, ...]  # linear: (b,); threshold: (b,); interaction: (b1, b2, b12)
    threshold: float | None = None
    noise_sd: float = 0.0  # only for feature groups

    def formula(self) -> str:
        a = [f"a[{p}]" for p in self.programs]
        if self.mechanism == "linear":
            return f"{self.coefficients[0]} * {a[0]}"
        if self.mechanism == "threshold":
            return f"{self.coefficients[0]} * [{a[0]} > {self.threshold}]"
        if self.mechanism == "and":
            return f"{self.coefficients[0]} * [{a[0]} > {self.threshold} and {a[1]} > {self.threshold}]"
        b1, b2, b12 = self.coefficients
        return f"{b1} * {a[0]} + {b2} * {a[1]} + {b12} * {a[0]} * {a[1]}"


PROGRAMS: tuple[str, ...] = (
    "HALLMARK_HYPOXIA",
    OTHER_SIGNATURE,
    "HALLMARK_E2F_TARGETS",
    "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION",
    "HALLMARK_INTERFERON_GAMMA_RESPONSE",
    "HALLMARK_TNFA_SIGNALING_VIA_NFKB",
    "HALLMARK_PI3K_AKT_MTOR_SIGNALING",
    "HALLMARK_ANGIOGENESIS",
)

EFFECTS: tuple[Effect, ...] = (
    Effect("histology:SCC", ("HALLMARK_HYPOXIA",), "linear", (2.2,)),
    Effect("histology:Other", (OTHER_SIGNATURE,), "linear", (2.0,)),
    Effect("size", ("HALLMARK_E2F_TARGETS",), "linear", (1.0,), noise_sd=0.4),
    Effect("irregularity", ("HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION",), "threshold", (1.8,), threshold=0.5, noise_sd=0.4),
    Effect("intensity", ("HALLMARK_INTERFERON_GAMMA_RESPONSE",), "linear", (1.0,), noise_sd=0.4),
    Effect(
        "heterogeneity", ("HALLMARK_TNFA_SIGNALING_VIA_NFKB", "HALLMARK_PI3K_AKT_MTOR_SIGNALING"),
        "interaction", (0.6, 0.6, 0.9), noise_sd=0.4,
    ),
    Effect("coarseness", ("HALLMARK_ANGIOGENESIS",), "linear", (1.0,), noise_sd=0.4),
)

FEATURE_GROUPS = ("size", "irregularity", "intensity", "heterogeneity", "coarseness")


@dataclass(frozen=True)
class Design:
    """Which programs drive which outputs, and how (`synth --design`)."""

    name: str
    programs: tuple[str, ...]
    effects: tuple[Effect, ...]
    description: str


#: `nonlinear`: other programs, and rules a linear model cannot fit: thresholds on both histology
#: classes' drivers, an AND of two programs ("Other" only where MYC *and* KRAS are both active),
#: an AND for shape irregularity, an interaction for heterogeneity, a threshold for size.
NONLINEAR_PROGRAMS: tuple[str, ...] = (
    "HALLMARK_GLYCOLYSIS",
    "HALLMARK_MYC_TARGETS_V1",
    "HALLMARK_KRAS_SIGNALING_UP",
    "HALLMARK_G2M_CHECKPOINT",
    "HALLMARK_TGF_BETA_SIGNALING",
    "HALLMARK_IL6_JAK_STAT3_SIGNALING",
    "HALLMARK_OXIDATIVE_PHOSPHORYLATION",
    "HALLMARK_INFLAMMATORY_RESPONSE",
    "HALLMARK_APOPTOSIS",
    "HALLMARK_UNFOLDED_PROTEIN_RESPONSE",
)
NONLINEAR_EFFECTS: tuple[Effect, ...] = (
    Effect("histology:SCC", ("HALLMARK_GLYCOLYSIS",), "threshold", (3.0,), threshold=0.3),
    Effect("histology:Other", ("HALLMARK_MYC_TARGETS_V1", "HALLMARK_KRAS_SIGNALING_UP"), "and", (3.5,), threshold=0.0),
    Effect("size", ("HALLMARK_G2M_CHECKPOINT",), "threshold", (1.8,), threshold=0.0, noise_sd=0.4),
    Effect("irregularity", ("HALLMARK_TGF_BETA_SIGNALING", "HALLMARK_IL6_JAK_STAT3_SIGNALING"), "and", (1.8,),
           threshold=-0.2, noise_sd=0.4),
    Effect("intensity", ("HALLMARK_OXIDATIVE_PHOSPHORYLATION",), "linear", (1.0,), noise_sd=0.4),
    Effect("heterogeneity", ("HALLMARK_INFLAMMATORY_RESPONSE", "HALLMARK_APOPTOSIS"), "interaction", (0.4, 0.4, 1.0),
           noise_sd=0.4),
    Effect("coarseness", ("HALLMARK_UNFOLDED_PROTEIN_RESPONSE",), "threshold", (1.8,), threshold=-0.3, noise_sd=0.4),
)

DESIGNS: dict[str, Design] = {
    "nsclc": Design("nsclc", PROGRAMS, EFFECTS, "the default: mostly linear programs (module docstring)"),
    "nonlinear": Design("nonlinear", NONLINEAR_PROGRAMS, NONLINEAR_EFFECTS,
                        "other programs; thresholds, ANDs of two programs and an interaction"),
}

_SIZE_SHAPE = {
    "LeastAxisLength", "MajorAxisLength", "Maximum2DDiameterSlice", "Maximum3DDiameter", "MeshVolume",
    "MinorAxisLength", "SurfaceArea", "VoxelVolume",
}
_INTENSITY = {"10Percentile", "90Percentile", "Maximum", "Mean", "Median", "Minimum", "RootMeanSquared"}
_NOISE_FIRSTORDER = {"Kurtosis", "Skewness"}


def feature_group(name: str) -> str | None:
    """The planted group of a panel feature, or None for a pure-noise feature.

    shape sizes and first-order Energy -> size; other shape -> irregularity; first-order
    location statistics -> intensity; other first-order and GLCM -> heterogeneity; GLRLM, GLSZM,
    GLDM -> coarseness; NGTDM, Skewness and Kurtosis -> noise.
    """
    cls, short = feature_class(name), name.split("_", 2)[-1]
    if cls == "shape":
        return "size" if short in _SIZE_SHAPE else "irregularity"
    if cls == "firstorder":
        if short in _NOISE_FIRSTORDER:
            return None
        if short == "Energy":
            return "size"
        return "intensity" if short in _INTENSITY else "heterogeneity"
    if cls == "glcm":
        return "heterogeneity"
    if cls in ("glrlm", "glszm", "gldm"):
        return "coarseness"
    return None


@dataclass(frozen=True)
class ExpressionModel:
    """Knobs of the expression model (documented in truth.json)."""

    responsive_fraction: float = 0.75
    loading_range: tuple[float, float] = (0.55, 0.9)
    positive_loading_prob: float = 0.85
    module_fraction: float = 0.6  # share of background genes in co-expression modules
    module_size_range: tuple[int, int] = (10, 150)
    module_loading_range: tuple[float, float] = (0.2, 0.7)
    mean_gamma: tuple[float, float] = (2.0, 2.5)  # shape, scale of per-gene means (log2 scale, skewed)
    sd_lognormal: tuple[float, float] = (-0.3, 0.45)  # log-mean, log-sd of per-gene SDs
    batch_shift_sd: float = 0.3  # test-site per-gene shift, in units of the gene's SD
    batch_intensity_shift: float = 0.4  # test-site scanner shift of the intensity latent (in SDs)
