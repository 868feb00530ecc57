"""gRPC servicer of ``webook.user.v1.UserService``: proto ↔ domain translation only.

Every method makes exactly one :class:`~services.user.service.UserService` call, which
validates the input. Errors are :class:`kit.errors.AppError` subclasses that the server's
error interceptor turns into status codes with a ``google.rpc.ErrorInfo`` reason.
"""

from __future__ import annotations

from typing import Any

import grpc

from services.user.domain import User
from services.user.service import UserService
from webook.user.v1 import user_pb2, user_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def user_to_proto(user: User) -> user_pb2.User:
    """The wire form of ``user``: unset values become empty strings, as the proto says."""
    return user_pb2.User(
        id=user.id,
        email=user.email or "",
        phone=user.phone or "",
        nickname=user.nickname,
        birthday=user.birthday.isoformat() if user.birthday else "",
        about_me=user.about_me,
        wechat=(
            user_pb2.WechatInfo(open_id=user.wechat.open_id, union_id=user.wechat.union_id)
            if user.wechat
            else None
        ),
        ctime_ms=user.ctime_ms,
        utime_ms=user.utime_ms,
    )


class UserServicer(user_pb2_grpc.UserServiceServicer):
    """Serves the user service's RPCs on top of :class:`UserService`."""

    def __init__(self, service: UserService) -> None:
        self._service = service

    async def Signup(
        self, request: user_pb2.SignupRequest, context: Context
    ) -> user_pb2.SignupResponse:
        """Create a password account."""
        user = await self._service.signup(request.email, request.password)
        return user_pb2.SignupResponse(user=user_to_proto(user))

    async def Login(
        self, request: user_pb2.LoginRequest, context: Context
    ) -> user_pb2.LoginResponse:
        """Check email and password."""
        user = await self._service.login(request.email, request.password)
        return user_pb2.LoginResponse(user=user_to_proto(user))

    async def Profile(
        self, request: user_pb2.ProfileRequest, context: Context
    ) -> user_pb2.ProfileResponse:
        """One user by id."""
        user = await self._service.profile(request.id)
        return user_pb2.ProfileResponse(user=user_to_proto(user))

    async def UpdateNonSensitiveInfo(
        self, request: user_pb2.UpdateNonSensitiveInfoRequest, context: Context
    ) -> user_pb2.UpdateNonSensitiveInfoResponse:
        """Replace nickname, birthday and about me."""
        user = await self._service.update_non_sensitive_info(
            request.id,
            nickname=request.nickname,
            birthday=request.birthday,
            about_me=request.about_me,
        )
        return user_pb2.UpdateNonSensitiveInfoResponse(user=user_to_proto(user))

    async def FindOrCreateByPhone(
        self, request: user_pb2.FindOrCreateByPhoneRequest, context: Context
    ) -> user_pb2.FindOrCreateByPhoneResponse:
        """The user with this phone, created on first use (SMS login)."""
        user, created = await self._service.find_or_create_by_phone(request.phone)
        return user_pb2.FindOrCreateByPhoneResponse(user=user_to_proto(user), created=created)

    async def FindOrCreateByWechat(
        self, request: user_pb2.FindOrCreateByWechatRequest, context: Context
    ) -> user_pb2.FindOrCreateByWechatResponse:
        """The user with this WeChat open id, created on first use (WeChat login)."""
        user, created = await self._service.find_or_create_by_wechat(
            request.info.open_id, request.info.union_id
        )
        return user_pb2.FindOrCreateByWechatResponse(user=user_to_proto(user), created=created)

    async def GetByIds(
        self, request: user_pb2.GetByIdsRequest, context: Context
    ) -> user_pb2.GetByIdsResponse:
        """The existing users among the requested ids (at most 100)."""
        users = await self._service.get_by_ids(request.ids)
        return user_pb2.GetByIdsResponse(
            users={user_id: user_to_proto(user) for user_id, user in users.items()}
        )

    async def ListUsers(
        self, request: user_pb2.ListUsersRequest, context: Context
    ) -> user_pb2.ListUsersResponse:
        """A keyset page of users in id order (internal: reindexing)."""
        users = await self._service.list_users(request.after_id, request.limit)
        return user_pb2.ListUsersResponse(users=[user_to_proto(user) for user in users])
