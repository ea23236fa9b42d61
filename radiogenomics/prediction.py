"""Turning clients' expression profiles into model inputs, and serving several model versions.

A profile arrives in one of three forms: a dense float32 vector in the model's gene order, the
same as little-endian bytes, or a gene-symbol -> value map. Everything is checked here, once,
for every transport (our PredictionService, the v2 inference protocol, the CLI): wrong length,
NaN or infinity, empty input, missing genes (refused, or imputed with the training mean when the
caller asks), unknown genes (ignored and counted). Messages name the field and the fix.

`ModelShelf` holds the versions of one model that are being served; swapping in a new set of
versions replaces one dictionary, so requests already holding a model finish on it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from radiogenomics.errors import InputError, LimitExceeded, NotFound
from radiogenomics.registry import LoadedModel, load_model, versions
from radiogenomics.training.targets import Predictions

_SHOWN = 5  # how many gene names an error message lists


class MissingGenes(str, Enum):
    """What to do with model genes a by-gene profile lacks."""

    REJECT = "reject"
    IMPUTE_TRAINING_MEAN = "impute_training_mean"


@dataclass(frozen=True)
class Profile:
    """One incoming profile: exactly one of `dense`, `raw` or `by_gene` is set."""

    profile_id: str = ""
    dense: Sequence[float] | np.ndarray | None = None
    raw: bytes | None = None
    by_gene: Mapping[str, float] | None = None


@dataclass
class ModelInput:
    """Rows ready for `LoadedModel.predict`, with what was imputed or ignored per row."""

    x: np.ndarray  # (n, genes) float32, raw scale, model gene order
    imputed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    unknown: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))


def _finite(row: np.ndarray, where: str) -> np.ndarray:
    if not np.isfinite(row).all():
        bad = np.flatnonzero(~np.isfinite(row))
        raise InputError(f"{where}: {len(bad)} value(s) are NaN or infinite (first at index {int(bad[0])}); "
                         "send finite expression values")
    return row


def dense_row(values: Sequence[float] | np.ndarray, n_genes: int, where: str) -> np.ndarray:
    """A dense vector checked for length and finiteness."""
    row = np.asarray(values, dtype=np.float32)
    if row.ndim != 1 or row.size != n_genes:
        raise InputError(f"{where}: has {row.size} values but the model has {n_genes} genes; "
                         "send one value per gene in GetModelInfo's gene order")
    return _finite(row, where)


def raw_row(buffer: bytes, n_genes: int, where: str) -> np.ndarray:
    """Little-endian float32 bytes checked for length and finiteness."""
    if len(buffer) != 4 * n_genes:
        raise InputError(f"{where}: has {len(buffer)} bytes but the model's {n_genes} genes need {4 * n_genes} "
                         "(little-endian float32, one per gene in GetModelInfo's gene order)")
    return _finite(np.frombuffer(buffer, dtype="<f4").astype(np.float32), where)


def map_row(values: Mapping[str, float], model: LoadedModel, policy: MissingGenes, where: str) -> tuple[np.ndarray, int, int]:
    """A by-gene profile in model order; returns the row, genes imputed and genes unknown."""
    if not values:
        raise InputError(f"{where}: is empty; send the model's genes (see GetModelInfo)")
    index = model.gene_index
    row = model.scaler.mean.astype(np.float32, copy=True)  # training mean = z-score 0
    seen = np.zeros(len(row), dtype=bool)
    unknown = 0
    for gene, value in values.items():
        j = index.get(gene)
        if j is None:
            unknown += 1
            continue
        row[j] = value
        seen[j] = True
    missing = int((~seen).sum())
    if missing == len(row):
        raise InputError(f"{where}: none of its {len(values)} genes are model genes (e.g. "
                         f"{', '.join(list(values)[:_SHOWN])}); use the model's gene symbols (see GetModelInfo)")
    if missing and policy is not MissingGenes.IMPUTE_TRAINING_MEAN:
        names = [model.genes[j] for j in np.flatnonzero(~seen)[:_SHOWN]]
        raise InputError(f"{where}: lacks {missing} of the model's {len(row)} genes (e.g. {', '.join(names)}); "
                         "send them or set missing_genes=IMPUTE_TRAINING_MEAN")
    return _finite(row, where), missing, unknown


def assemble(model: LoadedModel, profiles: Sequence[Profile], policy: MissingGenes = MissingGenes.REJECT,
             *, max_profiles: int | None = None, where: str = "profiles") -> ModelInput:
    """Check every profile and stack them into one input matrix (nothing is predicted if one is bad)."""
    if not profiles:
        raise InputError(f"{where}: is empty; send at least one profile")
    if max_profiles is not None and len(profiles) > max_profiles:
        raise LimitExceeded(f"{where}: {len(profiles)} profiles exceed the limit of {max_profiles} per request; "
                            "split the batch or use PredictStream")
    n = len(model.genes)
    x = np.empty((len(profiles), n), dtype=np.float32)
    imputed = np.zeros(len(profiles), dtype=np.int32)
    unknown = np.zeros(len(profiles), dtype=np.int32)
    for i, profile in enumerate(profiles):
        at = f"{where}[{i}]" if len(profiles) > 1 or where == "profiles" else where
        given = [k for k in ("dense", "raw", "by_gene") if getattr(profile, k) is not None]
        if len(given) != 1:
            raise InputError(f"{at}: has no values; set one of dense, raw_float32 or by_gene")
        if profile.dense is not None:
            x[i] = dense_row(profile.dense, n, f"{at}.dense")
        elif profile.raw is not None:
            x[i] = raw_row(profile.raw, n, f"{at}.raw_float32")
        else:
            x[i], imputed[i], unknown[i] = map_row(profile.by_gene, model, policy, f"{at}.by_gene")
    return ModelInput(x=x, imputed=imputed, unknown=unknown)


def matrix_input(values: np.ndarray, model: LoadedModel, where: str, max_rows: int | None = None) -> ModelInput:
    """An (n, genes) float32 matrix (the v2 protocol's tensor) checked like dense profiles."""
    x = np.asarray(values, dtype=np.float32)
    n = len(model.genes)
    if x.ndim != 2 or x.shape[1] != n or x.shape[0] == 0:
        raise InputError(f"{where}: shape {list(x.shape)} does not fit [N, {n}] (N >= 1 profiles, one column per "
                         "model gene in ModelMetadata's order)")
    if max_rows is not None and len(x) > max_rows:
        raise LimitExceeded(f"{where}: {len(x)} rows exceed the limit of {max_rows} per request; split the batch")
    _finite(x.ravel(), where)
    zeros = np.zeros(len(x), dtype=np.int32)
    return ModelInput(x=x, imputed=zeros, unknown=zeros.copy())


def predicted_classes(model: LoadedModel, predictions: Predictions) -> list[str]:
    """The most probable histology class of each row (empty strings when there is no histology output)."""
    if predictions.histology is None:
        return [""] * len(predictions.features)
    classes = model.spec.histology_classes
    return [classes[j] for j in predictions.histology.argmax(axis=1)]


class ModelShelf:
    """The served versions of one model name, loaded from a registry.

    `load` builds the new set beside the old one and swaps it in one assignment: a request that
    already took a model from the shelf finishes on it, new requests see the new set.
    """

    def __init__(self, registry: Path, name: str) -> None:
        self.registry = Path(registry)
        self.name = name
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def load(self, wanted: Sequence[str] | None = None) -> list[str]:
        """Serve exactly `wanted` versions (None: every version in the registry); returns them, oldest first."""
        available = versions(self.registry, self.name)
        if not available:
            raise NotFound(f"{self.registry}: no model named {self.name!r}; train one with "
                           f"`radiogenomics train ... --name {self.name}`")
        chosen = list(available) if wanted is None else [str(v) for v in wanted]
        absent = [v for v in chosen if v not in available]
        if absent or not chosen:
            raise NotFound(f"model {self.name!r} has no version(s) {', '.join(absent) or '(none asked)'} "
                           f"(registry has {', '.join(available)})")
        with self._lock:
            current = dict(self._models)
            fresh = {v: current.get(v) or load_model(self.registry / self.name / v) for v in chosen}
            self._models = dict(sorted(fresh.items(), key=lambda kv: int(kv[0])))
        return list(self._models)

    @property
    def served(self) -> list[str]:
        return list(self._models)

    def get(self, name: str, version: str = "", where: str = "model") -> LoadedModel:
        """The model for a request: `version` empty means the latest served."""
        models = self._models  # one read: a concurrent swap cannot split this request
        if name and name != self.name:
            raise NotFound(f"{where}.name: {name!r} is not served here (this server serves {self.name!r})")
        if not models:
            raise NotFound(f"{where}: no version of {self.name!r} is loaded yet")
        if not version:
            return models[next(reversed(models))]
        if version not in models:
            raise NotFound(f"{where}.version: {version!r} of {self.name!r} is not served "
                           f"(served: {', '.join(models)}); leave it empty for the latest")
        return models[version]
