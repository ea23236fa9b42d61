"""The deep feed-forward network (PyTorch) and its training loop.

Architecture (the authors' design): dropout on the input, then up to 5 blocks of
Linear -> BatchNorm -> activation -> Dropout, then the output layer. Trained on an input stage's
outputs (`inputs.py`; `staged`), a BatchNorm standardises them first and there may be no block at
all (depth 0: a linear model), the stage being folded into the first layer at export (`fold.py`).
Two designs:
  shared      one trunk, a histology head (softmax over the classes) and one logit per radiomic
              feature (each a binary class);
  per_target  one independent network per target, as the authors trained them.
With `modules` (depth 0, `target_screen`) the shared design is an `InteractionNet`: each output a
linear model of its own screened genes plus a sparse read-out of the module eigengenes and their
pairwise products (an `Interaction` layer), so it fits interactions and thresholds of programs;
its outputs stop training one by one. Exported as one block, the `interaction` activation, heads.
Loss: class-balanced cross-entropy for histology (weights = inverse class frequency) and
class-balanced binary cross-entropy per feature (pos_weight = negatives / positives), the two
families weighted equally. Early stopping watches the mean AUC of a validation split that the
caller provides (never the data being scored), ties broken by the validation loss (`_better`);
each output of an `InteractionNet` stops on its own validation loss, guarded by its AUC
(`_output_better`). With no validation split the network trains for a fixed number of epochs (the
refit on the whole training cohort), or each output of an `InteractionNet` for its own number.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from radiogenomics.training.readout import READOUT_BLEND, fit_class_readout
from radiogenomics.training.targets import Labels, Predictions, TargetSpec, summary_auc, target_aucs

Activation = Literal["relu", "tanh", "elu", "sigmoid", "identity", "interaction"]
#: the eigengenes' hinge knots that training uses (standardised units: below, at and above the
#: fitting rows' mean), see `tune/space.py` for what they gained
INTERACTION_KNOTS: tuple[float, ...] = (-0.5, 0.0, 0.5)
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "sigmoid": nn.Sigmoid, "identity": nn.Identity}


class Interaction(nn.Module):
    """Passes its inputs through and appends every product of two of its last `modules` inputs
    (squares included), then each of those inputs' hinges `relu(a - k)` at the `knots`: the layer
    that lets a linear read-out fit an interaction (a * b), a bend (a * a) or a threshold (a > k) of
    gene programs. It has no weights, so it sits in the trunk like an activation."""

    def __init__(self, width: int, modules: int, knots: tuple[float, ...] = ()) -> None:
        super().__init__()
        if not 0 <= modules <= width:
            raise ValueError(f"interaction over {modules} of {width} units")
        i, j = torch.triu_indices(modules, modules)
        self.register_buffer("left", i + (width - modules), persistent=False)
        self.register_buffer("right", j + (width - modules), persistent=False)
        self.register_buffer("knots", torch.tensor(knots, dtype=torch.float32), persistent=False)
        self.modules_from = width - modules
        self.width_out = width + len(i) + modules * len(knots)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        parts = [h, h[:, self.left] * h[:, self.right]]
        if len(self.knots):
            units = h[:, self.modules_from:]
            parts.append(torch.relu(units[:, None, :] - self.knots[None, :, None]).flatten(1))  # knot-major
        return torch.cat(parts, dim=1)


class NetConfig(BaseModel):
    """Hyperparameters of one network configuration (a point of the search space)."""

    model_config = ConfigDict(frozen=True)
    #: hidden widths; empty (depth 0: a linear model on the stage's outputs) only with an input stage
    widths: tuple[int, ...] = Field((64,), min_length=0, max_length=5)
    activation: Activation = "relu"
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    input_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    batch_size: int = Field(32, ge=2)
    max_epochs: int = Field(100, ge=1)
    patience: int = Field(12, ge=1)
    design: Literal["shared", "per_target"] = "shared"
    #: input stage (`inputs.py`): genes screened per target, principal components; both 0 = all genes
    screen_genes: int = Field(0, ge=0)
    components: int = Field(0, ge=0)
    #: explicit L2 penalty on every Linear weight, added to the loss (unlike AdamW's decoupled decay,
    #: its pull does not shrink with the learning rate)
    l2: float = Field(0.0, ge=0.0)
    #: each output sees only its own screened genes (and the components): depth 0 (masked heads);
    #: depth 1 (`widths[0]` hidden units per output, each group reading its output's inputs, each
    #: head its group: per-output networks in one matrix); or the per-target design (each network's
    #: first layer masked). Zeros stay zeros through training and folding
    target_screen: bool = False
    #: module eigengenes (`inputs.py`): each output's `modules` best-screened genes pooled and clustered
    #: into co-expressed programs, one eigengene each; the outputs read them, their pairwise products and
    #: their hinges (`InteractionNet`). 0 = none. Depth 0 with target_screen only
    modules: int = Field(0, ge=0)
    #: L1 penalty on the read-out of the eigengenes, their products and hinges (few of them matter)
    interaction_l1: float = Field(3e-4, ge=0.0)
    #: the exported form: the last `interaction_units` units of the single block are eigengenes whose
    #: products and hinges the `interaction` activation appends (set by the export, not by the search)
    interaction_units: int = Field(0, ge=0)
    #: hinges relu(e - k) of every eigengene at these knots (standardised units), read out beside the
    #: products: thresholds of one program. () = products only (the form of artifacts made before them)
    interaction_knots: tuple[float, ...] = Field((), max_length=8)
    #: > 0: after the gradient training, histology's logits of a modules network are averaged with a
    #: read-out of the eigengenes, their products and hinges fitted to convergence by an L1-penalised
    #: multinomial logistic regression with this `C` (`readout.py`); 0: the gradient-trained logits alone
    histology_c: float = Field(0.0, ge=0.0)
    #: > 0: each histology class's `histology_pool` best genes join the module pool (`inputs.py`), so a
    #: program that drives a class only with another (weak gene by gene) still forms a module. Training only
    histology_pool: int = Field(0, ge=0)

    @property
    def staged(self) -> bool:
        return self.screen_genes > 0 or self.components > 0

    @model_validator(mode="after")
    def _depth(self) -> NetConfig:
        if not self.widths and not self.staged:
            raise ValueError("widths may be empty (depth 0) only with an input stage (screen_genes or components > 0)")
        if self.target_screen and (self.screen_genes == 0 or (self.design == "shared" and len(self.widths) > 1)):
            raise ValueError("target_screen needs screen_genes > 0 and either depth 0, one hidden block (a group of "
                             "`widths[0]` units per output) or the per-target design")
        if self.modules and not (self.target_screen and not self.widths and self.design == "shared"):
            raise ValueError("modules need the shared design at depth 0 with target_screen (each output its own genes)")
        if (self.activation == "interaction") != (self.interaction_units > 0) or (self.interaction_units and len(self.widths) != 1):
            raise ValueError("the interaction activation is the exported form of a modules network: one block, "
                             "interaction_units > 0")
        if self.interaction_knots and not (self.modules or self.interaction_units):
            raise ValueError("interaction_knots are hinges of module eigengenes: they need modules > 0")
        if self.histology_c and not (self.modules or self.interaction_units):
            raise ValueError("histology_c fits histology's read-out of module eigengenes: it needs modules > 0")
        if self.histology_pool and not self.modules:
            raise ValueError("histology_pool widens the pool that module eigengenes are found in: it needs modules > 0")
        return self


class Trunk(nn.Module):
    """Input dropout, then Linear -> BatchNorm -> activation -> Dropout blocks.

    `staged`: the inputs are an input stage's outputs (training only): a BatchNorm standardises them
    before the blocks (there may be none). `fold.fold_input_stage` turns a staged network into the
    plain form on genes for export."""

    def __init__(self, n_inputs: int, config: NetConfig, staged: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(config.input_dropout)]
        if staged:
            layers.append(nn.BatchNorm1d(n_inputs))
        width_in = n_inputs
        for width in config.widths:
            if config.activation == "interaction":
                act: nn.Module = Interaction(width, config.interaction_units, config.interaction_knots)
                width_out = act.width_out
            else:
                act, width_out = _ACTIVATIONS[config.activation](), width
            layers += [nn.Linear(width_in, width), nn.BatchNorm1d(width), act, nn.Dropout(config.dropout)]
            width_in = width_out
        self.layers = nn.Sequential(*layers)
        self.width = width_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SharedNet(nn.Module):
    """One trunk with a histology head and one logit per radiomic feature."""

    def __init__(self, n_inputs: int, n_classes: int, n_features: int, config: NetConfig, staged: bool = False) -> None:
        super().__init__()
        self.trunk = Trunk(n_inputs, config, staged)
        self.histology = nn.Linear(self.trunk.width, n_classes) if n_classes else None
        self.features = nn.Linear(self.trunk.width, n_features) if n_features else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        h = self.trunk(x)
        return (None if self.histology is None else self.histology(h),
                None if self.features is None else self.features(h))


class PerTargetNet(nn.Module):
    """One independent network per target (histology, then each feature), evaluated side by side."""

    def __init__(self, n_inputs: int, n_classes: int, n_features: int, config: NetConfig, staged: bool = False) -> None:
        super().__init__()
        self.histology = SharedNet(n_inputs, n_classes, 0, config, staged) if n_classes else None
        self.features = nn.ModuleList(SharedNet(n_inputs, 0, 1, config, staged) for _ in range(n_features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        hist = None if self.histology is None else self.histology(x)[0]
        feats = torch.cat([net(x)[1] for net in self.features], dim=1) if len(self.features) else None
        return hist, feats

    def members(self) -> list[nn.Module]:
        return ([self.histology] if self.histology is not None else []) + list(self.features)


class InteractionNet(nn.Module):
    """Training form of a modules network: each output a linear model on its own screened genes
    (depth 0 with target_screen) plus a sparse read-out of the module eigengenes, of every product
    of two of them and of their hinges, so a rule such as `0.6 a + 0.6 b + 0.9 a b` of two programs,
    or a threshold of one, can be fitted.

    The stage outputs are standardised with the fitting rows' mean and SD (fixed, not a BatchNorm),
    so every output's weights (histology's classes together) are independent of the others'. That
    lets each output stop at its own best epoch (`train_network`): the linear outputs stop early, the
    interactions need longer. `fold.fold_input_stage` exports it as one block of logits and
    eigengenes, the `Interaction` activation and the read-out as heads."""

    def __init__(self, x: np.ndarray, n_modules: int, n_classes: int, n_features: int, config: NetConfig) -> None:
        super().__init__()
        n_inputs, n_logits = x.shape[1], n_classes + n_features
        self.n_classes, self.n_modules = n_classes, n_modules
        x64 = x.astype(np.float64)
        self.register_buffer("mean", torch.from_numpy(x64.mean(axis=0)).float())
        self.register_buffer("sd", torch.from_numpy(np.where(x64.std(axis=0) > 1e-8, x64.std(axis=0), 1.0)).float())
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.wide = nn.Linear(n_inputs, n_logits)
        self.interaction = Interaction(n_modules, n_modules, config.interaction_knots)
        self.readout = nn.Linear(self.interaction.width_out, n_logits)
        with torch.no_grad():
            self.readout.weight.zero_()
            self.readout.bias.zero_()
        rows = torch.ones(n_logits)
        if n_classes and n_features:
            rows[:n_classes] = float(n_features)  # BalancedLoss: histology 1/2, each feature 1/(2F)
        self.register_buffer("l1_rows", rows, persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        s = (x - self.mean) / self.sd
        logits = self.wide(self.input_dropout(s))
        if self.n_modules:
            logits = logits + self.readout(self.interaction(s[:, s.shape[1] - self.n_modules:]))
        else:
            logits = logits + self.readout.bias
        c = self.n_classes
        return (logits[:, :c] if c else None), (logits[:, c:] if logits.shape[1] > c else None)

    def basis(self, x: np.ndarray) -> np.ndarray:
        """(n, p) the read-out's inputs for stage outputs `x`: the standardised eigengenes, their
        products and hinges (float64)."""
        with torch.no_grad():
            s = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) - self.mean) / self.sd
            return self.interaction(s[:, s.shape[1] - self.n_modules:]).double().numpy()

    def set_class_readout(self, weights: np.ndarray, biases: np.ndarray, blend: float = READOUT_BLEND) -> None:
        """Histology's logits become `(1 - blend)` times the gradient-trained ones plus `blend` times
        `basis @ weights.T + biases` (one linear head still: its rows are mixed the same way)."""
        c, keep = self.n_classes, 1.0 - blend
        with torch.no_grad():
            self.wide.weight[:c] *= keep
            self.wide.bias[:c] *= keep
            self.readout.weight[:c] = keep * self.readout.weight[:c] + blend * torch.from_numpy(weights).float()
            self.readout.bias[:c] = keep * self.readout.bias[:c] + blend * torch.from_numpy(biases).float()

    def penalty(self, config: NetConfig) -> torch.Tensor:
        """L2 on the genes' weights, L1 on the eigengene read-out (sparse: few pairs interact). Each
        read-out row's L1 is scaled by its output's share of the loss, so histology (half the loss)
        and a feature (half the loss over F features) face the same pull for their own loss
        (measured: histology CV AUC 0.772 against 0.769 unscaled on the nonlinear cohort, test 0.844
        against 0.822)."""
        l1 = (self.readout.weight.abs().sum(dim=1) * self.l1_rows).sum()
        return config.l2 * (self.wide.weight**2).sum() + config.interaction_l1 * l1

    def row_parameters(self) -> list[torch.Tensor]:
        """The parameters whose rows belong to one output each (row t = logit t)."""
        return [self.wide.weight, self.wide.bias, self.readout.weight, self.readout.bias]


class _RowSnapshots:
    """Each output's weights at its own best epoch (`InteractionNet`, whose outputs are independent),
    or at given per-output epochs (the refit on the whole cohort).

    An output's best epoch is its last whose validation loss was the lowest so far while its AUC
    stayed within `OUTPUT_AUC_TOLERANCE` of its best AUC at an earlier best epoch (`_output_better`;
    no margin on the loss: a small fall still counts, at the cost of a few more epochs). One
    output's AUC on an inner split of ~40 patients is noisy: on the AUC alone, histology's best epoch in the five folds of the
    nonlinear cohort was 46, 4, 80, 2 and 69, the refit trained it for 46 and the test AUC fell
    with every epoch (0.836 at 5, 0.813 at 46). With the loss as the guide (first starting point,
    train's 5 folds, then the refit; histology / radiomic): nonlinear CV 0.791 / 0.826 against
    0.780 / 0.824, test 0.839 / 0.832 against 0.813 / 0.831; paper-sized CV 0.838 / 0.821 against
    0.831 / 0.819, test 0.846 / 0.838 against 0.849 / 0.836."""

    def __init__(self, model: InteractionNet, spec: TargetSpec, epochs: np.ndarray | None = None) -> None:
        self.groups = _groups(spec)
        self.params = model.row_parameters()
        self.saved = [p.detach().clone() for p in self.params]
        self.best = np.full(len(self.groups), -math.inf)
        self.best_loss = np.full(len(self.groups), math.inf)
        self.since = np.zeros(len(self.groups), dtype=np.int64)
        self.epochs = np.zeros(len(self.groups), dtype=np.int64)
        self.fixed = None if epochs is None else np.array([int(epochs[g[0]]) for g in self.groups])
        self.n_classes = len(spec.histology_classes) if spec.has_histology else 0

    def _save(self, group_ids: np.ndarray) -> None:
        if not len(group_ids):
            return
        rows = torch.from_numpy(np.concatenate([self.groups[g] for g in group_ids]).astype(np.int64))
        with torch.no_grad():
            for saved, p in zip(self.saved, self.params):
                saved[rows] = p[rows]

    def at_epoch(self, epoch: int) -> None:
        """Refit: keep each output's rows at the end of its own epoch count."""
        hit = np.flatnonzero(self.fixed == epoch)
        self.epochs[hit] = epoch
        self._save(hit)

    def observe(self, epoch: int, aucs: dict[str, float], spec: TargetSpec, patience: int, losses: np.ndarray) -> bool:
        """Record this epoch's validation AUCs and losses (per group); True when every output has
        waited `patience` epochs (`_output_better` decides)."""
        hist = [aucs[n] for n in spec.names[: self.n_classes] if not np.isnan(aucs[n])]
        scores = ([float(np.mean(hist)) if hist else -math.inf] if self.n_classes else []) + [
            -math.inf if np.isnan(aucs[f]) else aucs[f] for f in spec.features]
        scores = np.asarray(scores)
        better = _output_better(scores, losses, self.best, self.best_loss)
        self.best[better] = np.maximum(self.best[better], scores[better])  # a tie never lowers the AUC to beat
        self.best_loss[better], self.epochs[better], self.since[better] = losses[better], epoch, 0
        self.since[~better] += 1
        self._save(np.flatnonzero(better))
        return bool((self.since >= patience).all())

    def restore(self) -> np.ndarray:
        """Load the kept rows; the epoch of every logit row."""
        with torch.no_grad():
            for saved, p in zip(self.saved, self.params):
                p.copy_(saved)
        per_row = np.zeros(sum(len(g) for g in self.groups), dtype=np.int64)
        for g, rows in enumerate(self.groups):
            per_row[rows] = max(1, int(self.epochs[g]))
        return per_row


class EnsembleNet(nn.Module):
    """The average of several networks' probabilities, served and masked as one model.

    Its outputs are logits of the averaged probabilities (log of the mean softmax for histology,
    logit of the mean sigmoid per feature), so `predict` reports exactly the members' mean."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        outs = [m(x) for m in self.members]
        log_n = math.log(len(outs))
        hist = feat = None
        if outs[0][0] is not None:
            hist = torch.logsumexp(torch.stack([torch.log_softmax(h, dim=1) for h, _ in outs]), dim=0) - log_n
        if outs[0][1] is not None:
            log_p = torch.logsumexp(torch.stack([nn.functional.logsigmoid(f) for _, f in outs]), dim=0) - log_n
            log_q = torch.logsumexp(torch.stack([nn.functional.logsigmoid(-f) for _, f in outs]), dim=0) - log_n
            feat = log_p - log_q  # logit of the mean probability
        return hist, feat


class GeneColumnsLinear(nn.Linear):
    """A first layer on the genes that multiplies only the genes it has weights for.

    A screened network's first layer is zero outside a few hundred of the 21,766 gene columns (the
    modules network on the nonlinear cohort: 776), yet a dense pass reads every column: 10 MB per
    network, 50 MB for five seeds, more than the CPU's cache, so a one-profile request waits on
    memory. This layer keeps the full `weight` (the artifact's mapped one, which gene masking reads)
    and multiplies a compact copy of its non-zero columns. The copy is keyed on the weight's storage,
    version counter, dtype and device, so an in-place edit, a new weight, `.to()` or a copy of the
    module rebuilds it before the next pass; copies and pickles leave it behind. Same outputs up to
    the order of summation (zeros are no longer added)."""

    _CACHE = ("_columns", "_compact", "_cache_key")

    def _weight_key(self) -> tuple:
        w = self.weight
        return (w.data_ptr(), w._version, w.dtype, w.device)

    def compact(self) -> None:
        """(Re)build the compact copy from the current weights."""
        with torch.no_grad():
            columns = torch.nonzero(self.weight.abs().sum(dim=0) > 0).flatten()
            self._columns = columns
            self._compact = self.weight.index_select(1, columns).contiguous()
        self._cache_key = self._weight_key()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.requires_grad and torch.is_grad_enabled():  # gradients wanted: the dense layer
            return super().forward(x)
        if getattr(self, "_cache_key", None) != self._weight_key():
            self.compact()
        return nn.functional.linear(x.index_select(1, self._columns), self._compact, self.bias)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self._CACHE}


def compact_gene_layers(net: nn.Module, n_genes: int, max_fraction: float = 0.5) -> int:
    """Turn every Linear layer on the `n_genes` genes whose weights are non-zero in at most
    `max_fraction` of the columns into a `GeneColumnsLinear` (the same parameters, in place); the
    number turned. Inference only: the caller's weights stay the same tensors."""
    turned = 0
    for module in net.modules():
        if type(module) is nn.Linear and module.in_features == n_genes:
            used = int((module.weight.detach().abs().sum(dim=0) > 0).sum())
            if used <= max_fraction * n_genes:
                module.__class__ = GeneColumnsLinear
                module.compact()
                turned += 1
    return turned


def build_network(n_inputs: int, spec: TargetSpec, config: NetConfig, staged: bool = False) -> nn.Module:
    """The network for `config`; `staged` builds the training form on an input stage's outputs."""
    cls = SharedNet if config.design == "shared" else PerTargetNet
    return cls(n_inputs, len(spec.histology_classes) if spec.has_histology else 0, len(spec.features), config, staged)


def _mask_heads(model: nn.Module, mask: torch.Tensor) -> None:
    """Zero the head weights outside `mask` (n_logits, inputs) and keep them zero: their gradients are
    masked, so Adam's update, the L2 penalty and decoupled decay all leave them at exactly 0."""
    if isinstance(model, PerTargetNet):  # each member network: its own target's rows
        start = 0
        for member in model.members():
            width = sum(h.out_features for h, _ in _head_rows(member))
            part = mask[start: start + width]
            start += width
            if len(member.trunk.layers) > 2 and isinstance(member.trunk.layers[2], nn.Linear):
                # a member with hidden blocks: its first Linear sees only its target's inputs
                # (histology: the union of its classes' screens)
                _mask_weight(member.trunk.layers[2], part.amax(dim=0, keepdim=True).expand(member.trunk.layers[2].out_features, -1))
            else:
                _mask_heads(member, part)
        return
    for head, rows in _head_rows(model):
        _mask_weight(head, mask[rows])


def _head_rows(model: SharedNet) -> list[tuple[nn.Linear, slice]]:
    """Each head of a shared network and its rows among the network's logits (histology first)."""
    out, start = [], 0
    for head in (model.histology, model.features):
        if head is not None:
            out.append((head, slice(start, start + head.out_features)))
            start += head.out_features
    return out


def _mask_weight(layer: nn.Linear, mask: torch.Tensor, rescale: bool = False) -> None:
    """Zero `layer`'s weights outside `mask` (its shape) and keep them zero through training;
    `rescale`: initialise the kept weights for their true fan-in (PyTorch's default used all inputs)."""
    mask = mask.contiguous()
    with torch.no_grad():
        layer.weight.mul_(mask)
        if rescale:
            fan_in = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
            layer.weight.mul_(torch.sqrt(mask.shape[1] / fan_in))
    layer.weight.register_hook(lambda grad: grad * mask)


def _groups(spec: TargetSpec) -> list[list[int]]:
    """Output rows (logits) per group: all histology classes together, then each feature alone."""
    n_classes = len(spec.histology_classes) if spec.has_histology else 0
    return ([list(range(n_classes))] if n_classes else []) + [[n_classes + j] for j in range(len(spec.features))]


def _mask_groups(model: SharedNet, mask: torch.Tensor, groups: list[list[int]], per_group: int) -> None:
    """Per-output networks in one shared matrix: hidden group g reads only its outputs' inputs
    (`mask` rows, OR-ed over histology's classes) and each head reads only its group's units."""
    first = next(m for m in model.trunk.layers if isinstance(m, nn.Linear))
    units = len(groups) * per_group
    unit_group = torch.arange(units) // per_group
    group_inputs = torch.stack([mask[rows].amax(dim=0) for rows in groups])  # (groups, inputs)
    _mask_weight(first, group_inputs[unit_group], rescale=True)
    group_of_logit = torch.empty(mask.shape[0], dtype=torch.long)
    for g, rows in enumerate(groups):
        group_of_logit[rows] = g
    for head, rows in _head_rows(model):
        _mask_weight(head, (group_of_logit[rows][:, None] == unit_group[None, :]).float(), rescale=True)


def _l2_penalty(model: nn.Module) -> torch.Tensor:
    return sum((m.weight**2).sum() for m in model.modules() if isinstance(m, nn.Linear))


def _optimizer(model: nn.Module, config: NetConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


@dataclass
class BalancedLoss:
    """Class-balanced losses, histology and features weighted equally."""

    class_weights: torch.Tensor | None
    pos_weight: torch.Tensor | None

    @classmethod
    def fit(cls, spec: TargetSpec, labels: Labels) -> BalancedLoss:
        class_weights = pos_weight = None
        if labels.histology is not None:
            counts = np.bincount(labels.histology, minlength=len(spec.histology_classes)).astype(np.float64)
            class_weights = torch.tensor(len(labels.histology) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
        if labels.features.shape[1]:
            pos = labels.features.sum(axis=0)
            pos_weight = torch.tensor((len(labels.features) - pos) / np.maximum(pos, 1), dtype=torch.float32)
        return cls(class_weights, pos_weight)

    def per_output(self, hist_logits, feat_logits, y_hist, y_feat) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Histology loss (scalar) and the per-feature losses (F,)."""
        hist = feat = None
        if hist_logits is not None:
            hist = nn.functional.cross_entropy(hist_logits, y_hist, weight=self.class_weights)
        if feat_logits is not None:
            feat = nn.functional.binary_cross_entropy_with_logits(
                feat_logits, y_feat, pos_weight=self.pos_weight, reduction="none").mean(dim=0)
        return hist, feat

    def __call__(self, hist_logits, feat_logits, y_hist, y_feat, per_target: bool = False) -> torch.Tensor:
        hist, feat = self.per_output(hist_logits, feat_logits, y_hist, y_feat)
        if per_target:  # independent networks: each minimises its own loss
            return (hist if hist is not None else 0) + (feat.sum() if feat is not None else 0)
        parts = [p for p in (hist, None if feat is None else feat.mean()) if p is not None]
        return sum(parts) / len(parts)


def predict(model: nn.Module, x: np.ndarray, batch: int = 1024) -> Predictions:
    """Probabilities for z-scored inputs (eval mode: no dropout, BatchNorm running statistics)."""
    model.eval()
    hists, feats = [], []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            h, f = model(torch.from_numpy(np.ascontiguousarray(x[start: start + batch])))
            if h is not None:
                hists.append(torch.softmax(h, dim=1).numpy())
            if f is not None:
                feats.append(torch.sigmoid(f).numpy())
    return Predictions(
        histology=np.concatenate(hists) if hists else None,
        features=np.concatenate(feats) if feats else np.zeros((len(x), 0), dtype=np.float32),
    )


@dataclass
class FitResult:
    model: nn.Module
    best_epoch: int  # epochs trained for the returned weights (an `InteractionNet`: the median of its outputs')
    history: list[float] = field(default_factory=list)  # validation score per epoch (if any)
    #: each logit row's own epoch count (an `InteractionNet`'s outputs stop one by one), else None
    target_epochs: np.ndarray | None = None


def _better(score, loss, best_score, best_loss):
    """Early stopping's rule: a higher validation AUC, or the same AUC (within 1e-4) with a lower
    validation loss. The tie-break matters where the AUC saturates (a small, separable cohort: AUC 1
    after one epoch), which would otherwise stop, and refit, after one or two gradient steps."""
    return (score > best_score + 1e-4) | ((score >= best_score - 1e-4) & (loss < best_loss - 1e-4))


#: how far below its best validation AUC an output's AUC may be at a new best epoch (`_output_better`):
#: about the AUC's noise on an inner split of ~40 patients, where one pair of patients moves it ~0.002
OUTPUT_AUC_TOLERANCE = 0.01


def _output_better(score: np.ndarray, loss: np.ndarray, best_score: np.ndarray, best_loss: np.ndarray) -> np.ndarray:
    """Per output: a new best epoch where the validation loss is the lowest so far and the AUC is
    within `OUTPUT_AUC_TOLERANCE` of `best_score`, the best AUC at an earlier best epoch (a smooth
    criterion, guarded by the AUC that the selection scores)."""
    return (score >= best_score - OUTPUT_AUC_TOLERANCE) & (loss < best_loss)


def _validation_losses(model: nn.Module, loss_fn: BalancedLoss, x_val: np.ndarray, y_val: Labels) -> np.ndarray:
    """The validation loss per output group: histology (if any), then each feature."""
    model.eval()
    with torch.no_grad():
        hist_logits, feat_logits = model(torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32)))
        hist, feat = loss_fn.per_output(hist_logits, feat_logits,
                                        None if y_val.histology is None else torch.from_numpy(y_val.histology),
                                        torch.from_numpy(y_val.features))
    parts = ([float(hist)] if hist is not None else []) + ([] if feat is None else feat.numpy().astype(np.float64).tolist())
    return np.asarray(parts)


def _shared_loss(losses: np.ndarray, spec: TargetSpec) -> float:
    """The shared network's loss as it trains (`BalancedLoss`): histology and the features' mean,
    weighted equally."""
    n_hist = 1 if spec.has_histology else 0
    parts = list(losses[:n_hist]) + ([float(np.mean(losses[n_hist:]))] if len(losses) > n_hist else [])
    return float(np.mean(parts))


def _member_score(spec: TargetSpec, labels: Labels, preds: Predictions, member: int) -> float:
    """Validation AUC of one per-target network (member 0 = histology when present)."""
    aucs = target_aucs(spec, labels, preds)
    if spec.has_histology and member == 0:
        return float(np.nanmean([aucs[n] for n in spec.names[: len(spec.histology_classes)]]))
    feature = spec.features[member - (1 if spec.has_histology else 0)]
    return aucs[feature]


def _fit_histology_readout(model: InteractionNet, config: NetConfig, seed: int, x_train: np.ndarray, y_train: Labels,
                           x_val: np.ndarray | None, y_val: Labels | None) -> None:
    """Average histology's gradient-trained logits with the read-out fitted to convergence
    (`readout.py`) on every row the network may learn from: the fitting rows and, in CV, the
    early-stopping rows too (they are training rows of the fold; no other output's stopping depends
    on histology's weights)."""
    x, y = x_train, y_train.histology
    if x_val is not None and y_val is not None:
        x, y = np.concatenate([x_train, x_val]), np.concatenate([y_train.histology, y_val.histology])
    if len(np.unique(y)) < 2:
        return  # nothing to separate: keep the gradient-trained rows
    weights, biases = fit_class_readout(model.basis(x), y, model.n_classes, config.histology_c, seed)
    model.set_class_readout(weights, biases)


def train_network(
    x_train: np.ndarray,
    y_train: Labels,
    spec: TargetSpec,
    config: NetConfig,
    *,
    seed: int = 0,
    x_val: np.ndarray | None = None,
    y_val: Labels | None = None,
    epochs: int | None = None,
    staged: bool = False,
    head_mask: np.ndarray | None = None,
    modules: int = 0,
    target_epochs: np.ndarray | None = None,
) -> FitResult:
    """Train on z-scored inputs (or an input stage's outputs, `staged`); early stopping on
    (x_val, y_val) if given, else `epochs` epochs. With `config.modules` the last `modules` inputs
    are eigengenes (`InteractionNet`): each output stops on its own, and a refit takes each output's
    `target_epochs` (per logit row) if given."""
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    grouped = head_mask is not None and config.design == "shared" and bool(config.widths)
    groups = _groups(spec) if grouped else []
    snapshots: _RowSnapshots | None = None
    if config.modules and config.design == "shared":
        n_classes = len(spec.histology_classes) if spec.has_histology else 0
        model = InteractionNet(x_train, modules, n_classes, len(spec.features), config)
        if head_mask is not None:
            _mask_weight(model.wide, torch.from_numpy(np.asarray(head_mask, dtype=np.float32)))
        if x_val is None and target_epochs is not None:
            snapshots = _RowSnapshots(model, spec, np.asarray(target_epochs))
            epochs = int(np.max(target_epochs))
        elif x_val is not None:
            snapshots = _RowSnapshots(model, spec)
    elif grouped:  # one group of widths[0] hidden units per output group
        model = build_network(x_train.shape[1], spec, config.model_copy(update={"widths": (config.widths[0] * len(groups),)}),
                              staged)
        _mask_groups(model, torch.from_numpy(np.asarray(head_mask, dtype=np.float32)), groups, config.widths[0])
    else:
        model = build_network(x_train.shape[1], spec, config, staged)
        if head_mask is not None:
            _mask_heads(model, torch.from_numpy(np.asarray(head_mask, dtype=np.float32)))
    optimizer = _optimizer(model, config)
    loss_fn = BalancedLoss.fit(spec, y_train)
    x_t = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    y_hist = None if y_train.histology is None else torch.from_numpy(y_train.histology)
    y_feat = torch.from_numpy(y_train.features)
    n = len(x_train)
    max_epochs = epochs if epochs is not None else config.max_epochs
    per_target = isinstance(model, PerTargetNet)
    members = model.members() if per_target else [model]
    best_scores = [-math.inf] * len(members)
    best_losses = [math.inf] * len(members)
    best_states = [copy.deepcopy(m.state_dict()) for m in members]
    best_epochs = [max_epochs] * len(members)
    since_best = [0] * len(members)
    history: list[float] = []
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = generator.permutation(n)
        for start in range(0, n, config.batch_size):
            idx = order[start: start + config.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            idx_t = torch.from_numpy(idx)
            optimizer.zero_grad()
            hist_logits, feat_logits = model(x_t[idx_t])
            loss = loss_fn(hist_logits, feat_logits, None if y_hist is None else y_hist[idx_t], y_feat[idx_t], per_target)
            if isinstance(model, InteractionNet):
                loss = loss + model.penalty(config)
            elif config.l2 > 0:
                loss = loss + config.l2 * _l2_penalty(model)
            loss.backward()
            optimizer.step()
        if x_val is None:
            if snapshots is not None:
                snapshots.at_epoch(epoch)
            continue
        preds = predict(model, x_val)
        aucs = target_aucs(spec, y_val, preds)
        history.append(summary_auc(spec, aucs))
        losses = _validation_losses(model, loss_fn, x_val, y_val)
        if snapshots is not None:
            if snapshots.observe(epoch, aucs, spec, config.patience, losses):
                break
            continue
        for k, member in enumerate(members):
            score = _member_score(spec, y_val, preds, k) if per_target else history[-1]
            score = -math.inf if np.isnan(score) else score
            member_loss = float(losses[k]) if per_target else _shared_loss(losses, spec)
            if _better(score, member_loss, best_scores[k], best_losses[k]):
                best_scores[k] = max(best_scores[k], score)  # a tie never lowers the AUC to beat
                best_losses[k], best_epochs[k], since_best[k] = member_loss, epoch, 0
                best_states[k] = copy.deepcopy(member.state_dict())
            else:
                since_best[k] += 1
        if all(s >= config.patience for s in since_best):
            break
    rows = None if snapshots is None else snapshots.restore()  # each output at its own best (or given) epoch
    if isinstance(model, InteractionNet) and config.histology_c and model.n_classes and model.n_modules:
        _fit_histology_readout(model, config, seed, x_train, y_train, x_val, y_val)
    if rows is not None:
        model.eval()
        return FitResult(model=model, best_epoch=int(np.median(rows)), history=history, target_epochs=rows)
    if x_val is not None:
        for member, state in zip(members, best_states):
            member.load_state_dict(state)
    best = int(np.median(best_epochs)) if x_val is not None else max_epochs
    model.eval()
    return FitResult(model=model, best_epoch=best, history=history)
