"""Ensembles of configurations, scored on the same cross-validation folds as everything else.

Every Tune trial leaves its out-of-fold probabilities (each training patient predicted by the fold
model that did not see it). Averaging the probabilities of the k best configurations gives the
ensemble's out-of-fold predictions at no extra training cost; its CV AUC per target is computed
fold by fold with each fold's own labels (cut points fitted on that fold's training rows), the
same rule as a single configuration's. `choose_size` picks the k with the best mean CV score
(ties: the smaller ensemble). The choice of k among a handful is the only selection made on these
scores, as the choice of the best configuration is for a single network.

Each chosen configuration is then trained with more seeds (`seed_bag`), cross-validated on the
same folds: with ~200 patients an early-stopped network's CV AUC moves by ~0.02 from one seed to
the next (nonlinear cohort histology: 0.775-0.795 over five seeds), and averaging them removes that
variance (five seeds: 0.801). The number of seeds is fixed, not chosen on these scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from radiogenomics.cohort import Cohort
from radiogenomics.training.targets import TargetSpec, safe_auc, summary_auc


@dataclass(frozen=True)
class FoldLabels:
    """One outer fold: its validation rows and their binary labels in `names` order."""

    val_rows: np.ndarray
    onehot: np.ndarray


def fold_labels(cohort: Cohort, folds: Sequence[tuple[np.ndarray, np.ndarray]], *, features: Sequence[str] | None,
                cut_quantile: float) -> list[FoldLabels]:
    """Each fold's validation labels, encoded with the targets fitted on that fold's training rows."""
    out = []
    for train_rows, val_rows in folds:
        spec = TargetSpec.fit(cohort, rows=train_rows, features=features, cut_quantile=cut_quantile)
        out.append(FoldLabels(np.asarray(val_rows), spec.encode(cohort).onehot(spec)[val_rows]))
    return out


def cv_aucs(oof: np.ndarray, folds: Sequence[FoldLabels], names: Sequence[str]) -> dict[str, float]:
    """Per-target AUC of out-of-fold probabilities, averaged over folds (NaN folds skipped)."""
    per_fold = np.array([[safe_auc(f.onehot[:, j], oof[f.val_rows, j]) for j in range(len(names))] for f in folds])
    with np.errstate(all="ignore"):
        means = np.nanmean(per_fold, axis=0)
    return {name: float(v) for name, v in zip(names, means)}


@dataclass(frozen=True)
class EnsembleChoice:
    size: int
    per_target: dict[str, float]  # the chosen ensemble's CV AUC per target
    scores: dict[int, float]  # CV score of every size tried


def choose_size(oofs: Sequence[np.ndarray], folds: Sequence[FoldLabels], spec: TargetSpec) -> EnsembleChoice:
    """The number of best-first configurations whose averaged probabilities score best in CV."""
    if not oofs:
        raise ValueError("no out-of-fold predictions to ensemble")
    names = spec.names
    scores: dict[int, float] = {}
    per_target: dict[int, dict[str, float]] = {}
    for k in range(1, len(oofs) + 1):
        per_target[k] = cv_aucs(np.mean(np.stack(oofs[:k]), axis=0), folds, names)
        scores[k] = summary_auc(spec, per_target[k])
    best = max(scores, key=lambda k: (round(scores[k], 6), -k))
    return EnsembleChoice(size=best, per_target=per_target[best], scores=scores)


def seed_bag(oofs: Sequence[Sequence[np.ndarray]], folds: Sequence[FoldLabels], spec: TargetSpec) -> EnsembleChoice:
    """Each configuration trained with several seeds (`oofs[k][s]`: configuration k, seed s, every
    configuration the same number of seeds): the CV of the averaged probabilities of every member
    with its first 1..S seeds. All S are kept (`size` S; more seeds never cost accuracy in
    expectation, they only average out the variance of initialisation, dropout and the
    early-stopping split); the scores by size show what each added seed bought."""
    n_seeds = {len(seeds) for seeds in oofs}
    if len(n_seeds) != 1 or 0 in n_seeds:
        raise ValueError("every configuration needs the same number (>= 1) of seeds' out-of-fold predictions")
    size = n_seeds.pop()
    scores: dict[int, float] = {}
    per_target: dict[str, float] = {}
    for s in range(1, size + 1):
        per_target = cv_aucs(np.mean(np.stack([oof for seeds in oofs for oof in seeds[:s]]), axis=0), folds, spec.names)
        scores[s] = summary_auc(spec, per_target)
    return EnsembleChoice(size=size, per_target=per_target, scores=scores)
