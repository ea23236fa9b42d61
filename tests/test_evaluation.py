"""Test-set evaluation: bootstrap AUCs against sklearn, the metrics.json contract, ROC plots, the report."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from sklearn.metrics import roc_auc_score

from radiogenomics.errors import InputError
from radiogenomics.evaluation import (bootstrap_aucs, bootstrap_difference, evaluate, family_differences, markdown_report,
                                      roc_plots, write_metrics)
from radiogenomics.training.targets import Labels, Predictions, TargetSpec

CLASSES = ("ADC", "Other", "SCC")


def _spec(n_features: int = 2) -> TargetSpec:
    features = ("f1", "f2") if n_features == 2 else tuple(f"original_firstorder_F{i}" for i in range(n_features))
    return TargetSpec(histology_classes=CLASSES, features=features, cut_points=(0.0,) * n_features)


def _data(spec: TargetSpec, n: int = 89, seed: int = 0, signal: float = 2.0) -> tuple[Labels, Predictions]:
    """Seeded labels and predictions whose scores carry `signal` (0 = pure noise)."""
    rng = np.random.default_rng(seed)
    k, f = len(spec.histology_classes), len(spec.features)
    histology = rng.integers(0, k, n)
    features = (rng.normal(size=(n, f)) > 0).astype(np.float32)
    logits = signal * np.eye(k)[histology] + rng.normal(size=(n, k))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = 1.0 / (1.0 + np.exp(-(signal * (features - 0.5) + rng.normal(size=(n, f)))))
    return Labels(histology, features), Predictions(probs.astype(np.float32), scores.astype(np.float32))


# ----------------------------------------------------------------------------------------------
# bootstrap_aucs


@pytest.mark.parametrize("kind", ["continuous", "ties", "heavy_ties", "constant", "float32"])
def test_point_auc_equals_sklearn_exactly(kind: str) -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, size=(60, 12))
    y[0], y[1] = 0, 1  # both classes in every column
    noise = rng.normal(size=y.shape) + y
    scores = {"continuous": noise, "ties": np.round(noise, 1), "heavy_ties": rng.integers(0, 3, size=y.shape).astype(float),
              "constant": np.full(y.shape, 0.25), "float32": noise.astype(np.float32)}[kind]
    results = bootstrap_aucs(y, scores, n_boot=20, seed=0)
    for j, result in enumerate(results):
        assert abs(result["auc"] - roc_auc_score(y[:, j], scores[:, j])) <= 1e-12
        assert (result["n_pos"], result["n_neg"]) == (int(y[:, j].sum()), int((1 - y[:, j]).sum()))
    if kind == "constant":
        assert all(r["auc"] == 0.5 and r["ci_low"] == r["ci_high"] == 0.5 for r in results)


def test_ci_is_the_percentile_of_sklearn_aucs_over_shared_patient_resamples() -> None:
    """Recompute the bootstrap by brute force: resampled patients (shared by all targets), sklearn AUC, percentiles."""
    rng = np.random.default_rng(3)
    n, n_boot, seed = 40, 120, 11
    y = rng.integers(0, 2, size=(n, 3))
    y[:, 2] = 0
    y[:3, 2] = 1  # a rare class: many resamples lack a positive and are skipped for this target only
    scores = np.round(rng.normal(size=y.shape) + y, 1)
    results = bootstrap_aucs(y, scores, n_boot=n_boot, seed=seed, level=0.9)

    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    for j, result in enumerate(results):
        aucs = [roc_auc_score(y[d, j], scores[d, j]) for d in draws if 0 < y[d, j].sum() < n]
        assert result["n_boot_used"] == len(aucs)
        assert result["ci_low"] == pytest.approx(np.quantile(aucs, 0.05), abs=1e-12)
        assert result["ci_high"] == pytest.approx(np.quantile(aucs, 0.95), abs=1e-12)
    assert results[0]["n_boot_used"] == n_boot and results[2]["n_boot_used"] < n_boot


def test_paired_difference_is_the_percentile_of_sklearn_differences_over_shared_resamples() -> None:
    """`bootstrap_difference` by brute force: the same resampled patients for both models, sklearn AUCs,
    the mean over columns of a minus b (a column with one class left out of that resample), percentiles."""
    rng = np.random.default_rng(5)
    n, n_boot, seed = 40, 150, 7
    y = rng.integers(0, 2, size=(n, 3))
    y[:, 2] = 0
    y[:3, 2] = 1  # a rare class: left out of the resamples that lack a positive
    a = np.round(rng.normal(size=y.shape) + 3.0 * y, 1)
    b = np.round(rng.normal(size=y.shape), 1)  # no signal
    result = bootstrap_difference(y, a, b, n_boot=n_boot, seed=seed, level=0.9)

    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    diffs = [np.mean([roc_auc_score(y[d, j], a[d, j]) - roc_auc_score(y[d, j], b[d, j])
                      for j in range(3) if 0 < y[d, j].sum() < n]) for d in draws]
    point = np.mean([roc_auc_score(y[:, j], a[:, j]) - roc_auc_score(y[:, j], b[:, j]) for j in range(3)])
    assert result["diff"] == pytest.approx(point, abs=1e-12)
    assert result["ci_low"] == pytest.approx(np.quantile(diffs, 0.05), abs=1e-12)
    assert result["ci_high"] == pytest.approx(np.quantile(diffs, 0.95), abs=1e-12)
    assert result["n_boot_used"] == n_boot and result["ci_low"] > 0  # a carries more signal than b on every column
    swapped = bootstrap_difference(y, b, a, n_boot=n_boot, seed=seed, level=0.9)
    assert swapped["diff"] == pytest.approx(-result["diff"], abs=1e-12)
    assert swapped["ci_low"] == pytest.approx(-result["ci_high"], abs=1e-12)
    same = bootstrap_difference(y, a, a, n_boot=n_boot, seed=seed)
    assert same["diff"] == same["ci_low"] == same["ci_high"] == 0.0


def test_family_differences_split_histology_from_radiomic() -> None:
    """Per family: histology's classes together, the features together; each equals the paired
    difference computed on that family's columns alone."""
    spec = _spec(n_features=4)
    labels, strong = _data(spec, seed=1, signal=2.0)
    _, weak = _data(spec, seed=1, signal=0.5)
    out = family_differences(spec, labels, strong, weak, n_boot=200, seed=3)
    assert set(out) == {"histology", "radiomic"}
    y = labels.onehot(spec)
    hist = [n.startswith("histology:") for n in spec.names]
    cols = np.array(hist)
    for family, columns in (("radiomic", ~cols), ("histology", cols)):
        direct = bootstrap_difference(y[:, columns], strong.matrix()[:, columns], weak.matrix()[:, columns], n_boot=200, seed=3)
        assert out[family] == pytest.approx(direct)
        assert out[family]["diff"] > 0
    assert out["histology"] != pytest.approx(out["radiomic"])
    with pytest.raises(InputError, match="n_boot"):
        bootstrap_difference(y, strong.matrix(), weak.matrix(), n_boot=0)
    with pytest.raises(InputError, match="level"):
        bootstrap_difference(y, strong.matrix(), weak.matrix(), level=95)


def test_perfect_separation_gives_auc_and_ci_of_one() -> None:
    y = np.repeat(np.array([[0], [1]]), 30, axis=0)
    scores = np.hstack([y * 2.0 + np.linspace(0, 1, 60)[:, None], -y.astype(float)])
    perfect, reversed_ = bootstrap_aucs(np.hstack([y, y]), scores, n_boot=500)
    assert (perfect["auc"], perfect["ci_low"], perfect["ci_high"]) == (1.0, 1.0, 1.0)
    assert (reversed_["auc"], reversed_["ci_low"], reversed_["ci_high"]) == (0.0, 0.0, 0.0)


def test_random_scores_give_cis_that_cover_one_half() -> None:
    rng = np.random.default_rng(5)
    y, scores = rng.integers(0, 2, size=(89, 104)), rng.normal(size=(89, 104))
    results = bootstrap_aucs(y, scores, n_boot=1000, seed=1)
    covered = sum(r["ci_low"] <= 0.5 <= r["ci_high"] for r in results)
    assert covered >= 0.85 * len(results)  # ~95% expected
    assert all(r["ci_low"] <= r["auc"] <= r["ci_high"] for r in results)
    widths = [r["ci_high"] - r["ci_low"] for r in results]
    assert 0.15 < float(np.median(widths)) < 0.35  # ~ 4 x SE of an AUC with ~45 per class


def test_resamples_are_shared_across_targets_and_seeded() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=(50, 1))
    scores = rng.normal(size=(50, 1)) + y
    twin = bootstrap_aucs(np.hstack([y, y]), np.hstack([scores, scores]), n_boot=200, seed=4)
    assert twin[0] == twin[1]  # the same patients are drawn for every target
    assert bootstrap_aucs(y, scores, n_boot=200, seed=4) == bootstrap_aucs(y, scores, n_boot=200, seed=4)
    assert bootstrap_aucs(y, scores, n_boot=200, seed=4) != bootstrap_aucs(y, scores, n_boot=200, seed=5)


def test_single_class_target_has_nan_auc_and_no_resamples() -> None:
    y = np.zeros((20, 2), dtype=int)
    y[:10, 1] = 1
    result = bootstrap_aucs(y, np.random.default_rng(0).normal(size=(20, 2)), n_boot=50)
    assert np.isnan(result[0]["auc"]) and np.isnan(result[0]["ci_low"]) and result[0]["n_boot_used"] == 0
    assert (result[0]["n_pos"], result[0]["n_neg"]) == (0, 20)
    assert result[1]["n_boot_used"] == 50


def test_bootstrap_is_vectorised_fast() -> None:
    rng = np.random.default_rng(0)
    y, scores = rng.integers(0, 2, size=(89, 104)), np.round(rng.normal(size=(89, 104)), 2)
    start = time.perf_counter()
    bootstrap_aucs(y, scores, n_boot=1000, seed=0)
    assert time.perf_counter() - start < 10.0  # ~0.3 s in practice; loose, not a benchmark


@pytest.mark.parametrize(("y", "scores", "kwargs", "message"), [
    (np.zeros((5, 2)), np.zeros((5, 3)), {}, "differ in shape"),
    (np.zeros(5), np.zeros(5), {}, "matrices"),
    (np.full((5, 1), 2), np.zeros((5, 1)), {}, "0/1"),
    (np.array([[0], [1]]), np.array([[0.1], [np.nan]]), {}, "NaN"),
    (np.array([[0], [1]]), np.array([[0.1], [0.2]]), {"n_boot": 0}, "n_boot"),
    (np.array([[0], [1]]), np.array([[0.1], [0.2]]), {"level": 95}, "level"),
    (np.zeros((0, 1)), np.zeros((0, 1)), {}, "empty"),
])
def test_bad_inputs_are_one_line_errors(y: np.ndarray, scores: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        bootstrap_aucs(y, scores, **kwargs)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------
# evaluate / metrics.json


def _strict_json(path: Path) -> dict:
    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")
    return json.loads(path.read_text(), parse_constant=reject)


def test_metrics_json_has_exactly_the_targets_with_auc_and_ci(tmp_path: Path) -> None:
    spec = _spec(20)
    labels, predictions = _data(spec, seed=1)
    metrics = evaluate(spec, labels, predictions, n_boot=300, seed=0)
    write_metrics(tmp_path / "out" / "metrics.json", metrics)
    loaded = _strict_json(tmp_path / "out" / "metrics.json")
    assert list(loaded) == spec.names  # every key is a target, in spec order, nothing else
    y, scores = labels.onehot(spec), predictions.matrix()
    for j, name in enumerate(spec.names):
        entry = loaded[name]
        assert {"auc", "ci_low", "ci_high", "n_pos", "n_neg", "n_boot_used"} <= set(entry)
        assert entry["ci_low"] <= entry["auc"] <= entry["ci_high"]
        assert entry["auc"] == pytest.approx(roc_auc_score(y[:, j], scores[:, j]), abs=1e-12)
        assert entry["n_pos"] + entry["n_neg"] == 89 and entry["n_boot_used"] == 300
        assert entry["ci_low"] > 0.5  # signal 2 on 89 patients: clearly better than chance
    assert evaluate(spec, labels, predictions, n_boot=300, seed=0) == metrics


def test_single_class_target_is_null_with_a_note(tmp_path: Path) -> None:
    spec = _spec()
    labels, predictions = _data(spec, n=40)
    features = labels.features.copy()
    features[:, 1] = 0.0  # f2: every test patient below the cut point
    metrics = evaluate(spec, Labels(labels.histology, features), predictions, n_boot=100)
    assert metrics["f2"]["auc"] is None and metrics["f2"]["ci_low"] is None and metrics["f2"]["ci_high"] is None
    assert "one class" in metrics["f2"]["note"] and metrics["f2"]["n_pos"] == 0
    assert metrics["f1"]["auc"] is not None and "note" not in metrics["f1"]
    write_metrics(tmp_path / "metrics.json", metrics)
    assert _strict_json(tmp_path / "metrics.json")["f2"]["auc"] is None
    assert '"auc": null' in (tmp_path / "metrics.json").read_text()


def test_write_metrics_writes_nan_as_null(tmp_path: Path) -> None:
    write_metrics(tmp_path / "m.json", {"f1": {"auc": float("nan"), "ci_low": np.float32(0.25), "n_pos": np.int64(3)}})
    assert _strict_json(tmp_path / "m.json") == {"f1": {"auc": None, "ci_low": 0.25, "n_pos": 3}}


def test_predictions_that_do_not_match_the_spec_are_rejected() -> None:
    spec = _spec()
    labels, predictions = _data(spec, n=30)
    with pytest.raises(InputError, match="radiomic score column"):
        evaluate(spec, labels, Predictions(predictions.histology, predictions.features[:, :1]))
    with pytest.raises(InputError, match="histology probabilities"):
        evaluate(spec, labels, Predictions(None, predictions.features))
    with pytest.raises(InputError, match="30 labelled"):
        evaluate(spec, labels, Predictions(predictions.histology[:20], predictions.features[:20]))


# ----------------------------------------------------------------------------------------------
# ROC plots


def test_roc_plots_write_pngs(tmp_path: Path) -> None:
    spec = _spec(15)
    labels, network = _data(spec, seed=2)
    _, baseline = _data(spec, seed=3, signal=0.0)
    paths = roc_plots(spec, labels, {"network": network, "ridge": baseline}, tmp_path / "plots", max_features=6)
    assert [p.name for p in paths] == ["roc_histology.png", "roc_features.png"]
    shapes = []
    for path in paths:
        assert path.stat().st_size > 10_000
        image = imread(path)
        assert image.ndim == 3 and image.shape[2] in (3, 4) and image.std() > 0.05
        shapes.append(image.shape)
    assert shapes[0][1] < shapes[1][1] and shapes[0][0] < shapes[1][0]  # 1x3 panels vs 2x4 grid (6 features)


def test_roc_plots_without_histology_write_only_features(tmp_path: Path) -> None:
    spec = TargetSpec(histology_classes=(), features=("f1", "f2"), cut_points=(0.0, 0.0))
    labels, predictions = _data(_spec(), seed=4)
    labels, predictions = Labels(None, labels.features), Predictions(None, predictions.features)
    (tmp_path / "roc_histology.png").write_bytes(b"stale")
    paths = roc_plots(spec, labels, {"network": predictions}, tmp_path)
    assert [p.name for p in paths] == ["roc_features.png"]
    assert imread(paths[0]).shape[0] > 100
    assert not (tmp_path / "roc_histology.png").exists()


# ----------------------------------------------------------------------------------------------
# Markdown report


def _entry(auc: float | None, low: float | None = None, high: float | None = None) -> dict:
    if auc is None:
        return {"auc": None, "ci_low": None, "ci_high": None, "n_pos": 0, "n_neg": 30, "n_boot_used": 0, "note": "one class"}
    return {"auc": auc, "ci_low": auc - 0.1 if low is None else low, "ci_high": min(1.0, auc + 0.1) if high is None else high,
            "n_pos": 12, "n_neg": 18, "n_boot_used": 1000}


def _table_rows(report: str, heading: str) -> dict[str, list[str]]:
    """The body rows of the first table after `heading`, keyed by first cell."""
    lines = report[report.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_markdown_report_tables_and_wins() -> None:
    spec = _spec()
    # test AUCs per target:   ADC    Other  SCC    f1     f2
    table = {"net":   [0.90, 0.70, 0.80, 0.65, None],
             "ridge": [0.85, 0.75, 0.80, 0.60, None],
             "rf":    [0.70, 0.60, 0.55, 0.66, None]}
    metrics = {m: {n: _entry(a) for n, a in zip(spec.names, aucs, strict=True)} for m, aucs in table.items()}
    metrics["net"]["f1"] = _entry(0.65, 0.512, 0.78)
    cv = {"net": dict(zip(spec.names, [0.8, 0.8, 0.8, 0.7, 0.6], strict=True)),
          "ridge": dict(zip(spec.names, [0.7, 0.9, 0.8, 0.6, float("nan")], strict=True)),
          "rf": dict(zip(spec.names, [0.6, 0.7, 0.9, 0.5, 0.5], strict=True))}
    report = markdown_report("Paper comparison", metrics, cv, spec, notes=["synthetic cohort"])

    assert report.startswith("# Paper comparison")
    assert "- synthetic cohort" in report
    for heading in ("### Histology (3 classes", "### Radiomic features (2 binarised", "## Wins",
                    "## Histology: test AUC [95% CI]", "## Radiomic features: test AUC [95% CI]"):
        assert heading in report

    # Wins. Test: ADC net, Other ridge, SCC net+ridge tie, f1 rf, f2 nobody -> 4 contested targets.
    # CV: ADC net, Other ridge, SCC rf, f1 net, f2 net (ridge NaN) -> 5.
    wins = _table_rows(report, "## Wins")
    header = next(line for line in report[report.index("## Wins"):].splitlines() if line.startswith("| Model"))
    assert "test: histology (of 3)" in header and "test: all (of 4)" in header and "CV: all (of 5)" in header
    assert wins["net (network)"] == ["2", "0", "2", "1", "2", "3"]
    assert wins["ridge"] == ["2", "0", "2", "1", "0", "1"]
    assert wins["rf"] == ["0", "1", "1", "1", "0", "1"]
    assert "The network `net` has the best test AUC on 2 of 4 targets and the best CV AUC on 3 of 5 targets." in report

    # Family summaries: one row per model, test then CV, 3 decimals; CI low > 0.5 counted.
    hist = _table_rows(report, "### Histology (3 classes")
    assert hist["net (network)"] == ["0.800", "0.800", "0.700", "0.900", "3 / 3", "0.800", "0.800", "0.800", "0.800"]
    assert hist["rf"][:5] == ["0.617", "0.600", "0.550", "0.700", "1 / 3"]
    feats = _table_rows(report, "### Radiomic features (2 binarised")
    assert feats["net (network)"][:5] == ["0.650", "0.650", "0.650", "0.650", "1 / 2"]
    assert feats["ridge"][5:] == ["0.600", "0.600", "0.600", "0.600"]  # NaN CV ignored

    # Histology per class: AUC [CI] per model, best in bold.
    per_class = _table_rows(report, "## Histology: test AUC [95% CI]")
    assert per_class["ADC"] == ["12 / 18", "**0.900 [0.800, 1.000]**", "0.850 [0.750, 0.950]", "0.700 [0.600, 0.800]"]
    assert per_class["SCC"][1].startswith("**0.800") and per_class["SCC"][2].startswith("**0.800")

    # Every radiomic target, sorted by the network's AUC, the undefined one last.
    per_target = _table_rows(report, "## Radiomic features: test AUC [95% CI]")
    assert list(per_target) == ["`f1`", "`f2`"]
    assert per_target["`f1`"][1:] == ["0.650 [0.512, 0.780]", "0.600 [0.500, 0.700]", "**0.660 [0.560, 0.760]**"]
    assert per_target["`f2`"] == ["0 / 30", "n/a", "n/a", "n/a"]
    assert not re.search(r"\d\.\d{4}", report)  # never more than 3 decimals


def test_markdown_report_from_evaluate_without_cv() -> None:
    spec = _spec(101)
    labels, network = _data(spec, seed=6)
    _, noise = _data(spec, seed=7, signal=0.0)
    metrics = {"network": evaluate(spec, labels, network, n_boot=200),
               "baseline": evaluate(spec, labels, noise, n_boot=200)}
    report = markdown_report("Held-out test set", metrics, None, spec)
    assert "CV" not in report
    assert len(_table_rows(report, "## Radiomic features: test AUC")) == 101
    wins = _table_rows(report, "## Wins")
    assert int(wins["network (network)"][-1]) > 90  # the informative model beats noise almost everywhere


def test_markdown_report_rejects_metrics_missing_targets() -> None:
    spec = _spec()
    metrics = {"net": {n: _entry(0.7) for n in spec.names[:-1]}}
    with pytest.raises(InputError, match="lack 1 target"):
        markdown_report("x", metrics, None, spec)
    with pytest.raises(InputError, match="no test metrics"):
        markdown_report("x", {"net": {n: _entry(0.7) for n in spec.names}}, {"other": {}}, spec)
