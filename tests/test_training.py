"""Training with Ray Tune on a real local Ray, the registry, and the test-cohort evaluation."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from radiogenomics.cohort import load_cohort, write_expression
from radiogenomics.errors import InputError
from radiogenomics.examples import write_leukemia_cohort
from radiogenomics.holdout import evaluate_on_test
from radiogenomics.registry import ModelError, load_model, resolve
from radiogenomics.synth import SynthConfig, generate
from radiogenomics.training.targets import TargetSpec, target_aucs
from radiogenomics.training.selection import refit, set_threads
from tune.space import to_config
from tune.train import TrainOptions, train

CLI = str(Path(sys.executable).parent / "radiogenomics")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, hallmark_gmt: Path) -> Path:
    out = tmp_path_factory.mktemp("train") / "cohort"
    generate(SynthConfig(out=out, hallmark_gmt=hallmark_gmt, n_train=90, n_test=80, n_genes=2000, n_features=8), progress=False)
    return out


def _options(cohort: Path, registry: Path, name: str, **kw) -> TrainOptions:
    defaults = dict(trials=4, folds=3, max_epochs=25, compare_targets=2, progress=False, seeds=2)
    return TrainOptions(cohort=cohort, registry=registry, name=name, **{**defaults, **kw})


@pytest.fixture(scope="module")
def trained(ray_local, small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    registry = tmp_path_factory.mktemp("registry")
    return train(_options(small / "train", registry, "nsclc"))


def test_artifact_and_model_card(trained: Path, small: Path) -> None:
    card = json.loads((trained / "model.json").read_text())
    cohort = load_cohort(small / "train")
    assert trained.name == "1" and card["name"] == "nsclc" and card["version"] == "1"
    assert card["genes"] == list(cohort.genes)
    assert len(card["normalisation"]["mean"]) == len(card["genes"]) == len(card["normalisation"]["sd"])
    assert card["targets"]["histology_classes"] == ["ADC", "Other", "SCC"]
    spec = TargetSpec.fit(cohort)
    assert card["targets"]["cut_points"] == pytest.approx(list(spec.cut_points))  # training medians
    assert set(card["hyperparameters"]) >= {"widths", "activation", "dropout", "optimizer", "lr", "weight_decay", "batch_size"}
    cv = card["cv_metrics"]
    assert set(cv["per_target"]) == set(spec.names) and 0.5 < cv["cv_auc"] <= 1
    assert cv["trials_complete"] >= 1 and cv["folds"] == 3
    assert card["training"]["data_hash"] == cohort.content_hash() and card["code_version"].startswith("0.1.0")
    assert {"logistic_l1", "logistic_l2", "random_forest", "gradient_boosting", "svm"} <= set(cv["baselines"])
    models = {row["model"] for row in cv["comparison"]}
    assert "network" in models and len(models) == 6
    assert {row["target"] for row in cv["design_comparison"]} >= {"histology:ADC", "histology:SCC"}
    assert (trained / "training_report.md").read_text().count("|") > 20
    assert (trained / "tune").is_dir() and (trained / "baselines.joblib").is_file()
    assert resolve(trained.parents[1], "nsclc") == trained


def test_every_chosen_configuration_is_trained_with_every_seed(trained: Path, small: Path) -> None:
    """`seeds`: each chosen configuration cross-validated and refitted with each seed; the exported
    model averages them all, its CV is theirs (scored by number of seeds), and a member is exactly
    the refit of its configuration with its own seed and epochs."""
    card = json.loads((trained / "model.json").read_text())
    cv = card["cv_metrics"]
    members = cv["members"]
    configurations = sorted({m["configuration"] for m in members})
    assert cv["seeds"] == 2 and configurations == list(range(len(configurations)))
    assert sorted((m["configuration"], m["seed"]) for m in members) == [(c, s) for c in configurations for s in (0, 1)]
    assert all(m["refit_seed"] == 425 + m["configuration"] + 1000 * m["seed"] for m in members)
    assert all(m["params"] == members[0]["params"] for m in members if m["configuration"] == 0)
    assert set(cv["seed_scores"]) == {"1", "2"} and cv["cv_auc"] == pytest.approx(cv["seed_scores"]["2"], abs=1e-12)
    assert len(card["members"]) == len(members)  # the card lists every network of the ensemble
    assert "CV score by number of seeds: 1: " in (trained / "training_report.md").read_text()
    model = load_model(trained)
    assert len(model.net.members) == len(members)
    cohort, test = load_cohort(small / "train"), load_cohort(small / "test")
    index = next(i for i, m in enumerate(members) if m["seed"] == 1)
    member = members[index]
    rows = None if member["refit_epochs_per_output"] is None else np.array(list(member["refit_epochs_per_output"].values()))
    set_threads(2)  # as train refits
    again = refit(cohort, to_config(member["params"]), member["refit_epochs"], seed=member["refit_seed"], target_epochs=rows)
    x = torch.as_tensor(model.scaler.transform(model.align(test).astype(np.float32)))
    with torch.no_grad():
        exported, direct = model.net.members[index].eval()(x), again.net.eval()(x)
    for a, b in zip(exported, direct):
        if a is not None:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_loaded_model_reproduces_the_refit(trained: Path, small: Path) -> None:
    model = load_model(trained)
    cohort = load_cohort(small / "test")
    a = model.predict(model.align(cohort))
    b = load_model(trained).predict(model.align(cohort))
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_allclose(a.histology.sum(axis=1), 1.0, rtol=1e-5)


def test_loaded_weights_are_mapped_from_the_artifact_and_never_written_back(trained: Path, small: Path) -> None:
    """Replicas on one node share the weights' pages (one copy in memory and in the CPU cache); a
    process that changes its loaded weights changes only its own copy, never the artifact."""
    weights = trained / "weights.pt"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    model = load_model(trained)
    mapped = [line for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith(str(weights.resolve()))]
    assert mapped, "the weights are read into private memory, not mapped from the artifact"
    x = model.align(load_cohort(small / "test"))
    before = model.predict(x)
    with torch.no_grad():
        for parameter in model.net.parameters():
            parameter.zero_()
    assert not np.allclose(model.predict(x).features, before.features)
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest
    np.testing.assert_array_equal(load_model(trained).predict(x).features, before.features)


def test_weights_torch_cannot_map_are_read_instead(trained: Path, small: Path, tmp_path: Path) -> None:
    """A weights file in torch's legacy (non-zip) format cannot be mapped; it still loads, read into memory,
    and predicts exactly what the mapped artifact does."""
    import shutil

    legacy = tmp_path / "legacy"
    shutil.copytree(trained, legacy, ignore=shutil.ignore_patterns("tune"))
    state = torch.load(trained / "weights.pt", map_location="cpu", weights_only=True)
    torch.save(state, legacy / "weights.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(RuntimeError):
        torch.load(legacy / "weights.pt", map_location="cpu", weights_only=True, mmap=True)
    card = json.loads((trained / "model.json").read_text())
    card["weights_sha256"] = hashlib.sha256((legacy / "weights.pt").read_bytes()).hexdigest()
    (legacy / "model.json").write_text(json.dumps(card))
    x = load_model(trained).align(load_cohort(small / "test"))
    np.testing.assert_array_equal(load_model(legacy).predict(x).features, load_model(trained).predict(x).features)


def test_evaluate_on_the_independent_test_cohort(trained: Path, small: Path, tmp_path: Path) -> None:
    result = evaluate_on_test(trained, small / "test", tmp_path / "metrics.json", n_boot=300)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    spec = load_model(trained).spec
    assert list(metrics) == spec.names
    for value in metrics.values():
        assert {"auc", "ci_low", "ci_high"} <= set(value)
        assert value["ci_low"] <= value["auc"] <= value["ci_high"]
    assert metrics["histology:SCC"]["auc"] > 0.7  # HALLMARK_HYPOXIA drives squamous histology
    assert (tmp_path / "metrics_baselines.json").is_file() and (tmp_path / "metrics.md").is_file()
    assert all(p.stat().st_size > 1000 for p in result.plots)
    card = json.loads((trained / "model.json").read_text())
    assert card["test_metrics"]["network"]["histology:SCC"]["auc"] == pytest.approx(metrics["histology:SCC"]["auc"])
    load_model(trained)  # the updated card still loads
    # what the metrics came from, for paired comparisons (bench/accuracy.py): the network's and every
    # baseline's predictions on the same labels, which reproduce the written AUCs
    baselines = json.loads((tmp_path / "metrics_baselines.json").read_text())
    assert result.spec == spec and list(result.predictions) == ["network", *baselines]
    assert result.sample_ids == load_cohort(small / "test").sample_ids
    for name, preds in result.predictions.items():
        expected = metrics if name == "network" else baselines[name]
        aucs = target_aucs(spec, result.labels, preds)
        assert all(aucs[t] == pytest.approx(expected[t]["auc"], abs=1e-9) for t in spec.names)


def test_label_shuffled_control_scores_chance(ray_local, small: Path, tmp_path: Path) -> None:
    """Leakage control: train on labels shuffled across patients; the test AUC must be chance."""
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    cohort = load_cohort(small / "train")
    order = np.random.default_rng(7).permutation(cohort.n_samples)
    write_expression(shuffled / "expression.parquet", cohort.sample_ids, cohort.genes, cohort.expression)
    for table in ("radiomics", "clinical"):
        frame = getattr(cohort, table).iloc[order]
        frame.index = pd.Index(cohort.sample_ids, name="sample_id")
        frame.to_csv(shuffled / f"{table}.csv")
    folder = train(_options(shuffled, tmp_path / "registry", "control", trials=3, compare_targets=0, baselines=False))
    metrics = evaluate_on_test(folder, small / "test", tmp_path / "m.json", n_boot=100).metrics
    mean_auc = np.mean([v["auc"] for v in metrics.values() if v["auc"] is not None])
    assert abs(mean_auc - 0.5) <= 0.06, mean_auc


def _leukemia_cohort(root: Path) -> Path:
    return write_leukemia_cohort(SHARED / "expression" / "gseapy_leukemia", root)


@pytest.mark.slow
def test_real_all_aml_matrix_is_learned(ray_local, tmp_path: Path) -> None:
    """The GSEA leukemia microarray (48 patients, ALL vs AML): CV AUC at least 0.95."""
    cohort_dir = _leukemia_cohort(tmp_path / "leukemia")
    folder = train(_options(cohort_dir, tmp_path / "registry", "leukemia", trials=8, folds=4, max_epochs=40,
                            compare_targets=0, baselines=False))
    card = json.loads((folder / "model.json").read_text())
    assert card["targets"]["histology_classes"] == ["ALL", "AML"] and card["targets"]["features"] == []
    assert card["cv_metrics"]["cv_auc"] >= 0.95, card["cv_metrics"]["cv_auc"]


# ----------------------------------------------------------------------------------------------
# Bad input and damaged artifacts


def test_bad_training_input_is_one_line(small: Path, tmp_path: Path) -> None:
    result = subprocess.run([CLI, "train", str(small / "train"), "--registry", str(tmp_path), "--name", "x", "--folds", "60"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "too few samples (90) for 60 folds" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    constant = tmp_path / "constant"
    constant.mkdir()
    cohort = load_cohort(small / "train")
    write_expression(constant / "expression.parquet", cohort.sample_ids, cohort.genes, cohort.expression)
    cohort.clinical.to_csv(constant / "clinical.csv")
    radiomics = cohort.radiomics.copy()
    radiomics["original_shape_Elongation"] = 1.0
    radiomics.to_csv(constant / "radiomics.csv")
    result = subprocess.run([CLI, "train", str(constant), "--registry", str(tmp_path), "--name", "x"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "target 'original_shape_Elongation' has a single class" in result.stderr
    with pytest.raises(InputError, match="no interrupted search"):
        train(_options(small / "train", tmp_path / "empty", "nothing", resume=True))
    for flag, value, message in (("--time-budget", "-5", "must be a positive number of seconds"),
                                 ("--ensemble", "0", "must be a positive whole number"),
                                 ("--seeds", "0", "must be a positive whole number")):
        result = subprocess.run([CLI, "train", str(small / "train"), "--registry", str(tmp_path), "--name", "x", flag, value],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_test_cohort_with_missing_genes(trained: Path, small: Path, tmp_path: Path) -> None:
    cohort = load_cohort(small / "test")
    partial = tmp_path / "partial"
    partial.mkdir()
    keep = list(cohort.genes[10:])
    write_expression(partial / "expression.parquet", cohort.sample_ids, keep, cohort.expression[:, 10:])
    cohort.clinical.to_csv(partial / "clinical.csv")
    cohort.radiomics.to_csv(partial / "radiomics.csv")
    result = subprocess.run([CLI, "evaluate", str(trained), str(partial), "--out", str(tmp_path / "m.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"10 of the model's {cohort.n_genes} genes are missing (e.g. {', '.join(cohort.genes[:5])})" in result.stderr


def test_damaged_artifacts_are_refused(trained: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained, broken, ignore=shutil.ignore_patterns("tune"))
    (broken / "weights.pt").write_bytes((trained / "weights.pt").read_bytes()[:-100])
    with pytest.raises(ModelError, match="checksum does not match"):
        load_model(broken)
    card = json.loads((trained / "model.json").read_text())
    (broken / "weights.pt").write_bytes((trained / "weights.pt").read_bytes())
    (broken / "model.json").write_text(json.dumps({**card, "format_version": 99}))
    with pytest.raises(ModelError, match="format_version 99 is not supported"):
        load_model(broken)
    (broken / "model.json").write_text(json.dumps({**card, "genes": card["genes"][:-1]}))
    with pytest.raises(ModelError, match="normalisation does not match"):
        load_model(broken)
    (broken / "model.json").write_text(json.dumps({**card, "hyperparameters": {**card["hyperparameters"], "widths": [7]},
                                                   "members": [{**m, "widths": [7]} for m in card["members"]]}))
    with pytest.raises(ModelError, match="weights do not fit the architecture"):
        load_model(broken)
    narrow = {"widths": [7], "activation": "interaction", "interaction_units": 9, "screen_genes": 0, "components": 0,
              "modules": 0, "target_screen": False}  # an exported modules block narrower than its eigengenes
    (broken / "model.json").write_text(json.dumps({**card, "hyperparameters": {**card["hyperparameters"], **narrow},
                                                   "members": [{**m, **narrow} for m in card["members"]]}))
    with pytest.raises(ModelError, match="weights do not fit the architecture.*interaction over 9 of 7 units"):
        load_model(broken)
    (broken / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="damaged"):
        load_model(broken)
    with pytest.raises(ModelError, match="no model named 'nope'"):
        resolve(trained.parents[1], "nope")
    with pytest.raises(ModelError, match=r"model 'nsclc' has no version '7' \(versions: 1\)"):
        resolve(trained.parents[1], "nsclc", "7")


def test_invalid_model_name_is_refused(small: Path, tmp_path: Path) -> None:
    result = subprocess.run([CLI, "train", str(small / "train"), "--registry", str(tmp_path), "--name", "../escape"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "--name '../escape' is not a valid model name" in result.stderr


@pytest.mark.slow
def test_interrupted_search_resumes(small: Path, tmp_path: Path) -> None:
    """Kill `radiogenomics train` mid-search; `--resume` completes it and exports the model."""
    registry = tmp_path / "registry"
    args = [CLI, "train", str(small / "train"), "--registry", str(registry), "--name", "resumable", "--trials", "6",
            "--folds", "3", "--max-epochs", "25", "--compare-targets", "0", "--no-baselines", "--quiet"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    experiment = registry / ".tune" / "resumable"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(experiment.glob("*/result.json"))) < 2:
        time.sleep(1)
    process.kill()
    process.wait(timeout=60)
    assert not (registry / "resumable").exists()  # nothing exported: the run was cut short
    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    folder = Path(resumed.stdout.strip().splitlines()[-1])
    assert folder == registry / "resumable" / "1" and (folder / "model.json").is_file()
    trials = pd.read_csv(folder / "cv_trials.csv")
    assert len(trials) == 6


def test_time_budget_bounds_the_search(ray_local, small: Path, tmp_path: Path) -> None:
    """`--time-budget`: the search stops starting trials when the budget is spent; the best finished
    trials are still selected, refitted and exported."""
    folder = train(_options(small / "train", tmp_path / "registry", "budget", trials=200, time_budget=20,
                            compare_targets=0, baselines=False))
    card = json.loads((folder / "model.json").read_text())
    cv = card["cv_metrics"]
    assert cv["time_budget_s"] == 20 and 1 <= cv["trials_complete"] <= cv["trials"] < 200
    configurations = {m["configuration"] for m in cv["members"]}
    assert 1 <= len(configurations) <= 3 and len(cv["members"]) == 2 * len(configurations)  # each with 2 seeds
    assert card["best_family"] == {n: "network" for n in cv["per_target"]}
