"""Failure tests over real processes: instance servers in subprocesses, a real etcd.

A client keeps a steady stream of idempotent calls going while an instance is killed, an
instance is terminated, or etcd itself is stopped; the client must see no failed call.
Leases use a 2 s TTL so that expiry happens within the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aetcd
import grpc
import pytest
from prometheus_client import REGISTRY

from devstack.infra import ManagedProcess, free_port, port_in_use
from kit.balancer import BalancedChannel, BalancerConfig, balanced_channel
from kit.registry import EtcdRegistry, EtcdRegistryConfig
from kit.registry.tests.helpers import eventually
from webook.user.v1 import user_pb2, user_pb2_grpc

pytestmark = pytest.mark.integration

TTL = 2
# The scenario: etcd is unreachable for 30 s, i.e. 15 TTLs: every lease expires.
ETCD_OUTAGE_S = 30
PROFILE = "/webook.user.v1.UserService/Profile"
REPO_ROOT = Path(__file__).resolve().parents[3]


class Fleet:
    """Instance-server subprocesses sharing one registry prefix."""

    def __init__(self, etcd_endpoint: str, log_dir: Path) -> None:
        self.etcd_endpoint = etcd_endpoint
        self.prefix = f"/test-{uuid.uuid4().hex[:8]}/services"
        self.log_dir = log_dir
        self.processes: dict[str, ManagedProcess] = {}
        self.addrs: dict[str, str] = {}

    def process(self, instance_id: str) -> ManagedProcess:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "kit.balancer.tests.instance_server",
            f"--etcd={self.etcd_endpoint}",
            f"--prefix={self.prefix}",
            f"--instance-id={instance_id}",
            f"--port={port}",
            f"--ttl={TTL}",
            "--drain-delay=1.5",
            "--grace=5",
        ]
        log = self.log_dir / f"{self.prefix.strip('/').split('/')[0]}-{instance_id}.log"
        proc = ManagedProcess(
            instance_id, argv, log, ready=lambda: port_in_use(port), cwd=REPO_ROOT
        )
        self.processes[instance_id] = proc
        self.addrs[instance_id] = f"127.0.0.1:{port}"
        return proc

    async def start(self, *instance_ids: str) -> None:
        procs = [self.process(i) for i in instance_ids]
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))

    def stop_all(self) -> None:
        # Signal everyone first so the drain delays overlap, then reap one by one.
        for proc in self.processes.values():
            proc.signal(signal.SIGTERM)
        for proc in self.processes.values():
            proc.stop(grace=5)

    def registry_config(self, **overrides: Any) -> EtcdRegistryConfig:
        settings: dict[str, Any] = {"backoff_initial": 0.1, "backoff_max": 0.5}
        settings.update(overrides)
        return EtcdRegistryConfig(
            endpoint=self.etcd_endpoint, prefix=self.prefix, ttl=TTL, **settings
        )


@pytest.fixture
def fleet(etcd_endpoint: str, infra_dir: Path) -> Iterator[Fleet]:
    """Instance servers of this test; all stopped afterwards."""
    servers = Fleet(etcd_endpoint, infra_dir)
    yield servers
    servers.stop_all()


class SteadyClient:
    """Callers making back-to-back idempotent ``Profile`` calls, counting outcomes."""

    def __init__(self, channel: BalancedChannel, callers: int = 8) -> None:
        self._stub = user_pb2_grpc.UserServiceStub(channel)
        self._callers = callers
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.served: Counter[str] = Counter()
        self.failures: list[str] = []

    async def _caller(self, index: int) -> None:
        request = user_pb2.ProfileRequest(id=index)
        while not self._stop.is_set():
            try:
                response = await self._stub.Profile(request, timeout=3)
            except grpc.aio.AioRpcError as error:
                self.failures.append(f"{error.code().name}: {error.details()}")
                await asyncio.sleep(0.01)
            else:
                self.served[response.user.nickname] += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SteadyClient]:
        self._tasks = [asyncio.create_task(self._caller(i)) for i in range(self._callers)]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*self._tasks)

    async def keeps_serving(self, *names: str) -> None:
        """Wait until each of ``names`` has served more calls than now."""
        before = {name: self.served[name] for name in names}
        await eventually(
            lambda: all(self.served[n] > before[n] for n in names), 10, f"{names} serving"
        )


def balancer_config() -> BalancerConfig:
    return BalancerConfig(idempotent_methods=frozenset({PROFILE}), close_grace=2)


def ejections_of(addr: str) -> float:
    value = REGISTRY.get_sample_value(
        "webook_balancer_ejections_total", {"service": "user", "endpoint": addr}
    )
    return value or 0.0


def endpoint_ids(channel: BalancedChannel) -> set[str]:
    return {endpoint.key for endpoint in channel.endpoints()}


async def test_sigkill_instance_is_ejected_then_expires_without_failed_calls(
    fleet: Fleet,
) -> None:
    await fleet.start("k1", "k2", "k3")
    victim = fleet.addrs["k1"]
    ejections_before = ejections_of(victim)
    async with EtcdRegistry(fleet.registry_config()) as registry:
        channel = await balanced_channel("user", registry, balancer_config())
        async with channel:
            await eventually(lambda: endpoint_ids(channel) == {"k1", "k2", "k3"}, 10, "fleet")
            async with SteadyClient(channel).running() as client:
                await client.keeps_serving("k1", "k2", "k3")
                fleet.processes["k1"].kill()
                await eventually(lambda: ejections_of(victim) > ejections_before, 10, "ejection")
                # The lease is no longer refreshed: the instance leaves discovery.
                await eventually(lambda: endpoint_ids(channel) == {"k2", "k3"}, 10, "expiry")
                await client.keeps_serving("k2", "k3")
            assert client.failures == []


async def test_sigterm_instance_leaves_discovery_before_it_stops_serving(
    fleet: Fleet,
) -> None:
    await fleet.start("t1", "t2", "t3")
    async with EtcdRegistry(fleet.registry_config()) as registry:
        channel = await balanced_channel("user", registry, balancer_config())
        observer = await registry.discover("user")
        left = asyncio.Event()
        observer.subscribe(
            lambda instances: left.set() if all(i.instance_id != "t1" for i in instances) else None
        )
        async with channel, grpc.aio.insecure_channel(fleet.addrs["t1"]) as direct:
            await eventually(lambda: endpoint_ids(channel) == {"t1", "t2", "t3"}, 10, "fleet")
            async with SteadyClient(channel).running() as client:
                await client.keeps_serving("t1", "t2", "t3")
                fleet.processes["t1"].signal(signal.SIGTERM)
                await asyncio.wait_for(left.wait(), 10)
                # Gone from discovery, yet still accepting calls (it is draining).
                response = await user_pb2_grpc.UserServiceStub(direct).Profile(
                    user_pb2.ProfileRequest(id=1), timeout=3
                )
                assert response.user.nickname == "t1"
                await eventually(lambda: "t1" not in endpoint_ids(channel), 5, "channel update")
                process = fleet.processes["t1"].process
                assert process is not None
                assert await asyncio.to_thread(process.wait, 15) == 0
                await client.keeps_serving("t2", "t3")
            assert client.failures == []
        await observer.close()


# 40 s of an etcd outage: failure injection, in make chaos (make test's budget is 15 min).
@pytest.mark.chaos
async def test_calls_survive_an_etcd_outage_and_instances_register_again(
    fleet: Fleet, etcd_server: ManagedProcess, etcd_endpoint: str
) -> None:
    """etcd is down for 30 s (15 TTLs): clients keep the last known endpoints meanwhile."""
    await fleet.start("e1", "e2", "e3")
    keys = {i: f"{fleet.prefix}/user/{i}".encode() for i in ("e1", "e2", "e3")}
    host, _, port = etcd_endpoint.rpartition(":")
    async with EtcdRegistry(fleet.registry_config()) as registry:
        channel = await balanced_channel("user", registry, balancer_config())
        async with channel:
            await eventually(lambda: endpoint_ids(channel) == set(keys), 10, "fleet")
            async with SteadyClient(channel).running() as client:
                await client.keeps_serving("e1", "e2", "e3")
                try:
                    etcd_server.stop()
                    for _ in range(ETCD_OUTAGE_S // TTL):
                        await asyncio.sleep(TTL)
                        await client.keeps_serving("e1", "e2", "e3")
                        assert endpoint_ids(channel) == set(keys)
                finally:
                    if not etcd_server.alive():
                        await asyncio.to_thread(etcd_server.start)
                restarted = asyncio.get_running_loop().time()

                async with aetcd.Client(host, int(port), timeout=3) as etcd:

                    async def all_registered_with_live_leases() -> bool:
                        for key in keys.values():
                            stored = await etcd.get(key)
                            if stored is None:
                                return False
                            if (await etcd.get_lease_info(stored.lease, keys=False)).TTL <= 0:
                                return False
                        return True

                    await eventually(all_registered_with_live_leases, TTL + 1.5, "re-registered")

                    await fleet.start("e4")
                    await eventually(lambda: "e4" in endpoint_ids(channel), 10, "new instance")
                    await client.keeps_serving("e4")

                    # Well past what the restored leases would live without refreshes.
                    remaining = restarted + 3 * TTL + 1 - asyncio.get_running_loop().time()
                    await asyncio.sleep(max(0.0, remaining))
                    assert await all_registered_with_live_leases()
                    await client.keeps_serving("e1", "e2", "e3", "e4")
            assert client.failures == []
