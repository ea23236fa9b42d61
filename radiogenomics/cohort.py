"""Cohort directories: load, validate and write them (the contract in DESIGN.md).

A cohort directory holds
  expression.{parquet,tsv,csv}  rows = samples, first column `sample_id`, one column per gene symbol
  radiomics.csv                 `sample_id` + radiomic feature columns (pyradiomics names;
                                `diagnostics_*` provenance columns are ignored)
  clinical.csv                  `sample_id`, `histology`, any other categorical columns
  images/manifest.csv           optional: `sample_id,Image,Mask[,Label]` (pyradiomics batch format)

Everything is validated on load; a problem raises `CohortError` with one line naming the file, the
row or column and the fix. Expression is float32 in memory, in file order of samples and genes.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from radiogenomics.errors import CohortError

SAMPLE_ID = "sample_id"
HISTOLOGY = "histology"
EXPRESSION_FORMATS = ("parquet", "tsv", "csv")
RADIOMICS_FILE = "radiomics.csv"
CLINICAL_FILE = "clinical.csv"
MANIFEST_FILE = Path("images") / "manifest.csv"

# Header names that mark a genes-as-rows matrix (GEO/GSEA/TCGA style) in the first column.
_GENE_HEADERS = {
    "gene", "genes", "symbol", "gene_symbol", "genesymbol", "hugo_symbol", "gene_id", "gene_name",
    "probe", "probe_id", "probeset", "id_ref", "name", "entrez_gene_id", "ensembl_gene_id", "description",
}
_SHOW = 5  # how many offending names an error message lists


def _first(items: Sequence[str], n: int = _SHOW) -> str:
    shown = ", ".join(repr(str(x)) for x in list(items)[:n])
    return shown + (", ..." if len(items) > n else "")


@dataclass(frozen=True, eq=False)
class Cohort:
    """A validated cohort: expression (float32, samples x genes) with aligned labels.

    `radiomics`, `clinical` and `images` are indexed by sample id in the same order as
    `sample_ids`; any of them is None when the directory does not have it.
    """

    root: Path
    sample_ids: tuple[str, ...]
    genes: tuple[str, ...]
    expression: np.ndarray
    radiomics: pd.DataFrame | None = None
    clinical: pd.DataFrame | None = None
    images: pd.DataFrame | None = None
    expression_file: Path | None = field(default=None, compare=False)

    @property
    def n_samples(self) -> int:
        return len(self.sample_ids)

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def feature_names(self) -> list[str]:
        return [] if self.radiomics is None else list(self.radiomics.columns)

    def labels(self, column: str = HISTOLOGY) -> np.ndarray:
        """Values of a clinical column (e.g. histology) in sample order, as strings."""
        if self.clinical is None or column not in self.clinical.columns:
            raise CohortError(f"{self.root / CLINICAL_FILE}: no column {column!r}; add it (one value per sample)")
        return self.clinical[column].to_numpy(dtype=str)

    def classes(self, column: str = HISTOLOGY) -> list[str]:
        """The sorted distinct values of a clinical column: class names come from the data."""
        return sorted({str(v) for v in self.labels(column)})

    def subset(self, index: Sequence[int] | np.ndarray) -> Cohort:
        """The cohort restricted to the given sample positions (in that order)."""
        idx = np.asarray(index, dtype=np.int64)
        ids = [self.sample_ids[i] for i in idx]
        pick = (lambda df: None if df is None else df.loc[ids])
        return replace(
            self, sample_ids=tuple(ids), expression=np.ascontiguousarray(self.expression[idx]),
            radiomics=pick(self.radiomics), clinical=pick(self.clinical),
            images=None if self.images is None else self.images.loc[[s for s in ids if s in self.images.index]],
        )

    def content_hash(self) -> str:
        """SHA-256 over sample ids, genes, expression and labels: identifies the training data."""
        h = hashlib.sha256()
        h.update("\x1f".join(self.sample_ids).encode())
        h.update(b"\x1e" + "\x1f".join(self.genes).encode())
        h.update(np.ascontiguousarray(self.expression, dtype=np.float32).tobytes())
        for frame in (self.radiomics, self.clinical):
            if frame is not None:
                h.update(frame.to_csv().encode())
        return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Loading


def find_expression_file(root: Path) -> Path:
    """The one expression file of a cohort directory."""
    found = [root / f"expression.{ext}" for ext in EXPRESSION_FORMATS if (root / f"expression.{ext}").exists()]
    if not found:
        raise CohortError(
            f"{root}: no expression file; add expression.parquet, expression.tsv or expression.csv "
            "(rows = samples, first column sample_id)"
        )
    if len(found) > 1:
        raise CohortError(f"{root}: several expression files ({', '.join(p.name for p in found)}); keep exactly one")
    return found[0]


def _check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise CohortError(f"{path}: file is empty; write a header row starting with {SAMPLE_ID} and one row per sample")


def _read_header(path: Path, sep: str) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle, delimiter=sep), None)
    if not header or not any(h.strip() for h in header):
        raise CohortError(f"{path}: first line is blank; it must be the header row starting with {SAMPLE_ID}")
    return [h.strip() for h in header]


def _read_table(path: Path) -> pa.Table:
    """Read a parquet/tsv/csv file into an Arrow table, sample ids as strings, no type guessing for them."""
    _check_not_empty(path)
    if path.suffix == ".parquet":
        try:
            return pq.ParquetFile(path).read()
        except (pa.ArrowException, OSError) as exc:
            raise CohortError(f"{path}: not a readable parquet file ({exc}); rewrite it with pandas.DataFrame.to_parquet") from None
    sep = "\t" if path.suffix == ".tsv" else ","
    header = _read_header(path, sep)
    # Read every column under a unique placeholder name so duplicate headers survive for the check below.
    placeholders = [f"c{i}" for i in range(len(header))]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=placeholders, skip_rows=1, encoding="utf-8"),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(column_types={"c0": pa.string()}, strings_can_be_null=True),
        )
    except pa.ArrowInvalid as exc:
        msg = str(exc).splitlines()[0]
        raise CohortError(f"{path}: cannot parse as {'TSV' if sep == chr(9) else 'CSV'} ({msg}); every row needs the same number of {sep!r}-separated fields as the header") from None
    return table.rename_columns(header)


def _check_header(path: Path, names: list[str], what: str) -> None:
    if not names or names[0] != SAMPLE_ID:
        first = names[0] if names else ""
        if first.lower() in _GENE_HEADERS:
            raise CohortError(
                f"{path}: looks transposed (genes as rows): first column is {first!r}; samples must be rows with "
                f"first column {SAMPLE_ID} and one column per {what}; transpose it (e.g. df.set_index({first!r}).T)"
            )
        raise CohortError(f"{path}: first column must be {SAMPLE_ID!r}, found {first!r}; rename it or move the sample ids first")
    dupes = [n for n, c in Counter(names).items() if c > 1]
    if dupes:
        cols = [i + 1 for i, n in enumerate(names) if n == dupes[0]]
        raise CohortError(
            f"{path}: duplicate {what} column {dupes[0]!r} (columns {', '.join(map(str, cols))})"
            f"{f' and {len(dupes) - 1} more' if len(dupes) > 1 else ''}; each {what} must appear once (merge or drop the copies)"
        )
    blank = [i + 1 for i, n in enumerate(names) if not n]
    if blank:
        raise CohortError(f"{path}: column {blank[0]} has an empty header; name every {what} column")


def _sample_ids(path: Path, table: pa.Table) -> list[str]:
    if table.num_rows == 0:
        raise CohortError(f"{path}: has a header but no rows; add one row per sample")
    ids = table.column(0).cast(pa.string()).to_pylist()
    for i, sid in enumerate(ids):
        if sid is None or not str(sid).strip():
            raise CohortError(f"{path}: row {i + 1} has an empty {SAMPLE_ID}; give every sample an id")
    ids = [str(s).strip() for s in ids]
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid in seen:
            raise CohortError(
                f"{path}: duplicate {SAMPLE_ID} {sid!r} (rows {seen[sid] + 1} and {i + 1}); sample ids must be unique"
            )
        seen[sid] = i
    return ids


def _numeric_matrix(path: Path, table: pa.Table, ids: list[str], what: str, dtype: type = np.float32) -> np.ndarray:
    """Columns 1.. of the table as a matrix; names the first non-numeric / missing / infinite cell."""
    names = table.column_names
    out = np.empty((table.num_rows, table.num_columns - 1), dtype=dtype)
    for j, col in enumerate(table.columns[1:], start=1):
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
            values = pd.to_numeric(pd.Series(col.to_pylist(), dtype=object), errors="coerce")
            raw = col.to_pylist()
            bad = next(i for i, (v, r) in enumerate(zip(values, raw)) if pd.isna(v) and r not in (None, ""))
            raise CohortError(
                f"{path}: non-numeric {what} value {raw[bad]!r} in column {names[j]!r}, row {bad + 1} "
                f"(sample {ids[bad]!r}); every {what} value must be a number"
            )
        out[:, j - 1] = col.to_numpy(zero_copy_only=False)
    finite = np.isfinite(out)
    if not finite.all():
        i, j = map(int, np.argwhere(~finite)[0])
        kind = "missing/NaN" if np.isnan(out[i, j]) else "infinite"
        n_bad = int((~finite).sum())
        raise CohortError(
            f"{path}: {kind} {what} value in column {names[j + 1]!r}, row {i + 1} (sample {ids[i]!r}); "
            f"{n_bad} non-finite value(s) in all; impute or drop them before loading"
        )
    return out


def read_expression(path: Path, other_ids: Sequence[str] = ()) -> tuple[list[str], list[str], np.ndarray]:
    """Read and validate an expression file: (sample ids, genes, float32 matrix samples x genes).

    `other_ids` (sample ids of the other tables) helps recognise a transposed matrix.
    """
    table = _read_table(path)
    names = [str(n).strip() for n in table.column_names]
    if other_ids:
        overlap = set(names) & set(other_ids)
        if len(overlap) >= max(1, len(set(other_ids)) // 2):
            raise CohortError(
                f"{path}: looks transposed (genes as rows): {len(overlap)} column headers are sample ids "
                f"(e.g. {_first(sorted(overlap), 2)}); samples must be rows with first column {SAMPLE_ID}; transpose it"
            )
    _check_header(path, names, "gene")
    if len(names) < 2:
        raise CohortError(f"{path}: no gene columns; add one column per gene after {SAMPLE_ID}")
    table = table.rename_columns(names)
    ids = _sample_ids(path, table)
    return ids, names[1:], _numeric_matrix(path, table, ids, "expression")


def read_radiomics(path: Path) -> pd.DataFrame:
    """Read radiomics.csv: numeric features by sample id (diagnostics_* columns dropped)."""
    table = _read_table(path)
    names = [str(n).strip() for n in table.column_names]
    _check_header(path, names, "feature")
    keep = [0] + [i for i, n in enumerate(names) if i > 0 and not n.startswith("diagnostics_")]
    table = table.rename_columns(names).select(keep)
    if table.num_columns < 2:
        raise CohortError(f"{path}: no feature columns; add one column per radiomic feature after {SAMPLE_ID}")
    ids = _sample_ids(path, table)
    values = _numeric_matrix(path, table, ids, "radiomic feature", dtype=np.float64)
    return pd.DataFrame(values, index=pd.Index(ids, name=SAMPLE_ID), columns=table.column_names[1:])


def read_clinical(path: Path, classes: Sequence[str] | None = None, label: str = HISTOLOGY) -> pd.DataFrame:
    """Read clinical.csv (categorical columns as strings); `label` must be present and non-empty.

    With `classes` (the training cohort's class names), a value outside them is an error.
    """
    table = _read_table(path)
    names = [str(n).strip() for n in table.column_names]
    _check_header(path, names, "clinical")
    table = table.rename_columns(names)
    ids = _sample_ids(path, table)
    if label not in names:
        raise CohortError(f"{path}: no {label!r} column; add one with each sample's class (e.g. ADC / SCC / Other)")
    columns = {n: [None if v is None else str(v).strip() for v in table.column(n).to_pylist()] for n in names[1:]}
    values = columns[label]
    missing = [i for i, v in enumerate(values) if not v or v.lower() in {"na", "nan", "none", "null"}]
    if missing:
        i = missing[0]
        raise CohortError(
            f"{path}: missing {label} value in row {i + 1} (sample {ids[i]!r}); {len(missing)} missing in all; "
            f"fill in the class or drop the sample from every table"
        )
    if classes is not None:
        allowed = set(classes)
        unknown = [i for i, v in enumerate(values) if v not in allowed]
        if unknown:
            i = unknown[0]
            raise CohortError(
                f"{path}: unknown {label} value {values[i]!r} in row {i + 1} (sample {ids[i]!r}); "
                f"allowed (from the training data): {', '.join(sorted(allowed))}; relabel or drop the sample"
            )
    return pd.DataFrame(columns, index=pd.Index(ids, name=SAMPLE_ID), dtype=object)


class ManifestRow(BaseModel):
    """One row of images/manifest.csv (pyradiomics batch format); paths resolved and checked."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    sample_id: str
    Image: Path
    Mask: Path
    Label: int | None = None

    @field_validator("sample_id")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("empty sample_id")
        return value


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a pyradiomics batch manifest; relative paths are resolved against the manifest's folder."""
    _check_not_empty(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing_cols = [c for c in (SAMPLE_ID, "Image", "Mask") if c not in frame.columns]
    if missing_cols:
        raise CohortError(f"{path}: missing column(s) {', '.join(missing_cols)}; the manifest needs sample_id,Image,Mask[,Label]")
    if frame.empty:
        raise CohortError(f"{path}: has a header but no rows; add one row per case")
    rows = []
    for i, rec in enumerate(frame.to_dict("records")):
        rec = {k: (v if v != "" else None) for k, v in rec.items()}
        try:
            row = ManifestRow.model_validate(rec)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise CohortError(f"{path}: row {i + 1} column {err['loc'][0]}: {err['msg']}; fix the value") from None
        for col in ("Image", "Mask"):
            p = getattr(row, col)
            p = p if p.is_absolute() else (path.parent / p)
            if not p.exists():
                raise CohortError(f"{path}: row {i + 1} (sample {row.sample_id!r}) {col} file {str(p)!r} not found; fix the path")
            setattr(row, col, p.resolve())
        rows.append(row.model_dump())
    out = pd.DataFrame(rows).set_index(SAMPLE_ID)
    dupes = out.index[out.index.duplicated()].unique().tolist()
    if dupes:
        raise CohortError(f"{path}: duplicate sample_id {dupes[0]!r}; list each case once")
    return out


def _check_same_samples(tables: dict[str, list[str]]) -> None:
    (ref_name, ref_ids), *others = tables.items()
    for name, ids in others:
        only_ref = [s for s in ref_ids if s not in set(ids)]
        only_other = [s for s in ids if s not in set(ref_ids)]
        if only_ref or only_other:
            parts = []
            if only_ref:
                parts.append(f"{len(only_ref)} in {ref_name} but not in {name} ({_first(only_ref)})")
            if only_other:
                parts.append(f"{len(only_other)} in {name} but not in {ref_name} ({_first(only_other)})")
            raise CohortError(f"samples differ between tables: {'; '.join(parts)}; every table must list the same samples")


def load_cohort(
    root: str | Path,
    *,
    require_radiomics: bool = True,
    require_clinical: bool = True,
    classes: Sequence[str] | None = None,
) -> Cohort:
    """Load and validate a cohort directory.

    `classes`: the training cohort's histology classes; a test cohort with another value fails.
    Radiomics or clinical tables that are not required are loaded when present.
    """
    root = Path(root)
    if not root.is_dir():
        raise CohortError(f"{root}: cohort directory not found; pass a directory with expression, radiomics.csv and clinical.csv")
    expr_path = find_expression_file(root)
    rad_path, clin_path = root / RADIOMICS_FILE, root / CLINICAL_FILE
    for path, required in ((rad_path, require_radiomics), (clin_path, require_clinical)):
        if required and not path.exists():
            raise CohortError(f"{path}: file not found; a cohort needs {path.name} (sample_id + one column per value)")
    clinical = read_clinical(clin_path, classes) if clin_path.exists() else None
    radiomics = read_radiomics(rad_path) if rad_path.exists() else None
    other_ids = list(clinical.index) if clinical is not None else (list(radiomics.index) if radiomics is not None else [])
    ids, genes, matrix = read_expression(expr_path, other_ids)

    tables = {expr_path.name: ids}
    if radiomics is not None:
        tables[rad_path.name] = list(radiomics.index)
    if clinical is not None:
        tables[clin_path.name] = list(clinical.index)
    _check_same_samples(tables)

    images = None
    manifest = root / MANIFEST_FILE
    if manifest.exists():
        images = read_manifest(manifest)
        unknown = [s for s in images.index if s not in set(ids)]
        if unknown:
            raise CohortError(f"{manifest}: {len(unknown)} sample(s) not in {expr_path.name} ({_first(unknown)}); drop them or add their expression")
    return Cohort(
        root=root, sample_ids=tuple(ids), genes=tuple(genes), expression=matrix,
        radiomics=None if radiomics is None else radiomics.loc[ids],
        clinical=None if clinical is None else clinical.loc[ids],
        images=images, expression_file=expr_path,
    )


# ----------------------------------------------------------------------------------------------
# Writing


def write_expression(path: str | Path, sample_ids: Sequence[str], genes: Sequence[str], matrix: np.ndarray) -> Path:
    """Write an expression matrix in the cohort format chosen by the file's suffix."""
    path = Path(path)
    matrix = np.asarray(matrix, dtype=np.float32)
    if path.suffix == ".parquet":
        arrays = [pa.array(list(sample_ids), type=pa.string())] + [pa.array(matrix[:, j]) for j in range(matrix.shape[1])]
        pq.write_table(pa.Table.from_arrays(arrays, names=[SAMPLE_ID, *genes]), path)
    else:
        frame = pd.DataFrame(matrix, columns=list(genes))
        frame.insert(0, SAMPLE_ID, list(sample_ids))
        frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False, float_format="%.6g")
    return path


def write_table(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write a sample-indexed table (radiomics.csv, clinical.csv) with `sample_id` first."""
    path = Path(path)
    out = frame.copy()
    out.index.name = SAMPLE_ID
    out.to_csv(path, float_format="%.10g")
    return path
