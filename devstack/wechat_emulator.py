"""A local stand-in for WeChat's website QR-code login, so the whole flow runs offline.

``python -m devstack.wechat_emulator --port 8090`` serves an ASGI app (Starlette on
uvicorn) that imitates the two WeChat endpoints a website login touches:

``GET /connect/qrconnect?appid&redirect_uri&response_type=code&scope=snsapi_login&state``
    WeChat's QR-code page. Here: an HTML page where you pick a test user name (default
    ``alice``) and confirm, which redirects (302) to ``redirect_uri?code=<new>&state=<state>``.
    Add ``auto=1`` (and optionally ``user=<name>``) to be redirected at once, or request the
    confirm URL ``/connect/qrconnect/confirm`` directly, e.g. with curl. The cancel link
    redirects with ``state`` only, as WeChat does when the person refuses.
``GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code``
    The code exchange: ``{access_token, expires_in, refresh_token, openid, scope, unionid}``,
    or ``{errcode, errmsg}`` with WeChat's codes: 40013 invalid appid, 40125 invalid
    appsecret, 40002 invalid grant_type, 41008 missing code, 40029 invalid (unknown, expired
    or another app's) code, 40163 code been used. Like WeChat, the answer is JSON labelled
    ``text/plain``.

Codes are single-use and expire after 5 minutes. A test user's ``openid`` is derived from
the app id and the user name (stable per app, as WeChat's), its ``unionid`` from the name
alone. Everything is kept in memory: restarting forgets issued codes. ``GET /healthz``
answers ``{"status": "ok"}`` (readiness).

This is a development tool only: it authenticates no one.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import logging
import re
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kit.logging import configure_logging

logger = logging.getLogger("wechat_emulator")

# The app the gateway is configured with under `make run` (its development defaults).
DEV_APP_ID: Final = "wx-webook-dev"
DEV_APP_SECRET: Final = "dev-insecure-wechat-app-secret"
DEFAULT_USER: Final = "alice"
DEFAULT_PORT: Final = 8090
CODE_TTL_SECONDS: Final = 300.0
ACCESS_TOKEN_TTL_SECONDS: Final = 7200
SCOPE: Final = "snsapi_login"
_USER_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}")

ERR_INVALID_APPID: Final = 40013
ERR_INVALID_SECRET: Final = 40125
ERR_INVALID_GRANT_TYPE: Final = 40002
ERR_MISSING_CODE: Final = 41008
ERR_INVALID_CODE: Final = 40029
ERR_CODE_USED: Final = 40163


@dataclass
class _Grant:
    """A code handed out on confirmation."""

    app_id: str
    user: str
    expires_at: float
    used: bool = False


def _id_for(*parts: str) -> str:
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return "o" + base64.urlsafe_b64encode(digest).decode()[:27]


def open_id_for(app_id: str, user: str) -> str:
    """The ``openid`` a test user has in an app (28 characters, like WeChat's)."""
    return _id_for("openid", app_id, user)


def union_id_for(user: str) -> str:
    """The ``unionid`` of a test user (the same in every app)."""
    return _id_for("unionid", user)


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query), fragment=""))


class _BadRequest(Exception):
    """A request WeChat would answer with its error page."""


class WechatEmulator:
    """The emulator's state and handlers; :meth:`asgi` builds the app.

    Args:
        apps: app id → app secret of the registered website applications.
        code_ttl: seconds a code stays exchangeable.
        redirect_hosts: ``host[:port]`` values a ``redirect_uri`` may point at (WeChat
            checks the registered callback domain); ``None`` accepts any host.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        *,
        apps: Mapping[str, str] | None = None,
        code_ttl: float = CODE_TTL_SECONDS,
        redirect_hosts: Collection[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._apps = dict(apps if apps is not None else {DEV_APP_ID: DEV_APP_SECRET})
        self._code_ttl = code_ttl
        self._redirect_hosts = frozenset(redirect_hosts) if redirect_hosts is not None else None
        self._clock = clock
        self._grants: dict[str, _Grant] = {}

    def asgi(self) -> Starlette:
        """The ASGI application."""
        return Starlette(
            routes=[
                Route("/healthz", self._healthz),
                Route("/connect/qrconnect", self._authorize_page),
                Route("/connect/qrconnect/confirm", self._confirm),
                Route("/connect/qrconnect/cancel", self._cancel),
                Route("/sns/oauth2/access_token", self._access_token),
            ]
        )

    def issue_code(self, app_id: str, user: str) -> str:
        """A new code for ``user`` confirming a login to ``app_id``."""
        self._forget_expired()
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(app_id, user, self._clock() + self._code_ttl)
        return code

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def _login_request(self, request: Request) -> tuple[str, str, str]:
        """``(appid, redirect_uri, state)`` of a valid authorize request."""
        query = request.query_params
        app_id = query.get("appid", "")
        redirect_uri = query.get("redirect_uri", "")
        if app_id not in self._apps:
            raise _BadRequest("invalid appid")
        target = urlsplit(redirect_uri)
        if target.scheme not in ("http", "https") or not target.netloc:
            raise _BadRequest("invalid redirect_uri")
        if self._redirect_hosts is not None and target.netloc not in self._redirect_hosts:
            raise _BadRequest("redirect_uri is not on the registered callback domain")
        if query.get("response_type", "code") != "code":
            raise _BadRequest("invalid response_type")
        if query.get("scope", SCOPE) != SCOPE:
            raise _BadRequest("invalid scope")
        return app_id, redirect_uri, query.get("state", "")

    @staticmethod
    def _error_page(problem: str) -> HTMLResponse:
        body = f"<!doctype html><title>WeChat (emulated)</title><p>{html.escape(problem)}</p>"
        return HTMLResponse(body, status_code=400)

    async def _authorize_page(self, request: Request) -> Response:
        try:
            app_id, redirect_uri, state = self._login_request(request)
        except _BadRequest as exc:
            return self._error_page(str(exc))
        if request.query_params.get("auto") == "1":
            return await self._confirm(request)
        fields = {"appid": app_id, "redirect_uri": redirect_uri, "state": state}
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
            for name, value in fields.items()
        )
        confirm = "/connect/qrconnect/confirm?" + urlencode(fields)
        cancel = "/connect/qrconnect/cancel?" + urlencode(fields)
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WeChat login (emulated)</title></head>
<body>
<h1>WeChat login (local emulator)</h1>
<p>A real WeChat would show a QR code here. Pick a test user and confirm.</p>
<form method="get" action="/connect/qrconnect/confirm">{hidden}
<label>Test user <input name="user" value="{DEFAULT_USER}" pattern="[A-Za-z0-9_.\\-]{{1,32}}"
required></label>
<button type="submit">Confirm login</button>
</form>
<p><a href="{html.escape(confirm)}">Confirm as {DEFAULT_USER}</a> ·
<a href="{html.escape(cancel)}">Cancel</a></p>
</body></html>"""
        return HTMLResponse(page)

    async def _confirm(self, request: Request) -> Response:
        try:
            app_id, redirect_uri, state = self._login_request(request)
        except _BadRequest as exc:
            return self._error_page(str(exc))
        user = request.query_params.get("user") or DEFAULT_USER
        if not _USER_NAME.fullmatch(user):
            return self._error_page("a test user name is 1-32 letters, digits, '_', '.', '-'")
        code = self.issue_code(app_id, user)
        logger.info("login confirmed", extra={"appid": app_id, "user": user})
        return RedirectResponse(_with_query(redirect_uri, {"code": code, "state": state}), 302)

    async def _cancel(self, request: Request) -> Response:
        try:
            _, redirect_uri, state = self._login_request(request)
        except _BadRequest as exc:
            return self._error_page(str(exc))
        return RedirectResponse(_with_query(redirect_uri, {"state": state}), 302)

    async def _access_token(self, request: Request) -> Response:
        query = request.query_params
        app_id = query.get("appid", "")
        expected_secret = self._apps.get(app_id)
        if expected_secret is None:
            return self._refuse(ERR_INVALID_APPID, "invalid appid")
        if not secrets.compare_digest(query.get("secret", "").encode(), expected_secret.encode()):
            return self._refuse(ERR_INVALID_SECRET, "invalid appsecret")
        if query.get("grant_type") != "authorization_code":
            return self._refuse(ERR_INVALID_GRANT_TYPE, "invalid grant_type")
        code = query.get("code", "")
        if not code:
            return self._refuse(ERR_MISSING_CODE, "missing code")
        self._forget_expired()
        grant = self._grants.get(code)
        if grant is None or grant.app_id != app_id:
            return self._refuse(ERR_INVALID_CODE, "invalid code")
        if grant.used:
            return self._refuse(ERR_CODE_USED, "code been used")
        # Kept (marked used) until it expires, so a replay is told apart from a bad code.
        grant.used = True
        logger.info("code exchanged", extra={"appid": app_id, "user": grant.user})
        return self._json(
            {
                "access_token": secrets.token_urlsafe(32),
                "expires_in": ACCESS_TOKEN_TTL_SECONDS,
                "refresh_token": secrets.token_urlsafe(32),
                "openid": open_id_for(app_id, grant.user),
                "scope": SCOPE,
                "unionid": union_id_for(grant.user),
            }
        )

    def _refuse(self, errcode: int, errmsg: str) -> Response:
        logger.info("code exchange refused", extra={"errcode": errcode, "errmsg": errmsg})
        return self._json({"errcode": errcode, "errmsg": errmsg})

    @staticmethod
    def _json(body: Mapping[str, object]) -> Response:
        # WeChat labels its JSON text/plain; clients must not rely on the content type.
        return JSONResponse(body, media_type="text/plain")

    def _forget_expired(self) -> None:
        now = self._clock()
        for code in [c for c, g in self._grants.items() if g.expires_at <= now]:
            del self._grants[code]


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.wechat_emulator",
        description="Local WeChat OAuth (website QR-code login) emulator.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--app-id", default=DEV_APP_ID)
    parser.add_argument("--app-secret", default=DEV_APP_SECRET)
    parser.add_argument(
        "--redirect-host",
        action="append",
        default=None,
        help="host[:port] a redirect_uri may point at (repeatable; default: any)",
    )
    parser.add_argument("--code-ttl", type=float, default=CODE_TTL_SECONDS)
    args = parser.parse_args(argv)
    configure_logging("wechat-emulator")
    emulator = WechatEmulator(
        apps={args.app_id: args.app_secret},
        code_ttl=args.code_ttl,
        redirect_hosts=args.redirect_host,
    )
    logger.info("WeChat emulator listening", extra={"addr": f"{args.host}:{args.port}"})
    config = uvicorn.Config(
        emulator.asgi(),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
