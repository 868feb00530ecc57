"""Rolling restarts of search replicas under queries: no reader sees a failure or a partial
answer.

Two search replicas join the session's stack (each with its own data directory, as
:func:`devstack.suite.service_env` gives every replica), a corpus of articles carrying one
unique word is published through the gateway, and once search finds all of it, several
clients query it through the gateway without pause while the replicas restart one after
the other (SIGTERM, start again, wait until it reports SERVING), then one restarts on an
empty data directory (a new volume: a rebuild from the article and user services and a
sync consumer reading the topics from their beginning). A replica enters the gateway's
balancer only once ready (:meth:`kit.grpcx.server.ServiceRunner.ready_when`), so every
answer must succeed with the whole corpus: one from a replica still catching up would
count fewer articles.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from devstack.infra import ManagedProcess, free_port, wait_ready
from devstack.suite import service_env, service_process
from tests.e2e.conftest import USER_AGENT, RunningStack, signed_up

pytestmark = pytest.mark.e2e

logger = logging.getLogger(__name__)

CORPUS = 12
CLIENTS = 4
# Replica numbers of their own: replica 0's data directory belongs to test_search.py's process.
REPLICAS = (1, 2)
# Generous: a replica's start on the shared 2-core machine (imports, group join, catch-up,
# and for the empty volume a rebuild) takes seconds.
START_TIMEOUT_S = 90.0
SEARCHABLE_WITHIN_S = 30.0
STEADY_S = 1.0


@dataclass
class Phase:
    """What the readers saw during one phase of the test."""

    name: str
    queries: int = 0
    failures: list[str] = field(default_factory=list)
    partial: list[int] = field(default_factory=list)


def _data_dir(replica: ManagedProcess) -> Path:
    assert replica.env is not None
    return Path(replica.env["WEBOOK_SEARCH_DATA_DIR"])


@pytest.fixture(scope="module")
def replicas(stack: RunningStack) -> Iterator[list[ManagedProcess]]:
    """Two search replicas in the session's stack, each on its own data directory."""
    processes = [
        service_process("search", stack.infra, free_port(), stack.log_dir, replica=replica)
        for replica in REPLICAS
    ]
    directories = {_data_dir(p) for p in processes}
    assert len(directories) == len(processes), "replicas must not share a data directory"
    # The directory replica 0 (and a reindex) uses is none of them.
    default = service_env("search", stack.infra, 0, {}).get("WEBOOK_SEARCH_DATA_DIR")
    assert default is None or Path(default) not in directories
    try:
        for process in processes:
            process.spawn()
        wait_ready(processes, START_TIMEOUT_S)
        yield processes
    finally:
        for process in processes:
            process.stop()


async def _total(client: httpx.AsyncClient, word: str) -> int:
    answer = (await client.get("/search/query", params={"q": word, "type": "article"})).json()
    assert answer["code"] == 0, answer
    return int(answer["data"]["total"])


async def _read_continuously(
    client: httpx.AsyncClient, word: str, phases: list[Phase], stop: asyncio.Event
) -> None:
    """Query until ``stop``, booking each answer in the phase current when it was asked."""
    while not stop.is_set():
        phase = phases[-1]
        try:
            response = await client.get("/search/query", params={"q": word, "type": "article"})
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            phase.queries += 1
            phase.failures.append(repr(exc))
            continue
        phase.queries += 1
        if response.status_code != 200 or answer.get("code") != 0:
            phase.failures.append(f"{response.status_code} {answer}")
        elif answer["data"]["total"] != CORPUS:
            phase.partial.append(int(answer["data"]["total"]))


async def test_rolling_restarts_answer_every_query_with_the_whole_corpus(
    stack: RunningStack, client: httpx.AsyncClient, replicas: list[ManagedProcess]
) -> None:
    word = "zr" + uuid.uuid4().hex[:10]
    author = await signed_up(client, "rolling")
    for i in range(CORPUS):
        body = {"title": f"rolling {word} {i}", "content": f"<p>article {i} about {word}</p>"}
        answer = (await client.post("/articles/publish", json=body, headers=author)).json()
        assert answer["code"] == 0, answer
    deadline = asyncio.get_running_loop().time() + SEARCHABLE_WITHIN_S
    while await _total(client, word) != CORPUS:
        assert asyncio.get_running_loop().time() < deadline, "the corpus never became searchable"
        await asyncio.sleep(0.2)

    phases = [Phase("steady")]
    stop = asyncio.Event()
    readers = [
        httpx.AsyncClient(base_url=stack.base_url, headers={"User-Agent": USER_AGENT}, timeout=10)
        for _ in range(CLIENTS)
    ]
    tasks = [asyncio.create_task(_read_continuously(r, word, phases, stop)) for r in readers]
    try:
        await asyncio.sleep(STEADY_S)
        for index, replica in enumerate(replicas):
            phases.append(Phase(f"restart replica {index}"))
            await asyncio.to_thread(replica.stop)
            await asyncio.to_thread(replica.start, START_TIMEOUT_S)
        # A new volume: the index and its consumer group start from nothing.
        phases.append(Phase("replica 0 on an empty data directory"))
        await asyncio.to_thread(replicas[0].stop)
        shutil.rmtree(_data_dir(replicas[0]))
        await asyncio.to_thread(replicas[0].start, START_TIMEOUT_S)
        phases.append(Phase("steady after"))
        await asyncio.sleep(STEADY_S)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for reader in readers:
            await reader.aclose()

    for phase in phases:
        logger.info(
            "rolling restart phase",
            extra={
                "phase": phase.name,
                "queries": phase.queries,
                "failures": len(phase.failures),
                "partial": len(phase.partial),
            },
        )
    summary = {p.name: (p.queries, len(p.failures), len(p.partial)) for p in phases}
    assert all(p.queries > 0 for p in phases), summary
    assert [f for p in phases for f in p.failures] == [], summary
    assert [t for p in phases for t in p.partial] == [], summary
