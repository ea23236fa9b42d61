"""The main job: an end-to-end run on a synthetic cohort with planted biology.

Each stage is a capability of the backend; the demo runs every stage that has landed (and lists
any still to come), then writes `report.md` and `report.json` into the output directory.
The default cohort is small enough for a laptop; `--full` uses the paper's sizes. Ray work runs on
a local Ray bound to 127.0.0.1 unless an address is given.

After training and evaluation the demo serves the trained model as the radiogenomics Serve app
on that same Ray and calls every gRPC service as a client would (one upload extraction, the
test cohort's predictions, a gene-masking job in each mode), checking each answer against the in-process
result. The core package never imports Serve or gRPC: `services.run` and `services.client` are
reached by name, as `tune.train` is.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from radiogenomics.cohort import Cohort, load_cohort
from radiogenomics.gene_sets import read_gmt
from radiogenomics.plots import masking_heatmap, roc_panels
from radiogenomics.synth import SynthConfig, generate
from radiogenomics.synth.generator import gene_set_scores
from radiogenomics.training.targets import HISTOLOGY_PREFIX, safe_auc

#: Stages still to land, with the issue that tracks each (none: every stage of the main job has landed).
PENDING: dict[str, int] = {}
#: The columns of a batch-extraction CSV that are not features.
_NOT_FEATURES = ("sample_id", "image", "mask")


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
                                 "auc": round(float(r["auc"]), 3), "null_auc": round(float(r["null_mean"]), 3),
                                 "q_value": round(float(r["q_value"]), 4),
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


def _effect_outputs(effect: dict) -> list[str]:
    """The model outputs one planted effect drives (older truth files name one `output`)."""
    return list(effect.get("outputs") or [effect["output"]])


def _planted_pairs(truth: dict) -> set[tuple[str, str]]:
    """Every planted (gene set, output) association of the generator's truth."""
    return {(program, output) for effect in truth["effects"] for output in _effect_outputs(effect)
            for program in effect["programs"]}


def _output_order(truth: dict, outputs: list[str]) -> list[str]:
    """Histology outputs first (model order), then the features grouped by the planted effect driving them.

    Grouping puts each planted program's outputs side by side, so the heatmap shows them as blocks.
    """
    planted = {o: i for i, o in enumerate(dict.fromkeys(o for e in truth["effects"] for o in _effect_outputs(e)))}
    position = {o: i for i, o in enumerate(outputs)}

    def key(output: str) -> tuple[int, int, int]:
        if output.startswith(HISTOLOGY_PREFIX):
            return 0, 0, position[output]
        return 1, planted.get(output, len(planted)), position[output]

    return sorted(outputs, key=key)


def _served_extraction(client: Any, manifest: Path, batch_csv: Path) -> dict:
    """RadiomicsService.ExtractUpload of the manifest's first case, against that case's batch-extracted row.

    Both paths run pyradiomics with its defaults on the same files, so every feature should agree
    to rounding; a difference would mean the service extracts differently from `radiogenomics extract`.
    """
    from radiogenomics.extraction.batch import read_cases

    case = read_cases(manifest)[0]
    answer = client.extract_upload(case.image, case.mask, label=int(case.label) if case.label else 0)
    batch = pd.read_csv(batch_csv, dtype={"sample_id": str}, float_precision="round_trip").set_index("sample_id")
    names = [c for c in batch.columns if c not in _NOT_FEATURES and not c.startswith("provenance_")]
    served = pd.Series(dict(answer.features), dtype=float)
    shared = [n for n in names if n in served.index]
    expected = batch.loc[case.sample_id, shared].astype(float)
    diff = (served[shared] - expected).abs()
    relative = diff / expected.abs().where(expected != 0, 1.0)
    return {"case": case.sample_id, "features": len(served), "batch_features": len(names),
            "feature_names_match": set(served.index) == set(names), "max_abs_diff": float(diff.max()),
            "max_rel_diff": float(relative.max()), "server_seconds": round(answer.timing.seconds, 2)}


def _roc_curves(truth: dict, names: list[str], y: np.ndarray, scores: np.ndarray) -> dict[str, dict]:
    """Curves for the ROC figure: each histology class, and one radiomic feature per planted image effect."""
    column = {name: j for j, name in enumerate(names)}
    histology = {n.removeprefix(HISTOLOGY_PREFIX) + " vs rest": (y[:, j], scores[:, j])
                 for n, j in column.items() if n.startswith(HISTOLOGY_PREFIX)}
    features = {}
    for effect in truth["effects"]:
        chosen = next((o for o in _effect_outputs(effect) if o in column and not o.startswith(HISTOLOGY_PREFIX)), None)
        if chosen:
            j = column[chosen]
            features[f"{chosen.removeprefix('original_')} ({effect['output']})"] = (y[:, j], scores[:, j])
    panels = {"histology, one-vs-rest": histology}
    if features:
        panels["radiomic targets, one per planted image program (high vs low)"] = features
    return panels


def _served_predictions(client: Any, model_dir: Path, cohort: Cohort, evaluation: dict, truth: dict,
                        plot: Path) -> dict:
    """PredictionService on the whole test cohort, against the same model loaded in process; draws the ROC figure.

    The served probabilities must equal the in-process ones (same weights, float32 on the wire),
    and their AUCs the ones the evaluation stage recorded.
    """
    from radiogenomics.registry import load_model

    model = load_model(model_dir)
    names = model.spec.names
    expression = pd.DataFrame(cohort.expression, index=list(cohort.sample_ids), columns=list(cohort.genes))
    served = client.predict(expression).loc[list(cohort.sample_ids), names].to_numpy(dtype=np.float64)
    local = model.predict(model.align(cohort)).matrix()
    y = model.spec.encode(cohort).onehot(model.spec)
    aucs = {name: safe_auc(y[:, j], served[:, j]) for j, name in enumerate(names)}
    recorded = [abs(aucs[n] - evaluation[n]["auc"]) for n in names if evaluation.get(n, {}).get("auc") is not None]
    radiomic = [a for n, a in aucs.items() if not n.startswith(HISTOLOGY_PREFIX) and not np.isnan(a)]
    roc_panels(_roc_curves(truth, names, y, served), plot,
               f"Test cohort ({cohort.n_samples} patients): ROC of the served predictions (PredictionService)")
    info = client.model_info()
    return {"patients": cohort.n_samples, "outputs": len(names), "max_abs_diff": float(np.abs(served - local).max()),
            "best_family": dict(info.best_family), "ensemble_members": int(info.ensemble_members),
            "auc_histology": {n: round(a, 3) for n, a in aucs.items() if n.startswith(HISTOLOGY_PREFIX)},
            "auc_radiomic_mean": round(float(np.mean(radiomic)), 3) if radiomic else None,
            "max_auc_diff_vs_evaluation": float(max(recorded)) if recorded else None, "plot": str(plot)}


def _served_masking(client: Any, gmt: Path, seed: int, progress: bool, mode: str = "keep") -> tuple[dict, pd.DataFrame]:
    """MaskingService: submit the test cohort (a path under the server's data root) with the generator's GMT.

    Follows the job's progress stream to its end and fetches every result row; a job that does
    not succeed stops the demo with the server's reason.
    """
    from tqdm import tqdm

    job_state = importlib.import_module("services.pb.radiogenomics.v1.masking_pb2").JobState
    job = client.submit_masking(cohort_path="test", gmt_text=gmt.read_text(), mode=mode, null_sets=1000, seed=seed,
                                label=f"demo-{mode}")
    with tqdm(desc=f"mask {mode} (MaskingService)", unit="chunk", disable=not progress, file=sys.stderr) as bar:
        def show(status: Any) -> None:
            bar.total = status.chunks_total
            bar.update(status.chunks_done - bar.n)

        final = client.wait(job, on_status=show)
    state = job_state.Name(final.state) if final is not None else "UNKNOWN"
    if state != "SUCCEEDED":
        raise RuntimeError(f"masking job {job} ended {state}: {getattr(final, 'error', '') or 'no reason given'}")
    table = client.results(job)
    return {"job_id": job, "mode": mode, "state": state, "gene_sets": final.gene_sets, "skipped": len(final.skipped),
            "chunks": final.chunks_total, "evaluations": final.evaluations, "result_rows": len(table)}, table


def run_demo(out: Path, hallmark_gmt: Path, full: bool = False, seed: int = 42, progress: bool = True,
             address: str | None = None) -> DemoResult:
    """Run every landed stage on a fresh synthetic cohort under `out`, on one Ray session."""
    from radiogenomics.raycluster import ray_session

    # The Serve stage runs on this Ray, so its ingress (HAProxy by default) is chosen before Ray starts.
    local_ingress = importlib.import_module("services.run").local_ingress
    with local_ingress(None, address), ray_session(address):
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
    services = _service_stages(result, out, cohort_dir, trained["model"], cohorts["test"], truth, masking, seed,
                               progress, address)
    recovery = _planted_recovery(cohorts["train"], cohorts["test"], cohort_dir / "gene_sets.gmt", truth)
    image_truth = _image_truth(extracted["train"], cohort_dir / "truth_patients.csv")
    card = json.loads((trained["model"] / "model.json").read_text())
    result.report = {"planted_histology_sets": recovery, "image_features_vs_programs": image_truth,
                     "model": str(trained["model"]), "comparison_cv": card["cv_metrics"].get("comparison", []),
                     "test": _test_summary(card), "services": services,
                     "masking": masking.get("keep", {}), "masking_drop": masking.get("drop", {}),
                     "plots": {name: str(path.relative_to(out)) for name, path in _plots(out).items()},
                     "pending": PENDING, "stages": result.stages}
    _write_report(out, result)
    return result


def _plots(out: Path) -> dict[str, Path]:
    """The figures the demo draws, by name."""
    return {"roc_test": out / "plots" / "roc_test.png", "masking_heatmap": out / "plots" / "masking_heatmap.png",
            "masking_heatmap_drop": out / "plots" / "masking_heatmap_drop.png"}


def _service_stages(result: DemoResult, out: Path, cohort_dir: Path, model_dir: Path, test: Cohort, truth: dict,
                    masking: dict, seed: int, progress: bool, address: str | None) -> dict:
    """Serve the trained model as the radiogenomics app on the running Ray and call every gRPC service.

    Each call is a stage of its own; `masking` receives, per mode ("keep", "drop"), the masking results against the planted
    truth. The app is stopped (also on failure) before this returns; returns each stage's figures.
    """
    served: dict[str, Any] = {}
    with ExitStack() as app:
        def start() -> dict:
            run = importlib.import_module("services.run")
            client_module = importlib.import_module("services.client")
            port = run.free_loopback_port()
            ready = app.enter_context(run.running_app(run.ServeOptions(
                model=model_dir, grpc_port=port, metrics_port=None, address=address, jobs_dir=out / "jobs",
                data_root=cohort_dir, gene_sets={})))
            served["client"] = app.enter_context(client_module.RadiogenomicsClient(f"127.0.0.1:{port}"))
            return {"grpc_port": port, "ingress": ready["ingress"], "model": ready["model"], "versions": ready["versions"]}

        def predict() -> dict:
            evaluation = json.loads((out / "evaluation" / "metrics.json").read_text())
            return _served_predictions(served["client"], model_dir, test, evaluation, truth, _plots(out)["roc_test"])

        def mask(mode: str) -> dict:
            summary, table = _served_masking(served["client"], cohort_dir / "gene_sets.gmt", seed, progress, mode)
            (out / "masking").mkdir(parents=True, exist_ok=True)
            suffix = "" if mode == "keep" else f"_{mode}"
            table.to_csv(out / "masking" / f"results{suffix}.csv", index=False)
            found = masking.setdefault(mode, {})
            found.update(_masking_vs_truth(table, truth))
            masking_heatmap(table, _plots(out)[f"masking_heatmap{suffix}"], _planted_pairs(truth),
                            _output_order(truth, list(dict.fromkeys(table["output"]))), mode=mode)
            return {**summary, "results": str(out / "masking" / f"results{suffix}.csv"), "recall_q<0.1": found["recall"],
                    "decoy_calls": found["decoy_calls"]}

        def stop() -> dict:
            app.close()
            return {}

        result.stage("start the Serve app (gateway, radiomics, masking) on the same Ray; gRPC health SERVING", start)
        served["extraction"] = result.stage(
            "RadiomicsService.ExtractUpload: one test case against its batch extraction",
            lambda: _served_extraction(served["client"], cohort_dir / "test" / "images" / "manifest.csv",
                                       out / "features_test.csv"))
        served["prediction"] = result.stage("PredictionService: the test cohort against the in-process model", predict)
        served["masking_job"] = result.stage("MaskingService: gene-masking job (keep each set alone) on the test cohort "
                                             "with the generator's gene sets (1,000 nulls per size)", lambda: mask("keep"))
        served["masking_drop_job"] = result.stage("MaskingService: the same job in drop mode (each set removed)",
                                                  lambda: mask("drop"))
        result.stage("stop the Serve app", stop)
    return {k: served[k] for k in ("extraction", "prediction", "masking_job", "masking_drop_job")}


#: Why the report shows both masking modes (the per-set table under it gives this run's figures).
MASKING_MODES_NOTE = (
    "Why both modes: an AUC does not change when a score is scaled, so in keep mode a random set that "
    "happens to hold one or two of the few genes a screened network reads ranks patients almost as well as "
    "the planted set: the random sets' AUCs (the null) run high and the planted set does not stand out. "
    "Removing a set (drop mode) is the sharper test for such a model: a random set rarely holds more than one "
    "of those genes, the planted set holds most of them.")


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
    lines += _services_section(result.report.get("services") or {}, result.report.get("plots") or {})
    for mode, key, csv, plot, question in (
            ("keep", "masking", "results.csv", "masking_heatmap", "how well each set alone still predicts each output"),
            ("drop", "masking_drop", "results_drop.csv", "masking_heatmap_drop", "how much removing each set hurts each output")):
        masking = result.report.get(key) or {}
        if not masking:
            continue
        lines += ["", f"## Gene masking against the planted truth (MaskingService job, {mode} mode, test, q < 0.1)", "",
                  f"{question.capitalize()}, against size-matched random sets. Planted associations found: "
                  f"{masking['recall']}; decoy sets called: {masking['decoy_calls']} (of {masking['calls']} calls in all). "
                  f"Full table: `masking/{csv}`.", "",
                  f"![Gene-masking heatmap, {mode} mode]({result.report['plots'][plot]})", "",
                  pd.DataFrame(masking["planted"]).to_markdown(index=False) if masking["planted"] else "(no planted output scored)"]
    lines += _masking_modes_table(result.report.get("masking") or {}, result.report.get("masking_drop") or {})
    if PENDING:
        lines += ["", "## Stages not built yet", ""] + [f"- {name} (issue #{n})" for name, n in PENDING.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _masking_modes_table(keep: dict, drop: dict) -> list[str]:
    """Per planted gene set: associations found in each mode, with the mean AUC and null AUC of each."""
    if not keep.get("planted") or not drop.get("planted"):
        return []
    rows = []
    for name, found in (("keep", keep), ("drop", drop)):
        table = pd.DataFrame(found["planted"])
        rows.append(table.assign(found=table["q_value"] < 0.1).groupby("gene_set").agg(
            **{f"found ({name})": ("found", "sum"), "outputs": ("found", "size"),
               f"mean AUC ({name})": ("auc", "mean"), f"mean null AUC ({name})": ("null_auc", "mean")}))
    both = rows[0].join(rows[1].drop(columns="outputs")).reset_index()
    return ["", "### Planted gene sets in both modes", "", MASKING_MODES_NOTE, "",
            both.to_markdown(index=False, floatfmt=".3f")]


def _services_section(services: dict, plots: dict) -> list[str]:
    """Report lines for the gRPC calls: each service's answer checked against the in-process result."""
    if not services:
        return []
    ext, pred, job = services["extraction"], services["prediction"], services["masking_job"]
    auc_diff = pred["max_auc_diff_vs_evaluation"]
    rows = [
        (f"RadiomicsService.ExtractUpload ({ext['case']})",
         f"{ext['features']} features against the batch-extracted row (names match: {ext['feature_names_match']})",
         f"max abs diff {ext['max_abs_diff']:.3g}, max relative diff {ext['max_rel_diff']:.3g}"),
        (f"PredictionService.PredictBatch ({pred['patients']} test patients, {pred['outputs']} outputs)",
         "served against in-process probabilities (same artifact)", f"max abs diff {pred['max_abs_diff']:.3g}"),
        ("(the same served predictions)", "AUCs against the evaluation stage's",
         "n/a" if auc_diff is None else f"max abs diff {auc_diff:.3g}"),
        *[(f"MaskingService job {j['job_id']} ({j.get('mode', 'keep')} mode)",
           f"{j['gene_sets']} gene sets, {j['chunks']} chunks, {j['evaluations']} evaluations",
           f"{j['state']}, {j['result_rows']} result rows (analysed below)")
          for j in (job, services.get("masking_drop_job")) if j],
    ]
    aucs = pd.DataFrame([{"output": k, "served AUC": v} for k, v in pred["auc_histology"].items()])
    intro = ("The trained model served as the radiogenomics Serve app on the demo's Ray; every call went through "
             "`services.client.RadiogenomicsClient` to the app's gRPC port on 127.0.0.1.")
    return ["", "## The services, called over gRPC as a client would", "", intro, "",
            "| service call | check | result |", "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in rows], "",
            "### Test AUCs of the served predictions", "", aucs.to_markdown(index=False, floatfmt=".3f"), "",
            f"Radiomic targets: mean served AUC {pred['auc_radiomic_mean']}.", "",
            f"![ROC curves of the served predictions]({plots['roc_test']})"]


def summary_line(result: DemoResult) -> str:
    """One JSON line for stdout."""
    aucs = {f"{r['gene_set']}->{r['output']}": r["auc_test"] for r in result.report["planted_histology_sets"]}
    recall = {mode: (result.report.get(key) or {}).get("recall") for mode, key in (("keep", "masking"), ("drop", "masking_drop"))}
    return json.dumps({"out": str(result.out), "report": str(result.out / "report.md"), "test_auc": aucs,
                       "masking_recall": recall,
                       "seconds": round(float(np.sum([s["seconds"] for s in result.stages])), 1)})
