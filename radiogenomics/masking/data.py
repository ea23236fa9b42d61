"""The held-out cohort, checked and turned into what the masking engine reads.

Masking scores AUCs on patients the model was not fitted on; every patient needs every label the
model predicts, and every output needs both classes among them (an AUC needs positives and
negatives). Problems are refused here, before any work, with one line that says what and how many.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from radiogenomics.cohort import HISTOLOGY, Cohort
from radiogenomics.errors import InputError
from radiogenomics.registry import LoadedModel

_SHOW = 5


@dataclass
class MaskingData:
    """The held-out cohort, ready for the engine.

    z        (n, G) float32: expression z-scored with the model's *training* mean and SD, in the
             model's gene order; 0 is a gene's training mean, the value a masked gene takes.
    labels   (n, T) binary float32, columns in `outputs` order (histology one-vs-rest per class).
    outputs  the model's output names (`TargetSpec.names`): `histology:<CLASS>`, then radiomic features.
    sample_ids  the patients, in row order (for messages and provenance).
    """

    z: np.ndarray
    labels: np.ndarray
    outputs: list[str]
    sample_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.z = np.ascontiguousarray(self.z, dtype=np.float32)
        self.labels = np.ascontiguousarray(self.labels, dtype=np.float32)
        if self.z.ndim != 2 or self.labels.ndim != 2 or len(self.z) != len(self.labels):
            raise InputError(f"masking data: z {self.z.shape} and labels {self.labels.shape} must be 2-D with one row per patient")
        if self.labels.shape[1] != len(self.outputs):
            raise InputError(f"masking data: {self.labels.shape[1]} label columns but {len(self.outputs)} output names")

    @property
    def n_patients(self) -> int:
        return len(self.z)


def _first(items: list[str]) -> str:
    return ", ".join(repr(s) for s in items[:_SHOW]) + (", ..." if len(items) > _SHOW else "")


def _missing(values: pd.Series) -> np.ndarray:
    text = values.astype(object)
    blank = text.map(lambda v: v is None or (isinstance(v, float) and np.isnan(v))
                     or (isinstance(v, str) and v.strip().lower() in {"", "na", "nan", "none", "null"}))
    return blank.to_numpy(dtype=bool)


def _aligned_labels(model: LoadedModel, cohort: Cohort) -> Cohort:
    """The cohort with its label tables in sample order; patients lacking a label are refused."""
    spec, ids, n = model.spec, list(cohort.sample_ids), cohort.n_samples
    clinical, radiomics = cohort.clinical, cohort.radiomics
    if spec.has_histology:
        if clinical is None or HISTOLOGY not in clinical.columns:
            raise InputError(f"{cohort.root}: no histology labels (clinical.csv with a {HISTOLOGY!r} column); "
                             f"the model predicts histology ({', '.join(spec.histology_classes)}) and masking scores it against them")
        clinical = clinical.reindex(ids)
        lacking = [s for s, m in zip(ids, _missing(clinical[HISTOLOGY])) if m]
        if lacking:
            raise InputError(f"{cohort.root}: histology label missing for {len(lacking)} of {n} patients ({_first(lacking)}); "
                             "masking scores every patient against its labels: add them or drop those patients")
    if spec.features:
        if radiomics is None:
            raise InputError(f"{cohort.root}: no radiomic labels (radiomics.csv); the model predicts {len(spec.features)} "
                             "radiomic features and masking scores them against the measured values")
        absent = [f for f in spec.features if f not in radiomics.columns]
        if absent:
            raise InputError(f"{cohort.root}: radiomics.csv lacks {len(absent)} of the model's {len(spec.features)} features "
                             f"({_first(absent)}); extract them with the model's parameters")
        radiomics = radiomics.reindex(ids)
        values = radiomics[list(spec.features)].to_numpy(dtype=np.float64)
        bad_rows = ~np.isfinite(values).all(axis=1)
        if bad_rows.any():
            lacking = [s for s, m in zip(ids, bad_rows) if m]
            first_feature = spec.features[int(np.flatnonzero(~np.isfinite(values[bad_rows][0]))[0])]
            raise InputError(f"{cohort.root}: radiomic labels missing for {len(lacking)} of {n} patients ({_first(lacking)}; "
                             f"e.g. {first_feature!r}); masking scores every patient against its labels: add them or drop those patients")
    return replace(cohort, clinical=clinical, radiomics=radiomics)


def prepare(model: LoadedModel, cohort: Cohort) -> MaskingData:
    """Check a held-out cohort against the model and build the engine's input.

    Refused with an InputError: a cohort lacking some of the model's genes (count and first
    names), non-finite expression, fewer than 2 patients, labels missing for some patients
    (which ones and how many), a histology class the model does not know, an output with a single
    class among the patients (its AUC is undefined).
    """
    raw = model.align(cohort)
    if cohort.n_samples < 2:
        raise InputError(f"{cohort.root}: {cohort.n_samples} patient(s); masking needs a held-out cohort with both classes of every output")
    finite = np.isfinite(raw).all(axis=1)
    if not finite.all():
        bad = [s for s, ok in zip(cohort.sample_ids, finite) if not ok]
        raise InputError(f"{cohort.root}: non-finite expression for {len(bad)} patients ({_first(bad)}); impute or drop them")
    cohort = _aligned_labels(model, cohort)
    spec = model.spec
    labels = spec.encode(cohort).onehot(spec)
    outputs = list(spec.names)
    single = [name for j, name in enumerate(outputs) if labels[:, j].min() == labels[:, j].max()]
    if single:
        raise InputError(f"{cohort.root}: {len(single)} output(s) have a single class among the {cohort.n_samples} patients "
                         f"({_first(single)}); their AUC is undefined: mask a cohort with both classes of every output")
    return MaskingData(z=model.scaler.transform(raw), labels=labels, outputs=outputs, sample_ids=tuple(cohort.sample_ids))
