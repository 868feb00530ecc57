"""``/oauth2/wechat``: WeChat scan login (OAuth 2.0 authorization code, with ``state``).

1. ``GET /oauth2/wechat/authurl``: a fresh random ``state``, sealed in a signed, short-lived
   cookie (:mod:`gateway.auth.oauth_state`); the answer's ``data`` is WeChat's QR-code page
   URL carrying the same state. The front end sends the browser there.
2. The person scans and confirms; WeChat sends the browser to
   ``GET /oauth2/wechat/callback?code=..&state=..``. The state must equal the cookie's
   (otherwise someone else's code is being pushed into this browser: login CSRF), the code
   is exchanged at WeChat's API for the person's open id and union id, the user is found or
   created, and a session starts (``x-jwt-token`` / ``x-refresh-token`` headers). The state
   cookie is cleared whatever the outcome: a state serves one callback.

WeChat omits ``code`` when the person refuses; that answers "WeChat login was cancelled".
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Final

import grpc
from fastapi import APIRouter, Query, Request, Response

from gateway.auth.login import TOKEN_RESPONSES, counted_login, set_token_headers
from gateway.auth.oauth_state import MAX_STATE_CHARS, STATE_COOKIE, new_state
from gateway.deps import RuntimeDep, UserAgentDep
from gateway.envelope import Ack, Result
from gateway.errors import GATEWAY_DOMAIN, GatewayReason, error_response
from kit.errors import AppError, InvalidArgument
from webook.user.v1 import user_pb2

logger = logging.getLogger(__name__)

# WeChat's codes are short (32 characters today); anything far longer is not one.
MAX_CODE_CHARS: Final = 512

router = APIRouter(prefix="/oauth2/wechat", tags=["oauth2"])


@router.get("/authurl", summary="Start a WeChat scan login")
async def auth_url(response: Response, runtime: RuntimeDep) -> Result[str]:
    """The URL of WeChat's QR-code page; also sets the short-lived state cookie."""
    state = new_state()
    runtime.state_cookies.attach(response, state)
    return Result[str](data=runtime.wechat.authorize_url(state))


_CALLBACK_DOC: Final[dict[str, Any]] = {
    "summary": "Finish a WeChat scan login (WeChat redirects the browser here)",
    "response_model": Ack,
    "responses": TOKEN_RESPONSES,
}


# Two routes, not one api_route with two methods: each needs its own OpenAPI operation id.
@router.get("/callback", operation_id="wechat_callback", **_CALLBACK_DOC)
@router.post("/callback", operation_id="wechat_callback_post", **_CALLBACK_DOC)
async def callback(
    request: Request,
    runtime: RuntimeDep,
    user_agent: UserAgentDep,
    code: Annotated[str | None, Query(max_length=MAX_CODE_CHARS)] = None,
    state: Annotated[str | None, Query(max_length=MAX_STATE_CHARS)] = None,
) -> Response:
    """Check ``state`` against the cookie, exchange ``code``, log in or sign up."""
    try:
        async with counted_login("wechat"):
            runtime.state_cookies.check(request.cookies.get(STATE_COOKIE), state)
            if not code:
                raise InvalidArgument(
                    GatewayReason.WECHAT_LOGIN_CANCELLED,
                    "no code: login cancelled",
                    domain=GATEWAY_DOMAIN,
                )
            identity = await runtime.wechat.exchange(code)
            found = await runtime.stubs.user.FindOrCreateByWechat(
                user_pb2.FindOrCreateByWechatRequest(
                    info=user_pb2.WechatInfo(open_id=identity.open_id, union_id=identity.union_id)
                ),
                timeout=runtime.grpc_timeout,
            )
            tokens = runtime.tokens.issue(found.user.id, user_agent)
    except (AppError, grpc.aio.AioRpcError) as exc:
        answer = error_response(request, exc)
    else:
        logger.info(
            "logged in", extra={"method": "wechat", "uid": found.user.id, "new_user": found.created}
        )
        answer = Response(Ack().model_dump_json(), media_type="application/json")
        set_token_headers(answer, tokens)
    runtime.state_cookies.clear(answer)
    return answer
