"""Early stopping on a separable cohort: the validation AUC is 1 after the first epoch, and ties are
broken by the validation loss, so training (and the refit's epoch count) does not stop after one
or two gradient steps (the ALL/AML matrix once refitted for 1 epoch and scored 0.47 on its test)."""

from __future__ import annotations

import numpy as np

from radiogenomics.training.inputs import fit_input_stage
from radiogenomics.training.network import NetConfig, train_network
from radiogenomics.training.targets import Labels, TargetSpec


def _separable(n: int, seed: int) -> tuple[np.ndarray, Labels]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.standard_normal((n, 40)).astype(np.float32)
    x[:, :5] += (2.5 * (2 * y - 1))[:, None]  # five genes separate the classes completely
    return x, Labels(histology=y.astype(np.int64), features=np.zeros((n, 0), dtype=np.float32))


def test_ties_in_auc_keep_training_while_the_loss_falls() -> None:
    spec = TargetSpec(("ALL", "AML"), (), ())
    x, labels = _separable(40, 0)
    x_val, y_val = _separable(16, 1)
    for config in (NetConfig(widths=(8,), lr=1e-2, batch_size=8, patience=5, max_epochs=60, input_dropout=0.0),
                   NetConfig(widths=(), screen_genes=5, target_screen=True, modules=10, lr=1e-2, batch_size=8,
                             patience=5, max_epochs=60, input_dropout=0.0)):
        stage = fit_input_stage(x, labels, screen_genes=5, components=0, modules=config.modules, n_classes=2) \
            if config.staged else None
        inputs = (lambda z: z) if stage is None else stage.transform
        result = train_network(inputs(x), labels, spec, config, seed=0, x_val=inputs(x_val), y_val=y_val,
                               staged=config.staged, head_mask=None if stage is None else stage.logit_mask(),
                               modules=0 if stage is None else stage.modules)
        assert max(result.history[:2]) == 1.0  # perfect from the start
        assert result.best_epoch > 10, (config.widths, result.best_epoch)


def test_each_output_stops_on_its_loss_guarded_by_its_auc() -> None:
    """The per-output rule of a modules network: an epoch whose AUC jumps on noise while the loss
    rises is not a new best; an epoch whose loss falls is one, unless its AUC dropped by more than
    the tolerance."""
    from radiogenomics.training.network import OUTPUT_AUC_TOLERANCE, _output_better

    best_auc, best_loss = np.array([0.80, 0.80, 0.80, 0.80]), np.array([0.50, 0.50, 0.50, 0.50])
    auc = np.array([0.90, 0.80 - OUTPUT_AUC_TOLERANCE / 2, 0.80 - 2 * OUTPUT_AUC_TOLERANCE, 0.81])
    loss = np.array([0.55, 0.45, 0.40, 0.49])
    np.testing.assert_array_equal(_output_better(auc, loss, best_auc, best_loss), [False, True, False, True])
    assert _output_better(np.array([-np.inf]), np.array([0.3]), np.array([-np.inf]), np.array([np.inf]))[0]  # first epoch
