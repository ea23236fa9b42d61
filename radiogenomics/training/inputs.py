"""The structure-aware input stage: a fixed linear map from z-scored genes to a few hundred inputs.

With ~200 patients and 21,766 genes a dense first layer has nothing to lean on; the baselines
screen genes per target. The stage gives the network the same footing, fitted on training rows
only (inside every CV fold, and on the whole training cohort for the refit):

* supervised screening: for every output (each histology class one-vs-rest, each radiomic
  target), the `screen_genes` genes with the largest squared correlation with its binary label on
  the fitting rows (for two groups the same ranking as the ANOVA F statistic); the union;
* unsupervised components: the first `components` principal components of the fitting rows'
  expression (scikit-learn `PCA`, full SVD, deterministic signs).

The stage output is `P z + q` (screened genes are rows of the identity, components are PCA
loadings with the centring folded into `q`). Because it is one affine map, and the network's first
BatchNorm and Linear after it are affine too at inference, `fold.fold_input_stage` merges them
into the exported network's first Linear layer on the genes: the served and masked model is the
usual architecture, and gene masking's first-layer fast path stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

from radiogenomics.training.targets import Labels


@dataclass(frozen=True)
class InputStage:
    """A fitted stage: `transform(z) = z @ projection.T + offset`; `genes` are the screened gene indices."""

    projection: np.ndarray  # (m, G) float32
    offset: np.ndarray  # (m,) float32
    genes: np.ndarray  # (k,) int64 screened gene indices (the first k rows of the projection)
    components: int
    #: (T, m) bool: the stage outputs each output's own screen chose, plus every component (T = each
    #: histology class, then each feature); used when each output may see only its own genes
    target_inputs: np.ndarray | None = None

    def logit_mask(self) -> np.ndarray:
        """(n_logits, m) float32 mask for a depth-0 network's heads (one row per output logit)."""
        return self.target_inputs.astype(np.float32)

    @property
    def width(self) -> int:
        return int(self.projection.shape[0])

    def transform(self, z: np.ndarray) -> np.ndarray:
        parts = []
        if len(self.genes):
            parts.append(z[:, self.genes])
        if self.components:
            parts.append(z @ self.projection[len(self.genes):].T + self.offset[len(self.genes):])
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)

    def describe(self, gene_names: list[str] | None = None, show: int = 50) -> dict:
        """What the model card records: sizes and the first screened genes by name."""
        out: dict = {"screened_genes": int(len(self.genes)), "components": int(self.components), "width": self.width}
        if gene_names is not None and len(self.genes):
            out["screened_gene_names"] = [gene_names[i] for i in self.genes[:show]]
        return out


def screening_scores(z: np.ndarray, labels: Labels, n_classes: int = 0) -> np.ndarray:
    """(T, G) univariate statistic of every gene for every output: each histology class one-vs-rest,
    then each feature: the squared Pearson correlation with the binary label (for two groups the same
    ranking as the ANOVA F statistic), for every gene and output in one matrix product.

    Histology is screened per class, not by one multi-class F: a small class driven by a narrow
    signature (the "Other" histology) would otherwise get none of its genes among the top k, which
    the large classes' genes dominate."""
    columns = []
    if labels.histology is not None:
        n_classes = max(n_classes, int(labels.histology.max()) + 1)
        columns.append(np.eye(n_classes)[labels.histology])
    columns.append(labels.features.astype(np.float64))
    y = np.concatenate(columns, axis=1)
    zc = z.astype(np.float64) - z.mean(axis=0, dtype=np.float64)
    yc = y - y.mean(axis=0)
    cov = yc.T @ zc  # (T, G)
    denom = np.sqrt((yc**2).sum(axis=0))[:, None] * np.sqrt((zc**2).sum(axis=0))[None, :]
    r = np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 0)
    return r**2


def top_genes(scores: np.ndarray, k: int) -> np.ndarray:
    """The union over targets of each target's k best genes (ties broken by gene index), sorted."""
    return np.unique(per_target_top(scores, k))


def per_target_top(scores: np.ndarray, k: int) -> np.ndarray:
    """(T, k) each target's k best genes (ties broken by gene index)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]


def fit_input_stage(z: np.ndarray, labels: Labels, *, screen_genes: int, components: int, seed: int = 0,
                    n_classes: int = 0) -> InputStage:
    """Fit the stage on z-scored training rows `z` (n, G) and their labels (`n_classes` histology classes)."""
    n, n_genes = z.shape
    if screen_genes <= 0 and components <= 0:
        raise ValueError("an input stage needs screen_genes > 0 and/or components > 0")
    scores = screening_scores(z, labels, n_classes)
    best = per_target_top(scores, screen_genes) if screen_genes > 0 else np.zeros((len(scores), 0), dtype=np.int64)
    genes = np.unique(best)
    blocks = []
    if len(genes):
        onehot = np.zeros((len(genes), n_genes), dtype=np.float32)
        onehot[np.arange(len(genes)), genes] = 1.0
        blocks.append(onehot)
    offsets = [np.zeros(len(genes), dtype=np.float32)]
    n_comp = min(components, n - 1, n_genes) if components > 0 else 0
    if n_comp > 0:
        pca = PCA(n_components=n_comp, svd_solver="full", random_state=seed).fit(z.astype(np.float64))
        blocks.append(pca.components_.astype(np.float32))
        offsets.append((-pca.components_ @ pca.mean_).astype(np.float32))
    width = len(genes) + n_comp
    target_inputs = np.zeros((len(scores), width), dtype=bool)
    target_inputs[np.arange(len(scores))[:, None], np.searchsorted(genes, best)] = True
    target_inputs[:, len(genes):] = True
    return InputStage(projection=np.vstack(blocks).astype(np.float32), offset=np.concatenate(offsets),
                      genes=genes.astype(np.int64), components=n_comp, target_inputs=target_inputs)
