"""The edge contract over real gateway processes: rate limits, trusted proxies, body size.

Two extra gateways run with rate limits of their own (the shared e2e gateway has none), in
front of the same services, Redis and etcd as the rest of the e2e suite.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from devstack.infra import ManagedProcess, free_port
from devstack.suite import gateway_process
from tests.e2e.conftest import USER_AGENT, RunningStack

pytestmark = pytest.mark.e2e

LOGIN_LIMIT = 3
CLUSTER_LIMIT = 10


@pytest.fixture(scope="module")
def limited_gateways(stack: RunningStack) -> Iterator[list[str]]:
    """Two gateways sharing a per-IP login limit and a cluster-wide limit through Redis."""
    edge = {
        "trusted_proxies": ["127.0.0.1/32"],
        # Within the gateway's Redis ACL key patterns (webook:ratelimit:*), as any prefix
        # must be: outside them Redis refuses, and the limits fall back to each replica.
        "redis_key_prefix": f"webook:ratelimit:e2e-{uuid.uuid4().hex[:8]}",
        "rate_limits": [
            {
                "name": "login_ip",
                "paths": ["/users/login"],
                "key": "ip",
                "limit": LOGIN_LIMIT,
                "period": 60,
            },
            {
                "name": "cluster",
                "paths": ["/users/login_sms"],
                "key": "global",
                "algorithm": "fixed_window",
                "limit": CLUSTER_LIMIT,
                "period": 60,
            },
        ],
    }
    infra = dataclasses.replace(
        stack.infra,
        extra_env={**stack.infra.extra_env, "WEBOOK_GATEWAY_EDGE": json.dumps(edge)},
    )
    ports = [free_port(), free_port()]
    gateways: list[ManagedProcess] = []
    try:
        for index, port in enumerate(ports):
            proc = gateway_process(infra, port, {}, stack.log_dir)
            proc.name = f"gateway-limited-{index}"
            proc.log_path = stack.log_dir / f"{proc.name}.log"
            gateways.append(proc.start(timeout=60))
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for proc in gateways:
            proc.stop()


def _client(base_url: str, *, source: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT},
        timeout=10,
        transport=httpx.AsyncHTTPTransport(local_address=source),
    )


async def _login(http: httpx.AsyncClient, forwarded_for: str) -> httpx.Response:
    return await http.post(
        "/users/login",
        json={"email": "nobody@example.com", "password": "x#1yyyyyy"},
        headers={"X-Forwarded-For": forwarded_for},
    )


async def test_burst_from_one_ip_gets_429_while_another_ip_is_served(
    limited_gateways: list[str],
) -> None:
    async with _client(limited_gateways[0]) as http:
        answers = [await _login(http, "203.0.113.7") for _ in range(LOGIN_LIMIT + 2)]
        assert [a.status_code for a in answers[:LOGIN_LIMIT]] == [200] * LOGIN_LIMIT
        refused = answers[LOGIN_LIMIT]
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        other = await _login(http, "198.51.100.9")
        assert other.status_code == 200
        assert other.json()["code"] == 401002


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    limited_gateways: list[str],
) -> None:
    # 127.0.0.2 is a loopback address too, but not a trusted proxy: rotating the
    # X-Forwarded-For header must not buy it fresh quotas.
    async with _client(limited_gateways[0], source="127.0.0.2") as http:
        statuses = [
            (await _login(http, f"192.0.2.{i}")).status_code for i in range(LOGIN_LIMIT + 2)
        ]
    assert statuses[:LOGIN_LIMIT] == [200] * LOGIN_LIMIT
    assert statuses[LOGIN_LIMIT:] == [429, 429]


async def test_ten_megabyte_body_gets_413(limited_gateways: list[str]) -> None:
    async with _client(limited_gateways[1]) as http:
        answer = await http.post(
            "/users/signup",
            content=b"{" + b" " * (10 * 1024 * 1024) + b"}",
            headers={"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.99"},
        )
    assert answer.status_code == 413


async def test_cluster_wide_limit_holds_across_two_gateways(
    limited_gateways: list[str],
) -> None:
    statuses: list[int] = []
    async with _client(limited_gateways[0]) as first, _client(limited_gateways[1]) as second:
        for i in range(2 * CLUSTER_LIMIT):
            http = first if i % 2 == 0 else second
            answer = await http.post(
                "/users/login_sms",
                json={"phone": "13800138000", "code": "000000"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            statuses.append(answer.status_code)
    assert statuses.count(429) == CLUSTER_LIMIT
    assert statuses[:CLUSTER_LIMIT].count(429) == 0


async def test_redis_outage_falls_back_to_local_limits_and_the_gateway_stays_up(
    limited_gateways: list[str], redis_server: ManagedProcess
) -> None:
    redis_server.stop()
    try:
        async with _client(limited_gateways[1]) as http:
            statuses = [
                (await _login(http, "203.0.113.200")).status_code for _ in range(LOGIN_LIMIT + 1)
            ]
            # login_ip's policy is the default: an in-process limiter while Redis is down.
            assert statuses == [200] * LOGIN_LIMIT + [429]
            assert (await http.get("/healthz")).status_code == 200
    finally:
        redis_server.start()
    async with _client(limited_gateways[1]) as http:
        assert (await _login(http, "203.0.113.201")).status_code == 200
