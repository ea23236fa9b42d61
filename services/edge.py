"""The edge of the service: what happens around every RPC a client sends, whatever its method.

`edge(...)` decorates a deployment class whose method names are RPC names. Around each RPC of
the given services it:
  - checks the bearer token when the deployment has a `guard` with tokens (grpc.health.v1 stays
    open), answering UNAUTHENTICATED otherwise;
  - bounds a unary RPC's time by the guard's `request_timeout_s` (RESOURCE_EXHAUSTED, naming it);
  - counts and times it by status code (`services.metrics`);
  - writes one audit line (`services.security.AuditLog`) when the deployment has a guard.
The wrapped function stays reachable as `__wrapped__`, which is what a call forwarded from the
gateway runs, so a request is checked, measured and audited once, where it enters.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import time
from collections.abc import Callable

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from services import metrics
from services.errors import StreamEnded
from services.ingress import exclusive_replica_ports
from services.security import UNAUTHENTICATED_MESSAGE, caller

OPEN_SERVICES = ("grpc.health.v1.Health",)

exclusive_replica_ports()  # every deployment of ours is built with `edge`: before Serve starts its server


def status_name(context: object) -> str:
    """The gRPC status a method left on its context ("OK" if it set none)."""
    code = context.code() if context is not None and hasattr(context, "code") else None
    return (code or grpc.StatusCode.OK).name


def _model_version(response: object) -> str:
    model = getattr(response, "model", None)
    if model is not None and hasattr(model, "version"):
        return model.version
    return str(getattr(response, "model_version", "") or "")


class _Measured:
    """A client stream passed through while its size and SHA-256 are taken."""

    def __init__(self, stream) -> None:
        self._stream, self.bytes, self._hash = stream, 0, hashlib.sha256()

    def __aiter__(self) -> "_Measured":
        return self

    async def __anext__(self):
        message = await self._stream.__anext__()
        data = message.SerializeToString()
        self.bytes += len(data)
        self._hash.update(data)
        return message

    def digest(self) -> str:
        return self._hash.hexdigest()


class _Call:
    """Book-keeping of one RPC at the edge."""

    def __init__(self, owner: object, service: str, method: str, request: object, client_streaming: bool,
                 context: object) -> None:
        self.started = time.perf_counter()
        self.guard = getattr(owner, "guard", None)
        self.service, self.method, self.context = service, method, context
        self.stream = _Measured(request) if client_streaming else None
        self.argument = self.stream if self.stream is not None else request  # what the method receives
        if self.stream is None and self.guard is not None:
            data = request.SerializeToString()
            self.request_bytes, self.input_sha256 = len(data), hashlib.sha256(data).hexdigest()
        else:
            self.request_bytes, self.input_sha256 = 0, ""
        self.token: str | None = None
        self.response_bytes, self.model_version = 0, ""

    def admitted(self) -> bool:
        """Whether the caller may go on; sets UNAUTHENTICATED on the context if not."""
        if self.guard is None or self.guard.tokens is None or self.service in OPEN_SERVICES:
            return True
        metadata = self.context.invocation_metadata() if self.context is not None else ()
        self.token = caller(self.guard.tokens, metadata)
        if self.token is None and self.context is not None:
            self.context.set_code(grpc.StatusCode.UNAUTHENTICATED)
            self.context.set_details(UNAUTHENTICATED_MESSAGE)
        return self.token is not None

    def answered(self, response: object) -> None:
        if response is not None and hasattr(response, "ByteSize"):
            self.response_bytes += response.ByteSize()
            self.model_version = self.model_version or _model_version(response)

    def close(self) -> None:
        status = status_name(self.context)
        metrics.requests().inc(1, tags={"service": self.service, "method": self.method, "code": status})
        metrics.request_seconds().observe(time.perf_counter() - self.started,
                                          tags={"service": self.service, "method": self.method})
        if self.guard is not None:
            if self.stream is not None:
                self.request_bytes, self.input_sha256 = self.stream.bytes, self.stream.digest()
            self.guard.audit.write(token=self.token, method=f"/{self.service}/{self.method}", status=status,
                                   started=self.started, request_bytes=self.request_bytes,
                                   response_bytes=self.response_bytes, input_sha256=self.input_sha256,
                                   model_version=self.model_version)


def _wrap(service: str, method: MethodDescriptor, fn: Callable) -> Callable:
    name, client_streaming = method.name, method.client_streaming
    empty = GetMessageClass(method.output_type)

    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def streaming(self, request, grpc_context=None):
            call = _Call(self, service, name, request, client_streaming, grpc_context)
            try:
                if not call.admitted():
                    raise StreamEnded(f"{name}: unauthenticated")
                async for message in fn(self, call.argument, grpc_context):
                    call.answered(message)
                    yield message
            finally:
                call.close()
        return streaming

    @functools.wraps(fn)
    async def unary(self, request, grpc_context=None):
        call = _Call(self, service, name, request, client_streaming, grpc_context)
        try:
            if not call.admitted():
                return empty()
            work = fn(self, call.argument, grpc_context)
            if call.guard is None:
                response = await work
            else:
                limit = call.guard.config.request_timeout_s
                try:
                    response = await asyncio.wait_for(work, limit)
                except TimeoutError:
                    if grpc_context is not None:
                        grpc_context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
                        grpc_context.set_details(f"{name} took longer than this server's limit of {limit:g} s per "
                                                 "request; send less per request or ask for a higher limit")
                    return empty()
            call.answered(response)
            return response
        finally:
            call.close()
    return unary


def edge(*services: ServiceDescriptor) -> Callable[[type], type]:
    """Class decorator: guard, measure and audit every RPC of `services` that the class answers."""

    def decorate(cls: type) -> type:
        for service in services:
            for method in service.methods:
                setattr(cls, method.name, _wrap(service.full_name, method, getattr(cls, method.name)))
        return cls

    return decorate


def unwrapped(cls: type, method: str) -> Callable:
    """The method as written, without the edge (for calls forwarded from the gateway)."""
    fn = getattr(cls, method)
    return getattr(fn, "__wrapped__", fn)
