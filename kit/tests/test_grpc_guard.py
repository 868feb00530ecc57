"""No exception text on the wire: a real ``ServiceRunner`` serving a servicer registered with
``add_guarded``, called over a real channel, with raw bytes where a client library would
refuse to send them.

Every failure answers a clean status: the handler's own exceptions and a response that does
not serialize are INTERNAL "internal error"; a request that does not parse, and a request
value a handler cannot copy into a narrower field, are INVALID_ARGUMENT with a reason.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
import pytest

from kit.config import GrpcServiceSettings
from kit.errors import InvalidArgument
from kit.grpcx.errors import (
    INTERNAL_MESSAGE,
    REQUEST_UNDECODABLE,
    REQUEST_VALUE_OUT_OF_RANGE,
    add_guarded,
    app_error_from_rpc,
)
from kit.grpcx.server import ServiceRunner
from webook.user.v1 import user_pb2, user_pb2_grpc

SECRET: Final = "hunter2"
PROFILE: Final = "/webook.user.v1.UserService/Profile"
SIGNUP: Final = "/webook.user.v1.UserService/Signup"


def _raise(exc: BaseException) -> Any:
    raise exc


# Profile ids and what the handler does with them.
FAILURES: Final[dict[int, Any]] = {
    1: lambda: _raise(ValueError(f"bad value {SECRET}")),
    2: lambda: _raise(UnicodeDecodeError("utf-8", SECRET.encode(), 0, 1, "invalid start byte")),
    3: lambda: _raise(KeyError(SECRET)),
    4: lambda: _raise(TypeError(f"{SECRET} is not a str")),
    5: lambda: _raise(OverflowError(f"timestamp {SECRET} out of range")),
    # Answers the serializer cannot write: a wrong type, a string no encoder accepts.
    6: lambda: f"not a message {SECRET}",
    7: lambda: user_pb2.ProfileResponse(user=user_pb2.User(nickname="\ud800" + SECRET)),
    # protobuf's range check on a value the handler computed: our bug, not the input.
    8: lambda: user_pb2.ListUsersRequest(limit=2**40),
}


class _Servicer(user_pb2_grpc.UserServiceServicer):
    async def Profile(self, request: user_pb2.ProfileRequest, context: Any) -> Any:
        failure = FAILURES.get(request.id)
        if failure is not None:
            return failure()
        return user_pb2.ProfileResponse(user=user_pb2.User(id=request.id))

    async def Signup(self, request: user_pb2.SignupRequest, context: Any) -> Any:
        if request.email == "refused@example.com":
            raise InvalidArgument("USER_INVALID_EMAIL", "invalid email")
        return user_pb2.SignupResponse(user=user_pb2.User(email=request.email))

    async def ListUsers(self, request: user_pb2.ListUsersRequest, context: Any) -> Any:
        # A handler that copies an int64 of the request into an int32 of another message.
        narrowed = user_pb2.ListUsersRequest(limit=request.after_id)
        return user_pb2.ListUsersResponse(users=[user_pb2.User(id=narrowed.limit)])

    async def GetByIds(self, request: user_pb2.GetByIdsRequest, context: Any) -> Any:
        narrowed = [user_pb2.ListUsersRequest(limit=uid) for uid in request.ids]
        return user_pb2.GetByIdsResponse(users={n.limit: user_pb2.User() for n in narrowed})


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    """A channel to a started runner serving the guarded servicer; stopped after."""
    runner = ServiceRunner(
        "guard-test", GrpcServiceSettings(grpc_port=0, metrics_port=-1, shutdown_grace=0.1)
    )
    runner.add_service(
        "webook.user.v1.UserService",
        functools.partial(add_guarded, user_pb2_grpc.add_UserServiceServicer_to_server),
        _Servicer(),  # type: ignore[abstract]  # only some methods are exercised
    )
    await runner.start()
    try:
        async with grpc.aio.insecure_channel(runner.address) as chan:
            yield chan
    finally:
        await runner.stop()


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> user_pb2_grpc.UserServiceAsyncStub:
    return user_pb2_grpc.UserServiceStub(channel)


async def _raw(channel: grpc.aio.Channel, method: str, payload: bytes) -> bytes:
    """Call ``method`` with ``payload`` as the request's bytes; the response's bytes."""
    call = channel.unary_unary(
        method, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    answer: bytes = await call(payload, timeout=10)
    return answer


def _clean(exc: grpc.aio.AioRpcError) -> None:
    """Nothing of an exception's text in the status: no secret, no class, no codec words."""
    text = f"{exc.details()} {exc.trailing_metadata()}"
    for word in (SECRET, "Unexpected", "<class", "codec", "Error parsing", "DecodeError"):
        assert word not in text, text


async def test_a_well_formed_call_is_answered(stub: user_pb2_grpc.UserServiceAsyncStub) -> None:
    answer = await stub.Profile(user_pb2.ProfileRequest(id=42), timeout=10)
    assert answer.user.id == 42
    signed = await stub.Signup(user_pb2.SignupRequest(email="a@example.com"), timeout=10)
    assert signed.user.email == "a@example.com"


async def test_app_errors_keep_their_status_and_reason(
    stub: user_pb2_grpc.UserServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Signup(user_pb2.SignupRequest(email="refused@example.com"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert app_error_from_rpc(info.value).reason == "USER_INVALID_EMAIL"


@pytest.mark.parametrize("uid", sorted(FAILURES))
async def test_handler_and_serializer_failures_are_internal_without_text(
    stub: user_pb2_grpc.UserServiceAsyncStub, uid: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Profile(user_pb2.ProfileRequest(id=uid), timeout=10)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == INTERNAL_MESSAGE
    _clean(info.value)


@pytest.mark.parametrize(
    ("method", "payload", "message"),
    [
        (PROFILE, b"\xff\xff\xff", "webook.user.v1.ProfileRequest"),
        (PROFILE, b"\x08", "webook.user.v1.ProfileRequest"),  # a truncated varint
        (PROFILE, b"\x08" + b"\xff" * 11, "webook.user.v1.ProfileRequest"),  # a varint too long
        (SIGNUP, b"\x0a\x02\xc3\x28", "webook.user.v1.SignupRequest"),  # email not UTF-8
        (SIGNUP, b"\x12\x03\xed\xa0\x80", "webook.user.v1.SignupRequest"),  # an encoded surrogate
        (SIGNUP, b"\x0a\x10abc", "webook.user.v1.SignupRequest"),  # shorter than its length
    ],
)
async def test_undecodable_requests_are_invalid_argument_without_text(
    channel: grpc.aio.Channel,
    method: str,
    payload: bytes,
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # With INFO on, the guard's log line is built too (an extra named like a LogRecord
    # attribute once turned this answer into a KeyError).
    caplog.set_level(logging.INFO, logger="kit.grpcx.errors")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _raw(channel, method, payload)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert app_error_from_rpc(info.value).reason == REQUEST_UNDECODABLE
    assert info.value.details() == (
        f"the request is not a valid {message} (malformed bytes, or a string that is not UTF-8)"
    )
    _clean(info.value)
    (logged,) = [r for r in caplog.records if r.getMessage() == "request undecodable"]
    assert logged.__dict__["message_type"] == message


async def test_raw_bytes_that_parse_are_served(channel: grpc.aio.Channel) -> None:
    # The guard changes who parses, not what parses: the same bytes a stub would send.
    payload = user_pb2.ProfileRequest(id=9).SerializeToString()
    answer = user_pb2.ProfileResponse.FromString(await _raw(channel, PROFILE, payload))
    assert answer.user.id == 9
    empty = user_pb2.ProfileResponse.FromString(await _raw(channel, PROFILE, b""))
    assert empty.user.id == 0


@pytest.mark.parametrize("after_id", [2**31, -(2**31) - 1, 2**63 - 1])
async def test_a_request_value_out_of_a_copied_field_range_is_invalid_argument(
    stub: user_pb2_grpc.UserServiceAsyncStub, after_id: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListUsers(user_pb2.ListUsersRequest(after_id=after_id), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = app_error_from_rpc(info.value)
    assert error.reason == REQUEST_VALUE_OUT_OF_RANGE
    assert error.message == f"after_id is out of range ({after_id})"
    assert error.metadata == {"field": "after_id"}


async def test_the_out_of_range_field_is_named_inside_repeated_fields(
    stub: user_pb2_grpc.UserServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetByIds(user_pb2.GetByIdsRequest(ids=[1, 2, 2**40]), timeout=10)
    assert app_error_from_rpc(info.value).metadata == {"field": "ids.2"}
    ok = await stub.ListUsers(user_pb2.ListUsersRequest(after_id=2**31 - 1), timeout=10)
    assert ok.users[0].id == 2**31 - 1


async def test_health_is_not_guarded_and_still_serves(channel: grpc.aio.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
