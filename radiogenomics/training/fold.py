"""Fold a network trained on an input stage's outputs into the plain network on genes, for export.

At inference every layer between the z-scored genes and the first non-linearity is affine: the
stage (`P z + q`), the BatchNorm that standardises its outputs (running statistics) and the first
hidden Linear layer. Their product is one Linear layer on the genes, so the exported network is the
usual `Dropout -> Linear -> BatchNorm -> activation ...` architecture on all genes, which the
prediction service, the registry and gene masking's first-layer fast path read unchanged.

Depth 0 (the heads sit on the standardised stage outputs: a linear model) exports as one block of
width C + F with an identity BatchNorm and identity activation, whose units are the logits; the
heads then just pick their columns. A modules network (`InteractionNet`) exports as one block of
width C + F + M (the logits, then the M standardised eigengenes), the `interaction` activation that
appends the eigengenes' products and hinges, and heads that add each logit to its read-out.
Predictions of the folded network equal the staged network's to float32 round-off (tested).
"""

from __future__ import annotations

import torch
from torch import nn

from radiogenomics.training.inputs import InputStage
from radiogenomics.training.network import InteractionNet, NetConfig, PerTargetNet, SharedNet
from radiogenomics.training.targets import TargetSpec


def plain_config(config: NetConfig, n_logits: int, widths: tuple[int, ...] | None = None) -> NetConfig:
    """The exported architecture's configuration: no stage, the trained network's real `widths`
    (a grouped network's hidden layer is wider than `config.widths`); depth 0 becomes one identity
    block of logits."""
    widths = config.widths if widths is None else widths
    update: dict = {"screen_genes": 0, "components": 0, "modules": 0, "target_screen": False, "widths": widths}
    if not widths:
        update.update(widths=(n_logits,), activation="identity", dropout=0.0)
    return config.model_copy(update=update)


def _widths(net: SharedNet) -> tuple[int, ...]:
    return tuple(m.out_features for m in net.trunk.layers if isinstance(m, nn.Linear))


def _stage_affine(stage: InputStage, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, G) weight and (m,) bias of stage followed by the BatchNorm at inference, in float64."""
    s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    t = bn.bias.double() - bn.running_mean.double() * s
    p = torch.from_numpy(stage.projection).double()
    q = torch.from_numpy(stage.offset).double()
    return s[:, None] * p, s * q + t


def _fold_member(staged: SharedNet, stage: InputStage, config: NetConfig, n_genes: int) -> SharedNet:
    n_classes = staged.histology.out_features if staged.histology is not None else 0
    n_features = staged.features.out_features if staged.features is not None else 0
    widths = _widths(staged)
    plain = SharedNet(n_genes, n_classes, n_features, plain_config(config, n_classes + n_features, widths))
    old, new = list(staged.trunk.layers), list(plain.trunk.layers)
    weight, bias = _stage_affine(stage, old[1])
    with torch.no_grad():
        if widths:
            first: nn.Linear = old[2]
            new[1].weight.copy_(first.weight.double() @ weight)
            new[1].bias.copy_(first.weight.double() @ bias + first.bias.double())
            nn.Sequential(*new[2:]).load_state_dict(nn.Sequential(*old[3:]).state_dict())
            if plain.histology is not None:
                plain.histology.load_state_dict(staged.histology.state_dict())
            if plain.features is not None:
                plain.features.load_state_dict(staged.features.state_dict())
        else:
            heads = [h for h in (staged.histology, staged.features) if h is not None]
            a = torch.cat([h.weight.double() for h in heads])
            c = torch.cat([h.bias.double() for h in heads])
            new[1].weight.copy_(a @ weight)
            new[1].bias.copy_(a @ bias + c)
            bn: nn.BatchNorm1d = new[2]  # identity at inference
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.zero_()
            eye = torch.eye(n_classes + n_features)
            if plain.histology is not None:
                plain.histology.weight.copy_(eye[:n_classes])
                plain.histology.bias.zero_()
            if plain.features is not None:
                plain.features.weight.copy_(eye[n_classes:])
                plain.features.bias.zero_()
    return plain.eval()


def _fold_interaction(staged: InteractionNet, stage: InputStage, config: NetConfig, n_genes: int) -> tuple[SharedNet, NetConfig]:
    """One block of width T + M on the genes (the outputs' linear logits, then the standardised
    eigengenes; identity BatchNorm), the `interaction` activation appending the eigengenes' products
    and hinges, and heads that add each logit to its read-out of them."""
    n_classes, n_logits, m = staged.n_classes, staged.wide.out_features, staged.n_modules
    update: dict = {"screen_genes": 0, "components": 0, "modules": 0, "target_screen": False, "widths": (n_logits + m,),
                    "dropout": 0.0, "activation": "interaction" if m else "identity", "interaction_units": m,
                    "interaction_knots": config.interaction_knots if m else (), "histology_pool": 0,
                    "histology_c": config.histology_c if m else 0.0}
    plain_cfg = config.model_copy(update=update)
    plain = SharedNet(n_genes, n_classes, n_logits - n_classes, plain_cfg)
    layers = list(plain.trunk.layers)
    p = torch.from_numpy(stage.projection).double()
    q = torch.from_numpy(stage.offset).double()
    mean, sd = staged.mean.double(), staged.sd.double()
    std_weight, std_bias = p / sd[:, None], (q - mean) / sd  # standardised stage outputs on the genes
    wide = staged.wide.weight.double()
    weight = torch.cat([wide @ std_weight, std_weight[std_weight.shape[0] - m:]])
    bias = torch.cat([wide @ std_bias + staged.wide.bias.double(), std_bias[std_bias.shape[0] - m:]])
    head_weight = torch.cat([torch.eye(n_logits, dtype=torch.float64), staged.readout.weight.double()], dim=1)
    with torch.no_grad():
        layers[1].weight.copy_(weight)
        layers[1].bias.copy_(bias)
        bn: nn.BatchNorm1d = layers[2]  # identity at inference
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        for head, rows in ((plain.histology, slice(0, n_classes)), (plain.features, slice(n_classes, n_logits))):
            if head is not None:
                head.weight.copy_(head_weight[rows])
                head.bias.copy_(staged.readout.bias.double()[rows])
    return plain.eval(), plain_cfg


def fold_input_stage(staged: nn.Module, stage: InputStage, spec: TargetSpec, config: NetConfig,
                     n_genes: int) -> tuple[nn.Module, NetConfig]:
    """The plain network on `n_genes` z-scored genes equivalent to `staged` on `stage`, and its config."""
    staged.eval()
    n_logits = (len(spec.histology_classes) if spec.has_histology else 0) + len(spec.features)
    if isinstance(staged, InteractionNet):
        return _fold_interaction(staged, stage, config, n_genes)
    if isinstance(staged, SharedNet):
        return _fold_member(staged, stage, config, n_genes), plain_config(config, n_logits, _widths(staged))
    if isinstance(staged, PerTargetNet):
        if not config.widths:
            raise ValueError("a per-target design of depth 0 has members of different widths and cannot be exported")
        plain = PerTargetNet(n_genes, len(spec.histology_classes) if spec.has_histology else 0, len(spec.features),
                             plain_config(config, n_logits))
        if staged.histology is not None:
            plain.histology = _fold_member(staged.histology, stage, config, n_genes)
        plain.features = nn.ModuleList(_fold_member(m, stage, config, n_genes) for m in staged.features)
        return plain.eval(), plain_config(config, n_logits)
    raise TypeError(f"cannot fold {type(staged).__name__}")
