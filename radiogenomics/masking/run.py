"""Running a masking plan: chunks as Ray tasks (or in-process), then the statistics table.

The pieces are separate so a job service can run them its own way (one chunk at a time,
persisting each chunk's AUCs, resuming after a restart): `make_plan` -> `evaluate_chunk` per chunk
-> `finish`. `run_masking` does all of it in one call.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from radiogenomics.gene_sets import GeneSet
from radiogenomics.masking.data import MaskingData
from radiogenomics.masking.fast import MaskingKernel
from radiogenomics.masking.options import MaskingMode, MaskingOptions
from radiogenomics.masking.plan import MaskingPlan, make_plan
from radiogenomics.masking.stats import auc_above_chance_p, bh_q, empirical_p
from radiogenomics.registry import LoadedModel

COLUMNS = ["gene_set", "size", "covered", "output", "auc", "null_mean", "p_value", "q_value"]
DROP_COLUMNS = [*COLUMNS, "delta_auc"]

_last_kernel: tuple[LoadedModel, MaskingData, MaskingKernel] | None = None


def kernel_for(model: LoadedModel, data: MaskingData) -> MaskingKernel:
    """The kernel of (model, data), reused while the caller keeps asking about the same two objects."""
    global _last_kernel
    if _last_kernel is not None and _last_kernel[0] is model and _last_kernel[1] is data:
        return _last_kernel[2]
    kernel = MaskingKernel(model, data)
    _last_kernel = (model, data, kernel)
    return kernel


def evaluate_chunk(model: LoadedModel, data: MaskingData, plan: MaskingPlan, chunk_index: int) -> np.ndarray:
    """AUCs of one chunk: (units in the chunk, T) float64, rows in `plan.chunks[chunk_index].units` order.

    Deterministic (no randomness: the plan fixed the null sets). NaN where an output has one class.
    The kernel is built once per (model, data) pair of objects and reused for the next chunks; a
    worker that receives fresh copies per chunk (a Ray task) should instead be handed a
    `MaskingKernel(model, data)` (picklable, 30 MB and ~0.1 s to build for a paper-size model) and call
    `kernel.aucs(plan.chunk_genes(chunk_index), plan.options.mode)`, as `run_masking` does.
    """
    return kernel_for(model, data).aucs(plan.chunk_genes(chunk_index), plan.options.mode)


def unmasked_auc(model: LoadedModel, data: MaskingData) -> np.ndarray:
    """(T,) AUC of the model on the unmasked cohort (scored exactly as the masked sets are)."""
    return kernel_for(model, data).aucs([np.zeros(0, dtype=np.int64)], MaskingMode.DROP)[0]


def output_gate(data: MaskingData, baseline_auc: np.ndarray) -> pd.DataFrame:
    """Does the unmasked model predict each output on these patients? One row per output.

    Columns: output, auc (unmasked), p_value (one-sided Mann-Whitney, AUC > 0.5), q_value (BH across
    outputs). `finish` uses q_value as a floor of the sets' q-values (MaskingOptions.gate_outputs).
    """
    n_pos = data.labels.sum(axis=0)
    n_neg = data.labels.shape[0] - n_pos
    p = auc_above_chance_p(baseline_auc, n_pos, n_neg)
    return pd.DataFrame({"output": list(data.outputs), "auc": np.asarray(baseline_auc, dtype=np.float64),
                         "p_value": p, "q_value": bh_q(p)})


def _unit_aucs(plan: MaskingPlan, data: MaskingData, chunk_aucs: dict[int, np.ndarray]) -> np.ndarray:
    missing = [c.index for c in plan.chunks if c.index not in chunk_aucs]
    if missing:
        raise ValueError(f"{len(missing)} of {len(plan.chunks)} chunks have no results yet (first: {missing[0]})")
    n_out = len(data.outputs)
    unit_auc = np.full((plan.n_units, n_out), np.nan)
    for chunk in plan.chunks:
        rows = np.asarray(chunk_aucs[chunk.index], dtype=np.float64)
        if rows.shape != (len(chunk.units), n_out):
            raise ValueError(f"chunk {chunk.index}: AUCs of shape {rows.shape}, expected {(len(chunk.units), n_out)}")
        unit_auc[chunk.units] = rows
    return unit_auc


def baseline_of(plan: MaskingPlan, data: MaskingData, chunk_aucs: dict[int, np.ndarray]) -> np.ndarray:
    """(T,) the unmasked AUC, from the plan's baseline chunk."""
    chunk = plan.chunks[-1]
    if chunk.index not in chunk_aucs:
        raise ValueError(f"the baseline chunk {chunk.index} has no results yet")
    return np.asarray(chunk_aucs[chunk.index], dtype=np.float64)[list(chunk.units).index(plan.baseline_unit)]


def finish(plan: MaskingPlan, data: MaskingData, chunk_aucs: dict[int, np.ndarray], options: MaskingOptions,
           baseline_auc: np.ndarray | None = None) -> pd.DataFrame:
    """The result table from every chunk's AUCs.

    One row per (evaluated set, output): gene_set, size (genes the set lists), covered (of them, model
    genes), output, auc, null_mean (mean AUC of the set's size-matched random sets), p_value, q_value,
    and in DROP mode delta_auc = auc - unmasked auc.
      KEEP: p = (1 + #{null AUC >= auc}) / (B + 1): the set alone predicts better than random sets.
      DROP: p = (1 + #{null AUC <= auc}) / (B + 1): dropping the set hurts more than dropping random
            sets of its size ("drop hurts" is the direction tested).
    q: Benjamini-Hochberg across the evaluated sets, per output (scipy.stats.false_discovery_control);
    with options.gate_outputs, raised to at least the output's gate q-value (`output_gate`), so no set
    is called for an output the unmasked model does not predict.
    Rows are sorted by output (model order), then p-value, then effect (KEEP: higher AUC first; DROP:
    lower AUC first), then set name. `baseline_auc` (the unmasked AUC) defaults to the plan's baseline unit.
    """
    unit_auc = _unit_aucs(plan, data, chunk_aucs)
    n_out = len(data.outputs)
    n_obs, n_nulls = plan.n_observed, options.n_nulls
    observed = unit_auc[:n_obs]
    null = unit_auc[n_obs: n_obs + len(plan.nulls) * n_nulls].reshape(len(plan.nulls), n_nulls, n_out)
    baseline = unit_auc[plan.baseline_unit] if baseline_auc is None else np.asarray(baseline_auc, dtype=np.float64)
    drop = options.mode == MaskingMode.DROP
    p = np.full_like(observed, np.nan)
    null_mean = np.full_like(observed, np.nan)
    for j in range(len(plan.nulls)):
        members = np.flatnonzero(plan.set_bin == j)
        p[members] = empirical_p(observed[members], null[j], greater=not drop)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN output (one class) stays NaN
            null_mean[members] = np.nanmean(null[j], axis=0)
    q = np.column_stack([bh_q(p[:, t]) for t in range(n_out)])
    if options.gate_outputs:
        gate = output_gate(data, baseline)["q_value"].to_numpy()
        q = np.fmax(q, gate[None, :]) if n_obs else q
        q[np.isnan(p)] = np.nan

    sets = [plan.sets[i] for i in plan.observed]
    columns = {
        "gene_set": np.repeat(np.array([s.name for s in sets], dtype=object), n_out),
        "size": np.repeat(np.array([len(s.genes) for s in sets], dtype=np.int64), n_out),
        "covered": np.repeat(np.array([len(plan.covered[i]) for i in plan.observed], dtype=np.int64), n_out),
        "output": np.tile(np.array(data.outputs, dtype=object), n_obs),
        "auc": observed.reshape(-1),
        "null_mean": null_mean.reshape(-1),
        "p_value": p.reshape(-1),
        "q_value": q.reshape(-1),
    }
    if drop:
        columns["delta_auc"] = (observed - baseline[None, :]).reshape(-1)
    table = pd.DataFrame(columns)
    output_rank = np.tile(np.arange(n_out), n_obs)
    effect = table["auc"].to_numpy() if drop else -table["auc"].to_numpy()
    order = np.lexsort((table["gene_set"].to_numpy(dtype=str), effect, table["p_value"].to_numpy(), output_rank))
    return table.iloc[order].reset_index(drop=True)


@dataclass
class MaskingResult:
    """A finished run: the table (see `finish`), the skipped sets with reasons, wall seconds, masked
    evaluations done, and per output the unmasked AUC and its gate test (`output_gate`)."""

    table: pd.DataFrame
    skipped: dict[str, str]
    seconds: float
    evaluations: int
    outputs: pd.DataFrame | None = None


def _chunk_task(kernel: MaskingKernel, gene_lists: list[np.ndarray], mode: str) -> np.ndarray:
    return kernel.aucs(gene_lists, mode)


def _run_on_ray(kernel: MaskingKernel, plan: MaskingPlan, bar: tqdm, address: str | None) -> dict[int, np.ndarray]:
    import ray

    from radiogenomics.raycluster import ray_session

    results: dict[int, np.ndarray] = {}
    with ray_session(address):
        # SPREAD: chunks are short, and Ray would otherwise keep reusing a worker leased on the driver's node.
        task = ray.remote(num_cpus=1, max_retries=2, scheduling_strategy="SPREAD")(_chunk_task)
        kernel_ref = ray.put(kernel)  # once: every task reads the same copy from the object store
        limit = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        queue = list(range(len(plan.chunks)))
        pending: dict = {}
        while queue or pending:
            while queue and len(pending) < limit:
                k = queue.pop(0)
                pending[task.remote(kernel_ref, plan.chunk_genes(k), plan.options.mode.value)] = k
            ready, _ = ray.wait(list(pending), num_returns=1)
            k = pending.pop(ready[0])
            results[k] = ray.get(ready[0])
            bar.update(len(plan.chunks[k]))
    return results


def run_masking(model: LoadedModel, data: MaskingData, library: list[GeneSet], options: MaskingOptions, *,
                address: str | None = None, use_ray: bool = True, progress: bool = False) -> MaskingResult:
    """Mask every set of the library (and its null sets) and return the statistics table.

    use_ray: chunks run as Ray tasks (the kernel is put in the object store once) on the Ray this
    process is connected to, else on `address`, else on a local Ray bound to 127.0.0.1 that is
    shut down afterwards; use_ray=False runs the chunks in this process. Progress (masked
    evaluations) goes to stderr.
    """
    started = time.perf_counter()
    plan = make_plan(model, library, options)
    kernel = MaskingKernel(model, data)
    with tqdm(total=plan.n_units, desc="mask", unit="set", disable=not progress, file=sys.stderr) as bar:
        if use_ray:
            results = _run_on_ray(kernel, plan, bar, address)
        else:
            results = {}
            for chunk in plan.chunks:
                results[chunk.index] = kernel.aucs(plan.chunk_genes(chunk.index), options.mode)
                bar.update(len(chunk))
    table = finish(plan, data, results, options)
    outputs = output_gate(data, baseline_of(plan, data, results))
    return MaskingResult(table=table, skipped=dict(plan.skipped), seconds=time.perf_counter() - started,
                         evaluations=plan.n_units, outputs=outputs)
