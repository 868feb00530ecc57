"""The interactive service's tables moved from one MariaDB database to another under a live
workload: the stack, the workload, the operator's commands and the checks.

Used by ``tests/chaos/test_interactive_migration.py`` (``make chaos``); its sizes are
parameters. :func:`run_migration` walks the steps docs/migration-runbook.md describes
and returns a :class:`MigrationReport` the tests assert on:

1. ``source_only``: two fresh databases on the test MariaDB server, the service's schema on
   both (``python -m services.interactive migrate``), old rows seeded straight into the
   source (objects nobody touches during the test, so that the copy has work to do), and
   the users' requests flowing;
2. ``source_first`` with about :attr:`MigrationPlan.failure_rate` of the destination's
   writes failing (``BEFORE INSERT/UPDATE/DELETE`` triggers there that ``SIGNAL`` at
   random): every request still succeeds, the copies that failed are counted
   (``webook_migrator_second_write_failures_total``); the triggers are dropped after;
3. the repair: a full validation from the source while the fixers copy what it reports;
   the replica that does not run the validation is SIGKILLed once its fixer has repaired
   rows and started again (it follows the live mode setting, so it comes back in
   ``source_first``); full validations again until one finds nothing;
4. the users writing on: a full validation from the source clean, the destination's
   ``AUTO_INCREMENT`` raised above the source's ids, then ``destination_first`` through the
   ``switching`` barrier (``webookctl migrate mode destination_first --via-switching``: the
   live setting to ``switching``, every replica drained, then ``destination_first``; the
   requests arriving meanwhile wait, none fails), and full validations from the
   destination until one finds nothing;
5. the workload stopped: full validations in both directions find nothing, the tables are
   equal row for row, and the destination holds exactly the likes and collections the
   users were told they made;
6. ``destination_only`` with the workload again: the source is not written any more, and
   the destination still holds exactly what the users did.

Every mode switch is the live setting (``webookctl config set interactive
migration_mode=...``, the durable way; ``--via-switching`` writes it too), checked on every
replica with ``webookctl migrate status``; validations are ``webookctl migrate full
start`` and ``status``. The processes run over mutual TLS with etcd and Redis
credentials, as in production; the operator's certificate calls the admin API. Every wait
polls a condition with a generous deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._workload import RunningStack, running_stack, uid_of
from devstack.catalog import with_peers
from devstack.infra import ManagedProcess, free_port
from devstack.suite import Infra, migrate, service_process
from devstack.tls import OPERATOR
from kit.sql import create_engine
from services.interactive.repository.migration import INTERACTIVES, USER_COLLECTS, USER_LIKES
from tests.chaos.scheduler_rig import fresh_database
from webookctl.tests.run import Result, ctl_env, run, run_process

logger = logging.getLogger(__name__)

SERVICE: Final = "interactive"
PREFIX: Final = "WEBOOK_INTERACTIVE_"
REPLICAS: Final = 2
BIZ: Final = "article"
TABLES: Final = ("interactives", "user_likes", "user_collects")
# The seeded objects' ids: far above the articles the workload publishes.
SEED_BIZ_ID: Final = 1_000_000
SEED_UID: Final = 900_000
USER_AGENT: Final = "webook-migration/1.0"
PASSWORD: Final = "hello#world123"
# Bounds a hang on a loaded two-core machine only: every wait polls a condition.
WAIT_S: Final = 240.0
POLL_S: Final = 0.25
START_S: Final = 90.0
TRIGGER_PREFIX: Final = "webook_test_fail_"

# The step of source_first where the destination fails some of its writes.
FAILING: Final = "source_first (failing copies)"
# The switch to destination_first through the barrier, the users writing on.
SWITCH: Final = "switch to destination_first (through switching)"

LIKE, UNLIKE, COLLECT, READ = "like", "unlike", "collect", "read"
MIX: Final[Mapping[str, float]] = {READ: 0.35, LIKE: 0.3, UNLIKE: 0.15, COLLECT: 0.2}
COLLECTIONS: Final = 3


@dataclass(frozen=True)
class MigrationPlan:
    """How big a run is.

    Attributes:
        users: virtual users, each one request at a time through the gateway.
        articles: articles the users like, collect and read.
        seed_objects: old ``interactives`` rows seeded into the source (as many
            ``user_likes``, half as many ``user_collects``).
        bulk_rows_per_second: the validators' budget while the old rows are copied;
        rows_per_second: the budget from the end of that copy (a live setting).
        requests_per_phase: acknowledged requests each phase runs at least.
        failures_wanted: failed copies the failure phase waits for.
        failure_rate: the share of the destination's row writes the triggers fail.
        think_s: each user's pause between two requests (keeps a 2-core machine usable).
        max_rounds: full validations tried before a phase gives up on a clean one.
        kill_fixer: SIGKILL the replica that does not validate once its fixer repaired
            rows of the bulk copy, and start it again.
    """

    users: int
    articles: int
    seed_objects: int
    bulk_rows_per_second: float
    rows_per_second: float
    requests_per_phase: int
    failures_wanted: int
    failure_rate: float = 0.1
    think_s: float = 0.02
    max_rounds: int = 8
    kill_fixer: bool = True


async def until(
    condition: Callable[[], Awaitable[bool]], what: str, within_s: float = WAIT_S
) -> None:
    """Poll ``condition`` until it holds; :class:`AssertionError` after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s:.0f}s waiting for {what}")
        await asyncio.sleep(POLL_S)


# -- the databases --------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


async def seed_source(engine: AsyncEngine, objects: int) -> int:
    """Old rows in the source: ``objects`` counters, as many likes, half as many
    collections, none of them touched by the workload; how many rows in all."""
    now = _now_ms() - 86_400_000
    interactives = [
        {
            "biz": BIZ,
            "biz_id": SEED_BIZ_ID + i,
            "read_cnt": i % 97,
            "like_cnt": i % 7,
            "collect_cnt": i % 3,
            "ctime": now,
            "utime": now + i,
        }
        for i in range(objects)
    ]
    likes = [
        {"uid": SEED_UID + i % 500, "biz": BIZ, "biz_id": SEED_BIZ_ID + i, "ctime": now + i}
        for i in range(objects)
    ]
    collects = [
        {
            "uid": SEED_UID + i % 500,
            "cid": i % 4,
            "biz": BIZ,
            "biz_id": SEED_BIZ_ID + i,
            "ctime": now,
            "utime": now + i,
        }
        for i in range(objects // 2)
    ]
    async with engine.begin() as conn:
        for table, rows in (
            (INTERACTIVES.table, interactives),
            (USER_LIKES.table, likes),
            (USER_COLLECTS.table, collects),
        ):
            for start in range(0, len(rows), 1000):
                await conn.execute(insert(table), rows[start : start + 1000])
    return len(interactives) + len(likes) + len(collects)


async def inject_failures(engine: AsyncEngine, rate: float) -> None:
    """Triggers failing about ``rate`` of the row writes of each migrated table."""
    async with engine.begin() as conn:
        for table in TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                await conn.execute(
                    text(
                        f"CREATE TRIGGER {TRIGGER_PREFIX}{table}_{event.lower()} "
                        f"BEFORE {event} ON {table} FOR EACH ROW "
                        f"IF RAND() < {rate} THEN SIGNAL SQLSTATE '45000' "
                        "SET MESSAGE_TEXT = 'injected destination failure'; END IF"
                    )
                )


async def remove_failures(engine: AsyncEngine) -> None:
    """Drop the triggers :func:`inject_failures` created."""
    async with engine.begin() as conn:
        for table in TABLES:
            for event in ("insert", "update", "delete"):
                await conn.execute(text(f"DROP TRIGGER IF EXISTS {TRIGGER_PREFIX}{table}_{event}"))


async def raise_auto_increment(
    source: AsyncEngine, destination: AsyncEngine, margin: int
) -> dict[str, int]:
    """Set each destination table's ``AUTO_INCREMENT`` ``margin`` above the largest id of
    either side (runbook, before ``destination_first``); the values set."""
    raised: dict[str, int] = {}
    for table in TABLES:
        highest = 0
        for engine in (source, destination):
            async with engine.connect() as conn:
                value = (
                    await conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}"))
                ).scalar()
            highest = max(highest, int(value or 0))
        raised[table] = highest + margin
        async with destination.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {table} AUTO_INCREMENT = {raised[table]}"))
    return raised


async def table_rows(
    engine: AsyncEngine, table: str, *, workload_only: bool = False
) -> set[tuple[Any, ...]]:
    """Every row of ``table`` (only those of the workload's articles with
    ``workload_only``)."""
    where = f" WHERE biz_id < {SEED_BIZ_ID}" if workload_only else ""
    async with engine.connect() as conn:
        return {tuple(row) for row in await conn.execute(text(f"SELECT * FROM {table}{where}"))}


async def compare_tables(
    source: AsyncEngine, destination: AsyncEngine, *, workload_only: bool = False
) -> dict[str, int]:
    """Rows of one side not found alike on the other, by table (tables alike left out)."""
    mismatches: dict[str, int] = {}
    for table in TABLES:
        left = await table_rows(source, table, workload_only=workload_only)
        right = await table_rows(destination, table, workload_only=workload_only)
        if left != right:
            mismatches[table] = len(left ^ right)
    return mismatches


async def tables_digest(engine: AsyncEngine) -> dict[str, int]:
    """``CHECKSUM TABLE`` of each migrated table: whether a side was written since."""
    digest: dict[str, int] = {}
    async with engine.connect() as conn:
        for table in TABLES:
            row = (await conn.execute(text(f"CHECKSUM TABLE {table}"))).one()
            digest[table] = int(row[1] or 0)
    return digest


@dataclass(frozen=True)
class ObjectState:
    """What one side holds about the workload's articles."""

    like_cnt: dict[int, int]
    collect_cnt: dict[int, int]
    read_cnt: dict[int, int]
    likes: set[tuple[int, int]]
    collects: dict[tuple[int, int], int]


async def object_state(engine: AsyncEngine, articles: list[int]) -> ObjectState:
    """The counters, likes and collections of ``articles`` on one side."""
    counters = INTERACTIVES.table
    likes = USER_LIKES.table
    collects = USER_COLLECTS.table
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    counters.c.biz_id,
                    counters.c.like_cnt,
                    counters.c.collect_cnt,
                    counters.c.read_cnt,
                ).where(counters.c.biz == BIZ, counters.c.biz_id.in_(articles))
            )
        ).all()
        liked = (
            await conn.execute(
                select(likes.c.uid, likes.c.biz_id).where(
                    likes.c.biz == BIZ, likes.c.biz_id.in_(articles)
                )
            )
        ).all()
        collected = (
            await conn.execute(
                select(collects.c.uid, collects.c.biz_id, collects.c.cid).where(
                    collects.c.biz == BIZ, collects.c.biz_id.in_(articles)
                )
            )
        ).all()
    return ObjectState(
        like_cnt={int(r[0]): int(r[1]) for r in rows},
        collect_cnt={int(r[0]): int(r[2]) for r in rows},
        read_cnt={int(r[0]): int(r[3]) for r in rows},
        likes={(int(r[0]), int(r[1])) for r in liked},
        collects={(int(r[0]), int(r[1])): int(r[2]) for r in collected},
    )


async def count_rows(engine: AsyncEngine) -> int:
    """Rows of the three tables on one side."""
    total = 0
    async with engine.connect() as conn:
        for table in TABLES:
            count = (await conn.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar()
            total += int(count or 0)
    return total


# -- the workload ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One user request and what the gateway answered."""

    phase: str
    operation: str
    ok: bool
    detail: str = ""


@dataclass
class User:
    """A logged-in user with a keep-alive connection of its own."""

    uid: int
    http: httpx.AsyncClient
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Its Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}


class RequestRefused(Exception):
    """An answer that is not an acknowledgement (HTTP 200, code 0)."""


def acknowledged(response: httpx.Response) -> Any:
    """The envelope's ``data`` of an acknowledgement, else :class:`RequestRefused`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("code") != 0:
        raise RequestRefused(f"HTTP {response.status_code} {str(body)[:120]}")
    return body.get("data")


class InteractionWorkload:
    """Users liking, unliking, collecting and reading articles through the gateway.

    Each user sends one request at a time; every outcome is recorded with the phase it
    started in. What the gateway acknowledged is the expectation: a user's last
    acknowledged like or unlike of an article says whether it likes it, its last collect
    in which collection the article is.
    """

    def __init__(self, base_url: str, plan: MigrationPlan, *, seed: int = 7) -> None:
        self._base_url = base_url
        self._plan = plan
        self._random = random.Random(seed)
        self._run_id = uuid.uuid4().hex[:8]
        self.users: list[User] = []
        self.articles: list[int] = []
        self.outcomes: list[Outcome] = []
        self.liked: dict[tuple[int, int], bool] = {}
        self.collected: dict[tuple[int, int], int] = {}
        self.reads: Counter[int] = Counter()
        self.current_phase = "setup"
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def setup(self) -> None:
        """Sign up and log in every user; the first one publishes the articles."""
        for i in range(self._plan.users):
            http = httpx.AsyncClient(
                base_url=self._base_url,
                headers={"User-Agent": USER_AGENT},
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                timeout=60,
            )
            email = f"migration-{self._run_id}-{i}@example.com"
            body = {"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}
            try:
                acknowledged(await http.post("/users/signup", json=body))
                login = await http.post("/users/login", json={"email": email, "password": PASSWORD})
                acknowledged(login)
            except BaseException:
                await http.aclose()
                raise
            token = login.headers["x-jwt-token"]
            self.users.append(User(uid_of(token), http, token))
        author = self.users[0]
        for n in range(self._plan.articles):
            article = {"title": f"migration {self._run_id} #{n}", "content": f"<p>{n}</p>"}

            async def published(body: dict[str, str] = article) -> bool:
                # Right after start the gateway may not have discovered the article service.
                try:
                    answer = await author.http.post(
                        "/articles/publish", json=body, headers=author.headers
                    )
                    self.articles.append(int(acknowledged(answer)))
                except (RequestRefused, httpx.HTTPError):
                    return False
                return True

            await until(published, f"article {n} published", within_s=START_S)

    async def close(self) -> None:
        """Stop the users and close their connections."""
        await self.stop()
        for user in self.users:
            await user.http.aclose()

    def enter(self, phase: str) -> None:
        """Attribute the requests that start from now on to ``phase``."""
        self.current_phase = phase

    def start(self) -> None:
        """Every user sends requests until :meth:`stop`."""
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._user_loop(user)) for user in self.users]

    async def stop(self) -> None:
        """Let every user finish its request in flight, then stop."""
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks)

    def acknowledged_in(self, phase: str) -> int:
        """Requests acknowledged in ``phase``."""
        return sum(1 for o in self.outcomes if o.phase == phase and o.ok)

    def failures(self) -> list[Outcome]:
        """Every request that was not acknowledged."""
        return [o for o in self.outcomes if not o.ok]

    def by_phase(self) -> dict[str, Counter[str]]:
        """Acknowledged and failed requests per phase."""
        table: dict[str, Counter[str]] = {}
        for outcome in self.outcomes:
            table.setdefault(outcome.phase, Counter())["ok" if outcome.ok else "failed"] += 1
        return table

    def expected(self) -> ObjectState:
        """What the destination must hold: the users' last acknowledged actions."""
        likes = {(uid, article) for (uid, article), liked in self.liked.items() if liked}
        like_cnt = {a: sum(1 for _, b in likes if b == a) for a in self.articles}
        collect_cnt = {a: sum(1 for _, b in self.collected if b == a) for a in self.articles}
        return ObjectState(
            like_cnt=like_cnt,
            collect_cnt=collect_cnt,
            read_cnt=dict(self.reads),
            likes=likes,
            collects=dict(self.collected),
        )

    async def _user_loop(self, user: User) -> None:
        operations, weights = list(MIX), list(MIX.values())
        while not self._stop.is_set():
            operation = self._random.choices(operations, weights)[0]
            article = self._random.choice(self.articles)
            phase = self.current_phase
            try:
                await self._request(user, operation, article)
            except (RequestRefused, httpx.HTTPError, KeyError, ValueError) as exc:
                detail = f"{type(exc).__name__}: {exc}"[:200]
                self.outcomes.append(Outcome(phase, operation, False, detail))
            else:
                self.outcomes.append(Outcome(phase, operation, True))
            if self._plan.think_s > 0:
                await asyncio.sleep(self._plan.think_s)

    async def _request(self, user: User, operation: str, article: int) -> None:
        http, key = user.http, (user.uid, article)
        if operation == READ:
            data = acknowledged(await http.get(f"/articles/pub/{article}", headers=user.headers))
            if data["id"] != article:
                raise ValueError(f"read of {article} answered {data['id']}")
            self.reads[article] += 1
        elif operation in (LIKE, UNLIKE):
            body = {"id": article, "like": operation == LIKE}
            acknowledged(await http.post("/articles/pub/like", json=body, headers=user.headers))
            self.liked[key] = operation == LIKE
        elif operation == COLLECT:
            cid = self._random.randrange(COLLECTIONS)
            body = {"id": article, "cid": cid}
            acknowledged(await http.post("/articles/pub/collect", json=body, headers=user.headers))
            self.collected[key] = cid
        else:
            raise ValueError(f"unknown operation {operation!r}")


# -- the stack and the operator -------------------------------------------------------------


@dataclass
class Replica:
    """One interactive process: its handle and its ports."""

    process: ManagedProcess
    grpc_port: int
    metrics_port: int

    @property
    def address(self) -> str:
        """Its gRPC address (the admin API's too)."""
        return f"127.0.0.1:{self.grpc_port}"


@dataclass
class MigrationStack:
    """The stack, the interactive replicas on the two databases, and the operator."""

    stack: RunningStack
    infra: Infra
    replicas: list[Replica]
    source: AsyncEngine
    destination: AsyncEngine
    log_dir: Path

    @property
    def addresses(self) -> str:
        """Every replica, for ``--address`` (the first one runs the validations)."""
        return ",".join(r.address for r in self.replicas)

    def _tls_flags(self) -> list[str]:
        pki = self.infra.pki
        assert pki is not None
        cert, key = pki.files(OPERATOR)
        return ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(pki.ca_file)]

    async def migrate_cmd(self, *argv: str, check: bool = True) -> Any:
        """``webookctl --json migrate argv --address <every replica>`` as the operator."""
        result = await run(
            "--json",
            "--timeout",
            "30",
            *self._tls_flags(),
            "migrate",
            *argv,
            "--address",
            self.addresses,
        )
        if check:
            assert result.status == 0, f"webookctl migrate {' '.join(argv)}: {result.err}"
        return result.json() if result.status == 0 else None

    def _config_env(self) -> dict[str, str]:
        """webookctl's environment with the config operator's etcd credentials."""
        credentials = self.infra.credentials
        assert credentials is not None
        operator = credentials.config_operator
        return ctl_env(
            env=self.infra.mode,
            etcd_endpoints=self.infra.etcd_endpoints[0],
            etcd_username=operator.username,
            etcd_password=operator.password,
        )

    async def config_set(self, *assignments: str, why: str) -> Result:
        """``webookctl config set interactive KEY=VALUE... --why`` as the config operator."""
        result = await run_process(
            "--json", "config", "set", SERVICE, *assignments, "--why", why, env=self._config_env()
        )
        assert result.status == 0, f"webookctl config set: {result.err}"
        return result

    async def switch_via_barrier(self, mode: str) -> dict[str, Any]:
        """``webookctl migrate mode MODE --via-switching`` (the live setting, as the config
        operator, and the admin API, as the operator) on every replica; its document."""
        result = await run_process(
            "--json",
            "--timeout",
            "30",
            *self._tls_flags(),
            "migrate",
            "mode",
            mode,
            "--via-switching",
            "--why",
            f"migration test: {mode}",
            "--address",
            self.addresses,
            env=self._config_env(),
        )
        assert result.status == 0, f"webookctl migrate mode --via-switching: {result.err}"
        document: dict[str, Any] = result.json()
        await self.wait_mode(mode)
        return document

    async def statuses(self) -> dict[str, dict[str, Any]]:
        """Each answering replica's status, by address."""
        document = await self.migrate_cmd("status", check=False)
        if document is None:
            return {}
        return {
            item["address"]: item["status"] for item in document["instances"] if "status" in item
        }

    async def switch(self, mode: str) -> None:
        """Set the live mode setting, then wait until every replica reports ``mode``."""
        await self.config_set(f"migration_mode={mode}", why=f"migration test: {mode}")
        await self.wait_mode(mode)

    async def wait_mode(self, mode: str) -> None:
        """Until ``migrate status`` shows every replica in ``mode``."""

        async def everywhere() -> bool:
            found = await self.statuses()
            return len(found) == len(self.replicas) and all(
                s["mode"] == mode for s in found.values()
            )

        await until(everywhere, f"every replica in {mode}")

    async def full_validation(self, base: str) -> dict[str, Any]:
        """``migrate full start --base base``, then ``status`` until that run ended; the run
        as ``status`` shows it."""
        started = await self.migrate_cmd("full", "start", "--base", base)
        address, started_ms = started["address"], started["validation"]["started_ms"]
        ended: dict[str, Any] = {}

        async def finished() -> bool:
            status = (await self.statuses()).get(address)
            for validation in (status or {}).get("validations", []):
                if validation["kind"] == "full" and validation["started_ms"] == started_ms:
                    if not validation["running"]:
                        ended.update(validation)
                        return True
            return False

        await until(finished, f"the full validation from the {base} to end")
        return ended

    async def metric(self, replica: Replica, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples with ``labels`` on ``replica`` (0 when absent)."""
        url = f"http://127.0.0.1:{replica.metrics_port}/metrics"
        async with httpx.AsyncClient(timeout=10) as http:
            page = (await http.get(url)).text
        total = 0.0
        for family in text_string_to_metric_families(page):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += float(sample.value)
        return total

    async def second_write_failures(self) -> float:
        """Failed copies to the destination counted by the running replicas."""
        return sum(
            [
                await self.metric(
                    r, "webook_migrator_second_write_failures_total", side="destination"
                )
                for r in self.replicas
                if r.process.alive()
            ]
        )


def _interactive_settings(source: str, destination: str, plan: MigrationPlan) -> dict[str, str]:
    return {
        f"{PREFIX}DATABASE_URL": source,
        f"{PREFIX}MIGRATION_DESTINATION_URL": destination,
        f"{PREFIX}MIGRATION_MODE": "source_only",
        f"{PREFIX}MIGRATION_VALIDATOR_ROWS_PER_SECOND": str(plan.bulk_rows_per_second),
        f"{PREFIX}MIGRATION_VALIDATOR_BATCH_SIZE": "250",
    }


async def _serving(replica: Replica) -> None:
    async def ready() -> bool:
        return await asyncio.to_thread(replica.process.check_ready)

    await until(ready, f"{replica.process.name} to serve", within_s=START_S)


@contextlib.asynccontextmanager
async def migration_stack(scratch: Path, plan: MigrationPlan) -> AsyncIterator[MigrationStack]:
    """Two fresh MariaDB databases (migrated, the source seeded), the stack (etcd, broker,
    Redis, user, article, follow, the gateway) and :data:`REPLICAS` interactive replicas
    on those databases. Everything is stopped and both databases dropped after."""
    async with fresh_database() as source_url, fresh_database() as destination_url:
        services = [name for name in with_peers(["article"]) if name != SERVICE]
        with running_stack(scratch, services=services) as stack:
            log_dir = scratch / "logs"
            infra = dataclasses.replace(
                stack.infra,
                overrides={SERVICE: _interactive_settings(source_url, destination_url, plan)},
            )
            # Both databases' schema and the checkpoint table on the destination.
            await asyncio.to_thread(migrate, SERVICE, infra, log_dir)
            source, destination = create_engine(source_url), create_engine(destination_url)
            replicas: list[Replica] = []
            try:
                await seed_source(source, plan.seed_objects)
                for index in range(REPLICAS):
                    grpc_port, metrics_port = free_port(), free_port()
                    process = service_process(
                        SERVICE,
                        infra,
                        grpc_port,
                        log_dir,
                        replica=index,
                        metrics_port=metrics_port,
                        die_with_parent=True,
                    )
                    replicas.append(Replica(process, grpc_port, metrics_port))
                    process.spawn()
                await asyncio.gather(*(_serving(replica) for replica in replicas))
                yield MigrationStack(stack, infra, replicas, source, destination, log_dir)
            finally:
                for replica in replicas:
                    replica.process.terminate()
                deadline = time.monotonic() + 15
                for replica in replicas:
                    await asyncio.to_thread(replica.process.wait_stopped, deadline)
                await source.dispose()
                await destination.dispose()


# -- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pass:
    """One full validation as ``migrate status`` showed it at its end."""

    phase: str
    base: str
    rows_checked: int
    differences: int
    error: str
    seconds: float

    @classmethod
    def of(cls, phase: str, base: str, status: Mapping[str, Any]) -> Pass:
        """The pass from its ``status --json`` document."""
        return cls(
            phase,
            base,
            int(status["rows_checked"]),
            int(status["differences"]),
            str(status["error"]),
            (int(status["ended_ms"]) - int(status["started_ms"])) / 1000,
        )


@dataclass
class MigrationReport:
    """What a run did and measured; the tests assert on it."""

    seeded_rows: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    requests: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[Outcome] = field(default_factory=list)
    second_write_failures: float = 0.0
    triggers_removed: bool = False
    # Rows of the workload's articles unlike on the two sides when the triggers went.
    diverged_at_drop: int = 0
    validations: list[Pass] = field(default_factory=list)
    first_repair_differences: int = 0
    killed: str = ""
    killed_after_fixed: int = 0
    restarted_mode: str = ""
    switch: dict[str, Any] = field(default_factory=dict)
    """What ``--via-switching`` reported (how long the drain and the switch took)."""
    fixed_total: int = 0
    auto_increment: dict[str, int] = field(default_factory=dict)
    final_differences: dict[str, int] = field(default_factory=dict)
    tables_mismatch: dict[str, int] = field(default_factory=dict)
    state_problems: list[str] = field(default_factory=list)
    source_written_after_switch: bool = False
    destination_rows: int = 0

    def lines(self) -> list[str]:
        """The figures, one per line, for the log and failure messages."""
        out = [f"seeded rows: {self.seeded_rows}"]
        out += [f"phase {name}: {seconds:.1f}s" for name, seconds in self.phase_seconds.items()]
        out += [f"requests {phase}: {dict(counts)}" for phase, counts in self.requests.items()]
        out.append(
            f"second-write failures: {self.second_write_failures:.0f}; workload rows unlike "
            f"on the two sides when the failures stopped: {self.diverged_at_drop}"
        )
        out += [
            f"full validation in {v.phase} from the {v.base}: {v.rows_checked} rows, "
            f"{v.differences} differences, {v.seconds:.1f}s"
            + (f", error {v.error}" if v.error else "")
            for v in self.validations
        ]
        if self.switch:
            out.append(
                f"switch to {self.switch['mode']} through {self.switch['via']}: drained in "
                f"{self.switch['drained_s']}s, switched in {self.switch['switched_s']}s"
            )
        out.append(f"killed {self.killed} after its fixer repaired {self.killed_after_fixed} rows")
        out.append(f"restarted in mode {self.restarted_mode}; rows fixed {self.fixed_total}")
        out.append(f"destination rows at the end: {self.destination_rows}")
        out += [f"failed request: {o}" for o in self.failures[:10]]
        out += [f"state problem: {p}" for p in self.state_problems[:20]]
        return out


@contextlib.contextmanager
def _phase(report: MigrationReport, workload: InteractionWorkload, name: str) -> Iterator[None]:
    """A step of the migration: its requests attributed to it, its duration recorded."""
    workload.enter(name)
    started = time.monotonic()
    try:
        yield
    finally:
        report.phase_seconds[name] = time.monotonic() - started


async def _requests(workload: InteractionWorkload, phase: str, count: int) -> None:
    async def enough() -> bool:
        return workload.acknowledged_in(phase) >= count

    await until(enough, f"{count} acknowledged requests in {phase}")


async def _validate_until_clean(
    rig: MigrationStack, report: MigrationReport, phase: str, base: str, max_rounds: int
) -> None:
    """Full validations from ``base`` until one finds nothing (the fixer repairing the
    differences of each before the next)."""
    for _ in range(max_rounds):
        run = await rig.full_validation(base)
        report.validations.append(Pass.of(phase, base, run))
        assert run["error"] == "", f"full validation from {base} failed: {run['error']}"
        if run["differences"] == 0:
            return
    raise AssertionError(f"{phase}: no clean full validation from {base} in {max_rounds} rounds")


async def _repair_with_a_kill(
    rig: MigrationStack, workload: InteractionWorkload, report: MigrationReport, plan: MigrationPlan
) -> None:
    """The first full validation (the bulk copy), the other replica's fixer SIGKILLed once
    it repaired rows and started again; then validations until a clean one."""
    victim = rig.replicas[1]  # the validations run on replicas[0]
    first = asyncio.create_task(rig.full_validation("source"))
    try:
        if not plan.kill_fixer:
            run = await first
            return await _after_bulk_copy(rig, report, plan, run)

        async def victim_fixed() -> bool:
            if first.done():
                return True
            status = (await rig.statuses()).get(victim.address)
            return status is not None and status["fixer"]["fixed"] > 0

        await until(victim_fixed, f"{victim.process.name}'s fixer to repair rows")
        assert not first.done(), (
            "the bulk copy ended before the second fixer repaired a row: seed more rows or "
            "lower the bulk budget"
        )
        status = (await rig.statuses())[victim.address]
        report.killed_after_fixed = status["fixer"]["fixed"]
        report.killed = victim.process.name
        victim.process.kill()
        workload.enter("repair: a replica killed")
        await asyncio.to_thread(victim.process.start, START_S)
        workload.enter("repair")
        restarted = (await rig.statuses()).get(victim.address)
        report.restarted_mode = restarted["mode"] if restarted else "no answer"
        run = await first
    finally:
        if not first.done():
            first.cancel()
    await _after_bulk_copy(rig, report, plan, run)


async def _after_bulk_copy(
    rig: MigrationStack, report: MigrationReport, plan: MigrationPlan, run: Mapping[str, Any]
) -> None:
    report.first_repair_differences = run["differences"]
    report.validations.append(Pass.of("repair", "source", run))
    assert run["error"] == "", f"the first full validation failed: {run['error']}"
    # The bulk copy is done: the next passes may go faster (a live setting).
    await rig.config_set(
        f"migration_validator_rows_per_second={plan.rows_per_second}",
        why="migration test: bulk copy done",
    )
    await _validate_until_clean(rig, report, "repair", "source", plan.max_rounds)


async def _fixed_total(rig: MigrationStack) -> int:
    return sum(s["fixer"]["fixed"] for s in (await rig.statuses()).values())


def check_state(found: ObjectState, expected: ObjectState, *, reads: bool) -> list[str]:
    """Where ``found`` (a side) differs from what the users were acknowledged."""
    problems = []
    for article, count in expected.like_cnt.items():
        if found.like_cnt.get(article, 0) != count:
            problems.append(
                f"article {article}: like_cnt {found.like_cnt.get(article)}, expected {count}"
            )
        if found.collect_cnt.get(article, 0) != expected.collect_cnt[article]:
            problems.append(
                f"article {article}: collect_cnt {found.collect_cnt.get(article)}, "
                f"expected {expected.collect_cnt[article]}"
            )
        if reads and found.read_cnt.get(article, 0) < expected.read_cnt.get(article, 0):
            problems.append(
                f"article {article}: read_cnt {found.read_cnt.get(article)} below the "
                f"{expected.read_cnt.get(article)} acknowledged reads"
            )
    for pair in sorted(expected.likes ^ found.likes):
        problems.append(f"like {pair}: {'missing' if pair in expected.likes else 'extra'}")
    if found.collects != expected.collects:
        wrong = set(found.collects.items()) ^ set(expected.collects.items())
        problems.append(f"collections differ: {sorted(wrong)[:10]}")
    return problems


async def run_migration(scratch: Path, plan: MigrationPlan) -> MigrationReport:
    """Every step of the migration (module docstring); the report of what happened."""
    report = MigrationReport()
    started = time.monotonic()
    async with migration_stack(scratch, plan) as rig:
        report.phase_seconds["stack start"] = time.monotonic() - started
        report.seeded_rows = await count_rows(rig.source)
        workload = InteractionWorkload(rig.stack.base_url, plan)
        try:
            await workload.setup()
            try:
                await _migrate(rig, workload, report, plan)
            finally:
                await workload.stop()
                report.requests = workload.by_phase()
                report.failures = workload.failures()
        finally:
            await workload.close()
            if not report.triggers_removed:
                await remove_failures(rig.destination)
    for line in report.lines():
        logger.warning("migration: %s", line)
    return report


async def _reads_counted(engine: AsyncEngine, workload: InteractionWorkload) -> None:
    """Until ``engine``'s side counts every acknowledged read (read events are counted
    asynchronously, by the read consumer)."""
    expected = workload.expected().read_cnt

    async def counted() -> bool:
        found = await object_state(engine, workload.articles)
        return all(found.read_cnt.get(a, 0) >= n for a, n in expected.items())

    await until(counted, "every acknowledged read to be counted")


async def _migrate(
    rig: MigrationStack, workload: InteractionWorkload, report: MigrationReport, plan: MigrationPlan
) -> None:
    with _phase(report, workload, "source_only"):
        await rig.wait_mode("source_only")
        workload.start()
        await _requests(workload, "source_only", plan.requests_per_phase)

    with _phase(report, workload, FAILING):
        await inject_failures(rig.destination, plan.failure_rate)
        await rig.switch("source_first")

        async def failed_enough() -> bool:
            return await rig.second_write_failures() >= plan.failures_wanted

        await until(failed_enough, f"{plan.failures_wanted} failed copies")
        await _requests(workload, FAILING, plan.requests_per_phase)
        report.second_write_failures = await rig.second_write_failures()
        await remove_failures(rig.destination)
        report.triggers_removed = True
        # What the failed copies left behind (the workload rewrites most of it soon).
        report.diverged_at_drop = sum(
            (await compare_tables(rig.source, rig.destination, workload_only=True)).values()
        )

    with _phase(report, workload, "repair"):
        await _repair_with_a_kill(rig, workload, report, plan)
        report.fixed_total = await _fixed_total(rig)

    # The switch between the two "first" modes, the users writing on: the replicas apply a
    # setting a moment apart, and a counter changed meanwhile by one replica on the source
    # first and by another on the destination first would lose one of the changes. Through
    # the barrier, no unit of work of one mode overlaps one of the other
    # (docs/migration-runbook.md, step 3).
    with _phase(report, workload, SWITCH):
        await _validate_until_clean(rig, report, SWITCH, "source", plan.max_rounds)
        report.auto_increment = await raise_auto_increment(rig.source, rig.destination, 10_000)
        report.switch = await rig.switch_via_barrier("destination_first")

    with _phase(report, workload, "destination_first"):
        await _requests(workload, "destination_first", plan.requests_per_phase)
        await _validate_until_clean(
            rig, report, "destination_first", "destination", plan.max_rounds
        )

    with _phase(report, workload, "final checks (writes stopped)"):
        await workload.stop()
        expected = workload.expected()
        with contextlib.suppress(AssertionError):  # check_state says what is missing
            await _reads_counted(rig.destination, workload)
        found = await object_state(rig.destination, workload.articles)
        report.state_problems += check_state(found, expected, reads=True)
        for base in ("destination", "source"):
            run = await rig.full_validation(base)
            report.validations.append(Pass.of("final", base, run))
            report.final_differences[base] = run["differences"]
        report.tables_mismatch = await compare_tables(rig.source, rig.destination)

    with _phase(report, workload, "destination_only"):
        await rig.switch("destination_only")
        before = await tables_digest(rig.source)
        workload.start()
        await _requests(workload, "destination_only", plan.requests_per_phase)
        await workload.stop()
        report.source_written_after_switch = await tables_digest(rig.source) != before
        found = await object_state(rig.destination, workload.articles)
        report.state_problems += [
            f"destination_only: {p}" for p in check_state(found, workload.expected(), reads=False)
        ]
        report.destination_rows = await count_rows(rig.destination)
