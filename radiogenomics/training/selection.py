"""Honest model selection: stratified k-fold CV with early stopping on an inner split, then a refit.

In every outer fold, the target cut points and the gene z-scoring are fitted on the fold's
training samples; an inner stratified split of those samples (default 20 %) decides when to stop
training; the outer fold is scored only once, by the early-stopped network. The configuration
with the best mean CV score is refitted on the whole training cohort for the median of the folds'
best epoch counts (no validation data is needed, none is borrowed).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import StratifiedShuffleSplit

from radiogenomics.cohort import Cohort
from radiogenomics.training.network import FitResult, NetConfig, predict, train_network
from radiogenomics.training.targets import Standardizer, TargetSpec, summary_auc, target_aucs


@dataclass(frozen=True)
class FoldResult:
    fold: int
    aucs: dict[str, float]  # per target, on the outer validation fold
    score: float  # summary_auc of the fold
    best_epoch: int


def inner_split(cohort: Cohort, rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified (on histology) split of `rows` into fitting and early-stopping samples."""
    strata = cohort.labels()[rows] if cohort.clinical is not None and "histology" in cohort.clinical else np.zeros(len(rows))
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    fit, stop = next(splitter.split(np.zeros(len(rows)), strata))
    return rows[fit], rows[stop]


def fit_fold(
    cohort: Cohort,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    config: NetConfig,
    *,
    fold: int = 0,
    seed: int = 0,
    inner_fraction: float = 0.2,
    cut_quantile: float = 0.5,
    features: Sequence[str] | None = None,
) -> FoldResult:
    """Train on one outer fold's training rows and score its validation rows."""
    spec = TargetSpec.fit(cohort, rows=train_rows, features=features, cut_quantile=cut_quantile)
    labels = spec.encode(cohort)
    scaler = Standardizer.fit(cohort.expression[train_rows])
    fit_rows, stop_rows = inner_split(cohort, train_rows, inner_fraction, seed + fold)
    result = train_network(
        scaler.transform(cohort.expression[fit_rows]), labels.take(fit_rows), spec, config, seed=seed + fold,
        x_val=scaler.transform(cohort.expression[stop_rows]), y_val=labels.take(stop_rows),
    )
    aucs = target_aucs(spec, labels.take(val_rows), predict(result.model, scaler.transform(cohort.expression[val_rows])))
    return FoldResult(fold=fold, aucs=aucs, score=summary_auc(spec, aucs), best_epoch=result.best_epoch)


def cross_validate(
    cohort: Cohort,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    config: NetConfig,
    **kwargs: object,
) -> Iterator[FoldResult]:
    """Fold results one at a time (so Tune can report and stop a poor configuration early)."""
    for k, (train_rows, val_rows) in enumerate(folds):
        yield fit_fold(cohort, train_rows, val_rows, config, fold=k, **kwargs)


def mean_aucs(results: Sequence[FoldResult]) -> dict[str, float]:
    """Per-target AUC averaged over folds (folds where a target had one class are skipped)."""
    names = results[0].aucs.keys()
    return {n: float(np.nanmean([r.aucs[n] for r in results])) for n in names}


@dataclass(frozen=True)
class Refit:
    result: FitResult
    spec: TargetSpec
    scaler: Standardizer


def refit(cohort: Cohort, config: NetConfig, epochs: int, *, seed: int = 0, cut_quantile: float = 0.5,
          features: Sequence[str] | None = None) -> Refit:
    """Fit the selected configuration on the whole training cohort for `epochs` epochs."""
    spec = TargetSpec.fit(cohort, features=features, cut_quantile=cut_quantile)
    scaler = Standardizer.fit(cohort.expression)
    result = train_network(scaler.transform(cohort.expression), spec.encode(cohort), spec, config, seed=seed,
                           epochs=max(1, int(epochs)))
    return Refit(result=result, spec=spec, scaler=scaler)


def set_threads(n: int) -> None:
    """Torch threads for this process (a Tune trial holds `n` CPUs)."""
    torch.set_num_threads(max(1, int(n)))
