"""The main job: an end-to-end run on a synthetic cohort with planted biology.

Each stage is a capability of the backend; the demo runs every stage that has landed and lists
the ones still to come, then writes `report.md` and `report.json` into the output directory.
The default cohort is small enough for a laptop; `--full` uses the paper's sizes. Ray work runs on
a local Ray bound to 127.0.0.1 unless an address is given.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from radiogenomics.cohort import Cohort, load_cohort
from radiogenomics.gene_sets import read_gmt
from radiogenomics.synth import SynthConfig, generate
from radiogenomics.synth.generator import gene_set_scores

#: Stages still to land, with the issue that tracks each.
PENDING = {
    "start the Serve app and call every gRPC service (extraction, prediction, masking job) from the demo": 7,
    "masking heatmap and masking through MaskingService in the demo": 7,
    "one Serve app, metrics, deployment files": 7,
}


@dataclass
class DemoResult:
    out: Path
    stages: list[dict] = field(default_factory=list)
    report: dict = field(default_factory=dict)

    def stage(self, name: str, fn: Callable[[], dict]) -> dict:
        start = time.perf_counter()
        result = fn()
        self.stages.append({"stage": name, "seconds": round(time.perf_counter() - start, 2), **result})
        return result


def _planted_recovery(train: Cohort, test: Cohort, gmt: Path, truth: dict) -> list[dict]:
    """How well each planted set's mean z-score separates its histology class, train and test."""
    sets = read_gmt(gmt)
    mean, sd = train.expression.mean(axis=0), train.expression.std(axis=0)
    rows = []
    for effect in truth["effects"]:
        if not effect["output"].startswith("histology:"):
            continue
        cls = effect["output"].split(":", 1)[1]
        for program in effect["programs"]:
            row = {"output": effect["output"], "gene_set": program, "mechanism": effect["mechanism"]}
            for name, cohort in (("train", train), ("test", test)):
                score = gene_set_scores(cohort.expression, list(cohort.genes), sets[program], mean, sd)
                row[f"auc_{name}"] = round(float(roc_auc_score(cohort.labels() == cls, score)), 3)
            rows.append(row)
    return rows


def _masking_vs_truth(table: pd.DataFrame, truth: dict, q: float = 0.1) -> dict:
    """Where each planted (set, output) association lands in the masking results, and decoy calls."""
    roles = truth.get("gene_sets", {})
    decoys = {name for name, info in roles.items() if isinstance(info, dict) and info.get("role") == "decoy"}
    rows = []
    for effect in truth["effects"]:
        for output in effect.get("outputs") or [effect["output"]]:
            ranked = table[table["output"] == output].reset_index(drop=True)
            if ranked.empty:
                continue
            decoy_ranks = [i + 1 for i, name in enumerate(ranked["gene_set"]) if name in decoys]
            for program in effect["programs"]:
                hit = ranked.index[ranked["gene_set"] == program]
                if len(hit):
                    r = ranked.loc[hit[0]]
                    rows.append({"output": output, "gene_set": program, "rank": int(hit[0]) + 1, "of": len(ranked),
                                 "auc": round(float(r["auc"]), 3), "q_value": round(float(r["q_value"]), 4),
                                 "best_decoy_rank": min(decoy_ranks) if decoy_ranks else None})
    found = sum(r["q_value"] < q for r in rows)
    decoy_calls = int(((table["q_value"] < q) & table["gene_set"].isin(decoys)).sum())
    return {"planted": rows, "recall": f"{found}/{len(rows)}", "decoy_calls": decoy_calls,
            "calls": int((table["q_value"] < q).sum())}


def _image_truth(features_csv: Path, patients_csv: Path) -> list[dict]:
    """Spearman correlation of image-derived features with the programs that drive them."""
    from scipy.stats import spearmanr

    features = pd.read_csv(features_csv, index_col="sample_id")
    latents = pd.read_csv(patients_csv, index_col=0).loc[features.index]
    pairs = [("original_shape_VoxelVolume", "size", "HALLMARK_E2F_TARGETS"),
             ("original_firstorder_Mean", "intensity", "HALLMARK_INTERFERON_GAMMA_RESPONSE"),
             ("original_shape_Sphericity", "irregularity", "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION")]
    return [{"feature": f, "latent": g, "program": p,
             "rho_latent": round(float(spearmanr(features[f], latents[g]).statistic), 3),
             "rho_program": round(float(spearmanr(features[f], latents[p]).statistic), 3)} for f, g, p in pairs]


def _test_summary(card: dict) -> list[dict]:
    """Test AUC per histology class and the radiomic mean, for the network and each baseline."""
    test = card.get("test_metrics", {})
    rows = []
    for model, metrics in [("network", test.get("network", {})), *test.get("baselines", {}).items()]:
        radiomic = [v["auc"] for k, v in metrics.items() if not k.startswith("histology:") and v.get("auc") is not None]
        row = {"model": model, **{k: v["auc"] for k, v in metrics.items() if k.startswith("histology:")}}
        row["radiomic mean"] = float(np.mean(radiomic)) if radiomic else None
        rows.append(row)
    return rows


def run_demo(out: Path, hallmark_gmt: Path, full: bool = False, seed: int = 42, progress: bool = True,
             address: str | None = None) -> DemoResult:
    """Run every landed stage on a fresh synthetic cohort under `out`, on one Ray session."""
    from radiogenomics.raycluster import ray_session

    with ray_session(address):
        return _run_stages(Path(out), hallmark_gmt, full, seed, progress, address)


def _run_stages(out: Path, hallmark_gmt: Path, full: bool, seed: int, progress: bool, address: str | None) -> DemoResult:
    cohort_dir = out / "cohort"
    sizes = {} if full else {"n_train": 120, "n_test": 60, "n_genes": 8000}
    config = SynthConfig(out=cohort_dir, hallmark_gmt=hallmark_gmt, seed=seed, images=True, **sizes)
    result = DemoResult(out=out)

    truth = {}

    def synth() -> dict:
        truth.update(generate(config, progress=progress))
        return {"train": config.n_train, "test": config.n_test, "genes": config.n_genes, "features": config.n_features}

    result.stage("synthetic cohort with planted biology and CT images", synth)
    cohorts: dict[str, Cohort] = {}

    def load() -> dict:
        cohorts["train"] = load_cohort(cohort_dir / "train")
        cohorts["test"] = load_cohort(cohort_dir / "test", classes=cohorts["train"].classes())
        return {"classes": cohorts["train"].classes(), "images": int(len(cohorts["train"].images))}

    result.stage("load and validate both cohorts", load)
    extracted: dict[str, Path] = {}

    def extract() -> dict:
        from radiogenomics.extraction.batch import run_batch
        from radiogenomics.extraction.params import ExtractionParams
        from radiogenomics.raycluster import ray_session

        counts = {}
        with ray_session(address):
            for name in ("train", "test"):
                extracted[name] = out / f"features_{name}.csv"
                summary = run_batch(cohort_dir / name / "images" / "manifest.csv", extracted[name], ExtractionParams({}),
                                    progress=progress)
                counts[name] = {"extracted": summary.extracted, "failed": summary.failed}
        return counts

    result.stage("extract radiomics from the CT images (pyradiomics, one Ray task per case)", extract)
    trained: dict[str, Path] = {}

    def train_and_select() -> dict:
        # The demo composes the whole system: it reaches Ray Tune through tune/ by name, as the CLI does.
        train_module = importlib.import_module("tune.train")
        budget = {} if full else {"trials": 6, "folds": 3, "max_epochs": 40, "compare_targets": 2}
        options = train_module.TrainOptions(cohort=cohort_dir / "train", registry=out / "registry", name="demo",
                                            address=address, seed=seed, progress=progress, **budget)
        trained["model"] = train_module.train(options)
        return {"model": str(trained["model"]), **budget}

    result.stage("train and select the network with Ray Tune; baselines on the same folds", train_and_select)

    def evaluate() -> dict:
        from radiogenomics.holdout import evaluate_on_test

        holdout = evaluate_on_test(trained["model"], cohort_dir / "test", out / "evaluation" / "metrics.json", seed=seed)
        return {"metrics": str(holdout.metrics_path), "report": str(holdout.report_path)}

    result.stage("evaluate on the independent test cohort (bootstrap 95 % CIs)", evaluate)
    masking: dict = {}

    def mask() -> dict:
        from radiogenomics.masking import MaskingOptions, library_from_gmt, prepare, run_masking
        from radiogenomics.registry import load_model

        model = load_model(trained["model"])
        run = run_masking(model, prepare(model, cohorts["test"]), library_from_gmt(cohort_dir / "gene_sets.gmt"),
                          MaskingOptions(n_nulls=1000, seed=seed), address=address, progress=progress)
        (out / "masking").mkdir(parents=True, exist_ok=True)
        run.table.to_csv(out / "masking" / "results.csv", index=False)
        masking.update(_masking_vs_truth(run.table, truth))
        return {"results": str(out / "masking" / "results.csv"), "evaluations": run.evaluations,
                "recall_q<0.1": masking["recall"], "decoy_calls": masking["decoy_calls"]}

    result.stage("gene masking of the test cohort with the generator's gene sets (1,000 nulls per size)", mask)
    recovery = _planted_recovery(cohorts["train"], cohorts["test"], cohort_dir / "gene_sets.gmt", truth)
    image_truth = _image_truth(extracted["train"], cohort_dir / "truth_patients.csv")
    card = json.loads((trained["model"] / "model.json").read_text())
    result.report = {"planted_histology_sets": recovery, "image_features_vs_programs": image_truth,
                     "model": str(trained["model"]), "comparison_cv": card["cv_metrics"].get("comparison", []),
                     "test": _test_summary(card), "masking": masking, "pending": PENDING, "stages": result.stages}
    _write_report(out, result)
    return result


def _write_report(out: Path, result: DemoResult) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(result.report, indent=2, default=str))
    lines = ["# Radiogenomics demo report", "", "## Stages run", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {s['stage']} | {s['seconds']} |" for s in result.stages]
    lines += ["", "## Planted histology programs (gene-set score AUC, one-vs-rest)", "",
              "| output | gene set | mechanism | AUC train | AUC test |", "|---|---|---|---|---|"]
    lines += [f"| {r['output']} | {r['gene_set']} | {r['mechanism']} | {r['auc_train']} | {r['auc_test']} |"
              for r in result.report["planted_histology_sets"]]
    lines += ["", "## Image-derived features against the planted programs (training cohort, Spearman rho)", "",
              "| feature | group latent | rho | program | rho |", "|---|---|---|---|---|"]
    lines += [f"| {r['feature']} | {r['latent']} | {r['rho_latent']} | {r['program']} | {r['rho_program']} |"
              for r in result.report["image_features_vs_programs"]]
    lines += ["", "## The selected network against the baselines", "", f"Model artifact: `{result.report['model']}`; "
              "full reports: `registry/demo/1/training_report.md` and `evaluation/metrics.md`.", "",
              "### Cross-validation (same folds and targets)", ""]
    lines += [pd.DataFrame(result.report["comparison_cv"]).to_markdown(index=False, floatfmt=".3f"), "",
              "### Independent test cohort (AUC; CIs in evaluation/metrics.md)", "",
              pd.DataFrame(result.report["test"]).to_markdown(index=False, floatfmt=".3f")]
    masking = result.report.get("masking") or {}
    if masking:
        lines += ["", "## Gene masking against the planted truth (keep mode, test cohort, q < 0.1)", "",
                  f"Planted associations found: {masking['recall']}; decoy sets called: {masking['decoy_calls']} "
                  f"(of {masking['calls']} calls in all). Full table: `masking/results.csv`.", "",
                  pd.DataFrame(masking["planted"]).to_markdown(index=False) if masking["planted"] else "(no planted output scored)"]
    lines += ["", "## Stages not built yet", ""] + [f"- {name} (issue #{n})" for name, n in PENDING.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def summary_line(result: DemoResult) -> str:
    """One JSON line for stdout."""
    aucs = {f"{r['gene_set']}->{r['output']}": r["auc_test"] for r in result.report["planted_histology_sets"]}
    return json.dumps({"out": str(result.out), "report": str(result.out / "report.md"), "test_auc": aucs,
                       "seconds": round(float(np.sum([s["seconds"] for s in result.stages])), 1)})
