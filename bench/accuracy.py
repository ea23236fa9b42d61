"""Benchmark: is the network at least as accurate as the best baseline, on every cohort?

For each cohort, `radiogenomics train` runs with its defaults (Ray Tune search, baselines on the
same folds, the exported network or ensemble), then one evaluation on the held-out patients. Prints,
per cohort and target family (histology: mean of the one-vs-rest class AUCs; radiomic: mean over
features), the network's test AUC beside every baseline's and the best baseline's, the difference,
and whether it meets the goal (network >= best baseline - 0.01); for the synthetic cohorts also the
same comparison per planted group and rule (from the cohort's `truth.json`: linear, threshold, AND,
interaction, noise), which shows which rule a family's miss comes from, and beside both the
planted rules' own test AUC (`synth.generator.planted_scores`: each target ranked by its true rule
applied to the patients' true program activities, noise features at 0.5). That is the ceiling a
model of the expression can approach: a model above it on this test set was lucky, a model well
below it has room to grow. Each family's difference comes with a paired patient-level bootstrap
95 % interval (`evaluation.family_differences`: both models on the same 1,000 resamples of the
test patients), which says how far the test set alone can move it. Cohorts:

  paper      the paper-sized default synthetic cohort (`synth`, seed 42: 262 + 89 patients,
             21,766 genes, 101 features; mostly linear planted programs)
  nonlinear  `synth --design nonlinear` (other programs; thresholds, ANDs of two programs, an
             interaction), same sizes
  leukemia   the real GSEA ALL/AML microarray (48 patients), a seeded stratified 2:1 split
             (32 train / 16 test; its 16-patient test AUC is coarse: one patient moves it ~0.015)

    python bench/accuracy.py                          # all three, defaults (about 20 minutes here)
    python bench/accuracy.py --cohorts leukemia       # one cohort
    python bench/accuracy.py --trials 4 --folds 3     # a smaller budget for every cohort
    python bench/accuracy.py --cohorts nonlinear --cohort-seeds 42,1,2   # three draws of one design

One test set of 89 patients moves a family's difference by a few hundredths (the paired interval
shows how far). `--cohort-seeds` draws the synthetic cohorts again with other generator seeds (for
leukemia: other splits) and trains on each, so a miss can be told apart from a systematic loss: the
summary gives, per cohort and family, the mean difference over the draws with a t interval.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOAL_MARGIN = 0.01
#: the generator seed (leukemia: split seed) of the figures in the README
DEFAULT_SEED = 42


def _family_means(metrics: dict) -> dict[str, float]:
    hist = [v["auc"] for k, v in metrics.items() if k.startswith("histology:") and v.get("auc") is not None]
    rad = [v["auc"] for k, v in metrics.items() if not k.startswith("histology:") and v.get("auc") is not None]
    out = {}
    if hist:
        out["histology"] = float(np.mean(hist))
    if rad:
        out["radiomic"] = float(np.mean(rad))
    return out


def planted_groups(truth: dict) -> dict[str, str]:
    """Each target of a synthetic cohort and its planted rule, e.g. `heterogeneity (interaction)`,
    from the outputs every planted effect drives; the reference class ADC has no effect and
    pure-noise features are `noise`."""
    out = {f"histology:{c}": f"histology:{c} (reference)" for c in truth["histology"]["classes"]}
    out.update({output: f"{e['output']} ({e['mechanism']})" for e in truth["effects"] for output in e["outputs"]})
    out.update({feature: "noise (none)" for feature in truth.get("noise_features", [])})
    return out


def _mean_auc(metrics: dict, targets: list[str]) -> float | None:
    """Mean test AUC over `targets` that have one (None if none has)."""
    aucs = [metrics[t]["auc"] for t in targets if metrics.get(t, {}).get("auc") is not None]
    return float(np.mean(aucs)) if aucs else None


def by_planted_group(truth: dict, network: dict, baselines: dict, ceiling: dict[str, dict]) -> list[dict]:
    """Test AUC per planted group: the network's mean beside the best baseline's and the difference,
    so a miss on a family can be traced to the rule behind it."""
    groups = planted_groups(truth)
    rows = []
    for group in sorted(set(groups.values())):
        targets = [t for t, g in groups.items() if g == group]
        net = _mean_auc(network, targets)
        base = {m: a for m, v in baselines.items() if (a := _mean_auc(v, targets)) is not None}
        if net is None or not base:
            continue
        best = max(base, key=base.get)
        rows.append({"group": group, "targets": len(targets), "network": net, "best_baseline": best,
                     "baseline": base[best], "diff": net - base[best],
                     "ceiling": _mean_auc(ceiling, targets)})
    return rows


def planted_ceiling(cohort_root: Path, holdout) -> dict[str, dict]:
    """Test AUC per target of the planted rules on the true activities (noise features: 0.5), on
    the very labels and patients the evaluation scored (`holdout`: the model's own cut points), in
    the form of `metrics.json` (`{"auc": None}` where the test labels have one class)."""
    import pandas as pd

    from radiogenomics.synth.generator import PATIENT_TRUTH_FILE, planted_scores
    from radiogenomics.training.targets import safe_auc

    truth = json.loads((cohort_root / "truth.json").read_text())
    onehot = holdout.labels.onehot(holdout.spec)
    patients = pd.read_csv(cohort_root / PATIENT_TRUTH_FILE, index_col=0).loc[list(holdout.sample_ids)]
    scores = planted_scores(truth, patients)
    aucs = {name: float(safe_auc(onehot[:, j], scores[name])) if name in scores else 0.5
            for j, name in enumerate(holdout.spec.names)}
    return {name: {"auc": None if np.isnan(auc) else auc} for name, auc in aucs.items()}


def _seeds(text: str) -> list[int]:
    """`--cohort-seeds`: distinct whole numbers >= 0, comma-separated."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cohort-seeds takes comma-separated whole numbers, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--cohort-seeds takes distinct whole numbers >= 0, got {text!r}")
    return seeds


def over_draws(rows: list[dict]) -> list[dict]:
    """Per (cohort, family): the mean over the cohort's draws of the network's AUC, the best baseline's
    (each draw's own best) and their difference, with a t interval of the mean difference (scipy)."""
    from scipy import stats

    out = []
    for cohort, family in dict.fromkeys((r["cohort"], r["family"]) for r in rows):
        draws = [r for r in rows if r["cohort"] == cohort and r["family"] == family]
        diffs = np.array([r["diff"] for r in draws])
        if len(diffs) > 1 and diffs.std(ddof=1) > 0:
            low, high = stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=stats.sem(diffs))
        else:
            low = high = float(diffs.mean())
        out.append({"cohort": cohort, "family": family, "draws": len(draws),
                    "network": float(np.mean([r["network"] for r in draws])),
                    "baseline": float(np.mean([r["baseline"] for r in draws])), "diff": float(diffs.mean()),
                    "ci": (float(low), float(high)), "met": sum(r["met"] for r in draws)})
    return out


def print_over_draws(rows: list[dict]) -> None:
    print("\nOver the cohorts' draws (mean; the best baseline is each draw's own)\n")
    print("| cohort | family | draws | network | best baseline | network - best | 95 % t interval | goal met in |")
    print("|---|---|---|---|---|---|---|---|")
    for r in over_draws(rows):
        print(f"| {r['cohort']} | {r['family']} | {r['draws']} | {r['network']:.3f} | {r['baseline']:.3f} | "
              f"{r['diff']:+.3f} | {r['ci'][0]:+.3f} to {r['ci'][1]:+.3f} | {r['met']} of {r['draws']} |")


def _prepare(name: str, root: Path, shared: Path, seed: int = DEFAULT_SEED) -> tuple[Path, Path]:
    from radiogenomics.cli import default_hallmark_gmt
    from radiogenomics.synth import SynthConfig, generate

    if name in ("paper", "nonlinear"):
        generate(SynthConfig(out=root, hallmark_gmt=default_hallmark_gmt(), seed=seed,
                             design="nsclc" if name == "paper" else "nonlinear"), progress=False)
        return root / "train", root / "test"
    from sklearn.model_selection import train_test_split

    from radiogenomics.examples import read_gsea_leukemia, write_leukemia_cohort

    folder = shared / "expression" / "gseapy_leukemia"
    _, labels = read_gsea_leukemia(folder)
    train_rows, test_rows = train_test_split(np.arange(len(labels)), test_size=1 / 3, stratify=labels, random_state=seed)
    return (write_leukemia_cohort(folder, root / "train", sorted(train_rows)),
            write_leukemia_cohort(folder, root / "test", sorted(test_rows)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohorts", default="paper,nonlinear,leukemia")
    parser.add_argument("--trials", type=int, help="Tune trials (default: train's default)")
    parser.add_argument("--folds", type=int, help="CV folds (default: train's default; leukemia at most 4)")
    parser.add_argument("--cohort-seeds", default=str(DEFAULT_SEED), type=_seeds,
                        help="comma-separated generator seeds of the synthetic cohorts (leukemia: split seeds)")
    parser.add_argument("--work", type=Path, help="keep cohorts and models here (default: a temporary folder)")
    args = parser.parse_args()

    import ray

    from radiogenomics.evaluation import family_differences
    from radiogenomics.holdout import evaluate_on_test
    from radiogenomics.raycluster import keep_local_ray_on_loopback
    from tune.train import TrainOptions, train

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    keep_local_ray_on_loopback()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    rows = []
    groups: dict[str, list[dict]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = args.work or Path(tmp)
            for name, seed in [(n, s) for n in args.cohorts.split(",") for s in args.cohort_seeds]:
                run = work / (name if seed == DEFAULT_SEED else f"{name}-seed{seed}")
                train_dir, test_dir = _prepare(name, run / "cohort", shared, seed)
                budget = {k: v for k, v in (("trials", args.trials), ("folds", args.folds)) if v}
                if name == "leukemia":
                    budget["folds"] = min(budget.get("folds", 4), 4)  # 32 patients
                start = time.perf_counter()
                folder = train(TrainOptions(cohort=train_dir, registry=run / "registry", name=name,
                                            progress=False, **budget))
                seconds = time.perf_counter() - start
                holdout = evaluate_on_test(folder, test_dir, run / "evaluation" / "metrics.json")
                network = json.loads((run / "evaluation" / "metrics.json").read_text())
                baselines = json.loads((run / "evaluation" / "metrics_baselines.json").read_text())
                truth_file = run / "cohort" / "truth.json"
                ceiling: dict[str, dict] = {}
                if truth_file.exists():
                    ceiling = planted_ceiling(run / "cohort", holdout)
                    groups[(name, seed)] = by_planted_group(json.loads(truth_file.read_text()), network, baselines, ceiling)
                card = json.loads((folder / "model.json").read_text())
                net = _family_means(network)
                rule = _family_means(ceiling)
                base = {m: _family_means(v) for m, v in baselines.items()}
                for family, value in net.items():
                    best_model = max(base, key=lambda m: base[m].get(family, -1.0))
                    best = base[best_model][family]
                    paired = family_differences(holdout.spec, holdout.labels, holdout.predictions["network"],
                                                holdout.predictions[best_model])[family]
                    assert abs(paired["diff"] - (value - best)) < 1e-9, "the interval is about another difference"
                    rows.append({"cohort": name, "seed": seed, "family": family, "network": value, "best_baseline": best_model,
                                 "baseline": best, "diff": value - best, "met": value >= best - GOAL_MARGIN,
                                 "others": {m: round(b[family], 3) for m, b in base.items() if family in b},
                                 "train_s": seconds, "members": len(card["cv_metrics"].get("members", [])) or 1,
                                 "cv": card["cv_metrics"]["cv_auc"], "ceiling": rule.get(family),
                                 "ci": (paired["ci_low"], paired["ci_high"])})
                print(f"[{name}, seed {seed}] trained in {seconds:.0f} s; CV score {card['cv_metrics']['cv_auc']:.3f}; "
                      f"{rows[-1]['members']} member(s); best params {json.dumps(card['cv_metrics']['best_params'])}",
                      flush=True)
    finally:
        ray.shutdown()
    print()
    print("| cohort (seed) | family | network (test AUC) | best baseline | its AUC | network - best | its 95 % CI "
          "| goal (>= -0.01) | planted rule (ceiling) | all baselines |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rule = "-" if r["ceiling"] is None else f"{r['ceiling']:.3f}"
        print(f"| {r['cohort']} ({r['seed']}) | {r['family']} | {r['network']:.3f} | {r['best_baseline']} | {r['baseline']:.3f} | "
              f"{r['diff']:+.3f} | {r['ci'][0]:+.3f} to {r['ci'][1]:+.3f} | {'met' if r['met'] else 'MISSED'} | {rule} "
              f"| {r['others']} |")
    for (name, seed), group_rows in groups.items():
        print(f"\n[{name}, seed {seed}] test AUC by planted rule (mean over the group's targets)\n")
        print("| group (rule) | targets | network | best baseline | its AUC | network - best | planted rule (ceiling) |")
        print("|---|---|---|---|---|---|---|")
        for r in group_rows:
            print(f"| {r['group']} | {r['targets']} | {r['network']:.3f} | {r['best_baseline']} | {r['baseline']:.3f} | "
                  f"{r['diff']:+.3f} | {'-' if r['ceiling'] is None else format(r['ceiling'], '.3f')} |")
    print(f"\ngoal met on {sum(r['met'] for r in rows)} of {len(rows)} (cohort, family) pairs")
    if len(args.cohort_seeds) > 1:
        print_over_draws(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
