"""Per-request governance state kept in ``contextvars``: the request's deadline.

The server composer sets the deadline of the incoming call for the duration of its
handler; the client policy reads it to bound every outgoing call. ``grpc.aio`` runs each RPC
handler in its own task and the client policy runs in the calling task, so the value follows
the request and nothing else. Code that is
not inside a gRPC handler (the HTTP gateway, a Kafka consumer) sets a budget with
``deadline_after``.

Deadlines are absolute ``time.monotonic()`` instants.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

_deadline: ContextVar[float | None] = ContextVar("webook_governance_deadline", default=None)


def current_deadline() -> float | None:
    """The current request's deadline as a ``time.monotonic()`` instant, or None if unbounded."""
    return _deadline.get()


def remaining_time() -> float | None:
    """Seconds left before the current request's deadline (≤ 0 once spent), None if unbounded."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def set_deadline(deadline: float | None) -> Token[float | None]:
    """Make ``deadline`` the current request's deadline; undo with ``reset_deadline(token)``."""
    return _deadline.set(deadline)


def reset_deadline(token: Token[float | None]) -> None:
    """Restore the deadline that was current before ``set_deadline`` returned ``token``."""
    _deadline.reset(token)


@contextmanager
def deadline_after(timeout: float) -> Iterator[float]:
    """Bound the enclosed work to ``timeout`` seconds from now, never extending a tighter deadline.

    Yields the effective deadline.
    """
    deadline = time.monotonic() + timeout
    outer = _deadline.get()
    if outer is not None:
        deadline = min(deadline, outer)
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)
