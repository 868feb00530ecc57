"""Deadline propagation: an incoming call's remaining time bounds every call it makes.

:class:`Deadlines` is both halves. Server side, :meth:`Deadlines.enter` records the incoming
call's deadline (``context.time_remaining()``) in a contextvar (``kit.governance.context``)
for the duration of the handler. Client side, :meth:`Deadlines.bound` gives each outgoing
call the smallest of: the timeout the caller passed, the time left on the current request's
deadline, and the configured timeout for the method. When the budget is already spent it
raises ``DeadlineExceededError`` (DEADLINE_EXCEEDED) without touching the network: the caller
upstream has given up anyway.

Errors: ``DeadlineExceededError`` subclasses ``grpc.aio.AioRpcError``, so callers handle it like
a DEADLINE_EXCEEDED answer from a server.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass, field

import grpc
import grpc.aio

from kit.governance._rpc import ServicerContext, rpc_error
from kit.governance.context import remaining_time, set_deadline


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


class Deadlines:
    """The request deadline: captured from incoming calls, applied to outgoing ones."""

    __slots__ = ("_config",)

    def __init__(self, config: DeadlineConfig | None = None) -> None:
        """Bound outgoing calls by ``config``'s timeouts (``DeadlineConfig()`` if None)."""
        self._config = config or DeadlineConfig()

    @staticmethod
    def enter(context: ServicerContext) -> Token[float | None] | None:
        """Make the incoming call's deadline current; None if the caller set none.

        Undo with ``kit.governance.context.reset_deadline(token)`` when the handler is done.
        """
        # The stubs say float; grpc.aio returns None when the client set no deadline.
        remaining: float | None = context.time_remaining()
        if remaining is None:
            return None
        return set_deadline(time.monotonic() + remaining)

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
