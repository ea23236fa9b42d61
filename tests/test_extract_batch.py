"""Cohort batch extraction on a real local Ray: one task per case, resumable, failures recorded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from radiogenomics.errors import InputError
from radiogenomics.extraction.batch import failures_path, read_cases, run_batch
from radiogenomics.extraction.extract import extract_files
from radiogenomics.extraction.params import ExtractionParams, load_params
from radiogenomics.synth import SynthConfig, generate

PYRAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyradiomics"


@pytest.fixture(scope="module")
def image_cohort(tmp_path_factory: pytest.TempPathFactory, hallmark_gmt: Path) -> Path:
    out = tmp_path_factory.mktemp("batch") / "synth"
    generate(SynthConfig(out=out, hallmark_gmt=hallmark_gmt, n_train=10, n_test=10, n_genes=3000, n_features=10, images=True), progress=False)
    return out / "train" / "images"


def _manifest_with_bad_cases(images: Path, tmp_path: Path) -> Path:
    manifest = pd.read_csv(images / "manifest.csv")
    manifest["Image"] = [str(images / p) for p in manifest["Image"]]
    manifest["Mask"] = [str(images / p) for p in manifest["Mask"]]
    corrupt = tmp_path / "corrupt.nrrd"
    corrupt.write_bytes(b"NRRD0004\nnot really")
    bad = pd.DataFrame([
        {"sample_id": "BAD-MISSING", "Image": str(tmp_path / "missing.nrrd"), "Mask": manifest["Mask"][0], "Label": 1},
        {"sample_id": "BAD-CORRUPT", "Image": str(corrupt), "Mask": manifest["Mask"][0], "Label": 1},
        {"sample_id": "BAD-LABEL", "Image": manifest["Image"][0], "Mask": manifest["Mask"][0], "Label": 5},
    ])
    path = tmp_path / "manifest.csv"
    pd.concat([manifest, bad]).to_csv(path, index=False)
    return path


def test_batch_extracts_records_failures_and_resumes(ray_local, image_cohort: Path, tmp_path: Path) -> None:
    manifest = _manifest_with_bad_cases(image_cohort, tmp_path)
    out = tmp_path / "features.csv"
    summary = run_batch(manifest, out, ExtractionParams({}), workers=2, progress=False)
    assert (summary.total, summary.extracted, summary.failed, summary.skipped) == (13, 10, 3, 0)
    features = pd.read_csv(out, index_col="sample_id")
    assert len(features) == 10 and "original_shape_VoxelVolume" in features.columns
    assert (features["provenance_voxel_count"] > 100).all()
    failures = pd.read_csv(failures_path(out), index_col="sample_id")
    assert "file not found" in failures.loc["BAD-MISSING", "error"]
    assert "cannot be read as NRRD" in failures.loc["BAD-CORRUPT", "error"]
    assert "label 5 is not in the mask" in failures.loc["BAD-LABEL", "error"]

    # The batch equals extracting each case on its own.
    first = features.iloc[0]
    direct = extract_files(first["image"], first["mask"], ExtractionParams({}))
    assert first["original_glcm_Contrast"] == pytest.approx(direct.features["original_glcm_Contrast"], rel=1e-12)

    # Resume: finished cases are skipped, failed ones retried; a lost row is redone.
    rows = out.read_text().splitlines()
    out.write_text("\n".join(rows[:-2]) + "\n")  # as if the run had been killed before the last two cases
    again = run_batch(manifest, out, ExtractionParams({}), workers=1, progress=False)
    assert (again.skipped, again.extracted, again.failed) == (8, 2, 3)
    resumed = pd.read_csv(out, index_col="sample_id")
    assert sorted(resumed.index) == sorted(features.index)
    pd.testing.assert_frame_equal(resumed.loc[features.index].drop(columns=[c for c in resumed if c.startswith("provenance_seconds")]),
                                  features.drop(columns=[c for c in features if c.startswith("provenance_seconds")]))


def test_manifest_problems_stop_before_any_work(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("sample_id,Image\nA,a.nrrd\n")
    with pytest.raises(InputError, match="missing column\\(s\\) Mask"):
        read_cases(path)
    path.write_text("sample_id,Image,Mask\nA,a.nrrd,b.nrrd\nA,c.nrrd,d.nrrd\n")
    with pytest.raises(InputError, match="duplicate sample_id 'A'"):
        read_cases(path)
    path.write_text("")
    with pytest.raises(InputError, match="manifest is empty"):
        read_cases(path)
    with pytest.raises(InputError, match="manifest not found"):
        read_cases(tmp_path / "none.csv")


def test_relative_paths_resolve_against_the_manifest(image_cohort: Path) -> None:
    cases = read_cases(image_cohort / "manifest.csv")
    assert len(cases) == 10 and all(Path(c.image).is_absolute() and Path(c.image).exists() for c in cases)


@pytest.mark.slow
def test_cli_extract_on_its_own_local_ray(image_cohort: Path, tmp_path: Path) -> None:
    """The console script starts (and stops) its own local Ray on 127.0.0.1, with an official parameter file."""
    cli = str(Path(sys.executable).parent / "radiogenomics")
    out = tmp_path / "f.csv"
    params = PYRAD.parent / "pyradiomics" / "exampleSettings" / "Params.yaml"
    result = subprocess.run([cli, "extract", str(image_cohort / "manifest.csv"), "--out", str(out), "--params", str(params),
                             "--workers", "1", "--quiet"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["extracted"] == 10
    table = pd.read_csv(out)
    assert table["provenance_params_hash"].nunique() == 1
    assert table["provenance_params_hash"].iloc[0] == load_params(params).hash
    bad = subprocess.run([cli, "extract", str(image_cohort / "manifest.csv"), "--out", str(out), "--params", str(tmp_path / "x.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "parameter file not found" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    shutil.rmtree(tmp_path)
