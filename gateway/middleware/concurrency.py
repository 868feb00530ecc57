"""The active-request limit: at most ``max_active`` requests inside, the rest answer 503.

Load shedding at the door: past the cap a request is refused at once with HTTP 503,
``Retry-After`` and a small JSON body (``{"code": 503, "msg": ..., "data": null}``) instead
of queueing behind requests that are already slow, and counted in
``webook_http_rejected_total{reason="concurrency"}``. ``webook_http_active_requests``
is the number inside. A request counts until the app has returned (its whole response
sent). Exempt paths (health checks, metrics) are neither counted nor refused, so an
overloaded process still answers its liveness probe.

The count is per process (per uvicorn worker). :class:`ConcurrencyLimit` is the concern;
:class:`~gateway.middleware.gateway_layer.GatewayLayer` runs it.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from starlette.responses import Response

from gateway.envelope import note_envelope_code
from gateway.middleware.edge_metrics import HTTP_ACTIVE_REQUESTS, HTTP_REJECTED

_CODE = 503
_BODY = json.dumps({"code": _CODE, "msg": "server busy, please retry later", "data": None}).encode()


class ConcurrencyLimit:
    """The concern as a plain object: :meth:`enter` before the app, :meth:`leave` after."""

    __slots__ = ("_headers", "_rejected", "active", "exempt_paths", "max_active")

    def __init__(
        self, max_active: int, *, exempt_paths: Collection[str] = (), retry_after: int = 1
    ) -> None:
        if max_active < 1:
            raise ValueError("max_active must be at least 1")
        self.max_active = max_active
        self.exempt_paths = frozenset(exempt_paths)
        self._headers = {"Retry-After": str(retry_after)}
        self._rejected = HTTP_REJECTED.labels("concurrency")
        self.active = 0

    def enter(self) -> bool:
        """Count the request in; False (counted as rejected) when the cap is reached."""
        if self.active >= self.max_active:
            self._rejected.inc()
            return False
        self.active += 1
        HTTP_ACTIVE_REQUESTS.inc()
        return True

    def leave(self) -> None:
        """Count a request that :meth:`enter` admitted out."""
        self.active -= 1
        HTTP_ACTIVE_REQUESTS.dec()

    def refusal(self) -> Response:
        """The 503 answer."""
        note_envelope_code(_CODE)
        return Response(
            _BODY, status_code=503, media_type="application/json", headers=self._headers
        )
