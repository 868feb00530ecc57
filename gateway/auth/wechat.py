"""WeChat's website QR-code login ("扫码登录"), the OAuth 2.0 client side.

1. :meth:`WechatOAuth.authorize_url` builds the page the browser is sent to::

       {authorize_base}/connect/qrconnect?appid=..&redirect_uri=..&response_type=code
           &scope=snsapi_login&state=..#wechat_redirect

2. After the person confirms in WeChat, the browser comes back to ``redirect_uri`` with a
   temporary, single-use ``code``; :meth:`WechatOAuth.exchange` trades it at
   ``GET {api_base}/sns/oauth2/access_token`` for the person's ``openid`` (per app) and
   ``unionid`` (per WeChat open-platform account).

WeChat answers HTTP 200 with a JSON body (often labelled ``text/plain``): the tokens, or
``{errcode, errmsg}``. Errors::

    kit.errors.AppError
    ├── InvalidArgument
    │   └── WechatLoginRefused   WECHAT_CODE_REJECTED: WeChat refused the code
    │                            (40029 invalid, 40163 already used, 42003 expired, ...)
    └── Unavailable
        └── WechatUnavailable    WECHAT_UNAVAILABLE: network failure, timeout, HTTP error,
                                 an answer we cannot read, or an errcode that means our
                                 own configuration is wrong (bad app id or secret) or
                                 WeChat is busy (-1)

The access token WeChat returns is not kept: the login needs only the ids. Codes, tokens
and the secret are never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

import httpx

from gateway.errors import WECHAT_DOMAIN, GatewayReason
from kit.errors import InvalidArgument, Unavailable

SCOPE: Final = "snsapi_login"
# errcodes that mean our request was fine but the system or our configuration is not:
# -1 system busy; 40001 invalid credential; 40013 invalid appid; 40125 invalid appsecret.
_SYSTEM_ERRCODES: Final = frozenset({-1, 40001, 40013, 40125})


class WechatLoginRefused(InvalidArgument):
    """WeChat refused the code (invalid, expired or already used); ``metadata["errcode"]``."""

    default_domain = WECHAT_DOMAIN


class WechatUnavailable(Unavailable):
    """WeChat could not be asked, or its answer does not make sense."""

    default_domain = WECHAT_DOMAIN


@dataclass(frozen=True, slots=True)
class WechatIdentity:
    """Who logged in: ``open_id`` is per app, ``union_id`` (may be empty) per account."""

    open_id: str
    union_id: str


class WechatOAuth:
    """Builds authorize URLs and exchanges codes.

    Args:
        http: the client used for WeChat's API (owned by the caller; carries the timeout).
        app_id: the website application's AppID.
        app_secret: its AppSecret.
        authorize_base: ``https://open.weixin.qq.com`` or an emulator's base URL.
        api_base: ``https://api.weixin.qq.com`` or an emulator's base URL.
        redirect_uri: our callback, as registered with WeChat.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        app_id: str,
        app_secret: str,
        authorize_base: str,
        api_base: str,
        redirect_uri: str,
    ) -> None:
        self._http = http
        self._app_id = app_id
        self._app_secret = app_secret
        self._authorize_base = authorize_base.rstrip("/")
        self._api_base = api_base.rstrip("/")
        self._redirect_uri = redirect_uri

    def authorize_url(self, state: str) -> str:
        """The URL of WeChat's QR-code page for a login carrying ``state``."""
        query = urlencode(
            {
                "appid": self._app_id,
                "redirect_uri": self._redirect_uri,
                "response_type": "code",
                "scope": SCOPE,
                "state": state,
            },
            quote_via=quote,
        )
        return f"{self._authorize_base}/connect/qrconnect?{query}#wechat_redirect"

    async def exchange(self, code: str) -> WechatIdentity:
        """The identity behind ``code`` (which WeChat then considers used).

        Raises:
            WechatLoginRefused: WeChat refused the code.
            WechatUnavailable: WeChat could not be asked or answered nonsense.
        """
        url = f"{self._api_base}/sns/oauth2/access_token"
        params = {
            "appid": self._app_id,
            "secret": self._app_secret,
            "code": code,
            "grant_type": "authorization_code",
        }
        try:
            answer = await self._http.get(url, params=params)
        except httpx.TimeoutException as exc:
            raise WechatUnavailable(
                GatewayReason.WECHAT_UNAVAILABLE, "WeChat did not answer in time"
            ) from exc
        except httpx.HTTPError as exc:
            raise WechatUnavailable(
                GatewayReason.WECHAT_UNAVAILABLE, f"cannot reach WeChat: {type(exc).__name__}"
            ) from exc
        if answer.status_code != 200:
            raise WechatUnavailable(
                GatewayReason.WECHAT_UNAVAILABLE, f"WeChat answered HTTP {answer.status_code}"
            )
        body = _json_object(answer)
        errcode = body.get("errcode", 0)
        if not isinstance(errcode, int) or isinstance(errcode, bool):
            raise WechatUnavailable(
                GatewayReason.WECHAT_UNAVAILABLE, "WeChat's errcode is not a number"
            )
        if errcode:
            errmsg = str(body.get("errmsg", ""))[:200]
            metadata = {"errcode": str(errcode), "errmsg": errmsg}
            if errcode in _SYSTEM_ERRCODES:
                raise WechatUnavailable(
                    GatewayReason.WECHAT_UNAVAILABLE,
                    f"WeChat refused our request: {errcode} {errmsg}",
                    metadata=metadata,
                )
            raise WechatLoginRefused(
                GatewayReason.WECHAT_CODE_REJECTED,
                f"WeChat refused the code: {errcode} {errmsg}",
                metadata=metadata,
            )
        open_id, union_id = body.get("openid"), body.get("unionid", "")
        if not isinstance(open_id, str) or not open_id or not isinstance(union_id, str):
            raise WechatUnavailable(
                GatewayReason.WECHAT_UNAVAILABLE, "WeChat's answer has no usable openid"
            )
        return WechatIdentity(open_id=open_id, union_id=union_id)


def _json_object(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError as exc:
        raise WechatUnavailable(
            GatewayReason.WECHAT_UNAVAILABLE, "WeChat's answer is not JSON"
        ) from exc
    if not isinstance(body, dict):
        raise WechatUnavailable(
            GatewayReason.WECHAT_UNAVAILABLE, "WeChat's answer is not a JSON object"
        )
    return body
