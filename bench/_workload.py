"""A whole real stack on free ports, and a mixed workload driven through its gateway.

Shared by :mod:`bench.mixed`, :mod:`bench._soak` and the chaos tests (``tests/chaos``).

:func:`running_stack` starts, in a scratch directory, etcd, the tansu broker (on memory
storage, or with ``persistent_broker`` on a local object store that outlives its restarts)
and Redis on free ports, migrates one SQLite database per service, starts every service of
:func:`devstack.suite.available_services` (some with several instances, all registered
in etcd) and the gateway, which finds them through etcd as in production. The processes
come from :mod:`devstack.infra` and :mod:`devstack.suite`; :class:`RunningStack`
keeps their handles so a caller can stop, kill and restart any of them.

:class:`MixedWorkload` signs up virtual users, has one of them publish articles, then runs
``users`` closed-loop callers (each with its own keep-alive ``httpx`` connection) that
pick operations at random by weight: sign in, read an article, like it, comment on it,
list its comments, follow another user. It records the latency of every answer, counts
every error by operation and phase (:meth:`MixedWorkload.phase`), and keeps a
:class:`Ledger` of what the gateway acknowledged, which :meth:`MixedWorkload.verify` checks
against the final state read back through the gateway: every acknowledged like, follow
and comment is there, and every acknowledged read is eventually counted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import psutil

from devstack.credentials import bootstrap_etcd, stack_credentials, write_redis_acl_file
from devstack.infra import (
    BrokerStorage,
    ManagedProcess,
    etcd_process,
    free_port,
    kafka_process,
    object_store_process,
    redis_process,
)
from devstack.suite import (
    Infra,
    available_services,
    gateway_process,
    service_process,
    start_services,
)
from devstack.tls import stack_pki

USER_AGENT: Final = "webook-workload/1.0"
PASSWORD: Final = "hello#world123"
START_TIMEOUT_S: Final = 60.0
# How long the workload's setup retries a publication the stack is not ready for.
SETUP_RETRY_S: Final = 30.0

# Operation names, as reported.
SIGN_IN: Final = "sign_in"
READ: Final = "read"
LIKE: Final = "like"
COMMENT: Final = "comment"
LIST_COMMENTS: Final = "list_comments"
FOLLOW: Final = "follow"
# Operations that only read: a client must never see them fail, whatever breaks.
IDEMPOTENT_READS: Final = frozenset({READ, LIST_COMMENTS})
DEFAULT_MIX: Final[Mapping[str, float]] = {
    READ: 0.55,
    LIKE: 0.12,
    COMMENT: 0.1,
    LIST_COMMENTS: 0.1,
    FOLLOW: 0.08,
    SIGN_IN: 0.05,
}


# -- the stack ----------------------------------------------------------------------------


@dataclass
class RunningStack:
    """Handles of every process of a running stack, and where to reach the gateway.

    ``kafka_store``: the broker's object store when the stack was started with
    ``persistent_broker`` (``None`` on memory storage); ``broker_storage`` says where the
    broker keeps its data. :meth:`restart_broker` restarts the broker on the same port and
    storage, the store running on.
    """

    scratch: Path
    infra: Infra
    etcd: ManagedProcess
    kafka: ManagedProcess
    redis: ManagedProcess
    instances: dict[str, list[ManagedProcess]]
    gateway: ManagedProcess
    base_url: str
    broker_storage: BrokerStorage = field(default_factory=BrokerStorage.memory)
    kafka_store: ManagedProcess | None = None

    def restart_broker(self, *, kill: bool = False) -> None:
        """Stop the broker (SIGKILL with ``kill``, SIGTERM otherwise) and start it again.

        The same handle, port and storage: on a persistent broker, topics, records and
        committed offsets are all there after; on memory storage, nothing is.
        """
        if kill:
            self.kafka.kill()
        else:
            self.kafka.stop()
        self.kafka.start(timeout=START_TIMEOUT_S)

    def processes(self) -> dict[str, ManagedProcess]:
        """Every process by name (``user-0``, ``interactive-2``, ``gateway``, ``redis``...)."""
        procs = {"etcd": self.etcd, "kafka": self.kafka, "redis": self.redis}
        if self.kafka_store is not None:
            procs["kafka-store"] = self.kafka_store
        for group in self.instances.values():
            procs.update({proc.name: proc for proc in group})
        procs["gateway"] = self.gateway
        return procs

    def dead(self) -> list[str]:
        """Names of processes that are not running (expected: none)."""
        return [name for name, proc in self.processes().items() if not proc.alive()]

    def pids(self) -> dict[str, int]:
        """Pid of every running process by name."""
        return {n: p.pid for n, p in self.processes().items() if p.pid is not None and p.alive()}


def stack_infra(
    scratch: Path,
    extra_env: Mapping[str, str] | None = None,
    *,
    persistent_broker: bool = False,
) -> tuple[Infra, dict[str, int]]:
    """The :class:`Infra` of a stack in ``scratch`` on new free ports, and those ports.

    ``persistent_broker``: the broker will keep its data in a local object store (port
    ``kafka_store``), so the producers run without their replay window (devstack.catalog).
    """
    ports = {"etcd": free_port(), "etcd_peer": free_port(), "kafka": free_port()}
    ports["redis"] = free_port()
    if persistent_broker:
        ports["kafka_store"] = free_port()
    env = {
        "{PREFIX}BCRYPT_COST": "4",
        # The broker takes about half the session timeout to form a group.
        "{PREFIX}KAFKA_SESSION_TIMEOUT_MS": "3000",
        "{PREFIX}KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "{PREFIX}READ_BATCH_WAIT_SECONDS": "0.2",
        # Every virtual user calls from 127.0.0.1: per-IP limits would throttle the load.
        "WEBOOK_GATEWAY_EDGE": json.dumps({"rate_limits": []}),
        **dict(extra_env or {}),
    }
    infra = Infra(
        redis_url=f"redis://127.0.0.1:{ports['redis']}/0",
        etcd_endpoints=[f"127.0.0.1:{ports['etcd']}"],
        kafka_bootstrap=f"127.0.0.1:{ports['kafka']}",
        database_url=f"sqlite+aiosqlite:///{scratch}",
        mode="test",
        extra_env=env,
        sms_log_file=str(scratch / "sms.log"),
        # As in production: every gRPC hop over mutual TLS, every process logged in to etcd
        # and Redis as itself.
        pki=stack_pki(scratch),
        credentials=stack_credentials(scratch),
        persistent_broker=persistent_broker,
    )
    return infra, ports


@contextmanager
def running_stack(
    scratch: Path,
    *,
    replicas: Mapping[str, int] | None = None,
    services: Sequence[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    persistent_broker: bool = False,
) -> Iterator[RunningStack]:
    """Start the whole stack in ``scratch``; stop every process on exit, gateway first.

    ``replicas``: instances per service (default 1); ``services``: which services (default
    every one that exists); ``extra_env``: added to every process's environment, with
    ``{PREFIX}`` standing for each process's own variable prefix. ``persistent_broker``:
    the broker keeps its data in a local object store (:attr:`RunningStack.kafka_store`),
    so a restart of the broker loses nothing and the producers' replay window is off;
    by default it runs on memory storage, as the rest of the test suite does.
    """
    logs = scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    infra, ports = stack_infra(scratch, extra_env or {}, persistent_broker=persistent_broker)
    names = list(services if services is not None else available_services())
    counts = {name: (replicas or {}).get(name, 1) for name in names}
    with ExitStack() as running:

        def start(proc: ManagedProcess) -> ManagedProcess:
            # Registered first: a process that fails to become ready is stopped too. The
            # callback stops whatever is running under this handle then (after restarts).
            running.callback(proc.stop)
            proc.start(timeout=START_TIMEOUT_S)
            return proc

        credentials = stack_credentials(scratch)  # the ones stack_infra handed the processes
        etcd = start(etcd_process(scratch / "etcd-data", ports["etcd"], ports["etcd_peer"], logs))
        bootstrap_etcd(infra.etcd_endpoints[0], credentials)
        kafka_store = None
        storage = BrokerStorage.memory()
        if persistent_broker:
            # Before the broker: tansu connects to its storage before it listens.
            kafka_store = start(object_store_process(ports["kafka_store"], logs))
            storage = BrokerStorage.object_store(ports["kafka_store"])
        kafka = start(kafka_process(ports["kafka"], logs, storage))
        acl_file = write_redis_acl_file(scratch / "redis-users.acl", credentials)
        redis = start(redis_process(ports["redis"], logs, acl_file=acl_file))
        # Migrated and started all at once, as make run does: one started in turn would wait
        # for ever on a peer started after it where its readiness needs that peer (search's
        # empty-index rebuild reads article, user and tag). Twice the one-process timeout:
        # they share the machine's cores while they start.
        instances = start_services(
            names,
            infra,
            logs,
            lambda name, replica: service_process(name, infra, free_port(), logs, replica=replica),
            replicas=counts,
            timeout=2 * START_TIMEOUT_S,
        )
        for procs in instances.values():
            for proc in procs:
                running.callback(proc.stop)
        gateway_port = free_port()
        # No static peers: the gateway finds every instance through etcd.
        gateway = start(gateway_process(infra, gateway_port, {}, logs))
        yield RunningStack(
            scratch=scratch,
            infra=infra,
            etcd=etcd,
            kafka=kafka,
            redis=redis,
            instances=instances,
            gateway=gateway,
            base_url=f"http://127.0.0.1:{gateway_port}",
            broker_storage=storage,
            kafka_store=kafka_store,
        )


# -- memory -------------------------------------------------------------------------------


class RssSampler:
    """Samples the resident set size of processes in the background; keeps every sample."""

    def __init__(self, pids: Mapping[str, int], interval_s: float = 0.5) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._interval = interval_s
        self.samples: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        """Record the RSS of every process now (processes that are gone are skipped)."""
        now = time.monotonic()
        for name, proc in self._procs.items():
            try:
                self.samples[name].append((now, proc.memory_info().rss))
            except psutil.Error:
                continue

    def start(self) -> None:
        """Sample every ``interval_s`` until :meth:`stop`."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling (one last sample is taken)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.sample()

    def peak(self) -> dict[str, int]:
        """Highest RSS seen per process, in bytes."""
        return {name: max(rss for _, rss in s) for name, s in self.samples.items() if s}

    def median_between(self, start: float, end: float) -> dict[str, float]:
        """Median RSS per process over samples taken in ``[start, end]`` (monotonic time)."""
        out: dict[str, float] = {}
        for name, samples in self.samples.items():
            window = [rss for t, rss in samples if start <= t <= end]
            if window:
                out[name] = statistics.median(window)
        return out

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self._interval)


# -- the workload -------------------------------------------------------------------------


@dataclass
class OperationStats:
    """Latencies of one operation's successful answers, and its errors."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def percentile(self, pct: int) -> float:
        """Latency percentile in ms (``pct`` in 1..99); NaN without answers."""
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100)[pct - 1]


@dataclass
class Ledger:
    """What the gateway acknowledged (answered code 0), and what was only attempted."""

    likes: set[tuple[int, int]] = field(default_factory=set)
    like_attempts: set[tuple[int, int]] = field(default_factory=set)
    follows: set[tuple[int, int]] = field(default_factory=set)
    comments: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    reads: Counter[int] = field(default_factory=Counter)
    read_attempts: Counter[int] = field(default_factory=Counter)


@dataclass
class VirtualUser:
    """A signed-up user with its own keep-alive connection to the gateway."""

    uid: int
    email: str
    http: httpx.AsyncClient
    token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of the user's current access token."""
        return {"Authorization": f"Bearer {self.token}"}


class WorkloadError(RuntimeError):
    """The workload could not be set up (the stack refused sign-up, login or publishing)."""


def uid_of(token: str) -> int:
    """The ``uid`` claim of a JWT (read, not verified: the gateway verifies it)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["uid"])


def _describe(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and "code" in body:
        return f"HTTP {response.status_code} code {body.get('code')} {body.get('msg', '')}"
    return f"HTTP {response.status_code}"


def _acknowledged(response: httpx.Response) -> Any:
    """The envelope's ``data`` if the answer is HTTP 200 with code 0, else raises."""
    if response.status_code != 200:
        raise _Refused(_describe(response))
    try:
        body = response.json()
    except ValueError as exc:
        raise _Refused(f"HTTP 200 with a body that is not JSON: {response.text[:80]!r}") from exc
    if not isinstance(body, dict) or body.get("code") != 0:
        raise _Refused(_describe(response))
    return body.get("data")


class _Refused(Exception):
    """An answer that is not an acknowledgement."""


class MixedWorkload:
    """Virtual users doing a mix of operations against one gateway (see the module doc)."""

    def __init__(
        self,
        base_url: str,
        *,
        users: int = 16,
        articles: int = 4,
        mix: Mapping[str, float] = DEFAULT_MIX,
        seed: int | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.base_url = base_url
        self.user_count = users
        self.article_count = articles
        self.mix = dict(mix)
        self.timeout_s = timeout_s
        self.random = random.Random(seed)
        self.users: list[VirtualUser] = []
        self.article_ids: list[int] = []
        self.ledger = Ledger()
        self.stats: dict[str, OperationStats] = defaultdict(OperationStats)
        # Errors by (phase, operation), with a few distinct messages each.
        self.errors: Counter[tuple[str, str]] = Counter()
        self.error_samples: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        # Operations (acknowledged or not) by the phase they started in.
        self.ops_by_phase: Counter[str] = Counter()
        self.current_phase = "steady"
        self.started = 0.0
        self.seconds = 0.0
        # The read counts the last poll of verify() saw, by article.
        self.counted_reads: dict[int, int] = {}
        # What the last verify() found: acknowledged writes missing, articles whose read
        # count did not reach the acknowledged reads, and how long the read counts took to
        # reach them (None if they did not).
        self.lost_writes: list[str] = []
        self.uncounted_reads: list[str] = []
        self.reads_converged_s: float | None = None
        self._stop = asyncio.Event()
        self._run_id = uuid.uuid4().hex[:8]

    # -- set-up and tear-down ---------------------------------------------------------

    async def __aenter__(self) -> MixedWorkload:
        await self.setup()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def setup(self) -> None:
        """Sign up and log in every virtual user; the first publishes the articles."""
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        for i in range(self.user_count):
            http = httpx.AsyncClient(
                base_url=self.base_url,
                headers={"User-Agent": USER_AGENT},
                limits=limits,
                timeout=self.timeout_s,
            )
            email = f"load-{self._run_id}-{i}@example.com"
            body = {"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}
            try:
                _acknowledged(await http.post("/users/signup", json=body))
                user = VirtualUser(uid=0, email=email, http=http)
                await self._login(user)
            except (_Refused, httpx.HTTPError) as exc:
                await http.aclose()
                raise WorkloadError(f"setting up user {email} failed: {exc}") from exc
            self.users.append(user)
        author = self.users[0]
        for n in range(self.article_count):
            article = {"title": f"load {self._run_id} #{n}", "content": f"<p>article {n}</p>"}
            # Right after a stack starts, the gateway may not have discovered the article
            # service yet (code 5): retried until a deadline. A retry after an answer that
            # was lost can leave an extra article, which the workload never reads.
            deadline = time.monotonic() + SETUP_RETRY_S
            while True:
                try:
                    response = await author.http.post(
                        "/articles/publish", json=article, headers=author.headers
                    )
                    self.article_ids.append(int(_acknowledged(response)))
                    break
                except (_Refused, httpx.HTTPError) as exc:
                    if time.monotonic() > deadline:
                        raise WorkloadError(f"publishing failed: {exc}") from exc
                    await asyncio.sleep(0.5)

    async def close(self) -> None:
        """Close every virtual user's connection."""
        for user in self.users:
            await user.http.aclose()

    async def _login(self, user: VirtualUser) -> None:
        response = await user.http.post(
            "/users/login", json={"email": user.email, "password": PASSWORD}
        )
        _acknowledged(response)
        token = response.headers.get("x-jwt-token")
        if not token:
            raise _Refused("login answered without an x-jwt-token header")
        user.token, user.uid = token, uid_of(token)

    # -- running ----------------------------------------------------------------------

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute the errors of operations that *start* inside the block to ``name``."""
        previous, self.current_phase = self.current_phase, name
        try:
            yield
        finally:
            self.current_phase = previous

    async def run(self, seconds: float | None = None) -> None:
        """Every virtual user runs operations until :meth:`stop` (or ``seconds`` pass)."""
        self._stop.clear()
        self.started = time.monotonic()
        callers = [asyncio.create_task(self._caller(user)) for user in self.users]
        try:
            if seconds is None:
                await self._stop.wait()
            else:
                with_timeout = asyncio.wait_for(self._stop.wait(), seconds)
                try:
                    await with_timeout
                except TimeoutError:
                    pass
        finally:
            self._stop.set()
            await asyncio.gather(*callers)
            self.seconds = time.monotonic() - self.started

    def stop(self) -> None:
        """Ask every virtual user to finish its current operation and stop."""
        self._stop.set()

    def reset_stats(self) -> None:
        """Forget latencies and error counts so far (after a warm-up); the ledger stays."""
        self.stats.clear()
        self.errors.clear()
        self.error_samples.clear()
        self.ops_by_phase.clear()
        self.started = time.monotonic()

    @property
    def total_ok(self) -> int:
        """Successful operations recorded since the last :meth:`reset_stats`."""
        return sum(len(s.latencies_ms) for s in self.stats.values())

    @property
    def total_errors(self) -> int:
        """Failed operations recorded since the last :meth:`reset_stats`."""
        return sum(self.errors.values())

    def errors_of(self, operations: frozenset[str] | None = None) -> int:
        """Errors of the given operations (all when None) since the last reset."""
        return sum(
            n for (_, op), n in self.errors.items() if operations is None or op in operations
        )

    def errors_by_phase(self) -> Counter[str]:
        """Errors (of every operation) by the phase the operation started in."""
        by_phase: Counter[str] = Counter()
        for (phase, _), n in self.errors.items():
            by_phase[phase] += n
        return by_phase

    def error_report(self) -> list[str]:
        """One line per (phase, operation) with errors, with its most common messages."""
        lines = []
        for (phase, op), count in sorted(self.errors.items()):
            common = ", ".join(f"{m} x{n}" for m, n in self.error_samples[phase, op].most_common(3))
            lines.append(f"{phase}/{op}: {count} errors ({common})")
        return lines

    async def _caller(self, user: VirtualUser) -> None:
        operations, weights = list(self.mix), list(self.mix.values())
        while not self._stop.is_set():
            operation = self.random.choices(operations, weights)[0]
            await self.perform(user, operation)

    async def perform(self, user: VirtualUser, operation: str) -> bool:
        """Run one operation as ``user``; record its latency or its error. True if acked."""
        phase = self.current_phase
        self.ops_by_phase[phase] += 1
        started = time.perf_counter()
        try:
            await self._operation(user, operation)
        except (_Refused, httpx.HTTPError, ValueError) as exc:
            self.errors[phase, operation] += 1
            message = str(exc) or type(exc).__name__
            self.error_samples[phase, operation][message[:120]] += 1
            return False
        self.stats[operation].latencies_ms.append((time.perf_counter() - started) * 1000)
        return True

    async def _operation(self, user: VirtualUser, operation: str) -> None:
        article = self.random.choice(self.article_ids)
        http, ledger = user.http, self.ledger
        if operation == SIGN_IN:
            await self._login(user)
        elif operation == READ:
            ledger.read_attempts[article] += 1
            data = _acknowledged(await http.get(f"/articles/pub/{article}", headers=user.headers))
            if data.get("id") != article:
                raise _Refused(f"read of {article} answered article {data.get('id')}")
            ledger.reads[article] += 1
        elif operation == LIKE:
            ledger.like_attempts.add((user.uid, article))
            like = {"id": article, "like": True}
            _acknowledged(await http.post("/articles/pub/like", json=like, headers=user.headers))
            ledger.likes.add((user.uid, article))
        elif operation == COMMENT:
            comment = {"biz": "article", "bizId": article, "content": f"comment by {user.uid}"}
            response = await http.post("/comments/create", json=comment, headers=user.headers)
            data = _acknowledged(response)
            ledger.comments[article].add(int(data["id"]))
        elif operation == LIST_COMMENTS:
            params = {"bizId": article, "limit": 20}
            data = _acknowledged(await http.get("/comments/list", params=params))
            if not isinstance(data, list):
                raise _Refused("comment list is not a list")
        elif operation == FOLLOW:
            others = [u.uid for u in self.users if u.uid != user.uid]
            followee = self.random.choice(others)
            target = {"followee": followee}
            _acknowledged(await http.post("/follow/follow", json=target, headers=user.headers))
            self.ledger.follows.add((user.uid, followee))
        else:
            raise ValueError(f"unknown operation {operation!r}")

    # -- checking ---------------------------------------------------------------------

    async def verify(self, converge_within_s: float = 60.0) -> list[str]:
        """Problems found by reading the final state back; empty when everything is there.

        Likes: every acknowledged like shows as ``liked`` to its user, and each article's
        like count is at least the acknowledged likers and at most the attempted ones.
        Follows: every acknowledged follow is in the follower's followee list. Comments:
        every acknowledged comment is on its article's pages. Reads: within
        ``converge_within_s`` every article's read count reaches the number of reads
        acknowledged before the poll (the reads of this check included). The findings are
        also kept apart in :attr:`lost_writes`, :attr:`uncounted_reads` and
        :attr:`reads_converged_s`.
        """
        problems: list[str] = []
        by_uid = {u.uid: u for u in self.users}
        for uid, article in sorted(self.ledger.likes):
            data = await self._read_back(by_uid[uid], article)
            if not data["liked"]:
                problems.append(f"like of user {uid} on article {article} was lost")
        for article in self.article_ids:
            data = await self._read_back(self.users[0], article)
            acked = sum(1 for _, a in self.ledger.likes if a == article)
            tried = sum(1 for _, a in self.ledger.like_attempts if a == article)
            if not acked <= data["likeCnt"] <= tried:
                problems.append(
                    f"article {article}: likeCnt {data['likeCnt']}, acknowledged likers "
                    f"{acked}, attempted {tried}"
                )
        problems += await self._verify_follows()
        problems += await self._verify_comments()
        self.lost_writes = problems
        started = time.monotonic()
        self.uncounted_reads = await self._verify_reads(converge_within_s)
        self.reads_converged_s = None if self.uncounted_reads else time.monotonic() - started
        return problems + self.uncounted_reads

    async def _read_back(self, user: VirtualUser, article: int) -> dict[str, Any]:
        """A read that must succeed (retried a few times: the check must not flake)."""
        self.ledger.read_attempts[article] += 1
        last = ""
        for _ in range(5):
            try:
                response = await user.http.get(f"/articles/pub/{article}", headers=user.headers)
                data: dict[str, Any] = _acknowledged(response)
            except (_Refused, httpx.HTTPError) as exc:
                last = str(exc)
                await asyncio.sleep(1)
                continue
            self.ledger.reads[article] += 1
            return data
        raise WorkloadError(f"reading article {article} back failed: {last}")

    async def _verify_follows(self) -> list[str]:
        problems = []
        by_follower: dict[int, set[int]] = defaultdict(set)
        for follower, followee in self.ledger.follows:
            by_follower[follower].add(followee)
        by_uid = {u.uid: u for u in self.users}
        for follower, followees in sorted(by_follower.items()):
            user = by_uid[follower]
            response = await user.http.get(
                "/follow/followees", params={"limit": 100}, headers=user.headers
            )
            listed = {r["followee"] for r in _acknowledged(response)["relations"]}
            problems += [f"follow {follower} -> {f} was lost" for f in sorted(followees - listed)]
        return problems

    async def _verify_comments(self) -> list[str]:
        problems = []
        http = self.users[0].http
        for article, acked in sorted(self.ledger.comments.items()):
            listed: set[int] = set()
            cursor = 0
            while True:
                params = {"bizId": article, "limit": 100, "minId": cursor}
                page = _acknowledged(await http.get("/comments/list", params=params))
                if not page:
                    break
                listed.update(int(c["id"]) for c in page)
                cursor = int(page[-1]["id"])
            lost = acked - listed
            problems += [f"comment {c} on article {article} was lost" for c in sorted(lost)]
        return problems

    async def _verify_reads(self, within_s: float) -> list[str]:
        deadline = time.monotonic() + within_s
        pending = set(self.article_ids)
        seen = self.counted_reads
        while pending and time.monotonic() < deadline:
            for article in sorted(pending):
                expected = self.ledger.reads[article]
                seen[article] = (await self._read_back(self.users[0], article))["readCnt"]
                if seen[article] >= expected:
                    pending.discard(article)
            if pending:
                await asyncio.sleep(1)
        return [
            f"article {a}: readCnt {seen.get(a)} after {within_s:.0f}s, "
            f"acknowledged reads {self.ledger.reads[a]}"
            for a in sorted(pending)
        ]

    def read_overcount(self) -> dict[int, int]:
        """Per article, reads counted beyond those attempted (at-least-once redelivery).

        From the last poll of :meth:`verify`; articles without excess are left out.
        """
        return {
            a: n - self.ledger.read_attempts[a]
            for a, n in self.counted_reads.items()
            if n > self.ledger.read_attempts[a]
        }

    # -- reporting --------------------------------------------------------------------

    def summary_lines(self) -> list[str]:
        """Per-operation count, rate, p50 and p99, then the error report."""
        lines = []
        seconds = max(self.seconds, 1e-9)
        for op in sorted(self.stats):
            s = self.stats[op]
            lines.append(
                f"  {op:<14} {len(s.latencies_ms):7d} ok {len(s.latencies_ms) / seconds:8.1f}/s "
                f"p50 {s.percentile(50):7.1f} ms  p99 {s.percentile(99):7.1f} ms"
            )
        return lines + [f"  errors: {line}" for line in self.error_report()]

    def all_latencies(self) -> OperationStats:
        """Every successful operation's latency as one distribution."""
        merged = OperationStats()
        for s in self.stats.values():
            merged.latencies_ms.extend(s.latencies_ms)
        merged.errors = self.total_errors
        return merged
