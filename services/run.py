"""`radiogenomics serve`: start the radiogenomics app on Ray Serve and keep it up until stopped.

Joins a Ray cluster by address or starts a local Ray on 127.0.0.1. gRPC enters through Serve's
HAProxy ingress by default (`services.ingress`): HAProxy listens on `host:grpc_port` (127.0.0.1
unless `--host`) and forwards each call to a gateway replica. `--ingress proxy` switches back
to Serve's classic Python gRPC proxy, which listens on all interfaces (Serve offers it no bind
address); either way, put the port behind the TLS proxy of the deployment files for a network.
Prints one JSON line on stdout when everything is ready; SIGINT or SIGTERM shut Serve (and a
local Ray, and its HAProxy) down within seconds.
"""

from __future__ import annotations

import contextlib
import ipaddress
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
from radiogenomics.pacs.config import PacsConfig
from radiogenomics.raycluster import ray_session
from radiogenomics.registry import CARD, versions
from services.ingress import (active_ingress, chosen_ingress, free_loopback_port, haproxy_failure_hint, haproxy_folder, haproxy_startup_failure,
                              ingress_environment, reap_haproxy)
from services.security import TOKENS_ENV, SecurityConfig, load_tokens

APP_READY_TIMEOUT_S = 300
UNPLACED_TIMEOUT_S = 45  # Serve reports a replica it cannot place after 30 s
#: Where Serve runs the ingress (HAProxy or its proxy): every node with a replica, or the head only
#: (one machine holding several Ray nodes, whose ingresses would all want the same port).
PROXY_LOCATIONS = ("EveryNode", "HeadOnly")
MAX_MESSAGE_ENV = "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"


@dataclass
class ServeOptions:
    model: Path
    grpc_port: int = 9000
    host: str = "127.0.0.1"               # where the HAProxy ingress listens
    ingress: str | None = None            # None: $RADIOGENOMICS_INGRESS, else "haproxy"
    gateway_replicas: int | None = None   # None: one per CPU of the machine
    radiomics_replicas: int = 1
    radiomics_cpus: float = 1.0
    max_replicas_per_node: int | None = None  # None: Serve's placement (it may pack a deployment on one node)
    proxy_location: str = "EveryNode"     # Serve's: an ingress on every node with a replica; or "HeadOnly"
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
    pacs: PacsConfig | None = None        # ExtractFromPacs retrieves from this PACS; None disables it


def machine_cpus() -> int:
    """CPUs this process may use (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def locate_model(model: Path) -> tuple[Path, str, list[str] | None]:
    """`<registry>/<name>/<version>` serves that version; `<registry>/<name>` serves every version."""
    model = Path(model)
    if (model / CARD).is_file():
        return model.parent.parent, model.parent.name, [model.name]
    if versions(model.parent, model.name):
        return model.parent, model.name, None
    raise InputError(f"{model}: neither a model artifact (<registry>/<name>/<version>) nor a model folder "
                     "(<registry>/<name>) with versions; train one with `radiogenomics train`")


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
    try:
        chosen_ingress(options.ingress)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    try:
        ipaddress.ip_address(options.host)
    except ValueError:
        raise InputError(f"--host {options.host!r} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)") from None
    if options.gateway_replicas is not None and options.gateway_replicas < 1:
        raise InputError(f"--gateway-replicas {options.gateway_replicas} must be at least 1")
    config.gateway_deployment.num_replicas = options.gateway_replicas or machine_cpus()
    if options.radiomics_replicas < 1:
        raise InputError(f"--radiomics-replicas {options.radiomics_replicas} must be at least 1")
    config.radiomics_deployment.num_replicas = options.radiomics_replicas
    if options.radiomics_cpus <= 0:
        raise InputError(f"--radiomics-cpus {options.radiomics_cpus} must be above 0")
    config.radiomics_deployment.num_cpus = options.radiomics_cpus
    if options.max_replicas_per_node is not None and options.max_replicas_per_node < 1:
        raise InputError(f"--max-replicas-per-node {options.max_replicas_per_node} must be at least 1")
    config.gateway_deployment.max_replicas_per_node = options.max_replicas_per_node
    config.radiomics_deployment.max_replicas_per_node = options.max_replicas_per_node
    if options.proxy_location not in PROXY_LOCATIONS:
        raise InputError(f"--proxy-location {options.proxy_location!r} is not one of {', '.join(PROXY_LOCATIONS)}")
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
    config.radiomics.pacs = options.pacs
    return config


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ for the block (a local Ray started inside inherits them), then restored."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def local_ingress(ingress: str | None, address: str | None) -> Iterator[None]:
    """The chosen ingress's environment around a new local Ray; HAProxy reaped by pid at exit.

    With `address` (a cluster) or a Ray already running in this process, the ingress is the one
    that Ray was started with, and nothing is set here.
    """
    import ray

    if address is not None or ray.is_initialized():
        yield
        return
    kind = chosen_ingress(ingress)
    folder = haproxy_folder() if kind == "haproxy" else None
    try:
        with _environment(ingress_environment(kind, folder)):
            yield
    finally:
        if folder is not None:
            reap_haproxy(folder)


@contextmanager
def serving(config, grpc_port: int, metrics_port: int | None = None, address: str | None = None,
            host: str = "127.0.0.1", ingress: str | None = None, proxy_location: str = "EveryNode") -> Iterator[None]:
    """Serve the app for `config` (a `services.app.AppConfig`) in the current or a new local Ray, until exit."""
    import ray

    local = address is None and not ray.is_initialized()  # else the ingress was chosen where that Ray started
    with local_ingress(ingress, address):
        from ray import serve
        from ray.serve.config import gRPCOptions

        from ray.serve.api import _run  # serve.run without its wait, which never ends when a replica cannot be placed

        from services.app import APP_NAME, SERVICERS, radiogenomics_app

        with ray_session(address, metrics_export_port=metrics_port):
            with _ingress_failures(local):
                serve.start(proxy_location=proxy_location, http_options={"host": host, "port": free_loopback_port()},
                            grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=SERVICERS))
            try:
                with _ingress_failures(local):
                    _run(radiogenomics_app(config), _blocking=False, name=APP_NAME, route_prefix=f"/{APP_NAME}")
                    _wait_until_running(APP_NAME)
                    _wait_until_serving(_client_host(host), grpc_port)
                yield
            finally:
                serve.shutdown()


@contextmanager
def _ingress_failures(local: bool) -> Iterator[None]:
    """HAProxy failing to start (a port taken, say) as one line with its reason, not Serve's remote traceback."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - anything else is re-raised unchanged
        reason = haproxy_startup_failure(exc)
        if reason is None:
            raise
        hint = haproxy_failure_hint(reason, local)
        raise InputError(f"the HAProxy ingress could not start: {reason}" + (f"; {hint}" if hint else "")) from None


def _client_host(host: str) -> str:
    """Where this machine reaches a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


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
    with serving(config, options.grpc_port, options.metrics_port, options.address, options.host, options.ingress,
                 options.proxy_location):
        yield {"ready": True, "grpc_port": options.grpc_port, "host": options.host,
               "ingress": active_ingress() if options.address is None else "cluster",
               "gateway_replicas": config.gateway_deployment.num_replicas,
               "radiomics_replicas": config.radiomics_deployment.num_replicas, "metrics_port": options.metrics_port,
               "model": config.prediction.model,
               "versions": config.prediction.versions or versions(config.prediction.registry, config.prediction.model),
               "application": APP_NAME, "jobs_dir": str(config.masking.data_dir),
               "auth": config.security.auth_tokens_file is not None}


def _wait_until_running(app: str) -> None:
    """Block until Serve runs every replica of `app`; a clear error when it cannot.

    A replica that no node has room for waits forever in Serve (it reports it after 30 s); here
    that becomes one line with Serve's account of the resources wanted and available.
    """
    from ray import serve

    started = time.monotonic()
    while True:
        status = serve.status().applications.get(app)
        if status is not None and status.status == "RUNNING":
            return
        if status is not None and status.status in ("DEPLOY_FAILED", "UNHEALTHY"):
            raise InputError(f"the app failed to deploy: {status.message or status.status}")
        waiting = [_unplaced(name, d.message) for name, d in (status.deployments if status else {}).items()
                   if "to be scheduled" in (d.message or "")]
        if waiting and time.monotonic() - started > UNPLACED_TIMEOUT_S:
            raise InputError(f"the cluster has no room for {'; '.join(waiting)}: add nodes or CPUs, or lower "
                             "--gateway-replicas, --radiomics-replicas or --radiomics-cpus, or raise --max-replicas-per-node")
        if time.monotonic() - started > APP_READY_TIMEOUT_S:
            raise InputError(f"the app was not running within {APP_READY_TIMEOUT_S} s; see Ray's logs")
        time.sleep(0.5)


def _unplaced(deployment: str, message: str) -> str:
    """Serve's slow-scheduling message, shortened to what is waiting and what it needs."""
    import re

    found = re.search(r"has (\d+) replicas .*Resources required for each replica: (.*?), total resources available: "
                      r"(.*?)\. Use", " ".join(message.split()))
    if found is None:
        return f"{deployment} ({' '.join(message.split())})"
    count, wanted, available = found.groups()
    return f"{count} {deployment} replica(s) (each needs {wanted}; the cluster has {available} free)"


def _wait_until_serving(host: str, port: int) -> None:
    """Block until grpc.health.v1 says every service is SERVING (the gateway probes the others)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + APP_READY_TIMEOUT_S
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    with grpc.insecure_channel(target) as channel:  # health is open: no token needed
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
