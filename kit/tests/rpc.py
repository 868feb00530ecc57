"""What the tests of the services' gRPC APIs share: the refusal a call must end in."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest

from kit.grpcx.errors import app_error_from_rpc


async def refusal_of(call: Awaitable[object], domain: str) -> tuple[grpc.StatusCode, str]:
    """The status code and ErrorInfo reason of ``call``, which must fail with an error of
    ``domain`` whose message says what went wrong. Tests bind their service's domain:
    ``refusal = partial(refusal_of, domain=DOMAIN)``."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = app_error_from_rpc(caught.value)
    assert error.domain == domain
    assert error.message
    return caught.value.code(), error.reason
