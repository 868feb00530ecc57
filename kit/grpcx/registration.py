"""Announce a running server in the service registry, and withdraw it before draining."""

from __future__ import annotations

import asyncio
import logging

from kit.registry import Registry, ServiceInstance, new_instance_id

logger = logging.getLogger(__name__)


class RegistryRegistration:
    """Registers one server instance; used by :class:`kit.grpcx.server.ServiceRunner`.

    ``deregister`` withdraws the instance and then waits ``drain_delay`` seconds, so that
    clients watching the registry stop picking this instance before it stops accepting
    calls (the runner drains in-flight calls right after).
    """

    def __init__(
        self,
        service: str,
        registry: Registry,
        *,
        weight: int = 1,
        zone: str = "",
        version: str = "",
        drain_delay: float = 1.0,
    ) -> None:
        self.service = service
        self.registry = registry
        self.weight = weight
        self.zone = zone
        self.version = version
        self.drain_delay = drain_delay
        self.instance: ServiceInstance | None = None

    async def register(self, addr: str) -> None:
        """Put this instance under a kept-alive lease."""
        self.instance = ServiceInstance(
            self.service, new_instance_id(), addr, self.weight, self.zone, self.version
        )
        await self.registry.register(self.instance)
        logger.info(
            "registered",
            extra={"instance_id": self.instance.instance_id, "addr": addr, "weight": self.weight},
        )

    async def deregister(self) -> None:
        """Withdraw the instance (bounded even when the registry is down), then wait."""
        if self.instance is None:
            return
        await self.registry.deregister(self.instance)
        logger.info("deregistered", extra={"instance_id": self.instance.instance_id})
        self.instance = None
        await asyncio.sleep(self.drain_delay)

    async def close(self) -> None:
        """Release the registry connection."""
        await self.registry.close()
