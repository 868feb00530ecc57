"""Request ids: ``X-Request-ID`` in and out, in the request state and in every log line.

A well-formed incoming id (1-128 characters of ``A-Z a-z 0-9 . _ ~ : + / = -``, as set by a
front proxy or a client correlating its own logs) is kept when ``trust_incoming`` is on;
otherwise, or when it is absent or malformed, a new one (32 hex digits) is made. The id is
put in ``scope["state"]["request_id"]`` (``request.state.request_id``), in
:data:`current_request_id`, in the log context (``request_id`` in every log line written
while the request runs, via :func:`kit.logging.bind`), and in the response header.

Place it outside the access log so that the access log line carries the id.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kit.logging import bind, log_context

DEFAULT_HEADER: Final = "X-Request-ID"
_VALID_ID: Final = re.compile(r"[A-Za-z0-9._~:+/=-]{1,128}")

current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


class RequestIdMiddleware:
    """Gives every HTTP request an id; see the module docstring."""

    def __init__(
        self, app: ASGIApp, *, header: str = DEFAULT_HEADER, trust_incoming: bool = True
    ) -> None:
        self.app = app
        self.header = header
        self.trust_incoming = trust_incoming

    def request_id_for(self, scope: Scope) -> str:
        """The incoming id if it may be kept, else a new one."""
        if self.trust_incoming:
            incoming = Headers(scope=scope).get(self.header)
            if incoming is not None and _VALID_ID.fullmatch(incoming):
                return incoming
        return uuid.uuid4().hex

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self.request_id_for(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[self.header] = request_id
            await send(message)

        id_token = current_request_id.set(request_id)
        log_token = log_context.set(log_context.get())
        bind(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log_context.reset(log_token)
            current_request_id.reset(id_token)
