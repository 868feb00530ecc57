"""The in-process state every discovery shares: a service's instances plus notification."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Iterable

from kit.registry.model import ServiceInstance
from kit.registry.port import Instances, InstancesListener

logger = logging.getLogger(__name__)


class InstanceSet:
    """The instances of one service with synchronous listeners and async change iterators.

    Concrete discoveries (etcd, in-memory, static) extend this and feed it through
    :meth:`replace`, :meth:`upsert` and :meth:`remove`; listeners only run when the set
    really changed.
    """

    def __init__(self, service: str) -> None:
        self._service = service
        self._by_id: dict[str, ServiceInstance] = {}
        self._snapshot: Instances = ()
        self._listeners: list[InstancesListener] = []
        self._change_events: set[asyncio.Event] = set()
        self._closed = False

    @property
    def service(self) -> str:
        """Name of the discovered service."""
        return self._service

    def instances(self) -> Instances:
        """The current snapshot, sorted by instance id."""
        return self._snapshot

    def get(self, instance_id: str) -> ServiceInstance | None:
        """The instance with ``instance_id``, if currently known."""
        return self._by_id.get(instance_id)

    def subscribe(self, listener: InstancesListener) -> Callable[[], None]:
        """Call ``listener(snapshot)`` after every change; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    async def changes(self) -> AsyncGenerator[Instances, None]:
        """Yield the current snapshot, then the latest one after each change, until closed."""
        event = asyncio.Event()
        self._change_events.add(event)
        try:
            while not self._closed:
                event.clear()
                yield self._snapshot
                await event.wait()
        finally:
            self._change_events.discard(event)

    def replace(self, instances: Iterable[ServiceInstance]) -> bool:
        """Make ``instances`` the whole set; returns whether anything changed."""
        by_id = {instance.instance_id: instance for instance in instances}
        if by_id == self._by_id:
            return False
        self._by_id = by_id
        self._publish()
        return True

    def upsert(self, instance: ServiceInstance) -> bool:
        """Add or update one instance; returns whether anything changed."""
        if self._by_id.get(instance.instance_id) == instance:
            return False
        self._by_id[instance.instance_id] = instance
        self._publish()
        return True

    def remove(self, instance_id: str) -> bool:
        """Drop one instance; returns whether it was present."""
        if self._by_id.pop(instance_id, None) is None:
            return False
        self._publish()
        return True

    def _close_instance_set(self) -> None:
        """End every :meth:`changes` iterator and drop listeners."""
        self._closed = True
        self._listeners.clear()
        for event in self._change_events:
            event.set()

    def _publish(self) -> None:
        self._snapshot = tuple(self._by_id[key] for key in sorted(self._by_id))
        for event in self._change_events:
            event.set()
        for listener in list(self._listeners):
            try:
                listener(self._snapshot)
            except Exception:
                # A faulty subscriber must not stop discovery from serving the others.
                logger.exception(
                    "instance listener failed", extra={"registry_service": self._service}
                )
