"""Unit tests of the interactive use cases: input rules and the retry of conflicting writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Self, cast

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clients.tests.articles import FakeTargets
from kit.errors import AppError, ErrorKind
from kit.events import ConsumedEvent
from services.interactive.domain import Counts, Flags
from services.interactive.errors import DOMAIN, Reason
from services.interactive.events import ReadCounter, decode_article_read, decode_article_reads
from services.interactive.service import WRITE_ATTEMPTS, InteractiveService, WriteConflict
from webook.events.v1 import events_pb2


class ConflictingRepository:
    """Raises :class:`WriteConflict` for the first ``conflicts`` writes, then records them."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.reads: list[dict[int, int]] = []
        self.likes: list[tuple[str, int, int]] = []

    def _maybe_conflict(self) -> None:
        if self.conflicts > 0:
            self.conflicts -= 1
            raise WriteConflict("deadlock")

    async def add_reads(self, biz: str, reads: Mapping[int, int], *, now_ms: int) -> None:
        self._maybe_conflict()
        self.reads.append(dict(reads))

    async def add_like(self, biz: str, biz_id: int, uid: int, *, now_ms: int) -> bool:
        self._maybe_conflict()
        self.likes.append((biz, biz_id, uid))
        return True

    async def remove_like(self, biz: str, biz_id: int, uid: int, *, now_ms: int) -> bool:
        self._maybe_conflict()
        return True

    async def add_collect(self, biz: str, biz_id: int, uid: int, cid: int, *, now_ms: int) -> bool:
        self._maybe_conflict()
        return True

    async def remove_collect(self, biz: str, biz_id: int, uid: int, *, now_ms: int) -> bool:
        self._maybe_conflict()
        return True

    async def counts(self, biz: str, biz_id: int) -> Counts:
        return Counts()

    async def counts_many(self, biz: str, biz_ids: Iterable[int]) -> dict[int, Counts]:
        return {biz_id: Counts(read_cnt=biz_id) for biz_id in biz_ids}

    async def flags(self, biz: str, biz_id: int, uid: int) -> Flags:
        return Flags(liked=True, collected=False)


class Unit:
    """A unit of work around :class:`ConflictingRepository` that counts commits."""

    def __init__(self, repository: ConflictingRepository) -> None:
        self.repository = repository
        self.commits = 0

    @property
    def interactives(self) -> ConflictingRepository:
        return self.repository

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def commit(self) -> None:
        self.commits += 1


def service_with(repository: ConflictingRepository) -> tuple[InteractiveService, Unit]:
    unit = Unit(repository)
    return InteractiveService(lambda: unit, targets=FakeTargets()), unit


async def test_conflicting_writes_are_retried() -> None:
    repository = ConflictingRepository(conflicts=WRITE_ATTEMPTS - 1)
    service, unit = service_with(repository)
    assert await service.like("article", 1, 2) is True
    assert repository.likes == [("article", 1, 2)]
    assert unit.commits == 1


async def test_writes_give_up_after_repeated_conflicts() -> None:
    service, unit = service_with(ConflictingRepository(conflicts=WRITE_ATTEMPTS))
    with pytest.raises(AppError) as caught:
        await service.add_reads("article", {1: 3})
    error = caught.value
    assert (error.kind, error.reason, error.domain) == (
        ErrorKind.UNAVAILABLE,
        Reason.CONCURRENT_CONFLICT,
        DOMAIN,
    )
    assert unit.commits == 0


async def test_reads_ignore_ids_and_counts_that_cannot_count() -> None:
    repository = ConflictingRepository(conflicts=0)
    service, unit = service_with(repository)
    await service.add_reads("article", {0: 3, 5: 0, 6: -1})
    assert (repository.reads, unit.commits) == ([], 0)
    await service.incr_read("article", 9)
    assert repository.reads == [{9: 1}]


@pytest.mark.parametrize(
    ("biz", "biz_id", "uid", "cid", "reason"),
    [
        ("", 1, 1, 0, Reason.INVALID_BIZ),
        ("Article", 1, 1, 0, Reason.INVALID_BIZ),
        ("a" * 33, 1, 1, 0, Reason.INVALID_BIZ),
        ("1article", 1, 1, 0, Reason.INVALID_BIZ),
        ("article", 0, 1, 0, Reason.INVALID_BIZ_ID),
        ("article", 1, 0, 0, Reason.INVALID_USER),
        ("article", 1, 1, -1, Reason.INVALID_COLLECTION),
    ],
)
async def test_invalid_input_is_refused(
    biz: str, biz_id: int, uid: int, cid: int, reason: Reason
) -> None:
    service, unit = service_with(ConflictingRepository(conflicts=0))
    with pytest.raises(AppError) as caught:
        await service.collect(biz, biz_id, uid, cid)
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.INVALID_ARGUMENT, reason)
    assert caught.value.metadata["field"]
    assert unit.commits == 0


async def test_get_by_ids_allows_100_distinct_ids_and_refuses_101() -> None:
    service, _ = service_with(ConflictingRepository(conflicts=0))
    found = await service.get_by_ids("article", [*range(1, 101), *range(1, 101), 0])
    assert sorted(found) == list(range(1, 101))
    assert found[7].counts.read_cnt == 7
    with pytest.raises(AppError) as caught:
        await service.get_by_ids("article", range(1, 102))
    assert caught.value.reason == Reason.TOO_MANY_IDS


async def test_anonymous_get_has_no_flags() -> None:
    service, _ = service_with(ConflictingRepository(conflicts=0))
    assert (await service.get("article", 1, 0)).liked is False
    assert (await service.get("article", 1, 5)).liked is True


@pytest.mark.parametrize(
    "value",
    [b"\xff\xff\xff", events_pb2.ArticleRead(user_id=3).SerializeToString(), None],
)
def test_read_events_without_an_article_do_not_decode(value: bytes) -> None:
    with pytest.raises(ValueError, match=r"ArticleRead|no value"):
        decode_article_read(value)


def test_read_events_decode() -> None:
    event = events_pb2.ArticleRead(article_id=4, user_id=3, at_ms=1)
    assert decode_article_read(event.SerializeToString()) == event


def _reads(*article_ids: int) -> events_pb2.ArticleReads:
    return events_pb2.ArticleReads(
        reads=[events_pb2.ArticleRead(article_id=i, user_id=3, at_ms=1) for i in article_ids]
    )


def test_read_batches_decode_keeping_the_reads_that_name_an_article() -> None:
    whole = _reads(4, 5, 4)
    assert decode_article_reads(whole.SerializeToString()) == whole
    assert decode_article_reads(_reads(4, 0, 5).SerializeToString()) == _reads(4, 5)


@pytest.mark.parametrize(
    "value",
    [b"\xff\xff\xff", _reads().SerializeToString(), _reads(0, 0).SerializeToString(), None],
)
def test_read_batches_without_a_read_of_an_article_do_not_decode(value: bytes) -> None:
    with pytest.raises(ValueError, match=r"ArticleReads|no value"):
        decode_article_reads(value)


class AddedReads:
    """The service's ``add_reads``, recorded."""

    def __init__(self) -> None:
        self.added: list[tuple[str, dict[int, int]]] = []

    async def add_reads(self, biz: str, reads: Mapping[int, int]) -> None:
        self.added.append((biz, dict(reads)))


def _event(payload: events_pb2.ArticleReads) -> ConsumedEvent[events_pb2.ArticleReads]:
    return ConsumedEvent("webook.article.reads", 0, 0, b"1", 0, payload)


async def test_a_batch_of_read_batches_is_counted_once_and_links_its_producers() -> None:
    service = AddedReads()
    counter = ReadCounter(cast("InteractiveService", service))
    traced = _reads(4, 5)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for read in traced.reads:
        read.traceparent = parent  # two reads of one request: one link
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("batch"):
        await counter([_event(traced), _event(_reads(4))])
    assert service.added == [("article", {4: 2, 5: 1})]
    (span,) = exporter.get_finished_spans()
    assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
        (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331)
    ]


class FullyCached:
    """A cache that has everything: counts and, for signed-in users, flags."""

    async def lookup(self, biz: str, biz_id: int, uid: int) -> tuple[Counts | None, Flags | None]:
        return Counts(read_cnt=3), (Flags(liked=True, collected=True) if uid > 0 else None)


async def test_a_cached_get_opens_no_unit_of_work() -> None:
    def no_units() -> Unit:
        raise AssertionError("a cached get must not open a unit of work")

    service = InteractiveService(no_units, targets=FakeTargets(), cached=FullyCached())
    intr = await service.get("article", 1, 5)
    assert (intr.counts.read_cnt, intr.liked, intr.collected) == (3, True, True)
    anonymous = await service.get("article", 1, 0)
    assert (anonymous.counts.read_cnt, anonymous.liked, anonymous.collected) == (3, False, False)


async def test_existence_is_asked_only_for_known_biz_and_never_to_cancel() -> None:
    targets = FakeTargets(published={1})
    unit = Unit(ConflictingRepository(conflicts=0))
    service = InteractiveService(lambda: unit, targets=targets)
    with pytest.raises(AppError) as caught:
        await service.like("nonexistent_biz", 1, 5)
    assert (caught.value.kind, caught.value.reason) == (
        ErrorKind.INVALID_ARGUMENT,
        Reason.INVALID_BIZ,
    )
    assert targets.asked == []
    targets.down = True
    await service.cancel_like("article", 2, 5)
    await service.cancel_collect("article", 2, 5)
    assert targets.asked == []
    committed = unit.commits
    with pytest.raises(AppError) as caught:
        await service.collect("article", 1, 5, 0)
    assert (caught.value.kind, caught.value.reason) == (
        ErrorKind.UNAVAILABLE,
        Reason.TARGET_UNAVAILABLE,
    )
    assert unit.commits == committed
