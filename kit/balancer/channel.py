"""BalancedChannel: a ``grpc.aio.Channel`` that spreads calls over a service's instances.

gRPC Python cannot plug a custom load balancer into its C core, so the balancing happens
here: one plain ``grpc.aio`` channel per endpoint, created and closed as discovery adds and
removes instances, and a picker in front (smooth weighted round robin, or a consistent-hash
ring). Generated stubs take a ``BalancedChannel`` wherever they take a channel.

Per call: pick an endpoint, wait for one of its ``max_in_flight_per_endpoint`` slots, send;
the outcome feeds the endpoint's dynamic weight and ejection state (see
:mod:`kit.balancer.endpoint`). Idempotent unary methods fail over to endpoints not yet tried
on ``failover_codes``; everything else is sent once. Only unary-unary methods exist
(no proto declares a stream): the streaming factories of ``grpc.aio.Channel`` raise
``TypeError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn, Self

import grpc

from kit.balancer.calls import (
    BalancedUnaryUnaryCall,
    BalancedUnaryUnaryMultiCallable,
    Deserializer,
    Serializer,
    UnaryPolicy,
    rpc_error,
)
from kit.balancer.config import BalancerConfig, Policy
from kit.balancer.endpoint import EndpointState, Health
from kit.balancer.metrics import BalancerMetrics
from kit.balancer.picker import ConsistentHashRing, SmoothWeightedRoundRobin
from kit.balancer.subchannel import Subchannel
from kit.registry.memory import StaticDiscovery
from kit.registry.model import ServiceInstance
from kit.registry.port import Discovery, Registry

logger = logging.getLogger(__name__)

ChannelFactory = Callable[[str], grpc.aio.Channel]
"""Builds the channel to one endpoint address (``host:port``)."""

_STATE_PRIORITY = (
    grpc.ChannelConnectivity.READY,
    grpc.ChannelConnectivity.CONNECTING,
    grpc.ChannelConnectivity.IDLE,
    grpc.ChannelConnectivity.TRANSIENT_FAILURE,
)


def _no_streaming(method: str) -> NoReturn:
    """Raise the error of a streaming method on a balanced channel.

    No proto declares a stream, so the balancer has no streaming call path; a generated stub
    for a streaming RPC fails when it is built rather than on its first call.
    """
    raise TypeError(
        f"{method}: BalancedChannel balances unary-unary calls only; streaming methods are not "
        "supported (no proto declares one)"
    )


def _best_state(states: Iterable[grpc.ChannelConnectivity]) -> grpc.ChannelConnectivity:
    """The first of :data:`_STATE_PRIORITY` among ``states``; IDLE if there are none."""
    present = set(states)
    for state in _STATE_PRIORITY:
        if state in present:
            return state
    return grpc.ChannelConnectivity.IDLE


def _carry_health(old: EndpointState, new: EndpointState) -> None:
    """Give ``new`` (the same endpoint over a new channel) ``old``'s weights and health.

    A trial call in flight on the old channel will not report to ``new``: an endpoint on
    probation is left ejected with its cool-down over, so the next pick makes a new trial.
    """
    new.effective_weight = old.effective_weight
    new.current_weight = old.current_weight
    new.consecutive_failures = old.consecutive_failures
    new.ejected_until = old.ejected_until
    new.ejections = old.ejections
    new.health = Health.EJECTED if old.health is Health.PROBING else old.health


class BalancedChannel(grpc.aio.Channel):
    """A client channel to every instance of one service, balanced per call.

    Args:
        service: service name (for metrics, logs and errors).
        discovery: source of the instances; the channel follows its changes.
        config: balancing policy, failover, health and limits.
        interceptors: grpc.aio client interceptors installed on every endpoint channel
            (they run once per attempt).
        policy: governance run around every unary-unary call as a whole (all its
            attempts), without grpc.aio's interceptor machinery; see
            :class:`kit.governance.UnaryClientPolicy`.
        channel_factory: builds an endpoint channel from ``host:port``; default
            ``grpc.aio.insecure_channel`` with ``config.channel_options`` and
            ``interceptors``.
        owns_discovery: close ``discovery`` when the channel closes.

    Construct it inside the running event loop. Calls fail with UNAVAILABLE when the
    service has no endpoint, unless made with ``wait_for_ready=True``.
    """

    def __init__(
        self,
        service: str,
        discovery: Discovery,
        config: BalancerConfig | None = None,
        *,
        interceptors: Sequence[Any] = (),
        policy: UnaryPolicy | None = None,
        channel_factory: ChannelFactory | None = None,
        owns_discovery: bool = False,
    ) -> None:
        self._service = service
        self._policy = policy
        self._discovery = discovery
        self._config = config or BalancerConfig()
        # Operator weights by endpoint address, over the registry's (reconfigure).
        self._weights: dict[str, int] = {}
        self._interceptors = tuple(interceptors)
        self._channel_factory = channel_factory or self._insecure_channel
        self._owns_discovery = owns_discovery
        self._metrics = BalancerMetrics(service)
        self._pick_counts = self._metrics.pick_counts
        self._unstarted: list[BalancedUnaryUnaryCall] = []
        self._subchannels: dict[str, Subchannel] = {}
        self._wrr: SmoothWeightedRoundRobin[Subchannel] = SmoothWeightedRoundRobin()
        self._ring: ConsistentHashRing[Subchannel] | None = None
        if self._config.policy is Policy.CONSISTENT_HASH:
            self._ring = ConsistentHashRing(self._config.virtual_nodes)
        self._background: set[asyncio.Task[Any]] = set()
        self._retiring: dict[asyncio.Task[None], Subchannel] = {}
        self._changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed = False
        self._on_instances(discovery.instances())
        self._unsubscribe = discovery.subscribe(self._on_instances)

    @property
    def service(self) -> str:
        """The service this channel balances over."""
        return self._service

    @property
    def policy(self) -> UnaryPolicy | None:
        """Governance run around every unary-unary call, if any."""
        return self._policy

    @property
    def config(self) -> BalancerConfig:
        """The balancing configuration."""
        return self._config

    @property
    def hashing(self) -> bool:
        """Whether some calls are routed by hash key (consistent-hash policy)."""
        return self._ring is not None

    def endpoints(self) -> tuple[EndpointState, ...]:
        """The current endpoints with their weights and health (sorted by instance id)."""
        return tuple(self._subchannels[key] for key in sorted(self._subchannels))

    def reconfigure(self, config: BalancerConfig, weights: Mapping[str, int] | None = None) -> None:
        """Balance by ``config`` from now on, on a live channel (live settings).

        Calls already started finish as they began; the next calls use the new
        configuration. Every endpoint keeps its health and its effective weight ratio,
        judged from now on by the new ejection and weight tunables. The policy may change
        (the hash ring is built or dropped). ``weights`` sets the weight of endpoints by
        address (``host:port``) over what the registry announces; an address it does not
        name takes the registry's weight again. ``max_in_flight_per_endpoint`` and
        ``channel_options`` apply to endpoint channels opened from now on.
        """
        if self._closed:
            return
        old = self._config
        self._config = config
        self._weights = dict(weights or {})
        for subchannel in self._subchannels.values():
            subchannel.reconfigure(config)
        if config.policy is Policy.CONSISTENT_HASH:
            if self._ring is None or config.virtual_nodes != old.virtual_nodes:
                self._ring = ConsistentHashRing(config.virtual_nodes)
                self._ring.set_endpoints([self._subchannels[k] for k in sorted(self._subchannels)])
        else:
            self._ring = None
        self._on_instances(self._discovery.instances())
        logger.info(
            "balancer reconfigured",
            extra={
                "peer_service": self._service,
                "policy": config.policy.value,
                "weights": self._weights,
                "eject_after_failures": config.eject_after_failures,
                "ejection_seconds": config.ejection_seconds,
            },
        )

    def _weighted(self, instance: ServiceInstance) -> ServiceInstance:
        weight = self._weights.get(instance.addr)
        if weight is None or weight == instance.weight:
            return instance
        return dataclasses.replace(instance, weight=weight)

    # -- grpc.aio.Channel -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.close()
        return None

    async def close(self, grace: float | None = None) -> None:
        """Stop taking calls; in-flight calls get ``grace`` seconds to finish.

        Without ``grace`` in-flight calls are cancelled at once (as with a plain channel);
        calls not sent yet fail with ``grpc.aio.UsageError``. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        subchannels = list(self._subchannels.values())
        self._subchannels.clear()
        for subchannel in subchannels:
            # Calls queued for a slot see this when served, pick again, and fail.
            subchannel.retired = True
        self._wrr.set_endpoints([])
        if self._ring is not None:
            self._ring.set_endpoints([])
        self._pulse()
        await asyncio.gather(
            *(self._drain_and_close(sc, grace) for sc in subchannels),
            *(self._hurry(task, sc, grace) for task, sc in list(self._retiring.items())),
        )
        background = set(self._background)
        for task in background:
            task.cancel()
        if background:
            await asyncio.wait(background)
        for subchannel in subchannels:
            self._metrics.forget(subchannel.label)
        self._metrics.forget_service()
        if self._owns_discovery:
            await self._discovery.close()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """The best state among endpoint channels (READY if any is ready); IDLE if none."""
        if self._closed:
            return grpc.ChannelConnectivity.SHUTDOWN
        subchannels = self._subchannels.values()
        return _best_state(sc.channel.get_state(try_to_connect) for sc in subchannels)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        """Wait until :meth:`get_state` differs from ``last_observed_state``."""
        while not self._closed:
            # One snapshot serves both the comparison and the waiters: an endpoint channel's
            # state changes on grpc's own threads, so reading it twice could wait for a
            # change away from a state it has already left (and never return).
            observed = [(sc.channel, sc.channel.get_state()) for sc in self._subchannels.values()]
            if _best_state(state for _, state in observed) != last_observed_state:
                return
            waiters: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(channel.wait_for_state_change(state))
                for channel, state in observed
            ]
            try:
                await asyncio.wait([self._changed, *waiters], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                if waiters:
                    await asyncio.wait(waiters)

    async def channel_ready(self) -> None:
        """Wait until at least one endpoint channel is READY."""
        while True:
            state = self.get_state(try_to_connect=True)
            if state is grpc.ChannelConnectivity.READY:
                return
            if state is grpc.ChannelConnectivity.SHUTDOWN:
                raise grpc.aio.UsageError("Channel is closed.")
            await self.wait_for_state_change(state)

    def unary_unary(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> BalancedUnaryUnaryMultiCallable:
        """A balanced multicallable for a unary-unary method (fails over if idempotent)."""
        return BalancedUnaryUnaryMultiCallable(
            self, method, request_serializer, response_deserializer, bool(_registered_method)
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> NoReturn:
        """Refused: only unary-unary calls are balanced (see :func:`_no_streaming`)."""
        _no_streaming(method)

    def stream_unary(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> NoReturn:
        """Refused: only unary-unary calls are balanced (see :func:`_no_streaming`)."""
        _no_streaming(method)

    def stream_stream(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> NoReturn:
        """Refused: only unary-unary calls are balanced (see :func:`_no_streaming`)."""
        _no_streaming(method)

    # -- used by the call objects (kit.balancer.calls.Router) --------------------------

    def _pick(self, hash_key: bytes | None, exclude: set[Subchannel] | None) -> Subchannel | None:
        if self._closed:
            raise grpc.aio.UsageError("Channel is closed.")
        if self._ring is not None and hash_key is not None:
            subchannel = self._ring.pick(hash_key, exclude)
        else:
            subchannel = self._wrr.pick(exclude)
        if subchannel is not None:
            self._pick_counts[subchannel.label] += 1
            if subchannel.health is Health.PROBING:
                logger.info(
                    "sending a trial call to an ejected endpoint",
                    extra={"peer_service": self._service, "endpoint": subchannel.label},
                )
                self._publish_health()
        return subchannel

    def _membership_change(self) -> asyncio.Future[None]:
        return self._changed

    def _no_endpoint(self) -> grpc.aio.AioRpcError:
        self._metrics.no_endpoint()
        return rpc_error(
            grpc.StatusCode.UNAVAILABLE, f"no endpoint available for service {self._service!r}"
        )

    def _record(self, subchannel: Subchannel, code: grpc.StatusCode | None) -> None:
        if subchannel.retired:
            return
        health, weight = subchannel.health, subchannel.effective_weight
        if code is None:
            subchannel.record_abandoned()
        elif code in self._config.failure_codes:
            if subchannel.record_failure(time.monotonic()):
                self._metrics.ejected(subchannel.label)
                logger.warning(
                    "endpoint ejected",
                    extra={
                        "peer_service": self._service,
                        "endpoint": subchannel.label,
                        "instance_id": subchannel.key,
                        "code": code.name,
                        "consecutive_failures": subchannel.consecutive_failures,
                        "cool_down": round(subchannel.ejected_until - time.monotonic(), 3),
                    },
                )
        elif subchannel.record_success():
            logger.info(
                "endpoint restored after a successful trial call",
                extra={"peer_service": self._service, "endpoint": subchannel.label},
            )
        if subchannel.health is not health:
            self._publish_health()
        if subchannel.effective_weight != weight:
            self._metrics.effective_weight(subchannel.label, subchannel.effective_weight)

    def _record_success(self, subchannel: Subchannel) -> None:
        if (
            subchannel.consecutive_failures == 0
            and subchannel.health is Health.HEALTHY
            and subchannel.effective_weight == subchannel.weight
        ):
            return  # already at full health: nothing to update
        self._record(subchannel, grpc.StatusCode.OK)

    def _failed_over(self, code: grpc.StatusCode) -> None:
        self._metrics.failover(code.name)

    def _start_if_unawaited(self, call: BalancedUnaryUnaryCall) -> None:
        if not self._unstarted:
            asyncio.get_running_loop().call_soon(self._after_one_iteration)
        self._unstarted.append(call)

    def _after_one_iteration(self) -> None:
        # asyncio.gather, wait_for and create_task wrap an awaited call in a task whose first
        # step was scheduled after this callback, in the iteration the call was made (the
        # gateway's concurrent reads): give those tasks their first step, in which they
        # drive the call inline, before starting the calls nobody awaits in tasks of their
        # own. That spares a task, a future and an asyncio.wait per call.
        calls, self._unstarted = self._unstarted, []
        asyncio.get_running_loop().call_soon(self._start_unawaited_calls, calls)

    @staticmethod
    def _start_unawaited_calls(calls: list[BalancedUnaryUnaryCall]) -> None:
        for call in calls:
            call._start_unawaited()

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- membership --------------------------------------------------------------------

    def _insecure_channel(self, addr: str) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(
            addr,
            options=list(self._config.channel_options),
            interceptors=self._interceptors or None,
        )

    def _on_instances(self, instances: Iterable[ServiceInstance]) -> None:
        if self._closed:
            return
        wanted = {instance.instance_id: self._weighted(instance) for instance in instances}
        added: list[str] = []
        removed: list[str] = []
        for key, current in list(self._subchannels.items()):
            instance = wanted.get(key)
            if instance is None or instance.addr != current.instance.addr:
                del self._subchannels[key]
                self._retire(current)
                removed.append(current.label)
        updated = False
        for key, instance in wanted.items():
            subchannel = self._subchannels.get(key)
            if subchannel is None:
                self._subchannels[key] = self._open(instance)
                added.append(instance.addr)
            elif instance != subchannel.instance:
                subchannel.update_instance(instance)
                self._metrics.effective_weight(subchannel.label, subchannel.effective_weight)
                updated = True
        if not (added or removed or updated):
            return
        endpoints = [self._subchannels[key] for key in sorted(self._subchannels)]
        self._wrr.set_endpoints(endpoints)
        if self._ring is not None and (added or removed):
            self._ring.set_endpoints(endpoints)
        self._publish_health()
        self._pulse()
        logger.info(
            "endpoints changed",
            extra={
                "peer_service": self._service,
                "added": added,
                "removed": removed,
                "endpoints": [sc.label for sc in endpoints],
            },
        )

    def reopen(self) -> None:
        """Replace every endpoint channel by a new one from the channel factory.

        For new channel credentials (a rotated client certificate): calls in flight finish
        on the old channels, which then close as when their endpoint leaves
        (``close_grace``); new calls go to the new ones. Each endpoint keeps its weights and
        health. Does nothing on a closed channel.
        """
        if self._closed or not self._subchannels:
            return
        for key, current in list(self._subchannels.items()):
            self._retire(current)
            fresh = self._open(current.instance)
            _carry_health(current, fresh)
            self._metrics.effective_weight(fresh.label, fresh.effective_weight)
            self._subchannels[key] = fresh
        endpoints = [self._subchannels[key] for key in sorted(self._subchannels)]
        self._wrr.set_endpoints(endpoints)
        if self._ring is not None:
            self._ring.set_endpoints(endpoints)
        self._publish_health()
        self._pulse()
        logger.info(
            "endpoint channels re-opened",
            extra={"peer_service": self._service, "endpoints": [sc.label for sc in endpoints]},
        )

    def _open(self, instance: ServiceInstance) -> Subchannel:
        subchannel = Subchannel(instance, self._config, self._channel_factory(instance.addr))
        self._metrics.endpoint_added(subchannel.label)
        self._metrics.effective_weight(subchannel.label, subchannel.effective_weight)
        return subchannel

    def _retire(self, subchannel: Subchannel) -> None:
        subchannel.retired = True
        self._metrics.forget(subchannel.label)
        task = asyncio.get_running_loop().create_task(
            self._drain_and_close(subchannel, self._config.close_grace)
        )
        self._retiring[task] = subchannel
        task.add_done_callback(self._retiring_done)

    @staticmethod
    async def _drain_and_close(subchannel: Subchannel, grace: float | None) -> None:
        """Let calls in flight on ``subchannel`` finish within ``grace``, then close it.

        Draining is tracked with the call slots rather than grpc's own ``close(grace)``,
        because a closing grpc channel ignores a second, more urgent ``close()``.
        """
        if grace:
            await asyncio.wait((subchannel.slots.drained(),), timeout=grace)
        await subchannel.channel.close(None)

    async def _hurry(
        self, task: asyncio.Task[None], subchannel: Subchannel, grace: float | None
    ) -> None:
        """Replace a retiring endpoint's remaining drain time by ``grace``."""
        task.cancel()
        await asyncio.wait((task,))
        await self._drain_and_close(subchannel, grace)

    def _retiring_done(self, task: asyncio.Task[None]) -> None:
        self._retiring.pop(task, None)

    def _publish_health(self) -> None:
        self._metrics.health(sc.health for sc in self._subchannels.values())

    def _pulse(self) -> None:
        """Wake everything waiting for a membership change."""
        self._changed.set_result(None)
        self._changed = asyncio.get_running_loop().create_future()


async def balanced_channel(
    service: str,
    registry: Registry,
    config: BalancerConfig | None = None,
    *,
    interceptors: Sequence[Any] = (),
    policy: UnaryPolicy | None = None,
    channel_factory: ChannelFactory | None = None,
) -> BalancedChannel:
    """A :class:`BalancedChannel` over ``service``'s instances discovered in ``registry``.

    Waits for the registry's first listing (bounded by the registry), then follows changes.
    Closing the channel closes the discovery it started.
    """
    discovery = await registry.discover(service)
    return BalancedChannel(
        service,
        discovery,
        config,
        interceptors=interceptors,
        policy=policy,
        channel_factory=channel_factory,
        owns_discovery=True,
    )


async def static_balanced_channel(
    service: str,
    addresses: Iterable[str],
    config: BalancerConfig | None = None,
    *,
    interceptors: Sequence[Any] = (),
    policy: UnaryPolicy | None = None,
    channel_factory: ChannelFactory | None = None,
) -> BalancedChannel:
    """A :class:`BalancedChannel` over a fixed list of ``host:port`` (weight 1 each)."""
    return BalancedChannel(
        service,
        StaticDiscovery.from_addresses(service, addresses),
        config,
        interceptors=interceptors,
        policy=policy,
        channel_factory=channel_factory,
        owns_discovery=True,
    )
