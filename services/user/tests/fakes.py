"""In-memory fakes of the user service's ports, for unit tests of the use cases.

:class:`InMemoryUserStore` plays the database (committed state, unique keys);
:class:`FakeUnitOfWork` stages writes in a :class:`FakeUserRepository` and applies them on
commit only, so tests can see that a use case commits (or does not).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from services.user.domain import Credentials, NewUser, ProfileEdit, User
from services.user.service import DuplicateKeyError


@dataclass
class StoredUser:
    """A committed user with its password hash."""

    user: User
    password_hash: str | None = None


@dataclass
class InMemoryUserStore:
    """Committed users by id; ``before_add`` lets a test act as a concurrent writer."""

    users: dict[int, StoredUser] = field(default_factory=dict)
    next_id: int = 1
    commits: int = 0
    before_add: Callable[[InMemoryUserStore], None] | None = None

    def insert(self, new: NewUser, now_ms: int = 0) -> User:
        """Commit a user at once (test set-up and simulated concurrent writers)."""
        user = User(
            id=self.next_id,
            email=new.email,
            phone=new.phone,
            wechat=new.wechat,
            ctime_ms=now_ms,
            utime_ms=now_ms,
        )
        self.next_id += 1
        self.users[user.id] = StoredUser(user, new.password_hash)
        return user


def _unique_keys(user: User) -> set[tuple[str, str]]:
    keys = {("email", user.email), ("phone", user.phone)}
    keys.add(("open_id", user.wechat.open_id if user.wechat else None))
    return {(name, value) for name, value in keys if value is not None}


class FakeUserRepository:
    """The :class:`~services.user.service.UserRepository` port over an in-memory store."""

    def __init__(self, store: InMemoryUserStore) -> None:
        self._store = store
        self.pending: dict[int, StoredUser] = {}

    def _visible(self) -> dict[int, StoredUser]:
        return {**self._store.users, **self.pending}

    async def add(self, user: NewUser, *, now_ms: int) -> User:
        """Stage a new user; unique keys are checked against everything visible."""
        if self._store.before_add is not None:
            self._store.before_add(self._store)
        created = User(
            id=self._store.next_id,
            email=user.email,
            phone=user.phone,
            wechat=user.wechat,
            ctime_ms=now_ms,
            utime_ms=now_ms,
        )
        taken = set().union(*(_unique_keys(s.user) for s in self._visible().values()))
        if _unique_keys(created) & taken:
            raise DuplicateKeyError("unique key taken")
        self._store.next_id += 1
        self.pending[created.id] = StoredUser(created, user.password_hash)
        return created

    async def get(self, user_id: int) -> User | None:
        """The user by id."""
        stored = self._visible().get(user_id)
        return stored.user if stored else None

    async def get_many(self, user_ids: Iterable[int]) -> dict[int, User]:
        """The existing users among ``user_ids``."""
        visible = self._visible()
        return {i: visible[i].user for i in user_ids if i in visible}

    async def get_credentials_by_email(self, email: str) -> Credentials | None:
        """The user with this exact email and its hash."""
        for stored in self._visible().values():
            if stored.user.email == email:
                return Credentials(stored.user, stored.password_hash)
        return None

    async def get_by_phone(self, phone: str) -> User | None:
        """The user with this exact phone."""
        return next((s.user for s in self._visible().values() if s.user.phone == phone), None)

    async def get_by_wechat_open_id(self, open_id: str) -> User | None:
        """The user with this exact open id."""
        return next(
            (
                s.user
                for s in self._visible().values()
                if s.user.wechat and s.user.wechat.open_id == open_id
            ),
            None,
        )

    async def update_profile(self, user_id: int, edit: ProfileEdit, *, now_ms: int) -> User | None:
        """Stage the edit."""
        stored = self._visible().get(user_id)
        if stored is None:
            return None
        user = dataclasses.replace(
            stored.user,
            nickname=edit.nickname,
            birthday=edit.birthday,
            about_me=edit.about_me,
            utime_ms=now_ms,
        )
        self.pending[user_id] = StoredUser(user, stored.password_hash)
        return user

    async def list_after(self, after_id: int, limit: int) -> list[User]:
        """Visible users with ids above ``after_id``, in id order."""
        visible = self._visible()
        return [visible[i].user for i in sorted(visible) if i > after_id][:limit]


@dataclass
class RecordingUserEvents:
    """``UserEvents`` that keeps what was reported."""

    changed: list[User] = field(default_factory=list)

    def user_changed(self, user: User, *, at_ms: int) -> None:
        """Record ``user``."""
        self.changed.append(user)


class StagedUserEvents:
    """Events of one fake unit of work, handed to its sink only if it commits."""

    def __init__(self) -> None:
        self.staged: list[User] = []

    def user_changed(self, user: User, *, at_ms: int) -> None:
        """Stage ``user``."""
        self.staged.append(user)


class FakeUnitOfWork:
    """Applies the repository's staged writes (and events, to ``events``) on commit."""

    def __init__(self, store: InMemoryUserStore, events: RecordingUserEvents | None = None) -> None:
        self._store = store
        self._users = FakeUserRepository(store)
        self._sink = events
        self.events = StagedUserEvents()

    @property
    def users(self) -> FakeUserRepository:
        """The repository of this unit of work."""
        return self._users

    async def __aenter__(self) -> Self:
        """Begin."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Drop whatever was not committed."""
        self._users.pending.clear()
        self.events.staged.clear()

    async def commit(self) -> None:
        """Make the staged writes visible to later units of work."""
        self._store.users.update(self._users.pending)
        self._users.pending.clear()
        self._store.commits += 1
        staged, self.events.staged = self.events.staged, []
        if self._sink is not None:
            for user in staged:
                self._sink.user_changed(user, at_ms=0)
