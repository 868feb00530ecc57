"""Integration tests of the etcd registry against a real etcd (session fixture)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import aetcd
import pytest

from devstack.credentials import SecureEtcd
from devstack.infra import etcd_process, free_port
from kit.registry import EtcdRegistry, EtcdRegistryConfig, ServiceInstance, instance_key
from kit.registry.etcd import EtcdDiscovery
from kit.registry.tests.helpers import TcpProxy, eventually

pytestmark = pytest.mark.integration


def make_config(endpoint: str, prefix: str, **overrides: Any) -> EtcdRegistryConfig:
    settings: dict[str, Any] = {"ttl": 2, "backoff_initial": 0.1, "backoff_max": 0.5}
    settings.update(overrides)
    return EtcdRegistryConfig(endpoint=endpoint, prefix=prefix, **settings)


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test only."""
    return f"/test-{uuid.uuid4().hex[:8]}/services"


def raw_client(endpoint: str) -> aetcd.Client:
    host, _, port = endpoint.rpartition(":")
    return aetcd.Client(host, int(port), timeout=3)


def ids(discovery: EtcdDiscovery) -> set[str]:
    return {instance.instance_id for instance in discovery.instances()}


async def test_register_discover_update_deregister(etcd_endpoint: str, prefix: str) -> None:
    u1 = ServiceInstance("user", "u1", "127.0.0.1:7001", weight=2, zone="z1", version="1.0")
    u2 = ServiceInstance("user", "u2", "127.0.0.1:7002")
    async with (
        EtcdRegistry(make_config(etcd_endpoint, prefix)) as servers,
        EtcdRegistry(make_config(etcd_endpoint, prefix)) as clients,
        raw_client(etcd_endpoint) as etcd,
    ):
        await servers.register(u1)
        await servers.register(u2)
        discovery = await clients.discover("user")
        assert discovery.instances() == (u1, u2)

        stored = await etcd.get(f"{prefix}/user/u1".encode())
        assert stored.value == u1.encode_value()
        assert stored.lease != 0

        await servers.deregister(u1)
        await eventually(lambda: ids(discovery) == {"u2"}, 5, "u1 gone from discovery")
        assert await etcd.get(f"{prefix}/user/u1".encode()) is None

        heavier = ServiceInstance("user", "u2", "127.0.0.1:7002", weight=5)
        await servers.register(heavier)
        await eventually(lambda: discovery.instances() == (heavier,), 5, "new weight seen")

    async with raw_client(etcd_endpoint) as etcd:
        assert not await etcd.get_prefix(prefix.encode())  # closing revoked the lease


async def test_lost_lease_is_replaced_and_instance_registered_again(
    etcd_endpoint: str, prefix: str
) -> None:
    u1 = ServiceInstance("user", "u1", "127.0.0.1:7001")
    key = f"{prefix}/user/u1".encode()
    async with (
        EtcdRegistry(make_config(etcd_endpoint, prefix)) as registry,
        raw_client(etcd_endpoint) as etcd,
    ):
        await registry.register(u1)
        first_lease = (await etcd.get(key)).lease
        await etcd.revoke_lease(first_lease)  # as if the lease had expired
        assert await etcd.get(key) is None

        async def registered_under_new_lease() -> bool:
            stored = await etcd.get(key)
            return stored is not None and stored.lease not in (0, first_lease)

        await eventually(registered_under_new_lease, 5, "registered again under a new lease")


async def test_watch_resumes_from_last_revision_and_relists_after_compaction(
    etcd_endpoint: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kit.registry.etcd")
    proxy = TcpProxy(etcd_endpoint)
    await proxy.start()
    u1, u2, u3, u4 = (ServiceInstance("user", f"u{i}", f"127.0.0.1:700{i}") for i in range(1, 5))
    remote = ServiceInstance("user", "remote", "127.0.0.1:7100")
    try:
        async with (
            EtcdRegistry(make_config(etcd_endpoint, prefix)) as servers,
            EtcdRegistry(make_config(proxy.address, prefix)) as behind_proxy,
            raw_client(etcd_endpoint) as etcd,
        ):
            await servers.register(u1)
            await servers.register(u2)
            await behind_proxy.register(remote)
            discovery = await behind_proxy.discover("user")
            assert ids(discovery) == {"u1", "u2", "remote"}

            # Phase 1: the watch breaks, changes happen, the watch resumes where it stopped.
            proxy.cut()
            await servers.deregister(u2)
            await servers.register(u3)
            await eventually(lambda: not discovery.watching, 5, "watch broken")
            assert ids(discovery) == {"u1", "u2", "remote"}  # last known set kept
            proxy.restore()
            await eventually(
                lambda: ids(discovery) == {"u1", "u3", "remote"}, 10, "resumed watch caught up"
            )
            assert "watch resumed" in caplog.messages
            assert "cannot resume the watch; listing the prefix again" not in caplog.messages

            # Phase 2: while cut off, history is compacted past the last seen revision.
            proxy.cut()
            await servers.register(u4)
            await servers.deregister(u1)
            latest = await etcd.get_prefix(prefix.encode())
            await etcd.compact(latest.header.revision)
            await eventually(lambda: not discovery.watching, 5, "watch broken again")
            # Deregistering while etcd is unreachable returns (bounded) and does not raise.
            await behind_proxy.deregister(remote)
            assert ids(discovery) == {"u1", "u3", "remote"}
            proxy.restore()
            # The unreachable deregistration falls back on the lease: remote expires (TTL 2).
            await eventually(
                lambda: ids(discovery) == {"u3", "u4"}, 15, "re-listed after compaction"
            )
            assert "cannot resume the watch; listing the prefix again" in caplog.messages
    finally:
        await proxy.close()


async def test_relists_when_etcd_comes_back_with_an_older_revision(
    etcd_endpoint: str, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """etcd rebuilt empty (or restored from an old snapshot): revisions start over."""
    caplog.set_level(logging.INFO, logger="kit.registry.etcd")
    fresh_port = free_port()
    fresh = etcd_process(tmp_path / "data", fresh_port, free_port(), tmp_path)
    proxy = TcpProxy(etcd_endpoint)
    await proxy.start()
    try:
        await asyncio.to_thread(fresh.start)
        async with (
            EtcdRegistry(make_config(etcd_endpoint, prefix)) as servers,
            EtcdRegistry(make_config(proxy.address, prefix)) as clients,
        ):
            for n in range(5):  # make sure the old cluster is well ahead in revisions
                await servers.register(ServiceInstance("user", f"old{n}", f"127.0.0.1:71{n:02}"))
            discovery = await clients.discover("user")
            assert len(ids(discovery)) == 5

            proxy.cut()
            await eventually(lambda: not discovery.watching, 5, "watch broken")
            async with raw_client(f"127.0.0.1:{fresh_port}") as etcd:
                rebuilt = ServiceInstance("user", "new", "127.0.0.1:7200")
                await etcd.put(f"{prefix}/user/new".encode(), rebuilt.encode_value())
            proxy.retarget(f"127.0.0.1:{fresh_port}")
            proxy.restore()
            await eventually(lambda: ids(discovery) == {"new"}, 10, "state of the new cluster")
            assert "etcd revision went backwards; listing the prefix again" in caplog.messages
    finally:
        await proxy.close()
        await asyncio.to_thread(fresh.stop)


async def test_credentials_log_in_again_after_etcd_forgot_the_token(
    secure_etcd: SecureEtcd,
) -> None:
    """A restarted etcd refuses the old token; the registry logs in again by itself."""
    user = secure_etcd.credentials.workload("user")
    root = secure_etcd.credentials.etcd_root
    prefix = secure_etcd.registry_prefix
    run = uuid.uuid4().hex[:8]
    first = ServiceInstance("user", f"a-{run}", "127.0.0.1:7001")
    second = ServiceInstance("user", f"b-{run}", "127.0.0.1:7002")
    config = make_config(
        secure_etcd.endpoint, prefix, username=user.username, password=user.password
    )
    async with EtcdRegistry(config) as registry:
        await registry.register(first)
        discovery = await registry.discover("user")
        assert f"a-{run}" in ids(discovery)

        await asyncio.to_thread(secure_etcd.server.stop)
        await asyncio.to_thread(secure_etcd.server.start)

        await registry.register(second)
        await eventually(lambda: f"b-{run}" in ids(discovery), 30, "second instance discovered")
        host, _, port = secure_etcd.endpoint.rpartition(":")
        async with aetcd.Client(
            host, int(port), username=root.username, password=root.password, timeout=3
        ) as etcd:
            stored = await etcd.get(instance_key(prefix, second).encode())
            assert stored is not None
            assert stored.value == second.encode_value()


def test_credentials_go_together() -> None:
    with pytest.raises(ValueError, match="both or neither"):
        EtcdRegistryConfig(username="user")
    assert "secret" not in repr(EtcdRegistryConfig(username="user", password="secret"))
