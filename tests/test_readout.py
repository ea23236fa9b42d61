"""Histology's read-out of a modules network fitted to convergence (`training/readout.py`,
`NetConfig.histology_c`): it is scikit-learn's L1 multinomial logistic regression on the network's
own basis, written into the network's weights exactly; it fits an AND of two programs that the
programs' linear terms cannot; an absent class stays improbable; and the trained network carries
it (averaged with the gradient-trained logits). Export, masking and Captum agreement: `test_input_stage.py`
(`depth0_modules_histology_readout`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression

from radiogenomics.training.inputs import fit_input_stage
from radiogenomics.training.network import INTERACTION_KNOTS, Interaction, InteractionNet, NetConfig, predict, train_network
from radiogenomics.training.readout import READOUT_BLEND, fit_class_readout
from radiogenomics.training.targets import Labels, Standardizer, TargetSpec, safe_auc


def _and_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Five standardised programs; class 1 where programs 0 and 1 are both above 0, class 2 where
    program 2 is high, else class 0 (a little label noise); the basis is the Interaction layer's."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, 5))
    both = (e[:, 0] > 0) & (e[:, 1] > 0)
    y = np.where(both, 1, np.where(e[:, 2] > 0.5, 2, 0))
    flip = rng.random(n) < 0.05
    y[flip] = rng.integers(0, 3, flip.sum())
    basis = Interaction(5, 5, INTERACTION_KNOTS)(torch.from_numpy(e.astype(np.float32))).double().numpy()
    return basis, y


def test_readout_is_sklearns_l1_logistic_on_the_standardised_basis() -> None:
    basis, y = _and_data(300, 0)
    weights, biases = fit_class_readout(basis, y, 3, c=0.2, seed=0)
    mean, sd = basis.mean(axis=0), basis.std(axis=0)
    reference = LogisticRegression(C=0.2, l1_ratio=1.0, solver="saga", max_iter=5000, tol=1e-4, class_weight="balanced",
                                   random_state=0).fit((basis - mean) / sd, y)
    new, _ = _and_data(50, 1)
    ours = softmax(new @ weights.T + biases, axis=1)
    np.testing.assert_allclose(ours, reference.predict_proba((new - mean) / sd), rtol=0, atol=1e-9)
    assert 0 < (weights != 0).sum() < weights.size  # L1: sparse, not empty


def test_readout_fits_an_and_that_linear_terms_cannot() -> None:
    basis, y = _and_data(400, 2)
    test_basis, test_y = _and_data(2000, 3)
    linear = basis[:, :5]  # the eigengenes alone
    auc = {}
    for name, train_x, test_x in (("basis", basis, test_basis), ("linear", linear, test_basis[:, :5])):
        weights, biases = fit_class_readout(train_x, y, 3, c=0.2)
        logits = test_x @ weights.T + biases
        auc[name] = safe_auc((test_y == 1).astype(int), logits[:, 1] - np.logaddexp(logits[:, 0], logits[:, 2]))
    assert auc["basis"] > auc["linear"] + 0.02 and auc["basis"] > 0.85, auc


def test_an_absent_class_stays_improbable_and_one_class_is_refused() -> None:
    basis, y = _and_data(200, 4)
    y = np.where(y == 1, 2, y)  # classes 0 and 2 only: scikit-learn's binary form
    weights, biases = fit_class_readout(basis, y, 3, c=0.2)
    assert not weights[1].any()
    p = softmax(basis @ weights.T + biases, axis=1)
    assert p[:, 1].max() < 1.0 / len(basis)
    assert safe_auc((y == 2).astype(int), p[:, 2]) > 0.8
    constant = np.column_stack([basis, np.ones(len(basis))])  # a constant column gets weight 0
    assert fit_class_readout(constant, y, 3, c=0.2)[0][:, -1].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="at least two classes"):
        fit_class_readout(basis, np.zeros(len(basis), dtype=np.int64), 3, c=0.2)


def test_trained_network_averages_histology_with_the_fitted_readout() -> None:
    """With `histology_c`, the trained modules network's histology logits are the average
    (`READOUT_BLEND`) of the gradient-trained ones and the convex fit on its own basis over every
    training row (fitting and early-stopping rows); the radiomic outputs are as without it."""
    rng = np.random.default_rng(5)
    n = 240
    a, b, c = (rng.standard_normal(n) for _ in range(3))
    genes = np.concatenate([p[:, None] * 0.9 + 0.3 * rng.standard_normal((n, 8)) for p in (a, b, c)]
                           + [rng.standard_normal((n, 40))], axis=1).astype(np.float32)
    histology = np.where((a > 0) & (b > 0), 1, np.where(c > 0.5, 2, 0))
    feature = (c + 0.5 * rng.standard_normal(n) > 0).astype(np.float32)[:, None]
    labels = Labels(histology=histology, features=feature)
    spec = TargetSpec(("A", "B", "C"), ("f",), (0.0,))
    z = Standardizer.fit(genes).transform(genes)
    fit_rows, stop_rows = np.arange(180), np.arange(180, n)
    stage = fit_input_stage(z[fit_rows], labels.take(fit_rows), screen_genes=6, components=0, modules=64, n_classes=3)
    assert stage.modules >= 3
    x = stage.transform(z)
    nets = {}
    for hc in (0.0, 0.3):
        config = NetConfig(widths=(), screen_genes=6, target_screen=True, modules=64, interaction_knots=INTERACTION_KNOTS,
                           l2=0.01, max_epochs=15, patience=3, histology_c=hc)
        nets[hc] = train_network(x[fit_rows], labels.take(fit_rows), spec, config, seed=1, x_val=x[stop_rows],
                                 y_val=labels.take(stop_rows), staged=True, head_mask=stage.logit_mask(),
                                 modules=stage.modules).model
    net, plain = nets[0.3], nets[0.0]
    assert isinstance(net, InteractionNet) and READOUT_BLEND == 0.5
    weights, biases = fit_class_readout(net.basis(x), histology, 3, c=0.3, seed=1)
    with torch.no_grad():
        logits = net(torch.from_numpy(x))[0].double().numpy()
        expected = 0.5 * plain(torch.from_numpy(x))[0].double().numpy() + 0.5 * (net.basis(x) @ weights.T + biases)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
    assert safe_auc((histology == 1).astype(int), predict(net, x).histology[:, 1]) > \
        safe_auc((histology == 1).astype(int), predict(plain, x).histology[:, 1])  # the AND class
    np.testing.assert_allclose(predict(net, x).features, predict(plain, x).features, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="histology_c fits histology's read-out"):
        NetConfig(widths=(), screen_genes=5, target_screen=True, histology_c=0.1)
