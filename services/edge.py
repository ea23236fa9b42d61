"""The edge of the service: what happens around every RPC a client sends, whatever its method.

`edge(...)` decorates a deployment class whose method names are RPC names: each RPC of the
given services is timed and counted by status code (see `services.metrics`). The wrapped
function stays reachable as `__wrapped__`, which is what a forwarded call from the gateway runs,
so a request is measured once, where it enters.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from services import metrics


def status_name(context: object) -> str:
    """The gRPC status a method left on its context ("OK" if it set none)."""
    code = context.code() if context is not None and hasattr(context, "code") else None
    return (code or grpc.StatusCode.OK).name


def _record(service: str, method: str, context: object, started: float) -> None:
    metrics.requests().inc(1, tags={"service": service, "method": method, "code": status_name(context)})
    metrics.request_seconds().observe(time.perf_counter() - started, tags={"service": service, "method": method})


def _wrap(service: str, method: str, fn: Callable) -> Callable:
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def streaming(self, request, grpc_context=None):
            started = time.perf_counter()
            try:
                async for message in fn(self, request, grpc_context):
                    yield message
            finally:
                _record(service, method, grpc_context, started)
        return streaming

    @functools.wraps(fn)
    async def unary(self, request, grpc_context=None):
        started = time.perf_counter()
        try:
            return await fn(self, request, grpc_context)
        finally:
            _record(service, method, grpc_context, started)
    return unary


def rpc_names(*services: ServiceDescriptor) -> list[str]:
    return [method.name for service in services for method in service.methods]


def edge(*services: ServiceDescriptor) -> Callable[[type], type]:
    """Class decorator: measure every RPC of `services` that the class answers."""

    def decorate(cls: type) -> type:
        for service in services:
            for method in service.methods:
                fn = getattr(cls, method.name)
                setattr(cls, method.name, _wrap(service.full_name, method.name, fn))
        return cls

    return decorate


def unwrapped(cls: type, method: str) -> Callable:
    """The method as written, without the edge (for calls forwarded from the gateway)."""
    fn = getattr(cls, method)
    return getattr(fn, "__wrapped__", fn)
