"""Translate :class:`kit.errors.AppError` to gRPC status and back: the service boundary.

Server side, :func:`map_handler_error` (the innermost step of
``kit.governance.GovernedServerInterceptor``, the one server interceptor) turns an
``AppError`` raised by a handler into the canonical status code of its ``kind`` with a
``google.rpc.ErrorInfo`` detail (reason, domain, metadata) in ``grpc-status-details-bin``.
Any other exception is logged with its traceback and answered ``INTERNAL`` with a generic
message, so internals never leak.

What ``grpc.aio`` does *outside* a handler does not reach that mapping: a request that does
not parse (corrupt bytes, a string field that is not UTF-8) and a response that does not
serialize are answered ``UNKNOWN`` with the exception's text (``Unexpected <class
'DecodeError'>: ...``). :func:`guarded_handler` moves both steps inside: it takes the raw
bytes, parses them (failure: ``INVALID_ARGUMENT`` ``REQUEST_UNDECODABLE``), runs the
handler, serializes the answer (failure: ``INTERNAL``), and maps every exception with
:func:`map_handler_error`; a ``ValueError`` protobuf raises for an out-of-range value that
the request carried (a handler copying an ``int64`` into an ``int32``) is the caller's
input: ``INVALID_ARGUMENT`` ``REQUEST_VALUE_OUT_OF_RANGE`` naming the field.
:func:`add_guarded` registers a generated servicer with every handler guarded.

Client side, :func:`app_error_from_rpc` rebuilds the ``AppError`` subclass from a failed
call, so the gateway can map business reasons without parsing strings.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from kit.errors import ERROR_CLASSES, AppError, ErrorKind, InvalidArgument

logger = logging.getLogger(__name__)

STATUS_DETAILS_KEY = "grpc-status-details-bin"
INTERNAL_MESSAGE = "internal error"
REQUEST_UNDECODABLE: Final = "REQUEST_UNDECODABLE"
"""Reason of a request whose bytes are not the method's request message."""
REQUEST_VALUE_OUT_OF_RANGE: Final = "REQUEST_VALUE_OUT_OF_RANGE"
"""Reason of a request value that a handler could not copy into a narrower field."""
# What protobuf (upb and the pure-Python runtime) says when an int does not fit a field.
_OUT_OF_RANGE: Final = re.compile(r"Value out of range: (-?[0-9]+)")


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
    GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:  # the runtime classes are not generic
    Handler = grpc.RpcMethodHandler
    ServerInterceptorBase = grpc.aio.ServerInterceptor
    GenericHandler = grpc.GenericRpcHandler


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


def _message_name(deserializer: Callable[[bytes], Any] | None) -> str:
    """The full name of the message ``deserializer`` parses (``Type.FromString``)."""
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


def _int_fields(message: Message, prefix: str = "") -> Iterator[tuple[str, int]]:
    """Every integer ``message`` carries, with its field path (``info.limit``, ``ids.2``)."""
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entries = cast("Mapping[Any, Any]", value)
            for key, item in entries.items():
                if isinstance(key, int):
                    yield f"{path}.{key}", key
                if isinstance(item, Message):
                    yield from _int_fields(item, f"{path}.{key}.")
                elif isinstance(item, int) and not isinstance(item, bool):
                    yield f"{path}.{key}", item
        elif isinstance(value, Message):
            yield from _int_fields(value, f"{path}.")
        elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
            for index, item in enumerate(value):
                if isinstance(item, Message):
                    yield from _int_fields(item, f"{path}.{index}.")
                elif isinstance(item, int) and not isinstance(item, bool):
                    yield f"{path}.{index}", item
        elif isinstance(value, int) and not isinstance(value, bool):
            yield path, value


def input_error(exc: Exception, request: object) -> AppError | None:
    """The ``INVALID_ARGUMENT`` that ``exc`` is if the request caused it, else None.

    Only protobuf's range check qualifies, and only when the value it refused is one the
    request carried (an ``int64`` of the request copied into an ``int32``): the caller can
    fix that. Any other exception, or an out-of-range value the handler computed, is ours.
    """
    if type(exc) is not ValueError or not isinstance(request, Message):
        return None
    found = _OUT_OF_RANGE.fullmatch(str(exc))
    if found is None:
        return None
    value = int(found.group(1))
    for path, carried in _int_fields(request):
        if carried == value:
            return InvalidArgument(
                REQUEST_VALUE_OUT_OF_RANGE,
                f"{path} is out of range ({value})",
                metadata={"field": path},
            )
    return None


def guarded_handler(handler: Handler, method: str) -> Handler:
    """``handler`` with its request parsing and response serialization inside the mapping.

    The returned handler takes and returns bytes: ``grpc.aio`` no longer runs a codec
    outside it, so no exception text reaches a caller (see the module docstring). Streaming
    handlers are returned as they are (no proto declares one).
    """
    behaviour: Callable[..., Any] | None = handler.unary_unary
    if behaviour is None:
        return handler
    unary = behaviour
    decode = handler.request_deserializer
    encode = handler.response_serializer
    message_name = _message_name(decode)

    async def guarded(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request: object = raw
        try:
            if decode is not None:
                try:
                    request = decode(raw)
                except Exception as exc:
                    logger.info(
                        "request undecodable",
                        extra={"method": method, "message_type": message_name, "error": repr(exc)},
                    )
                    raise InvalidArgument(
                        REQUEST_UNDECODABLE,
                        f"the request is not a valid {message_name} (malformed bytes, or a "
                        "string that is not UTF-8)",
                    ) from exc
            answer = unary(request, context)
            if inspect.isawaitable(answer):
                answer = await answer
            return answer if encode is None else encode(answer)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await map_handler_error(input_error(exc, request) or exc, context, method)
            raise  # unreachable: the mapping aborts

    return grpc.unary_unary_rpc_method_handler(guarded)


class _GuardedGenericHandler(GenericHandler):
    """A generic handler whose unary-unary handlers are guarded (one wrapper per method)."""

    def __init__(self, inner: GenericHandler) -> None:
        self._inner = inner
        self._guarded: dict[str, tuple[Handler, Handler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._guarded.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = guarded_handler(handler, method)
        self._guarded[method] = (handler, guarded)
        return guarded


class _GuardingServer:
    """What a generated ``add_XServicer_to_server`` registers on: every handler guarded."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[GenericHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_GuardedGenericHandler(handler) for handler in handlers)
        )

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        self._server.add_registered_method_handlers(  # type: ignore[attr-defined]  # grpc-stubs lag
            service,
            {
                name: guarded_handler(handler, f"/{service}/{name}")
                for name, handler in handlers.items()
            },
        )


def add_guarded(
    add_to_server: Callable[[Any, Any], None], servicer: Any, server: grpc.aio.Server
) -> None:
    """``add_to_server(servicer, server)`` (a generated ``add_XServicer_to_server``) with
    every unary-unary handler wrapped by :func:`guarded_handler`."""
    add_to_server(servicer, _GuardingServer(server))
