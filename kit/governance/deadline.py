"""Deadline propagation: an incoming call's remaining time bounds every call it makes.

- ``ServerDeadlineInterceptor`` records the incoming call's deadline (``context.time_remaining()``)
  in a contextvar (``kit.governance.context``) for the duration of the handler.
- ``ClientDeadlineInterceptor`` sets each outgoing call's timeout to the smallest of: the timeout
  the caller passed, the time left on the current request's deadline, and the configured
  default for the method. When the budget is already spent it raises ``DeadlineExceededError``
  (DEADLINE_EXCEEDED) without touching the network: the caller upstream has given up anyway.

Errors: ``DeadlineExceededError`` subclasses ``grpc.aio.AioRpcError``, so callers handle it like
a DEADLINE_EXCEEDED answer from a server.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from kit.governance._rpc import (
    HandlerContinuation,
    MethodHandler,
    ServerInterceptorBase,
    ServicerContext,
    UnaryStreamCall,
    UnaryStreamContinuation,
    UnaryUnaryCall,
    UnaryUnaryClientInterceptorBase,
    UnaryUnaryContinuation,
    parse_method,
    replace_call_details,
    rpc_error,
    wrap_handler,
)
from kit.governance.context import remaining_time, reset_deadline, set_deadline


@dataclass(frozen=True, slots=True)
class DeadlineConfig:
    """Timeouts for outgoing calls.

    ``default_timeout`` (seconds) bounds calls whose method has no entry in ``per_method``
    (keyed by full method, e.g. ``{"/webook.user.v1.UserService/Login": 2.0}``); None leaves
    such calls unbounded unless the caller or an incoming deadline bounds them.
    """

    default_timeout: float | None = 5.0
    per_method: Mapping[str, float] = field(default_factory=dict)

    def timeout_for(self, full_method: str) -> float | None:
        """The configured timeout for ``full_method``."""
        return self.per_method.get(full_method, self.default_timeout)


class DeadlineExceededError(grpc.aio.AioRpcError):
    """The request's deadline was spent before an outgoing call could start."""


class ServerDeadlineInterceptor(ServerInterceptorBase):
    """Makes the incoming call's deadline the current deadline while its handler runs."""

    async def intercept_service(  # type: ignore[override]  # grpc-stubs: continuation is async
        self, continuation: HandlerContinuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MethodHandler | None:
        """Wrap the handler so that it runs with its call's deadline in the contextvar."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return wrap_handler(handler, _deadline_scope)


@asynccontextmanager
async def _deadline_scope(context: ServicerContext) -> AsyncIterator[None]:
    # The stubs say float; grpc.aio returns None when the client set no deadline.
    remaining: float | None = context.time_remaining()
    if remaining is None:
        yield
        return
    token = set_deadline(time.monotonic() + remaining)
    try:
        yield
    finally:
        reset_deadline(token)


class ClientDeadlineInterceptor(UnaryUnaryClientInterceptorBase):
    """Bounds each outgoing call by the caller's timeout, the request deadline and the config.

    Covers unary-unary and unary-stream calls: pass it through ``client_chain`` so that a
    channel applies it to both.
    """

    def __init__(self, config: DeadlineConfig | None = None) -> None:
        """Use ``config``'s default and per-method timeouts (``DeadlineConfig()`` if None)."""
        self._config = config or DeadlineConfig()

    def timeout_for(self, details: grpc.aio.ClientCallDetails) -> float | None:
        """The timeout the call described by ``details`` gets.

        Raises ``DeadlineExceededError`` if the current request's deadline has passed.
        """
        return self.bound(parse_method(details.method).full, details.timeout)

    def bound(self, full_method: str, timeout: float | None) -> float | None:
        """The smallest of ``timeout``, the request's remaining time and the configured one.

        Raises ``DeadlineExceededError`` if the current request's deadline has passed.
        """
        remaining = remaining_time()
        if remaining is not None and remaining <= 0:
            raise rpc_error(
                DeadlineExceededError,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"deadline exceeded before calling {full_method}",
            )
        bound = self._config.timeout_for(full_method)
        # Plain comparisons: this runs on every outgoing call.
        if timeout is not None and (bound is None or timeout < bound):
            bound = timeout
        if remaining is not None and (bound is None or remaining < bound):
            bound = remaining
        return bound

    async def intercept_unary_unary(
        self,
        continuation: UnaryUnaryContinuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> UnaryUnaryCall:
        """Start the call with the bounded timeout, or fail fast if no time is left."""
        timeout = self.timeout_for(client_call_details)
        return await continuation(
            replace_call_details(client_call_details, timeout=timeout), request
        )

    async def intercept_unary_stream(
        self,
        continuation: UnaryStreamContinuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> UnaryStreamCall:
        """Start the streaming call with the bounded timeout, or fail fast if no time is left."""
        timeout = self.timeout_for(client_call_details)
        return await continuation(
            replace_call_details(client_call_details, timeout=timeout), request
        )
