"""Translate :class:`kit.errors.AppError` to gRPC status and back: the service boundary.

Server side, :func:`map_handler_error` (the innermost step of
``kit.governance.GovernedServerInterceptor``, the one server interceptor) turns an
``AppError`` raised by a handler into the canonical status code of its ``kind`` with a
``google.rpc.ErrorInfo`` detail (reason, domain, metadata) in ``grpc-status-details-bin``.
Any other exception is logged with its traceback and answered ``INTERNAL`` with a generic
message, so internals never leak.

Client side, :func:`app_error_from_rpc` rebuilds the ``AppError`` subclass from a failed
call, so the gateway can map business reasons without parsing strings.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from kit.errors import ERROR_CLASSES, AppError, ErrorKind

logger = logging.getLogger(__name__)

STATUS_DETAILS_KEY = "grpc-status-details-bin"
INTERNAL_MESSAGE = "internal error"


def status_code_for(error: AppError) -> grpc.StatusCode:
    """The gRPC status code an ``AppError`` becomes."""
    return grpc.StatusCode[error.kind.value]


def rich_status_metadata(error: AppError) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying ``google.rpc.Status`` with an ``ErrorInfo`` detail."""
    code = status_code_for(error)
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=error.domain, metadata=error.metadata
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=error.message, details=[detail])
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: AppError) -> None:
    """Abort the current call with ``error`` as a rich status."""
    await context.abort(
        status_code_for(error), error.message, trailing_metadata=rich_status_metadata(error)
    )


def app_error_from_rpc(exc: grpc.aio.AioRpcError) -> AppError:
    """Rebuild the ``AppError`` behind a failed call (``INTERNAL``/``UNAVAILABLE`` otherwise)."""
    code = exc.code()
    kind = ErrorKind(code.name) if code.name in ErrorKind.__members__ else ErrorKind.INTERNAL
    cls = ERROR_CLASSES[kind]
    reason, domain, metadata = code.name, "", {}
    trailing = cast("tuple[tuple[str, str | bytes], ...]", exc.trailing_metadata() or ())
    for key, value in trailing:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
    return cls(reason, exc.details() or code.name, metadata=metadata, domain=domain or None)


# For the interceptors a service adds inside the governance (sms's caller authentication).
if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    ServerInterceptorBase = grpc.aio.ServerInterceptor[Any, Any]
else:  # the runtime classes are not generic
    Handler = grpc.RpcMethodHandler
    ServerInterceptorBase = grpc.aio.ServerInterceptor


async def map_handler_error(
    exc: Exception, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> None:
    """Abort the call with the status ``exc`` maps to (always raises ``AbortError``).

    An ``AppError`` becomes its kind's status with an ``ErrorInfo``; anything else is
    logged with its traceback and answered INTERNAL; an ``AbortError`` passes through.
    """
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if isinstance(exc, AppError):
        logger.info(
            "request refused",
            extra={"method": method, "reason": exc.reason, "kind": exc.kind.value},
        )
        await abort_with(context, exc)
        return
    logger.exception("unhandled error in handler", extra={"method": method})
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
