"""kit.sql.SqlUnitOfWork: commit then after-commit, rollback otherwise, errors translated."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from kit.sql import SessionFactory, SqlUnitOfWork, create_engine, session_factory


class _Conflict(Exception):
    pass


class _Repo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, value: int) -> None:
        await self.session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": value})


class _UnitOfWork(SqlUnitOfWork[_Repo]):
    def __init__(self, sessions: SessionFactory) -> None:
        super().__init__(sessions)
        self.after: list[str] = []

    def open_repository(self, session: AsyncSession) -> _Repo:
        return _Repo(session)

    async def after_commit(self, repository: _Repo) -> None:
        self.after.append("cache updated")

    def translate_block_error(self, exc: BaseException) -> BaseException | None:
        return _Conflict("retry") if isinstance(exc, LookupError) else None


async def test_commit_rollback_and_translation(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'uow.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (v INTEGER)"))
    sessions = session_factory(engine)
    try:
        committed = _UnitOfWork(sessions)
        async with committed as uow:
            await uow.repository.add(1)
            assert uow.after == []
            await uow.commit()
        assert committed.after == ["cache updated"]

        abandoned = _UnitOfWork(sessions)
        async with abandoned as uow:
            await uow.repository.add(2)
        assert abandoned.after == []

        async def fail_inside() -> None:
            async with _UnitOfWork(sessions) as uow:
                await uow.repository.add(3)
                raise LookupError("deadlock")

        with pytest.raises(_Conflict):
            await fail_inside()

        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT v FROM t"))).scalars().all()
        assert rows == [1]
        with pytest.raises(RuntimeError, match="inside 'async with'"):
            _ = _UnitOfWork(sessions).repository
    finally:
        await engine.dispose()
