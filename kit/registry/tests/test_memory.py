"""Unit tests of the instance model, the in-memory registry and static discovery."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kit.registry import (
    InMemoryRegistry,
    InvalidInstanceError,
    ServiceInstance,
    StaticDiscovery,
    instance_key,
    new_instance_id,
)
from kit.registry.port import Instances, Registry


def test_instance_value_round_trip_and_key_layout() -> None:
    instance = ServiceInstance("user", "u-1", "10.0.0.1:9000", 3, "zone-a", "1.2.0")
    raw = instance.encode_value()
    assert raw == b'{"addr":"10.0.0.1:9000","weight":3,"zone":"zone-a","version":"1.2.0"}'
    assert ServiceInstance.decode("user", "u-1", raw) == instance
    assert ServiceInstance.decode("user", "u-1", b'{"addr":"h:1"}').weight == 1
    assert instance_key("/webook/services", instance) == "/webook/services/user/u-1"


@pytest.mark.parametrize(
    "raw", [b"not json", b"[1]", b'{"weight":1}', b'{"addr":"h:1","weight":0}', b'{"addr":1}']
)
def test_malformed_values_are_rejected(raw: bytes) -> None:
    with pytest.raises(InvalidInstanceError):
        ServiceInstance.decode("user", "u-1", raw)


def test_instance_validation() -> None:
    with pytest.raises(InvalidInstanceError):
        ServiceInstance("user", "a/b", "h:1")
    with pytest.raises(InvalidInstanceError):
        ServiceInstance("user", "a", "h:1", weight=True)
    assert new_instance_id() != new_instance_id()


async def test_in_memory_registry_discovers_registrations_and_notifies() -> None:
    registry: Registry = InMemoryRegistry()
    a = ServiceInstance("user", "a", "h:1")
    b = ServiceInstance("user", "b", "h:2", weight=2)
    await registry.register(a)
    discovery = await registry.discover("user")
    assert discovery.instances() == (a,)

    seen: list[Instances] = []
    unsubscribe = discovery.subscribe(seen.append)
    await registry.register(b)
    await registry.register(b)  # no change, no notification
    await registry.register(ServiceInstance("comment", "c", "h:3"))
    await registry.deregister(a)
    unsubscribe()
    await registry.register(a)
    assert seen == [(a, b), (b,)]
    assert discovery.instances() == (a, b)
    await discovery.close()
    await registry.close()


async def test_changes_iterator_yields_latest_snapshot_and_ends_on_close() -> None:
    discovery = StaticDiscovery.from_addresses("user", ["h:1"])
    snapshots: list[Instances] = []

    async def consume() -> None:
        async with contextlib.aclosing(discovery.changes()) as changes:
            async for snapshot in changes:
                snapshots.append(snapshot)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    discovery.set_instances([ServiceInstance("user", "h:2", "h:2")])
    await asyncio.sleep(0)
    await discovery.close()
    await asyncio.wait_for(consumer, 5)
    assert [[i.addr for i in s] for s in snapshots] == [["h:1"], ["h:2"]]


async def test_failing_listener_does_not_stop_the_others() -> None:
    discovery = StaticDiscovery("user")
    seen: list[int] = []

    def broken(_: Instances) -> None:
        raise RuntimeError("listener bug")

    discovery.subscribe(broken)
    discovery.subscribe(lambda snapshot: seen.append(len(snapshot)))
    discovery.set_instances([ServiceInstance("user", "a", "h:1")])
    assert seen == [1]
    await discovery.close()
