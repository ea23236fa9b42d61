"""Cohort batch extraction: one Ray task per case, resumable, failures recorded.

Input: a manifest in pyradiomics' batch format (`sample_id,Image,Mask`, optional `Label`, and for
DICOM masks optional `ROI` / `Segment`); relative paths are resolved against the manifest's folder.
Output: `--out` CSV with one row per successful case (sample_id, features, provenance), appended as
cases finish, so an interrupted run loses nothing; failures go to `<out>.failures.csv` with their
reason. A rerun skips cases already in the output and retries the failed ones.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from radiogenomics.cohort import SAMPLE_ID
from radiogenomics.errors import InputError
from radiogenomics.extraction.params import ExtractionParams

OPTIONAL_COLUMNS = ("Label", "ROI", "Segment")


@dataclass(frozen=True)
class Case:
    sample_id: str
    image: str
    mask: str
    label: str | None = None  # parsed in the task, so a bad value fails only its case
    roi: str | None = None
    segment: str | None = None


@dataclass(frozen=True)
class BatchSummary:
    total: int
    extracted: int
    skipped: int
    failed: int
    out: Path
    failures: Path


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


def extract_case(case: Case, params: ExtractionParams, max_voxels: int | None = None) -> dict:
    """Extract one case; returns {"ok": row} or {"error": reason}: never raises for bad input.

    A task holds one CPU, so ITK runs single-threaded in it (no oversubscription with its neighbours).
    """
    import SimpleITK as sitk

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    from radiogenomics.extraction.extract import extract_files

    try:
        label = None
        if case.label is not None:
            try:
                label = int(case.label)
            except ValueError:
                raise InputError(f"Label {case.label!r} is not a whole number") from None
        segment: int | str | None = case.segment
        if segment is not None and str(segment).isdigit():
            segment = int(segment)
        result = extract_files(case.image, case.mask, params, label=label, roi=case.roi, segment=segment, max_voxels=max_voxels)
    except InputError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a broken case must not stop the batch
        return {"error": f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"}
    return {"ok": {SAMPLE_ID: case.sample_id, "image": case.image, "mask": case.mask, **result.row()}}


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
) -> BatchSummary:
    """Extract every case not yet in `out`, one Ray task per case, at most `workers` at a time."""
    import ray

    from radiogenomics.raycluster import ray_session

    cases = read_cases(Path(manifest))
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
        task = ray.remote(num_cpus=1, max_retries=1)(extract_case)
        params_ref = ray.put(params)
        limit = workers or max(1, int(ray.available_resources().get("CPU", 1)))
        pending: dict = {}
        queue = list(todo)
        with tqdm(total=len(todo), desc="extract", unit="case", disable=not progress) as bar:
            while queue or pending:
                while queue and len(pending) < limit:
                    case = queue.pop(0)
                    pending[task.remote(case, params_ref, max_voxels)] = case
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
                    fails.write({SAMPLE_ID: case.sample_id, "image": case.image, "mask": case.mask, "error": result["error"]})
                    failed += 1
                bar.update()
    return BatchSummary(total=len(cases), extracted=extracted, skipped=len(cases) - len(todo), failed=failed,
                        out=out, failures=fail_path)
