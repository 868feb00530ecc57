"""Plumbing shared by the governance interceptors: method names, handler wrapping, statuses.

Server side, ``grpc.aio`` interceptors return a method handler; to act around the handler's
execution (time it, see its final status, hold a slot) ``wrap_handler`` rebuilds the handler
around its behaviour function inside an async context manager ("scope"). The scope sees the
handler's exception, including the ``AbortError`` raised by ``context.abort``; ``server_status``
turns that into the status code the client receives.

Client side, ``grpc.aio`` continuations are coroutine functions returning the call object; an
interceptor that needs the outcome awaits ``call_status``, which cancels the RPC if the
interceptor itself is cancelled. ``grpc.aio.Channel`` files each client interceptor under the
first RPC kind it implements only (grpc/grpc#43512), so our client interceptors subclass the
unary-unary base and ``UnaryStreamAdapter`` registers them for unary-stream calls as well.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import grpc
import grpc.aio

if TYPE_CHECKING:
    # grpc-stubs declares these generic; at run time they are plain ABCs and not subscriptable.
    ServerInterceptorBase: TypeAlias = grpc.aio.ServerInterceptor[Any, Any]
    UnaryUnaryClientInterceptorBase: TypeAlias = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    UnaryStreamClientInterceptorBase: TypeAlias = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    MethodHandler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    UnaryUnaryCall: TypeAlias = grpc.aio.UnaryUnaryCall[Any, Any]
    UnaryStreamCall: TypeAlias = grpc.aio.UnaryStreamCall[Any, Any]
else:
    ServerInterceptorBase = grpc.aio.ServerInterceptor
    UnaryUnaryClientInterceptorBase = grpc.aio.UnaryUnaryClientInterceptor
    UnaryStreamClientInterceptorBase = grpc.aio.UnaryStreamClientInterceptor
    MethodHandler = grpc.RpcMethodHandler
    ServicerContext = grpc.aio.ServicerContext
    UnaryUnaryCall = grpc.aio.UnaryUnaryCall
    UnaryStreamCall = grpc.aio.UnaryStreamCall

HandlerContinuation: TypeAlias = Callable[
    [grpc.HandlerCallDetails], Awaitable[MethodHandler | None]
]
"""What ``grpc.aio`` passes to ``ServerInterceptor.intercept_service``."""

UnaryUnaryContinuation: TypeAlias = Callable[
    [grpc.aio.ClientCallDetails, Any], Awaitable[UnaryUnaryCall]
]
"""What ``grpc.aio`` passes to ``intercept_unary_unary`` (a coroutine function)."""

UnaryStreamContinuation: TypeAlias = Callable[
    [grpc.aio.ClientCallDetails, Any], Awaitable[UnaryStreamCall]
]
"""What ``grpc.aio`` passes to ``intercept_unary_stream`` (a coroutine function)."""

ServerScope: TypeAlias = Callable[[ServicerContext], AbstractAsyncContextManager[object]]
"""Runs around one execution of a handler's behaviour; may abort before it starts."""

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


@functools.lru_cache(maxsize=4096)
def parse_method(full_method: str | bytes) -> RpcMethod:
    """Split ``/package.Service/Method`` (``grpc.aio`` clients pass it as bytes)."""
    full = full_method.decode() if isinstance(full_method, bytes) else full_method
    service, _, name = full.lstrip("/").rpartition("/")
    if not service:
        return RpcMethod(full=full, service="unknown", name=name or "unknown")
    return RpcMethod(full=full, service=service, name=name)


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


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def wrap_handler(handler: MethodHandler, scope: ServerScope) -> MethodHandler:
    """The same handler with every execution of its behaviour run inside ``scope(context)``.

    Keeps the behaviour's calling convention, which ``grpc.aio`` inspects: a response-streaming
    behaviour that is a coroutine function (writes with ``context.write``) stays one, any other
    (async or sync generator) becomes an async generator. A synchronous behaviour runs on the
    event loop rather than in grpc's thread pool: servicers here are all async.
    """
    deserializer = handler.request_deserializer
    serializer = handler.response_serializer
    if not handler.response_streaming:
        unary_behavior: Callable[..., Any] | None = (
            handler.stream_unary if handler.request_streaming else handler.unary_unary
        )
        assert unary_behavior is not None

        async def unary_response(request: Any, context: ServicerContext) -> Any:
            async with scope(context):
                return await _resolve(unary_behavior(request, context))

        factory = (
            grpc.stream_unary_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        return factory(unary_response, deserializer, serializer)

    stream_behavior: Callable[..., Any] | None = (
        handler.stream_stream if handler.request_streaming else handler.unary_stream
    )
    assert stream_behavior is not None
    wrapped: Callable[[Any, ServicerContext], Any]
    if inspect.iscoroutinefunction(stream_behavior):

        async def writer_response(request: Any, context: ServicerContext) -> None:
            async with scope(context):
                await stream_behavior(request, context)

        wrapped = writer_response
    else:

        async def generator_response(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            async with scope(context):
                responses: AsyncIterable[Any] | Iterable[Any] = stream_behavior(request, context)
                if isinstance(responses, AsyncIterable):
                    async for response in responses:
                        yield response
                else:
                    for response in responses:
                        yield response

        wrapped = generator_response
    factory = (
        grpc.stream_stream_rpc_method_handler
        if handler.request_streaming
        else grpc.unary_stream_rpc_method_handler
    )
    return factory(wrapped, deserializer, serializer)


def rpc_error(
    error_type: type[grpc.aio.AioRpcError], code: grpc.StatusCode, details: str
) -> grpc.aio.AioRpcError:
    """An ``AioRpcError`` raised locally, without a network call, as if the server answered."""
    return error_type(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)


async def call_status(call: UnaryUnaryCall | UnaryStreamCall) -> grpc.StatusCode:
    """Wait for a client call to finish and return its status code.

    If the waiting interceptor is cancelled (the caller gave up), the RPC is cancelled too:
    otherwise it would keep running with nobody to read its answer.
    """
    try:
        return await call.code()
    except asyncio.CancelledError:
        call.cancel()
        raise


def replace_call_details(
    details: grpc.aio.ClientCallDetails,
    *,
    timeout: float | None = None,
    metadata: grpc.aio.Metadata | None = None,
) -> grpc.aio.ClientCallDetails:
    """A copy of ``details`` with a new timeout and/or metadata (None keeps the old one)."""
    return grpc.aio.ClientCallDetails(
        details.method,
        timeout if timeout is not None else details.timeout,
        metadata if metadata is not None else details.metadata,
        details.credentials,
        details.wait_for_ready,
    )


def observe_stream(
    call: UnaryStreamCall, on_done: Callable[[grpc.StatusCode, BaseException | None], None]
) -> AsyncIterator[Any]:
    """Iterate a response stream, calling ``on_done(code, error)`` once when it ends.

    A stream the consumer abandons (closed or cancelled before its end) is cancelled and
    reported as CANCELLED.
    """

    async def responses() -> AsyncIterator[Any]:
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            on_done(exc.code(), exc)
            raise
        except (asyncio.CancelledError, GeneratorExit) as exc:
            call.cancel()
            on_done(grpc.StatusCode.CANCELLED, exc)
            raise
        except Exception as exc:
            on_done(grpc.StatusCode.UNKNOWN, exc)
            raise
        on_done(await call_status(call), None)

    return responses()


@runtime_checkable
class StreamingClientInterceptor(Protocol):
    """A client interceptor that can also intercept unary-stream calls."""

    async def intercept_unary_stream(
        self,
        continuation: UnaryStreamContinuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> UnaryStreamCall | AsyncIterator[Any]:
        """Intercept one unary-stream call."""
        ...


class UnaryStreamAdapter(UnaryStreamClientInterceptorBase):
    """Presents an interceptor's ``intercept_unary_stream`` to a channel as its own object."""

    def __init__(self, interceptor: StreamingClientInterceptor) -> None:
        """Forward unary-stream calls to ``interceptor``."""
        self.interceptor = interceptor

    async def intercept_unary_stream(  # type: ignore[override]  # grpc-stubs: continuation is async
        self,
        continuation: UnaryStreamContinuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> UnaryStreamCall | AsyncIterator[Any]:
        """Delegate to the wrapped interceptor."""
        return await self.interceptor.intercept_unary_stream(
            continuation, client_call_details, request
        )
