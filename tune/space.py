"""The search space over network configurations, and its translation into `NetConfig`.

What the network sees (`radiogenomics/training/inputs.py`): genes screened per target
(`screen_genes` per target, 0 = none) and/or the first principal components of the training
expression (`components`), or, with both 0, every gene through a dense first layer (the original
design, kept so the search can show it loses). Then depth 0 (a linear model on the standardised
stage outputs) to 2 hidden blocks with a funnel of widths, an explicit L2 penalty on the weights
(up to 1: on ~200 patients histology needs a strong pull, METHOD_NOTES 7), dropout, Adam or AdamW,
learning rate and batch size.

Narrowed from the first space after measuring (paper-sized default cohort, 3-fold CV, one
staged depth-1 configuration of width 64 varied one choice at a time; histology / radiomic mean
CV AUC): ReLU + Adam 0.721 / 0.756, sigmoid 0.758 / 0.594, SGD (lr 3e-3) 0.746 / 0.524, SGD (lr
3e-2) 0.743 / 0.665: sigmoid and SGD are dropped. Depth-0 models with per-output screens reached
0.830 / 0.790 (random forest 0.831 / 0.802, the best baseline, on the same folds); hidden layers of
32-128 units shared by 101 targets stayed at 0.66-0.76 on the radiomic family, so depth stops at
2 and width at 128. The old weight-decay range (decoupled, so its pull shrinks with the learning
rate) was far too weak; the explicit `l2` penalty covers 1e-4-1.
`STARTING_POINTS` are evaluated first (Optuna's TPE samples at random until it has ten trials):
the two best configurations of that calibration (on the paper-sized cohort only), so a small budget
starts from them rather than from a random draw, without principal components: they added little
there (histology / radiomic 0.830 / 0.790 with 20 components against 0.824 / 0.789 without; 0.808 /
0.792 against 0.798 / 0.793 for the second point) but they make every gene carry some of the
broad programs, so gene masking's random size-matched sets predict nearly as well as the planted
sets (demo: 30 of 125 planted associations found with 10 components). The search still tries them.

`modules` (each output's 25 or 50 best genes pooled and clustered into co-expressed programs, one
eigengene each) with `interaction_l1` (the L1 pull on the read-out of the eigengenes and their
products) give the depth-0 model the interactions and thresholds of programs that the forests fit
and that hidden layers shared by 101 targets never learned here. Measured (3-fold CV on the
training cohort, then the refit on the test cohort; histology / radiomic mean), the first starting
point against the second, which is the same without modules: paper-sized cohort CV 0.842 / 0.807
against 0.832 / 0.794, test 0.852 / 0.836 against 0.840 / 0.806; nonlinear cohort CV 0.772 / 0.799
against 0.760 / 0.786, test 0.844 / 0.825 against 0.846 / 0.772.

`to_config` gives every modules network the eigengenes' hinges at `INTERACTION_KNOTS` beside the
products (not searched). 3-fold CV of the first starting point, two fold seeds, with hinges against
products alone (histology / radiomic): nonlinear 0.780 / 0.802 against 0.772 / 0.800 and 0.788 /
0.807 against 0.786 / 0.804; paper-sized 0.842 / 0.811 against 0.842 / 0.809 and 0.827 / 0.810
against 0.826 / 0.808. Five knots (-1 to 1) scored the same as three (0.782 / 0.802); the min of
two eigengenes (an AND at a common threshold) 0.782 / 0.799 on the nonlinear cohort but lower on
the paper-sized one (0.839 / 0.808), so it is not in the basis.

`histology_c` (modules networks only) averages histology's gradient-trained logits with a read-out
of the same eigengene basis fitted to convergence (`radiogenomics/training/readout.py`, which has
the one-network measurements). The first starting point uses 0.07. `bench/accuracy.py
--cohort-seeds 42,1,2` (5 seeds, test histology, network minus the best baseline): nonlinear
-0.012 / -0.002 / -0.026 against -0.018 / -0.009 / -0.057 without it; paper-sized +0.022 / +0.021 /
+0.004 against +0.023 / +0.022 / -0.008; radiomic unchanged.

`histology_pool` (modules networks only) adds each histology class's best genes to the pool that
the modules are found in (`inputs.py`): at nonlinear seed 2 the MYC program, which drives "Other"
only with KRAS, has 1 gene among that class's 50 best and forms no module. The first starting point
uses 150. One network (5-fold CV, then the refit on the held-out patients; histology mean AUC,
without -> with 150), two fold seeds (425 / 7) on four draws, nonlinear 42 / 1 / 2 and paper-sized 42:
CV 0.795 -> 0.803, 0.799 -> 0.805, 0.793 -> 0.785, 0.840 -> 0.841 / 0.766 -> 0.777, 0.796 -> 0.799,
0.786 -> 0.793, 0.834 -> 0.840 (7 of 8 up, mean +0.004); test 0.838 -> 0.844, 0.829 -> 0.837,
0.716 -> 0.732, 0.850 -> 0.851 / 0.834 -> 0.840, 0.824 -> 0.830, 0.710 -> 0.724, 0.849 -> 0.846
(mean +0.007); radiomic within 0.003. A pool of 100 scored the same in CV (0.810 / 0.799 / 0.783 /
0.840 at fold seed 425, mean 0.808 against 0.809) and a little lower on the held-out patients (mean
0.813 against 0.816), so the search keeps it as a choice; clustering histology's pool apart from
the others' was no better (0.793 / 0.805 / 0.787 / 0.839), nor a looser co-expression cut of 0.7
(0.802 / 0.792 / 0.787 / 0.843); choosing the read-out's `C` by an inner 5-fold CV moved nothing
(0.796 / 0.796 / 0.796 / 0.841; it chose 0.07 most often).
"""

from __future__ import annotations

from typing import Any

from ray import tune as ray_tune

from radiogenomics.training.network import INTERACTION_KNOTS, NetConfig

#: Evaluated before Optuna samples (a small budget starts from configurations known to do well).
STARTING_POINTS: list[dict[str, Any]] = [
    {"depth": 0, "width": 64, "activation": "relu", "dropout": 0.3, "input_dropout": 0.0, "optimizer": "adam",
     "lr": 3e-3, "weight_decay": 1e-5, "l2": 0.03, "batch_size": 32, "screen_genes": 25, "components": 0,
     "target_screen": True, "modules": 50, "interaction_l1": 3e-4, "histology_c": 0.07,
     "histology_pool": 150},
    {"depth": 0, "width": 64, "activation": "relu", "dropout": 0.3, "input_dropout": 0.0, "optimizer": "adam",
     "lr": 3e-3, "weight_decay": 1e-5, "l2": 0.03, "batch_size": 32, "screen_genes": 25, "components": 0,
     "target_screen": True, "modules": 0, "interaction_l1": 3e-4, "histology_c": 0.0,
     "histology_pool": 0},
    {"depth": 0, "width": 64, "activation": "relu", "dropout": 0.3, "input_dropout": 0.0, "optimizer": "adam",
     "lr": 3e-3, "weight_decay": 1e-5, "l2": 0.1, "batch_size": 32, "screen_genes": 50, "components": 0,
     "target_screen": True, "modules": 0, "interaction_l1": 3e-4, "histology_c": 0.0,
     "histology_pool": 0},
]


def search_space(max_epochs: int = 80) -> dict[str, Any]:
    return {
        "depth": ray_tune.choice([0, 1, 2]),
        "width": ray_tune.choice([16, 32, 64, 128]),
        "activation": ray_tune.choice(["relu", "tanh", "elu"]),
        "dropout": ray_tune.uniform(0.0, 0.6),
        "input_dropout": ray_tune.uniform(0.0, 0.4),
        "optimizer": ray_tune.choice(["adam", "adamw"]),
        "lr": ray_tune.loguniform(3e-4, 1e-2),
        "weight_decay": ray_tune.loguniform(1e-6, 1e-2),
        "l2": ray_tune.loguniform(1e-4, 1.0),
        "batch_size": ray_tune.choice([16, 32, 64]),
        "screen_genes": ray_tune.choice([0, 10, 25, 50, 100]),
        "components": ray_tune.choice([0, 10, 20, 40]),
        "target_screen": ray_tune.choice([True, False]),  # depth 0 with a screen: each output its own genes
        "modules": ray_tune.choice([0, 25, 50]),  # module eigengenes, their products and hinges (depth 0, target_screen)
        "interaction_l1": ray_tune.loguniform(1e-4, 3e-3),
        "histology_c": ray_tune.choice([0.0, 0.03, 0.07, 0.15]),  # histology's read-out fitted to convergence
        "histology_pool": ray_tune.choice([0, 100, 150]),  # histology's classes' best genes in the module pool
        "max_epochs": max_epochs,
    }


def to_config(params: dict[str, Any], design: str = "shared") -> NetConfig:
    """A Tune/Optuna sample as a validated NetConfig (depth 0 without a stage becomes depth 1)."""
    screen, components = int(params.get("screen_genes", 0)), int(params.get("components", 0))
    depth = int(params["depth"])
    if depth == 0 and screen == 0 and components == 0:
        depth = 1
    target_screen = bool(params.get("target_screen", False)) and depth == 0 and screen > 0
    widths = tuple(max(8, int(params["width"]) // (2 ** k)) for k in range(depth))
    modules = int(params.get("modules", 0)) if target_screen and design == "shared" else 0
    return NetConfig(
        widths=widths, activation=params["activation"], dropout=float(params["dropout"]),
        input_dropout=float(params["input_dropout"]), optimizer=params["optimizer"], lr=float(params["lr"]),
        weight_decay=float(params["weight_decay"]), batch_size=int(params["batch_size"]),
        max_epochs=int(params.get("max_epochs", 80)), design=design,  # type: ignore[arg-type]
        l2=float(params.get("l2", 0.0)), screen_genes=screen, components=components,
        target_screen=target_screen, modules=modules,
        interaction_l1=float(params.get("interaction_l1", 3e-4)),
        interaction_knots=INTERACTION_KNOTS if modules else (),
        histology_c=float(params.get("histology_c", 0.0)) if modules else 0.0,
        histology_pool=int(params.get("histology_pool", 0)) if modules else 0,
    )
