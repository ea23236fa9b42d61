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
from radiogenomics.training.selection import FoldResult, cross_validate, out_of_fold, refit_epochs, set_threads
from tune.space import to_config

OOF_FILE = "oof.npy"
#: each logit row's refit epochs (the median over folds of its own best epoch; modules networks only)
TARGET_EPOCHS_FILE = "target_epochs.npy"


def cv_trainable(params: dict[str, Any], *, cohort: Cohort, folds: list, seed: int, cut_quantile: float,
                 features: list[str] | None, cpus: float) -> None:
    set_threads(int(max(1, cpus)))
    config = to_config(params)
    results: list[FoldResult] = []
    for result in cross_validate(cohort, folds, config, seed=seed, cut_quantile=cut_quantile, features=features):
        results.append(result)
        epochs, row_epochs = refit_epochs(results)
        metrics = {
            "cv_auc": float(np.nanmean([r.score for r in results])), "folds_done": len(results), "fold_auc": result.score,
            "best_epoch": epochs, "fold_aucs": dict(result.aucs),
        }
        if len(results) < len(folds):
            ray_tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            np.save(Path(folder) / OOF_FILE, out_of_fold(results, cohort.n_samples))
            if row_epochs is not None:
                np.save(Path(folder) / TARGET_EPOCHS_FILE, row_epochs)
            ray_tune.report(metrics, checkpoint=ray_tune.Checkpoint.from_directory(folder))
