"""A route class for the hottest route: FastAPI's per-request machinery skipped when it has
nothing to decide.

For ``GET /articles/pub/{id}``, FastAPI's request handler spends more CPU than the endpoint:
it records telemetry data, reads the (absent) body, solves the path parameter through its
dependency solver (path, query, header and cookie parameters each converted and validated)
and wraps the endpoint call. :class:`DirectIdRoute` keeps the route, its OpenAPI operation
and FastAPI's handler as they are, and only answers a request without that handler when the
outcome is known in advance:

- the ``id`` path segment is a canonical decimal within ``1..INT64_MAX`` (a subset of what
  the route's ``ArticleIdPath`` accepts, written the one way clients write it); anything
  else (``abc``, ``0``, ``-5``, ``007``, `` 7``, ``7.0``, out of range) goes to FastAPI's
  handler, which validates it by the same rules as every other id of the URL
  (:data:`gateway.schemas.DecimalInt`: ``007`` and ``+7`` are 7, as the Go backend read
  them; the rest answer code 4);
- no span is recorded (:func:`kit.observability.tracing.records_spans`); when one is,
  FastAPI's handler runs so its telemetry sees the request as before.

The endpoint is then called as ``endpoint(request, id)`` and its return value is validated
and serialized by FastAPI's own :func:`fastapi.routing.serialize_response` with the route's
response model and options, into the same ``application/json`` response FastAPI builds.
Exceptions propagate exactly as from FastAPI's handler (to the app's exception handlers).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastapi.routing import APIRoute, serialize_response
from starlette.requests import Request
from starlette.responses import Response

from gateway.schemas import INT64_MAX
from kit.observability.tracing import records_spans

_MAX_DIGITS: Final = len(str(INT64_MAX))


def canonical_id(raw: object) -> int | None:
    """``raw`` as an id in ``1..INT64_MAX`` if written canonically (``7``, not ``07``)."""
    if (
        not isinstance(raw, str)
        or not 0 < len(raw) <= _MAX_DIGITS
        or not (raw.isascii() and raw.isdigit())
        or raw[0] == "0"
    ):
        return None
    value = int(raw)
    return value if value <= INT64_MAX else None


class DirectIdRoute(APIRoute):
    """An ``APIRoute`` for ``async def endpoint(request: Request, id: int = Path(...))``.

    See the module docstring: well-formed requests skip FastAPI's dependency solving; the
    rest, and every request while spans are recorded, take FastAPI's handler.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, behind the direct path."""
        standard = super().get_route_handler()
        endpoint = self.endpoint
        field = self.response_field
        options: dict[str, Any] = {
            "include": self.response_model_include,
            "exclude": self.response_model_exclude,
            "by_alias": self.response_model_by_alias,
            "exclude_unset": self.response_model_exclude_unset,
            "exclude_defaults": self.response_model_exclude_defaults,
            "exclude_none": self.response_model_exclude_none,
        }
        status_code = 200 if self.status_code is None else self.status_code

        async def handler(request: Request) -> Response:
            article_id = canonical_id(request.path_params.get("id"))
            if article_id is None or records_spans():
                return await standard(request)
            content = await serialize_response(
                field=field,
                response_content=await endpoint(request, article_id),
                is_coroutine=True,
                dump_json=True,
                **options,
            )
            return Response(content=content, media_type="application/json", status_code=status_code)

        return handler
