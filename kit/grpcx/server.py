"""gRPC server bootstrap: one :class:`ServiceRunner` per service process.

It owns the ``grpc.aio`` server with the standard health service, reflection, the
governance interceptor, the ``/metrics`` endpoint, the background components of the process
and the shutdown sequence.

Start-up: components registered with :meth:`ServiceRunner.start_before_serving` start (an
event producer, an index writer: what calls need), then the server listens, registers and
reports SERVING (in that order: whoever waits for SERVING can find the process in the
registry), then components registered with
:meth:`ServiceRunner.start_after_serving` start (consumers, workers: what feeds on the
running service). A component that fails to start makes the runner stop everything
already started, then the error propagates.

Readiness gate: a process whose answers are wrong until some work is done (a search
replica rebuilding its index, a consumer catching up) registers conditions with
:meth:`ServiceRunner.ready_when`. It then listens and starts every component as above, but
answers health NOT_SERVING and stays out of the registry until every condition is met;
only then does it register and report SERVING. Once ready it stays ready: what happens
later (a lag) is for metrics and alerts, not for flapping in and out of the balancers.
Without conditions nothing changes.

Shutdown, the reverse (nested like the start, so nothing stops before what depends on it):

1. health → NOT_SERVING, so probes and balancers stop sending new calls;
2. deregister from the registry, so clients drop this instance;
3. stop the components started after serving, then run the hooks registered with
   :meth:`ServiceRunner.on_shutdown`, each in reverse order of registration;
4. ``server.stop(grace)``: in-flight calls get ``grace`` seconds to finish;
5. stop the components started before serving, in reverse order (the producer flushes
   what the drained calls emitted, the index writer commits it);
6. run the hooks registered with :meth:`ServiceRunner.on_close` (close pools), in reverse
   order — only now, so calls still draining in step 4 keep their database and Redis.

Live settings: a process with etcd endpoints gets a
:class:`~kit.liveconfig.LiveSettings` (:attr:`ServiceRunner.live`, ``None`` without etcd),
started first, so every component starts on the live values, and stopped last. It applies
the log level, the trace sample ratio and the load-shedding bound (``shed_max_in_flight``,
given to the governance interceptor's shedder: the next call is admitted by the new bound,
calls in flight keep their slot) itself; components read ``runner.live.current`` or
subscribe to changes (:func:`kit.grpcx.process.wire_clients` makes the outbound channels
follow ``client_tuning``).

Transport: plaintext by default; with the TLS settings set, mutual TLS (a client
certificate signed by the CA is required; the certificate files are reloaded when they
change, :mod:`kit.security.tls`), plus an optional plaintext ``grpc_probe_port`` for
Kubernetes' gRPC probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

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
from kit.governance.authz import Authorizer
from kit.grpcx.errors import ServerInterceptorBase, add_guarded, map_handler_error
from kit.grpcx.registration import RegistryRegistration
from kit.liveconfig import LiveSettings, live_settings_for
from kit.observability.metrics import MetricsEndpoint, serve_metrics
from kit.registry import EtcdRegistry, EtcdRegistryConfig
from kit.security.tls import ServerTls, TlsFiles

logger = logging.getLogger(__name__)

ShutdownHook = Callable[[], Awaitable[None]]
ReadinessWait = Callable[[], Awaitable[object]]
"""Waits until a readiness condition holds (retrying what fails meanwhile by itself)."""
Step = Callable[[], Awaitable[None] | None]
"""A start or stop step of a component: a plain function or a coroutine function."""

T = TypeVar("T")
SettingsT = TypeVar("SettingsT", bound=GrpcServiceSettings)


class Component(Protocol):
    """Background work of a process (an event producer, a consumer, a worker).

    Either method may be ``async``. ``start`` runs in the serving event loop and must not
    block (long work goes to a task it spawns); ``stop`` ends that work and waits for it.
    """

    def start(self) -> Awaitable[None] | None:
        """Begin the work."""

    def stop(self) -> Awaitable[None] | None:
        """End the work and release what it holds."""


ComponentT = TypeVar("ComponentT", bound=Component)


@dataclass(frozen=True)
class Background:
    """A component given as two callables, e.g. ``Background(worker.start,
    partial(worker.stop, grace))`` for an object whose methods do not fit :class:`Component`."""

    start: Step
    stop: Step


async def _run_step(step: Step) -> None:
    result = step()
    if inspect.isawaitable(result):
        await result


async def run_until_signal(
    start: Callable[[], Awaitable[object]], stop: Callable[[], Awaitable[None]]
) -> None:
    """Run ``start``, wait for SIGTERM or SIGINT, then run ``stop`` (also when ``start`` fails).

    The process-level loop of :meth:`ServiceRunner.serve`, also used by commands that run
    background work without a gRPC server.
    """
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    try:
        await start()
        await stop_requested.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        await stop()


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
            username=settings.etcd_username,
            password=settings.etcd_password.get_secret_value(),
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


def _follow_shedding(
    governance: GovernedServerInterceptor,
) -> Callable[[GrpcServiceSettings, GrpcServiceSettings], None]:
    """A live-settings subscriber giving ``governance``'s shedder each new
    ``shed_max_in_flight`` (switching shedding on or off is logged and ignored there)."""

    def changed(old: GrpcServiceSettings, new: GrpcServiceSettings) -> None:
        if new.shed_max_in_flight != old.shed_max_in_flight:
            governance.reconfigure_shedding(governance_from_settings(new).shedding)

    return changed


class ServiceRunner:
    """Builds, starts and gracefully stops one gRPC service process.

    Unless given explicitly, the registration comes from the settings (etcd when
    ``etcd_endpoints`` is set) and the governance (tracing, metrics, shedding, deadlines)
    precedes any extra ``interceptors``; error mapping is always innermost. All of it runs
    as one interceptor (:class:`kit.governance.GovernedServerInterceptor`), which runs the
    extra interceptors inside its scope and the error mapping inside them.
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
        # The applied settings, following etcd (None without etcd).
        self.live: LiveSettings[GrpcServiceSettings] | None = live_settings_for(name, settings)
        self._tls_files = TlsFiles.from_settings(settings)
        # The one server interceptor: governance, then the extra interceptors, then error
        # mapping innermost, so every other step sees the final status. Under mutual TLS it
        # also checks each caller's certificate against the method's declared callers
        # (read lazily from the descriptors: services are mounted after this point).
        governance = GovernedServerInterceptor(
            governance_from_settings(settings),
            error_mapper=map_handler_error,
            inner=interceptors,
            authorizer=Authorizer() if self._tls_files is not None else None,
        )
        self._governance = [governance]
        if self.live is not None:
            self.live.subscribe(_follow_shedding(governance))
        self.server = grpc.aio.server(
            interceptors=[governance], options=[("grpc.so_reuseport", 0), *options]
        )
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names: list[str] = [
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        ]
        self._hooks: list[ShutdownHook] = []
        self._close_hooks: list[ShutdownHook] = []
        self._before_serving: list[Component] = []
        self._after_serving: list[Component] = []
        # Started components, stopped in reverse: those started after serving before the
        # drain, those started before serving after it.
        self._running_after: list[Component] = []
        self._running_before: list[Component] = []
        self._metrics: MetricsEndpoint | None = None
        self.server_tls: ServerTls | None = None
        self.port = 0
        self.probe_port = 0
        self._stopped = asyncio.Event()
        # The readiness gate: conditions by name, the task waiting for them, and whether
        # the process reported SERVING (and registered).
        self._conditions: dict[str, ReadinessWait] = {}
        self._gate: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def governance(self) -> GovernedServerInterceptor:
        """The server's one interceptor (its ``shedder`` follows ``shed_max_in_flight``)."""
        return self._governance[0]

    @property
    def tls(self) -> bool:
        """Whether the service port requires mutual TLS (the TLS settings are set)."""
        return self._tls_files is not None

    @property
    def address(self) -> str:
        """The address other processes dial."""
        host = self.settings.advertise_host or self.settings.grpc_host
        return f"{host}:{self.port}"

    def add_service(
        self, full_name: str, add_to_server: Callable[[Any, grpc.aio.Server], None], servicer: Any
    ) -> None:
        """Mount ``servicer`` (generated ``add_XServicer_to_server`` and the proto full name).

        Its unary handlers are guarded (:func:`kit.grpcx.errors.add_guarded`): request bytes
        that do not parse answer INVALID_ARGUMENT, never UNKNOWN with protobuf's text.
        """
        add_guarded(add_to_server, servicer, self.server)
        self._service_names.append(full_name)

    def settings_in_force(self, settings: SettingsT) -> Callable[[], SettingsT]:
        """The settings in force at each call: the live ones when the process follows etcd
        (:attr:`live`), else ``settings``. Components read live fields through it per use
        (a cache's TTL at each write), so a change applies to the next use."""
        live = self.live
        if live is None:
            return lambda: settings
        kind = type(settings)

        def current() -> SettingsT:
            applied = live.current
            # The runner types its live settings broadly; they are the process's own class.
            return applied if isinstance(applied, kind) else settings

        return current

    def mount(self, servicer: object) -> None:
        """Mount ``servicer``, an instance of a generated ``<Name>Servicer`` subclass.

        The proto service is found from the generated base class: its ``_pb2_grpc`` module
        gives ``add_<Name>Servicer_to_server`` and its ``_pb2`` module the full name.
        """
        for base in type(servicer).__mro__:
            module = sys.modules.get(base.__module__)
            if module is None or not base.__module__.endswith("_pb2_grpc"):
                continue
            add_to_server = getattr(module, f"add_{base.__name__}_to_server", None)
            messages = sys.modules.get(base.__module__.removesuffix("_grpc"))
            if add_to_server is None or messages is None:
                continue
            service = messages.DESCRIPTOR.services_by_name[base.__name__.removesuffix("Servicer")]
            self.add_service(service.full_name, add_to_server, servicer)
            return
        raise TypeError(f"{type(servicer).__name__} does not extend a generated servicer")

    def on_shutdown(self, hook: ShutdownHook) -> None:
        """Run ``hook`` before in-flight calls drain (stop consumers, workers)."""
        self._hooks.append(hook)

    def on_close(self, hook: ShutdownHook) -> None:
        """Run ``hook`` after in-flight calls drained (close pools and clients)."""
        self._close_hooks.append(hook)

    def start_before_serving(self, component: ComponentT) -> ComponentT:
        """Start ``component`` before the server accepts calls; stop it after they drained.

        For what calls use (an event producer, an index writer). Returns ``component``.
        """
        self._before_serving.append(component)
        return component

    def start_after_serving(self, component: ComponentT) -> ComponentT:
        """Start ``component`` once the server serves and is registered; stop it before the
        drain. For what feeds on the service (consumers, workers). Returns ``component``."""
        self._after_serving.append(component)
        return component

    def ready_when(self, condition: str, wait: ReadinessWait) -> None:
        """Report SERVING and register only once ``wait()`` returned, as every other
        condition's.

        ``wait`` runs once the server listens and the components started after serving
        run; it must not fail for a transient reason (it retries by itself): a condition
        that raises leaves the process NOT_SERVING (logged), which the orchestrator's
        readiness probe and the alerts then show. ``condition`` names it in the logs.
        """
        if condition in self._conditions:
            raise ValueError(f"readiness condition {condition!r} is already registered")
        self._conditions[condition] = wait

    @property
    def ready(self) -> bool:
        """Whether the process reported SERVING (and registered); never goes back."""
        return self._ready.is_set()

    async def wait_ready(self, within_s: float) -> bool:
        """Wait until :attr:`ready`; ``False`` after ``within_s`` seconds."""
        try:
            await asyncio.wait_for(self._ready.wait(), within_s)
        except TimeoutError:
            return False
        return True

    def component(self, kind: type[T]) -> T:
        """The first registered component of type ``kind`` (for tests and diagnostics).

        Raises :class:`LookupError` when there is none.
        """
        for component in (*self._before_serving, *self._after_serving):
            if isinstance(component, kind):
                return component
        raise LookupError(f"the {self.name} process has no {kind.__name__} component")

    async def start(self) -> int:
        """Start the components, listen, serve, register, then start the components that
        feed on the service; returns the bound port.

        With readiness conditions (:meth:`ready_when`) it returns once the components run,
        answering NOT_SERVING and unregistered until the conditions are met in the
        background. If any step fails, everything already started is stopped
        (:meth:`stop`) and the error propagates.
        """
        try:
            if self.live is not None:
                await self.live.start()
            await self._start_components(self._before_serving, self._running_before)
            port = await self._listen()
            if not self._conditions:
                await self._become_ready()
            await self._start_components(self._after_serving, self._running_after)
            if self._conditions:
                self._gate = asyncio.create_task(
                    self._await_readiness(), name=f"{self.name}-readiness"
                )
        except BaseException:
            await self.stop()
            raise
        return port

    @staticmethod
    async def _start_components(components: list[Component], running: list[Component]) -> None:
        for component in components:
            await _run_step(component.start)
            running.append(component)

    async def _listen(self) -> int:
        reflection.enable_server_reflection(
            [*self._service_names, reflection.SERVICE_NAME], self.server
        )
        bind = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        if self._tls_files is not None:
            # Loads the files now: unusable ones fail the start (TlsMaterialError).
            self.server_tls = ServerTls(self._tls_files)
            self.port = self.server.add_secure_port(bind, self.server_tls.credentials)
        else:
            self.port = self.server.add_insecure_port(bind)
        if self.port == 0:
            raise OSError(f"cannot listen on {bind}: address in use or not available")
        if self.settings.grpc_probe_port:
            # Plaintext, for probes that cannot present a certificate; the authoriser lets
            # callers without one reach only the health service.
            probe_bind = f"{self.settings.grpc_host}:{self.settings.grpc_probe_port}"
            self.probe_port = self.server.add_insecure_port(probe_bind)
            if self.probe_port == 0:
                raise OSError(f"cannot listen on {probe_bind}: address in use or not available")
        await self.server.start()
        # The health service answers SERVING for the whole server by default: until the
        # process is registered (and its readiness conditions are met), every name answers
        # NOT_SERVING, so that whoever waits for SERVING can also find it in the registry.
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._metrics = serve_metrics(self.settings.metrics_port, self.settings.metrics_host)
        logger.info(
            "service started",
            extra={
                "grpc_addr": self.address,
                "transport": "mtls" if self.tls else "plaintext",
                "probe_port": self.probe_port or None,
                "metrics_port": self._metrics.port if self._metrics else None,
                "not_ready_until": sorted(self._conditions) or None,
            },
        )
        return self.port

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for service in [*self._service_names, ""]:
            await self.health.set(service, status)

    async def _register(self) -> None:
        if self.registration is not None:
            await self.registration.register(self.address)

    async def _become_ready(self) -> None:
        """Register, then report SERVING: whoever waits for SERVING (a rolling update about
        to stop the next instance) knows that clients can find this one."""
        await self._register()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._ready.set()

    async def _await_readiness(self) -> None:
        """Wait for every readiness condition at once, then :meth:`_become_ready`."""
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def met(condition: str, wait: ReadinessWait) -> None:
            await wait()
            logger.info(
                "readiness condition met",
                extra={"condition": condition, "waited_s": round(loop.time() - started, 3)},
            )

        try:
            async with asyncio.TaskGroup() as conditions:
                for condition, wait in self._conditions.items():
                    conditions.create_task(met(condition, wait), name=f"ready-when-{condition}")
            await self._become_ready()
        except Exception:
            await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
            logger.exception(
                "becoming ready failed; the service stays NOT_SERVING and unregistered",
                extra={"conditions": sorted(self._conditions)},
            )
            return
        logger.info(
            "service ready",
            extra={
                "grpc_addr": self.address,
                "conditions": sorted(self._conditions),
                "waited_s": round(loop.time() - started, 3),
            },
        )

    async def stop(self) -> None:
        """The graceful shutdown sequence; safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        logger.info(
            "service stopping", extra={"grace_s": self.settings.shutdown_grace, "ready": self.ready}
        )
        # A process still waiting for readiness stops waiting, so it cannot register now.
        gate, self._gate = self._gate, None
        if gate is not None and not gate.done():
            gate.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gate
        await self.health.enter_graceful_shutdown()
        if self.registration is not None:
            try:
                await self.registration.deregister()
            except Exception:
                logger.exception("deregistration failed; the lease will expire instead")
        await self._stop_components(self._running_after)
        await self._run_hooks(self._hooks)
        await self.server.stop(self.settings.shutdown_grace)
        await aclose_interceptors(self._governance)
        if self.registration is not None:
            await self.registration.close()
        await self._stop_components(self._running_before)
        await self._run_hooks(self._close_hooks)
        if self.live is not None:
            await self.live.stop()
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

    @staticmethod
    async def _stop_components(running: list[Component]) -> None:
        while running:
            component = running.pop()
            try:
                await _run_step(component.stop)
            except Exception:
                logger.exception(
                    "stopping a component failed", extra={"component": repr(component)}
                )

    async def serve(self) -> None:
        """Start, then run until SIGTERM or SIGINT, then stop gracefully."""
        await run_until_signal(self.start, self.stop)
