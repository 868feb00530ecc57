"""gRPC server bootstrap: one :class:`ServiceRunner` per service process.

It owns the ``grpc.aio`` server with the standard health service, reflection, the
interceptor chain, the ``/metrics`` endpoint, and the shutdown sequence (STYLE.md §11):

1. health → NOT_SERVING, so probes and balancers stop sending new calls;
2. deregister from the registry, so clients drop this instance;
3. run the hooks registered with :meth:`ServiceRunner.on_shutdown` (stop consumers and
   background workers), in reverse order of registration;
4. ``server.stop(grace)``: in-flight calls get ``grace`` seconds to finish;
5. run the hooks registered with :meth:`ServiceRunner.on_close` (close pools), in reverse
   order — only now, so calls still draining in step 4 keep their database and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from kit.config import GrpcServiceSettings
from kit.governance import (
    GovernanceConfig,
    GovernedServerInterceptor,
    SheddingConfig,
    aclose_interceptors,
)
from kit.grpcx.errors import ErrorMappingInterceptor, ServerInterceptorBase, map_handler_error
from kit.grpcx.registration import RegistryRegistration
from kit.observability.metrics import MetricsEndpoint, serve_metrics
from kit.registry import EtcdRegistry, EtcdRegistryConfig

logger = logging.getLogger(__name__)

ShutdownHook = Callable[[], Awaitable[None]]


class Registration(Protocol):
    """What the runner needs from the service registry."""

    async def register(self, addr: str) -> None:
        """Announce this instance at ``addr``."""

    async def deregister(self) -> None:
        """Withdraw the announcement (quick; must not hang when the registry is down)."""

    async def close(self) -> None:
        """Release the registry connection."""


def registration_from_settings(name: str, settings: GrpcServiceSettings) -> Registration | None:
    """An etcd registration when the settings name etcd endpoints and allow registering."""
    if not (settings.register_instance and settings.etcd_endpoints):
        return None
    registry = EtcdRegistry(
        EtcdRegistryConfig(
            endpoint=settings.etcd_endpoints[0],
            prefix=settings.registry_prefix,
            ttl=settings.registry_ttl,
        )
    )
    return RegistryRegistration(
        name,
        registry,
        weight=settings.instance_weight,
        zone=settings.instance_zone,
        version=settings.instance_version,
        drain_delay=settings.deregister_drain_delay,
    )


def governance_from_settings(settings: GrpcServiceSettings) -> GovernanceConfig:
    """The server-side governance configuration of a service process."""
    shed = settings.shed_max_in_flight
    shedding = (
        SheddingConfig(max_in_flight=shed, cpu_in_flight_floor=min(64, shed))
        if shed > 0
        else SheddingConfig(enabled=False)
    )
    return GovernanceConfig(shedding=shedding)


class ServiceRunner:
    """Builds, starts and gracefully stops one gRPC service process.

    Unless given explicitly, the registration comes from the settings (etcd when
    ``etcd_endpoints`` is set) and the governance (tracing, metrics, shedding, deadlines)
    precedes any extra ``interceptors``; error mapping is always innermost. Governance runs
    as one fused interceptor (:class:`kit.governance.GovernedServerInterceptor`); without
    extra interceptors error mapping is its innermost step, otherwise it stays a separate
    interceptor after them, so the order is the same either way.
    """

    def __init__(
        self,
        name: str,
        settings: GrpcServiceSettings,
        *,
        interceptors: Sequence[ServerInterceptorBase] = (),
        registration: Registration | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.name = name
        self.settings = settings
        self.registration = (
            registration if registration is not None else registration_from_settings(name, settings)
        )
        # Error mapping is innermost so every other interceptor sees the final status.
        chain: list[ServerInterceptorBase]
        if interceptors:
            governance = GovernedServerInterceptor(governance_from_settings(settings))
            chain = [governance, *interceptors, ErrorMappingInterceptor()]
        else:
            governance = GovernedServerInterceptor(
                governance_from_settings(settings), error_mapper=map_handler_error
            )
            chain = [governance]
        self._governance = [governance]
        self.server = grpc.aio.server(
            interceptors=chain, options=[("grpc.so_reuseport", 0), *options]
        )
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names: list[str] = [
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        ]
        self._hooks: list[ShutdownHook] = []
        self._close_hooks: list[ShutdownHook] = []
        self._metrics: MetricsEndpoint | None = None
        self.port = 0
        self._stopped = asyncio.Event()

    @property
    def address(self) -> str:
        """The address other processes dial."""
        host = self.settings.advertise_host or self.settings.grpc_host
        return f"{host}:{self.port}"

    def add_service(
        self, full_name: str, add_to_server: Callable[[Any, grpc.aio.Server], None], servicer: Any
    ) -> None:
        """Mount ``servicer`` (generated ``add_XServicer_to_server`` and the proto full name)."""
        add_to_server(servicer, self.server)
        self._service_names.append(full_name)

    def on_shutdown(self, hook: ShutdownHook) -> None:
        """Run ``hook`` before in-flight calls drain (stop consumers, workers)."""
        self._hooks.append(hook)

    def on_close(self, hook: ShutdownHook) -> None:
        """Run ``hook`` after in-flight calls drained (close pools and clients)."""
        self._close_hooks.append(hook)

    async def start(self) -> int:
        """Listen, mark every service SERVING, expose metrics, then register."""
        reflection.enable_server_reflection(
            [*self._service_names, reflection.SERVICE_NAME], self.server
        )
        bind = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        self.port = self.server.add_insecure_port(bind)
        if self.port == 0:
            raise OSError(f"cannot listen on {bind}: address in use or not available")
        await self.server.start()
        for service in [*self._service_names, ""]:
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._metrics = serve_metrics(self.settings.metrics_port, self.settings.metrics_host)
        if self.registration is not None:
            await self.registration.register(self.address)
        logger.info(
            "service started",
            extra={
                "grpc_addr": self.address,
                "metrics_port": self._metrics.port if self._metrics else None,
            },
        )
        return self.port

    async def stop(self) -> None:
        """The graceful shutdown sequence; safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        logger.info("service stopping", extra={"grace_s": self.settings.shutdown_grace})
        await self.health.enter_graceful_shutdown()
        if self.registration is not None:
            try:
                await self.registration.deregister()
            except Exception:
                logger.exception("deregistration failed; the lease will expire instead")
        await self._run_hooks(self._hooks)
        await self.server.stop(self.settings.shutdown_grace)
        await aclose_interceptors(self._governance)
        if self.registration is not None:
            await self.registration.close()
        await self._run_hooks(self._close_hooks)
        if self._metrics is not None:
            self._metrics.close()
        logger.info("service stopped")

    @staticmethod
    async def _run_hooks(hooks: list[ShutdownHook]) -> None:
        for hook in reversed(hooks):
            try:
                await hook()
            except Exception:
                logger.exception("shutdown hook failed")

    async def serve(self) -> None:
        """Start, then run until SIGTERM or SIGINT, then stop gracefully."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_requested.set)
        try:
            await self.start()
            await stop_requested.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)
            await self.stop()


class Startable(Protocol):
    """Background work started before a server accepts calls (an event producer)."""

    def start(self) -> None:
        """Start in the running event loop; must not block."""
        ...


ProducerT = TypeVar("ProducerT", bound=Startable)


class ProducingServiceRunner(ServiceRunner, Generic[ProducerT]):
    """A service that publishes events: its producer starts before the server accepts calls.

    Stopping the producer (flushing what it buffered) is the composition root's ``on_close``
    hook, after in-flight calls have drained.
    """

    def __init__(
        self,
        name: str,
        settings: GrpcServiceSettings,
        producer: ProducerT,
        *,
        registration: Registration | None = None,
        interceptors: Sequence[ServerInterceptorBase] = (),
    ) -> None:
        super().__init__(name, settings, registration=registration, interceptors=interceptors)
        self.producer = producer

    async def start(self) -> int:
        """Start the producer, then listen, serve and register."""
        self.producer.start()
        return await super().start()
