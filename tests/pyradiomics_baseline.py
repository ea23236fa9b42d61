"""pyradiomics' reference values (../shared/data/pyradiomics/baseline) as parity cases.

Each baseline column is a test case (brain1, breast1, lung1) with the settings recorded in its
`diagnostics_Configuration_Settings` row. Columns of different feature classes that share a case
and settings are grouped, so one extraction serves them all. The `<case>_2D` cases of the shape2D
baseline use the 3-D image with a single mask slice; we rebuild that slice and prove it is the
reference's mask by its SimpleITK hash.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

#: brain1's shape column was computed with pyradiomics 2.0.1b1; its mesh features differ from every
#: later pyradiomics (including the 2.1 that computed brain1_resampling in the same file) by < 0.1 %.
STALE_REFERENCE = {("shape", "brain1"): 1e-3}


@dataclass
class ParityGroup:
    case: str
    settings: dict
    image_types: dict
    columns: dict[str, str] = field(default_factory=dict)  # feature class -> baseline column
    expected: dict[str, tuple[str, float]] = field(default_factory=dict)  # feature -> (class, value)
    mask_hash: str | None = None

    @property
    def key(self) -> str:
        return f"{self.case}:{'+'.join(sorted(set(self.columns.values())))}"

    @property
    def base_case(self) -> str:
        return self.case.removesuffix("_2D")


def load_groups(data: Path) -> list[ParityGroup]:
    groups: dict[str, ParityGroup] = {}
    for path in sorted((data / "baseline").glob("baseline_*.csv")):
        cls = path.stem.removeprefix("baseline_")
        frame = pd.read_csv(path, index_col=0, dtype=str)
        for column in frame.columns:
            col = frame[column]
            settings = ast.literal_eval(col["diagnostics_Configuration_Settings"])
            if cls == "shape":
                settings["resegmentRange"] = None  # as pyradiomics' own test harness does
            case = col["diagnostics_Configuration_TestCase"]
            types = ast.literal_eval(col.get("diagnostics_Configuration_EnabledImageTypes", "{'Original': {}}"))
            key = json.dumps([case, settings, types], sort_keys=True, default=str)
            group = groups.setdefault(key, ParityGroup(case=case, settings=settings, image_types=types))
            group.columns[cls] = column
            group.mask_hash = col.get("diagnostics_Mask-original_Hash")
            for feature, value in col.items():
                if not feature.startswith("diagnostics_") and isinstance(value, str) and value:
                    group.expected[feature] = (cls, float(value))
    return list(groups.values())


def group_params(group: ParityGroup) -> dict:
    """pyradiomics parameters for a group: its settings, image types, and only its feature classes."""
    return {"setting": group.settings, "imageType": group.image_types, "featureClass": {c: [] for c in group.columns}}


def group_inputs(group: ParityGroup, data: Path, tmp: Path) -> tuple[Path, Path]:
    """Image and mask files for a group; a `_2D` case's mask slice is written to `tmp`."""
    image = data / f"{group.base_case}_image.nrrd"
    mask = data / f"{group.base_case}_label.nrrd"
    if group.case.endswith("_2D"):
        z = int(ast.literal_eval(_corrected_bbox(data, group))[2])
        sliced = sitk.ReadImage(str(mask))[:, :, z: z + 1]
        mask = tmp / f"{group.case}_label.nrrd"
        sitk.WriteImage(sliced, str(mask))
    return image, mask


def _corrected_bbox(data: Path, group: ParityGroup) -> str:
    frame = pd.read_csv(data / "baseline" / "baseline_shape2D.csv", index_col=0, dtype=str)
    return frame.loc["diagnostics_Mask-corrected_BoundingBox", group.columns["shape2D"]]


def mask_hash_matches(group: ParityGroup, mask: Path) -> bool:
    """The reference hashed masks read as UInt32 (pyradiomics' harness); so do we."""
    return group.mask_hash is None or sitk.Hash(sitk.ReadImage(str(mask), sitk.sitkUInt32)) == group.mask_hash


def relative_error(ours: float, ref: float) -> float:
    return abs(ours - ref) / max(abs(ref), 1e-300) if ref != 0 else abs(ours)
