"""Benchmark: radiomic extraction through the gRPC service and as a Ray batch, against baselines run side by side.

1. lung1 (512 x 512 x 48 CT): seconds per case through RadiomicsService (client-streamed upload over
   gRPC on 127.0.0.1, Ray Serve) vs calling pyradiomics directly in this process.
   Goal: the service adds at most 15 % (ratio <= 1.15).
2. Cohort batch throughput on 20 synthetic CT cases with 1 vs 2 Ray workers (after one warm-up
   batch that starts both worker processes, whose pyradiomics import would otherwise be timed).
   Goal: 2 workers give >= 1.7x the throughput of 1.

    python bench/extraction.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared" / "data"
PYRAD = SHARED / "pyradiomics"

from services.run import free_loopback_port  # noqa: E402 - the project's loopback-port helper


def _timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench_service(repeats: int) -> tuple[float, float]:
    import grpc
    from radiomics import featureextractor
    from ray import serve
    from ray.serve.config import gRPCOptions

    from services.pb.radiogenomics.v1 import radiomics_pb2, radiomics_pb2_grpc
    from services.radiomics import SERVICER, radiomics_app

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    image, mask = PYRAD / "lung1_image.nrrd", PYRAD / "lung1_label.nrrd"
    extractor = featureextractor.RadiomicsFeatureExtractor()
    extractor.execute(str(image), str(mask))  # warm-up
    direct = _timed(lambda: extractor.execute(str(image), str(mask)), repeats)

    port = free_loopback_port()
    serve.start(http_options={"host": "127.0.0.1", "port": free_loopback_port()},
                grpc_options=gRPCOptions(port=port, grpc_servicer_functions=[SERVICER]))
    serve.run(radiomics_app({}), name="radiomics", route_prefix="/radiomics")
    image_bytes, mask_bytes = image.read_bytes(), mask.read_bytes()

    def chunks():
        yield radiomics_pb2.ExtractChunk(header=radiomics_pb2.UploadHeader(
            image_format=radiomics_pb2.IMAGE_NRRD, mask_format=radiomics_pb2.MASK_NRRD))
        for i in range(0, len(image_bytes), 1 << 20):
            yield radiomics_pb2.ExtractChunk(image_chunk=image_bytes[i: i + (1 << 20)])
        yield radiomics_pb2.ExtractChunk(mask_chunk=mask_bytes)

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = radiomics_pb2_grpc.RadiomicsServiceStub(channel)
        call = lambda: stub.ExtractUpload(chunks(), metadata=(("application", "radiomics"),), timeout=300)  # noqa: E731
        call()  # warm-up
        service = _timed(call, repeats)
    serve.shutdown()
    return statistics.median(direct), statistics.median(service)


def bench_batch(n_cases: int = 20) -> tuple[float, float]:
    from radiogenomics.cli import default_hallmark_gmt
    from radiogenomics.extraction.batch import run_batch
    from radiogenomics.extraction.params import ExtractionParams
    from radiogenomics.synth import SynthConfig, generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(SynthConfig(out=Path(tmp) / "c", hallmark_gmt=default_hallmark_gmt(), n_train=n_cases, n_test=10,
                             n_genes=2000, n_features=5, images=True), progress=False)
        manifest = Path(tmp) / "c" / "train" / "images" / "manifest.csv"
        seconds = {}
        run_batch(manifest, Path(tmp) / "warm-up.csv", ExtractionParams({}), workers=2, progress=False)  # start both workers
        for workers in (1, 2, 1, 2):  # interleaved, best of two each
            out = Path(tmp) / f"features-{workers}-{time.perf_counter_ns()}.csv"
            start = time.perf_counter()
            summary = run_batch(manifest, out, ExtractionParams({}), workers=workers, progress=False)
            assert summary.extracted == n_cases, summary
            seconds[workers] = min(seconds.get(workers, float("inf")), time.perf_counter() - start)
    return n_cases / seconds[1], n_cases / seconds[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import ray

    from radiogenomics.raycluster import keep_local_ray_on_loopback

    keep_local_ray_on_loopback()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        direct, service = bench_service(args.repeats)
        one, two = bench_batch()
    finally:
        ray.shutdown()
    print(f"lung1 (512x512x48), median of {args.repeats}:")
    print(f"  pyradiomics directly        {direct:8.3f} s/case")
    print(f"  RadiomicsService over gRPC  {service:8.3f} s/case   ratio {service / direct:.3f} (goal <= 1.15: {'met' if service / direct <= 1.15 else 'NOT met'})")
    print("batch of 20 synthetic cases, best of 2:")
    print(f"  1 Ray worker   {one:8.2f} cases/s")
    print(f"  2 Ray workers  {two:8.2f} cases/s   speed-up {two / one:.2f}x (goal >= 1.7x: {'met' if two / one >= 1.7 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
