"""The deployment files agree with the code: ports, names, import paths, servicers, settings.

No Docker engine or Kubernetes runs here, so the files are parsed and cross-checked; the Serve
config is also deployed for real on the test Ray (with local paths) and answers health checks.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.app import APP_NAME, GATEWAY, IMPORT_PATH, MASKING, RADIOMICS, SERVICERS, AppConfig, build_app
from services.run import ServeOptions
from services.ingress import H2_TUNING

REPO = Path(__file__).resolve().parents[1]
SERVE_CONFIG = REPO / "deploy" / "serve_config.yaml"
GRPC_PORT = ServeOptions.grpc_port
METRICS_PORT = ServeOptions.metrics_port


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def serve_config() -> dict:
    return _yaml(SERVE_CONFIG)


@pytest.fixture(scope="module")
def compose() -> dict:
    return _yaml(REPO / "docker-compose.yml")


@pytest.fixture(scope="module")
def kuberay() -> list[dict]:
    return list(yaml.safe_load_all((REPO / "deploy" / "kuberay" / "rayservice.yaml").read_text()))


def test_serve_config_is_a_valid_serve_config_for_our_app(serve_config: dict) -> None:
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(serve_config)  # Ray's own schema for `serve deploy`
    assert serve_config["grpc_options"]["port"] == GRPC_PORT
    servicers = serve_config["grpc_options"]["grpc_servicer_functions"]
    assert sorted(servicers) == sorted(SERVICERS)
    for dotted in servicers:  # each names a real add_*_to_server function
        module, _, name = dotted.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))
    (app,) = serve_config["applications"]
    assert app["name"] == APP_NAME and app["import_path"] == IMPORT_PATH
    module, _, attr = app["import_path"].partition(":")
    assert getattr(importlib.import_module(module), attr) is build_app
    config = AppConfig.model_validate(app["args"])  # every setting is one the app knows
    assert config.gateway_deployment.autoscaling and config.radiomics_deployment.autoscaling
    assert config.masking.default_model == config.prediction.model
    assert config.security.auth_tokens_file is not None and config.security.audit_dir is not None  # auth on


def test_serve_config_deploys_and_serves(serve_config: dict, serve_grpc: int, small_registry: Path,
                                         small_cohort: Path, tmp_path: Path) -> None:
    """The config's app, with this machine's paths and one replica each, comes up SERVING."""
    from ray import serve

    from tests.conftest import SMALL_MODEL

    args = copy.deepcopy(serve_config["applications"][0]["args"])
    args["prediction"].update(registry=str(small_registry), model=SMALL_MODEL)
    args["masking"].update(registry=str(small_registry), default_model=SMALL_MODEL, data_dir=str(tmp_path / "jobs"),
                           data_root=str(small_cohort), libraries={}, task_cpus=0.5)
    args["radiomics"]["data_root"] = str(small_cohort)
    args["security"].update(auth_tokens_file=None, audit_dir=str(tmp_path / "audit"))
    for deployment in ("gateway_deployment", "radiomics_deployment"):
        args[deployment].update(autoscaling=None, num_replicas=1, num_cpus=0.25)
    serve.run(build_app(args), name=APP_NAME, route_prefix=f"/{APP_NAME}")
    try:
        assert set(serve.status().applications[APP_NAME].deployments) == {GATEWAY, RADIOMICS, MASKING}
        with grpc.insecure_channel(f"127.0.0.1:{serve_grpc}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            meta = (("application", APP_NAME),)
            status = None
            for _ in range(60):
                status = health.Check(health_pb2.HealthCheckRequest(), metadata=meta, timeout=10).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
                import time

                time.sleep(0.5)
            assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        serve.delete(APP_NAME)


HAPROXY_FLAG, DRAIN_ENV, COMPOSE_DRAIN_S = "RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "5"


def test_docker_compose_runs_head_workers_app_prometheus_grafana(compose: dict, serve_config: dict) -> None:
    services = compose["services"]
    assert {"ray-head", "ray-worker", "serve", "prometheus", "grafana"} <= set(services)
    head, worker = services["ray-head"], services["ray-worker"]
    assert f"--metrics-export-port={METRICS_PORT}" in head["command"] and f"--metrics-export-port={METRICS_PORT}" in worker["command"]
    assert "--head" in head["command"] and "--address=ray-head:6379" in worker["command"]
    assert worker["deploy"]["replicas"] >= 1  # scalable with --scale ray-worker=N
    # Clients reach only the TLS proxy; it forwards to Serve's gRPC port on the head.
    published = {name: s.get("ports", []) for name, s in services.items()}
    assert published["tls-proxy"] == ["8443:8443"]
    assert not any(published[n] for n in ("ray-head", "ray-worker", "serve"))
    assert all(p.startswith("127.0.0.1:") for n in ("prometheus", "grafana") for p in published[n])
    proxy_mounts = services["tls-proxy"]["volumes"]
    assert "./deploy/nginx/grpc-tls.conf:/etc/nginx/nginx.conf:ro" in proxy_mounts
    assert f"server ray-head:{GRPC_PORT};" in (REPO / "deploy" / "nginx" / "grpc-tls.conf").read_text()
    # Every Ray node has the token file where the Serve config says (auth is on).
    tokens = serve_config["applications"][0]["args"]["security"]["auth_tokens_file"]
    for name in ("ray-head", "ray-worker", "serve"):
        assert f"./secrets/auth-tokens:{tokens}:ro" in services[name]["volumes"], name
    assert "deploy/serve_config.yaml" in services["serve"]["command"]
    # HAProxy ingress on every node (the environment is read when `ray start` starts Serve's actors).
    for name in ("ray-head", "ray-worker", "serve"):
        assert services[name]["environment"][HAPROXY_FLAG] == "1"
        assert services[name]["environment"][DRAIN_ENV] == COMPOSE_DRAIN_S
        assert {k: services[name]["environment"][k] for k in H2_TUNING} == H2_TUNING
    for name in ("ray-head", "ray-worker", "serve"):
        assert services[name]["build"] == "." and services[name]["image"] == "radiogenomics:latest"
    # Prometheus reads deploy/prometheus.yml and Ray's discovery file from the head's temp dir.
    prom_mounts = services["prometheus"]["volumes"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom_mounts
    discovery = _yaml(REPO / "deploy" / "prometheus.yml")["scrape_configs"][0]["file_sd_configs"][0]["files"][0]
    shared = [m.split(":")[1] for m in prom_mounts if m.startswith("ray-tmp:")]
    assert shared and discovery.startswith(shared[0] + "/")
    assert any(m.startswith("ray-tmp:" + shared[0]) for m in head["volumes"])
    # Grafana's mounted folders exist in the repo.
    for mount in services["grafana"]["volumes"]:
        assert (REPO / mount.split(":")[0]).is_dir(), mount
    # Data paths in the Serve config live on the /data volume every Ray node mounts.
    assert all("./data:/data" in services[n]["volumes"] for n in ("ray-head", "ray-worker"))
    args = serve_config["applications"][0]["args"]
    assert args["prediction"]["registry"].startswith("/data/") and args["masking"]["data_dir"].startswith("/data/")


def test_dockerfile_pins_torch_installs_the_package_and_exposes_the_ports() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    torch_pin = re.search(r'"torch==([^"]+)"', pyproject).group(1)
    assert f"torch=={torch_pin}" in dockerfile
    exposed = {int(p) for line in dockerfile.splitlines() if line.startswith("EXPOSE") for p in line.split()[1:]}
    assert {GRPC_PORT, METRICS_PORT, 6379, 8265} <= exposed
    for folder in ("radiogenomics", "services", "tune", "protos", "deploy"):
        assert f"COPY {folder} {folder}" in dockerfile and (REPO / folder).is_dir()
    assert "pip install ." in dockerfile and "USER ray" in dockerfile  # not root


def test_kuberay_rayservice_matches_the_serve_config(kuberay: list[dict], serve_config: dict) -> None:
    service = next(d for d in kuberay if d["kind"] == "RayService")
    assert service["apiVersion"] == "ray.io/v1"
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    for key in ("grpc_options", "applications", "proxy_location"):
        assert embedded[key] == serve_config[key], key
    cluster = service["spec"]["rayClusterConfig"]
    import ray

    assert cluster["rayVersion"] == ray.__version__
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["metrics-export-port"] == str(METRICS_PORT)
    (head_container,) = head["template"]["spec"]["containers"]
    assert {GRPC_PORT, METRICS_PORT, 6379, 8265} <= {p["containerPort"] for p in head_container["ports"]}
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    assert workers["rayStartParams"]["metrics-export-port"] == str(METRICS_PORT)
    (worker,) = workers["template"]["spec"]["containers"]
    assert worker["readinessProbe"]["grpc"]["port"] == GRPC_PORT  # grpc.health.v1, answered by the gateway
    assert worker["image"] == head_container["image"] == "radiogenomics:latest"
    grpc_service = next(d for d in kuberay if d["kind"] == "Service" and d["metadata"]["name"] == "radiogenomics-grpc")
    assert grpc_service["spec"]["ports"][0]["targetPort"] == GRPC_PORT
    # Auth on: the token Secret is mounted where the Serve config reads it, on head and workers.
    tokens = Path(yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]["security"]["auth_tokens_file"])
    for container in (head_container, worker):
        assert {"name": "auth-tokens", "mountPath": str(tokens.parent), "readOnly": True} in container["volumeMounts"]
    # The TLS proxy runs the shipped nginx config, pointed at the in-cluster gRPC Service.
    config_map = next(d for d in kuberay if d["kind"] == "ConfigMap")
    shipped = (REPO / "deploy" / "nginx" / "grpc-tls.conf").read_text()
    assert config_map["data"]["nginx.conf"].strip() == shipped.replace(
        f"server ray-head:{GRPC_PORT};", f"server {grpc_service['metadata']['name']}:{GRPC_PORT};").strip()
    tls_service = next(d for d in kuberay if d["kind"] == "Service" and d["metadata"]["name"] == "radiogenomics-tls")
    assert tls_service["spec"]["ports"][0]["targetPort"] == 8443 and "listen 8443 ssl" in shipped
    # Every Ray node runs the HAProxy ingress with a short drain, as docker-compose.yml does.
    for container in (head_container, worker):
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env[HAPROXY_FLAG] == "1" and env[DRAIN_ENV] == COMPOSE_DRAIN_S, container["name"]
        assert {k: env[k] for k in H2_TUNING} == H2_TUNING  # the buffers `radiogenomics serve` uses
    monitor = next(d for d in kuberay if d["kind"] == "PodMonitor")
    prometheus = _yaml(REPO / "deploy" / "prometheus.yml")["scrape_configs"][0]["metric_relabel_configs"]
    assert [r.get("regex") for r in monitor["spec"]["podMetricsEndpoints"][0]["metricRelabelings"]] == \
        [r.get("regex") for r in prometheus]


def test_grafana_dashboard_queries_only_metrics_the_services_export() -> None:
    from services.metrics import NAMES

    dashboard = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "radiogenomics.json").read_text())
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    assert panels and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    ours = {m for p in panels for t in p.get("targets", []) for m in re.findall(r"radiogenomics_[a-z_]+", t["expr"])}
    known = set(NAMES.values())
    stems = {re.sub(r"_(bucket|sum|count)$", "", m) for m in ours}
    assert stems <= known, stems - known
    assert len(stems) >= len(known) - 1  # nearly every metric has a panel
    provisioning = REPO / "deploy" / "grafana" / "provisioning"
    datasource = _yaml(provisioning / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
