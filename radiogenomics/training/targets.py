"""Prediction targets: histology classes and radiomic features cut into binary classes.

Everything here is fitted on training samples only and then applied unchanged: the class names
(from the training data, never a hard-coded list), the cut point of each radiomic feature
(training median by default), and the per-gene z-scoring of the expression. Cross-validation fits
them again inside every training fold.

Target names are the contract shared with `metrics.json`, the masking output and the services:
histology classes are `histology:<CLASS>`, radiomic targets are the pyradiomics feature names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from radiogenomics.cohort import HISTOLOGY, Cohort
from radiogenomics.errors import InputError

HISTOLOGY_PREFIX = "histology:"


@dataclass(frozen=True)
class TargetSpec:
    """What the model predicts: histology classes and binarised radiomic features with their cut points."""

    histology_classes: tuple[str, ...]
    features: tuple[str, ...]
    cut_points: tuple[float, ...]
    cut_quantile: float = 0.5

    @property
    def names(self) -> list[str]:
        """Every scored target: `histology:<CLASS>` (one-vs-rest) then the feature names."""
        return [HISTOLOGY_PREFIX + c for c in self.histology_classes] + list(self.features)

    @property
    def has_histology(self) -> bool:
        return len(self.histology_classes) >= 2

    @classmethod
    def fit(cls, cohort: Cohort, rows: np.ndarray | None = None, features: Sequence[str] | None = None,
            cut_quantile: float = 0.5) -> TargetSpec:
        """Fit classes and cut points on `rows` of the cohort (default: all of it)."""
        rows = np.arange(cohort.n_samples) if rows is None else np.asarray(rows)
        classes: tuple[str, ...] = ()
        if cohort.clinical is not None and HISTOLOGY in cohort.clinical.columns:
            classes = tuple(sorted({str(v) for v in cohort.labels()[rows]}))
            if len(classes) < 2:
                raise InputError(f"histology has a single class ({classes[0]!r}) in the training data; "
                                 "it needs at least two classes to be predicted")
        names = list(features) if features is not None else list(cohort.feature_names)
        cuts: list[float] = []
        if names:
            if cohort.radiomics is None:
                raise InputError(f"{cohort.root}: no radiomics.csv, so radiomic targets {names[:3]} cannot be fitted")
            missing = [f for f in names if f not in cohort.radiomics.columns]
            if missing:
                raise InputError(f"radiomic target(s) not in radiomics.csv: {', '.join(missing[:5])}; check the feature names")
            values = cohort.radiomics[names].to_numpy(dtype=np.float64)[rows]
            cuts = np.quantile(values, cut_quantile, axis=0).tolist()
            for j, name in enumerate(names):
                above = int((values[:, j] > cuts[j]).sum())
                if above == 0 or above == len(rows):
                    raise InputError(
                        f"target {name!r} has a single class in the training data (every value is on one side of the cut "
                        f"{cuts[j]:.6g}); drop it with --exclude-targets or choose another --cut-quantile"
                    )
        if not classes and not names:
            raise InputError(f"{cohort.root}: nothing to predict; the cohort needs clinical.csv with histology and/or radiomics.csv")
        return cls(histology_classes=classes, features=tuple(names), cut_points=tuple(float(c) for c in cuts),
                   cut_quantile=cut_quantile)

    def encode(self, cohort: Cohort) -> Labels:
        """Labels of every sample of a cohort under this spec (unknown classes are an error)."""
        histology = None
        if self.has_histology:
            values = cohort.labels()
            index = {c: i for i, c in enumerate(self.histology_classes)}
            unknown = sorted({str(v) for v in values} - set(index))
            if unknown:
                raise InputError(f"histology value(s) {', '.join(map(repr, unknown))} were not in the training data "
                                 f"(classes: {', '.join(self.histology_classes)}); relabel or drop those samples")
            histology = np.array([index[str(v)] for v in values], dtype=np.int64)
        features = np.zeros((cohort.n_samples, 0), dtype=np.float32)
        if self.features:
            if cohort.radiomics is None:
                raise InputError(f"{cohort.root}: no radiomics.csv; the model's radiomic targets need it")
            missing = [f for f in self.features if f not in cohort.radiomics.columns]
            if missing:
                raise InputError(f"{cohort.root / 'radiomics.csv'}: lacks {len(missing)} of the model's features "
                                 f"(e.g. {', '.join(missing[:3])}); extract them with the same parameters")
            values = cohort.radiomics[list(self.features)].to_numpy(dtype=np.float64)
            features = (values > np.asarray(self.cut_points)).astype(np.float32)
        return Labels(histology=histology, features=features)


@dataclass(frozen=True)
class Labels:
    """Encoded labels: histology class indices (n,) or None, and binary features (n, F)."""

    histology: np.ndarray | None
    features: np.ndarray

    def take(self, rows: np.ndarray) -> Labels:
        return Labels(None if self.histology is None else self.histology[rows], self.features[rows])

    def onehot(self, spec: TargetSpec) -> np.ndarray:
        """All targets as a binary matrix in `spec.names` order (histology one-vs-rest)."""
        parts = []
        if self.histology is not None:
            parts.append(np.eye(len(spec.histology_classes), dtype=np.float32)[self.histology])
        parts.append(self.features)
        return np.concatenate(parts, axis=1)


@dataclass(frozen=True)
class Predictions:
    """Predicted probabilities: histology (n, C) rows summing to 1 (or None), features (n, F)."""

    histology: np.ndarray | None
    features: np.ndarray

    def matrix(self) -> np.ndarray:
        """All target scores in `spec.names` order, aligned with `Labels.onehot`."""
        parts = [] if self.histology is None else [self.histology]
        return np.concatenate([*parts, self.features], axis=1)


def safe_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, NaN when only one class is present (e.g. a tiny validation fold)."""
    y = np.asarray(y)
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, score))


def target_aucs(spec: TargetSpec, labels: Labels, predictions: Predictions) -> dict[str, float]:
    """AUC per target name (histology one-vs-rest per class, features binary)."""
    y, s = labels.onehot(spec), predictions.matrix()
    return {name: safe_auc(y[:, j], s[:, j]) for j, name in enumerate(spec.names)}


def summary_auc(spec: TargetSpec, aucs: dict[str, float]) -> float:
    """The selection score: mean over targets, histology counted once (its classes' macro mean)."""
    parts = []
    hist = [aucs[n] for n in spec.names if n.startswith(HISTOLOGY_PREFIX) and not np.isnan(aucs[n])]
    if hist:
        parts.append(float(np.mean(hist)))
    parts += [aucs[f] for f in spec.features if not np.isnan(aucs[f])]
    return float(np.mean(parts)) if parts else float("nan")


def stratified_folds(cohort: Cohort, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold splits (on histology when present), checked for enough samples."""
    strata = cohort.labels() if cohort.clinical is not None and HISTOLOGY in cohort.clinical.columns else None
    if k < 2:
        raise InputError(f"--folds must be at least 2, got {k}")
    if cohort.n_samples < 2 * k:
        raise InputError(f"too few samples ({cohort.n_samples}) for {k} folds; use --folds {max(2, cohort.n_samples // 4)} or fewer")
    if strata is not None:
        smallest = min(np.unique(strata, return_counts=True)[1])
        if smallest < k:
            cls = min(set(strata), key=lambda c: (strata == c).sum())
            raise InputError(f"histology class {cls!r} has only {smallest} samples, fewer than the {k} folds; "
                             f"use --folds {max(2, smallest)} or fewer")
    else:
        strata = np.zeros(cohort.n_samples)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(train, val) for train, val in splitter.split(np.zeros(cohort.n_samples), strata)]


@dataclass(frozen=True)
class Standardizer:
    """Per-gene z-scoring fitted on training samples; constant genes get SD 1 (they stay at 0)."""

    mean: np.ndarray
    sd: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        x64 = x.astype(np.float64)
        mean, sd = x64.mean(axis=0), x64.std(axis=0)
        return cls(mean=mean.astype(np.float32), sd=np.where(sd > 1e-8, sd, 1.0).astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.sd).astype(np.float32)
