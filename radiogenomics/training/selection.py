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
from radiogenomics.training.fold import fold_input_stage
from radiogenomics.training.inputs import InputStage, fit_input_stage
from radiogenomics.training.network import FitResult, NetConfig, predict, train_network
from radiogenomics.training.targets import Labels, Standardizer, TargetSpec, summary_auc, target_aucs


@dataclass(frozen=True)
class FoldResult:
    fold: int
    aucs: dict[str, float]  # per target, on the outer validation fold
    score: float  # summary_auc of the fold
    best_epoch: int
    val_rows: np.ndarray  # the outer fold's rows and their predicted probabilities (n_val, T),
    predictions: np.ndarray  # so ensembles of configurations can be scored on the same folds
    target_epochs: np.ndarray | None = None  # each logit row's own best epoch (a modules network)


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
    z_fit = scaler.transform(cohort.expression[fit_rows])
    stage = _stage(config, z_fit, labels.take(fit_rows), seed + fold, spec)
    inputs = (lambda z: z) if stage is None else stage.transform
    result = train_network(
        inputs(z_fit), labels.take(fit_rows), spec, config, seed=seed + fold,
        x_val=inputs(scaler.transform(cohort.expression[stop_rows])), y_val=labels.take(stop_rows), staged=config.staged,
        head_mask=_head_mask(config, stage), modules=0 if stage is None else stage.modules,
    )
    predictions = predict(result.model, inputs(scaler.transform(cohort.expression[val_rows])))
    aucs = target_aucs(spec, labels.take(val_rows), predictions)
    return FoldResult(fold=fold, aucs=aucs, score=summary_auc(spec, aucs), best_epoch=result.best_epoch,
                      val_rows=np.asarray(val_rows), predictions=predictions.matrix(), target_epochs=result.target_epochs)


def _stage(config: NetConfig, z_fit: np.ndarray, labels: Labels, seed: int, spec: TargetSpec) -> InputStage | None:
    """The input stage fitted on the fitting rows only (None: the network sees every gene)."""
    if not config.staged:
        return None
    return fit_input_stage(z_fit, labels, screen_genes=config.screen_genes, components=config.components, seed=seed,
                           n_classes=len(spec.histology_classes) if spec.has_histology else 0, modules=config.modules,
                           histology_pool=config.histology_pool)


def _head_mask(config: NetConfig, stage: InputStage | None) -> np.ndarray | None:
    return stage.logit_mask() if config.target_screen and stage is not None else None


def cross_validate(
    cohort: Cohort,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    config: NetConfig,
    **kwargs: object,
) -> Iterator[FoldResult]:
    """Fold results one at a time (so Tune can report and stop a poor configuration early)."""
    for k, (train_rows, val_rows) in enumerate(folds):
        yield fit_fold(cohort, train_rows, val_rows, config, fold=k, **kwargs)


def out_of_fold(results: Sequence[FoldResult], n_samples: int) -> np.ndarray:
    """(n_samples, T) float32: each patient's probabilities from the fold model that did not see it
    (NaN for patients no fold has scored yet)."""
    oof = np.full((n_samples, results[0].predictions.shape[1]), np.nan, dtype=np.float32)
    for result in results:
        oof[result.val_rows] = result.predictions
    return oof


def refit_epochs(results: Sequence[FoldResult]) -> tuple[int, np.ndarray | None]:
    """What the refit trains for: the median of the folds' best epochs, and each logit row's own
    median (a modules network; else None)."""
    rows = [r.target_epochs for r in results if r.target_epochs is not None]
    per_row = np.median(np.stack(rows), axis=0).round().astype(np.int64) if rows else None
    return int(np.median([r.best_epoch for r in results])), per_row


def mean_aucs(results: Sequence[FoldResult]) -> dict[str, float]:
    """Per-target AUC averaged over folds (folds where a target had one class are skipped)."""
    names = results[0].aucs.keys()
    return {n: float(np.nanmean([r.aucs[n] for r in results])) for n in names}


@dataclass(frozen=True)
class Refit:
    """The refitted network in its exportable form (`net` on z-scored genes, `config` its architecture)."""

    result: FitResult
    spec: TargetSpec
    scaler: Standardizer
    net: torch.nn.Module
    config: NetConfig
    stage: InputStage | None = None


def refit(cohort: Cohort, config: NetConfig, epochs: int, *, seed: int = 0, cut_quantile: float = 0.5,
          features: Sequence[str] | None = None, target_epochs: np.ndarray | None = None) -> Refit:
    """Fit the selected configuration on the whole training cohort for `epochs` epochs, or each
    output for its own `target_epochs` (per logit row, a modules network); an input stage is fitted
    on the whole cohort too, then folded into the first layer."""
    spec = TargetSpec.fit(cohort, features=features, cut_quantile=cut_quantile)
    scaler = Standardizer.fit(cohort.expression)
    z, labels = scaler.transform(cohort.expression), spec.encode(cohort)
    stage = _stage(config, z, labels, seed, spec)
    result = train_network(z if stage is None else stage.transform(z), labels, spec, config, seed=seed,
                           epochs=max(1, int(epochs)), staged=config.staged, head_mask=_head_mask(config, stage),
                           modules=0 if stage is None else stage.modules, target_epochs=target_epochs)
    if stage is None:
        return Refit(result=result, spec=spec, scaler=scaler, net=result.model, config=config)
    net, plain = fold_input_stage(result.model, stage, spec, config, z.shape[1])
    return Refit(result=result, spec=spec, scaler=scaler, net=net, config=plain, stage=stage)


def set_threads(n: int) -> None:
    """Torch threads for this process (a Tune trial holds `n` CPUs)."""
    torch.set_num_threads(max(1, int(n)))
