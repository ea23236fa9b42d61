"""The fast masked forward pass: only the first layer sees the mask, and it needs only the set's columns.

With every gene outside S at its training mean (z = 0), the first Linear layer's pre-activation
is W[:, S] z_S + b (KEEP); with S at the mean and the rest kept it is the full pre-activation
minus W[:, S] z_S (DROP). So a masked evaluation costs n * |S| * H multiply-adds in the first
layer instead of n * G * H, and many sets (observed and null) go through the rest of the network
in one batch of (sets x patients) rows.

`MaskingKernel` holds what that needs, built once per (model, cohort): the first-layer weights of
every member network stacked side by side (a PerTargetNet's members each have their own first
layer; so does every network of an ensemble, whose masked probabilities are averaged as the
served model averages them), the first BatchNorm folded into a scale and shift, the z-scored cohort, its unmasked
pre-activation (computed in float64), and the rest of each member network.

Precision: by default everything runs in float32, like the model itself; the results equal a dense
masked forward pass of the model to float32 round-off (~1e-7 on probabilities; the tests ask for
1e-5), at twice the speed of float64. Patients with bit-identical masked inputs get bit-identical
scores (`_tie_identical_rows`: a matrix kernel alone does not promise it, it may sum the rows of a
block and of its remainder in different orders), so ties stay ties on every machine.
dtype=torch.float64 computes in float64 (equal to a float64 dense pass to ~1e-15); its scores are
rounded to 40 significant bits before ranking, so patients with identical inputs tie exactly
whatever order the arithmetic summed in.

Scores are log-probabilities: log-softmax of the histology logits (one column per class; the AUC
of a class is one-vs-rest on it) and log-sigmoid of the feature logits. Both are monotone in the
probabilities the model reports, so AUCs are the same, but they do not saturate at 0 or 1.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from radiogenomics.errors import InputError
from radiogenomics.masking.data import MaskingData
from radiogenomics.masking.options import MaskingMode
from radiogenomics.masking.stats import auc_many
from radiogenomics.registry import LoadedModel
from radiogenomics.training.network import EnsembleNet, PerTargetNet, SharedNet

_BUDGET_BYTES = 96 * 2**20  # temporary memory per batch of sets
TIE_BITS = 40  # scores are rounded to this many significant bits before ranking


def tie_round(x: np.ndarray, bits: int = TIE_BITS) -> np.ndarray:
    """Round to `bits` significant bits, so values equal up to float64 round-off compare equal."""
    mantissa, exponent = np.frexp(x)
    return np.ldexp(np.round(mantissa * 2.0**bits) / 2.0**bits, exponent)


def _tie_identical_rows(h: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Give patients whose first-layer rows are bit-identical (within a set) bit-identical scores.

    Identical masked inputs are common (every gene dropped; one gene whose expression is clipped at
    the same floor), but a matrix kernel may sum identical rows in different orders (a block and
    its remainder), so their scores can differ in the last bit and an AUC would rank that noise.
    Rows are hashed with exact integer arithmetic (order-independent), candidates are confirmed
    bit for bit, and each duplicate takes the score of the first patient with the same row.
    """
    s, n, width = h.shape
    if n < 2:
        return scores
    bits = np.ascontiguousarray(h + h.dtype.type(0.0))  # -0.0 == 0.0
    bits = bits.view(np.uint32 if h.dtype == np.float32 else np.uint64).astype(np.uint64)
    multipliers = np.random.default_rng(0x5EED).integers(1, 2**63, size=bits.shape[-1], dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        keys = (bits * multipliers).sum(axis=-1, dtype=np.uint64)  # wraps modulo 2**64: exact, any order
    order = np.argsort(keys, axis=1, kind="stable")
    ordered = np.take_along_axis(keys, order, axis=1)
    repeat = ordered[:, 1:] == ordered[:, :-1]
    if not repeat.any():
        return scores
    # the first position of each key run is its representative (the lowest patient index: stable sort)
    position = np.broadcast_to(np.arange(n), (s, n))
    run_start = np.maximum.accumulate(np.where(np.concatenate([np.ones((s, 1), bool), ~repeat], axis=1), position, 0), axis=1)
    representative = np.empty_like(order)
    np.put_along_axis(representative, order, np.take_along_axis(order, run_start, axis=1), axis=1)
    sets, rows = np.nonzero(representative != np.arange(n))
    reps = representative[sets, rows]
    same = (h[sets, rows] == h[sets, reps]).all(axis=1)  # a hash collision is not a tie
    scores = scores.copy()
    scores[sets[same], rows[same]] = scores[sets[same], reps[same]]
    return scores


@dataclass
class _Member:
    """One member network after its first Linear + BatchNorm: its columns of the stacked first layer,
    the rest of its trunk and its heads (copies in the kernel's dtype), and where its outputs go."""

    columns: slice
    rest: nn.Sequential  # activation, dropout, later blocks (eval mode)
    histology: nn.Linear | None
    histology_columns: slice | None
    features: nn.Linear | None
    features_columns: slice | None
    ensemble_member: int = 0  # which network of an ensemble this belongs to


def _split_member(net: SharedNet) -> tuple[nn.Linear, nn.BatchNorm1d, nn.Sequential]:
    layers = list(net.trunk.layers)
    if len(layers) < 3 or not isinstance(layers[1], nn.Linear) or not isinstance(layers[2], nn.BatchNorm1d):
        raise InputError("masking supports networks whose trunk starts Dropout -> Linear -> BatchNorm1d; this model's does not")
    bn = layers[2]
    if bn.running_mean is None or bn.running_var is None:
        raise InputError("masking needs BatchNorm running statistics (the model was not trained in this code's eval-ready form)")
    rest = copy.deepcopy(nn.Sequential(*layers[3:])).eval()
    return layers[1], bn, rest


def _members(model: LoadedModel) -> list[tuple[SharedNet, slice | None, slice | None, int]]:
    """The member networks, the output columns their histology / feature heads fill, and the ensemble
    network each belongs to (0 for a single network)."""
    net = model.net
    nets = list(net.members) if isinstance(net, EnsembleNet) else [net]
    return [(*member, e) for e, one in enumerate(nets) for member in _networks(one, model.spec)]


def _networks(net: nn.Module, spec) -> list[tuple[SharedNet, slice | None, slice | None]]:
    n_hist = len(spec.histology_classes) if spec.has_histology else 0
    n_feat = len(spec.features)
    if isinstance(net, SharedNet):
        return [(net, slice(0, n_hist) if net.histology is not None else None,
                 slice(n_hist, n_hist + n_feat) if net.features is not None else None)]
    if isinstance(net, PerTargetNet):
        out: list[tuple[SharedNet, slice | None, slice | None]] = []
        if net.histology is not None:
            out.append((net.histology, slice(0, n_hist), None))
        out += [(member, None, slice(n_hist + j, n_hist + j + 1)) for j, member in enumerate(net.features)]
        return out
    raise InputError(f"masking supports SharedNet, PerTargetNet and EnsembleNet models, not {type(net).__name__}")


class MaskingKernel:
    """The masked forward pass and its AUCs for one (model, cohort); picklable (it is what Ray tasks get)."""

    def __init__(self, model: LoadedModel, data: MaskingData, dtype: torch.dtype = torch.float32) -> None:
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, not {dtype}")
        self.dtype = dtype
        if data.z.shape[1] != len(model.genes):
            raise InputError(f"masking data has {data.z.shape[1]} genes but the model has {len(model.genes)}")
        if list(data.outputs) != list(model.spec.names):
            raise InputError("masking data outputs do not match the model's outputs; prepare() the data with this model")
        members = _members(model)
        n_genes, n = len(model.genes), data.n_patients
        weights, scale, shift = [], [], []
        self.members: list[_Member] = []
        start = 0
        np_dtype = np.float32 if dtype == torch.float32 else np.float64
        with torch.no_grad():
            for net, hist_cols, feat_cols, ensemble_member in members:
                linear, bn, rest = _split_member(net)
                width = linear.out_features
                s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                weights.append(linear.weight.detach().float())
                scale.append(s)
                shift.append((linear.bias.double() - bn.running_mean.double()) * s + bn.bias.double())
                self.members.append(_Member(
                    columns=slice(start, start + width), rest=rest.to(dtype),
                    histology=None if hist_cols is None else copy.deepcopy(net.histology).to(dtype).eval(),
                    histology_columns=hist_cols,
                    features=None if feat_cols is None else copy.deepcopy(net.features).to(dtype).eval(),
                    features_columns=feat_cols, ensemble_member=ensemble_member,
                ))
                start += width
            w = torch.cat(weights, dim=0)  # (H, G) float32
            self.width = start
            self.n_ensemble = 1 + max(m.ensemble_member for m in self.members)
            self.n_outputs = len(model.spec.names)
            # Row n_genes of both gathered tables is zero: the padding index of short sets.
            self.wt = np.zeros((n_genes + 1, self.width), dtype=np_dtype)
            self.wt[:n_genes] = w.T.numpy()
            self.zt = np.zeros((n_genes + 1, n), dtype=np_dtype)
            self.zt[:n_genes] = data.z.T
            self.scale = torch.cat(scale).numpy().astype(np_dtype)
            self.shift = torch.cat(shift).numpy().astype(np_dtype)
            # (n, H) without bias, summed in float64 whatever the working precision
            self.full = (torch.from_numpy(data.z.astype(np.float64)) @ w.double().T).numpy().astype(np_dtype)
        self.labels = np.asarray(data.labels, dtype=np.float64)
        self.n_genes, self.n_patients = n_genes, n
        self._tensors()

    # Ray hands workers read-only (zero-copy) arrays; torch views of them are only ever read.
    def _tensors(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._wt = torch.from_numpy(self.wt)
            self._zt = torch.from_numpy(self.zt)
            self._scale = torch.from_numpy(self.scale)
            self._shift = torch.from_numpy(self.shift)
            self._full = torch.from_numpy(self.full)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._tensors()

    def _batch_size(self, kmax: int) -> int:
        per_set = self.wt.itemsize * (max(kmax, 1) * (self.n_patients + self.width) + 3 * self.n_patients * self.width)
        return max(1, _BUDGET_BYTES // per_set)

    def _first_layer(self, gene_lists: Sequence[np.ndarray], mode: MaskingMode) -> torch.Tensor:
        """First-layer outputs after BatchNorm, (S, n, H), for the masked inputs."""
        s, kmax = len(gene_lists), max((len(g) for g in gene_lists), default=0)
        if kmax == 0:
            lin = torch.zeros((s, self.n_patients, self.width), dtype=self.dtype)
        else:
            idx = np.full((s, kmax), self.n_genes, dtype=np.int64)
            for row, genes in enumerate(gene_lists):
                idx[row, : len(genes)] = genes
            flat = torch.from_numpy(idx.reshape(-1))
            z = self._zt.index_select(0, flat).reshape(s, kmax, self.n_patients)
            w = self._wt.index_select(0, flat).reshape(s, kmax, self.width)
            if kmax == 1:
                lin = z[:, 0, :, None] * w[:, 0, None, :]
            else:
                lin = torch.bmm(z.transpose(1, 2), w)
        if mode == MaskingMode.DROP:
            lin = self._full.unsqueeze(0) - lin
        return lin * self._scale + self._shift

    def _rest(self, h: torch.Tensor) -> torch.Tensor:
        """Log-probability scores (rows, T) from first-layer BatchNorm outputs (rows, H)."""
        out = torch.empty((self.n_ensemble, h.shape[0], self.n_outputs), dtype=self.dtype)
        for member in self.members:
            x = member.rest(h[:, member.columns])
            if member.histology is not None:
                out[member.ensemble_member, :, member.histology_columns] = torch.log_softmax(member.histology(x), dim=1)
            if member.features is not None:
                out[member.ensemble_member, :, member.features_columns] = nn.functional.logsigmoid(member.features(x))
        if self.n_ensemble == 1:
            return out[0]
        return torch.logsumexp(out, dim=0) - math.log(self.n_ensemble)  # log of the members' mean probability

    def scores(self, gene_lists: Sequence[np.ndarray], mode: MaskingMode | str) -> np.ndarray:
        """(S, n, T) log-probabilities (kernel dtype) of the model on the masked inputs, one slab per gene list.

        KEEP: each list's genes keep their z-scores, every other gene is 0 (its training mean).
        DROP: each list's genes are 0, every other gene keeps its z-score.
        """
        mode = MaskingMode(mode)
        out = np.empty((len(gene_lists), self.n_patients, self.n_outputs), dtype=self.wt.dtype)
        if mode == MaskingMode.DROP:
            # Dropping most genes is keeping the few others: computed that way it is cheaper and
            # free of the cancellation in (full - almost full).
            big = [i for i, g in enumerate(gene_lists) if 2 * len(g) > self.n_genes]
            if big:
                small = [i for i in range(len(gene_lists)) if 2 * len(gene_lists[i]) <= self.n_genes]
                out[small] = self._scores([gene_lists[i] for i in small], MaskingMode.DROP)
                out[big] = self._scores([self._complement(gene_lists[i]) for i in big], MaskingMode.KEEP)
                return out
        out[:] = self._scores(list(gene_lists), mode)
        return out

    def _complement(self, genes: np.ndarray) -> np.ndarray:
        keep = np.ones(self.n_genes, dtype=bool)
        keep[np.asarray(genes, dtype=np.int64)] = False
        return np.flatnonzero(keep)

    def _scores(self, gene_lists: list[np.ndarray], mode: MaskingMode) -> np.ndarray:
        out = np.empty((len(gene_lists), self.n_patients, self.n_outputs), dtype=self.wt.dtype)
        if not gene_lists:
            return out
        kmax = max(len(g) for g in gene_lists)
        step = self._batch_size(kmax)
        with torch.no_grad():
            for start in range(0, len(gene_lists), step):
                part = gene_lists[start: start + step]
                h = self._first_layer(part, mode)
                scores = self._rest(h.reshape(-1, self.width)).reshape(len(part), self.n_patients, -1).numpy()
                out[start: start + len(part)] = _tie_identical_rows(h.numpy(), scores)
        return out

    def probabilities(self, gene_lists: Sequence[np.ndarray], mode: MaskingMode | str) -> np.ndarray:
        """(S, n, T) probabilities as the model reports them (softmax per class, sigmoid per feature)."""
        return np.exp(self.scores(gene_lists, mode).astype(np.float64))

    def aucs(self, gene_lists: Sequence[np.ndarray], mode: MaskingMode | str) -> np.ndarray:
        """(S, T) float64 AUC of every output for every gene list (float64 scores rounded by `tie_round`)."""
        kmax = max((len(g) for g in gene_lists), default=0)
        step = max(1, min(len(gene_lists), self._batch_size(kmax)))
        ranked = tie_round if self.dtype == torch.float64 else (lambda x: x)
        parts = [auc_many(ranked(self.scores(gene_lists[i: i + step], mode)), self.labels)
                 for i in range(0, len(gene_lists), step)]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_outputs))
