"""The histology read-out of a modules network, fitted to convergence.

A modules network (`network.InteractionNet`) reads each output from its own screened genes plus
the module eigengenes, their pairwise products and hinges. Trained by early-stopped gradient
descent, histology stops after 2 to 8 epochs: its 25 screened genes per class overfit first, and by
then the read-out of the products and hinges, which starts at zero, has barely moved. A class
whose rule is an AND of two programs (the nonlinear design's "Other") is then fitted only by the
programs' marginal effects.

Fitted as one convex problem on the network's own basis (the eigengenes, their products and
hinges; no screened genes), by an L1-penalised multinomial logistic regression solved to
convergence (scikit-learn's saga), that read-out fits the AND; the gradient-trained logits fit the
genes' direct effects. Histology's head is the average of the two sets of logits (`READOUT_BLEND`),
which is still one linear head on the same basis. Measured (one network, seed 425; 5-fold CV of the
training cohort, then the refit on the held-out patients; histology mean AUC; the gradient-trained
head against the average with the read-out at C = 0.07):

| cohort (generator seed) | CV | test |
|---|---|---|
| nonlinear (42) | 0.792 -> 0.795 | 0.839 -> 0.838 |
| nonlinear (1) | 0.784 -> 0.799 | 0.825 -> 0.829 |
| nonlinear (2) | 0.772 -> 0.793 ("Other" 0.652 -> 0.713) | 0.691 -> 0.716 |
| paper-sized (42) | 0.838 -> 0.840 | 0.846 -> 0.850 |

The read-out alone (no average) scored 0.783 / 0.799 / 0.788 / 0.832 in CV: better where the AND
matters, worse on the other two; with the screened genes in its basis lower still (they overfit
first there too). Radiomic outputs are untouched.

The result is written into the network's own weights (histology's screened-gene rows scaled, its
read-out rows mixed), so the exported, served and masked model is the same architecture and gene
masking's first-layer fast path stays exact.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

#: histology's logits: this share from the read-out fitted here, the rest from gradient training
READOUT_BLEND = 0.5
#: saga's iteration cap: the fits here converge in tens to hundreds of epochs (p of a few hundred)
MAX_ITER = 5000


def fit_class_readout(basis: np.ndarray, classes: np.ndarray, n_classes: int, c: float,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Weights (n_classes, p) and biases (n_classes,) of the class logits `basis @ W.T + b` that
    maximise the class-balanced multinomial likelihood with an L1 penalty (scikit-learn's `C` = `c`:
    the loss summed over the rows, plus the coefficients' L1 norm).

    The basis is standardised for the fit (the penalty treats every term alike) and the solution
    mapped back to the raw basis; constant columns get weight 0. A class absent from `classes` gets
    weight 0 and a bias far below the others (probability about 1 / (n + 1) of the least likely)."""
    basis = np.asarray(basis, dtype=np.float64)
    classes = np.asarray(classes, dtype=np.int64)
    n, p = basis.shape
    weights, biases = np.zeros((n_classes, p)), np.zeros(n_classes)
    present = np.unique(classes)
    if len(present) < 2:
        raise ValueError(f"a class read-out needs at least two classes among the rows, got {present.tolist()}")
    mean, sd = basis.mean(axis=0), basis.std(axis=0)
    used = sd > 1e-8
    x = (basis[:, used] - mean[used]) / sd[used]
    model = LogisticRegression(C=c, l1_ratio=1.0, solver="saga", max_iter=MAX_ITER, tol=1e-4,
                               class_weight="balanced", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, classes)
    coef, intercept = model.coef_, model.intercept_
    if len(present) == 2:  # scikit-learn's binary form: one logit for the second class against the first
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    raw = coef / sd[used]
    weights[np.ix_(present, np.flatnonzero(used))] = raw
    biases[present] = intercept - raw @ mean[used]
    absent = np.setdiff1d(np.arange(n_classes), present)
    if len(absent):
        biases[absent] = biases[present].min() - np.log(n + 1.0) - float(np.abs(basis @ weights[present].T).max(initial=0.0))
    return weights, biases
