"""AppErrors leave a server as canonical status codes with ErrorInfo, and come back intact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from kit.config import GrpcServiceSettings
from kit.errors import AlreadyExists, InvalidArgument, NotFound
from kit.grpcx.errors import INTERNAL_MESSAGE, app_error_from_rpc
from kit.grpcx.server import ServiceRunner
from webook.user.v1 import user_pb2, user_pb2_grpc

# Exceptions a handler may raise by accident, each carrying text that must not leave.
_UNEXPECTED: dict[int, Exception] = {
    10: ValueError("Value out of range: hunter2"),
    11: UnicodeDecodeError("utf-8", b"hunter2", 0, 1, "invalid start byte"),
    12: UnicodeEncodeError("utf-8", "hunter2", 0, 1, "surrogates not allowed"),
    13: KeyError("hunter2"),
    14: OverflowError("hunter2 too large"),
    15: Exception("hunter2"),
}


class _Servicer(user_pb2_grpc.UserServiceServicer):
    async def Profile(self, request: user_pb2.ProfileRequest, context: Any) -> Any:
        if request.id == 1:
            raise NotFound("USER_NOT_FOUND", "user not found", domain="user.webook")
        if request.id == 2:
            raise InvalidArgument(
                "USER_INVALID_ID", "id must be positive", metadata={"field": "id"}
            )
        if request.id == 3:
            raise RuntimeError("database password is hunter2")
        if request.id == 4:
            raise AlreadyExists("USER_EMAIL_TAKEN", "email already registered")
        if request.id in _UNEXPECTED:
            raise _UNEXPECTED[request.id]
        return user_pb2.ProfileResponse(user=user_pb2.User(id=request.id))


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    runner = ServiceRunner(
        "test", GrpcServiceSettings(grpc_port=0, metrics_port=-1, shutdown_grace=0.1)
    )
    runner.add_service(
        "webook.user.v1.UserService",
        user_pb2_grpc.add_UserServiceServicer_to_server,
        _Servicer(),  # type: ignore[abstract]  # only Profile is exercised
    )
    await runner.start()
    async with grpc.aio.insecure_channel(runner.address) as chan:
        yield chan
    await runner.stop()


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> user_pb2_grpc.UserServiceAsyncStub:
    return user_pb2_grpc.UserServiceStub(channel)


async def _fail(stub: user_pb2_grpc.UserServiceAsyncStub, uid: int) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Profile(user_pb2.ProfileRequest(id=uid), timeout=5)
    return info.value


async def test_success_passes_through(stub: user_pb2_grpc.UserServiceAsyncStub) -> None:
    response = await stub.Profile(user_pb2.ProfileRequest(id=9), timeout=5)
    assert response.user.id == 9


@pytest.mark.parametrize(
    ("uid", "code", "cls", "reason"),
    [
        (1, grpc.StatusCode.NOT_FOUND, NotFound, "USER_NOT_FOUND"),
        (2, grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument, "USER_INVALID_ID"),
        (4, grpc.StatusCode.ALREADY_EXISTS, AlreadyExists, "USER_EMAIL_TAKEN"),
    ],
)
async def test_app_error_round_trip(
    stub: user_pb2_grpc.UserServiceAsyncStub,
    uid: int,
    code: grpc.StatusCode,
    cls: type,
    reason: str,
) -> None:
    exc = await _fail(stub, uid)
    assert exc.code() == code
    error = app_error_from_rpc(exc)
    assert isinstance(error, cls)
    assert error.reason == reason


async def test_error_info_carries_domain_and_metadata(
    stub: user_pb2_grpc.UserServiceAsyncStub,
) -> None:
    assert app_error_from_rpc(await _fail(stub, 1)).domain == "user.webook"
    assert app_error_from_rpc(await _fail(stub, 2)).metadata == {"field": "id"}


@pytest.mark.parametrize("uid", [3, *_UNEXPECTED])
async def test_unexpected_exception_is_internal_without_details(
    stub: user_pb2_grpc.UserServiceAsyncStub, uid: int
) -> None:
    exc = await _fail(stub, uid)
    assert exc.code() == grpc.StatusCode.INTERNAL
    assert exc.details() == INTERNAL_MESSAGE
    assert "hunter2" not in str(exc)


async def test_health_service_serving(channel: grpc.aio.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
