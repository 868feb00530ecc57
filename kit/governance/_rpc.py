"""What every governance concern needs to know about a gRPC call: its method and its status.

``parse_method`` splits ``/package.Service/Method`` once per name (cached) into the labels
metrics and spans use; ``server_status`` turns the exception a handler ended with (the
``AbortError`` of ``context.abort`` included) into the status code its client receives;
``rpc_error`` builds the ``AioRpcError`` a client-side concern raises without a network
call. The type aliases name the ``grpc.aio`` server types, which the stubs declare generic
but which are not subscriptable at run time.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio

if TYPE_CHECKING:
    # grpc-stubs declares these generic; at run time they are plain ABCs and not subscriptable.
    ServerInterceptorBase: TypeAlias = grpc.aio.ServerInterceptor[Any, Any]
    MethodHandler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]
else:
    ServerInterceptorBase = grpc.aio.ServerInterceptor
    MethodHandler = grpc.RpcMethodHandler
    ServicerContext = grpc.aio.ServicerContext

HandlerContinuation: TypeAlias = Callable[
    [grpc.HandlerCallDetails], Awaitable[MethodHandler | None]
]
"""What ``grpc.aio`` passes to ``ServerInterceptor.intercept_service``."""

EXEMPT_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Infrastructure methods that are never rate limited, shed or traced."""


def is_exempt(full_method: str) -> bool:
    """Whether ``full_method`` is a health-check or reflection method."""
    return full_method.startswith(EXEMPT_PREFIXES)


@dataclass(frozen=True, slots=True)
class RpcMethod:
    """A gRPC method name split the way metrics and traces label it."""

    full: str
    """``/webook.user.v1.UserService/Login``."""
    service: str
    """The proto service's full name, ``webook.user.v1.UserService``."""
    name: str
    """The method name, ``Login``."""
    span_name: str = field(compare=False)
    """``webook.user.v1.UserService/Login``: the name of its CLIENT and SERVER spans."""
    attributes: dict[str, str] = field(compare=False)
    """The span attributes naming it: ``rpc.system``, ``rpc.service``, ``rpc.method``."""


@functools.lru_cache(maxsize=4096)
def parse_method(full_method: str | bytes) -> RpcMethod:
    """Split ``/package.Service/Method`` (``grpc.aio`` clients pass it as bytes)."""
    full = full_method.decode() if isinstance(full_method, bytes) else full_method
    service, _, name = full.lstrip("/").rpartition("/")
    if not service:
        service, name = "unknown", name or "unknown"
    return RpcMethod(
        full=full,
        service=service,
        name=name,
        span_name=f"{service}/{name}",
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
    )


def server_status(context: ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status a server handler ended with, given the exception it raised (if any).

    ``context.abort`` sets the code and raises ``AbortError``; any other exception becomes
    UNKNOWN on the wire; a cancelled handler is DEADLINE_EXCEEDED when its deadline passed.
    """
    # The stubs say code() returns a StatusCode; grpc.aio returns None until one is set.
    code: grpc.StatusCode | None = context.code()
    if error is None:
        return code or grpc.StatusCode.OK
    if isinstance(error, grpc.aio.AbortError):
        return code or grpc.StatusCode.UNKNOWN
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        remaining: float | None = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def rpc_error(
    error_type: type[grpc.aio.AioRpcError], code: grpc.StatusCode, details: str
) -> grpc.aio.AioRpcError:
    """An ``AioRpcError`` raised locally, without a network call, as if the server answered."""
    return error_type(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)
