"""In-memory registry and static discovery: fakes for tests and fixed configuration.

:class:`InMemoryRegistry` implements :class:`kit.registry.port.Registry` inside one process
(no leases: an instance stays until deregistered). :class:`StaticDiscovery` is a discovery
over a fixed list of addresses, updatable by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kit.registry.instances import InstanceSet
from kit.registry.model import ServiceInstance


class StaticDiscovery(InstanceSet):
    """A discovery whose instances are given, not watched (tests, static config)."""

    def __init__(self, service: str, instances: Iterable[ServiceInstance] = ()) -> None:
        super().__init__(service)
        self.replace(instances)

    @classmethod
    def from_addresses(
        cls, service: str, addresses: Iterable[str], weight: int = 1
    ) -> StaticDiscovery:
        """One instance per ``host:port``, the address doubling as instance id."""
        return cls(service, (ServiceInstance(service, a, a, weight) for a in addresses))

    def set_instances(self, instances: Iterable[ServiceInstance]) -> None:
        """Replace the whole set (listeners are told if it changed)."""
        self.replace(instances)

    async def close(self) -> None:
        """End change iterators; idempotent."""
        self._close_instance_set()


class InMemoryDiscovery(InstanceSet):
    """A discovery fed by an :class:`InMemoryRegistry`."""

    def __init__(self, service: str, on_close: Callable[[InMemoryDiscovery], None]) -> None:
        super().__init__(service)
        self._on_close = on_close

    async def close(self) -> None:
        """Stop receiving updates; idempotent."""
        self._on_close(self)
        self._close_instance_set()


class InMemoryRegistry:
    """A process-local :class:`~kit.registry.port.Registry` for unit tests."""

    def __init__(self) -> None:
        self._services: dict[str, dict[str, ServiceInstance]] = {}
        self._discoveries: dict[str, list[InMemoryDiscovery]] = {}

    async def register(self, instance: ServiceInstance) -> None:
        """Add or update ``instance``."""
        self._services.setdefault(instance.service, {})[instance.instance_id] = instance
        self._publish(instance.service)

    async def deregister(self, instance: ServiceInstance) -> None:
        """Remove ``instance`` if registered."""
        if self._services.get(instance.service, {}).pop(instance.instance_id, None) is not None:
            self._publish(instance.service)

    async def discover(self, service: str) -> InMemoryDiscovery:
        """A discovery of ``service`` that follows register/deregister immediately."""
        discovery = InMemoryDiscovery(service, self._forget)
        discovery.replace(self._services.get(service, {}).values())
        self._discoveries.setdefault(service, []).append(discovery)
        return discovery

    def registered(self, service: str) -> tuple[ServiceInstance, ...]:
        """What is registered for ``service`` right now (sorted by instance id)."""
        instances = self._services.get(service, {})
        return tuple(instances[key] for key in sorted(instances))

    async def close(self) -> None:
        """Forget every instance and close every discovery."""
        self._services.clear()
        for discoveries in list(self._discoveries.values()):
            for discovery in list(discoveries):
                await discovery.close()

    def _publish(self, service: str) -> None:
        instances = self._services.get(service, {}).values()
        for discovery in self._discoveries.get(service, []):
            discovery.replace(instances)

    def _forget(self, discovery: InMemoryDiscovery) -> None:
        discoveries = self._discoveries.get(discovery.service, [])
        if discovery in discoveries:
            discoveries.remove(discovery)
