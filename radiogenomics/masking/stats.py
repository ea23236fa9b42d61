"""Statistics of masking: many AUCs at once, empirical p-values against size-matched nulls, BH q-values."""

from __future__ import annotations

import numpy as np
from scipy.stats import false_discovery_control, norm


def _tie_groups(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For values sorted along the last axis: each position's tie group's first and last position."""
    n = xs.shape[-1]
    starts_group = np.ones(xs.shape, dtype=bool)
    np.not_equal(xs[..., 1:], xs[..., :-1], out=starts_group[..., 1:])
    ends_group = np.ones(xs.shape, dtype=bool)
    ends_group[..., :-1] = starts_group[..., 1:]
    position = np.arange(n, dtype=np.int32)
    first = np.maximum.accumulate(np.where(starts_group, position, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends_group, position, n - 1), axis=-1), axis=-1), axis=-1)
    return first, last


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks (1-based) along the last axis, tied values sharing their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, axis=-1)
    first, last = _tie_groups(np.take_along_axis(x, order, axis=-1))
    ranks = np.empty(x.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    return ranks


def _sortable_float32(x: np.ndarray) -> np.ndarray:
    """int32 keys whose order is the float32 values' order (-0.0 and 0.0 equal)."""
    bits = (np.asarray(x, dtype=np.float32) + np.float32(0.0)).view(np.int32)
    bits ^= (bits >> 31) & 0x7FFFFFFF
    return bits


def _mann_whitney_u(by_output: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """U statistic (positives above negatives, ties one half) along the last axis of (S, T, n) scores.

    float32 scores take a fast path: one SIMD sort of keys (value << 1 | label) instead of an
    argsort, the U from cumulative negative counts, and a tie correction only where ties exist.
    """
    if by_output.dtype == np.float32:
        keys = _sortable_float32(by_output).astype(np.int64)
        keys <<= 1
        keys |= positive[None]
        keys.sort(axis=-1)
        label = (keys & 1).astype(bool)
        values = keys >> 1
    else:
        order = np.argsort(by_output + 0.0, axis=-1)
        values = np.take_along_axis(by_output + 0.0, order, axis=-1)
        label = np.take_along_axis(np.broadcast_to(positive[None], by_output.shape), order, axis=-1)
        # negatives first within a tie group, as the key sort leaves them
        order = np.lexsort((label, values), axis=-1)
        values = np.take_along_axis(values, order, axis=-1)
        label = np.take_along_axis(label, order, axis=-1)
    negatives_so_far = np.cumsum(~label, axis=-1, dtype=np.int32)
    u = (negatives_so_far * label).sum(axis=-1, dtype=np.int64).astype(np.float64)  # tied negatives counted fully
    tied = (values[..., 1:] == values[..., :-1]).any(axis=-1)
    if tied.any():
        v, lab, neg = values[tied], label[tied], negatives_so_far[tied]
        first, _ = _tie_groups(v)
        before_group = np.where(first > 0, np.take_along_axis(neg, np.maximum(first - 1, 0), axis=-1), 0)
        tied_negatives = neg - before_group  # negatives of the group at or before this position = all of them
        u[tied] -= 0.5 * np.where(lab, tied_negatives, 0).sum(axis=-1)
    return u


def auc_many(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of many score sets at once, by the Mann-Whitney U statistic (ties count one half).

    scores (S, n, T): S score sets for n patients and T outputs; labels (n, T) binary.
    Returns (S, T) float64, equal to sklearn's roc_auc_score per (set, output), NaN where an
    output has a single class. U is a multiple of 1/2, so equal AUCs are bit-identical (the
    empirical p-values compare them exactly).
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=np.float64)
    if scores.ndim != 3 or labels.shape != scores.shape[1:]:
        raise ValueError(f"scores {scores.shape} must be (sets, patients, outputs) matching labels {labels.shape}")
    by_output = np.ascontiguousarray(np.moveaxis(scores, 1, 2))  # (S, T, n)
    u = _mann_whitney_u(by_output, labels.T > 0.5)
    n_pos = labels.sum(axis=0)
    n_neg = labels.shape[0] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u / (n_pos * n_neg)
    auc[:, (n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def empirical_p(observed: np.ndarray, null: np.ndarray, greater: bool = True) -> np.ndarray:
    """Empirical p-values with the +1 correction, for many observations against one null per output.

    observed (m, T) statistics; null (B, T) null statistics of the same kind.
    greater=True:  p = (1 + #{null >= observed}) / (B + 1)   (a larger statistic is the effect);
    greater=False: p = (1 + #{null <= observed}) / (B + 1)   (a smaller statistic is the effect).
    NaN where the observation is NaN or the output's null has NaNs. Uses sorted nulls and binary
    search, so a million observations against one null cost O((m + B) log B).
    """
    observed = np.asarray(observed, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    n_null = null.shape[0]
    p = np.full(observed.shape, np.nan)
    for t in range(observed.shape[1]):
        column = null[:, t]
        if np.isnan(column).any():
            continue
        ordered = np.sort(column)
        x = observed[:, t]
        if greater:
            count = n_null - np.searchsorted(ordered, x, side="left")
        else:
            count = np.searchsorted(ordered, x, side="right")
        p[:, t] = np.where(np.isnan(x), np.nan, (1.0 + count) / (n_null + 1.0))
    return p


def bh_q(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of one family (scipy), NaN p-values left out of the family and kept NaN."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = ~np.isnan(p)
    if finite.any():
        q[finite] = false_discovery_control(p[finite], method="bh")
    return q


def auc_above_chance_p(auc: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray) -> np.ndarray:
    """One-sided p-value of AUC > 0.5 (Mann-Whitney U, normal approximation without tie correction,
    which is conservative when scores tie). NaN where the AUC is NaN."""
    auc = np.asarray(auc, dtype=np.float64)
    n_pos = np.asarray(n_pos, dtype=np.float64)
    n_neg = np.asarray(n_neg, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt((n_pos + n_neg + 1.0) / (12.0 * n_pos * n_neg))
        return np.where(np.isnan(auc), np.nan, norm.sf((auc - 0.5) / sd))
