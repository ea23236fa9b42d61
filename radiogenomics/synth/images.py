"""CT-like volumes and tumour masks for synthetic patients.

A lung-parenchyma background (about -820 HU) holds a soft-tissue nodule whose properties follow
the patient's standardised group latents, the same ones that drive the sampled radiomic features:
  size           radius 11 mm x exp(0.28 u), 5-26 mm
  irregularity   elongation and lobulated surface (smooth noise added to the ellipsoid distance)
  intensity      mean attenuation 35 + 15 u HU
  heterogeneity  amplitude of the internal texture, 30 x exp(0.35 u) HU
  coarseness     correlation length of that texture, 0.7-2.2 voxels
Images are int16 HU, masks uint8 (label 1), written as compressed NRRD with SimpleITK, plus
`images/manifest.csv` in pyradiomics' batch format (paths relative to the manifest).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation
from scipy.special import expit
from tqdm import tqdm

from radiogenomics.cohort import SAMPLE_ID

SHAPE_ZYX = (48, 72, 72)
SPACING_XYZ = (0.9, 0.9, 1.5)  # mm


def _smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(SHAPE_ZYX), sigma=sigma)
    return field / field.std()


def render_case(latents: dict[str, float], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One patient's (image int16 HU, mask uint8), arrays in z, y, x order."""
    size, irregular = latents["size"], latents["irregularity"]
    radius = float(np.clip(11.0 * np.exp(0.28 * size), 5.0, 26.0))
    elongation = 0.05 + 0.35 * expit(irregular)
    axes = np.array([radius * (1 + elongation), radius, radius * (1 - elongation / 2)])

    spacing_zyx = np.array(SPACING_XYZ[::-1])
    centre = (np.array(SHAPE_ZYX) - 1) / 2 + rng.normal(0, 1.5, 3)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE_ZYX], indexing="ij"), axis=-1)
    offsets_mm = (grid - centre) * spacing_zyx
    rotated = offsets_mm @ Rotation.random(random_state=rng).as_matrix().T
    distance = np.sqrt(((rotated / axes) ** 2).sum(axis=-1))
    lobulation = (0.04 + 0.22 * expit(2 * irregular - 1)) * _smooth_noise(rng, sigma=3.0)
    mask = (distance + lobulation) <= 1.0
    labelled, n = ndimage.label(mask)
    if n > 1:  # keep the main lesion only
        sizes = ndimage.sum(mask, labelled, index=range(1, n + 1))
        mask = labelled == (int(np.argmax(sizes)) + 1)

    coarseness_sigma = 0.7 + 1.5 * expit(latents["coarseness"])
    texture = 30.0 * np.exp(0.35 * latents["heterogeneity"]) * _smooth_noise(rng, coarseness_sigma)
    tumour = 35.0 + 15.0 * latents["intensity"] + texture
    lung = -820.0 + 35.0 * _smooth_noise(rng, 1.2)
    # Partial volume just outside the lesion; the mask covers the solid core.
    weight = np.where(mask, 1.0, ndimage.gaussian_filter(mask.astype(float), sigma=0.6))
    image = weight * tumour + (1 - weight) * lung + rng.normal(0.0, 12.0, SHAPE_ZYX)
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16), mask.astype(np.uint8)


def _write(array: np.ndarray, path: Path) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(SPACING_XYZ)
    img.SetOrigin((-(SHAPE_ZYX[2] * SPACING_XYZ[0]) / 2, -(SHAPE_ZYX[1] * SPACING_XYZ[1]) / 2, 0.0))
    sitk.WriteImage(img, str(path), useCompression=True)


def write_images(cohort_dir: Path, group_latents: pd.DataFrame, seed: int, stream: int, progress: bool = True) -> Path:
    """Render and write every patient's image and mask; returns the manifest path."""
    folder = Path(cohort_dir) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (sample_id, row) in enumerate(
        tqdm(group_latents.iterrows(), total=len(group_latents), desc=f"images {Path(cohort_dir).name}", disable=not progress)
    ):
        rng = np.random.default_rng(np.random.SeedSequence([seed, stream, i]))
        image, mask = render_case(row.to_dict(), rng)
        _write(image, folder / f"{sample_id}_image.nrrd")
        _write(mask, folder / f"{sample_id}_mask.nrrd")
        rows.append({SAMPLE_ID: sample_id, "Image": f"{sample_id}_image.nrrd", "Mask": f"{sample_id}_mask.nrrd", "Label": 1})
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest
