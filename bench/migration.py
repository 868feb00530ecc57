"""Benchmark of the interactive tables' migration (:mod:`kit.migrator`): how fast the
validator compares, what a throttled validation costs the service's tail, and what double
write costs a write.

Run ``python -m bench.migration`` (2-3 minutes on the 2-core reference machine;
``--mysql-url`` names the MariaDB/MySQL server, default
``mysql+asyncmy://root@127.0.0.1:3306``). Two scratch databases on that server, the
migration's source and destination, are created (and dropped at the end) and get the
interactive service's migrations and the validators' checkpoint table; Redis runs on a free
port in a temporary directory. ``ROWS`` identical ``interactives`` rows (one counters row per
article) are written to both. The validator's settings are the service's defaults
(:class:`services.interactive.settings.InteractiveSettings`: batch, budget, latency
threshold). Three measures:

1. **Validator rows/s** (informative). A full pass of :class:`kit.migrator.Validator` over
   the ``ROWS`` rows, source to destination, with the budget unlimited. The baseline (the
   floor) is a plain keyset scan of the same rows on both sides: the same batches of
   ``SELECT ... WHERE id > ? ORDER BY id LIMIT n`` on the source and the same key range on
   the destination, on one connection per side held for the whole scan, rows fetched as
   tuples and neither compared nor checkpointed. ``SCAN_ROUNDS`` alternating rounds, medians.
   Each pass is checked: every row compared, no difference found. What the default budget
   allows is printed next to it.
2. **p99 of a mixed workload during a full validation** (goal: with <= 1.3 x without). The
   interactive service wired as ``python -m services.interactive`` does with a migration in
   ``source_first`` (:class:`~services.interactive.repository.migration.MigratingUnitOfWork`
   over a :class:`kit.migrator.DoubleWriter`, the Redis counts cache with its in-process
   copies and their invalidation feed), without gRPC, in this process. Only the article
   service's "is it published" check is a local stand-in answering yes. Operations arrive
   at a fixed ``RATE`` (open loop: a slow answer does not slow the arrivals, and latency
   counts from when the operation was due): gets (half of them signed in), likes, cancels of
   earlier likes, collects and batches of reads (:data:`MIX`), on a hot set of ``HOT``
   articles for ``HOT_SHARE`` of them and on any of the ``ROWS`` otherwise. *With*: a full
   validation of every migrated table (the hosted run's loop) runs in the same process, as
   the admin API runs it, at the default budget; it is cancelled at the end of its round
   and resumes from its checkpoint in the next (``StopValidation`` and a new start).
   *Without*: no validation. ``WORKLOAD_ROUNDS`` rounds of ``ROUND_S`` a side, alternating
   which goes first, after ``WARM_UP_S`` of warm-up. Both databases share one server here,
   so the validator's reads of the destination load the source's server too (harsher than
   two servers). Every operation must succeed (goal: no error). Also printed: the rows/s
   the validation reached (above the budget by about a second's worth of rows per round:
   the throttle lets a newly started validator run its first second's budget at once, and
   every round starts one), and this process's CPU per operation on each side (the
   validator's CPU is spent on the service's event loop; the figure least disturbed by
   other load on the machine).
3. **Double write's cost on a like** (informative). :meth:`InteractiveService.like` of a
   new (user, article) pair, one at a time, through ``MigratingUnitOfWork`` in
   ``source_first`` vs ``source_only`` (the destination configured, nothing copied); a
   third side, :class:`~services.interactive.repository.SqlUnitOfWork` (no migration
   configured), shows what the migrating unit of work costs by itself. ``LIKE_ROUNDS``
   alternating rounds of ``LIKES_PER_ROUND`` likes a side, after ``LIKE_WARM_UP``; p50 and
   p99, this process's CPU and the SQL statements per like on each database. Checked
   afterwards: every like made in ``source_first`` is on the destination, none of the others.

Differences go to an in-process sink that keeps them (production publishes them to Kafka
for the fixer; identical copies publish nothing, so the broker is left out). The exit code is
1 if a goal is missed, 2 if a check fails. On a shared machine, compare the ratios (both sides
of each measured alike) rather than the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from prometheus_client import Counter
from sqlalchemy import event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._databases import MYSQL_SERVER, CheckFailed, ms, percentile
from bench._report import result
from devstack.infra import ManagedProcess, free_port, redis_process
from kit.migrations import upgrade_async
from kit.migrator import (
    CheckpointStore,
    Difference,
    Direction,
    DoubleWriter,
    MigratedTable,
    Mode,
    ModeHolder,
    Sides,
    ValidationReport,
    Validator,
    ValidatorConfig,
)
from kit.migrator.metrics import ROWS_CHECKED, SECOND_WRITE_FAILURES, THROTTLED
from kit.redisx import create_redis
from kit.sql import create_engine, scratch_database, session_factory
from services.interactive.domain import ARTICLE_BIZ
from services.interactive.repository import SqlUnitOfWork
from services.interactive.repository.cache import CountsCache, LocalCounts
from services.interactive.repository.dao import UserLikeRow
from services.interactive.repository.migration import (
    INTERACTIVES,
    TABLES,
    MigratingUnitOfWork,
)
from services.interactive.service import InteractiveService, UnitOfWork
from services.interactive.settings import InteractiveSettings


def _service_default(name: str) -> Any:
    """The interactive service's default for setting ``name`` (not read from the
    environment: the benchmark measures the defaults)."""
    return InteractiveSettings.model_fields[name].default


BATCH_SIZE: Final[int] = _service_default("migration_validator_batch_size")
DEFAULT_BUDGET: Final[float] = _service_default("migration_validator_rows_per_second")
LATENCY_THRESHOLD_S: Final[float] = _service_default(
    "migration_validator_latency_threshold_seconds"
)

BIZ: Final = ARTICLE_BIZ
ROWS: Final = 100_000
FILL_CHUNK: Final = 5_000
SEED: Final = 20261208

SCAN_ROUNDS: Final = 3

RATE: Final = 40.0
"""Operations per second offered in measure 2. The mix costs this process about 5 ms of CPU
an operation in ``source_first`` (writes 7-10 ms, gets 0.1-2 ms), so this is about a fifth
of a core: a service with headroom, as in production, even on a shared 2-core machine
(at 80/s other suites' load pushed it into overload, and both sides' p99 to seconds)."""
MIX: Final = (("get", 60), ("like", 15), ("cancel_like", 8), ("collect", 7), ("add_reads", 10))
HOT: Final = 1_000
HOT_SHARE: Final = 0.8
USERS: Final = 10_000
READS_PER_BATCH: Final = 10
WARM_UP_S: Final = 5.0
ROUND_S: Final = 5.0
WORKLOAD_ROUNDS: Final = 10
P99_GOAL: Final = 1.3

LIKE_WARM_UP: Final = 40
LIKE_ROUNDS: Final = 16
LIKES_PER_ROUND: Final = 40
FIRST_LIKE_UID: Final = 1_000_000
"""Users of measure 3 start here, above measure 2's, so each of their likes is new."""


class PublishedTargets:
    """The article service's "is it published" check as a local stand-in: every article is."""

    async def exists(self, biz: str, biz_id: int) -> bool:
        """Yes, at once."""
        return True


class KeptDifferences:
    """A difference sink that keeps what it is given (production's publishes to Kafka)."""

    def __init__(self) -> None:
        self.differences: list[Difference] = []

    async def publish(self, differences: Sequence[Difference]) -> None:
        """Keep ``differences``."""
        self.differences.extend(differences)


def counter_total(counter: Counter, **labels: str) -> float:
    """The sum of ``counter``'s ``_total`` samples whose labels include ``labels``."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
        and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[list[int]]:
    """A one-element list holding the SQL statements ``engine`` executed inside the block."""
    seen = [0]

    def record(*_: Any) -> None:
        seen[0] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


@asynccontextmanager
async def scratch_databases(server: str, names: Sequence[str]) -> AsyncIterator[list[str]]:
    """One scratch database per name on ``server``, dropped afterwards; yields their URLs."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                scratch_database(server, prefix=f"webook_bench_migration_{name}")
            )
            for name in names
        ]


async def fill(engines: Sequence[AsyncEngine]) -> None:
    """``ROWS`` counters rows, ids 1..``ROWS`` (article ``id``), the same on every engine."""
    rng = random.Random(SEED)
    now_ms = int(time.time() * 1000)
    rows = [
        {
            "id": i,
            "biz": BIZ,
            "biz_id": i,
            "read_cnt": rng.randrange(10_000),
            "like_cnt": rng.randrange(500),
            "collect_cnt": rng.randrange(100),
            "ctime": now_ms - rng.randrange(86_400_000),
            "utime": now_ms - rng.randrange(3_600_000),
        }
        for i in range(1, ROWS + 1)
    ]
    for engine in engines:
        for start in range(0, ROWS, FILL_CHUNK):
            async with engine.begin() as conn:
                await conn.execute(insert(INTERACTIVES.table), rows[start : start + FILL_CHUNK])


# -- 1. validator rows/s ----------------------------------------------------------------


def validator_config(budget: Callable[[], float]) -> ValidatorConfig:
    """The service's validator settings (``wire_migration``) with ``budget``."""
    return ValidatorConfig(
        batch_size=BATCH_SIZE, rows_per_second=budget, latency_threshold_s=LATENCY_THRESHOLD_S
    )


async def validator_pass(sides: Sides, checkpoints: CheckpointStore) -> tuple[float, float]:
    """Wall and CPU seconds of one unlimited full pass of ``interactives``; checks what it
    reports."""
    sink = KeptDifferences()
    validator = Validator(
        INTERACTIVES,
        sides,
        Direction.SOURCE_TO_DESTINATION,
        sink,
        checkpoints,
        validator_config(lambda: float("inf")),
    )
    started, cpu = time.perf_counter(), time.process_time()
    report: ValidationReport = await validator.run_full()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if not report.finished or report.rows_checked != ROWS or report.total_differences:
        raise CheckFailed(
            f"validator pass: finished {report.finished}, {report.rows_checked} rows checked "
            f"of {ROWS}, {report.total_differences} differences on identical copies"
        )
    if sink.differences:
        raise CheckFailed(f"validator pass published {len(sink.differences)} differences")
    return seconds, cpu


async def keyset_scan(source: AsyncEngine, destination: AsyncEngine) -> tuple[float, float]:
    """Wall and CPU seconds of the floor: the validator's batches of keys read from both
    sides on one held connection each, as tuples, neither compared nor checkpointed."""
    table = INTERACTIVES.table
    key = table.c.id
    scanned = 0
    started, cpu = time.perf_counter(), time.process_time()
    async with source.connect() as base, destination.connect() as target:
        last: int | None = None
        while True:
            page = select(table).order_by(key).limit(BATCH_SIZE)
            if last is not None:
                page = page.where(key > last)
            base_rows = (await base.execute(page)).all()
            upper = base_rows[-1].id if len(base_rows) == BATCH_SIZE else None
            target_page = select(table).order_by(key).limit(BATCH_SIZE)
            if last is not None:
                target_page = target_page.where(key > last)
            if upper is not None:
                target_page = target_page.where(key <= upper)
            target_rows = (await target.execute(target_page)).all()
            scanned += len(base_rows)
            if len(target_rows) != len(base_rows):
                raise CheckFailed(f"keyset scan: {len(target_rows)} target rows after {last}")
            if upper is None:
                break
            last = upper
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if scanned != ROWS:
        raise CheckFailed(f"keyset scan read {scanned} rows of {ROWS}")
    return seconds, cpu


@dataclass
class ScanResult:
    """Measure 1: wall seconds per pass of each side, and CPU seconds of all of them."""

    validator_s: list[float] = field(default_factory=list)
    floor_s: list[float] = field(default_factory=list)
    validator_cpu_s: float = 0.0
    floor_cpu_s: float = 0.0
    latency_backoff_s: float = 0.0

    @property
    def validator_rate(self) -> float:
        """Rows per second of the median validator pass."""
        return ROWS / statistics.median(self.validator_s)

    @property
    def floor_rate(self) -> float:
        """Rows per second of the median keyset scan."""
        return ROWS / statistics.median(self.floor_s)


async def measure_scan(
    source: AsyncEngine, destination: AsyncEngine, sides: Sides, checkpoints: CheckpointStore
) -> ScanResult:
    """``SCAN_ROUNDS`` alternating rounds of a validator pass and a keyset scan."""
    scan = ScanResult()
    backoff_before = counter_total(THROTTLED, table=INTERACTIVES.name, reason="latency")
    await keyset_scan(source, destination)  # warm-up: buffer pool, connections
    for round_ in range(SCAN_ROUNDS):
        order = ("validator", "floor") if round_ % 2 == 0 else ("floor", "validator")
        for side in order:
            if side == "validator":
                seconds, cpu = await validator_pass(sides, checkpoints)
                scan.validator_s.append(seconds)
                scan.validator_cpu_s += cpu
            else:
                seconds, cpu = await keyset_scan(source, destination)
                scan.floor_s.append(seconds)
                scan.floor_cpu_s += cpu
    scan.latency_backoff_s = (
        counter_total(THROTTLED, table=INTERACTIVES.name, reason="latency") - backoff_before
    )
    return scan


# -- 2. p99 of a mixed workload during a validation -------------------------------------


@dataclass
class Workload:
    """The mixed operations of measure 2 on one service (module docstring)."""

    service: InteractiveService
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    liked: list[tuple[int, int]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._kinds = [kind for kind, _ in MIX]
        self._weights = [weight for _, weight in MIX]

    def article(self) -> int:
        """An article id: from the hot set ``HOT_SHARE`` of the time, else any."""
        if self.rng.random() < HOT_SHARE:
            return self.rng.randint(1, HOT)
        return self.rng.randint(1, ROWS)

    def next_operation(self) -> tuple[str, Callable[[], Awaitable[object]]]:
        """The next operation's kind and call (chosen now, run by the caller)."""
        kind = self.rng.choices(self._kinds, self._weights)[0]
        service, biz_id, uid = self.service, self.article(), self.rng.randint(1, USERS)
        if kind == "cancel_like" and not self.liked:
            kind = "like"
        if kind == "get":
            signed_in = self.rng.random() < 0.5
            return kind, lambda: service.get(BIZ, biz_id, uid if signed_in else 0)
        if kind == "like":
            self.liked.append((uid, biz_id))
            return kind, lambda: service.like(BIZ, biz_id, uid)
        if kind == "cancel_like":
            index = self.rng.randrange(len(self.liked))
            self.liked[index], self.liked[-1] = self.liked[-1], self.liked[index]
            liker, liked = self.liked.pop()
            return kind, lambda: service.cancel_like(BIZ, liked, liker)
        if kind == "collect":
            cid = self.rng.randint(0, 3)
            return kind, lambda: service.collect(BIZ, biz_id, uid, cid)
        reads = {self.article(): self.rng.randint(1, 3) for _ in range(READS_PER_BATCH)}
        return kind, lambda: service.add_reads(BIZ, reads)

    async def drive(self, seconds: float) -> tuple[list[float], float]:
        """Offer ``RATE`` operations a second for ``seconds``; each one's latency from when
        it was due (after every one of them ended), and this process's CPU seconds meanwhile."""
        loop = asyncio.get_running_loop()
        cpu = time.process_time()
        latencies: list[float] = []
        pending: set[asyncio.Task[None]] = set()

        async def run(due: float, kind: str, call: Callable[[], Awaitable[object]]) -> None:
            try:
                await call()
            except Exception as exc:
                self.errors[kind] = self.errors.get(kind, 0) + 1
                self.error_examples.setdefault(kind, repr(exc))
                return
            latencies.append(loop.time() - due)
            self.done[kind] = self.done.get(kind, 0) + 1

        start = loop.time()
        for i in range(int(seconds * RATE)):
            due = start + i / RATE
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            kind, call = self.next_operation()
            task = asyncio.create_task(run(due, kind, call))
            pending.add(task)
            task.add_done_callback(pending.discard)
        while pending:
            await asyncio.gather(*list(pending))
        return latencies, time.process_time() - cpu


async def validate_all(factory: Callable[[MigratedTable], Validator], passes: list[int]) -> None:
    """Full passes of every migrated table, one after another, as the hosted run loops."""
    while True:
        for table in TABLES:
            await factory(table).run_full()
        passes[0] += 1


@dataclass
class WorkloadResult:
    """Measure 2: latencies of both sides and what the validator did."""

    with_validation: list[float] = field(default_factory=list)
    without: list[float] = field(default_factory=list)
    cpu_with_s: float = 0.0
    cpu_without_s: float = 0.0
    validating_s: float = 0.0
    rows_checked: float = 0.0
    passes: int = 0
    differences: int = 0
    second_write_failures: float = 0.0

    def ratio(self, q: float) -> float:
        """With ÷ without at quantile ``q``."""
        return percentile(self.with_validation, q) / percentile(self.without, q)


def rows_checked_total() -> float:
    """Rows every full validator of this process compared, source to destination."""
    return counter_total(
        ROWS_CHECKED, direction=Direction.SOURCE_TO_DESTINATION.value, validation="full"
    )


async def measure_workload(
    service: InteractiveService, sides: Sides, checkpoints: CheckpointStore
) -> tuple[WorkloadResult, Workload]:
    """Alternating rounds of the workload with a validation running and without."""
    workload = Workload(service)
    sink = KeptDifferences()
    passes = [0]

    def factory(table: MigratedTable) -> Validator:
        return Validator(
            table,
            sides,
            Direction.SOURCE_TO_DESTINATION,
            sink,
            checkpoints,
            validator_config(lambda: DEFAULT_BUDGET),
        )

    measured = WorkloadResult()
    failures_before = counter_total(SECOND_WRITE_FAILURES)
    await workload.drive(WARM_UP_S)
    for round_ in range(WORKLOAD_ROUNDS * 2):
        validating = (round_ % 4) in (0, 3)  # with, without, without, with, ...
        if not validating:
            latencies, cpu = await workload.drive(ROUND_S)
            measured.without += latencies
            measured.cpu_without_s += cpu
            continue
        checked_before, started = rows_checked_total(), time.perf_counter()
        task = asyncio.create_task(validate_all(factory, passes))
        try:
            latencies, cpu = await workload.drive(ROUND_S)
            measured.with_validation += latencies
            measured.cpu_with_s += cpu
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        measured.validating_s += time.perf_counter() - started
        measured.rows_checked += rows_checked_total() - checked_before
        if round_ % 4 != 3:
            continue
        print(
            f"  round {round_ + 1}: validation at "
            f"{measured.rows_checked / measured.validating_s:.0f} rows/s so far; p99 "
            f"{ms(percentile(measured.with_validation, 0.99))} with, "
            f"{ms(percentile(measured.without or [0.0], 0.99))} without so far",
            flush=True,
        )
    measured.passes = passes[0]
    measured.differences = len(sink.differences)
    measured.second_write_failures = counter_total(SECOND_WRITE_FAILURES) - failures_before
    return measured, workload


# -- 3. double write's cost on a like ---------------------------------------------------


@dataclass
class LikeSide:
    """One way of writing likes in measure 3: its service and what it did."""

    name: str
    service: InteractiveService
    uids: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    source_statements: int = 0
    destination_statements: int = 0
    cpu_s: float = 0.0


async def measure_likes(
    sides: dict[str, LikeSide], source: AsyncEngine, destination: AsyncEngine
) -> None:
    """Alternating rounds of new likes on every side (module docstring, measure 3)."""
    rng = random.Random(SEED + 3)
    next_uid = FIRST_LIKE_UID
    names = list(sides)

    async def likes(side: LikeSide, count: int, record: bool) -> None:
        nonlocal next_uid
        for _ in range(count):
            uid, next_uid = next_uid, next_uid + 1
            biz_id = rng.randint(1, ROWS)
            with count_statements(source) as on_source, count_statements(destination) as on_dest:
                started, cpu = time.perf_counter(), time.process_time()
                liked = await side.service.like(BIZ, biz_id, uid)
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            if not liked:
                raise CheckFailed(f"{side.name}: the like of ({uid}, {biz_id}) was not new")
            side.uids.append(uid)
            if record:
                side.latencies.append(elapsed)
                side.cpu_s += cpu
                side.source_statements += on_source[0]
                side.destination_statements += on_dest[0]

    for name in names:
        await likes(sides[name], LIKE_WARM_UP, record=False)
    for round_ in range(LIKE_ROUNDS):
        order = names if round_ % 2 == 0 else list(reversed(names))
        for name in order:
            await likes(sides[name], LIKES_PER_ROUND, record=True)


async def check_likes(sides: dict[str, LikeSide], destination: AsyncEngine) -> None:
    """Every like made in ``source_first`` is on the destination, none of the others."""
    likes = UserLikeRow.__table__
    async with destination.connect() as conn:
        for side in sides.values():
            copied = await conn.scalar(
                select(func.count()).select_from(likes).where(likes.c.uid.in_(side.uids))
            )
            expected = len(side.uids) if side.name == Mode.SOURCE_FIRST.value else 0
            if copied != expected:
                raise CheckFailed(
                    f"{side.name}: {copied} of its {len(side.uids)} likes on the destination, "
                    f"expected {expected}"
                )


# -- the run ----------------------------------------------------------------------------


async def run(mysql_server: str, redis_url: str) -> bool:
    """Every measure; prints them; True if every goal is met."""
    met = True
    async with scratch_databases(mysql_server, ["source", "destination"]) as urls:
        for url in urls:
            await upgrade_async("interactive", url)
        source, destination = create_engine(urls[0]), create_engine(urls[1])
        redis = create_redis(redis_url)
        local = LocalCounts(redis)
        try:
            source_sessions = session_factory(source)
            sides = Sides(source_sessions, session_factory(destination))
            checkpoints = CheckpointStore(sides.destination)
            await checkpoints.ensure_table()
            started = time.perf_counter()
            await fill([source, destination])
            print(f"{ROWS} rows on each side in {time.perf_counter() - started:.1f}s")

            report_scan(await measure_scan(source, destination, sides, checkpoints))

            local.start()
            for _ in range(1000):
                if local.feed.fresh:
                    break
                await asyncio.sleep(0.01)
            else:
                raise CheckFailed("the invalidation feed did not subscribe")
            cache = CountsCache(redis, local=local)
            targets = PublishedTargets()

            def migrating(mode: Mode) -> InteractiveService:
                writer = DoubleWriter(sides, ModeHolder(f"bench-{mode.value}", mode), TABLES)

                def units() -> UnitOfWork:
                    return MigratingUnitOfWork(writer, cache)

                return InteractiveService(units, targets=targets, cached=cache)

            def plain() -> UnitOfWork:
                return SqlUnitOfWork(source_sessions, cache)

            started = time.perf_counter()
            measured, workload = await measure_workload(
                migrating(Mode.SOURCE_FIRST), sides, checkpoints
            )
            met &= report_workload(measured, workload, time.perf_counter() - started)

            like_sides = {
                name: LikeSide(name, service)
                for name, service in (
                    ("no migration", InteractiveService(plain, targets=targets, cached=cache)),
                    (Mode.SOURCE_ONLY.value, migrating(Mode.SOURCE_ONLY)),
                    (Mode.SOURCE_FIRST.value, migrating(Mode.SOURCE_FIRST)),
                )
            }
            await measure_likes(like_sides, source, destination)
            await check_likes(like_sides, destination)
            report_likes(like_sides)
        finally:
            await local.aclose()
            await redis.aclose(close_connection_pool=True)
            await source.dispose()
            await destination.dispose()
    return met


def report_scan(scan: ScanResult) -> None:
    """Print measure 1 and its result rows."""
    print(
        f"validator, full pass, budget unlimited: {scan.validator_rate:.0f} rows/s "
        f"(passes {', '.join(f'{s:.2f}s' for s in scan.validator_s)}); keyset scan of both "
        f"sides: {scan.floor_rate:.0f} rows/s "
        f"(passes {', '.join(f'{s:.2f}s' for s in scan.floor_s)}); "
        f"latency back-off {scan.latency_backoff_s:.1f}s"
    )
    per_row = 1e6 / (ROWS * SCAN_ROUNDS)
    print(
        f"this process's CPU per row: validator {scan.validator_cpu_s * per_row:.1f} us, "
        f"keyset scan {scan.floor_cpu_s * per_row:.1f} us; at the default budget the "
        f"validator takes {scan.validator_cpu_s * per_row * DEFAULT_BUDGET / 1e4:.0f}% of a core"
    )
    print(
        f"default budget {DEFAULT_BUDGET:.0f} rows/s: a pass over {ROWS} rows takes "
        f"{ROWS / DEFAULT_BUDGET:.0f}s (unlimited: {ROWS / scan.validator_rate:.1f}s), "
        f"{DEFAULT_BUDGET / scan.validator_rate:.0%} of what the validator can do here"
    )
    result(
        f"migration validator, full, budget unlimited ({ROWS // 1000}k rows, MariaDB)",
        f"{scan.validator_rate:.0f} rows/s",
        f"{scan.floor_rate:.0f} rows/s keyset scan",
        scan.validator_rate / scan.floor_rate,
    )
    result(
        "migration validator, default budget",
        f"{DEFAULT_BUDGET:.0f} rows/s ({ROWS / DEFAULT_BUDGET:.0f}s per {ROWS // 1000}k rows)",
        f"{scan.validator_rate:.0f} rows/s unlimited",
        DEFAULT_BUDGET / scan.validator_rate,
    )


def report_workload(measured: WorkloadResult, workload: Workload, seconds: float) -> bool:
    """Print measure 2 and its result rows; whether its goals are met."""
    rate = measured.rows_checked / measured.validating_s if measured.validating_s else 0.0
    count_with, count_without = len(measured.with_validation), len(measured.without)
    print(
        f"mixed workload at {RATE:.0f} ops/s ({seconds:.0f}s): "
        f"p50 {ms(percentile(measured.with_validation, 0.5))} with a validation, "
        f"{ms(percentile(measured.without, 0.5))} without; p99 "
        f"{ms(percentile(measured.with_validation, 0.99))} / "
        f"{ms(percentile(measured.without, 0.99))} "
        f"({len(measured.with_validation)} / {len(measured.without)} operations)"
    )
    print(
        f"  validation: {measured.rows_checked:.0f} rows in {measured.validating_s:.1f}s "
        f"({rate:.0f} rows/s, budget {DEFAULT_BUDGET:.0f}), {measured.passes} complete passes, "
        f"{measured.differences} differences published; "
        f"{measured.second_write_failures:.0f} double writes whose copy failed (left to the "
        "validator)"
    )
    print(f"  operations: {dict(sorted(workload.done.items()))}, errors {workload.errors}")
    for kind, example in workload.error_examples.items():
        print(f"  first {kind} error: {example}")
    ratio = measured.ratio(0.99)
    ok = ratio <= P99_GOAL
    result(
        f"interactive p99 at {RATE:.0f} ops/s, full validation (default budget) vs none",
        ms(percentile(measured.with_validation, 0.99)),
        ms(percentile(measured.without, 0.99)),
        ratio,
        f"<= {P99_GOAL}",
        ok,
    )
    result(
        "interactive p50 during a validation vs none",
        ms(percentile(measured.with_validation, 0.5)),
        ms(percentile(measured.without, 0.5)),
        measured.ratio(0.5),
    )
    cpu_with = measured.cpu_with_s / count_with
    cpu_without = measured.cpu_without_s / count_without
    result(
        "interactive CPU per operation during a validation vs none (this process)",
        f"{cpu_with * 1e6:.0f} us",
        f"{cpu_without * 1e6:.0f} us",
        cpu_with / cpu_without,
    )
    errors = sum(workload.errors.values())
    result("migration workload errors", str(errors), "", None, "= 0", errors == 0)
    return ok and errors == 0


def report_likes(sides: dict[str, LikeSide]) -> None:
    """Print measure 3 and its result rows."""
    for side in sides.values():
        count = len(side.latencies)
        print(
            f"like, {side.name:<13}: p50 {ms(percentile(side.latencies, 0.5))}, "
            f"p99 {ms(percentile(side.latencies, 0.99))}; CPU "
            f"{side.cpu_s / count * 1e6:.0f} us; SQL statements per like: "
            f"{side.source_statements / count:.1f} source, "
            f"{side.destination_statements / count:.1f} destination ({count} likes)"
        )
    first = sides[Mode.SOURCE_FIRST.value]
    only = sides[Mode.SOURCE_ONLY.value]
    plain = sides["no migration"]
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        result(
            f"interactive like {label}, double write (source_first) vs source_only",
            ms(percentile(first.latencies, q)),
            ms(percentile(only.latencies, q)),
            percentile(first.latencies, q) / percentile(only.latencies, q),
        )
    result(
        "interactive like p50, source_only vs no migration configured",
        ms(percentile(only.latencies, 0.5)),
        ms(percentile(plain.latencies, 0.5)),
        percentile(only.latencies, 0.5) / percentile(plain.latencies, 0.5),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Start Redis, measure, print, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--mysql-url", default=MYSQL_SERVER, help="MariaDB/MySQL server URL")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        redis: ManagedProcess = redis_process(port, Path(tmp))
        with redis:
            try:
                met = asyncio.run(run(args.mysql_url, f"redis://127.0.0.1:{port}/0"))
            except CheckFailed as exc:
                sys.stderr.write(f"check failed: {exc}\n")
                return 2
    print(f"total {time.monotonic() - started:.0f}s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
