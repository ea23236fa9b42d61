"""`radiogenomics evaluate`: one evaluation of a registered model on the independent test cohort.

The test cohort is encoded with the model's own cut points and classes (never refitted on test
data), its genes are aligned to the model's input order, and every target gets its AUC with a
patient-level bootstrap 95 % CI. The baselines stored with the model are scored on the same
patients and the same bootstrap resamples. Writes `metrics.json` (every key a target), the
baselines' metrics beside it, a markdown report and ROC plots, and records the test metrics in
the model card.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from radiogenomics.cohort import load_cohort
from radiogenomics.evaluation import evaluate, markdown_report, roc_plots, write_metrics
from radiogenomics.jsonsafe import json_safe
from radiogenomics.registry import ModelError, load_model, write_card
from radiogenomics.training.targets import Labels, Predictions, TargetSpec

BASELINES_FILE = "baselines.joblib"


@dataclass(frozen=True)
class HoldoutResult:
    metrics_path: Path
    report_path: Path
    plots: list[Path]
    metrics: dict[str, dict]
    #: what the metrics were computed from: the test labels (the model's cut points) and every
    #: model's predictions ("network", then the stored baselines), for paired comparisons
    spec: TargetSpec | None = None
    labels: Labels | None = None
    predictions: dict[str, Predictions] | None = None
    sample_ids: tuple[str, ...] = ()  # the test patients, in the order of the labels and predictions


def evaluate_on_test(model_dir: Path, test_dir: Path, out: Path, *, n_boot: int = 1000, seed: int = 0) -> HoldoutResult:
    """Evaluate the artifact at `model_dir` on the cohort at `test_dir`; metrics go to `out`."""
    model = load_model(model_dir)
    cohort = load_cohort(test_dir, classes=model.spec.histology_classes or None,
                         require_radiomics=bool(model.spec.features))
    expression = model.align(cohort)
    labels = model.spec.encode(cohort)
    predictions = {"network": model.predict(expression)}
    baseline_file = model.folder / BASELINES_FILE
    if baseline_file.exists():
        from radiogenomics.training.baselines import FittedBaselines

        predictions.update(FittedBaselines.load(baseline_file).predict(cohort))
    metrics = {name: evaluate(model.spec, labels, preds, n_boot=n_boot, seed=seed) for name, preds in predictions.items()}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_metrics(out, metrics["network"])
    if len(metrics) > 1:
        write_metrics(out.with_name(out.stem + "_baselines.json"), {k: v for k, v in metrics.items() if k != "network"})
    plots = roc_plots(model.spec, labels, predictions, out.parent)
    cv = model.card.cv_metrics
    cv_by_model = {"network": cv.get("per_target", {})}
    cv_by_model.update({m: b.get("per_target", {}) for m, b in cv.get("baselines", {}).items()})
    notes = [f"Model {model.name} version {model.version}; test cohort {cohort.root} ({cohort.n_samples} patients).",
             "Test labels use the model's training cut points and classes; CIs: patient-level bootstrap, "
             f"{n_boot} resamples, percentile 95 %."]
    report = markdown_report(f"Test-cohort evaluation: {model.name} v{model.version}", metrics, cv_by_model, model.spec, notes)
    report_path = out.with_suffix(".md")
    report_path.write_text(report)

    card = model.card.model_copy(update={"test_metrics": json_safe({
        "cohort": str(cohort.root.resolve()), "data_hash": cohort.content_hash(), "n_samples": cohort.n_samples,
        "network": metrics["network"], "baselines": {k: v for k, v in metrics.items() if k != "network"},
    })})
    try:
        write_card(model.folder, card)
    except OSError as exc:
        raise ModelError(f"{model.folder}: cannot record the test metrics in model.json ({exc.strerror})") from None
    return HoldoutResult(metrics_path=out, report_path=report_path, plots=plots, metrics=metrics["network"],
                         spec=model.spec, labels=labels, predictions=predictions, sample_ids=tuple(cohort.sample_ids))
