"""Request ids: ``X-Request-ID`` in and out, in the request state and in every log line.

A well-formed incoming id (1-128 characters of ``A-Z a-z 0-9 . _ ~ : + / = -``, as set by a
front proxy or a client correlating its own logs) is kept when ``trust_incoming`` is on;
otherwise, or when it is absent or malformed, a new one (32 hex digits) is made. The id is
put in ``scope["state"]["request_id"]`` (``request.state.request_id``), in
:data:`current_request_id`, in the log context (``request_id`` in every log line written
while the request runs, via :mod:`kit.logging`), and in the response header.

:class:`RequestIds` is the concern as a plain object;
:class:`~gateway.middleware.gateway_layer.GatewayLayer` runs it outside the access log, so
that the access log line carries the id.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar, Token
from typing import Any, Final

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Scope

from kit.logging import log_context

DEFAULT_HEADER: Final = "X-Request-ID"
_VALID_ID: Final = re.compile(r"[A-Za-z0-9._~:+/=-]{1,128}")

current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)

_Tokens = tuple[Token[str | None], Token[Any]]


class RequestIds:
    """Which id a request gets, where it is kept, and the header that carries it out."""

    __slots__ = ("_name", "header", "trust_incoming")

    def __init__(self, *, header: str = DEFAULT_HEADER, trust_incoming: bool = True) -> None:
        self.header = header
        self.trust_incoming = trust_incoming
        self._name = header.lower().encode("latin-1")

    def request_id_for(self, scope: Scope) -> str:
        """The incoming id if it may be kept, else a new one."""
        if self.trust_incoming:
            name = self._name
            for key, value in scope["headers"]:
                if key == name:
                    incoming: str = value.decode("latin-1")
                    if _VALID_ID.fullmatch(incoming):
                        return incoming
                    break
        return uuid.uuid4().hex

    def enter(self, scope: Scope) -> tuple[str, _Tokens]:
        """Give the request its id: state, contextvar, log context; undo with :meth:`leave`."""
        request_id = self.request_id_for(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        id_token = current_request_id.set(request_id)
        log_token = log_context.set({**(log_context.get() or {}), "request_id": request_id})
        return request_id, (id_token, log_token)

    @staticmethod
    def leave(tokens: _Tokens) -> None:
        """Restore the contexts :meth:`enter` changed."""
        id_token, log_token = tokens
        log_context.reset(log_token)
        current_request_id.reset(id_token)

    def add_header(self, message: Message, request_id: str) -> None:
        """Put the id in an ``http.response.start`` message (replacing one the app set)."""
        MutableHeaders(scope=message)[self.header] = request_id
