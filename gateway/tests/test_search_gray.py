"""Reader affinity behind the gray rollout ``search_affinity``: at 10 % about a tenth of
the readers get an affinity key, always the same ones, through the route's own dependency
and through the whole gateway; at 0 none; unset, every reader (what shipped before the
rollout); a change in the configuration centre (a real etcd) applies to the next search.

The gateway runs with a fake of the search stub that records the keys it was sent.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.requests import Request

from devstack.infra import free_port
from gateway.app import create_app
from gateway.routes.search import SEARCH_AFFINITY_ROLLOUT, affinity_key
from gateway.settings import GatewaySettings
from gateway.tests.conftest import USER_AGENT, fake_stubs, make_settings
from kit.liveconfig import ConfigStore, LiveSettings
from kit.registry.tests.helpers import eventually
from webook.search.v1 import search_pb2

READERS = 10_000
HTTP_READERS = 200
DEADLINE_S = 10.0
# Benchmarking addresses (RFC 2544): one reader each.
NETWORK = ipaddress.ip_network("198.18.0.0/15")


def reader_ip(n: int) -> str:
    return str(NETWORK[n + 1])


@dataclass
class RecordingSearch:
    """The search stub: no hits, the affinity key of every request kept."""

    keys: list[str] = field(default_factory=list)

    async def Search(
        self, request: search_pb2.SearchRequest, **_: Any
    ) -> search_pb2.SearchResponse:
        """An empty page."""
        self.keys.append(request.affinity_key)
        return search_pb2.SearchResponse()


@asynccontextmanager
async def start_gateway(
    settings: GatewaySettings, search: RecordingSearch
) -> AsyncIterator[FastAPI]:
    """The whole gateway over ``search``, inside its lifespan."""
    application = create_app(settings, stubs=fake_stubs(search=search))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def search() -> RecordingSearch:
    return RecordingSearch()


@pytest.fixture
async def at_ten_percent(
    redis_url: str, redis_client: aioredis.Redis, search: RecordingSearch
) -> AsyncIterator[FastAPI]:
    """The gateway with ``search_affinity`` at 10 %."""
    rollouts = {SEARCH_AFFINITY_ROLLOUT: {"percent": 10}}
    settings = make_settings(redis_url, free_port(), gray_rollouts=rollouts)
    async with start_gateway(settings, search) as application:
        yield application


async def keys_of(application: FastAPI, readers: range) -> list[str]:
    """The key the route's dependency gives each anonymous reader (one address each)."""
    runtime = application.state.runtime
    keys = []
    for n in readers:
        scope = {
            "type": "http",
            "app": application,
            "client": (reader_ip(n), 40000),
            "headers": [(b"user-agent", USER_AGENT.encode())],
            "method": "GET",
            "path": "/search/query",
            "query_string": b"",
        }
        keys.append(await affinity_key(Request(scope), runtime))
    return keys


async def keys_over_http(
    application: FastAPI, search: RecordingSearch, readers: range
) -> list[str]:
    """The key the search service was sent for one search of each reader."""
    keys = []
    for n in readers:
        transport = httpx.ASGITransport(app=application, client=(reader_ip(n), 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway.test", headers={"User-Agent": USER_AGENT}
        ) as reader:
            response = await reader.get("/search/query", params={"q": "微服务"})
        assert response.json()["code"] == 0
        keys.append(search.keys[-1])
    return keys


def share(keys: list[str]) -> float:
    return sum(bool(key) for key in keys) / len(keys) * 100


@pytest.mark.integration
async def test_about_ten_percent_of_readers_get_a_key_always_the_same(
    at_ten_percent: FastAPI, search: RecordingSearch
) -> None:
    keys = await keys_of(at_ten_percent, range(READERS))
    assert abs(share(keys) - 10) <= 1
    assert await keys_of(at_ten_percent, range(READERS)) == keys
    # Through the whole gateway (middleware, edge, route), the service gets the same keys,
    # search after search.
    sample = range(HTTP_READERS)
    assert await keys_over_http(at_ten_percent, search, sample) == keys[:HTTP_READERS]
    assert await keys_over_http(at_ten_percent, search, sample) == keys[:HTTP_READERS]


@pytest.mark.integration
@pytest.mark.parametrize(("percent", "expected"), [(0, 0.0), (None, 100.0)])
async def test_zero_is_no_reader_and_unset_is_every_reader(
    redis_url: str,
    redis_client: aioredis.Redis,
    search: RecordingSearch,
    percent: int | None,
    expected: float,
) -> None:
    rollouts = {} if percent is None else {SEARCH_AFFINITY_ROLLOUT: {"percent": percent}}
    settings = make_settings(redis_url, free_port(), gray_rollouts=rollouts)
    async with start_gateway(settings, search) as application:
        assert share(await keys_of(application, range(READERS))) == expected
        assert share(await keys_over_http(application, search, range(20))) == expected


@pytest.mark.integration
async def test_a_change_in_the_configuration_centre_applies_to_the_next_search(
    at_ten_percent: FastAPI,
    search: RecordingSearch,
    etcd_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The route reads the settings in force from ``app.state.live`` (the lifespan keeps it
    following the gateway's live settings; here a LiveSettings of the test's environment)."""
    runtime = at_ten_percent.state.runtime
    env = f"t-{uuid.uuid4().hex[:8]}"
    live = LiveSettings(
        runtime.settings,
        "gateway",
        endpoint=etcd_endpoint,
        username="",
        password="",
        environment=env,
        cache_dir=tmp_path,
    )
    await live.start()
    try:
        monkeypatch.setattr(at_ten_percent.state, "live", live, raising=False)
        readers = range(2000)
        at_ten = await keys_of(at_ten_percent, readers)
        assert abs(share(at_ten) - 10) <= 2
        async with ConfigStore.connect([etcd_endpoint]) as store:

            async def set_percent(percent: int) -> None:
                rollouts = {SEARCH_AFFINITY_ROLLOUT: {"percent": percent}}
                await store.set(
                    env, "gateway", {"gray_rollouts": rollouts}, who="t", why="gray step"
                )

            await set_percent(0)
            await eventually(
                lambda: live.current.gray_rollouts[SEARCH_AFFINITY_ROLLOUT].percent == 0,
                DEADLINE_S,
                "0 % applied",
            )
            assert share(await keys_of(at_ten_percent, readers)) == 0
            assert share(await keys_over_http(at_ten_percent, search, range(20))) == 0
            await set_percent(50)
            await eventually(
                lambda: live.current.gray_rollouts[SEARCH_AFFINITY_ROLLOUT].percent == 50,
                DEADLINE_S,
                "50 % applied",
            )
            at_fifty = await keys_of(at_ten_percent, readers)
        # Raising the percent kept every reader that had a key, with the same key.
        assert all(
            after == before for before, after in zip(at_ten, at_fifty, strict=True) if before
        )
        assert abs(share(at_fifty) - 50) <= 4
    finally:
        await live.stop()
