"""`radiogenomics serve`: start the radiogenomics app on Ray Serve and keep it up until stopped.

Joins a Ray cluster by address or starts a local Ray on 127.0.0.1. Ray Serve's gRPC proxy
listens on all interfaces of the machine on `grpc_port` (Serve offers no bind address); put it
behind a firewall or the TLS proxy of the deployment files. Prints one JSON line on stdout
when everything is ready; SIGINT or SIGTERM shut Serve (and a local Ray) down cleanly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from radiogenomics.errors import InputError
from radiogenomics.raycluster import ray_session
from radiogenomics.registry import CARD, versions
from services.security import TOKENS_ENV, SecurityConfig, load_tokens

APP_READY_TIMEOUT_S = 300
MAX_MESSAGE_ENV = "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"


@dataclass
class ServeOptions:
    model: Path
    grpc_port: int = 9000
    metrics_port: int | None = 8080
    address: str | None = None
    max_batch_profiles: int = 1024
    jobs_dir: Path = Path("radiogenomics-jobs")
    data_root: Path | None = None
    gene_sets: dict[str, Path] = field(default_factory=dict)
    auth_tokens: Path | None = None       # None: $RADIOGENOMICS_AUTH_TOKENS, else no access control
    audit_dir: Path | None = None
    request_timeout_s: float = 600.0
    max_message_bytes: int = 128 * 1024 * 1024
    max_upload_bytes: int | None = None   # None: the deployment's default
    max_voxels: int | None = None
    max_sets_per_job: int | None = None
    max_active_jobs: int | None = None


def locate_model(model: Path) -> tuple[Path, str, list[str] | None]:
    """`<registry>/<name>/<version>` serves that version; `<registry>/<name>` serves every version."""
    model = Path(model)
    if (model / CARD).is_file():
        return model.parent.parent, model.parent.name, [model.name]
    if versions(model.parent, model.name):
        return model.parent, model.name, None
    raise InputError(f"{model}: neither a model artifact (<registry>/<name>/<version>) nor a model folder "
                     "(<registry>/<name>) with versions; train one with `radiogenomics train`")


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
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


def app_config(options: ServeOptions):
    """The `AppConfig` the command line describes (checked: model, folders, gene-set files)."""
    from services.app import default_config

    registry, name, wanted = locate_model(options.model)
    if options.data_root is not None and not Path(options.data_root).is_dir():
        raise InputError(f"--data-root {options.data_root} is not a folder")
    for library, path in options.gene_sets.items():
        if not Path(path).is_file():
            raise InputError(f"--gene-sets {library}={path}: no such GMT file")
    jobs = Path(options.jobs_dir).resolve()
    try:
        jobs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--jobs-dir {options.jobs_dir}: cannot create it ({exc.strerror})") from None
    config = default_config(registry.resolve(), name, wanted, jobs,
                            Path(options.data_root).resolve() if options.data_root else None,
                            {k: Path(v).resolve() for k, v in options.gene_sets.items()})
    config.prediction.max_batch_profiles = options.max_batch_profiles
    tokens = options.auth_tokens or os.environ.get(TOKENS_ENV) or None
    if tokens:
        load_tokens(Path(tokens))  # a bad file fails here, in one line, not in a replica
    config.security = SecurityConfig(auth_tokens_file=Path(tokens).resolve() if tokens else None,
                                     audit_dir=Path(options.audit_dir).resolve() if options.audit_dir else None,
                                     request_timeout_s=options.request_timeout_s)
    limits = {("radiomics", "max_upload_bytes"): options.max_upload_bytes, ("radiomics", "max_voxels"): options.max_voxels,
              ("masking", "max_sets_per_job"): options.max_sets_per_job, ("masking", "max_active_jobs"): options.max_active_jobs}
    for (section, key), value in limits.items():
        if value is not None:
            setattr(getattr(config, section), key, value)
    return config


@contextmanager
def serving(config, grpc_port: int, metrics_port: int | None = None, address: str | None = None) -> Iterator[None]:
    """Serve the app for `config` (a `services.app.AppConfig`) in the current or a new local Ray, until exit."""
    from ray import serve
    from ray.serve.config import gRPCOptions

    from services.app import APP_NAME, SERVICERS, radiogenomics_app

    with ray_session(address, metrics_export_port=metrics_port):
        serve.start(http_options={"host": "127.0.0.1", "port": free_loopback_port()},
                    grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=SERVICERS))
        try:
            serve.run(radiogenomics_app(config), name=APP_NAME, route_prefix=f"/{APP_NAME}")
            _wait_until_serving(grpc_port)
            yield
        finally:
            serve.shutdown()


@contextmanager
def running_app(options: ServeOptions) -> Iterator[dict]:
    """Serve the app the command line describes; yields what the ready line says."""
    from services.app import APP_NAME

    config = app_config(options)
    _check_port(options.grpc_port, "grpc")
    if options.metrics_port:
        _check_port(options.metrics_port, "metrics")
    if options.address is None:  # read by Serve's gRPC proxy when the local Ray starts it
        os.environ[MAX_MESSAGE_ENV] = str(options.max_message_bytes)
    with serving(config, options.grpc_port, options.metrics_port, options.address):
        yield {"ready": True, "grpc_port": options.grpc_port, "metrics_port": options.metrics_port,
               "model": config.prediction.model,
               "versions": config.prediction.versions or versions(config.prediction.registry, config.prediction.model),
               "application": APP_NAME, "jobs_dir": str(config.masking.data_dir),
               "auth": config.security.auth_tokens_file is not None}


def _wait_until_serving(port: int) -> None:
    """Block until grpc.health.v1 says every service is SERVING (the gateway probes the others)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + APP_READY_TIMEOUT_S
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:  # health is open: no token needed
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise InputError(f"the app did not report SERVING within {APP_READY_TIMEOUT_S} s; see Ray's logs")
            time.sleep(0.5)


def serve_forever(options: ServeOptions, stop: threading.Event | None = None) -> int:
    """Start the app, print the ready line, block until `stop` is set or a signal arrives."""
    stop = stop or threading.Event()
    app_config(options)  # a bad argument fails in one line before Ray starts
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr), running_app(options) as ready:  # stdout: only the ready line
        for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own SIGTERM handler
            signal.signal(sig, lambda *_: stop.set())
        print(json.dumps(ready), file=stdout, flush=True)
        print(f"serving {ready['model']} versions {', '.join(ready['versions'])} with radiomics and masking over gRPC "
              f"on port {options.grpc_port}; Ctrl-C stops", file=sys.stderr, flush=True)
        stop.wait()
    return 0
