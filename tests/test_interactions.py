"""Module eigengenes and the interaction network (`inputs.module_eigengenes`, `network.InteractionNet`):
the modules are the planted programs, fitted on training rows only; the network fits an interaction
of two programs that a linear model cannot; each output stops at its own epoch, and the refit
reproduces every output's own epoch count exactly. (Folding and gene masking on this architecture:
`test_input_stage.py`, which runs every architecture the search can return.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from radiogenomics.cohort import Cohort, load_cohort
from radiogenomics.training.inputs import fit_input_stage, module_eigengenes, screening_scores
from radiogenomics.training.network import INTERACTION_KNOTS, Interaction, NetConfig, predict, train_network
from radiogenomics.training.targets import Labels, Standardizer, TargetSpec, safe_auc, stratified_folds
from tune.space import STARTING_POINTS, to_config

MODULES = NetConfig(widths=(), screen_genes=8, l2=0.01, target_screen=True, modules=40, interaction_l1=1e-4,
                    input_dropout=0.1, max_epochs=12, patience=3)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory, hallmark_gmt: Path) -> tuple[Cohort, dict]:
    from radiogenomics.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("interactions") / "synth"
    generate(SynthConfig(out=out, hallmark_gmt=hallmark_gmt, n_train=150, n_test=40, n_genes=2000, n_features=12),
             progress=False)
    return load_cohort(out / "train"), json.loads((out / "truth.json").read_text())


def test_modules_are_the_planted_programs(synthetic) -> None:
    """Every eigengene is one co-expressed group of genes; each group is one planted program's
    responsive genes (or one background module), and both programs of the planted interaction
    (heterogeneity) get their own module."""
    train, truth = synthetic
    spec = TargetSpec.fit(train)
    labels = spec.encode(train)
    z = Standardizer.fit(train.expression).transform(train.expression)
    rows, offsets = module_eigengenes(z, screening_scores(z, labels, len(spec.histology_classes)), per_target=40)
    assert len(rows) >= 2 and rows.shape[1] == z.shape[1] and offsets.shape == (len(rows),)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)  # unit loadings
    np.testing.assert_allclose((z @ rows.T + offsets).mean(axis=0), 0.0, atol=1e-4)  # centred on the fitting rows
    gene_index = {g: j for j, g in enumerate(train.genes)}
    program_of = {gene_index[g]: p for p, v in truth["programs"].items() for g in v["responsive_genes"] if g in gene_index}
    found = {}
    for row in rows:
        members = np.flatnonzero(row)
        programs = {program_of.get(int(j)) for j in members}
        planted = programs - {None}
        if planted:
            assert len(programs) == 1, f"a module mixes programs: {programs}"
            found[planted.pop()] = len(members)
    interaction = next(e for e in truth["effects"] if e["mechanism"] == "interaction")
    assert set(interaction["programs"]) <= set(found), (interaction["programs"], found)


def _interaction_data(n: int, seed: int) -> tuple[np.ndarray, Labels, TargetSpec]:
    """Two programs a and b of 10 genes each and 30 noise genes; the target is a * b > 0, which no
    linear model of the genes can rank (every gene is uncorrelated with it). With no gene screened
    by its own correlation, the modules are looked for among all 50 (`modules=50`)."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    genes = np.concatenate([a[:, None] * 0.9 + 0.3 * rng.standard_normal((n, 10)),
                            b[:, None] * 0.9 + 0.3 * rng.standard_normal((n, 10)),
                            rng.standard_normal((n, 30))], axis=1).astype(np.float32)
    y = (a * b > 0).astype(np.float32)[:, None]
    return genes, Labels(histology=None, features=y), TargetSpec((), ("xor",), (0.0,))


def test_interaction_network_fits_a_product_a_linear_model_cannot() -> None:
    x, labels, spec = _interaction_data(400, 0)
    x_test, test_labels, _ = _interaction_data(400, 1)
    scaler = Standardizer.fit(x)
    z, z_test = scaler.transform(x), scaler.transform(x_test)
    aucs = {}
    for modules in (0, 50):
        config = NetConfig(widths=(), screen_genes=20, target_screen=True, modules=modules, lr=1e-2, l2=1e-3,
                           interaction_l1=1e-4, input_dropout=0.0)
        stage = fit_input_stage(z, labels, screen_genes=20, components=0, modules=modules)
        if modules:
            assert stage.modules == 2  # the two programs
        net = train_network(stage.transform(z), labels, spec, config, seed=0, epochs=60, staged=True,
                            head_mask=stage.logit_mask(), modules=stage.modules).model
        aucs[modules] = safe_auc(test_labels.features[:, 0], predict(net, stage.transform(z_test)).features[:, 0])
    assert aucs[50] > 0.9 and aucs[0] < 0.65, aucs


def test_each_output_stops_at_its_own_epoch_and_the_refit_reproduces_it(synthetic) -> None:
    """The outputs' weights are independent (fixed standardisation, one row each), so keeping each
    output's rows at its own epoch equals training that output for exactly that many epochs."""
    train, _ = synthetic
    spec = TargetSpec.fit(train)
    labels = spec.encode(train)
    z = Standardizer.fit(train.expression).transform(train.expression)
    (fit_rows, stop_rows), = stratified_folds(train, 4, 0)[:1]
    stage = fit_input_stage(z[fit_rows], labels.take(fit_rows), screen_genes=8, components=0, modules=40, n_classes=3)
    x = stage.transform(z)
    common = dict(staged=True, head_mask=stage.logit_mask(), modules=stage.modules, seed=4)
    stopped = train_network(x[fit_rows], labels.take(fit_rows), spec, MODULES, x_val=x[stop_rows],
                            y_val=labels.take(stop_rows), **common)
    rows = stopped.target_epochs
    assert rows is not None and len(rows) == len(spec.names) and rows.min() >= 1
    assert len(set(rows[:3])) == 1  # histology's classes stop together
    epochs = np.array([1, 1, 1] + [1 + (j % 4) for j in range(len(spec.features))])
    mixed = train_network(x[fit_rows], labels.take(fit_rows), spec, MODULES, target_epochs=epochs, **common).model
    np.testing.assert_array_equal(train_network(x[fit_rows], labels.take(fit_rows), spec, MODULES, target_epochs=epochs,
                                                **common).target_epochs, epochs)
    for e in np.unique(epochs):
        plain = train_network(x[fit_rows], labels.take(fit_rows), spec, MODULES, epochs=int(e), **common).model
        chosen = torch.from_numpy(np.flatnonzero(epochs == e))
        for p_mixed, p_plain in zip(mixed.row_parameters(), plain.row_parameters()):
            torch.testing.assert_close(p_mixed[chosen], p_plain[chosen], rtol=0, atol=1e-6)


@pytest.mark.parametrize("config", [MODULES, MODULES.model_copy(update={"histology_pool": 60, "histology_c": 0.07})],
                         ids=["modules", "histology_pool_and_readout"])
def test_modules_fit_on_training_rows_only(synthetic, config: NetConfig) -> None:
    """No leakage: changing the held-out rows' expression changes no eigengene, offset or weight, nor
    (with histology's pool and read-out, as in the first starting point) the pooled modules or the
    read-out fitted to convergence."""
    train, _ = synthetic
    (train_rows, val_rows), = stratified_folds(train, 3, 0)[:1]
    spec = TargetSpec.fit(train, rows=train_rows)
    changed = train.expression.copy()
    changed[val_rows] = np.random.default_rng(0).normal(size=changed[val_rows].shape).astype(np.float32) * 50
    fitted = []
    for expression in (train.expression, changed):
        z = Standardizer.fit(expression[train_rows]).transform(expression[train_rows])
        labels = spec.encode(train).take(train_rows)
        stage = fit_input_stage(z, labels, screen_genes=8, components=0, modules=40, n_classes=3,
                                histology_pool=config.histology_pool)
        net = train_network(stage.transform(z), labels, spec, config, epochs=3, staged=True,
                            head_mask=stage.logit_mask(), modules=stage.modules)
        fitted.append((stage, net.model.state_dict()))
    (a, wa), (b, wb) = fitted
    assert a.modules > 0
    if config.histology_c:  # the read-out ran: without it histology's head differs
        z = Standardizer.fit(train.expression[train_rows]).transform(train.expression[train_rows])
        plain = train_network(a.transform(z), spec.encode(train).take(train_rows), spec,
                              config.model_copy(update={"histology_c": 0.0}), epochs=3, staged=True,
                              head_mask=a.logit_mask(), modules=a.modules).model.state_dict()
        assert any(not torch.equal(wa[key], plain[key]) for key in wa)
    np.testing.assert_array_equal(a.projection, b.projection)
    np.testing.assert_array_equal(a.offset, b.offset)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_modules_only_where_each_output_reads_its_own_genes() -> None:
    with pytest.raises(ValueError, match="modules need the shared design at depth 0"):
        NetConfig(widths=(16,), screen_genes=5, modules=20)
    with pytest.raises(ValueError, match="modules need"):
        NetConfig(widths=(), screen_genes=5, modules=20)  # no target_screen
    first = to_config(STARTING_POINTS[0])
    assert first.modules > 0 and first.target_screen and not first.widths
    deep = to_config({**STARTING_POINTS[0], "depth": 1})
    assert deep.modules == 0  # a hidden layer: no eigengene read-out


def test_interaction_layer_appends_products_then_hinges() -> None:
    """The basis a modules network reads out, in the order the export relies on: the inputs, every
    product of two eigengenes (squares included, upper triangle row by row), then relu(e - k) knot
    by knot; without knots (artifacts made before hinges) the products alone, same widths as then."""
    h = torch.from_numpy(np.random.default_rng(3).normal(size=(7, 5)).astype(np.float32))
    e = h[:, 2:].numpy()  # the last 3 units are eigengenes
    products = [e[:, i] * e[:, j] for i in range(3) for j in range(i, 3)]
    hinges = [np.maximum(e[:, m] - k, 0.0) for k in INTERACTION_KNOTS for m in range(3)]
    layer = Interaction(5, 3, INTERACTION_KNOTS)
    expected = np.column_stack([h.numpy(), *products, *hinges])
    assert layer.width_out == expected.shape[1] == 5 + 6 + 3 * len(INTERACTION_KNOTS)
    np.testing.assert_allclose(layer(h).numpy(), expected, rtol=0, atol=1e-6)
    legacy = Interaction(5, 3)
    assert legacy.width_out == 11
    np.testing.assert_allclose(legacy(h).numpy(), expected[:, :11], rtol=0, atol=1e-6)


def _module_genes(rows: np.ndarray) -> list[set[int]]:
    return [set(np.flatnonzero(row).tolist()) for row in rows]


def test_histology_pool_lets_a_class_program_weak_gene_by_gene_form_a_module() -> None:
    """The pool that modules are found in: every output's `per_target` best genes, and histology's
    classes' (the first `class_rows` outputs) `class_pool` best. A program whose genes rank 31-42 for
    a class forms a module only with the class pool; the same ranks for a feature never do."""
    rng = np.random.default_rng(0)
    n = 200
    programs = [rng.standard_normal(n) for _ in range(3)]
    z = np.concatenate([p[:, None] * 0.9 + 0.35 * rng.standard_normal((n, 12)) for p in programs]
                       + [rng.standard_normal((n, 200))], axis=1)
    a, b, c = (set(range(12 * k, 12 * (k + 1))) for k in range(3))
    noise = np.arange(36, 236)
    scores = np.zeros((2, z.shape[1]))  # row 0: a histology class, row 1: a feature
    scores[0, noise[:30]] = np.linspace(1.0, 0.8, 30)  # the class's 30 best genes are noise, then program b
    scores[0, sorted(b)] = np.linspace(0.7, 0.6, 12)
    scores[1, sorted(a)] = np.linspace(1.0, 0.9, 12)  # the feature: program a, then noise, then program c
    scores[1, noise[30:38]] = np.linspace(0.8, 0.75, 8)
    scores[1, sorted(c)] = np.linspace(0.7, 0.6, 12)
    assert _module_genes(module_eigengenes(z, scores, per_target=20)[0]) == [a]
    assert _module_genes(module_eigengenes(z, scores, per_target=20, class_rows=0, class_pool=50)[0]) == [a]
    found = _module_genes(module_eigengenes(z, scores, per_target=20, class_rows=1, class_pool=50)[0])
    assert sorted(found, key=min) == [a, b]  # not c: a feature's pool stays `per_target`


def test_input_stage_pools_each_histology_class(synthetic) -> None:
    """`fit_input_stage(histology_pool=...)` widens the pool by histology's classes' rows only (they
    come first in the screening scores), and the modules change with it."""
    train, _ = synthetic
    spec = TargetSpec.fit(train)
    labels = spec.encode(train)
    z = Standardizer.fit(train.expression).transform(train.expression)
    scores = screening_scores(z, labels, len(spec.histology_classes))
    plain = fit_input_stage(z, labels, screen_genes=8, components=0, modules=10, n_classes=3)
    pooled = fit_input_stage(z, labels, screen_genes=8, components=0, modules=10, n_classes=3, histology_pool=100)
    expected, offsets = module_eigengenes(z, scores, 10, class_rows=3, class_pool=100)
    np.testing.assert_array_equal(pooled.projection[len(pooled.genes):], expected)
    np.testing.assert_array_equal(pooled.offset[len(pooled.genes):], offsets)
    np.testing.assert_array_equal(pooled.genes, plain.genes)  # the screens are the same
    assert _module_genes(pooled.projection[len(pooled.genes):]) != _module_genes(plain.projection[len(plain.genes):])


def test_histology_pool_needs_modules() -> None:
    with pytest.raises(ValueError, match="histology_pool widens the pool"):
        NetConfig(widths=(), screen_genes=5, target_screen=True, histology_pool=100)
    assert to_config({**STARTING_POINTS[0], "modules": 0}).histology_pool == 0
    assert to_config(STARTING_POINTS[0]).histology_pool == STARTING_POINTS[0]["histology_pool"] > 0


def test_hinges_only_on_module_eigengenes() -> None:
    with pytest.raises(ValueError, match="interaction_knots are hinges of module eigengenes"):
        NetConfig(widths=(), screen_genes=5, target_screen=True, interaction_knots=(0.0,))
    assert to_config(STARTING_POINTS[0]).interaction_knots == INTERACTION_KNOTS  # the search's modules networks
    assert to_config(STARTING_POINTS[1]).interaction_knots == ()  # no modules, no hinges


def test_every_starting_point_has_a_per_target_counterpart() -> None:
    """The training report compares the selected configuration with its per-target design; for a
    modules network that is the plain per-target design (a bench run once failed on its hinges)."""
    from tune.train import per_target_counterpart

    for point in STARTING_POINTS:
        config = to_config(point)
        counterpart = per_target_counterpart(config)
        assert counterpart.design == "per_target" and counterpart.modules == 0 and counterpart.interaction_knots == ()
        assert counterpart.screen_genes == config.screen_genes and counterpart.lr == config.lr


def test_starting_points_name_every_dimension_of_the_space() -> None:
    """Optuna refuses a starting point that lacks a dimension of the search space."""
    from tune.space import search_space

    dims = set(search_space()) - {"max_epochs"}
    for point in STARTING_POINTS:
        assert set(point) == dims, set(point) ^ dims
