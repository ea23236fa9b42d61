"""Cohort batch extraction: one Ray task per case, resumable, failures recorded.

Input: a manifest in pyradiomics' batch format (`sample_id,Image,Mask`, optional `Label`, and for
DICOM masks optional `ROI` / `Segment`); relative paths are resolved against the manifest's folder.
Or, with a PACS, a studies file (`sample_id,study_uid,image_series_uid,mask_series_uid`, optional
`label` / `roi` / `segment`; an empty mask_series_uid means the study's one segmentation of the CT):
each task retrieves its case through DICOMweb into a scratch folder and extracts it the same way.
Output: `--out` CSV with one row per successful case (sample_id, features, provenance), appended as
cases finish, so an interrupted run loses nothing; failures go to `<out>.failures.csv` with their
reason. A rerun skips cases already in the output and retries the failed ones.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from radiogenomics.cohort import SAMPLE_ID
from radiogenomics.errors import InputError, RadiogenomicsError
from radiogenomics.extraction.params import ExtractionParams
from radiogenomics.pacs.config import PacsConfig

OPTIONAL_COLUMNS = ("Label", "ROI", "Segment")


@dataclass(frozen=True)
class Case:
    sample_id: str
    image: str
    mask: str
    label: str | None = None  # parsed in the task, so a bad value fails only its case
    roi: str | None = None
    segment: str | None = None

    def describe(self) -> dict[str, str]:
        return {"image": self.image, "mask": self.mask}


@dataclass(frozen=True)
class PacsCase:
    """A case in the PACS, by its DICOM UIDs."""

    sample_id: str
    study_uid: str
    image_series_uid: str
    mask_series_uid: str | None = None
    label: str | None = None
    roi: str | None = None
    segment: str | None = None

    def describe(self) -> dict[str, str]:
        return {"study_uid": self.study_uid, "image_series_uid": self.image_series_uid,
                "mask_series_uid": self.mask_series_uid or ""}


@dataclass(frozen=True)
class BatchSummary:
    total: int
    extracted: int
    skipped: int
    failed: int
    out: Path
    failures: Path


@dataclass(frozen=True)
class PacsOptions:
    """Where to retrieve PACS cases from, their byte limit, and whether to store an SR per case."""

    config: PacsConfig
    max_bytes: int | None = None
    store_report: bool = False


def failures_path(out: Path) -> Path:
    return out.with_name(out.stem + ".failures.csv")


def read_cases(manifest: Path) -> list[Case]:
    """Parse the manifest; a bad header or duplicate ids stop the batch, a bad row becomes a failed case."""
    if not manifest.is_file():
        raise InputError(f"{manifest}: manifest not found; pass a CSV with sample_id,Image,Mask[,Label]")
    if manifest.stat().st_size == 0:
        raise InputError(f"{manifest}: manifest is empty; write a header sample_id,Image,Mask and one row per case")
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    missing = [c for c in (SAMPLE_ID, "Image", "Mask") if c not in frame.columns]
    if missing:
        raise InputError(f"{manifest}: missing column(s) {', '.join(missing)}; the manifest needs sample_id,Image,Mask[,Label,ROI,Segment]")
    dupes = frame[SAMPLE_ID][frame[SAMPLE_ID].duplicated()].tolist()
    if dupes:
        raise InputError(f"{manifest}: duplicate sample_id {dupes[0]!r}; list each case once")
    cases = []
    for rec in frame.to_dict("records"):
        resolve = (lambda p: str(p if Path(p).is_absolute() else (manifest.parent / p).resolve()) if p else p)
        label = rec.get("Label") or None
        cases.append(Case(
            sample_id=rec[SAMPLE_ID], image=resolve(rec["Image"]), mask=resolve(rec["Mask"]),
            label=label,
            roi=rec.get("ROI") or None, segment=rec.get("Segment") or None,
        ))
    return cases


def read_studies(studies: Path) -> list[PacsCase]:
    """Parse a studies file; a bad header or duplicate ids stop the batch, a bad row becomes a failed case."""
    if not studies.is_file():
        raise InputError(f"{studies}: studies file not found; pass a CSV with "
                         "sample_id,study_uid,image_series_uid,mask_series_uid[,label|roi|segment]")
    frame = pd.read_csv(studies, dtype=str, keep_default_na=False) if studies.stat().st_size else pd.DataFrame()
    frame.columns = [str(c).strip() for c in frame.columns]
    lower = {c.lower(): c for c in frame.columns}
    missing = [c for c in (SAMPLE_ID, "study_uid", "image_series_uid") if c not in lower]
    if missing:
        raise InputError(f"{studies}: missing column(s) {', '.join(missing)}; the studies file needs "
                         "sample_id,study_uid,image_series_uid,mask_series_uid[,label|roi|segment]")
    ids = frame[lower[SAMPLE_ID]]
    dupes = ids[ids.duplicated()].tolist()
    if dupes:
        raise InputError(f"{studies}: duplicate sample_id {dupes[0]!r}; list each case once")
    get = lambda rec, name: (rec.get(lower[name], "") or "").strip() or None if name in lower else None  # noqa: E731
    return [PacsCase(sample_id=rec[lower[SAMPLE_ID]], study_uid=get(rec, "study_uid") or "",
                     image_series_uid=get(rec, "image_series_uid") or "", mask_series_uid=get(rec, "mask_series_uid"),
                     label=get(rec, "label"), roi=get(rec, "roi"), segment=get(rec, "segment"))
            for rec in frame.to_dict("records")]


def _options(case: Case | PacsCase) -> dict:
    label = None
    if case.label is not None:
        try:
            label = int(case.label)
        except ValueError:
            raise InputError(f"Label {case.label!r} is not a whole number") from None
    segment: int | str | None = case.segment
    if segment is not None and str(segment).isdigit():
        segment = int(segment)
    return {"label": label, "roi": case.roi, "segment": segment}


def extract_case(case: Case | PacsCase, params: ExtractionParams, max_voxels: int | None = None,
                 pacs: PacsOptions | None = None) -> dict:
    """Extract one case; returns {"ok": row} or {"error": reason}: never raises for bad input.

    A task holds one CPU, so ITK runs single-threaded in it (no oversubscription with its neighbours).
    """
    import SimpleITK as sitk

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    from radiogenomics.extraction.extract import extract_files

    try:
        if isinstance(case, PacsCase):
            if pacs is None:
                raise InputError("a PACS case needs the PACS (--pacs)")
            return {"ok": _extract_pacs_case(case, params, max_voxels, pacs)}
        result = extract_files(case.image, case.mask, params, max_voxels=max_voxels, **_options(case))
    except RadiogenomicsError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a broken case must not stop the batch
        return {"error": f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"}
    return {"ok": {SAMPLE_ID: case.sample_id, "image": case.image, "mask": case.mask, **result.row()}}


def _extract_pacs_case(case: PacsCase, params: ExtractionParams, max_voxels: int | None, pacs: PacsOptions) -> dict:
    from radiogenomics.pacs.extract import extract_from_pacs

    options = _options(case)
    with tempfile.TemporaryDirectory(prefix="radiogenomics-pacs-") as tmp:
        found = extract_from_pacs(pacs.config, case.study_uid, case.image_series_uid, case.mask_series_uid, params,
                                  folder=Path(tmp), max_bytes=pacs.max_bytes, max_voxels=max_voxels,
                                  store_report=pacs.store_report, **options)
    row = {SAMPLE_ID: case.sample_id, "study_uid": case.study_uid, "image_series_uid": case.image_series_uid,
           "mask_series_uid": found.mask_series_uid, **found.extraction.row()}
    if found.report is not None:
        row["report_series_uid"] = found.report.series_uid
        row["report_sop_instance_uid"] = found.report.sop_instance_uid
    return row


def _done_ids(out: Path) -> set[str]:
    if not out.exists() or out.stat().st_size == 0:
        return set()
    return set(pd.read_csv(out, usecols=[SAMPLE_ID], dtype=str)[SAMPLE_ID])


class _Appender:
    """Appends rows to a CSV, keeping the column order of an existing header."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] | None = None
        if path.exists() and path.stat().st_size > 0:
            with path.open(newline="") as handle:
                self.columns = next(csv.reader(handle))

    def write(self, row: dict) -> None:
        new = self.columns is None
        if new:
            self.columns = list(row)
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def run_batch(
    manifest: Path,
    out: Path,
    params: ExtractionParams,
    *,
    address: str | None = None,
    workers: int | None = None,
    max_voxels: int | None = None,
    progress: bool = True,
    pacs: PacsOptions | None = None,
) -> BatchSummary:
    """Extract every case not yet in `out`, one Ray task per case, at most `workers` at a time.

    With `pacs`, `manifest` is a studies file and every case is retrieved from that PACS.
    """
    import ray

    from radiogenomics.raycluster import check_visible_on_every_node, ray_session

    cases = read_studies(Path(manifest)) if pacs is not None else read_cases(Path(manifest))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done_ids(out)
    todo = [c for c in cases if c.sample_id not in done]
    fail_path = failures_path(out)
    fail_path.unlink(missing_ok=True)  # failed cases are retried; the file lists this run's failures
    rows, fails = _Appender(out), _Appender(fail_path)
    extracted = failed = 0
    if not todo:  # everything is done already: no need for Ray
        return BatchSummary(total=len(cases), extracted=0, skipped=len(cases), failed=0, out=out, failures=fail_path)
    with ray_session(address, num_cpus=workers):
        if pacs is None:
            check_visible_on_every_node([p for c in todo for p in (c.image, c.mask)], "case file")
        # SPREAD: cases go to every node; the default packs them on the driver's node while it has room.
        task = ray.remote(num_cpus=1, max_retries=1, scheduling_strategy="SPREAD")(extract_case)
        params_ref = ray.put(params)
        limit = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))  # all CPUs, busy or not at this instant
        pending: dict = {}
        queue = list(todo)
        with tqdm(total=len(todo), desc="extract", unit="case", disable=not progress) as bar:
            while queue or pending:
                while queue and len(pending) < limit:
                    case = queue.pop(0)
                    pending[task.remote(case, params_ref, max_voxels, pacs)] = case
                ready, _ = ray.wait(list(pending), num_returns=1)
                case = pending.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except Exception as exc:  # noqa: BLE001 - a worker died twice: record it, go on
                    result = {"error": f"worker failed: {type(exc).__name__}"}
                if "ok" in result:
                    rows.write(result["ok"])
                    extracted += 1
                else:
                    fails.write({SAMPLE_ID: case.sample_id, **case.describe(), "error": result["error"]})
                    failed += 1
                bar.update()
    return BatchSummary(total=len(cases), extracted=extracted, skipped=len(cases) - len(todo), failed=failed,
                        out=out, failures=fail_path)
