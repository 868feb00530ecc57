"""What every login flow (password, SMS code, WeChat) shares.

- the token headers a successful login answers with (``x-jwt-token``, ``x-refresh-token``);
- ``webook_login_total{method,result}``, counted by :func:`counted_login` around a flow;
- :func:`mask_phone` for logs (``138****5678``): full numbers are never logged.

``result`` is one of :data:`LOGIN_RESULTS`: ``ok``; ``wrong_credentials`` (email/password);
``wrong_code`` (wrong, expired or used SMS code); ``too_many_attempts`` (the code used up
its tries); ``bad_state`` (WeChat callback without the browser's state: possible forgery);
``wechat_refused`` (WeChat refused its code, or the person cancelled); ``invalid`` (other
bad input refused by a service); ``error`` (a system error). Requests refused by the
gateway's own validation never reach a flow and are not counted here (they are in
``webook_http_requests_total``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import grpc
from fastapi import Response
from prometheus_client import Counter

from gateway.auth.tokens import TokenPair
from gateway.envelope import CODE_SYSTEM_ERROR
from gateway.errors import GatewayReason, answer_for
from kit.errors import AppError
from kit.grpcx.errors import app_error_from_rpc
from webook.code.v1 import code_pb2
from webook.user.v1 import user_pb2

ACCESS_TOKEN_HEADER: Final = "x-jwt-token"
REFRESH_TOKEN_HEADER: Final = "x-refresh-token"

# OpenAPI: the headers of a successful login or refresh.
TOKEN_HEADERS_DOC: Final[dict[str, Any]] = {
    ACCESS_TOKEN_HEADER: {"description": "New access token.", "schema": {"type": "string"}},
    REFRESH_TOKEN_HEADER: {"description": "New refresh token.", "schema": {"type": "string"}},
}
TOKEN_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {200: {"headers": TOKEN_HEADERS_DOC}}
"""OpenAPI ``responses`` of a route that answers with a new token pair."""

LoginMethod = Literal["password", "sms", "wechat"]
LOGIN_RESULTS: Final = (
    "ok",
    "wrong_credentials",
    "wrong_code",
    "too_many_attempts",
    "bad_state",
    "wechat_refused",
    "invalid",
    "error",
)

LOGINS = Counter(
    "webook_login_total",
    "Login attempts that reached a login flow, by method and outcome.",
    ["method", "result"],
)

# Every series exists from start-up, so rates and alerts see zeros instead of gaps.
for _method in ("password", "sms", "wechat"):
    for _result in LOGIN_RESULTS:
        LOGINS.labels(_method, _result)

_RESULT_BY_REASON: Final[Mapping[str, str]] = {
    user_pb2.ErrorReason.Name(user_pb2.USER_INVALID_CREDENTIALS): "wrong_credentials",
    user_pb2.ErrorReason.Name(user_pb2.USER_NOT_FOUND): "wrong_credentials",
    GatewayReason.LOGIN_CODE_WRONG: "wrong_code",
    code_pb2.ErrorReason.Name(code_pb2.CODE_VERIFY_TOO_MANY): "too_many_attempts",
    user_pb2.ErrorReason.Name(user_pb2.USER_LOGIN_THROTTLED): "too_many_attempts",
    GatewayReason.WECHAT_STATE_INVALID: "bad_state",
    GatewayReason.WECHAT_CODE_REJECTED: "wechat_refused",
    GatewayReason.WECHAT_LOGIN_CANCELLED: "wechat_refused",
}


def set_token_headers(response: Response, tokens: TokenPair) -> None:
    """Put a freshly issued token pair in the response headers."""
    response.headers[ACCESS_TOKEN_HEADER] = tokens.access
    response.headers[REFRESH_TOKEN_HEADER] = tokens.refresh


def login_result(exc: BaseException) -> str:
    """The ``result`` label of a login flow that raised ``exc``."""
    if isinstance(exc, grpc.aio.AioRpcError):
        exc = app_error_from_rpc(exc)
    if not isinstance(exc, AppError):
        return "error"
    by_reason = _RESULT_BY_REASON.get(exc.reason)
    if by_reason is not None:
        return by_reason
    return "error" if answer_for(exc).code == CODE_SYSTEM_ERROR else "invalid"


@asynccontextmanager
async def counted_login(method: LoginMethod) -> AsyncIterator[None]:
    """Count the login flow run inside the block in ``webook_login_total``."""
    try:
        yield
    except Exception as exc:
        LOGINS.labels(method, login_result(exc)).inc()
        raise
    LOGINS.labels(method, "ok").inc()


def mask_phone(phone: str) -> str:
    """A phone number fit for logs: ``138****5678`` (short ones keep only two digits)."""
    if len(phone) < 8:
        return "****" + phone[-2:]
    return f"{phone[:3]}****{phone[-4:]}"
