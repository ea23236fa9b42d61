"""The search space over network configurations, and its translation into `NetConfig`.

Depth 1-5 with a funnel of widths (each block half the previous, at least 8), activation,
dropout (input and hidden), optimiser, learning rate, weight decay and batch size. Widths stop at
256: the first layer holds 21,766 x width weights and the training set has ~200 patients.
"""

from __future__ import annotations

from typing import Any

from ray import tune as ray_tune

from radiogenomics.training.network import NetConfig


def search_space(max_epochs: int = 80) -> dict[str, Any]:
    return {
        "depth": ray_tune.choice([1, 2, 3, 4, 5]),
        "width": ray_tune.choice([32, 64, 128, 256]),
        "activation": ray_tune.choice(["relu", "tanh", "elu", "sigmoid"]),
        "dropout": ray_tune.uniform(0.0, 0.6),
        "input_dropout": ray_tune.uniform(0.0, 0.5),
        "optimizer": ray_tune.choice(["adam", "adamw", "sgd"]),
        "lr": ray_tune.loguniform(1e-4, 3e-2),
        "weight_decay": ray_tune.loguniform(1e-6, 1e-2),
        "batch_size": ray_tune.choice([16, 32, 64]),
        "max_epochs": max_epochs,
    }


def to_config(params: dict[str, Any], design: str = "shared") -> NetConfig:
    """A Tune/Optuna sample as a validated NetConfig."""
    widths = tuple(max(8, int(params["width"]) // (2 ** k)) for k in range(int(params["depth"])))
    return NetConfig(
        widths=widths, activation=params["activation"], dropout=float(params["dropout"]),
        input_dropout=float(params["input_dropout"]), optimizer=params["optimizer"], lr=float(params["lr"]),
        weight_decay=float(params["weight_decay"]), batch_size=int(params["batch_size"]),
        max_epochs=int(params.get("max_epochs", 80)), design=design,  # type: ignore[arg-type]
    )
