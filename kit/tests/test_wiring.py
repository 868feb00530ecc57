"""The pieces wired together: ServiceRunner registers in etcd and installs governance;
ServiceClients discovers, balances and fails over only the methods the protos declare
idempotent."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aetcd
import grpc
import pytest
from prometheus_client import REGISTRY

from kit.config import ClientSettings, GrpcServiceSettings
from kit.grpcx.client import ServiceClients
from kit.grpcx.idempotency import declared_idempotent
from kit.grpcx.server import ServiceRunner
from webook.user.v1 import user_pb2, user_pb2_grpc

pytestmark = pytest.mark.integration


class _Instance(user_pb2_grpc.UserServiceServicer):
    """Answers with its own label; can be told to fail with UNAVAILABLE.

    Only Profile and Signup are implemented; the generated base answers UNIMPLEMENTED for
    the rest (mypy-protobuf's stubs declare them abstract, hence the ignore).
    """

    def __init__(self, label: str, *, broken: bool = False) -> None:
        self.label = label
        self.broken = broken
        self.calls: Counter[str] = Counter()

    async def _answer(self, method: str, context: Any) -> user_pb2.User:
        self.calls[method] += 1
        if self.broken:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "instance is broken")
        return user_pb2.User(nickname=self.label)

    async def Profile(self, request: user_pb2.ProfileRequest, context: Any) -> Any:
        return user_pb2.ProfileResponse(user=await self._answer("Profile", context))

    async def Signup(self, request: user_pb2.SignupRequest, context: Any) -> Any:
        return user_pb2.SignupResponse(user=await self._answer("Signup", context))


def _instance(label: str, *, broken: bool = False) -> _Instance:
    return _Instance(label, broken=broken)  # type: ignore[abstract]  # see _Instance


def test_idempotency_is_read_from_the_protos() -> None:
    assert declared_idempotent("/webook.user.v1.UserService/Profile")
    assert declared_idempotent("/webook.user.v1.UserService/FindOrCreateByPhone")
    assert not declared_idempotent("/webook.user.v1.UserService/Signup")
    assert not declared_idempotent("/webook.code.v1.CodeService/Verify")
    assert not declared_idempotent("/no.such.Service/Method")


@pytest.fixture
def prefix() -> str:
    return f"/test-{uuid.uuid4().hex[:8]}/services"


def _server_settings(etcd_endpoint: str, prefix: str) -> GrpcServiceSettings:
    return GrpcServiceSettings(
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=1.0,
        etcd_endpoints=[etcd_endpoint],
        registry_prefix=prefix,
        registry_ttl=2,
        deregister_drain_delay=0.5,
    )


async def _start(servicer: _Instance, settings: GrpcServiceSettings) -> ServiceRunner:
    runner = ServiceRunner("user", settings)
    runner.add_service(
        "webook.user.v1.UserService",
        user_pb2_grpc.add_UserServiceServicer_to_server,
        servicer,
    )
    await runner.start()
    return runner


@pytest.fixture
async def etcd(etcd_endpoint: str) -> AsyncIterator[aetcd.Client]:
    host, _, port = etcd_endpoint.rpartition(":")
    async with aetcd.Client(host, int(port), timeout=3) as client:
        yield client


async def _eventually(predicate: Any, within: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_runner_registers_and_deregisters_before_stopping(
    etcd_endpoint: str, prefix: str, etcd: aetcd.Client
) -> None:
    runner = await _start(_instance("a"), _server_settings(etcd_endpoint, prefix))

    async def registered() -> list[str]:
        found = await etcd.get_prefix(f"{prefix}/user/".encode())
        return [kv.value.decode() for kv in found]

    try:
        values = await registered()
        assert len(values) == 1
        assert runner.address in values[0]
    finally:
        await runner.stop()
    assert await registered() == []


async def test_runner_installs_the_governance_chain(etcd_endpoint: str, prefix: str) -> None:
    labels = {"service": "webook.user.v1.UserService", "method": "Profile", "code": "OK"}
    before = REGISTRY.get_sample_value("webook_grpc_server_handled_total", labels) or 0.0
    runner = await _start(_instance("a"), _server_settings(etcd_endpoint, prefix))
    try:
        async with grpc.aio.insecure_channel(runner.address) as channel:
            await user_pb2_grpc.UserServiceStub(channel).Profile(user_pb2.ProfileRequest(id=1))
    finally:
        await runner.stop()
    assert REGISTRY.get_sample_value("webook_grpc_server_handled_total", labels) == before + 1


async def test_clients_discover_balance_and_survive_a_graceful_stop(
    etcd_endpoint: str, prefix: str
) -> None:
    settings = _server_settings(etcd_endpoint, prefix)
    a, b = _instance("a"), _instance("b")
    runners = [await _start(a, settings), await _start(b, settings)]
    clients = ServiceClients.from_settings(
        ClientSettings(etcd_endpoints=[etcd_endpoint], registry_prefix=prefix)
    )
    try:
        stub = user_pb2_grpc.UserServiceStub(await clients.channel("user"))

        async def both_answer() -> bool:
            seen = {
                (await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=5)).user.nickname
                for _ in range(6)
            }
            return seen == {"a", "b"}

        await _eventually(both_answer, 10, "both instances discovered")
        failures: list[BaseException] = []
        stop = asyncio.Event()

        async def steady() -> None:
            while not stop.is_set():
                try:
                    await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=5)
                except grpc.aio.AioRpcError as exc:
                    failures.append(exc)
                await asyncio.sleep(0.005)

        callers = [asyncio.create_task(steady()) for _ in range(4)]
        await asyncio.sleep(0.3)
        await runners[0].stop()  # SIGTERM path: deregister, drain, stop
        answered_by_a = a.calls["Profile"]
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*callers)
        assert failures == []
        assert a.calls["Profile"] == answered_by_a
        assert b.calls["Profile"] > 0
    finally:
        await clients.close()
        for runner in runners:
            await runner.stop()


async def test_only_declared_methods_fail_over(etcd_endpoint: str, prefix: str) -> None:
    settings = _server_settings(etcd_endpoint, prefix)
    broken, healthy = _instance("broken", broken=True), _instance("healthy")
    runners = [await _start(broken, settings), await _start(healthy, settings)]
    clients = ServiceClients.from_settings(
        ClientSettings(
            etcd_endpoints=[etcd_endpoint], registry_prefix=prefix, client_breaker_enabled=False
        )
    )
    try:
        stub = user_pb2_grpc.UserServiceStub(await clients.channel("user"))

        async def both_known() -> bool:
            await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=5)
            return broken.calls["Profile"] > 0

        await _eventually(both_known, 10, "both instances discovered")
        # Profile is NO_SIDE_EFFECTS: every call succeeds, failing over from the broken one.
        for _ in range(10):
            answer = await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=5)
            assert answer.user.nickname == "healthy"
        # Signup is not declared idempotent: a call that lands on the broken instance fails
        # and is never sent again.
        outcomes: list[grpc.StatusCode] = []
        for _ in range(10):
            try:
                await stub.Signup(user_pb2.SignupRequest(email="x@y.z"), timeout=5)
                outcomes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                outcomes.append(exc.code())
        assert set(outcomes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
        assert outcomes.count(grpc.StatusCode.UNAVAILABLE) == broken.calls["Signup"] > 0
        assert broken.calls["Signup"] + healthy.calls["Signup"] == 10
    finally:
        await clients.close()
        for runner in runners:
            await runner.stop()


async def test_static_peers_override_discovery() -> None:
    runner = await _start(
        _instance("static"), GrpcServiceSettings(grpc_port=0, metrics_port=-1, shutdown_grace=0.5)
    )
    clients = ServiceClients.from_settings(ClientSettings(peers={"user": runner.address}))
    try:
        stub = user_pb2_grpc.UserServiceStub(await clients.channel("user"))
        answer = await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=5)
        assert answer.user.nickname == "static"
    finally:
        await clients.close()
        await runner.stop()


async def test_a_service_with_no_address_fails_calls_instead_of_the_process() -> None:
    clients = ServiceClients.from_settings(ClientSettings())
    try:
        stub = user_pb2_grpc.UserServiceStub(await clients.channel("user"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Profile(user_pb2.ProfileRequest(id=1), timeout=2)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await clients.close()
