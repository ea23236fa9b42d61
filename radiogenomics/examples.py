"""Public example data sets turned into cohort directories (for benchmarks and tests).

`gsea_leukemia`: the GSEA ALL/AML microarray (Golub et al. 1999, via GSEApy's test data; 48
samples, 24 ALL / 24 AML). Probe rows are averaged per gene symbol, MAS5 values floored at 20 and
put on the log2 scale; the class (ALL/AML) is written as the cohort's `histology` column, the
label our training predicts.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from radiogenomics.cohort import write_expression

LEUKEMIA_MATRIX = "Leukemia_hgu95av2.trim.txt.gz"
LEUKEMIA_CLASSES = "Leukemia.cls"


def read_gsea_leukemia(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """(samples x genes log2 expression, class per sample) from the GSEA leukemia folder."""
    folder = Path(folder)
    with gzip.open(folder / LEUKEMIA_MATRIX, "rt") as handle:
        raw = pd.read_csv(handle, sep="\t")
    by_gene = raw.drop(columns=["NAME"]).groupby("Gene").mean()
    labels = (folder / LEUKEMIA_CLASSES).read_text().split("\n")[2].split()
    expression = pd.DataFrame(np.log2(np.clip(by_gene.T.to_numpy(), 20, None)), index=list(by_gene.columns),
                              columns=list(by_gene.index))
    return expression, labels


def write_leukemia_cohort(folder: Path, out: Path, rows: Sequence[int] | None = None) -> Path:
    """Write the leukemia samples (all, or `rows`) as a cohort directory (expression + clinical)."""
    expression, labels = read_gsea_leukemia(folder)
    rows = list(range(len(labels))) if rows is None else list(rows)
    out = Path(out)
    out.mkdir(parents=True)
    part = expression.iloc[rows]
    write_expression(out / "expression.parquet", list(part.index), list(part.columns), part.to_numpy())
    pd.DataFrame({"sample_id": list(part.index), "histology": [labels[i] for i in rows]}).to_csv(out / "clinical.csv", index=False)
    return out
