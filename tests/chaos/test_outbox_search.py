"""No acknowledged article change is lost on its way to search, whatever dies meanwhile.

A publication or a withdrawal travels: gateway → article service, which commits the change
and its event (an ``article_outbox`` row) in one transaction → the outbox relay in the same
process → the broker → the search service's consumer → the index. Each test streams
changes through the gateway from several concurrent authors, breaks one hop, and checks
what search answers afterwards:

- **the article service SIGKILLed** at random points of the stream, several times, and
  restarted each time (requests in flight, the relay's round, the producer: all die);
- **the relay killed mid-batch**: SIGKILL the moment the relay holds claimed, unsent
  outbox rows (polled in the service's SQLite file), so a restarted relay must wait for
  their lease to expire and publish them (at least once);
- **the broker SIGKILLed and restarted**: the chaos stack's broker keeps its logs in
  memory, so a restart loses every record it had acknowledged; the relays notice (topics
  created again, offsets going back) and publish their replay window again from the outbox
  table (``kit.outbox.relay``) with a producer on fresh metadata.

The ledger (:class:`ArticleHistory`) keeps, per article, the last state the gateway
acknowledged (code 0) — published with a word used by no other publication, or hidden
(withdrawn; a draft before its first publication) — and every state asked for after it
without an acknowledgement: such a request may have committed or not, so the article may
be in any of them. Each article changes in one sequential loop, so its requests never
overlap. After the fault the checks are:

1. the article service holds, for every article, one of the states its ledger allows
   (otherwise it lost an acknowledged change itself);
2. within :data:`CONVERGE_DEADLINE_S`, search answers exactly that state: a published
   article is found by its word, in that version; a hidden one is found by no word.

Requests that fail while the fault lasts are expected (the client was told); an
acknowledged change that search never shows, or a withdrawn article still found, fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self

import httpx
import pytest
from sqlalchemy.engine import make_url

from bench._workload import RunningStack
from devstack.infra import InfraError, ManagedProcess
from services.article.repository import article_outbox
from tests.chaos.report import SearchSyncOutcome

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

logger = logging.getLogger(__name__)

PASSWORD: Final = "hello#world123"
USER_AGENT: Final = "webook-chaos-search/1.0"
AUTHORS: Final = 4
ARTICLES_PER_AUTHOR: Final = 3
# Longer than the gateway's gRPC deadline (3 s): the gateway answers first, so a change the
# client saw fail is not still running in the article service when the next one starts.
REQUEST_TIMEOUT_S: Final = 15.0
# An article's pause between two changes, and after a failed one (no hammering a dead
# service, and any orphaned commit of the failed call has settled before the next change).
PAUSE_S: Final = 0.25
FAILED_PAUSE_S: Final = 1.0
# Of the changes to an article its author believes published: withdrawals (else a new word).
WITHDRAW_SHARE: Final = 0.4
RESTART_TIMEOUT_S: Final = 60.0
# How long the stream may go without an acknowledgement once the fault is over.
ACK_DEADLINE_S: Final = 60.0
CONVERGE_DEADLINE_S: Final = 90.0
POLL_S: Final = 0.5
# Search pages hold up to 50 hits: every article of a stream fits in one.
SEARCH_LIMIT: Final = 50
ARTICLE_SERVICE_KILLS: Final = 5
# The relay fault: kills until this many landed mid-batch, at most MID_BATCH_KILLS kills.
MID_BATCH_WANTED: Final = 2
MID_BATCH_KILLS: Final = 5
# How long the relay may go without claiming a row while changes stream in.
CLAIM_WAIT_S: Final = 20.0
BROKER_DOWN_S: Final = 4.0
STATUS_PUBLISHED: Final = 2

# What an article shows readers: its word when published, None when hidden.
State = str | None


class _Refused(Exception):
    """An answer that is not an acknowledgement."""


class StreamStalled(RuntimeError):
    """No change was acknowledged for :data:`ACK_DEADLINE_S` after a fault."""


class FaultNotInjected(RuntimeError):
    """The fault could not be brought about (so nothing after it would be meaningful)."""


def _data(response: httpx.Response) -> Any:
    """The envelope's ``data`` of an HTTP 200 with code 0; raises :class:`_Refused` otherwise."""
    if response.status_code != 200:
        raise _Refused(f"HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise _Refused(f"HTTP 200, not JSON: {response.text[:80]!r}") from exc
    if not isinstance(body, dict) or body.get("code") != 0:
        code = body.get("code") if isinstance(body, dict) else None
        raise _Refused(f"code {code}")
    return body.get("data")


def _describe(state: State) -> str:
    return "hidden" if state is None else f"published as {state!r}"


@dataclass
class Author:
    """A signed-up user with its own connection to the gateway."""

    email: str
    http: httpx.AsyncClient
    token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of the author's access token."""
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class ArticleHistory:
    """What was asked of one article through the gateway, and what was acknowledged."""

    article_id: int
    author: Author
    # The last acknowledged state (the draft it starts as is hidden).
    acknowledged: State = None
    # States asked for after it, in order, none acknowledged.
    unacknowledged: list[State] = field(default_factory=list)

    @property
    def intended(self) -> State:
        """The state the author last asked for."""
        return self.unacknowledged[-1] if self.unacknowledged else self.acknowledged

    def possible(self) -> set[State]:
        """The states the article may be in: the last acknowledged one, or one asked for
        after it (an unanswered request may have committed; a later acknowledged one would
        have overridden it)."""
        return {self.acknowledged, *self.unacknowledged}

    def story(self) -> str:
        """The ledger's view, for failure messages."""
        tail = ", ".join(_describe(s) for s in self.unacknowledged) or "none"
        return f"acknowledged {_describe(self.acknowledged)}; unacknowledged since: {tail}"


@dataclass
class SearchCheck:
    """What the checks after a fault found."""

    converged_s: float | None = None
    lost: list[str] = field(default_factory=list)
    searchable_withdrawn: list[str] = field(default_factory=list)
    # Articles left in a state whose request was not acknowledged (it committed anyway).
    unacknowledged_committed: int = 0


class ArticleChangeStream:
    """Authors publishing (each time with a new word) and withdrawing their articles.

    Every article changes in a loop of its own, one request at a time, so the ledger of
    each is exact; the loops of all articles of all authors run concurrently. Every title is
    ``<tag> <word>``: the stream's tag finds all its articles in one search.
    """

    def __init__(self, base_url: str, rng: random.Random, *, pause_s: float = PAUSE_S) -> None:
        self.base_url = base_url
        self.rng = rng
        self.pause_s = pause_s
        self.tag = f"zq{uuid.uuid4().hex[:10]}"
        self.authors: list[Author] = []
        self.articles: list[ArticleHistory] = []
        self.acknowledged = 0
        self.unacknowledged = 0
        self.failures: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        try:
            await self._setup()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        await self._close()

    async def _setup(self) -> None:
        """Sign up and log in the authors; each saves its drafts (before any fault)."""
        assert AUTHORS * ARTICLES_PER_AUTHOR <= SEARCH_LIMIT
        for n in range(AUTHORS):
            author = Author(
                email=f"chaos-search-{self.tag}-{n}@example.com",
                http=httpx.AsyncClient(
                    base_url=self.base_url,
                    headers={"User-Agent": USER_AGENT},
                    timeout=REQUEST_TIMEOUT_S,
                ),
            )
            self.authors.append(author)
            body = {"email": author.email, "password": PASSWORD, "confirmPassword": PASSWORD}
            _data(await author.http.post("/users/signup", json=body))
            login = await author.http.post(
                "/users/login", json={"email": author.email, "password": PASSWORD}
            )
            _data(login)
            author.token = login.headers["x-jwt-token"]
            for _ in range(ARTICLES_PER_AUTHOR):
                self.articles.append(ArticleHistory(await self._draft(author), author))

    async def _draft(self, author: Author) -> int:
        """A new draft of ``author``'s, retried: the gateway's circuit breaker for the
        article service may still shed some calls after an earlier fault. (A draft saved
        without an answer is left alone: hidden, and never published.)"""
        draft = {"title": f"{self.tag} draft", "content": "<p>chaos article</p>"}
        deadline = time.monotonic() + ACK_DEADLINE_S
        while True:
            try:
                response = await author.http.post(
                    "/articles/edit", json=draft, headers=author.headers
                )
                return int(_data(response))
            except (_Refused, httpx.HTTPError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(POLL_S)

    async def _close(self) -> None:
        for author in self.authors:
            await author.http.aclose()

    def run(self) -> None:
        """Start every article's loop (until :meth:`stop`)."""
        self._stop.clear()
        self._loops = [asyncio.create_task(self._loop(article)) for article in self.articles]

    async def stop(self) -> None:
        """Let every loop finish its change in flight, then stop."""
        self._stop.set()
        loops, self._loops = self._loops, []
        await asyncio.gather(*loops)

    async def wait_for_acks(self, more: int, why: str) -> None:
        """Wait until ``more`` further changes are acknowledged; :class:`StreamStalled` if
        none is for :data:`ACK_DEADLINE_S`."""
        target = self.acknowledged + more
        last, last_at = self.acknowledged, time.monotonic()
        while self.acknowledged < target:
            if self.acknowledged != last:
                last, last_at = self.acknowledged, time.monotonic()
            if time.monotonic() - last_at > ACK_DEADLINE_S:
                raise StreamStalled(
                    f"no change acknowledged for {ACK_DEADLINE_S:.0f}s {why} "
                    f"(failures: {dict(self.failures.most_common(3))})"
                )
            await asyncio.sleep(0.1)

    async def _loop(self, article: ArticleHistory) -> None:
        while not self._stop.is_set():
            if article.intended is not None and self.rng.random() < WITHDRAW_SHARE:
                ok = await self._change(article, None)
            else:
                ok = await self._change(article, f"zw{uuid.uuid4().hex[:10]}")
            await asyncio.sleep(self.pause_s if ok else FAILED_PAUSE_S)

    async def _change(self, article: ArticleHistory, state: State) -> bool:
        """Ask for ``state`` (publish with that word, or withdraw); True if acknowledged."""
        author = article.author
        article.unacknowledged.append(state)
        try:
            if state is None:
                response = await author.http.post(
                    "/articles/withdraw", json={"id": article.article_id}, headers=author.headers
                )
                _data(response)
            else:
                body = {
                    "id": article.article_id,
                    "title": f"{self.tag} {state}",
                    "content": "<p>chaos article</p>",
                }
                response = await author.http.post(
                    "/articles/publish", json=body, headers=author.headers
                )
                if (answered := _data(response)) != article.article_id:
                    raise _Refused(f"publish answered id {answered}")
        except (_Refused, httpx.HTTPError) as exc:
            self.unacknowledged += 1
            self.failures[str(exc)[:60] or type(exc).__name__] += 1
            return False
        article.acknowledged = state
        article.unacknowledged.clear()
        self.acknowledged += 1
        return True

    # -- checking ---------------------------------------------------------------------

    async def check(self, deadline_s: float = CONVERGE_DEADLINE_S) -> SearchCheck:
        """Both checks of the module docstring (the stream stopped)."""
        result = SearchCheck()
        expected: dict[int, State] = {}
        for article in self.articles:
            held = await self._held(article)
            expected[article.article_id] = held
            if held != article.acknowledged and held in article.unacknowledged:
                result.unacknowledged_committed += 1
            if held not in article.possible():
                result.lost.append(
                    f"article {article.article_id}: the article service holds "
                    f"{_describe(held)}; {article.story()}"
                )
        started = time.monotonic()
        hits: dict[int, str] = {}
        while True:
            with contextlib.suppress(_Refused, httpx.HTTPError):
                # (The search service may still be catching up or reconnecting.)
                hits = await self._search(self.tag)
                if not list(self._disagreements(expected, hits)):
                    result.converged_s = time.monotonic() - started
                    break
            if time.monotonic() - started > deadline_s:
                break
            await asyncio.sleep(POLL_S)
        by_id = {a.article_id: a for a in self.articles}
        for article_id, state in sorted(expected.items()):
            story = by_id[article_id].story()
            if state is None:
                if article_id in hits:
                    result.searchable_withdrawn.append(
                        f"article {article_id}: hidden, found as {hits[article_id]!r}; {story}"
                    )
                continue
            # Found by its own word, in this version.
            by_word = await self._search_or_empty(state)
            if by_word.get(article_id) != f"{self.tag} {state}":
                result.lost.append(
                    f"article {article_id}: published as {state!r}, search by that word "
                    f"answers {by_word.get(article_id)!r}, by the tag "
                    f"{hits.get(article_id)!r}; {story}"
                )
        return result

    def _disagreements(self, expected: dict[int, State], hits: dict[int, str]) -> Iterator[int]:
        for article_id, state in expected.items():
            shown = hits.get(article_id)
            if (state is None and shown is not None) or (
                state is not None and shown != f"{self.tag} {state}"
            ):
                yield article_id

    async def _held(self, article: ArticleHistory) -> State:
        """The article's state in the article service (its author's view), retried until
        it answers."""
        author = article.author
        deadline = time.monotonic() + ACK_DEADLINE_S
        while True:
            try:
                response = await author.http.get(
                    f"/articles/detail/{article.article_id}", headers=author.headers
                )
                detail = _data(response)
                break
            except (_Refused, httpx.HTTPError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(POLL_S)
        if detail["status"] != STATUS_PUBLISHED:
            return None
        word: str = detail["title"].removeprefix(f"{self.tag} ")
        return word

    async def _search(self, q: str) -> dict[int, str]:
        """Article hits of ``q``: id → title (public: no Authorization header)."""
        params: dict[str, str | int] = {"q": q, "type": "article", "limit": SEARCH_LIMIT}
        data = _data(await self.authors[0].http.get("/search/query", params=params))
        return {int(hit["id"]): str(hit["title"]) for hit in data["hits"]}

    async def _search_or_empty(self, q: str) -> dict[int, str]:
        try:
            return await self._search(q)
        except (_Refused, httpx.HTTPError):
            return {}


@dataclass
class Kills:
    """What a fault did: processes SIGKILLed, those that left claimed outbox rows, and
    anything else worth a note in the table."""

    kills: int = 0
    mid_batch: int | None = None
    notes: list[str] = field(default_factory=list)


Fault = Callable[[ArticleChangeStream, Kills, random.Random], Awaitable[None]]


async def _drive(
    stack: RunningStack,
    name: str,
    fault: Fault,
    outcomes: list[SearchSyncOutcome],
    *,
    pause_s: float = PAUSE_S,
) -> None:
    """Stream changes, run ``fault`` meanwhile, stream on after it; record the outcome,
    then assert every check."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    started = time.monotonic()
    kills = Kills()
    verify_error = ""
    check = SearchCheck()
    async with ArticleChangeStream(stack.base_url, rng, pause_s=pause_s) as stream:
        stream.run()
        try:
            await stream.wait_for_acks(len(stream.articles), "before the fault")
            await fault(stream, kills, rng)
            # The stream goes on through whatever was restarted.
            await stream.wait_for_acks(len(stream.articles), "after the fault")
        except (StreamStalled, FaultNotInjected, InfraError) as exc:
            verify_error = f"{type(exc).__name__}: {exc}"
        finally:
            await stream.stop()
        if not verify_error:
            try:
                check = await stream.check()
            except (_Refused, httpx.HTTPError) as exc:
                verify_error = f"reading the articles back failed: {exc}"
    dead = stack.dead()
    notes = [*kills.notes, f"{check.unacknowledged_committed} unacknowledged changes committed"]
    outcome = SearchSyncOutcome(
        fault=f"{name} ({'; '.join(notes)})",
        seconds=time.monotonic() - started,
        acknowledged=stream.acknowledged,
        unacknowledged=stream.unacknowledged,
        kills=kills.kills,
        mid_batch_kills=kills.mid_batch,
        converged_s=check.converged_s,
        lost=check.lost,
        searchable_withdrawn=check.searchable_withdrawn,
        alive=len(stack.processes()) - len(dead),
        processes=len(stack.processes()),
        dead=dead,
        verify_error=verify_error,
    )
    outcomes.append(outcome)
    logger.info(
        "article-to-search fault done",
        extra={"fault": name, "seed": seed, "outcome": repr(outcome), "tag": stream.tag},
    )
    context = f"(seed {seed}, tag {stream.tag})"
    assert verify_error == "", f"{verify_error} {context}"
    assert stream.acknowledged > 0
    assert check.lost == [], f"acknowledged changes lost {context}:\n" + "\n".join(check.lost)
    assert check.searchable_withdrawn == [], (
        f"withdrawn articles still searchable {context}:\n" + "\n".join(check.searchable_withdrawn)
    )
    assert check.converged_s is not None, f"search never agreed with the articles {context}"
    assert dead == []


# -- the article service's outbox, read from its SQLite file --------------------------------


def _outbox_file(stack: RunningStack) -> Path:
    database = make_url(stack.infra.database_for("article")).database
    assert database, "the chaos stack's article service runs on SQLite"
    return Path(database)


def _outbox_table() -> str:
    return article_outbox().table_name


def _claim_prefix(pid: int) -> str:
    """How the claims of the relay in process ``pid`` begin: a relay names its claims
    ``<host>-<pid>-<random>-...`` (``kit.outbox.relay.default_relay_id``)."""
    return f"{socket.gethostname()[:32]}-{pid}-"


def _held_by(conn: sqlite3.Connection, pid: int) -> list[int]:
    """Outbox rows the relay of process ``pid`` claimed and has not sent."""
    prefix = _claim_prefix(pid)
    rows = conn.execute(
        f"SELECT id, claimed_by FROM {_outbox_table()} "
        "WHERE claimed_by IS NOT NULL AND sent_ms IS NULL ORDER BY id"
    )
    return [row_id for row_id, claimed_by in rows if claimed_by.startswith(prefix)]


def _held_rows(db: Path, pid: int) -> list[int]:
    """Outbox rows the relay of process ``pid`` claimed and has not sent."""
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return _held_by(conn, pid)


def _unsent(db: Path, ids: list[int]) -> list[int]:
    """Those of ``ids`` the relay has not sent yet."""
    marks = ",".join("?" * len(ids))
    query = f"SELECT id FROM {_outbox_table()} WHERE sent_ms IS NULL AND id IN ({marks})"
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return [row_id for (row_id,) in conn.execute(query, ids)]


def _kill_when_claimed(db: Path, victim: ManagedProcess, give_up_at: float) -> int | None:
    """SIGKILL ``victim`` the moment its relay holds claimed, unsent rows (polled in a tight
    loop: a relay round lasts milliseconds); its pid, or None if its relay claimed nothing
    before ``give_up_at``.

    Only the victim's own claims count: rows a relay killed earlier left behind stay claimed
    until their lease expires.
    """
    pid = victim.pid
    assert pid is not None
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        while time.monotonic() < give_up_at:
            if _held_by(conn, pid):
                victim.kill()
                return pid
            time.sleep(0.001)
    return None


# -- the faults -------------------------------------------------------------------------------


@pytest.mark.timeout(300)
async def test_article_service_sigkilled_while_authors_publish_and_withdraw(
    chaos_stack: RunningStack, search_sync_outcomes: list[SearchSyncOutcome]
) -> None:
    victim = chaos_stack.instances["article"][0]

    async def fault(stream: ArticleChangeStream, kills: Kills, rng: random.Random) -> None:
        for _ in range(ARTICLE_SERVICE_KILLS):
            await asyncio.sleep(rng.uniform(0.2, 2.5))  # a random point of the stream
            await asyncio.to_thread(victim.kill)
            kills.kills += 1
            await asyncio.sleep(rng.uniform(0.0, 2.0))
            await asyncio.to_thread(victim.start, RESTART_TIMEOUT_S)
            await stream.wait_for_acks(1, f"after restart {kills.kills}")

    name = f"article service SIGKILLed {ARTICLE_SERVICE_KILLS}x mid-stream"
    await _drive(chaos_stack, name, fault, search_sync_outcomes)


@pytest.mark.timeout(300)
async def test_relay_sigkilled_holding_claimed_rows(
    chaos_stack: RunningStack, search_sync_outcomes: list[SearchSyncOutcome]
) -> None:
    victim = chaos_stack.instances["article"][0]
    db = _outbox_file(chaos_stack)
    left_behind: list[int] = []
    last_kill_at = 0.0

    async def fault(stream: ArticleChangeStream, kills: Kills, rng: random.Random) -> None:
        nonlocal last_kill_at
        kills.mid_batch = 0
        while kills.kills < MID_BATCH_KILLS and kills.mid_batch < MID_BATCH_WANTED:
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            give_up_at = time.monotonic() + CLAIM_WAIT_S
            pid = await asyncio.to_thread(_kill_when_claimed, db, victim, give_up_at)
            if pid is None:
                raise FaultNotInjected(
                    f"the relay claimed no row in {CLAIM_WAIT_S:.0f}s of publishing"
                )
            kills.kills += 1
            last_kill_at = time.monotonic()
            # Still claimed and unsent with their relay dead: the kill landed mid-batch.
            if held := await asyncio.to_thread(_held_rows, db, pid):
                kills.mid_batch += 1
                left_behind.extend(held)
            logger.info("relay killed", extra={"held_rows": held})
            await asyncio.to_thread(victim.start, RESTART_TIMEOUT_S)
            await stream.wait_for_acks(1, f"after restart {kills.kills}")
        # Once their lease expires, the restarted relay publishes the rows left behind.
        waited = time.monotonic()
        while left_behind and await asyncio.to_thread(_unsent, db, left_behind):
            if time.monotonic() - waited > CONVERGE_DEADLINE_S:
                raise StreamStalled(f"outbox rows {left_behind} never sent after the restart")
            await asyncio.sleep(POLL_S)
        kills.notes.append(
            f"{len(left_behind)} claimed rows left behind, all sent "
            f"{time.monotonic() - last_kill_at:.0f}s after the last kill"
        )

    # No pause between an article's changes: the relay is busy, so its rounds are caught.
    await _drive(
        chaos_stack, "relay SIGKILLed holding claimed rows", fault, search_sync_outcomes, pause_s=0
    )
    outcome = search_sync_outcomes[-1]
    assert outcome.mid_batch_kills, f"no kill landed mid-batch in {outcome.kills} kills"


@pytest.mark.timeout(300)
async def test_broker_sigkilled_and_restarted(
    chaos_stack: RunningStack,
    search_sync_outcomes: list[SearchSyncOutcome],
) -> None:
    broker = chaos_stack.kafka

    async def fault(stream: ArticleChangeStream, kills: Kills, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0.5, 2.5))
        await asyncio.to_thread(broker.kill)
        kills.kills += 1
        # Publications are still acknowledged: they wait in the outbox, not for the broker.
        await stream.wait_for_acks(1, "with the broker down")
        await asyncio.sleep(BROKER_DOWN_S)
        await asyncio.to_thread(broker.start, RESTART_TIMEOUT_S)

    await _drive(chaos_stack, "broker SIGKILLed, restarted", fault, search_sync_outcomes)
