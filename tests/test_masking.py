"""Gene masking: the fast path against dense forwards and Captum, the statistics, planted biology, bad input.

Planted-biology figures measured with these fixtures (synthetic cohort 262 + 89 patients, 3,000
genes, 10 features, seed 42; shared network (64,), 30 epochs; 71 sets = 50 Hallmark + the synthetic
signature + 20 decoys; 1,000 nulls per size; q < 0.1):
  KEEP: recall of the 13 planted (set, output) associations 9/13 = 0.69, 0 decoy discoveries
        (false discovery proportion among planted + decoy discoveries 0.00); the 4 misses are the
        interaction effect (TNFA x PI3K -> GLCM features), which no single set carries alone.
  DROP: recall 11/13 = 0.85, 0 decoy discoveries.
  Label-shuffled training data: 0 sets with q < 0.1 in both modes. Without the output gate
  (MaskingOptions.gate_outputs=False) the same shuffled model "finds" 4-9 (set, output) pairs at
  q < 0.1 depending on the shuffle (seeds 7, 8, 9): co-expressed planted sets that happen to be
  weighted with the right sign beat random, non-co-expressed gene sets of their size.
Each run prints its figures (pytest -s shows them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import false_discovery_control, rankdata
from sklearn.metrics import roc_auc_score

from radiogenomics.cohort import load_cohort, write_expression
from radiogenomics.errors import GeneSetError, InputError
from radiogenomics.gene_sets import GeneSet
from radiogenomics.masking import (
    COLUMNS,
    DROP_COLUMNS,
    MaskingData,
    MaskingKernel,
    MaskingMode,
    MaskingOptions,
    evaluate_chunk,
    finish,
    library_from_gmt,
    library_single_genes,
    make_plan,
    output_gate,
    prepare,
    run_masking,
    unmasked_auc,
)
from radiogenomics.masking.plan import bin_size, size_bin
from radiogenomics.masking.fast import tie_round
from radiogenomics.masking.stats import auc_many, average_ranks, bh_q, empirical_p
from radiogenomics.registry import LoadedModel, load_model
from radiogenomics.training.direct import fit_and_export
from radiogenomics.training.network import NetConfig, predict

CLI = str(Path(sys.executable).parent / "radiogenomics")
SIZES = (1, 1, 5, 37, 200, 1500)


# ----------------------------------------------------------------------------------------------
# Fixtures: one synthetic cohort, three models fitted on it (shared, per-target, label-shuffled)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory, hallmark_gmt: Path) -> Path:
    from radiogenomics.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("masking") / "synth"
    generate(SynthConfig(out=out, hallmark_gmt=hallmark_gmt, n_train=262, n_test=89, n_genes=3000, n_features=10),
             progress=False)
    return out


@pytest.fixture(scope="module")
def registry(synth: Path) -> Path:
    return synth.parent / "registry"


@pytest.fixture(scope="module")
def shared_model(synth: Path, registry: Path) -> LoadedModel:
    folder = fit_and_export(load_cohort(synth / "train"), registry, "shared", NetConfig(widths=(64,)), epochs=30, seed=0)
    return load_model(folder)


@pytest.fixture(scope="module")
def per_target_model(synth: Path, registry: Path) -> LoadedModel:
    folder = fit_and_export(load_cohort(synth / "train"), registry, "pertarget",
                            NetConfig(widths=(16, 8), design="per_target"), epochs=5, seed=0)
    return load_model(folder)


@pytest.fixture(scope="module")
def shuffled_model(synth: Path, registry: Path) -> LoadedModel:
    """Fitted on the training cohort with its label rows (clinical + radiomics) shuffled across patients."""
    cohort = load_cohort(synth / "train")
    shuffled = synth.parent / "train_shuffled"
    shuffled.mkdir()
    order = np.random.default_rng(7).permutation(cohort.n_samples)
    write_expression(shuffled / "expression.parquet", cohort.sample_ids, cohort.genes, cohort.expression)
    for table in ("radiomics", "clinical"):
        frame = getattr(cohort, table).iloc[order]
        frame.index = pd.Index(cohort.sample_ids, name="sample_id")
        frame.to_csv(shuffled / f"{table}.csv")
    folder = fit_and_export(load_cohort(shuffled), registry, "shuffled", NetConfig(widths=(64,)), epochs=30, seed=0)
    return load_model(folder)


@pytest.fixture(scope="module")
def test_cohort(synth: Path):
    return load_cohort(synth / "test")


@pytest.fixture(scope="module")
def library(synth: Path) -> list[GeneSet]:
    return library_from_gmt(synth / "gene_sets.gmt")


@pytest.fixture(scope="module")
def truth(synth: Path) -> dict:
    return json.loads((synth / "truth.json").read_text())


def _dense(model: LoadedModel, z: np.ndarray, genes: np.ndarray, mode: str, dtype=torch.float32) -> np.ndarray:
    """The reference: the model's own forward pass on a densely masked copy of the input."""
    keep = np.zeros(z.shape[1], dtype=bool)
    keep[genes] = True
    masked = z.copy()
    masked[:, ~keep if mode == "keep" else keep] = 0.0
    if dtype == torch.float32:
        return predict(model.net, masked).matrix()
    net = model.net.double()
    try:
        with torch.no_grad():
            hist, feat = net(torch.from_numpy(masked.astype(np.float64)))
    finally:
        model.net.float()
    parts = ([] if hist is None else [torch.softmax(hist, dim=1).numpy()]) + [torch.sigmoid(feat).numpy()]
    return np.concatenate(parts, axis=1)


def _random_sets(n_genes: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(n_genes, size, replace=False)) for size in SIZES] + [np.arange(n_genes)]


def _merge_near_ties(x: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """Each column's values replaced by the index of their near-tie group (sorted gaps <= eps chain together).

    The dense reference pass sums identical rows in different orders (block vs remainder of a
    matrix kernel), so patients with identical masked inputs may differ in the last bits; grouping
    by gaps, unlike rounding, never splits a tie at a rounding boundary, on any machine."""
    out = np.empty(x.shape, dtype=np.float64)
    for t in range(x.shape[1]):
        order = np.argsort(x[:, t], kind="stable")
        groups = np.concatenate([[0], np.cumsum(np.diff(x[order, t]) > eps)])
        out[order, t] = groups
    return out


def _edge_sets(n_genes: int) -> list[np.ndarray]:
    """Every gene, every gene but one, and that one gene alone."""
    return [np.arange(n_genes), np.delete(np.arange(n_genes), 17), np.array([17])]


@pytest.mark.parametrize("which", ["shared_model", "per_target_model"])
@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_fast_path_equals_dense_masked_forward(request, which: str, mode: str, test_cohort) -> None:
    """Probabilities against the dense masked forward pass (float32 and float64); AUCs against sklearn,
    on the engine's own scores exactly and on the dense float64 scores with near-ties merged."""
    model = request.getfixturevalue(which)
    data = prepare(model, test_cohort)
    sets = _random_sets(data.z.shape[1]) + _edge_sets(data.z.shape[1])
    kernel32 = MaskingKernel(model, data)
    fast32, auc32 = kernel32.probabilities(sets, mode), kernel32.aucs(sets, mode)
    kernel64 = MaskingKernel(model, data, dtype=torch.float64)
    fast64, auc64 = kernel64.probabilities(sets, mode), kernel64.aucs(sets, mode)
    scores32, scores64 = kernel32.scores(sets, mode), kernel64.scores(sets, mode)
    outputs = range(len(data.outputs))
    for i, genes in enumerate(sets):
        dense32 = _dense(model, data.z, genes, mode)
        dense64 = _dense(model, data.z, genes, mode, torch.float64)
        assert np.abs(fast32[i] - dense32).max() < 1e-5, (len(genes), np.abs(fast32[i] - dense32).max())
        assert np.abs(fast64[i] - dense64).max() < 1e-10
        own32 = [roc_auc_score(data.labels[:, t], scores32[i, :, t].astype(np.float64)) for t in outputs]
        own64 = [roc_auc_score(data.labels[:, t], tie_round(scores64[i, :, t])) for t in outputs]
        np.testing.assert_allclose(auc32[i], own32, atol=1e-12)
        np.testing.assert_allclose(auc64[i], own64, atol=1e-12)
        merged = _merge_near_ties(dense64)
        dense_auc = [roc_auc_score(data.labels[:, t], merged[:, t]) for t in outputs]
        np.testing.assert_allclose(auc64[i], dense_auc, atol=1e-12, err_msg=f"set {i} ({len(genes)} genes)")


@pytest.mark.parametrize("which", ["shared_model", "per_target_model"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masking_edge_cases(request, which: str, dtype: torch.dtype, test_cohort) -> None:
    """Keeping every gene is the unmasked model, dropping every gene (or keeping none) is every patient at
    the training mean (all AUCs exactly 0.5), and dropping all genes but one equals keeping that gene."""
    model = request.getfixturevalue(which)
    data = prepare(model, test_cohort)
    n_genes = data.z.shape[1]
    every, all_but_one, one = _edge_sets(n_genes)
    kernel = MaskingKernel(model, data, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert np.abs(kernel.probabilities([every], "keep")[0] - _dense(model, data.z, every, "keep", dtype)).max() < tol
    for mode, genes in (("drop", every), ("keep", np.array([], dtype=np.int64))):
        probs = kernel.probabilities([genes], mode)[0]
        assert np.all(probs == probs[0]), mode  # identical inputs, identical scores: ties stay ties
        assert np.all(kernel.aucs([genes], mode) == 0.5), mode
    np.testing.assert_array_equal(kernel.scores([all_but_one], "drop"), kernel.scores([one], "keep"))
    np.testing.assert_array_equal(kernel.aucs([all_but_one], "drop"), kernel.aucs([one], "keep"))
    assert np.abs(kernel.probabilities([one], "keep")[0] - _dense(model, data.z, one, "keep", dtype)).max() < tol


@pytest.mark.parametrize("which", ["shared_model", "per_target_model"])
def test_drop_mode_equals_captum_feature_ablation(request, which: str, test_cohort) -> None:
    """Captum ablates each group of a feature mask to the baseline 0 (the training mean after z-scoring);
    attribution = f(x) - f(x with the group ablated), so f(ablated) = f(x) - attribution."""
    from captum.attr import FeatureAblation

    model = request.getfixturevalue(which)
    data = prepare(model, test_cohort)
    n_genes = data.z.shape[1]
    groups = np.split(np.random.default_rng(3).permutation(n_genes), np.cumsum([1, 5, 37, 200, 1500]))
    feature_mask = torch.zeros((1, n_genes), dtype=torch.long)
    for g, genes in enumerate(groups):
        feature_mask[0, torch.from_numpy(genes)] = g

    def forward(x: torch.Tensor) -> torch.Tensor:
        hist, feat = model.net(x)
        return torch.cat(([] if hist is None else [torch.softmax(hist, dim=1)]) + [torch.sigmoid(feat)], dim=1)

    x = torch.from_numpy(data.z)
    fast = MaskingKernel(model, data).probabilities([np.sort(g) for g in groups], "drop")
    with torch.no_grad():
        unmasked = forward(x).numpy()
    ablator = FeatureAblation(forward)
    for target in (0, len(data.outputs) // 2, len(data.outputs) - 1):
        with torch.no_grad():
            attribution = ablator.attribute(x, baselines=0.0, target=target, feature_mask=feature_mask,
                                            perturbations_per_eval=len(groups)).numpy()
        for g, genes in enumerate(groups):
            ablated = unmasked[:, target] - attribution[:, genes[0]]
            assert np.abs(fast[g, :, target] - ablated).max() < 1e-5


def test_unmasked_auc_is_the_models_test_auc(shared_model: LoadedModel, test_cohort) -> None:
    data = prepare(shared_model, test_cohort)
    scores = shared_model.predict(shared_model.align(test_cohort)).matrix().astype(np.float64)
    expected = [roc_auc_score(data.labels[:, t], scores[:, t]) for t in range(len(data.outputs))]
    np.testing.assert_allclose(unmasked_auc(shared_model, data), expected, atol=2e-3)  # float32 probability ties


# ----------------------------------------------------------------------------------------------
# Statistics


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_auc_equals_sklearn_with_ties(dtype) -> None:
    rng = np.random.default_rng(1)
    scores = (rng.random((6, 60, 5)) - 0.5).astype(dtype)
    scores[:, :25] = np.round(scores[:, :25], 1)  # many ties
    scores[1] = 0.25  # every patient tied
    scores[2, :10, :] = -0.0
    scores[2, 10:20, :] = 0.0  # the two zeros tie
    labels = (rng.random((60, 5)) < 0.35).astype(np.float32)
    labels[:, 4] = 1.0  # one class only
    auc = auc_many(scores, labels)
    for s in range(6):
        for t in range(4):
            assert auc[s, t] == pytest.approx(roc_auc_score(labels[:, t], scores[s, :, t].astype(np.float64)), abs=1e-12)
    assert np.isnan(auc[:, 4]).all()
    assert np.all(auc[1, :4] == 0.5)
    np.testing.assert_array_equal(average_ranks(scores[0].T), rankdata(scores[0].T, axis=-1))


def test_empirical_p_has_the_plus_one_correction_and_both_directions() -> None:
    null = np.array([[0.5], [0.6], [0.7], [0.7], [0.8]])
    observed = np.array([[0.9], [0.7], [0.4], [np.nan]])
    greater = empirical_p(observed, null, greater=True)[:, 0]
    np.testing.assert_allclose(greater[:3], [1 / 6, 4 / 6, 6 / 6])  # null >= observed, ties count against
    assert np.isnan(greater[3])
    smaller = empirical_p(observed, null, greater=False)[:, 0]
    np.testing.assert_allclose(smaller[:3], [6 / 6, 5 / 6, 1 / 6])  # DROP: null <= observed


def test_bh_q_values_equal_scipy() -> None:
    p = np.random.default_rng(2).random(40) ** 3
    np.testing.assert_allclose(bh_q(p), false_discovery_control(p, method="bh"))
    p[[3, 7]] = np.nan
    q = bh_q(p)
    assert np.isnan(q[[3, 7]]).all()
    np.testing.assert_allclose(q[~np.isnan(p)], false_discovery_control(p[~np.isnan(p)], method="bh"))


def test_table_q_values_are_bh_per_output_then_gated(shared_model: LoadedModel, test_cohort, library) -> None:
    data = prepare(shared_model, test_cohort)
    options = MaskingOptions(n_nulls=100, gate_outputs=False)
    plan = make_plan(shared_model, library, options)
    aucs = {c.index: evaluate_chunk(shared_model, data, plan, c.index) for c in plan.chunks}
    table = finish(plan, data, aucs, options)
    assert list(table.columns) == COLUMNS
    assert len(table) == plan.n_observed * len(data.outputs)
    for output, rows in table.groupby("output"):
        np.testing.assert_allclose(rows["q_value"], false_discovery_control(rows["p_value"], method="bh"))
        assert rows["p_value"].min() >= 1 / 101 and rows["p_value"].is_monotonic_increasing
    assert table["output"].drop_duplicates().tolist() == data.outputs  # sorted by output (model order), then p
    gated = finish(plan, data, aucs, replace(options, gate_outputs=True))
    gate = output_gate(data, unmasked_auc(shared_model, data)).set_index("output")["q_value"]
    merged = gated.merge(table, on=["gene_set", "output"], suffixes=("", "_plain"))
    np.testing.assert_allclose(merged["q_value"], np.maximum(merged["q_value_plain"], merged["output"].map(gate)))


def test_deterministic_for_a_seed_and_chunk_order(shared_model: LoadedModel, test_cohort, library) -> None:
    data = prepare(shared_model, test_cohort)
    options = MaskingOptions(n_nulls=50, seed=5, chunk_sets=64)
    first = run_masking(shared_model, data, library, options, use_ray=False).table
    again = run_masking(shared_model, data, library, options, use_ray=False).table
    pd.testing.assert_frame_equal(first, again)
    plan = make_plan(shared_model, library, options)
    backwards = {c.index: evaluate_chunk(shared_model, data, plan, c.index) for c in reversed(plan.chunks)}
    pd.testing.assert_frame_equal(finish(plan, data, backwards, options), first)
    other = make_plan(shared_model, library, replace(options, seed=6))
    assert not all(np.array_equal(a, b) for a, b in zip(plan.nulls, other.nulls))


def test_ray_tasks_give_the_same_table(ray_local, shared_model: LoadedModel, test_cohort, library) -> None:
    data = prepare(shared_model, test_cohort)
    options = MaskingOptions(mode=MaskingMode.DROP, n_nulls=50, chunk_sets=128)
    on_ray = run_masking(shared_model, data, library, options, use_ray=True)
    local = run_masking(shared_model, data, library, options, use_ray=False)
    pd.testing.assert_frame_equal(on_ray.table, local.table)
    assert list(on_ray.table.columns) == DROP_COLUMNS
    np.testing.assert_allclose(on_ray.table["delta_auc"],
                               on_ray.table["auc"] - on_ray.table["output"].map(dict(zip(data.outputs, unmasked_auc(shared_model, data)))))
    plan = make_plan(shared_model, library, options)
    assert on_ray.evaluations == plan.n_units == plan.n_observed + len(plan.nulls) * 50 + 1


def test_plan_bins_sizes_and_shares_nulls(shared_model: LoadedModel) -> None:
    for size in range(1, 17):
        assert bin_size(size_bin(size), 10**6) == size
    for size in range(17, 5000):
        rep = bin_size(size_bin(size), 10**6)
        assert size_bin(rep) == size_bin(size) and abs(rep - size) <= max(1, 0.055 * size), size
    genes = shared_model.genes
    library = [GeneSet("A", tuple(genes[:100])), GeneSet("B", tuple(genes[500:600])), GeneSet("C", tuple(genes[:3])),
               GeneSet("D", tuple(genes[:104])), GeneSet("E", ("NOT_A_GENE", genes[7])), GeneSet("F", ("NOPE",))]
    plan = make_plan(shared_model, library, MaskingOptions(n_nulls=20, min_covered=2, chunk_sets=7))
    assert [library[i].name for i in plan.observed] == ["A", "B", "C", "D"]
    assert set(plan.skipped) == {"E", "F"}
    assert "fewer than min_covered=2" in plan.skipped["E"] and "none of its 1 genes" in plan.skipped["F"]
    assert plan.set_bin[0] == plan.set_bin[1] == plan.set_bin[3]  # 100 and 104 genes share one null
    assert plan.null_sizes[plan.set_bin[0]] in range(98, 107) and len(plan.nulls) == 2
    units = np.sort(np.concatenate([c.units for c in plan.chunks]))
    np.testing.assert_array_equal(units, np.arange(plan.n_units))  # every unit once
    assert plan.chunks[-1].units.tolist() == [plan.baseline_unit]
    exact = make_plan(shared_model, library, MaskingOptions(n_nulls=20, min_covered=2, size_bins=False))
    assert sorted(exact.null_sizes.tolist()) == [3, 100, 104]


def test_single_gene_library(shared_model: LoadedModel, test_cohort) -> None:
    library = library_single_genes(shared_model)
    assert [s.name for s in library] == shared_model.genes and all(s.genes == (s.name,) for s in library)
    data = prepare(shared_model, test_cohort)
    result = run_masking(shared_model, data, library[:300], MaskingOptions(n_nulls=200), use_ray=False)
    assert len(result.table) == 300 * len(data.outputs) and (result.table["size"] == 1).all()
    assert result.evaluations == 300 + 200 + 1


# ----------------------------------------------------------------------------------------------
# Planted biology and the label-shuffled control


def _planted(truth: dict, outputs: list[str]) -> set[tuple[str, str]]:
    return {(program, output) for effect in truth["effects"] for output in effect["outputs"]
            for program in effect["programs"] if output in outputs}


@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_planted_sets_are_found_and_decoys_are_not(mode: str, shared_model: LoadedModel, test_cohort, library, truth) -> None:
    data = prepare(shared_model, test_cohort)
    table = run_masking(shared_model, data, library, MaskingOptions(mode=MaskingMode(mode), n_nulls=1000), use_ray=False).table
    planted = _planted(truth, data.outputs)
    decoys = {name for name, info in truth["gene_sets"].items() if info["role"] == "decoy"}
    hits = {(r.gene_set, r.output) for r in table[table["q_value"] < 0.1].itertuples()}
    found = hits & planted
    false = {h for h in hits if h[0] in decoys}
    recall = len(found) / len(planted)
    fdp = len(false) / max(1, len(false) + len(found))
    # Ranking: within each driven output's rows (sorted by p, then effect), planted sets before decoys.
    ordered_pairs = total_pairs = 0
    for program, output in planted:
        rows = table[table["output"] == output].reset_index(drop=True)
        position = rows.index[rows["gene_set"] == program][0]
        decoy_positions = rows.index[rows["gene_set"].isin(decoys)]
        ordered_pairs += int((decoy_positions > position).sum())
        total_pairs += len(decoy_positions)
    print(f"\n[{mode}] planted associations {len(planted)}: recall at q<0.1 {len(found)}/{len(planted)} = {recall:.2f}; "
          f"decoy discoveries {len(false)}, FDP {fdp:.2f}; planted ranked above decoys in {ordered_pairs}/{total_pairs} pairs")
    assert recall >= 0.5
    assert fdp <= 0.1
    assert ordered_pairs / total_pairs >= 0.9
    for program, output in planted - {("HALLMARK_TNFA_SIGNALING_VIA_NFKB", o) for o in data.outputs} \
            - {("HALLMARK_PI3K_AKT_MTOR_SIGNALING", o) for o in data.outputs}:
        rows = table[table["output"] == output].reset_index(drop=True)  # single-program effects: above every decoy
        assert rows.index[rows["gene_set"] == program][0] < rows.index[rows["gene_set"].isin(decoys)].min(), (program, output)


@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_label_shuffled_model_yields_no_discovery(mode: str, shuffled_model: LoadedModel, test_cohort, library) -> None:
    data = prepare(shuffled_model, test_cohort)
    options = MaskingOptions(mode=MaskingMode(mode), n_nulls=1000)
    result = run_masking(shuffled_model, data, library, options, use_ray=False)
    plan = make_plan(shuffled_model, library, replace(options, gate_outputs=False))
    aucs = {c.index: evaluate_chunk(shuffled_model, data, plan, c.index) for c in plan.chunks}
    without_gate = int((finish(plan, data, aucs, replace(options, gate_outputs=False))["q_value"] < 0.1).sum())
    print(f"\n[{mode}] label-shuffled model: {int((result.table['q_value'] < 0.1).sum())} discoveries at q<0.1 "
          f"({without_gate} without the output gate); unmasked AUCs {np.round(result.outputs['auc'].to_numpy(), 2).tolist()}")
    assert (result.table["q_value"] >= 0.1).all()


# ----------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "file is empty"),
        ("SET_A\tdesc\tG1\nSET_B desc G1 G2\n", "line 2 .*lists no genes"),
        ("SET_A\tdesc\tG1\nSET_B\tdesc\tG1 G2 G3\n", "line 2 .*gene field with spaces"),
        ("SET_A\tdesc\tG1\n\nSET_A\tdesc\tG2\n", "line 3 repeats set name 'SET_A'"),
    ],
)
def test_bad_gmt_is_refused_naming_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.gmt"
    path.write_text(text)
    with pytest.raises(GeneSetError, match=message) as info:
        library_from_gmt(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_non_utf8_gmt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.gmt"
    path.write_bytes("SET\tdesc\tG\xe9NE\n".encode("latin-1"))
    with pytest.raises(GeneSetError, match="not UTF-8"):
        library_from_gmt(path)


def test_library_problems_in_the_plan(shared_model: LoadedModel) -> None:
    genes = shared_model.genes
    with pytest.raises(GeneSetError, match="'A' is repeated"):
        make_plan(shared_model, [GeneSet("A", (genes[0],)), GeneSet("A", (genes[1],))], MaskingOptions())
    with pytest.raises(GeneSetError, match="none of the 2 gene sets covers any"):
        make_plan(shared_model, [GeneSet("A", ("X1",)), GeneSet("B", ("X2", "X3"))], MaskingOptions())
    with pytest.raises(GeneSetError, match="fewer than min_covered=5"):
        make_plan(shared_model, [GeneSet("A", tuple(genes[:3]))], MaskingOptions(min_covered=5))
    with pytest.raises(GeneSetError, match="empty"):
        make_plan(shared_model, [], MaskingOptions())
    plan = make_plan(shared_model, [GeneSet("A", tuple(genes[:3])), GeneSet("EMPTY", ()), GeneSet("U", ("X1",))],
                     MaskingOptions(n_nulls=5))
    assert plan.skipped == {"EMPTY": "lists no genes", "U": "none of its 1 genes is a model gene"}


def test_bad_options() -> None:
    for kwargs, message in (({"n_nulls": 0}, "n_nulls"), ({"seed": -1}, "seed"), ({"chunk_sets": 0}, "chunk_sets"),
                            ({"mode": "sideways"}, "keep, drop"), ({"min_covered": 1.5}, "min_covered")):
        with pytest.raises(InputError, match=message):
            MaskingOptions(**kwargs)


def test_labels_missing_for_some_patients(shared_model: LoadedModel, test_cohort) -> None:
    clinical = test_cohort.clinical.copy()
    clinical.loc[clinical.index[[3, 10]], "histology"] = None
    with pytest.raises(InputError, match=r"histology label missing for 2 of 89 patients \('SYN-B-0004', 'SYN-B-0011'\)"):
        prepare(shared_model, replace(test_cohort, clinical=clinical))
    radiomics = test_cohort.radiomics.copy()
    radiomics.iloc[5, 2] = np.nan
    with pytest.raises(InputError, match=r"radiomic labels missing for 1 of 89 patients \('SYN-B-0006'"):
        prepare(shared_model, replace(test_cohort, radiomics=radiomics))
    with pytest.raises(InputError, match="no radiomic labels"):
        prepare(shared_model, replace(test_cohort, radiomics=None))
    with pytest.raises(InputError, match="no histology labels"):
        prepare(shared_model, replace(test_cohort, clinical=None))


def test_single_class_output_is_refused(shared_model: LoadedModel, test_cohort) -> None:
    radiomics = test_cohort.radiomics.copy()
    feature = shared_model.spec.features[0]
    radiomics[feature] = radiomics[feature].max() + 1.0  # every patient above the cut point
    with pytest.raises(InputError, match=f"1 output\\(s\\) have a single class among the 89 patients \\('{feature}'\\)"):
        prepare(shared_model, replace(test_cohort, radiomics=radiomics))


def test_cohort_not_matching_the_models_genes(shared_model: LoadedModel, test_cohort) -> None:
    fewer = replace(test_cohort, genes=test_cohort.genes[7:], expression=test_cohort.expression[:, 7:])
    with pytest.raises(InputError, match=f"7 of the model's 3000 genes are missing \\(e.g. {test_cohort.genes[0]}"):
        prepare(shared_model, fewer)
    with pytest.raises(InputError, match="masking data has 2999 genes"):
        MaskingKernel(shared_model, MaskingData(z=np.zeros((4, 2999)), labels=np.zeros((4, 13)), outputs=shared_model.spec.names))


# ----------------------------------------------------------------------------------------------
# CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "mask", *args], capture_output=True, text=True, timeout=300)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_cli_writes_the_table_and_a_summary(shared_model: LoadedModel, synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "results.csv"
    result = _cli(str(shared_model.folder), str(synth / "test"), "--gene-sets", str(synth / "gene_sets.gmt"),
                  "--out", str(out), "--nulls", "100", "--seed", "3")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sets"] == 71 and summary["skipped"] == 0 and summary["outputs"] == 13 and summary["mode"] == "keep"
    assert summary["evaluations"] > 71 * 1 and summary["significant"] >= 0 and summary["seconds"] > 0
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS and len(table) == 71 * 13
    assert "mask" in result.stderr  # the progress bar
    assert not (tmp_path / "deep" / "results.csv.partial").exists()


def test_cli_errors_are_one_line(shared_model: LoadedModel, synth: Path, tmp_path: Path) -> None:
    model, cohort, gmt = str(shared_model.folder), str(synth / "test"), str(synth / "gene_sets.gmt")
    out = str(tmp_path / "r.csv")
    assert "exactly one of --gene-sets" in _one_line_error(_cli(model, cohort, "--out", out))
    assert "exactly one of --gene-sets" in _one_line_error(_cli(model, cohort, "--out", out, "--gene-sets", gmt, "--single-genes"))
    assert "not a model artifact" in _one_line_error(_cli(str(tmp_path), cohort, "--out", out, "--gene-sets", gmt))
    bad = tmp_path / "bad.gmt"
    bad.write_text("GOOD\tdesc\tA\nBAD desc A B\n")
    assert "line 2" in _one_line_error(_cli(model, cohort, "--out", out, "--gene-sets", str(bad)))
    unknown = tmp_path / "unknown.gmt"
    unknown.write_text("U1\tdesc\tNOT_A_GENE\n")
    assert "covers any of the model's 3000 genes" in _one_line_error(_cli(model, cohort, "--out", out, "--gene-sets", str(unknown)))
    short = tmp_path / "short"
    short.mkdir()
    test = load_cohort(synth / "test")
    write_expression(short / "expression.parquet", test.sample_ids, test.genes[:-4], test.expression[:, :-4])
    for name in ("radiomics.csv", "clinical.csv"):
        (short / name).write_text((synth / "test" / name).read_text())
    assert "4 of the model's 3000 genes are missing" in _one_line_error(_cli(model, str(short), "--out", out, "--gene-sets", gmt))
    assert "is a directory" in _one_line_error(_cli(model, cohort, "--out", str(tmp_path), "--gene-sets", gmt))
    assert not Path(out).exists()
