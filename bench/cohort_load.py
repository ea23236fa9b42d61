"""Benchmark: loading a paper-sized expression matrix (351 x 21,766) with full validation.

Goal (issue #2): a 351 x 21,766 matrix loads in under 2 s from parquet. Baselines measured in the
same run: `pandas.read_parquet` + `to_numpy(float32)` (no validation) and our own CSV/TSV paths.
Prints seconds per format and the ratio to the pandas baseline (best of 5 runs each).

    python bench/cohort_load.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from radiogenomics.cohort import read_expression, write_expression

N_SAMPLES, N_GENES, REPEATS = 351, 21766, 5


def best_of(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.gamma(2.0, 2.5, (N_SAMPLES, N_GENES)).astype(np.float32)
    ids = [f"S{i:04d}" for i in range(N_SAMPLES)]
    genes = [f"G{j:05d}" for j in range(N_GENES)]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {fmt: write_expression(Path(tmp) / f"expression.{fmt}", ids, genes, matrix) for fmt in ("parquet", "tsv", "csv")}
        baseline = best_of(lambda: pd.read_parquet(paths["parquet"]).set_index("sample_id").to_numpy(np.float32))
        print(f"matrix {N_SAMPLES} x {N_GENES}; best of {REPEATS}")
        print(f"{'loader':<40}{'seconds':>10}{'vs pandas':>12}")
        print(f"{'pandas.read_parquet (no validation)':<40}{baseline:>10.3f}{1.0:>12.2f}")
        for fmt, path in paths.items():
            seconds = best_of(lambda p=path: read_expression(p), repeats=REPEATS if fmt == "parquet" else 2)
            print(f"{'radiogenomics load ' + fmt + ' (validated)':<40}{seconds:>10.3f}{seconds / baseline:>12.2f}")
        ok = best_of(lambda: read_expression(paths["parquet"])) < 2.0
        print(f"goal: parquet under 2 s -> {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
