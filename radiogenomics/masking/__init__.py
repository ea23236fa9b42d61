"""Gene masking: how well each gene set *alone* (KEEP) still predicts each output, or how much
dropping it (DROP) hurts, scored as AUC on held-out patients against size-matched random gene sets.

    data = prepare(model, cohort)                      # checked held-out cohort
    library = library_from_gmt("h.all.gmt")            # or library_single_genes(model)
    result = run_masking(model, data, library, MaskingOptions(n_nulls=1000))
    result.table                                       # gene_set, size, covered, output, auc, null_mean, p_value, q_value

A job service can instead run `make_plan` -> `evaluate_chunk` (one chunk at a time, persisting
each) -> `finish`. The speed comes from the first layer: see `radiogenomics.masking.fast`.
"""

from radiogenomics.masking.data import MaskingData, prepare
from radiogenomics.masking.fast import MaskingKernel
from radiogenomics.masking.library import library_from_gmt, library_single_genes
from radiogenomics.masking.options import MaskingMode, MaskingOptions
from radiogenomics.masking.plan import Chunk, MaskingPlan, make_plan
from radiogenomics.masking.run import (
    COLUMNS,
    DROP_COLUMNS,
    MaskingResult,
    baseline_of,
    evaluate_chunk,
    finish,
    output_gate,
    run_masking,
    unmasked_auc,
)

__all__ = [
    "COLUMNS", "DROP_COLUMNS", "Chunk", "MaskingData", "MaskingKernel", "MaskingMode", "MaskingOptions",
    "MaskingPlan", "MaskingResult", "baseline_of", "evaluate_chunk", "finish", "library_from_gmt", "library_single_genes",
    "make_plan", "output_gate", "prepare", "run_masking", "unmasked_auc",
]
