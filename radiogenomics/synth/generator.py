"""Synthetic cohorts with planted, known biology (see `programs.py` for the model).

`generate(config)` writes OUT/train and OUT/test cohort directories (DESIGN.md format),
OUT/gene_sets.gmt (planted and decoy sets) and OUT/truth.json (which set drives which output, how
and how strongly, with the strength measured on the generated training cohort).

Randomness comes from independent streams spawned from one seed: gene-level parameters, the
training patients, the test patients and each patient's image. The same seed gives the same files;
changing the cohort sizes does not change the genes' parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import expit, logit, softmax
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from radiogenomics import __version__
from radiogenomics.cohort import CLINICAL_FILE, RADIOMICS_FILE, SAMPLE_ID, write_expression, write_table
from radiogenomics.errors import InputError
from radiogenomics.gene_sets import GeneSet, read_gmt, write_gmt
from radiogenomics.radiomic_features import FEATURE_PANEL, select_panel
from radiogenomics.synth.programs import (
    FEATURE_GROUPS,
    HISTOLOGY_CLASSES,
    HISTOLOGY_PREVALENCE,
    OTHER_SIGNATURE,
    OTHER_SIGNATURE_SIZE,
    DESIGNS,
    Design,
    Effect,
    ExpressionModel,
    feature_group,
)

HALLMARK_SOURCE = "MSigDB Hallmark v7.0"
GENERATED_PREFIX = "SYNG"
N_DECOYS = 20
#: Per-patient program activities and group latents (outside the cohort folders: models never see it).
PATIENT_TRUTH_FILE = "truth_patients.csv"
_REFERENCE_DRAWS = 200_000  # Monte-Carlo sample that fixes intercepts and latent scales


class SynthConfig(BaseModel):
    """Options of `radiogenomics synth` (defaults mirror the paper's cohorts)."""

    model_config = ConfigDict(frozen=True)
    out: Path
    hallmark_gmt: Path
    seed: int = Field(42, ge=0)
    n_train: int = Field(262, ge=10, description="training patients")
    n_test: int = Field(89, ge=10, description="independent test patients")
    n_genes: int = Field(21766, ge=1)
    n_features: int = Field(len(FEATURE_PANEL), ge=1, le=len(FEATURE_PANEL))
    images: bool = False
    expression_format: Literal["parquet", "tsv", "csv"] = "parquet"
    design: Literal["nsclc", "nonlinear"] = "nsclc"  # the planted biology (programs.DESIGNS)


# ----------------------------------------------------------------------------------------------
# The world: gene-level parameters shared by both cohorts


@dataclass(frozen=True)
class World:
    genes: list[str]  # column order (alphabetical)
    mean: np.ndarray  # per-gene mean (log2 scale)
    sd: np.ndarray  # per-gene SD
    factor: np.ndarray  # factor column per gene (-1: independent noise gene)
    loading: np.ndarray  # loading on that factor
    n_modules: int
    batch_shift: np.ndarray  # test-site shift per gene (absolute, log2 scale)
    responsive: dict[str, list[str]]  # program -> responsive genes
    gene_sets: dict[str, GeneSet]  # everything written to gene_sets.gmt
    decoys: list[str]
    features: list[str]
    feature_group: dict[str, str | None]
    feature_loading: np.ndarray  # signed correlation of each feature with its group latent
    feature_transform: list[tuple[str, float, float]]  # (kind, centre, scale) per feature
    intercepts: dict[str, float]  # histology logits' intercepts (ADC = 0)
    group_scale: dict[str, tuple[float, float]]  # mean, SD of each group's raw latent
    design: Design = DESIGNS["nsclc"]


def _generated_names(n: int, start: int = 1) -> list[str]:
    return [f"{GENERATED_PREFIX}{i:05d}" for i in range(start, start + n)]


def _choose_genes(config: SynthConfig, hallmark: dict[str, GeneSet]) -> tuple[list[str], list[str]]:
    """The gene universe and the synthetic signature's genes; planted genes are always included."""
    other_sig = _generated_names(OTHER_SIGNATURE_SIZE)
    planted = list(dict.fromkeys(g for p in DESIGNS[config.design].programs if p in hallmark for g in hallmark[p].genes))
    needed = len(planted) + len(other_sig)
    if config.n_genes < needed:
        raise InputError(f"--genes must be at least {needed} (the planted programs' genes), got {config.n_genes}")
    chosen = dict.fromkeys(planted + other_sig)
    for gs in hallmark.values():
        for g in gs.genes:
            if len(chosen) >= config.n_genes:
                break
            chosen.setdefault(g)
    filler = config.n_genes - len(chosen)
    chosen.update(dict.fromkeys(_generated_names(filler, start=OTHER_SIGNATURE_SIZE + 1)))
    return sorted(chosen), other_sig


def _effect_value(effect: Effect, act: dict[str, np.ndarray]) -> np.ndarray:
    a = [act[p] for p in effect.programs]
    if effect.mechanism == "linear":
        return effect.coefficients[0] * a[0]
    if effect.mechanism == "threshold":
        return effect.coefficients[0] * (a[0] > effect.threshold).astype(float)
    if effect.mechanism == "and":
        return effect.coefficients[0] * ((a[0] > effect.threshold) & (a[1] > effect.threshold)).astype(float)
    b1, b2, b12 = effect.coefficients
    return b1 * a[0] + b2 * a[1] + b12 * a[0] * a[1]


def _histology_probs(act: dict[str, np.ndarray], intercepts: dict[str, float], design: Design) -> np.ndarray:
    n = len(next(iter(act.values())))
    logits = np.zeros((n, len(HISTOLOGY_CLASSES)))
    for effect in design.effects:
        if effect.output.startswith("histology:"):
            cls = effect.output.split(":", 1)[1]
            logits[:, HISTOLOGY_CLASSES.index(cls)] += intercepts[cls] + _effect_value(effect, act)
    return softmax(logits, axis=1)


def planted_scores(truth: dict, patient_truth: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each planted target's score under its own rule, from the patients' true program activities
    (rows of `truth_patients.csv`): each histology class's probability (the generator's own softmax,
    one-vs-rest) and each driven feature's oriented driver. These are the Bayes-optimal rankings for
    a model that knew the activities, so their AUC is the ceiling a model of the expression can
    approach (its expected value; on a small test set a lucky model can pass it). Noise features
    have no score."""
    design = DESIGNS[truth["config"]["design"]]
    act = {p: patient_truth[p].to_numpy(dtype=np.float64) for p in design.programs}
    probs = _histology_probs(act, truth["histology"]["intercepts"], design)
    out = {f"histology:{c}": probs[:, k] for k, c in enumerate(HISTOLOGY_CLASSES)}
    by_output = {e.output: e for e in design.effects}
    for effect in truth["effects"]:
        if not effect["output"].startswith("histology:"):
            driver = _effect_value(by_output[effect["output"]], act)
            out.update({f: sign * driver for f, sign in effect["direction"].items()})
    return out


def _calibrate(seed_free_rng: np.random.Generator, design: Design) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Histology intercepts that give the target prevalence, and each group latent's mean/SD."""
    act = {p: seed_free_rng.standard_normal(_REFERENCE_DRAWS) for p in design.programs}
    intercepts = {c: 0.0 for c in HISTOLOGY_CLASSES}
    target = np.array([HISTOLOGY_PREVALENCE[c] for c in HISTOLOGY_CLASSES])
    for _ in range(60):
        achieved = _histology_probs(act, intercepts, design).mean(axis=0)
        for k, c in enumerate(HISTOLOGY_CLASSES[1:], start=1):
            intercepts[c] += math.log(target[k] / achieved[k]) - math.log(target[0] / achieved[0])
    scales = {}
    for effect in design.effects:
        if effect.output in FEATURE_GROUPS:
            raw = _effect_value(effect, act) + effect.noise_sd * seed_free_rng.standard_normal(_REFERENCE_DRAWS)
            scales[effect.output] = (float(raw.mean()), float(raw.std()))
    return {c: round(v, 6) for c, v in intercepts.items()}, scales


_FRACTION = {
    "Elongation", "Flatness", "Sphericity", "Uniformity", "Id", "Idm", "Idmn", "Idn", "InverseVariance",
    "JointEnergy", "MaximumProbability", "Imc2", "Correlation", "RunPercentage", "ZonePercentage",
    "SmallAreaEmphasis", "ShortRunEmphasis", "Coarseness",
}
_SIGNED = {
    "Mean": (30.0, 15.0), "Median": (32.0, 15.0), "10Percentile": (-20.0, 20.0), "90Percentile": (80.0, 20.0),
    "Minimum": (-200.0, 60.0), "Maximum": (200.0, 60.0), "Skewness": (0.0, 0.5), "ClusterShade": (0.0, 50.0),
    "Imc1": (-0.2, 0.05),
}


def _feature_transform(name: str, rng: np.random.Generator) -> tuple[str, float, float]:
    short = name.split("_", 2)[-1]
    if short in _FRACTION or short.endswith("Normalized"):
        return ("fraction", float(rng.uniform(0.2, 0.8)), 0.7)
    if short in _SIGNED:
        return ("signed", *_SIGNED[short])
    return ("positive", float(10 ** rng.uniform(0.0, 3.0)), 0.35)


def build_world(config: SynthConfig, model: ExpressionModel = ExpressionModel()) -> World:
    """Draw every gene-level and feature-level parameter from the seed's gene stream."""
    hallmark = read_gmt(config.hallmark_gmt)
    design = DESIGNS[config.design]
    missing = [p for p in design.programs if p != OTHER_SIGNATURE and p not in hallmark]
    if missing:
        raise InputError(f"{config.hallmark_gmt}: lacks the planted set(s) {', '.join(missing)}; pass the MSigDB Hallmark GMT (v7.0)")
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
    genes, other_sig = _choose_genes(config, hallmark)
    col = {g: j for j, g in enumerate(genes)}
    n = len(genes)

    mean = 0.5 + rng.gamma(model.mean_gamma[0], model.mean_gamma[1], n)
    sd = np.exp(rng.normal(model.sd_lognormal[0], model.sd_lognormal[1], n))
    factor = np.full(n, -1, dtype=np.int64)
    loading = np.zeros(n)

    program_sets = {p: (hallmark[p].genes if p in hallmark else tuple(other_sig)) for p in design.programs}
    responsive: dict[str, list[str]] = {}
    for k, program in enumerate(design.programs):
        members = [g for g in program_sets[program] if g in col and factor[col[g]] == -1]
        n_resp = max(1, round(model.responsive_fraction * len(program_sets[program])))
        picked = sorted(rng.choice(members, size=min(n_resp, len(members)), replace=False).tolist())
        responsive[program] = picked
        idx = np.array([col[g] for g in picked])
        factor[idx] = k
        signs = np.where(rng.random(len(idx)) < model.positive_loading_prob, 1.0, -1.0)
        loading[idx] = signs * rng.uniform(*model.loading_range, len(idx))

    # Background co-expression modules over a share of the remaining (noise) genes.
    free = np.flatnonzero(factor == -1)
    in_modules = rng.permutation(free)[: int(model.module_fraction * len(free))]
    n_modules, pos = 0, 0
    while pos < len(in_modules):
        size = int(rng.integers(model.module_size_range[0], model.module_size_range[1] + 1))
        idx = in_modules[pos: pos + size]
        factor[idx] = len(design.programs) + n_modules
        loading[idx] = rng.uniform(*model.module_loading_range, len(idx))
        n_modules, pos = n_modules + 1, pos + size

    batch_shift = rng.normal(0.0, model.batch_shift_sd, n) * sd

    responsive_all = {g for genes_ in responsive.values() for g in genes_}
    noise_genes = [g for g in genes if g not in responsive_all]
    decoys: list[GeneSet] = []
    for d in range(N_DECOYS):
        size = int(round(math.exp(rng.uniform(math.log(15), math.log(200)))))
        members = sorted(rng.choice(noise_genes, size=size, replace=False).tolist())
        decoys.append(GeneSet(f"SYNTH_DECOY_{d + 1:02d}", tuple(members), "decoy: random noise genes, drives nothing"))
    gene_sets = dict(hallmark)
    gene_sets[OTHER_SIGNATURE] = GeneSet(OTHER_SIGNATURE, tuple(other_sig), "synthetic planted signature of the 'Other' histology")
    gene_sets.update({d.name: d for d in decoys})

    features = select_panel(config.n_features)
    groups = {f: feature_group(f) for f in features}
    feature_loading = np.array([
        0.0 if groups[f] is None else (1.0 if rng.random() < 0.8 else -1.0) * rng.uniform(0.8, 0.97) for f in features
    ])
    transforms = [_feature_transform(f, rng) for f in features]
    intercepts, group_scale = _calibrate(np.random.default_rng(20210531), design)
    return World(
        genes=genes, mean=mean, sd=sd, factor=factor, loading=loading, n_modules=n_modules,
        batch_shift=batch_shift, responsive=responsive, gene_sets=gene_sets, decoys=[d.name for d in decoys],
        features=features, feature_group=groups, feature_loading=feature_loading,
        feature_transform=transforms, intercepts=intercepts, group_scale=group_scale, design=design,
    )


# ----------------------------------------------------------------------------------------------
# Patients


@dataclass(frozen=True)
class SampledCohort:
    sample_ids: list[str]
    expression: np.ndarray  # float32, samples x genes
    activities: dict[str, np.ndarray]  # program -> activity per patient
    group_latents: pd.DataFrame  # standardised group latents per patient (drive features and images)
    radiomics: pd.DataFrame
    clinical: pd.DataFrame


def sample_cohort(
    world: World, n: int, seed: int, stream: int, test_site: bool, model: ExpressionModel = ExpressionModel()
) -> SampledCohort:
    """Draw `n` patients from random stream `stream`; the test site carries the batch effect."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    programs = world.design.programs
    n_factors = len(programs) + world.n_modules
    factors = rng.standard_normal((n, n_factors))
    act = {p: factors[:, k] for k, p in enumerate(programs)}

    per_gene = np.where(world.factor >= 0, world.factor, 0)
    shared = factors[:, per_gene] * world.loading  # zero loading for independent genes
    z = shared + np.sqrt(1.0 - world.loading**2) * rng.standard_normal((n, len(world.genes)))
    x = world.mean + world.sd * z + (world.batch_shift if test_site else 0.0)
    expression = np.clip(x, 0.0, None).astype(np.float32)

    probs = _histology_probs(act, world.intercepts, world.design)
    u = rng.random(n)[:, None]
    histology = np.array(HISTOLOGY_CLASSES)[(u > np.cumsum(probs, axis=1)).sum(axis=1).clip(max=len(HISTOLOGY_CLASSES) - 1)]

    latents = {}
    for effect in world.design.effects:
        if effect.output in FEATURE_GROUPS:
            raw = _effect_value(effect, act) + effect.noise_sd * rng.standard_normal(n)
            mu, sigma = world.group_scale[effect.output]
            latents[effect.output] = (raw - mu) / sigma
    if test_site:
        latents["intensity"] = latents["intensity"] + model.batch_intensity_shift
    group_latents = pd.DataFrame(latents)

    values = np.empty((n, len(world.features)))
    for j, feature in enumerate(world.features):
        group, rho = world.feature_group[feature], world.feature_loading[j]
        s = rng.standard_normal(n)
        if group is not None:
            s = rho * group_latents[group].to_numpy() + math.sqrt(1 - rho**2) * s
        kind, centre, scale = world.feature_transform[j]
        if kind == "fraction":
            values[:, j] = expit(logit(centre) + scale * s)
        elif kind == "signed":
            values[:, j] = centre + scale * s
        else:
            values[:, j] = centre * np.exp(scale * s)

    prefix = "SYN-A" if not test_site else "SYN-B"
    ids = [f"{prefix}-{i + 1:04d}" for i in range(n)]
    index = pd.Index(ids, name=SAMPLE_ID)
    clinical = pd.DataFrame(
        {
            "histology": histology,
            "site": "SITE_A" if not test_site else "SITE_B",
            "sex": rng.choice(["F", "M"], n),
            "smoking_status": rng.choice(["current", "former", "never"], n, p=[0.3, 0.55, 0.15]),
        },
        index=index,
    )
    group_latents.index = index
    return SampledCohort(
        sample_ids=ids, expression=expression, activities=act, group_latents=group_latents,
        radiomics=pd.DataFrame(values, index=index, columns=world.features), clinical=clinical,
    )


# ----------------------------------------------------------------------------------------------
# Truth


def gene_set_scores(expression: np.ndarray, genes: list[str], gene_set: GeneSet, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Mean z-score of the set's genes per sample (z with the given per-gene mean/SD)."""
    col = {g: j for j, g in enumerate(genes)}
    idx = [col[g] for g in gene_set.genes if g in col]
    if not idx:
        return np.zeros(expression.shape[0])
    return ((expression[:, idx] - mean[idx]) / np.where(sd[idx] > 0, sd[idx], 1.0)).mean(axis=1)


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    return None if len(set(y.tolist())) < 2 else round(float(roc_auc_score(y, score)), 4)


def _truth(world: World, config: SynthConfig, train: SampledCohort, test: SampledCohort, model: ExpressionModel) -> dict:
    x_mean, x_sd = train.expression.mean(axis=0), train.expression.std(axis=0)
    set_score = {
        p: gene_set_scores(train.expression, world.genes, world.gene_sets[p], x_mean, x_sd) for p in world.design.programs
    }
    effects = []
    for effect in world.design.effects:
        driver = _effect_value(effect, train.activities)
        if effect.output.startswith("histology:"):
            outputs = [effect.output]
            labels = {effect.output: (train.clinical["histology"].to_numpy() == effect.output.split(":")[1]).astype(int)}
            direction = {effect.output: 1}
        else:
            outputs = [f for f in world.features if world.feature_group[f] == effect.output]
            labels = {f: (train.radiomics[f] > train.radiomics[f].median()).astype(int).to_numpy() for f in outputs}
            direction = {f: int(np.sign(world.feature_loading[world.features.index(f)])) for f in outputs}

        def oriented(score: np.ndarray) -> dict[str, float | None]:
            out = {}
            for o in outputs:
                auc = _auc(labels[o], direction[o] * score)
                out[o] = auc
            return out

        effects.append({
            "output": effect.output,
            "outputs": outputs,
            "programs": list(effect.programs),
            "mechanism": effect.mechanism,
            "formula": effect.formula(),
            "coefficients": list(effect.coefficients),
            "threshold": effect.threshold,
            "noise_sd": effect.noise_sd,
            "direction": direction,
            "auc_train_driver": oriented(driver),
            "auc_train_set_score": {p: oriented(set_score[p]) for p in effect.programs},
        })
    responsive_all = {g: p for p, gs in world.responsive.items() for g in gs}
    universe = set(world.genes)
    sets = {}
    for name, gs in world.gene_sets.items():
        overlap: dict[str, int] = {}
        for g in gs.genes:
            if g in responsive_all:
                overlap[responsive_all[g]] = overlap.get(responsive_all[g], 0) + 1
        role = "planted" if name in world.design.programs else ("decoy" if name in world.decoys else "not planted")
        sets[name] = {
            "role": role,
            "source": "synthetic" if name.startswith("SYNTH_") else HALLMARK_SOURCE,
            "size": len(gs),
            "in_cohort": sum(g in universe for g in gs.genes),
            "responsive_overlap": overlap,
        }
    counts = {
        name: {c: int((cohort.clinical["histology"] == c).sum()) for c in HISTOLOGY_CLASSES}
        for name, cohort in (("train", train), ("test", test))
    }
    return {
        "generator": f"radiogenomics {__version__} synth",
        "config": json.loads(config.model_dump_json(exclude={"out"})),
        "histology": {
            "classes": list(HISTOLOGY_CLASSES),
            "target_prevalence": HISTOLOGY_PREVALENCE,
            "intercepts": world.intercepts,
            "counts": counts,
        },
        "programs": {
            p: {
                "source": "synthetic" if p == OTHER_SIGNATURE else HALLMARK_SOURCE,
                "responsive_genes": world.responsive[p],
            }
            for p in world.design.programs
        },
        "effects": effects,
        "features": {
            f: {
                "group": world.feature_group[f],
                "loading": round(float(world.feature_loading[j]), 4),
                "scale": world.feature_transform[j][0],
            }
            for j, f in enumerate(world.features)
        },
        "noise_features": [f for f in world.features if world.feature_group[f] is None],
        "gene_sets": sets,
        "expression_model": {
            "description": "x = mean_g + sd_g * (loading_g * factor + sqrt(1 - loading_g^2) * noise), clipped at 0 (log2 scale)",
            "responsive_fraction": model.responsive_fraction,
            "loading_range": model.loading_range,
            "positive_loading_prob": model.positive_loading_prob,
            "background_modules": world.n_modules,
            "genes_in_modules": int((world.factor >= len(world.design.programs)).sum()),
            "independent_noise_genes": int((world.factor == -1).sum()),
            "generated_gene_prefix": GENERATED_PREFIX,
        },
        "batch_effect": {
            "test_site": "SITE_B",
            "gene_shift_sd": f"{model.batch_shift_sd} x the gene's SD (per gene, fixed)",
            "intensity_latent_shift": model.batch_intensity_shift,
        },
    }


# ----------------------------------------------------------------------------------------------
# Writing


def _write_cohort(root: Path, world: World, cohort: SampledCohort, fmt: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    write_expression(root / f"expression.{fmt}", cohort.sample_ids, world.genes, cohort.expression)
    write_table(root / RADIOMICS_FILE, cohort.radiomics)
    write_table(root / CLINICAL_FILE, cohort.clinical)


def generate(config: SynthConfig, progress: bool = True) -> dict:
    """Generate and write the synthetic train/test cohorts, gene sets and truth; returns the truth."""
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: output directory is not empty; choose a new directory or remove it")
    model = ExpressionModel()
    steps = ["genes", "train cohort", "test cohort", "write", "truth"] + (["images"] if config.images else [])
    with tqdm(total=len(steps), desc="synth", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("genes")
        world = build_world(config, model)
        bar.update()
        bar.set_postfix_str("train cohort")
        train = sample_cohort(world, config.n_train, config.seed, stream=1, test_site=False, model=model)
        bar.update()
        bar.set_postfix_str("test cohort")
        test = sample_cohort(world, config.n_test, config.seed, stream=2, test_site=True, model=model)
        bar.update()
        bar.set_postfix_str("write")
        out.mkdir(parents=True, exist_ok=True)
        _write_cohort(out / "train", world, train, config.expression_format)
        _write_cohort(out / "test", world, test, config.expression_format)
        write_gmt(out / "gene_sets.gmt", world.gene_sets)
        bar.update()
        bar.set_postfix_str("truth")
        truth = _truth(world, config, train, test, model)
        bar.update()
        if config.images:
            from radiogenomics.synth.images import write_images  # SimpleITK only when asked for

            bar.set_postfix_str("images")
            for name, cohort, stream in (("train", train, 101), ("test", test, 102)):
                write_images(out / name, cohort.group_latents, config.seed, stream, progress=progress)
            truth["images"] = {
                "format": "NRRD, int16 HU image + uint8 mask (label 1)",
                "driven_by": "the same group latents as the radiomic features (size, irregularity, intensity, heterogeneity, coarseness)",
            }
            bar.update()
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    patient_truth = pd.concat(
        [
            pd.concat([pd.DataFrame(c.activities, index=c.group_latents.index), c.group_latents], axis=1)
            for c in (train, test)
        ]
    )
    patient_truth.to_csv(out / PATIENT_TRUTH_FILE, float_format="%.6g")
    return truth
