"""Surviving failures: a prediction (Gateway) replica killed under steady load.

The measurement is bench/faults.py's, run shorter; the benchmark prints the figures. The other
failure tests live beside their services: a killed masking worker (test_masking_service.py), an
interrupted Tune search resumed (test_training.py), a masking service restarted mid-job.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

from services.app import APP_NAME, GATEWAY, default_config, radiogenomics_app

BENCH = Path(__file__).resolve().parents[1] / "bench" / "faults.py"
CLIENTS = 6


def _bench():
    spec = importlib.util.spec_from_file_location("bench_faults", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_killing_a_prediction_replica_under_load_fails_only_requests_in_flight(serve_grpc: int, tmp_path: Path) -> None:
    from ray import serve

    faults = _bench()
    folder, requests = faults.make_app_model(tmp_path)
    config = default_config(folder.parent.parent, "faults", None, tmp_path / "jobs")
    config.gateway_deployment.num_replicas = 2
    config.gateway_deployment.num_cpus = 0.25
    serve.run(radiogenomics_app(config), name=APP_NAME, route_prefix=f"/{APP_NAME}")
    try:
        target, meta = f"127.0.0.1:{serve_grpc}", (("application", APP_NAME),)
        plain = asyncio.run(faults.steady_load(target, meta, requests, CLIENTS, 10, 3.0, APP_NAME, GATEWAY, 2))
        print(faults.report("kill, no client retry", plain))
        # Only requests inside the dying replica fail, at the moment of the kill.
        assert plain.sent > 200 and plain.failed <= CLIENTS
        assert set(plain.codes) <= {"OK", "UNAVAILABLE", "INTERNAL"}
        if plain.failed:
            assert plain.since_kill(plain.last_failure_at) < 2.0
        assert plain.replicas_back_at is not None and plain.since_kill(plain.replicas_back_at) < 90  # Serve replaced it
        retried = asyncio.run(faults.steady_load(target, meta, requests, CLIENTS, 10, 3.0, APP_NAME, GATEWAY, 2,
                                                 retry=True))
        print(faults.report("kill, clients retry once", retried))
        assert retried.failed == 0  # the README's retry advice loses nothing
        assert faults.healthy_replicas(APP_NAME, GATEWAY) == 2
    finally:
        serve.delete(APP_NAME)
