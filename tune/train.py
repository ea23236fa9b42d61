"""`radiogenomics train`: search with Ray Tune, select honestly, compare, refit and export.

1. Ray Tune samples configurations with Optuna (starting from `tune.space.STARTING_POINTS`); each
   trial cross-validates one configuration over the same stratified folds, reporting after every
   fold so ASHA can stop poor ones early; `--time-budget` bounds the search's wall time.
2. Only trials that finished every fold compete. The best `--ensemble` of them, best first, are
   averaged as ensembles of 1..k members on their out-of-fold probabilities
   (`radiogenomics.training.ensemble`); the size with the best mean CV score wins. Each chosen
   configuration is then cross-validated again with `--seeds` - 1 more seeds on the same folds
   (Ray tasks, one per fold and seed); the members are every configuration with every seed, and the
   exported model's CV is that of their averaged out-of-fold probabilities.
3. The baselines are cross-validated on the same folds and targets; the per-target design is
   compared with the shared trunk on a subset of targets, same folds, same configuration. The
   model card records, per target, which family had the best CV AUC.
4. Each member (configuration and seed) is refitted on the whole training cohort, with its seed,
   for the median best epoch of its own folds, and the ensemble is exported as one model with its
   CV metrics, the fitted baselines and a report.
The search state lives under `<registry>/.tune/<name>`; `--resume` continues an interrupted run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from radiogenomics.cohort import load_cohort
from radiogenomics.errors import InputError
from radiogenomics.raycluster import ray_session
from radiogenomics.jsonsafe import json_safe
from radiogenomics.registry import check_name, export_model
from radiogenomics.training.network import EnsembleNet, NetConfig
from radiogenomics.training.selection import fit_fold, mean_aucs, refit, set_threads
from radiogenomics.training.targets import HISTOLOGY_PREFIX, TargetSpec, stratified_folds, summary_auc
from tune.space import search_space, to_config


@dataclass
class TrainOptions:
    cohort: Path
    registry: Path
    name: str
    trials: int = 12
    folds: int = 5
    address: str | None = None
    resume: bool = False
    seed: int = 425
    cpus_per_trial: float = 1.0
    max_epochs: int = 80
    cut_quantile: float = 0.5
    exclude_targets: list[str] = field(default_factory=list)
    compare_targets: int = 2  # radiomic targets (plus histology) in the per-target design comparison
    scheduler: str = "asha"  # or "fifo" (no early stopping of trials; for the benchmark)
    baselines: bool = True
    progress: bool = True
    ensemble: int = 3  # most configurations averaged into the exported model (1: the best one alone)
    seeds: int = 5  # networks per chosen configuration, each with its own seed, averaged (1: the search's own)
    time_budget: float | None = None  # seconds for the whole search (Tune stops starting/continuing trials)


#: Times Tune restarts a trial that failed (e.g. its node was lost) before counting it as errored.
TRIAL_RETRIES = 2
#: seed s of a configuration trains with `seed + SEED_STRIDE * s` (s = 0: the search's own seed)
SEED_STRIDE = 1000


def storage_dir(options: TrainOptions) -> Path:
    return (Path(options.registry) / ".tune").resolve()


class _TrialProgress:
    """A tqdm bar over finished trials (Tune's own table is switched off)."""

    def __new__(cls, total: int, enabled: bool):  # noqa: D102 - built lazily to keep ray.tune out of imports
        from ray.tune import Callback

        class Progress(Callback):
            def __init__(self) -> None:
                self.bar = tqdm(total=total, desc="tune trials", unit="trial", disable=not enabled)

            def on_trial_complete(self, iteration, trials, trial, **info) -> None:
                self.bar.update()

            def on_trial_error(self, iteration, trials, trial, **info) -> None:
                self.bar.update()

            def on_experiment_end(self, trials, **info) -> None:
                self.bar.close()

        return Progress()


def _tuner(options: TrainOptions, cohort, folds, features):
    from ray import tune as ray_tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from tune.space import STARTING_POINTS
    from tune.trainable import cv_trainable

    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(cv_trainable, cohort=cohort, folds=folds, seed=options.seed,
                                 cut_quantile=options.cut_quantile, features=features, cpus=options.cpus_per_trial),
        {"cpu": options.cpus_per_trial},
    )
    path = storage_dir(options) / options.name
    if options.resume:
        if not ray_tune.Tuner.can_restore(str(path)):
            raise InputError(f"--resume: no interrupted search for {options.name!r} under {path.parent}; run without --resume")
        return ray_tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    if path.exists():
        raise InputError(f"a search for {options.name!r} already exists at {path}; pass --resume to continue it, or remove it")
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=len(folds), grace_period=1, reduction_factor=2)
                 if options.scheduler == "asha" else FIFOScheduler())
    return ray_tune.Tuner(
        trainable,
        param_space=search_space(options.max_epochs),
        tune_config=ray_tune.TuneConfig(metric="cv_auc", mode="max", num_samples=options.trials, scheduler=scheduler,
                                        search_alg=OptunaSearch(seed=options.seed,
                                                                points_to_evaluate=STARTING_POINTS[: options.trials]),
                                        time_budget_s=options.time_budget),
        run_config=ray_tune.RunConfig(name=options.name, storage_path=str(storage_dir(options)), verbose=0,
                                      failure_config=ray_tune.FailureConfig(max_failures=TRIAL_RETRIES),
                                      callbacks=[_TrialProgress(options.trials, options.progress)]),
    )


@dataclass(frozen=True)
class Member:
    """One network of the exported ensemble: a configuration, its seed offset, what its refit trains
    for (the median best epoch of its folds, per logit row for a modules network) and its own CV."""

    params: dict[str, Any]
    rank: int  # the configuration's place among the chosen, best first
    seed: int  # s: CV with seed + SEED_STRIDE * s; refit with seed + rank + SEED_STRIDE * s
    epochs: int
    target_epochs: np.ndarray | None
    cv_auc: float
    oof: np.ndarray  # its out-of-fold probabilities (training patients x outputs)

    def refit_seed(self, base: int) -> int:
        return base + self.rank + SEED_STRIDE * self.seed


@dataclass
class Selection:
    """The chosen members (best configuration first, each with its seeds); the ensemble's CV."""

    members: list[Member]
    per_target: dict[str, float]  # the exported model's (ensemble's) CV AUC per target
    size_scores: dict[int, float]  # CV by number of configurations (one seed each)
    table: pd.DataFrame
    seed_scores: dict[int, float] = field(default_factory=dict)  # CV by number of seeds (every configuration)


def _oof(result) -> np.ndarray:
    from tune.trainable import OOF_FILE

    with result.checkpoint.as_directory() as folder:
        return np.load(Path(folder) / OOF_FILE)


def _target_epochs(result) -> np.ndarray | None:
    from tune.trainable import TARGET_EPOCHS_FILE

    with result.checkpoint.as_directory() as folder:
        path = Path(folder) / TARGET_EPOCHS_FILE
        return np.load(path) if path.exists() else None


def _select(results, labels, spec: TargetSpec, options: TrainOptions) -> Selection:
    """The best trials among those that finished every fold (`labels`: one per fold), and the best-scoring ensemble of them."""
    from radiogenomics.training.ensemble import choose_size

    table = results.get_dataframe()
    complete = [r for r in results if r.metrics and r.metrics.get("folds_done") == len(labels) and r.error is None
                and r.checkpoint is not None]
    if not complete:
        raise InputError("no trial finished every fold; raise --trials or --time-budget, or check the trials' errors "
                         "under the storage path")
    ranked = sorted(complete, key=lambda r: -r.metrics["cv_auc"])[: max(1, options.ensemble)]
    oofs = [_oof(r) for r in ranked]
    choice = choose_size(oofs, labels, spec)
    members = [Member(params=dict(r.config), rank=c, seed=0, epochs=int(r.metrics["best_epoch"]), target_epochs=_target_epochs(r),
                      cv_auc=float(r.metrics["cv_auc"]), oof=oofs[c]) for c, r in enumerate(ranked[: choice.size])]
    return Selection(members=members, per_target=choice.per_target, size_scores=choice.scores, table=table)


def _add_seeds(selection: Selection, cohort_ref, n_samples: int, folds, labels, spec: TargetSpec,
               options: TrainOptions) -> Selection:
    """Every chosen configuration cross-validated with `options.seeds` - 1 more seeds on the same
    folds (one Ray task per fold and seed); the members become every configuration with every seed."""
    if options.seeds <= 1:
        return selection
    import ray

    from radiogenomics.training.ensemble import seed_bag
    from radiogenomics.training.selection import out_of_fold, refit_epochs

    first = selection.members
    pending = {(c, s): _remote_folds(cohort_ref, folds, to_config(m.params), options.seed + SEED_STRIDE * s, options,
                                     list(spec.features))
               for c, m in enumerate(first) for s in range(1, options.seeds)}
    bags: list[list[Member]] = [[m] for m in first]
    for (c, s), refs in tqdm(pending.items(), desc="more seeds", unit="seed", disable=not options.progress, file=sys.stderr):
        results = ray.get(refs)
        epochs, rows = refit_epochs(results)
        bags[c].append(Member(params=first[c].params, rank=c, seed=s, epochs=epochs, target_epochs=rows,
                              cv_auc=float(np.nanmean([r.score for r in results])), oof=out_of_fold(results, n_samples)))
    bag = seed_bag([[m.oof for m in members] for members in bags], labels, spec)
    return Selection(members=[m for members in bags for m in members], per_target=bag.per_target,
                     size_scores=selection.size_scores, table=selection.table, seed_scores=bag.scores)


def _fit_fold_task(cohort: Any, train_rows: np.ndarray, val_rows: np.ndarray, config: NetConfig, fold: int, seed: int,
                   cut_quantile: float, features: list[str]):
    set_threads(1)
    return fit_fold(cohort, train_rows, val_rows, config, fold=fold, seed=seed, cut_quantile=cut_quantile, features=features)


@functools.cache
def _fold_task() -> Any:
    """`_fit_fold_task` as a Ray remote function (made once per process)."""
    import ray

    return ray.remote(num_cpus=1, max_retries=TRIAL_RETRIES)(_fit_fold_task)


def _remote_folds(cohort_ref: Any, folds, config: NetConfig, seed: int, options: TrainOptions, features: list[str]) -> list:
    """One Ray task (1 CPU) per fold cross-validating `config` with `seed`; their object refs."""
    task = _fold_task()
    return [task.remote(cohort_ref, train_rows, val_rows, config, k, seed, options.cut_quantile, features)
            for k, (train_rows, val_rows) in enumerate(folds)]


def per_target_counterpart(config: NetConfig) -> NetConfig:
    """One network per target, as the authors trained them: `config` in the per-target design (a
    modules network's outputs are already independent models, so its counterpart is the plain
    per-target design, without eigengenes, their hinges or histology's read-out of them)."""
    return NetConfig.model_validate({**config.model_dump(), "design": "per_target", "modules": 0,
                                     "interaction_knots": (), "histology_c": 0.0, "histology_pool": 0})


def _compare_designs(cohort_ref, folds, config, spec: TargetSpec, shared_aucs: dict[str, float], options: TrainOptions) -> pd.DataFrame:
    """Per-target networks vs the shared trunk on histology + a seeded sample of radiomic targets.

    One network per target costs one shared-trunk fit per target, so only a sample of targets is
    compared; the folds run as parallel Ray tasks.
    """
    rng = np.random.default_rng(options.seed)
    features = list(spec.features)
    subset = sorted(rng.choice(features, size=min(options.compare_targets, len(features)), replace=False).tolist()) if features else []
    import ray

    results = ray.get(_remote_folds(cohort_ref, folds, per_target_counterpart(config), options.seed, options, subset))
    separate = mean_aucs(results)
    rows = [{"target": t, "shared_trunk": shared_aucs.get(t, np.nan), "per_target": separate[t]} for t in separate]
    return pd.DataFrame(rows)


def _report(name: str, cv: dict, design: pd.DataFrame | None, baseline_table: pd.DataFrame | None) -> str:
    lines = [f"# Training report: {name}", "", "## Selection", "",
             f"- trials: {cv['trials']} ({cv['trials_complete']} finished every fold; scheduler {cv['scheduler']})",
             f"- folds: {cv['folds']} (stratified, seed {cv['seed']}); early stopping on an inner 20 % split of each training fold",
             f"- best configuration: `{json.dumps(cv['best_params'], default=str)}`",
             f"- ensemble: {len({m['configuration'] for m in cv['members']})} "
             "configuration(s) (CV score by number of configurations, one seed each: "
             + ", ".join(f"{k}: {v:.3f}" for k, v in cv["ensemble_size_scores"].items()) + ")",
             f"- seeds: each configuration trained with {cv['seeds']} seed(s) (initialisation, dropout, early-stopping "
             f"split), {len(cv['members'])} network(s) averaged"
             + (" (CV score by number of seeds: " + ", ".join(f"{k}: {v:.3f}" for k, v in cv["seed_scores"].items()) + ")"
                if cv["seed_scores"] else ""),
             f"- mean CV score of the exported model (histology macro AUC and each radiomic AUC, averaged): {cv['cv_auc']:.3f}",
             f"- each member refitted on all {cv['n_samples']} training samples (epochs {cv['refit_epochs']}; a modules "
             "network trains each output for its own median best epoch, listed per output in the card)", ""]
    if baseline_table is not None:
        lines += ["## Network vs baselines (mean CV AUC, same folds and targets)", "", baseline_table.to_markdown(index=False, floatfmt=".3f"), ""]
        if cv.get("best_family"):
            lines += ["Targets where a baseline had the best CV AUC (the model card's `best_family`): "
                      + (", ".join(f"`{t}` ({m})" for t, m in cv["best_family"].items() if m != "network") or "none"), ""]
    if design is not None and len(design):
        lines += ["## Shared trunk vs one network per target (CV AUC, same folds, same configuration)", "",
                  design.to_markdown(index=False, floatfmt=".3f"), "",
                  f"Mean: shared {design['shared_trunk'].mean():.3f}, per target {design['per_target'].mean():.3f}.", ""]
    return "\n".join(lines) + "\n"


def _best_family(spec: TargetSpec, by_model: dict[str, dict[str, float]]) -> dict[str, str]:
    """Per target, the model family with the best mean CV AUC (ties go to the network, listed first)."""
    def score(model: str, name: str) -> float:
        value = by_model[model].get(name, np.nan)
        return -np.inf if np.isnan(value) else value

    return {n: max(by_model, key=lambda m: score(m, n)) for n in spec.names}


def _family_table(spec: TargetSpec, by_model: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Mean CV AUC per target family and overall, and wins per model (the paper's comparison)."""
    names = spec.names
    hist = [n for n in names if n.startswith(HISTOLOGY_PREFIX)]
    best = _best_family(spec, by_model)
    rows = []
    for model, aucs in by_model.items():
        rows.append({
            "model": model,
            "histology (mean of classes)": np.nanmean([aucs.get(n, np.nan) for n in hist]) if hist else np.nan,
            "radiomic (mean)": np.nanmean([aucs.get(f, np.nan) for f in spec.features]) if spec.features else np.nan,
            "overall": summary_auc(spec, {n: aucs.get(n, np.nan) for n in names}),
            "targets won": sum(best[n] == model for n in names),
        })
    return pd.DataFrame(rows)


def train(options: TrainOptions) -> Path:
    """Run the whole training job and return the exported artifact folder."""
    check_name(options.name)
    cohort = load_cohort(options.cohort, require_radiomics=False)  # histology alone is a valid task
    unknown = [t for t in options.exclude_targets if t not in cohort.feature_names]
    if unknown:
        raise InputError(f"--exclude-targets: {', '.join(unknown[:5])} not in radiomics.csv")
    features = [f for f in cohort.feature_names if f not in set(options.exclude_targets)]
    spec = TargetSpec.fit(cohort, features=features, cut_quantile=options.cut_quantile)  # fails early on bad targets
    folds = stratified_folds(cohort, options.folds, options.seed)
    with ray_session(options.address):
        with contextlib.redirect_stdout(sys.stderr):  # Tune's console output must not mix with our results
            results = _tuner(options, cohort, folds, features).fit()
        import ray

        from radiogenomics.training.ensemble import cv_aucs, fold_labels

        labels = fold_labels(cohort, folds, features=spec.features, cut_quantile=options.cut_quantile)
        cohort_ref = ray.put(cohort)
        selection = _add_seeds(_select(results, labels, spec, options), cohort_ref, cohort.n_samples, folds, labels, spec,
                               options)
        per_target, trials, members = selection.per_target, selection.table, selection.members
        config = to_config(members[0].params)
        # the per-target design against the best network alone (the search's seed): the same configuration
        design = (_compare_designs(cohort_ref, folds, config, spec, cv_aucs(members[0].oof, labels, spec.names), options)
                  if options.compare_targets else None)
    set_threads(2)
    by_model = {"network": per_target}
    fitted_baselines = baseline_cv = None
    if options.baselines:
        from radiogenomics.training.baselines import cross_validate_baselines, fit_baselines

        baseline_cv = cross_validate_baselines(cohort, folds, features=features, cut_quantile=options.cut_quantile,
                                               seed=options.seed, n_jobs=2, progress=options.progress)
        by_model.update(baseline_cv.target_auc)
        fitted_baselines = fit_baselines(cohort, baseline_cv, n_jobs=2)
    fits = [refit(cohort, to_config(m.params), m.epochs, seed=m.refit_seed(options.seed),
                  cut_quantile=options.cut_quantile, features=features, target_epochs=m.target_epochs)
            for m in members]
    final = fits[0]
    net = fits[0].net if len(fits) == 1 else EnsembleNet([f.net for f in fits])
    complete = int((trials.get("folds_done", pd.Series(dtype=float)) == len(folds)).sum())
    best_family = _best_family(spec, by_model)
    cv = {"cv_auc": summary_auc(spec, per_target), "per_target": per_target, "best_params": members[0].params,
          "trials": len(trials), "trials_complete": complete, "scheduler": options.scheduler, "folds": len(folds),
          "seed": options.seed, "n_samples": cohort.n_samples, "refit_epochs": [m.epochs for m in members],
          "members": [{"params": m.params, "configuration": m.rank, "seed": m.seed,
                       "refit_seed": m.refit_seed(options.seed), "cv_auc": m.cv_auc,
                       "refit_epochs": m.epochs, "input_stage": None if f.stage is None else f.stage.describe(),
                       "refit_epochs_per_output": None if m.target_epochs is None else dict(zip(spec.names, (int(v) for v in m.target_epochs)))}
                      for m, f in zip(members, fits)],
          "ensemble_size_scores": {str(k): v for k, v in selection.size_scores.items()},
          "seeds": max(1, options.seeds), "seed_scores": {str(k): v for k, v in selection.seed_scores.items()},
          "best_family": best_family, "time_budget_s": options.time_budget}
    family = _family_table(spec, by_model)
    if baseline_cv is not None:
        cv["baselines"] = {m: {"params": baseline_cv.chosen[m], "cv_auc": baseline_cv.cv_auc[m], "per_target": a}
                           for m, a in baseline_cv.target_auc.items()}
    cv["comparison"] = family.to_dict(orient="records")
    if design is not None:
        cv["design_comparison"] = design.to_dict(orient="records")
    extra = {
        "cv_trials.csv": lambda p: trials.to_csv(p, index=False),
        "training_report.md": lambda p: p.write_text(_report(options.name, cv, design, family)),
    }
    if fitted_baselines is not None:
        extra["baselines.joblib"] = fitted_baselines.save
    folder = export_model(
        options.registry, options.name, net=net, config=final.config, spec=final.spec, scaler=final.scaler,
        genes=list(cohort.genes), cv_metrics=json_safe(cv),
        training={"cohort": str(Path(options.cohort).resolve()), "data_hash": cohort.content_hash(),
                  "n_samples": cohort.n_samples, "seed": options.seed, "epochs": members[0].epochs},
        extra_files=extra, input_stage=None if final.stage is None else final.stage.describe(list(cohort.genes)),
        best_family=best_family, members=[f.config for f in fits] if len(fits) > 1 else None,
    )
    shutil.move(str(storage_dir(options) / options.name), str(folder / "tune"))  # the finished search, kept with its model
    return folder
