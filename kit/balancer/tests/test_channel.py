"""BalancedChannel against real in-process grpc.aio servers (static discovery, no etcd)."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import cast

import grpc
import pytest
from prometheus_client import REGISTRY

from kit.balancer import BalancedChannel, BalancerConfig, Health, Policy
from kit.balancer.calls import BalancedUnaryUnaryCall
from kit.balancer.tests.servers import ReportingUserService, start_server
from kit.registry import ServiceInstance, StaticDiscovery
from kit.registry.tests.helpers import eventually
from webook.user.v1 import user_pb2, user_pb2_grpc

PROFILE = "/webook.user.v1.UserService/Profile"
SIGNUP = "/webook.user.v1.UserService/Signup"


class Cluster:
    """A few running ReportingUserService servers and their registry instances."""

    def __init__(self) -> None:
        self.services: dict[str, ReportingUserService] = {}
        self.servers: list[grpc.aio.Server] = []
        self.instances: dict[str, ServiceInstance] = {}
        self.served: list[str] = []

    async def add(
        self, name: str, weight: int = 1, fail_with: grpc.StatusCode | None = None
    ) -> ServiceInstance:
        service = ReportingUserService(name, self.served, fail_with)
        server, addr = await start_server(service)
        self.services[name] = service
        self.servers.append(server)
        self.instances[name] = ServiceInstance("user", name, addr, weight)
        return self.instances[name]

    def discovery(self, names: Sequence[str] | None = None) -> StaticDiscovery:
        chosen = self.instances if names is None else {n: self.instances[n] for n in names}
        return StaticDiscovery("user", chosen.values())

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop(None) for server in self.servers))


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    """Servers started by the test, stopped after it."""
    servers = Cluster()
    yield servers
    await servers.stop()


def picks_of(addr: str) -> float:
    value = REGISTRY.get_sample_value(
        "webook_balancer_picks_total", {"service": "user", "endpoint": addr}
    )
    return value or 0.0


async def test_weighted_shares_over_6000_calls_and_bounded_runs(cluster: Cluster) -> None:
    for name, weight in (("w1", 1), ("w2", 2), ("w3", 3)):
        await cluster.add(name, weight)
    picks_before = {n: picks_of(i.addr) for n, i in cluster.instances.items()}
    async with BalancedChannel("user", cluster.discovery(), owns_discovery=True) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        for i in range(6000):
            response = await stub.Profile(user_pb2.ProfileRequest(id=i), timeout=5)
            assert response.user.id == i

    shares = Counter(cluster.served)
    assert sum(shares.values()) == 6000
    for name, weight in (("w1", 1), ("w2", 2), ("w3", 3)):
        assert abs(shares[name] / 6000 - weight / 6) <= 0.02
        longest = max(len(list(g)) for k, g in itertools.groupby(cluster.served) if k == name)
        assert longest <= weight
        addr = cluster.instances[name].addr
        assert picks_of(addr) - picks_before[name] == shares[name]


async def test_idempotent_call_fails_over_and_failing_endpoint_is_ejected(
    cluster: Cluster,
) -> None:
    await cluster.add("a-broken", fail_with=grpc.StatusCode.UNAVAILABLE)
    await cluster.add("b-ok")
    await cluster.add("c-ok")
    config = BalancerConfig(idempotent_methods=frozenset({PROFILE}), eject_after_failures=3)
    async with BalancedChannel("user", cluster.discovery(), config) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        for i in range(30):
            response = await stub.Profile(user_pb2.ProfileRequest(id=i), timeout=5)
            assert response.user.nickname in {"b-ok", "c-ok"}
        broken = next(e for e in channel.endpoints() if e.key == "a-broken")
        assert broken.health is Health.EJECTED
        assert cluster.services["a-broken"].calls["Profile"] == 3
        assert broken.effective_weight < broken.weight


async def test_non_idempotent_call_is_not_retried(cluster: Cluster) -> None:
    # Equal weights pick in instance-id order, so the first call goes to "a-broken".
    await cluster.add("a-broken", fail_with=grpc.StatusCode.UNAVAILABLE)
    await cluster.add("b-ok")
    config = BalancerConfig(idempotent_methods=frozenset({PROFILE}))
    async with BalancedChannel("user", cluster.discovery(), config) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.Signup(user_pb2.SignupRequest(email="x@example.com"), timeout=5)
        assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
        assert cluster.services["a-broken"].calls["Signup"] == 1
        assert cluster.services["b-ok"].calls["Signup"] == 0

    # The same failure on an idempotent method is retried on the other endpoint.
    async with BalancedChannel("user", cluster.discovery(), config) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        response = await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=5)
        assert response.user.nickname == "b-ok"
        assert cluster.services["a-broken"].calls["Profile"] == 1


async def test_business_errors_do_not_fail_over(cluster: Cluster) -> None:
    await cluster.add("a-notfound", fail_with=grpc.StatusCode.NOT_FOUND)
    await cluster.add("b-ok")
    config = BalancerConfig(idempotent_methods=frozenset({PROFILE}))
    async with BalancedChannel("user", cluster.discovery(), config) as channel:
        call = user_pb2_grpc.UserServiceStub(channel).Profile(user_pb2.ProfileRequest(id=1))
        with pytest.raises(grpc.aio.AioRpcError):
            await call
        assert await call.code() is grpc.StatusCode.NOT_FOUND
        assert "a-notfound is failing" in await call.details()
        endpoint = next(e for e in channel.endpoints() if e.key == "a-notfound")
        assert endpoint.health is Health.HEALTHY
        assert endpoint.effective_weight == endpoint.weight


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
    ],
)
async def test_client_errors_never_eject_an_endpoint(
    cluster: Cluster, code: grpc.StatusCode
) -> None:
    await cluster.add("a-refusing", fail_with=code)
    config = BalancerConfig(eject_after_failures=2)
    async with BalancedChannel("user", cluster.discovery(), config) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        for _ in range(10 * config.eject_after_failures):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=5)
            assert refused.value.code() is code
        (endpoint,) = channel.endpoints()
        assert endpoint.health is Health.HEALTHY
        assert endpoint.effective_weight == endpoint.weight


def test_client_outcomes_cannot_be_configured_as_endpoint_failures() -> None:
    with pytest.raises(ValueError, match="INVALID_ARGUMENT"):
        BalancerConfig(failure_codes=frozenset({grpc.StatusCode.INVALID_ARGUMENT}))
    with pytest.raises(ValueError, match="NOT_FOUND"):
        BalancerConfig(failover_codes=frozenset({grpc.StatusCode.NOT_FOUND}))


async def test_consistent_hash_keeps_a_key_on_one_endpoint(cluster: Cluster) -> None:
    for name in ("h1", "h2", "h3"):
        await cluster.add(name)
    config = BalancerConfig(policy=Policy.CONSISTENT_HASH, hash_request_field="id")
    async with BalancedChannel("user", cluster.discovery(), config) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        owners: dict[int, set[str]] = {}
        for _ in range(3):
            for user_id in range(1, 61):
                response = await stub.Profile(user_pb2.ProfileRequest(id=user_id), timeout=5)
                owners.setdefault(user_id, set()).add(response.user.nickname)
    assert all(len(names) == 1 for names in owners.values())
    assert len(set().union(*owners.values())) == 3

    by_metadata = BalancerConfig(policy=Policy.CONSISTENT_HASH, hash_metadata_key="x-user-id")
    async with BalancedChannel("user", cluster.discovery(), by_metadata) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        served = {
            (
                await stub.Profile(
                    user_pb2.ProfileRequest(id=n), metadata=(("x-user-id", "42"),), timeout=5
                )
            ).user.nickname
            for n in range(20)
        }
    assert len(served) == 1


async def _owners(stub: user_pb2_grpc.UserServiceAsyncStub, ids: range) -> dict[int, str]:
    """Which endpoint served ``Profile`` for each id (one call per id)."""
    return {
        user_id: (await stub.Profile(user_pb2.ProfileRequest(id=user_id), timeout=5)).user.nickname
        for user_id in ids
    }


async def test_hash_methods_route_only_the_named_methods_by_hash(cluster: Cluster) -> None:
    for name in ("h1", "h2", "h3"):
        await cluster.add(name)
    config = BalancerConfig(policy=Policy.CONSISTENT_HASH, hash_methods={PROFILE: "id"})
    async with BalancedChannel("user", cluster.discovery(), config) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        first = await _owners(stub, range(1, 601))
        assert await _owners(stub, range(1, 601)) == first  # every key sticks to its owner
        shares = Counter(first.values())
        assert set(shares) == {"h1", "h2", "h3"}
        assert all(100 < count < 320 for count in shares.values()), shares

        # Signup is not named: weighted round robin, whatever the request holds.
        cluster.served.clear()
        for _ in range(30):
            await stub.Signup(user_pb2.SignupRequest(email="same@example.com"), timeout=5)
        assert Counter(cluster.served) == {"h1": 10, "h2": 10, "h3": 10}


async def test_hashed_keys_of_a_failing_endpoint_move_to_the_others(
    cluster: Cluster,
) -> None:
    for name in ("h1", "h2", "h3"):
        await cluster.add(name)
    config = BalancerConfig(
        policy=Policy.CONSISTENT_HASH,
        hash_methods={PROFILE: "id"},
        idempotent_methods=frozenset({PROFILE}),
        eject_after_failures=1,
        ejection_seconds=60,
    )
    async with BalancedChannel("user", cluster.discovery(), config) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        before = await _owners(stub, range(1, 301))
        down = cluster.services["h2"]
        served_before = down.calls["Profile"]
        assert served_before == sum(1 for owner in before.values() if owner == "h2") > 0
        down.fail_with = grpc.StatusCode.UNAVAILABLE  # h2 answers UNAVAILABLE from now on

        # Idempotent calls fail over: no caller sees the failure.
        during = await _owners(stub, range(1, 301))
        assert "h2" not in during.values()
        assert {k: v for k, v in during.items() if before[k] != "h2"} == {
            k: v for k, v in before.items() if v != "h2"
        }
        h2 = next(e for e in channel.endpoints() if e.key == "h2")
        assert h2.health is Health.EJECTED
        # Ejected after its first failure, then skipped.
        assert down.calls["Profile"] == served_before + 1
        # Its keys moved to the other two endpoints, each key to one of them only.
        assert await _owners(stub, range(1, 301)) == during


async def test_in_flight_calls_per_endpoint_are_bounded(cluster: Cluster) -> None:
    await cluster.add("slow")
    service = cluster.services["slow"]
    service.gate = asyncio.Event()
    config = BalancerConfig(max_in_flight_per_endpoint=2)
    async with BalancedChannel("user", cluster.discovery(), config) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        calls = [stub.Profile(user_pb2.ProfileRequest(id=i), timeout=10) for i in range(6)]
        await eventually(lambda: service.in_flight == 2, 5, "two calls in flight")
        await asyncio.sleep(0.2)
        assert service.in_flight == 2
        service.gate.set()
        responses = await asyncio.gather(*calls)
    assert [r.user.id for r in responses] == list(range(6))
    assert service.max_in_flight == 2


async def test_membership_changes_and_graceful_removal(cluster: Cluster) -> None:
    await cluster.add("m1")
    await cluster.add("m2")
    discovery = cluster.discovery(["m1"])
    async with BalancedChannel("user", discovery, BalancerConfig(close_grace=5)) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        assert (await stub.Profile(user_pb2.ProfileRequest(), timeout=5)).user.nickname == "m1"
        cluster.services["m1"].gate = asyncio.Event()
        slow_call = stub.Profile(user_pb2.ProfileRequest(id=7), timeout=10)
        await eventually(lambda: cluster.services["m1"].in_flight == 1, 5, "call in flight")

        discovery.set_instances([cluster.instances["m2"]])
        assert [e.key for e in channel.endpoints()] == ["m2"]
        names = {(await stub.Profile(user_pb2.ProfileRequest(), timeout=5)).user.nickname}
        assert names == {"m2"}
        cluster.services["m1"].gate.set()
        assert (await slow_call).user.nickname == "m1"  # finished on the removed endpoint


async def test_no_endpoint_fails_fast_unless_wait_for_ready(cluster: Cluster) -> None:
    await cluster.add("late")
    discovery = StaticDiscovery("user")
    async with BalancedChannel("user", discovery) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.Profile(user_pb2.ProfileRequest(), timeout=5)
        assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as expired:
            await stub.Profile(user_pb2.ProfileRequest(), timeout=0.1, wait_for_ready=True)
        assert expired.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

        waiting = stub.Profile(user_pb2.ProfileRequest(), timeout=10, wait_for_ready=True)
        await asyncio.sleep(0.05)
        assert not waiting.done()
        discovery.set_instances([cluster.instances["late"]])
        assert (await waiting).user.nickname == "late"


async def test_channel_interface_and_streaming_methods_refused(cluster: Cluster) -> None:
    await cluster.add("s1")
    async with BalancedChannel("user", cluster.discovery()) as channel:
        assert channel.get_state() is not grpc.ChannelConnectivity.SHUTDOWN
        await asyncio.wait_for(channel.channel_ready(), 5)
        assert channel.get_state() is grpc.ChannelConnectivity.READY

        # No proto declares a stream: the balancer has no streaming path, and says so.
        for factory in (channel.unary_stream, channel.stream_unary, channel.stream_stream):
            with pytest.raises(TypeError, match="unary-unary calls only"):
                factory("/webook.test.Stream/Count")

        unary = user_pb2_grpc.UserServiceStub(channel).Profile(user_pb2.ProfileRequest(id=3))
        unary.cancel()
        with pytest.raises(asyncio.CancelledError):
            await unary
        assert unary.cancelled()
        assert await unary.code() is grpc.StatusCode.CANCELLED
    assert channel.get_state() is grpc.ChannelConnectivity.SHUTDOWN
    with pytest.raises(grpc.aio.UsageError):
        await user_pb2_grpc.UserServiceStub(channel).Profile(user_pb2.ProfileRequest())


async def test_unawaited_call_is_sent_and_done_callbacks_run(cluster: Cluster) -> None:
    await cluster.add("u1")
    async with BalancedChannel("user", cluster.discovery()) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        finished = asyncio.Event()
        call = stub.Profile(user_pb2.ProfileRequest(id=5), timeout=5)
        call.add_done_callback(lambda _call: finished.set())
        await eventually(lambda: cluster.services["u1"].calls["Profile"] == 1, 5, "call sent")
        await asyncio.wait_for(finished.wait(), 5)
        assert call.done()
        assert await call.code() is grpc.StatusCode.OK
        assert (await call).user.id == 5


async def test_calls_gathered_at_once_run_in_gathers_tasks_and_still_fail_over(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The gateway's read: asyncio.gather of two calls made just before. gather wraps each
    # call in a task; the calls run inside those tasks, without a task of their own.
    started_alone: list[BalancedUnaryUnaryCall] = []
    start_task = BalancedUnaryUnaryCall._start_task

    def counting_start_task(call: BalancedUnaryUnaryCall) -> None:
        started_alone.append(call)
        start_task(call)

    monkeypatch.setattr(BalancedUnaryUnaryCall, "_start_task", counting_start_task)
    await cluster.add("a-broken", fail_with=grpc.StatusCode.UNAVAILABLE)
    await cluster.add("b-ok")
    config = BalancerConfig(idempotent_methods=frozenset({PROFILE}), eject_after_failures=100)
    async with BalancedChannel("user", cluster.discovery(), config) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        for i in range(10):
            first = stub.Profile(user_pb2.ProfileRequest(id=i), timeout=5)
            second = stub.Profile(user_pb2.ProfileRequest(id=i + 100), timeout=5)
            replies = await asyncio.gather(first, second)
            assert [r.user.id for r in replies] == [i, i + 100]
            assert {r.user.nickname for r in replies} == {"b-ok"}
            assert await first.code() is grpc.StatusCode.OK
        assert cluster.services["a-broken"].calls["Profile"] > 0  # failed over from it
        assert started_alone == []

        # A call nobody awaits still starts in a task of its own.
        unawaited = stub.Profile(user_pb2.ProfileRequest(id=7), timeout=5)
        await eventually(lambda: unawaited.done(), 5, "unawaited call done")
        assert started_alone == [unawaited]


async def test_a_timeout_around_a_call_cancels_it(cluster: Cluster) -> None:
    await cluster.add("slow")
    service = cluster.services["slow"]
    service.gate = asyncio.Event()
    async with BalancedChannel("user", cluster.discovery()) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        call = stub.Profile(user_pb2.ProfileRequest(id=1), timeout=10)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call, 0.2)
        assert call.cancelled()
        await eventually(lambda: service.in_flight == 0, 5, "server saw the cancellation")


async def test_cancelling_a_call_queued_for_a_slot_frees_nothing_it_does_not_hold(
    cluster: Cluster,
) -> None:
    await cluster.add("q1")
    service = cluster.services["q1"]
    service.gate = asyncio.Event()
    async with BalancedChannel(
        "user", cluster.discovery(), BalancerConfig(max_in_flight_per_endpoint=1)
    ) as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        first = stub.Profile(user_pb2.ProfileRequest(id=1), timeout=10)
        await eventually(lambda: service.in_flight == 1, 5, "first call in flight")

        # Driven in wait_for's task, cancelled by another task while queued for the only
        # slot.
        queued = stub.Profile(user_pb2.ProfileRequest(id=2), timeout=10)
        waiter = asyncio.create_task(asyncio.wait_for(queued, 10))
        await asyncio.sleep(0.05)
        assert queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert queued.cancelled()

        # Driven inside this task (awaited at once), cancelled from another task.
        inline = stub.Profile(user_pb2.ProfileRequest(id=3), timeout=10)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, inline.cancel)
        with pytest.raises(asyncio.CancelledError):
            await inline
        assert await inline.code() is grpc.StatusCode.CANCELLED

        service.gate.set()
        assert (await first).user.id == 1
        last = await stub.Profile(user_pb2.ProfileRequest(id=4), timeout=5)
        assert last.user.id == 4
        assert service.calls["Profile"] == 2  # the cancelled calls were never sent
        assert service.max_in_flight == 1


async def test_close_without_grace_cuts_short_a_draining_endpoint(cluster: Cluster) -> None:
    await cluster.add("d1")
    cluster.services["d1"].gate = asyncio.Event()
    discovery = cluster.discovery()
    channel = BalancedChannel("user", discovery, BalancerConfig(close_grace=60))
    call = user_pb2_grpc.UserServiceStub(channel).Profile(user_pb2.ProfileRequest(), timeout=60)
    await eventually(lambda: cluster.services["d1"].in_flight == 1, 5, "call in flight")
    discovery.set_instances([])  # d1 leaves and starts draining for up to 60 s
    await asyncio.wait_for(channel.close(), 10)
    assert await call.code() is grpc.StatusCode.CANCELLED
    cluster.services["d1"].gate.set()


class _SteppingEndpoint:
    """An endpoint channel whose state moves on between two reads, as grpc's threads may
    move a real one: CONNECTING on the first read, READY from then on."""

    def __init__(self) -> None:
        self.reads = 0

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        self.reads += 1
        if self.reads == 1:
            return grpc.ChannelConnectivity.CONNECTING
        return grpc.ChannelConnectivity.READY

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        # A READY endpoint never changes again here: waiting for a change away from READY
        # hangs, waiting for one away from CONNECTING returns at once.
        if last_observed_state is grpc.ChannelConnectivity.READY:
            await asyncio.Event().wait()

    async def close(self, grace: float | None = None) -> None:
        return None


async def test_wait_for_state_change_sees_a_state_that_moved_between_reads() -> None:
    endpoint = _SteppingEndpoint()
    instance = ServiceInstance("user", "s1", "127.0.0.1:1")
    channel = BalancedChannel(
        "user",
        StaticDiscovery("user", [instance]),
        channel_factory=lambda addr: cast(grpc.aio.Channel, endpoint),
    )
    try:
        # The aggregate state was CONNECTING when read; the endpoint is READY by the time
        # the waiter is made. The wait must end, not wait for a change away from READY.
        await asyncio.wait_for(
            channel.wait_for_state_change(grpc.ChannelConnectivity.CONNECTING), 2
        )
        assert channel.get_state() is grpc.ChannelConnectivity.READY
    finally:
        await channel.close()
