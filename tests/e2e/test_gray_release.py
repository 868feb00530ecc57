"""A gray release through real processes: ``webookctl config set`` puts the gateway's
``search_affinity`` rollout at 10 %, and about 10 % of the readers (always the same ones)
take the new path; at 0 % nobody does.

The readers are anonymous, each at its own client address: the rollout hashes
``ip:<address>`` for a reader without a login, and the gateway believes the address in
``X-Forwarded-For`` from the loopback proxy it is configured to trust. Which side each
search took is read from what the gateway exports: its ``/metrics`` counter
``webook_gray_decisions_total{rollout="search_affinity",side}``, scraped after every search
(the searches are sent one at a time, so each one moves the counter by one on one side).
Everything is sequential and waits on conditions with generous deadlines; the requests take
a few seconds.

As in ``test_live_config.py``, the gateway runs in front of the e2e stack with its own
configuration environment (``dev``), so the setting written here reaches it alone; the
changes are written as the ``config-operator`` user, with ``webookctl``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.credentials import SecureEtcd
from devstack.infra import ManagedProcess
from tests.e2e.conftest import USER_AGENT, RunningStack
from tests.e2e.gateways import ctl_as_operator, extra_gateway
from webookctl.tests.run import Result

pytestmark = pytest.mark.e2e

ENVIRONMENT = "dev"
ROLLOUT = "search_affinity"
PERCENT = 10
READERS = 300
# How long a change or the search service may take to show (a loaded machine).
DEADLINE_S = 30.0
# The binomial tolerance: readers on the new side are within this many standard deviations
# of READERS x PERCENT %. A fixed set of addresses gives a fixed count (the hash has no
# randomness), so the margin guards against an unlucky choice of addresses, not a flake.
SIGMAS = 4


def reader_address(n: int) -> str:
    """The client address of reader ``n`` (distinct for every n below 65 536)."""
    return f"10.77.{n // 256}.{n % 256}"


@pytest.fixture(scope="module")
def gray_gateway(stack: RunningStack, search_process: ManagedProcess) -> Iterator[str]:
    """A gateway following the ``dev`` environment's settings, trusting the loopback
    proxy's ``X-Forwarded-For`` and without rate limits; the search service running."""
    with extra_gateway(
        stack,
        "gateway-gray-release",
        ENVIRONMENT,
        {"rate_limits": [], "trusted_proxies": ["127.0.0.1/32"]},
    ) as url:
        yield url


@pytest.fixture
async def http(gray_gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=gray_gateway, headers={"User-Agent": USER_AGENT}, timeout=10
    ) as client:
        yield client


async def _ctl(e2e_etcd: SecureEtcd, *argv: str) -> Result:
    return await ctl_as_operator(e2e_etcd, ENVIRONMENT, *argv)


async def _set_percent(e2e_etcd: SecureEtcd, percent: float) -> None:
    rollouts = {ROLLOUT: {"mode": "hash", "percent": percent}}
    result = await _ctl(
        e2e_etcd,
        "config",
        "set",
        "gateway",
        f"gray_rollouts={json.dumps(rollouts)}",
        "--why",
        f"e2e: {ROLLOUT} at {percent} %",
    )
    assert result.status == 0, result.err


@dataclasses.dataclass(frozen=True)
class Decisions:
    """The gateway's ``search_affinity`` decisions so far, and the percent last applied."""

    new: float
    old: float
    percent: float | None


async def _decisions(http: httpx.AsyncClient) -> Decisions:
    response = await http.get("/metrics")
    response.raise_for_status()
    sides = {"new": 0.0, "old": 0.0}
    percent = None
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.labels.get("rollout") != ROLLOUT:
                continue
            if sample.name == "webook_gray_decisions_total":
                sides[sample.labels["side"]] = sample.value
            elif sample.name == "webook_gray_percent":
                percent = sample.value
    return Decisions(new=sides["new"], old=sides["old"], percent=percent)


async def _search(http: httpx.AsyncClient, reader: int) -> None:
    """One search as reader ``reader``, answered by the search service (code 0)."""
    response = await http.get(
        "/search/query",
        params={"q": "gray release", "type": "article"},
        headers={"X-Forwarded-For": reader_address(reader)},
    )
    assert response.status_code == 200, response.text
    assert response.json()["code"] == 0, response.text


class SideCounter:
    """Which side each search took, from the gateway's counters: one scrape per search,
    each compared with the previous one (searches go one at a time)."""

    def __init__(self, http: httpx.AsyncClient, start: Decisions) -> None:
        self._http = http
        self._last = start

    async def search(self, reader: int) -> str:
        """Search as ``reader``; ``"new"`` or ``"old"``, the side the search took."""
        await _search(self._http, reader)
        now = await _decisions(self._http)
        moved = (now.new - self._last.new, now.old - self._last.old)
        self._last = now
        assert moved in ((1, 0), (0, 1)), f"one decision per search, got {moved}"
        return "new" if moved == (1, 0) else "old"


async def _until_applied(http: httpx.AsyncClient, percent: float) -> None:
    """Search (as a reader outside the measured ones) until the gateway decides at
    ``percent``: the change has been applied. Also waits for the search service to be found."""
    started = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - started < DEADLINE_S:
        try:
            await _search(http, READERS + 1000)
        except AssertionError as exc:  # search not yet discovered: code 5
            last = exc
        else:
            if (await _decisions(http)).percent == percent:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the gateway never decided at {percent} % (last error: {last})")


async def test_ten_percent_of_readers_always_on_the_new_side_then_none(
    http: httpx.AsyncClient, e2e_etcd: SecureEtcd
) -> None:
    try:
        await _set_percent(e2e_etcd, PERCENT)
        await _until_applied(http, PERCENT)

        counter = SideCounter(http, await _decisions(http))
        sides: dict[int, list[str]] = {reader: [] for reader in range(READERS)}
        for _ in range(2):
            for reader in range(READERS):
                sides[reader].append(await counter.search(reader))

        switched = [reader for reader, taken in sides.items() if len(set(taken)) != 1]
        assert not switched, f"readers whose two searches took different sides: {switched}"
        on_new = sum(taken[0] == "new" for taken in sides.values())
        expected = READERS * PERCENT / 100
        tolerance = SIGMAS * math.sqrt(READERS * PERCENT / 100 * (1 - PERCENT / 100))
        assert abs(on_new - expected) <= tolerance, (
            f"{on_new} of {READERS} readers on the new side, expected {expected} ± {tolerance:.1f}"
        )

        await _set_percent(e2e_etcd, 0)
        await _until_applied(http, 0)
        before = await _decisions(http)
        # Every reader, those who had the new path included.
        for reader in range(READERS):
            await _search(http, reader)
        after = await _decisions(http)
        assert after.new == before.new, "a search took the new path at 0 %"
        assert after.old - before.old == READERS
    finally:
        result = await _ctl(
            e2e_etcd, "config", "set", "gateway", "--unset", "gray_rollouts", "--why", "e2e done"
        )
        assert result.status == 0, result.err
