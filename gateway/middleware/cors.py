"""CORS: the outermost layer, so every response (401, 429, 500 included) carries the headers.

- Allowed origins are glob patterns (``fnmatch``) matched against the whole ``Origin``
  header, which must be a well-formed ``scheme://host[:port]``; the exact origin is echoed
  with ``Access-Control-Allow-Credentials: true`` (never ``*``).
- Any ``OPTIONS`` request with an ``Origin`` is a preflight: answered 204 here, for every
  path, before the login check ever sees it.
- A disallowed origin gets no CORS headers at all (the browser then blocks the page).
- ``Vary: Origin`` is on every response, since responses differ by origin.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_ALLOW_METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS")
DEFAULT_ALLOW_HEADERS = ("Authorization", "Content-Type")
DEFAULT_EXPOSE_HEADERS = ("x-jwt-token", "x-refresh-token")


def _well_formed_origin(origin: str) -> bool:
    """Whether ``origin`` is a serialized origin a browser could send."""
    try:
        parts = urlsplit(origin)
        _ = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.path or parts.query or parts.fragment or parts.username)
        and origin == f"{parts.scheme}://{parts.netloc}"
    )


class OriginPolicy:
    """Which origins may read responses."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns = [re.compile(fnmatch.translate(p)) for p in patterns]

    def allows(self, origin: str) -> bool:
        """Whether ``origin`` matches an allowed pattern."""
        return _well_formed_origin(origin) and any(p.match(origin) for p in self._patterns)


class CorsMiddleware:
    """Answers preflights and decorates responses for allowed origins."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allow_origins: Sequence[str],
        allow_methods: Sequence[str] = DEFAULT_ALLOW_METHODS,
        allow_headers: Sequence[str] = DEFAULT_ALLOW_HEADERS,
        expose_headers: Sequence[str] = DEFAULT_EXPOSE_HEADERS,
        max_age: int = 600,
    ) -> None:
        self.app = app
        self.policy = OriginPolicy(allow_origins)
        self._preflight_headers = {
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": ", ".join(allow_methods),
            "Access-Control-Allow-Headers": ", ".join(allow_headers),
            "Access-Control-Max-Age": str(max_age),
        }
        self._response_headers = {
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Expose-Headers": ", ".join(expose_headers),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        allowed = origin is not None and self.policy.allows(origin)
        if scope["method"] == "OPTIONS" and origin is not None:
            headers = {"Vary": "Origin"}
            if allowed:
                headers |= {"Access-Control-Allow-Origin": origin, **self._preflight_headers}
            await Response(status_code=204, headers=headers)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.add_vary_header("Origin")
                if allowed and origin is not None:
                    headers["Access-Control-Allow-Origin"] = origin
                    headers.update(self._response_headers)
            await send(message)

        await self.app(scope, receive, send_with_cors)
