"""PredictionService and the KServe/Triton v2 inference protocol on Ray Serve.

One deployment answers both protocols (and `grpc.health.v1.Health`) from the same loaded models:
method names are the RPC names. Requests from all clients are pooled by `@serve.batch` into one
forward pass per model version. The whole configuration is the deployment's `user_config`, so
`serve run`/`serve deploy` with new versions calls `reconfigure` on the running replicas: the new
versions load in a worker thread while the old ones keep answering, then swap in at once, and no
request in flight is dropped.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.grpc_util import gRPCInputStream

from radiogenomics import __version__
from radiogenomics.errors import InputError
from radiogenomics.prediction import MissingGenes, ModelInput, ModelShelf, Profile, assemble, matrix_input, predicted_classes
from radiogenomics.registry import LoadedModel
from radiogenomics.training.selection import set_threads
from radiogenomics.training.targets import Predictions
from services import health, metrics
from services.edge import edge
from services.errors import answer, end_stream, new_request_id
from services.wire import packed_float32
from services.pb.inference import grpc_predict_v2_pb2 as v2
from services.pb.radiogenomics.v1 import common_pb2, prediction_pb2

SERVICERS = [
    "services.pb.radiogenomics.v1.prediction_pb2_grpc.add_PredictionServiceServicer_to_server",
    "services.pb.inference.grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server",
    health.SERVICER,
]
SERVICE_NAMES = ("radiogenomics.v1.PredictionService", "inference.GRPCInferenceService")
V2_INPUT = "expression"
V2_HISTOLOGY = "histology_probabilities"
V2_FEATURES = "feature_probabilities"
_POLICIES = {prediction_pb2.REJECT: MissingGenes.REJECT, prediction_pb2.IMPUTE_TRAINING_MEAN: MissingGenes.IMPUTE_TRAINING_MEAN}


class PredictionConfig(BaseModel):
    """Settings of the prediction deployment; all of it is `user_config`, changeable without a restart."""

    registry: Path = Field(description="model registry folder (<registry>/<name>/<version>/model.json)")
    model: str = Field(description="the model name served")
    versions: list[str] | None = Field(None, description="versions served; None = every version in the registry")
    max_batch_profiles: int = Field(1024, ge=1, description="profiles per PredictBatch request or stream chunk")
    max_batch_size: int = Field(32, ge=1, description="requests pooled into one forward pass (@serve.batch)")
    batch_wait_timeout_s: float = Field(0.0, ge=0, description="how long a batch waits to fill (0: take what queued while the last pass ran)")
    torch_threads: int = Field(1, ge=1, description="torch threads per replica")


class DeploymentOptions(BaseModel):
    """Replica resources and scaling (Serve deployment options, not user_config)."""

    num_replicas: int | None = Field(1, ge=1)
    autoscaling: dict[str, Any] | None = Field(None, description="Serve autoscaling_config; replaces num_replicas")
    num_cpus: float = Field(0.25, ge=0, description="CPUs reserved per replica (mostly waiting on I/O and the batch)")
    max_ongoing_requests: int = Field(128, ge=1, description="must be >= max_batch_size for batches to fill")
    access_log: bool = Field(False, description="Serve's per-request access log (costs ~1 ms a request; the audit log is separate)")
    max_replicas_per_node: int | None = Field(None, ge=1, description="at most this many replicas on one Ray node "
                                              "(1 spreads them over the nodes; None: Serve may pack them on one)")

    def options(self, config: PredictionConfig) -> dict[str, Any]:
        """Serve deployment options for a replica serving `config` (checked against its batch size)."""
        if self.max_ongoing_requests < config.max_batch_size:
            raise InputError(f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= max_batch_size "
                             f"({config.max_batch_size}) or batches never fill")
        scaling = {"autoscaling_config": self.autoscaling} if self.autoscaling else {"num_replicas": self.num_replicas}
        placement = {"max_replicas_per_node": self.max_replicas_per_node} if self.max_replicas_per_node else {}
        return {"ray_actor_options": {"num_cpus": self.num_cpus}, "max_ongoing_requests": self.max_ongoing_requests,
                "user_config": config.model_dump(mode="json"), "logging_config": {"enable_access_log": self.access_log},
                **scaling, **placement}


def profile_from_message(message: common_pb2.ExpressionProfile) -> Profile:
    """The core's view of a wire profile (checked later, by `assemble`)."""
    kind = message.WhichOneof("values")
    if kind == "dense":
        return Profile(message.profile_id, dense=packed_float32(message.dense, "values"))
    if kind == "raw_float32":
        return Profile(message.profile_id, raw=message.raw_float32)
    if kind == "by_gene":
        return Profile(message.profile_id, by_gene=dict(message.by_gene.values))
    return Profile(message.profile_id)


def _form(output: int) -> int:
    """The requested OutputForm, checked (an unknown enum value is a client bug, not NAMED)."""
    if output not in (prediction_pb2.NAMED, prediction_pb2.COMPACT):
        raise InputError(f"output {output} is not an OutputForm; send NAMED (0) or COMPACT (1)")
    return output


def _model_ref(model: LoadedModel) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=model.name, version=model.version)


def _predictions(model: LoadedModel, preds: Predictions, inputs: ModelInput, ids: list[str],
                 form: int = prediction_pb2.NAMED) -> list[prediction_pb2.ProfilePrediction]:
    """One ProfilePrediction per profile, named or compact (`prediction_pb2.OutputForm`)."""
    message = prediction_pb2.ProfilePrediction
    imputed, unknown = inputs.imputed.tolist(), inputs.unknown.tolist()
    features = preds.features.tolist()
    if form == prediction_pb2.COMPACT:
        histology = preds.histology.tolist() if preds.histology is not None else [[]] * len(ids)
        return [message(profile_id=profile_id, histology_probabilities=histology[i], feature_probabilities=features[i],
                        imputed_genes=imputed[i], unknown_genes=unknown[i]) for i, profile_id in enumerate(ids)]
    spec = model.spec
    classes = predicted_classes(model, preds)
    feature = prediction_pb2.FeaturePrediction
    out = []
    for i, profile_id in enumerate(ids):
        histology = None
        if preds.histology is not None:
            histology = prediction_pb2.HistologyPrediction(
                probabilities=dict(zip(spec.histology_classes, preds.histology[i].tolist())), predicted_class=classes[i])
        out.append(message(
            profile_id=profile_id, histology=histology,
            features=[feature(name=name, probability_high=p, predicted_high=p >= 0.5, cut_point=cut)
                      for name, p, cut in zip(spec.features, features[i], spec.cut_points)],
            imputed_genes=imputed[i], unknown_genes=unknown[i],
        ))
    return out


#: A forward pass of up to this many profiles (a few ms) runs on the replica's request loop itself.
#: Handing every batch to a worker thread and back cost more than the pass: the threads then fight for
#: the GIL with Serve's own loops, and batches stay small. Inline, requests that arrive during a pass
#: queue into the next, larger one. Measured with /proc CPU accounting at 32 clients (the CPU figure
#: of bench/prediction.py, 3 runs each): gateway CPU per request 3.4-4.1 ms with the hand-over, 2.1-2.8 ms inline.
#: Larger passes (a big PredictBatch, stream chunks of more than 64) still go to a thread, so the loop keeps
#: reading streams; a pass of 64 holds the loop ~14 ms on the paper-sized dense model (4,600 profiles/s).
INLINE_FORWARD_PROFILES = 64

STREAM_AHEAD = 2  # PredictStream chunks decoded and predicted ahead of the one being answered


class PredictionService:
    """Answers the RPCs of PredictionService, GRPCInferenceService and Health (method name = RPC name).

    Deployed alone as `PredictionServer`, or as the app's gateway (`services.app.Gateway`).
    """

    def __init__(self) -> None:
        self.config: PredictionConfig | None = None
        self.shelf: ModelShelf | None = None
        self.gauges = metrics.Gauges()

    async def reconfigure(self, user_config: dict) -> None:
        """Load the configured versions beside the served ones, then swap (no request is dropped)."""
        config = PredictionConfig.model_validate(user_config)
        set_threads(config.torch_threads)
        shelf = self.shelf if self.shelf is not None and (self.shelf.registry, self.shelf.name) == (config.registry, config.model) \
            else ModelShelf(config.registry, config.model)
        await asyncio.to_thread(shelf.load, config.versions)
        self._batched.set_max_batch_size(config.max_batch_size)
        self._batched.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
        before = set(self.shelf.served) if self.shelf is not None else set()
        self.shelf, self.config = shelf, config
        for version in before | set(shelf.served):
            self.gauges.set(metrics.model_info(), 1 if version in shelf.served else 0,
                            {"model": config.model, "version": version})
        self.gauges.keep_reporting()

    # -- batching: every request's rows for one version go through one forward pass ---------------

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _batched(self, items: list[tuple[LoadedModel, np.ndarray]]) -> list[Predictions]:
        groups: dict[int, list[int]] = {}
        for i, (model, _) in enumerate(items):
            groups.setdefault(id(model), []).append(i)
        results: list[Predictions | None] = [None] * len(items)
        for members in groups.values():
            model = items[members[0]][0]
            x = np.concatenate([items[i][1] for i in members])
            metrics.batch_profiles().observe(len(x), tags={"model": model.name, "version": model.version})
            preds = model.predict(x) if len(x) <= INLINE_FORWARD_PROFILES else await asyncio.to_thread(model.predict, x)
            start = 0
            for i in members:
                n = len(items[i][1])
                results[i] = Predictions(
                    histology=None if preds.histology is None else preds.histology[start:start + n],
                    features=preds.features[start:start + n],
                )
                start += n
        return results  # type: ignore[return-value]

    def _model(self, ref: common_pb2.ModelRef) -> LoadedModel:
        return self.shelf.get(ref.name, ref.version)

    async def _predict_many(self, request: prediction_pb2.PredictBatchRequest, request_id: str, where: str) -> prediction_pb2.PredictBatchResponse:
        started = time.perf_counter()
        model = self._model(request.model)
        form = _form(request.output)
        profiles = [profile_from_message(p) for p in request.profiles]
        inputs = assemble(model, profiles, _POLICIES.get(request.missing_genes, MissingGenes.REJECT),
                          max_profiles=self.config.max_batch_profiles, where=where)
        preds = await self._batched((model, inputs.x))
        return prediction_pb2.PredictBatchResponse(
            predictions=_predictions(model, preds, inputs, [p.profile_id for p in profiles], form),
            model=_model_ref(model), request_id=request_id, timing=common_pb2.Timing(seconds=time.perf_counter() - started),
        )

    # -- radiogenomics.v1.PredictionService ------------------------------------------------------

    async def Predict(self, request: prediction_pb2.PredictRequest, grpc_context=None) -> prediction_pb2.PredictResponse:
        async def work(request_id: str) -> prediction_pb2.PredictResponse:
            if not request.HasField("profile"):
                raise InputError("profile is required; set profile.dense, profile.raw_float32 or profile.by_gene")
            batch = prediction_pb2.PredictBatchRequest(model=request.model, profiles=[request.profile],
                                                       missing_genes=request.missing_genes, output=request.output)
            result = await self._predict_many(batch, request_id, "profile")
            return prediction_pb2.PredictResponse(prediction=result.predictions[0], model=result.model,
                                                  request_id=request_id, timing=result.timing)

        return await answer(grpc_context, "Predict", work, prediction_pb2.PredictResponse())

    async def PredictBatch(self, request: prediction_pb2.PredictBatchRequest, grpc_context=None) -> prediction_pb2.PredictBatchResponse:
        return await answer(grpc_context, "PredictBatch", lambda rid: self._predict_many(request, rid, "profiles"),
                            prediction_pb2.PredictBatchResponse())

    async def PredictStream(self, request_stream: gRPCInputStream, grpc_context=None):
        """Answers in chunk order, while the next chunks are read and decoded (up to `STREAM_AHEAD` ahead).

        A reader task turns each arriving chunk into a prediction task, so receiving and decoding
        chunk k+1 overlaps chunk k's forward pass; a client that waits for each answer before
        sending the next chunk is answered as promptly as before.
        """
        request_id = new_request_id()
        ahead: asyncio.Queue = asyncio.Queue(maxsize=STREAM_AHEAD)

        async def read() -> None:
            chunk = 0
            try:
                async for request in request_stream:
                    work = self._predict_many(request, f"{request_id}-{chunk}", f"chunk {chunk}: profiles")
                    await ahead.put(asyncio.ensure_future(work))
                    chunk += 1
                await ahead.put(None)
            except Exception as exc:  # noqa: BLE001 - handed to the answering side, in order
                await ahead.put(exc)

        reader = asyncio.ensure_future(read())
        try:
            while (item := await ahead.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield await item
        except Exception as exc:  # noqa: BLE001 - a bad chunk ends the stream with its status, the replica survives
            await end_stream(grpc_context, "PredictStream", exc)
        finally:
            reader.cancel()
            while not ahead.empty():  # chunks read ahead of an error: dropped
                item = ahead.get_nowait()
                if not isinstance(item, asyncio.Future):
                    continue
                if not item.done():
                    item.cancel()
                elif not item.cancelled():
                    item.exception()  # retrieved, so asyncio does not warn that it never was

    async def GetModelInfo(self, request: prediction_pb2.GetModelInfoRequest, grpc_context=None) -> prediction_pb2.ModelInfo:
        async def work(request_id: str) -> prediction_pb2.ModelInfo:
            model = self._model(request.model)
            spec, cv = model.spec, model.card.cv_metrics
            per_target = {k: float(v) for k, v in (cv.get("per_target") or {}).items() if isinstance(v, (int, float))}
            return prediction_pb2.ModelInfo(
                model=_model_ref(model), versions=self.shelf.served, genes=model.genes,
                histology_classes=list(spec.histology_classes), features=list(spec.features), cut_points=list(spec.cut_points),
                outputs=spec.names, cv_auc=per_target, cv_summary_auc=float(cv.get("cv_auc") or 0.0),
                created=model.card.created, code_version=model.card.code_version,
                training_data_hash=str(model.card.training.get("data_hash", "")),
                max_batch_profiles=self.config.max_batch_profiles, best_family=dict(model.card.best_family),
                ensemble_members=max(1, len(model.card.members)),
            )

        return await answer(grpc_context, "GetModelInfo", work, prediction_pb2.ModelInfo())

    # -- inference.GRPCInferenceService (KServe / Triton v2) --------------------------------------

    async def ServerLive(self, request: v2.ServerLiveRequest, grpc_context=None) -> v2.ServerLiveResponse:
        return v2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: v2.ServerReadyRequest, grpc_context=None) -> v2.ServerReadyResponse:
        return v2.ServerReadyResponse(ready=self._ready())

    async def ModelReady(self, request: v2.ModelReadyRequest, grpc_context=None) -> v2.ModelReadyResponse:
        async def work(request_id: str) -> v2.ModelReadyResponse:
            try:
                self._v2_model(request.name, request.version)
            except InputError:
                return v2.ModelReadyResponse(ready=False)
            return v2.ModelReadyResponse(ready=True)

        return await answer(grpc_context, "ModelReady", work, v2.ModelReadyResponse())

    async def ServerMetadata(self, request: v2.ServerMetadataRequest, grpc_context=None) -> v2.ServerMetadataResponse:
        return v2.ServerMetadataResponse(name="radiogenomics", version=__version__, extensions=[])

    async def ModelMetadata(self, request: v2.ModelMetadataRequest, grpc_context=None) -> v2.ModelMetadataResponse:
        async def work(request_id: str) -> v2.ModelMetadataResponse:
            model = self._v2_model(request.name, request.version)
            tensor = v2.ModelMetadataResponse.TensorMetadata
            outputs = [tensor(name=V2_FEATURES, datatype="FP32", shape=[-1, len(model.spec.features)])]
            if model.spec.has_histology:
                outputs.insert(0, tensor(name=V2_HISTOLOGY, datatype="FP32", shape=[-1, len(model.spec.histology_classes)]))
            return v2.ModelMetadataResponse(
                name=model.name, versions=self.shelf.served, platform="pytorch",
                inputs=[tensor(name=V2_INPUT, datatype="FP32", shape=[-1, len(model.genes)])], outputs=outputs,
            )

        return await answer(grpc_context, "ModelMetadata", work, v2.ModelMetadataResponse())

    def _v2_model(self, name: str, version: str) -> LoadedModel:
        if not name:
            raise InputError(f"model_name is required; this server serves {self.shelf.name!r}")
        return self.shelf.get(name, version, where="model")

    async def ModelInfer(self, request: v2.ModelInferRequest, grpc_context=None) -> v2.ModelInferResponse:
        async def work(request_id: str) -> v2.ModelInferResponse:
            model = self._v2_model(request.model_name, request.model_version)
            x = _v2_input(request, len(model.genes))
            inputs = matrix_input(x, model, f"inputs[{V2_INPUT!r}]", max_rows=self.config.max_batch_profiles)
            preds = await self._batched((model, inputs.x))
            tensors = {V2_FEATURES: (preds.features, list(model.spec.features))}
            if preds.histology is not None:
                tensors[V2_HISTOLOGY] = (preds.histology, list(model.spec.histology_classes))
            wanted = [o.name for o in request.outputs] or [n for n in (V2_HISTOLOGY, V2_FEATURES) if n in tensors]
            unknown = [n for n in wanted if n not in tensors]
            if unknown:
                raise InputError(f"outputs: {', '.join(map(repr, unknown))} not produced by this model "
                                 f"(outputs: {', '.join(tensors)})")
            response = v2.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
            for name in wanted:
                values, labels = tensors[name]
                response.outputs.add(name=name, datatype="FP32", shape=list(values.shape),
                                     parameters={"labels": v2.InferParameter(string_param=",".join(labels))})
                response.raw_output_contents.append(np.ascontiguousarray(values, dtype="<f4").tobytes())
            return response

        return await answer(grpc_context, "ModelInfer", work, v2.ModelInferResponse())

    # -- grpc.health.v1.Health --------------------------------------------------------------------

    def _ready(self) -> bool:
        return self.shelf is not None and bool(self.shelf.served)

    def _readiness(self) -> dict[str, bool]:
        return {name: self._ready() for name in SERVICE_NAMES}

    async def Check(self, request, grpc_context=None):
        return health.check(self._readiness(), request, grpc_context)

    async def Watch(self, request, grpc_context=None):
        async for status in health.watch(self._readiness, request, grpc_context):
            yield status


SERVICES = (prediction_pb2.DESCRIPTOR.services_by_name["PredictionService"],
            v2.DESCRIPTOR.services_by_name["GRPCInferenceService"], health.DESCRIPTOR)


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=128)
@edge(*SERVICES)
class PredictionServer(PredictionService):
    """The prediction deployment on its own (its own Serve app); the full app uses the gateway."""


def _v2_input(request: v2.ModelInferRequest, n_genes: int) -> np.ndarray:
    """The single FP32 input tensor as an (N, genes) array, from raw bytes or typed contents."""
    if len(request.inputs) != 1 or request.inputs[0].name != V2_INPUT:
        names = [i.name for i in request.inputs]
        raise InputError(f"inputs: expected exactly one tensor named {V2_INPUT!r}, got {names}")
    tensor = request.inputs[0]
    if tensor.datatype != "FP32":
        raise InputError(f"inputs[{V2_INPUT!r}].datatype is {tensor.datatype!r}; send FP32")
    shape = list(tensor.shape)
    if len(shape) != 2 or shape[1] != n_genes or shape[0] < 1:
        raise InputError(f"inputs[{V2_INPUT!r}].shape {shape} does not fit [N, {n_genes}] (N >= 1; one column per model gene)")
    count = shape[0] * shape[1]
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise InputError(f"raw_input_contents has {len(request.raw_input_contents)} entries for 1 input; send one")
        raw = request.raw_input_contents[0]
        if len(raw) != 4 * count:
            raise InputError(f"raw_input_contents[0] has {len(raw)} bytes; shape {shape} in FP32 needs {4 * count}")
        values = np.frombuffer(raw, dtype="<f4")
    else:
        values = packed_float32(tensor.contents, "fp32_contents")
        if values.size != count:
            raise InputError(f"inputs[{V2_INPUT!r}].contents.fp32_contents has {values.size} values; shape {shape} needs {count}")
    return values.reshape(shape).astype(np.float32)


def prediction_app(config: PredictionConfig | dict, options: DeploymentOptions | dict | None = None) -> serve.Application:
    """The prediction Serve application (bind it with `serve.run(..., route_prefix=...)`)."""
    cfg = config if isinstance(config, PredictionConfig) else PredictionConfig.model_validate(config)
    opts = options if isinstance(options, DeploymentOptions) else DeploymentOptions.model_validate(options or {})
    return PredictionServer.options(**opts.options(cfg)).bind()
