"""IBSI-1 digital phantom: pyradiomics against the IBSI reference values, and the generated report.

Everything runs for real: pyradiomics on the phantom in ../shared/data/ibsi (under a second). The
exact counts pin today's result, so a pyradiomics upgrade or a mapping change that moves a feature
between agree / deviate / not computed fails here and has to be looked at (then regenerate the doc).
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from radiogenomics import ibsi
from radiogenomics.errors import InputError

PROJECT = Path(__file__).resolve().parents[1]
GENERATOR = PROJECT / "docs" / "generate_ibsi_report.py"


@pytest.fixture(scope="module")
def phantom(shared: Path) -> ibsi.PhantomComparison:
    return ibsi.run_phantom_comparison(shared)


@pytest.fixture(scope="module")
def by_tag(phantom: ibsi.PhantomComparison) -> dict[str, ibsi.Comparison]:
    return {c.ref.tag: c for c in phantom.comparisons}


# ----------------------------------------------------------------------------------------------
# The generated document


def test_generated_doc_is_up_to_date(shared: Path) -> None:
    env = {**os.environ, ibsi.SHARED_ENV: str(shared)}
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_check_flags_a_stale_doc(tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("generate_ibsi_report", GENERATOR)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    monkeypatch.setenv(ibsi.SHARED_ENV, str(shared))
    copy = tmp_path / "ibsi_phantom.md"
    copy.write_text((PROJECT / "docs" / "ibsi_phantom.md").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(generator, "OUTPUT", copy)
    monkeypatch.setattr(generator, "PROJECT", tmp_path)
    assert generator.main(["--check"]) == 0
    copy.write_text(copy.read_text(encoding="utf-8").replace("| agree | 106 |", "| agree | 107 |"), encoding="utf-8")
    assert generator.main(["--check"]) == 1


# ----------------------------------------------------------------------------------------------
# Inputs


def test_reference_table_loads_with_its_bom(shared: Path) -> None:
    rows = ibsi.load_reference(shared / ibsi.REFERENCE_FILE)
    assert len(rows) == 487
    first = rows[0]
    assert (first.tag, first.family, first.feature) == ("morph_volume", "Morphology", "Volume (mesh)")
    assert (first.reference, first.tolerance) == (556.0, 4.0)
    not_standardised = [r.tag for r in rows if r.reference is None]
    assert not_standardised == [
        "morph_vol_dens_ombb", "morph_area_dens_ombb", "morph_vol_dens_mvee", "morph_area_dens_mvee", "ivh_auc",
    ]


def test_missing_reference_table_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="reference table not found"):
        ibsi.load_reference(tmp_path / "nope.csv")


def test_every_ibsi_feature_gets_its_concept_code(phantom: ibsi.PhantomComparison) -> None:
    assert len(phantom.codes) == len(phantom.comparisons) == 487
    assert phantom.codes["morph_volume"] == "RNU0"
    assert phantom.codes["stat_kurt"] == "IPH6"
    assert phantom.codes["cm_joint_max_3D_avg"] == "GYBY"
    # "Grey level non-uniformity" exists in four families; each resolves inside its own.
    assert {phantom.codes[t] for t in ("rlm_glnu_3D_avg", "szm_glnu_3D", "dzm_glnu_3D", "ngl_glnu_3D")} == {
        "R5YN", "JNSA", "VFT7", "FP8K",
    }


def test_rounding_allowance_follows_the_published_precision() -> None:
    def ref(text: str, tol: float = 0.0) -> ibsi.ReferenceValue:
        return ibsi.ReferenceValue("t", "f", "x", "", float(text), text, tol)

    assert ref("2.15").allowance == pytest.approx(0.005)
    assert ref("0.045").allowance == pytest.approx(5e-5)  # 0.0450: at least three figures
    assert ref("1").allowance == pytest.approx(0.005)  # 1.00
    assert ref("1490").allowance == pytest.approx(5)  # trailing zero not significant
    assert ref("0.12345").allowance == pytest.approx(5e-6)  # more printed digits: tighter
    assert ref("556", 4).effective_tolerance == 4  # morphology keeps its published tolerance


def test_binning_keeps_the_phantom_grey_levels(phantom: ibsi.PhantomComparison) -> None:
    assert phantom.grey_levels == {1: 50, 3: 1, 4: 16, 6: 7}


# ----------------------------------------------------------------------------------------------
# The comparison


def test_counts(phantom: ibsi.PhantomComparison) -> None:
    assert ibsi.summary(phantom.comparisons) == {"agree": 106, "deviate": 2, "not computed": 379}
    assert ibsi.not_computed_breakdown(phantom.comparisons) == {"other aggregation": 277, "no counterpart": 102}
    assert len(ibsi.FEATURE_MAP) == 108


def test_pyradiomics_3d_texture_families_agree_completely(phantom: ibsi.PhantomComparison) -> None:
    per_family: dict[str, list[str]] = {}
    for c in phantom.comparisons:
        per_family.setdefault(c.ref.family, []).append(c.status)
    assert per_family["Co-occurrence matrix (3D, averaged)"] == ["agree"] * 25
    assert per_family["Run length matrix (3D, averaged)"] == ["agree"] * 16
    assert per_family["Size zone matrix (3D)"] == ["agree"] * 16
    assert per_family["Neighbourhood grey tone difference matrix (3D)"] == ["agree"] * 5
    ngldm = dict(zip([c.ref.tag for c in phantom.comparisons if c.ref.family.endswith("dependence matrix (3D)")],
                     per_family["Neighbouring grey level dependence matrix (3D)"]))
    assert [t for t, s in ngldm.items() if s != "agree"] == ["ngl_dc_perc_3D", "ngl_dc_energy_3D"]
    # The merged-matrix and 2D variants are not what pyradiomics' default extraction computes.
    assert set(per_family["Co-occurrence matrix (3D, merged)"]) == {"not computed"}
    assert set(per_family["Distance zone matrix (3D)"]) == {"not computed"}


def test_morphological_volumes_agree(by_tag: dict[str, ibsi.Comparison]) -> None:
    mesh, voxels = by_tag["morph_volume"], by_tag["morph_vol_approx"]
    assert mesh.ref.reference == 556 and mesh.status == "agree"
    assert mesh.value == pytest.approx(556.3333, abs=1e-3)
    assert voxels.ref.reference == 592 and voxels.status == "agree"
    assert voxels.value == 592.0  # 74 voxels of 2 x 2 x 2 mm


def test_first_order_mean_agrees(by_tag: dict[str, ibsi.Comparison]) -> None:
    mean = by_tag["stat_mean"]
    assert mean.mapping.pyradiomics == "original_firstorder_Mean"
    assert mean.value == pytest.approx(159 / 74)  # (50*1 + 1*3 + 16*4 + 7*6) / 74
    assert mean.status == "agree" and mean.difference < 0.005


def test_kurtosis_is_compared_as_excess_kurtosis(phantom: ibsi.PhantomComparison, by_tag: dict[str, ibsi.Comparison]) -> None:
    raw = phantom.features["original_firstorder_Kurtosis"]
    kurt = by_tag["stat_kurt"]
    assert kurt.value == pytest.approx(raw - 3)
    assert kurt.status == "agree"
    # Without the convention shift it would be far off: the offset is what makes it agree.
    assert abs(raw - kurt.ref.reference) > 2.9


def test_deviations_are_the_pca_axes_and_explained(phantom: ibsi.PhantomComparison) -> None:
    deviating = [c.ref.tag for c in phantom.comparisons if c.status == "deviate"]
    assert deviating == ["morph_pca_min_axis", "morph_pca_least_axis"]
    assert all(t in ibsi.KNOWN_DEVIATIONS for t in deviating)
    # The explanation holds: rescaled to the sample covariance, all three axes match IBSI.
    n_voxels = sum(phantom.grey_levels.values())
    reference = {c.ref.tag: c.ref for c in phantom.comparisons}
    for tag, value in ibsi.sample_covariance_axes(phantom.features, n_voxels).items():
        assert abs(value - reference[tag].reference) <= reference[tag].effective_tolerance, tag


def test_every_mapped_pyradiomics_name_was_produced(phantom: ibsi.PhantomComparison, shared: Path) -> None:
    produced = phantom.features
    missing = sorted({m.pyradiomics for m in ibsi.FEATURE_MAP.values()} - produced.keys())
    assert missing == []
    assert all(math.isfinite(produced[m.pyradiomics]) for m in ibsi.FEATURE_MAP.values())
    tags = {r.tag for r in ibsi.load_reference(shared / ibsi.REFERENCE_FILE)}
    assert sorted(set(ibsi.FEATURE_MAP) - tags) == []


def test_unmapped_features_say_why(by_tag: dict[str, ibsi.Comparison]) -> None:
    assert all(c.reason for c in by_tag.values() if c.status == "not computed")
    assert "3D, averaged variant (cm_contrast_3D_avg)" in by_tag["cm_contrast_2D_avg"].reason
    assert "distance zone" in by_tag["dzm_sde_3D"].reason
    assert "compared as stat_mean" in by_tag["ih_mean"].reason
