"""The standard `grpc.health.v1.Health` service, answered by a deployment that knows its readiness.

Health probes (Kubernetes, grpc_health_probe, load balancers) ask `Check` with a service name:
"" for the server as a whole, or a fully qualified service such as
"radiogenomics.v1.PredictionService". Unknown names get NOT_FOUND, as the protocol says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
from grpc_health.v1 import health_pb2

SERVICER = "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server"
DESCRIPTOR = health_pb2.DESCRIPTOR.services_by_name["Health"]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(readiness: dict[str, bool], request: health_pb2.HealthCheckRequest, context) -> health_pb2.HealthCheckResponse:
    """SERVING / NOT_SERVING for a known service ("" = all of them), NOT_FOUND otherwise."""
    name = request.service
    if name and name not in readiness:
        if context is not None:
            context.set_code(grpc.StatusCode.NOT_FOUND)
            context.set_details(f"service {name!r} is not served here (known: {', '.join(sorted(readiness))})")
        return health_pb2.HealthCheckResponse()
    ready = readiness[name] if name else all(readiness.values())
    return health_pb2.HealthCheckResponse(status=SERVING if ready else NOT_SERVING)


async def watch(readiness: Callable[[], dict[str, bool]], request: health_pb2.HealthCheckRequest, context,
                poll_s: float = 1.0) -> AsyncIterator[health_pb2.HealthCheckResponse]:
    """The current status, then every change, until the client goes away."""
    last = None
    while True:
        current = readiness()
        if request.service and request.service not in current:
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            return
        status = check(current, request, None)
        if status.status != last:
            last = status.status
            yield status
        await asyncio.sleep(poll_s)
