"""Client IP resolution: X-Forwarded-For only from trusted proxies, from the right."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.middleware.client_ip import UNKNOWN_CLIENT, TrustedProxies

PROXIES = TrustedProxies(["10.0.0.0/8", "192.168.1.1", "fd00::/8"])


def scope(peer: str | None, *forwarded: str) -> dict[str, Any]:
    return {
        "type": "http",
        "client": None if peer is None else (peer, 40000),
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert TrustedProxies().client_ip(scope("198.51.100.1", "1.2.3.4")) == "198.51.100.1"


def test_an_untrusted_peer_cannot_forward() -> None:
    assert PROXIES.client_ip(scope("198.51.100.1", "1.2.3.4")) == "198.51.100.1"


def test_the_rightmost_untrusted_hop_is_the_client() -> None:
    # The client wrote "6.6.6.6" itself; our proxies appended 198.51.100.9 and 10.1.1.1.
    request = scope("10.2.2.2", "6.6.6.6, 198.51.100.9, 10.1.1.1")

    assert PROXIES.client_ip(request) == "198.51.100.9"


def test_several_headers_are_one_list() -> None:
    request = scope("192.168.1.1", "6.6.6.6", "198.51.100.9", "10.1.1.1")

    assert PROXIES.client_ip(request) == "198.51.100.9"


def test_only_proxies_in_the_chain_gives_the_farthest_proxy() -> None:
    assert PROXIES.client_ip(scope("10.2.2.2", "10.3.3.3")) == "10.3.3.3"
    assert PROXIES.client_ip(scope("10.2.2.2")) == "10.2.2.2"


def test_garbage_stops_the_walk_at_the_last_good_hop() -> None:
    assert PROXIES.client_ip(scope("10.2.2.2", "nonsense, 10.3.3.3")) == "10.3.3.3"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("198.51.100.9:1234", "198.51.100.9"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:198.51.100.9", "198.51.100.9"),
    ],
)
def test_address_forms(entry: str, expected: str) -> None:
    assert PROXIES.client_ip(scope("10.2.2.2", entry)) == expected


def test_ipv6_clients_are_keyed_by_their_network() -> None:
    assert PROXIES.rate_limit_key(scope("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert PROXIES.rate_limit_key(scope("198.51.100.1")) == "198.51.100.1"
    exact = TrustedProxies(ipv6_prefix_length=128)
    assert exact.rate_limit_key(scope("2001:db8::1")) == "2001:db8::1"


def test_no_peer_is_unknown() -> None:
    assert PROXIES.client_ip(scope(None)) == UNKNOWN_CLIENT
    assert PROXIES.rate_limit_key(scope("unix-socket")) == UNKNOWN_CLIENT


def test_prefix_length_is_validated() -> None:
    with pytest.raises(ValueError, match="between"):
        TrustedProxies(ipv6_prefix_length=0)
