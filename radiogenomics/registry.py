"""The model registry: versioned artifacts `<registry>/<name>/<version>/` that serving and masking read.

An artifact holds `model.json` (the model card: genes in input order, normalisation, targets and
their cut points, classes, hyperparameters, CV and test metrics, training-data hash, code
version, creation time, and the SHA-256 of the weights) and `weights.pt` (the network's
state dict). Loading checks the card's schema, the weights' hash and that the weights fit the
architecture, and refuses a damaged or incompatible artifact with a one-line error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from radiogenomics import __version__
from radiogenomics.cohort import Cohort
from radiogenomics.errors import InputError
from radiogenomics.jsonsafe import json_safe
from radiogenomics.training.network import EnsembleNet, NetConfig, build_network, compact_gene_layers, predict
from radiogenomics.training.targets import Predictions, Standardizer, TargetSpec

#: Artifact formats this code reads. 2: a network may read hinges of its module eigengenes
#: (`NetConfig.interaction_knots`), which code reading only 1 would build without and then refuse
#: as "weights do not fit"; an artifact is written with the lowest format that describes it, so
#: one without hinges stays readable by older servers.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
CARD = "model.json"
WEIGHTS = "weights.pt"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ModelError(InputError):
    """A model artifact is missing, damaged or incompatible."""


class TargetsCard(BaseModel):
    histology_classes: list[str]
    features: list[str]
    cut_points: list[float]
    cut_quantile: float

    def spec(self) -> TargetSpec:
        return TargetSpec(histology_classes=tuple(self.histology_classes), features=tuple(self.features),
                          cut_points=tuple(self.cut_points), cut_quantile=self.cut_quantile)


class ModelCard(BaseModel):
    """The schema of model.json."""

    model_config = ConfigDict(extra="allow")
    format_version: int
    name: str
    version: str
    created: str
    code_version: str
    genes: list[str] = Field(min_length=1)
    normalisation: dict[str, list[float]]  # {"mean": [...], "sd": [...]}, per gene in `genes` order
    targets: TargetsCard
    hyperparameters: dict[str, Any]
    cv_metrics: dict[str, Any] = {}
    test_metrics: dict[str, Any] = {}
    training: dict[str, Any] = {}
    #: the input stage the network was trained on, folded into its first layer (sizes, screened genes)
    input_stage: dict[str, Any] = {}
    #: per target, the model family with the best mean CV AUC (the network or a baseline)
    best_family: dict[str, str] = {}
    #: an ensemble's members (each a hyperparameters dict, architecture on genes), averaged as one model;
    #: empty for a single network
    members: list[dict[str, Any]] = []
    weights_sha256: str


def code_version() -> str:
    """Package version plus the git commit of the checkout when there is one."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions(registry: Path, name: str) -> list[str]:
    """Versions of a model in the registry, oldest first (versions are 1, 2, 3, ...)."""
    folder = Path(registry) / name
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and (p / CARD).exists()), key=int)


def resolve(path_or_registry: Path, name: str | None = None, version: str | None = None) -> Path:
    """An artifact folder: given directly, or as registry + name (+ version; default the latest)."""
    path = Path(path_or_registry)
    if name is None:
        if (path / CARD).exists():
            return path
        raise ModelError(f"{path}: not a model artifact (no {CARD}); pass <registry>/<name>/<version>")
    found = versions(path, name)
    if not found:
        raise ModelError(f"{path}: no model named {name!r}; train one with `radiogenomics train ... --name {name}`")
    chosen = version or found[-1]
    if chosen not in found:
        raise ModelError(f"model {name!r} has no version {chosen!r} (versions: {', '.join(found)})")
    return path / name / chosen


def check_name(name: str) -> None:
    """Refuse a model name that is not a safe folder name (checked before any training starts)."""
    if not _NAME.match(name):
        raise InputError(f"--name {name!r} is not a valid model name; use letters, digits, '.', '_' or '-' (max 64)")


def export_model(
    registry: Path, name: str, *, net: torch.nn.Module, config: NetConfig, spec: TargetSpec, scaler: Standardizer,
    genes: list[str], cv_metrics: dict[str, Any], training: dict[str, Any], extra_files: dict[str, Any] | None = None,
    input_stage: dict[str, Any] | None = None, best_family: dict[str, str] | None = None,
    members: list[NetConfig] | None = None,
) -> Path:
    """Write a new version of `name` and return its folder; the card is written last (atomically)."""
    check_name(name)
    existing = versions(registry, name)
    version = str(int(existing[-1]) + 1 if existing else 1)
    folder = Path(registry) / name / version
    folder.mkdir(parents=True, exist_ok=False)
    torch.save(net.state_dict(), folder / WEIGHTS)
    for filename, writer in (extra_files or {}).items():
        writer(folder / filename)
    card = ModelCard(
        format_version=_format_version([config, *(members or [])]), name=name, version=version, created=datetime.now(UTC).isoformat(timespec="seconds"),
        code_version=code_version(), genes=list(genes),
        normalisation={"mean": scaler.mean.astype(float).tolist(), "sd": scaler.sd.astype(float).tolist()},
        targets=TargetsCard(histology_classes=list(spec.histology_classes), features=list(spec.features),
                            cut_points=list(spec.cut_points), cut_quantile=spec.cut_quantile),
        hyperparameters=config.model_dump(mode="json"), cv_metrics=cv_metrics, training=training,
        input_stage=input_stage or {}, best_family=best_family or {},
        members=[m.model_dump(mode="json") for m in members or []],
        weights_sha256=_sha256(folder / WEIGHTS),
    )
    write_card(folder, card)
    return folder


def write_card(folder: Path, card: ModelCard) -> None:
    """Write model.json atomically (a reader never sees half a card)."""
    tmp = folder / (CARD + ".tmp")
    tmp.write_text(json.dumps(json_safe(card.model_dump(mode="json")), allow_nan=False))
    os.replace(tmp, folder / CARD)


class LoadedModel:
    """A loaded artifact: the card, the network in eval mode, and gene alignment."""

    def __init__(self, folder: Path, card: ModelCard, net: torch.nn.Module, spec: TargetSpec) -> None:
        self.folder = folder
        self.card = card
        self.net = net
        self.spec = spec
        self.scaler = Standardizer(mean=np.asarray(card.normalisation["mean"], dtype=np.float32),
                                   sd=np.asarray(card.normalisation["sd"], dtype=np.float32))
        self.genes = list(card.genes)
        self.gene_index = {g: i for i, g in enumerate(self.genes)}

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def align(self, cohort: Cohort) -> np.ndarray:
        """The cohort's expression in the model's gene order; missing genes are an error that names them."""
        col = {g: j for j, g in enumerate(cohort.genes)}
        missing = [g for g in self.genes if g not in col]
        if missing:
            raise InputError(
                f"{cohort.root}: {len(missing)} of the model's {len(self.genes)} genes are missing "
                f"(e.g. {', '.join(missing[:5])}); the cohort must measure the genes the model was trained on"
            )
        return cohort.expression[:, [col[g] for g in self.genes]]

    def predict(self, expression: np.ndarray) -> Predictions:
        """Probabilities for raw expression rows in the model's gene order."""
        return predict(self.net, self.scaler.transform(np.asarray(expression, dtype=np.float32)))


def _format_version(configs: list[NetConfig]) -> int:
    """The lowest artifact format that describes networks of `configs` (see `FORMAT_VERSION`)."""
    return FORMAT_VERSION if any(config.interaction_knots for config in configs) else 1


def load_model(folder: Path) -> LoadedModel:
    """Load and check an artifact folder."""
    folder = Path(folder)
    card_path, weights_path = folder / CARD, folder / WEIGHTS
    if not card_path.is_file():
        raise ModelError(f"{folder}: not a model artifact (no {CARD}); pass <registry>/<name>/<version>")
    try:
        raw = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{card_path}: damaged ({exc.msg if hasattr(exc, 'msg') else exc}); re-export the model") from None
    if isinstance(raw, dict) and raw.get("format_version") not in READABLE_FORMATS:
        raise ModelError(f"{card_path}: format_version {raw.get('format_version')!r} is not supported "
                         f"(this code reads {', '.join(map(str, READABLE_FORMATS))}); retrain or use a matching "
                         "radiogenomics version")
    try:
        card = ModelCard.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ModelError(f"{card_path}: damaged or incompatible: field {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    n_genes = len(card.genes)
    if len(card.normalisation.get("mean", [])) != n_genes or len(card.normalisation.get("sd", [])) != n_genes:
        raise ModelError(f"{card_path}: normalisation does not match the {n_genes} genes; the artifact is damaged")
    if len(set(card.genes)) != n_genes:
        raise ModelError(f"{card_path}: the gene list has duplicates; the artifact is damaged")
    if not weights_path.is_file():
        raise ModelError(f"{folder}: {WEIGHTS} is missing; the artifact is incomplete")
    if _sha256(weights_path) != card.weights_sha256:
        raise ModelError(f"{weights_path}: checksum does not match model.json; the weights are damaged or were replaced")
    try:
        config = NetConfig.model_validate(card.hyperparameters)
        member_configs = [NetConfig.model_validate(m) for m in card.members]
    except ValidationError as exc:
        raise ModelError(f"{card_path}: hyperparameters are not valid for this code ({exc.errors()[0]['msg']})") from None
    spec = card.targets.spec()
    try:  # an architecture that cannot be built (e.g. a block narrower than its eigengenes) is damage too
        if member_configs:
            net: torch.nn.Module = EnsembleNet([build_network(n_genes, spec, m) for m in member_configs])
        else:
            net = build_network(n_genes, spec, config)
        # Mapped, not read: the weights stay the file's page-cache pages (copy-on-write), so every
        # process serving this version on a node shares one copy in memory and in the CPU cache.
        # An artifact is never rewritten in place (each export is a new version folder), which mapping relies on.
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, OSError):  # a file torch cannot map (legacy format, no mmap): read it instead
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, assign=True)
    except (RuntimeError, ValueError, EOFError, OSError) as exc:
        raise ModelError(f"{weights_path}: weights do not fit the architecture in model.json ({' '.join(str(exc).split())[:200]})") from None
    net.eval()
    compact_gene_layers(net, n_genes)  # a screened first layer multiplies only its genes' columns
    return LoadedModel(folder, card, net, spec)
