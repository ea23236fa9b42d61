"""What a masking run does: the mode and the knobs of the null distribution and the work split."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from numbers import Integral

from radiogenomics.errors import InputError


class MaskingMode(str, Enum):
    """KEEP: only the set's genes are kept, every other gene sits at its training mean (z = 0).
    DROP: the set's genes are put at their training mean, every other gene is kept."""

    KEEP = "keep"
    DROP = "drop"


@dataclass(frozen=True)
class MaskingOptions:
    """Options of one masking run.

    n_nulls     random gene sets drawn per null size (the empirical null of every set of that size);
                p-values cannot go below 1 / (n_nulls + 1).
    seed        the null sets are a function of (seed, null size) only, so a run is reproducible and
                two libraries masked with the same seed share their nulls.
    min_covered sets covering fewer model genes than this are skipped (and reported with the reason).
    size_bins   True: a set is compared with random sets of a *binned* size, so sets of similar size
                share one null. Sizes 1..16 are their own bins; above 16, bins are geometric, 8 per
                doubling of the size (bin b holds sizes in [16 * 2**(j/8), 16 * 2**((j+1)/8))), and
                the null sets of a bin have the bin's geometric-centre size (rounded), so a null set
                differs from the sets it serves by at most 5.5 % in size (one gene for sets under 30
                genes). False: one null per distinct covered size.
    chunk_sets  gene sets (observed and null together) per unit of work (a Ray task, a resumable step).
    gate_outputs  True: a set's q-value is at least its output's q-value for "the unmasked model
                predicts this output on these patients" (one-sided Mann-Whitney test of the unmasked
                AUC > 0.5, BH across outputs): sets are only called for outputs the model predicts.
                Without it a model that learned nothing still "finds" gene sets: a set of co-expressed
                genes whose program drives an output, weighted by arbitrary weights, predicts that
                output well in half the cases (the sign is a coin flip), far better than random gene
                sets of its size, which are not co-expressed (measured in tests/test_masking.py).
    """

    mode: MaskingMode = MaskingMode.KEEP
    n_nulls: int = 1000
    seed: int = 0
    min_covered: int = 1
    size_bins: bool = True
    chunk_sets: int = 256
    gate_outputs: bool = True

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", MaskingMode(self.mode))
        except ValueError:
            raise InputError(f"masking mode {self.mode!r} is not one of: keep, drop") from None
        for name, low in (("n_nulls", 1), ("min_covered", 1), ("chunk_sets", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
                raise InputError(f"masking option {name} must be a whole number >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))
