"""Cohort loading and validation: real expression data and every bad-input case."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radiogenomics.cohort import load_cohort, write_expression
from radiogenomics.errors import CohortError

LEUKEMIA = Path("expression") / "gseapy_leukemia"


def _leukemia_source(shared: Path) -> tuple[pd.DataFrame, list[str]]:
    with gzip.open(shared / LEUKEMIA / "Leukemia_hgu95av2.trim.txt.gz", "rt") as handle:
        raw = pd.read_csv(handle, sep="\t")
    labels = (shared / LEUKEMIA / "Leukemia.cls").read_text().split("\n")[2].split()
    return raw, labels


def _leukemia_cohort(shared: Path, root: Path, fmt: str) -> tuple[Path, pd.DataFrame, list[str]]:
    """The GSEA leukemia microarray as a cohort: probes averaged per symbol, samples as rows."""
    raw, labels = _leukemia_source(shared)
    by_gene = raw.drop(columns=["NAME"]).groupby("Gene").mean()
    samples = list(by_gene.columns)
    root.mkdir(parents=True)
    write_expression(root / f"expression.{fmt}", samples, list(by_gene.index), by_gene.T.to_numpy())
    pd.DataFrame({"sample_id": samples, "histology": labels}).to_csv(root / "clinical.csv", index=False)
    return root, by_gene, labels


@pytest.mark.parametrize("fmt", ["parquet", "tsv", "csv"])
def test_loads_real_leukemia_expression(shared: Path, tmp_path: Path, fmt: str) -> None:
    root, by_gene, labels = _leukemia_cohort(shared, tmp_path / "leukemia", fmt)
    cohort = load_cohort(root, require_radiomics=False)
    assert cohort.n_samples == 48 and cohort.n_genes == by_gene.shape[0]
    assert cohort.expression.dtype == np.float32
    assert cohort.sample_ids[0] == "ALL_1" and cohort.sample_ids[-1] == "AML_24"
    assert cohort.classes() == ["ALL", "AML"]
    assert list(cohort.labels()) == labels
    j = cohort.genes.index("MAPK3")
    np.testing.assert_allclose(cohort.expression[:, j], by_gene.loc["MAPK3"].to_numpy(), rtol=1e-6)
    assert cohort.radiomics is None


def test_raw_leukemia_matrix_is_recognised_as_transposed(shared: Path, tmp_path: Path) -> None:
    """The GSEA file keeps genes as rows: loading it as-is must say so and how to fix it."""
    root = tmp_path / "raw"
    root.mkdir()
    with gzip.open(shared / LEUKEMIA / "Leukemia_hgu95av2.trim.txt.gz", "rb") as src, (root / "expression.tsv").open("wb") as dst:
        shutil.copyfileobj(src, dst)
    raw, labels = _leukemia_source(shared)
    samples = [c for c in raw.columns if c not in ("Gene", "NAME")]
    pd.DataFrame({"sample_id": samples, "histology": labels}).to_csv(root / "clinical.csv", index=False)
    with pytest.raises(CohortError, match=r"looks transposed \(genes as rows\): 48 column headers are sample ids.*transpose it"):
        load_cohort(root, require_radiomics=False)
    (root / "clinical.csv").unlink()  # without other tables, the gene-style first header gives it away
    with pytest.raises(CohortError, match=r"looks transposed \(genes as rows\): first column is 'Gene'.*df.set_index\('Gene'\).T"):
        load_cohort(root, require_radiomics=False, require_clinical=False)


# ----------------------------------------------------------------------------------------------
# A small valid cohort to break in every way


def _write_valid(root: Path, fmt: str = "csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"P{i}" for i in range(1, 7)]
    rng = np.random.default_rng(0)
    write_expression(root / f"expression.{fmt}", ids, ["TP53", "EGFR", "KRAS", "ALK"], rng.normal(5, 1, (6, 4)))
    pd.DataFrame({"sample_id": ids, "original_shape_VoxelVolume": rng.uniform(100, 900, 6),
                  "diagnostics_Versions_PyRadiomics": "v3.1.4"}).to_csv(root / "radiomics.csv", index=False)
    pd.DataFrame({"sample_id": ids, "histology": ["ADC", "SCC", "Other", "ADC", "SCC", "ADC"],
                  "site": "A"}).to_csv(root / "clinical.csv", index=False)
    return root


def _expect(root: Path, pattern: str, **kwargs: object) -> str:
    with pytest.raises(CohortError, match=pattern) as info:
        load_cohort(root, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_valid_small_cohort(tmp_path: Path) -> None:
    cohort = load_cohort(_write_valid(tmp_path / "c"))
    assert cohort.genes == ("TP53", "EGFR", "KRAS", "ALK")
    assert cohort.feature_names == ["original_shape_VoxelVolume"]  # diagnostics_* dropped
    assert cohort.classes() == ["ADC", "Other", "SCC"]
    assert list(cohort.clinical.columns) == ["histology", "site"]
    sub = cohort.subset([4, 0])
    assert sub.sample_ids == ("P5", "P1") and list(sub.radiomics.index) == ["P5", "P1"]
    np.testing.assert_array_equal(sub.expression[1], cohort.expression[0])
    assert cohort.content_hash() == load_cohort(tmp_path / "c").content_hash() != sub.content_hash()


def test_tables_are_aligned_to_expression_order(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    clinical = pd.read_csv(root / "clinical.csv").iloc[::-1]
    clinical.to_csv(root / "clinical.csv", index=False)
    cohort = load_cohort(root)
    assert list(cohort.clinical.index) == list(cohort.sample_ids)
    assert cohort.labels()[1] == "SCC"


def test_duplicate_sample_id(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    text = (root / "expression.csv").read_text().replace("P3,", "P1,")
    (root / "expression.csv").write_text(text)
    msg = _expect(root, r"expression.csv: duplicate sample_id 'P1' \(rows 1 and 3\).*unique")
    assert str(root) in msg


def test_duplicate_sample_id_in_clinical(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    clinical = pd.read_csv(root / "clinical.csv")
    clinical.loc[5, "sample_id"] = "P2"
    clinical.to_csv(root / "clinical.csv", index=False)
    _expect(root, r"clinical.csv: duplicate sample_id 'P2' \(rows 2 and 6\)")


def test_sample_missing_from_a_table(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    pd.read_csv(root / "radiomics.csv").iloc[:-1].to_csv(root / "radiomics.csv", index=False)
    _expect(root, r"samples differ between tables: 1 in expression.csv but not in radiomics.csv \('P6'\).*same samples")


def test_extra_sample_in_clinical(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    clinical = pd.read_csv(root / "clinical.csv")
    clinical.loc[6] = ["P99", "ADC", "A"]
    clinical.to_csv(root / "clinical.csv", index=False)
    _expect(root, r"1 in clinical.csv but not in expression.csv \('P99'\)")


def test_non_numeric_expression(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    frame = pd.read_csv(root / "expression.csv")
    frame["KRAS"] = frame["KRAS"].astype(object)
    frame.loc[3, "KRAS"] = "high"
    frame.to_csv(root / "expression.csv", index=False)
    _expect(root, r"non-numeric expression value 'high' in column 'KRAS', row 4 \(sample 'P4'\)")


@pytest.mark.parametrize(("value", "kind"), [("", "missing/NaN"), ("NaN", "missing/NaN"), ("inf", "infinite"), ("-inf", "infinite")])
def test_non_finite_expression(tmp_path: Path, value: str, kind: str) -> None:
    root = _write_valid(tmp_path / "c")
    lines = (root / "expression.csv").read_text().splitlines()
    cells = lines[2].split(",")
    cells[2] = value
    lines[2] = ",".join(cells)
    (root / "expression.csv").write_text("\n".join(lines) + "\n")
    _expect(root, rf"{kind} expression value in column 'EGFR', row 2 \(sample 'P2'\)")


def test_non_finite_in_parquet(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    frame = pd.read_csv(root / "expression.csv")
    frame.loc[4, "ALK"] = np.nan
    (root / "expression.csv").unlink()
    frame.to_parquet(root / "expression.parquet", index=False)
    _expect(root, r"expression.parquet: missing/NaN expression value in column 'ALK', row 5 \(sample 'P5'\)")


def test_duplicate_gene_columns_csv(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    text = (root / "expression.csv").read_text().replace("KRAS", "EGFR", 1)
    (root / "expression.csv").write_text(text)
    _expect(root, r"duplicate gene column 'EGFR' \(columns 3, 4\)")


def test_duplicate_gene_columns_parquet(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    (root / "expression.csv").unlink()
    arrays = [pa.array(["P1", "P2", "P3", "P4", "P5", "P6"]), pa.array(np.ones(6)), pa.array(np.ones(6))]
    pq.write_table(pa.Table.from_arrays(arrays, names=["sample_id", "TP53", "TP53"]), root / "expression.parquet")
    _expect(root, r"expression.parquet: duplicate gene column 'TP53'")


def test_transposed_by_sample_ids_in_header(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    frame = pd.read_csv(root / "expression.csv").set_index("sample_id").T
    frame.index.name = "sample_id"  # genes as rows, but the first header says sample_id
    frame.to_csv(root / "expression.csv")
    _expect(root, r"looks transposed \(genes as rows\): 6 column headers are sample ids")


def test_first_column_must_be_sample_id(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    text = (root / "clinical.csv").read_text().replace("sample_id", "patient", 1)
    (root / "clinical.csv").write_text(text)
    _expect(root, r"clinical.csv: first column must be 'sample_id', found 'patient'; rename it")


def test_missing_label(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    clinical = pd.read_csv(root / "clinical.csv")
    clinical.loc[2, "histology"] = None
    clinical.to_csv(root / "clinical.csv", index=False)
    _expect(root, r"missing histology value in row 3 \(sample 'P3'\); 1 missing in all")


def test_unknown_label_against_training_classes(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    _expect(root, r"unknown histology value 'Other' in row 3 \(sample 'P3'\); allowed \(from the training data\): ADC, SCC",
            classes=["ADC", "SCC"])


def test_label_column_missing(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    pd.read_csv(root / "clinical.csv").drop(columns=["histology"]).to_csv(root / "clinical.csv", index=False)
    _expect(root, r"clinical.csv: no 'histology' column")


def test_missing_radiomic_value(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    frame = pd.read_csv(root / "radiomics.csv")
    frame.loc[1, "original_shape_VoxelVolume"] = np.nan
    frame.to_csv(root / "radiomics.csv", index=False)
    _expect(root, r"radiomics.csv: missing/NaN radiomic feature value in column 'original_shape_VoxelVolume', row 2 \(sample 'P2'\)")


@pytest.mark.parametrize("name", ["expression.csv", "radiomics.csv", "clinical.csv"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    root = _write_valid(tmp_path / "c")
    (root / name).write_text("")
    _expect(root, rf"{name}: file is empty")


@pytest.mark.parametrize("name", ["expression.csv", "clinical.csv"])
def test_header_only_file(tmp_path: Path, name: str) -> None:
    root = _write_valid(tmp_path / "c")
    header = (root / name).read_text().splitlines()[0]
    (root / name).write_text(header + "\n")
    _expect(root, rf"{name}: has a header but no rows")


def test_empty_parquet(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    (root / "expression.csv").unlink()
    (root / "expression.parquet").write_bytes(b"")
    _expect(root, r"expression.parquet: file is empty")


def test_corrupt_parquet(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    (root / "expression.csv").unlink()
    (root / "expression.parquet").write_bytes(b"PAR1 this is not parquet")
    _expect(root, r"expression.parquet: not a readable parquet file")


def test_ragged_csv(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    with (root / "expression.csv").open("a") as handle:
        handle.write("P7,1,2\n")
    _expect(root, r"expression.csv: cannot parse as CSV")


def test_no_or_several_expression_files(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    shutil.copy(root / "expression.csv", root / "expression.tsv")
    _expect(root, r"several expression files \(expression.tsv, expression.csv\); keep exactly one")
    (root / "expression.tsv").unlink()
    (root / "expression.csv").unlink()
    _expect(root, r"no expression file; add expression.parquet, expression.tsv or expression.csv")


def test_missing_required_tables(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    (root / "radiomics.csv").unlink()
    _expect(root, r"radiomics.csv: file not found")
    assert load_cohort(root, require_radiomics=False).radiomics is None
    _expect(tmp_path / "nowhere", r"cohort directory not found")


def test_manifest_paths_resolved_and_checked(tmp_path: Path) -> None:
    root = _write_valid(tmp_path / "c")
    (root / "images").mkdir()
    for name in ("p1.nrrd", "p1_mask.nrrd"):
        (root / "images" / name).write_bytes(b"x")
    pd.DataFrame({"sample_id": ["P1"], "Image": ["p1.nrrd"], "Mask": ["p1_mask.nrrd"]}).to_csv(root / "images" / "manifest.csv", index=False)
    cohort = load_cohort(root)
    assert cohort.images.loc["P1", "Image"] == (root / "images" / "p1.nrrd").resolve()
    pd.DataFrame({"sample_id": ["P1"], "Image": ["missing.nrrd"], "Mask": ["p1_mask.nrrd"]}).to_csv(root / "images" / "manifest.csv", index=False)
    _expect(root, r"manifest.csv: row 1 \(sample 'P1'\) Image file .*missing.nrrd' not found")
    pd.DataFrame({"sample_id": ["P1"], "Image": ["p1.nrrd"]}).to_csv(root / "images" / "manifest.csv", index=False)
    _expect(root, r"manifest.csv: missing column\(s\) Mask")
    pd.DataFrame({"sample_id": ["P42"], "Image": ["p1.nrrd"], "Mask": ["p1_mask.nrrd"]}).to_csv(root / "images" / "manifest.csv", index=False)
    _expect(root, r"manifest.csv: 1 sample\(s\) not in expression.csv \('P42'\)")
    pd.DataFrame({"sample_id": ["P1"], "Image": ["p1.nrrd"], "Mask": ["p1_mask.nrrd"], "Label": ["one"]}).to_csv(root / "images" / "manifest.csv", index=False)
    _expect(root, r"manifest.csv: row 1 column Label")
