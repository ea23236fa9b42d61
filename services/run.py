"""`radiogenomics serve`: start the gRPC services on Ray Serve and keep them up until stopped.

Joins a Ray cluster by address or starts a local Ray on 127.0.0.1. Ray Serve's gRPC proxy
listens on all interfaces of the machine on `grpc_port` (Serve offers no bind address); put it
behind a firewall or the TLS proxy of the deployment files. Prints one JSON line on stdout
when everything is ready; SIGINT or SIGTERM shut Serve (and a local Ray) down cleanly.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from radiogenomics.errors import InputError
from radiogenomics.raycluster import ray_session
from radiogenomics.registry import CARD, versions

PREDICTION_APP = "prediction"


@dataclass
class ServeOptions:
    model: Path
    grpc_port: int = 9000
    metrics_port: int | None = 8080
    address: str | None = None
    max_batch_profiles: int = 1024


def locate_model(model: Path) -> tuple[Path, str, list[str] | None]:
    """`<registry>/<name>/<version>` serves that version; `<registry>/<name>` serves every version."""
    model = Path(model)
    if (model / CARD).is_file():
        return model.parent.parent, model.parent.name, [model.name]
    if versions(model.parent, model.name):
        return model.parent, model.name, None
    raise InputError(f"{model}: neither a model artifact (<registry>/<name>/<version>) nor a model folder "
                     "(<registry>/<name>) with versions; train one with `radiogenomics train`")


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _check_port(port: int, what: str) -> None:
    if not 1 <= port <= 65535:
        raise InputError(f"--{what}-port {port} is not a TCP port (1-65535)")
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as sock:
        try:
            sock.bind(("::" if socket.has_ipv6 else "0.0.0.0", port))
        except OSError:
            raise InputError(f"--{what}-port {port} is already in use; choose another port") from None


def serve_forever(options: ServeOptions, stop: threading.Event | None = None) -> int:
    """Start the services, print the ready line, block until `stop` is set or a signal arrives."""
    from ray import serve
    from ray.serve.config import gRPCOptions

    from services.prediction import SERVICERS, PredictionConfig, prediction_app

    registry, name, wanted = locate_model(options.model)
    _check_port(options.grpc_port, "grpc")
    if options.metrics_port:
        _check_port(options.metrics_port, "metrics")
    config = PredictionConfig(registry=registry.resolve(), model=name, versions=wanted,
                              max_batch_profiles=options.max_batch_profiles)
    stop = stop or threading.Event()
    with ray_session(options.address, metrics_export_port=options.metrics_port):
        for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own SIGTERM handler
            signal.signal(sig, lambda *_: stop.set())
        serve.start(http_options={"host": "127.0.0.1", "port": _free_loopback_port()},
                    grpc_options=gRPCOptions(port=options.grpc_port, grpc_servicer_functions=SERVICERS))
        try:
            serve.run(prediction_app(config), name=PREDICTION_APP, route_prefix=f"/{PREDICTION_APP}")
            served = wanted or versions(registry, name)
            print(json.dumps({"ready": True, "grpc_port": options.grpc_port, "metrics_port": options.metrics_port,
                              "model": name, "versions": served, "applications": [PREDICTION_APP]}), flush=True)
            print(f"serving {name} versions {', '.join(served)} over gRPC on port {options.grpc_port}; "
                  "Ctrl-C stops", file=sys.stderr, flush=True)
            stop.wait()
        finally:
            serve.shutdown()
    return 0
