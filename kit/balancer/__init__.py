"""Client-side load balancing over registry discovery.

:class:`BalancedChannel` is a drop-in ``grpc.aio.Channel`` for generated stubs; build one
with :func:`balanced_channel` (registry discovery) or :func:`static_balanced_channel`.
Policies: smooth weighted round robin (default) and a consistent-hash ring; dynamic
weights, ejection with trial calls, failover of idempotent unary calls, and a bound on
in-flight calls per endpoint. See ``docs/registry-and-balancing.md``.
"""

from kit.balancer.calls import UnaryPolicy
from kit.balancer.channel import (
    BalancedChannel,
    ChannelFactory,
    balanced_channel,
    static_balanced_channel,
)
from kit.balancer.config import BalancerConfig, Policy
from kit.balancer.endpoint import EndpointState, Health
from kit.balancer.picker import ConsistentHashRing, SmoothWeightedRoundRobin

__all__ = [
    "BalancedChannel",
    "BalancerConfig",
    "ChannelFactory",
    "ConsistentHashRing",
    "EndpointState",
    "Health",
    "Policy",
    "SmoothWeightedRoundRobin",
    "UnaryPolicy",
    "balanced_channel",
    "static_balanced_channel",
]
