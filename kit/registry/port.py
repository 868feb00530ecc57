"""The registry port: what servers and clients need from a service registry.

Servers :meth:`Registry.register` themselves once they listen and
:meth:`Registry.deregister` on shutdown, before draining in-flight calls. Clients call
:meth:`Registry.discover` to obtain a :class:`Discovery`: the live set of a service's
instances plus change notification. Adapters: :class:`kit.registry.etcd.EtcdRegistry`
(production) and :class:`kit.registry.memory.InMemoryRegistry` (tests).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Protocol

from kit.registry.model import ServiceInstance

Instances = tuple[ServiceInstance, ...]
"""A snapshot of a service's instances, sorted by instance id."""

InstancesListener = Callable[[Instances], None]
"""Called synchronously with the new snapshot after every change."""


class Discovery(Protocol):
    """The current instances of one service, kept up to date in the background.

    A discovery never drops instances because the registry is unreachable: it keeps the last
    known set until the registry says otherwise.
    """

    @property
    def service(self) -> str:
        """Name of the discovered service."""
        ...

    def instances(self) -> Instances:
        """The current snapshot (sorted by instance id)."""
        ...

    def subscribe(self, listener: InstancesListener) -> Callable[[], None]:
        """Call ``listener`` after every change; returns a function that unsubscribes."""
        ...

    def changes(self) -> AsyncGenerator[Instances, None]:
        """Yield the current snapshot, then the latest one after each change.

        Intermediate snapshots may be skipped when the consumer is slower than the changes.
        The iterator ends when the discovery is closed.
        """
        ...

    async def close(self) -> None:
        """Stop watching and release resources; idempotent."""
        ...


class Registry(Protocol):
    """Where servers announce themselves and clients find them."""

    async def register(self, instance: ServiceInstance) -> None:
        """Announce ``instance`` (already listening) and keep it announced until deregistered."""
        ...

    async def deregister(self, instance: ServiceInstance) -> None:
        """Withdraw ``instance``; quick and bounded in time even if the registry is down."""
        ...

    async def discover(self, service: str) -> Discovery:
        """Start discovering ``service``; the caller closes the returned discovery."""
        ...

    async def close(self) -> None:
        """Deregister what is still registered, close discoveries, release connections."""
        ...
