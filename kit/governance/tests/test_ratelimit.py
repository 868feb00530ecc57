"""Per-method server rate limits: a burst, then RESOURCE_EXHAUSTED, then recovery on refill."""

from __future__ import annotations

from typing import cast

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kit.governance import RateLimit, RateLimitConfig, RateLimitInterceptor
from kit.governance.tests.support import (
    LOGIN,
    PROFILE,
    USER_SERVICE,
    ManualClock,
    OpenChannel,
    ScriptedUserService,
    StartServer,
    sample,
)
from webook.user.v1 import user_pb2, user_pb2_grpc


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    """The RetryInfo delay carried in the error's status details."""
    # grpc-stubs type it as the sync API's metadata tuple; grpc.aio returns its Metadata.
    metadata = cast(grpc.aio.Metadata, error.trailing_metadata())
    [raw] = metadata.get_all("grpc-status-details-bin")
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.RetryInfo()
    [detail] = status.details
    assert detail.Unpack(info)
    return float(info.retry_delay.ToNanoseconds()) / 1e9


async def test_burst_then_resource_exhausted_then_refill(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    clock = ManualClock()
    config = RateLimitConfig(per_method={PROFILE: RateLimit(rate=5, burst=3)})
    servicer = ScriptedUserService()
    address = await start_server(servicer, [RateLimitInterceptor(config, clock=clock)])
    stub = user_pb2_grpc.UserServiceStub(open_channel(address))
    request = user_pb2.ProfileRequest(id=1)
    rejected_before = sample(
        "webook_grpc_server_rejected_total",
        service=USER_SERVICE,
        method="Profile",
        reason="ratelimit",
    )

    for _ in range(3):
        await stub.Profile(request)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Profile(request)

    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_delay(caught.value) == pytest.approx(0.2)
    assert servicer.calls == 3
    rejected = sample(
        "webook_grpc_server_rejected_total",
        service=USER_SERVICE,
        method="Profile",
        reason="ratelimit",
    )
    assert rejected - rejected_before == 1

    clock.advance(0.2)
    await stub.Profile(request)
    assert servicer.calls == 4


async def test_default_limit_per_method_override_and_exempt_health(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    config = RateLimitConfig(default=RateLimit(rate=1, burst=1), per_method={LOGIN: None})
    interceptor = RateLimitInterceptor(config, clock=ManualClock())
    channel = open_channel(await start_server(ScriptedUserService(), [interceptor]))
    stub = user_pb2_grpc.UserServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)

    await stub.Profile(user_pb2.ProfileRequest(id=1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Profile(user_pb2.ProfileRequest(id=1))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    for _ in range(5):
        await stub.Login(user_pb2.LoginRequest(email="a@b.c"))
        await health.Check(health_pb2.HealthCheckRequest())
    assert interceptor.bucket_for(LOGIN) is None


def test_rate_limit_is_validated() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimit(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        RateLimit(rate=1, burst=0.5)
