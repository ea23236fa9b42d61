"""The synthetic cohort generator: shapes, determinism, and that the planted biology is really there."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from radiogenomics.cohort import Cohort, load_cohort
from radiogenomics.errors import InputError
from radiogenomics.gene_sets import read_gmt
from radiogenomics.radiomic_features import FEATURE_PANEL
from radiogenomics.synth import SynthConfig, generate
from radiogenomics.synth.generator import PATIENT_TRUTH_FILE, gene_set_scores
from radiogenomics.synth.programs import PROGRAMS


@functools.cache
def _load(cohort_dir: Path) -> Cohort:
    return load_cohort(cohort_dir)


def _set_auc(cohort_dir: Path, set_name: str, labels: np.ndarray, train_dir: Path | None = None) -> float:
    """AUC of the gene set's mean z-score (z with the training cohort's mean/SD) for binary labels."""
    cohort = _load(cohort_dir)
    ref = _load(train_dir) if train_dir else cohort
    sets = read_gmt(cohort_dir.parent / "gene_sets.gmt")
    score = gene_set_scores(cohort.expression, list(cohort.genes), sets[set_name], ref.expression.mean(0), ref.expression.std(0))
    return float(roc_auc_score(labels, score))


def test_paper_sized_defaults(paper_cohort: Path, hallmark_gmt: Path) -> None:
    train, test = load_cohort(paper_cohort / "train"), load_cohort(paper_cohort / "test")
    assert train.expression.shape == (262, 21766) and test.expression.shape == (89, 21766)
    assert train.genes == test.genes and len(set(train.genes)) == 21766
    assert train.feature_names == list(FEATURE_PANEL) and len(train.feature_names) == 101
    assert train.classes() == ["ADC", "Other", "SCC"]
    assert set(test.classes()) <= set(train.classes())
    counts = pd.Series(train.labels()).value_counts(normalize=True)
    assert 0.40 < counts["ADC"] < 0.60 and 0.25 < counts["SCC"] < 0.45 and 0.08 < counts["Other"] < 0.22
    assert not set(train.sample_ids) & set(test.sample_ids)
    assert (train.expression >= 0).all()  # log-expression scale


def test_real_symbols_kept_and_the_rest_generated(paper_cohort: Path, hallmark_gmt: Path) -> None:
    genes = set(load_cohort(paper_cohort / "train").genes)
    hallmark_genes = {g for s in read_gmt(hallmark_gmt).values() for g in s.genes}
    assert hallmark_genes <= genes  # all 4,384 Hallmark symbols fit in 21,766 genes
    generated = genes - hallmark_genes
    assert len(generated) == 21766 - len(hallmark_genes)
    assert all(g.startswith("SYNG") for g in generated)


def test_expression_looks_like_log_expression(paper_cohort: Path) -> None:
    x = load_cohort(paper_cohort / "train").expression.astype(np.float64)
    means, sds = x.mean(0), x.std(0)
    assert pd.Series(means).skew() > 0.5  # skewed per-gene means
    assert sds.max() / np.median(sds) > 3  # heterogeneous variances
    # Co-expression: genes of a planted program correlate with each other, random gene pairs do not.
    truth = json.loads((paper_cohort / "truth.json").read_text())
    genes = list(load_cohort(paper_cohort / "train").genes)
    hyp = [genes.index(g) for g in truth["programs"]["HALLMARK_HYPOXIA"]["responsive_genes"][:30]]
    corr = np.corrcoef(x[:, hyp].T)
    assert np.median(np.abs(corr[np.triu_indices(len(hyp), 1)])) > 0.25
    rng = np.random.default_rng(0)
    rand = rng.choice(x.shape[1], 30, replace=False)
    corr_r = np.corrcoef(x[:, rand].T)
    assert np.median(np.abs(corr_r[np.triu_indices(30, 1)])) < 0.1


def test_planted_histology_programs_separate_their_classes(paper_cohort: Path) -> None:
    train = load_cohort(paper_cohort / "train")
    y = train.labels()
    hyp = _set_auc(paper_cohort / "train", "HALLMARK_HYPOXIA", (y == "SCC").astype(int))
    other = _set_auc(paper_cohort / "train", "SYNTH_NSCLC_OTHER_SIGNATURE", (y == "Other").astype(int))
    assert hyp > 0.80 and other > 0.80
    # In the independent test cohort too (scored with the training cohort's statistics, despite the batch effect).
    y_test = load_cohort(paper_cohort / "test").labels()
    assert _set_auc(paper_cohort / "test", "HALLMARK_HYPOXIA", (y_test == "SCC").astype(int), paper_cohort / "train") > 0.75
    # Decoys drive nothing.
    decoy = [_set_auc(paper_cohort / "train", f"SYNTH_DECOY_{k:02d}", (y == "SCC").astype(int)) for k in range(1, 6)]
    assert all(abs(a - 0.5) < 0.12 for a in decoy), decoy


def test_planted_feature_programs_and_noise_features(paper_cohort: Path) -> None:
    truth = json.loads((paper_cohort / "truth.json").read_text())
    train = load_cohort(paper_cohort / "train")

    def feature_auc(set_name: str, feature: str) -> float:
        values = train.radiomics[feature]
        labels = (values > values.median()).astype(int).to_numpy()
        sign = np.sign(truth["features"][feature]["loading"]) or 1
        auc = _set_auc(paper_cohort / "train", set_name, labels)
        return auc if sign > 0 else 1 - auc

    assert feature_auc("HALLMARK_E2F_TARGETS", "original_shape_VoxelVolume") > 0.7  # linear
    assert feature_auc("HALLMARK_ANGIOGENESIS", "original_glrlm_RunEntropy") > 0.7  # linear
    irregular = [f for f, v in truth["features"].items() if v["group"] == "irregularity"]
    assert np.mean([feature_auc("HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION", f) for f in irregular]) > 0.65  # threshold
    # Interaction: TNFA x PI3K/AKT drive texture; the product of the two set scores is informative.
    texture = [f for f, v in truth["features"].items() if v["group"] == "heterogeneity"]
    assert np.mean([feature_auc("HALLMARK_TNFA_SIGNALING_VIA_NFKB", f) for f in texture]) > 0.56
    # Pure-noise features follow no planted program.
    assert truth["noise_features"] and all(truth["features"][f]["group"] is None for f in truth["noise_features"])
    for feature in truth["noise_features"]:
        for program in ("HALLMARK_HYPOXIA", "HALLMARK_E2F_TARGETS", "HALLMARK_INTERFERON_GAMMA_RESPONSE"):
            assert abs(feature_auc(program, feature) - 0.5) < 0.15


def test_truth_documents_every_effect(paper_cohort: Path) -> None:
    truth = json.loads((paper_cohort / "truth.json").read_text())
    mechanisms = {e["mechanism"] for e in truth["effects"]}
    assert mechanisms == {"linear", "threshold", "interaction"}
    by_output = {e["output"]: e for e in truth["effects"]}
    assert by_output["histology:SCC"]["programs"] == ["HALLMARK_HYPOXIA"]
    assert by_output["histology:SCC"]["auc_train_set_score"]["HALLMARK_HYPOXIA"]["histology:SCC"] > 0.8
    assert set(truth["programs"]) == set(PROGRAMS)
    sets = truth["gene_sets"]
    assert sets["HALLMARK_HYPOXIA"]["role"] == "planted" and sets["SYNTH_DECOY_01"]["role"] == "decoy"
    assert sets["HALLMARK_GLYCOLYSIS"]["role"] == "not planted"
    assert sets["HALLMARK_GLYCOLYSIS"]["responsive_overlap"].get("HALLMARK_HYPOXIA", 0) > 0  # overlap is disclosed
    assert sets["SYNTH_DECOY_01"]["responsive_overlap"] == {}
    assert set(read_gmt(paper_cohort / "gene_sets.gmt")) == set(sets)
    patients = pd.read_csv(paper_cohort / PATIENT_TRUTH_FILE, index_col=0)
    assert len(patients) == 262 + 89 and "HALLMARK_HYPOXIA" in patients.columns and "size" in patients.columns


def test_batch_effect_between_sites(paper_cohort: Path) -> None:
    train, test = load_cohort(paper_cohort / "train"), load_cohort(paper_cohort / "test")
    diff = test.expression.mean(0) - train.expression.mean(0)
    se = np.sqrt(train.expression.var(0) / train.n_samples + test.expression.var(0) / test.n_samples) + 1e-9
    assert np.mean(np.abs(diff / se) > 3) > 0.25  # most genes would not shift without a site effect
    assert set(train.clinical["site"]) == {"SITE_A"} and set(test.clinical["site"]) == {"SITE_B"}


def _small(out: Path, hallmark_gmt: Path, **kw: object) -> SynthConfig:
    return SynthConfig(out=out, hallmark_gmt=hallmark_gmt, n_train=40, n_test=20, n_genes=6000, n_features=30, **kw)


def test_deterministic_for_a_seed(tmp_path: Path, hallmark_gmt: Path) -> None:
    generate(_small(tmp_path / "a", hallmark_gmt), progress=False)
    generate(_small(tmp_path / "b", hallmark_gmt), progress=False)
    generate(_small(tmp_path / "c", hallmark_gmt, seed=7), progress=False)
    for rel in ("train/radiomics.csv", "train/clinical.csv", "test/radiomics.csv", "gene_sets.gmt", "truth.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    a, b, c = (load_cohort(tmp_path / k / "train") for k in "abc")
    np.testing.assert_array_equal(a.expression, b.expression)
    assert a.genes == c.genes  # the gene universe does not depend on the seed
    assert not np.array_equal(a.expression, c.expression)


def test_small_options_and_formats(tmp_path: Path, hallmark_gmt: Path) -> None:
    generate(_small(tmp_path / "s", hallmark_gmt, expression_format="tsv"), progress=False)
    train = load_cohort(tmp_path / "s" / "train")
    assert train.expression.shape == (40, 6000) and len(train.feature_names) == 30
    assert train.expression_file.name == "expression.tsv"
    with pytest.raises(InputError, match="--genes must be at least"):
        generate(SynthConfig(out=tmp_path / "t", hallmark_gmt=hallmark_gmt, n_genes=500), progress=False)
    with pytest.raises(InputError, match="not empty"):
        generate(_small(tmp_path / "s", hallmark_gmt), progress=False)


@pytest.mark.slow
def test_images_follow_the_same_programs(tmp_path: Path, hallmark_gmt: Path) -> None:
    """Real pyradiomics on the generated CT volumes: tumour volume tracks the size program."""
    from radiomics import featureextractor

    out = tmp_path / "img"
    generate(SynthConfig(out=out, hallmark_gmt=hallmark_gmt, n_train=24, n_test=10, n_genes=6000, n_features=30, images=True), progress=False)
    train = load_cohort(out / "train")
    assert train.images is not None and list(train.images.index) == list(train.sample_ids)
    first = sitk.ReadImage(str(train.images.iloc[0]["Image"]))
    assert first.GetPixelID() == sitk.sitkInt16 and first.GetSpacing() == pytest.approx((0.9, 0.9, 1.5))
    extractor = featureextractor.RadiomicsFeatureExtractor()
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(shape=["VoxelVolume"], firstorder=["Mean"])
    rows = []
    for sample_id, row in train.images.iterrows():
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(row["Mask"])))
        assert mask.sum() > 100
        result = extractor.execute(str(row["Image"]), str(row["Mask"]))
        rows.append({"sample_id": sample_id, "volume": float(result["original_shape_VoxelVolume"]),
                     "mean": float(result["original_firstorder_Mean"])})
    features = pd.DataFrame(rows).set_index("sample_id")
    latents = pd.read_csv(out / PATIENT_TRUTH_FILE, index_col=0).loc[features.index]
    assert spearmanr(features["volume"], latents["size"]).statistic > 0.8
    assert spearmanr(features["mean"], latents["intensity"]).statistic > 0.6


def test_nonlinear_design_plants_its_rules(tmp_path: Path, hallmark_gmt: Path) -> None:
    """`--design nonlinear`: other programs, and its rules hold in the patients' own activities: "Other"
    histology concentrates where MYC *and* KRAS are both active (an AND), SCC above a GLYCOLYSIS
    threshold; truth.json records the design and each mechanism."""
    from radiogenomics.synth.programs import DESIGNS

    out = tmp_path / "nl"
    generate(SynthConfig(out=out, hallmark_gmt=hallmark_gmt, n_train=400, n_test=20, n_genes=6000, n_features=20,
                         design="nonlinear"), progress=False)
    truth = json.loads((out / "truth.json").read_text())
    assert truth["config"]["design"] == "nonlinear"
    assert set(truth["programs"]) == set(DESIGNS["nonlinear"].programs)
    assert {e["output"]: e["mechanism"] for e in truth["effects"]}["histology:Other"] == "and"
    acts = pd.read_csv(out / PATIENT_TRUTH_FILE).set_index("sample_id")
    clinical = pd.read_csv(out / "train" / "clinical.csv").set_index("sample_id")
    acts = acts.loc[clinical.index]
    both = (acts["HALLMARK_MYC_TARGETS_V1"] > 0) & (acts["HALLMARK_KRAS_SIGNALING_UP"] > 0)
    other = clinical["histology"] == "Other"
    assert other[both].mean() > 3 * other[~both].mean()  # the AND: one program alone does not do it
    one_only = (acts["HALLMARK_MYC_TARGETS_V1"] > 0) & ~both
    assert other[one_only].mean() < 0.5 * other[both].mean()
    scc = clinical["histology"] == "SCC"
    high = acts["HALLMARK_GLYCOLYSIS"] > 0.3
    assert scc[high].mean() > 2 * scc[~high].mean()


def test_planted_scores_are_the_rules_on_the_true_activities(paper_cohort: Path) -> None:
    """`planted_scores` (the ceiling `bench/accuracy.py` prints): every driven feature's score ranks the
    training patients exactly as the generator's own driver did (truth.json's `auc_train_driver`,
    computed when the cohort was made); the histology scores are the probabilities the labels were
    drawn from (rows sum to 1, means at the target prevalences); noise features get no score."""
    from radiogenomics.synth.generator import planted_scores
    from radiogenomics.synth.programs import HISTOLOGY_PREVALENCE

    truth = json.loads((paper_cohort / "truth.json").read_text())
    train = _load(paper_cohort / "train")
    patients = pd.read_csv(paper_cohort / PATIENT_TRUTH_FILE, index_col=0).loc[list(train.sample_ids)]
    scores = planted_scores(truth, patients)
    checked = 0
    for effect in truth["effects"]:
        for feature, expected in effect["auc_train_driver"].items():
            if feature.startswith("histology:"):
                continue
            labels = (train.radiomics[feature] > train.radiomics[feature].median()).to_numpy()
            assert roc_auc_score(labels, scores[feature]) == pytest.approx(expected, abs=5e-5)  # truth.json rounds to 4 places
            checked += 1
    assert checked == sum(1 for f in truth["features"] if f not in truth["noise_features"])
    assert not set(truth["noise_features"]) & set(scores)
    classes = truth["histology"]["classes"]
    probs = np.stack([scores[f"histology:{c}"] for c in classes], axis=1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    for k, c in enumerate(classes):
        assert probs[:, k].mean() == pytest.approx(HISTOLOGY_PREVALENCE[c], abs=0.06)
        assert roc_auc_score(train.clinical["histology"].to_numpy() == c, probs[:, k]) > 0.7
