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

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import Message, Scope

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


class CorsPolicy:
    """The CORS concern as a plain object: which origin a request has, the preflight
    answer, and the headers every other answer gets."""

    __slots__ = ("_preflight_headers", "_response_headers", "origins")

    def __init__(
        self,
        allow_origins: Sequence[str],
        *,
        allow_methods: Sequence[str] = DEFAULT_ALLOW_METHODS,
        allow_headers: Sequence[str] = DEFAULT_ALLOW_HEADERS,
        expose_headers: Sequence[str] = DEFAULT_EXPOSE_HEADERS,
        max_age: int = 600,
    ) -> None:
        self.origins = OriginPolicy(allow_origins)
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

    def allowed_origin(self, scope: Scope) -> tuple[str | None, bool]:
        """The request's ``Origin`` (None without one) and whether it is allowed."""
        origin = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")  # the first one, as Headers.get reads it
                break
        return origin, origin is not None and self.origins.allows(origin)

    @staticmethod
    def is_preflight(scope: Scope, origin: str | None) -> bool:
        """Whether the request is a preflight: any ``OPTIONS`` with an ``Origin``."""
        return origin is not None and scope["method"] == "OPTIONS"

    def preflight_response(self, origin: str, allowed: bool) -> Response:
        """The 204 answer to a preflight."""
        headers = {"Vary": "Origin"}
        if allowed:
            headers |= {"Access-Control-Allow-Origin": origin, **self._preflight_headers}
        return Response(status_code=204, headers=headers)

    def decorate(self, message: Message, origin: str | None, allowed: bool) -> None:
        """Add ``Vary: Origin`` (and, for an allowed origin, the CORS headers) to an
        ``http.response.start`` message."""
        headers = MutableHeaders(scope=message)
        headers.add_vary_header("Origin")
        if allowed and origin is not None:
            headers["Access-Control-Allow-Origin"] = origin
            headers.update(self._response_headers)
