"""The structure-aware input stage: a fixed linear map from z-scored genes to a few hundred inputs.

With ~200 patients and 21,766 genes a dense first layer has nothing to lean on; the baselines
screen genes per target. The stage gives the network the same footing, fitted on training rows
only (inside every CV fold, and on the whole training cohort for the refit):

* supervised screening: for every output (each histology class one-vs-rest, each radiomic
  target), the `screen_genes` genes with the largest squared correlation with its binary label on
  the fitting rows (for two groups the same ranking as the ANOVA F statistic); the union;
* unsupervised components: the first `components` principal components of the fitting rows'
  expression (scikit-learn `PCA`, full SVD, deterministic signs);
* module eigengenes: each output's `modules` best-screened genes (and each histology class's
  `histology_pool` best, if larger), pooled and clustered into co-expressed groups (SciPy average
  linkage on 1 - |r|), one eigengene (first principal component, unit loadings on the group's genes)
  per group of at least `MODULE_MIN_GENES`. A program that acts through an interaction or a
  threshold is still a co-expressed group, so the network can read the program as one input and
  combine programs (`network.InteractionNet`). A program that drives a class only through an AND
  with another is weak gene by gene: few of its genes are among the class's 50 best (the nonlinear
  design's MYC program and the "Other" class: 1 of 50 at one generator seed, so no module), more
  among its 150 best (`tune/space.py` has what the larger pool gained).

The stage output is `P z + q` (screened genes are rows of the identity, components are PCA
loadings with the centring folded into `q`). Because it is one affine map, and the network's first
BatchNorm and Linear after it are affine too at inference, `fold.fold_input_stage` merges them
into the exported network's first Linear layer on the genes: the served and masked model is the
usual architecture, and gene masking's first-layer fast path stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.decomposition import PCA

from radiogenomics.training.targets import Labels


@dataclass(frozen=True)
class InputStage:
    """A fitted stage: `transform(z) = z @ projection.T + offset`; `genes` are the screened gene indices."""

    projection: np.ndarray  # (m, G) float32
    offset: np.ndarray  # (m,) float32
    genes: np.ndarray  # (k,) int64 screened gene indices (the first k rows of the projection)
    components: int
    #: module eigengenes: the last `modules` rows of the projection
    modules: int = 0
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
        if self.width > len(self.genes):
            parts.append(z @ self.projection[len(self.genes):].T + self.offset[len(self.genes):])
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)

    def describe(self, gene_names: list[str] | None = None, show: int = 50) -> dict:
        """What the model card records: sizes and the first screened genes by name."""
        out: dict = {"screened_genes": int(len(self.genes)), "components": int(self.components), "modules": int(self.modules),
                     "width": self.width}
        if self.modules:
            out["module_sizes"] = [int(n) for n in (self.projection[-self.modules:] != 0).sum(axis=1)]
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


#: the co-expression cut (1 - |r| at average linkage) and the smallest group that makes a module
MODULE_CUT = 0.6
MODULE_MIN_GENES = 5


def module_eigengenes(z: np.ndarray, scores: np.ndarray, per_target: int, class_rows: int = 0,
                      class_pool: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(M, G) unit loadings of each module's first principal component (zero off its genes) and the
    (M,) offsets that centre them on the fitting rows `z`. Signs: the larger loadings positive.
    The pool: every output's (row of `scores`) `per_target` best genes and the first `class_rows`
    outputs' (histology's classes) `class_pool` best."""
    pool = np.unique(np.concatenate([per_target_top(scores, per_target).ravel(),
                                     per_target_top(scores[:class_rows], class_pool).ravel()]))
    if len(pool) < MODULE_MIN_GENES:
        return np.zeros((0, z.shape[1]), dtype=np.float32), np.zeros(0, dtype=np.float32)
    block = z[:, pool].astype(np.float64)
    distance = 1.0 - np.abs(np.nan_to_num(np.corrcoef(block.T)))
    np.fill_diagonal(distance, 0.0)
    labels = fcluster(linkage(squareform(np.clip(distance, 0.0, None), checks=False), "average"), MODULE_CUT, "distance")
    rows, offsets = [], []
    for cluster in np.unique(labels):
        members = pool[labels == cluster]
        if len(members) < MODULE_MIN_GENES:
            continue
        x = z[:, members].astype(np.float64)
        centre = x.mean(axis=0)
        loading = np.linalg.svd(x - centre, full_matrices=False)[2][0]
        if np.abs(loading.max()) < np.abs(loading.min()):
            loading = -loading
        row = np.zeros(z.shape[1])
        row[members] = loading
        rows.append(row)
        offsets.append(-loading @ centre)
    if not rows:
        return np.zeros((0, z.shape[1]), dtype=np.float32), np.zeros(0, dtype=np.float32)
    return np.asarray(rows, dtype=np.float32), np.asarray(offsets, dtype=np.float32)


def fit_input_stage(z: np.ndarray, labels: Labels, *, screen_genes: int, components: int, seed: int = 0,
                    n_classes: int = 0, modules: int = 0, histology_pool: int = 0) -> InputStage:
    """Fit the stage on z-scored training rows `z` (n, G) and their labels (`n_classes` histology
    classes); `modules` > 0 appends module eigengenes found among each output's `modules` best genes
    and each histology class's `histology_pool` best."""
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
    class_rows = len(scores) - labels.features.shape[1]  # histology's classes come first
    eigen, eigen_offset = (module_eigengenes(z, scores, modules, class_rows, histology_pool) if modules > 0
                           else (np.zeros((0, n_genes), np.float32), np.zeros(0, np.float32)))
    blocks.append(eigen)
    offsets.append(eigen_offset)
    width = len(genes) + n_comp + len(eigen)
    target_inputs = np.zeros((len(scores), width), dtype=bool)
    target_inputs[np.arange(len(scores))[:, None], np.searchsorted(genes, best)] = True
    target_inputs[:, len(genes): len(genes) + n_comp] = True  # eigengenes reach the outputs through the interactions
    return InputStage(projection=np.vstack(blocks).astype(np.float32), offset=np.concatenate(offsets),
                      genes=genes.astype(np.int64), components=n_comp, modules=len(eigen), target_inputs=target_inputs)
