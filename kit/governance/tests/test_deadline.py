"""Deadline propagation: incoming budgets bound outgoing calls; a spent budget fails fast."""

from __future__ import annotations

import time

import grpc
import grpc.aio
import pytest
from prometheus_client import CollectorRegistry

from kit.governance import (
    BreakerConfig,
    DeadlineConfig,
    DeadlineExceededError,
    GovernanceConfig,
    GovernanceMetrics,
    GovernedServerInterceptor,
    SheddingConfig,
    UnaryClientPolicy,
    current_deadline,
    deadline_after,
    remaining_time,
    reset_deadline,
    set_deadline,
)
from kit.governance.tests.support import LOGIN, OpenGoverned, ScriptedUserService, StartServer
from webook.user.v1 import user_pb2

SERVER = GovernanceConfig(tracing=False, metrics=False, shedding=SheddingConfig(enabled=False))


def client_policy(deadline: DeadlineConfig | None = None) -> UnaryClientPolicy:
    """A policy doing deadlines only (its metrics in a registry of its own)."""
    return UnaryClientPolicy(
        "user",
        GovernanceConfig(
            deadline=deadline or DeadlineConfig(),
            tracing=False,
            breaker=BreakerConfig(enabled=False),
        ),
        metrics=GovernanceMetrics(CollectorRegistry()),
    )


def within(observed: float | None, budget: float) -> bool:
    """``0 < observed <= budget``, give or take gRPC's rounding of timeouts on the wire.

    The client sends its remaining time rounded up to a few significant digits and the server
    measures from a cached clock, so a server can see a few milliseconds more than was sent.
    """
    return observed is not None and 0 < observed <= budget * 1.01 + 0.005


async def test_incoming_deadline_bounds_the_downstream_call(
    start_server: StartServer, open_governed: OpenGoverned
) -> None:
    downstream = ScriptedUserService()
    downstream_stub = await open_governed(
        await start_server(downstream), client_policy(DeadlineConfig(default_timeout=30.0))
    )
    budgets_seen_by_handler: list[float | None] = []

    async def call_downstream() -> None:
        budgets_seen_by_handler.append(remaining_time())
        await downstream_stub.Profile(user_pb2.ProfileRequest(id=1))

    upstream = ScriptedUserService()
    upstream.delay = 0.3
    upstream.downstream = call_downstream
    upstream_stub = await open_governed(
        await start_server(upstream, [GovernedServerInterceptor(SERVER)]),
        client_policy(DeadlineConfig(default_timeout=None)),
    )

    await upstream_stub.Profile(user_pb2.ProfileRequest(id=1), timeout=1.0)

    # The handler spent 0.3 s of its 1 s before calling out: only the rest is propagated.
    [handler_budget] = budgets_seen_by_handler
    [downstream_budget] = downstream.time_remaining
    assert within(handler_budget, 0.7)
    assert within(downstream_budget, 0.7)


async def test_without_incoming_deadline_the_handler_is_unbounded(
    start_server: StartServer, open_governed: OpenGoverned
) -> None:
    budgets: list[float | None] = []

    async def record() -> None:
        budgets.append(current_deadline())

    servicer = ScriptedUserService()
    servicer.downstream = record
    stub = await open_governed(
        await start_server(servicer, [GovernedServerInterceptor(SERVER)]),
        client_policy(DeadlineConfig(default_timeout=None)),
    )

    await stub.Profile(user_pb2.ProfileRequest(id=1))

    assert budgets == [None]
    assert servicer.time_remaining == [None]


async def test_timeout_is_the_smallest_of_explicit_config_and_budget(
    start_server: StartServer, open_governed: OpenGoverned
) -> None:
    servicer = ScriptedUserService()
    config = DeadlineConfig(default_timeout=3.0, per_method={LOGIN: 1.0})
    stub = await open_governed(await start_server(servicer), client_policy(config))

    await stub.Login(user_pb2.LoginRequest(email="a@b.c"))
    await stub.Profile(user_pb2.ProfileRequest(id=1))
    await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=0.8)
    await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=30)  # capped by the config
    with deadline_after(1.2):
        await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=10.0)

    login, default, explicit, capped, budgeted = servicer.time_remaining
    assert within(login, 1.0)
    assert within(default, 3.0)
    assert default is not None
    assert default > 1.2
    assert within(explicit, 0.8)
    assert within(capped, 3.0)
    assert within(budgeted, 1.2)


async def test_spent_budget_fails_fast_without_a_network_call(
    start_server: StartServer, open_governed: OpenGoverned
) -> None:
    servicer = ScriptedUserService()
    metrics = GovernanceMetrics(CollectorRegistry())
    policy = UnaryClientPolicy(
        "user",
        GovernanceConfig(tracing=False, breaker=BreakerConfig(enabled=False)),
        metrics=metrics,
    )
    stub = await open_governed(await start_server(servicer), policy)

    with deadline_after(0.0), pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Profile(user_pb2.ProfileRequest(id=1))
    spent = set_deadline(time.monotonic() - 1.0)
    try:
        with pytest.raises(DeadlineExceededError):
            await stub.Profile(user_pb2.ProfileRequest(id=1))
    finally:
        reset_deadline(spent)

    assert isinstance(caught.value, DeadlineExceededError)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert servicer.calls == 0
    failed = metrics.client_handled.labels(
        "webook.user.v1.UserService", "Profile", "DEADLINE_EXCEEDED"
    )
    assert failed._value.get() == 2


def test_deadline_after_never_extends_an_outer_deadline() -> None:
    assert current_deadline() is None
    with deadline_after(1.0) as outer:
        with deadline_after(60.0) as inner:
            assert inner == outer
        with deadline_after(0.5) as tighter:
            assert tighter < outer
            remaining = remaining_time()
            assert remaining is not None
            assert remaining <= 0.5
        assert current_deadline() == outer
    assert current_deadline() is None
    assert outer <= time.monotonic() + 1.0
