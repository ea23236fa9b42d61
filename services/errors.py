"""Mapping core errors to gRPC status codes inside Ray Serve deployments.

A deployment method sets the status on Serve's `grpc_context` and returns an empty response;
without that, an exception would reach the client as INTERNAL with Ray internals in the text.
Bad input never crashes a replica: every method runs through `answer`.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from radiogenomics.errors import InputError, LimitExceeded, NotFound, Precondition, Unavailable

__all__ = ["Precondition", "answer", "end_stream", "inside_root", "status_for"]

log = logging.getLogger("radiogenomics.services")
T = TypeVar("T")


def status_for(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, (LimitExceeded, MemoryError)):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, Unavailable):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, Precondition):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, InputError):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def new_request_id() -> str:
    return uuid.uuid4().hex


async def answer(context: object, method: str, work: Callable[[str], Awaitable[T]], empty: T) -> T:
    """Run `work(request_id)`; on error set the gRPC status (one-line details) and return `empty`.

    Unexpected errors become a bare INTERNAL that names the request id, never a stack trace;
    the replica survives any request.
    """
    request_id = new_request_id()
    try:
        return await work(request_id)
    except Exception as exc:  # noqa: BLE001 - the replica must survive any request
        code = status_for(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.exception("%s failed (request %s)", method, request_id)
            details = f"internal error in {method}; quote request id {request_id} to support"
        elif isinstance(exc, MemoryError):
            details = (f"{method} ran out of memory with these settings; use coarser settings (a larger binWidth, "
                       "a larger resampledPixelSpacing) or a smaller volume")
        else:
            details = " ".join(str(exc).split())
        if context is not None:
            context.set_code(code)
            context.set_details(details)
        return empty


class StreamEnded(Exception):
    """Ends a response stream after its gRPC status has been set on the context.

    Serve sends a stream's status only when the generator raises; the code set first is kept.
    """


async def end_stream(context: object, method: str, exc: Exception) -> None:
    """Set the status for `exc` (as `answer` would) and end the stream."""

    async def work(request_id: str) -> None:
        raise exc

    await answer(context, method, work, None)
    raise StreamEnded(f"{method} ended with an error") from None


def inside_root(root: Path | None, relative: str, field: str, disabled: str) -> Path:
    """`relative` resolved under the data root; refuses paths that escape it (`..`, symlinks, absolute).

    `disabled` is the FAILED_PRECONDITION message for a server with no data root.
    """
    if root is None:
        raise Precondition(disabled)
    if not relative:
        raise InputError(f"{field} is empty; give a path relative to the data root")
    shown = relative if len(relative) <= 200 else relative[:200] + "..."
    if "\x00" in relative:
        raise InputError(f"{field} contains a NUL character; give a plain path relative to the data root")
    root = Path(root).resolve()
    try:
        path = (root / relative).resolve()
        path.exists()  # an over-long name fails here, not later
    except (OSError, ValueError) as exc:
        raise InputError(f"{field} {shown!r} is not a usable path ({getattr(exc, 'strerror', None) or exc})") from None
    if not path.is_relative_to(root):
        raise InputError(f"{field} {shown!r} is outside the server's data root; give a path inside it")
    return path
