"""Turns an exception no handler answered into HTTP 500 with the envelope, and logs it.

It sits inside CORS, access log and metrics, so those still see (and decorate) the 500;
Starlette's own last-resort handler is outside every middleware and would not.
:func:`log_unhandled` and :func:`gateway.errors.unexpected_error_response` are the concern;
:class:`~gateway.middleware.gateway_layer.GatewayLayer` runs it.
"""

from __future__ import annotations

import logging

from starlette.types import Scope

logger = logging.getLogger(__name__)


def log_unhandled(scope: Scope) -> None:
    """Log the exception being handled (call it from an ``except`` block).

    The caller then answers :func:`gateway.errors.unexpected_error_response`, or re-raises
    when the response had already started (too late for a clean answer: the server aborts
    the connection).
    """
    logger.exception(
        "unhandled error", extra={"http_method": scope["method"], "path": scope["path"]}
    )
