"""The Tune trainable: one configuration, cross-validated fold by fold.

Each fold is one training iteration and reports the running mean CV score, so ASHA can stop a
poor configuration after a fold or two. The cohort and the folds arrive through the object store
(`tune.with_parameters`), not pickled into every trial. The last fold's report carries a checkpoint
with the out-of-fold probabilities of every training patient (`oof.npy`, rows in cohort order),
so the selection can score ensembles of configurations on the same folds without training again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune as ray_tune

from radiogenomics.cohort import Cohort
from radiogenomics.training.selection import cross_validate, set_threads
from tune.space import to_config

OOF_FILE = "oof.npy"
#: each logit row's refit epochs (the median over folds of its own best epoch; modules networks only)
TARGET_EPOCHS_FILE = "target_epochs.npy"


def cv_trainable(params: dict[str, Any], *, cohort: Cohort, folds: list, seed: int, cut_quantile: float,
                 features: list[str] | None, cpus: float) -> None:
    set_threads(int(max(1, cpus)))
    config = to_config(params)
    scores, epochs, row_epochs = [], [], []
    oof: np.ndarray | None = None
    for result in cross_validate(cohort, folds, config, seed=seed, cut_quantile=cut_quantile, features=features):
        scores.append(result.score)
        epochs.append(result.best_epoch)
        if result.target_epochs is not None:
            row_epochs.append(result.target_epochs)
        if oof is None:
            oof = np.full((cohort.n_samples, result.predictions.shape[1]), np.nan, dtype=np.float32)
        oof[result.val_rows] = result.predictions
        metrics = {
            "cv_auc": float(np.nanmean(scores)), "folds_done": len(scores), "fold_auc": result.score,
            "best_epoch": int(np.median(epochs)), "fold_aucs": dict(result.aucs),
        }
        if len(scores) < len(folds):
            ray_tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            np.save(Path(folder) / OOF_FILE, oof)
            if row_epochs:
                np.save(Path(folder) / TARGET_EPOCHS_FILE, np.median(np.stack(row_epochs), axis=0).round().astype(np.int64))
            ray_tune.report(metrics, checkpoint=ray_tune.Checkpoint.from_directory(folder))
