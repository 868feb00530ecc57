"""Fencing tokens over gRPC: the metadata a scheduled call carries, read on both sides.

A job runner (the scheduler's ``grpc`` executor) sends the run's **fencing token** — a
number higher than every earlier run's — in metadata :data:`FENCING_TOKEN_METADATA`, and the
job's name in :data:`JOB_METADATA` (:func:`fencing_metadata`). The callee reads the token
with :func:`fencing_token` and refuses a token lower than the highest it accepted, answering
``FAILED_PRECONDITION`` with an ``ErrorInfo`` reason ending in
:data:`STALE_REASON_SUFFIX` (``RANKING_STALE_FENCING_TOKEN``); the caller recognises that
refusal with :func:`is_stale_token_refusal` and records the run as fenced rather than failed
(docs/scheduler.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import grpc

from kit.grpcx.errors import app_error_from_rpc

FENCING_TOKEN_METADATA: Final = "webook-fencing-token"
"""Metadata key of the caller's fencing token (decimal digits, positive)."""
JOB_METADATA: Final = "webook-job"
"""Metadata key of the name of the job the call runs (for the callee's logs)."""
STALE_REASON_SUFFIX: Final = "STALE_FENCING_TOKEN"
"""How the ``ErrorInfo`` reason of a stale-token refusal ends, whatever the domain."""
MAX_TOKEN_DIGITS: Final = 19
"""A token fits a signed 64-bit integer: at most 19 decimal digits."""


class MalformedFencingToken(ValueError):
    """The fencing-token metadata is present but not one positive decimal integer.

    The callee turns it into its own ``INVALID_ARGUMENT`` (its domain, its reason).
    """


def fencing_metadata(token: int, job: str) -> tuple[tuple[str, str], ...]:
    """The metadata of a call run under ``token`` for ``job``."""
    return ((FENCING_TOKEN_METADATA, str(token)), (JOB_METADATA, job))


def _metadata_values(context: grpc.aio.ServicerContext[Any, Any], key: str) -> list[str | bytes]:
    return [value for name, value in context.invocation_metadata() or () if name == key]


def fencing_token(context: grpc.aio.ServicerContext[Any, Any]) -> int | None:
    """The fencing token the caller sent, ``None`` when it sent none.

    Raises :class:`MalformedFencingToken` unless the metadata is one value of 1 to 19
    decimal digits, positive and below 2**63; the same value sent twice counts as one.
    """
    values = _metadata_values(context, FENCING_TOKEN_METADATA)
    if not values:
        return None
    if len(set(values)) > 1:
        raise MalformedFencingToken(f"{FENCING_TOKEN_METADATA} was sent with different values")
    (value,) = set(values)
    text = value if isinstance(value, str) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_TOKEN_DIGITS):
        raise MalformedFencingToken(
            f"{FENCING_TOKEN_METADATA} must be a positive decimal integer, got {str(value)[:40]!r}"
        )
    token = int(text)
    if not 0 < token < 2**63:
        raise MalformedFencingToken(
            f"{FENCING_TOKEN_METADATA} must be between 1 and {2**63 - 1}, got {token}"
        )
    return token


def call_token(
    context: grpc.aio.ServicerContext[Any, Any],
    field_value: int,
    refuse: Callable[[str, str], Exception],
) -> int:
    """The fencing token of a job call: the metadata (what the scheduler's ``grpc`` executor
    sends) or the request's ``fencing_token`` field (``field_value``); both may be set only
    to the same value. 0 when neither is (the callee refuses it).

    ``refuse(message, field)``: the service's own invalid-argument error for a malformed
    metadata value or a disagreement, raised here.
    """
    try:
        sent = fencing_token(context)
    except MalformedFencingToken as exc:
        raise refuse(str(exc), FENCING_TOKEN_METADATA) from exc
    if sent is None:
        return field_value
    if field_value and field_value != sent:
        raise refuse(
            f"fencing_token {field_value} differs from the {FENCING_TOKEN_METADATA} "
            f"metadata {sent}: send one, or the same in both",
            "fencing_token",
        )
    return sent


def job_name(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The job name the caller sent (empty when none)."""
    for value in _metadata_values(context, JOB_METADATA):
        if isinstance(value, str):
            return value
    return ""


def is_stale_token_refusal(exc: grpc.aio.AioRpcError) -> bool:
    """Whether a failed call is a callee's refusal of a stale fencing token."""
    if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
        return False
    return app_error_from_rpc(exc).reason.endswith(STALE_REASON_SUFFIX)
