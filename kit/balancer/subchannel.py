"""One endpoint's grpc.aio channel together with its balancing state and call slots."""

from __future__ import annotations

from typing import Any

import grpc

from kit.balancer.config import BalancerConfig
from kit.balancer.endpoint import EndpointState
from kit.balancer.slots import CallSlots
from kit.registry.model import ServiceInstance


class Subchannel(EndpointState):
    """An endpoint as the balanced channel holds it.

    ``slots`` bounds the calls in flight on ``channel`` (grpc.aio fails calls beyond ~1,500
    on one channel); ``callables`` caches the channel's multicallables per balanced
    multicallable, so a pick costs a dict lookup rather than a new grpc object.
    """

    __slots__ = ("callables", "channel", "label", "retired", "slots")

    def __init__(
        self,
        instance: ServiceInstance,
        config: BalancerConfig,
        channel: grpc.aio.Channel,
    ) -> None:
        super().__init__(instance, config)
        self.channel = channel
        self.label = instance.addr
        self.slots = CallSlots(config.max_in_flight_per_endpoint)
        self.callables: dict[object, Any] = {}
        self.retired = False
