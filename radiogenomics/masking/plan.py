"""The plan of a masking run: which genes each set covers, the size-matched null sets, the work chunks.

Everything to evaluate is a *unit*: a list of model gene indices to keep (KEEP) or to drop (DROP).
Unit ids are laid out as
    [0, n_observed)                      the library's sets that are not skipped, in library order
    [n_observed, n_observed + bins * B)  the null sets: bin j, replicate r -> n_observed + j * B + r
    one last unit, the baseline          the unmasked model (KEEP: every gene kept; DROP: nothing
                                         dropped): the AUC the change in AUC is measured from and the
                                         output gate of `finish` tests
Units are sorted by size and cut into chunks of `chunk_sets`, so a chunk's sets have similar sizes
(little padding in the batched gather); the baseline is a chunk of its own, the last. The plan is a pure function of (model genes, library,
options): a job that is interrupted can rebuild it and resume at the first missing chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from radiogenomics.errors import GeneSetError
from radiogenomics.gene_sets import GeneSet
from radiogenomics.masking.library import check_library
from radiogenomics.masking.options import MaskingMode, MaskingOptions
from radiogenomics.registry import LoadedModel

EXACT_SIZES = 16  # sizes up to this are their own null bin
BINS_PER_DOUBLING = 8  # above it, geometric bins: 8 per doubling (ratio 2 ** (1/8) ~ 1.09)


def size_bin(size: int) -> int:
    """The null bin of a covered size (see MaskingOptions.size_bins)."""
    if size <= EXACT_SIZES:
        return size
    return EXACT_SIZES + 1 + math.floor(BINS_PER_DOUBLING * math.log2(size / EXACT_SIZES))


def bin_size(bin_id: int, n_genes: int) -> int:
    """The size of the null sets of a bin: the bin's geometric centre, rounded, inside the bin, at most n_genes."""
    if bin_id <= EXACT_SIZES:
        return min(bin_id, n_genes)
    j = bin_id - EXACT_SIZES - 1
    low = EXACT_SIZES * 2 ** (j / BINS_PER_DOUBLING)
    high = EXACT_SIZES * 2 ** ((j + 1) / BINS_PER_DOUBLING)
    first, last = max(EXACT_SIZES + 1, math.ceil(low)), math.ceil(high) - 1
    centre = round(EXACT_SIZES * 2 ** ((j + 0.5) / BINS_PER_DOUBLING))
    return int(min(max(centre, first), last, n_genes))


def draw_nulls(size: int, n_nulls: int, n_genes: int, seed: int) -> np.ndarray:
    """(n_nulls, size) sorted gene indices: random sets drawn without replacement; a function of (seed, size) only."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, size]))
    out = np.empty((n_nulls, size), dtype=np.int64)
    for r in range(n_nulls):
        out[r] = np.sort(rng.choice(n_genes, size=size, replace=False))
    return out


@dataclass(frozen=True)
class Chunk:
    """One unit of work: the unit ids it evaluates, in the order its AUC rows come back."""

    index: int
    units: np.ndarray  # int64 unit ids
    n_observed: int  # ids below this are observed sets (positions in MaskingPlan.observed)

    @property
    def observed(self) -> np.ndarray:
        """Observed units of this chunk (unit id == position in MaskingPlan.observed)."""
        return self.units[self.units < self.n_observed]

    @property
    def nulls(self) -> np.ndarray:
        """Null and baseline units of this chunk."""
        return self.units[self.units >= self.n_observed]

    def __len__(self) -> int:
        return len(self.units)


@dataclass
class MaskingPlan:
    """Everything a masking run evaluates, decided before any work (see the module docstring)."""

    sets: list[GeneSet]  # the library as given
    covered: list[np.ndarray]  # per set: the model gene indices it covers (int64, sorted; empty if none)
    skipped: dict[str, str]  # set name -> why it is not evaluated
    observed: np.ndarray  # positions in `sets` of the evaluated sets (unit id i -> sets[observed[i]])
    null_sizes: np.ndarray  # (bins,) size of each null bin's random sets
    set_bin: np.ndarray  # (len(observed),) null bin of each evaluated set
    nulls: list[np.ndarray]  # per bin: (n_nulls, size) gene indices of its random sets
    chunks: list[Chunk]
    options: MaskingOptions
    n_genes: int

    @property
    def n_observed(self) -> int:
        return len(self.observed)

    @property
    def n_units(self) -> int:
        """Masked evaluations the plan needs (observed + null + the baseline)."""
        return self.n_observed + len(self.nulls) * self.options.n_nulls + 1

    @property
    def baseline_unit(self) -> int:
        """The unit of the unmasked model (KEEP: all genes kept; DROP: nothing dropped)."""
        return self.n_observed + len(self.nulls) * self.options.n_nulls

    def unit_genes(self, unit: int) -> np.ndarray:
        """The gene indices a unit keeps (KEEP) or drops (DROP)."""
        if unit < self.n_observed:
            return self.covered[int(self.observed[unit])]
        rest = unit - self.n_observed
        n_nulls = self.options.n_nulls
        if rest < len(self.nulls) * n_nulls:
            return self.nulls[rest // n_nulls][rest % n_nulls]
        if unit == self.baseline_unit:
            if self.options.mode == MaskingMode.KEEP:
                return np.arange(self.n_genes, dtype=np.int64)
            return np.zeros(0, dtype=np.int64)
        raise IndexError(f"unit {unit} is not in the plan ({self.n_units} units)")

    def unit_size(self, unit: int) -> int:
        return len(self.unit_genes(unit))

    def chunk_genes(self, chunk_index: int) -> list[np.ndarray]:
        """The gene lists of a chunk's units, in the chunk's order."""
        return [self.unit_genes(int(u)) for u in self.chunks[chunk_index].units]


def make_plan(model: LoadedModel, library: list[GeneSet], options: MaskingOptions) -> MaskingPlan:
    """Map the library onto the model's genes, draw the null sets and cut the work into chunks.

    Genes are matched to the model's genes by exact symbol. A set covering fewer than
    `options.min_covered` model genes is skipped, with the reason. Refuses (GeneSetError) an
    empty library, repeated set names, and a library of which no set is left to evaluate.
    Limits (sets per job...) are the caller's business.
    """
    check_library(library)
    n_genes = len(model.genes)
    index = model.gene_index
    covered: list[np.ndarray] = []
    skipped: dict[str, str] = {}
    observed: list[int] = []
    for i, gene_set in enumerate(library):
        genes = np.array(sorted({index[g] for g in gene_set.genes if g in index}), dtype=np.int64)
        covered.append(genes)
        if len(gene_set.genes) == 0:
            skipped[gene_set.name] = "lists no genes"
        elif len(genes) == 0:
            skipped[gene_set.name] = f"none of its {len(gene_set.genes)} genes is a model gene"
        elif len(genes) < options.min_covered:
            skipped[gene_set.name] = (f"covers {len(genes)} of its {len(gene_set.genes)} genes in the model, "
                                      f"fewer than min_covered={options.min_covered}")
        else:
            observed.append(i)
    if not observed:
        if not any(len(c) for c in covered):
            raise GeneSetError(f"none of the {len(library)} gene sets covers any of the model's {n_genes} genes; "
                               "check that the library uses the model's gene symbols (e.g. HGNC symbols)")
        raise GeneSetError(f"every one of the {len(library)} gene sets covers fewer than min_covered={options.min_covered} "
                           "model genes; lower min_covered or use another library")

    sizes = np.array([len(covered[i]) for i in observed], dtype=np.int64)
    keys = [size_bin(int(s)) if options.size_bins else int(s) for s in sizes]
    distinct = sorted(set(keys))
    bin_of_key = {k: j for j, k in enumerate(distinct)}
    null_sizes = np.array([bin_size(k, n_genes) if options.size_bins else min(k, n_genes) for k in distinct], dtype=np.int64)
    set_bin = np.array([bin_of_key[k] for k in keys], dtype=np.int64)
    nulls = [draw_nulls(int(size), options.n_nulls, n_genes, options.seed) for size in null_sizes]

    unit_sizes = np.concatenate([sizes, np.repeat(null_sizes, options.n_nulls)])
    order = np.argsort(unit_sizes, kind="stable").astype(np.int64)
    n_observed = len(observed)
    chunks = [Chunk(index=k, units=order[start: start + options.chunk_sets], n_observed=n_observed)
              for k, start in enumerate(range(0, len(order), options.chunk_sets))]
    baseline = n_observed + len(null_sizes) * options.n_nulls
    chunks.append(Chunk(index=len(chunks), units=np.array([baseline], dtype=np.int64), n_observed=n_observed))
    return MaskingPlan(sets=list(library), covered=covered, skipped=skipped, observed=np.array(observed, dtype=np.int64),
                       null_sizes=null_sizes, set_bin=set_bin, nulls=nulls, chunks=chunks, options=options, n_genes=n_genes)
