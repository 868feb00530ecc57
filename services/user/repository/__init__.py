"""Storage adapters of the user service: SQL (the truth) plus a Redis profile cache.

- :class:`CachedUserRepository` implements :class:`services.user.service.UserRepository` on a
  :class:`~services.user.repository.dao.UserDAO` and a
  :class:`~services.user.repository.cache.UserProfileCache`: reads by id go cache first, then
  the database, then fill the cache; lookups by email, phone or WeChat id (login and
  find-or-create) always read the database.
- :class:`SqlUnitOfWork` implements :class:`services.user.service.UnitOfWork`: one session and
  transaction per use case, with the ``UserChanged`` events written to the outbox in it;
  after a successful commit it drops the cached profiles the transaction changed (write the
  database first, then delete the cache).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox import Outbox
from kit.sql import CachingUnitOfWork, SessionFactory, is_unique_violation, row_mapper
from services.user.domain import Credentials, NewUser, ProfileEdit, User, WechatInfo
from services.user.events import OUTBOX_TOPICS, KafkaUserEvents
from services.user.repository.cache import UserProfileCache
from services.user.repository.dao import UserDAO, UserOutboxRow, UserRow
from services.user.service import DuplicateKeyError

__all__ = ["CachedUserRepository", "SqlUnitOfWork", "user_from_row", "user_outbox"]


def user_outbox() -> Outbox:
    """The outbox of the user service's events (``user_outbox``, declared topics only)."""
    return Outbox(UserOutboxRow, topics=OUTBOX_TOPICS)


_user = row_mapper(
    User, UserRow, renamed={"ctime_ms": "ctime", "utime_ms": "utime"}, given=["wechat"]
)


def user_from_row(row: UserRow) -> User:
    """The domain user stored in ``row`` (without its password hash)."""
    if not row.wechat_open_id:
        return _user(row, wechat=None)
    return _user(row, wechat=WechatInfo(row.wechat_open_id, row.wechat_union_id or ""))


class CachedUserRepository:
    """Users in SQL with cache-aside profile reads, inside one unit of work's session."""

    def __init__(self, dao: UserDAO, cache: UserProfileCache) -> None:
        self._dao = dao
        self._cache = cache
        self._stale_ids: set[int] = set()

    async def add(self, user: NewUser, *, now_ms: int) -> User:
        """Insert ``user``; :class:`DuplicateKeyError` if its email, phone or open id is taken."""
        row = UserRow(
            email=user.email,
            password_hash=user.password_hash,
            phone=user.phone,
            wechat_open_id=user.wechat.open_id if user.wechat else None,
            wechat_union_id=(user.wechat.union_id or None) if user.wechat else None,
            nickname="",
            birthday=None,
            about_me="",
            ctime=now_ms,
            utime=now_ms,
        )
        try:
            await self._dao.insert(row)
        except IntegrityError as exc:
            if is_unique_violation(exc):
                raise DuplicateKeyError(str(exc.orig)) from exc
            raise
        return user_from_row(row)

    async def get(self, user_id: int) -> User | None:
        """Cache first, then the database (filling the cache)."""
        cached = await self._cache.get(user_id)
        if cached is not None:
            return cached
        row = await self._dao.get(user_id)
        if row is None:
            return None
        user = user_from_row(row)
        await self._cache.set(user)
        return user

    async def get_many(self, user_ids: Iterable[int]) -> dict[int, User]:
        """Cached profiles plus the misses from the database (which then fill the cache)."""
        wanted = list(user_ids)
        found = await self._cache.get_many(wanted)
        missing = [i for i in wanted if i not in found]
        if missing:
            loaded = [user_from_row(row) for row in await self._dao.find_many(missing)]
            await self._cache.set_many(loaded)
            found.update((user.id, user) for user in loaded)
        return found

    async def get_credentials_by_email(self, email: str) -> Credentials | None:
        """The user with ``email`` and its password hash (never cached)."""
        row = await self._dao.find_by_email(email)
        if row is None:
            return None
        return Credentials(user=user_from_row(row), password_hash=row.password_hash)

    async def get_by_phone(self, phone: str) -> User | None:
        """The user with ``phone``, from the database."""
        row = await self._dao.find_by_phone(phone)
        return user_from_row(row) if row is not None else None

    async def get_by_wechat_open_id(self, open_id: str) -> User | None:
        """The user with this WeChat open id, from the database."""
        row = await self._dao.find_by_wechat_open_id(open_id)
        return user_from_row(row) if row is not None else None

    async def update_profile(self, user_id: int, edit: ProfileEdit, *, now_ms: int) -> User | None:
        """Apply ``edit`` in the transaction; the cached copy is dropped after commit."""
        row = await self._dao.update_profile(
            user_id,
            nickname=edit.nickname,
            birthday=edit.birthday,
            about_me=edit.about_me,
            utime=now_ms,
        )
        if row is None:
            return None
        self._stale_ids.add(user_id)
        return user_from_row(row)

    async def list_after(self, after_id: int, limit: int) -> list[User]:
        """A keyset page of users in id order, from the database (never cached)."""
        return [user_from_row(row) for row in await self._dao.list_after(after_id, limit)]

    async def after_commit(self) -> None:
        """Drop the cached profiles this repository changed (after the commit)."""
        stale, self._stale_ids = self._stale_ids, set()
        await self._cache.delete(sorted(stale))


class SqlUnitOfWork(CachingUnitOfWork[CachedUserRepository, UserProfileCache]):
    """One SQL transaction with a :class:`CachedUserRepository` bound to it, and the user
    events recorded in ``outbox`` within the same transaction."""

    users = CachingUnitOfWork.repository

    def __init__(self, sessions: SessionFactory, cache: UserProfileCache, outbox: Outbox) -> None:
        super().__init__(sessions, cache)
        self._outbox = outbox
        self._events: KafkaUserEvents | None = None

    def open_repository(self, session: AsyncSession) -> CachedUserRepository:
        self._events = KafkaUserEvents(self._outbox.bound(session))
        return CachedUserRepository(UserDAO(session), self.cache)

    @property
    def events(self) -> KafkaUserEvents:
        """``UserChanged`` events, written to the outbox in this transaction."""
        if self._events is None:
            raise RuntimeError("use the unit of work inside 'async with'")
        return self._events

    def translate_commit_error(self, exc: Exception) -> BaseException | None:
        """A unique-key violation at commit is a :class:`DuplicateKeyError`."""
        if isinstance(exc, IntegrityError) and is_unique_violation(exc):
            return DuplicateKeyError(str(exc.orig))
        return super().translate_commit_error(exc)
