"""Fit one fixed configuration on a whole cohort and export it, without a hyperparameter search.

For a configuration chosen elsewhere (a benchmark, a test, re-fitting a known-good setting): the
artifact is the same kind `radiogenomics train` writes, minus the search history, and its card
says that no cross-validation was run.
"""

from __future__ import annotations

from pathlib import Path

from radiogenomics.cohort import Cohort
from radiogenomics.registry import check_name, export_model
from radiogenomics.training.network import NetConfig
from radiogenomics.training.selection import refit


def fit_and_export(cohort: Cohort, registry: Path, name: str, config: NetConfig | None = None, *,
                   epochs: int = 30, seed: int = 0) -> Path:
    """Fit `config` (default: the default configuration) for `epochs` epochs and export a new version."""
    check_name(name)
    config = config or NetConfig()
    fitted = refit(cohort, config, epochs, seed=seed)
    return export_model(
        registry, name, net=fitted.net, config=fitted.config, spec=fitted.spec, scaler=fitted.scaler,
        genes=list(cohort.genes), cv_metrics={"cross_validated": False},
        input_stage=None if fitted.stage is None else fitted.stage.describe(list(cohort.genes)),
        training={"cohort": str(cohort.root), "data_hash": cohort.content_hash(), "n_samples": cohort.n_samples,
                  "seed": seed, "epochs": epochs, "search": "none (fixed configuration)"},
    )
