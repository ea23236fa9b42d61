"""MaskingService on Ray Serve: gene-masking jobs, stored in SQLite, computed as Ray tasks.

`SubmitJob` checks everything a job needs (model, cohort, labels, gene sets, limits) before
anything is stored, so a bad request leaves no trace. A background runner in the replica takes
queued jobs one at a time, fans their chunks out as Ray tasks (retried when a worker dies) and
stores every finished chunk; a restarted service resumes queued and running jobs from the last
stored chunk. A job that cannot finish is marked FAILED with the reason, never dropped.

One replica per data directory (the embedded SQLite store); the work itself scales with the
Ray cluster.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import ray
from pydantic import BaseModel, Field, model_validator
from ray import serve

from radiogenomics.cohort import load_cohort, write_expression, write_table
from radiogenomics.errors import GeneSetError, InputError, LimitExceeded, NotFound
from radiogenomics.gene_sets import GeneSet, write_gmt
from radiogenomics.jobs import TERMINAL, JobRecord, JobState, JobStore
from radiogenomics.masking import (
    MaskingKernel, MaskingMode, MaskingOptions, finish, library_from_gmt, library_single_genes, make_plan, prepare,
    unmasked_auc,
)
from radiogenomics.masking.run import kernel_for
from radiogenomics.masking.library import check_library
from radiogenomics.prediction import MissingGenes, assemble
from radiogenomics.registry import LoadedModel, load_model, resolve
from services import metrics
from services.edge import edge
from services.errors import Precondition, answer, end_stream, inside_root
from services.forwarding import Forwardable
from services.pb.radiogenomics.v1 import common_pb2, masking_pb2
from services.prediction import profile_from_message

SERVICER = "services.pb.radiogenomics.v1.masking_pb2_grpc.add_MaskingServiceServicer_to_server"
log = logging.getLogger("radiogenomics.services.masking")

_STATES = {
    JobState.QUEUED: masking_pb2.QUEUED, JobState.RUNNING: masking_pb2.RUNNING, JobState.SUCCEEDED: masking_pb2.SUCCEEDED,
    JobState.FAILED: masking_pb2.FAILED, JobState.CANCELLED: masking_pb2.CANCELLED,
}
_FROM_STATES = {v: k for k, v in _STATES.items()}
_MODES = {masking_pb2.KEEP: MaskingMode.KEEP, masking_pb2.DROP: MaskingMode.DROP}


class MaskingConfig(BaseModel):
    """Settings of the masking deployment."""

    registry: Path = Field(description="model registry folder")
    default_model: str | None = Field(None, description="model used when a job names none (the app sets the served model)")
    data_dir: Path = Field(description="job store: jobs.sqlite and each job's inputs")
    data_root: Path | None = Field(None, description="cohort_path requests read only under this folder; None disables them")
    libraries: dict[str, Path] = Field(default_factory=dict, description="named GMT files clients may ask for, e.g. hallmark")
    max_sets_per_job: int = Field(25_000, ge=1, description="gene sets per job (all single genes of a model: ~21,766)")
    max_active_jobs: int = Field(4, ge=1, description="queued + running jobs")
    max_inline_patients: int = Field(5_000, ge=1)
    default_nulls: int = Field(1000, ge=1)
    max_nulls: int = Field(10_000, ge=1)
    chunk_sets: int = Field(512, ge=1, description="gene sets (observed + null) per Ray task")
    tasks_in_flight: int = Field(2, ge=1, description="chunk tasks submitted at once per job")
    task_cpus: float = Field(0.5, ge=0, description="CPUs per chunk task (0.5: fits beside the other deployments on 2 cores)")
    task_retries: int = Field(2, ge=0, description="retries of a chunk whose worker died")
    num_cpus: float = Field(0.0, ge=0, description="CPUs reserved by the replica itself (the work runs in tasks)")

    @model_validator(mode="after")
    def _default_within_limit(self) -> "MaskingConfig":
        if self.default_nulls > self.max_nulls:
            raise ValueError(f"default_nulls ({self.default_nulls}) must not exceed max_nulls ({self.max_nulls})")
        return self


@ray.remote
def _chunk_task(kernel: MaskingKernel, gene_lists: list[np.ndarray], mode: str) -> np.ndarray:
    """AUCs of one chunk (what `radiogenomics.masking.evaluate_chunk` computes), on a Ray worker."""
    from radiogenomics.training.selection import set_threads

    set_threads(1)
    return kernel.aucs(gene_lists, mode)


def _status(record: JobRecord) -> masking_pb2.JobStatus:
    return masking_pb2.JobStatus(
        job_id=record.id, state=_STATES[record.state],
        model=common_pb2.ModelRef(name=record.model_name, version=record.model_version),
        mode=masking_pb2.DROP if record.mode == MaskingMode.DROP.value else masking_pb2.KEEP, label=record.label,
        gene_sets=record.gene_sets, skipped=[masking_pb2.SkippedSet(gene_set=k, reason=v) for k, v in record.skipped.items()],
        chunks_done=record.chunks_done, chunks_total=record.chunks_total, evaluations=record.evaluations,
        error=record.error, created=record.created, updated=record.updated, attempts=record.attempts,
        result_rows=record.result_rows,
    )


def _gmt_error(exc: GeneSetError, path: Path) -> GeneSetError:
    return GeneSetError(str(exc).replace(f"{path}: ", "gene_sets.gmt_text: ").replace(str(path), "gene_sets.gmt_text"))


SERVICE = masking_pb2.DESCRIPTOR.services_by_name["MaskingService"]


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@edge(SERVICE)
class MaskingServer(Forwardable):
    """Deployment whose method names are the RPCs of `radiogenomics.v1.MaskingService`."""

    async def __init__(self, config: dict) -> None:
        self.config = MaskingConfig.model_validate(config)
        self.store = JobStore(self.config.data_dir)
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self._wake = asyncio.Event()
        self.gauges = metrics.Gauges()
        self.gauges.set(metrics.masking_queue(), 0)
        self.gauges.keep_reporting()
        self._runner = asyncio.get_running_loop().create_task(self._run_forever())

    # -- inputs ----------------------------------------------------------------------------------

    def _model(self, name: str, version: str) -> LoadedModel:
        name = name or self.config.default_model or ""
        if not name:
            raise InputError("model.name is required; name a model in the server's registry")
        try:
            folder = resolve(self.config.registry, name, version or None)
        except InputError as exc:
            raise NotFound(f"model: {exc}") from None
        key = (name, folder.name)
        if key not in self._models:
            self._models[key] = load_model(folder)
        return self._models[key]

    def _cohort_path(self, relative: str) -> Path:
        path = inside_root(self.config.data_root, relative, "cohort_path",
                           "cohort_path is disabled: this server has no data root; send the patients inline")
        if not path.is_dir():
            raise InputError(f"cohort_path {relative!r} is not a cohort folder under the data root")
        return path

    def _library(self, request: masking_pb2.SubmitJobRequest, model: LoadedModel, folder: Path) -> list[GeneSet] | None:
        """The library (None = every single gene); written to `folder/gene_sets.gmt` when given."""
        kind = request.WhichOneof("gene_sets")
        if kind is None:
            raise InputError("gene_sets is required: gmt_text, sets, library or single_genes")
        if kind == "single_genes":
            if not request.single_genes:
                raise InputError("single_genes must be true when chosen")
            count = len(model.genes)
            library = None
        elif kind == "library":
            path = self.config.libraries.get(request.library)
            if path is None:
                raise InputError(f"library {request.library!r} is not configured here (libraries: "
                                 f"{', '.join(sorted(self.config.libraries)) or 'none'}); send gmt_text or sets")
            library = library_from_gmt(path)
        elif kind == "gmt_text":
            path = folder / "gene_sets.gmt"
            path.write_text(request.gmt_text, encoding="utf-8")
            try:
                library = library_from_gmt(path)
            except GeneSetError as exc:
                raise _gmt_error(exc, path) from None
        else:
            library = [GeneSet(name=s.name, genes=tuple(dict.fromkeys(g for g in s.genes if g))) for s in request.sets.sets]
            for i, s in enumerate(library):
                if not s.name:
                    raise GeneSetError(f"gene_sets.sets[{i}].name is empty; name every set")
                if not s.genes:
                    raise GeneSetError(f"gene_sets.sets[{i}] ({s.name!r}) has no genes")
            check_library(library)
        if library is not None:
            count = len(library)
        if count > self.config.max_sets_per_job:
            raise LimitExceeded(f"gene_sets: {count} sets exceed the limit of {self.config.max_sets_per_job} per job; "
                                "split the library into several jobs")
        if library is not None:
            write_gmt(folder / "gene_sets.gmt", library)
        return library

    def _inline_cohort(self, inline: masking_pb2.InlineCohort, model: LoadedModel, folder: Path) -> Path:
        patients = list(inline.patients)
        if not patients:
            raise InputError("inline.patients is empty; send at least two patients with labels")
        if len(patients) > self.config.max_inline_patients:
            raise LimitExceeded(f"inline.patients: {len(patients)} exceed the limit of {self.config.max_inline_patients}; "
                                "put the cohort under the server's data root and use cohort_path")
        ids = [p.profile.profile_id or f"patient_{i + 1}" for i, p in enumerate(patients)]
        if len(set(ids)) != len(ids):
            raise InputError("inline.patients: profile_id values repeat; give every patient a distinct id")
        x = assemble(model, [profile_from_message(p.profile) for p in patients], MissingGenes.REJECT, where="inline.patients").x
        root = folder / "cohort"
        root.mkdir()
        write_expression(root / "expression.parquet", ids, model.genes, x)
        if model.spec.has_histology:
            missing = [ids[i] for i, p in enumerate(patients) if not p.histology]
            if missing:
                raise InputError(f"inline.patients: {len(missing)} patient(s) lack histology (e.g. {missing[0]}); "
                                 "the model predicts histology, so every patient needs its true class")
            write_table(root / "clinical.csv", pd.DataFrame({"histology": [p.histology for p in patients]}, index=ids))
        if model.spec.features:
            rows = []
            for i, p in enumerate(patients):
                absent = [f for f in model.spec.features if f not in p.radiomics]
                if absent:
                    raise InputError(f"inline.patients[{i}].radiomics lacks {len(absent)} of the model's features "
                                     f"(e.g. {absent[0]}); send every feature the model predicts")
                rows.append({f: p.radiomics[f] for f in model.spec.features})
            write_table(root / "radiomics.csv", pd.DataFrame(rows, index=ids))
        return root

    def _options(self, request: masking_pb2.SubmitJobRequest) -> MaskingOptions:
        nulls = request.null_sets or self.config.default_nulls
        if nulls < 0:
            raise InputError(f"null_sets {request.null_sets} must be >= 0 (0 = the server's default, {self.config.default_nulls})")
        if nulls > self.config.max_nulls:
            raise LimitExceeded(f"null_sets {nulls} exceed the limit of {self.config.max_nulls} per size; ask for fewer")
        if request.min_covered < 0:
            raise InputError(f"min_covered {request.min_covered} must be >= 0")
        if request.seed < 0:
            raise InputError(f"seed {request.seed} must be >= 0")
        if request.mode not in _MODES:
            raise InputError(f"mode {request.mode} is not KEEP or DROP")
        return MaskingOptions(mode=_MODES[request.mode], n_nulls=nulls, seed=request.seed,
                              min_covered=request.min_covered or 1, chunk_sets=self.config.chunk_sets)

    def _submit(self, request: masking_pb2.SubmitJobRequest) -> JobRecord:
        """Check the whole request in a scratch folder; only a valid job is stored (folder moved in, row inserted)."""
        if self.store.active_count() >= self.config.max_active_jobs:
            raise LimitExceeded(f"{self.config.max_active_jobs} jobs are already queued or running (the limit); "
                                "wait for one to finish (WatchJob) or cancel one")
        model = self._model(request.model.name, request.model.version)
        options = self._options(request)
        scratch = Path(tempfile.mkdtemp(prefix="submit-", dir=self.store.folder))
        try:
            library = self._library(request, model, scratch)
            kind = request.WhichOneof("cohort")
            if kind == "cohort_path":
                cohort_dir = self._cohort_path(request.cohort_path)
            elif kind == "inline":
                cohort_dir = self._inline_cohort(request.inline, model, scratch)
            else:
                raise InputError("cohort is required: cohort_path (under the data root) or inline patients")
            prepare(model, load_cohort(cohort_dir, classes=list(model.spec.histology_classes) or None))
            plan = make_plan(model, library if library is not None else library_single_genes(model), options)
            if len(plan.skipped) == len(plan.sets):
                raise GeneSetError("no gene set covers enough model genes; check the gene symbols")
            spec = {"cohort": "inline" if kind == "inline" else str(cohort_dir), "single_genes": library is None,
                    "mode": options.mode.value, "n_nulls": options.n_nulls, "seed": options.seed,
                    "min_covered": options.min_covered, "chunk_sets": options.chunk_sets}
            job_id = uuid.uuid4().hex
            target = self.store.job_dir(job_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(scratch), str(target))
            return self.store.create(job_id=job_id, model_name=model.name, model_version=model.version,
                                     mode=options.mode.value, label=request.label, request=spec,
                                     gene_sets=len(plan.sets))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- the runner ------------------------------------------------------------------------------

    def _report_jobs(self) -> None:
        for state, count in self.store.state_counts().items():
            self.gauges.set(metrics.masking_jobs(), count, {"state": state.value})

    async def _run_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._report_jobs)
                jobs = await asyncio.to_thread(self.store.unfinished)
                if jobs:
                    await self._run(jobs[0])
                    continue
            except Exception:  # noqa: BLE001 - the runner must outlive any job
                log.exception("masking runner error")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=2.0)
            except TimeoutError:
                pass

    def _job_inputs(self, record: JobRecord):
        spec = record.request
        model = self._model(record.model_name, record.model_version)
        folder = self.store.job_dir(record.id)
        cohort_dir = folder / "cohort" if spec["cohort"] == "inline" else Path(spec["cohort"])
        data = prepare(model, load_cohort(cohort_dir, classes=list(model.spec.histology_classes) or None))
        library = library_single_genes(model) if spec["single_genes"] else library_from_gmt(folder / "gene_sets.gmt")
        options = MaskingOptions(mode=MaskingMode(spec["mode"]), n_nulls=spec["n_nulls"], seed=spec["seed"],
                                 min_covered=spec["min_covered"], chunk_sets=spec["chunk_sets"])
        plan = make_plan(model, library, options)
        return model, data, options, plan

    async def _run(self, record: JobRecord) -> None:
        job_id = record.id
        try:
            model, data, options, plan = await asyncio.to_thread(self._job_inputs, record)
            await asyncio.to_thread(self.store.start, job_id, len(plan.chunks), plan.skipped)
            done = set(await asyncio.to_thread(self.store.chunks, job_id))
            pending = [i for i in range(len(plan.chunks)) if i not in done]
            kernel = await asyncio.to_thread(kernel_for, model, data)
            kernel_ref = ray.put(kernel)  # once per job: every task reads the same copy
            task = _chunk_task.options(num_cpus=self.config.task_cpus, max_retries=self.config.task_retries)
            in_flight: dict[ray.ObjectRef, int] = {}
            while pending or in_flight:
                self.gauges.set(metrics.masking_queue(), len(pending) + len(in_flight))
                if (await asyncio.to_thread(self.store.get, job_id)).cancel_requested:
                    for ref in in_flight:
                        ray.cancel(ref, force=True)
                    await asyncio.to_thread(self.store.mark_cancelled, job_id)
                    return
                while pending and len(in_flight) < self.config.tasks_in_flight:
                    index = pending.pop(0)
                    in_flight[task.remote(kernel_ref, plan.chunk_genes(index), options.mode.value)] = index
                ready, _ = await asyncio.to_thread(ray.wait, list(in_flight), num_returns=1, timeout=0.5)
                for ref in ready:
                    index = in_flight.pop(ref)
                    aucs = await ref
                    await asyncio.to_thread(self.store.save_chunk, job_id, index, aucs, len(aucs) * data.n_patients)
                    metrics.masked_evaluations().inc(len(aucs) * data.n_patients, tags={"mode": options.mode.value})
            self.gauges.set(metrics.masking_queue(), 0)
            await asyncio.to_thread(self._report_jobs)
            chunks = await asyncio.to_thread(self.store.chunks, job_id)
            baseline = unmasked_auc(model, data) if options.mode == MaskingMode.DROP else None
            table = await asyncio.to_thread(finish, plan, data, chunks, options, baseline)
            await asyncio.to_thread(self.store.finish, job_id, table)
        except InputError as exc:
            await asyncio.to_thread(self.store.fail, job_id, str(exc))
        except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError) as exc:
            reason = " ".join(str(exc).split())[:300]
            await asyncio.to_thread(self.store.fail, job_id, f"a masking worker failed after {self.config.task_retries} "
                                                              f"retries: {reason}; resubmit the job")
        except Exception as exc:  # noqa: BLE001 - record the failure, keep the runner alive
            log.exception("masking job %s failed", job_id)
            await asyncio.to_thread(self.store.fail, job_id, f"internal error ({type(exc).__name__}); quote job id {job_id} to support")

    # -- RPCs ------------------------------------------------------------------------------------

    async def SubmitJob(self, request: masking_pb2.SubmitJobRequest, grpc_context=None) -> masking_pb2.JobStatus:
        async def work(request_id: str) -> masking_pb2.JobStatus:
            record = await asyncio.to_thread(self._submit, request)
            self._wake.set()
            return _status(record)

        return await answer(grpc_context, "SubmitJob", work, masking_pb2.JobStatus())

    async def WatchJob(self, request: masking_pb2.JobRef, grpc_context=None):
        last = None
        while True:
            try:
                record = await asyncio.to_thread(self.store.get, request.job_id)
            except InputError as exc:
                await end_stream(grpc_context, "WatchJob", exc)
            key = (record.state, record.chunks_done)
            if key != last:
                last = key
                yield _status(record)
            if record.state in TERMINAL:
                return
            await asyncio.sleep(0.25)

    async def GetResults(self, request: masking_pb2.GetResultsRequest, grpc_context=None) -> masking_pb2.GetResultsResponse:
        async def work(request_id: str) -> masking_pb2.GetResultsResponse:
            record = await asyncio.to_thread(self.store.get, request.job_id)
            if record.state != JobState.SUCCEEDED:
                detail = f" ({record.chunks_done}/{record.chunks_total} chunks)" if record.state == JobState.RUNNING else ""
                why = f": {record.error}" if record.error else ""
                raise Precondition(f"job {record.id} is {record.state.value}{detail}{why}; results exist once it has "
                                   "succeeded (wait with WatchJob)")
            size = request.page_size or 500
            if not 1 <= size <= 10_000:
                raise InputError(f"page_size {request.page_size} is outside 1..10000")
            token = request.page_token
            if token and not (token.isascii() and token.isdigit() and len(token) <= 12):
                raise InputError("page_token is not one this server issued; pass next_page_token from the previous page")
            if request.max_q_value < 0 or np.isnan(request.max_q_value):
                raise InputError(f"max_q_value {request.max_q_value} must be >= 0 (0 = no filter)")
            offset = int(token or 0)
            frame, total = await asyncio.to_thread(self.store.results, record.id, list(request.outputs),
                                                   request.max_q_value or None, offset, size)
            rows = [masking_pb2.MaskingResult(**{k: (0.0 if v is None or (isinstance(v, float) and np.isnan(v)) else v)
                                                 for k, v in row.items()}) for row in frame.to_dict("records")]
            following = offset + len(rows)
            return masking_pb2.GetResultsResponse(results=rows, total_rows=total,
                                                  next_page_token=str(following) if following < total else "")

        return await answer(grpc_context, "GetResults", work, masking_pb2.GetResultsResponse())

    async def CancelJob(self, request: masking_pb2.JobRef, grpc_context=None) -> masking_pb2.JobStatus:
        async def work(request_id: str) -> masking_pb2.JobStatus:
            return _status(await asyncio.to_thread(self.store.request_cancel, request.job_id))

        return await answer(grpc_context, "CancelJob", work, masking_pb2.JobStatus())

    async def ListJobs(self, request: masking_pb2.ListJobsRequest, grpc_context=None) -> masking_pb2.ListJobsResponse:
        async def work(request_id: str) -> masking_pb2.ListJobsResponse:
            unknown = [s for s in request.states if s not in _FROM_STATES]
            if unknown:
                raise InputError(f"states: {unknown[0]} is not a job state")
            limit = request.limit or 100
            if not 1 <= limit <= 10_000:
                raise InputError(f"limit {request.limit} is outside 1..10000")
            records = await asyncio.to_thread(self.store.list, [_FROM_STATES[s] for s in request.states], limit)
            return masking_pb2.ListJobsResponse(jobs=[_status(r) for r in records])

        return await answer(grpc_context, "ListJobs", work, masking_pb2.ListJobsResponse())


def masking_app(config: MaskingConfig | dict) -> serve.Application:
    """The masking Serve application: one replica (the SQLite store), no CPU of its own."""
    cfg = config if isinstance(config, MaskingConfig) else MaskingConfig.model_validate(config)
    return MaskingServer.options(num_replicas=1, ray_actor_options={"num_cpus": cfg.num_cpus}).bind(cfg.model_dump(mode="json"))
