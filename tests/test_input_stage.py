"""The input stage (screening + principal components): fitted on training rows only, folded exactly
into the exported network's first layer, and gene masking's fast path still exact on every
architecture the search can return (depth 0 and deeper, screen, components, both)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.feature_selection import f_classif

from radiogenomics.cohort import Cohort, load_cohort
from radiogenomics.masking import MaskingKernel, prepare
from radiogenomics.registry import load_model
from radiogenomics.training.direct import fit_and_export
from radiogenomics.training.fold import fold_input_stage
from radiogenomics.training.inputs import fit_input_stage, screening_scores, top_genes
from radiogenomics.training.network import INTERACTION_KNOTS, GeneColumnsLinear, NetConfig, predict, train_network
from radiogenomics.training.selection import fit_fold, refit
from radiogenomics.training.targets import Standardizer, TargetSpec, stratified_folds, summary_auc

#: every kind of architecture the search space can return (tune/space.py)
ARCHITECTURES = {
    "depth0_screen_pca": NetConfig(widths=(), screen_genes=15, components=6, l2=0.01, input_dropout=0.1),
    "depth0_screen": NetConfig(widths=(), screen_genes=10, l2=0.1),
    "depth1_pca": NetConfig(widths=(16,), components=8, activation="elu"),
    "depth2_screen_pca": NetConfig(widths=(16, 8), screen_genes=8, components=4, activation="tanh", l2=0.001),
    "dense_all_genes": NetConfig(widths=(16,)),
    "per_target_depth1": NetConfig(widths=(8,), screen_genes=5, components=3, design="per_target"),
    "depth0_target_screen": NetConfig(widths=(), screen_genes=6, components=3, l2=0.01, target_screen=True),
    "per_target_screened_depth1": NetConfig(widths=(4,), screen_genes=5, design="per_target", target_screen=True),
    "grouped_depth1": NetConfig(widths=(3,), screen_genes=5, components=2, target_screen=True, activation="elu"),
    "depth0_modules_interaction": NetConfig(widths=(), screen_genes=6, components=2, l2=0.01, target_screen=True,
                                            modules=40, interaction_l1=1e-4, interaction_knots=INTERACTION_KNOTS),
    "depth0_modules_histology_readout": NetConfig(widths=(), screen_genes=6, l2=0.01, target_screen=True, modules=40,
                                                  interaction_l1=1e-4, interaction_knots=INTERACTION_KNOTS, histology_c=0.07),
    "depth0_modules_histology_pool": NetConfig(widths=(), screen_genes=6, l2=0.01, target_screen=True, modules=20,
                                               interaction_l1=1e-4, interaction_knots=INTERACTION_KNOTS, histology_c=0.07,
                                               histology_pool=120),
}


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory, hallmark_gmt: Path) -> tuple[Cohort, Cohort]:
    from radiogenomics.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("stage") / "synth"
    generate(SynthConfig(out=out, hallmark_gmt=hallmark_gmt, n_train=120, n_test=60, n_genes=1500, n_features=5),
             progress=False)
    train = load_cohort(out / "train")
    return train, load_cohort(out / "test", classes=train.classes())


def test_screen_is_each_outputs_top_genes_by_sklearn_f(cohorts) -> None:
    """Each histology class (one-vs-rest) and each feature is screened on its own; the ranking is the
    ANOVA F statistic's (scikit-learn) for two groups."""
    train, _ = cohorts
    spec = TargetSpec.fit(train)
    labels = spec.encode(train)
    z = Standardizer.fit(train.expression).transform(train.expression)
    scores = screening_scores(z, labels, len(spec.histology_classes))
    onehot = labels.onehot(spec)
    assert scores.shape == (len(spec.names), z.shape[1])
    for j in range(onehot.shape[1]):
        f, _ = f_classif(z, onehot[:, j])
        assert set(np.argsort(-f)[:10]) == set(np.argsort(-scores[j])[:10]), spec.names[j]
    genes = top_genes(scores, 7)
    assert len(genes) <= 7 * scores.shape[0] and np.all(np.diff(genes) > 0)
    stage = fit_input_stage(z, labels, screen_genes=7, components=4, seed=0, n_classes=len(spec.histology_classes))
    x = stage.transform(z)
    np.testing.assert_array_equal(x[:, : len(genes)], z[:, genes])
    pcs = PCA(n_components=4, svd_solver="full").fit_transform(z.astype(np.float64))
    np.testing.assert_allclose(np.abs(x[:, len(genes):]), np.abs(pcs), atol=1e-3)  # up to the sign of each component
    assert stage.width == len(genes) + 4
    assert stage.target_inputs.shape == (len(spec.names), stage.width)
    assert (stage.target_inputs[:, : len(genes)].sum(axis=1) == 7).all() and stage.target_inputs[:, len(genes):].all()


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_folded_network_equals_the_staged_network(name: str, cohorts) -> None:
    train, test = cohorts
    config = ARCHITECTURES[name].model_copy(update={"max_epochs": 4})
    fitted = refit(train, config, epochs=4, seed=3)
    z_test = fitted.scaler.transform(test.expression[:, [train.genes.index(g) for g in train.genes]])
    plain = predict(fitted.net, z_test).matrix()
    if fitted.stage is None:
        assert fitted.net is fitted.result.model and fitted.config == config
        return
    staged = predict(fitted.result.model, fitted.stage.transform(z_test)).matrix()
    assert np.abs(plain - staged).max() < 2e-5
    first = fitted.net.trunk.layers[1] if hasattr(fitted.net, "trunk") else fitted.net.features[0].trunk.layers[1]
    assert first.in_features == len(train.genes)  # one Linear layer on every gene
    assert fitted.config.screen_genes == 0 and fitted.config.components == 0 and fitted.config.widths
    if config.modules:  # the eigengenes were found, so the export went through their products and hinges
        assert fitted.stage.modules > 0 and fitted.config.activation == "interaction"
        assert fitted.config.interaction_knots == config.interaction_knots == INTERACTION_KNOTS


def test_stage_and_weights_ignore_held_out_rows(cohorts) -> None:
    """No leakage: changing the expression of the rows a fold scores (or of the test cohort) changes no
    screened gene, component or trained weight."""
    train, _ = cohorts
    config = NetConfig(widths=(8,), screen_genes=10, components=5, max_epochs=3, patience=3)
    (train_rows, val_rows), = stratified_folds(train, 3, 0)[:1]
    spec = TargetSpec.fit(train, rows=train_rows)
    changed = train.expression.copy()
    changed[val_rows] = np.random.default_rng(0).normal(size=changed[val_rows].shape).astype(np.float32) * 50
    results = []
    for expression in (train.expression, changed):
        scaler = Standardizer.fit(expression[train_rows])
        z = scaler.transform(expression[train_rows])
        stage = fit_input_stage(z, spec.encode(train).take(train_rows), screen_genes=10, components=5, seed=0, n_classes=3)
        net = train_network(stage.transform(z), spec.encode(train).take(train_rows), spec, config, seed=0,
                            epochs=3, staged=True).model
        results.append((stage, net.state_dict()))
    (a, wa), (b, wb) = results
    np.testing.assert_array_equal(a.genes, b.genes)
    np.testing.assert_array_equal(a.projection, b.projection)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    # the fold's validation score changes with its rows, its training does not see them
    base = fit_fold(train, train_rows, val_rows, config, seed=0)
    assert set(base.aucs) == set(spec.names)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_masking_fast_path_equals_dense_and_captum_on_every_architecture(name: str, cohorts, tmp_path: Path) -> None:
    from captum.attr import FeatureAblation

    train, test = cohorts
    config = ARCHITECTURES[name]
    model = load_model(fit_and_export(train, tmp_path, "m", config, epochs=4, seed=1))
    assert model.card.input_stage.get("width", 0) > 0 or not config.staged
    # the lowest artifact format that describes it: hinges need format 2, anything else stays readable by format-1 code
    hinged = bool(model.card.hyperparameters.get("interaction_knots"))
    assert hinged == bool(config.interaction_knots) and model.card.format_version == (2 if hinged else 1)
    data = prepare(model, test)
    n_genes = data.z.shape[1]
    rng = np.random.default_rng(5)
    groups = np.split(rng.permutation(n_genes), [1, 6, 40, 300])
    sets = [np.sort(g) for g in groups]

    def forward(x: torch.Tensor) -> torch.Tensor:
        hist, feat = model.net(x)
        return torch.cat(([] if hist is None else [torch.softmax(hist, dim=1)]) + [torch.sigmoid(feat)], dim=1)

    x = torch.from_numpy(data.z)
    kernel = MaskingKernel(model, data)
    for mode in ("keep", "drop"):
        fast = kernel.probabilities(sets, mode)
        for i, genes in enumerate(sets):
            masked = data.z.copy()
            keep = np.zeros(n_genes, dtype=bool)
            keep[genes] = True
            masked[:, ~keep if mode == "keep" else keep] = 0.0
            dense = predict(model.net, masked).matrix()
            assert np.abs(fast[i] - dense).max() < 1e-5, (mode, i)
    feature_mask = torch.zeros((1, n_genes), dtype=torch.long)
    for g, genes in enumerate(groups):
        feature_mask[0, torch.from_numpy(genes)] = g
    fast = kernel.probabilities(sets, "drop")
    with torch.no_grad():
        unmasked = forward(x).numpy()
        for target in (0, len(data.outputs) - 1):
            attribution = FeatureAblation(forward).attribute(x, baselines=0.0, target=target, feature_mask=feature_mask,
                                                             perturbations_per_eval=len(groups)).numpy()
            for g, genes in enumerate(groups):
                assert np.abs(fast[g, :, target] - (unmasked[:, target] - attribution[:, genes[0]])).max() < 1e-5


#: without principal components (which give every gene a weight): the default search's kind of model
SCREENED_ONLY = {
    "modules": NetConfig(widths=(), screen_genes=6, l2=0.01, target_screen=True, modules=40, interaction_l1=1e-4,
                         interaction_knots=INTERACTION_KNOTS),
    "depth0_screen": ARCHITECTURES["depth0_screen"],
    "per_target_screened_depth1": ARCHITECTURES["per_target_screened_depth1"],
    "dense_all_genes": ARCHITECTURES["dense_all_genes"],
}


@pytest.mark.parametrize("name", SCREENED_ONLY)
def test_loaded_screened_layers_multiply_only_their_genes(name: str, cohorts, tmp_path: Path) -> None:
    """A loaded model's first layer on the genes multiplies only its non-zero gene columns (a
    screened network reads few genes): the same predictions as the dense layer, a copy that follows
    any in-place change of the weights, the dense layer whenever gradients are wanted."""
    train, test = cohorts
    model = load_model(fit_and_export(train, tmp_path, "m", SCREENED_ONLY[name], epochs=4, seed=1))
    n_genes = len(model.genes)
    layers = [m for m in model.net.modules() if isinstance(m, torch.nn.Linear) and m.in_features == n_genes]
    compact = [m for m in layers if isinstance(m, GeneColumnsLinear)]
    assert layers and (not compact if name == "dense_all_genes" else compact == layers)
    x = model.align(test)
    before = model.predict(x).matrix()
    for layer in compact:
        layer.__class__ = torch.nn.Linear  # the plain dense layer, same weights
    np.testing.assert_allclose(before, model.predict(x).matrix(), rtol=0, atol=1e-6)
    for layer in compact:
        layer.__class__ = GeneColumnsLinear
    z = torch.from_numpy(model.scaler.transform(x.astype(np.float32)))
    for layer in compact:
        used = torch.nonzero(layer.weight.detach().abs().sum(dim=0) > 0).flatten()
        assert torch.equal(layer._columns, used) and 0 < len(used) <= n_genes / 2
        with torch.no_grad():
            layer.weight[:, used[0]] = 0.0  # changed in place: the compact copy follows
            np.testing.assert_allclose(layer(z).numpy(), torch.nn.functional.linear(z, layer.weight, layer.bias).numpy(),
                                       rtol=0, atol=1e-5)
        assert len(layer._columns) == len(used) - 1
        copied = copy.deepcopy(layer)  # a copy rebuilds its own compact weights from its own weight
        assert "_compact" not in copied.__dict__
        with torch.no_grad():
            copied.weight[:, used[1]] = 0.0
            np.testing.assert_allclose(copied(z).numpy(), torch.nn.functional.linear(z, copied.weight, layer.bias).numpy(),
                                       rtol=0, atol=1e-5)
            copied.weight = torch.nn.Parameter(layer.weight.detach().clone())  # a new weight, its version 0
            np.testing.assert_allclose(copied(z).numpy(), layer(z).numpy(), rtol=0, atol=1e-6)
            doubled = copied.double()  # .to(): another dtype
            assert doubled(z.double()).dtype == torch.float64
        layer(z).sum().backward()  # gradients wanted: the dense layer, every column
        assert layer.weight.grad is not None and layer.weight.grad.shape == (layer.out_features, n_genes)


def test_depth_zero_needs_a_stage() -> None:
    with pytest.raises(ValueError, match="only with an input stage"):
        NetConfig(widths=())


def test_per_target_depth_zero_is_refused_at_export(cohorts) -> None:
    train, _ = cohorts
    spec = TargetSpec.fit(train)
    z = Standardizer.fit(train.expression).transform(train.expression)
    stage = fit_input_stage(z, spec.encode(train), screen_genes=3, components=2)
    config = NetConfig(widths=(), screen_genes=3, components=2, design="per_target")
    net = train_network(stage.transform(z), spec.encode(train), spec, config, epochs=1, staged=True).model
    with pytest.raises(ValueError, match="per-target design of depth 0"):
        fold_input_stage(net, stage, spec, config, z.shape[1])


def test_ensemble_is_served_and_masked_as_one_model(cohorts, tmp_path: Path) -> None:
    """An ensemble of different architectures: one artifact whose probabilities are the members' mean,
    loaded back as such, and masked on the fast path equal to its dense masked forward pass."""
    from radiogenomics.registry import export_model
    from radiogenomics.training.network import EnsembleNet

    train, test = cohorts
    configs = [ARCHITECTURES["depth0_screen_pca"], ARCHITECTURES["depth2_screen_pca"], ARCHITECTURES["dense_all_genes"]]
    fits = [refit(train, c, epochs=3, seed=k) for k, c in enumerate(configs)]
    ensemble = EnsembleNet([f.net for f in fits])
    folder = export_model(tmp_path, "ens", net=ensemble, config=fits[0].config, spec=fits[0].spec, scaler=fits[0].scaler,
                          genes=list(train.genes), cv_metrics={}, training={}, members=[f.config for f in fits])
    model = load_model(folder)
    assert len(model.card.members) == 3 and isinstance(model.net, EnsembleNet)
    x = model.align(test)
    z = model.scaler.transform(x)
    members = [predict(f.net, z) for f in fits]
    served = model.predict(x)
    np.testing.assert_allclose(served.histology, np.mean([m.histology for m in members], axis=0), atol=1e-6)
    np.testing.assert_allclose(served.features, np.mean([m.features for m in members], axis=0), atol=1e-6)
    np.testing.assert_allclose(served.histology.sum(axis=1), 1.0, atol=1e-6)
    data = prepare(model, test)
    sets = [np.sort(g) for g in np.split(np.random.default_rng(2).permutation(data.z.shape[1]), [1, 30, 700])]
    for mode in ("keep", "drop"):
        fast = MaskingKernel(model, data).probabilities(sets, mode)
        for i, genes in enumerate(sets):
            masked = data.z.copy()
            keep = np.zeros(data.z.shape[1], dtype=bool)
            keep[genes] = True
            masked[:, ~keep if mode == "keep" else keep] = 0.0
            assert np.abs(fast[i] - predict(model.net, masked).matrix()).max() < 1e-5, (mode, i)


def test_ensemble_size_is_chosen_on_the_same_folds(cohorts) -> None:
    from radiogenomics.training.ensemble import choose_size, cv_aucs, fold_labels
    from radiogenomics.training.selection import cross_validate, mean_aucs, out_of_fold

    train, _ = cohorts
    folds = stratified_folds(train, 3, 1)
    spec = TargetSpec.fit(train)
    labels = fold_labels(train, folds, features=None, cut_quantile=0.5)
    oofs, singles = [], []
    for config in (ARCHITECTURES["depth0_screen_pca"], ARCHITECTURES["depth1_pca"]):
        results = list(cross_validate(train, folds, config.model_copy(update={"max_epochs": 5}), seed=0))
        assert np.isnan(out_of_fold(results[:1], train.n_samples)).sum() > 0  # a fold not yet run: its patients NaN
        oof = out_of_fold(results, train.n_samples)
        for r in results:
            assert np.array_equal(oof[r.val_rows], r.predictions.astype(np.float32))
        assert not np.isnan(oof).any()  # every patient predicted once, by the fold model that did not see it
        oofs.append(oof)
        singles.append(mean_aucs(results))
        recomputed = cv_aucs(oof, labels, spec.names)
        for name in spec.names:  # the out-of-fold scores reproduce the trial's own CV AUCs
            assert recomputed[name] == pytest.approx(singles[-1][name], abs=1e-9)
    choice = choose_size(oofs, labels, spec)
    assert set(choice.scores) == {1, 2} and choice.scores[choice.size] == max(choice.scores.values())
    assert choice.per_target == cv_aucs(np.mean(np.stack(oofs[: choice.size]), axis=0), labels, spec.names)


def test_seed_bags_average_every_configuration_with_its_seeds(cohorts) -> None:
    """`seed_bag`: the CV of configurations x seeds averaged, scored by number of seeds on the same
    folds; each seed a different network (initialisation, dropout, early-stopping split)."""
    from radiogenomics.training.ensemble import cv_aucs, fold_labels, seed_bag
    from radiogenomics.training.selection import cross_validate, out_of_fold, refit_epochs

    train, _ = cohorts
    folds = stratified_folds(train, 3, 1)
    spec = TargetSpec.fit(train)
    labels = fold_labels(train, folds, features=None, cut_quantile=0.5)
    bags = []
    for config in (ARCHITECTURES["depth0_modules_interaction"], ARCHITECTURES["depth1_pca"]):
        seeds = []
        for seed in (0, 1000):
            results = list(cross_validate(train, folds, config.model_copy(update={"max_epochs": 5}), seed=seed))
            epochs, rows = refit_epochs(results)
            assert epochs == int(np.median([r.best_epoch for r in results]))
            if config.modules:  # each logit row's own median best epoch
                assert np.array_equal(rows, np.median(np.stack([r.target_epochs for r in results]), axis=0).round())
            else:
                assert rows is None
            seeds.append(out_of_fold(results, train.n_samples))
        assert not np.allclose(seeds[0], seeds[1])  # another seed, another network
        bags.append(seeds)
    bag = seed_bag(bags, labels, spec)
    assert bag.size == 2 and set(bag.scores) == {1, 2}
    assert bag.per_target == cv_aucs(np.mean(np.stack([o for seeds in bags for o in seeds]), axis=0), labels, spec.names)
    one_seed = cv_aucs(np.mean(np.stack([seeds[0] for seeds in bags]), axis=0), labels, spec.names)
    assert bag.scores[1] == pytest.approx(summary_auc(spec, one_seed), abs=1e-12)
    with pytest.raises(ValueError, match="the same number"):
        seed_bag([bags[0], bags[1][:1]], labels, spec)


def test_each_output_sees_only_its_own_screened_genes(cohorts) -> None:
    """target_screen: after training and folding, a feature's logit depends on exactly its own k genes."""
    train, _ = cohorts
    config = NetConfig(widths=(), screen_genes=4, l2=0.01, target_screen=True)
    fitted = refit(train, config, epochs=3, seed=0)
    z = fitted.scaler.transform(train.expression)
    scores = screening_scores(z, fitted.spec.encode(train), len(fitted.spec.histology_classes))
    weight = fitted.net.trunk.layers[1].weight.detach().numpy()  # (logits, genes): one row per output
    assert weight.shape[0] == scores.shape[0] == len(fitted.spec.names)
    for t in range(scores.shape[0]):
        assert set(np.flatnonzero(weight[t])) == set(np.argsort(-scores[t], kind="stable")[:4]), t
    with pytest.raises(ValueError, match="target_screen needs screen_genes > 0 and either depth 0"):
        NetConfig(widths=(8, 4), screen_genes=4, target_screen=True)  # two shared blocks: not per output


def test_per_target_networks_see_only_their_own_genes(cohorts) -> None:
    """target_screen with the per-target design: each feature's network depends on exactly its own k genes."""
    train, _ = cohorts
    config = NetConfig(widths=(4,), screen_genes=3, design="per_target", target_screen=True)
    fitted = refit(train, config, epochs=2, seed=0)
    z = fitted.scaler.transform(train.expression)
    scores = screening_scores(z, fitted.spec.encode(train), len(fitted.spec.histology_classes))
    n_classes = len(fitted.spec.histology_classes)
    hist_genes = set().union(*(np.argsort(-scores[c], kind="stable")[:3] for c in range(n_classes)))
    assert set(np.flatnonzero(np.abs(fitted.net.histology.trunk.layers[1].weight.detach().numpy()).sum(axis=0))) == hist_genes
    for j, member in enumerate(fitted.net.features):
        used = np.flatnonzero(np.abs(member.trunk.layers[1].weight.detach().numpy()).sum(axis=0))
        assert set(used) == set(np.argsort(-scores[n_classes + j], kind="stable")[:3]), j


def test_grouped_network_is_one_network_per_output_in_one_matrix(cohorts) -> None:
    """target_screen with one hidden block: each output has its own group of hidden units reading only
    its genes; changing a gene outside a feature's screen leaves that feature's prediction unchanged."""
    train, test = cohorts
    config = NetConfig(widths=(3,), screen_genes=4, target_screen=True, l2=0.001)
    fitted = refit(train, config, epochs=3, seed=0)
    n_classes, n_features = len(fitted.spec.histology_classes), len(fitted.spec.features)
    assert fitted.config.widths == (3 * (1 + n_features),)  # histology's classes share one group
    z_train = fitted.scaler.transform(train.expression)
    scores = screening_scores(z_train, fitted.spec.encode(train), n_classes)
    z = fitted.scaler.transform(test.expression)
    base = predict(fitted.net, z).features
    for j in range(n_features):
        own = set(np.argsort(-scores[n_classes + j], kind="stable")[:4])
        other = next(g for g in range(z.shape[1]) if g not in own)
        changed = z.copy()
        changed[:, other] += 3.0
        after = predict(fitted.net, changed).features
        np.testing.assert_allclose(after[:, j], base[:, j], atol=1e-6)
        moved = z.copy()
        moved[:, sorted(own)[0]] += 3.0
        assert np.abs(predict(fitted.net, moved).features[:, j] - base[:, j]).max() > 1e-4


def test_modules_network_whose_stage_finds_no_module_exports_and_loads(cohorts, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A modules network on a cohort where no co-expressed group is large enough has no eigengenes:
    it exports as the plain depth-0 form, whose configuration keeps no read-out or pool of them, so
    the registry loads it (a card with `histology_c` and no eigengene would be refused)."""
    import radiogenomics.training.inputs as inputs

    train, test = cohorts
    monkeypatch.setattr(inputs, "MODULE_MIN_GENES", 10**6)
    config = ARCHITECTURES["depth0_modules_histology_pool"]
    model = load_model(fit_and_export(train, tmp_path, "m", config, epochs=3, seed=1))
    assert model.card.input_stage["modules"] == 0
    exported = model.card.hyperparameters
    assert exported["activation"] == "identity" and exported["interaction_units"] == 0
    assert exported["histology_c"] == 0.0 and exported["histology_pool"] == 0 and exported["modules"] == 0
    fitted = refit(train, config, epochs=3, seed=1)
    z_test = fitted.scaler.transform(test.expression)
    staged = predict(fitted.result.model, fitted.stage.transform(z_test)).matrix()
    assert np.abs(predict(model.net, prepare(model, test).z).matrix() - staged).max() < 2e-5
