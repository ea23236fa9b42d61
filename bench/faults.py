"""Benchmark: killing a Gateway (prediction) replica under steady load.

The whole app runs on a local Ray with 2 Gateway replicas. Clients send `Predict` without pause;
after a few seconds one Gateway replica's actor is killed (as a crashed process or a lost node
would). Printed, for clients that do not retry and for clients that retry UNAVAILABLE/INTERNAL once
(what the README tells clients to do for idempotent calls): requests, failed requests and their fraction, the status
codes seen, the time from the kill to the last failure, and the time until Serve runs 2 healthy
replicas again. Measured side by side in one run against the same load without a kill.

    python bench/faults.py [--seconds 20] [--clients 8]

`tests/test_faults.py` runs the same measurement (shorter) and checks the behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
HALLMARK = PROJECT.parent / "shared" / "data" / "gene_sets" / "h.all.v7.0.symbols.gmt"
# What the README tells clients to retry. Ray Serve's proxy answers INTERNAL ("actor died") for a
# request that was inside a replica when it died, so idempotent calls (Predict) retry that too.
RETRYABLE = {"UNAVAILABLE", "INTERNAL"}


@dataclass
class Outcome:
    """What the clients saw during one load run."""

    sent: int = 0
    failed: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    killed_at: float | None = None
    last_failure_at: float | None = None
    replicas_back_at: float | None = None
    retried: int = 0

    @property
    def failed_fraction(self) -> float:
        return self.failed / self.sent if self.sent else 0.0

    def since_kill(self, moment: float | None) -> float | None:
        return None if moment is None or self.killed_at is None else moment - self.killed_at


def replica_actors(app: str, deployment: str) -> list[str]:
    """Names of the live replica actors of one deployment."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix))


def healthy_replicas(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0)) if status.status == "HEALTHY" else 0


def kill_one_replica(app: str, deployment: str) -> str:
    """Kill one replica actor outright (no graceful shutdown); Serve must replace it."""
    import ray

    name = replica_actors(app, deployment)[0]
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


async def steady_load(target: str, metadata: tuple, requests: list, clients: int, seconds: float,
                      kill_after_s: float | None, app: str, deployment: str, replicas: int,
                      retry: bool = False) -> Outcome:
    """`clients` callers sending Predict for `seconds`; one replica killed after `kill_after_s`."""
    import grpc

    from services.pb.radiogenomics.v1 import prediction_pb2_grpc

    outcome = Outcome()
    began = time.monotonic()
    stop_at = began + seconds

    def watch_replicas(before: set[str]) -> None:  # polls Serve until a new replica runs beside the others
        while time.monotonic() < stop_at + 120:
            current = set(replica_actors(app, deployment))
            if current - before and healthy_replicas(app, deployment) >= replicas:
                outcome.replicas_back_at = time.monotonic() - began
                return
            time.sleep(0.2)

    async with grpc.aio.insecure_channel(target) as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)

        async def caller(k: int) -> None:
            i = k
            while time.monotonic() < stop_at:
                attempts = 2 if retry else 1
                for attempt in range(attempts):
                    try:
                        await stub.Predict(requests[i % len(requests)], metadata=metadata, timeout=30)
                        code = "OK"
                    except grpc.aio.AioRpcError as err:
                        code = err.code().name
                    if code == "OK" or code not in RETRYABLE or attempt == attempts - 1:
                        break
                    outcome.retried += 1
                    await asyncio.sleep(0.05)
                outcome.sent += 1
                outcome.codes[code] = outcome.codes.get(code, 0) + 1
                if code != "OK":
                    outcome.failed += 1
                    outcome.last_failure_at = time.monotonic() - began
                i += clients

        async def killer() -> None:
            if kill_after_s is None:
                return
            await asyncio.sleep(kill_after_s)
            before = set(await asyncio.to_thread(replica_actors, app, deployment))
            await asyncio.to_thread(kill_one_replica, app, deployment)
            outcome.killed_at = time.monotonic() - began
            threading.Thread(target=watch_replicas, args=(before,), daemon=True).start()

        await asyncio.gather(killer(), *(caller(k) for k in range(clients)))
    if kill_after_s is not None:
        deadline = time.monotonic() + 120
        while outcome.replicas_back_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    return outcome


def make_app_model(root: Path):
    """A small model (3,000 genes) in a registry and 32 test profiles as Predict requests."""
    from radiogenomics.cohort import load_cohort
    from radiogenomics.registry import load_model
    from radiogenomics.synth import SynthConfig, generate
    from radiogenomics.training.direct import fit_and_export
    from radiogenomics.training.network import NetConfig
    from services.pb.radiogenomics.v1 import common_pb2, prediction_pb2

    generate(SynthConfig(out=root / "cohort", hallmark_gmt=HALLMARK, n_train=80, n_test=32, n_genes=3000, n_features=10),
             progress=False)
    folder = fit_and_export(load_cohort(root / "cohort" / "train"), root / "registry", "faults", NetConfig(widths=(64,)), epochs=3)
    x = load_model(folder).align(load_cohort(root / "cohort" / "test"))
    requests = [prediction_pb2.PredictRequest(profile=common_pb2.ExpressionProfile(
        profile_id=f"p{i}", dense=common_pb2.DenseVector(values=row))) for i, row in enumerate(x)]
    return folder, requests


def report(label: str, outcome: Outcome) -> str:
    last = outcome.since_kill(outcome.last_failure_at)
    back = outcome.since_kill(outcome.replicas_back_at)
    return (f"{label:<28} sent {outcome.sent:>6}  failed {outcome.failed:>4} ({100 * outcome.failed_fraction:.2f} %)  "
            f"codes {outcome.codes}  retries {outcome.retried}  last failure "
            f"{'-' if last is None else f'{last:.2f} s'} after the kill  replicas back "
            f"{'-' if back is None else f'{back:.1f} s'} after the kill")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from services.app import APP_NAME, GATEWAY, default_config
    from services.run import free_loopback_port, serving

    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        print("fitting a small model ...", file=sys.stderr, flush=True)
        folder, requests = make_app_model(Path(tmp))
        config = default_config(folder.parent.parent, "faults", None, Path(tmp) / "jobs")
        config.gateway_deployment.num_replicas = 2
        config.gateway_deployment.num_cpus = 0.25
        port = free_loopback_port()
        with serving(config, port):  # the whole app on a local Ray, as `radiogenomics serve` runs it
            target, meta = f"127.0.0.1:{port}", (("application", APP_NAME),)
            runs = {}
            for label, kill, retry in (("no kill", None, False), ("kill, no client retry", 5.0, False),
                                       ("kill, clients retry once", 5.0, True)):
                runs[label] = asyncio.run(steady_load(target, meta, requests, args.clients, args.seconds, kill,
                                                      APP_NAME, GATEWAY, 2, retry))
                print(report(label, runs[label]), flush=True)
    base = runs["no kill"].sent / args.seconds
    for label in ("kill, no client retry", "kill, clients retry once"):
        print(f"{label}: throughput {runs[label].sent / args.seconds:.1f} req/s vs {base:.1f} without a kill "
              f"({runs[label].sent / max(runs['no kill'].sent, 1):.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
