"""The one place where failures become HTTP answers.

=====================================  ===========  ======================================
failure                                HTTP status  body
=====================================  ===========  ======================================
request validation (bad JSON, types,   200          ``{code: 4, msg: <the problem>}``
missing fields, rule violations)
reason ``USER_EMAIL_TAKEN``            200          ``{code: 401003, "email already
                                                    registered"}``
reason ``USER_INVALID_CREDENTIALS``    200          ``{code: 401002, "wrong email or
                                                    password"}``
reason ``USER_NOT_FOUND``              200          ``{code: 4, "user not found"}``
reason ``CODE_SEND_TOO_FREQUENT``      200          ``{code: 4, "code sent too often, try
                                                    again later"}``
reason ``CODE_VERIFY_TOO_MANY``        200          ``{code: 4, "too many attempts, request
                                                    a new code"}``
reason ``LOGIN_CODE_WRONG`` (Verify    200          ``{code: 4, "wrong or expired code"}``
answered ok=false)
reasons ``CODE_INVALID_PHONE``,        200          ``{code: 4, "invalid phone number"}``
``USER_INVALID_PHONE``
reasons ``USER_LOGIN_THROTTLED``,      200          ``{code: 4, msg: <service message>}``
``CODE_COUNTRY_NOT_ALLOWED``                        (when to retry; which country)
reason ``WECHAT_STATE_INVALID``        200          ``{code: 4, "WeChat login expired or
                                                    was started elsewhere, please scan
                                                    again"}``
reasons ``WECHAT_CODE_REJECTED``,      200          ``{code: 4, "WeChat login failed,
``USER_INVALID_WECHAT_INFO``                        please try again"}``
reason ``WECHAT_LOGIN_CANCELLED``      200          ``{code: 4, "WeChat login was
                                                    cancelled"}``
reasons ``FEED_INVALID_CURSOR``,       200          ``{code: 4, "invalid cursor: pass the
``TAG_INVALID_CURSOR``                              nextCursor of the previous page, or none
                                                    for the first page"}``
reasons ``CODE_INVALID_BIZ`` (our      200          ``{code: 5, "system error"}``
configuration), ``CODE_SEND_FAILED``,
``CODE_STORE_UNAVAILABLE``,
``WECHAT_UNAVAILABLE``,
``FEED_INVALID_USER``,
``TAG_INVALID_USER`` (the gateway
sent no user: a bug)
other INVALID_ARGUMENT, NOT_FOUND,     200          ``{code: 4, msg: <service message>}``
ALREADY_EXISTS, PERMISSION_DENIED,
FAILED_PRECONDITION,
RESOURCE_EXHAUSTED
other UNAUTHENTICATED                  401          empty
UNAVAILABLE, DEADLINE_EXCEEDED,        200          ``{code: 5, "system error"}``
INTERNAL, any other gRPC status
unexpected exception                   500          ``{code: 5, "system error"}``
=====================================  ===========  ======================================

gRPC failures are first rebuilt into :class:`kit.errors.AppError` with
:func:`kit.grpcx.errors.app_error_from_rpc`, so business reasons are matched, never strings.
The services' reasons come from their protos (enum ``ErrorReason``: a reason is a value's
name); the gateway's own, which never leave it, are :class:`GatewayReason`, with their
domains :data:`GATEWAY_DOMAIN` and :data:`WECHAT_DOMAIN`. No other module writes a reason.
System errors are logged with their cause (the log line carries the trace id); the client
only ever sees "system error".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import grpc
from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.envelope import (
    CODE_BAD_INPUT,
    CODE_EMAIL_TAKEN,
    CODE_SYSTEM_ERROR,
    CODE_WRONG_CREDENTIALS,
    MSG_SYSTEM_ERROR,
    envelope_response,
    note_envelope_code,
)
from kit.errors import AppError, ErrorKind
from kit.grpcx.errors import app_error_from_rpc
from webook.code.v1 import code_pb2
from webook.feed.v1 import feed_pb2
from webook.tag.v1 import tag_pb2
from webook.user.v1 import user_pb2

logger = logging.getLogger(__name__)

GATEWAY_DOMAIN: Final = "gateway.webook"
"""The domain of the errors the gateway raises about its own requests."""
WECHAT_DOMAIN: Final = "wechat.webook"
"""The domain of the errors that report WeChat's answers."""


class GatewayReason(StrEnum):
    """Reasons of the errors the gateway raises itself.

    They never leave the gateway (its answers carry codes, not reasons): they only select an
    answer in this module and a login result in ``gateway.auth.login``.
    """

    # SMS login: CodeService.Verify answered ok=false (wrong, expired or used code).
    LOGIN_CODE_WRONG = "LOGIN_CODE_WRONG"
    # The WeChat callback's state is not the one this browser started a login with.
    WECHAT_STATE_INVALID = "WECHAT_STATE_INVALID"
    # WeChat refused the code (invalid, expired or already used).
    WECHAT_CODE_REJECTED = "WECHAT_CODE_REJECTED"
    # The WeChat callback came without a code: the person cancelled.
    WECHAT_LOGIN_CANCELLED = "WECHAT_LOGIN_CANCELLED"
    # WeChat could not be asked, or its answer made no sense.
    WECHAT_UNAVAILABLE = "WECHAT_UNAVAILABLE"
    # The request's session ended (logged out or expired).
    SESSION_INVALID = "SESSION_INVALID"
    # The session store (Redis) did not answer a write.
    SESSION_STORE_UNAVAILABLE = "SESSION_STORE_UNAVAILABLE"


_user = user_pb2.ErrorReason.Name
_code = code_pb2.ErrorReason.Name
_feed = feed_pb2.ErrorReason.Name
_tag = tag_pb2.ErrorReason.Name


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What a failure becomes: an HTTP status and an envelope (None = empty body)."""

    status_code: int
    code: int | None
    msg: str

    def response(self) -> Response:
        """The response to send."""
        if self.code is None:
            return unauthorized_response()
        return envelope_response(self.code, self.msg, status_code=self.status_code)


SYSTEM_ERROR: Final = HttpAnswer(200, CODE_SYSTEM_ERROR, MSG_SYSTEM_ERROR)
UNAUTHORIZED: Final = HttpAnswer(401, None, "")

_INVALID_PHONE: Final = HttpAnswer(200, CODE_BAD_INPUT, "invalid phone number")
_WECHAT_FAILED: Final = HttpAnswer(200, CODE_BAD_INPUT, "WeChat login failed, please try again")
# The services' cursor messages speak of their RPCs; the client only knows nextCursor.
_INVALID_CURSOR: Final = HttpAnswer(
    200,
    CODE_BAD_INPUT,
    "invalid cursor: pass the nextCursor of the previous page, or none for the first page",
)

_BY_REASON: Final[Mapping[str, HttpAnswer]] = {
    _user(user_pb2.USER_EMAIL_TAKEN): HttpAnswer(200, CODE_EMAIL_TAKEN, "email already registered"),
    _user(user_pb2.USER_INVALID_CREDENTIALS): HttpAnswer(
        200, CODE_WRONG_CREDENTIALS, "wrong email or password"
    ),
    _user(user_pb2.USER_NOT_FOUND): HttpAnswer(200, CODE_BAD_INPUT, "user not found"),
    # SMS code login.
    _code(code_pb2.CODE_SEND_TOO_FREQUENT): HttpAnswer(
        200, CODE_BAD_INPUT, "code sent too often, try again later"
    ),
    _code(code_pb2.CODE_VERIFY_TOO_MANY): HttpAnswer(
        200, CODE_BAD_INPUT, "too many attempts, request a new code"
    ),
    GatewayReason.LOGIN_CODE_WRONG: HttpAnswer(200, CODE_BAD_INPUT, "wrong or expired code"),
    _code(code_pb2.CODE_INVALID_PHONE): _INVALID_PHONE,
    _user(user_pb2.USER_INVALID_PHONE): _INVALID_PHONE,
    # The gateway asked for a business the sms service does not know: our misconfiguration,
    # not the person's input.
    _code(code_pb2.CODE_INVALID_BIZ): SYSTEM_ERROR,
    _code(code_pb2.CODE_SEND_FAILED): SYSTEM_ERROR,
    _code(code_pb2.CODE_STORE_UNAVAILABLE): SYSTEM_ERROR,
    # WeChat scan login.
    GatewayReason.WECHAT_STATE_INVALID: HttpAnswer(
        200,
        CODE_BAD_INPUT,
        "WeChat login expired or was started elsewhere, please scan again",
    ),
    GatewayReason.WECHAT_CODE_REJECTED: _WECHAT_FAILED,
    # WeChat gave an open id the user service refuses: nothing the person can fix but retry.
    _user(user_pb2.USER_INVALID_WECHAT_INFO): _WECHAT_FAILED,
    GatewayReason.WECHAT_LOGIN_CANCELLED: HttpAnswer(
        200, CODE_BAD_INPUT, "WeChat login was cancelled"
    ),
    GatewayReason.WECHAT_UNAVAILABLE: SYSTEM_ERROR,
    # Feed and tags: the gateway always sends the logged-in user, so a refused user is ours.
    _feed(feed_pb2.FEED_INVALID_USER): SYSTEM_ERROR,
    _tag(tag_pb2.TAG_INVALID_USER): SYSTEM_ERROR,
    _feed(feed_pb2.FEED_INVALID_CURSOR): _INVALID_CURSOR,
    _tag(tag_pb2.TAG_INVALID_CURSOR): _INVALID_CURSOR,
}

# Kinds whose message the services write for people (kit.errors: "safe to show").
_BAD_INPUT_KINDS: Final = frozenset(
    {
        ErrorKind.INVALID_ARGUMENT,
        ErrorKind.NOT_FOUND,
        ErrorKind.ALREADY_EXISTS,
        ErrorKind.PERMISSION_DENIED,
        ErrorKind.FAILED_PRECONDITION,
        ErrorKind.RESOURCE_EXHAUSTED,
    }
)


def answer_for(error: AppError) -> HttpAnswer:
    """How an :class:`AppError` is answered."""
    by_reason = _BY_REASON.get(error.reason)
    if by_reason is not None:
        return by_reason
    if error.kind in _BAD_INPUT_KINDS:
        return HttpAnswer(200, CODE_BAD_INPUT, error.message)
    if error.kind is ErrorKind.UNAUTHENTICATED:
        return UNAUTHORIZED
    return SYSTEM_ERROR


def unauthorized_response() -> Response:
    """HTTP 401 with an empty body: clients go to their login page."""
    # Not an envelope, even if one was built for this request before the refusal.
    note_envelope_code(None)
    return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})


def unexpected_error_response() -> JSONResponse:
    """HTTP 500 for a bug: the envelope with no details."""
    return envelope_response(CODE_SYSTEM_ERROR, MSG_SYSTEM_ERROR, status_code=500)


def error_response(request: Request, exc: AppError | grpc.aio.AioRpcError) -> Response:
    """The answer to a failure, logged as the exception handlers log it.

    For routes that must decorate their error answers (e.g. clear a cookie) and therefore
    catch instead of letting the handlers below run.
    """
    if isinstance(exc, grpc.aio.AioRpcError):
        return _answer(request, app_error_from_rpc(exc), exc)
    return _answer(request, exc, None)


def _answer(request: Request, error: AppError, rpc: grpc.aio.AioRpcError | None) -> Response:
    answer = answer_for(error)
    if answer is SYSTEM_ERROR:
        fields = {"path": request.url.path, "reason": error.reason, "detail": error.message}
        if rpc is not None:
            # The status says it all; a traceback of the client library adds nothing.
            logger.error("call to a service failed", extra=fields | {"grpc_code": rpc.code().name})
        else:
            logger.error("request failed", exc_info=error, extra=fields)
    else:
        logger.info(
            "request refused",
            extra={"path": request.url.path, "reason": error.reason, "kind": error.kind.value},
        )
    return answer.response()


async def _on_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return _answer(request, exc, None)


async def _on_rpc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, grpc.aio.AioRpcError)
    return _answer(request, app_error_from_rpc(exc), exc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message = describe_validation_errors(exc.errors())
    logger.info("invalid request", extra={"path": request.url.path, "problem": message})
    return envelope_response(CODE_BAD_INPUT, message)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    # A body FastAPI could not read (e.g. not UTF-8) is bad input like malformed JSON;
    # routing answers (404, 405) keep their HTTP meaning.
    if exc.status_code == 400:
        return envelope_response(CODE_BAD_INPUT, "malformed request body")
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Register this module's handlers on ``app``."""
    app.add_exception_handler(AppError, _on_app_error)
    app.add_exception_handler(grpc.aio.AioRpcError, _on_rpc_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)


_LOCATIONS: Final = frozenset({"body", "query", "path", "header", "cookie"})
_TYPE_NAMES: Final[Mapping[str, str]] = {
    "string_type": "a string",
    "bool_type": "a boolean",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """One sentence naming the first problem of a pydantic/FastAPI validation failure."""
    if not errors:
        return "invalid request"
    error: Mapping[str, Any] = errors[0]
    kind = str(error.get("type", ""))
    loc = tuple(error.get("loc", ()))
    if loc and loc[0] in _LOCATIONS:
        loc = loc[1:]
    field = ".".join(str(part) for part in loc)
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if kind == "json_invalid":
        return "malformed JSON body"
    if kind == "value_error" and "error" in ctx:
        # Our own validators' messages are written for people.
        return str(ctx["error"])
    if not field:
        if kind == "missing":
            return "request body is required"
        return "request body must be a JSON object"
    if kind == "missing":
        return f"missing field: {field}"
    if kind == "string_too_long":
        return f"{field} is too long (at most {ctx.get('max_length')} characters)"
    if kind in _TYPE_NAMES:
        return f"{field} must be {_TYPE_NAMES[kind]}"
    return f"invalid {field}"
