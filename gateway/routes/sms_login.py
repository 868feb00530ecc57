"""``/users/login_sms``: log in with a one-time code sent by SMS.

1. ``POST /users/login_sms/code/send {phone}`` asks the code service (hosted by the sms
   service) to send a code for business ``login``: at most one per phone per minute, valid
   10 minutes.
2. ``POST /users/login_sms {phone, code}`` verifies it (3 wrong tries use a code up), then
   finds or creates the user with that phone and starts a session exactly as password login
   does (``x-jwt-token`` / ``x-refresh-token`` headers).

The phone is validated and normalised to E.164 by the request models
(:mod:`gateway.schemas.login`): an invalid number answers code 4 before any call, and
``13900000003`` and ``+8613900000003`` are one phone for the code's limits and one account.

A verified code is consumed; if the user service then fails, the person asks for a new code
(``FindOrCreateByPhone`` is idempotent and fails over between instances, so this is rare).
"""

from __future__ import annotations

import logging
from typing import Final

from fastapi import APIRouter, Response

from gateway.auth.login import TOKEN_RESPONSES, counted_login, mask_phone, set_token_headers
from gateway.deps import RuntimeDep, UserAgentDep
from gateway.envelope import Ack
from gateway.errors import GATEWAY_DOMAIN, GatewayReason
from gateway.schemas.login import SendLoginCodeRequest, SmsLoginRequest
from kit.errors import InvalidArgument
from webook.code.v1 import code_pb2
from webook.user.v1 import user_pb2

logger = logging.getLogger(__name__)

# The code service's business for login codes (its template "login_code").
LOGIN_BIZ: Final = "login"

router = APIRouter(prefix="/users/login_sms", tags=["users"])


@router.post("/code/send", summary="Send a login code by SMS")
async def send_login_code(body: SendLoginCodeRequest, runtime: RuntimeDep) -> Ack:
    """At most one code per phone per minute; the code is valid for 10 minutes."""
    await runtime.stubs.code.Send(
        code_pb2.SendRequest(biz=LOGIN_BIZ, phone=body.phone),
        timeout=runtime.settings.code_send_timeout,
    )
    logger.info("login code sent", extra={"phone": mask_phone(body.phone)})
    return Ack()


@router.post("", summary="Log in (or sign up) with the SMS code", responses=TOKEN_RESPONSES)
async def login_sms(
    body: SmsLoginRequest, response: Response, runtime: RuntimeDep, user_agent: UserAgentDep
) -> Ack:
    """Check the code; the first login with a phone creates the account."""
    async with counted_login("sms"):
        verified = await runtime.stubs.code.Verify(
            code_pb2.VerifyRequest(biz=LOGIN_BIZ, phone=body.phone, code=body.code),
            timeout=runtime.grpc_timeout,
        )
        if not verified.ok:
            raise InvalidArgument(
                GatewayReason.LOGIN_CODE_WRONG, "wrong or expired code", domain=GATEWAY_DOMAIN
            )
        found = await runtime.stubs.user.FindOrCreateByPhone(
            user_pb2.FindOrCreateByPhoneRequest(phone=body.phone),
            timeout=runtime.grpc_timeout,
        )
        set_token_headers(response, runtime.tokens.issue(found.user.id, user_agent))
    logger.info(
        "logged in",
        extra={
            "method": "sms",
            "uid": found.user.id,
            "new_user": found.created,
            "phone": mask_phone(body.phone),
        },
    )
    return Ack()
