"""The client's IP address, believing ``X-Forwarded-For`` only from trusted proxies.

The peer of the TCP connection (the ASGI ``client``) is the client unless it is one of the
configured trusted proxies (e.g. the ingress or load balancer networks). Then
``X-Forwarded-For`` is read from the right, the end our own proxies appended to, skipping
trusted addresses; the first untrusted address is the client. Anything a client writes
into the header itself sits to the left of that and is never believed, so a client cannot
pick its rate-limit key. With no trusted proxies (the default) the header is ignored.

For rate limiting, IPv6 clients are keyed by their network prefix (``/64`` by default):
one subscriber usually holds a whole ``/64`` and could otherwise rotate through it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

from starlette.datastructures import Headers
from starlette.types import Scope

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN_CLIENT: Final = "unknown"
_SCOPE_KEY: Final = "webook.client_ip"
_RATE_KEY_SCOPE_KEY: Final = "webook.client_rate_limit_key"


def _parse_address(text: str) -> IPAddress | None:
    """An address from a forwarded-for entry (tolerating ``[v6]:port`` and ``v4:port``)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """Resolves a request's client address; see the module docstring.

    Args:
        networks: the proxies whose ``X-Forwarded-For`` is believed (CIDR strings or
            networks; a bare address is a /32 or /128).
        ipv6_prefix_length: the prefix that keys an IPv6 client in :meth:`rate_limit_key`.
    """

    def __init__(
        self, networks: Iterable[str | IPNetwork] = (), *, ipv6_prefix_length: int = 64
    ) -> None:
        """See the class docstring."""
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in networks
        )
        if not 1 <= ipv6_prefix_length <= 128:
            raise ValueError("ipv6_prefix_length must be between 1 and 128")
        self.ipv6_prefix_length = ipv6_prefix_length

    def is_trusted(self, address: IPAddress) -> bool:
        """Whether ``address`` belongs to a trusted proxy."""
        return any(address in network for network in self.networks)

    def client_address(self, scope: Scope) -> IPAddress | None:
        """The client's address, or None when the server gave no usable peer."""
        client = scope.get("client")
        peer = _parse_address(client[0]) if client else None
        if peer is None or not self.networks or not self.is_trusted(peer):
            return peer
        forwarded = ",".join(Headers(scope=scope).getlist("x-forwarded-for"))
        nearest = peer
        for entry in reversed(forwarded.split(",")):
            hop = _parse_address(entry)
            if hop is None:
                # Our proxies write valid addresses; garbage came from further out.
                break
            if not self.is_trusted(hop):
                return hop
            nearest = hop
        return nearest

    def client_ip(self, scope: Scope) -> str:
        """The client's address as text (``unknown`` without one); memoized in the scope."""
        cached = scope.get(_SCOPE_KEY)
        if isinstance(cached, str):
            return cached
        address = self.client_address(scope)
        text = UNKNOWN_CLIENT if address is None else str(address)
        scope[_SCOPE_KEY] = text
        return text

    def rate_limit_key(self, scope: Scope) -> str:
        """The client's address, or its IPv6 network prefix, as a rate-limit key; memoized."""
        cached = scope.get(_RATE_KEY_SCOPE_KEY)
        if isinstance(cached, str):
            return cached
        address = self.client_address(scope)
        if address is None:
            key = UNKNOWN_CLIENT
        elif isinstance(address, ipaddress.IPv6Address) and self.ipv6_prefix_length < 128:
            key = str(ipaddress.IPv6Network((address, self.ipv6_prefix_length), strict=False))
        else:
            key = str(address)
        scope[_RATE_KEY_SCOPE_KEY] = key
        return key
