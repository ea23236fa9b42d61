"""Benchmark: wall time of the Ray Tune search with ASHA early stopping vs the same trials without it.

Both searches run in this process on one local Ray, on the same synthetic cohort, folds, seed and
number of trials (Optuna proposes the same first configurations for the same seed); the only
difference is the scheduler: ASHA (stops poor configurations after a fold or two) or FIFO (every
trial runs every fold). Prints both wall times, the saving as a ratio, and each search's best CV
score (the saving should not cost the selection much).

    python bench/training.py                         # the default search on the paper-sized cohort
    python bench/training.py --train 120 --genes 5000 --trials 8   # a quicker look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=262)
    parser.add_argument("--genes", type=int, default=21766)
    parser.add_argument("--features", type=int, default=101)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=80)
    args = parser.parse_args()

    import ray

    from radiogenomics.cli import default_hallmark_gmt
    from radiogenomics.raycluster import keep_local_ray_on_loopback
    from radiogenomics.synth import SynthConfig, generate
    from tune.train import TrainOptions, train

    keep_local_ray_on_loopback()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    rows = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cohort = Path(tmp) / "cohort"
            generate(SynthConfig(out=cohort, hallmark_gmt=default_hallmark_gmt(), n_train=args.train, n_test=20,
                                 n_genes=args.genes, n_features=args.features), progress=False)
            for scheduler in ("asha", "fifo"):
                options = TrainOptions(cohort=cohort / "train", registry=Path(tmp) / "registry", name=scheduler,
                                       trials=args.trials, folds=args.folds, max_epochs=args.max_epochs,
                                       scheduler=scheduler, baselines=False, compare_targets=0, progress=False,
                                       seeds=1)  # the search alone: the seeds come after it
                start = time.perf_counter()
                folder = train(options)
                seconds = time.perf_counter() - start
                card = json.loads((folder / "model.json").read_text())
                rows[scheduler] = (seconds, card["cv_metrics"]["cv_auc"], card["cv_metrics"]["trials_complete"])
    finally:
        ray.shutdown()
    print(f"search: {args.trials} trials x {args.folds} folds, cohort {args.train} x {args.genes} genes, {args.features} features")
    for scheduler, (seconds, auc, complete) in rows.items():
        print(f"  {scheduler:5s} {seconds:8.1f} s   best CV score {auc:.3f}   trials finishing every fold {complete}")
    print(f"  ASHA saves {1 - rows['asha'][0] / rows['fifo'][0]:.0%} of the wall time (FIFO / ASHA = {rows['fifo'][0] / rows['asha'][0]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
