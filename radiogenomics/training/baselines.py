"""Baseline classifiers in the network's folds: L1/L2 logistic regression, SVM, random forest, boosting.

The paper compares its networks with scikit-learn models tuned on the same cross-validation splits
(METHOD_NOTES 3.1). We keep that protocol and its honesty rules, not the authors' huge grids:

* Same targets and folds as the network. In every fold, `TargetSpec` (histology classes, feature
  cut points) and `Standardizer` (per-gene z-scores) are fitted on the fold's training rows only;
  every model sees z-scored genes and is scored with `target_aucs` on the validation rows
  (histology one-vs-rest per class as `histology:<CLASS>`). A family's grid point is chosen by the
  best mean over folds of `summary_auc`, the rule our network's configuration is chosen by, and
  `fit_baselines` refits that point on the whole training cohort.
* Small grids (`GRIDS`), cheap enough to run the whole CV (262 x 21,766, 101 features, 5 folds,
  every family and grid point) in ~160 CPU-seconds: about 1.5 minutes on two idle cores with
  `n_jobs=2` (measured: 3.2 minutes while other jobs kept the 2-core machine at load 3.5; random
  forest is two thirds of it, boosting one fifth). How:

  - `logistic_l2` and `svm`: with far more genes than patients an L2-penalised linear model only
    depends on the patients' linear kernel. Per fold we compute K = Z Z^T / n_genes once (Z the
    z-scored training genes; dividing by the number of genes makes the C grid independent of it),
    reuse it for every target and C, and turn the fitted dual weights A back into gene weights
    W = Z^T A / n_genes. Logistic regression (lbfgs, warm-started along C) is fitted on the
    kernel's eigen-coordinates U sqrt(lambda): exactly the L2 model on all genes (the optimum lies
    in the span of the training rows). The SVM is `SVC(kernel="precomputed")`; its decision values
    are the scores (no Platt scaling: it costs an internal CV per target and does not change AUC).
  - `logistic_l1`, `random_forest`, `gradient_boosting`: one model per target on the genes most
    correlated with that target (500 for L1, 200 for trees) *in the fold's training rows*
    (univariate screening, re-done in
    every fold and in the refit, so no label of a validation patient is ever seen; the
    label-shuffled test checks it). For trees we measured this against the top 1,000-2,000 most
    variable genes: on the synthetic cohort, where the planted genes are no more variable than noise
    genes, such a filter keeps only ~5-9 % of them, and in two folds the forests' mean feature AUC
    was 0.54-0.57 with it against 0.69-0.72 with screening (boosting 0.56 vs 0.66-0.68). L1
    regression on all genes costs 0.3-0.4 s per liblinear fit; on 500 screened genes 5-10 ms, and
    the L1 penalty then keeps 3-150 of them.
  - `random_forest` is one forest per target. One multi-output forest for all 101 features is ~5x
    cheaper, but its splits serve all outputs at once: on the same 20 targets it scored 0.55-0.58
    mean AUC against 0.65 for per-target forests, too weak to be a fair comparator.
  - `random_forest` / `gradient_boosting` grids are over the number of trees / boosting stages:
    the first n trees of a seeded forest are exactly an n-tree forest and boosting is stagewise,
    so every grid point comes from one fit (truncated copies).
  - `gradient_boosting` is scikit-learn's `GradientBoostingClassifier` (exact splits, depth 2,
    subsampling, like the authors' XGBoost with depth 1-4); `HistGradientBoostingClassifier` was
    ~3x slower per fit at this sample size (its fixed per-fit and per-iteration costs dominate).
  - Each CV task is one (fold, family) pair; tasks run in `n_jobs` processes (joblib), each with one
    BLAS/OpenMP thread, longest first.

* Scores. `Predictions` hold probabilities: logistic regression and forests give them directly
  (L1 histology is one-vs-rest, so its class probabilities are normalised to sum to 1, as
  scikit-learn's OvR did); boosting gives `predict_proba`; the SVM's decision values are squashed
  with a logistic (features) or a softmax over the one-vs-rest decision values (histology). These
  SVM numbers rank patients correctly (all AUC needs) but are not calibrated probabilities.
* Class balance: every family weights classes inversely to their frequency (as the authors did).
* Seeds: every estimator gets `random_state=seed`; results do not depend on `n_jobs`.
* Fitted linear models are stored as gene-weight matrices, tree models with their screened gene
  indices; `FittedBaselines` is saved with joblib and predicts a cohort whose genes are aligned to
  the training genes by name.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import pandas as pd
import sklearn
from joblib import Parallel, delayed
from scipy.special import expit, softmax
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from radiogenomics.cohort import Cohort
from radiogenomics.errors import InputError
from radiogenomics.training.targets import (
    Labels,
    Predictions,
    Standardizer,
    TargetSpec,
    summary_auc,
    target_aucs,
)

Params = dict[str, Any]

#: Families in the order they are reported.
FAMILIES: tuple[str, ...] = ("logistic_l1", "logistic_l2", "svm", "random_forest", "gradient_boosting")

#: The grid of each family (2-3 points; fixed settings are the constants below).
GRIDS: dict[str, tuple[Params, ...]] = {
    "logistic_l1": ({"C": 0.03}, {"C": 0.1}, {"C": 0.3}),  # liblinear scale, on z-scored screened genes
    "logistic_l2": ({"C": 0.01}, {"C": 1.0}, {"C": 100.0}),  # on the gene-averaged kernel (see module doc)
    "svm": ({"C": 0.01}, {"C": 1.0}, {"C": 100.0}),  # same scale; C >= ~10 acts as a hard margin on the default cohort
    "random_forest": ({"n_estimators": 50}, {"n_estimators": 100}),
    "gradient_boosting": ({"n_estimators": 10}, {"n_estimators": 25}, {"n_estimators": 50}),  # 100 was no better, at 2x the cost
}

#: Genes kept per target by univariate screening: L1 logistic regression, and forest / boosting.
L1_SCREEN_GENES = 500
TREE_SCREEN_GENES = 200
RF_MAX_FEATURES = "sqrt"
RF_MIN_SAMPLES_LEAF = 3
GB_LEARNING_RATE = 0.1
GB_MAX_DEPTH = 2
GB_SUBSAMPLE = 0.8
GB_MAX_FEATURES = "sqrt"
LOGISTIC_MAX_ITER = 1000
#: Relative eigenvalue below which a kernel direction is treated as zero (centred data has rank n-1).
_EIGEN_TOL = 1e-9
#: Rough relative cost of each family's CV task: the most expensive are scheduled first.
_COST = {"random_forest": 5, "gradient_boosting": 3, "logistic_l1": 1, "logistic_l2": 0.5, "svm": 0.4}
_SHOW = 5


def params_label(params: Params) -> str:
    """A grid point as a short stable string, e.g. `C=0.1` (the `params` column of the score table)."""
    return ",".join(f"{k}={v}" for k, v in sorted(params.items()))


# ----------------------------------------------------------------------------------------------
# Fitted scorers: every family ends as one of these; both take z-scored genes (training order).


@dataclass
class LinearScorer:
    """Gene weights (genes x targets) and intercepts: scores = z @ weights + bias.

    Histology columns come first. `histology_link` turns their scores into probabilities:
    "softmax" (multinomial logistic regression: exactly its predict_proba; SVM: a softmax over its
    one-vs-rest decision values, not calibrated) or "ovr" (one-vs-rest logistic regressions:
    sigmoids normalised to sum to 1). Feature columns go through a logistic (for the SVM a monotone
    squash of the decision value, so its AUC is the decision value's).
    """

    weights: np.ndarray
    bias: np.ndarray
    n_histology: int
    histology_link: Literal["softmax", "ovr"]

    def decision(self, z: np.ndarray) -> np.ndarray:
        return z.astype(np.float32, copy=False) @ self.weights + self.bias

    def predict(self, z: np.ndarray) -> Predictions:
        scores = self.decision(z).astype(np.float64)
        h = self.n_histology
        histology = None
        if h:
            if self.histology_link == "softmax":
                histology = softmax(scores[:, :h], axis=1)
            else:
                p = expit(scores[:, :h])
                histology = p / p.sum(axis=1, keepdims=True)
        return Predictions(histology=histology, features=expit(scores[:, h:]))


@dataclass
class TreeScorer:
    """One tree ensemble per target, each on its own screened genes (indices into the training genes).

    `histology` is a multi-class model (or None); `features` one binary model per radiomic target.
    """

    histology: tuple[np.ndarray, Any] | None
    features: list[tuple[np.ndarray, Any]]
    n_classes: int

    def predict(self, z: np.ndarray) -> Predictions:
        z = np.asarray(z, dtype=np.float32)
        histology = None
        if self.histology is not None:
            genes, model = self.histology
            proba = model.predict_proba(z[:, genes])
            histology = np.zeros((len(z), self.n_classes))
            histology[:, np.asarray(model.classes_, dtype=np.int64)] = proba
        features = np.zeros((len(z), len(self.features)))
        for j, (genes, model) in enumerate(self.features):
            proba = model.predict_proba(z[:, genes])
            features[:, j] = proba[:, list(model.classes_).index(1.0)]
        return Predictions(histology=histology, features=features)


Scorer = LinearScorer | TreeScorer


# ----------------------------------------------------------------------------------------------
# The families. Each fits every grid point on z-scored training rows and returns one scorer per point.


def _targets(labels: Labels, spec: TargetSpec) -> tuple[np.ndarray, int]:
    """All targets as a binary matrix (histology one-vs-rest first) and the number of histology columns."""
    n_hist = len(spec.histology_classes) if labels.histology is not None else 0
    return labels.onehot(spec).astype(np.float64), n_hist


def _screen(z: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """For each target column, the indices (ascending) of the k genes most correlated with it."""
    k = min(k, z.shape[1])
    yc = y - y.mean(axis=0)
    sd = np.sqrt((yc**2).mean(axis=0))
    corr = np.abs(z.T.astype(np.float64) @ yc) / (len(z) * np.where(sd > 0, sd, 1.0))  # z has SD 1
    top = np.argsort(-corr, axis=0, kind="stable")[:k]
    return np.sort(top, axis=0).T


def _histology_genes(z: np.ndarray, y: np.ndarray, n_hist: int, k: int) -> np.ndarray:
    """Screened genes for a multi-class histology model: best |correlation| with any class indicator."""
    yc = y[:, :n_hist] - y[:, :n_hist].mean(axis=0)
    sd = np.sqrt((yc**2).mean(axis=0))
    corr = np.abs(z.T.astype(np.float64) @ yc) / (len(z) * np.where(sd > 0, sd, 1.0))
    return np.sort(np.argsort(-corr.max(axis=1), kind="stable")[: min(k, z.shape[1])])


def _kernel(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z in float64 and the gene-averaged linear kernel z z^T / n_genes of the training rows."""
    z64 = z.astype(np.float64)
    return z64, (z64 @ z64.T) / z64.shape[1]


def _fit_logistic_l1(z: np.ndarray, labels: Labels, spec: TargetSpec, grid: Sequence[Params], seed: int) -> list[Scorer]:
    y, n_hist = _targets(labels, spec)
    genes = _screen(z, y, L1_SCREEN_GENES)
    n_targets = y.shape[1]
    weights = [np.zeros((z.shape[1], n_targets), dtype=np.float32) for _ in grid]
    bias = [np.zeros(n_targets, dtype=np.float32) for _ in grid]
    for j in range(n_targets):
        xs = z[:, genes[j]].astype(np.float64)
        for g, params in enumerate(grid):
            model = LogisticRegression(C=params["C"], l1_ratio=1.0, solver="liblinear", class_weight="balanced",
                                       max_iter=LOGISTIC_MAX_ITER, random_state=seed).fit(xs, y[:, j])
            weights[g][genes[j], j] = model.coef_[0]
            bias[g][j] = model.intercept_[0]
    return [LinearScorer(w, b, n_hist, "ovr") for w, b in zip(weights, bias)]


def _fit_logistic_l2(z: np.ndarray, labels: Labels, spec: TargetSpec, grid: Sequence[Params], seed: int) -> list[Scorer]:
    y, n_hist = _targets(labels, spec)
    z64, kernel = _kernel(z)
    eigval, eigvec = np.linalg.eigh(kernel)
    keep = eigval > _EIGEN_TOL * eigval.max()
    eigval, eigvec = eigval[keep], eigvec[:, keep]
    coords = eigvec * np.sqrt(eigval)  # training rows in the kernel's eigen-coordinates
    back = eigvec / np.sqrt(eigval)  # eigen-coordinate weights -> dual weights per training row
    order = sorted(range(len(grid)), key=lambda g: grid[g]["C"])  # ascending C: warm starts converge fast
    n_targets = y.shape[1]
    coef = [np.zeros((coords.shape[1], n_targets)) for _ in grid]
    bias = [np.zeros(n_targets) for _ in grid]
    columns: list[tuple[slice, np.ndarray]] = []
    if n_hist:
        columns.append((slice(0, n_hist), labels.histology))  # one multinomial model for the classes
    columns += [(slice(j, j + 1), y[:, j]) for j in range(n_hist, n_targets)]
    for cols, target in columns:
        model = LogisticRegression(class_weight="balanced", max_iter=LOGISTIC_MAX_ITER, warm_start=True, random_state=seed)
        for g in order:
            model.set_params(C=grid[g]["C"]).fit(coords, target)
            c, b = model.coef_, model.intercept_
            if cols.stop - cols.start == 2:  # two classes: one logit d; softmax([-d/2, d/2]) = sigmoid(d)
                c, b = np.vstack([-c / 2, c / 2]), np.concatenate([-b / 2, b / 2])
            coef[g][:, cols] = c.T
            bias[g][cols] = b
    return [LinearScorer((z64.T @ (back @ c) / z64.shape[1]).astype(np.float32), b.astype(np.float32), n_hist, "softmax")
            for c, b in zip(coef, bias)]


def _fit_svm(z: np.ndarray, labels: Labels, spec: TargetSpec, grid: Sequence[Params], seed: int) -> list[Scorer]:
    y, n_hist = _targets(labels, spec)
    z64, kernel = _kernel(z)
    n_targets = y.shape[1]
    dual = [np.zeros((len(z), n_targets)) for _ in grid]
    bias = [np.zeros(n_targets) for _ in grid]
    for j in range(n_targets):  # histology: one-vs-rest per class
        for g, params in enumerate(grid):
            model = SVC(kernel="precomputed", C=params["C"], class_weight="balanced", random_state=seed).fit(kernel, y[:, j])
            dual[g][model.support_, j] = model.dual_coef_[0]  # decision = kernel[:, support] @ dual_coef + b
            bias[g][j] = model.intercept_[0]
    return [LinearScorer((z64.T @ a / z64.shape[1]).astype(np.float32), b.astype(np.float32), n_hist, "softmax")
            for a, b in zip(dual, bias)]


def _truncated(model: Any, n: int) -> Any:
    """The same fitted ensemble restricted to its first n trees / stages (shares the trees)."""
    if n >= len(model.estimators_):
        return model
    out = copy.copy(model)
    out.estimators_ = model.estimators_[:n]
    out.n_estimators = n
    if hasattr(out, "n_estimators_"):
        out.n_estimators_ = n
    return out


def _fit_ensembles(make: Callable[[int], Any], weighted: bool, z: np.ndarray, labels: Labels, spec: TargetSpec,
                   grid: Sequence[Params]) -> list[Scorer]:
    """One ensemble per target on its screened genes; grid points are truncations of one fit."""
    y, n_hist = _targets(labels, spec)
    largest = max(int(p["n_estimators"]) for p in grid)
    z32 = np.asarray(z, dtype=np.float32)

    def fit(genes: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, Any]:
        weight = compute_sample_weight("balanced", target) if weighted else None
        return genes, make(largest).fit(z32[:, genes], target, sample_weight=weight)

    histology = None
    if n_hist:
        histology = fit(_histology_genes(z, y, n_hist, TREE_SCREEN_GENES), labels.histology)
    genes = _screen(z, y[:, n_hist:], TREE_SCREEN_GENES) if y.shape[1] > n_hist else []
    features = [fit(genes[j], y[:, n_hist + j]) for j in range(y.shape[1] - n_hist)]
    out: list[Scorer] = []
    for params in grid:
        n = int(params["n_estimators"])
        out.append(TreeScorer(
            histology=None if histology is None else (histology[0], _truncated(histology[1], n)),
            features=[(g, _truncated(m, n)) for g, m in features],
            n_classes=n_hist,
        ))
    return out


def _fit_random_forest(z: np.ndarray, labels: Labels, spec: TargetSpec, grid: Sequence[Params], seed: int) -> list[Scorer]:
    def make(n: int) -> RandomForestClassifier:
        return RandomForestClassifier(n_estimators=n, max_features=RF_MAX_FEATURES, min_samples_leaf=RF_MIN_SAMPLES_LEAF,
                                      class_weight="balanced", random_state=seed, n_jobs=1)
    return _fit_ensembles(make, False, z, labels, spec, grid)


def _fit_gradient_boosting(z: np.ndarray, labels: Labels, spec: TargetSpec, grid: Sequence[Params], seed: int) -> list[Scorer]:
    def make(n: int) -> GradientBoostingClassifier:
        return GradientBoostingClassifier(n_estimators=n, learning_rate=GB_LEARNING_RATE, max_depth=GB_MAX_DEPTH,
                                          subsample=GB_SUBSAMPLE, max_features=GB_MAX_FEATURES, random_state=seed)
    return _fit_ensembles(make, True, z, labels, spec, grid)


_FITTERS: dict[str, Callable[[np.ndarray, Labels, TargetSpec, Sequence[Params], int], list[Scorer]]] = {
    "logistic_l1": _fit_logistic_l1,
    "logistic_l2": _fit_logistic_l2,
    "svm": _fit_svm,
    "random_forest": _fit_random_forest,
    "gradient_boosting": _fit_gradient_boosting,
}


def fit_family(family: str, z: np.ndarray, labels: Labels, spec: TargetSpec, grid: Sequence[Params],
               seed: int = 0) -> list[Scorer]:
    """Fit every grid point of a family on z-scored training rows; one scorer per grid point.

    Runs with one BLAS/OpenMP thread (parallelism comes from running families/folds side by side).
    """
    with threadpool_limits(limits=1), warnings.catch_warnings():
        # A few weakly regularised fits stop at max_iter on noise targets; the ranking is already stable.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _FITTERS[family](np.asarray(z, dtype=np.float32), labels, spec, grid, seed)


def _check_grids(families: Sequence[str], grids: Mapping[str, Sequence[Params]] | None) -> dict[str, tuple[Params, ...]]:
    """The grid of each family: `GRIDS` unless overridden (same parameter names, at least one point)."""
    grids = grids or {}
    unknown = [f for f in grids if f not in GRIDS]
    if unknown:
        raise InputError(f"grid given for unknown baseline model(s) {', '.join(map(repr, unknown))}; choose from {', '.join(FAMILIES)}")
    out = {}
    for family in families:
        points = tuple(dict(p) for p in grids.get(family, GRIDS[family]))
        keys = set(GRIDS[family][0])
        if not points or any(set(p) != keys for p in points):
            raise InputError(f"the {family} grid needs one or more points, each setting exactly {', '.join(sorted(keys))}")
        out[family] = points
    return out


def _check_models(models: Sequence[str] | None) -> tuple[str, ...]:
    names = tuple(FAMILIES if models is None else models)
    unknown = [m for m in names if m not in GRIDS]
    if unknown:
        raise InputError(f"unknown baseline model(s) {', '.join(map(repr, unknown))}; choose from {', '.join(FAMILIES)}")
    if not names:
        raise InputError(f"no baseline models selected; choose one or more of {', '.join(FAMILIES)}")
    return tuple(dict.fromkeys(names))


# ----------------------------------------------------------------------------------------------
# Cross-validation


@dataclass(frozen=True)
class BaselineCV:
    """Cross-validated baselines: every grid point's per-fold AUCs and each family's selected point.

    `scores` is tidy: one row per (family, params, fold, target) with the validation AUC (NaN when
    the fold's validation rows have one class). `fold_scores` holds each fold's `summary_auc`.
    For the selected grid point of each family: `chosen` (params), `target_auc` (target -> mean AUC
    over folds) and `cv_auc` (mean over folds of `summary_auc`, the selection score).

    The selected point's numbers are chosen on the same folds they are reported on, so they are a
    little optimistic (winner's curse): with labels shuffled, the mean over all grid points stays
    at 0.50 while the selected point's mean target AUC is ~0.50-0.51. The independent test cohort
    (`FittedBaselines.evaluate`) gives the unbiased number, as for the network.
    """

    scores: pd.DataFrame
    fold_scores: pd.DataFrame
    chosen: dict[str, Params]
    target_auc: dict[str, dict[str, float]]
    cv_auc: dict[str, float]
    grids: dict[str, tuple[Params, ...]]
    targets: tuple[str, ...]
    features: tuple[str, ...]
    cut_quantile: float
    seed: int
    n_folds: int
    data_hash: str
    seconds: dict[str, float] = field(default_factory=dict)  # per family: wall time summed over its fold tasks
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # per family: CPU time of its tasks (load-independent)
    wall_seconds: float = 0.0  # the whole cross-validation

    @property
    def families(self) -> list[str]:
        return list(self.chosen)

    def grid_table(self) -> pd.DataFrame:
        """Mean and SD over folds of `summary_auc` for every grid point, with the selected one marked."""
        table = (self.fold_scores.groupby(["family", "params"], sort=False)["summary_auc"]
                 .agg(cv_auc="mean", cv_sd="std").reset_index())
        table["selected"] = [params_label(self.chosen[f]) == p for f, p in zip(table["family"], table["params"])]
        return table

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for metrics.json / model.json)."""
        return {
            "folds": self.n_folds, "seed": self.seed, "cut_quantile": self.cut_quantile, "seconds": self.wall_seconds,
            "families": {
                f: {"params": self.chosen[f], "cv_auc": self.cv_auc[f], "target_auc": self.target_auc[f],
                    "seconds": self.seconds.get(f)}
                for f in self.families
            },
            "grid": self.grid_table().to_dict(orient="records"),
        }


def _cv_task(family: str, grid: tuple[Params, ...], fold: int, expression: np.ndarray, train: np.ndarray,
             val: np.ndarray, spec: TargetSpec, labels: Labels, scaler: Standardizer,
             seed: int) -> tuple[str, int, list[Predictions], float, float]:
    """Fit a family's grid on one fold's training rows; predictions for its validation rows."""
    start, cpu = time.perf_counter(), time.process_time()
    scorers = fit_family(family, scaler.transform(expression[train]), labels.take(train), spec, grid, seed)
    z_val = scaler.transform(expression[val])
    preds = [s.predict(z_val) for s in scorers]
    return family, fold, preds, time.perf_counter() - start, time.process_time() - cpu


def _check_folds(cohort: Cohort, folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(folds) == 0:
        raise InputError("no cross-validation folds given; build them with stratified_folds(cohort, k, seed)")
    out = []
    for k, (train, val) in enumerate(folds):
        train, val = np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)
        if len(train) == 0 or len(val) == 0:
            raise InputError(f"fold {k} has an empty training or validation part; build folds with stratified_folds")
        if max(train.max(), val.max()) >= cohort.n_samples or min(train.min(), val.min()) < 0:
            raise InputError(f"fold {k} indexes rows outside the cohort's {cohort.n_samples} samples; "
                             "build the folds from this cohort")
        if np.intersect1d(train, val).size:
            raise InputError(f"fold {k} has {np.intersect1d(train, val).size} sample(s) in both training and validation")
        out.append((train, val))
    return out


def cross_validate_baselines(
    cohort: Cohort,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    features: Sequence[str] | None = None,
    cut_quantile: float = 0.5,
    models: Sequence[str] | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    progress: bool = False,
    grids: Mapping[str, Sequence[Params]] | None = None,
) -> BaselineCV:
    """Cross-validate every baseline family and grid point in the given folds (the network's folds).

    Targets and z-scoring are fitted inside each fold's training rows; each family's grid point is
    selected by the best mean over folds of `summary_auc`. `models` picks families (default all);
    `grids` replaces the grid of some families (default `GRIDS`).
    """
    start = time.perf_counter()
    families = _check_models(models)
    grid_of = _check_grids(families, grids)
    folds = _check_folds(cohort, folds)
    prepared = []
    for train, _ in folds:
        spec = TargetSpec.fit(cohort, rows=train, features=features, cut_quantile=cut_quantile)
        prepared.append((spec, spec.encode(cohort), Standardizer.fit(cohort.expression[train])))
    names = prepared[0][0].names
    for k, (spec, _, _) in enumerate(prepared):
        if spec.names != names:
            raise InputError(f"fold {k} has other targets than fold 0 ({len(spec.names)} vs {len(names)}); "
                             "use folds stratified on histology (stratified_folds)")

    tasks = sorted(((f, k) for f in families for k in range(len(folds))), key=lambda t: (-_COST[t[0]], t[1]))
    jobs = (delayed(_cv_task)(f, grid_of[f], k, cohort.expression, folds[k][0], folds[k][1], prepared[k][0],
                              prepared[k][1], prepared[k][2], seed) for f, k in tasks)
    results: dict[tuple[str, int], list[Predictions]] = {}
    seconds, cpu_seconds = dict.fromkeys(families, 0.0), dict.fromkeys(families, 0.0)
    with tqdm(total=len(tasks), desc="baselines", unit="fit", disable=not progress) as bar:
        for family, k, preds, secs, cpu in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
            results[(family, k)] = preds
            seconds[family] += secs
            cpu_seconds[family] += cpu
            bar.set_postfix_str(family)
            bar.update()

    rows, fold_rows = [], []
    for family in families:
        for g, params in enumerate(grid_of[family]):
            label = params_label(params)
            for k, (_, val) in enumerate(folds):
                spec, labels, _ = prepared[k]
                aucs = target_aucs(spec, labels.take(val), results[(family, k)][g])
                rows += [(family, label, k, t, a) for t, a in aucs.items()]
                fold_rows.append((family, label, k, summary_auc(spec, aucs)))
    scores = pd.DataFrame(rows, columns=["family", "params", "fold", "target", "auc"])
    fold_scores = pd.DataFrame(fold_rows, columns=["family", "params", "fold", "summary_auc"])

    chosen: dict[str, Params] = {}
    target_auc: dict[str, dict[str, float]] = {}
    cv_auc: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a target whose every fold is NaN stays NaN
        for family in families:
            labels_ = [params_label(p) for p in grid_of[family]]
            means = [fold_scores.loc[(fold_scores.family == family) & (fold_scores.params == lab), "summary_auc"].mean()
                     for lab in labels_]
            best = int(np.nanargmax(means)) if not np.all(np.isnan(means)) else 0  # ties: the first (listed) point
            chosen[family] = dict(grid_of[family][best])
            cv_auc[family] = float(means[best])
            sub = scores[(scores.family == family) & (scores.params == labels_[best])]
            per_target = sub.groupby("target", sort=False)["auc"].mean()
            target_auc[family] = {t: float(per_target[t]) for t in names}
    return BaselineCV(
        scores=scores, fold_scores=fold_scores, chosen=chosen, target_auc=target_auc, cv_auc=cv_auc,
        grids=grid_of, targets=tuple(names), features=prepared[0][0].features,
        cut_quantile=cut_quantile, seed=seed, n_folds=len(folds), data_hash=cohort.content_hash(), seconds=seconds,
        cpu_seconds=cpu_seconds, wall_seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------------------------
# Refit on the whole training cohort, predict new cohorts, save/load


@dataclass
class FittedBaselines:
    """Each family's selected grid point refitted on the whole training cohort.

    Holds the training `spec` (targets, cut points, classes), the `standardizer` and `genes` (the
    training gene order), and one scorer per family. `predict` aligns a new cohort's genes by name.
    """

    spec: TargetSpec
    standardizer: Standardizer
    genes: tuple[str, ...]
    params: dict[str, Params]
    models: dict[str, Scorer]
    cv_auc: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    sklearn_version: str = sklearn.__version__

    @property
    def families(self) -> list[str]:
        return list(self.models)

    def align(self, cohort: Cohort) -> np.ndarray:
        """The cohort's expression with columns in training gene order (extra genes are dropped)."""
        if tuple(cohort.genes) == self.genes:
            return cohort.expression
        index = {g: i for i, g in enumerate(cohort.genes)}
        missing = [g for g in self.genes if g not in index]
        if missing:
            shown = ", ".join(repr(g) for g in missing[:_SHOW]) + (", ..." if len(missing) > _SHOW else "")
            raise InputError(f"{cohort.root}: expression lacks {len(missing)} of the {len(self.genes)} training genes "
                             f"({shown}); add those columns (same gene symbols as the training cohort)")
        return cohort.expression[:, [index[g] for g in self.genes]]

    def predict(self, cohort: Cohort) -> dict[str, Predictions]:
        """Predictions of every family for every sample of a (test) cohort."""
        z = self.standardizer.transform(self.align(cohort))
        return {family: scorer.predict(z) for family, scorer in self.models.items()}

    def evaluate(self, cohort: Cohort) -> dict[str, dict[str, float]]:
        """AUC per family and target on a labelled cohort (labels encoded with the training spec)."""
        labels = self.spec.encode(cohort)
        return {family: target_aucs(self.spec, labels, preds) for family, preds in self.predict(cohort).items()}

    def save(self, path: str | Path) -> Path:
        """Write to one compressed joblib file (parent directories are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path, compress=3)
        return path

    @staticmethod
    def load(path: str | Path) -> FittedBaselines:
        """Read a file written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: baselines file not found; write it with FittedBaselines.save")
        try:
            obj = joblib.load(path)
        except Exception as exc:  # joblib raises many types for a file that is not one of its pickles
            raise InputError(f"{path}: not a readable baselines file ({type(exc).__name__}); re-run the baseline fit") from None
        if not isinstance(obj, FittedBaselines):
            raise InputError(f"{path}: holds a {type(obj).__name__}, not FittedBaselines; pass the baselines file")
        return obj


def _refit_task(family: str, params: Params, z: np.ndarray, labels: Labels, spec: TargetSpec,
                seed: int) -> tuple[str, Scorer]:
    return family, fit_family(family, z, labels, spec, (params,), seed)[0]


def fit_baselines(
    cohort: Cohort,
    chosen: BaselineCV,
    *,
    models: Sequence[str] | None = None,
    n_jobs: int = 1,
    progress: bool = False,
) -> FittedBaselines:
    """Refit each family's selected grid point on the whole training cohort (the one cross-validated).

    Targets, cut points and z-scoring are fitted on all of its rows; `models` restricts the families.
    """
    families = _check_models(chosen.families if models is None else models)
    absent = [f for f in families if f not in chosen.chosen]
    if absent:
        raise InputError(f"baseline model(s) {', '.join(absent)} were not cross-validated; "
                         f"choose from {', '.join(chosen.families)}")
    if cohort.content_hash() != chosen.data_hash:
        raise InputError(f"{cohort.root}: not the cohort the baselines were cross-validated on; "
                         "refit on the same training cohort")
    spec = TargetSpec.fit(cohort, features=chosen.features, cut_quantile=chosen.cut_quantile)
    labels = spec.encode(cohort)
    scaler = Standardizer.fit(cohort.expression)
    z = scaler.transform(cohort.expression)
    order = sorted(families, key=lambda f: -_COST[f])
    jobs = (delayed(_refit_task)(f, chosen.chosen[f], z, labels, spec, chosen.seed) for f in order)
    models_: dict[str, Scorer] = {}
    with tqdm(total=len(order), desc="baselines refit", unit="model", disable=not progress) as bar:
        for family, scorer in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
            models_[family] = scorer
            bar.update()
    return FittedBaselines(
        spec=spec, standardizer=scaler, genes=tuple(cohort.genes),
        params={f: dict(chosen.chosen[f]) for f in families},
        models={f: models_[f] for f in families},
        cv_auc={f: chosen.cv_auc[f] for f in families}, seed=chosen.seed,
    )


__all__ = [
    "FAMILIES", "GRIDS", "BaselineCV", "FittedBaselines", "LinearScorer", "TreeScorer",
    "cross_validate_baselines", "fit_baselines", "fit_family", "params_label",
]
