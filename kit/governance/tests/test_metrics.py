"""Metrics interceptors: counts and latencies by service, method and final status code."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from kit.governance import (
    ClientDeadlineInterceptor,
    ClientMetricsInterceptor,
    ServerMetricsInterceptor,
    client_chain,
    deadline_after,
)
from kit.governance.tests.support import (
    CRASHING_USER_ID,
    MISSING_USER_ID,
    USER_SERVICE,
    OpenChannel,
    ScriptedUserService,
    StartServer,
    sample,
)
from webook.user.v1 import user_pb2, user_pb2_grpc

CODES = ("OK", "NOT_FOUND", "UNKNOWN", "DEADLINE_EXCEEDED")


def snapshot(side: str) -> dict[str, float]:
    """Profile's counters on ``side`` (``server`` or ``client``) by code, plus histogram count."""
    labels = {"service": USER_SERVICE, "method": "Profile"}
    values = {
        code: sample(f"webook_grpc_{side}_handled_total", code=code, **labels) for code in CODES
    }
    values["observed"] = sample(f"webook_grpc_{side}_handling_seconds_count", **labels)
    return values


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in before}


async def test_server_and_client_count_every_outcome(
    start_server: StartServer, open_channel: OpenChannel
) -> None:
    address = await start_server(ScriptedUserService(), [ServerMetricsInterceptor()])
    stub = user_pb2_grpc.UserServiceStub(
        open_channel(address, client_chain(ClientMetricsInterceptor(), ClientDeadlineInterceptor()))
    )
    server_before, client_before = snapshot("server"), snapshot("client")

    await stub.Profile(user_pb2.ProfileRequest(id=1))
    await stub.Profile(user_pb2.ProfileRequest(id=2))
    for user_id, code in (
        (MISSING_USER_ID, grpc.StatusCode.NOT_FOUND),  # context.abort
        (CRASHING_USER_ID, grpc.StatusCode.UNKNOWN),  # an exception escaping the handler
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Profile(user_pb2.ProfileRequest(id=user_id))
        assert caught.value.code() is code
    with deadline_after(0.0), pytest.raises(grpc.aio.AioRpcError):
        await stub.Profile(user_pb2.ProfileRequest(id=1))  # failed locally, never sent

    assert delta(server_before, snapshot("server")) == {
        "OK": 2,
        "NOT_FOUND": 1,
        "UNKNOWN": 1,
        "DEADLINE_EXCEEDED": 0,
        "observed": 4,
    }
    assert delta(client_before, snapshot("client")) == {
        "OK": 2,
        "NOT_FOUND": 1,
        "UNKNOWN": 1,
        "DEADLINE_EXCEEDED": 1,
        "observed": 5,
    }
    assert sample("webook_grpc_server_in_flight") == 0
