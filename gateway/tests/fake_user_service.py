"""An in-memory stand-in for the user service, served over real gRPC in tests.

It fails the way the real service is specified to: statuses with a ``google.rpc.ErrorInfo``
reason (built by :func:`kit.grpcx.errors.abort_with`).
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

import grpc

from kit.errors import (
    AlreadyExists,
    AppError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
)
from kit.grpcx.errors import abort_with
from webook.user.v1 import user_pb2, user_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

RESERVED_NICKNAME = "admin"
LOCKED_MESSAGE = "too many failed logins for this account; try again in 2 minutes"


async def _fail(context: Context, error: AppError) -> NoReturn:
    await abort_with(context, error)
    raise AssertionError("abort_with returned")


class FakeUserService(user_pb2_grpc.UserServiceServicer):
    """Users kept in a dict; passwords compared in plain text (it is a test double)."""

    def __init__(self) -> None:
        self.users: dict[int, user_pb2.User] = {}
        self.passwords: dict[int, str] = {}
        # Seconds Profile waits before answering (to exercise deadlines).
        self.profile_delay = 0.0
        # Emails whose logins the service's throttle refuses (registered or not).
        self.locked_emails: set[str] = set()

    def _by_email(self, email: str) -> user_pb2.User | None:
        return next((u for u in self.users.values() if u.email == email), None)

    def _create(self, **fields: Any) -> user_pb2.User:
        user = user_pb2.User(id=len(self.users) + 1, **fields)
        self.users[user.id] = user
        return user

    async def _get(self, context: Context, uid: int) -> user_pb2.User:
        user = self.users.get(uid)
        if user is None:
            await _fail(context, NotFound("USER_NOT_FOUND", "user not found"))
        return user

    async def Signup(
        self, request: user_pb2.SignupRequest, context: Context
    ) -> user_pb2.SignupResponse:
        """Create an account; a taken email fails with USER_EMAIL_TAKEN."""
        if self._by_email(request.email) is not None:
            await _fail(context, AlreadyExists("USER_EMAIL_TAKEN", "email already registered"))
        user = self._create(email=request.email)
        self.passwords[user.id] = request.password
        return user_pb2.SignupResponse(user=user)

    async def Login(
        self, request: user_pb2.LoginRequest, context: Context
    ) -> user_pb2.LoginResponse:
        """Check credentials: an unknown email is NOT_FOUND, a wrong password unauthenticated,
        a locked email RESOURCE_EXHAUSTED with the reason of wrong credentials (as the real
        throttle answers)."""
        if request.email in self.locked_emails:
            await _fail(context, ResourceExhausted("USER_LOGIN_THROTTLED", LOCKED_MESSAGE))
        user = self._by_email(request.email)
        if user is None:
            await _fail(context, NotFound("USER_NOT_FOUND", "user not found"))
        if self.passwords[user.id] != request.password:
            await _fail(
                context, Unauthenticated("USER_INVALID_CREDENTIALS", "wrong email or password")
            )
        return user_pb2.LoginResponse(user=user)

    async def Profile(
        self, request: user_pb2.ProfileRequest, context: Context
    ) -> user_pb2.ProfileResponse:
        """The user by id."""
        if self.profile_delay:
            await asyncio.sleep(self.profile_delay)
        return user_pb2.ProfileResponse(user=await self._get(context, request.id))

    async def UpdateNonSensitiveInfo(
        self, request: user_pb2.UpdateNonSensitiveInfoRequest, context: Context
    ) -> user_pb2.UpdateNonSensitiveInfoResponse:
        """Replace nickname, birthday and about-me; one nickname is refused."""
        user = await self._get(context, request.id)
        if request.nickname == RESERVED_NICKNAME:
            await _fail(context, InvalidArgument("USER_INVALID_NICKNAME", "nickname is reserved"))
        user.nickname = request.nickname
        user.birthday = request.birthday
        user.about_me = request.about_me
        return user_pb2.UpdateNonSensitiveInfoResponse(user=user)

    async def FindOrCreateByPhone(
        self, request: user_pb2.FindOrCreateByPhoneRequest, context: Context
    ) -> user_pb2.FindOrCreateByPhoneResponse:
        """The user with this phone, created on first use."""
        found = next((u for u in self.users.values() if u.phone == request.phone), None)
        if found is not None:
            return user_pb2.FindOrCreateByPhoneResponse(user=found, created=False)
        return user_pb2.FindOrCreateByPhoneResponse(
            user=self._create(phone=request.phone), created=True
        )

    async def FindOrCreateByWechat(
        self, request: user_pb2.FindOrCreateByWechatRequest, context: Context
    ) -> user_pb2.FindOrCreateByWechatResponse:
        """The user with this WeChat open id, created on first use."""
        open_id = request.info.open_id
        found = next((u for u in self.users.values() if u.wechat.open_id == open_id), None)
        if found is not None:
            return user_pb2.FindOrCreateByWechatResponse(user=found, created=False)
        return user_pb2.FindOrCreateByWechatResponse(
            user=self._create(wechat=request.info), created=True
        )

    async def GetByIds(
        self, request: user_pb2.GetByIdsRequest, context: Context
    ) -> user_pb2.GetByIdsResponse:
        """The known users among ``ids``."""
        return user_pb2.GetByIdsResponse(
            users={uid: self.users[uid] for uid in request.ids if uid in self.users}
        )

    async def ListUsers(
        self, request: user_pb2.ListUsersRequest, context: Context
    ) -> user_pb2.ListUsersResponse:
        """A page of users by id, after ``after_id``."""
        ids = sorted(uid for uid in self.users if uid > request.after_id)[: request.limit]
        return user_pb2.ListUsersResponse(users=[self.users[uid] for uid in ids])
