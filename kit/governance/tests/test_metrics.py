"""Metrics: both composers count and time every call by service, method and final status."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from kit.governance import (
    BreakerConfig,
    GovernanceConfig,
    GovernedServerInterceptor,
    SheddingConfig,
    UnaryClientPolicy,
    deadline_after,
)
from kit.governance.tests.support import (
    CRASHING_USER_ID,
    MISSING_USER_ID,
    USER_SERVICE,
    OpenGoverned,
    ScriptedUserService,
    StartServer,
    sample,
)
from webook.user.v1 import user_pb2

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
    start_server: StartServer, open_governed: OpenGoverned
) -> None:
    governor = GovernedServerInterceptor(
        GovernanceConfig(tracing=False, shedding=SheddingConfig(enabled=False))
    )
    policy = UnaryClientPolicy(
        "user", GovernanceConfig(tracing=False, breaker=BreakerConfig(enabled=False))
    )
    stub = await open_governed(await start_server(ScriptedUserService(), [governor]), policy)
    server_before, client_before = snapshot("server"), snapshot("client")

    await stub.Profile(user_pb2.ProfileRequest(id=1))
    await stub.Profile(user_pb2.ProfileRequest(id=2))
    for user_id, code in (
        (MISSING_USER_ID, grpc.StatusCode.NOT_FOUND),  # context.abort
        # An exception escaping the handler (no error mapper): UNKNOWN on the wire.
        (CRASHING_USER_ID, grpc.StatusCode.UNKNOWN),
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
