"""The radiogenomics Serve application: one app, three deployments, behind Serve's gRPC proxy.

    Gateway     ingress: PredictionService, GRPCInferenceService and Health answered in place
                (the latency-critical path takes no extra hop); RadiomicsService and
                MaskingService forwarded to their deployments through handles
    Radiomics   pyradiomics extraction, CPU-bound: 1 CPU per replica, scale by replicas
    Masking     one replica owning the SQLite job store; its chunks run as Ray tasks

`radiogenomics serve` builds it from the command line; `deploy/serve_config.yaml` builds it with
`serve run` / `serve deploy` through `build_app`, an application builder taking the same
`AppConfig` as YAML. Every RPC is measured where it enters (the gateway), once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator
from ray import serve
from ray.serve.handle import DeploymentHandle

from services.edge import edge
from services.forwarding import forwarders, probe
from services.security import Guard, SecurityConfig
from services.masking import SERVICE as MASKING_SERVICE, SERVICER as MASKING_SERVICER, MaskingConfig, MaskingServer
from services.prediction import SERVICE_NAMES as PREDICTION_SERVICE_NAMES, SERVICES as PREDICTION_SERVICES
from services.prediction import SERVICERS as PREDICTION_SERVICERS, DeploymentOptions, PredictionConfig, PredictionService
from services.radiomics import SERVICE as RADIOMICS_SERVICE, SERVICER as RADIOMICS_SERVICER
from services.radiomics import RadiomicsConfig, RadiomicsDeployment, RadiomicsServer

APP_NAME = "radiogenomics"
IMPORT_PATH = "services.app:build_app"
SERVICERS = [RADIOMICS_SERVICER, *PREDICTION_SERVICERS, MASKING_SERVICER]
GATEWAY, RADIOMICS, MASKING = "Gateway", "Radiomics", "Masking"


class AppConfig(BaseModel):
    """Everything the app needs; the YAML `args:` of deploy/serve_config.yaml has this shape."""

    prediction: PredictionConfig
    masking: MaskingConfig
    radiomics: RadiomicsConfig = Field(default_factory=RadiomicsConfig)
    gateway_deployment: DeploymentOptions = Field(default_factory=DeploymentOptions)
    radiomics_deployment: RadiomicsDeployment = Field(default_factory=RadiomicsDeployment)
    security: SecurityConfig = Field(default_factory=SecurityConfig)

    @model_validator(mode="after")
    def _one_registry(self) -> "AppConfig":
        if self.prediction.registry.resolve() != self.masking.registry.resolve():
            raise ValueError("prediction.registry and masking.registry must be the same folder")
        return self


_GATEWAY_SERVICES = (*PREDICTION_SERVICES, RADIOMICS_SERVICE, MASKING_SERVICE)
_READINESS_POLL_S = 1.0


class Gateway(PredictionService):
    """The app's ingress: prediction in place, radiomics and masking forwarded."""

    async def __init__(self, radiomics: DeploymentHandle, masking: DeploymentHandle, max_upload_bytes: int,
                       security: dict) -> None:
        super().__init__()
        self.guard = Guard(SecurityConfig.model_validate(security))  # read by services.edge
        self.radiomics, self.masking = radiomics, masking
        self.max_upload_bytes = max_upload_bytes
        self._downstream = {RADIOMICS_SERVICE.full_name: False, MASKING_SERVICE.full_name: False}
        self._poller = asyncio.get_running_loop().create_task(self._poll_downstream())

    async def _poll_downstream(self) -> None:
        while True:
            radiomics, masking = await asyncio.gather(probe(self.radiomics), probe(self.masking))
            self._downstream = {RADIOMICS_SERVICE.full_name: radiomics, MASKING_SERVICE.full_name: masking}
            await asyncio.sleep(_READINESS_POLL_S)

    def _readiness(self) -> dict[str, bool]:
        return {**{name: self._ready() for name in PREDICTION_SERVICE_NAMES}, **self._downstream}


for _name, _method in {
    **forwarders(RADIOMICS_SERVICE, "radiomics", lambda gateway: gateway.max_upload_bytes),
    **forwarders(MASKING_SERVICE, "masking"),
}.items():
    setattr(Gateway, _name, _method)


@serve.deployment(name=GATEWAY, ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=128)
@edge(*_GATEWAY_SERVICES)
class GatewayServer(Gateway):
    """The gateway deployment (see `Gateway`)."""


def radiogenomics_app(config: AppConfig | dict) -> serve.Application:
    """The whole app, bound and ready for `serve.run(app, name=APP_NAME)`."""
    cfg = config if isinstance(config, AppConfig) else AppConfig.model_validate(config)
    radiomics = RadiomicsServer.options(name=RADIOMICS, **cfg.radiomics_deployment.options()).bind(
        cfg.radiomics.model_dump(mode="json"))
    masking = MaskingServer.options(
        name=MASKING, num_replicas=1, ray_actor_options={"num_cpus": cfg.masking.num_cpus},
    ).bind(cfg.masking.model_dump(mode="json"))
    return GatewayServer.options(**cfg.gateway_deployment.options(cfg.prediction)).bind(
        radiomics, masking, cfg.radiomics.max_upload_bytes, cfg.security.model_dump(mode="json"))


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder for `serve run` / `serve deploy` (import path `services.app:build_app`)."""
    return radiogenomics_app(AppConfig.model_validate(args))


def default_config(registry: Path, model: str, versions: list[str] | None, data_dir: Path,
                   data_root: Path | None = None, libraries: dict[str, Path] | None = None) -> AppConfig:
    """The configuration `radiogenomics serve` starts with (limits at their defaults)."""
    return AppConfig(
        prediction=PredictionConfig(registry=registry, model=model, versions=versions),
        masking=MaskingConfig(registry=registry, default_model=model, data_dir=data_dir, data_root=data_root,
                              libraries=libraries or {}),
        radiomics=RadiomicsConfig(data_root=data_root),
    )
