"""Benchmark: a loaded model's forward pass with its screened first layers compacted vs dense.

`load_model` turns every first layer on the genes whose weights are non-zero in at most half of
the columns into a `GeneColumnsLinear`, which multiplies only those columns. Baseline measured in
the same run on the same loaded weights: the plain dense `nn.Linear`. One thread, batches of 1 and
64 z-scored profiles, best of 5 repeats of 200 passes; prints milliseconds and the ratio, and the
largest difference between the two outputs.

    python bench/forward.py registry/nsclc/1 [more model folders]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from radiogenomics.registry import load_model
from radiogenomics.training.network import EnsembleNet, GeneColumnsLinear, predict

BATCHES, PASSES, REPEATS = (1, 64), 200, 5


def per_pass_ms(net: torch.nn.Module, x: torch.Tensor) -> float:
    best = float("inf")
    with torch.no_grad():
        net(x)
        for _ in range(REPEATS):
            start = time.perf_counter()
            for _ in range(PASSES):
                net(x)
            best = min(best, (time.perf_counter() - start) / PASSES)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="model artifact folders (<registry>/<name>/<version>)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| model | networks | compacted (gene columns used) | batch | dense ms | compact ms | dense / compact | max diff |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in args.models:
        model = load_model(folder)
        layers = [m for m in model.net.modules() if isinstance(m, GeneColumnsLinear)]
        n_nets = len(model.net.members) if isinstance(model.net, EnsembleNet) else 1
        z = torch.from_numpy(np.random.default_rng(0).normal(size=(max(BATCHES), len(model.genes))).astype(np.float32))
        compact = {b: per_pass_ms(model.net, z[:b]) for b in BATCHES}
        compact_out = predict(model.net, z.numpy()).matrix()
        for layer in layers:
            layer.__class__ = torch.nn.Linear  # the same weights, the dense pass
        dense = {b: per_pass_ms(model.net, z[:b]) for b in BATCHES}
        diff = float(np.abs(predict(model.net, z.numpy()).matrix() - compact_out).max())
        used = sorted({len(layer._columns) for layer in layers})
        for b in BATCHES:
            print(f"| {folder} | {n_nets} | {len(layers)} ({', '.join(map(str, used)) or '-'} of {len(model.genes)}) | {b} | "
                  f"{dense[b]:.2f} | {compact[b]:.2f} | {dense[b] / compact[b]:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
