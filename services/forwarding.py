"""Calls from the gateway to the radiomics and masking deployments, with their gRPC status.

The gRPC proxy hands each request to one ingress deployment (the gateway). The gateway answers
prediction itself and forwards radiomics and masking RPCs through Serve deployment handles.
A deployment's own status (set on its `grpc_context`) would be lost across a handle, so
`Forwardable.rpc` runs the method against a `RecordingContext` and returns the status with the
response; the gateway sets it on the client's context. Client streams travel as a list of
messages (bounded by the gateway), server streams as a generator that ends with the status.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from radiogenomics.errors import LimitExceeded
from services.edge import unwrapped
from services.errors import StreamEnded, answer

UNAVAILABLE_HINT = "is unavailable (a replica is restarting); retry with backoff"


class RecordingContext:
    """The part of Serve's gRPC context a deployment method uses, recorded for the caller."""

    def __init__(self) -> None:
        self._code = grpc.StatusCode.OK
        self._details = ""

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class _ListStream:
    """A client stream already received, replayed as the async iterator the method expects."""

    def __init__(self, messages: list) -> None:
        self._messages = iter(messages)

    def __aiter__(self) -> "_ListStream":
        return self

    async def __anext__(self):
        try:
            return next(self._messages)
        except StopIteration:
            raise StopAsyncIteration from None


class Forwardable:
    """Mixin for a deployment the gateway forwards to."""

    async def rpc(self, method: str, payload: Any) -> tuple[Any, str, str]:
        context = RecordingContext()
        request = _ListStream(payload) if isinstance(payload, list) else payload
        response = await unwrapped(type(self), method)(self, request, context)
        return response, context.code().name, context.details()

    async def rpc_stream(self, method: str, request: Any) -> AsyncIterator[tuple]:
        context = RecordingContext()
        try:
            async for message in unwrapped(type(self), method)(self, request, context):
                yield ("message", message)
        except StreamEnded:
            pass
        yield ("status", context.code().name, context.details())

    async def ready(self) -> bool:
        return True


def _set_status(context: object, code: str, details: str) -> None:
    if code != "OK" and context is not None:
        context.set_code(grpc.StatusCode[code])
        context.set_details(details)


def _forward_unary(target: str, service: str, method: str, empty: Callable[[], Any]) -> Callable:
    async def forward(self, request, grpc_context=None):
        try:
            response, code, details = await getattr(self, target).rpc.remote(method, request)
        except Exception:  # noqa: BLE001 - a dead replica is UNAVAILABLE, never INTERNAL
            _set_status(grpc_context, "UNAVAILABLE", f"{service} {UNAVAILABLE_HINT}")
            return empty()
        _set_status(grpc_context, code, details)
        return response
    forward.__name__ = method
    return forward


def _forward_client_stream(target: str, service: str, method: str, empty: Callable[[], Any],
                           max_bytes: Callable[[Any], int]) -> Callable:
    async def forward(self, request_stream, grpc_context=None):
        limit = max_bytes(self)
        messages, total = [], 0

        async def receive(request_id: str) -> bool:
            nonlocal total
            async for message in request_stream:
                total += message.ByteSize()
                if total > limit:
                    raise LimitExceeded(f"the {method} stream exceeds the limit of {limit:,} bytes; "
                                        "crop the volume around the tumour or ask for a higher limit")
                messages.append(message)
            return True

        if not await answer(grpc_context, method, receive, False):
            return empty()
        return await _forward_unary(target, service, method, empty)(self, messages, grpc_context)
    forward.__name__ = method
    return forward


def _forward_server_stream(target: str, service: str, method: str) -> Callable:
    async def forward(self, request, grpc_context=None):
        try:
            stream = getattr(self, target).options(stream=True).rpc_stream.remote(method, request)
            async for item in stream:
                if item[0] == "message":
                    yield item[1]
                else:
                    _set_status(grpc_context, item[1], item[2])
                    if item[1] != "OK":
                        raise StreamEnded(f"{method} ended with an error")
        except StreamEnded:
            raise
        except Exception:  # noqa: BLE001 - a dead replica is UNAVAILABLE, never INTERNAL
            _set_status(grpc_context, "UNAVAILABLE", f"{service} {UNAVAILABLE_HINT}")
            raise StreamEnded(f"{method}: {service} unavailable") from None
    forward.__name__ = method
    return forward


def forwarders(service: ServiceDescriptor, target: str,
               max_stream_bytes: Callable[[Any], int] = lambda gateway: 0) -> dict[str, Callable]:
    """Gateway methods for every RPC of `service`, sent to the handle in attribute `target`.

    `max_stream_bytes(gateway)` bounds what a client stream may buffer in the gateway.
    """
    out: dict[str, Callable] = {}
    for method in service.methods:
        empty = GetMessageClass(method.output_type)
        if method.server_streaming:
            out[method.name] = _forward_server_stream(target, service.full_name, method.name)
        elif method.client_streaming:
            out[method.name] = _forward_client_stream(target, service.full_name, method.name, empty, max_stream_bytes)
        else:
            out[method.name] = _forward_unary(target, service.full_name, method.name, empty)
    return out


async def probe(handle: Any, timeout_s: float = 5.0) -> bool:
    """Whether a forwarded-to deployment answers at all."""
    try:
        return bool(await asyncio.wait_for(handle.ready.remote(), timeout_s))
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False
