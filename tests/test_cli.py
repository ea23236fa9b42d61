"""The `radiogenomics` console script, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radiogenomics.cohort import load_cohort

CLI = str(Path(sys.executable).parent / "radiogenomics")
VERBS = ["synth", "extract", "train", "evaluate", "mask", "serve", "demo"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300, env=env)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_help_lists_every_verb() -> None:
    result = run("--help")
    assert result.returncode == 0
    for verb in VERBS:
        assert verb in result.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb: str) -> None:
    result = run(verb, "--help")
    assert result.returncode == 0 and f"radiogenomics {verb}" in result.stdout


def test_serve_refuses_a_missing_model_in_one_line(tmp_path: Path) -> None:
    result = run("serve", str(tmp_path / "nowhere"))
    line = _one_line_error(result)
    assert result.returncode == 2 and "neither a model artifact" in line


def test_serve_refuses_bad_security_and_limit_arguments_in_one_line(small_registry: Path, tmp_path: Path) -> None:
    from tests.conftest import SMALL_MODEL

    model = str(small_registry / SMALL_MODEL)
    short = tmp_path / "short-tokens"
    short.write_text("pacs:tooshort\n")
    duplicate = tmp_path / "duplicate-tokens"
    duplicate.write_text("a:" + "x" * 32 + "\na:" + "y" * 32 + "\n")
    cases = [
        ((model, "--auth-tokens", str(short)), "shorter than 16 characters"),
        ((model, "--auth-tokens", str(duplicate)), "line 2: duplicate name"),
        ((model, "--auth-tokens", str(tmp_path / "missing")), "cannot read it"),
        ((model, "--request-timeout", "-1"), "must be a positive number of seconds"),
        ((model, "--gene-sets", "hallmark"), "is not NAME=FILE"),
        ((model, "--gene-sets", f"hallmark={tmp_path / 'none.gmt'}"), "no such GMT file"),
        ((model, "--max-voxels", "0"), "must be a positive whole number"),
        ((model, "--host", "hospital.example"), "--host 'hospital.example' is not an IP address"),
        ((model, "--ingress", "nginx"), "invalid choice: 'nginx'"),
        ((model, "--gateway-replicas", "0"), "must be a positive whole number"),
        ((model, "--pacs", "pacs.example.org"), "must start with http:// or https://"),
        ((model, "--pacs", "https://pacs.example", "--pacs-ca", str(tmp_path / "none.pem")), "--pacs-ca"),
        ((model, "--pacs", "https://pacs.example", "--pacs-auth-header-file", str(duplicate)), "one line 'Name: value'"),
    ]
    for args, fragment in cases:
        result = run("serve", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert fragment in _one_line_error(result), (args, result.stderr)
    result = run("serve", model, env={**os.environ, "RADIOGENOMICS_INGRESS": "nginx"})  # the switch's variable
    assert result.returncode == 2 and "ingress 'nginx' is not one of haproxy, proxy" in _one_line_error(result)


def test_extract_refuses_bad_pacs_arguments_in_one_line(tmp_path: Path) -> None:
    studies = tmp_path / "studies.csv"
    studies.write_text("sample_id,study_uid,image_series_uid,mask_series_uid\n")
    header = tmp_path / "header"
    header.write_text("Authorization: Bearer abc\nX-Extra: 1\n")
    out = str(tmp_path / "out.csv")
    cases = [
        (("--pacs", "http://127.0.0.1:9", "--out", out), "with --studies"),
        (("--studies", str(studies), "--out", out), "--pacs URL with --studies"),
        ((str(studies), "--pacs", "http://127.0.0.1:9", "--studies", str(studies), "--out", out), "not both"),
        ((str(studies), "--store-report", "--out", out), "use it with --pacs and --studies"),
        (("--pacs", "ftp://pacs", "--studies", str(studies), "--out", out), "must start with http:// or https://"),
        (("--pacs", "http://127.0.0.1:9", "--pacs-auth-header-file", str(header), "--studies", str(studies), "--out", out),
         "must hold one line"),
        (("--pacs", "http://127.0.0.1:9", "--studies", str(tmp_path / "none.csv"), "--out", out), "studies file not found"),
    ]
    for args, fragment in cases:
        result = run("extract", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert fragment in _one_line_error(result), (args, result.stderr)


def test_synth_writes_a_loadable_cohort(tmp_path: Path, hallmark_gmt: Path) -> None:
    out = tmp_path / "cohort"
    result = run("synth", str(out), "--train", "30", "--test", "12", "--genes", "5000", "--features", "20",
                 "--hallmark-gmt", str(hallmark_gmt), "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["train"] == str(out / "train")
    assert sum(summary["histology_counts"]["train"].values()) == 30
    train = load_cohort(out / "train")
    assert train.expression.shape == (30, 5000) and len(train.feature_names) == 20
    assert (out / "truth.json").is_file() and (out / "gene_sets.gmt").is_file()


def test_synth_shows_progress_on_stderr(tmp_path: Path, hallmark_gmt: Path) -> None:
    result = run("synth", str(tmp_path / "p"), "--train", "20", "--test", "10", "--genes", "3000", "--features", "5",
                 "--hallmark-gmt", str(hallmark_gmt))
    assert result.returncode == 0, result.stderr
    assert "synth" in result.stderr and "100%" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--features", "500"], "--features: Input should be less than or equal to 101"),
        (["--genes", "50"], "--genes must be at least"),
        (["--train", "0"], "argument --train: must be a positive whole number"),
        (["--train", "abc"], "argument --train: invalid _positive_int value"),
        (["--hallmark-gmt", "/nonexistent.gmt"], "/nonexistent.gmt: gene-set file not found"),
    ],
)
def test_synth_bad_options_are_one_line(tmp_path: Path, hallmark_gmt: Path, args: list[str], message: str) -> None:
    base = ["synth", str(tmp_path / "x"), "--quiet"]
    if "--hallmark-gmt" not in args:
        base += ["--hallmark-gmt", str(hallmark_gmt)]
    line = _one_line_error(run(*base, *args))
    assert message in line


def test_synth_refuses_a_non_empty_directory(tmp_path: Path, hallmark_gmt: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    line = _one_line_error(run("synth", str(tmp_path), "--hallmark-gmt", str(hallmark_gmt)))
    assert "not empty" in line and (tmp_path / "keep.txt").read_text() == "x"


def test_unknown_verb_is_one_line() -> None:
    line = _one_line_error(run("frobnicate"))
    assert "invalid choice: 'frobnicate'" in line


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 20_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_main_job_runs_and_reports(tmp_path: Path) -> None:
    """The README's main job: every stage runs, the services answer as in process, and nothing is pending."""
    out = tmp_path / "demo-out"
    # ~5-6 min on 2 cores (training, then the Serve app and its three services): longer than run()'s limit.
    result = subprocess.run([CLI, "demo", "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=840)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["test_auc"]["HALLMARK_HYPOXIA->histology:SCC"] > 0.75
    report = (out / "report.md").read_text()
    assert "HALLMARK_HYPOXIA" in report and "Stages not built yet" not in report
    assert (out / "cohort" / "train" / "images" / "manifest.csv").is_file()
    # Radiomics extracted from the generated CT images through Ray track the planted size program.
    image_truth = json.loads((out / "report.json").read_text())["image_features_vs_programs"]
    volume = next(r for r in image_truth if r["feature"] == "original_shape_VoxelVolume")
    assert volume["rho_latent"] > 0.9 and volume["rho_program"] > 0.5
    assert len(pd.read_csv(out / "features_train.csv")) == 120
    # A model was selected with Ray Tune, exported, and evaluated on the test cohort against the baselines.
    card = json.loads((out / "registry" / "demo" / "1" / "model.json").read_text())
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert list(metrics) == [f"histology:{c}" for c in card["targets"]["histology_classes"]] + card["targets"]["features"]
    radiomic = [v["auc"] for k, v in metrics.items() if not k.startswith("histology:")]
    assert np.mean(radiomic) > 0.55  # planted programs drive most features: well above chance even at demo budget
    assert "The selected network against the baselines" in report and "logistic_l2" in report
    # The Serve app answered every gRPC service as the core does in process.
    full = json.loads((out / "report.json").read_text())
    services = full["services"]
    started = next(s for s in full["stages"] if s["stage"].startswith("start the Serve app"))
    assert started["ingress"] == "haproxy"  # the demo's Ray was started for Serve's HAProxy ingress
    extraction = services["extraction"]
    assert extraction["feature_names_match"] and extraction["features"] > 100 and extraction["max_rel_diff"] <= 1e-6
    prediction = services["prediction"]
    assert prediction["patients"] == 60 and prediction["outputs"] == len(metrics) and prediction["max_abs_diff"] <= 1e-5
    assert set(prediction["auc_histology"]) == {k for k in metrics if k.startswith("histology:")}
    assert prediction["max_auc_diff_vs_evaluation"] <= 1e-9  # the served predictions are the evaluated ones
    # GetModelInfo tells a client, per output, which family did best in training (the card's record)
    assert prediction["best_family"] == card["best_family"] and set(card["best_family"]) == set(metrics)
    assert set(card["best_family"].values()) <= {"network", "logistic_l1", "logistic_l2", "svm", "random_forest", "gradient_boosting"}
    assert prediction["ensemble_members"] == max(1, len(card["members"])) == len(card["cv_metrics"]["members"])
    assert services["masking_job"]["state"] == "SUCCEEDED" and "The services, called over gRPC" in report
    # Gene masking of the test cohort through MaskingService: results for every output, planted sets against the truth.
    masking = full["masking"]
    table = pd.read_csv(out / "masking" / "results.csv")
    assert len(table) == services["masking_job"]["result_rows"]
    assert set(table["output"]) == set(metrics) and table["q_value"].between(0, 1).all()
    assert masking["planted"] and "Gene masking against the planted truth" in report
    hypoxia = next(r for r in masking["planted"] if r["gene_set"] == "HALLMARK_HYPOXIA" and r["output"] == "histology:SCC")
    assert hypoxia["best_decoy_rank"] is None or hypoxia["rank"] < hypoxia["best_decoy_rank"]
    # The same job in drop mode: every output scored by the AUC lost without each set, both modes compared per planted set.
    drop_job, drop = services["masking_drop_job"], full["masking_drop"]
    assert drop_job["state"] == "SUCCEEDED" and drop_job["mode"] == "drop" and services["masking_job"]["mode"] == "keep"
    dropped = pd.read_csv(out / "masking" / "results_drop.csv")
    assert len(dropped) == drop_job["result_rows"] and set(dropped["output"]) == set(metrics)
    assert "delta_auc" in dropped and dropped["q_value"].between(0, 1).all()
    assert {(r["gene_set"], r["output"]) for r in drop["planted"]} == {(r["gene_set"], r["output"]) for r in masking["planted"]}
    assert summary["masking_recall"] == {"keep": masking["recall"], "drop": drop["recall"]}
    assert "drop mode" in report and "### Planted gene sets in both modes" in report
    # The figures: ROC of the served predictions and the masking heatmaps, linked from the report.
    for name in ("roc_test", "masking_heatmap", "masking_heatmap_drop"):
        assert full["plots"][name] == f"plots/{name}.png" and _is_png(out / "plots" / f"{name}.png")
        assert f"](plots/{name}.png)" in report
    # An unrelated non-empty directory is refused (an earlier demo's output would be replaced).
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.txt").write_text("keep")
    assert "holds no earlier demo" in _one_line_error(run("demo", "--out", str(other), "--quiet"))
