"""Benchmark: prediction through the app, against a plain grpcio server and the bare model, in one run.

A paper-sized model (21,766 genes, 101 radiomic targets + histology) is fitted briefly on a
synthetic cohort and exported to a temporary registry. Then, one 21,766-gene profile per call
(raw float32 bytes), asyncio gRPC clients in this process, at 1, 8 and 32 concurrent clients:

  app          the whole app as `radiogenomics serve` runs it: Serve's HAProxy ingress -> gateway
               replicas (one per CPU; prediction in place, dynamic batching, metrics, audit)
  app-compact  the same, answers in the COMPACT form (packed float arrays)
  app-v2       the same app through the KServe/Triton v2 `ModelInfer` (raw FP32 tensors)
  app-proxy    the same app behind Serve's classic Python gRPC proxy (`--ingress proxy`)
  plain        the same core code behind a plain `grpc.aio` server in its own process, one forward
               pass per request, no batching, no replicas (what a hand-rolled server does)
  plain-compact  that server answering in the COMPACT form
  model        the model's own batched forward pass in this process (the compute limit; batch =
               the client count)

and one `PredictStream` of 1,000 profiles (COMPACT, chunks of 100) through the app, against the
model's batched forward pass over the same 1,000 profiles in chunks of 100.
Printed: profiles/s, p50 and p99 latency (ms), each app path's ratio to the plain server (same
answer form) and to the model; and, at 32 clients (NAMED), the CPU time each request costs, by
process (gateway replicas, HAProxy, the rest of Ray, the plain server, the clients): the figure
that says where the time goes, and that moves little with the noise of a shared machine. Goals (issue #14): app >= 1.0x plain at 32 clients; app p50 at
1 client <= 2x plain's; the stream >= 25 % of the model's batched throughput.

    python bench/prediction.py [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
HALLMARK = PROJECT.parent / "shared" / "data" / "gene_sets" / "h.all.v7.0.symbols.gmt"
LEVELS = (1, 8, 32)
STREAM_PROFILES, STREAM_CHUNK = 1000, 100

from services.procfs import cpu_seconds, process_tree  # noqa: E402
from services.run import free_loopback_port  # noqa: E402 - the project's loopback-port helper


def make_model(root: Path) -> tuple[Path, np.ndarray]:
    """A paper-sized artifact and 64 test profiles in its gene order."""
    from radiogenomics.cohort import load_cohort
    from radiogenomics.registry import load_model
    from radiogenomics.synth import SynthConfig, generate
    from radiogenomics.training.direct import fit_and_export
    from radiogenomics.training.network import NetConfig

    generate(SynthConfig(out=root / "cohort", hallmark_gmt=HALLMARK, n_train=120, n_test=64), progress=False)
    folder = fit_and_export(load_cohort(root / "cohort" / "train"), root / "registry", "bench", NetConfig(widths=(256, 64)), epochs=2)
    model = load_model(folder)
    return folder, model.align(load_cohort(root / "cohort" / "test"))


PLAIN_SERVER = r"""
import asyncio, sys, time
import grpc
from radiogenomics.prediction import ModelShelf, Profile, assemble, MissingGenes
from radiogenomics.training.selection import set_threads
from services.pb.radiogenomics.v1 import prediction_pb2, prediction_pb2_grpc
from services.prediction import _predictions, profile_from_message, _model_ref

registry, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
set_threads(1)
shelf = ModelShelf(registry, name)
shelf.load()

class Plain(prediction_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request, context):
        model = shelf.get(request.model.name, request.model.version)
        inputs = assemble(model, [profile_from_message(request.profile)], MissingGenes.REJECT, where="profile")
        preds = model.predict(inputs.x)
        return prediction_pb2.PredictResponse(
            prediction=_predictions(model, preds, inputs, [request.profile.profile_id], request.output)[0],
            model=_model_ref(model))

async def main():
    server = grpc.aio.server()
    prediction_pb2_grpc.add_PredictionServiceServicer_to_server(Plain(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""

Result = tuple[float, float, float]  # profiles/s, p50 s, p99 s
CPU: dict[str, dict[str, float]] = {}  # path -> role -> CPU ms per request (NAMED, CPU_LEVEL clients)


def _summary(rate: float, latencies: np.ndarray) -> Result:
    return rate, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))


CPU_LEVEL = 32  # the client count at which CPU time per request is taken, by process
def _process_kinds(root: int) -> dict[int, str]:
    """Every process under `root`, by role: the gateway replicas, HAProxy, or the rest of Ray."""
    def role(program: bytes) -> str:
        return "gateway replicas" if b"Gateway" in program else "HAProxy" if program.endswith(b"haproxy") else "rest of Ray"

    return {pid: role(cmd.split(b"\0")[0]) for pid, cmd in process_tree(root).items()}


def _cpu_per_request(find: Callable[[], dict[int, str]], run: Callable[[], Result],
                     seconds: float) -> tuple[Result, dict[str, float]]:
    """Run a load of `seconds` and charge each process's CPU time to it: ms per answered request, by role.

    "clients" is this process (with the app, also its Ray driver's threads). A process that ends during
    the load is left out (its CPU cannot be read any more); one that starts during it counts in full.
    Unlike profiles/s this hardly moves with what else the machine is doing.
    """
    kinds = find()
    before = {pid: cpu_seconds(pid) for pid in kinds}
    mine = time.process_time()
    result = run()
    requests = result[0] * seconds  # rate over the timed load, times its length
    spent = {"clients": time.process_time() - mine}
    for pid, kind in {**kinds, **find()}.items():
        if Path(f"/proc/{pid}").exists():
            spent[kind] = spent.get(kind, 0.0) + cpu_seconds(pid) - before.get(pid, 0.0)
    return result, {kind: cpu * 1e3 / requests for kind, cpu in spent.items()}


async def _load(target: str, call_name: str, requests: list, clients: int, seconds: float, per_request: int = 1) -> Result:
    """`clients` concurrent callers of one unary RPC for `seconds`; `per_request` profiles per call."""
    import grpc

    from services.pb.inference import grpc_predict_v2_pb2_grpc as v2_grpc
    from services.pb.radiogenomics.v1 import prediction_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel) if call_name == "ModelInfer" \
            else prediction_pb2_grpc.PredictionServiceStub(channel)
        call = getattr(stub, call_name)
        for r in requests[:3]:  # warm-up
            await call(r)
        latencies: list[float] = []
        stop_at = time.perf_counter() + seconds

        async def caller(k: int) -> None:
            i = k
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                await call(requests[i % len(requests)])
                latencies.append(time.perf_counter() - start)
                i += clients

        began = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(clients)))
        elapsed = time.perf_counter() - began
    return _summary(per_request * len(latencies) / elapsed, np.asarray(latencies))


async def _stream(target: str, chunks: list) -> float:
    """Profiles/s of one PredictStream carrying `chunks` (best of three)."""
    import grpc

    from services.pb.radiogenomics.v1 import prediction_pb2_grpc

    best = 0.0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(3):
            began = time.perf_counter()
            answered = 0
            async for answer in stub.PredictStream(iter(chunks)):
                answered += len(answer.predictions)
            best = max(best, answered / (time.perf_counter() - began))
    return best


def bench_model(folder: Path, x: np.ndarray, seconds: float) -> tuple[dict[int, Result], float]:
    """The bare model: one batch of n at each level; and 1,000 profiles in chunks of 100 (profiles/s)."""
    from radiogenomics.registry import load_model
    from radiogenomics.training.selection import set_threads

    set_threads(1)
    model = load_model(folder)
    out = {}
    for n in LEVELS:
        batch = np.resize(x, (n, x.shape[1]))
        times = []
        stop_at = time.perf_counter() + seconds / 2
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            model.predict(batch)
            times.append(time.perf_counter() - start)
        t = np.asarray(times)
        out[n] = _summary(n / t.mean(), t)
    thousand = np.resize(x, (STREAM_PROFILES, x.shape[1]))
    best = 0.0
    for _ in range(3):
        began = time.perf_counter()
        for k in range(0, STREAM_PROFILES, STREAM_CHUNK):
            model.predict(thousand[k:k + STREAM_CHUNK])
        best = max(best, STREAM_PROFILES / (time.perf_counter() - began))
    return out, best


def _requests(x: np.ndarray, n_genes: int) -> dict[str, list]:
    from services.pb.inference import grpc_predict_v2_pb2 as v2
    from services.pb.radiogenomics.v1 import common_pb2, prediction_pb2

    def profile(i: int, row: np.ndarray) -> common_pb2.ExpressionProfile:
        return common_pb2.ExpressionProfile(profile_id=f"p{i}", raw_float32=row.astype("<f4").tobytes())

    named = [prediction_pb2.PredictRequest(profile=profile(i, row)) for i, row in enumerate(x)]
    compact = [prediction_pb2.PredictRequest(profile=profile(i, row), output=prediction_pb2.COMPACT) for i, row in enumerate(x)]
    infer = [v2.ModelInferRequest(model_name="bench", id=f"p{i}", inputs=[v2.ModelInferRequest.InferInputTensor(
        name="expression", datatype="FP32", shape=[1, n_genes])], raw_input_contents=[row.astype("<f4").tobytes()])
        for i, row in enumerate(x)]
    thousand = np.resize(x, (STREAM_PROFILES, x.shape[1]))
    chunks = [prediction_pb2.PredictBatchRequest(profiles=[profile(k + j, row) for j, row in enumerate(thousand[k:k + STREAM_CHUNK])],
                                                 output=prediction_pb2.COMPACT) for k in range(0, STREAM_PROFILES, STREAM_CHUNK)]
    return {"named": named, "compact": compact, "infer": infer, "chunks": chunks}


def _run_plain(folder: Path, requests: dict[str, list], seconds: float) -> dict[str, dict[int, Result]]:
    port = free_loopback_port()
    plain = subprocess.Popen([sys.executable, "-c", PLAIN_SERVER, str(folder.parent.parent), "bench", str(port)],
                             stdout=subprocess.PIPE, text=True, cwd=PROJECT)
    try:
        assert plain.stdout.readline().strip() == "ready"
        target = f"127.0.0.1:{port}"
        results = {path: {n: asyncio.run(_load(target, "Predict", requests[form], n, seconds)) for n in LEVELS}
                   for path, form in (("plain", "named"), ("plain-compact", "compact"))}
        _, CPU["plain"] = _cpu_per_request(lambda: {plain.pid: "plain server"}, lambda: asyncio.run(
            _load(target, "Predict", requests["named"], CPU_LEVEL, seconds)), seconds)
        return results
    finally:
        plain.terminate()
        plain.wait()


def _run_app(config, ingress: str, requests: dict[str, list], seconds: float) -> tuple[dict[str, dict[int, Result]], float | None]:
    from services.run import serving

    port = free_loopback_port()
    target = f"127.0.0.1:{port}"
    results: dict[str, dict[int, Result]] = {}
    with serving(config, port, ingress=ingress):  # the whole app on a new local Ray, as `radiogenomics serve` runs it
        if ingress == "proxy":
            results["app-proxy"] = {n: asyncio.run(_load(target, "Predict", requests["named"], n, seconds)) for n in LEVELS}
            return results, None
        for path, call, form in (("app", "Predict", "named"), ("app-compact", "Predict", "compact"),
                                 ("app-v2", "ModelInfer", "infer")):
            results[path] = {n: asyncio.run(_load(target, call, requests[form], n, seconds)) for n in LEVELS}
        stream = asyncio.run(_stream(target, requests["chunks"]))
        _, CPU["app"] = _cpu_per_request(lambda: _process_kinds(os.getpid()), lambda: asyncio.run(
            _load(target, "Predict", requests["named"], CPU_LEVEL, seconds)), seconds)
    return results, stream


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="load duration per level and path (default 6)")
    args = parser.parse_args()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from services.app import default_config
    from services.run import machine_cpus

    with tempfile.TemporaryDirectory(prefix="bench-prediction-") as tmp:
        print("fitting a paper-sized model (21,766 genes) ...", file=sys.stderr, flush=True)
        folder, x = make_model(Path(tmp))
        requests = _requests(x, x.shape[1])
        model, model_stream = bench_model(folder, x, args.seconds)
        results: dict[str, dict[int, Result]] = {"model": model}
        results.update(_run_plain(folder, requests, args.seconds))
        config = default_config(folder.parent.parent, "bench", None, Path(tmp) / "jobs")
        config.gateway_deployment.num_replicas = machine_cpus()
        app, stream = _run_app(config, "haproxy", requests, args.seconds)
        results.update(app)
        results.update(_run_app(config, "proxy", requests, args.seconds)[0])

    paths = ["app", "app-compact", "app-v2", "app-proxy", "plain", "plain-compact", "model"]
    baseline = {"app": "plain", "app-compact": "plain-compact", "app-v2": "plain-compact", "app-proxy": "plain"}
    print(f"{machine_cpus()} CPUs; gateway replicas: {machine_cpus()}")
    print(f"{'clients':>7} | {'path':<13} | {'profiles/s':>10} | {'p50 ms':>7} | {'p99 ms':>7} | {'/plain':>6} | {'/model':>6}")
    for n in LEVELS:
        for path in paths:
            rate, p50, p99 = results[path][n]
            vs_plain = f"{rate / results[baseline[path]][n][0]:.2f}x" if path in baseline else ""
            vs_model = f"{rate / results['model'][n][0]:.2f}x" if path != "model" else ""
            print(f"{n:>7} | {path:<13} | {rate:>10.1f} | {p50 * 1e3:>7.2f} | {p99 * 1e3:>7.2f} | {vs_plain:>6} | {vs_model:>6}")
    print(f"PredictStream of {STREAM_PROFILES} profiles (COMPACT, chunks of {STREAM_CHUNK}): {stream:.0f} profiles/s; "
          f"model over the same chunks {model_stream:.0f} profiles/s = {stream / model_stream:.0%}")
    for path, roles in CPU.items():
        parts = ", ".join(f"{role} {ms:.2f}" for role, ms in sorted(roles.items(), key=lambda kv: -kv[1]) if ms >= 0.005)
        print(f"CPU per request, {CPU_LEVEL} clients, NAMED, {path}: {sum(roles.values()):.2f} ms ({parts})")
    ratio_32 = results["app"][32][0] / results["plain"][32][0]
    p50_ratio = results["app"][1][1] / results["plain"][1][1]
    goals = [(f"app >= 1.0x plain at 32 clients: {ratio_32:.2f}x (COMPACT vs COMPACT: "
              f"{results['app-compact'][32][0] / results['plain-compact'][32][0]:.2f}x)", ratio_32 >= 1.0),
             (f"app p50 at 1 client <= 2x plain's: {results['app'][1][1] * 1e3:.2f} ms = {p50_ratio:.2f}x", p50_ratio <= 2.0),
             (f"stream >= 25% of the model's batched throughput: {stream / model_stream:.0%}", stream / model_stream >= 0.25)]
    for text, met in goals:
        print(f"goal {text} {'MET' if met else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
