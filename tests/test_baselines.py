"""Baselines on a small synthetic cohort: same folds and targets as the network, honest CV, refit, save/load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from radiogenomics.cohort import Cohort, load_cohort
from radiogenomics.errors import InputError
from radiogenomics.synth import SynthConfig, generate
from radiogenomics.training.baselines import (
    FAMILIES,
    GRIDS,
    BaselineCV,
    FittedBaselines,
    cross_validate_baselines,
    fit_baselines,
    fit_family,
    params_label,
)
from radiogenomics.training.targets import Standardizer, TargetSpec, stratified_folds, summary_auc, target_aucs

FOLDS, FOLD_SEED = 3, 425


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory, hallmark_gmt: Path) -> tuple[Cohort, Cohort]:
    out = tmp_path_factory.mktemp("baselines") / "c"
    generate(SynthConfig(out=out, hallmark_gmt=hallmark_gmt, n_train=120, n_test=60, n_genes=3000, n_features=12),
             progress=False)
    train = load_cohort(out / "train")
    return train, load_cohort(out / "test", classes=train.classes())


@pytest.fixture(scope="module")
def cv(cohorts: tuple[Cohort, Cohort]) -> BaselineCV:
    train, _ = cohorts
    return cross_validate_baselines(train, stratified_folds(train, FOLDS, FOLD_SEED), n_jobs=2)


@pytest.fixture(scope="module")
def fitted(cohorts: tuple[Cohort, Cohort], cv: BaselineCV) -> FittedBaselines:
    return fit_baselines(cohorts[0], cv, n_jobs=2)


def test_every_family_reports_every_target_in_every_fold(cohorts: tuple[Cohort, Cohort], cv: BaselineCV) -> None:
    train, _ = cohorts
    targets = TargetSpec.fit(train).names
    assert list(cv.targets) == targets and len(targets) == 3 + 12
    assert cv.families == list(FAMILIES)
    assert list(cv.scores.columns) == ["family", "params", "fold", "target", "auc"]
    n_points = sum(len(GRIDS[f]) for f in FAMILIES)
    assert len(cv.scores) == n_points * FOLDS * len(targets)
    for family in FAMILIES:
        assert set(cv.target_auc[family]) == set(targets)
        assert all(0.0 <= a <= 1.0 for a in cv.target_auc[family].values())
        assert cv.chosen[family] in [dict(p) for p in GRIDS[family]]
        rows = cv.scores[cv.scores.family == family]
        assert rows.groupby("params")["target"].nunique().eq(len(targets)).all()
        assert sorted(rows.fold.unique()) == list(range(FOLDS))
    # The selected point is the best mean of summary_auc over folds, and cv_auc is that mean.
    grid = cv.grid_table()
    for family in FAMILIES:
        best = grid[grid.family == family].sort_values("cv_auc", ascending=False, kind="stable").iloc[0]
        assert best.params == params_label(cv.chosen[family])
        assert cv.cv_auc[family] == pytest.approx(best.cv_auc)
        assert grid[(grid.family == family) & grid.selected].params.tolist() == [best.params]


def test_fold_scores_are_recomputable_from_the_fold_spec(cohorts: tuple[Cohort, Cohort], cv: BaselineCV) -> None:
    """One fold redone by hand with the shared helpers gives the same AUCs as the CV table."""
    train, _ = cohorts
    tr, va = stratified_folds(train, FOLDS, FOLD_SEED)[1]
    spec = TargetSpec.fit(train, rows=tr)
    labels = spec.encode(train)
    scaler = Standardizer.fit(train.expression[tr])
    scorers = fit_family("logistic_l2", scaler.transform(train.expression[tr]), labels.take(tr), spec, GRIDS["logistic_l2"])
    scorer = scorers[[dict(p) for p in GRIDS["logistic_l2"]].index({"C": 1.0})]
    aucs = target_aucs(spec, labels.take(va), scorer.predict(scaler.transform(train.expression[va])))
    table = cv.scores[(cv.scores.family == "logistic_l2") & (cv.scores.params == "C=1.0") & (cv.scores.fold == 1)]
    assert dict(zip(table.target, table.auc)) == pytest.approx(aucs, nan_ok=True)
    fold = cv.fold_scores[(cv.fold_scores.family == "logistic_l2") & (cv.fold_scores.params == "C=1.0") & (cv.fold_scores.fold == 1)]
    assert fold.summary_auc.item() == pytest.approx(summary_auc(spec, aucs))


def test_results_do_not_depend_on_n_jobs_or_on_the_other_families(cohorts: tuple[Cohort, Cohort], cv: BaselineCV) -> None:
    train, _ = cohorts
    alone = cross_validate_baselines(train, stratified_folds(train, FOLDS, FOLD_SEED), models=["svm", "logistic_l1"], n_jobs=1)
    assert alone.families == ["svm", "logistic_l1"]
    for family in alone.families:
        ours = alone.scores[alone.scores.family == family].reset_index(drop=True)
        theirs = cv.scores[cv.scores.family == family].reset_index(drop=True)
        assert ours.equals(theirs), family
        assert alone.chosen[family] == cv.chosen[family]


def test_l2_logistic_learns_squamous_histology_in_cv_and_on_the_test_cohort(
    cohorts: tuple[Cohort, Cohort], cv: BaselineCV, fitted: FittedBaselines
) -> None:
    _, test = cohorts
    assert cv.target_auc["logistic_l2"]["histology:SCC"] > 0.75
    labels = fitted.spec.encode(test)
    predictions = fitted.predict(test)
    assert set(predictions) == set(FAMILIES)
    aucs = target_aucs(fitted.spec, labels, predictions["logistic_l2"])
    assert aucs["histology:SCC"] > 0.7
    assert fitted.evaluate(test)["logistic_l2"] == pytest.approx(aucs, nan_ok=True)
    for family, preds in predictions.items():
        assert preds.histology.shape == (test.n_samples, 3) and preds.features.shape == (test.n_samples, 12), family
        assert np.allclose(preds.histology.sum(axis=1), 1.0), family
        assert ((preds.features >= 0) & (preds.features <= 1)).all(), family


def test_label_shuffled_training_scores_near_chance(cohorts: tuple[Cohort, Cohort]) -> None:
    """Screening and tuning happen inside the folds: with labels cut from the genes, CV sees no signal.

    Smaller ensembles keep the test fast; gene screening, the part that could leak, is unchanged.
    """
    train, _ = cohorts
    perm = np.random.default_rng(7).permutation(train.n_samples)
    shuffled = dataclasses.replace(train, expression=train.expression[perm])
    small = {"random_forest": [{"n_estimators": 30}], "gradient_boosting": [{"n_estimators": 25}]}
    result = cross_validate_baselines(shuffled, stratified_folds(shuffled, FOLDS, FOLD_SEED), n_jobs=2, grids=small)
    assert result.grids["random_forest"] == ({"n_estimators": 30},)
    for family in FAMILIES:
        mean = float(np.nanmean(list(result.target_auc[family].values())))
        assert abs(mean - 0.5) < 0.08, (family, mean)


def test_kernel_l2_logistic_and_svm_equal_the_models_on_all_genes(cohorts: tuple[Cohort, Cohort]) -> None:
    """The kernel shortcut is exact: same decision values as scikit-learn on the full gene matrix."""
    train, test = cohorts
    spec = TargetSpec.fit(train)
    labels = spec.encode(train)
    scaler = Standardizer.fit(train.expression)
    z, z_test = scaler.transform(train.expression), scaler.transform(test.expression)
    scale = np.sqrt(z.shape[1])  # the grids' C is on the gene-averaged kernel z z^T / n_genes
    y = labels.features[:, 0]
    l2 = fit_family("logistic_l2", z, labels, spec, ({"C": 1.0},))[0]
    direct = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000, tol=1e-10).fit(z / scale, y)
    assert np.allclose(l2.decision(z_test)[:, 3], direct.decision_function(z_test / scale), atol=2e-3)
    multi = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000, tol=1e-10).fit(z / scale, labels.histology)
    assert np.allclose(l2.predict(z_test).histology, multi.predict_proba(z_test / scale), atol=2e-3)
    svm = fit_family("svm", z, labels, spec, ({"C": 1.0},))[0]
    linear = SVC(kernel="linear", C=1.0, class_weight="balanced").fit(z / scale, y)
    assert np.allclose(svm.decision(z_test)[:, 3], linear.decision_function(z_test / scale), atol=1e-3)


@pytest.mark.parametrize("variant", ["two_classes", "no_histology", "histology_only"])
def test_families_handle_two_histology_classes_and_missing_targets(cohorts: tuple[Cohort, Cohort], variant: str) -> None:
    train, _ = cohorts
    if variant == "two_classes":
        cohort = train.subset(np.flatnonzero(train.labels() != "Other"))
    elif variant == "no_histology":
        cohort = dataclasses.replace(train, clinical=None)
    else:
        cohort = dataclasses.replace(train, radiomics=None)
    spec = TargetSpec.fit(cohort)
    labels = spec.encode(cohort)
    scaler = Standardizer.fit(cohort.expression)
    z = scaler.transform(cohort.expression)
    small = {"random_forest": ({"n_estimators": 10},), "gradient_boosting": ({"n_estimators": 10},), "logistic_l1": ({"C": 0.3},)}
    for family in FAMILIES:
        preds = fit_family(family, z, labels, spec, small.get(family, GRIDS[family][:1]))[0].predict(z)
        n_classes = {"two_classes": 2, "no_histology": 0, "histology_only": 3}[variant]
        if n_classes:
            assert preds.histology.shape == (cohort.n_samples, n_classes) and np.allclose(preds.histology.sum(axis=1), 1.0)
        else:
            assert preds.histology is None
        assert preds.features.shape == (cohort.n_samples, 0 if variant == "histology_only" else 12)
        aucs = target_aucs(spec, labels, preds)
        assert set(aucs) == set(spec.names) and all(a > 0.5 for a in aucs.values()), family  # fitted on these rows


def test_save_load_round_trip_gives_identical_predictions(
    cohorts: tuple[Cohort, Cohort], fitted: FittedBaselines, tmp_path: Path
) -> None:
    _, test = cohorts
    path = fitted.save(tmp_path / "artifact" / "baselines.joblib")
    loaded = FittedBaselines.load(path)
    assert loaded.params == fitted.params and loaded.genes == fitted.genes and loaded.spec == fitted.spec
    before, after = fitted.predict(test), loaded.predict(test)
    for family in FAMILIES:
        np.testing.assert_array_equal(before[family].matrix(), after[family].matrix())
    (tmp_path / "junk.joblib").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="not a readable baselines file"):
        FittedBaselines.load(tmp_path / "junk.joblib")


def test_test_genes_are_aligned_by_name_and_missing_genes_are_named(
    cohorts: tuple[Cohort, Cohort], fitted: FittedBaselines
) -> None:
    _, test = cohorts
    order = np.random.default_rng(3).permutation(test.n_genes)
    shuffled = dataclasses.replace(test, genes=tuple(test.genes[i] for i in order), expression=test.expression[:, order])
    same, aligned = fitted.predict(test), fitted.predict(shuffled)
    for family in FAMILIES:
        np.testing.assert_allclose(aligned[family].matrix(), same[family].matrix(), rtol=1e-6, atol=1e-9)
    keep = np.arange(7, test.n_genes)
    fewer = dataclasses.replace(test, genes=tuple(test.genes[i] for i in keep), expression=test.expression[:, keep])
    with pytest.raises(InputError, match=r"lacks 7 of the 3000 training genes") as err:
        fitted.predict(fewer)
    assert all(repr(g) in str(err.value) for g in test.genes[:5]) and repr(test.genes[5]) not in str(err.value)


def test_bad_requests_are_input_errors(cohorts: tuple[Cohort, Cohort], cv: BaselineCV) -> None:
    train, test = cohorts
    folds = stratified_folds(train, FOLDS, FOLD_SEED)
    with pytest.raises(InputError, match="unknown baseline model"):
        cross_validate_baselines(train, folds, models=["logistic_l2", "xgboost"])
    with pytest.raises(InputError, match="no cross-validation folds"):
        cross_validate_baselines(train, [])
    with pytest.raises(InputError, match="the svm grid needs one or more points, each setting exactly C"):
        cross_validate_baselines(train, folds, models=["svm"], grids={"svm": [{"gamma": 1.0}]})
    with pytest.raises(InputError, match="not the cohort the baselines were cross-validated on"):
        fit_baselines(test, cv)
