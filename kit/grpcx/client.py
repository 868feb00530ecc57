"""Client channels to other services, behind one function: :func:`connect`.

Today the target's addresses come from static configuration (``peers``: service name →
``host:port[,host:port...]``), balanced by gRPC core's round robin. Discovery through the
registry replaces this function's body, not its callers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc

from kit.errors import FailedPrecondition


def _target(addresses: str) -> str:
    hosts = [a.strip() for a in addresses.split(",") if a.strip()]
    if not hosts:
        raise FailedPrecondition("NO_PEER_ADDRESS", "empty peer address list")
    return "ipv4:" + ",".join(hosts) if len(hosts) > 1 else hosts[0]


async def connect(
    service: str,
    peers: Mapping[str, str],
    *,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """A channel to ``service`` usable by its generated stub."""
    if service not in peers:
        raise FailedPrecondition(
            "NO_PEER_ADDRESS", f"no address configured for service {service!r}"
        )
    return grpc.aio.insecure_channel(
        _target(peers[service]),
        interceptors=list(interceptors),
        options=[("grpc.lb_policy_name", "round_robin"), ("grpc.enable_retries", 0)],
    )
