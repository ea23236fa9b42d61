"""Test-set evaluation: AUCs with patient-level bootstrap CIs, `metrics.json`, ROC plots, a Markdown report.

Every scored target of a `TargetSpec` (histology classes one-vs-rest, then the binarised radiomic
features) gets a ROC AUC on the held-out patients and a percentile confidence interval from a
patient-level bootstrap. One set of resampled patients is drawn per bootstrap iteration and shared
by all targets (and, with the same seed, by all models), so intervals are comparable across targets
and models.

The bootstrap is vectorised: a resample is a vector of patient multiplicities (how often each patient
was drawn), and its Mann-Whitney AUC is computed from those multiplicities over the full sample's
sorted scores, for all resamples at once. That is exactly the AUC of the resampled patients with
average ranks for ties (what `sklearn.metrics.roc_auc_score` gives), at O(resamples x patients)
per target and without any re-sorting.

`metrics.json` is a flat object whose keys are exactly the target names (`TargetSpec.names`); a
target whose test labels have a single class has a null AUC and CI and a `note` saying why.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from radiogenomics.errors import InputError
from radiogenomics.jsonsafe import json_safe
from radiogenomics.training.targets import HISTOLOGY_PREFIX, Labels, Predictions, TargetSpec, safe_auc

_DPI = 120
_PANEL_INCHES = 3.3


# ----------------------------------------------------------------------------------------------
# Bootstrap AUCs


def _check_matrices(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate (n, T) 0/1 labels and NaN-free scores of the same shape; return them as bool and float64."""
    y, scores = np.asarray(y), np.asarray(scores)
    if y.ndim != 2 or scores.ndim != 2:
        raise InputError(f"labels and scores must be (patients x targets) matrices, got shapes {y.shape} and {scores.shape}")
    if y.shape != scores.shape:
        raise InputError(f"labels {y.shape} and scores {scores.shape} differ in shape; pass one score per label")
    if y.shape[0] == 0:
        raise InputError("no patients to evaluate; the test set is empty")
    if not np.isin(y, (0, 1)).all():
        raise InputError(f"labels must be 0/1, found value(s) {np.unique(y[~np.isin(y, (0, 1))])[:5].tolist()}")
    scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        rows, cols = np.nonzero(np.isnan(scores))
        raise InputError(f"scores contain NaN (patient {rows[0]}, target {cols[0]}, {len(rows)} in all); "
                         "the model produced invalid predictions")
    return y.astype(bool), scores


def _weighted_aucs(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mann-Whitney AUC of one target for each row of patient multiplicities `weights` (R, n).

    Patients are sorted once by score and grouped into tie blocks; per resample, U sums over the
    positives the negative weight strictly below plus half the negative weight tied with them.
    Returns (auc, positive weight, negative weight) per row; auc is NaN where a class is absent.
    """
    order = np.argsort(score, kind="stable")
    sorted_score, pos = score[order], y[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    w = weights[:, order]
    pos_w = np.add.reduceat(np.where(pos, w, 0.0), starts, axis=1)
    neg_w = np.add.reduceat(np.where(pos, 0.0, w), starts, axis=1)
    below = np.cumsum(neg_w, axis=1) - neg_w
    u = (pos_w * (below + 0.5 * neg_w)).sum(axis=1)
    n1, n0 = pos_w.sum(axis=1), neg_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where((n1 > 0) & (n0 > 0), u / (n1 * n0), np.nan)
    return auc, n1, n0


def bootstrap_aucs(y: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> list[dict]:
    """AUC and patient-level percentile bootstrap CI of every column of `scores` against `y` (n x T).

    Each of the `n_boot` iterations resamples the n patients with replacement, the same patients for
    every target (`numpy.random.default_rng(seed).integers(0, n, size=(n_boot, n))`, so a run is
    reproducible). A resample in which a target has a single class is skipped for that target only;
    `n_boot_used` says how many resamples its CI rests on. Returns one dict per column with `auc`,
    `ci_low`, `ci_high` (NaN when undefined), `n_pos`, `n_neg` and `n_boot_used`.
    """
    y, scores = _check_matrices(y, scores)
    _check_bootstrap(n_boot, level)
    n, n_targets = y.shape
    weights = _resample_weights(n, n_boot, seed)
    full = np.ones((1, n))
    tail = (1.0 - level) / 2.0
    results = []
    for j in range(n_targets):
        point, n1, n0 = _weighted_aucs(y[:, j], scores[:, j], full)
        boot = _weighted_aucs(y[:, j], scores[:, j], weights)[0]
        boot = boot[~np.isnan(boot)]
        low, high = np.quantile(boot, [tail, 1.0 - tail]) if boot.size else (np.nan, np.nan)
        results.append({
            "auc": float(point[0]), "ci_low": float(low), "ci_high": float(high),
            "n_pos": int(n1[0]), "n_neg": int(n0[0]), "n_boot_used": int(boot.size),
        })
    return results


def _check_bootstrap(n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise InputError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")


def _resample_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) multiplicity of each patient in each bootstrap resample (seeded, reproducible)."""
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    offsets = draws + (np.arange(n_boot) * n)[:, None]  # one bincount over row-offset indices
    return np.bincount(offsets.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def bootstrap_difference(y: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, n_boot: int = 1000, seed: int = 0,
                         level: float = 0.95) -> dict[str, float]:
    """Paired patient-level bootstrap of (mean AUC of model a) - (mean AUC of model b) over the
    columns of `y` (n x T, e.g. one target family): both models are scored on the same resamples,
    so the interval reflects how much the test patients alone can move the difference. A column
    with one class in a resample is left out of that resample's means. Returns `diff` (on all
    patients), `ci_low`, `ci_high` and `n_boot_used`."""
    y, scores_a = _check_matrices(y, scores_a)
    _, scores_b = _check_matrices(y, scores_b)
    _check_bootstrap(n_boot, level)
    # row 0: every patient once (the point estimate); then the resamples
    weights = np.vstack([np.ones((1, len(y))), _resample_weights(len(y), n_boot, seed)])
    t = y.shape[1]
    aucs = np.stack([_weighted_aucs(y[:, j], s[:, j], weights)[0] for s in (scores_a, scores_b) for j in range(t)])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample (every column single-class)
        per_row = np.nanmean(aucs[:t] - aucs[t:], axis=0)
    diff, diffs = float(per_row[0]), per_row[1:]
    diffs = diffs[~np.isnan(diffs)]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail]) if diffs.size else (np.nan, np.nan)
    return {"diff": diff, "ci_low": float(low), "ci_high": float(high), "n_boot_used": int(diffs.size)}


def family_differences(spec: TargetSpec, labels: Labels, a: Predictions, b: Predictions, n_boot: int = 1000,
                       seed: int = 0) -> dict[str, dict[str, float]]:
    """`bootstrap_difference` of model a against model b per target family: "histology" (the mean
    of its classes' one-vs-rest AUCs) and "radiomic" (the mean over features), where present."""
    y, scores_a = _aligned(spec, labels, a)
    _, scores_b = _aligned(spec, labels, b)
    hist = np.array([n.startswith(HISTOLOGY_PREFIX) for n in spec.names])
    out = {}
    for family, columns in (("histology", hist), ("radiomic", ~hist)):
        if columns.any():
            out[family] = bootstrap_difference(y[:, columns], scores_a[:, columns], scores_b[:, columns], n_boot, seed)
    return out


# ----------------------------------------------------------------------------------------------
# metrics.json


def _aligned(spec: TargetSpec, labels: Labels, predictions: Predictions, what: str = "predictions") -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores as (n, T) matrices in `spec.names` order, checked against the spec."""
    n_classes = len(spec.histology_classes)
    if (labels.histology is None) != (n_classes == 0):
        raise InputError(f"the target spec has {n_classes} histology class(es) but the labels "
                         f"{'have none' if labels.histology is None else 'include histology'}; encode labels with the same spec")
    if labels.features.ndim != 2 or labels.features.shape[1] != len(spec.features):
        raise InputError(f"labels have {labels.features.shape[-1]} radiomic target(s), the spec {len(spec.features)}; "
                         "encode labels with the same spec")
    y = labels.onehot(spec)
    hist = predictions.histology
    if (hist is None) != (n_classes == 0) or (hist is not None and (hist.ndim != 2 or hist.shape[1] != n_classes)):
        got = "none" if hist is None else f"shape {hist.shape}"
        raise InputError(f"{what}: histology probabilities are {got}, the spec has {n_classes} class(es); "
                         "predict with a model trained on this spec")
    if predictions.features.ndim != 2 or predictions.features.shape[1] != len(spec.features):
        raise InputError(f"{what}: {predictions.features.shape[-1]} radiomic score column(s), the spec has "
                         f"{len(spec.features)}; predict with a model trained on this spec")
    scores = predictions.matrix()
    if scores.shape[0] != y.shape[0]:
        raise InputError(f"{what}: {scores.shape[0]} patient(s) scored but {y.shape[0]} labelled; score the same test patients")
    return y, scores


def evaluate(spec: TargetSpec, labels: Labels, predictions: Predictions, n_boot: int = 1000,
             seed: int = 0) -> dict[str, dict]:
    """The `metrics.json` content: one entry per name of `spec.names`, nothing else.

    Each entry has `auc`, `ci_low`, `ci_high` (95% patient-level bootstrap), `n_pos`, `n_neg` and
    `n_boot_used`. Undefined values are None (JSON null) and come with a `note`: a target whose test
    labels have one class has no AUC, and a CI needs at least one resample with both classes.
    """
    y, scores = _aligned(spec, labels, predictions)
    metrics: dict[str, dict] = {}
    for name, result in zip(spec.names, bootstrap_aucs(y, scores, n_boot=n_boot, seed=seed), strict=True):
        entry: dict[str, Any] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}
        if entry["auc"] is None:
            entry["note"] = (f"the test labels have one class only (n_pos={entry['n_pos']}, n_neg={entry['n_neg']}); "
                             "AUC is undefined")
        elif entry["n_boot_used"] == 0:
            entry["note"] = "no bootstrap resample had both classes; the CI is undefined"
        elif entry["n_boot_used"] < n_boot / 2:
            entry["note"] = (f"CI from {entry['n_boot_used']} of {n_boot} resamples; "
                             "the others lacked one class (few positives or negatives)")
        metrics[name] = entry
    return metrics


def write_metrics(path: Path, metrics: dict) -> None:
    """Write metrics as JSON with NaN (and inf) as null, so strict JSON parsers can read it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(metrics), indent=2, allow_nan=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# ROC plots


def _figure(n_panels: int, ncols: int = 4) -> tuple[Figure, list]:
    """A grid figure on the Agg canvas (no pyplot, no global backend state) and its used axes."""
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(_PANEL_INCHES * ncols, _PANEL_INCHES * nrows + 0.4), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _roc_panel(ax, title: str, y: np.ndarray, scores_by_model: dict[str, np.ndarray]) -> None:
    """One ROC panel: a curve per model with its AUC in the legend, and the chance diagonal."""
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=0.8)
    ax.set_title(title, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    ax.set_xlabel("false positive rate", fontsize=7)
    ax.set_ylabel("true positive rate", fontsize=7)
    if y.min() == y.max():
        ax.text(0.5, 0.5, "one class only\nin the test labels", ha="center", va="center", fontsize=8)
        return
    for model, score in scores_by_model.items():
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, linewidth=1.2, label=f"{model} (AUC {safe_auc(y, score):.3f})")
    ax.legend(loc="lower right", fontsize=6, frameon=False)


def roc_plots(spec: TargetSpec, labels: Labels, predictions_by_model: dict[str, Predictions], out_dir: Path,
              max_features: int = 12) -> list[Path]:
    """Write ROC curves as PNGs in `out_dir`, one curve per model; returns the files written.

    `roc_histology.png` has a panel per histology class (one-vs-rest); `roc_features.png` a panel for
    each of up to `max_features` radiomic targets, those where the first model's AUC is highest.
    A file is skipped when it would be empty (no histology; no radiomic target with both classes).
    """
    if not predictions_by_model:
        raise InputError("no models to plot; pass at least one model's predictions")
    if max_features < 0:
        raise InputError(f"max_features must be 0 or more, got {max_features}")
    scores: dict[str, np.ndarray] = {}
    y = np.zeros((0, 0))
    for model, predictions in predictions_by_model.items():
        y, scores[model] = _aligned(spec, labels, predictions, what=f"model {model!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def draw(file: str, columns: list[int], titles: list[str], suptitle: str) -> None:
        path = out_dir / file
        if not columns:
            path.unlink(missing_ok=True)  # never leave a stale plot from an earlier run beside fresh ones
            return
        fig, axes = _figure(len(columns))
        for ax, j, title in zip(axes, columns, titles, strict=True):
            _roc_panel(ax, title, y[:, j], {m: s[:, j] for m, s in scores.items()})
        fig.suptitle(suptitle, fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=_DPI)
        written.append(path)

    offset = len(spec.histology_classes)
    draw("roc_histology.png", list(range(offset)), list(spec.histology_classes), "Histology (one-vs-rest), test set")

    first_model, first = next(iter(scores.items()))
    ranked = sorted((-auc, k) for k in range(len(spec.features))
                    if not math.isnan(auc := safe_auc(y[:, offset + k], first[:, offset + k])))
    chosen = [k for _, k in ranked[:max_features]]
    draw("roc_features.png", [offset + k for k in chosen], [spec.features[k] for k in chosen],
         f"Radiomic targets with the highest {first_model} AUC ({len(chosen)} of {len(spec.features)}), test set")
    return written


# ----------------------------------------------------------------------------------------------
# Markdown report


def _num(value: Any) -> float:
    """A metric value as float, NaN for None/missing."""
    return float("nan") if value is None else float(value)


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _cell(entry: Mapping[str, Any]) -> str:
    """`AUC [low, high]` to 3 decimals, `n/a` parts where undefined."""
    auc, low, high = _num(entry.get("auc")), _num(entry.get("ci_low")), _num(entry.get("ci_high"))
    if math.isnan(auc):
        return "n/a"
    return f"{auc:.3f} [{_fmt(low)}, {_fmt(high)}]" if not (math.isnan(low) or math.isnan(high)) else f"{auc:.3f} [n/a]"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table, first column left-aligned and the numbers right-aligned."""
    rule = [":--"] + ["--:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _summary(values: Sequence[float]) -> list[str]:
    """mean, median, min, max of the defined values (n/a when none)."""
    v = np.array([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return ["n/a"] * 4
    return [_fmt(float(v.mean())), _fmt(float(np.median(v))), _fmt(float(v.min())), _fmt(float(v.max()))]


def _winners(values: Mapping[str, float], tol: float = 1e-12) -> list[str]:
    """Models with the best defined value (ties all win); empty when no model has a value."""
    defined = {m: v for m, v in values.items() if not math.isnan(v)}
    if not defined:
        return []
    best = max(defined.values())
    return [m for m, v in defined.items() if v >= best - tol]


def markdown_report(title: str, metrics_by_model: dict[str, dict[str, dict]],
                    cv_by_model: dict[str, dict[str, float]] | None, spec: TargetSpec,
                    notes: Sequence[str] = ()) -> str:
    """A Markdown comparison of models on the test set (and cross-validation when given).

    The first model of `metrics_by_model` is the network, the others are baselines. Sections:
    a summary per target family (histology classes; radiomic features) with one row per model;
    the wins (on how many targets each model has the best AUC, ties counting for every tied model);
    histology AUC [95% CI] per class; and every radiomic target's AUC [95% CI], best in bold.
    """
    if not metrics_by_model:
        raise InputError("no models to report; pass at least one model's metrics")
    names = spec.names
    for model, metrics in metrics_by_model.items():
        missing = [n for n in names if n not in metrics]
        if missing:
            raise InputError(f"metrics of model {model!r} lack {len(missing)} target(s) of the spec "
                             f"(e.g. {', '.join(missing[:3])}); evaluate it on the same targets")
    cv = dict(cv_by_model or {})
    for model, aucs in cv.items():
        if model not in metrics_by_model:
            raise InputError(f"CV results for model {model!r}, which has no test metrics; "
                             f"models: {', '.join(metrics_by_model)}")
        missing = [n for n in names if n not in aucs]
        if missing:
            raise InputError(f"CV AUCs of model {model!r} lack {len(missing)} target(s) of the spec "
                             f"(e.g. {', '.join(missing[:3])}); cross-validate it on the same targets")

    models = list(metrics_by_model)
    network = models[0]
    label = {m: f"{_md_escape(m)} (network)" if m == network else _md_escape(m) for m in models}
    test = {m: {n: _num(metrics_by_model[m][n].get("auc")) for n in names} for m in models}
    ci_low = {m: {n: _num(metrics_by_model[m][n].get("ci_low")) for n in names} for m in models}
    cv_auc = {m: {n: _num(cv[m].get(n)) for n in names} for m in cv}
    hist_names = names[: len(spec.histology_classes)]
    feat_names = list(spec.features)
    families = [("histology", f"Histology ({len(hist_names)} classes, one-vs-rest)", hist_names),
                ("radiomic", f"Radiomic features ({len(feat_names)} binarised targets)", feat_names)]
    families = [family for family in families if family[2]]
    ref = metrics_by_model[network]

    out = [f"# {title}", ""]
    out.append(f"Models: {', '.join(f'`{m}`' for m in models)}. `{network}` is the network; the others are baselines.")
    out.append("Test AUCs carry 95% percentile CIs from a patient-level bootstrap (the same resamples for every "
               "target and model)." + (" CV AUCs are from cross-validation on the training data." if cv else ""))
    out.append("")
    if notes:
        out += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]

    # (a) one summary table per target family
    out += ["## Summary by target family", ""]
    for _, heading, group in families:
        defined = sum(not math.isnan(test[network][n]) for n in group)
        out += [f"### {heading}", "", f"Test AUC over the {defined} of {len(group)} targets with both classes in the test set."
                + ("" if not cv else " CV AUC over the targets with a CV value."), ""]
        header = ["Model", "test mean", "test median", "test min", "test max", "CI low > 0.5"]
        if cv:
            header += ["CV mean", "CV median", "CV min", "CV max"]
        rows = []
        for m in models:
            row = [label[m], *_summary([test[m][n] for n in group]),
                   f"{sum(ci_low[m][n] > 0.5 for n in group)} / {len(group)}"]
            if cv:
                row += _summary([cv_auc[m][n] for n in group]) if m in cv_auc else ["n/a"] * 4
            rows.append(row)
        out += _table(header, rows) + [""]
        if len(models) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a family with no defined AUC: NaN
                means = {m: float(np.nanmean([test[m][n] for n in group])) for m in models}
            best = max(models[1:], key=lambda m: -np.inf if math.isnan(means[m]) else means[m])
            gap = means[network] - means[best]
            verdict = "wins" if gap > 0 else ("ties" if gap == 0 else "loses")
            out += [f"Mean test AUC, network minus the best baseline (`{_md_escape(best)}`): {gap:+.3f}; the network "
                    f"{verdict} on this family.", ""]

    # (b) wins
    out += ["## Wins", "", "On how many targets each model has the best AUC (a tie counts for every tied model); "
            "`of N` counts the targets where at least one model has an AUC.", ""]
    header, win_rows = ["Model"], {m: [label[m]] for m in models}
    network_wins = []
    for kind, aucs in [("test", test)] + ([("CV", cv_auc)] if cv else []):
        for family, _, group in families + [("all", "", names)]:
            winners = [w for w in (_winners({m: aucs[m][n] for m in aucs}) for n in group) if w]
            header.append(f"{kind}: {family} (of {len(winners)})")
            for m in models:
                win_rows[m].append(str(sum(m in w for w in winners)) if m in aucs else "n/a")
            if family == "all" and network in aucs:
                network_wins.append(f"the best {kind} AUC on {sum(network in w for w in winners)} of {len(winners)} targets")
    out += _table(header, list(win_rows.values())) + [""]
    if network_wins:
        out += [f"The network `{network}` has {' and '.join(network_wins)}.", ""]

    def bold_best(name: str) -> list[str]:
        best = set(_winners({m: test[m][name] for m in models})) if len(models) > 1 else set()
        return [f"**{_cell(metrics_by_model[m][name])}**" if m in best else _cell(metrics_by_model[m][name]) for m in models]

    def n_cell(name: str) -> str:
        return f"{ref[name].get('n_pos', 'n/a')} / {ref[name].get('n_neg', 'n/a')}"

    # (c) histology per class
    if hist_names:
        out += ["## Histology: test AUC [95% CI] per class", "", "One-vs-rest; best per class in bold.", ""]
        rows = [[_md_escape(n[len(HISTOLOGY_PREFIX):]), n_cell(n), *bold_best(n)] for n in hist_names]
        out += _table(["Class", "n pos / n neg", *[label[m] for m in models]], rows) + [""]

    # (d) every radiomic target
    if feat_names:
        order = sorted(feat_names, key=lambda n: (math.isnan(test[network][n]), -np.nan_to_num(test[network][n])))
        out += ["## Radiomic features: test AUC [95% CI] per target", "",
                f"Sorted by the network's test AUC; best per target in bold. Positive class: value above the training "
                f"cut point (quantile {spec.cut_quantile:g}).", ""]
        rows = [[f"`{_md_escape(n)}`", n_cell(n), *bold_best(n)] for n in order]
        out += _table(["Target", "n pos / n neg", *[label[m] for m in models]], rows) + [""]
    return "\n".join(out)
