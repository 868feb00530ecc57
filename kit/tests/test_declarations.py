"""The declarative helpers services build on: row mappers, ``SessionDAO.get_row``, the
caching unit of work (SQLite), and service errors keyed by a proto ``ErrorReason`` enum."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum, auto
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, String, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.errors import ErrorKind, NotFound, ServiceError, Unavailable, reason_names, reason_prefix
from kit.sql import (
    CachingUnitOfWork,
    SessionDAO,
    big_id,
    create_engine,
    row_mapper,
    service_metadata,
    session_factory,
)
from webook.comment.v1 import comment_pb2


class Base(DeclarativeBase):
    metadata = service_metadata()


class NoteRow(Base):
    __tablename__ = "kit_declarations_notes"

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(64))
    kind: Mapped[int] = mapped_column(BigInteger)
    ctime: Mapped[int] = mapped_column(BigInteger)


class Kind(IntEnum):
    DRAFT = 1
    FINAL = 2


@dataclass(frozen=True)
class Note:
    id: int
    title: str
    kind: Kind
    ctime_ms: int
    tags: tuple[str, ...] = ()


def test_a_row_mapper_copies_renames_converts_and_takes_the_rest_from_the_caller() -> None:
    note = row_mapper(
        Note, NoteRow, renamed={"ctime_ms": "ctime"}, converted={"kind": Kind}, given=["tags"]
    )
    row = NoteRow(id=3, title="t", kind=2, ctime=9)
    assert note(row) == Note(id=3, title="t", kind=Kind.FINAL, ctime_ms=9)
    assert note(row).kind is Kind.FINAL
    assert note(row, tags=("a",)).tags == ("a",)


def test_a_row_mapper_refuses_names_the_row_or_the_value_lacks() -> None:
    with pytest.raises(ValueError, match="ctime_ms"):
        row_mapper(Note, NoteRow, given=["tags"])  # no column ctime_ms, no renaming
    with pytest.raises(ValueError, match="no fields"):
        row_mapper(Note, NoteRow, renamed={"ctime_ms": "ctime", "mtime_ms": "utime"})


class _Repo:
    def __init__(self, dao: SessionDAO, cache: list[str]) -> None:
        self.dao = dao
        self.cache = cache

    async def after_commit(self) -> None:
        self.cache.append("committed")


class _Unit(CachingUnitOfWork[_Repo, list[str]]):
    notes = CachingUnitOfWork.repository

    def open_repository(self, session: AsyncSession) -> _Repo:
        return _Repo(SessionDAO(session), self.cache)


async def test_the_caching_unit_of_work_builds_its_repository_and_runs_its_commit_hook(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'notes.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessions = session_factory(engine)
        cache: list[str] = []
        async with _Unit(sessions, cache) as uow:
            await uow.notes.dao.insert(NoteRow(title="kept", kind=1, ctime=1))
            await uow.commit()
        async with _Unit(sessions, cache) as uow:
            await uow.notes.dao.insert(NoteRow(title="dropped", kind=1, ctime=1))
        assert cache == ["committed"]
        async with _Unit(sessions, cache) as uow:
            row = await uow.notes.dao.get_row(NoteRow, 1, for_update=True)
            assert row is not None
            assert row.title == "kept"
            assert await uow.notes.dao.get_row(NoteRow, 2) is None
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT COUNT(*) FROM kit_declarations_notes")) == 1
    finally:
        await engine.dispose()


class CommentError(ServiceError, reasons=comment_pb2.ErrorReason):
    """The errors of the comment domain."""


class CommentNotFound(CommentError, NotFound):
    """Not there."""


class CommentUnavailable(CommentError, Unavailable):
    """Retry."""


def test_service_errors_take_the_domain_of_their_enum_and_the_kind_of_their_class() -> None:
    error = CommentNotFound("COMMENT_NOT_FOUND", "gone")
    assert (error.kind, error.domain) == (ErrorKind.NOT_FOUND, "comment.webook")
    assert CommentUnavailable("COMMENT_CONCURRENT_CONFLICT", "x").kind is ErrorKind.UNAVAILABLE
    assert isinstance(error, CommentError)
    assert not isinstance(error, Unavailable)
    assert ServiceError("R", "m").domain == "webook"


def test_reason_members_are_the_declared_names_with_the_domain_prefix() -> None:
    class Reason(StrEnum):
        _generate_next_value_ = reason_names(comment_pb2.ErrorReason)

        NOT_FOUND = auto()
        PARENT_NOT_FOUND = auto()

    assert reason_prefix(comment_pb2.ErrorReason) == "COMMENT_"
    assert [str(r) for r in Reason] == ["COMMENT_NOT_FOUND", "COMMENT_PARENT_NOT_FOUND"]
    with pytest.raises(ValueError, match="COMMENT_NOT_THERE"):

        class _Typo(StrEnum):
            _generate_next_value_ = reason_names(comment_pb2.ErrorReason)

            NOT_THERE = auto()
