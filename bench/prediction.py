"""Benchmark: PredictionService through Ray Serve gRPC, against a plain grpcio server and the bare model.

A paper-sized model (21,766 genes, 101 radiomic targets + histology) is fitted briefly on a
synthetic cohort and exported to a temporary registry. Then, in one run, for 1, 8 and 32
concurrent clients (asyncio gRPC clients in this process, one dense profile per `Predict` call):

  serve   the whole app as `radiogenomics serve` runs it: Ray Serve gRPC proxy -> Gateway
          replica (prediction in place, dynamic batching, metrics)
  plain   the same core code behind a plain `grpc.aio` server in its own process, one forward
          pass per request (what a hand-rolled server does)
  model   the model's own batched forward pass in this process (the compute limit; batch = the
          client count, latency = one batch)

Also: one client sending PredictBatch requests of 32 profiles through Serve (client-side batching).
Printed: profiles/s, p50 and p99 latency (ms), and the ratios serve/plain.
Goals: serve p50 at 1 client < 20 ms; serve throughput at 32 clients >= 50 % of plain.

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

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
HALLMARK = PROJECT.parent / "shared" / "data" / "gene_sets" / "h.all.v7.0.symbols.gmt"
LEVELS = (1, 8, 32)

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


PLAIN_SERVER = r'''
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
        return prediction_pb2.PredictResponse(prediction=_predictions(model, preds, inputs, [request.profile.profile_id])[0],
                                              model=_model_ref(model))

async def main():
    server = grpc.aio.server()
    prediction_pb2_grpc.add_PredictionServiceServicer_to_server(Plain(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()

asyncio.run(main())
'''


async def _load(target: str, metadata, requests: list, clients: int, seconds: float, per_request: int = 1) -> tuple[float, np.ndarray]:
    """`clients` concurrent callers for `seconds`; returns profiles/s and latencies (s).

    `per_request` > 1: the requests are PredictBatchRequest messages of that many profiles.
    """
    import grpc

    from services.pb.radiogenomics.v1 import prediction_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        call = stub.Predict if per_request == 1 else stub.PredictBatch
        for r in requests[:3]:  # warm-up
            await call(r, metadata=metadata)
        latencies: list[float] = []
        stop_at = time.perf_counter() + seconds

        async def caller(k: int) -> None:
            i = k
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                await call(requests[i % len(requests)], metadata=metadata)
                latencies.append(time.perf_counter() - start)
                i += clients

        began = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(clients)))
        elapsed = time.perf_counter() - began
    return per_request * len(latencies) / elapsed, np.asarray(latencies)


def bench_model(folder: Path, x: np.ndarray, seconds: float) -> dict[int, tuple[float, float, float]]:
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
        out[n] = (n / t.mean(), float(np.percentile(t, 50)), float(np.percentile(t, 99)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="load duration per level and server (default 6)")
    args = parser.parse_args()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from services.pb.radiogenomics.v1 import common_pb2, prediction_pb2
    from services.app import APP_NAME, default_config
    from services.run import serving

    with tempfile.TemporaryDirectory(prefix="bench-prediction-") as tmp:
        print("fitting a paper-sized model (21,766 genes) ...", file=sys.stderr, flush=True)
        folder, x = make_model(Path(tmp))
        requests = [prediction_pb2.PredictRequest(profile=common_pb2.ExpressionProfile(
            profile_id=f"p{i}", dense=common_pb2.DenseVector(values=row))) for i, row in enumerate(x)]
        results: dict[str, dict[int, tuple[float, float, float]]] = {"model": bench_model(folder, x, args.seconds)}

        plain_port = free_loopback_port()
        plain = subprocess.Popen([sys.executable, "-c", PLAIN_SERVER, str(folder.parent.parent), "bench", str(plain_port)],
                                 stdout=subprocess.PIPE, text=True, cwd=PROJECT)
        try:
            assert plain.stdout.readline().strip() == "ready"
            results["plain"] = {}
            for n in LEVELS:
                rate, lat = asyncio.run(_load(f"127.0.0.1:{plain_port}", (), requests, n, args.seconds))
                results["plain"][n] = (rate, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)))
        finally:
            plain.terminate()
            plain.wait()

        port = free_loopback_port()
        config = default_config(folder.parent.parent, "bench", None, Path(tmp) / "jobs")
        with serving(config, port):  # the whole app on a local Ray, as `radiogenomics serve` runs it
            results["serve"] = {}
            for n in LEVELS:
                rate, lat = asyncio.run(_load(f"127.0.0.1:{port}", (("application", APP_NAME),), requests, n, args.seconds))
                results["serve"][n] = (rate, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)))
            batch = [prediction_pb2.PredictBatchRequest(profiles=[r.profile for r in requests[k:k + 32]]) for k in (0, 32)]
            rate, lat = asyncio.run(_load(f"127.0.0.1:{port}", (("application", APP_NAME),), batch, 1, args.seconds, 32))
            batched = (rate, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)))

    print(f"{'clients':>7} | {'path':<6} | {'profiles/s':>10} | {'p50 ms':>7} | {'p99 ms':>7}")
    for n in LEVELS:
        for path in ("serve", "plain", "model"):
            rate, p50, p99 = results[path][n]
            print(f"{n:>7} | {path:<6} | {rate:>10.1f} | {p50 * 1e3:>7.2f} | {p99 * 1e3:>7.2f}")
    print(f"serve, 1 client sending PredictBatch of 32: {batched[0]:.1f} profiles/s, p50 {batched[1] * 1e3:.1f} ms per batch")
    for n in LEVELS:
        ratio = results["serve"][n][0] / results["plain"][n][0]
        print(f"{n:>2} clients: serve/plain throughput {ratio:.2f}x, serve/model {results['serve'][n][0] / results['model'][n][0]:.2f}x")
    p50_1 = results["serve"][1][1] * 1e3
    ratio_32 = results["serve"][32][0] / results["plain"][32][0]
    print(f"goal p50 at 1 client < 20 ms: {p50_1:.1f} ms {'MET' if p50_1 < 20 else 'MISSED'}")
    print(f"goal serve >= 50% of plain at 32 clients: {ratio_32:.0%} {'MET' if ratio_32 >= 0.5 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
