"""``POST /pay/callback``: WeChat Pay's payment notifications, public (WeChat Pay calls it).

The gateway neither reads nor trusts the notification: it forwards the raw body and the
``Wechatpay-*`` signature headers to the payment service's ``HandleNotification``, which
verifies the platform's signature, decrypts the resource with the API v3 key and records
the payment (docs/payment.md). Other headers (cookies, tokens) are not forwarded. The answer
is what WeChat Pay expects: 204 with no body once the payment service has recorded it;
otherwise 4xx/5xx with ``{"code": "FAIL", "message": ...}``, which makes WeChat Pay send
the notification again later (401 for a signature that does not verify, 400 for a signed
notification that cannot be read, 500 when the payment service cannot be reached).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import grpc
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway.deps import RuntimeDep
from kit.errors import ErrorKind
from kit.grpcx.errors import app_error_from_rpc
from webook.payment.v1 import payment_pb2

logger = logging.getLogger(__name__)

CALLBACK_PATH: Final = "/pay/callback"
# The headers WeChat Pay signs a notification with (and the body's type); at most this many
# of them, each at most this long, are forwarded.
_FORWARDED_PREFIX: Final = "wechatpay-"
_MAX_HEADERS: Final = 16
_MAX_HEADER_CHARS: Final = 1024
_STATUS_BY_KIND: Final = {
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.INVALID_ARGUMENT: 400,
}
_FAIL_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"code": {"type": "string", "enum": ["FAIL"]}, "message": {"type": "string"}},
}

router = APIRouter(tags=["pay"])


def forwarded_headers(request: Request) -> dict[str, str]:
    """The notification's ``Wechatpay-*`` headers and content type, lower-cased."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        if (name.startswith(_FORWARDED_PREFIX) or name == "content-type") and len(
            headers
        ) < _MAX_HEADERS:
            headers[name] = value[:_MAX_HEADER_CHARS]
    return headers


def fail(status_code: int, message: str) -> JSONResponse:
    """WeChat Pay's failure answer: it retries the notification later."""
    return JSONResponse({"code": "FAIL", "message": message}, status_code=status_code)


@router.post(
    CALLBACK_PATH,
    summary="WeChat Pay payment notification",
    description=(
        "Called by WeChat Pay, not by the front end: the signed, encrypted notification of a "
        "payment, forwarded as received to the payment service. 204 once recorded; otherwise "
        'an error status with `{"code": "FAIL", "message": ...}` and WeChat Pay retries.'
    ),
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Recorded (or already recorded)."},
        400: {
            "description": "Signed, but cannot be read.",
            "content": {"application/json": {"schema": _FAIL_SCHEMA}},
        },
        401: {
            "description": "The signature does not verify (or is too old).",
            "content": {"application/json": {"schema": _FAIL_SCHEMA}},
        },
        500: {
            "description": "Not recorded now; WeChat Pay will retry.",
            "content": {"application/json": {"schema": _FAIL_SCHEMA}},
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def pay_callback(request: Request, runtime: RuntimeDep) -> Response:
    """Hand the notification to the payment service; answer as WeChat Pay expects."""
    body = await request.body()
    try:
        await runtime.stubs.payment.HandleNotification(
            payment_pb2.HandleNotificationRequest(headers=forwarded_headers(request), body=body),
            timeout=runtime.grpc_timeout,
        )
    except grpc.aio.AioRpcError as exc:
        error = app_error_from_rpc(exc)
        status_code = _STATUS_BY_KIND.get(error.kind, 500)
        fields = {"path": CALLBACK_PATH, "reason": error.reason, "grpc_code": exc.code().name}
        if status_code == 500:
            logger.error("payment notification not recorded", extra=fields)
            return fail(500, "not recorded, retry later")
        logger.warning("payment notification refused", extra=fields)
        return fail(status_code, error.message or "refused")
    return Response(status_code=204)
