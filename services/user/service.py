"""Use cases of the user service and the ports they need.

:class:`UserService` validates input with the rules of :mod:`services.user.domain`, hashes and
checks passwords with bcrypt (in a worker thread, so the event loop keeps serving), and
reads and writes users through a :class:`UnitOfWork`: each use case opens one, works on its
:class:`UserRepository` and commits, so the service owns the transaction while the
repository owns SQL and caching.

Uniqueness (email, phone, WeChat open id) is enforced by the database: the repository reports
a taken key as :class:`DuplicateKeyError`, which signup turns into ``USER_EMAIL_TAKEN`` and the
find-or-create use cases answer by reading the row the concurrent writer created.

Every created user and every profile edit is recorded as an event in the transaction that
makes it (:attr:`UnitOfWork.events`, the outbox): the event exists if and only if the change
committed, and the search index follows it at least once.

Password guessing is throttled per account (:class:`LoginThrottle`, keyed by a digest of the
normalised email whether or not it is registered, so the answers never tell): after
``max_failures`` wrong passwords within the window the account's password logins are refused
for a lock time that doubles with each lock, without checking the password; a successful
login resets it. Direct gRPC callers meet the same limit as the gateway.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, date, datetime
from typing import Protocol, TypeVar

import bcrypt

from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from services.user.domain import (
    Credentials,
    NewUser,
    ProfileEdit,
    User,
    check_about_me,
    check_password_strength,
    normalize_email,
    normalize_ids,
    normalize_nickname,
    normalize_phone,
    normalize_wechat,
    parse_birthday,
    password_fits_bcrypt,
)
from services.user.errors import (
    Reason,
    UserAlreadyExists,
    UserInvalidArgument,
    UserLoginThrottled,
    UserNotFound,
    UserUnauthenticated,
    UserUnavailable,
)
from services.user.metrics import UserMetrics, default_metrics

logger = logging.getLogger(__name__)

DEFAULT_BCRYPT_COST = 10
MAX_LIST_LIMIT = 1000
# One retry is enough: a find-or-create that loses the insert race finds the winner's row.
_FIND_OR_CREATE_ATTEMPTS = 2


class DuplicateKeyError(Exception):
    """Raised by a :class:`UserRepository` when a unique key (email, phone, open id) is taken."""


class UserRepository(Protocol):
    """Users in storage, as seen from inside one unit of work."""

    async def add(self, user: NewUser, *, now_ms: int) -> User:
        """Insert ``user``; raises :class:`DuplicateKeyError` if a unique key is taken."""
        ...

    async def get(self, user_id: int) -> User | None:
        """The user with ``user_id`` (cache-aside), or ``None``."""
        ...

    async def get_many(self, user_ids: Iterable[int]) -> dict[int, User]:
        """The users among ``user_ids`` that exist, by id (cache-aside)."""
        ...

    async def get_credentials_by_email(self, email: str) -> Credentials | None:
        """The user with this normalised email and its password hash, from the database."""
        ...

    async def get_by_phone(self, phone: str) -> User | None:
        """The user with this phone, from the database."""
        ...

    async def get_by_wechat_open_id(self, open_id: str) -> User | None:
        """The user with this WeChat open id, from the database."""
        ...

    async def update_profile(self, user_id: int, edit: ProfileEdit, *, now_ms: int) -> User | None:
        """Apply ``edit``; ``None`` if the user does not exist. Cached copies go on commit."""
        ...

    async def list_after(self, after_id: int, limit: int) -> list[User]:
        """Up to ``limit`` users with ids greater than ``after_id``, in id order (database)."""
        ...


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction: ``async with`` it, use :attr:`users`, then :meth:`commit`.

    Leaving the block without committing rolls back. Work that must follow a successful
    commit (cache invalidation) happens inside :meth:`commit`.
    """

    @property
    def users(self) -> UserRepository:
        """The repository bound to this unit of work's transaction."""
        ...

    @property
    def events(self) -> UserEvents:
        """Events recorded in this unit of work's transaction (kept only if it commits)."""
        ...


class UserEvents(Protocol):
    """Where changes to searchable fields are recorded, inside the transaction."""

    def user_changed(self, user: User, *, at_ms: int) -> None:
        """``user`` was created or edited; it carries the state being committed."""
        ...


class ThrottleUnavailable(Exception):
    """The login throttle's store cannot be reached."""


class LoginThrottle(Protocol):
    """Failed logins per account, shared by every instance; each call is atomic."""

    async def begin(self, account: str, now_ms: int) -> int:
        """0 if a login attempt may go ahead (it counts as a failure until it succeeds),
        else the milliseconds until one may."""
        ...

    async def failed(self, account: str, now_ms: int) -> int:
        """Record a wrong password; the milliseconds the account is now locked for (0: not)."""
        ...

    async def succeeded(self, account: str) -> None:
        """Forget the account's failures and locks."""
        ...


_T = TypeVar("_T")
UnitOfWorkFactory = Callable[[], UnitOfWork]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def _hash_password(password: str, cost: int) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=cost)).decode("ascii")


def _password_matches(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(password.encode("utf-8"), password_hash.encode("ascii"))


class UserService:
    """The user service's use cases.

    Args:
        units: makes a new :class:`UnitOfWork` per use case.
        bcrypt_cost: bcrypt work factor for new hashes (4..31; each step doubles the time).
        clock: current time in UTC; birthdays are checked against its date.
        throttle: failed logins per account; ``None`` does not throttle (tools, unit tests).
        metrics: where the throttle's decisions are counted.
    """

    def __init__(
        self,
        units: UnitOfWorkFactory,
        *,
        bcrypt_cost: int = DEFAULT_BCRYPT_COST,
        clock: Clock = utc_now,
        throttle: LoginThrottle | None = None,
        metrics: UserMetrics | None = None,
    ) -> None:
        self._units = units
        self._throttle = throttle
        self._metrics = metrics or default_metrics()
        self._bcrypt_cost = bcrypt_cost
        self._clock = clock
        self._dummy_hash: str | None = None

    def _changed(self, uow: UnitOfWork, user: User) -> None:
        uow.events.user_changed(user, at_ms=self._now_ms())

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    def _today_utc(self) -> date:
        return self._clock().astimezone(UTC).date()

    async def signup(self, email: str, password: str) -> User:
        """Create a password account; ``USER_EMAIL_TAKEN`` if the email is registered."""
        normalized = normalize_email(email)
        check_password_strength(password)
        password_hash = await asyncio.to_thread(_hash_password, password, self._bcrypt_cost)
        try:
            async with self._units() as uow:
                user = await uow.users.add(
                    NewUser(email=normalized, password_hash=password_hash), now_ms=self._now_ms()
                )
                self._changed(uow, user)
                await uow.commit()
        except DuplicateKeyError as exc:
            raise UserAlreadyExists(
                Reason.EMAIL_TAKEN,
                "this email address is already registered",
                metadata={"field": "email"},
            ) from exc
        logger.info("user signed up", extra={"user_id": user.id})
        return user

    async def _dummy_password_hash(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(
                _hash_password, "dummy password 0!", self._bcrypt_cost
            )
        return self._dummy_hash

    async def login(self, email: str, password: str) -> User:
        """The user whose email and password match; ``USER_INVALID_CREDENTIALS`` otherwise.

        The error is the same for an unknown email and a wrong password, and an unknown
        email still costs one bcrypt check, so neither the answer nor its timing tells
        whether an address is registered. Too many wrong passwords for one email (registered
        or not) answer ``RESOURCE_EXHAUSTED`` until the lock ends (see the module docstring).
        """
        refused = UserUnauthenticated(Reason.INVALID_CREDENTIALS, "wrong email or password")
        try:
            normalized = normalize_email(email)
        except UserInvalidArgument:
            raise refused from None
        if not password or not password_fits_bcrypt(password):
            # Independent of stored data, so answering at once reveals nothing.
            raise refused
        account = hashlib.sha256(normalized.encode()).hexdigest()
        # Counted as a failure from here until it succeeds: concurrent guesses cannot slip
        # past the limit, and an attempt cut short (database down) counts against it.
        await self._begin_attempt(account)
        async with self._units() as uow:
            credentials = await uow.users.get_credentials_by_email(normalized)
        if credentials is None or credentials.password_hash is None:
            await asyncio.to_thread(_password_matches, password, await self._dummy_password_hash())
            await self._failed_attempt(account, user_id=None)
            raise refused
        if not await asyncio.to_thread(_password_matches, password, credentials.password_hash):
            await self._failed_attempt(account, user_id=credentials.user.id)
            raise refused
        if self._throttle is not None:
            await self._throttled_call(self._throttle.succeeded(account))
        return credentials.user

    async def _begin_attempt(self, account: str) -> None:
        if self._throttle is None:
            return
        wait_ms = await self._throttled_call(self._throttle.begin(account, self._now_ms()))
        if not wait_ms:
            return
        self._metrics.login_throttle_total.labels("refused").inc()
        logger.info(
            "login refused: account locked", extra={"account": account[:12], "wait_ms": wait_ms}
        )
        minutes = math.ceil(wait_ms / 60_000)
        raise UserLoginThrottled(
            Reason.LOGIN_THROTTLED,
            "too many failed logins for this account; try again in "
            f"{minutes} minute{'s' if minutes > 1 else ''}",
            metadata={"retry_after_s": str(math.ceil(wait_ms / 1000))},
        )

    async def _failed_attempt(self, account: str, *, user_id: int | None) -> None:
        # The log names the user only when there is one; never the address.
        extra: dict[str, object] = {"account": account[:12], "user_id": user_id}
        if self._throttle is None:
            logger.info("login refused", extra=extra)
            return
        lock_ms = await self._throttled_call(self._throttle.failed(account, self._now_ms()))
        if lock_ms:
            self._metrics.login_throttle_total.labels("locked").inc()
            extra["lock_ms"] = lock_ms
            logger.warning("login locked after repeated failures", extra=extra)
        else:
            logger.info("login refused", extra=extra)

    async def _throttled_call(self, call: Awaitable[_T]) -> _T | None:
        """``await call``; ``None`` if the throttle's store is down (the login goes ahead)."""
        try:
            return await call
        except ThrottleUnavailable:
            # A Redis outage must not lock everyone out; the gateway's per-IP limit remains.
            self._metrics.login_throttle_total.labels("unchecked").inc()
            logger.error("login throttle unavailable; login not throttled", exc_info=True)
            return None

    async def profile(self, user_id: int) -> User:
        """The user with ``user_id``; ``USER_NOT_FOUND`` if there is none."""
        user = None
        if user_id > 0:
            async with self._units() as uow:
                user = await uow.users.get(user_id)
        if user is None:
            raise _not_found(user_id)
        return user

    async def update_non_sensitive_info(
        self, user_id: int, *, nickname: str, birthday: str, about_me: str
    ) -> User:
        """Replace nickname, birthday (``YYYY-MM-DD`` or empty to unset) and about me."""
        edit = ProfileEdit(
            nickname=normalize_nickname(nickname),
            birthday=parse_birthday(birthday, today_utc=self._today_utc()),
            about_me=check_about_me(about_me),
        )
        if user_id <= 0:
            raise _not_found(user_id)
        async with self._units() as uow:
            user = await uow.users.update_profile(user_id, edit, now_ms=self._now_ms())
            if user is None:
                raise _not_found(user_id)
            self._changed(uow, user)
            await uow.commit()
        logger.info("profile updated", extra={"user_id": user_id})
        return user

    async def find_or_create_by_phone(self, phone: str) -> tuple[User, bool]:
        """The user with ``phone``, created if new; the flag says whether it was created."""
        normalized = normalize_phone(phone)
        return await self._find_or_create(
            lambda users: users.get_by_phone(normalized), NewUser(phone=normalized)
        )

    async def find_or_create_by_wechat(self, open_id: str, union_id: str) -> tuple[User, bool]:
        """The user with this WeChat open id, created if new; the flag says whether created."""
        info = normalize_wechat(open_id, union_id)
        return await self._find_or_create(
            lambda users: users.get_by_wechat_open_id(info.open_id), NewUser(wechat=info)
        )

    async def _find_or_create(
        self, find: Callable[[UserRepository], Awaitable[User | None]], new: NewUser
    ) -> tuple[User, bool]:
        for _ in range(_FIND_OR_CREATE_ATTEMPTS):
            # Each attempt is a fresh transaction: under REPEATABLE READ a retry inside the
            # failed one would not see the row the concurrent winner committed.
            async with self._units() as uow:
                found = await find(uow.users)
                if found is not None:
                    return found, False
                try:
                    user = await uow.users.add(new, now_ms=self._now_ms())
                    self._changed(uow, user)
                    await uow.commit()
                except DuplicateKeyError:
                    logger.info("find-or-create lost an insert race; reading the winner's row")
                    continue
            logger.info("user created", extra={"user_id": user.id})
            return user, True
        raise UserUnavailable(
            Reason.CONCURRENT_CONFLICT, "the account is being changed concurrently; try again"
        )

    async def get_by_ids(self, user_ids: Iterable[int]) -> dict[int, User]:
        """The users among ``user_ids`` that exist (at most 100 distinct ids)."""
        wanted = normalize_ids(user_ids)
        if not wanted:
            return {}
        async with self._units() as uow:
            return await uow.users.get_many(wanted)

    async def list_users(self, after_id: int, limit: int) -> list[User]:
        """Up to ``limit`` (1..1000) users with ids greater than ``after_id``, in id order.

        Internal: a keyset page for rebuilding derived data (the search index); pass the
        last id of a page as the next ``after_id``; a short page is the last one.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise UserInvalidArgument(
                Reason.INVALID_PAGE,
                f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}",
                metadata={"field": "limit", "max_limit": str(MAX_LIST_LIMIT)},
            )
        async with self._units() as uow:
            return await uow.users.list_after(max(after_id, 0), limit)


def _not_found(user_id: int) -> UserNotFound:
    return UserNotFound(Reason.NOT_FOUND, "user not found", metadata={"id": str(user_id)})
