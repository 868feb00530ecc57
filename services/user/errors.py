"""Errors of the user service, all in the ``user.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.user.v1``
(``protos/webook/user/v1/user.proto``); a reason is a value's name.

Each class fixes the canonical kind (the gRPC status it becomes); the business reason is one
of :class:`Reason`, carried to clients in ``google.rpc.ErrorInfo``::

    kit.errors.AppError
    ├── InvalidArgument  → UserInvalidArgument   USER_INVALID_EMAIL, USER_WEAK_PASSWORD,
    │                                            USER_PASSWORD_TOO_LONG, USER_INVALID_NICKNAME,
    │                                            USER_INVALID_BIRTHDAY, USER_INVALID_ABOUT_ME,
    │                                            USER_INVALID_PHONE, USER_INVALID_WECHAT_INFO,
    │                                            USER_TOO_MANY_IDS, USER_INVALID_PAGE
    ├── NotFound         → UserNotFound          USER_NOT_FOUND
    ├── AlreadyExists    → UserAlreadyExists     USER_EMAIL_TAKEN
    ├── Unauthenticated  → UserUnauthenticated   USER_INVALID_CREDENTIALS
    └── Unavailable      → UserUnavailable       USER_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum

from kit.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
    error_domain,
)
from webook.user.v1 import user_pb2

DOMAIN = error_domain(user_pb2.ErrorReason)


class Reason(StrEnum):
    """Stable business reasons of the user service (``webook.user.v1.ErrorReason``)."""

    INVALID_EMAIL = user_pb2.ErrorReason.Name(user_pb2.USER_INVALID_EMAIL)
    WEAK_PASSWORD = user_pb2.ErrorReason.Name(user_pb2.USER_WEAK_PASSWORD)
    PASSWORD_TOO_LONG = user_pb2.ErrorReason.Name(user_pb2.USER_PASSWORD_TOO_LONG)
    INVALID_NICKNAME = user_pb2.ErrorReason.Name(user_pb2.USER_INVALID_NICKNAME)
    INVALID_BIRTHDAY = user_pb2.ErrorReason.Name(user_pb2.USER_INVALID_BIRTHDAY)
    INVALID_ABOUT_ME = user_pb2.ErrorReason.Name(user_pb2.USER_INVALID_ABOUT_ME)
    INVALID_PHONE = user_pb2.ErrorReason.Name(user_pb2.USER_INVALID_PHONE)
    INVALID_WECHAT_INFO = user_pb2.ErrorReason.Name(user_pb2.USER_INVALID_WECHAT_INFO)
    TOO_MANY_IDS = user_pb2.ErrorReason.Name(user_pb2.USER_TOO_MANY_IDS)
    INVALID_PAGE = user_pb2.ErrorReason.Name(user_pb2.USER_INVALID_PAGE)
    NOT_FOUND = user_pb2.ErrorReason.Name(user_pb2.USER_NOT_FOUND)
    EMAIL_TAKEN = user_pb2.ErrorReason.Name(user_pb2.USER_EMAIL_TAKEN)
    INVALID_CREDENTIALS = user_pb2.ErrorReason.Name(user_pb2.USER_INVALID_CREDENTIALS)
    CONCURRENT_CONFLICT = user_pb2.ErrorReason.Name(user_pb2.USER_CONCURRENT_CONFLICT)


class UserInvalidArgument(InvalidArgument):
    """Input breaks a validation rule; ``metadata["field"]`` names the field."""

    default_domain = DOMAIN


class UserNotFound(NotFound):
    """No user has the requested id."""

    default_domain = DOMAIN


class UserAlreadyExists(AlreadyExists):
    """The email address is already registered."""

    default_domain = DOMAIN


class UserUnauthenticated(Unauthenticated):
    """Email or password is wrong (deliberately the same error for both)."""

    default_domain = DOMAIN


class UserUnavailable(Unavailable):
    """A write kept colliding with concurrent writes; the caller may retry."""

    default_domain = DOMAIN
